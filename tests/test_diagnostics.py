import pytest
import torch
from torch import nn

from robustbench_dc.data import load_dataset
from robustbench_dc.diagnostics.run import run_diagnostics
from robustbench_dc.ops import DecoupledConv2d
from robustbench_dc.targets import from_checkpoint, from_module

FAST = dict(dataset="digits", n=100, square_queries=50, eps=32 / 255)  # 8x8 digits need a larger eps than CIFAR


class LogitScaled(nn.Module):
    """Multiplies the logits by a huge factor: cross-entropy gradients vanish (softmax saturates)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x) * 1e6


class Quantised(nn.Module):
    """A non-differentiable input quantiser in front of the model: input gradients are exactly zero."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 8) / 8)


class MaskedDecoupledConv2d(DecoupledConv2d):
    """A decoupled layer whose backward pass is cut: the forward is unchanged."""

    def forward(self, x):
        return super().forward(x.detach())


def statuses(diagnostics):
    return {d.name: d.status for d in diagnostics}


@pytest.fixture(scope="module")
def source(digits_models):
    return from_checkpoint(digits_models[("baseline", "natural", 1)])


def linear_digits_model() -> nn.Module:
    """Softmax regression on the digits, fit in float64 by full-batch gradient descent. Its cross-entropy is convex
    in the input and its gradient never vanishes or shatters, so PGD converges and no check has a reason to warn:
    a property of the construction, not of bits a particular CPU's kernels happened to train (a trained CNN's
    PGD restarts gained 11 points on one CPU and none on another)."""
    train = load_dataset("digits", "train")
    x, y = train.float_images().flatten(1).double(), train.labels
    linear = nn.Linear(x.shape[1], 10).double()
    nn.init.zeros_(linear.weight), nn.init.zeros_(linear.bias)
    opt = torch.optim.SGD(linear.parameters(), lr=0.5)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(linear(x), y).backward()
        opt.step()
    return nn.Sequential(nn.Flatten(), linear.float()).eval()


def test_healthy_model_is_not_flagged(source, tmp_path):
    target = from_module(linear_digits_model(), label="softmax-regression")
    diags, _ = run_diagnostics(target, source=source, workspace=tmp_path, **FAST)
    s = statuses(diags)
    assert s["BPDA does not beat true gradients"] == "n/a"  # no decoupled layers
    assert [d for d in diags if d.status == "warn"] == [], [d.summary for d in diags]


@pytest.mark.parametrize("wrapper", [LogitScaled, Quantised])
def test_masked_models_are_flagged(digits_models, source, tmp_path, wrapper):
    masked = from_module(
        wrapper(from_checkpoint(digits_models[("baseline", "natural", 0)]).module), label=wrapper.__name__
    )
    diags, _ = run_diagnostics(masked, source=source, workspace=tmp_path, **FAST)
    s = statuses(diags)
    assert s["white-box >= black-box"] == "warn"
    assert s["monotone in eps, near zero at large eps"] == "warn"
    assert s["gradient health"] == "warn"
    assert s["gradient beats random directions"] == "warn"
    if wrapper is LogitScaled:  # the DLR loss ignores the logits' scale: it breaks what cross-entropy PGD could not
        assert s["DLR loss does not beat cross-entropy"] == "warn"


def test_bpda_breaks_a_dcnet_with_cut_gradients(digits_models, source, tmp_path):
    target = from_checkpoint(digits_models[("tanhconv", "natural", 0)])
    healthy, _ = run_diagnostics(target, source=source, workspace=tmp_path, **FAST)
    assert statuses(healthy)["BPDA does not beat true gradients"] == "pass"
    model = from_checkpoint(digits_models[("tanhconv", "natural", 0)]).module
    for m in model.modules():
        if isinstance(m, DecoupledConv2d):
            m.__class__ = MaskedDecoupledConv2d
    masked = from_module(model, label="masked-tanhconv")
    diags, _ = run_diagnostics(masked, source=source, workspace=tmp_path, **FAST)
    s = statuses(diags)
    assert s["BPDA does not beat true gradients"] == "warn"
    assert s["gradient health"] == "warn"


class Quantise(nn.Module):
    def forward(self, x):
        return torch.round(x * 8) / 8


class PartiallyMasked(nn.Module):
    """Masks the gradients of about half the images (those brighter than the batch median): their logits are
    scaled up so far that cross-entropy saturates. PGD then overstates robustness on that half only."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        brightness = x.flatten(1).mean(1)
        scale = 1 + 1e6 * (brightness > brightness.median()).float()
        return self.model(x) * scale[:, None]


def test_a_partially_masked_model_is_flagged(digits_models, source, tmp_path):
    masked = from_module(
        PartiallyMasked(from_checkpoint(digits_models[("baseline", "natural", 0)]).module), label="partial"
    )
    s = statuses(run_diagnostics(masked, source=source, workspace=tmp_path, **FAST)[0])
    assert s["DLR loss does not beat cross-entropy"] == "warn" and s["gradient beats random directions"] == "warn"


def test_bpda_through_a_declared_quantiser(digits_models, source, tmp_path):
    model = nn.Sequential(Quantise(), from_checkpoint(digits_models[("baseline", "natural", 0)]).module)
    target = from_module(model, label="quantised")
    s = statuses(run_diagnostics(target, source=source, workspace=tmp_path, straight_through=("0",), **FAST)[0])
    assert s["BPDA does not beat true gradients"] == "warn"  # straight through the quantiser, PGD breaks it
    with pytest.raises(Exception, match="no submodule named nope"):
        run_diagnostics(target, source=source, workspace=tmp_path, straight_through=("nope",), **FAST)


class Oscillating(nn.Module):
    """``x + 0.005 sin(400 x)`` in front of a model: each 8-bit pixel moves by at most 1.3/255 (the function is
    nearly unchanged), but the derivative 1 + 2 cos(400 x) swings between -1 and 3, so the input gradient's sign
    is wrong on about a third of the pixels: partial masking that fixed-tolerance checks at one eps let pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x + 0.005 * torch.sin(400 * x))


PAIRED = (
    "iterative >= single-step",
    "white-box >= black-box",
    "BPDA does not beat true gradients",
    "smoothed gradients do not beat true gradients",
)


@pytest.mark.slow
def test_partial_masking_by_an_oscillating_input_transform_is_flagged_at_each_eps(source, tmp_path):
    """The paired checks read every eps measured: the shattered model warns at 8/255 and at 16/255, naming the
    check and the eps; the same model without the transform warns in none of them."""
    linear = linear_digits_model()
    kw = dict(dataset="digits", n=None, square_queries=50, eps=8 / 255, source=source)
    clean, _ = run_diagnostics(from_module(linear, label="softmax-regression"), workspace=tmp_path / "clean", **kw)
    assert [d.summary for d in clean if d.name in PAIRED and d.status == "warn"] == []
    shattered, _ = run_diagnostics(
        from_module(Oscillating(linear), label="oscillating"), workspace=tmp_path / "masked", **kw
    )
    flagged = {e for d in shattered if d.name in PAIRED and d.status == "warn" for e in d.numbers["flagged_eps"]}
    assert any(abs(e - 8 / 255) < 1e-9 for e in flagged) and any(abs(e - 16 / 255) < 1e-9 for e in flagged), [
        d.summary for d in shattered
    ]
    smoothed = next(d for d in shattered if d.name == "smoothed gradients do not beat true gradients")
    assert smoothed.status == "warn" and "8/255" in smoothed.summary


def test_each_check_is_one_function_and_its_status_a_typed_word():
    """diagnose runs nine checks in the reports' order, each judged on its own numbers: with none measured each is
    n/a, and one measured number moves only its own check (its status a ``names.Status``, equal to its word)."""
    from robustbench_dc.diagnostics.checks import Measured, diagnose
    from robustbench_dc.names import Status

    empty = diagnose(Measured(n=100))
    assert len(empty) == 9 and all(isinstance(d.status, Status) and d.status == "n/a" for d in empty)
    masked = diagnose(Measured(n=100, white={"apgd-ce": 0.6, "apgd-dlr": 0.2}))
    changed = [(a.name, b.status) for a, b in zip(empty, masked) if a.status != b.status]
    assert changed == [("DLR loss does not beat cross-entropy", Status.WARN)]
