"""One entry point for a study's report, whatever its template: the paper tables for ``report = "paper"`` (the
presets), the study's own tables otherwise. Both read the store alone."""

from __future__ import annotations

from pathlib import Path

from robustbench_dc.reports.paper_report import build_report, summary_tables
from robustbench_dc.reports.sections import not_in_report
from robustbench_dc.reports.study_report import build_study_report, measured_targets
from robustbench_dc.results.query import Results
from robustbench_dc.study import Study
from robustbench_dc.workspace import reports_dir, workspace_dir


def report_dir(study: Study, workspace: str | Path | None = None) -> Path:
    """Where a study's report goes by default: reports/NAME for the paper tables (the presets), reports/study-NAME
    else."""
    return reports_dir(workspace_dir(workspace), study.name if study.report == "paper" else f"study-{study.name}")


def write_study_report(
    study: Study,
    *,
    workspace: str | Path | None = None,
    out_dir: str | Path | None = None,
    command: str = "",
    times: dict[str, float] | None = None,
    fmt: str = "markdown",
) -> tuple[Path, str]:
    """The study's report from the store (the paper-tables template for ``report = "paper"``, the study's own
    otherwise); returns its path and, for the paper tables, Tables 7 and 8 as plain text ("" otherwise)."""
    out = Path(out_dir) if out_dir is not None else report_dir(study, workspace)
    command = command or f"dc-robust study {study.path or study.name}"
    if study.report != "paper":
        return build_study_report(study, workspace=workspace, out_dir=out, command=command, times=times, fmt=fmt), ""
    arch, width = study.models[0].arch, float(study.training.get("width", 1.0))
    # The study's own models only: its workspace may hold others of the same name, seed and training (an earlier
    # recipe of the study, trained beside them), whose cells the tables would otherwise mix in.
    measured, missing = measured_targets(study, Results.load(workspace, study.dataset))
    functions = {m.function_id for m in measured}
    path = build_report(
        workspace=workspace,
        dataset=study.dataset,
        out_dir=out,
        eps=study.table_eps,
        arch=arch,
        width=width,
        n=study.n,
        seeds=study.seeds,
        command=command,
        title=f"Robustness report: preset {study.name} ({study.dataset})",
        preset_note=" ".join(study.description.split()),
        stage_times=times,
        fmt=fmt,
        missing_note=not_in_report(missing, study),
        functions=functions,
    )
    return path, summary_tables(
        workspace=workspace,
        dataset=study.dataset,
        eps=study.table_eps,
        arch=arch,
        width=width,
        n=study.n,
        seeds=study.seeds,
        functions=functions,
    )
