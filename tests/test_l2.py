"""The L2 threat model (FGM and PGD-L2 on both backends, eps in L2 units, kept apart from L-inf) and test data from a
DataLoader."""

import pytest
import torch
import torch.nn.functional as F

from robustbench_dc.attacks import FGM, PGDL2, eps_label, run_attack
from robustbench_dc.errors import UserError
from robustbench_dc.evaluation import evaluate
from robustbench_dc.models import create_model
from robustbench_dc.results.store import ResultStore
from robustbench_dc.study import parse_study


@pytest.fixture(scope="module")
def model_and_data():
    torch.manual_seed(0)
    model = create_model("baseline", width=0.125, in_channels=3, input_size=8).eval()
    x, y = torch.randint(0, 256, (24, 3, 8, 8)) / 255, torch.randint(0, 10, (24,))  # 8-bit images
    return model, x, y


def test_fgm_is_one_normalised_gradient_step_of_eps(model_and_data):
    model, x, y = model_and_data
    eps = 0.5
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xg), y), xg)
    direction = g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    expected = (x + eps * direction).clamp(0, 1)
    for backend in ("torchattacks", "foolbox"):
        adv = run_attack(FGM(), model, x, y, eps, backend=backend)
        assert torch.allclose(adv, expected, atol=1e-5), backend


@pytest.mark.parametrize("backend", ["torchattacks", "foolbox"])
def test_pgd_l2_stays_in_the_l2_ball_and_in_range(model_and_data, backend):
    model, x, y = model_and_data
    adv = run_attack(PGDL2(steps=10), model, x, y, 0.3, backend=backend)
    norms = (adv - x).flatten(1).norm(dim=1)
    assert float(norms.max()) <= 0.3 * (1 + 1e-4) and float(norms.max()) > 0.15
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1


def test_evaluate_keeps_l2_eps_apart(model_and_data, tmp_path):
    model, x, y = model_and_data
    with pytest.raises(UserError, match=r"L2 attacks \(fgm\) need their own eps: eps_l2="):
        evaluate(model, x=x, y=y, attacks=["fgm"], workspace=tmp_path, lipschitz=False)
    with pytest.raises(UserError, match="L2 eps must be a finite number"):
        run_attack(FGM(), model, x, y, float("inf"))
    frame = evaluate(
        model,
        x=x,
        y=y,
        attacks=["fgsm", "fgm", "pgd-l2"],
        eps=8 / 255,
        eps_l2=[0.25, 2.0],
        workspace=tmp_path,
        lipschitz=False,
        n=None,
    ).accuracy
    got = {(r.attack, round(r.eps, 6)) for r in frame.itertuples() if r.attack != "none"}
    assert got == {
        ("fgsm", round(8 / 255, 6)),
        ("fgm", 0.25),
        ("fgm", 2.0),
        ("pgd-l2", 0.25),
        ("pgd-l2", 2.0),
    }  # eps > 1 is fine in L2
    with ResultStore(tmp_path) as store:
        assert {c.key.parameters.get("norm") for c in store.cells() if c.key.attack in ("fgm", "pgd-l2")} == {"l2"}
    assert eps_label(0.5, "pgd-l2") == "L2 0.5" and eps_label(8 / 255, "pgd") == "8/255"


def test_a_study_with_l2_attacks_needs_l2_eps():
    raw = {"name": "x", "dataset": "synthetic", "attacks": ["fgsm", "pgd-l2"], "models": [{"label": "a"}]}
    with pytest.raises(UserError, match=r"L2 attacks \(pgd-l2\) need eps_l2"):
        parse_study(raw)
    assert parse_study({**raw, "eps_l2": [0.25, "1/2"]}).eps_l2 == (0.25, 0.5)


def test_a_data_loader_gives_the_same_cells_as_the_tensors(model_and_data, tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    model, x, y = model_and_data
    direct = evaluate(model, x=x, y=y, attacks=["fgsm"], workspace=tmp_path, lipschitz=False, n=None).accuracy
    loaded = evaluate(
        model,
        loader=DataLoader(TensorDataset(x, y), batch_size=5),
        attacks=["fgsm"],
        workspace=tmp_path,
        lipschitz=False,
        n=None,
    ).accuracy
    assert direct["accuracy"].tolist() == loaded["accuracy"].tolist() and bool(
        loaded["cached"].all()
    )  # the same cells, found in the store
    with pytest.raises(UserError, match="give the test data one way"):
        evaluate(model, x=x, y=y, loader=[(x, y)], workspace=tmp_path)
    with pytest.raises(UserError, match="not \\(images, labels\\) tensors"):
        evaluate(model, loader=[{"image": x}], workspace=tmp_path)


def test_progress_messages_count_the_cells(model_and_data, tmp_path):
    model, x, y = model_and_data
    messages = []
    frame = evaluate(
        model,
        x=x,
        y=y,
        attacks=["fgsm", "fgm"],
        eps=[8 / 255, 16 / 255],
        eps_l2=0.5,
        workspace=tmp_path,
        lipschitz=False,
        n=None,
        progress=messages.append,
    ).accuracy
    assert len(frame) == 4 and [m.rsplit("(", 1)[1] for m in messages] == [f"cell {k} of 4)" for k in range(1, 5)]
