"""Building blocks shared by the zoo architectures."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_dc.errors import ConfigError
from robustbench_dc.models.registry import ConvFactory, ModelSpec, operator_config
from robustbench_dc.ops.functional import plain_autograd
from robustbench_dc.ops.modules import DecoupledConv2d


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel: models take pixels in [0, 1], so every epsilon is in pixel units."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ConfigError(f"mean and std need one value per channel, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ConfigError(f"std must be positive, got {std}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def conv_factory(spec: ModelSpec) -> ConvFactory:
    """``nn.Conv2d`` for the baseline, else a ``DecoupledConv2d`` with the spec's operator."""
    config = operator_config(spec)
    if config is None:
        return nn.Conv2d
    return partial(DecoupledConv2d, **config.to_dict())


def with_normalization(module: nn.Module, mean: tuple[float, ...] | None, std: tuple[float, ...] | None) -> nn.Module:
    """Put ``(x - mean) / std`` in front of a model that expects normalised input, so attacks stay in [0, 1]."""
    if mean is None and std is None:
        return module
    if mean is None or std is None:
        raise ConfigError("give both mean and std (one value per channel), or neither")
    return nn.Sequential(Normalize(tuple(mean), tuple(std)), module)


def scaled_widths(spec: ModelSpec, base: tuple[int, ...]) -> list[int]:
    """Channel counts of an architecture's stages times ``spec.width`` (at least 1)."""
    return [max(1, round(b * spec.width)) for b in base]


class _MaxPool2dChannelsLast(torch.autograd.Function):
    """``F.max_pool2d`` of an NCHW input, pooled in channels-last (on a CPU the NCHW kernel is several times
    slower than the conversion and the channels-last kernel together) and differentiated by the NCHW backward
    kernel (the channels-last one is slow too). The indices are per channel plane in both layouts, and both
    kernels take the first maximum of a window, so outputs and gradients equal ``F.max_pool2d``'s."""

    @staticmethod
    def forward(ctx, x: Tensor, geometry: tuple) -> Tensor:  # noqa: ANN001
        out, indices = torch.ops.aten.max_pool2d_with_indices(
            x.contiguous(memory_format=torch.channels_last), *geometry
        )
        ctx.save_for_backward(x, indices)
        ctx.geometry = geometry
        return out.contiguous()

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: ANN206
        x, indices = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad.contiguous(), x, *ctx.geometry, indices.contiguous()
        ), None


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` that pools NCHW inputs on a CPU through the channels-last kernel (same results)."""

    def forward(self, x: Tensor) -> Tensor:
        if (
            x.device.type != "cpu"
            or x.ndim != 4
            or x.shape[1] < 8
            or not x.is_contiguous()
            or self.return_indices
            or plain_autograd()
        ):
            return super().forward(x)
        return _MaxPool2dChannelsLast.apply(
            x, (self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        )


def conv_bn_relu(conv: ConvFactory, cin: int, cout: int, stride: int = 1, batchnorm: bool = True) -> nn.Sequential:
    """A 3x3 convolution, BatchNorm and ReLU; without BatchNorm the convolution has a bias (the authors' ``*_wo_bn``
    networks, where a bounded magnitude function stands in for the normalisation)."""
    if not batchnorm:
        return nn.Sequential(conv(cin, cout, 3, stride=stride, padding=1, bias=True), nn.ReLU(inplace=True))
    return nn.Sequential(
        conv(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class ClassifierHead(nn.Sequential):
    """Global average pooling and an ordinary linear classifier (as in the reference code)."""

    def __init__(self, features: int, num_classes: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(features, num_classes))


class MarginHead(nn.Module):
    """A head whose training loss sees other logits than evaluation does (a margin on the true class)."""

    def training_logits(self, logits: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError


class _ContiguousGradient(torch.autograd.Function):
    """The identity, whose backward hands an NCHW input a contiguous gradient: a channels-last network's first
    convolution returns a channels-last one, and attack code that calls ``.view`` on the input gradient (the official
    AutoAttack's zero-gradient check in APGD-T) fails on it."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: ANN001
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: ANN001, ANN206
        return grad.contiguous()


class Network(nn.Sequential):
    """A zoo model: normalisation, features, head; ``spec`` describes it for checkpoints."""

    def __init__(self, spec: ModelSpec, features: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.spec = spec
        self.normalize = Normalize(spec.mean, spec.std)
        self.features = features
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        s = self.spec
        if x.ndim != 4 or x.shape[1] != s.in_channels:
            raise ConfigError(
                f"model {s.name!r} expects images of shape (N, {s.in_channels}, H, W) in [0, 1], got {tuple(x.shape)}"
            )
        if x.requires_grad and x.is_contiguous():  # an attack's NCHW input (training feeds channels-last batches)
            x = _ContiguousGradient.apply(x)
        return super().forward(x)

    def training_loss(
        self, logits: Tensor, labels: Tensor, weights: Tensor | None = None, label_smoothing: float = 0.0
    ) -> Tensor:
        """What training minimises: cross-entropy (the weighted mean with per-example ``weights``), on the
        head's margin logits where it has a margin; architectures with extra terms add them."""
        margin = next((m for m in self.head.modules() if isinstance(m, MarginHead)), None)  # the head's last layer
        if margin is not None:
            logits = margin.training_logits(logits, labels)
        if weights is None:
            return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        return (
            F.cross_entropy(logits, labels, reduction="none", label_smoothing=label_smoothing) * weights
        ).sum() / weights.sum()
