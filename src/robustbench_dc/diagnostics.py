"""Gradient-masking diagnostics (Carlini et al. 2019; Athalye et al. 2018), per model, as pass/warn with numbers.

Bounded, saturating operators can make gradient attacks fail without making a model robust. Each check
below compares result cells that ``run_diagnostics`` adds to the store; ``diagnose`` judges them from the
cells alone, so reports recompute the verdicts from the store.

1. iterative (BIM, PGD) at least as strong as single-step FGSM;
2. white-box at least as strong as black-box (transfer, Square), in accuracy and per example;
3. accuracy falls monotonically with eps (PGD, step eps/4) and is near zero at a large eps;
4. PGD has converged: twice the steps, or restarts, change accuracy by less than the tolerance;
5. BPDA surrogate gradients do not beat the true gradients by more than the tolerance (decoupled models);
6. gradient health: zero or non-finite input gradients, and saturation of bounded magnitude functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd
import torch
from torch import nn

from robustbench_dc.attacks import BIM, BPDA, FGSM, PGD, Square
from robustbench_dc.checkpoint import workspace_dir
from robustbench_dc.data import load_dataset
from robustbench_dc.evaluation import EvalModel, evaluate, subset_identity
from robustbench_dc.ops.functional import patch_norm2d
from robustbench_dc.ops.modules import DecoupledConv2d
from robustbench_dc.perturb import input_gradient
from robustbench_dc.store import ResultStore

TOLERANCE = 0.02  # accuracy, as a fraction: 2 percentage points
NEAR_ZERO = 0.05  # "near zero" accuracy at the large eps
LARGE_EPS = 0.5
GRADIENT_HEALTH_LIMIT = 0.01  # share of examples with zero or non-finite input gradients
SATURATION_LIMIT = 0.9  # share of patches on the flat part of a bounded magnitude function
SWEEP = (0.25, 0.5, 1.0, 2.0, 4.0)  # multiples of eps for the monotonicity check


@dataclass(frozen=True)
class Diagnostic:
    name: str
    status: str  # "pass", "warn" or "n/a"
    summary: str
    numbers: dict[str, Any] = field(default_factory=dict)


def diagnostic_attacks(eps: float, square_queries: int, decoupled: bool) -> list:
    """PGD steps are eps/4 (2/255 at 8/255, SPEC's PGD), so that every check scales with eps."""
    attacks = [FGSM(), BIM(), PGD(relative_step=0.25), PGD(steps=40, relative_step=0.25), PGD(restarts=3, relative_step=0.25), Square(n_queries=square_queries)]
    return attacks + ([BPDA(relative_step=0.25)] if decoupled else [])


def saturation(model: nn.Module, images: torch.Tensor) -> dict[str, float]:
    """Per bounded decoupled layer: share of patches with tanh(r/rho) > 0.99 (tanh) or r > rho (ball)."""
    shares: dict[str, float] = {}
    hooks = []

    def hook(name: str, layer: DecoupledConv2d):
        def fn(mod, inp, out):
            r = patch_norm2d(inp[0], layer.kernel_size, stride=layer.stride, padding=layer.padding, dilation=layer.dilation, eps=layer.config.eps)
            rho = layer.eval_radius().view(1, -1, 1, 1)
            flat = torch.tanh(r / rho) > 0.99 if layer.config.magnitude == "tanh" else r > rho
            shares[name] = float(flat.float().mean())

        return fn

    for name, m in model.named_modules():
        if isinstance(m, DecoupledConv2d) and m.config.magnitude in ("tanh", "ball") and m.config.weighted is None:
            hooks.append(m.register_forward_hook(hook(name, m)))
    model.eval()
    try:
        with torch.no_grad():
            model(images)
    finally:
        for h in hooks:
            h.remove()
    return shares


def loss_gradient_health(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Share of examples whose cross-entropy input gradient (what FGSM/BIM/PGD follow) is all zero, or not finite."""
    model.eval()
    x = images.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(x), labels, reduction="sum")
    g = input_gradient(loss, x).flatten(1)
    return {"ce_zero_fraction": float((g == 0).all(1).float().mean()), "ce_nonfinite_fraction": float((~torch.isfinite(g)).any(1).float().mean())}


def run_diagnostics(
    target: EvalModel,
    *,
    dataset: str,
    eps: float = 8 / 255,
    n: int | None = 500,
    source: Any = "default",
    square_queries: int = 300,
    workspace: Any = None,
    data_dir: Any = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[Diagnostic], pd.DataFrame]:
    """Compute (or find in the store) every cell the diagnostics need, then judge them."""
    decoupled = any(isinstance(m, DecoupledConv2d) for m in target.module.modules())
    kw = dict(dataset=dataset, n=n, workspace=workspace, data_dir=data_dir, progress=progress)
    rows = evaluate(target, attacks=diagnostic_attacks(eps, square_queries, decoupled), eps=[eps], source=source, **kw)
    sweep = evaluate(target, attacks=[PGD(relative_step=0.25)], eps=[eps * k for k in SWEEP] + [LARGE_EPS], source=None, lipschitz=False, **kw)
    ws = workspace_dir(workspace)
    full = load_dataset(dataset, "test", data_dir, cache_dir=ws / "cache")
    test = full.subset(n, 0)
    identity = {"model_sha256": target.sha256, "kind": "health", "threat": "health", "attack": "saturation", "dataset": dataset,
                "subset": subset_identity(len(test), len(full), 0)}  # fmt: skip
    with ResultStore(ws) as store:
        stored = store.get(identity)
        if stored is None:
            x = test.float_images()
            stored = {"saturation": saturation(target.module, x), **loss_gradient_health(target.module, x, test.labels)}
            store.put(identity, stored, 0.0)
    health = pd.DataFrame([{"threat": "health", "attack": "saturation", **stored}])
    frame = pd.concat([rows, sweep, health], ignore_index=True)
    return diagnose(frame, eps=eps), frame


def _acc(frame: pd.DataFrame, threat: str, attack: str, eps: float, **params: Any) -> float | None:
    sel = frame[(frame["threat"] == threat) & (frame["attack"] == attack)]
    sel = sel[sel["eps"].astype(float).sub(eps).abs() < 1e-9]
    for key, value in params.items():
        sel = sel.loc[sel["params"].map(lambda p: isinstance(p, dict) and p.get(key) == value).astype(bool)]
    return float(sel["accuracy"].mean()) if len(sel) else None


def _broken(frame: pd.DataFrame, threat: str, eps: float) -> set[int] | None:
    sel = frame[(frame["threat"] == threat) & (frame["eps"].astype(float).sub(eps).abs() < 1e-9)]
    if "per_example" not in sel or sel.empty:
        return None
    out: set[int] = set()
    for s in sel["per_example"].dropna():
        out |= {i for i, c in enumerate(s) if c == "0"}
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def diagnose_stored(frame: pd.DataFrame, *, eps: float) -> list[Diagnostic]:
    """Diagnostics of one model from its stored cells: those on the image subset the PGD checks ran on."""
    pgd = frame[frame["attack"] == "pgd"]
    if pgd.empty:
        return diagnose(frame.iloc[0:0], eps=eps)
    subset = pgd["subset"].iloc[0]
    return diagnose(frame[frame["subset"].map(lambda s: s == subset)], eps=eps)


def diagnose(frame: pd.DataFrame, *, eps: float = 8 / 255, tolerance: float = TOLERANCE) -> list[Diagnostic]:
    """Judge one model's cells (as returned by ``evaluate``/``run_diagnostics`` or read from the store).

    The tolerance is ``tolerance`` or three images, whichever is larger (two images of a hundred are noise).
    """
    for col in ("threat", "attack", "eps", "params", "accuracy", "n", "per_example"):
        if col not in frame:
            frame = frame.assign(**{col: None})
    clean = frame[frame["threat"] == "none"]
    n_images = int(clean["n"].iloc[0]) if len(clean) else 0
    tol = max(tolerance, 3 / n_images if n_images else 0.0) + 1e-9
    out: list[Diagnostic] = []

    fgsm, bim, pgd = _acc(frame, "white-box", "fgsm", eps), _acc(frame, "white-box", "bim", eps), _acc(frame, "white-box", "pgd", eps, steps=20, restarts=1)
    if fgsm is None or (bim is None and pgd is None):
        out.append(Diagnostic("iterative >= single-step", "n/a", "needs white-box FGSM and BIM/PGD cells"))
    else:
        worst = min(a for a in (bim, pgd) if a is not None)
        ok = worst <= fgsm + tol
        out.append(Diagnostic("iterative >= single-step", "pass" if ok else "warn",
                              f"FGSM {_pct(fgsm)}, BIM {_pct(bim)}, PGD-20 {_pct(pgd)}", {"fgsm": fgsm, "bim": bim, "pgd": pgd}))  # fmt: skip

    white = [a for a in (fgsm, bim, pgd) if a is not None]
    black = {k: _acc(frame, "black-box", k, eps) for k in ("fgsm", "bim", "square")}
    black = {k: v for k, v in black.items() if v is not None}
    if not white or not black:
        out.append(Diagnostic("white-box >= black-box", "n/a", "needs white-box and black-box cells"))
    else:
        best_white, best_black = min(white), min(black.values())
        wb, bb = _broken(frame, "white-box", eps), _broken(frame, "black-box", eps)
        only_black = len(bb - wb) / n_images if wb is not None and bb is not None and n_images else 0.0
        ok = best_white <= best_black + tol and only_black <= tol
        out.append(Diagnostic("white-box >= black-box", "pass" if ok else "warn",
                              f"best white-box {_pct(best_white)}, best black-box {_pct(best_black)} "
                              f"({', '.join(f'{k} {_pct(v)}' for k, v in black.items())}); broken only by black-box: {_pct(only_black)} of images",
                              {"white_box": best_white, **{f"black_box_{k}": v for k, v in black.items()}, "only_black_box": only_black}))  # fmt: skip

    sweep = frame.loc[(frame["attack"] == "pgd") & frame["params"].map(lambda p: isinstance(p, dict) and p.get("steps") == 20 and p.get("restarts") == 1).astype(bool)]
    sweep = sweep[sweep["threat"] == "white-box"]
    sweep = sweep[[abs(p["step"] - 0.25 * e) < 1e-9 for p, e in zip(sweep["params"], sweep["eps"].astype(float))]]
    if len(sweep) < 3:
        out.append(Diagnostic("monotone in eps, near zero at large eps", "n/a", "needs a PGD sweep over eps"))
    else:
        pts = sorted(dict(zip(sweep["eps"].astype(float), sweep["accuracy"].astype(float))).items())
        rises = [(a, b) for (_, a), (_, b) in zip(pts, pts[1:]) if b > a + tol]
        final_eps, final = pts[-1]
        ok = not rises and final <= NEAR_ZERO
        text = ", ".join(f"{e * 255:.4g}/255: {_pct(a)}" for e, a in pts)
        out.append(Diagnostic("monotone in eps, near zero at large eps", "pass" if ok else "warn",
                              f"PGD-20 (step eps/4): {text}" + ("" if final <= NEAR_ZERO else f"; not near zero (> {_pct(NEAR_ZERO)}) at eps {final_eps:.3g}"),
                              {"sweep": pts, "rises": len(rises)}))  # fmt: skip

    pgd40 = _acc(frame, "white-box", "pgd", eps, steps=40, restarts=1)
    pgd_r = _acc(frame, "white-box", "pgd", eps, steps=20, restarts=3)
    if pgd is None or (pgd40 is None and pgd_r is None):
        out.append(Diagnostic("PGD converged", "n/a", "needs PGD-20, PGD-40 and PGD with restarts"))
    else:
        drops = [pgd - a for a in (pgd40, pgd_r) if a is not None]
        ok = max(abs(d) for d in drops) <= tol
        out.append(Diagnostic("PGD converged", "pass" if ok else "warn",
                              f"PGD-20 {_pct(pgd)}, PGD-40 {_pct(pgd40)}, PGD-20 x3 restarts {_pct(pgd_r)} (tolerance {_pct(tol)})",
                              {"pgd20": pgd, "pgd40": pgd40, "pgd20_restarts3": pgd_r}))  # fmt: skip

    bpda = _acc(frame, "white-box", "bpda-pgd", eps)
    if bpda is None or pgd is None:
        out.append(Diagnostic("BPDA does not beat true gradients", "n/a", "no decoupled layers (or no BPDA cell)"))
    else:
        ok = bpda >= pgd - tol
        out.append(Diagnostic("BPDA does not beat true gradients", "pass" if ok else "warn",
                              f"PGD-20 {_pct(pgd)} with true gradients, {_pct(bpda)} with BPDA surrogate gradients", {"pgd": pgd, "bpda": bpda}))  # fmt: skip

    grad = frame[frame["attack"] == "gradient-norm"]
    sat = frame[frame["attack"] == "saturation"]
    if grad.empty:
        out.append(Diagnostic("gradient health", "n/a", "needs the gradient-norm cell"))
    else:
        zero, nonfinite = float(grad["zero_fraction"].iloc[0]), float(grad["nonfinite_fraction"].iloc[0])
        shares = sat["saturation"].iloc[0] if len(sat) else {}
        ce_zero = float(sat["ce_zero_fraction"].iloc[0]) if len(sat) else 0.0
        ce_nonfinite = float(sat["ce_nonfinite_fraction"].iloc[0]) if len(sat) else 0.0
        worst = max(shares.values()) if shares else 0.0
        ok = max(zero + nonfinite, ce_zero + ce_nonfinite) <= GRADIENT_HEALTH_LIMIT and worst <= SATURATION_LIMIT
        text = (f"zero input gradients: margin {_pct(zero)}, cross-entropy {_pct(ce_zero)}; "
                f"non-finite: margin {_pct(nonfinite)}, cross-entropy {_pct(ce_nonfinite)}")
        if shares:
            text += f"; saturated patches per bounded layer: max {_pct(worst)}, mean {_pct(sum(shares.values()) / len(shares))}"
        out.append(Diagnostic("gradient health", "pass" if ok else "warn", text, {"zero": zero, "nonfinite": nonfinite, "ce_zero": ce_zero, "ce_nonfinite": ce_nonfinite, "saturation": shares}))
    return out


def worst_status(diagnostics: list[Diagnostic]) -> str:
    return "warn" if any(d.status == "warn" for d in diagnostics) else "pass"


