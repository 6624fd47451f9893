"""Plain tables of evaluation results (for the terminal and for reports)."""

from __future__ import annotations

import math
from typing import Iterable

import pandas as pd
from tabulate import tabulate

from robustbench_dc import names
from robustbench_dc.names import eps_label


def threat_model(attacks: Iterable[str]) -> str:
    """The threat model the attacks of a report add up to, as its provenance states it."""
    norms = {"L2" if a in names.L2_ATTACKS else "L-inf" for a in attacks if a != "none"} or {"L-inf"}
    said = " and ".join(n for n in ("L-inf", "L2") if n in norms)
    each = " (each with its own eps)" if len(norms) > 1 else ""
    return f"threat model: untargeted {said}{each}, pixels in [0, 1], normalisation inside the model"


def pct_ci(row) -> str:
    return f"{100 * row['accuracy']:.2f} [{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]"


def accuracy_table(accuracy: pd.DataFrame) -> str:
    rows = []
    for _, r in accuracy.iterrows():
        source = r.get("source") if isinstance(r.get("source"), str) else ""
        rows.append(
            [
                r["threat"],
                r["attack"],
                eps_label(r["eps"], r["attack"]) if r["attack"] != "none" else "-",
                pct_ci(r),
                int(r["n"]),
                source,
                f"{r['seconds']:.1f}s" + (" (stored)" if r.get("cached") else ""),
            ]
        )
    return tabulate(rows, headers=["threat", "attack", "eps", "accuracy % [95% CI]", "images", "source", "time"])


def lipschitz_table(lipschitz: pd.DataFrame) -> str:
    rows = []
    for _, r in lipschitz.iterrows():
        if r["estimate"] == "local":
            rows.append(
                [
                    "empirical local (Yang et al. 2020), L-inf -> L1",
                    f"mean {r['mean']:.3g}, max {r['max']:.3g}",
                    f"eps {eps_label(r['eps'])}, PGD {int(r['steps'])} steps, {int(r['n'])} images",
                ]
            )
        elif r["estimate"] == "gradient-norm":
            rows.append(
                [
                    "margin gradient L1 norm",
                    f"mean {r['mean']:.3g}, max {r['max']:.3g}",
                    f"{int(r['n'])} images; zero {100 * r['zero_fraction']:.1f}%, non-finite "
                    f"{100 * r['nonfinite_fraction']:.1f}%",
                ]
            )
        elif r["estimate"] == "global":
            rows.append(
                [
                    "global upper-bound estimate, log10",
                    global_bound_text(r),
                    "layer-wise product (L2, power iteration: an estimate, not a certificate), converted to L-inf -> "
                    "L1",
                ]
            )
    return tabulate(rows, headers=["Lipschitz estimate", "value", "how"])


def global_bound_text(r) -> str:
    if not r.get("supported", True) or (isinstance(r.get("log10_l2"), float) and math.isnan(r["log10_l2"])):
        return f"n/a (no bound for layer {r.get('unsupported', '?')})"
    text = f"L2 {r['log10_l2']:.2f}; L-inf->L1 {r['log10_linf_l1']:.2f}"
    if r.get("eps_dependent"):
        text += " (eps-dependent: SphereConv is unbounded, only the patch-norm eps keeps it finite)"
    return text


def eval_tables(accuracy: pd.DataFrame, lipschitz: pd.DataFrame, label: str) -> str:
    """The terminal's view of one evaluation: its accuracy table, then its Lipschitz estimates if any."""
    parts = [f"model: {label}", accuracy_table(accuracy)]
    if len(lipschitz):
        parts.append(lipschitz_table(lipschitz))
    return "\n\n".join(parts)
