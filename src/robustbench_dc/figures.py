"""What every figure of the package shares: Matplotlib without a screen, and one colour-blind-safe palette."""

from __future__ import annotations

from typing import Any

#: colour-blind-safe (Okabe & Ito 2008); every line also has its own marker and dash pattern
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (imported on first use: most commands draw nothing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
