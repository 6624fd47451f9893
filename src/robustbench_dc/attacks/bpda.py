"""BPDA surrogate for decoupled networks: true forward pass, ordinary-convolution backward pass."""

from __future__ import annotations

import copy

import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_dc.ops.modules import DecoupledConv2d, DecoupledLinear


class _StraightThrough(nn.Module):
    """``layer(x)`` forward; backward of ``<w / ||w||, x>`` (conv or linear with the normalised kernel)."""

    def __init__(self, layer: DecoupledConv2d | DecoupledLinear) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        layer = self.layer
        w = layer.weight
        w_hat = w / w.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (w.ndim - 1)))
        if isinstance(layer, DecoupledConv2d):
            linear = F.conv2d(x, w_hat, None, layer.stride, layer.padding, layer.dilation)
        else:
            linear = F.linear(x, w_hat)
        return linear + (layer(x) - linear).detach()


def bpda_surrogate(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose decoupled layers pass gradients as ordinary layers would (same outputs)."""
    surrogate = copy.deepcopy(model)
    for name, module in list(surrogate.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, (DecoupledConv2d, DecoupledLinear)):
                setattr(module, child_name, _StraightThrough(child))
    return surrogate.eval()
