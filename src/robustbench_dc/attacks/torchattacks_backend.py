"""Attacks carried out by torchattacks (the default backend)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from robustbench_dc.attacks.specs import APGDCE, BIM, FGM, FGSM, PGD, PGDL2, Attack, AutoAttackTorchattacks, Square

NAME = "torchattacks"


AUTOATTACK_COMPONENTS = (
    "apgd-ce",
    "apgd-t",
    "fab-t",
    "square",
)  # the port of the standard version, in the order it runs them


def craft(
    attack: Attack,
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    eps: float,
    on_detail: Callable[[str], None] | None = None,
) -> Tensor:
    """Adversarial images for one batch; randomness comes from torch's global generator (seeded by the caller).
    ``on_detail`` hears when each of AutoAttack's component attacks starts, and on how many images."""
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
        atk = torchattacks.PGDL2(
            model, eps=eps, alpha=attack.relative_step * eps, steps=attack.steps, random_start=True
        )
    elif isinstance(attack, APGDCE):  # and APGDDLR
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        atk = torchattacks.APGD(
            model, norm="Linf", eps=eps, steps=attack.steps, n_restarts=attack.restarts, seed=seed, loss=attack.loss
        )
    elif isinstance(attack, AutoAttackTorchattacks):
        n_classes = int(model(images[:1]).shape[1])
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        atk = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=n_classes, seed=seed)
        if on_detail is not None:
            _announce_components(atk, images.shape[0], on_detail)
    elif isinstance(attack, Square):
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        atk = torchattacks.Square(
            model, norm="Linf", eps=eps, n_queries=attack.n_queries, p_init=attack.p_init, seed=seed
        )
    else:
        raise NotImplementedError(type(attack).__name__)
    return atk(images, labels).detach()


def _announce_components(atk, batch: int, on_detail: Callable[[str], None]) -> None:
    """AutoAttack runs its attacks one after another on the images still standing, silently for minutes; say
    when each starts. (Reads torchattacks' component list; where its layout differs, says nothing.)"""
    parts = getattr(getattr(atk, "_autoattack", None), "attacks", None)
    if not isinstance(parts, list) or len(parts) != len(AUTOATTACK_COMPONENTS):
        return
    for name, part in zip(AUTOATTACK_COMPONENTS, parts):

        def announced(images: Tensor, labels: Tensor, name: str = name, forward: Callable = part.forward) -> Tensor:
            on_detail(f"autoattack: {name} on the {images.shape[0]} of {batch} images still classified right")
            return forward(images, labels)

        part.forward = announced
