"""The trained networks this project ships with its reports (``reports/<study>/models/``), found by name wherever a
user's own store has none of that name, and never written: their cards and weights are the project's published files.

A shipped folder is any folder whose ``models/`` holds checkpoints laid out as a workspace's are: each report of the
source checkout this package runs from, and each folder named in ``$DC_ROBUST_ZOO`` (``os.pathsep``-separated), for an
installed package beside a copy of the reports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from robustbench_dc.workspace import CARD_FILE, models_dir

#: where the source checkout keeps its reports, relative to this package (src/robustbench_dc -> reports)
_CHECKOUT_REPORTS = Path(__file__).resolve().parents[2] / "reports"


def shipped_roots() -> list[Path]:
    """The folders whose ``models/`` hold shipped checkpoints, ``$DC_ROBUST_ZOO``'s first."""
    named = [Path(p) for p in os.environ.get("DC_ROBUST_ZOO", "").split(os.pathsep) if p]
    checkout = (
        sorted(p for p in _CHECKOUT_REPORTS.iterdir() if (p / "models").is_dir()) if _CHECKOUT_REPORTS.is_dir() else []
    )
    return [p for p in named if models_dir(p).is_dir()] + checkout


def store_root(checkpoint: Path) -> Path | None:
    """The folder whose ``models/`` holds ``checkpoint`` (a workspace or a shipped report), or None."""
    for parent in Path(checkpoint).resolve().parents:
        if parent.name == "models":
            return parent.parent
    return None


def is_shipped(checkpoint: Path) -> bool:
    """Whether a checkpoint is one the project publishes: under a shipped folder, or tracked by git."""
    resolved = Path(checkpoint).resolve()
    if any(root.resolve() in resolved.parents for root in shipped_roots()):
        return True
    return _tracked(resolved / CARD_FILE if resolved.is_dir() else resolved)


def _tracked(path: Path) -> bool:
    """Whether git tracks ``path`` (False where there is no git or no repository around it)."""
    git = shutil.which("git")
    if git is None or not path.exists():
        return False
    try:
        done = subprocess.run(
            [git, "-C", str(path.parent), "ls-files", "--error-unmatch", path.name],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0
