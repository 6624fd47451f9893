"""Decoupled layers as drop-in replacements for ``nn.Conv2d`` and ``nn.Linear``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal, cast

import torch
from torch import Tensor, nn

from robustbench_dc.errors import ConfigError
from robustbench_dc.ops import functional as DF


@dataclass(frozen=True)
class OperatorConfig:
    """Everything that defines a decoupled operator, apart from the kernel itself.

    ``rho`` is the radius; with ``relative_rho`` it multiplies a running mean of the patch norm (the public
    reference code's choice, which keeps bounded operators out of saturation whatever the activations'
    scale). With ``learnable_rho`` a per-channel parameter ``r`` (initialised to 1) scales the radius as
    ``(r^2 + 1e-4) * rho``, as in the reference code.
    """

    magnitude: str
    angular: str = "cos"
    alpha: float = 1.0
    beta: float | None = None
    rho: float = 1.0
    k: float = 0.3
    eps: float = 1e-4
    weighted: str | None = None
    learnable_rho: bool = False
    relative_rho: bool = False
    rho_momentum: float = 0.1

    def __post_init__(self) -> None:
        if self.beta is None:
            object.__setattr__(self, "beta", DF.default_beta(self.magnitude))
        DF.check_operator(
            self.magnitude,
            self.angular,
            alpha=self.alpha,
            beta=self.beta,
            rho=self.rho,
            k=self.k,
            eps=self.eps,
            weighted=self.weighted,
        )
        if not 0 < self.rho_momentum <= 1:
            raise ConfigError(f"rho_momentum must be in (0, 1], got {self.rho_momentum}")

    def to_dict(self) -> dict:
        return asdict(self)


class _DecoupledMixin:
    """Radius handling shared by the decoupled conv and linear layers."""

    config: OperatorConfig
    rho_r: nn.Parameter | None
    patch_norm_mean: Tensor
    training: bool

    def _init_operator(self, config: OperatorConfig, out_features: int, device, dtype) -> None:
        self.config = config
        if config.learnable_rho:
            self.rho_r = nn.Parameter(torch.ones(out_features, device=device, dtype=dtype))
        else:
            self.register_parameter("rho_r", None)  # type: ignore[attr-defined]
        # Only used with relative_rho, but always present so that state dicts have one shape.
        self.register_buffer("patch_norm_mean", torch.ones((), device=device, dtype=dtype))  # type: ignore[attr-defined]
        #: Like BatchNorm's ``momentum``: None makes ``patch_norm_mean`` a cumulative average (for recalibration).
        self.rho_momentum: float | None = config.rho_momentum
        self.rho_batches_tracked = 0

    def radius(self, patch_norm: Tensor) -> Tensor | float:
        """The radius for these patch norms: per channel when learnable, else a scalar."""
        scale: Tensor | float = self.config.rho
        if self.config.relative_rho:
            if self.training:
                batch_mean = patch_norm.detach().mean()
                if (
                    self.rho_momentum is None
                ):  # counted only here: a Python counter that changes makes torch.compile recompile
                    self.rho_batches_tracked += 1
                    weight = 1 / self.rho_batches_tracked
                else:
                    weight = self.rho_momentum
                with torch.no_grad():
                    self.patch_norm_mean.lerp_(batch_mean.to(self.patch_norm_mean.dtype), weight)
                scale = self.config.rho * batch_mean
            else:
                scale = self.config.rho * self.patch_norm_mean
        if self.rho_r is not None:
            return (self.rho_r.pow(2) + 1e-4) * scale
        return scale

    def eval_radius(self) -> Tensor:
        """Per-channel radius as used in eval mode (for Lipschitz bounds)."""
        out = self.weight.shape[0]  # type: ignore[attr-defined]
        scale = self.config.rho * (float(self.patch_norm_mean) if self.config.relative_rho else 1.0)
        if self.rho_r is not None:
            return (self.rho_r.detach().pow(2) + 1e-4) * scale
        return torch.full((out,), scale, device=self.weight.device)  # type: ignore[attr-defined]

    def _operator_kwargs(self) -> dict:
        c = self.config
        return dict(
            magnitude=c.magnitude, angular=c.angular, alpha=c.alpha, beta=c.beta, k=c.k, eps=c.eps, weighted=c.weighted
        )

    def _operator_repr(self) -> str:
        c = self.config
        defaults = OperatorConfig(magnitude=c.magnitude)
        parts = [f"magnitude={c.magnitude}"]
        parts += [
            f"{key}={val}" for key, val in c.to_dict().items() if key != "magnitude" and getattr(defaults, key) != val
        ]
        return ", ".join(parts)


class DecoupledConv2d(_DecoupledMixin, nn.Conv2d):
    """``nn.Conv2d`` whose inner product is replaced by a decoupled operator ``h(||x||) g(theta)``.

    Takes ``nn.Conv2d``'s arguments plus the operator's (see :class:`OperatorConfig`). Only ``groups=1``
    and zero padding are supported: the patch norm is taken over all input channels.

    >>> layer = DecoupledConv2d(3, 16, 3, padding=1, magnitude="tanh", angular="cos")
    >>> layer(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 16, 32, 32])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
        *,
        magnitude: str,
        angular: str = "cos",
        alpha: float = 1.0,
        beta: float | None = None,
        rho: float = 1.0,
        k: float = 0.3,
        eps: float = 1e-4,
        weighted: str | None = None,
        learnable_rho: bool = False,
        relative_rho: bool = False,
        rho_momentum: float = 0.1,
    ) -> None:
        if groups != 1:
            raise ConfigError(f"DecoupledConv2d supports groups=1 only, got groups={groups}")
        if padding_mode != "zeros":
            raise ConfigError(f"DecoupledConv2d supports padding_mode='zeros' only, got {padding_mode!r}")
        config = OperatorConfig(
            magnitude=magnitude,
            angular=angular,
            alpha=alpha,
            beta=beta,
            rho=rho,
            k=k,
            eps=eps,
            weighted=weighted,
            learnable_rho=learnable_rho,
            relative_rho=relative_rho,
            rho_momentum=rho_momentum,
        )
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            cast(Literal["zeros", "reflect", "replicate", "circular"], padding_mode),
            device,
            dtype,
        )
        self._init_operator(config, out_channels, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ConfigError(
                f"{type(self).__name__} expects input (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        return DF.decoupled_conv2d(
            x,
            self.weight,
            self.bias,
            rho=self.radius,
            stride=cast(tuple[int, int], self.stride),
            padding=cast("tuple[int, int] | str", self.padding),
            dilation=cast(tuple[int, int], self.dilation),
            **self._operator_kwargs(),
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + ", " + self._operator_repr()


class DecoupledLinear(_DecoupledMixin, nn.Linear):
    """``nn.Linear`` whose inner product is replaced by a decoupled operator (the input vector is the patch)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device=None,
        dtype=None,
        *,
        magnitude: str,
        angular: str = "cos",
        alpha: float = 1.0,
        beta: float | None = None,
        rho: float = 1.0,
        k: float = 0.3,
        eps: float = 1e-4,
        weighted: str | None = None,
        learnable_rho: bool = False,
        relative_rho: bool = False,
        rho_momentum: float = 0.1,
    ) -> None:
        config = OperatorConfig(
            magnitude=magnitude,
            angular=angular,
            alpha=alpha,
            beta=beta,
            rho=rho,
            k=k,
            eps=eps,
            weighted=weighted,
            learnable_rho=learnable_rho,
            relative_rho=relative_rho,
            rho_momentum=rho_momentum,
        )
        super().__init__(in_features, out_features, bias, device, dtype)
        self._init_operator(config, out_features, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        return DF.decoupled_linear(x, self.weight, self.bias, rho=self.radius, **self._operator_kwargs())

    def extra_repr(self) -> str:
        return super().extra_repr() + ", " + self._operator_repr()


DECOUPLED_LAYERS = (DecoupledConv2d, DecoupledLinear)


def layer_lipschitz(layer: DecoupledConv2d | DecoupledLinear) -> Tensor:
    """Per-output-channel L2 Lipschitz constants of a decoupled layer in eval mode (bias is irrelevant)."""
    c = layer.config
    w_norm = layer.weight.detach().flatten(1).norm(dim=1)
    return DF.channel_lipschitz(
        magnitude=c.magnitude,
        angular=c.angular,
        alpha=c.alpha,
        beta=float(c.beta or 0.0),
        rho=layer.eval_radius(),
        k=c.k,
        eps=c.eps,
        w_norm=w_norm,
        weighted=c.weighted,
    )


def patch_overlap(layer: nn.Conv2d) -> int:
    """Largest number of output positions whose patch covers one input element."""
    kh, kw = layer.kernel_size
    dh, dw = layer.dilation
    sh, sw = layer.stride
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    return min(kh, math.ceil(span_h / sh)) * min(kw, math.ceil(span_w / sw))
