"""BIM and PGD whose cell records "misclassified at any iterate" (``Outcome.ANY_ITERATE``): our own loop, because
neither torchattacks nor Foolbox stops an image once it is decided.

Each step attacks only the images still classified right; an image leaves the loop at the first iterate the model
gets wrong (that iterate is its adversarial example), and an image the model gets wrong clean is never attacked. The
forward pass that gives a step its gradient also tells which images the previous step fooled, so stopping costs one
extra forward pass per batch (after the last step), and an image broken after two of ten steps costs two.
The step itself is the protocol's (docs/protocol.md, section 2): ``x + step * sign(grad CE)``, projected onto the
eps-ball and [0, 1]; PGD starts from a uniform draw in the ball, drawn for the whole batch as torchattacks does.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from robustbench_dc.attacks.specs import BIM, PGD, Attack
from robustbench_dc.perturb import input_gradient, project_linf

NAME = "robustbench_dc"


def _steps(attack: Attack, eps: float) -> tuple[float, int, bool]:
    if isinstance(attack, BIM):
        return attack.step, attack.steps_at(eps), False
    if isinstance(attack, PGD):  # BPDA and smoothed PGD too: run_attack hands them their surrogate model
        return attack.step_at(eps), attack.steps, True
    raise NotImplementedError(type(attack).__name__)


def craft(
    attack: Attack,
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    eps: float,
    on_detail: Callable[[str], None] | None = None,
) -> Tensor:
    """Adversarial images for one batch: each image's first misclassified iterate, or its last one where none
    was; randomness (PGD's start) from torch's global generator, seeded by the caller."""
    step, steps, random_start = _steps(attack, eps)
    adv = images.clone()
    with torch.no_grad():
        standing = model(images).argmax(1) == labels
        if random_start:
            start = (images + torch.empty_like(images).uniform_(-eps, eps)).clamp(0, 1)
            adv[standing] = start[standing]
    for _ in range(steps):
        idx = standing.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        x = adv[idx].requires_grad_(True)
        logits = model(x)
        fooled = logits.argmax(1) != labels[idx]
        loss = torch.nn.functional.cross_entropy(logits, labels[idx], reduction="sum")
        grad = input_gradient(loss, x)
        live = ~fooled  # the fooled keep the iterate that fooled them
        kept = idx[live]
        adv[kept] = project_linf(x.detach()[live] + step * grad[live].sign(), images[kept], eps)
        standing[idx[fooled]] = False
    return adv.detach()
