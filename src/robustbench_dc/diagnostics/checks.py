"""The gradient-masking checks as pure functions of measured numbers (Carlini et al. 2019; Athalye et al. 2018).

The attacks they need are described here by their full parameters, and cells are found by those parameters,
never guessed from one field. Nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

TOLERANCE = 0.02  # accuracy, as a fraction: 2 percentage points
NEAR_ZERO = 0.05  # "near zero" accuracy at the large eps
LARGE_EPS = 0.5
GRADIENT_HEALTH_LIMIT = 0.01  # share of examples with zero or non-finite input gradients
SATURATION_LIMIT = 0.9  # share of patches on the flat part of a bounded magnitude function
SWEEP = (0.25, 0.5, 1.0, 2.0, 4.0)  # multiples of eps for the monotonicity check
RANDOM_DIRECTIONS = 8  # random sign directions the gradient step is compared with
DIRECTION_LIMIT = 0.1  # share of images where the gradient step is no better than the best random one
RELATIVE_STEP = 0.25  # PGD step as a fraction of eps (2/255 at 8/255), so that every check scales with eps
PGD_VARIANTS: dict[str, dict[str, int]] = {"pgd20": {"steps": 20, "restarts": 1}, "pgd40": {"steps": 40, "restarts": 1},
                                           "pgd20x3": {"steps": 20, "restarts": 3}}  # fmt: skip


def pgd_params(variant: str, eps: float) -> dict[str, Any]:
    """The stored parameters of a diagnostic PGD variant at ``eps`` (as ``attacks.PGD.params`` gives them)."""
    return {"step": RELATIVE_STEP * eps, **PGD_VARIANTS[variant]}


@dataclass(frozen=True)
class Diagnostic:
    name: str
    status: str  # "pass", "warn" or "n/a"
    summary: str
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class Measured:
    """The numbers the checks judge, for one model on one image subset (accuracies as fractions)."""

    n: int = 0
    white: dict[str, float] = field(default_factory=dict)  # fgsm, bim, pgd20, pgd40, pgd20x3, bpda-pgd
    black: dict[str, float] = field(default_factory=dict)  # fgsm, bim (transfer), square (queries)
    white_broken: set[int] | None = None  # images broken by some white-box attack at eps
    black_broken: set[int] | None = None
    sweep: list[tuple[float, float]] = field(default_factory=list)  # (eps, PGD-20 accuracy)
    gradient: dict[str, float] | None = None  # margin-gradient zero / non-finite fractions
    health: dict[str, Any] | None = None  # cross-entropy gradient health and saturation per layer
    direction: dict[str, float] | None = None  # the gradient step against random steps (gradient_direction)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _same_params(stored: dict[str, Any], wanted: dict[str, Any]) -> bool:
    if set(stored) != set(wanted):
        return False
    return all(_close(stored[k], v) if isinstance(v, float) else stored[k] == v for k, v in wanted.items())


def _broken(per_example: Iterable[str]) -> set[int]:
    out: set[int] = set()
    for s in per_example:
        out |= {i for i, c in enumerate(s) if c == "0"}
    return out


def measured_from_cells(cells: Iterable[Any], eps: float) -> Measured:
    """Collect the numbers of one model's diagnostic cells (objects with ``.key`` and ``.metrics``)."""
    m = Measured()
    white_pe: list[str] = []
    black_pe: list[str] = []
    sweep: dict[float, float] = {}
    for c in cells:
        k, x = c.key, c.metrics
        if k.kind == "health":
            if k.attack == "direction":
                m.direction = x
            else:
                m.health = x
            continue
        if k.kind == "lipschitz":
            if k.attack == "gradient-norm":
                m.gradient = {"zero": x["zero_fraction"], "nonfinite": x["nonfinite_fraction"]}
            continue
        if k.threat == "none":
            m.n = int(x["n"])
            continue
        p = k.parameters
        if k.attack == "pgd" and k.threat == "white-box" and _same_params(p, pgd_params("pgd20", k.eps)):
            sweep[k.eps] = x["accuracy"]
        if not _close(k.eps, eps):
            continue
        name = k.attack
        if k.attack == "pgd":
            name = next((v for v in PGD_VARIANTS if _same_params(p, pgd_params(v, eps))), "")
        elif k.attack == "bpda-pgd" and not _same_params({a: v for a, v in p.items() if a != "straight_through"}, pgd_params("pgd20", eps)):
            name = ""
        if not name:
            continue
        if k.threat == "white-box":
            m.white[name] = x["accuracy"]
            white_pe.append(x.get("per_example", ""))
        elif k.threat == "black-box":
            m.black[name] = x["accuracy"]
            black_pe.append(x.get("per_example", ""))
    m.white_broken = _broken(white_pe) if white_pe else None
    m.black_broken = _broken(black_pe) if black_pe else None
    m.sweep = sorted(sweep.items())
    return m


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def diagnose(m: Measured, *, tolerance: float = TOLERANCE) -> list[Diagnostic]:
    """Judge one model's numbers. The tolerance is ``tolerance`` or three images, whichever is larger."""
    tol = max(tolerance, 3 / m.n if m.n else 0.0) + 1e-9
    w = m.white
    fgsm, bim, pgd = w.get("fgsm"), w.get("bim"), w.get("pgd20")
    out: list[Diagnostic] = []

    if fgsm is None or (bim is None and pgd is None):
        out.append(Diagnostic("iterative >= single-step", "n/a", "needs white-box FGSM and BIM/PGD cells"))
    else:
        worst = min(a for a in (bim, pgd) if a is not None)
        out.append(Diagnostic("iterative >= single-step", "pass" if worst <= fgsm + tol else "warn",
                              f"FGSM {_pct(fgsm)}, BIM {_pct(bim)}, PGD-20 {_pct(pgd)}", {"fgsm": fgsm, "bim": bim, "pgd": pgd}))  # fmt: skip

    white = [a for a in (fgsm, bim, pgd) if a is not None]
    if not white or not m.black:
        out.append(Diagnostic("white-box >= black-box", "n/a", "needs white-box and black-box cells"))
    else:
        best_white, best_black = min(white), min(m.black.values())
        only_black = 0.0
        if m.white_broken is not None and m.black_broken is not None and m.n:
            only_black = len(m.black_broken - m.white_broken) / m.n
        ok = best_white <= best_black + tol and only_black <= tol
        out.append(Diagnostic("white-box >= black-box", "pass" if ok else "warn",
                              f"best white-box {_pct(best_white)}, best black-box {_pct(best_black)} "
                              f"({', '.join(f'{k} {_pct(v)}' for k, v in m.black.items())}); broken only by black-box: {_pct(only_black)} of images",
                              {"white_box": best_white, **{f"black_box_{k}": v for k, v in m.black.items()}, "only_black_box": only_black}))  # fmt: skip

    if len(m.sweep) < 3:
        out.append(Diagnostic("monotone in eps, near zero at large eps", "n/a", "needs a PGD sweep over eps"))
    else:
        rises = [(a, b) for (_, a), (_, b) in zip(m.sweep, m.sweep[1:]) if b > a + tol]
        final_eps, final = m.sweep[-1]
        ok = not rises and final <= NEAR_ZERO
        text = ", ".join(f"{e * 255:.4g}/255: {_pct(a)}" for e, a in m.sweep)
        out.append(Diagnostic("monotone in eps, near zero at large eps", "pass" if ok else "warn",
                              f"PGD-20 (step eps/4): {text}" + ("" if final <= NEAR_ZERO else f"; not near zero (> {_pct(NEAR_ZERO)}) at eps {final_eps:.3g}"),
                              {"sweep": m.sweep, "rises": len(rises)}))  # fmt: skip

    pgd40, pgd_r = w.get("pgd40"), w.get("pgd20x3")
    if pgd is None or (pgd40 is None and pgd_r is None):
        out.append(Diagnostic("PGD converged", "n/a", "needs PGD-20, PGD-40 and PGD with restarts"))
    else:
        drops = [pgd - a for a in (pgd40, pgd_r) if a is not None]
        out.append(Diagnostic("PGD converged", "pass" if max(abs(d) for d in drops) <= tol else "warn",
                              f"PGD-20 {_pct(pgd)}, PGD-40 {_pct(pgd40)}, PGD-20 x3 restarts {_pct(pgd_r)} (tolerance {_pct(tol)})",
                              {"pgd20": pgd, "pgd40": pgd40, "pgd20_restarts3": pgd_r}))  # fmt: skip

    if m.direction is None:
        out.append(Diagnostic("gradient beats random directions", "n/a", "needs the direction cell"))
    else:
        share = m.direction["gradient_not_better_fraction"]
        out.append(Diagnostic("gradient beats random directions", "pass" if share <= DIRECTION_LIMIT else "warn",
                              f"the signed-gradient step raises the loss no more than the best of {RANDOM_DIRECTIONS} random steps on "
                              f"{_pct(share)} of images (limit {_pct(DIRECTION_LIMIT)}); mean loss gain {m.direction['mean_gain_gradient']:.3g} "
                              f"along the gradient, {m.direction['mean_gain_best_random']:.3g} along the best random direction",
                              dict(m.direction)))  # fmt: skip

    ce, dlr = w.get("apgd-ce"), w.get("apgd-dlr")
    if ce is None or dlr is None:
        out.append(Diagnostic("DLR loss does not beat cross-entropy", "n/a", "needs APGD-CE and APGD-DLR cells"))
    else:
        ok = dlr >= ce - tol
        out.append(Diagnostic("DLR loss does not beat cross-entropy", "pass" if ok else "warn",
                              f"APGD-CE {_pct(ce)}, APGD-DLR {_pct(dlr)}"
                              + ("" if ok else "; the scale-free DLR loss breaks what cross-entropy could not: saturated (masked) cross-entropy gradients"),
                              {"apgd_ce": ce, "apgd_dlr": dlr}))  # fmt: skip

    bpda = w.get("bpda-pgd")
    if bpda is None or pgd is None:
        out.append(Diagnostic("BPDA does not beat true gradients", "n/a", "no decoupled layers, hard decisions or declared straight-through parts (or no BPDA cell)"))
    else:
        out.append(Diagnostic("BPDA does not beat true gradients", "pass" if bpda >= pgd - tol else "warn",
                              f"PGD-20 {_pct(pgd)} with true gradients, {_pct(bpda)} with BPDA surrogate gradients", {"pgd": pgd, "bpda": bpda}))  # fmt: skip

    if m.gradient is None:
        out.append(Diagnostic("gradient health", "n/a", "needs the gradient-norm cell"))
    else:
        h = m.health or {}
        zero, nonfinite = m.gradient["zero"], m.gradient["nonfinite"]
        shares = h.get("saturation") or {}
        ce_zero, ce_nonfinite = float(h.get("ce_zero_fraction", 0.0)), float(h.get("ce_nonfinite_fraction", 0.0))
        worst = max(shares.values()) if shares else 0.0
        ok = max(zero + nonfinite, ce_zero + ce_nonfinite) <= GRADIENT_HEALTH_LIMIT and worst <= SATURATION_LIMIT
        text = (f"zero input gradients: margin {_pct(zero)}, cross-entropy {_pct(ce_zero)}; "
                f"non-finite: margin {_pct(nonfinite)}, cross-entropy {_pct(ce_nonfinite)}")  # fmt: skip
        if shares:
            text += f"; saturated patches per bounded layer: max {_pct(worst)}, mean {_pct(sum(shares.values()) / len(shares))}"
        out.append(Diagnostic("gradient health", "pass" if ok else "warn", text,
                              {"zero": zero, "nonfinite": nonfinite, "ce_zero": ce_zero, "ce_nonfinite": ce_nonfinite, "saturation": shares}))  # fmt: skip
    return out

