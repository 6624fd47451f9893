"""Gradient-masking diagnostics, computed: the cells the checks of :mod:`.checks` judge, in role ``diagnostics``.

Bounded, saturating operators can make gradient attacks fail without making a model robust. Each check
below compares result cells that ``run_diagnostics`` adds to the store; reports recompute the verdicts from
the stored cells alone.

1. iterative (BIM, PGD) at least as strong as single-step FGSM;
2. white-box at least as strong as black-box (transfer, Square), in accuracy and per example;
3. accuracy falls monotonically with eps (PGD, step eps/4) and is near zero at a large eps;
4. PGD has converged: twice the steps, or restarts, change accuracy by less than the tolerance;
5. BPDA surrogate gradients do not beat the true gradients by more than the tolerance (decoupled models, and
   hard decisions such as ConvNet-AIG gates or DRConv masks, attacked through their soft relaxation);
6. gradient health: zero or non-finite input gradients, and saturation of bounded magnitude functions.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence

import torch
from torch import nn

from robustbench_dc.attacks import APGDCE, APGDDLR, BIM, BPDA, DEFAULT_ATTACK_BATCH_SIZE, FGSM, PGD, SmoothedPGD, Square
from robustbench_dc.attacks.bpda import has_surrogate
from robustbench_dc.data import load_dataset
from robustbench_dc.devices import describe_device, module_device, placed, resolve_device
from robustbench_dc.diagnostics.checks import (
    LARGE_EPS,
    PGD_VARIANTS,
    RANDOM_DIRECTIONS,
    RELATIVE_STEP,
    SWEEP,
    Diagnostic,
    diagnose,
    measured_from_cells,
)
from robustbench_dc.errors import UserError
from robustbench_dc.evaluation import evaluate
from robustbench_dc.files import environment
from robustbench_dc.names import CellKind, Outcome, Role, Threat
from robustbench_dc.ops.functional import patch_norm2d
from robustbench_dc.ops.modules import DecoupledConv2d
from robustbench_dc.perturb import input_gradient
from robustbench_dc.results.cells import CellKey, Subset, attack_params
from robustbench_dc.results.store import ResultStore, StoredCell
from robustbench_dc.targets import EvalModel
from robustbench_dc.workspace import cache_dir, workspace_dir


def _pgd(variant: str, outcome: Outcome) -> PGD:
    return PGD(relative_step=RELATIVE_STEP, outcome=outcome, **PGD_VARIANTS[variant])


def diagnostic_attacks(square_queries: int, outcome: Outcome = Outcome.ANY_ITERATE) -> list:
    """FGSM, BIM, the PGD variants of :mod:`.checks` (steps eps/4), APGD with the cross-entropy and the DLR loss,
    and Square; ``outcome`` is what the iterative ones' cells record."""
    return [
        FGSM(),
        BIM(outcome=outcome),
        _pgd("pgd20", outcome),
        _pgd("pgd40", outcome),
        _pgd("pgd20x3", outcome),
        APGDCE(),
        APGDDLR(),
        Square(n_queries=square_queries),
    ]


def surrogate_attacks(
    decoupled: bool, straight_through: tuple[str, ...] = (), outcome: Outcome = Outcome.ANY_ITERATE
) -> list:
    """PGD-20 with smoothed gradients, and BPDA where there is a decoupled layer, hard decision or declared part."""
    pgd20 = _pgd("pgd20", outcome)
    smoothed = [
        SmoothedPGD(relative_step=pgd20.relative_step, steps=pgd20.steps, restarts=pgd20.restarts, outcome=outcome)
    ]
    bpda = [
        BPDA(
            relative_step=pgd20.relative_step,
            steps=pgd20.steps,
            restarts=pgd20.restarts,
            outcome=outcome,
            straight_through=tuple(straight_through),
        )
    ]
    return smoothed + (bpda if decoupled or straight_through else [])


def saturation(model: nn.Module, images: torch.Tensor) -> dict[str, float]:
    """Per bounded decoupled layer: share of patches with tanh(r/rho) > 0.99 (tanh) or r > rho (ball)."""
    shares: dict[str, float] = {}
    hooks = []

    def hook(name: str, layer: DecoupledConv2d):
        def fn(mod, inp, out):
            r = patch_norm2d(
                inp[0],
                layer.kernel_size,
                stride=layer.stride,
                padding=layer.padding,
                dilation=layer.dilation,
                eps=layer.config.eps,
            )
            rho = layer.eval_radius().view(1, -1, 1, 1)
            flat = torch.tanh(r / rho) > 0.99 if layer.config.magnitude == "tanh" else r > rho
            shares[name] = float(flat.float().mean())

        return fn

    if isinstance(model, torch.jit.ScriptModule):  # no forward hooks on TorchScript: no per-layer saturation
        return shares
    for name, m in model.named_modules():
        if isinstance(m, DecoupledConv2d) and m.config.magnitude in ("tanh", "ball") and m.config.weighted is None:
            hooks.append(m.register_forward_hook(hook(name, m)))
    model.eval()
    try:
        with torch.no_grad():
            model(images.to(module_device(model)))
    finally:
        for h in hooks:
            h.remove()
    return shares


def loss_gradient_health(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Share of examples whose cross-entropy input gradient (what FGSM/BIM/PGD follow) is all zero, or not finite."""
    model.eval()
    device = module_device(model)
    x = images.to(device, copy=True).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(x.clone()), labels.to(device), reduction="sum")
    g = input_gradient(loss, x).flatten(1)
    return {
        "ce_zero_fraction": float((g == 0).all(1).float().mean()),
        "ce_nonfinite_fraction": float((~torch.isfinite(g)).any(1).float().mean()),
    }


@torch.no_grad()
def _ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(model(x.clone()), y, reduction="none")


def gradient_direction(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    directions: int = RANDOM_DIRECTIONS,
    seed: int = 0,
    batch_size: int = DEFAULT_ATTACK_BATCH_SIZE,
) -> dict[str, float]:
    """Share of images where the signed gradient step of size eps raises the cross-entropy no more than the best
    of ``directions`` random sign steps of the same size: where gradients carry information, it is near zero."""
    model.eval()
    device = module_device(model)
    g = torch.Generator().manual_seed(seed)
    worse, gains = [], []
    for i in range(0, images.shape[0], batch_size):
        x, y = images[i : i + batch_size].to(device, copy=True), labels[i : i + batch_size].to(device)
        xg = x.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(xg.clone()), y, reduction="sum")
        grad = input_gradient(loss, xg)
        base = _ce(model, x, y)
        along = _ce(model, (x + eps * grad.sign()).clamp(0, 1), y) - base
        best_random = torch.full_like(along, float("-inf"))
        for _ in range(directions):
            sign = (torch.randint(0, 2, x.shape, generator=g) * 2 - 1).to(device, x.dtype)
            best_random = torch.maximum(best_random, _ce(model, (x + eps * sign).clamp(0, 1), y) - base)
        worse.append((along <= best_random).cpu())
        gains.append(torch.stack([along, best_random], 1).cpu())
    w, gain = torch.cat(worse), torch.cat(gains)
    return {
        "gradient_not_better_fraction": float(w.float().mean()),
        "mean_gain_gradient": float(gain[:, 0].mean()),
        "mean_gain_best_random": float(gain[:, 1].mean()),
    }


def diagnostics_eps(eps: Sequence[float]) -> float:
    """The eps the diagnostics centre on for an evaluation at ``eps``: the protocol's 8/255 where it was measured,
    else the largest (the checks then sweep around it)."""
    return 8 / 255 if any(abs(e - 8 / 255) < 1e-12 for e in eps) else max(eps)


def run_diagnostics(
    target: EvalModel,
    *,
    dataset: str,
    eps: float = 8 / 255,
    n: int | None = 500,
    source: EvalModel | None = None,
    square_queries: int = 300,
    workspace: Any = None,
    data_dir: Any = None,
    device: Any = "auto",
    batch_size: int = DEFAULT_ATTACK_BATCH_SIZE,
    straight_through: tuple[str, ...] = (),
    outcome: Outcome = Outcome.ANY_ITERATE,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[Diagnostic], list[StoredCell]]:
    """Compute (or find in the store) every cell the diagnostics need (role ``diagnostics``), then judge them.

    ``straight_through``: names of submodules the user declares non-differentiable or gradient-shattering (an
    input quantiser, a denoiser); the BPDA attack passes gradients straight through them."""
    if square_queries < 1:
        raise UserError(f"square_queries must be >= 1 (the Square attack is one of the checks), got {square_queries}")
    decoupled = has_surrogate(target.module)
    ws = workspace_dir(workspace)
    full = load_dataset(dataset, "test", data_dir, cache_dir=cache_dir(ws))
    test = full.subset(n, 0)
    kw = dict(
        dataset=dataset,
        n=n,
        workspace=workspace,
        data_dir=data_dir,
        progress=progress,
        role=Role.DIAGNOSTICS,
        device=device,
        batch_size=batch_size,
    )
    # the gradient-norm cell on the same images as the attacks (lipschitz_n = the subset's size)
    evaluate(
        target,
        attacks=diagnostic_attacks(square_queries, outcome),
        eps=[eps],
        source=source,
        lipschitz_n=len(test),
        **kw,
    )
    # every check that compares two attacks image by image reads every eps both ran at: the sweep's FGSM and PGD-20,
    # and the surrogate-gradient attacks at eps and twice eps (partial masking can show only at the larger one)
    sweep = [eps * k for k in SWEEP] + [LARGE_EPS]
    evaluate(target, attacks=[FGSM(), _pgd("pgd20", outcome)], eps=sweep, lipschitz=False, **kw)
    evaluate(
        target,
        attacks=surrogate_attacks(decoupled, straight_through, outcome),
        eps=[eps, 2 * eps],
        lipschitz=False,
        **kw,
    )
    key = CellKey(
        function=target.function_id,
        dataset=dataset,
        data=full.content_sha256(),
        subset=Subset(len(test), len(full), 0),
        role=Role.DIAGNOSTICS,
        kind=CellKind.HEALTH,
        threat=Threat.HEALTH,
        attack="saturation",
    )
    direction = replace(
        key,
        attack="direction",
        eps=eps,
        params=attack_params({"random_directions": RANDOM_DIRECTIONS, "step": "eps * sign"}),
    )
    with ResultStore(ws) as store, placed([target.module], resolve_device(device)):
        x = test.float_images()
        provenance = {
            "label": target.label,
            "device": describe_device(module_device(target.module)),
            "environment": environment(),
        }
        store.cell(
            key,
            lambda: {"saturation": saturation(target.module, x), **loss_gradient_health(target.module, x, test.labels)},
            provenance=provenance,
        )
        store.cell(
            direction,
            lambda: gradient_direction(target.module, x, test.labels, eps, batch_size=batch_size),
            provenance=provenance,
        )
        cells = [
            c
            for c in store.cells(function=target.function_id)
            if c.key.role == Role.DIAGNOSTICS and c.key.data == key.data and c.key.subset.n == key.subset.n
        ]
    return diagnose(measured_from_cells(cells, eps)), cells
