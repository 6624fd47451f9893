"""The qualitative claims of the paper's Tables 7 and 8, judged from our numbers with paired statistics.

Every model is attacked on the same seeded images, with per-image outcomes stored, so "A beats B" is an exact
McNemar test on the images where they disagree (one training seed) or a paired t-interval over seeds (several);
a claim needs both the stated gap and significance at 5% by that test (``significant``). A claim that an advantage
"disappears" is judged only
where the advantage was shown ("not applicable" otherwise), by the difference's interval lying within the
tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from robustbench_dc.names import Status, Threat, Verdict
from robustbench_dc.paper import PAPER_COLUMNS, display
from robustbench_dc.results.query import Aggregate
from robustbench_dc.stats import mcnemar_exact, paired_difference_interval, paired_t_p, t_interval

#: the checks that catch partial masking; without them a PASS elsewhere says less
STRONG_CHECKS = (
    "DLR loss does not beat cross-entropy",
    "gradient beats random directions",
    "smoothed gradients do not beat true gradients",
)

#: (model, training, threat, attack) -> the aggregate the report shows in its tables, or None
CellLookup = Callable[[str, str, Threat, str], Aggregate | None]


@dataclass(frozen=True)
class Claim:
    text: str
    verdict: Verdict
    evidence: str
    models: tuple[tuple[str, str], ...] = ()  # (model, training) whose robustness the claim is about


@dataclass(frozen=True)
class Comparison:
    """A minus B in accuracy points, paired: on the same images (one seed) or seed by seed (several)."""

    diff: float
    low: float
    high: float
    p: float
    detail: str


def compare(a: Aggregate, b: Aggregate) -> Comparison | None:
    """Paired comparison: exact McNemar on per-image outcomes for one training seed; a paired t-interval over
    the seeds' accuracies for several. None when the two were not measured on the same images and seeds."""
    ka, kb = a.entries[0].key, b.entries[0].key
    if (ka.data, ka.subset) != (kb.data, kb.subset):
        return None
    if a.seeds == 1 and b.seeds == 1:
        pa, pb = a.entries[0].metrics.get("per_example", ""), b.entries[0].metrics.get("per_example", "")
        if not pa or len(pa) != len(pb):
            return None
        only_a = sum(1 for x, y in zip(pa, pb) if x == "1" and y == "0")
        only_b = sum(1 for x, y in zip(pa, pb) if x == "0" and y == "1")
        low, high = paired_difference_interval(only_a, only_b, len(pa))
        return Comparison(
            100 * (only_a - only_b) / len(pa),
            100 * low,
            100 * high,
            mcnemar_exact(only_a, only_b),
            f"exact McNemar p = {mcnemar_exact(only_a, only_b):.2g}; right only under the first: {only_a} images, only "
            f"under the second: {only_b}",
        )
    seeds_a = {e.seed: 100 * e.metrics["accuracy"] for e in a.entries}
    seeds_b = {e.seed: 100 * e.metrics["accuracy"] for e in b.entries}
    if set(seeds_a) != set(seeds_b) or len(seeds_a) < 2:
        return None
    diffs = [seeds_a[s] - seeds_b[s] for s in sorted(seeds_a, key=lambda s: -1 if s is None else s)]
    low, high = t_interval(diffs)
    low, high = max(low, -100.0), min(high, 100.0)  # what a difference of accuracies can be
    p = paired_t_p(diffs)
    return Comparison(
        sum(diffs) / len(diffs), low, high, p, f"paired over {len(diffs)} training seeds, t-test p = {p:.2g}"
    )


def significant(c: Comparison, level: float = 0.05) -> bool:
    """The one rule for "A is better than B": a positive difference whose test (exact McNemar for one seed, the
    paired t-test over seeds) rejects equality at ``level``. For one seed the printed Wald interval can exclude
    zero where the exact test does not (4 images to 0: p = 0.125); the exact test decides."""
    return c.diff > 0 and c.p < level


def _evidence(a: Aggregate, b: Aggregate, names: tuple[str, str], c: Comparison) -> str:
    spread = lambda x: f" ±{x.std:.1f} sd over {x.seeds} seeds" if x.seeds > 1 else ""  # noqa: E731
    return (
        f"{names[0]} {a.mean:.1f}%{spread(a)} vs {names[1]} {b.mean:.1f}%{spread(b)}: {c.diff:+.1f} points [95% CI "
        f"{c.low:+.1f}, {c.high:+.1f}]; {c.detail}"
    )


def difference_claim(
    text: str, a: Aggregate | None, b: Aggregate | None, min_gap: float, names: tuple[str, str], models=()
) -> Claim:
    """``a`` exceeds ``b`` by at least ``min_gap`` points, and the paired difference is significant (5%)."""
    c = compare(a, b) if a is not None and b is not None else None
    if a is None or b is None or c is None:
        return Claim(
            text,
            Verdict.NOT_MEASURED,
            "" if a is None or b is None else "not measured on the same images and seeds",
            models,
        )
    ok = c.diff >= min_gap and significant(c)
    return Claim(text, Verdict.REPRODUCED if ok else Verdict.NOT_REPRODUCED, _evidence(a, b, names, c), models)


def _close_claim(
    text: str, a: Aggregate | None, b: Aggregate | None, tolerance: float, names: tuple[str, str], premise: Claim
) -> Claim:
    """An advantage shown by ``premise`` is gone: the paired difference's interval lies within ``tolerance``."""
    if premise.verdict != Verdict.REPRODUCED:
        return Claim(
            text,
            Verdict.NOT_APPLICABLE,
            f"its premise ({premise.text[:1].lower() + premise.text[1:]}) is {premise.verdict}",
        )
    c = compare(a, b) if a is not None and b is not None else None
    if a is None or b is None or c is None:
        return Claim(text, Verdict.NOT_MEASURED, "")
    if -tolerance <= c.low and c.high <= tolerance:
        verdict = Verdict.REPRODUCED
    elif c.low > tolerance or c.high < -tolerance:
        verdict = Verdict.NOT_REPRODUCED
    else:
        verdict = Verdict.INCONCLUSIVE
    return Claim(text, verdict, _evidence(a, b, names, c))


def claims(cell: CellLookup) -> list[Claim]:
    out: list[Claim] = []
    base = lambda tr, th, at: cell("baseline", tr, th, at)  # noqa: E731
    for m in ("sphereconv", "ballconv", "tanhconv"):
        d = display(m)
        fgsm = difference_claim(
            f"Naturally trained {d} resists white-box FGSM far better than the baseline (>= 10 points)",
            cell(m, "natural", Threat.WHITE_BOX, "fgsm"),
            base("natural", Threat.WHITE_BOX, "fgsm"),
            10,
            (d, "Baseline"),
            ((m, "natural"),),
        )
        out.append(fgsm)
        out.append(
            _close_claim(
                f"Under white-box BIM the natural {d}'s advantage disappears (within 5 points)",
                cell(m, "natural", Threat.WHITE_BOX, "bim"),
                base("natural", Threat.WHITE_BOX, "bim"),
                5,
                (d, "Baseline"),
                fgsm,
            )
        )
    helps = difference_claim(
        "FGSM adversarial training helps the baseline against white-box FGSM (>= 10 points)",
        base("fgsm", Threat.WHITE_BOX, "fgsm"),
        base("natural", Threat.WHITE_BOX, "fgsm"),
        10,
        ("adversarial", "natural"),
        (("baseline", "fgsm"),),
    )
    out.append(helps)
    out.append(
        _close_claim(
            "... but not against white-box BIM (within 5 points)",
            base("fgsm", Threat.WHITE_BOX, "bim"),
            base("natural", Threat.WHITE_BOX, "bim"),
            5,
            ("adversarial", "natural"),
            helps,
        )
    )
    for m in ("sphereconv", "ballconv", "tanhconv"):
        d = display(m)
        out.append(
            difference_claim(
                f"Adversarially trained {d} resists white-box BIM better than the adversarially trained baseline (>= 5 "
                "points)",
                cell(m, "fgsm", Threat.WHITE_BOX, "bim"),
                base("fgsm", Threat.WHITE_BOX, "bim"),
                5,
                (d, "Baseline"),
                ((m, "fgsm"),),
            )
        )
    for m in PAPER_COLUMNS:
        d = display(m)
        out.append(
            difference_claim(
                f"For natural {d}, black-box (transfer) FGSM is weaker than white-box FGSM (>= 5 points)",
                cell(m, "natural", Threat.BLACK_BOX, "fgsm"),
                cell(m, "natural", Threat.WHITE_BOX, "fgsm"),
                5,
                (Threat.BLACK_BOX, Threat.WHITE_BOX),
            )
        )
    return out


def masking_notes(cell: CellLookup, models: list[str]) -> list[str]:
    """Where a white-box FGSM advantage over the baseline vanishes under BIM: the classic sign of gradient masking."""
    notes = []
    for training in ("natural", "fgsm"):
        bf, bb = (
            cell("baseline", training, Threat.WHITE_BOX, "fgsm"),
            cell("baseline", training, Threat.WHITE_BOX, "bim"),
        )
        for m in models:
            if m == "baseline":
                continue
            f, b = cell(m, training, Threat.WHITE_BOX, "fgsm"), cell(m, training, Threat.WHITE_BOX, "bim")
            if bf is None or bb is None or f is None or b is None:
                continue
            fgsm_gain, bim_gain = f.mean - bf.mean, b.mean - bb.mean
            if fgsm_gain >= 10 and bim_gain < fgsm_gain / 2:
                notes.append(
                    f"{display(m)} ({training}): +{fgsm_gain:.1f} points over the baseline under white-box FGSM but "
                    f"{bim_gain:+.1f} under BIM. An advantage that an iterative attack removes suggests gradient "
                    "masking, not robustness."
                )
    return notes


def surviving_claims(cl: list[Claim], diags: dict[tuple[str, str, int], list]) -> list[str]:
    """Each reproduced robustness claim, and whether every model it credits passes every diagnostic."""
    lines = []
    for c in cl:
        if c.verdict != Verdict.REPRODUCED or not c.models:
            continue
        warns = [
            f"{display(m)} ({tr}): {d.name}"
            for (m, tr, _), v in diags.items()
            if (m, tr) in c.models
            for d in v
            if d.status == Status.WARN
        ]
        measured = any((m, tr) in c.models and any(d.status != Status.NA for d in v) for (m, tr, _), v in diags.items())
        if not measured:
            lines.append(f"{c.text}: reproduced, but not checked (no diagnostics for the model)")
        elif warns:
            lines.append(f"{c.text}: reproduced, but does NOT survive the diagnostics ({'; '.join(warns)})")
        elif any(
            (m, tr) in c.models and d.name in STRONG_CHECKS and d.status == Status.NA
            for (m, tr, _), v in diags.items()
            for d in v
        ):
            lines.append(
                f"{c.text}: reproduced; the diagnostics that ran found no sign of gross masking, but the strong checks "
                f"({', '.join(STRONG_CHECKS)}) did not run"
            )
        else:
            lines.append(
                f"{c.text}: reproduced; no sign of gross masking found by any of the diagnostics, strong checks "
                "included"
            )
    return lines or [
        "No robustness claim of the paper was reproduced, so there is none to check against the diagnostics."
    ]
