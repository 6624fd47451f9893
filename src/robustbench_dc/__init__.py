"""robustbench-dc: adversarial robustness of Decoupled Networks and other image classifiers."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("robustbench-dc")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
