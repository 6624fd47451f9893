"""Three Lipschitz estimates (docs/protocol.md), each named for what it is.

- ``local_lipschitz``: empirical local constant (Yang et al. 2020), mean over points of the PGD-maximised
  ``||f(x) - f(x')||_1 / ||x - x'||_inf`` in the eps-ball: a lower bound on the true local constant.
- ``margin_gradient_norms``: ``||grad_x (z_y - max_{j != y} z_j)||_1`` (dual of L-inf): mean and max.
- ``global_upper_bound``: product of per-layer L2 bounds (power iteration for convolutions and linear
  layers, BatchNorm in eval mode, analytic bounds for decoupled operators), also converted to the
  L-inf -> L1 norms of the local estimate (times ``sqrt(input dim * classes)``) so the two can be compared.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_dc.devices import module_device
from robustbench_dc.models.layers import Normalize
from robustbench_dc.ops.modules import DECOUPLED_LAYERS, layer_lipschitz, patch_overlap
from robustbench_dc.perturb import ascend_linf, input_gradient


@dataclass(frozen=True)
class LocalLipschitz:
    mean: float
    max: float
    eps: float
    steps: int
    n: int


@dataclass(frozen=True)
class GradientNorms:
    mean: float
    max: float
    zero_fraction: float
    nonfinite_fraction: float
    n: int


@dataclass(frozen=True)
class GlobalBound:
    """``log10_l2``: log10 of the L2 -> L2 bound; ``log10_linf_l1``: the same in L-inf -> L1 norms.

    ``eps_dependent`` is true when only the patch-norm eps keeps a layer's bound finite (SphereConv): the
    number then says nothing useful about robustness. ``supported`` is false for a model containing a
    layer we have no bound for; ``unsupported`` names it.
    """

    log10_l2: float
    log10_linf_l1: float
    eps_dependent: bool
    supported: bool
    unsupported: str = ""


def local_lipschitz(
    model: nn.Module, images: Tensor, *, eps: float, steps: int = 10, seed: int = 0, batch_size: int = 250
) -> LocalLipschitz:
    model.eval()
    ratios = []
    gen = torch.Generator().manual_seed(seed)
    device = module_device(model)
    for i in range(0, images.shape[0], batch_size):
        x = images[i : i + batch_size].to(device, copy=True)
        with torch.no_grad():
            fx = model(x.clone())

        def ratio(x_adv: Tensor, x: Tensor = x, fx: Tensor = fx) -> Tensor:
            num = (model(x_adv.clone()) - fx).abs().sum(1)
            den = (x_adv - x).flatten(1).abs().amax(1).clamp_min(1e-12)
            return num / den

        x_adv = ascend_linf(ratio, x, eps=eps, step=eps / 4, steps=steps, random_start=True, generator=gen)
        with torch.no_grad():
            ratios.append(ratio(x_adv).float().cpu())
    r = torch.cat(ratios)
    return LocalLipschitz(mean=float(r.mean()), max=float(r.max()), eps=eps, steps=steps, n=int(r.numel()))


def margin_gradient_norms(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 250) -> GradientNorms:
    model.eval()
    norms = []
    device = module_device(model)
    for i in range(0, images.shape[0], batch_size):
        x = images[i : i + batch_size].to(device, copy=True).requires_grad_(True)
        y = labels[i : i + batch_size].to(device)
        z = model(x.clone())
        true = z.gather(1, y[:, None]).squeeze(1)
        other = z.masked_fill(torch.nn.functional.one_hot(y, z.shape[1]).bool(), float("-inf")).amax(1)
        g = input_gradient((true - other).sum(), x)
        norms.append(g.flatten(1).abs().sum(1).cpu())
    n = torch.cat(norms)
    finite = torch.isfinite(n)
    return GradientNorms(
        mean=float(n[finite].mean()) if finite.any() else float("nan"),
        max=float(n[finite].max()) if finite.any() else float("nan"),
        zero_fraction=float((n == 0).float().mean()),
        nonfinite_fraction=float((~finite).float().mean()),
        n=int(n.numel()),
    )


# --- global bound ---------------------------------------------------------------------------------------------


def _power_iteration(forward, adjoint, shape: tuple[int, ...], iters: int, seed: int = 0) -> float:
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(shape, generator=g)
    u /= u.norm()
    sigma = 0.0
    for _ in range(iters):
        v = adjoint(forward(u))
        sigma = float(v.norm()) ** 0.5
        u = v / v.norm().clamp_min(1e-30)
    return sigma


def _conv_norm(m: nn.Conv2d, shape: tuple[int, ...], iters: int) -> float:
    """The operator norm of a plain convolution on inputs of ``shape``, by power iteration with its adjoint (the
    transposed convolution, its output padding chosen to give back the input's size)."""
    w = m.weight.detach()
    padding = cast(tuple[int, int], m.padding)  # the caller takes no string padding ('same'), which has no adjoint here

    def fwd(u: Tensor) -> Tensor:
        return F.conv2d(u, w, None, m.stride, padding, m.dilation, m.groups)

    out_shape = fwd(torch.zeros(1, *shape[1:])).shape
    pad = tuple(
        shape[-2 + i]
        - ((out_shape[-2 + i] - 1) * m.stride[i] - 2 * padding[i] + m.dilation[i] * (w.shape[2 + i] - 1) + 1)
        for i in range(2)
    )

    def adj(v: Tensor) -> Tensor:
        return F.conv_transpose2d(v, w, None, m.stride, padding, pad, m.groups, m.dilation)

    return _power_iteration(fwd, adj, (1, *shape[1:]), iters)


def _max_pool_log10(m: nn.MaxPool2d) -> float:
    """A max pool moves each input into at most ceil(k / s)^2 windows."""
    k = m.kernel_size if isinstance(m.kernel_size, int) else max(m.kernel_size)
    s = m.stride if isinstance(m.stride, int) else min(m.stride)
    return 0.5 * math.log10(math.ceil(k / s) ** 2)


def _batch_norm_log10(m: nn.BatchNorm1d | nn.BatchNorm2d) -> float:
    """In eval mode a BatchNorm scales each channel by |gamma| / sqrt(running var + eps)."""
    var = cast(Tensor, m.running_var)
    scale = (m.weight.detach().abs() if m.weight is not None else torch.ones_like(var)) / torch.sqrt(var + m.eps)
    return math.log10(float(scale.max()))


class _Bounder:
    def __init__(self, in_shapes: dict[nn.Module, tuple[int, ...]], iters: int) -> None:
        self.in_shapes = in_shapes
        self.iters = iters
        self.eps_dependent = False
        self.unsupported = ""

    def log10(self, m: nn.Module) -> float:
        """log10 of module ``m``'s L2 Lipschitz bound."""

        from robustbench_dc.models.resnet import BasicBlock

        if isinstance(m, nn.Sequential):
            return sum(self.log10(c) for c in m)
        if isinstance(m, (nn.ReLU, nn.Identity, nn.Flatten, nn.Dropout)):
            return 0.0
        if isinstance(m, nn.MaxPool2d):
            return _max_pool_log10(m)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            shape = self.in_shapes.get(m)
            out = m.output_size if isinstance(m.output_size, tuple) else (m.output_size, m.output_size)
            if shape is None or out != (1, 1):
                return self._unsupported(m)
            return -0.5 * math.log10(shape[-1] * shape[-2])
        if isinstance(m, Normalize):
            return -math.log10(float(m.std.min()))
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            return _batch_norm_log10(m)
        if isinstance(m, DECOUPLED_LAYERS):
            per_channel = layer_lipschitz(m)
            if m.config.magnitude == "sphere" and m.config.weighted != "tanh-joint":
                self.eps_dependent = True
            overlap = patch_overlap(m) if isinstance(m, nn.Conv2d) else 1
            return 0.5 * math.log10(overlap * float(per_channel.pow(2).sum()))
        if isinstance(m, nn.Conv2d):
            shape = self.in_shapes.get(m)
            if shape is None or isinstance(m.padding, str):
                return self._unsupported(m)
            return math.log10(_conv_norm(m, shape, self.iters))
        if isinstance(m, nn.Linear):
            return math.log10(float(torch.linalg.matrix_norm(m.weight.detach(), ord=2)))
        if isinstance(m, BasicBlock):
            branch, shortcut = 10 ** self.log10(m.branch), 10 ** self.log10(m.shortcut)
            return math.log10(branch + shortcut)
        return self._unsupported(m)

    def _unsupported(self, m: nn.Module) -> float:
        self.unsupported = self.unsupported or type(m).__name__
        return 0.0


@torch.no_grad()
def global_upper_bound(
    model: nn.Module, input_shape: tuple[int, int, int], num_classes: int, *, iters: int = 100
) -> GlobalBound:
    """Layer-wise product bound for a model made of the layers we know (every zoo model)."""
    model.eval()
    if module_device(model).type != "cpu":  # cheap, and power iteration's random starts stay the same everywhere
        model = copy.deepcopy(model).cpu()
    nan = float("nan")
    if any(
        isinstance(m, torch.jit.ScriptModule) for m in model.modules()
    ):  # compiled code: no layers to bound, no hooks to read shapes
        return GlobalBound(
            log10_l2=nan, log10_linf_l1=nan, eps_dependent=False, supported=False, unsupported="TorchScript module"
        )
    in_shapes: dict[nn.Module, tuple[int, ...]] = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: in_shapes.__setitem__(mod, tuple(inp[0].shape)))
        for m in model.modules()
    ]
    try:
        model(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    bounder = _Bounder(in_shapes, iters)
    top = model if isinstance(model, nn.Sequential) else None
    log_l2 = bounder.log10(top) if top is not None else bounder._unsupported(model)
    d = math.prod(input_shape)
    log_inf1 = log_l2 + 0.5 * math.log10(d * num_classes)
    supported = not bounder.unsupported
    return GlobalBound(
        log10_l2=log_l2 if supported else nan,
        log10_linf_l1=log_inf1 if supported else nan,
        eps_dependent=bounder.eps_dependent,
        supported=supported,
        unsupported=bounder.unsupported,
    )


def as_dict(x: LocalLipschitz | GradientNorms | GlobalBound) -> dict:
    return asdict(x)
