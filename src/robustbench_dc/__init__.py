"""robustbench-dc: adversarial robustness of Decoupled Networks and other image classifiers.

``robustbench_dc.evaluate`` (:func:`robustbench_dc.evaluation.evaluate`) and ``robustbench_dc.load_model``
(:func:`robustbench_dc.checkpoint.load_model`) are imported on first use, so that ``import robustbench_dc``
(and the command line's ``--help``) stays light.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("robustbench-dc")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"


_LAZY = {
    "evaluate": "robustbench_dc.evaluation",
    "load_model": "robustbench_dc.checkpoint",
    "set_threads": "robustbench_dc.devices",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'robustbench_dc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", "evaluate", "load_model", "set_threads"]
