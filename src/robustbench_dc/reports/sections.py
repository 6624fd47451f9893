"""The sections every report shares, written once: Lipschitz estimates, label leaking, gradient-masking
diagnostics, the transfer matrix, execution rates of gated networks, every measured cell, provenance, and the
machine-readable exports. Each reads the cells it is given (the store alone, through the query layer); the
templates (``paper_report``, ``study_report``) decide where each section appears: wherever its cells exist.
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pandas as pd

from robustbench_dc.diagnostics.checks import COLLAPSE_GAP, Diagnostic, catastrophic_overfitting
from robustbench_dc.files import atomic_write_bytes
from robustbench_dc.model_info import ModelInfo
from robustbench_dc.names import CellKind, Role, Status, Threat, eps_label
from robustbench_dc.paper import PAPER_TRAINING, display
from robustbench_dc.reports.claims import STRONG_CHECKS, compare
from robustbench_dc.reports.plots import plot_lipschitz
from robustbench_dc.reports.render import (
    Block,
    Bullets,
    Code,
    Image,
    Paragraph,
    Section,
    Table,
    status_mark,
)
from robustbench_dc.reports.tables import threat_model
from robustbench_dc.results.query import Aggregate, AmbiguousResults, Entry, Results, aggregate, attack_id

if TYPE_CHECKING:
    from robustbench_dc.study import Study

PROTOCOL_DOC = "docs/protocol.md in the robustbench-dc repository"
#: how every report judges a claim (claims.significant), said once for the paper tables and for a study
CLAIM_RULE = (
    f"Paired statistics ({PROTOCOL_DOC}, section 4): every model is attacked on the same images, so 'A beats B' is an "
    "exact McNemar test on the images where the two disagree (one training seed), or a paired t-interval over "
    "training seeds (several); a claim is reproduced when the difference reaches the stated gap and that test "
    "rejects equality at 5% (the interval beside it is descriptive). A claim that an advantage disappears applies "
    "only where the advantage was shown, and holds when the difference's interval lies within the tolerance."
)


def not_in_report(missing: list[str], study: Study) -> str:
    """Says which of a study's models a report built from an unfinished store leaves out, and which of its training
    seeds a narrowed run (``--seeds``) left out (one wording for both templates: a report must not read as the whole
    study when it is not); "" when it is the whole study."""
    parts = []
    if missing:
        parts.append(
            f"Not evaluated yet (or not trained), so not in this report: {', '.join(missing)} (cells evaluated by a "
            f"release before 2026-12 are found once `dc-robust study {study.path or study.name} --report-only` has "
            "recorded which model is which)"
        )
    if study.seeds_left_out:
        left = ", ".join(map(str, study.seeds_left_out))
        parts.append(
            f"Training seed{'s' if len(study.seeds_left_out) > 1 else ''} {left} of the study "
            f"({', '.join(map(str, study.declared_seeds))}) {'are' if len(study.seeds_left_out) > 1 else 'is'} not in "
            f"this report: it was built with `--seeds {','.join(map(str, study.seeds))}`"
        )
    return ". ".join(parts)


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


#: points: seeds whose accuracies span more than this are shown one by one beside their mean (protocol, section 4)
SEED_SPREAD = 10.0


def collapsed(info: ModelInfo) -> bool:
    """Whether the model's card records catastrophic overfitting by today's rule (its per-epoch check)."""
    check = info.robustness_check
    if not check or not check.get("pgd10"):
        return False
    return catastrophic_overfitting(check["epoch"], check["fgsm"], check["pgd10"]) is not None


def cell_text(a: Aggregate | None) -> str:
    """A table cell: its aggregate, and, where its seeds span more than ``SEED_SPREAD`` points or a seed's model
    overfitted catastrophically, every seed's value beside it (the mean describes no network then) and how many
    seeds collapsed."""
    if a is None:
        return "-"
    if a.seeds < 2:
        return a.text()
    values = [(e.seed, 100 * float(e.metrics["accuracy"]), collapsed(e.model)) for e in a.entries]
    marked = sum(c for _, _, c in values)
    if max(v for _, v, _ in values) - min(v for _, v, _ in values) <= SEED_SPREAD and not marked:
        return a.text()
    each = ", ".join(f"seed {s}: {v:.2f}{' (collapsed)' if c else ''}" for s, v, c in values)
    count = f"; {marked} of {len(values)} seeds collapsed" if marked else ""
    return f"{a.text()}; {each}{count}"


def _leaking(c) -> list:
    """The seeds whose exact test finds the true-label FGSM significantly weaker (label leaking)."""
    return [t for t in c.seeds if t.diff > 0 and t.p < 0.05] if c is not None else []


def _leaks(c) -> bool:
    return c is not None and (c.low > 0 if len(c.seeds) < 2 else bool(_leaking(c)))


def _leaking_seeds(c) -> str:
    if c is None or len(c.seeds) < 2:
        return ""
    found = _leaking(c)
    return f", seed{'s' if len(found) > 1 else ''} {', '.join(str(t.seed) for t in found)} of {len(c.seeds)}"


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
                cell_text(true),
                cell_text(pred),
                "-" if c is None else f"{c.diff:+.1f} [{c.low:+.1f}, {c.high:+.1f}]",
                "-" if c is None else c.detail,
            ]
        )
    if not rows:
        return [Paragraph("No FGSM cells with predicted labels (attack fgsm-pred) in the store.")]
    leaking = [f"{r[0]} ({r[1]}{_leaking_seeds(c)})" for r, c in zip(rows, comparisons) if _leaks(c)]
    verdict = (
        f"Label leaking (more accurate under the true-label attack, significantly, judged seed by seed): "
        f"{', '.join(leaking)}."
        if leaking
        else "No model, and no training seed of one, is significantly more accurate under the true-label attack than "
        "under the predicted-label one: no sign of label leaking."
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


def worst_case_blocks(results: Results, models: list[tuple[str, str]], eps: float, show=display) -> list[Block]:
    """Per model and training seed with diagnostics, the per-image worst case over every white-box attack run on the
    diagnostics subset at ``eps`` (AutoAttack included where it ran), beside BIM and AutoAttack alone."""
    diag = results.where(role=Role.DIAGNOSTICS, kind=CellKind.ACCURACY, threat=Threat.WHITE_BOX, eps=eps)
    rows = []
    for name, training in models:
        mine = diag.where(model=name, training=training)
        for seed in sorted({e.seed for e in mine.entries}, key=lambda s: -1 if s is None else s):
            one = mine.where(seeds=[seed]) if seed is not None else mine
            if len({e.key.attack for e in one.entries}) < 2:  # a worst case over one attack is that attack
                continue
            worst = one.worst_case(None, None, eps, role=Role.DIAGNOSTICS, what=f"{name} {training} seed {seed}")
            if worst is None:
                continue
            alone = {}
            for attack in ("bim", "autoattack"):
                try:
                    alone[attack] = one.accuracy(None, None, attack, eps, role=Role.DIAGNOSTICS)
                except AmbiguousResults:
                    alone[attack] = None
            bim = alone["bim"]
            rows.append(
                [
                    show(name),
                    training,
                    "-" if seed is None else seed,
                    len({attack_id(e) for e in one.entries}),
                    worst.n,
                    cell_text(bim),
                    cell_text(alone["autoattack"]),
                    worst.text(),
                    "-" if bim is None else f"{worst.mean - bim.mean:+.1f}",
                ]
            )
    if not rows:
        return []
    return [
        Section("Worst case over every white-box attack (diagnostics subset)"),
        Paragraph(
            f"At {eps_label(eps)}, on the diagnostics' images: an image counts as right only if every white-box attack "
            "run on it left it right (FGSM, BIM, the PGD variants, APGD with both losses, smoothed-gradient PGD, BPDA "
            "where it applies, and the official AutoAttack where it ran). A robustness figure rests on this worst "
            "case, not on one attack (protocol, section 4)."
        ),
        Table(
            [
                "model",
                "training",
                "seed",
                "attacks",
                "images",
                "BIM %",
                "AutoAttack %",
                "worst case % [95% CI]",
                "worst case - BIM, points",
            ],
            rows,
        ),
    ]


def training_columns(m: ModelInfo) -> list[Any]:
    """Architecture, width, epochs and training images of a model for the provenance tables ("-" where unknown)."""
    return ["-" if v is None else v for v in (m.arch or None, m.width, m.epochs, m.train_images)]


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


def robustness_check_blocks(models: list[tuple[str, ModelInfo]]) -> list[Block]:
    """The per-epoch robustness check of the (name, stored description) of ``models`` whose card ran it: catastrophic
    overfitting is reported beside the tables, never hidden by choosing an epoch."""
    rows, overfitted = [], []
    for name, info in models:
        check = info.robustness_check
        if not check or not check.get("pgd10"):
            continue
        epochs, fgsm, pgd = check["epoch"], check["fgsm"], check["pgd10"]
        best = max(range(len(pgd)), key=lambda i: pgd[i])
        collapse = catastrophic_overfitting(epochs, fgsm, pgd)  # today's rule, whatever the card's own said
        if collapse is not None:
            overfitted.append(f"{name} (epoch {collapse})")
        rows.append(
            [
                name,
                check.get("images", "-"),
                f"{100 * pgd[best]:.1f} (epoch {epochs[best]})",
                f"{100 * fgsm[-1]:.1f}",
                f"{100 * pgd[-1]:.1f}",
                "none seen" if collapse is None else f"from epoch {collapse}",
            ]
        )
    if not rows:
        return []
    return [
        Section("Catastrophic overfitting during training"),
        Paragraph(
            "After every epoch the training attacked the same fixed training images with FGSM and PGD-10 (step eps/4, "
            "random start) at the training eps, in fp32 (the card's history holds every epoch). Catastrophic "
            "overfitting (Wong et al. 2020) is marked at the first epoch whose PGD-10 accuracy fell below half the "
            f"best before it while FGSM accuracy did not fall and exceeds PGD-10 accuracy by {100 * COLLAPSE_GAP:.0f} "
            "points or more (FGSM has stopped being an attack). Every model is evaluated at its last epoch: no epoch "
            "is chosen after the fact."
        ),
        Table(
            [
                "model",
                "check images",
                "best PGD-10 %",
                "last epoch: FGSM %",
                "last epoch: PGD-10 %",
                "catastrophic overfitting",
            ],
            rows,
        ),
        Paragraph(
            "Catastrophic overfitting: "
            + (
                "; ".join(overfitted) + ". FGSM accuracy overstates the robustness of a model so marked."
                if overfitted
                else "none."
            )
        ),
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
                cell_text(agg),
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
    """Each distinct software and machine the cells were computed with, as one line (the CPU's model where the cell
    names it: cells from before 2026-12-07 hold only its architecture, which ``machine`` already says)."""
    envs = sorted({json.dumps(e.cell.provenance.get("environment", {}), sort_keys=True) for e in entries})
    return [
        f"robustbench-dc {v.get('robustbench_dc')}, torch {v.get('torch')} ({v.get('torch_build', '?')}), Python "
        f"{v.get('python')}; {v.get('machine')}"
        + (f"; {v['cpu']}" if v.get("cpu") and v["cpu"] != str(v.get("machine", "")).split(",")[0] else "")
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
