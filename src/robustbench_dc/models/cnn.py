"""``cnn9``: three stages of three 3x3 conv + BN + ReLU, pooling between stages (the paper's CIFAR plain CNN);
``batchnorm=false`` leaves BatchNorm out (the authors' ``*_wo_bn`` variants)."""

from __future__ import annotations

from torch import nn

from robustbench_dc.models.layers import ClassifierHead, MaxPool2d, Network, conv_bn_relu, conv_factory, scaled_widths
from robustbench_dc.models.registry import ARCHITECTURES, ModelSpec


@ARCHITECTURES.register("cnn9", batchnorm=True)
def cnn9(spec: ModelSpec) -> Network:
    conv = conv_factory(spec)
    batchnorm = ARCHITECTURES.options(spec)["batchnorm"]
    layers: list[nn.Module] = []
    cin = spec.in_channels
    for stage, cout in enumerate(scaled_widths(spec, (64, 128, 256))):
        if stage > 0:
            layers.append(MaxPool2d(2))
        for _ in range(3):
            layers.append(conv_bn_relu(conv, cin, cout, batchnorm=batchnorm))
            cin = cout
    return Network(spec, nn.Sequential(*layers), ClassifierHead(cin, spec.num_classes))
