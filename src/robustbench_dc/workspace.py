"""The one owner of the workspace layout::

WORKSPACE/models/<dataset>/<model>/<training>/<arch>-w<width>-seed<seed>/{model.safetensors, card.json}
WORKSPACE/results.sqlite           result cells (robustbench_dc.results.store)
WORKSPACE/cache/                   decoded image folders, keyed by their files' content
WORKSPACE/transfer/                adversarial examples crafted on black-box sources
WORKSPACE/reports/<name>/          reports
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_data_dir

RESULTS_FILE = "results.sqlite"
WORKSPACE_ENV = "DC_ROBUST_WORKSPACE"


def default_workspace() -> Path:
    """The user's own data folder for robustbench-dc (``~/.local/share/robustbench-dc`` on Linux): one store for
    every call, wherever it is made from, and nothing written into the current directory unasked."""
    return Path(user_data_dir("robustbench-dc", appauthor=False))


def workspace_dir(workspace: str | os.PathLike | None = None) -> Path:
    """``workspace``, else ``$DC_ROBUST_WORKSPACE``, else the user's data folder (``default_workspace``)."""
    return Path(workspace or os.environ.get(WORKSPACE_ENV) or default_workspace())


def models_dir(workspace: Path) -> Path:
    return workspace / "models"


def run_dir(workspace: Path, *, dataset: str, model: str, training: str, arch: str, width: float, seed: int) -> Path:
    return models_dir(workspace) / dataset / model / training / f"{arch}-w{width:g}-seed{seed}"


def results_path(workspace: Path) -> Path:
    return workspace / RESULTS_FILE


def cache_dir(workspace: Path) -> Path:
    return workspace / "cache"


def transfer_dir(workspace: Path) -> Path:
    return workspace / "transfer"


def reports_dir(workspace: Path, name: str) -> Path:
    return workspace / "reports" / name
