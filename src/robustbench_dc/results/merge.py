"""Combine workspaces computed apart (another day, another machine, another store) into one, for one report.

A study's seeds can run in separate invocations, each into its own workspace; ``merge_workspaces`` copies into
the destination every result cell and every trained checkpoint it lacks. A cell is the same cell only when its
whole key is equal (function, data, subset, role, attack and parameters, backend, eps, precision, source), so
nothing is computed twice and nothing is combined that the key tells apart; reports then aggregate over training
seeds only, as always. Each copied cell keeps its provenance (device, versions, machine) and gains the workspace
it came from. A key present on both sides with other numbers (the same function attacked on two CPUs whose
floating-point paths differ) is kept as the destination has it and counted as a conflict, never averaged; so is a
study's model that each side records as another function (a study file changed between them). A
function's description gains the fields the destination's lacks (a later release's, such as the card's
per-epoch robustness check), so that a report over the merged store shows them for every seed.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustbench_dc.errors import UserError
from robustbench_dc.model_info import ModelInfo
from robustbench_dc.results.store import ResultStore, StudyTarget
from robustbench_dc.workspace import CARD_FILE, RUN_FILE, models_dir, named_run, recipe_run_dir, results_path


@dataclass
class MergeSummary:
    cells_added: int = 0
    cells_same: int = 0
    cell_conflicts: list[str] = field(default_factory=list)  # store keys whose numbers differ between the workspaces
    checkpoints_added: int = 0
    checkpoints_same: int = 0
    checkpoint_conflicts: list[str] = field(default_factory=list)  # run directories holding other weights on each side
    target_conflicts: list[str] = field(default_factory=list)  # a study's model that is another function on each side
    refused: list[str] = field(default_factory=list)  # what failed its check, and why: not copied

    def lines(self) -> list[str]:
        out = [
            f"result cells: {self.cells_added} added, {self.cells_same} already there",
            f"checkpoints: {self.checkpoints_added} added, {self.checkpoints_same} already there",
        ]
        if self.cell_conflicts:
            out.append(
                f"{len(self.cell_conflicts)} cell(s) exist on both sides with other numbers (same function, data and "
                "attack computed on machines whose floating-point paths differ?); the destination's were kept, none "
                "was averaged"
            )
        for run in self.checkpoint_conflicts:
            out.append(f"{run}: the two workspaces hold different weights under this name; the destination's were kept")
        for why in self.refused:
            out.append(f"refused, not copied: {why}")
        for target in self.target_conflicts:
            out.append(
                f"{target}: another model on each side (was the study file changed between them?); the destination's "
                "stays the study's, and its report shows that one"
            )
        return out


def merge_workspaces(destination: Path, sources: list[Path]) -> MergeSummary:
    """Copy every cell and checkpoint of ``sources`` that ``destination`` lacks (see the module docstring)."""
    destination = Path(destination)
    summary = MergeSummary()
    for source in map(Path, sources):
        if not results_path(source).is_file() and not models_dir(source).is_dir():
            raise UserError(
                f"{source}: not a workspace (no {results_path(source).name} and no models/); give the folder passed as "
                "--workspace"
            )
        if source.resolve() == destination.resolve():
            raise UserError(f"{source}: is the destination workspace itself")
        _merge_checkpoints(destination, source, summary)
        if results_path(source).is_file():
            _merge_cells(destination, source, summary)
    return summary


def _merge_checkpoints(destination: Path, source: Path, summary: MergeSummary) -> None:
    root = models_dir(source)
    if not root.is_dir():
        return
    for card in sorted(root.glob(f"*/*/*/*/{CARD_FILE}")):
        run = card.parent.relative_to(root)
        incoming, named = _card(card), named_run(models_dir(destination) / run)
        train_config = incoming.get("train_config")
        target = named if train_config is None else recipe_run_dir(named, train_config)  # another recipe: beside it
        if (target / CARD_FILE).is_file():
            same = _weights_sha(target / CARD_FILE, _card(target / CARD_FILE)) == _weights_sha(card, incoming)
            summary.checkpoints_same += same
            if not same:
                summary.checkpoint_conflicts.append(str(run))
            continue
        why = _unsound_weights(card, incoming)
        if why:
            summary.refused.append(f"{card.parent}: {why}")
            continue
        partial = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # a folder of this merge's own: two merges into one store never share (or delete) each other's copy
            partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".merging", dir=target.parent))
            shutil.copytree(
                card.parent,
                partial,
                ignore=shutil.ignore_patterns("resume.pt", RUN_FILE, ".write-check.*"),
                dirs_exist_ok=True,
            )
        except OSError as exc:  # a full or read-only disk: no partial copy stays behind
            if partial is not None:
                shutil.rmtree(partial, ignore_errors=True)
            raise UserError(
                f"cannot copy {card.parent} into {destination} ({exc.strerror or exc}); the runs merged before it are "
                f"complete ({summary.checkpoints_added}), nothing else was written: free space and merge again"
            ) from None
        summary.checkpoints_added += _put_in_place(partial, target)


def _put_in_place(partial: Path, target: Path) -> int:
    """Rename the finished copy into place (an unfinished run there, resume state only, is replaced); 0 where another
    merge put the same run there first (its copy stays, ours goes)."""
    if target.exists() and not (target / CARD_FILE).is_file():
        shutil.rmtree(target, ignore_errors=True)
    try:
        partial.rename(target)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if (target / CARD_FILE).is_file():
            return 0
        raise
    return 1


def _unsound_weights(card: Path, data: dict[str, Any]) -> str:
    """Why a checkpoint must not be copied (its weights missing, outside its folder or not those its card names), or
    ''."""
    from robustbench_dc.files import sha256_file

    try:
        weights = card.parent / str(data["weights"]["file"])
    except (KeyError, TypeError):
        return "its card names no weights file"
    if weights.resolve().parent != card.parent.resolve() or not weights.is_file():
        return f"its weights file {weights.name!r} is missing or outside its folder"
    if sha256_file(weights) != _weights_sha(card, data):
        return "its weights' sha256 is not the one its card records (corrupt, truncated or replaced)"
    return ""


def _card(card: Path) -> dict[str, Any]:
    try:
        data = json.loads(card.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise TypeError(type(data).__name__)
        return data
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(
            f"{card}: unreadable checkpoint card ({type(exc).__name__}); repair or remove that run before merging"
        ) from exc


def _weights_sha(card: Path, data: dict[str, Any]) -> str:
    try:
        return str(data["weights"]["sha256"])
    except (KeyError, TypeError) as exc:
        raise UserError(f"{card}: a checkpoint card without its weights' sha256; repair or remove that run") from exc


def _merge_cells(destination: Path, source: Path, summary: MergeSummary) -> None:
    try:
        conn = sqlite3.connect(f"file:{results_path(source)}?mode=ro", uri=True)
        rows = conn.execute(
            "SELECT key, function, role, identity, metrics, provenance, seconds, created FROM cells"
        ).fetchall()
        functions = conn.execute("SELECT function, info FROM functions").fetchall()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        targets = (
            conn.execute("SELECT study, label, training, seed, function, spec FROM study_targets").fetchall()
            if "study_targets" in tables
            else []
        )
        conn.close()
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{results_path(source)}: cannot read its result cells ({exc})") from exc
    rows, functions, targets = _sound(rows, functions, targets, summary, results_path(source))
    with ResultStore(destination) as store:
        known = store.functions()
        for function, info in functions:
            # The same function's description: what the destination lacks (a field a later release records, such
            # as the card's robustness check) is taken from the source; what both hold stays the destination's.
            mine = known[function].to_dict() if function in known else {}
            fuller = {**json.loads(info), **mine}
            if fuller != mine:
                store.put_function(function, ModelInfo.from_dict(fuller))
        added, same, conflicts = store.import_cells(rows, str(source.resolve()))
        recorded = store.study_targets()
        for (
            study,
            label,
            training,
            seed,
            function,
            spec,
        ) in targets:  # which model of a study each function is (its report reads it)
            target = StudyTarget(study, label, training, seed)
            if target not in recorded:
                store.put_study_target(target, function, spec)
            elif recorded[target][0] != function:
                summary.target_conflicts.append(f"study {study}: {target.describe()}")
    summary.cells_added += added
    summary.cells_same += same
    summary.cell_conflicts += conflicts


def _sound(rows: list, functions: list, targets: list, summary: MergeSummary, where: Path) -> tuple[list, list, list]:
    """The rows that pass their checks: a cell's identity parses as a key whose hash is the row's key, its metrics and
    provenance are JSON objects; a function's description and a study target's spec parse. What fails is named in
    ``summary.refused`` and left out, so a corrupted source cannot break the destination's next report."""
    from robustbench_dc.results.cells import CellKey

    def objects(*texts: str) -> bool:
        try:
            return all(isinstance(json.loads(t), dict) for t in texts)
        except (TypeError, ValueError):
            return False

    good_rows = []
    for row in rows:
        key, function, _, identity, metrics, provenance = row[:6]
        try:
            parsed = CellKey.from_dict(json.loads(identity))
            ok = parsed.store_key() == key and parsed.function == function and objects(metrics, provenance)
        except (TypeError, ValueError, KeyError, AttributeError):
            ok = False
        if ok:
            good_rows.append(row)
        else:
            summary.refused.append(f"{where}: cell {str(key)[:16]}: its identity, metrics or provenance do not check")
    good_functions = []
    for function, info in functions:
        try:
            ModelInfo.from_dict(json.loads(info))
            good_functions.append((function, info))
        except (TypeError, ValueError, KeyError, AttributeError):
            summary.refused.append(f"{where}: the description of function {str(function)[:16]} does not parse")
    good_targets = [t for t in targets if objects(t[5]) or t[5] == ""]
    summary.refused += [
        f"{where}: study target {t[0]} {t[1]}: its spec does not parse" for t in targets if t not in good_targets
    ]
    return good_rows, good_functions, good_targets
