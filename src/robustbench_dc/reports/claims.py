"""The qualitative claims of the paper's Tables 7 and 8, judged from our numbers (thresholds in each text)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from robustbench_dc.reports.paper import PAPER_COLUMNS, display
from robustbench_dc.results.query import Aggregate
from robustbench_dc.stats import intervals_overlap

#: (model, training, threat, attack) -> the aggregate the report shows in its tables, or None
CellLookup = Callable[[str, str, str, str], Aggregate | None]


@dataclass(frozen=True)
class Claim:
    text: str
    verdict: str  # "reproduced", "not reproduced", "not measured"
    evidence: str
    models: tuple[tuple[str, str], ...] = ()  # (model, training) whose robustness the claim is about


def _evidence(a: Aggregate, b: Aggregate, names: tuple[str, str], overlap: bool) -> str:
    spread = lambda c: f" ±{c.std:.1f} sd over {c.seeds} seeds" if c.seeds > 1 else ""  # noqa: E731
    return (f"{names[0]} {a.mean:.1f}%{spread(a)} vs {names[1]} {b.mean:.1f}%{spread(b)} "
            f"(gap {a.mean - b.mean:+.1f} points; intervals {'overlap' if overlap else 'do not overlap'})")  # fmt: skip


def _diff_claim(text: str, a: Aggregate | None, b: Aggregate | None, min_gap: float, names: tuple[str, str], models=()) -> Claim:
    """``a`` exceeds ``b`` by at least ``min_gap`` points with non-overlapping intervals."""
    if a is None or b is None:
        return Claim(text, "not measured", "", models)
    overlap = intervals_overlap((a.low, a.high), (b.low, b.high))
    ok = a.mean - b.mean >= min_gap and not overlap
    return Claim(text, "reproduced" if ok else "not reproduced", _evidence(a, b, names, overlap), models)


def _close_claim(text: str, a: Aggregate | None, b: Aggregate | None, tolerance: float, names: tuple[str, str], models=()) -> Claim:
    """``a`` and ``b`` within ``tolerance`` points, or their intervals overlap."""
    if a is None or b is None:
        return Claim(text, "not measured", "", models)
    overlap = intervals_overlap((a.low, a.high), (b.low, b.high))
    ok = abs(a.mean - b.mean) <= tolerance or overlap
    return Claim(text, "reproduced" if ok else "not reproduced", _evidence(a, b, names, overlap), models)


def claims(cell: CellLookup) -> list[Claim]:
    out: list[Claim] = []
    base = lambda tr, th, at: cell("baseline", tr, th, at)  # noqa: E731
    for m in ("sphereconv", "ballconv", "tanhconv"):
        d = display(m)
        out.append(_diff_claim(f"Naturally trained {d} resists white-box FGSM far better than the baseline (>= 10 points)",
                               cell(m, "natural", "white-box", "fgsm"), base("natural", "white-box", "fgsm"), 10, (d, "Baseline"), ((m, "natural"),)))  # fmt: skip
        out.append(_close_claim(f"Under white-box BIM the natural {d}'s advantage disappears (within 5 points)",
                                cell(m, "natural", "white-box", "bim"), base("natural", "white-box", "bim"), 5, (d, "Baseline")))  # fmt: skip
    out.append(_diff_claim("FGSM adversarial training helps the baseline against white-box FGSM (>= 10 points)",
                           base("fgsm", "white-box", "fgsm"), base("natural", "white-box", "fgsm"), 10, ("adversarial", "natural"), (("baseline", "fgsm"),)))  # fmt: skip
    out.append(_close_claim("... but not against white-box BIM (within 5 points)",
                            base("fgsm", "white-box", "bim"), base("natural", "white-box", "bim"), 5, ("adversarial", "natural")))  # fmt: skip
    for m in ("sphereconv", "ballconv", "tanhconv"):
        d = display(m)
        out.append(_diff_claim(f"Adversarially trained {d} resists white-box BIM better than the adversarially trained baseline (>= 5 points)",
                               cell(m, "fgsm", "white-box", "bim"), base("fgsm", "white-box", "bim"), 5, (d, "Baseline"), ((m, "fgsm"),)))  # fmt: skip
    for m in PAPER_COLUMNS:
        d = display(m)
        out.append(_diff_claim(f"For natural {d}, black-box (transfer) FGSM is weaker than white-box FGSM (>= 5 points)",
                               cell(m, "natural", "black-box", "fgsm"), cell(m, "natural", "white-box", "fgsm"), 5, ("black-box", "white-box")))  # fmt: skip
    return out


def masking_notes(cell: CellLookup, models: list[str]) -> list[str]:
    """Where a white-box FGSM advantage over the baseline vanishes under BIM: the classic sign of gradient masking."""
    notes = []
    for training in ("natural", "fgsm"):
        bf, bb = cell("baseline", training, "white-box", "fgsm"), cell("baseline", training, "white-box", "bim")
        for m in models:
            if m == "baseline":
                continue
            f, b = cell(m, training, "white-box", "fgsm"), cell(m, training, "white-box", "bim")
            if bf is None or bb is None or f is None or b is None:
                continue
            fgsm_gain, bim_gain = f.mean - bf.mean, b.mean - bb.mean
            if fgsm_gain >= 10 and bim_gain < fgsm_gain / 2:
                notes.append(f"{display(m)} ({training}): +{fgsm_gain:.1f} points over the baseline under white-box FGSM "
                             f"but {bim_gain:+.1f} under BIM. An advantage that an iterative attack removes suggests gradient "
                             f"masking, not robustness.")  # fmt: skip
    return notes


def surviving_claims(cl: list[Claim], diags: dict[tuple[str, str, int], list]) -> list[str]:
    """Each reproduced robustness claim, and whether every model it credits passes every diagnostic."""
    lines = []
    for c in cl:
        if c.verdict != "reproduced" or not c.models:
            continue
        warns = [f"{display(m)} ({tr}): {d.name}" for (m, tr, _), v in diags.items() if (m, tr) in c.models for d in v if d.status == "warn"]
        measured = any((m, tr) in c.models and any(d.status != "n/a" for d in v) for (m, tr, _), v in diags.items())
        if not measured:
            lines.append(f"{c.text}: reproduced, but not checked (no diagnostics for the model)")
        elif warns:
            lines.append(f"{c.text}: reproduced, but does NOT survive the diagnostics ({'; '.join(warns)})")
        else:
            lines.append(f"{c.text}: reproduced and survives the diagnostics")
    return lines or ["None of the paper's robustness claims was reproduced, so none is left to check against the diagnostics."]
