"""The other architectures of the source papers: ConvNet-AIG, DRConv, ArcFace's IR-SE blocks and margin head."""

import math

import pytest
import torch
from safetensors.torch import load_file

from robustbench_dc.attacks import bpda_surrogate
from robustbench_dc.checkpoint import load_checkpoint
from robustbench_dc.errors import ConfigError
from robustbench_dc.models import ARCHITECTURES, create_model
from robustbench_dc.models.drconv import DRConv2d
from robustbench_dc.models.gates import Gate, GatedBlock, execution_rates, target_rate_loss
from robustbench_dc.models.irse import ArcMarginHead
from robustbench_dc.models.relaxation import set_relaxed
from robustbench_dc.train import TrainConfig, train

#: every registered architecture at its defaults (a new one is tested without being listed here), and option variants
NEW = [(arch, {}) for arch in ARCHITECTURES.names()] + [
    ("convnet-aig", {"depth": 110}),
    ("drconv", {"stage": 0, "regions": 2}),
    ("ir-se", {"head": "linear", "dropout": 0.2}),
]


@pytest.mark.parametrize("arch,options", NEW)
@pytest.mark.parametrize("name", ["baseline", "tanhconv"])
def test_shapes_and_gradients_reach_input_and_every_parameter(arch, options, name):
    torch.manual_seed(0)
    model = create_model(name, arch=arch, width=0.125, arch_options=options)
    x = torch.rand(4, 3, 32, 32, requires_grad=True)
    model.train()
    logits = model(x)
    assert logits.shape == (4, 10)
    model.training_loss(logits, torch.tensor([0, 1, 2, 3])).backward()
    assert x.grad.abs().sum() > 0
    dead = [n for n, p in model.named_parameters() if p.grad is None]
    assert not dead, dead
    model.eval()
    assert model(x).shape == (4, 10)


@pytest.mark.parametrize("arch", ["convnet-aig", "drconv", "ir-se"])
def test_small_grey_inputs_and_same_seed_same_model(arch):
    torch.manual_seed(3)
    a = create_model("baseline", arch=arch, width=0.25, in_channels=1, input_size=8, num_classes=10)
    torch.manual_seed(3)
    b = create_model("baseline", arch=arch, width=0.25, in_channels=1, input_size=8, num_classes=10)
    x = torch.rand(5, 1, 8, 8)
    a.eval(), b.eval()
    assert torch.equal(a(x), b(x))
    a.train(), b.train()
    torch.manual_seed(7)
    ya = a(x)
    torch.manual_seed(7)
    assert torch.equal(ya, b(x))  # training-time randomness (Gumbel noise) comes from the seeded generator


def test_architecture_options_are_checked():
    with pytest.raises(
        ConfigError, match=r"takes no option colour; its options \(defaults\): depth=32, target_rate=0.6"
    ):
        create_model("baseline", arch="convnet-aig", arch_options={"colour": 1})
    with pytest.raises(ConfigError, match="target_rate=.*must be of type float"):
        create_model("baseline", arch="convnet-aig", arch_options={"target_rate": "high"})
    with pytest.raises(ConfigError, match="depth must be one of 20, 32, 44, 56, 110"):
        create_model("baseline", arch="drconv", arch_options={"depth": 33})
    with pytest.raises(ConfigError, match="stage must be 0, 1 or 2"):
        create_model("baseline", arch="drconv", arch_options={"stage": 3})
    with pytest.raises(ConfigError, match="head must be one of arcface, linear"):
        create_model("baseline", arch="ir-se", arch_options={"head": "softmax"})
    with pytest.raises(ConfigError, match="takes no option"):
        create_model("baseline", arch="resnet32", arch_options={"depth": 110})
    assert (
        create_model("baseline", arch="convnet-aig", width=0.125, arch_options={"target_rate": 1}).target_rate == 1.0
    )  # int -> float


def _gated_block(bias: tuple[float, float]) -> GatedBlock:
    torch.manual_seed(0)
    block = GatedBlock(torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.Identity(), 4, hidden=8)
    with torch.no_grad():
        block.gate.layers[-1].weight.zero_()
        block.gate.layers[-1].bias.copy_(torch.tensor(bias))
    return block.eval()


def test_gate_skips_or_executes_the_branch():
    x = torch.randn(3, 4, 5, 5)
    skipped, executed = _gated_block((5.0, -5.0)), _gated_block((-5.0, 5.0))
    assert torch.equal(skipped(x), torch.relu(x))
    assert torch.allclose(executed(x), torch.relu(x + executed.branch(x)))
    assert execution_rates(skipped, x) == [0.0] and execution_rates(executed, x) == [1.0]


def test_hard_gates_pass_no_gradient_in_evaluation_unless_relaxed():
    block = _gated_block((0.0, 0.3))
    with torch.no_grad():
        block.gate.layers[-1].weight.normal_()
    x = torch.randn(6, 4, 5, 5)

    def gate_gradient() -> torch.Tensor:
        block.zero_grad()
        block(x).sum().backward()
        return block.gate.layers[-1].weight.grad

    assert gate_gradient() is None or gate_gradient().abs().sum() == 0  # hard decision: masked
    set_relaxed(block)
    assert gate_gradient().abs().sum() > 0  # straight-through: the soft relaxation's gradient
    surrogate = bpda_surrogate(torch.nn.Sequential(_gated_block((0.0, 0.3))))
    assert all(g.relaxed for g in surrogate.modules() if isinstance(g, Gate))


def test_training_gates_are_hard_samples_with_soft_gradients_and_the_rate_loss_pulls_to_target():
    block = _gated_block((0.0, 0.0)).train()
    x = torch.randn(400, 4, 3, 3)
    torch.manual_seed(1)
    z = block.gate(x)
    assert (
        set(z.detach().unique().tolist()) <= {0.0, 1.0} and 0.35 < float(z.detach().mean()) < 0.65
    )  # Gumbel samples at p = 0.5
    block(x)
    loss = target_rate_loss(block, 0.9)
    assert math.isclose(float(loss), (float(block.last_rate) - 0.9) ** 2, rel_tol=1e-6)
    loss.backward()
    bias = block.gate.layers[-1].bias.grad
    assert bias[1] < 0 < bias[0]  # gradient descent raises the execute logit towards the 0.9 target
    assert target_rate_loss(torch.nn.Conv2d(1, 1, 1), 0.5) is None


def test_convnet_aig_training_records_execution_rates_and_resumes_exactly(tmp_path):
    config = TrainConfig(
        model="baseline",
        dataset="digits",
        arch="convnet-aig",
        width=0.25,
        epochs=2,
        batch_size=64,
        lr=0.05,
        arch_options={"target_rate": 0.5},
        recalibration_batches=2,
    )
    assert (
        config.arch_label == "convnet-aig+target_rate=0.5"
        and "arch_options" not in TrainConfig(model="baseline", dataset="digits").to_dict()
    )
    done = train(config, workspace=tmp_path / "a")
    assert done.parent.name == "natural" and done.name == "convnet-aig+target_rate=0.5-w0.25-seed0"
    model, card = load_checkpoint(done)
    rates = card.executed_block_rate
    assert (
        len(rates["per_block"]) == 15
        and all(0 <= r <= 1 for r in rates["per_block"])
        and rates["test_images"] == card.test_images
    )
    assert card.model["arch_options"] == {"target_rate": 0.5} and model.target_rate == 0.5

    class Interrupt(Exception):
        pass

    def stop(stats) -> None:
        raise Interrupt

    with pytest.raises(Interrupt):
        train(config, workspace=tmp_path / "b", on_epoch=stop)
    again = train(config, workspace=tmp_path / "b")
    a, b = load_file(str(done / "model.safetensors")), load_file(str(again / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_drconv_selects_one_generated_filter_per_pixel():
    torch.manual_seed(0)
    conv = DRConv2d(3, 5, 3, padding=1, regions=3).eval()
    x = torch.randn(2, 3, 6, 6)
    out = conv(x)
    filters = conv.generator(x).view(2, 3, 5, 3, 3, 3)
    region = conv.guide(x).argmax(1)  # (2, 6, 6)
    for i in range(2):
        for r in range(3):
            expected = torch.nn.functional.conv2d(x[i : i + 1], filters[i, r], padding=1)[0]
            where = region[i] == r
            assert torch.allclose(out[i][:, where], expected[:, where], atol=1e-5)
    assert not torch.allclose(filters[0], filters[1])  # filters depend on the input


def test_drconv_mask_gradient_only_when_training_or_relaxed():
    torch.manual_seed(0)
    conv = DRConv2d(2, 2, 3, padding=1, regions=2)
    x = torch.randn(2, 2, 5, 5)
    for mode, relaxed, flows in [("eval", False, False), ("eval", True, True), ("train", False, True)]:
        conv.train(mode == "train")
        set_relaxed(conv, relaxed)
        conv.zero_grad()
        conv(x).square().sum().backward()
        grad = conv.guide.weight.grad
        assert (grad is not None and grad.abs().sum() > 0) == flows, (mode, relaxed)


def test_arcface_head_adds_the_angular_margin_to_the_true_class_only():
    torch.manual_seed(0)
    head = ArcMarginHead(6, 4, scale=10.0, margin=0.3)
    emb = torch.randn(5, 6)
    labels = torch.tensor([0, 1, 2, 3, 0])
    logits = head(emb)
    cos = torch.nn.functional.normalize(emb, dim=1) @ torch.nn.functional.normalize(head.weight, dim=1).T
    assert torch.allclose(logits, 10 * cos, atol=1e-5)
    train_logits = head.training_logits(logits, labels)
    for i, y in enumerate(labels.tolist()):
        theta = math.acos(float(cos[i, y]))
        want = math.cos(theta + 0.3) if theta + 0.3 < math.pi else float(cos[i, y]) - math.sin(math.pi - 0.3) * 0.3
        assert math.isclose(float(train_logits[i, y]), 10 * want, abs_tol=1e-4)
        others = [c for c in range(4) if c != y]
        assert torch.allclose(train_logits[i, others], logits[i, others])
    assert torch.allclose(ArcMarginHead(6, 4, 10.0, 0.0).training_logits(logits, labels), logits, atol=1e-5)


def test_ir_se_model_uses_the_margin_in_training_only():
    torch.manual_seed(0)
    model = create_model("baseline", arch="ir-se", width=0.125).eval()
    x, y = torch.rand(3, 3, 32, 32), torch.tensor([1, 2, 3])
    logits = model(x)
    assert float(logits.abs().max()) <= ARCHITECTURES.defaults("ir-se")["scale"] + 1e-4  # scale * cosine
    plain = torch.nn.functional.cross_entropy(logits, y)
    assert float(model.training_loss(logits, y)) > float(plain)  # the margin makes the true class harder


def test_zoo_listing_and_architecture_options_on_the_command_line(tmp_path):
    import argparse

    from robustbench_dc.cli import parse_option
    from tests.conftest import run_cli

    assert parse_option("target_rate=0.5") == ("target_rate", 0.5) and parse_option("depth=110") == ("depth", 110)
    assert parse_option("head=linear") == ("head", "linear") and parse_option('head="arcface"') == ("head", "arcface")
    with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
        parse_option("0.5")
    zoo = run_cli("models", "--zoo")
    assert (
        zoo.returncode == 0
        and "convnet-aig" in zoo.stdout
        and "target_rate=0.6" in zoo.stdout
        and "regions=4" in zoo.stdout
    )
    bad = run_cli(
        "train",
        "--model",
        "baseline",
        "--arch",
        "drconv",
        "--arch-option",
        "regions=many",
        "--dataset",
        "digits",
        "--workspace",
        str(tmp_path),
    )
    assert bad.returncode == 2 and "regions='many' of 'drconv' must be of type int" in bad.stderr
