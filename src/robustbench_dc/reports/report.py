"""The report: Tables 7 and 8 next to the paper's numbers, Lipschitz estimates, computed claims, diagnostics,
the transfer matrix and provenance, with the same cells as CSV and JSON. Built from the result store alone,
through the query layer: every number shown comes from cells that differ at most in the training seed.
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from robustbench_dc.diagnostics.checks import Diagnostic, diagnose, measured_from_cells
from robustbench_dc.errors import UserError
from robustbench_dc.files import atomic_write_bytes, output_dir
from robustbench_dc.model_info import ModelInfo
from robustbench_dc.names import CellKind, Role, Status, Threat, eps_label
from robustbench_dc.paper import ATTACK_ROWS, PAPER_COLUMNS, PAPER_TRAINING, display, paper_tables, paper_value
from robustbench_dc.protocol import PROTOCOL_SOURCE
from robustbench_dc.reports.claims import STRONG_CHECKS, claims, compare, masking_notes, surviving_claims
from robustbench_dc.reports.plots import plot_accuracy, plot_differences, plot_lipschitz
from robustbench_dc.reports.render import (
    Block,
    Bullets,
    Code,
    Image,
    Paragraph,
    Section,
    Table,
    Title,
    render_text,
    status_mark,
    verdict_mark,
    write_report,
)
from robustbench_dc.reports.tables import threat_model
from robustbench_dc.results.query import Aggregate, AmbiguousResults, Entry, Results, aggregate

PROTOCOL_DOC = "docs/protocol.md in the robustbench-dc repository"
MATCH_TOLERANCE = 2.0  # points: how close our baseline must come to the paper's to call an eps matched


class _Tables:
    """The table cells of one report: role ``table``, one image subset, at the report's eps by default."""

    def __init__(self, results: Results, eps: float, n: int) -> None:
        self.results, self.eps, self.n = results, eps, n

    def __call__(self, model: str, training: str, threat: Threat, attack: str, eps: float | None = None):
        return self.results.accuracy(model, training, attack, self.eps if eps is None else eps, threat=threat, n=self.n)

    def models(self) -> list[str]:
        names = list(dict.fromkeys(name for name, training in self.results.models() if training in PAPER_TRAINING))
        return [m for m in PAPER_COLUMNS if m in names] + sorted(m for m in names if m not in PAPER_COLUMNS)


def _table_subset(results: Results, n: int | None) -> tuple[int, list[int]]:
    sizes = results.where(role=Role.TABLE, kind=CellKind.ACCURACY).subsets()
    if not sizes:
        raise UserError(
            "no table cells (role 'table') in the store for this selection: run dc-robust eval or reproduce first"
        )
    if n is None:
        n = _default_subset(results.where(role=Role.TABLE, kind=CellKind.ACCURACY), sizes)
    elif n not in sizes:
        raise UserError(f"no table cells on {n} images; subsets in the store: {', '.join(map(str, sizes))}")
    return n, [s for s in sizes if s != n]


def _default_subset(table: Results, sizes: list[int]) -> int:
    """The subset a report takes when none is named: the largest one on which every model with table cells was
    evaluated (the others are named in the provenance, never mixed in); none such is ambiguous."""
    everyone = {e.key.function for e in table.entries}
    complete = [s for s in sizes if {e.key.function for e in table.where(n=s).entries} == everyone]
    if not complete:
        raise AmbiguousResults(
            f"table cells were evaluated on subsets of {', '.join(map(str, sizes))} images, none of them holding every "
            "model; choose one with --n"
        )
    return max(complete)


def table7_8(cell: _Tables, threat: Threat, paper: pd.DataFrame, table: int) -> Table:
    models = cell.models()
    headers = ["training", "attack"]
    for m in models:
        headers += [f"{display(m)} ours % [95% CI]", "paper", "diff"]
    rows = []
    for ours_training, paper_training in PAPER_TRAINING.items():
        for attack in ATTACK_ROWS:
            row = [paper_training, attack.upper() if attack != "none" else "none"]
            for m in models:
                c = cell(m, ours_training, threat, attack)
                p = paper_value(paper, table, paper_training, attack, m) if m in PAPER_COLUMNS else None
                row += [
                    c.text() if c else "-",
                    f"{p:.2f}" if p is not None else "-",
                    f"{c.mean - p:+.2f}" if c and p is not None else "-",
                ]
            rows.append(row)
    return Table(headers, rows)


def _difference(cell: _Tables, model: str, training: str, attack: str):
    a, b = cell(model, training, Threat.WHITE_BOX, attack), cell("baseline", training, Threat.WHITE_BOX, attack)
    return compare(a, b) if a is not None and b is not None else None


def _lipschitz_row(name: str, training: str, sel: Results) -> tuple[list[str], float | None]:
    """One model's Lipschitz row (after its name) and its mean local estimate (None where not measured)."""
    if not len(sel):
        return [], None
    values: dict[str, list[dict[str, Any]]] = {}
    for attack in ("local", "gradient-norm", "global"):
        groups = sel.where(attack=attack).groups()
        if len(groups) > 1:
            raise AmbiguousResults(
                f"Lipschitz {attack} of {name} {training}: cells differ in more than the training seed; narrow the "
                "report"
            )
        values[attack] = [e.metrics for e in groups[0]] if groups else []
    local = [v["mean"] for v in values["local"]]
    grad = [v["mean"] for v in values["gradient-norm"]]
    glob = values["global"]
    bound = sum(g["log10_linf_l1"] for g in glob) / len(glob) if glob else float("nan")
    note = ""
    if glob and any(g["eps_dependent"] for g in glob):
        note = "eps-dependent: SphereConv has no useful bound"
    if glob and not all(g["supported"] for g in glob):
        note = f"no bound for {glob[0]['unsupported']}"
    seeds = max(len(local), len(grad), len(glob))
    row = [
        training,
        str(seeds),
        f"{sum(local) / len(local):.3g}" if local else "-",
        f"{sum(grad) / len(grad):.3g}" if grad else "-",
        "n/a" if math.isnan(bound) else f"{bound:.2f}",
        note,
    ]
    return row, (sum(local) / len(local) if local else None)


def lipschitz_table(
    groups: list[tuple[str, str, Results]], show: Callable[[str], str] = str
) -> tuple[list[str], list[list[str]], list[tuple[str, str, float]]]:
    """The Lipschitz table of (name, training, that model's cells) groups (a row names its model ``show(name)``),
    and (name, training, mean local L) for the plot."""
    headers = [
        "model",
        "training",
        "seeds",
        "local L (mean)",
        "margin grad L1 (mean)",
        "global bound log10 (L-inf->L1)",
        "note",
    ]
    rows, points = [], []
    for name, training, results in groups:
        row, local = _lipschitz_row(name, training, results.where(role=Role.TABLE, kind=CellKind.LIPSCHITZ))
        if row:
            rows.append([show(name), *row])
        if local is not None:
            points.append((name, training, local))
    return headers, rows, points


def lipschitz_section(
    groups: list[tuple[str, str, Results]],
    png: Path,
    accuracy: Callable[[str, str], Aggregate | None],
    accuracy_label: str,
    show: Callable[[str], str] = str,
) -> list[Block]:
    """The section on Lipschitz estimates, where any of ``groups`` has them: the table, what each column is, and
    the local constant plotted into ``png`` against ``accuracy(name, training)`` (an iterative white-box attack's)."""
    headers, rows, points = lipschitz_table(groups, show)
    if not rows:
        return []
    smoothness = [
        (show(name), PAPER_TRAINING.get(tr, tr), local, acc)
        for name, tr, local in points
        for acc in [accuracy(name, tr)]
        if acc is not None
    ]
    blocks: list[Block] = [
        Section("Lipschitz estimates"),
        Table(headers, rows),
        Paragraph(
            "Local: empirical local Lipschitz constant (Yang et al. 2020), PGD-maximised, a lower bound. Margin "
            "gradient: L1 norm of the input gradient of the logit margin. Global: an estimate of the layer-wise "
            "product upper bound, log10 (power iteration approaches each layer's norm from below, so the product is an "
            "estimate of an upper bound, not a certificate)."
        ),
    ]
    if smoothness:
        plot_lipschitz(smoothness, png, accuracy_label)
        blocks.append(
            Image(
                png.name,
                f"Empirical local Lipschitz constant against {accuracy_label} accuracy, a point per model and training "
                "(the global bounds, loose by orders of magnitude, stay in the table)",
            )
        )
    return blocks


def matched_eps(cell: _Tables, paper: pd.DataFrame, attack: str) -> float | None:
    """Among the eps at which every paper model has a natural white-box cell, the one where our natural baseline
    comes closest to the paper's accuracy (the paper states no eps)."""
    wanted = paper_value(paper, 7, "natural", attack, "baseline")
    models = [m for m in cell.models() if m in PAPER_COLUMNS]
    best = None
    for eps in cell.results.where(n=cell.n, attack=attack, threat=Threat.WHITE_BOX).eps_values():
        found = [cell(m, "natural", Threat.WHITE_BOX, attack, eps) for m in models]
        if "baseline" not in models or any(f is None for f in found):
            continue
        gap = abs(found[models.index("baseline")].mean - wanted)
        if best is None or gap < best[0]:
            best = (gap, eps)
    return None if best is None else best[1]


def eps_matched_blocks(cell: _Tables, paper: pd.DataFrame) -> list[Block]:
    blocks: list[Block] = []
    models = [m for m in cell.models() if m in PAPER_COLUMNS]
    for attack in ("fgsm", "bim"):
        eps = matched_eps(cell, paper, attack)
        if eps is None:
            continue
        headers, rows = ["training", "threat"], []
        for m in models:
            headers += [f"{display(m)} ours %", "paper"]
        for training, paper_training in PAPER_TRAINING.items():
            for threat, table in ((Threat.WHITE_BOX, 7), (Threat.BLACK_BOX, 8)):
                row = [paper_training, threat]
                for m in models:
                    c = cell(m, training, threat, attack, eps)
                    p = paper_value(paper, table, paper_training, attack, m)
                    row += [c.text() if c else "-", f"{p:.2f}" if p is not None else "-"]
                rows.append(row)
        wanted, ours = (
            paper_value(paper, 7, "natural", attack, "baseline"),
            cell("baseline", "natural", Threat.WHITE_BOX, attack, eps),
        )
        if abs(ours.mean - wanted) <= MATCH_TOLERANCE:
            text = (
                f"{attack.upper()} at eps = {255 * eps:.3g}/255, where our naturally trained baseline's white-box "
                f"accuracy ({ours.mean:.2f}%) is closest to the paper's {wanted:.2f}% (measured, not interpolated):"
            )
        else:
            text = (
                f"{attack.upper()}: no evaluated eps brings our naturally trained baseline within {MATCH_TOLERANCE:g} "
                f"points of the paper's {wanted:.2f}%; the closest, eps = {255 * eps:.3g}/255, gives {ours.mean:.2f}%. "
                "The table is read there but is not a match:"
            )
        blocks += [Paragraph(text), Table(headers, rows)]
    return blocks or [
        Paragraph("No cells at an eps matched to the paper's baseline (dc-robust reproduce computes them).")
    ]


def label_leaking_blocks(
    cell: Callable[..., Aggregate | None], models: list[tuple[str, str]], eps: float
) -> list[Block]:
    """White-box FGSM with the true labels against FGSM with the model's predicted labels (Kurakin et al. 2017),
    for each (name, training) of ``models``, read through ``cell(name, training, threat, attack, eps)``."""
    rows, comparisons = [], []
    for name, training in models:
        try:
            true, pred = (
                cell(name, training, Threat.WHITE_BOX, "fgsm", eps),
                cell(name, training, Threat.WHITE_BOX, "fgsm-pred", eps),
            )
        except AmbiguousResults:
            continue
        if true is None or pred is None:
            continue
        c = compare(true, pred)
        comparisons.append(c)
        rows.append(
            [
                display(name),
                training,
                true.text(),
                pred.text(),
                "-" if c is None else f"{c.diff:+.1f} [{c.low:+.1f}, {c.high:+.1f}]",
                "-" if c is None else c.detail,
            ]
        )
    if not rows:
        return [Paragraph("No FGSM cells with predicted labels (attack fgsm-pred) in the store.")]
    leaking = [f"{r[0]} ({r[1]})" for r, c in zip(rows, comparisons) if c is not None and c.low > 0]
    verdict = (
        f"Label leaking (more accurate under the true-label attack, significantly): {', '.join(leaking)}."
        if leaking
        else "No model is significantly more accurate under the true-label attack than under the predicted-label one: "
        "no sign of label leaking."
    )
    return [
        Paragraph(
            f"White-box FGSM at {eps_label(eps)} crafted with the true labels and with the model's own predictions. A "
            "model that is more accurate under the true-label attack than under the predicted-label one has learnt "
            "from label leaking (its FGSM training examples gave the label away), and its true-label FGSM accuracy "
            "overstates its robustness."
        ),
        Table(
            [
                "model",
                "training",
                "FGSM, true labels %",
                "FGSM, predicted labels %",
                "difference, points [95% CI]",
                "test",
            ],
            rows,
        ),
        Paragraph(verdict),
    ]


def training_columns(m: ModelInfo) -> list[Any]:
    """Architecture, width, epochs and training images of a model for the provenance tables ("-" where unknown)."""
    return ["-" if v is None else v for v in (m.arch or None, m.width, m.epochs, m.train_images)]


def _diagnostics(results: Results, eps: float) -> dict[tuple[str, str, int], list]:
    """Diagnostics per evaluated function (model, training, seed), judged from its stored cells."""
    by: dict[str, list[Entry]] = {}
    for e in results.where(role=Role.DIAGNOSTICS).entries:
        by.setdefault(e.key.function, []).append(e)
    out = {}
    for entries in by.values():
        m = entries[0].model
        key = (m.model_name, m.training, -1 if m.seed is None else int(m.seed))
        out[key] = diagnose(measured_from_cells(entries, eps))
    return out


@dataclass(frozen=True)
class ModelDiagnostics:
    """One model's diagnostics verdicts, and how a report names it: in its table's columns and in a sentence."""

    columns: tuple[Any, ...]
    name: str
    checks: list[Diagnostic]


DIAGNOSTICS_CHECKS = (
    "1. iterative attacks at least as strong as FGSM; 2. white-box at least as strong as black-box (transfer and "
    "Square); 3. accuracy falls with eps and is near zero (<= 5%) at eps 0.5; 4. PGD-20 has converged (PGD-40 and 3 "
    "restarts change accuracy by at most the tolerance: 2 points or 3 images, whichever is larger); 5. BPDA surrogate "
    "gradients do not beat the true gradients (hard decisions such as gates and region masks are attacked through "
    "their soft relaxation too: a verdict that survives only without it is masking); 6. gradient health (<= 1% zero or "
    "non-finite input gradients, <= 90% saturated patches in any bounded layer); 7. the scale-free DLR loss (APGD-DLR) "
    "does not beat cross-entropy (APGD-CE) by more than the tolerance; 8. the signed-gradient step raises the loss "
    "more than the best of 8 random sign steps on at least 90% of images; 9. PGD through gradients averaged over a "
    "small neighbourhood of the input does not beat PGD-20. Checks 1, 2, 5 and 9 are paired, image by image, at every "
    "eps both attacks ran at, and warn for an exact McNemar p below 0.05 with an effect of at least 1 point (the eps "
    "is named)."
)


def diagnostics_section(diags: list[ModelDiagnostics], eps: float, columns: list[str], empty: str) -> list[Block]:
    """The diagnostics section of every report: what each check asks, a row of verdicts per model, the numbers
    behind each verdict, and the models the strong checks did not reach (a PASS elsewhere says less for them)."""
    blocks: list[Block] = [
        Section("Gradient-masking diagnostics"),
        Paragraph(
            f"Per model, at eps = {eps_label(eps)} ({PROTOCOL_DOC}, section 5; Carlini et al. 2019; Athalye et al. "
            f"2018): {DIAGNOSTICS_CHECKS}"
        ),
    ]
    measured = [d for d in diags if any(c.status != Status.NA for c in d.checks)]
    if not measured:
        return blocks + [Paragraph(empty)]
    names = [c.name for c in measured[0].checks]
    rows = [[*d.columns, *(status_mark(c.status) for c in d.checks)] for d in measured]
    details = [
        f"{d.name}, {c.name}: {c.status.upper()}: {c.summary}"
        for d in measured
        for c in d.checks
        if c.status != Status.NA
    ]
    blocks += [Table([*columns, *names], rows), Paragraph("The numbers behind each verdict:"), Bullets(details)]
    missing = [d.name for d in measured if any(c.name in STRONG_CHECKS and c.status == Status.NA for c in d.checks)]
    if missing:
        blocks.append(
            Paragraph(
                f"The strong checks (7, 8, 9) did not run for {', '.join(missing)}: a PASS elsewhere says less for "
                "them."
            )
        )
    return blocks


def _matrix_cell(entries: list[Entry], attack: str, source: str, target: str) -> str:
    """Accuracy % of ``target`` under ``attack`` crafted on ``source`` (white-box on the diagonal); "-" if not one
    cell."""
    if source == target:
        hit = [e for e in entries if e.key.function == target and e.key.threat == Threat.WHITE_BOX]
    else:
        hit = [
            e
            for e in entries
            if e.key.function == target and e.key.source == source and e.key.threat == Threat.BLACK_BOX
        ]
    hit = [e for e in hit if e.key.attack == attack]
    return f"{100 * hit[0].metrics['accuracy']:.1f}" if len(hit) == 1 else "-"


def transfer_blocks(results: Results, eps: float, name: Callable[[str], str] | None = None) -> list[Block]:
    """The transfer matrix at ``eps`` from role ``transfer-matrix`` cells; ``name(function)`` names each model
    (default: its description in the store)."""
    sel = results.where(role=Role.TRANSFER_MATRIX, kind=CellKind.ACCURACY, eps=eps)
    black = [e for e in sel.entries if e.key.threat == Threat.BLACK_BOX]
    if not black:
        return [Paragraph("No transfer matrix in the store.")]
    functions = {e.key.function: e.model for e in sel.entries}
    title = name or (lambda f: functions[f].title)
    order = list(dict.fromkeys(e.key.source for e in black if e.key.source in functions))
    sizes = sorted({e.key.subset.n for e in sel.entries})
    blocks: list[Block] = [
        Paragraph(
            f"Role 'transfer-matrix' cells on {', '.join(map(str, sizes))} test images; these cells never enter Tables "
            "7 and 8."
        )
    ]
    for attack in ("fgsm", "bim"):
        rows = []
        for src in order:
            row = [title(src)]
            row += [_matrix_cell(sel.entries, attack, src, tgt) for tgt in order]
            rows.append(row)
        headers = [f"{attack.upper()} source \\ target"] + [title(t) for t in order]
        blocks += [
            Paragraph(
                f"{attack.upper()} at {eps_label(eps)}: accuracy % of the target (columns) on examples crafted on the "
                "source (rows); the diagonal is white-box."
            ),
            Table(headers, rows),
        ]
    return blocks


def execution_blocks(models: list[tuple[str, ModelInfo]]) -> list[Block]:
    """How often each gated block runs, for the (name, stored description) of ``models`` whose card measured it."""
    rows = []
    for name, info in models:
        rates = info.executed_block_rate
        if rates:
            rows.append(
                [
                    name,
                    f"{100 * rates['mean']:.1f}",
                    " ".join(f"{100 * r:.0f}" for r in rates["per_block"]),
                    rates["test_images"],
                ]
            )
    if not rows:
        return []
    return [
        Section("Executed blocks (ConvNet-AIG gates)"),
        Paragraph(
            "Percentage of clean test images for which the evaluated network (hard gates) executes each residual "
            "block, in order; a gate that is always off makes its block dead weight, one always on makes it a plain "
            "ResNet block."
        ),
        Table(["model", "mean %", "per block %", "test images"], rows),
    ]


def all_cells_blocks(results: Results) -> list[Block]:
    """Every table-role accuracy cell in the selection, a row per group that differs only in the training seed:
    the attacks, models and subsets that Tables 7 and 8 have no place for (PGD, AutoAttack, Square, third-party
    models, other subset sizes) reach the report here."""
    rows = []
    for group in results.where(role=Role.TABLE, kind=CellKind.ACCURACY).groups():
        agg = aggregate(sorted(group, key=lambda e: e.seed or 0))
        if agg is None:
            continue
        k, m = group[0].key, group[0].model
        source = "" if group[0].source is None else ("protocol" if group[0].protocol_source else group[0].source.title)
        name = f"{m.name} ({m.arch}, width {m.width})" if m.is_zoo else m.title
        rows.append(
            (
                name,
                m.training,
                k.threat,
                k.attack,
                "-" if k.attack == "none" else eps_label(k.eps, k.attack),
                source,
                k.subset.n,
                agg.seeds,
                agg.text(),
                k.eps,
            )
        )
    rows.sort(key=lambda r: (r[0], r[1], r[2] != "none", r[2], r[3], r[6], r[9]))
    return [
        Table(
            ["model", "training", "threat", "attack", "eps", "source", "images", "seeds", "accuracy % [95% CI]"],
            [list(map(str, r[:9])) for r in rows],
        )
    ]


def _environments(entries: list[Entry]) -> list[str]:
    """Each distinct software and machine the cells were computed with, as one line."""
    envs = sorted({json.dumps(e.cell.provenance.get("environment", {}), sort_keys=True) for e in entries})
    return [
        f"robustbench-dc {v.get('robustbench_dc')}, torch {v.get('torch')} ({v.get('torch_build', '?')}), Python "
        f"{v.get('python')}; {v.get('machine')}"
        for v in map(json.loads, envs)
        if v
    ]


def provenance_blocks(
    entries: list[Entry],
    *,
    head: list[str],
    tail: list[str],
    models: Table,
    command: str,
    times: dict[str, float] | None = None,
) -> list[Block]:
    """The provenance section of every report, from the cells shown (``entries``): the template's own ``head``
    items, then the data, attack backend, precision, device and threat model, the protocol and the evaluating
    environment of those cells, then ``tail``, the wall times; the attack parameters, the ``models`` table and the
    command that regenerates the report."""
    table = [e for e in entries if e.key.role == Role.TABLE and e.key.kind == CellKind.ACCURACY]
    sources = sorted({e.model.data_source for e in entries if e.model.data_source})
    params = sorted(
        {
            f"{e.key.attack} @ {eps_label(e.key.eps, e.key.attack)}: {e.key.params}"
            for e in table
            if e.key.attack != "none"
        }
    )
    backends = sorted({f"{e.key.backend} {e.key.backend_version}" for e in entries if e.key.backend})
    precisions = sorted({e.key.precision for e in entries})
    devices = sorted({str(e.cell.provenance.get("device", "?")) for e in entries})
    items = [
        *head,
        f"Data: {'; '.join(sources) or 'unknown'}",
        f"Attack backend: {', '.join(backends) or 'none'}; precision: {', '.join(precisions)}; "
        f"device: {', '.join(devices)}; " + threat_model(e.key.attack for e in table),
        f"Protocol: {PROTOCOL_DOC} (section 2: attacks; section 3: training regimes; section 4: statistics; section 5: "
        "diagnostics; section 7: architectures)",
        "Evaluating environment: " + (" | ".join(_environments(entries)) or "unknown"),
        *tail,
    ]
    if times:
        items.append("Wall time of this run's stages: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))
    return [
        Section("Provenance"),
        Bullets(items),
        Paragraph("Attack parameters:"),
        Bullets(params),
        models,
        Paragraph("Regenerate this report with:"),
        Code(command),
    ]


def _provenance(
    results: Results, n: int, other_n: list[int], command: str, preset_note: str, stage_times: dict[str, float] | None
) -> list[Block]:
    """The paper template's provenance: its subset, its black-box source and its adversarial rows' regime."""
    table = results.where(role=Role.TABLE)
    times: dict[str, float] = {}
    models: dict[str, ModelInfo] = {}
    for e in results.entries:
        times[e.key.function] = times.get(e.key.function, 0.0) + e.cell.seconds
        models[e.key.function] = e.model
    rows = [
        [m.title, *training_columns(m), m.weights_sha256[:12], f[:12], f"{times[f]:.1f}"] for f, m in models.items()
    ]
    stored = (
        f"; cells on {', '.join(map(str, other_n))} images are in the store but not in these tables" if other_n else ""
    )
    source = ", ".join(sorted({e.source.title for e in table.entries if e.source and e.protocol_source}))
    head = [f"Preset: {preset_note}"] if preset_note else []
    head.append(f"Tables 7 and 8: {n} test images per cell (the same seeded subset for every model){stored}")
    tail = [
        f"Black-box source (Table 8): the protocol source only, {PROTOCOL_SOURCE} ({source or 'none in the store'}); "
        "transfer examples are crafted on it once and fed to every target",
        "'Adversarial' rows: regime fgsm, each batch half clean and half FGSM at 8/255 crafted with the true labels, "
        "equal weights (protocol section 3); it can leak labels, see 'Label leaking'",
    ]
    headers = ["model", "arch", "width", "epochs", "train images", "weights sha256", "function id"]
    return provenance_blocks(
        results.entries,
        head=head,
        tail=tail,
        models=Table(headers + ["evaluation s (all cells)"], rows),
        command=command,
        times=stage_times,
    )


def export_frame(results: Results) -> pd.DataFrame:
    """One row per cell: its identity, its numbers (without per-image outcomes) and its model's description."""
    rows = []
    for e in results.entries:
        k = e.key.to_dict()
        subset = k.pop("subset")
        metrics = {m: v for m, v in e.metrics.items() if m != "per_example"}
        rows.append(
            {
                **k,
                "subset_n": subset["n"],
                "subset_of": subset["of"],
                "subset_seed": subset["seed"],
                "model": e.model.title,
                "source_model": e.source.title if e.source else "",
                "protocol_source": e.protocol_source,
                **{f"model.{a}": getattr(e.model, a) for a in ("name", "arch", "width", "training", "seed", "epochs")},
                **{m: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v for m, v in metrics.items()},
                "seconds": e.cell.seconds,
            }
        )
    return pd.DataFrame(rows)


def write_exports(out: Path, results: Results) -> None:
    """results.csv and results.json (every cell, without per-image outcomes), and outcomes.csv.gz: each accuracy
    cell's identity with its per-image outcomes ("1" right, "0" wrong, in the subset's order), from which anyone can
    re-derive every paired test of the report."""
    export = export_frame(results)
    atomic_write_bytes(out / "results.csv", export.to_csv(index=False).encode())
    atomic_write_bytes(out / "results.json", export.to_json(orient="records", indent=1).encode())
    has = [i for i, e in enumerate(results.entries) if e.metrics.get("per_example")]
    outcomes = export.iloc[has][
        [c for c in export.columns if not c.startswith("model.") and c not in ("seconds",)]
    ].copy()
    outcomes["per_example"] = [results.entries[i].metrics["per_example"] for i in has]
    atomic_write_bytes(out / "outcomes.csv.gz", gzip.compress(outcomes.to_csv(index=False).encode(), mtime=0))


def _select(
    workspace: str | Path | None, dataset: str, eps: float, arch: str | None, width: float | None, n: int | None
) -> tuple[Results, _Tables, list[int]]:
    """The report's cells: all of this dataset's (narrowed by arch and width), its table cells on one subset, and
    the other subset sizes left out of the tables."""
    results = Results.load(workspace, dataset).where(arch=arch, width=width)
    if not len(results):
        raise UserError(
            "no results for dataset "
            f"{dataset!r}{'' if arch is None else f' arch {arch}'}{'' if width is None else f' width {width:g}'}"
        )
    n, other_n = _table_subset(results, n)
    return results, _Tables(results.where(role=Role.TABLE), eps, n), other_n


def summary_tables(
    *,
    workspace: str | Path | None,
    dataset: str,
    eps: float = 8 / 255,
    arch: str | None = None,
    width: float | None = None,
    n: int | None = None,
) -> str:
    """Tables 7 and 8 as plain text (what ``reproduce`` prints when it is done)."""
    _, cell, _ = _select(workspace, dataset, eps, arch, width, n)
    paper = paper_tables()
    parts = []
    for table, threat in ((7, Threat.WHITE_BOX), (8, Threat.BLACK_BOX)):
        rendered = table7_8(cell, threat, paper, table)
        parts.append(
            f"Table {table}: {threat} at {eps_label(eps)}, accuracy % [95% CI] (ours, paper, diff)\n"
            + render_text(rendered.headers, rendered.rows)
        )
    return "\n\n".join(parts)


def build_report(
    *,
    workspace: str | Path | None,
    dataset: str,
    out_dir: str | Path,
    eps: float = 8 / 255,
    arch: str | None = None,
    width: float | None = None,
    n: int | None = None,
    command: str = "dc-robust report",
    title: str | None = None,
    preset_note: str = "",
    stage_times: dict[str, float] | None = None,
    fmt: str = "markdown",
) -> Path:
    """Write the report and its files into ``out_dir``; returns the main file's path."""
    if fmt not in ("markdown", "html"):
        raise UserError(f"unknown report format {fmt!r}; valid: markdown, html")
    results, cell, other_n = _select(workspace, dataset, eps, arch, width, n)
    n = cell.n
    models = cell.models()
    out = output_dir(Path(out_dir))
    paper = paper_tables()
    plot_accuracy(
        lambda m, tr, th, at, e: cell(m, tr, th, at, e),
        models,
        cell.results.where(n=n).eps_values(),
        out / "accuracy_vs_eps.png",
    )
    write_exports(out, results)

    blocks: list[Block] = [Title(title or f"Robustness report: {dataset}")]
    blocks.append(
        Paragraph(
            "Our numbers against the paper's Tables 7 and 8 (Liu et al., CVPR 2018). The paper does not state the "
            f"network, epsilon or attack steps behind these tables; ours follow this suite's protocol ({PROTOCOL_DOC}, "
            f"section 2) at eps = {eps_label(eps)}, so differences are expected and are not errors of either side. "
            "Each of our cells is accuracy % with its 95% interval (Wilson for one training seed; over several seeds, "
            "mean ± sd with a t-interval over the seeds); 'diff' is ours minus the paper's."
        )
    )
    for table, threat in ((7, Threat.WHITE_BOX), (8, Threat.BLACK_BOX)):
        blocks.append(Section(f"Table {table}: {threat} attacks"))
        if threat == Threat.BLACK_BOX:
            blocks.append(Paragraph(f"Transfer from the protocol source only: {PROTOCOL_SOURCE}."))
        blocks.append(table7_8(cell, threat, paper, table))
    blocks.append(Section("Tables 7 and 8 at the eps matched to the paper's baseline (a sensitivity analysis)"))
    blocks.append(
        Paragraph(
            "The paper gives no eps. Here each attack's eps is chosen so that our naturally trained baseline's "
            "white-box accuracy comes closest to the paper's; the other models are read at that same eps. FGSM and BIM "
            "are matched apart, so their two eps need not be one setting of the paper's: read this as a sensitivity "
            "analysis of the tables to eps, not as the paper's setting recovered. If the paper's DCNet advantage came "
            "from its eps, it would show here."
        )
    )
    blocks += eps_matched_blocks(cell, paper)
    groups = [(m, tr, cell.results.where(model=m, training=tr)) for m, tr in cell.results.models()]
    blocks += lipschitz_section(
        groups,
        out / "lipschitz.png",
        lambda m, tr: cell(m, tr, Threat.WHITE_BOX, "bim"),
        f"white-box BIM at {eps_label(eps)}",
        show=display,
    )
    blocks.append(Section("Accuracy against epsilon"))
    blocks.append(Image("accuracy_vs_eps.png", "White-box accuracy against epsilon, natural and adversarial training"))
    blocks.append(Section("The paper's claims, judged from our numbers"))
    blocks.append(
        Paragraph(
            f"Paired statistics ({PROTOCOL_DOC}, section 4): every model is attacked on the same images, so 'A beats "
            "B' is an exact McNemar test on the images where the two disagree (one training seed), or a paired "
            "t-interval over training seeds (several); a claim is reproduced when the difference reaches the stated "
            "gap and that test rejects equality at 5% (the interval beside it is descriptive). A claim that an "
            "advantage disappears applies only where the advantage was shown, and holds when the difference's "
            "interval lies within the tolerance."
        )
    )
    cl = claims(cell)
    blocks.append(
        Table(["claim", "verdict", "our numbers"], [[c.text, verdict_mark(c.verdict), c.evidence] for c in cl])
    )
    rows = [
        (f"{display(m)} - Baseline, {PAPER_TRAINING[tr]}, {at.upper()}", d.diff, d.low, d.high)
        for tr in PAPER_TRAINING
        for at in ("fgsm", "bim")
        for m in models
        if m != "baseline"
        for d in [_difference(cell, m, tr, at)]
        if d is not None
    ]
    if rows:
        plot_differences(
            rows, out / "differences.png", f"White-box accuracy minus the baseline's at {eps_label(eps)} (paired)"
        )
        blocks.append(
            Image(
                "differences.png",
                "Each model's white-box accuracy minus the baseline's, with the paired 95% interval (blue: above zero, "
                "vermilion: below, grey: includes zero)",
            )
        )
    blocks.append(Paragraph("Gradient masking check (FGSM gain that BIM removes):"))
    blocks.append(
        Bullets(
            masking_notes(cell, models)
            or ["No model shows a white-box FGSM advantage of 10 points or more that BIM halves."]
        )
    )
    blocks.append(Section("Label leaking"))
    blocks += label_leaking_blocks(cell, cell.results.models(), eps)
    diags = _diagnostics(results, eps)
    blocks += diagnostics_section(
        [
            ModelDiagnostics((display(m), tr, seed), f"{display(m)} ({tr}, seed {seed})", v)
            for (m, tr, seed), v in diags.items()
        ],
        eps,
        ["model", "training", "seed"],
        "No diagnostics in the store for these models: run dc-robust eval --diagnostics or dc-robust study.",
    )
    blocks.append(Section("Which of the paper's robustness claims survive the diagnostics"))
    blocks.append(Bullets(surviving_claims(cl, diags)))
    blocks.append(Section("Transfer matrix (natural models)"))
    blocks += transfer_blocks(results.where(training="natural"), eps)
    blocks += execution_blocks(list({e.model.title: e.model for e in results.entries}.items()))
    blocks.append(Section("Every measured cell"))
    blocks.append(
        Paragraph(
            "All table cells of this selection, each row one set of cells that differ only in the training seed (any "
            "model, attack and subset, including those Tables 7 and 8 have no place for)."
        )
    )
    blocks += all_cells_blocks(results)
    blocks += _provenance(results, n, other_n, command, preset_note, stage_times)
    blocks.append(
        Paragraph(
            "Machine-readable: results.csv, results.json (one row per result cell, per seed, with its full identity); "
            "outcomes.csv.gz holds each accuracy cell's per-image outcomes, from which every paired test here can be "
            "re-derived."
        )
    )

    return write_report(blocks, out, fmt)
