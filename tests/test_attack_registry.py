"""Every registered attack, on a tiny model: its examples are images of the same shape, inside its threat model's
ball, the same for the same seed, and they leave the model's mode and the global random state as they were."""

import pytest
import torch

from robustbench_dc.attacks import ATTACKS, get_attack, run_attack
from robustbench_dc.errors import UserError
from robustbench_dc.models import create_model

#: parameters that keep the query attack small here (the defaults are what tables use)
SMALL = {"square": {"n_queries": 20}}
#: AutoAttack runs each of its attacks only on the images the previous ones left standing: at a large eps its first
#: attack breaks all of them, so the test takes seconds, not minutes
LARGE_EPS = {"autoattack": 0.5, "autoattack-ta": 0.5}


def _tiny(classes: int):
    """An untrained TanhConv whose classifier is scaled up: at initialisation its logits barely depend on the input
    (every image the same class, which no attack can change); scaled, they do, so attacks break images."""
    torch.manual_seed(0)
    model = create_model("tanhconv", width=0.125, in_channels=1, input_size=8, num_classes=classes)
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.weight.mul_(1000)
        head.bias.zero_()
    x = torch.rand(6, 1, 8, 8)
    return model, x, model.eval()(x).argmax(1)


@pytest.fixture(scope="module")
def tiny():
    return _tiny(10)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_registered_attack_stays_in_its_ball_and_is_seeded(tiny, name):
    model, x, y = tiny
    attack = get_attack(name, **SMALL.get(name, {}))
    eps = 0.5 if attack.norm == "l2" else LARGE_EPS.get(name, 8 / 255)
    model.train()
    state = torch.random.get_rng_state()
    adv = run_attack(attack, model, x, y, eps, seed=3)
    assert model.training and torch.equal(torch.random.get_rng_state(), state)
    assert adv.shape == x.shape and adv.dtype == torch.float32 and 0 <= adv.min() and adv.max() <= 1
    delta = (adv - x).flatten(1)
    size = delta.norm(dim=1) if attack.norm == "l2" else delta.abs().amax(1)
    assert (size <= eps + 1e-5).all(), (name, size.max())
    assert torch.equal(run_attack(attack, model, x, y, eps, seed=3), adv)
    if attack.access != "query":  # a gradient attack breaks some images of this sensitive model
        assert (model.eval()(adv).argmax(1) != y).any(), name


@pytest.mark.parametrize("name", [a for a, cls in ATTACKS.items() if cls.min_classes > 2])
def test_an_attack_whose_loss_needs_more_classes_is_refused_with_the_fix(name):
    """torchattacks' APGD-T indexed past the logits of a 3-class model (IndexError); now a clear refusal."""
    model, x, y = _tiny(ATTACKS[name].min_classes - 1)
    with pytest.raises(UserError, match=f"{name} needs a model with at least .* classes.*use pgd"):
        run_attack(get_attack(name), model, x, y, 8 / 255)


def test_a_channels_last_dcnet_hands_attacks_a_contiguous_input_gradient():
    """The official AutoAttack's APGD-T calls ``.view`` on the input gradient (its zero-gradient check); a
    channels-last network's backward returned a channels-last gradient, and it stopped with a RuntimeError."""
    pytest.importorskip("pyautoattack")
    from pyautoattack import AutoAttack
    from pyautoattack.checks import check_zero_gradients

    torch.manual_seed(0)
    model = create_model("tanhconv", width=0.25).eval().to(memory_format=torch.channels_last)
    x = torch.rand(4, 3, 32, 32, requires_grad=True)
    (grad,) = torch.autograd.grad(model(x).logsumexp(1).sum(), x)  # as attacks take it (not .grad, which copies)
    assert grad.is_contiguous()
    check_zero_gradients(grad)
    aa = AutoAttack(model, norm="Linf", eps=8 / 255, version="standard", seed=0, device="cpu")
    aa.attacks_to_run = ["apgd-t"]  # the part that failed, with its default options but for its length
    aa.apgd_targeted.n_iter, aa.apgd_targeted.n_target_classes = 2, 1
    x = x.detach()
    adv, _ = aa.run_standard_evaluation(x, model(x).argmax(1), batch_size=4)
    assert adv.shape == x.shape


def test_an_interrupted_autoattack_resumes_from_its_finished_batches(tiny, tmp_path):
    """AutoAttack takes minutes a batch on a CPU; an interrupt lost the whole cell. Each batch is now seeded on its own
    and kept as it finishes: a resumed run does only the rest, and ends where an uninterrupted one does."""
    pytest.importorskip("pyautoattack")
    from robustbench_dc.attacks import AutoAttack

    model, x, y = tiny
    whole = run_attack(AutoAttack(), model, x, y, 0.5, batch_size=2, seed=5, partial=tmp_path / "whole")
    seen = []

    def stop_after_two(n):
        seen.append(n)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_attack(
            AutoAttack(), model, x, y, 0.5, batch_size=2, seed=5, partial=tmp_path / "cut", on_batch=stop_after_two
        )
    assert len(list((tmp_path / "cut").glob("batch-*.safetensors"))) == 2
    resumed = run_attack(AutoAttack(), model, x, y, 0.5, batch_size=2, seed=5, partial=tmp_path / "cut")
    assert torch.equal(resumed, whole)
    assert AutoAttack().params(0.5) == {"version": "standard", "seeding": "per batch"}
