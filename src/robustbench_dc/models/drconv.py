"""DRConv (dynamic region-aware convolution, Chen et al. 2020): each pixel takes the filter of its region.

A guided feature (an ordinary convolution with ``regions`` output channels) assigns every output pixel to the
region of its largest channel (the guided mask); a filter generator (pooling to k x k, a 1x1 convolution with
a sigmoid, a grouped 1x1 convolution) makes ``regions`` filters per image from the input. The argmax passes
its gradient through the softmax of the guided feature (straight-through) in training, and in evaluation only
when relaxed (see :mod:`robustbench_dc.models.relaxation`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_dc.errors import ConfigError
from robustbench_dc.models.relaxation import HardDecision, one_hot_argmax, straight_through


class DRConv2d(HardDecision):
    """Drop-in for a k x k ``nn.Conv2d`` (same arguments) with ``regions`` input-dependent filters."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
        regions: int = 4,
    ) -> None:
        super().__init__()
        if regions < 1:
            raise ConfigError(f"DRConv needs at least one region, got regions={regions}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding, self.regions = stride, padding, regions
        self.guide = nn.Conv2d(in_channels, regions, kernel_size, stride=stride, padding=padding, bias=False)
        self.generator = nn.Sequential(
            nn.AdaptiveAvgPool2d(kernel_size),
            nn.Conv2d(in_channels, regions * regions, 1),
            nn.Sigmoid(),
            nn.Conv2d(regions * regions, regions * out_channels * in_channels, 1, groups=regions),
        )
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def region_mask(self, x: Tensor) -> Tensor:
        """(N, regions, H', W'): one-hot of each pixel's region (straight-through when training or relaxed)."""
        guide = self.guide(x).float()
        hard = one_hot_argmax(guide, 1)
        return straight_through(hard, F.softmax(guide, 1)) if self.straight_through else hard

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        k, m, o = self.kernel_size, self.regions, self.out_channels
        filters = self.generator(x).reshape(n * m * o, c, k, k)  # per image, region and output channel
        per_region = F.conv2d(x.reshape(1, n * c, h, w), filters.to(x.dtype), None, self.stride, self.padding, groups=n)
        per_region = per_region.reshape(n, m, o, *per_region.shape[-2:])
        mask = self.region_mask(x).to(per_region.dtype)
        out = (mask.unsqueeze(2) * per_region).sum(1)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        sizes = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        return f"{self.in_channels}, {self.out_channels}, {sizes}, regions={self.regions}"
