"""CIFAR ResNets (He et al. 2016) and the variants built on them.

- ``resnet32``, ``resnet110``: three stages of (depth - 2) / 6 basic blocks.
- ``convnet-aig``: the same ResNet with a ConvNet-AIG gate on every block (:mod:`.gates`) and the target-rate
  loss in training; options ``depth`` (32 or 110), ``target_rate``, ``rate_weight``, ``gate_hidden``.
- ``drconv``: the same ResNet with the 3x3 convolutions of one stage replaced by DRConv (:mod:`.drconv`);
  options ``depth``, ``stage`` (0, 1 or 2), ``regions``.

Convolutions in the residual branches and the stem are decoupled for a decoupled operator (DRConv stays an
inner product); the 1x1 projection shortcuts, gates and the classifier stay ordinary layers, as in the public
reference code.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from torch import Tensor, nn

from robustbench_dc.errors import ConfigError
from robustbench_dc.models.drconv import DRConv2d
from robustbench_dc.models.gates import GatedBlock, target_rate_loss
from robustbench_dc.models.layers import ClassifierHead, Network, conv_bn_relu, conv_factory, scaled_widths
from robustbench_dc.models.registry import ARCHITECTURES, ConvFactory, ModelSpec

DEPTHS = (20, 32, 44, 56, 110)


def residual_branch(conv: ConvFactory, cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        conv_bn_relu(conv, cin, cout, stride),
        conv(cout, cout, 3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(cout),
    )


def projection(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """``relu(branch(x) + shortcut(x))`` with a two-convolution branch."""

    def __init__(self, conv: ConvFactory, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.branch = residual_branch(conv, cin, cout, stride)
        self.shortcut = projection(cin, cout, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.branch(x) + self.shortcut(x))


class GatedNetwork(Network):
    """A network with ConvNet-AIG gates: training adds ``rate_weight`` times the target-rate loss."""

    def __init__(
        self, spec: ModelSpec, features: nn.Module, head: nn.Module, target_rate: float, rate_weight: float
    ) -> None:
        super().__init__(spec, features, head)
        self.target_rate, self.rate_weight = target_rate, rate_weight

    def training_loss(
        self, logits: Tensor, labels: Tensor, weights: Tensor | None = None, label_smoothing: float = 0.0
    ) -> Tensor:
        loss = super().training_loss(logits, labels, weights, label_smoothing)
        rate = target_rate_loss(self, self.target_rate)
        return loss if rate is None else loss + self.rate_weight * rate


def _resnet(
    spec: ModelSpec,
    depth: int,
    block: Callable[..., nn.Module] = BasicBlock,
    stage_conv: dict[int, ConvFactory] | None = None,
) -> tuple[nn.Sequential, int]:
    if depth not in DEPTHS:
        raise ConfigError(f"CIFAR ResNet depth must be one of {', '.join(map(str, DEPTHS))} (6n + 2), got {depth}")
    conv = conv_factory(spec)
    widths = scaled_widths(spec, (16, 32, 64))
    layers: list[nn.Module] = [conv_bn_relu(conv, spec.in_channels, widths[0])]
    cin = widths[0]
    for stage, cout in enumerate(widths):
        for i in range((depth - 2) // 6):
            layers.append(
                block((stage_conv or {}).get(stage, conv), cin, cout, stride=2 if stage > 0 and i == 0 else 1)
            )
            cin = cout
    return nn.Sequential(*layers), cin


@ARCHITECTURES.register("resnet32")
def resnet32(spec: ModelSpec) -> Network:
    features, channels = _resnet(spec, 32)
    return Network(spec, features, ClassifierHead(channels, spec.num_classes))


@ARCHITECTURES.register("resnet110")
def resnet110(spec: ModelSpec) -> Network:
    features, channels = _resnet(spec, 110)
    return Network(spec, features, ClassifierHead(channels, spec.num_classes))


@ARCHITECTURES.register("convnet-aig", depth=32, target_rate=0.6, rate_weight=2.0, gate_hidden=16)
def convnet_aig(spec: ModelSpec) -> Network:
    o = ARCHITECTURES.options(spec)
    if not 0 < o["target_rate"] <= 1:
        raise ConfigError(f"convnet-aig target_rate must be in (0, 1], got {o['target_rate']}")
    if o["rate_weight"] < 0 or o["gate_hidden"] < 1:
        raise ConfigError(
            f"convnet-aig needs rate_weight >= 0 and gate_hidden >= 1, got {o['rate_weight']} and {o['gate_hidden']}"
        )

    def gated(conv: ConvFactory, cin: int, cout: int, stride: int) -> GatedBlock:
        return GatedBlock(
            residual_branch(conv, cin, cout, stride), projection(cin, cout, stride), cin, o["gate_hidden"]
        )

    features, channels = _resnet(spec, o["depth"], gated)
    return GatedNetwork(spec, features, ClassifierHead(channels, spec.num_classes), o["target_rate"], o["rate_weight"])


@ARCHITECTURES.register("drconv", depth=32, stage=2, regions=4)
def drconv(spec: ModelSpec) -> Network:
    o = ARCHITECTURES.options(spec)
    if o["stage"] not in (0, 1, 2):
        raise ConfigError(
            f"drconv stage must be 0, 1 or 2 (the ResNet stage whose 3x3 convolutions become DRConv), got {o['stage']}"
        )
    features, channels = _resnet(spec, o["depth"], stage_conv={o["stage"]: partial(DRConv2d, regions=o["regions"])})
    return Network(spec, features, ClassifierHead(channels, spec.num_classes))
