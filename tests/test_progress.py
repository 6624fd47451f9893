"""Progress: the library reports cells, batches inside them and AutoAttack's components; the CLI nests bars."""

import io

import pytest
import torch
from torch import nn

from robustbench_dc.attacks import AutoAttack, AutoAttackTorchattacks, run_attack
from robustbench_dc.attacks.torchattacks_backend import AUTOATTACK_COMPONENTS
from robustbench_dc.errors import UserError
from robustbench_dc.evaluation import evaluate
from robustbench_dc.models import create_model
from robustbench_dc.progress import Progress, as_progress


class Recorder(Progress):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def __call__(self, message: str) -> None:
        self.events.append(("step", message))

    def position(self, done: int, total: int) -> None:
        self.events.append(("position", done, total))

    def advance(self, done: int, total: int, unit: str) -> None:
        self.events.append(("advance", done, total, unit))

    def detail(self, message: str) -> None:
        self.events.append(("detail", message))


def test_evaluate_reports_each_cell_and_the_batches_inside_it(tmp_path):
    torch.manual_seed(0)
    model = create_model("baseline", width=0.125, in_channels=3, input_size=8).eval()
    x, y = torch.randint(0, 256, (24, 3, 8, 8)) / 255, torch.randint(0, 10, (24,))
    rec = Recorder()
    evaluate(
        model,
        x=x,
        y=y,
        attacks=["fgsm", "bim"],
        eps=8 / 255,
        workspace=tmp_path,
        lipschitz=False,
        n=None,
        batch_size=10,
        progress=rec,
    )
    assert [e for e in rec.events if e[0] == "position"] == [("position", k, 3) for k in range(3)]
    # after each attack cell's message: its batches of 10, 10 and 4 images, counted up to the whole subset
    steps = [i for i, e in enumerate(rec.events) if e[0] == "step"]
    for start, end in zip(steps[1:], steps[2:] + [len(rec.events)]):
        assert [e for e in rec.events[start:end] if e[0] == "advance"] == [
            ("advance", k, 24, "images") for k in (10, 20, 24)
        ]
    rec.events.clear()
    evaluate(
        model,
        x=x,
        y=y,
        attacks=["fgsm", "bim"],
        eps=8 / 255,
        workspace=tmp_path,
        lipschitz=False,
        n=None,
        batch_size=10,
        progress=rec,
    )
    assert rec.events == []  # every cell read from the store: nothing computed, nothing reported


def test_a_plain_callable_or_none_serves_as_progress():
    heard = []
    p = as_progress(heard.append)
    p("a")
    p.advance(1, 2, "images")
    p.detail("d")
    assert heard == ["a"] and as_progress(p) is p
    as_progress(None)("ignored")
    as_progress(False)("ignored")  # progress=False, as tqdm users write it, is silence (it raised TypeError mid-run)


def test_a_progress_that_is_not_callable_is_refused_with_the_fix():
    with pytest.raises(UserError, match="give a callable"):
        as_progress(True)


class _Sure(nn.Module):
    """Class 0 by a wide margin whatever the input: no attack within 8/255 flips it, so AutoAttack runs all four
    parts."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 10) + 1e-3 * x.flatten(1).sum(1, keepdim=True)
        logits[:, 0] += 10.0
        return logits


def test_autoattack_announces_its_component_attacks():
    x, y = torch.rand(2, 1, 4, 4), torch.zeros(2, dtype=torch.long)
    details: list[str] = []
    adv = run_attack(AutoAttackTorchattacks(), _Sure(), x, y, 8 / 255, on_detail=details.append)
    assert adv.shape == x.shape
    assert [d.split()[1] for d in details] == list(AUTOATTACK_COMPONENTS)
    assert all("the 2 of 2 images still classified right" in d for d in details)
    official: list[str] = []
    adv = run_attack(
        AutoAttack(), _Sure(), x, y, 8 / 255, on_detail=official.append
    )  # the official package's log, passed on
    assert adv.shape == x.shape and official and official[0].startswith("autoattack: apgd-ce")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_cli_bars_nest_batches_with_an_eta_inside_cells(monkeypatch):
    from robustbench_dc import cli

    err = _Terminal()
    monkeypatch.setattr(cli.sys, "stderr", err)
    bars = cli._Bars(True, "cell")
    bars.position(1, 4)
    bars("m: white-box fgsm at 8/255 (cell 2 of 4)")
    for done in (250, 500):
        bars.advance(done, 1000, "images")
    bars.detail("autoattack: apgd-t on the 120 of 250 images still classified right")
    inner = bars.inner
    assert (inner.n, inner.total, inner.unit) == (500, 1000, "images")
    bars("m: white-box bim at 8/255 (cell 3 of 4)")
    assert bars.inner is None and bars.outer.n == 1 and bars.outer.total == 4
    bars.close()
    text = err.getvalue()
    assert "500/1000" in text and "images" in text and "<" in text  # count and ETA of the batches
    assert "2/4" not in text and "1/4" in text and "apgd-t" in text
    quiet = io.StringIO()  # not a terminal: one line per step and per detail, no bars
    monkeypatch.setattr(cli.sys, "stderr", quiet)
    lines = cli._Bars(True, "cell")
    lines("m: white-box fgsm (cell 1 of 1)")
    lines.advance(10, 20, "images")
    lines.detail("autoattack: square on the 3 of 20 images still classified right")
    lines.close()
    assert quiet.getvalue().splitlines() == [
        "m: white-box fgsm (cell 1 of 1)",
        "  autoattack: square on the 3 of 20 images still classified right",
    ]
