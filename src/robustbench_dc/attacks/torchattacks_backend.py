"""Attacks carried out by torchattacks (the default backend)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustbench_dc.attacks.specs import APGDCE, BIM, FGM, FGSM, PGD, PGDL2, Attack, AutoAttack, Square

NAME = "torchattacks"


def craft(attack: Attack, model: nn.Module, images: Tensor, labels: Tensor, eps: float) -> Tensor:
    """Adversarial images for one batch; randomness comes from torch's global generator (seeded by the caller)."""
    import torchattacks

    if isinstance(attack, FGSM):
        atk = torchattacks.FGSM(model, eps=eps)
    elif isinstance(attack, BIM):
        atk = torchattacks.BIM(model, eps=eps, alpha=attack.step, steps=attack.steps_at(eps))
    elif isinstance(attack, PGD):
        atk = torchattacks.PGD(model, eps=eps, alpha=attack.step_at(eps), steps=attack.steps, random_start=True)
    elif isinstance(attack, FGM):  # one normalised-gradient step of eps from the image: FGM, projected and clipped
        atk = torchattacks.PGDL2(model, eps=eps, alpha=eps, steps=1, random_start=False)
    elif isinstance(attack, PGDL2):
        atk = torchattacks.PGDL2(model, eps=eps, alpha=attack.relative_step * eps, steps=attack.steps, random_start=True)
    elif isinstance(attack, APGDCE):  # and APGDDLR
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        atk = torchattacks.APGD(model, norm="Linf", eps=eps, steps=attack.steps, n_restarts=attack.restarts, seed=seed, loss=attack.loss)
    elif isinstance(attack, AutoAttack):
        n_classes = int(model(images[:1]).shape[1])
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        atk = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=n_classes, seed=seed)
    elif isinstance(attack, Square):
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        atk = torchattacks.Square(model, norm="Linf", eps=eps, n_queries=attack.n_queries, p_init=attack.p_init, seed=seed)
    else:
        raise NotImplementedError(type(attack).__name__)
    return atk(images, labels).detach()
