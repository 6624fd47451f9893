"""The gradient-masking checks as pure functions of measured numbers (Carlini et al. 2019; Athalye et al. 2018).

The attacks they need are described here by their full parameters, and cells are found by those parameters,
never guessed from one field. Nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from robustbench_dc.names import CellKind, Status, Threat

TOLERANCE = 0.02  # accuracy, as a fraction: 2 percentage points
TABLE_WHITE_BOX = (
    "fgsm",
    "bim",
    "pgd20",
)  # the cross-entropy attacks a table reports, which black-box attacks must not beat
MIN_EFFECT = 0.01  # a paired difference of less than one point of the images never warns, however significant
LEVEL = 0.05  # two-sided exact McNemar level of the paired checks
NEAR_ZERO = 0.05  # "near zero" accuracy at the large eps
LARGE_EPS = 0.5
GRADIENT_HEALTH_LIMIT = 0.01  # share of examples with zero or non-finite input gradients
SATURATION_LIMIT = 0.9  # share of patches on the flat part of a bounded magnitude function
SWEEP = (0.25, 0.5, 1.0, 2.0, 4.0)  # multiples of eps for the monotonicity check
RANDOM_DIRECTIONS = 8  # random sign directions the gradient step is compared with
DIRECTION_LIMIT = 0.1  # share of images where the gradient step is no better than the best random one
RELATIVE_STEP = 0.25  # PGD step as a fraction of eps (2/255 at 8/255), so that every check scales with eps
PGD_VARIANTS: dict[str, dict[str, int]] = {
    "pgd20": {"steps": 20, "restarts": 1},
    "pgd40": {"steps": 40, "restarts": 1},
    "pgd20x3": {"steps": 20, "restarts": 3},
}


#: How far the training check's FGSM accuracy must exceed its PGD-10 accuracy, on the same images, for a PGD collapse
#: to count as catastrophic overfitting: the single-step attack has stopped working. Sound FGSM training keeps the two
#: within about 10 points (the sound FGSM-trained models of the paper-cpu study: at most 11.7 on 256 images); a collapse
#: puts them 60-95 points apart.
COLLAPSE_GAP = 0.2


def catastrophic_overfitting(epochs: Sequence[int], fgsm: Sequence[float], pgd10: Sequence[float]) -> int | None:
    """The first epoch of a training's per-epoch check (parallel lists of accuracies on the same fixed images) whose
    PGD-10 accuracy fell below half the best of the epochs before it while its FGSM accuracy did not fall and now
    exceeds the PGD-10 accuracy by ``COLLAPSE_GAP``: the signature of catastrophic overfitting (Wong et al. 2020).
    No floor on the best before: a network that collapses early, before it was ever robust, collapses all the same.
    None: not seen."""
    for i in range(1, len(pgd10)):
        if pgd10[i] < max(pgd10[:i]) / 2 and fgsm[i] >= fgsm[i - 1] and fgsm[i] - pgd10[i] >= COLLAPSE_GAP:
            return int(epochs[i])
    return None


def pgd_params(variant: str, eps: float) -> dict[str, Any]:
    """The stored parameters of a diagnostic PGD variant at ``eps`` (as ``attacks.PGD.params`` gives them)."""
    return {"step": RELATIVE_STEP * eps, **PGD_VARIANTS[variant]}


@dataclass(frozen=True)
class Diagnostic:
    name: str
    status: Status
    summary: str
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class Measured:
    """The numbers the checks judge, for one model on one image subset (accuracies as fractions)."""

    n: int = 0
    white: dict[str, float] = field(
        default_factory=dict
    )  # white-box accuracies at eps: fgsm, bim, pgd20, pgd40, pgd20x3, apgd-*
    #: per-image outcomes ("1" right, "0" wrong) of every attack at every eps it was measured at, by (threat, name, eps)
    outcomes: dict[tuple[str, str, float], str] = field(default_factory=dict)
    sweep: list[tuple[float, float]] = field(default_factory=list)  # (eps, PGD-20 accuracy)
    gradient: dict[str, float] | None = None  # margin-gradient zero / non-finite fractions
    health: dict[str, Any] | None = None  # cross-entropy gradient health and saturation per layer
    direction: dict[str, float] | None = None  # the gradient step against random steps (gradient_direction)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _same_params(stored: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """The diagnostics' variant, whichever outcome its iterative attack records (protocol, section 2)."""
    stored = {k: v for k, v in stored.items() if k != "outcome"}
    if set(stored) != set(wanted):
        return False
    return all(_close(stored[k], v) if isinstance(v, float) else stored[k] == v for k, v in wanted.items())


def measured_from_cells(cells: Iterable[Any], eps: float) -> Measured:
    """Collect the numbers of one model's diagnostic cells (objects with ``.key`` and ``.metrics``)."""
    m = Measured()
    sweep: dict[float, float] = {}
    for c in cells:
        k, x = c.key, c.metrics
        if k.kind == CellKind.HEALTH:
            if k.attack == "direction":
                m.direction = x
            else:
                m.health = x
            continue
        if k.kind == CellKind.LIPSCHITZ:
            if k.attack == "gradient-norm":
                m.gradient = {"zero": x["zero_fraction"], "nonfinite": x["nonfinite_fraction"]}
            continue
        if k.threat == Threat.NONE:
            m.n = int(x["n"])
            continue
        p = k.parameters
        if k.attack == "pgd" and k.threat == Threat.WHITE_BOX and _same_params(p, pgd_params("pgd20", k.eps)):
            sweep[k.eps] = x["accuracy"]
        name = _diagnostic_name(k.attack, p, k.eps)
        if not name:
            continue
        if x.get("per_example") and k.threat in (Threat.WHITE_BOX, Threat.BLACK_BOX):
            m.outcomes[(k.threat, name, k.eps)] = x["per_example"]
        if not _close(k.eps, eps):
            continue
        if k.threat == Threat.WHITE_BOX:
            m.white[name] = x["accuracy"]
    m.sweep = sorted(sweep.items())
    return m


def _diagnostic_name(attack: str, params: dict[str, Any], eps: float) -> str:
    """The checks' name for a cell's attack ("" for an attack of other parameters than the diagnostics use)."""
    if attack == "pgd":
        return next((v for v in PGD_VARIANTS if _same_params(params, pgd_params(v, eps))), "")
    if attack in ("bpda-pgd", "pgd-smoothed"):
        base = {a: v for a, v in params.items() if a not in ("straight_through", "samples", "noise")}
        return attack if _same_params(base, pgd_params("pgd20", eps)) else ""
    return attack


@dataclass(frozen=True)
class PairedFinding:
    """At one eps: images right under the attack expected to be stronger but wrong under the other (``against``),
    and the reverse (``for_``); a finding when ``against`` exceeds ``for_`` significantly by at least MIN_EFFECT."""

    eps: float
    stronger: str
    other: str
    against: int
    for_: int
    n: int
    p: float

    @property
    def flagged(self) -> bool:
        return self.against > self.for_ and (self.against - self.for_) >= MIN_EFFECT * self.n and self.p < LEVEL

    def text(self) -> str:
        return (
            f"{_eps_text(self.eps)}: {self.other} broke {self.against} images {self.stronger} left right, "
            f"{self.stronger} broke {self.for_} that {self.other} left (p {self.p:.2g})"
        )


def _eps_text(eps: float) -> str:
    return f"{eps * 255:.4g}/255"


def paired(stronger: str, other: str, a: str, b: str, eps: float) -> PairedFinding:
    """Compare per-image outcomes ``a`` (of the attack expected to be stronger) with ``b``, exact McNemar."""
    from robustbench_dc.stats import mcnemar_exact  # scipy, only where outcomes are compared

    against = sum(1 for x, y in zip(a, b) if x == "1" and y == "0")
    for_ = sum(1 for x, y in zip(a, b) if x == "0" and y == "1")
    return PairedFinding(eps, stronger, other, against, for_, len(a), mcnemar_exact(against, for_))


def _any_broken(*outcomes: str) -> str:
    """The outcome of "broken by any of these attacks", image by image."""
    return "".join("0" if "0" in column else "1" for column in zip(*outcomes))


Outcomes = dict[tuple[str, str, float], str]


def _at(o: Outcomes, threat: str, name: str, eps: float) -> str | None:
    return next((v for (t, k, e), v in o.items() if t == threat and k == name and _close(e, eps)), None)


def _iterative_findings(o: Outcomes, eps: float) -> list[PairedFinding]:
    """BIM and PGD-20 against FGSM."""
    fgsm = _at(o, Threat.WHITE_BOX, "fgsm", eps)
    out = []
    for it in ("bim", "pgd20"):
        iterative = _at(o, Threat.WHITE_BOX, it, eps)
        if fgsm and iterative and len(fgsm) == len(iterative):
            out.append(paired(it.upper().replace("PGD20", "PGD-20"), "FGSM", iterative, fgsm, eps))
    return out


def _black_box_findings(o: Outcomes, eps: float) -> list[PairedFinding]:
    """Broken by any white-box table attack, against each black-box attack."""
    white = [v for (t, name, e), v in o.items() if t == Threat.WHITE_BOX and name in TABLE_WHITE_BOX and _close(e, eps)]
    if not white or len({len(v) for v in white}) != 1:
        return []
    any_white = _any_broken(*white)
    return [
        paired("white-box FGSM/BIM/PGD-20", f"black-box {name}", any_white, v, eps)
        for (t, name, e), v in o.items()
        if t == Threat.BLACK_BOX and _close(e, eps) and len(v) == len(any_white)
    ]


def _surrogate_finding(o: Outcomes, name: str, eps: float) -> list[PairedFinding]:
    """PGD-20 with the true gradients against PGD with surrogate (BPDA) or smoothed ones."""
    pgd, other = _at(o, Threat.WHITE_BOX, "pgd20", eps), _at(o, Threat.WHITE_BOX, name, eps)
    return [paired("PGD-20", name, pgd, other, eps)] if pgd and other and len(pgd) == len(other) else []


def paired_findings(m: Measured) -> dict[str, list[PairedFinding]]:
    """The paired comparisons of every eps measured, per check (see ``diagnose``)."""
    found: dict[str, list[PairedFinding]] = {"iterative": [], "black": [], "bpda": [], "smoothed": []}
    for e in sorted({e for (_, _, e) in m.outcomes}):
        found["iterative"] += _iterative_findings(m.outcomes, e)
        found["black"] += _black_box_findings(m.outcomes, e)
        found["bpda"] += _surrogate_finding(m.outcomes, "bpda-pgd", e)
        found["smoothed"] += _surrogate_finding(m.outcomes, "pgd-smoothed", e)
    return found


def _paired_diagnostic(name: str, findings: list[PairedFinding], absent: str) -> Diagnostic:
    if not findings:
        return Diagnostic(name, Status.NA, absent)
    flagged = [f for f in findings if f.flagged]
    eps_seen = ", ".join(_eps_text(e) for e in sorted({f.eps for f in findings}))
    summary = (
        f"WARN at {', '.join(sorted({_eps_text(f.eps) for f in flagged}, key=lambda t: float(t.split('/')[0])))}: "
        + "; ".join(f.text() for f in flagged)
        if flagged
        else f"no significant reversal at {eps_seen}"
    )
    return Diagnostic(
        name,
        Status.WARN if flagged else Status.PASS,
        summary + f" (paired, exact McNemar at {LEVEL:g}, effect >= {100 * MIN_EFFECT:g} point)",
        {"flagged_eps": sorted({f.eps for f in flagged}), "findings": [f.__dict__ for f in findings]},
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _monotone(m: Measured, tol: float) -> Diagnostic:
    name = "monotone in eps, near zero at large eps"
    if len(m.sweep) < 3:
        return Diagnostic(name, Status.NA, "needs a PGD sweep over eps")
    rises = [(a, b) for (_, a), (_, b) in zip(m.sweep, m.sweep[1:]) if b > a + tol]
    final_eps, final = m.sweep[-1]
    text = ", ".join(f"{e * 255:.4g}/255: {_pct(a)}" for e, a in m.sweep)
    return Diagnostic(
        name,
        Status.PASS if not rises and final <= NEAR_ZERO else Status.WARN,
        f"PGD-20 (step eps/4): {text}"
        + ("" if final <= NEAR_ZERO else f"; not near zero (> {_pct(NEAR_ZERO)}) at eps {final_eps:.3g}"),
        {"sweep": m.sweep, "rises": len(rises)},
    )


def _converged(m: Measured, tol: float) -> Diagnostic:
    pgd, pgd40, pgd_r = m.white.get("pgd20"), m.white.get("pgd40"), m.white.get("pgd20x3")
    if pgd is None or (pgd40 is None and pgd_r is None):
        return Diagnostic("PGD converged", Status.NA, "needs PGD-20, PGD-40 and PGD with restarts")
    drops = [pgd - a for a in (pgd40, pgd_r) if a is not None]
    return Diagnostic(
        "PGD converged",
        Status.PASS if max(abs(d) for d in drops) <= tol else Status.WARN,
        f"PGD-20 {_pct(pgd)}, PGD-40 {_pct(pgd40)}, PGD-20 x3 restarts {_pct(pgd_r)} (tolerance {_pct(tol)})",
        {"pgd20": pgd, "pgd40": pgd40, "pgd20_restarts3": pgd_r},
    )


def _direction(m: Measured) -> Diagnostic:
    name = "gradient beats random directions"
    if m.direction is None:
        return Diagnostic(name, Status.NA, "needs the direction cell")
    share = m.direction["gradient_not_better_fraction"]
    return Diagnostic(
        name,
        Status.PASS if share <= DIRECTION_LIMIT else Status.WARN,
        f"the signed-gradient step raises the loss no more than the best of {RANDOM_DIRECTIONS} random steps on "
        f"{_pct(share)} of images (limit {_pct(DIRECTION_LIMIT)}); mean loss gain "
        f"{m.direction['mean_gain_gradient']:.3g} along the gradient, {m.direction['mean_gain_best_random']:.3g} along "
        "the best random direction",
        dict(m.direction),
    )


def _dlr(m: Measured, tol: float) -> Diagnostic:
    name = "DLR loss does not beat cross-entropy"
    ce, dlr = m.white.get("apgd-ce"), m.white.get("apgd-dlr")
    if ce is None or dlr is None:
        return Diagnostic(name, Status.NA, "needs APGD-CE and APGD-DLR cells")
    ok = dlr >= ce - tol
    masked = "; the scale-free DLR loss breaks what cross-entropy could not: saturated (masked) cross-entropy gradients"
    return Diagnostic(
        name,
        Status.PASS if ok else Status.WARN,
        f"APGD-CE {_pct(ce)}, APGD-DLR {_pct(dlr)}" + ("" if ok else masked),
        {"apgd_ce": ce, "apgd_dlr": dlr},
    )


def _health(m: Measured) -> Diagnostic:
    if m.gradient is None:
        return Diagnostic("gradient health", Status.NA, "needs the gradient-norm cell")
    h = m.health or {}
    zero, nonfinite = m.gradient["zero"], m.gradient["nonfinite"]
    shares = h.get("saturation") or {}
    ce_zero, ce_nonfinite = float(h.get("ce_zero_fraction", 0.0)), float(h.get("ce_nonfinite_fraction", 0.0))
    worst = max(shares.values()) if shares else 0.0
    ok = max(zero + nonfinite, ce_zero + ce_nonfinite) <= GRADIENT_HEALTH_LIMIT and worst <= SATURATION_LIMIT
    text = (
        f"zero input gradients: margin {_pct(zero)}, cross-entropy {_pct(ce_zero)}; non-finite: margin "
        f"{_pct(nonfinite)}, cross-entropy {_pct(ce_nonfinite)}"
    )
    if shares:
        text += (
            f"; saturated patches per bounded layer: max {_pct(worst)}, mean {_pct(sum(shares.values()) / len(shares))}"
        )
    numbers = {
        "zero": zero,
        "nonfinite": nonfinite,
        "ce_zero": ce_zero,
        "ce_nonfinite": ce_nonfinite,
        "saturation": shares,
    }
    return Diagnostic("gradient health", Status.PASS if ok else Status.WARN, text, numbers)


def diagnose(m: Measured, *, tolerance: float = TOLERANCE) -> list[Diagnostic]:
    """Judge one model's numbers, one function per check, in the reports' order. Where one attack is expected to be
    at least as strong as another (iterative than single-step, white-box than black-box, true gradients than BPDA
    or smoothed ones) the judgement is paired, image by image, at every eps both were measured at, and warns only
    for a significant effect of at least MIN_EFFECT. The other checks compare accuracies with a tolerance of
    ``tolerance`` or three images, whichever is larger."""
    tol = max(tolerance, 3 / m.n if m.n else 0.0) + 1e-9
    found = paired_findings(m)
    return [
        _paired_diagnostic(
            "iterative >= single-step",
            found["iterative"],
            "needs white-box FGSM and BIM/PGD cells with per-image outcomes",
        ),
        _paired_diagnostic(
            "white-box >= black-box", found["black"], "needs white-box and black-box cells with per-image outcomes"
        ),
        _monotone(m, tol),
        _converged(m, tol),
        _direction(m),
        _dlr(m, tol),
        _paired_diagnostic(
            "BPDA does not beat true gradients",
            found["bpda"],
            "no decoupled layers, hard decisions or declared straight-through parts (or no BPDA cell)",
        ),
        _paired_diagnostic(
            "smoothed gradients do not beat true gradients",
            found["smoothed"],
            "needs PGD-20 and PGD with smoothed gradients",
        ),
        _health(m),
    ]
