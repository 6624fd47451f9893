"""Hard decisions with a soft relaxation (ConvNet-AIG's gates, DRConv's region masks).

Forward is always the hard decision. The gradient goes through the soft relaxation (straight-through) in
training, and in evaluation only when ``relaxed`` is set: an evaluated network's hard decisions pass no
gradient, which is exactly where gradient attacks can fail; the BPDA surrogate sets ``relaxed`` so that the
diagnostics attack both ways.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class HardDecision(nn.Module):
    """Base of modules that take a hard decision; ``relaxed`` is the evaluation-time straight-through switch."""

    relaxed: bool = False

    @property
    def straight_through(self) -> bool:
        return self.training or self.relaxed


def one_hot_argmax(scores: Tensor, dim: int) -> Tensor:
    """The one-hot of the argmax along ``dim`` (ties to the first), in ``scores``' dtype."""
    return torch.zeros_like(scores).scatter_(dim, scores.argmax(dim, keepdim=True), 1.0)


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hard: Tensor, soft: Tensor) -> Tensor:  # noqa: ANN001
        return hard.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor]:  # noqa: ANN001
        return None, grad


def straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """Exactly ``hard`` in the forward pass (not ``hard + soft - soft``, which rounds), ``soft``'s gradient backward."""
    return _StraightThrough.apply(hard, soft)


def set_relaxed(model: nn.Module, relaxed: bool = True) -> int:
    """Switch every hard decision of ``model`` to pass gradients through its relaxation; returns how many."""
    found = [m for m in model.modules() if isinstance(m, HardDecision)]
    for m in found:
        m.relaxed = relaxed
    return len(found)
