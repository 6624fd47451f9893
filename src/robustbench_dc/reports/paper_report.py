"""The paper-tables template: Tables 7 and 8 next to the paper's numbers, the matched-eps tables and the
computed claims, with the shared sections (``sections``) around them. Built from the result store alone, through
the query layer: every number shown comes from cells that differ at most in the training seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Collection

import pandas as pd

from robustbench_dc.diagnostics.checks import diagnose, measured_from_cells
from robustbench_dc.errors import UserError
from robustbench_dc.files import output_dir
from robustbench_dc.model_info import ModelInfo
from robustbench_dc.names import CellKind, Role, Status, Threat, eps_label
from robustbench_dc.paper import ATTACK_ROWS, PAPER_COLUMNS, PAPER_TRAINING, display, paper_tables, paper_value
from robustbench_dc.protocol import PROTOCOL_SOURCE
from robustbench_dc.reports.claims import claims, compare, masking_notes, surviving_claims
from robustbench_dc.reports.paper_cells import paper_signatures
from robustbench_dc.reports.plots import plot_accuracy, plot_differences
from robustbench_dc.reports.render import (
    Block,
    Bullets,
    Image,
    Paragraph,
    Section,
    Table,
    Title,
    render_text,
    verdict_mark,
    write_report,
)
from robustbench_dc.reports.sections import (
    CLAIM_RULE,
    PROTOCOL_DOC,
    ModelDiagnostics,
    all_cells_blocks,
    cell_text,
    diagnostics_section,
    execution_blocks,
    label_leaking_blocks,
    lipschitz_section,
    provenance_blocks,
    robustness_check_blocks,
    training_columns,
    transfer_blocks,
    worst_case_blocks,
    write_exports,
)
from robustbench_dc.results.query import WORST_CASE, AmbiguousResults, Entry, Results

MATCH_TOLERANCE = 2.0  # points: how close our baseline must come to the paper's to call an eps matched


class _Tables:
    """The table cells of one report: role ``table``, one image subset, at the report's eps by default."""

    def __init__(self, results: Results, eps: float, n: int) -> None:
        self.results, self.eps, self.n = results, eps, n

    def __call__(self, model: str, training: str, threat: Threat, attack: str, eps: float | None = None):
        at = self.eps if eps is None else eps
        if attack == WORST_CASE:  # per image, over every white-box attack of the tables
            return self.results.worst_case(model, training, at, n=self.n) if threat == Threat.WHITE_BOX else None
        return self.results.accuracy(model, training, attack, at, threat=threat, n=self.n)

    def models(self) -> list[str]:
        names = list(dict.fromkeys(name for name, training in self.results.models() if training in PAPER_TRAINING))
        return [m for m in PAPER_COLUMNS if m in names] + sorted(m for m in names if m not in PAPER_COLUMNS)


def models_trained(cell: _Tables) -> list[tuple[str, str]]:
    """(model, training) of the tables, in their order."""
    return [(m, tr) for tr in PAPER_TRAINING for m in cell.models()]


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
    attacks = ATTACK_ROWS + ((WORST_CASE,) if threat == Threat.WHITE_BOX else ())
    for ours_training, paper_training in PAPER_TRAINING.items():
        for attack in attacks:
            row = [paper_training, {"none": "none", WORST_CASE: "worst case"}.get(attack, attack.upper())]
            for m in models:
                c = cell(m, ours_training, threat, attack)
                p = paper_value(paper, table, paper_training, attack, m) if m in PAPER_COLUMNS else None
                row += [
                    cell_text(c),
                    f"{p:.2f}" if p is not None else "-",
                    f"{c.mean - p:+.2f}" if c and p is not None else "-",
                ]
            rows.append(row)
    return Table(headers, rows)


def _difference(cell: _Tables, model: str, training: str, attack: str):
    a, b = cell(model, training, Threat.WHITE_BOX, attack), cell("baseline", training, Threat.WHITE_BOX, attack)
    return compare(a, b) if a is not None and b is not None else None


def matched_eps(cell: _Tables, paper: pd.DataFrame, attack: str, *, everyone: bool = True) -> float | None:
    """Among the eps at which every paper model (or, with ``everyone=False``, our natural baseline alone) has a
    natural white-box cell, the one where our natural baseline comes closest to the paper's accuracy (the paper
    states no eps)."""
    wanted = paper_value(paper, 7, "natural", attack, "baseline")
    models = [m for m in cell.models() if m in PAPER_COLUMNS]
    if "baseline" not in models:
        return None
    names, best = models if everyone else ["baseline"], None
    for eps in cell.results.where(n=cell.n, attack=attack, threat=Threat.WHITE_BOX).eps_values():
        found = [cell(m, "natural", Threat.WHITE_BOX, attack, eps) for m in names]
        if any(f is None for f in found):
            continue
        gap = abs(found[names.index("baseline")].mean - wanted)
        if best is None or gap < best[0]:
            best = (gap, eps)
    return None if best is None else best[1]


def _unfinished_match(cell: _Tables, paper: pd.DataFrame, attack: str, eps: float) -> str:
    """A sentence where the eps search measured our baseline closer to the paper than the eps every model was read
    at (an interrupted study: the others are computed at the new eps last), else ''."""
    nearest = matched_eps(cell, paper, attack, everyone=False)
    if nearest is None or nearest == eps:
        return ""
    wanted = paper_value(paper, 7, "natural", attack, "baseline")
    ours, there = (cell("baseline", "natural", Threat.WHITE_BOX, attack, e) for e in (nearest, eps))
    if abs(ours.mean - wanted) >= abs(there.mean - wanted):
        return ""
    return (
        f"**Unfinished.** Our naturally trained baseline was measured closer to the paper's {wanted:.2f}% at eps = "
        f"{255 * nearest:.3g}/255 ({ours.mean:.2f}%), where the other models have not been evaluated yet: the study "
        "computes them when it runs again, and this table moves there."
    )


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
                    row += [cell_text(c), f"{p:.2f}" if p is not None else "-"]
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
        unfinished = _unfinished_match(cell, paper, attack, eps)
        if unfinished:
            blocks.append(Paragraph(unfinished))
    return blocks or [
        Paragraph("No cells at an eps matched to the paper's baseline (dc-robust reproduce computes them).")
    ]


def _diagnostics(results: Results, eps: float) -> dict[tuple[str, str, int], list]:
    """Diagnostics per evaluated function (model, training, seed), judged from its stored cells."""
    by: dict[str, list[Entry]] = {}
    for e in results.where(role=Role.DIAGNOSTICS).entries:
        by.setdefault(e.key.function, []).append(e)
    out = {}
    for entries in by.values():
        m = entries[0].model
        judged = diagnose(measured_from_cells(entries, eps))
        if all(d.status == Status.NA for d in judged):  # its diagnostics-subset cells are worst-case attacks alone
            continue
        out[(m.model_name, m.training, -1 if m.seed is None else int(m.seed))] = judged
    return out


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


def _select(
    workspace: str | Path | None,
    dataset: str,
    eps: float,
    arch: str | None,
    width: float | None,
    n: int | None,
    seeds: Collection[int] | None,
    functions: Collection[str] | None = None,
) -> tuple[Results, _Tables, list[int]]:
    """The report's cells: all of this dataset's (narrowed by arch, width and training seeds, and to ``functions``
    where given: a study's own models, not others of the same name in its workspace), its table cells on one
    subset, and the other subset sizes left out of the tables."""
    results = Results.load(workspace, dataset).where(arch=arch, width=width, seeds=seeds, functions=functions)
    if not len(results):
        raise UserError(
            "no results for dataset "
            f"{dataset!r}{'' if arch is None else f' arch {arch}'}{'' if width is None else f' width {width:g}'}"
            f"{'' if seeds is None else f' training seeds {sorted(seeds)}'}"
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
    seeds: Collection[int] | None = None,
    functions: Collection[str] | None = None,
) -> str:
    """Tables 7 and 8 as plain text (what ``reproduce`` prints when it is done)."""
    _, cell, _ = _select(workspace, dataset, eps, arch, width, n, seeds, functions)
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
    seeds: Collection[int] | None = None,
    command: str = "dc-robust report",
    title: str | None = None,
    preset_note: str = "",
    stage_times: dict[str, float] | None = None,
    fmt: str = "markdown",
    missing_note: str = "",
    functions: Collection[str] | None = None,
) -> Path:
    """Write the report and its files into ``out_dir``; returns the main file's path. ``seeds`` (None: all) narrows
    it to those training seeds' models, ``functions`` (None: all) to those models (a study's). ``missing_note`` (a
    study's ``sections.not_in_report``) goes under the introduction, where a reader of an unfinished study's tables
    sees it."""
    if fmt not in ("markdown", "html"):
        raise UserError(f"unknown report format {fmt!r}; valid: markdown, html")
    results, cell, other_n = _select(workspace, dataset, eps, arch, width, n, seeds, functions)
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
            f"section 2) at eps = {eps_label(eps)}. A difference between the two is a finding to explain, not an error "
            "to assign to either side: the section 'The paper's own cells, read by our rules' says which of its "
            "numbers carry the signatures our diagnostics look for in ours. "
            "Each of our cells is accuracy % with its 95% interval (Wilson for one training seed; over several seeds, "
            "mean ± sd with a t-interval over the seeds); 'diff' is ours minus the paper's."
        )
    )
    if missing_note:
        blocks.append(Paragraph(f"**Incomplete.** {missing_note}."))
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
    blocks.append(Paragraph(CLAIM_RULE))
    cl = claims(cell, paper)
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
    blocks.append(Section("The paper's own cells, read by our rules"))
    blocks.append(
        Paragraph(
            f"The rules our diagnostics apply to our cells ({PROTOCOL_DOC}, section 8), applied to the paper's "
            "Tables 7 and 8: white-box no stronger than black-box and a single-step advantage that BIM removes are "
            "signatures of gradient masking (Carlini et al. 2019; Athalye et al. 2018); an FGSM-trained model that "
            "FGSM barely touches and BIM breaks is the pattern of catastrophic overfitting (Wong et al. 2020) or label "
            "leaking (Kurakin et al. 2017). The paper's tables carry:"
        )
    )
    blocks.append(Bullets(paper_signatures(paper) or ["none of these signatures."]))
    blocks.append(Section("Label leaking"))
    blocks += label_leaking_blocks(cell, cell.results.models(), eps)
    blocks += robustness_check_blocks(list({e.model.title: e.model for e in results.entries}.items()))
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
    blocks += worst_case_blocks(results, models_trained(cell), eps, show=display)
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
