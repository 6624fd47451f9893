"""What the suite knows about a model it evaluates, typed: built when a model is loaded, stored beside its cells
(the store's ``functions`` table holds ``to_dict()``), and read back by queries and reports, which need no torch
and no checkpoint. Stores and evaluations written before the type existed read as they are (``from_dict``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, Mapping


class ModelKind(StrEnum):
    """Where a model comes from; its members equal the strings stores hold."""

    ZOO = "zoo"  # a checkpoint of our zoo, with its card
    THIRD_PARTY = "third-party"  # any other module or file
    UNKNOWN = "unknown"  # a cell whose function has no description in the store


@dataclass(frozen=True)
class ModelInfo:
    """A model's description. The zoo fields come from its checkpoint card; the file fields from a third-party
    file; ``extra`` keeps whatever else a caller passed (``from_module(..., **info)``) or a store held."""

    label: str
    kind: ModelKind = ModelKind.THIRD_PARTY
    weights_sha256: str = ""
    training: str = "external"  # the training regime of a zoo model; "external" for any other
    data_source: str = ""  # where the test images came from, recorded when the first cell is computed
    # a zoo checkpoint (its card)
    name: str | None = None
    arch: str | None = None
    width: float | None = None
    seed: int | None = None
    dataset: str | None = None
    file: str | None = None
    checkpoint_dir: str | None = None
    epochs: int | None = None
    train_images: int | None = None
    clean_test_accuracy: float | None = None
    train_config: Mapping[str, Any] | None = None
    compute: Mapping[str, Any] | None = None
    recipe: str | None = None  # identity of the training recipe without the seed (protocol.recipe_id)
    executed_block_rate: Mapping[str, Any] | None = None  # gated networks: how often each block ran
    # the card's per-epoch robustness check: images, attacks, catastrophic_overfitting_epoch, and the parallel lists
    # epoch, fgsm, pgd10 (the check's accuracies after each checked epoch)
    robustness_check: Mapping[str, Any] | None = None
    # a third-party file
    format: str | None = None
    file_sha256: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_zoo(self) -> bool:
        return self.kind == ModelKind.ZOO

    @property
    def model_name(self) -> str:
        """The name tables and queries use: the zoo model's name, else the label."""
        return str(self.name) if self.is_zoo and self.name else self.label

    @property
    def title(self) -> str:
        """``baseline natural seed 1`` for a zoo model, else the label."""
        return f"{self.name} {self.training} seed {self.seed}" if self.is_zoo else self.label

    def with_data_source(self, source: str) -> ModelInfo:
        return self if self.data_source else replace(self, data_source=source)

    def to_dict(self) -> dict[str, Any]:
        """The JSON the store holds: every field that is set, ``extra``'s keys beside them."""
        out: dict[str, Any] = dict(self.extra)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or value is None:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else str(value) if f.name == "kind" else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInfo:
        """A stored description (any release's): known keys become fields, the rest ``extra``."""
        known = {f.name for f in fields(cls)} - {"extra"}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known and v is not None}
        kind = str(values.get("kind", ModelKind.THIRD_PARTY))
        values["kind"] = ModelKind(kind) if kind in ModelKind._value2member_map_ else ModelKind.UNKNOWN
        values.setdefault("label", str(data.get("name") or "unknown"))
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})


UNKNOWN_MODEL = ModelInfo(label="unknown", kind=ModelKind.UNKNOWN)
