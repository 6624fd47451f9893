"""Results outside the store: a leaderboard-style record per evaluated model (RobustBench's model_info fields)
and the robust accuracies written back into our own model cards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from robustbench_dc import __version__
from robustbench_dc.checkpoint import CARD_FILE, read_card
from robustbench_dc.errors import UserError
from robustbench_dc.files import atomic_write_bytes
from robustbench_dc.names import eps_label
from robustbench_dc.targets import EvalModel

THREAT_MODELS = {"linf": "Linf", "l2": "L2"}


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def robust_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The white-box and query (Square) accuracy rows of an ``evaluate`` frame: the attacks a robust accuracy takes its minimum over."""
    return frame[(frame["attack"] != "none") & (frame["threat"] == "white-box") | (frame["attack"] == "square")]


def model_record(
    target: EvalModel, frame: pd.DataFrame, *, dataset: str, eps: float, norm: str = "linf"
) -> dict[str, Any]:
    """One record in RobustBench's model_info shape (name, architecture, dataset, eps, clean_acc, autoattack_acc,
    ...), plus ``robust_acc``: the lowest accuracy over the white-box and query attacks run at ``eps``, and which.
    ``autoattack_acc`` is filled only where AutoAttack itself ran; nothing here claims more than was measured."""
    from robustbench_dc.names import L2_ATTACKS

    clean = frame[frame["attack"] == "none"]
    rows = robust_rows(frame)
    rows = rows[((rows["eps"] - eps).abs() < 1e-12) & (rows["attack"].isin(L2_ATTACKS) == (norm == "l2"))]
    worst = rows.loc[rows["accuracy"].idxmin()] if len(rows) else None
    aa = rows[rows["attack"] == "autoattack"]
    info = target.info
    n = int(clean["n"].iloc[0]) if len(clean) else 0
    return {
        "name": target.label,
        "architecture": f"{info.get('arch', 'unknown')} (width {info['width']:g})"
        if "width" in info
        else info.get("arch", "unknown"),
        "training": info.get("training", "external"),
        "dataset": dataset,
        "threat_model": THREAT_MODELS[norm],
        "eps": eps_label(eps, "pgd-l2" if norm == "l2" else None),
        "clean_acc": _pct(float(clean["accuracy"].iloc[0])) if len(clean) else None,
        "autoattack_acc": _pct(float(aa["accuracy"].min())) if len(aa) else None,
        "robust_acc": None if worst is None else _pct(float(worst["accuracy"])),
        "robust_attack": None if worst is None else str(worst["attack"]),
        "attacks": {str(r["attack"]): _pct(float(r["accuracy"])) for _, r in rows.iterrows()},
        "test_images": n,
        "additional_data": False,
        "number_forward_passes": 1,
        "reported": "",
        "link": "",
        "authors": "",
        "venue": "",
        "footnote": f"measured by robustbench-dc {__version__} on {n} test images (docs/protocol.md); robust_acc is the lowest over the attacks listed"
        + ("" if len(aa) else "; AutoAttack was not run, so autoattack_acc is empty"),
        "function_id": target.function_id,
        "weights_sha256": info.get("weights_sha256", ""),
    }


def write_into_card(directory: Path, records: list[dict[str, Any]], data_sha256: str) -> str | None:
    """Add the records' accuracies to the checkpoint card under ``evaluations`` (keyed by dataset, threat model,
    eps, images and test-data hash, so a later evaluation of the same kind replaces an earlier one), atomically.
    Returns why the card could not be written (a read-only model store), or None: the card is a convenience,
    the result store holds the evaluation either way."""
    card = read_card(directory)
    evaluations = dict(card.get("evaluations", {}))
    for r in records:
        key = f"{r['dataset']} {r['threat_model']} {r['eps']} n={r['test_images']} data={data_sha256[:12]}"
        evaluations[key] = {
            k: r[k] for k in ("clean_acc", "robust_acc", "robust_attack", "autoattack_acc", "attacks", "footnote")
        }
    card["evaluations"] = evaluations
    try:
        atomic_write_bytes(directory / CARD_FILE, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    except UserError as exc:
        return str(exc)
    return None
