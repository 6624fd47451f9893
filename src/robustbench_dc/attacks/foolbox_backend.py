"""Attacks carried out by Foolbox 3 (second backend, for cross-checks)."""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor, nn

from robustbench_dc.attacks.specs import BIM, FGM, FGSM, PGD, PGDL2, Attack
from robustbench_dc.errors import UserError

NAME = "foolbox"


def craft(
    attack: Attack,
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    eps: float,
    on_detail: Callable[[str], None] | None = None,
) -> Tensor:
    """Adversarial images for one batch (``on_detail`` is unused: these attacks have no components to announce)."""
    try:
        import foolbox as fb
    except ImportError as exc:
        raise UserError("the foolbox backend needs Foolbox 3: pip install 'robustbench-dc[foolbox]'") from exc

    atk: Any
    if isinstance(attack, FGSM):
        atk = fb.attacks.LinfFastGradientAttack(random_start=False)
    elif isinstance(attack, BIM):
        atk = fb.attacks.LinfBasicIterativeAttack(
            abs_stepsize=attack.step, steps=attack.steps_at(eps), random_start=False
        )
    elif isinstance(attack, PGD):  # BPDA is a PGD too: run_attack hands it the surrogate model
        atk = fb.attacks.LinfProjectedGradientDescentAttack(
            abs_stepsize=attack.step_at(eps), steps=attack.steps, random_start=True
        )
    elif isinstance(attack, FGM):
        atk = fb.attacks.L2FastGradientAttack(random_start=False)
    elif isinstance(attack, PGDL2):
        atk = fb.attacks.L2ProjectedGradientDescentAttack(
            abs_stepsize=attack.relative_step * eps, steps=attack.steps, random_start=True
        )
    else:
        raise UserError(f"the foolbox backend has no {attack.name!r} attack; use --backend torchattacks")
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=images.device)  # foolbox would pick CUDA by itself
    _, clipped, _ = atk(fmodel, images, labels, epsilons=[eps])
    return clipped[0].detach()
