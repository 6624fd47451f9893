"""``resnet32``: CIFAR ResNet (He et al. 2016), three stages of five basic blocks.

Convolutions in the residual branches and the stem are decoupled; the 1x1 projection shortcuts and the
classifier stay ordinary layers, as in the public reference code.
"""

from __future__ import annotations

from torch import Tensor, nn

from robustbench_dc.models.layers import ClassifierHead, Network, conv_bn_relu, conv_factory, scaled_widths
from robustbench_dc.models.registry import ARCHITECTURES, ConvFactory, ModelSpec


class BasicBlock(nn.Module):
    """``relu(branch(x) + shortcut(x))`` with a two-convolution branch."""

    def __init__(self, conv: ConvFactory, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            conv_bn_relu(conv, cin, cout, stride),
            conv(cout, cout, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.branch(x) + self.shortcut(x))


@ARCHITECTURES.register("resnet32")
def resnet32(spec: ModelSpec) -> Network:
    conv = conv_factory(spec)
    widths = scaled_widths(spec, (16, 32, 64))
    layers: list[nn.Module] = [conv_bn_relu(conv, spec.in_channels, widths[0])]
    cin = widths[0]
    for stage, cout in enumerate(widths):
        for block in range(5):
            layers.append(BasicBlock(conv, cin, cout, stride=2 if stage > 0 and block == 0 else 1))
            cin = cout
    return Network(spec, nn.Sequential(*layers), ClassifierHead(cin, spec.num_classes))
