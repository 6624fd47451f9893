"""Model zoo: ``create_model(name, arch=...)`` over the registered operators and architectures."""

from __future__ import annotations

from typing import Any

from robustbench_dc import names
from robustbench_dc.errors import ConfigError
from robustbench_dc.models import cnn as _cnn  # noqa: F401  (registers cnn9)
from robustbench_dc.models import irse as _irse  # noqa: F401  (registers ir-se)
from robustbench_dc.models import resnet as _resnet  # noqa: F401  (registers the ResNets, convnet-aig, drconv)
from robustbench_dc.models.layers import Network, Normalize
from robustbench_dc.models.registry import (
    ARCHITECTURES,
    CIFAR_MEAN,
    CIFAR_STD,
    ModelSpec,
    list_models,
    parse_model_name,
)

if tuple(ARCHITECTURES.names()) != tuple(sorted(names.ARCHITECTURES)):
    raise ImportError(
        f"robustbench_dc.names.ARCHITECTURES {names.ARCHITECTURES} does not list the registered architectures "
        f"{ARCHITECTURES.names()}"
    )


def build_model(spec: ModelSpec) -> Network:
    """Build the network a spec describes (what checkpoint loading uses)."""
    parse_model_name(spec.name)
    if spec.num_classes < 2:
        raise ConfigError(f"num_classes must be >= 2, got {spec.num_classes}")
    if spec.in_channels < 1 or len(spec.mean) != spec.in_channels or len(spec.std) != spec.in_channels:
        raise ConfigError(
            f"in_channels={spec.in_channels} needs that many mean and std values, got mean={spec.mean}, std={spec.std}"
        )
    if not spec.width > 0:
        raise ConfigError(f"width must be > 0, got {spec.width}")
    if spec.input_size < 4:
        raise ConfigError(f"input_size must be >= 4 (two 2x2 poolings), got {spec.input_size}")
    ARCHITECTURES.options(spec)
    return ARCHITECTURES.get(spec.arch)(spec)


def create_model(
    name: str,
    *,
    arch: str = "cnn9",
    num_classes: int = 10,
    in_channels: int = 3,
    width: float = 1.0,
    input_size: int = 32,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    arch_options: dict[str, Any] | None = None,
    **operator_options: Any,
) -> Network:
    """Create a zoo model, e.g. ``create_model("tanhconv-sqcos", arch="resnet32", width=0.5)`` or
    ``create_model("baseline", arch="convnet-aig", arch_options={"target_rate": 0.5})``.

    ``mean``/``std`` default to CIFAR-10's for three channels and to 0.5 otherwise. Operator options
    (``rho``, ``alpha``, ``learnable_rho``, ...) are those of :class:`robustbench_dc.ops.OperatorConfig`;
    architecture options those ``ARCHITECTURES.defaults(arch)`` lists.
    """
    if mean is None:
        mean = CIFAR_MEAN if in_channels == 3 else (0.5,) * in_channels
    if std is None:
        std = CIFAR_STD if in_channels == 3 else (0.5,) * in_channels
    spec = ModelSpec(
        name=name,
        arch=arch,
        num_classes=num_classes,
        in_channels=in_channels,
        width=width,
        input_size=input_size,
        mean=tuple(mean),
        std=tuple(std),
        operator=dict(operator_options),
        arch_options=dict(arch_options or {}),
    )
    return build_model(spec)


__all__ = ["ARCHITECTURES", "ModelSpec", "Network", "Normalize", "build_model", "create_model", "list_models"]
