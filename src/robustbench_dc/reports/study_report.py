"""The report of a study: exactly the study's models, attacks and eps, each table cell read from the cells of
that model's own functions (one per training seed), so two models that share a zoo name (a ResNet and a
ConvNet-AIG both with ordinary convolutions) are never mixed. Built from the store alone: which function each
model is was recorded when it was evaluated (``ResultStore.study_targets``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from robustbench_dc import names
from robustbench_dc.diagnostics.checks import diagnose, measured_from_cells
from robustbench_dc.files import output_dir
from robustbench_dc.model_info import ModelInfo
from robustbench_dc.names import Role, Threat, eps_label
from robustbench_dc.protocol import PROTOCOL_SOURCE
from robustbench_dc.reports.claims import Claim, compare, difference_claim
from robustbench_dc.reports.plots import plot_accuracy, plot_differences
from robustbench_dc.reports.render import Block, Image, Paragraph, Section, Table, Title, verdict_mark, write_report
from robustbench_dc.reports.sections import (
    CLAIM_RULE,
    PROTOCOL_DOC,
    ModelDiagnostics,
    cell_text,
    diagnostics_section,
    execution_blocks,
    label_leaking_blocks,
    lipschitz_section,
    not_in_report,
    provenance_blocks,
    robustness_check_blocks,
    training_columns,
    transfer_blocks,
    write_exports,
)
from robustbench_dc.results.query import Aggregate, Results
from robustbench_dc.results.store import StudyTarget
from robustbench_dc.study import Study

#: wide tables (a column per model) up to this many models, long format (a row per model and attack) beyond
WIDE_MAX_MODELS = 3


@dataclass(frozen=True)
class _Measured:
    """A model of the study that was evaluated: which one, its function, and the store's description of it."""

    target: StudyTarget
    function_id: str
    info: ModelInfo


class StudyCells:
    """Table cells of a study: (label, training) -> the cells of that model's functions over its seeds."""

    def __init__(self, study: Study, results: Results, measured: list[_Measured]) -> None:
        self.study, self.measured = study, measured
        functions: dict[tuple[str, str], set[str]] = {}
        for m in measured:
            functions.setdefault((m.target.label, m.target.training), set()).add(m.function_id)
        self._by = {k: results.where(functions=f) for k, f in functions.items()}

    def pairs(self) -> list[tuple[str, str]]:
        return list(self._by)

    def results(self, label: str, training: str) -> Results:
        return self._by.get((label, training), Results([]))

    def __call__(
        self, label: str, training: str, threat: Threat, attack: str, eps: float | None = None
    ) -> Aggregate | None:
        sub = self.results(label, training)
        return sub.accuracy(None, None, attack, eps, threat=threat, n=self.study.n, what=f"{label} {training}")


def measured_targets(study: Study, results: Results) -> tuple[list[_Measured], list[str]]:
    """The study's models the store has cells of (in the study's order), and the names of those it has not."""
    found, missing = [], []
    infos = {e.key.function: e.model for e in results.entries}
    for t in study.targets():
        function = results.targets.get(t)
        if function is None or function not in infos:
            missing.append(t.describe())
        else:
            found.append(_Measured(t, function, infos[function]))
    return found, missing


def _text(a: Aggregate | None) -> str:
    return cell_text(a)


def _wide_table(
    cells: StudyCells, training: str, labels: list[str], attacks: list[str], eps: list[float], clean: bool
) -> Block:
    """A row per attack and eps, a column per model."""
    specs = [(Threat.WHITE_BOX, "none", None)] * clean + [
        (threat, a, e) for threat in (Threat.WHITE_BOX, Threat.BLACK_BOX) for a in attacks for e in eps
    ]
    specs = [r for r in specs if any(cells(label, training, *r) is not None for label in labels)]

    def what(threat: str, attack: str, e: float | None) -> str:
        return "clean" if attack == "none" else f"{threat} {attack} @ {eps_label(e or 0.0, attack)}"

    rows = [[what(*r)] + [_text(cells(label, training, *r)) for label in labels] for r in specs]
    return Table(["attack", *labels], rows)


def _long_table(
    cells: StudyCells, training: str, labels: list[str], attacks: list[str], eps: list[float], clean: bool
) -> Block:
    """A row per model, threat and eps, a column per attack (the clean accuracy on each model's first row)."""
    rows = []
    for label in labels:
        first = _text(cells(label, training, Threat.WHITE_BOX, "none")) if clean else ""
        for threat in (Threat.WHITE_BOX, Threat.BLACK_BOX):
            for e in eps:
                values = [cells(label, training, threat, a, e) for a in attacks]
                if any(v is not None for v in values):
                    rows.append(
                        [label, threat, eps_label(e, attacks[0]), *([first] if clean else []), *map(_text, values)]
                    )
                    first = ""
    return Table(["model", "threat", "eps", *(["clean"] if clean else []), *attacks], rows)


def accuracy_blocks(cells: StudyCells, training: str) -> list[Block]:
    """A table per threat model (L-inf, L2): wide (a column per model) up to ``WIDE_MAX_MODELS`` models; beyond,
    long: a row per model, threat and eps, a column per attack."""
    study = cells.study
    labels = [m.label for m in study.models if training in study.regimes_of(m)]
    groups = [
        ("L-inf", [a for a in study.attacks if a not in names.L2_ATTACKS], sorted(set(study.eps) | {study.table_eps})),
        ("L2", [a for a in study.attacks if a in names.L2_ATTACKS], sorted(study.eps_l2)),
    ]
    table = _wide_table if len(labels) <= WIDE_MAX_MODELS else _long_table
    blocks: list[Block] = []
    for g, (norm, attacks, eps_values) in enumerate(x for x in groups if x[1]):
        if groups[1][1]:
            blocks.append(Paragraph(f"{norm} threat model:"))
        blocks.append(table(cells, training, labels, attacks, eps_values, g == 0))
    return blocks


def claim_results(cells: StudyCells) -> list[Claim]:
    study = cells.study
    out = []
    for c in study.claims:
        eps = c.eps or study.table_eps
        a, b = cells(c.better, c.training, c.threat, c.attack, eps), cells(c.than, c.training, c.threat, c.attack, eps)
        out.append(
            difference_claim(c.describe(study.table_eps), a, b, c.by, (c.better, c.than), ((c.better, c.training),))
        )
    return out


def differences(cells: StudyCells) -> list[tuple[str, float, float, float]]:
    """Each claim's paired difference (first model minus second, points) with its 95% interval, where measured."""
    study, out = cells.study, []
    for c in study.claims:
        eps = c.eps or study.table_eps
        a, b = cells(c.better, c.training, c.threat, c.attack, eps), cells(c.than, c.training, c.threat, c.attack, eps)
        d = compare(a, b) if a is not None and b is not None else None
        if d is not None:
            out.append(
                (
                    f"{c.better} - {c.than}, {c.training}, {c.threat} {c.attack} @ {eps_label(eps, c.attack)}",
                    d.diff,
                    d.low,
                    d.high,
                )
            )
    return out


def diagnostics_by_model(cells: StudyCells) -> list[tuple[_Measured, list]]:
    out = []
    for m in cells.measured:
        entries = [
            e
            for e in cells.results(m.target.label, m.target.training).entries
            if e.key.function == m.function_id and e.key.role == Role.DIAGNOSTICS
        ]
        if entries:
            out.append((m, diagnose(measured_from_cells(entries, cells.study.table_eps))))
    return out


def _name(m: _Measured) -> str:
    return f"{m.target.label} ({m.target.training}" + ("" if m.target.seed < 0 else f", seed {m.target.seed}") + ")"


def _provenance(cells: StudyCells, command: str, missing: list[str], times: dict[str, float] | None) -> list[Block]:
    """The study template's provenance: the study, its shared training settings, its source, what is missing."""
    study = cells.study
    entries = [e for label, training in cells.pairs() for e in cells.results(label, training).entries]
    rows = [
        [
            _name(m),
            *training_columns(m.info),
            "-" if m.info.clean_test_accuracy is None else f"{100 * m.info.clean_test_accuracy:.2f}",
            m.info.weights_sha256[:12],
            m.function_id[:12],
        ]
        for m in cells.measured
    ]
    head = [
        f"Study: {study.name} ({study.path}); dataset {study.dataset}; training seeds "
        f"{', '.join(map(str, study.seeds))}; {'all' if study.n is None else study.n} test images per cell (the same "
        "seeded subset for every model)",
        f"Training settings shared by every model: {json.dumps(study.training, sort_keys=True)}",
        *(
            f"Training settings of the {regime} models only: {json.dumps(settings, sort_keys=True)}"
            for regime, settings in sorted(study.regime_training.items())
        ),
    ]
    tail = [f"Black-box source: {PROTOCOL_SOURCE if study.source == 'protocol' else 'none'}"]
    if missing or study.seeds_left_out:
        tail.append(not_in_report(missing, study))
    headers = ["model", "arch", "width", "epochs", "train images", "clean % (card)", "weights sha256", "function id"]
    return provenance_blocks(entries, head=head, tail=tail, models=Table(headers, rows), command=command, times=times)


def _per_model_sections(cells: StudyCells, regimes: list[str], out: Path, own: Results) -> list[Block]:
    """Lipschitz estimates, label leaking (where FGSM and FGSM-pred ran) and the transfer matrix (where computed)."""
    study, measured = cells.study, cells.measured
    blocks: list[Block] = []
    pairs = [
        (m.label, t)
        for t in regimes
        for m in study.models
        if t in study.regimes_of(m) and cells.results(m.label, t).entries
    ]
    iterative = next((a for a in ("bim", "pgd") if a in study.attacks), None)
    lipschitz = lipschitz_section(
        [(label, t, cells.results(label, t)) for label, t in pairs],
        out / "lipschitz.png",
        lambda label, t: None if iterative is None else cells(label, t, Threat.WHITE_BOX, iterative, study.table_eps),
        f"white-box {(iterative or '').upper()} at {eps_label(study.table_eps)}",
    )
    blocks += lipschitz
    if {"fgsm", "fgsm-pred"} <= set(study.attacks):
        blocks.append(Section("Label leaking"))
        blocks += label_leaking_blocks(cells, pairs, study.table_eps)
    names_of = {m.function_id: _name(m) for m in measured}
    if any(e.key.role == Role.TRANSFER_MATRIX for e in own.entries):
        blocks.append(Section("Transfer matrix (natural models)"))
        blocks += transfer_blocks(own, study.table_eps, name=lambda f: names_of.get(f, f[:12]))
    return blocks


def _claims_section(cells: StudyCells, out: Path) -> list[Block]:
    """The study's claims, each judged by its paired test, and the figure of their differences."""
    blocks: list[Block] = [
        Section("Claims"),
        Paragraph(CLAIM_RULE),
        Table(
            ["claim", "verdict", "our numbers"],
            [[c.text, verdict_mark(c.verdict), c.evidence] for c in claim_results(cells)],
        ),
    ]
    rows = differences(cells)
    if rows:
        plot_differences(
            rows, out / "differences.png", "Paired differences behind the claims (first model minus second)"
        )
        caption = (
            "Paired difference and 95% interval of each claim (blue: above zero, vermilion: below, grey: includes zero)"
        )
        blocks.append(Image("differences.png", caption))
    return blocks


def build_study_report(
    study: Study,
    *,
    workspace: str | Path | None,
    out_dir: str | Path,
    command: str = "",
    times: dict[str, float] | None = None,
    fmt: str = "markdown",
) -> Path:
    """Write the study's report (REPORT.md or report.html), its figure and results.csv/json into ``out_dir``."""
    results = Results.load(workspace, study.dataset)
    measured, missing = measured_targets(study, results)
    cells = StudyCells(study, results, measured)
    out = output_dir(Path(out_dir))
    regimes = list(dict.fromkeys(t for m in study.models for t in study.regimes_of(m)))
    labels = [m.label for m in study.models]
    plot_accuracy(
        cells,
        labels,
        sorted(set(study.eps) | {study.table_eps}),
        out / "accuracy_vs_eps.png",
        trainings={r: r for r in regimes},
        attacks=tuple(a for a in study.attacks if a not in ("square", "autoattack")) or study.attacks,
        label=str,
    )
    own = Results(e for pair in cells.pairs() for e in cells.results(*pair).entries)
    write_exports(out, own)

    blocks: list[Block] = [Title(f"Study {study.name}: {study.dataset}")]
    if study.description:
        blocks.append(Paragraph(study.description))
    blocks.append(
        Paragraph(
            "Accuracy % with its 95% interval (Wilson for one training seed; over several, mean ± sd with a "
            f"t-interval over the seeds). Attacks follow {PROTOCOL_DOC}, section 2, and run in fp32; every model is "
            "attacked on the same images."
        )
    )
    for training in regimes:
        blocks.append(Section(f"Accuracy: {training} training"))
        blocks += accuracy_blocks(cells, training)
    blocks.append(Image("accuracy_vs_eps.png", "White-box accuracy against eps per training regime and attack"))
    blocks += execution_blocks([(_name(m), m.info) for m in measured])
    blocks += robustness_check_blocks([(_name(m), m.info) for m in measured])
    blocks += _per_model_sections(cells, regimes, out, own)
    if study.claims:
        blocks += _claims_section(cells, out)
    blocks += diagnostics_section(
        [ModelDiagnostics((_name(m),), _name(m), v) for m, v in diagnostics_by_model(cells)],
        study.table_eps,
        ["model"],
        "No diagnostics were run for this study (diagnostics = false).",
    )
    blocks += _provenance(cells, command or f"dc-robust study {study.path}", missing, times)
    blocks.append(
        Paragraph(
            "Machine-readable: results.csv, results.json (one row per result cell of these models, with its full "
            "identity)."
        )
    )
    return write_report(blocks, out, fmt)
