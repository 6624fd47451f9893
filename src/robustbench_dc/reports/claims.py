"""The qualitative claims of the paper's Tables 7 and 8, judged from our numbers with paired statistics.

Every model is attacked on the same seeded images, with per-image outcomes stored, so "A beats B" is an exact
McNemar test on the images where they disagree (one training seed) or a paired t-interval over seeds (several);
a claim needs both the stated gap and significance at 5% by that test (``significant``). A claim that an advantage
"disappears" is judged only
where the advantage was shown ("not applicable" otherwise), by the difference's interval lying within the
tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import pandas as pd

from robustbench_dc.names import Status, Threat, Verdict
from robustbench_dc.paper import PAPER_COLUMNS, PAPER_TRAINING, display, paper_value
from robustbench_dc.reports.paper_cells import masking_gains
from robustbench_dc.results.query import WORST_CASE, Aggregate
from robustbench_dc.stats import (
    at_least_p,
    at_least_p_paired,
    holm,
    mcnemar_exact,
    paired_difference_interval,
    paired_t_p,
    t_interval,
)

#: the checks that catch partial masking; without them a PASS elsewhere says less
STRONG_CHECKS = (
    "DLR loss does not beat cross-entropy",
    "gradient beats random directions",
    "smoothed gradients do not beat true gradients",
)

DCNETS = PAPER_COLUMNS[1:]

#: (model, training, threat, attack) -> the aggregate the report shows in its tables, or None
CellLookup = Callable[[str, str, Threat, str], Aggregate | None]


@dataclass(frozen=True)
class SeedTest:
    """One training seed's paired outcomes: images right only under A, only under B, of ``n``."""

    seed: int | None
    only_a: int
    only_b: int
    n: int

    @property
    def diff(self) -> float:
        return 100 * (self.only_a - self.only_b) / self.n

    @property
    def p(self) -> float:
        return mcnemar_exact(self.only_a, self.only_b)


@dataclass(frozen=True)
class Comparison:
    """A minus B in accuracy points, paired: on the same images (one seed) or seed by seed (several), with each
    seed's exact test where per-image outcomes are stored."""

    diff: float
    low: float
    high: float
    p: float
    detail: str
    seeds: tuple[SeedTest, ...] = ()
    differences: tuple[float, ...] = ()  # per seed, in points (several seeds)

    def at_least_p(self, gap: float) -> float:
        """One-sided p of "the advantage is at least ``gap`` points": small where the data rule it out."""
        if self.differences:
            return at_least_p(list(self.differences), gap)
        s = self.seeds[0]
        return at_least_p_paired(s.only_a, s.only_b, s.n, gap)

    def every_seed(self) -> str:
        """'better' or 'worse' where every one of several seeds' exact tests says so at 5%, else ''."""
        if len(self.seeds) < 2 or any(s.p >= 0.05 for s in self.seeds):
            return ""
        signs = {s.diff > 0 for s in self.seeds}
        return "" if len(signs) > 1 else ("better" if signs == {True} else "worse")


@dataclass(frozen=True)
class Claim:
    text: str
    verdict: Verdict
    evidence: str
    models: tuple[tuple[str, str], ...] = ()  # (model, training) whose robustness the claim is about
    comparison: Comparison | None = None
    gap: float = 0.0


def p_text(p: float) -> str:
    """A p-value as printed: two significant digits, and below what a double holds, said so (not "0")."""
    return "< 1e-300" if p < 1e-300 else f"{p:.2g}"


def seed_tests(a: Aggregate, b: Aggregate) -> tuple[SeedTest, ...]:
    """Per training seed shared by ``a`` and ``b``, the discordant images (none where outcomes are not stored)."""
    outcomes_a = {e.seed: e.metrics.get("per_example", "") for e in a.entries}
    outcomes_b = {e.seed: e.metrics.get("per_example", "") for e in b.entries}
    out = []
    for seed in sorted(set(outcomes_a) & set(outcomes_b), key=lambda s: -1 if s is None else s):
        pa, pb = outcomes_a[seed], outcomes_b[seed]
        if not pa or len(pa) != len(pb):
            return ()
        only_a = sum(1 for x, y in zip(pa, pb) if x == "1" and y == "0")
        only_b = sum(1 for x, y in zip(pa, pb) if x == "0" and y == "1")
        out.append(SeedTest(seed, only_a, only_b, len(pa)))
    return tuple(out)


def _per_seed(tests: tuple[SeedTest, ...]) -> str:
    if not tests:
        return ""
    each = ", ".join(f"seed {t.seed} {t.diff:+.1f} (p {p_text(t.p)})" for t in tests)
    a, b = sum(t.only_a for t in tests), sum(t.only_b for t in tests)
    return (
        f"; per seed, exact McNemar: {each}; pooled discordant images: {a} right only under the first, {b} only under "
        "the second"
    )


def compare(a: Aggregate, b: Aggregate) -> Comparison | None:
    """Paired comparison: exact McNemar on per-image outcomes for one training seed; a paired t-interval over
    the seeds' accuracies for several, with each seed's exact test beside it. None when the two were not measured on
    the same images and seeds."""
    ka, kb = a.entries[0].key, b.entries[0].key
    if (ka.data, ka.subset) != (kb.data, kb.subset):
        return None
    if a.seeds == 1 and b.seeds == 1:
        tests = seed_tests(a, b)
        if not tests:
            return None
        t = tests[0]
        low, high = paired_difference_interval(t.only_a, t.only_b, t.n)
        return Comparison(
            t.diff,
            100 * low,
            100 * high,
            t.p,
            f"exact McNemar p = {t.p:.2g}; right only under the first: {t.only_a} images, only under the second: "
            f"{t.only_b}",
            tests,
        )
    seeds_a = {e.seed: 100 * e.metrics["accuracy"] for e in a.entries}
    seeds_b = {e.seed: 100 * e.metrics["accuracy"] for e in b.entries}
    if set(seeds_a) != set(seeds_b) or len(seeds_a) < 2:
        return None
    diffs = [seeds_a[s] - seeds_b[s] for s in sorted(seeds_a, key=lambda s: -1 if s is None else s)]
    low, high = t_interval(diffs)
    low, high = max(low, -100.0), min(high, 100.0)  # what a difference of accuracies can be
    p = paired_t_p(diffs)
    tests = seed_tests(a, b)
    return Comparison(
        sum(diffs) / len(diffs),
        low,
        high,
        p,
        f"paired over {len(diffs)} training seeds, t-test p = {p:.2g}{_per_seed(tests)}",
        tests,
        tuple(diffs),
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


def _rules_out(c: Comparison, gap: float) -> str:
    """What the paired data say about an advantage of at least ``gap`` points (and of 1 point) that was not shown."""
    parts = []
    for g in dict.fromkeys((gap, 1.0)):
        if g <= 0 or c.diff >= g:
            continue
        p = c.at_least_p(g)
        points = "point" if g == 1 else "points"
        parts.append(
            f"{'rule out' if p < 0.05 else 'do not rule out'} an advantage of >= {g:g} {points} "
            f"(one-sided p = {p_text(p)})"
        )
    return f"; the data {' and '.join(parts)}" if parts else ""


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
    every = c.every_seed()
    seeds = f"; every seed significantly {every} by its own exact test" if every else ""
    evidence = _evidence(a, b, names, c) + seeds + ("" if ok else _rules_out(c, min_gap))  # fmt: skip
    return Claim(text, Verdict.REPRODUCED if ok else Verdict.NOT_REPRODUCED, evidence, models, c, min_gap)


def holm_family(family: list[Claim]) -> list[Claim]:
    """The claims of one family (the same claim for each DCNet) judged with Holm-adjusted p-values: a claim is
    reproduced only where its gap is reached and its adjusted test rejects equality at 5%."""
    measured = [i for i, c in enumerate(family) if c.comparison is not None and c.verdict != Verdict.NOT_APPLICABLE]
    if len(measured) < 2:
        return family
    adjusted = holm([family[i].comparison.p for i in measured])  # type: ignore[union-attr]
    out = list(family)
    for i, p in zip(measured, adjusted):
        c = family[i]
        comparison = c.comparison
        assert comparison is not None
        ok = comparison.diff >= c.gap and comparison.diff > 0 and p < 0.05
        out[i] = replace(
            c,
            verdict=Verdict.REPRODUCED if ok else Verdict.NOT_REPRODUCED,
            evidence=f"{c.evidence}; Holm-adjusted over the {len(measured)} models: p = {p_text(p)}",
        )
    return out


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


#: (model, training, threat, attack): one side of a claim
Side = tuple[str, str, Threat, str]


def _paper_side(paper: pd.DataFrame, side: Side) -> float | None:
    model, training, threat, attack = side
    table = 7 if threat == Threat.WHITE_BOX else 8
    return paper_value(paper, table, PAPER_TRAINING.get(training, training), attack, model)


def claims(cell: CellLookup, paper: pd.DataFrame | None = None) -> list[Claim]:
    """The paper's claims, each judged from our cells; claims about several DCNets are a family (Holm). With
    ``paper``, a claim its own cells do not show is marked so (not applicable) rather than credited to it. The claims
    about adversarially trained models are judged under BIM (the paper's attack) and under the worst case over every
    white-box attack we ran (attack ``worst-case``)."""

    def claim(text: str, a: Side, b: Side, gap: float, names: tuple[str, str], models=()) -> Claim:
        judged = difference_claim(text, cell(*a), cell(*b), gap, names, models)
        if paper is None or a[3] == WORST_CASE:
            return judged
        pa, pb = _paper_side(paper, a), _paper_side(paper, b)
        if pa is None or pb is None or pa - pb >= gap:
            return judged
        return replace(
            judged,
            verdict=Verdict.NOT_APPLICABLE,
            evidence=f"not a claim of the paper: its own cells give {pa:.2f}% against {pb:.2f}% ({pa - pb:+.2f} "
            f"points); ours: {judged.evidence or judged.verdict}",
        )

    out: list[Claim] = []
    natural = holm_family(
        [
            claim(
                f"Naturally trained {display(m)} resists white-box FGSM far better than the baseline (>= 10 points)",
                (m, "natural", Threat.WHITE_BOX, "fgsm"),
                ("baseline", "natural", Threat.WHITE_BOX, "fgsm"),
                10,
                (display(m), "Baseline"),
                ((m, "natural"),),
            )
            for m in DCNETS
        ]
    )
    for m, fgsm in zip(DCNETS, natural):
        out.append(fgsm)
        out.append(
            _close_claim(
                f"Under white-box BIM the natural {display(m)}'s advantage disappears (within 5 points)",
                cell(m, "natural", Threat.WHITE_BOX, "bim"),
                cell("baseline", "natural", Threat.WHITE_BOX, "bim"),
                5,
                (display(m), "Baseline"),
                fgsm,
            )
        )
    helps = claim(
        "FGSM adversarial training helps the baseline against white-box FGSM (>= 10 points)",
        ("baseline", "fgsm", Threat.WHITE_BOX, "fgsm"),
        ("baseline", "natural", Threat.WHITE_BOX, "fgsm"),
        10,
        ("adversarial", "natural"),
        (("baseline", "fgsm"),),
    )
    out.append(helps)
    out.append(
        _close_claim(
            "... but not against white-box BIM (within 5 points)",
            cell("baseline", "fgsm", Threat.WHITE_BOX, "bim"),
            cell("baseline", "natural", Threat.WHITE_BOX, "bim"),
            5,
            ("adversarial", "natural"),
            helps,
        )
    )
    for attack, words in (("bim", "white-box BIM"), (WORST_CASE, "the worst case over our white-box attacks")):
        out += holm_family(
            [
                claim(
                    f"Adversarially trained {display(m)} resists {words} better than the adversarially trained "
                    "baseline (>= 5 points)",
                    (m, "fgsm", Threat.WHITE_BOX, attack),
                    ("baseline", "fgsm", Threat.WHITE_BOX, attack),
                    5,
                    (display(m), "Baseline"),
                    ((m, "fgsm"),),
                )
                for m in DCNETS
            ]
        )
    out += holm_family(
        [
            claim(
                f"For natural {display(m)}, black-box (transfer) FGSM is weaker than white-box FGSM (>= 5 points)",
                (m, "natural", Threat.BLACK_BOX, "fgsm"),
                (m, "natural", Threat.WHITE_BOX, "fgsm"),
                5,
                (Threat.BLACK_BOX, Threat.WHITE_BOX),
            )
            for m in PAPER_COLUMNS
        ]
    )
    return out


def masking_notes(cell: CellLookup, models: list[str]) -> list[str]:
    """Where a white-box FGSM advantage over the baseline vanishes under BIM: the classic sign of gradient masking."""

    def value(model: str, training: str, table: int, attack: str) -> float | None:
        c = cell(model, training, Threat.WHITE_BOX, attack)
        return None if c is None else c.mean

    return [
        f"{display(m)} ({training}): +{gain:.1f} points over the baseline under white-box FGSM but {kept:+.1f} under "
        "BIM. An advantage that an iterative attack removes suggests gradient masking, not robustness."
        for m, training, gain, kept in masking_gains(value, models)
    ]


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
