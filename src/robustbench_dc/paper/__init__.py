"""The paper's Tables 7 and 8 (shipped in the package) and how our names map onto its columns and rows."""

from __future__ import annotations

from importlib.resources import files

import pandas as pd

PAPER_COLUMNS = ("baseline", "sphereconv", "ballconv", "tanhconv")
DISPLAY = {"baseline": "Baseline", "sphereconv": "SphereConv", "ballconv": "BallConv", "tanhconv": "TanhConv"}
#: Our training labels standing for the paper's rows ("adversarial": FGSM adversarial training, docs/protocol.md).
PAPER_TRAINING = {"natural": "natural", "fgsm": "adversarial"}
ATTACK_ROWS = ("none", "fgsm", "bim")


def display(name: str) -> str:
    return DISPLAY.get(name, name)


def paper_tables() -> pd.DataFrame:
    with files("robustbench_dc").joinpath("paper/dcnet_tables.csv").open() as f:
        return pd.read_csv(f)


def paper_value(paper: pd.DataFrame, table: int, training: str, attack: str, method: str) -> float | None:
    rows = paper[
        (paper["table"].astype(str) == str(table))
        & (paper["training"] == training)
        & (paper["attack"] == attack)
        & (paper["method"] == method)
    ]
    return float(rows["value"].iloc[0]) if len(rows) else None
