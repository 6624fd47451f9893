"""Optimisation aids from the Decoupled Networks paper: weight projection, weighted gradients, orthogonality."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustbench_dc.ops.modules import DECOUPLED_LAYERS, DecoupledConv2d, DecoupledLinear


def decoupled_layers(model: nn.Module) -> list[DecoupledConv2d | DecoupledLinear]:
    return [m for m in model.modules() if isinstance(m, DECOUPLED_LAYERS)]


@torch.no_grad()
def project_weights(model: nn.Module, scale: float = 1.0) -> None:
    """Weight projection: set every decoupled kernel to ``scale * w / ||w||``.

    Unweighted decoupled operators ignore ``||w||``, so this changes no output; it only resets the kernel
    norm, which otherwise grows and shrinks the effective learning rate (the paper's reason for it).
    """
    for layer in decoupled_layers(model):
        w = layer.weight
        w.mul_(scale / w.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (w.ndim - 1))))


@torch.no_grad()
def weight_gradients(model: nn.Module) -> None:
    """Weighted gradients: scale each decoupled kernel's gradient by its norm ``||w||`` (call before ``step``)."""
    for layer in decoupled_layers(model):
        w = layer.weight
        if w.grad is not None:
            w.grad.mul_(w.flatten(1).norm(dim=1).view(-1, *([1] * (w.ndim - 1))))


def orthogonality_penalty(model: nn.Module, weight: float = 1e-5) -> Tensor:
    """``weight * sum ||W_hat^T W_hat - I||_F^2 / 2`` over decoupled layers (reference code's regulariser)."""
    total = torch.zeros(())
    for layer in decoupled_layers(model):
        w = layer.weight.flatten(1)
        w_hat = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
        gram = w_hat @ w_hat.t()
        eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        total = total + (gram - eye).pow(2).sum() / 2
    return weight * total
