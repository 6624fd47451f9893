"""BPDA surrogate: true forward pass; ordinary-convolution backward pass for decoupled layers, the soft
relaxation's backward pass for hard decisions (ConvNet-AIG gates, DRConv masks), identity for declared parts."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_dc.errors import UserError
from robustbench_dc.models.relaxation import HardDecision, set_relaxed
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


class _IdentityBackward(nn.Module):
    """``part(x)`` forward, identity backward (BPDA for a declared non-differentiable part)."""

    def __init__(self, part: nn.Module) -> None:
        super().__init__()
        self.part = part

    def forward(self, x: Tensor) -> Tensor:
        out = self.part(x)
        if out.shape != x.shape:
            raise UserError(
                f"BPDA straight-through part {type(self.part).__name__} changes the shape {tuple(x.shape)} -> "
                f"{tuple(out.shape)}; only shape-preserving parts (quantisers, denoisers) can pass gradients straight "
                "through"
            )
        return x + (out - x).detach()


def has_surrogate(model: nn.Module) -> bool:
    """Whether BPDA changes anything for ``model`` without declared parts: decoupled layers or hard decisions."""
    return any(isinstance(m, (DecoupledConv2d, DecoupledLinear, HardDecision)) for m in model.modules())


def bpda_surrogate(model: nn.Module, straight_through: tuple[str, ...] = ()) -> nn.Module:
    """A copy of ``model`` whose decoupled layers pass gradients as ordinary layers would, whose hard decisions
    pass them through their soft relaxation, and whose declared submodules (by name) pass them straight
    through (same outputs)."""
    surrogate = copy.deepcopy(model)
    set_relaxed(surrogate)
    names = dict(surrogate.named_modules())
    unknown = [n for n in straight_through if n not in names or n == ""]
    if unknown:
        raise UserError(
            f"no submodule named {', '.join(unknown)} to pass gradients straight through; names: "
            f"{', '.join(n for n in names if n)[:300]}"
        )
    for name in straight_through:
        parent, _, child = name.rpartition(".")
        setattr(names[parent], child, _IdentityBackward(names[name]))
    for name, module in list(surrogate.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, (DecoupledConv2d, DecoupledLinear)):
                setattr(module, child_name, _StraightThrough(child))
    return surrogate.eval()


class _SmoothedBackward(nn.Module):
    """``model(x)`` forward; backward of the mean of ``model`` over ``samples`` uniformly perturbed copies of x
    (half-width ``noise``, clipped to [0, 1]). The noise comes from torch's global generator, which ``run_attack``
    seeds."""

    def __init__(self, model: nn.Module, noise: float, samples: int) -> None:
        super().__init__()
        self.model, self.noise, self.samples = model, noise, samples

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        if not x.requires_grad:
            return out
        noisy = [
            (x + self.noise * (2 * torch.rand(x.shape, dtype=x.dtype, device=x.device) - 1)).clamp(0, 1)
            for _ in range(self.samples)
        ]
        smooth = torch.stack([self.model(z) for z in noisy]).mean(0)
        return smooth + (out - smooth).detach()


def smoothed_surrogate(model: nn.Module, noise: float, samples: int) -> nn.Module:
    """``model`` with gradients averaged over a uniform neighbourhood of half-width ``noise`` (same outputs)."""
    return _SmoothedBackward(model, noise, samples).eval()
