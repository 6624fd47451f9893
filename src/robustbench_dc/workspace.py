"""The one owner of the workspace layout::

WORKSPACE/models/<dataset>/<model>/<training>/<arch>-w<width>-seed<seed>/{model.safetensors, card.json}
WORKSPACE/models/<dataset>/<model>/<training>/<arch>-w<width>-seed<seed>+<hash>/   another recipe of the same name
WORKSPACE/results.sqlite           result cells (robustbench_dc.results.store)
WORKSPACE/cache/                   decoded image folders, keyed by their files' content
WORKSPACE/transfer/                adversarial examples crafted on black-box sources
WORKSPACE/reports/<name>/          reports
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from platformdirs import user_data_dir

from robustbench_dc.errors import UserError

RESULTS_FILE = "results.sqlite"
CARD_FILE = "card.json"  # a finished run's card (robustbench_dc.checkpoint)
RUN_FILE = "run.json"  # an unfinished run's training configuration, until its card is written
WORKSPACE_ENV = "DC_ROBUST_WORKSPACE"


def default_workspace() -> Path:
    """The user's own data folder for robustbench-dc (``~/.local/share/robustbench-dc`` on Linux): one store for
    every call, wherever it is made from, and nothing written into the current directory unasked."""
    return Path(user_data_dir("robustbench-dc", appauthor=False))


def workspace_dir(workspace: str | os.PathLike | None = None) -> Path:
    """``workspace``, else ``$DC_ROBUST_WORKSPACE``, else the user's data folder (``default_workspace``); a path that
    exists and is not a folder is refused here, before anything looks inside it."""
    path = Path(workspace or os.environ.get(WORKSPACE_ENV) or default_workspace())
    if path.exists() and not path.is_dir():
        raise UserError(f"workspace {path} is a file, not a folder; give --workspace a folder (it is made if missing)")
    return path


def models_dir(workspace: Path) -> Path:
    return workspace / "models"


def run_dir(workspace: Path, *, dataset: str, model: str, training: str, arch: str, width: float, seed: int) -> Path:
    return models_dir(workspace) / dataset / model / training / f"{arch}-w{width:g}-seed{seed}"


def recipe_run_dir(named: Path, train_config: dict[str, Any]) -> Path:
    """The folder of the run of ``train_config``: ``named`` (its ``run_dir``), unless that holds a run of another
    configuration, then ``named+<hash of the configuration>`` beside it. Folder names carry no epoch count, optimiser
    or schedule, and one study can need two trainings that differ in those only (its FGSM models trained longer than
    its natural ones, each with its own protocol source), so both live in one workspace; a folder keeps the name it
    was first given."""
    held = _held_config(named)
    if held is None or _canonical(held) == _canonical(train_config):
        return named
    digest = hashlib.sha256(_canonical(train_config).encode()).hexdigest()[:12]
    return named.with_name(f"{named.name}+{digest}")


def named_run(run: Path) -> Path:
    """The ``run_dir`` that a run folder (``recipe_run_dir``'s answer) was named after."""
    return run.with_name(run.name.split("+", 1)[0])


def _held_config(run: Path) -> dict[str, Any] | None:
    """The training configuration a run folder holds (its card's, else its unfinished run's), None if none or
    unreadable (the training that opens it reports a damaged card)."""
    for name in (CARD_FILE, RUN_FILE):
        try:
            return json.loads((run / name).read_text())["train_config"]
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return None


def _canonical(train_config: dict[str, Any]) -> str:
    return json.dumps(train_config, sort_keys=True)


def results_path(workspace: Path) -> Path:
    return workspace / RESULTS_FILE


def cache_dir(workspace: Path) -> Path:
    return workspace / "cache"


def transfer_dir(workspace: Path) -> Path:
    return workspace / "transfer"


def reports_dir(workspace: Path, name: str) -> Path:
    return workspace / "reports" / name
