"""The identity of one result cell, typed and frozen: the same object gives the store key and the display row.

A stored result is reused only for exactly the same evaluated function, data, image subset, attack with
every parameter, backend and version, epsilon, precision, black-box source and role.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from robustbench_dc.names import CellKind, Role, Threat


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Subset:
    """``n`` of the ``of`` test images, chosen with ``seed`` (the same images for every model)."""

    n: int
    of: int
    seed: int


@dataclass(frozen=True)
class CellKey:
    """Everything that determines a cell's value; ``params`` is the attack's parameters as canonical JSON."""

    function: str  # function identity of the evaluated model (targets.function_identity)
    dataset: str
    data: str  # sha256 of the exact test split's pixels and labels
    subset: Subset
    role: Role
    kind: CellKind
    threat: Threat
    attack: str
    params: str = "{}"
    eps: float = 0.0
    backend: str = ""
    backend_version: str = ""
    precision: str = "fp32"
    source: str = ""  # function identity of the black-box source, "" for none
    batch_size: int = 0  # images per attack batch, for randomised attacks (their draws follow the batching); else 0

    def __post_init__(self) -> None:
        for name, vocabulary in (("role", Role), ("kind", CellKind), ("threat", Threat)):
            value = getattr(self, name)
            try:  # a stored key reads back as strings: its members, typed (and equal to those strings)
                object.__setattr__(self, name, vocabulary(value))
            except ValueError:
                raise ValueError(f"unknown cell {name} {value!r}; valid: {', '.join(vocabulary)}") from None
        json.loads(self.params)

    @property
    def parameters(self) -> dict[str, Any]:
        return json.loads(self.params)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CellKey":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown cell key fields {sorted(unknown)}")
        return cls(**{**d, "subset": Subset(**d["subset"])})

    def store_key(self) -> str:
        return hashlib.sha256(canonical_json(self.to_dict()).encode()).hexdigest()


def attack_params(params: dict[str, Any]) -> str:
    return canonical_json(params)
