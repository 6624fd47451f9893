"""Iterative attacks that stop each image once it is misclassified (outcome "any-iterate", the default): never weaker
than the same attack run to its last iterate, far less work on a model that breaks early, never an attack on an image
already wrong, and stored under an identity of their own (a cell made before the choice existed keeps its own)."""

import dataclasses

import pytest
import torch
from torch import nn

from robustbench_dc.attacks import BIM, BPDA, PGD, SmoothedPGD, carried_out_by, get_attack, run_attack
from robustbench_dc.attacks.specs import attacks_named
from robustbench_dc.errors import UserError
from robustbench_dc.evaluation import evaluate
from robustbench_dc.models import create_model
from robustbench_dc.names import Outcome
from robustbench_dc.study import parse_study
from robustbench_dc.targets import from_module

LAST = Outcome.LAST_ITERATE


class _Counting(nn.Module):
    """Counts the images each forward pass sees."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.images = model, 0

    def forward(self, x):
        self.images += x.shape[0]
        return self.model(x)


def _model_and_data(n=64, scale=1000.0):
    torch.manual_seed(0)
    model = create_model("tanhconv", width=0.125, in_channels=1, input_size=8, num_classes=10).eval()
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        head.weight.mul_(scale)
    x = torch.randint(0, 256, (n, 1, 8, 8)).float() / 255
    y = model(x).argmax(1)
    y[: n // 4] = (y[: n // 4] + 1) % 10  # a quarter wrong on clean input
    return model, x, y


def _right(model, x, y):
    with torch.no_grad():
        return model(x).argmax(1) == y


@pytest.mark.parametrize("attack", [BIM(), PGD(), PGD(restarts=2), SmoothedPGD(samples=2), BPDA()])
def test_any_iterate_is_never_weaker_than_the_last_iterate(attack):
    model, x, y = _model_and_data()
    last = dataclasses.replace(attack, outcome=LAST)
    eps = 4 / 255
    early = _right(model, run_attack(attack, model, x, y, eps, seed=1), y)
    full = _right(model, run_attack(last, model, x, y, eps, seed=1), y)
    assert not (early & ~full).any(), "an image stood under the early-stopped attack that the full one broke"
    assert early.sum() <= full.sum()


def test_an_image_stops_at_its_first_misclassified_iterate_and_wrong_ones_are_never_attacked():
    model, x, y = _model_and_data()
    counted = _Counting(model).eval()
    adv = run_attack(BIM(step=8 / 255, steps=10), counted, x, y, 64 / 255)
    wrong_clean = ~_right(model, x, y)
    assert wrong_clean.any() and torch.equal(adv[wrong_clean], x[wrong_clean])
    with torch.no_grad():  # a broken image's example is an iterate that fools the model
        fooled = model(adv).argmax(1) != y
    assert fooled[~wrong_clean].any()
    # far fewer images through the model than ten gradient steps on every image (plus the class check)
    counted_full = _Counting(model).eval()
    run_attack(BIM(step=8 / 255, steps=10, outcome=LAST), counted_full, x, y, 64 / 255)
    assert counted.images < 0.6 * counted_full.images, (counted.images, counted_full.images)


def test_the_outcome_is_part_of_a_cells_identity_and_old_cells_keep_theirs():
    assert BIM(outcome=LAST).params(8 / 255) == {"step": 1 / 255, "steps": 10}  # what every stored BIM cell holds
    assert BIM().params(8 / 255) == {"step": 1 / 255, "steps": 10, "outcome": "any-iterate"}
    assert PGD().params(8 / 255)["outcome"] == "any-iterate" and "outcome" not in PGD(outcome=LAST).params(8 / 255)
    assert carried_out_by(BIM(), "torchattacks") == "robustbench_dc"
    assert carried_out_by(BIM(outcome=LAST), "foolbox") == "foolbox"
    assert BIM().for_transfer() == BIM(outcome=LAST)  # a source crafts every step
    with pytest.raises(UserError, match="outcome must be"):
        get_attack("bim", outcome="sometimes")
    assert [a.outcome for a in attacks_named(["bim", "pgd"], outcome=LAST)] == [LAST, LAST]


def test_evaluate_stores_both_outcomes_apart_and_transfer_cells_craft_every_step(tmp_path):
    model, x, y = _model_and_data(32)
    torch.manual_seed(1)
    source = create_model("baseline", width=0.125, in_channels=1, input_size=8, num_classes=10).eval()
    kw = dict(x=x, y=y, eps=[8 / 255], n=None, lipschitz=False, workspace=tmp_path, device="cpu")
    target = from_module(model, label="t")
    early = evaluate(target, attacks=["bim"], source=from_module(source, label="s"), **kw).accuracy
    full = evaluate(target, attacks=[BIM(outcome=LAST)], **kw).accuracy
    white = early[early.threat == "white-box"].iloc[0]
    assert white.params["outcome"] == "any-iterate" and white.backend == "robustbench_dc"
    assert "outcome" not in early[early.threat == "black-box"].iloc[0].params
    assert not full[full.attack == "bim"].iloc[0].cached  # not the early-stopped cell, reused
    assert white.accuracy <= full[full.attack == "bim"].iloc[0].accuracy


def test_a_study_says_what_its_iterative_attacks_record():
    raw = {"name": "s", "dataset": "digits", "models": [{"label": "baseline"}], "diagnostics": False}
    assert parse_study(raw).attack_outcome == Outcome.ANY_ITERATE
    assert parse_study({**raw, "attack_outcome": "last-iterate"}).attack_outcome == LAST
    with pytest.raises(UserError, match="attack_outcome must be"):
        parse_study({**raw, "attack_outcome": "first"})


@pytest.mark.parametrize("name", ["paper-cpu", "quick", "smoke", "seeds-smoke", "aig"])
def test_shipped_studies_with_committed_stores_keep_the_outcome_their_cells_were_made_with(name):
    from robustbench_dc.study import load_study

    assert load_study(name).attack_outcome == LAST
