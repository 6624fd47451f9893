"""The result store: one SQLite database per workspace, one row (and one transaction) per result cell.

A cell is identified by everything that determines its value (model weights' sha256, dataset, image
subset, threat, attack and its parameters, backend, epsilon, source model); its key is the sha256 of that
identity, so running the same evaluation again finds the cell instead of recomputing it, and a run killed
mid-way loses at most the cell in progress.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pandas as pd

RESULTS_FILE = "results.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    sha256 TEXT PRIMARY KEY,
    info TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY,
    model_sha256 TEXT NOT NULL,
    kind TEXT NOT NULL,
    identity TEXT NOT NULL,
    metrics TEXT NOT NULL,
    seconds REAL NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cells_model ON cells (model_sha256);
"""


def cell_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


class ResultStore:
    """Read and write result cells; safe to reopen after an interruption."""

    def __init__(self, workspace: Path) -> None:
        workspace.mkdir(parents=True, exist_ok=True)
        self.path = workspace / RESULTS_FILE
        self._conn = sqlite3.connect(self.path, timeout=60)
        self._conn.execute("PRAGMA journal_mode=WAL")
        with self._conn:
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put_model(self, sha256: str, info: dict[str, Any]) -> None:
        with self._conn:
            self._conn.execute("INSERT OR REPLACE INTO models VALUES (?, ?)", (sha256, json.dumps(info, sort_keys=True)))

    def get(self, identity: dict[str, Any]) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT metrics, seconds FROM cells WHERE key = ?", (cell_key(identity),)).fetchone()
        if row is None:
            return None
        return {**json.loads(row[0]), "seconds": row[1]}

    def put(self, identity: dict[str, Any], metrics: dict[str, Any], seconds: float) -> None:
        """Store one cell in its own transaction."""
        with self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?, ?, ?, ?)",
                (cell_key(identity), identity["model_sha256"], identity["kind"], json.dumps(identity, sort_keys=True),
                 json.dumps(metrics, sort_keys=True), seconds, time.strftime("%Y-%m-%dT%H:%M:%S%z")),
            )  # fmt: skip

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0])

    def frame(self) -> pd.DataFrame:
        """Every cell as one row: identity fields, metrics, and the model's info prefixed ``model.``."""
        models = {sha: json.loads(info) for sha, info in self._conn.execute("SELECT sha256, info FROM models")}
        rows = []
        for identity, metrics, seconds, created in self._conn.execute("SELECT identity, metrics, seconds, created FROM cells"):
            ident = json.loads(identity)
            row = {**ident, **json.loads(metrics), "seconds": seconds, "created": created}
            row.update({f"model.{k}": v for k, v in models.get(ident["model_sha256"], {}).items()})
            rows.append(row)
        return pd.DataFrame(rows)
