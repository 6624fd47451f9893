"""Queries over stored cells: what tables, claims, diagnostics and plots read.

A query never pools cells that differ in anything but the training seed: cells that match a question are
grouped by everything else (model recipe, data, subset, role, attack and parameters, backend and version,
eps, precision, and the source's recipe); more than one group is an error that says what differs.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Collection, Iterable

from robustbench_dc.errors import UserError
from robustbench_dc.model_info import UNKNOWN_MODEL, ModelInfo
from robustbench_dc.names import CellKind, Role, Threat, eps_label
from robustbench_dc.protocol import protocol_source_config
from robustbench_dc.results.cells import canonical_json
from robustbench_dc.results.store import ResultStore, StoredCell, StudyTarget
from robustbench_dc.stats import t_interval, wilson_interval
from robustbench_dc.workspace import results_path, workspace_dir


@dataclass(frozen=True)
class Entry:
    """A stored cell with the descriptions of its model and of its black-box source."""

    cell: StoredCell
    model: ModelInfo
    source: ModelInfo | None

    @property
    def key(self):
        return self.cell.key

    @property
    def metrics(self) -> dict[str, Any]:
        return self.cell.metrics

    @property
    def seed(self) -> int | None:
        return self.model.seed if self.model.is_zoo else None

    @property
    def protocol_source(self) -> bool:
        """Whether the source is the one the protocol prescribes for this model (see ``targets.PROTOCOL_SOURCE``)."""
        if self.source is None or self.model.train_config is None or self.source.train_config is None:
            return False
        return canonical_json(self.source.train_config) == canonical_json(
            protocol_source_config(dict(self.model.train_config))
        )

    def group(self) -> dict[str, Any]:
        """Everything but the training seed (and the identities that follow from it)."""
        k = self.key.to_dict()
        for f in ("function", "source"):
            k.pop(f)
        model = self.model.recipe or self.key.function
        source = (
            ""
            if self.source is None
            else ("protocol" if self.protocol_source else self.source.recipe or self.key.source)
        )
        return {**k, "model": model, "source": source}


@dataclass(frozen=True)
class Aggregate:
    """One result over training seeds: mean and sd of accuracy %, and its 95% interval (Wilson for one seed,
    a t-interval over the seeds' accuracies for several, clipped to [0, 100])."""

    mean: float
    std: float
    low: float
    high: float
    seeds: int
    n: int  # images per seed
    entries: tuple[Entry, ...] = ()

    def text(self) -> str:
        spread = f" ±{self.std:.1f} sd over {self.seeds} seeds" if self.seeds > 1 else ""
        return f"{self.mean:.2f}{spread} [{self.low:.1f}, {self.high:.1f}]"


def aggregate(entries: list[Entry]) -> Aggregate | None:
    if not entries:
        return None
    accs = [100 * float(e.metrics["accuracy"]) for e in entries]
    n = int(entries[0].metrics["n"])
    if len(entries) == 1:
        low, high = wilson_interval(int(entries[0].metrics["correct"]), n)
        return Aggregate(accs[0], 0.0, 100 * low, 100 * high, 1, n, tuple(entries))
    low, high = t_interval(accs)  # clipped to what an accuracy can be: two seeds' t-interval is 12.7 sd wide
    low, high = max(low, 0.0), min(high, 100.0)
    return Aggregate(statistics.fmean(accs), statistics.stdev(accs), low, high, len(accs), n, tuple(entries))


#: the attack name of a worst case over several attacks (``Results.worst_case``); never a stored cell's
WORST_CASE = "worst-case"


def attack_id(e: Entry) -> str:
    """An attack with its parameters: PGD-20 and PGD-40 are two attacks of one name."""
    return f"{e.key.attack} {e.key.params}"


class AmbiguousResults(UserError):
    """Cells that answer one question differ in more than the training seed."""


def _differences(groups: list[dict[str, Any]]) -> str:
    fields = sorted(k for k in groups[0] if len({canonical_json(g[k]) for g in groups}) > 1)
    return ", ".join(f"{f} ({' / '.join(sorted({str(g[f])[:24] for g in groups}))})" for f in fields)


def _key_is(field: str, value: Any) -> Callable[["Entry"], bool]:
    return lambda e: getattr(e.key, field) == value


class Results:
    """The entries of one dataset, filterable; ``accuracy`` is the one way to read a table cell."""

    def __init__(self, entries: Iterable[Entry], targets: dict[StudyTarget, str] | None = None) -> None:
        self.entries = list(entries)
        self.targets = targets or {}  # each study's evaluated models -> function (ResultStore.study_targets)

    @classmethod
    def load(cls, workspace: str | Path | None, dataset: str) -> "Results":
        ws = workspace_dir(workspace)
        if not results_path(ws).exists():
            raise UserError(f"no results in {ws}: evaluate models first (dc-robust eval ... or dc-robust reproduce)")
        with ResultStore(ws, readonly=True) as store:
            functions = store.functions()
            cells = [c for c in store.cells() if c.key.dataset == dataset]
            targets = {t: function for t, (function, _) in store.study_targets().items()}
        if not cells:
            raise UserError(f"no results for dataset {dataset!r} in {ws}: evaluate models first")
        return cls(
            (
                Entry(
                    c,
                    functions.get(c.key.function, UNKNOWN_MODEL),
                    functions.get(c.key.source) if c.key.source else None,
                )
                for c in cells
            ),
            targets,
        )

    def __len__(self) -> int:
        return len(self.entries)

    def where(
        self,
        *,
        model: str | None = None,
        training: str | None = None,
        role: Role | None = None,
        kind: CellKind | None = None,
        threat: Threat | None = None,
        attack: str | None = None,
        eps: float | None = None,
        function: str | None = None,
        arch: str | None = None,
        width: float | None = None,
        n: int | None = None,
        protocol_source: bool | None = None,
        seeds: Collection[int] | None = None,
        functions: Collection[str] | None = None,
    ) -> "Results":
        """Entries matching every given field (``model`` is a zoo name or a third-party label; ``seeds`` keeps the
        zoo models of those training seeds and every third-party model, which has none; ``functions`` keeps those
        evaluated functions, such as a study's own models)."""
        keys = {"role": role, "kind": kind, "threat": threat, "attack": attack, "function": function}
        tests = [_key_is(f, v) for f, v in keys.items() if v is not None]
        if model is not None:
            tests.append(lambda e: e.model.model_name == model)
        if training is not None:
            tests.append(lambda e: e.model.training == training)
        if eps is not None:
            tests.append(lambda e: math.isclose(e.key.eps, eps, abs_tol=1e-12))
        if arch is not None:
            tests.append(lambda e: e.model.arch in (arch, None))
        if width is not None:
            tests.append(lambda e: e.model.width is None or math.isclose(float(e.model.width), width))
        if n is not None:
            tests.append(lambda e: e.key.kind != CellKind.ACCURACY or e.key.subset.n == n)
        if protocol_source is not None:
            tests.append(lambda e: e.protocol_source == protocol_source)
        if seeds is not None:
            tests.append(lambda e: e.seed is None or e.seed in seeds)
        if functions is not None:
            tests.append(lambda e: e.key.function in functions)
        return Results([e for e in self.entries if all(t(e) for t in tests)], self.targets)

    def groups(self) -> list[list[Entry]]:
        """The entries split into groups that differ in more than the training seed."""
        by: dict[str, list[Entry]] = {}
        for e in self.entries:
            by.setdefault(canonical_json(e.group()), []).append(e)
        return list(by.values())

    def single(self, what: str) -> Aggregate | None:
        """The one aggregate over training seeds these entries make, or an error naming what differs."""
        groups = self.groups()
        if not groups:
            return None
        if len(groups) > 1:
            raise AmbiguousResults(
                f"{what}: {len(groups)} sets of cells differ in more than the training seed: "
                f"{_differences([g[0].group() for g in groups])}; narrow the report (--arch, --width, --n) or use "
                "another workspace"
            )
        entries = groups[0]
        seeds = [e.seed for e in entries]
        if len(set(seeds)) != len(seeds):
            raise AmbiguousResults(
                f"{what}: several models share recipe and seed {seeds} (retrained with other code?); use another "
                "workspace"
            )
        return aggregate(sorted(entries, key=lambda e: e.seed or 0))

    def accuracy(
        self,
        model: str | None,
        training: str | None,
        attack: str,
        eps: float | None = None,
        *,
        threat: Threat = Threat.WHITE_BOX,
        role: Role = Role.TABLE,
        what: str = "",
        **filters: Any,
    ) -> Aggregate | None:
        """Accuracy of ``model`` (zoo name or label; None: a selection already narrowed to one model) trained as
        ``training`` under ``attack`` at ``eps`` (clean: ``attack="none"``), aggregated over training seeds: the one
        cell lookup of every report. Black-box cells: the protocol source only, unless ``protocol_source=False`` is
        given. ``what`` names the model in an ambiguity's message (default: ``model training``)."""
        if attack == "none":
            threat, eps = Threat.NONE, None
        if threat == Threat.BLACK_BOX:
            filters.setdefault("protocol_source", True)
        sel = self.where(
            model=model,
            training=training,
            role=role,
            kind=CellKind.ACCURACY,
            threat=threat,
            attack=attack,
            eps=eps,
            **filters,
        )
        what = what or f"{model} {training}"
        return sel.single(f"{what} {threat} {attack}" + ("" if eps is None else f" at eps {eps_label(eps)}"))

    def worst_case(
        self,
        model: str | None,
        training: str | None,
        eps: float,
        *,
        role: Role = Role.TABLE,
        what: str = "",
        **filters: Any,
    ) -> Aggregate | None:
        """Per image, the worst case over every white-box attack run on ``model`` at ``eps`` (an image counts as right
        only if every attack left it right), aggregated over training seeds like ``accuracy``. Each seed's worst case
        is over the attacks every seed ran (named in the result's ``attacks``), so that seeds differ in nothing else.
        None where a seed's cells lack per-image outcomes or were not all made on one set of images."""
        sel = self.where(
            model=model,
            training=training,
            role=role,
            kind=CellKind.ACCURACY,
            threat=Threat.WHITE_BOX,
            eps=eps,
            **filters,
        )
        by_function: dict[str, list[Entry]] = {}
        for e in sel.entries:
            by_function.setdefault(e.key.function, []).append(e)
        if not by_function:
            return None
        attack_sets = [{attack_id(e) for e in entries} for entries in by_function.values()]
        shared = set.intersection(*attack_sets)
        worst = []
        for entries in by_function.values():
            used = [e for e in entries if attack_id(e) in shared]
            outcomes = [e.metrics.get("per_example", "") for e in used]
            images = {(e.key.data, e.key.subset) for e in used}
            if len(images) > 1 or not all(outcomes) or len({len(o) for o in outcomes}) > 1:
                return None
            right = "".join("1" if all(o[i] == "1" for o in outcomes) else "0" for i in range(len(outcomes[0])))
            n = len(right)
            key = replace(used[0].key, attack=WORST_CASE, params=canonical_json(sorted(shared)), backend="")
            metrics = {"accuracy": right.count("1") / n, "correct": right.count("1"), "n": n, "per_example": right}
            worst.append(Entry(replace(used[0].cell, key=key, metrics=metrics), used[0].model, None))
        return Results(worst).single(what or f"{model} {training} worst case at eps {eps_label(eps)}")

    def models(self) -> list[tuple[str, str]]:
        """(name, training) of every model with cells here, zoo names as such, others by label."""
        seen: dict[tuple[str, str], None] = {}
        for e in self.entries:
            seen[(e.model.model_name, e.model.training)] = None
        return list(seen)

    def eps_values(self, threat: str = Threat.WHITE_BOX) -> list[float]:
        return sorted({e.key.eps for e in self.entries if e.key.kind == CellKind.ACCURACY and e.key.threat == threat})

    def subsets(self) -> list[int]:
        return sorted({e.key.subset.n for e in self.entries if e.key.kind == CellKind.ACCURACY})
