"""``ir-se``: ArcFace's network blocks (Deng et al. 2019) at CIFAR size.

The improved residual unit BN-Conv-BN-PReLU-Conv-BN with Squeeze-and-Excitation on the branch, three stages
of ``units`` units (stride 2 on the second convolution of a stage's first unit), the embedding head
BN-Dropout-FC-BN over the flattened last feature map, and a classifier that is either a linear layer or the
normalised cosine head with an additive angular margin (``head="arcface"``): logits ``scale * cos(theta)``
in evaluation, ``scale * cos(theta + margin)`` for the true class in training.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_dc.errors import ConfigError
from robustbench_dc.models.layers import MarginHead, Network, conv_factory, scaled_widths
from robustbench_dc.models.registry import ARCHITECTURES, ConvFactory, ModelSpec

HEADS = ("arcface", "linear")


class SqueezeExcitation(nn.Module):
    """Channel weights in (0, 1) from global pooling and a bottleneck of ``channels // reduction``."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.layers = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.layers(x)


class IRSEUnit(nn.Module):
    """``branch(x) + shortcut(x)`` with branch BN-Conv-BN-PReLU-Conv-BN-SE (no activation after the sum)."""

    def __init__(self, conv: ConvFactory, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.BatchNorm2d(cin),
            conv(cin, cout, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.PReLU(cout),
            conv(cout, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            SqueezeExcitation(cout),
        )
        self.shortcut: nn.Module = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.branch(x) + self.shortcut(x)


class Embedding(nn.Sequential):
    """ArcFace's output layer: BN-Dropout-FC-BN over the flattened feature map."""

    def __init__(self, channels: int, size: int, dim: int, dropout: float) -> None:
        super().__init__(
            nn.BatchNorm2d(channels),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(channels * size * size, dim),
            nn.BatchNorm1d(dim),
        )


class ArcMarginHead(MarginHead):
    """``scale * cos(angle(embedding, class weight))``; training adds ``margin`` to the true class's angle."""

    def __init__(self, dim: int, num_classes: int, scale: float, margin: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.xavier_uniform_(self.weight)
        self.scale, self.margin = scale, margin

    def forward(self, embedding: Tensor) -> Tensor:
        return self.scale * F.linear(F.normalize(embedding.float(), dim=1), F.normalize(self.weight.float(), dim=1))

    def training_logits(self, logits: Tensor, labels: Tensor) -> Tensor:
        """cos(theta + m) for the true class, where theta + m stays below pi (else the usual linear fallback)."""
        cos = (logits.float() / self.scale).clamp(-1, 1)
        sin = (1 - cos**2).clamp_min(1e-12).sqrt()
        m = self.margin
        shifted = cos * math.cos(m) - sin * math.sin(m)
        shifted = torch.where(cos > math.cos(math.pi - m), shifted, cos - math.sin(math.pi - m) * m)
        true = F.one_hot(labels, cos.shape[1]).bool()
        return self.scale * torch.where(true, shifted, cos)

    def extra_repr(self) -> str:
        return f"classes={self.weight.shape[0]}, dim={self.weight.shape[1]}, scale={self.scale}, margin={self.margin}"


@ARCHITECTURES.register("ir-se", units=2, embedding=512, dropout=0.0, head="arcface", scale=16.0, margin=0.3)
def ir_se(spec: ModelSpec) -> Network:
    o = ARCHITECTURES.options(spec)
    if o["head"] not in HEADS:
        raise ConfigError(f"ir-se head must be one of {', '.join(HEADS)}, got {o['head']!r}")
    if o["units"] < 1 or not 0 <= o["dropout"] < 1 or o["scale"] <= 0 or not 0 <= o["margin"] < math.pi / 2:
        raise ConfigError(f"ir-se needs units >= 1, dropout in [0, 1), scale > 0 and margin in [0, pi/2); got {o}")
    conv = conv_factory(spec)
    widths = scaled_widths(spec, (64, 128, 256))
    layers: list[nn.Module] = [
        nn.Sequential(
            conv(spec.in_channels, widths[0], 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.PReLU(widths[0]),
        )
    ]
    cin, size = widths[0], spec.input_size
    for stage, cout in enumerate(widths):
        for i in range(o["units"]):
            stride = 2 if stage > 0 and i == 0 else 1
            layers.append(IRSEUnit(conv, cin, cout, stride))
            cin, size = cout, (size - 1) // stride + 1
    dim = max(8, round(o["embedding"] * spec.width))
    classifier: nn.Module = (
        ArcMarginHead(dim, spec.num_classes, o["scale"], o["margin"])
        if o["head"] == "arcface"
        else nn.Linear(dim, spec.num_classes)
    )
    return Network(spec, nn.Sequential(*layers), nn.Sequential(Embedding(cin, size, dim, o["dropout"]), classifier))
