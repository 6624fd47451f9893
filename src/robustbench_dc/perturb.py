"""Gradient-based L-infinity perturbations in pixel space, written once for training and for estimates.

Evaluation attacks go through torchattacks or foolbox (:mod:`robustbench_dc.attacks`); this module serves
the places that need a perturbation inside our own loops: adversarial training and the PGD that maximises
the local Lipschitz ratio.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Objective = Callable[[Tensor], Tensor]  # adversarial input -> per-example value to maximise


def input_gradient(output: Tensor, x: Tensor) -> Tensor:
    """``d output / d x``; zeros where the output does not depend on ``x`` through autograd (a cut graph)."""
    if not output.requires_grad:
        return torch.zeros_like(x)
    (grad,) = torch.autograd.grad(output, x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


def project_linf(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """Project onto the eps-ball around ``x`` and onto [0, 1]."""
    return torch.clamp(torch.minimum(torch.maximum(x_adv, x - eps), x + eps), 0.0, 1.0)


def ascend_linf(
    objective: Objective,
    x: Tensor,
    *,
    eps: float,
    step: float,
    steps: int,
    random_start: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Signed-gradient ascent on ``objective`` inside the L-inf eps-ball (FGSM, BIM, PGD are special cases)."""
    x = x.detach()
    if eps == 0 or steps == 0:
        return x.clone()
    x_adv = x.clone()
    if random_start:
        # drawn on the CPU generator on every device, so the same start everywhere
        noise = (torch.rand(x.shape, generator=generator, dtype=torch.float32) * 2 - 1).to(
            device=x.device, dtype=x.dtype
        )
        x_adv = project_linf(x + eps * noise, x, eps)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        grad = input_gradient(objective(x_adv).sum(), x_adv)
        x_adv = project_linf(x_adv.detach() + step * grad.sign(), x, eps)
    return x_adv.detach()


def cross_entropy_objective(model: nn.Module, labels: Tensor) -> Objective:
    return lambda x_adv: F.cross_entropy(model(x_adv), labels, reduction="none")
