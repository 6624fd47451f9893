"""Decoupled operators as pure functions (docs/protocol.md, section 1).

A decoupled operator replaces the inner product ``<w, x> = ||w|| ||x|| cos(theta)`` with
``h(||x||) * g(theta)``: a magnitude function of the patch norm times an angular function of the
kernel-patch angle. With the cosine as angular function the whole operator is a per-position rescaling
of an ordinary convolution with the normalised kernel, ``conv(x, w_hat) * h(r) / r``; the functions below
use that form whenever they can, because it keeps every full-size tensor operation but one out of the
forward and backward pass.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from robustbench_dc.errors import ConfigError

MAGNITUDES = ("sphere", "ball", "tanh", "linear", "seg", "log", "mix")
ANGULARS = ("cos", "linear", "sqcos", "sigmoid")
WEIGHTINGS = (None, "linear", "tanh-joint", "tanh-product")
BOUNDED_MAGNITUDES = ("sphere", "ball", "tanh")

#: Cosines are clamped to [-1 + COS_CLAMP, 1 - COS_CLAMP] before ``arccos``, whose gradient is infinite at +-1.
COS_CLAMP = 1e-6
#: Added under the square root of ``||w||`` so that an all-zero kernel has a finite gradient.
WEIGHT_EPS = 1e-12

#: Elements of a lower-precision input cast to fp32 at a time by ``_channel_sq`` (4 MB).
_CAST_CHUNK_ELEMENTS = 1 << 20

RhoLike = float | Tensor
#: A radius, or a function of the patch norm that returns one (layers whose radius follows the patch norms).
RhoArg = RhoLike | Callable[[Tensor], RhoLike]


def _check_choice(value: object, valid: tuple, what: str) -> None:
    if value not in valid:
        shown = ", ".join(repr(v) for v in valid)
        raise ConfigError(f"unknown {what} {value!r}; valid: {shown}")


def check_operator(
    magnitude: str,
    angular: str,
    *,
    alpha: float = 1.0,
    beta: float | None = None,
    rho: RhoLike = 1.0,
    k: float = 0.3,
    eps: float = 1e-4,
    weighted: str | None = None,
) -> None:
    """Raise ``ValueError`` naming the bad value for any invalid operator option."""
    _check_choice(magnitude, MAGNITUDES, "magnitude function")
    _check_choice(angular, ANGULARS, "angular function")
    _check_choice(weighted, WEIGHTINGS, "weighting")
    if weighted == "tanh-joint" and magnitude != "tanh":
        raise ConfigError("weighted='tanh-joint' (alpha*tanh(||x||*||w||/rho)) needs magnitude='tanh'")
    if not alpha > 0:
        raise ConfigError(f"alpha must be > 0, got {alpha}")
    if beta is not None and not beta >= 0:
        raise ConfigError(f"beta must be >= 0, got {beta}")
    # A tensor radius comes from a layer that validated its configuration; checking it here would sync.
    if not isinstance(rho, Tensor) and not rho > 0:
        raise ConfigError(f"rho must be > 0, got {rho}")
    if not k > 0:
        raise ConfigError(f"k (sigmoid angular steepness) must be > 0, got {k}")
    if not eps > 0:
        raise ConfigError(f"eps must be > 0, got {eps}")


def default_beta(magnitude: str) -> float:
    """Second scale of the seg and mix magnitudes; unused by the others."""
    return {"seg": 0.5, "mix": 1.0}.get(magnitude, 0.0)


def magnitude_fn(name: str, r: Tensor, *, alpha: float, beta: float, rho: RhoLike) -> Tensor:
    """``h(r)`` of docs/protocol.md, section 1, where ``r`` is the patch norm."""
    if name == "sphere":
        return torch.full_like(r, alpha)
    if name == "ball":
        return (
            alpha * torch.clamp(r, max=rho) / rho
            if not isinstance(rho, Tensor)
            else alpha * torch.minimum(r, rho) / rho
        )
    if name == "tanh":
        return alpha * torch.tanh(r / rho)
    if name == "linear":
        return alpha * r
    if name == "seg":
        return torch.where(r <= rho, alpha * r, beta * r + (alpha - beta) * rho)
    if name == "log":
        return alpha * torch.log1p(r)
    if name == "mix":
        return alpha * r + beta * torch.log1p(r)
    _check_choice(name, MAGNITUDES, "magnitude function")
    raise AssertionError("unreachable")


def _sigmoid_scale(k: float) -> float:
    e = math.exp(-math.pi / (2 * k))
    return (1 + e) / (1 - e)


def angular_fn(name: str, cos: Tensor, *, k: float = 0.3) -> Tensor:
    """``g(theta)`` of docs/protocol.md, section 1, taking ``cos(theta)``; arccos only where the formula needs the
    angle."""
    if name == "cos":
        return cos
    if name == "sqcos":
        return cos * cos.abs()
    theta = torch.arccos(cos.clamp(-1 + COS_CLAMP, 1 - COS_CLAMP))
    if name == "linear":
        return 1 - 2 * theta / math.pi
    if name == "sigmoid":
        # (1 - e^u) / (1 + e^u) = -tanh(u / 2), u = theta/k - pi/(2k); equals 1 at theta=0 and -1 at pi.
        return -_sigmoid_scale(k) * torch.tanh((theta / k - math.pi / (2 * k)) / 2)
    _check_choice(name, ANGULARS, "angular function")
    raise AssertionError("unreachable")


def _magnitude_over_r(name: str, r: Tensor, *, alpha: float, beta: float, rho: RhoLike) -> Tensor:
    """``h(r) / r``: the factor that turns ``<w_hat, x>`` into the cosine operator's output."""
    if name == "linear":
        return torch.full_like(r, alpha)
    return magnitude_fn(name, r, alpha=alpha, beta=beta, rho=rho) / r


def _kernel_factor(w_norm: Tensor, weighted: str | None, rho: RhoLike) -> Tensor | None:
    if weighted == "linear":
        return w_norm
    if weighted == "tanh-product":
        return torch.tanh(w_norm / rho)
    return None


def _decoupled(
    projection: Tensor,
    r: Tensor,
    w_norm: Tensor,
    *,
    magnitude: str,
    angular: str,
    alpha: float,
    beta: float,
    rho: RhoLike,
    k: float,
    weighted: str | None,
) -> Tensor:
    """Combine ``<w_hat, x>`` (``projection``), the patch norm ``r`` and the kernel norm into ``f_d``."""
    if weighted == "tanh-joint":
        h = alpha * torch.tanh(r * w_norm / rho)
        out = h * angular_fn(angular, projection / r, k=k)
    elif angular == "cos":
        out = scale_channels(projection, _magnitude_over_r(magnitude, r, alpha=alpha, beta=beta, rho=rho))
    else:
        h = magnitude_fn(magnitude, r, alpha=alpha, beta=beta, rho=rho)
        out = h * angular_fn(angular, projection / r, k=k)
    factor = _kernel_factor(w_norm, weighted, rho)
    return out if factor is None else out * factor


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


def patch_norm2d(
    x: Tensor,
    kernel_size: tuple[int, int],
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    eps: float = 1e-4,
) -> Tensor:
    """L2 norm of every k*k*C_in input patch, shape ``(N, 1, H_out, W_out)``: ``sqrt(box_sum(sum_c x^2) + eps)``."""
    x, pad = _explicit_padding(x, _pair(kernel_size), _pair(stride), _pair(dilation), padding)
    return torch.sqrt(_box_sum(_channel_sq(x), _pair(kernel_size), _pair(stride), pad, _pair(dilation)) + eps)


def _explicit_padding(
    x: Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    padding: int | tuple[int, int] | str,
) -> tuple[Tensor, tuple[int, int]]:
    """``padding`` as symmetric (rows, columns), padding ``x`` itself where ``"same"`` needs more on one side
    (an even kernel), as ``F.conv2d`` does."""
    if padding == "valid":
        return x, (0, 0)
    if padding == "same":
        if any(s != 1 for s in stride):
            raise ConfigError(f"padding='same' needs stride 1 (as in F.conv2d), got stride {stride}")
        total = [d * (k - 1) for k, d in zip(kernel, dilation)]
        before = [t // 2 for t in total]
        extra = [t - b for t, b in zip(total, before)]
        if extra != before:
            x = F.pad(x, (0, extra[1] - before[1], 0, extra[0] - before[0]))
        return x, (before[0], before[1])
    if isinstance(padding, str):
        raise ConfigError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    return x, _pair(padding)


def _channel_sq(x: Tensor) -> Tensor:
    """``sum_c x^2``, shape (N, 1, H, W); along the last memory dimension for channels-last inputs (many times
    faster than across it). Lower-precision inputs are squared and summed in fp32 (after the cast, so exactly),
    a few images at a time: a full-size fp32 copy costs several times the arithmetic on a CPU (fresh pages for
    every large allocation), a small one stays in cache."""
    if x.dtype in (torch.bfloat16, torch.float16):
        step = max(1, _CAST_CHUNK_ELEMENTS // max(1, x[0].numel())) if x.shape[0] else 1
        if step < x.shape[0] and not torch.compiler.is_compiling():
            return torch.cat([_channel_sq(part) for part in x.split(step)])
        x = x.float()
    if _channels_last(x):
        xp = x.permute(0, 2, 3, 1)
        return (xp * xp).sum(-1, keepdim=True).permute(0, 3, 1, 2).contiguous()
    return (x * x).sum(1, keepdim=True)


def _windows(
    padded: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> Iterator[tuple[slice, slice, slice, slice]]:
    """The k*k strided slices of a padded map whose sum is the box sum (one per kernel offset)."""
    (hp, wp), (kh, kw), (sh, sw), (dh, dw) = padded, kernel, stride, dilation
    h_out, w_out = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    for i in range(kh):
        for j in range(kw):
            yield (
                slice(None),
                slice(None),
                slice(i * dh, i * dh + sh * (h_out - 1) + 1, sh),
                slice(j * dw, j * dw + sw * (w_out - 1) + 1, sw),
            )


def _box_sum(
    t: Tensor, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int]
) -> Tensor:
    """Sum over every (dilated) k*k window of a one-channel map, as the convolution with a ones kernel would
    (a one-channel convolution or pooling is slow in every layout; k*k shifted slices are not)."""
    (ph, pw) = padding
    t = F.pad(t, (pw, pw, ph, ph))
    windows = list(_windows((t.shape[2], t.shape[3]), kernel, stride, dilation))
    out = t[windows[0]]
    for window in windows[1:]:
        out = out + t[window]
    return out


def _box_sum_transpose(
    grad: Tensor,
    shape: torch.Size,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> Tensor:
    """The gradient of ``_box_sum`` with respect to its (unpadded) input of ``shape``: every window adds its
    output gradient back, in place in one buffer."""
    (ph, pw) = padding
    out = grad.new_zeros(shape[0], 1, shape[2] + 2 * ph, shape[3] + 2 * pw)
    for window in _windows((out.shape[2], out.shape[3]), kernel, stride, dilation):
        out[window] += grad
    return out[:, :, ph : ph + shape[2], pw : pw + shape[3]]


def _projection_and_patch_sq(
    x: Tensor,
    w_hat: Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[Tensor, Tensor]:
    """The operator's two full-size parts: ``conv2d(x, w_hat)`` and the squared patch norms ``box_sum(sum_c x^2)``."""
    return F.conv2d(x, w_hat, None, stride, padding, dilation), _box_sum(
        _channel_sq(x), kernel, stride, padding, dilation
    )


class _ConvAndPatchSq(torch.autograd.Function):
    """``_projection_and_patch_sq`` with one backward pass for both parts: the patch term's input gradient
    ``2 x box_sum^T(g)`` is added in place to the convolution's, where autograd would make the square's two
    products, a broadcast copy and a sum of the two gradients, all full-size. The forward runs under the caller's
    autocast; backward runs the convolution's gradient in the dtype the forward convolution ran in."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, kernel, stride, padding, dilation) -> tuple[Tensor, Tensor]:  # noqa: ANN001
        projection, patch_sq = _projection_and_patch_sq(x, weight, kernel, stride, padding, dilation)
        ctx.save_for_backward(x, weight)
        ctx.geometry, ctx.conv_dtype = (kernel, stride, padding, dilation), projection.dtype
        return projection, patch_sq

    @staticmethod
    def backward(ctx, grad_projection: Tensor | None, grad_patch_sq: Tensor | None):  # noqa: ANN206
        x, weight = ctx.saved_tensors
        kernel, stride, padding, dilation = ctx.geometry
        need_x, need_w = _wanted(ctx, 0), _wanted(ctx, 1)
        grad_x = grad_w = None
        if grad_projection is not None and (need_x or need_w):
            dtype = ctx.conv_dtype
            grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
                grad_projection.to(dtype),
                x.to(dtype),
                weight.to(dtype),
                None,
                list(stride),
                list(padding),
                list(dilation),
                False,
                [0, 0],
                1,
                [need_x, need_w, False],
            )
            grad_x = grad_x.to(x.dtype) if grad_x is not None else None
            grad_w = grad_w.to(weight.dtype) if grad_w is not None else None
        if grad_patch_sq is not None and need_x:
            g = _box_sum_transpose(grad_patch_sq, x.shape, kernel, stride, padding, dilation).to(x.dtype)
            if grad_x is None:
                grad_x = torch.zeros_like(x)
            if _channels_last(grad_x) and _channels_last(x):  # broadcast along the last memory dimension
                grad_x.permute(0, 2, 3, 1).addcmul_(x.permute(0, 2, 3, 1), g.permute(0, 2, 3, 1), value=2)
            else:
                grad_x.addcmul_(x, g, value=2)
        return grad_x, grad_w, None, None, None, None


def plain_autograd() -> bool:
    """Whether plain PyTorch ops serve better than this package's autograd functions (the fused decoupled
    backward, channels-last pooling): under ``torch.compile`` and export (inductor fuses the plain formula's
    elementwise work, which a fused node hides from it), and where a Python autograd function has no place
    (TorchScript tracing, ``torch.func`` transforms)."""
    functorch = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or functorch()


def _wanted(ctx, i: int) -> bool:  # noqa: ANN001
    """Whether this backward pass needs the gradient of the function's input ``i``. An attack's
    ``autograd.grad(loss, x)`` needs the image's only: the kernel's would cost as much again, and built-in
    operators skip it too (``needs_input_grad`` only says the input requires a gradient)."""
    if not ctx.needs_input_grad[i]:
        return False
    node = ctx.next_functions[i][0]
    try:
        return node is None or torch._C._will_engine_execute_node(node)
    except (AttributeError, RuntimeError):  # an engine without the query: compute it
        return True


def _channels_last(t: Tensor) -> bool:
    return (
        t.ndim == 4 and t.shape[1] > 1 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
    )


def scale_channels(t: Tensor, scale: Tensor) -> Tensor:
    """``t * scale`` for ``t`` of shape (N, C, H, W) and ``scale`` of shape (N, 1, H, W), fast in both layouts
    (broadcasting over channels in a channels-last tensor is many times slower than over its last dimension)."""
    scale = scale.to(t.dtype)
    if scale.shape[1] == 1 and _channels_last(t):
        return (t.permute(0, 2, 3, 1) * scale.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return t * scale


def _rho_view(rho: RhoLike, ndim: int) -> RhoLike:
    """Per-output-channel rho broadcast over ``(N, C, ...)``."""
    if isinstance(rho, Tensor) and rho.ndim == 1:
        return rho.view(1, -1, *([1] * (ndim - 2)))
    return rho


def _weight_norm(weight: Tensor) -> Tensor:
    return torch.sqrt(weight.flatten(1).pow(2).sum(1) + WEIGHT_EPS)


def decoupled_conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    magnitude: str,
    angular: str = "cos",
    alpha: float = 1.0,
    beta: float | None = None,
    rho: RhoArg = 1.0,
    k: float = 0.3,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    eps: float = 1e-4,
    weighted: str | None = None,
) -> Tensor:
    """Decoupled 2-D convolution ``h(||x||) * g(theta(w, x)) (+ bias)`` at every output position.

    ``rho`` is a float, a tensor of one value per output channel, or a function of the patch norm
    ``(N, 1, H_out, W_out)`` returning either. ``eps`` is added to the squared patch norm. With ``magnitude="linear",
    weighted="linear", angular="cos"`` this is exactly ``F.conv2d``.
    """
    beta = default_beta(magnitude) if beta is None else beta
    check_operator(
        magnitude, angular, alpha=alpha, beta=beta, rho=1.0 if callable(rho) else rho, k=k, eps=eps, weighted=weighted
    )
    if x.ndim != 4 or x.shape[1] != weight.shape[1]:
        raise ConfigError(
            f"decoupled_conv2d expects input (N, {weight.shape[1]}, H, W) for a weight of shape {tuple(weight.shape)}, "
            f"got {tuple(x.shape)}"
        )
    w_norm = _weight_norm(weight)
    kernel, stride, dilation = _pair((weight.shape[2], weight.shape[3])), _pair(stride), _pair(dilation)
    x, pad = _explicit_padding(x, kernel, stride, dilation, padding)
    w_hat = weight / w_norm.view(-1, 1, 1, 1)
    parts = _projection_and_patch_sq if plain_autograd() else _ConvAndPatchSq.apply
    projection, patch_sq = parts(x, w_hat, kernel, stride, pad, dilation)
    r = torch.sqrt(patch_sq + eps)
    if callable(rho):
        rho = rho(r)
    out = _decoupled(
        projection,
        r,
        w_norm.view(1, -1, 1, 1),
        magnitude=magnitude,
        angular=angular,
        alpha=alpha,
        beta=beta,
        rho=_rho_view(rho, 4),
        k=k,
        weighted=weighted,
    )
    return out if bias is None else out + bias.to(out.dtype).view(1, -1, 1, 1)


def decoupled_linear(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    magnitude: str,
    angular: str = "cos",
    alpha: float = 1.0,
    beta: float | None = None,
    rho: RhoArg = 1.0,
    k: float = 0.3,
    eps: float = 1e-4,
    weighted: str | None = None,
) -> Tensor:
    """Decoupled fully connected layer: the whole input vector is the patch (``rho`` as for the conv)."""
    beta = default_beta(magnitude) if beta is None else beta
    check_operator(
        magnitude, angular, alpha=alpha, beta=beta, rho=1.0 if callable(rho) else rho, k=k, eps=eps, weighted=weighted
    )
    if x.shape[-1] != weight.shape[1]:
        raise ConfigError(
            f"decoupled_linear expects inputs with {weight.shape[1]} features, got shape {tuple(x.shape)}"
        )
    w_norm = _weight_norm(weight)
    projection = F.linear(x, weight / w_norm.unsqueeze(1))
    r = torch.sqrt(x.pow(2).sum(-1, keepdim=True) + eps)
    if callable(rho):
        rho = rho(r)
    out = _decoupled(
        projection,
        r,
        w_norm,
        magnitude=magnitude,
        angular=angular,
        alpha=alpha,
        beta=beta,
        rho=rho,
        k=k,
        weighted=weighted,
    )
    return out if bias is None else out + bias.to(out.dtype)


# --- Lipschitz constants (docs/protocol.md, section 1) ---------------------------------------------


def _angular_sup(angular: str, k: float) -> tuple[float, float]:
    """(max |g|, max |dg/dtheta|) over theta in [0, pi]."""
    return {
        "cos": (1.0, 1.0),
        "linear": (1.0, 2 / math.pi),
        "sqcos": (1.0, 1.0),
        "sigmoid": (1.0, _sigmoid_scale(k) / (2 * k)),
    }[angular]


def channel_lipschitz(
    *,
    magnitude: str,
    angular: str,
    alpha: float,
    beta: float,
    rho: Tensor,
    k: float,
    eps: float,
    w_norm: Tensor,
    weighted: str | None,
) -> Tensor:
    """L2 Lipschitz constant of each output channel with respect to its input patch.

    ``rho`` and ``w_norm`` have one value per output channel. Returns ``inf`` for operators with no useful
    bound only where ``eps`` does not bound them either (sphere gives ``alpha / sqrt(eps)``, finite but huge).
    """
    r_min = math.sqrt(eps)
    dh: Tensor
    h_over_r: Tensor
    if weighted == "tanh-joint":
        dh = h_over_r = alpha * w_norm / rho
    elif magnitude == "sphere":
        dh, h_over_r = torch.zeros_like(rho), torch.full_like(rho, alpha / r_min)
    elif magnitude in ("ball", "tanh"):
        dh = h_over_r = alpha / rho
    elif magnitude in ("linear", "log"):
        dh = h_over_r = torch.full_like(rho, alpha)
    elif magnitude == "seg":
        dh = torch.full_like(rho, max(alpha, beta))
        # h(r)/r for r > rho is beta + (alpha - beta) rho / r, largest at r = rho when alpha > beta.
        h_over_r = torch.full_like(rho, max(alpha, beta))
    elif magnitude == "mix":
        dh = h_over_r = torch.full_like(rho, alpha + beta)
    else:
        _check_choice(magnitude, MAGNITUDES, "magnitude function")
        raise AssertionError("unreachable")
    g_max, dg_max = _angular_sup(angular, k)
    if angular == "cos":
        per_channel = torch.maximum(dh, h_over_r)
    else:
        per_channel = torch.sqrt((dh * g_max) ** 2 + (h_over_r * dg_max) ** 2)
    if weighted == "linear":
        per_channel = per_channel * w_norm
    elif weighted == "tanh-product":
        per_channel = per_channel * torch.tanh(w_norm / rho)
    return per_channel
