"""robustbench-dc: adversarial robustness of Decoupled Networks and other image classifiers.

``robustbench_dc.evaluate(model, dataset=..., ...)`` is :func:`robustbench_dc.evaluation.evaluate`, imported on
first use so that ``import robustbench_dc.ops`` stays light.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("robustbench-dc")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name == "evaluate":
        from robustbench_dc.evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'robustbench_dc' has no attribute {name!r}")


__all__ = ["__version__", "evaluate"]
