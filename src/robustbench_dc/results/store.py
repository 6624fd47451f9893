"""The result store: one SQLite database per workspace, one row and one transaction per result cell.

Cells are addressed by :class:`~robustbench_dc.results.cells.CellKey`. ``cell()`` is the one path that finds
a stored cell or computes and stores it, so a run killed mid-way loses at most the cell in progress.
A database written by an older schema is never read for reuse: its tables are renamed aside, with a warning.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from robustbench_dc.errors import UserError
from robustbench_dc.model_info import ModelInfo
from robustbench_dc.results.cells import CellKey, canonical_json
from robustbench_dc.workspace import results_path

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS functions (function TEXT PRIMARY KEY, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    role TEXT NOT NULL,
    identity TEXT NOT NULL,
    metrics TEXT NOT NULL,
    provenance TEXT NOT NULL,
    seconds REAL NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cells_function ON cells (function);
CREATE TABLE IF NOT EXISTS study_targets (
    study TEXT NOT NULL,
    label TEXT NOT NULL,
    training TEXT NOT NULL,
    seed INTEGER NOT NULL,
    function TEXT NOT NULL,
    spec TEXT NOT NULL,
    PRIMARY KEY (study, label, training, seed)
);
"""


@dataclass(frozen=True)
class StudyTarget:
    """One evaluated model of a study, as its report names it: a study report finds the model's cells through the
    function the store recorded for it when it was evaluated, never through its checkpoint."""

    study: str
    label: str
    training: str  # the regime's label, or "external" for a third-party checkpoint
    seed: int  # -1: a third-party checkpoint

    def describe(self) -> str:
        return f"{self.label} {self.training}" + ("" if self.seed < 0 else f" seed {self.seed}")


@dataclass(frozen=True)
class StoredCell:
    key: CellKey
    metrics: dict[str, Any]
    provenance: dict[str, Any]
    seconds: float
    cached: bool = True


class ResultStore:
    """Read and write result cells; safe to reopen after an interruption and to share between processes."""

    def __init__(self, workspace: Path, *, readonly: bool = False) -> None:
        """``readonly``: only read (a report): the store may sit on a read-only disk or be another user's."""
        self.path = results_path(workspace)
        try:
            if readonly:
                self._conn = self._open_readonly()
                self._tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=120, isolation_level=None)  # transactions are explicit
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._migrate()
            self._tables = {"study_targets"}
        except OSError as exc:
            raise UserError(
                f"{self.path}: cannot create the result store ({exc.strerror or exc}); choose a writable --workspace"
            ) from exc
        except sqlite3.OperationalError as exc:
            if not any(w in str(exc).lower() for w in ("disk", "readonly", "read-only", "locked", "unable to open")):
                raise UserError(
                    f"{self.path}: cannot open the result store ({exc}); if it is damaged, move it away to start a "
                    "new one (its cells are then recomputed)"
                ) from exc
            raise UserError(  # a full or read-only disk, a lock: the file itself is sound
                f"{self.path}: cannot write to the result store ({exc}); free disk space or make the workspace "
                "writable, then run again (the store itself is not damaged: keep it)"
            ) from exc
        except sqlite3.DatabaseError as exc:
            raise UserError(
                f"{self.path}: cannot open the result store ({exc}); if it is damaged, move it away to start a new one "
                "(its cells are then recomputed)"
            ) from exc

    def _open_readonly(self) -> sqlite3.Connection:
        """Read-only; on a disk where SQLite cannot even make its -shm file, as an immutable file (nothing writes
        there)."""
        uri = self.path.resolve().as_uri()
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=120, isolation_level=None)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return conn
        except sqlite3.OperationalError:
            return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=120, isolation_level=None)

    def _migrate(self) -> None:
        """Create or check the schema in one write transaction, so that processes opening a new store at the same
        time never see each other's half-made schema."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            version = None
            if "meta" in tables:
                row = self._conn.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
                version = int(row[0]) if row else None
            if "cells" in tables and version != SCHEMA_VERSION:
                old = version or 1
                for t in ("cells", "models", "functions"):
                    if t in tables:
                        self._conn.execute(f"ALTER TABLE {t} RENAME TO {t}_v{old}_{int(time.time())}")
                log.warning(
                    "%s: results of an older schema (%s) are kept aside and not reused: their cells do not identify "
                    "the evaluated function and data exactly; they will be recomputed",
                    self.path,
                    old,
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        """One statement in its own transaction; a full disk or a read-only store is a UserError saying what to do."""
        try:
            with self._conn:
                self._conn.execute(sql, args)
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "full" in text:
                raise UserError(
                    f"{self.path}: the disk is full ({text}); free some space, then run the same command again (every "
                    "finished cell is kept)"
                ) from exc
            if "readonly" in text or "read-only" in text:
                raise UserError(
                    f"{self.path}: the result store is read-only ({text}); reports can read it, but computing needs a "
                    "writable --workspace (copy it, or dc-robust merge it into one)"
                ) from exc
            raise

    def put_function(self, function: str, info: ModelInfo) -> None:
        self._write("INSERT OR REPLACE INTO functions VALUES (?, ?)", (function, canonical_json(info.to_dict())))

    def functions(self) -> dict[str, ModelInfo]:
        return {
            f: ModelInfo.from_dict(json.loads(i)) for f, i in self._conn.execute("SELECT function, info FROM functions")
        }

    def put_study_target(self, target: StudyTarget, function: str, spec: str) -> None:
        """Record that ``target`` is ``function``; ``spec`` says what was planned for it (its training or file), so
        that a changed study file is noticed (see ``pipeline.record_targets``)."""
        self._write(
            "INSERT OR REPLACE INTO study_targets VALUES (?, ?, ?, ?, ?, ?)",
            (target.study, target.label, target.training, target.seed, function, spec),
        )

    def study_targets(self, study: str | None = None) -> dict[StudyTarget, tuple[str, str]]:
        """Each recorded target of ``study`` (of every study: None) -> (function, spec)."""
        if "study_targets" not in self._tables:  # a store written before targets were recorded, opened read-only
            return {}
        query, args = "SELECT study, label, training, seed, function, spec FROM study_targets", ()  # type: tuple[str, tuple[str, ...]]
        if study is not None:
            query, args = query + " WHERE study = ?", (study,)
        return {
            StudyTarget(s, label, training, seed): (function, spec)
            for s, label, training, seed, function, spec in self._conn.execute(query, args)
        }

    def get(self, key: CellKey) -> StoredCell | None:
        row = self._conn.execute(
            "SELECT metrics, provenance, seconds FROM cells WHERE key = ?", (key.store_key(),)
        ).fetchone()
        if row is None:
            return None
        return StoredCell(key, json.loads(row[0]), json.loads(row[1]), row[2])

    def put(self, key: CellKey, metrics: dict[str, Any], seconds: float, provenance: dict[str, Any]) -> None:
        """Store one cell in its own transaction."""
        self._write(
            "INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.store_key(),
                key.function,
                key.role,
                canonical_json(key.to_dict()),
                canonical_json(metrics),
                canonical_json(provenance),
                seconds,
                time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            ),
        )

    def cell(
        self,
        key: CellKey,
        compute: Callable[[], dict[str, Any]],
        *,
        provenance: dict[str, Any],
        recompute: bool = False,
        on_compute: Callable[[CellKey], None] | None = None,
    ) -> StoredCell:
        """The stored cell for ``key``, or compute, store and return it (the one get/compute/put path)."""
        if not recompute:
            stored = self.get(key)
            if stored is not None:
                return stored
        if on_compute is not None:
            on_compute(key)
        t0 = time.perf_counter()
        metrics = compute()
        seconds = time.perf_counter() - t0
        self.put(key, metrics, seconds, provenance)
        return StoredCell(key, metrics, provenance, seconds, cached=False)

    def import_cells(self, rows: list[tuple], origin: str) -> tuple[int, int, list[str]]:
        """Insert another store's raw cell rows (its ``cells`` table's columns, in order) that this store lacks, in
        one transaction, each copied cell's provenance naming ``origin``; returns (added, equal, keys whose stored
        numbers differ). An existing cell is never replaced."""
        added, same, conflicts = 0, 0, []
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for key, function, role, identity, metrics, provenance, seconds, created in rows:
                there = self._conn.execute("SELECT metrics FROM cells WHERE key = ?", (key,)).fetchone()
                if there is not None:
                    if json.loads(there[0]) == json.loads(metrics):
                        same += 1
                    else:
                        conflicts.append(key)
                    continue
                origin_provenance = canonical_json({**json.loads(provenance), "merged_from": origin})
                self._conn.execute(
                    "INSERT INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, function, role, identity, metrics, origin_provenance, seconds, created),
                )
                added += 1
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return added, same, conflicts

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0])

    def cells(self, function: str | None = None) -> Iterator[StoredCell]:
        """Every stored cell, or those of one evaluated function (an indexed lookup)."""
        query, args = "SELECT identity, metrics, provenance, seconds FROM cells", ()  # type: tuple[str, tuple[str, ...]]
        if function is not None:
            query, args = query + " WHERE function = ?", (function,)
        for identity, metrics, provenance, seconds in self._conn.execute(query, args):
            yield StoredCell(
                CellKey.from_dict(json.loads(identity)), json.loads(metrics), json.loads(provenance), seconds
            )
