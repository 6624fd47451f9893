"""Model zoo registry: operator names x architectures, and the description a checkpoint rebuilds from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from torch import nn

from robustbench_dc.errors import ConfigError
from robustbench_dc.names import unknown
from robustbench_dc.ops.functional import ANGULARS
from robustbench_dc.ops.modules import OperatorConfig

if TYPE_CHECKING:
    from robustbench_dc.models.layers import Network

#: Operator names of the zoo and the magnitude function each stands for (``None``: ordinary convolution).
OPERATORS: dict[str, str | None] = {
    "baseline": None,
    "sphereconv": "sphere",
    "ballconv": "ball",
    "tanhconv": "tanh",
    "linearconv": "linear",
    "segconv": "seg",
    "logconv": "log",
    "mixconv": "mix",
}

#: Defaults of zoo operators; see docs in README ("Model zoo"): the radius is relative to the running mean
#: of each layer's patch norm, as in the public reference code.
ZOO_OPERATOR_DEFAULTS: dict[str, Any] = {"relative_rho": True}

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class ModelSpec:
    """What a zoo model is: enough to rebuild it from a checkpoint card alone."""

    name: str
    arch: str = "cnn9"
    num_classes: int = 10
    in_channels: int = 3
    width: float = 1.0
    input_size: int = 32
    mean: tuple[float, ...] = CIFAR_MEAN
    std: tuple[float, ...] = CIFAR_STD
    operator: dict[str, Any] = field(default_factory=dict)
    arch_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelSpec":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model description keys {sorted(unknown)}; valid: {sorted(known)}")
        d = dict(d)
        d["mean"], d["std"] = tuple(d.get("mean", CIFAR_MEAN)), tuple(d.get("std", CIFAR_STD))
        return cls(**d)


ConvFactory = Callable[..., nn.Module]
ArchBuilder = Callable[[ModelSpec], "Network"]


class ArchRegistry:
    """Architectures by name, each with the options it takes and their defaults; ``register`` is used as a
    decorator in each architecture's module."""

    def __init__(self) -> None:
        self._builders: dict[str, ArchBuilder] = {}
        self._defaults: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **defaults: Any) -> Callable[[ArchBuilder], ArchBuilder]:
        def deco(fn: ArchBuilder) -> ArchBuilder:
            if name in self._builders:
                raise ConfigError(f"architecture {name!r} registered twice")
            self._builders[name], self._defaults[name] = fn, defaults
            return fn

        return deco

    def defaults(self, name: str) -> dict[str, Any]:
        self.get(name)
        return dict(self._defaults[name])

    def options(self, spec: ModelSpec) -> dict[str, Any]:
        """The spec's architecture options over the defaults, each checked to be known and of the default's type."""
        defaults = self.defaults(spec.arch)
        unknown = set(spec.arch_options) - set(defaults)
        if unknown:
            valid = ", ".join(f"{k}={v!r}" for k, v in defaults.items()) or "none"
            raise ConfigError(
                f"architecture {spec.arch!r} takes no option {', '.join(sorted(unknown))}; its options (defaults): "
                f"{valid}"
            )
        options = {**defaults, **spec.arch_options}
        for key, value in spec.arch_options.items():
            kind = type(defaults[key])
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                options[key] = value = float(value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ConfigError(
                    f"architecture option {key}={value!r} of {spec.arch!r} must be of type {kind.__name__} (default "
                    f"{defaults[key]!r})"
                )
        return options

    def get(self, name: str) -> ArchBuilder:
        if name not in self._builders:
            raise ConfigError(unknown("architecture", name, sorted(self._builders)))
        return self._builders[name]

    def names(self) -> list[str]:
        return sorted(self._builders)


ARCHITECTURES = ArchRegistry()


def arch_label(arch: str, options: dict[str, Any] | None = None) -> str:
    """How stores and tables name an architecture with options: ``convnet-aig+target_rate=0.5``."""
    return "+".join([arch] + [f"{k}={v}" for k, v in sorted((options or {}).items())])


def parse_model_name(name: str) -> tuple[str, str | None, str]:
    """``'tanhconv-sqcos'`` -> ``('tanhconv', 'tanh', 'sqcos')``; the angular suffix defaults to cos."""
    base, _, angular = name.partition("-")
    if base not in OPERATORS:
        raise ConfigError(unknown("model", name, list_models()))
    if base == "baseline" and angular:
        raise ConfigError(f"unknown model {name!r}: the baseline has no angular function; use 'baseline'")
    angular = angular or "cos"
    if angular not in ANGULARS:
        raise ConfigError(
            f"unknown angular function {angular!r} in model {name!r}; valid suffixes: {', '.join(ANGULARS)}"
        )
    return base, OPERATORS[base], angular


def list_models() -> list[str]:
    """Every zoo model name: the baseline and each operator with each angular suffix."""
    names = ["baseline"]
    for base, magnitude in OPERATORS.items():
        if magnitude is not None:
            names.append(base)
            names += [f"{base}-{a}" for a in ANGULARS if a != "cos"]
    return names


def operator_config(spec: ModelSpec) -> OperatorConfig | None:
    """The decoupled operator of a spec, validated; ``None`` for the baseline."""
    _, magnitude, angular = parse_model_name(spec.name)
    if magnitude is None:
        if spec.operator:
            raise ConfigError(f"the baseline takes no operator options, got {sorted(spec.operator)}")
        return None
    options = {**ZOO_OPERATOR_DEFAULTS, **spec.operator}
    for key in ("magnitude", "angular"):
        if key in options:
            raise ConfigError(f"{key!r} is set by the model name ({spec.name!r}), not as an option")
    valid = set(OperatorConfig.__dataclass_fields__) - {"magnitude", "angular"}
    unknown = set(options) - valid
    if unknown:
        raise ConfigError(f"unknown operator options {sorted(unknown)}; valid: {', '.join(sorted(valid))}")
    return OperatorConfig(magnitude=magnitude, angular=angular, **options)
