"""Results outside the store: a record per evaluated model and eps (RobustBench's model_info fields plus ours),
written as files RobustBench's own leaderboard code reads, and the robust accuracies written into our model cards."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd

from robustbench_dc import __version__
from robustbench_dc.checkpoint import read_card, write_card
from robustbench_dc.errors import UserError
from robustbench_dc.files import atomic_write_bytes
from robustbench_dc.model_info import ModelInfo
from robustbench_dc.names import Norm, Threat, eps_label
from robustbench_dc.targets import EvalModel
from robustbench_dc.zoo import is_shipped

if TYPE_CHECKING:
    from robustbench_dc.diagnostics.checks import Diagnostic
    from robustbench_dc.evaluation import Evaluation

#: the shape of ``eval_document`` (README, "JSON output"); a new version when a field changes meaning or goes
JSON_SCHEMA = "robustbench-dc/eval-v2"
#: what a document says of the model, beside its label and function id
DOCUMENT_MODEL_KEYS = (
    "kind",
    "name",
    "arch",
    "width",
    "training",
    "seed",
    "format",
    "file",
    "file_sha256",
    "weights_sha256",
)

THREAT_MODELS = {Norm.LINF: "Linf", Norm.L2: "L2"}
# the fields of a RobustBench model_info file (robustbench/leaderboard/template.py reads exactly these)
ROBUSTBENCH_FIELDS = (
    "link",
    "name",
    "authors",
    "additional_data",
    "number_forward_passes",
    "dataset",
    "venue",
    "architecture",
    "eps",
    "clean_acc",
    "reported",
    "autoattack_acc",
    "footnote",
)
OWN_RECORDS = "dc-robust"  # our full records, beside (never inside) RobustBench's <dataset>/<threat model>/ folders


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def robust_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The white-box and query (Square) rows of ``Evaluation.accuracy``: what a robust accuracy is the minimum over."""
    return frame[(frame["attack"] != "none") & (frame["threat"] == Threat.WHITE_BOX) | (frame["attack"] == "square")]


def model_record(
    target: EvalModel, frame: pd.DataFrame, *, dataset: str, eps: float, norm: Norm = Norm.LINF
) -> dict[str, Any]:
    """One record from ``Evaluation.accuracy``: RobustBench's model_info fields (name, architecture, dataset, eps,
    clean_acc, autoattack_acc, ...) plus ours, ``robust_acc`` above all: the lowest accuracy over the white-box and
    query attacks run at ``eps``, and which. ``autoattack_acc`` is filled only where the official AutoAttack ran
    (else None); nothing here claims more than was measured."""
    from robustbench_dc.names import L2_ATTACKS

    clean = frame[frame["attack"] == "none"]
    rows = robust_rows(frame)
    rows = rows[((rows["eps"] - eps).abs() < 1e-12) & (rows["attack"].isin(L2_ATTACKS) == (norm == Norm.L2))]
    worst = rows.loc[rows["accuracy"].idxmin()] if len(rows) else None
    aa = rows[rows["attack"] == "autoattack"]
    info = target.info
    n = int(clean["n"].iloc[0]) if len(clean) else 0
    return {
        "name": target.label,
        "architecture": architecture(info),
        "training": info.training,
        "dataset": dataset,
        "threat_model": THREAT_MODELS[norm],
        "eps": eps_label(eps, "pgd-l2" if norm == Norm.L2 else None),
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
        "footnote": f"measured by robustbench-dc {__version__} on {n} test images (docs/protocol.md); robust_acc is "
        "the lowest over the attacks listed"
        + ("" if len(aa) else "; AutoAttack was not run, so autoattack_acc is empty"),
        "function_id": target.function_id,
        "weights_sha256": info.weights_sha256,
    }


def evaluation_records(
    target: EvalModel, accuracy: pd.DataFrame, *, dataset: str, eps: list[float], eps_l2: list[float] | None = None
) -> list[dict[str, Any]]:
    """A record per eps (L-inf, and L2 where an L2 attack ran) that has a robust accuracy."""
    from robustbench_dc.names import L2_ATTACKS

    records = [model_record(target, accuracy, dataset=dataset, eps=e) for e in eps]
    if accuracy["attack"].isin(L2_ATTACKS).any():
        records += [model_record(target, accuracy, dataset=dataset, eps=e, norm=Norm.L2) for e in eps_l2 or []]
    return [r for r in records if r["robust_acc"] is not None]


def architecture(info: ModelInfo) -> str:
    """What the network is, for a record that travels: a zoo architecture and its width, a factory's function name
    (never the local path of its file), or the format of a third-party file."""
    if info.width is not None and info.is_zoo:
        return f"{info.arch or 'unknown'} (width {info.width:g})"
    arch = info.arch or ""
    if ":" in arch:  # package.module:function or path/to/file.py:function
        return f"{arch.rpartition(':')[2]} (factory)"
    if arch:
        return arch
    return {"torchscript": "TorchScript module", "torch-export": "torch.export program"}.get(
        str(info.format), "unknown"
    )


def robustbench_record(record: dict[str, Any]) -> dict[str, Any] | None:
    """The record as a RobustBench model_info file holds it (its fields alone, accuracies as strings), or None
    where AutoAttack did not run: RobustBench ranks by ``autoattack_acc`` and has no entry without it."""
    if record.get("autoattack_acc") is None:
        return None
    return {k: record[k] for k in ROBUSTBENCH_FIELDS}


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "model"


def write_records(directory: Path, records: list[dict[str, Any]]) -> list[Path]:
    """``directory/<dataset>/<Linf|L2>/<name>.json`` for each record with AutoAttack (RobustBench's model_info
    layout, one file per model, what ``generate_leaderboard(models_folder=directory)`` reads; a model evaluated at
    several eps of one threat model gets a file per eps), and every record, ours in full, in
    ``directory/dc-robust/<name>.json``. Returns the files written."""
    if not records:
        return []
    written: list[Path] = []
    stem = _file_stem(records[0]["name"])
    per_threat: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        per_threat.setdefault((r["dataset"], r["threat_model"]), []).append(r)
    for (dataset, threat), group in per_threat.items():
        leaderboard = [(r, robustbench_record(r)) for r in group]
        leaderboard = [(r, rb) for r, rb in leaderboard if rb is not None]
        for r, rb in leaderboard:
            eps = f"-eps{_file_stem(r['eps'])}" if len(leaderboard) > 1 else ""
            path = directory / dataset / threat / f"{stem}{eps}.json"
            atomic_write_bytes(path, (json.dumps(rb, indent=2) + "\n").encode())
            written.append(path)
    own = directory / OWN_RECORDS / f"{stem}.json"
    atomic_write_bytes(own, (json.dumps(records, indent=2) + "\n").encode())
    return written + [own]


def write_into_card(directory: Path, records: list[dict[str, Any]], data_sha256: str) -> str | None:
    """Add the records' accuracies to the checkpoint card under ``evaluations`` (keyed by dataset, threat model,
    eps, images and test-data hash, so a later evaluation of the same kind replaces an earlier one), atomically.
    Returns why the card could not be written (a read-only model store), or None: the card is a convenience,
    the result store holds the evaluation either way."""
    card = read_card(directory)
    evaluations = dict(card.evaluations)
    for r in records:
        key = f"{r['dataset']} {r['threat_model']} {r['eps']} n={r['test_images']} data={data_sha256[:12]}"
        evaluations[key] = {
            k: r[k] for k in ("clean_acc", "robust_acc", "robust_attack", "autoattack_acc", "attacks", "footnote")
        }
    try:
        write_card(directory, replace(card, evaluations=evaluations))
    except UserError as exc:
        return str(exc)
    return None


def eval_document(target: EvalModel, result: Evaluation, diagnostics: Sequence[Diagnostic] = ()) -> dict[str, Any]:
    """An evaluation as one JSON-ready document (what ``dc-robust eval --json`` prints): the model, then a list per
    kind of result, one shape with or without diagnostics."""

    def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
        return json.loads(
            frame.drop(columns=["per_example"], errors="ignore").to_json(orient="records", double_precision=15)
        )

    described = target.info.to_dict()
    return {
        "schema": JSON_SCHEMA,
        "robustbench_dc": __version__,
        "protocol": "docs/protocol.md",
        "dataset": result.dataset,
        "model": {
            "label": target.label,
            "function_id": target.function_id,
            **{k: described[k] for k in DOCUMENT_MODEL_KEYS if k in described},
        },
        "accuracy": rows(result.accuracy),
        "lipschitz": rows(result.lipschitz_rows),
        "diagnostics": [asdict(d) for d in diagnostics],
    }


def record_evaluation(
    target: EvalModel,
    result: Evaluation,
    *,
    eps: list[float],
    eps_l2: list[float] | None = None,
    records_dir: Path | None = None,
) -> list[str]:
    """The evaluation's records written where they go: into ``records_dir`` (``write_records``) when given, and into
    a zoo model's card. Returns what a user should be told: the files written, and why a RobustBench file or the
    card was left out."""
    records = evaluation_records(target, result.accuracy, dataset=result.dataset, eps=eps, eps_l2=eps_l2)
    notes = []
    if records_dir is not None:
        notes.append(f"model records: {len(write_records(records_dir, records))} files in {records_dir}")
        if records and not any(robustbench_record(r) for r in records):
            notes.append(
                "note: no RobustBench model_info file: RobustBench ranks by AutoAttack, which did not run (--attacks "
                f"autoattack); our own records are in the {OWN_RECORDS}/ folder there"
            )
    if target.is_zoo and records and target.info.checkpoint_dir:
        if is_shipped(Path(target.info.checkpoint_dir)):
            notes.append(
                f"note: {target.info.checkpoint_dir} is a shipped (or git-tracked) checkpoint: its card was left as it "
                "is; the evaluation is in your result store (dc-robust report reads it there)"
            )
            return notes
        why_not = write_into_card(Path(target.info.checkpoint_dir), records, result.data_sha256)
        if why_not:
            notes.append(
                f"note: the evaluation is in the result store; its checkpoint card was left as it was ({why_not})"
            )
    return notes
