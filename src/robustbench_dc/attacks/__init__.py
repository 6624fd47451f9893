"""Attacks: our descriptions (:mod:`.specs`) and one adapter module per outside library.

``run_attack`` is the one place that batches, seeds, keeps the caller's model mode and handles restarts.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from robustbench_dc import names
from robustbench_dc.attacks.bpda import bpda_surrogate, smoothed_surrogate
from robustbench_dc.attacks.specs import (
    APGDCE,
    APGDDLR,
    ATTACKS,
    BIM,
    BPDA,
    FGM,
    FGSM,
    PGD,
    PGDL2,
    Attack,
    AutoAttack,
    AutoAttackTorchattacks,
    FGSMPredicted,
    SmoothedPGD,
    Square,
    attacks_named,
    eps_label,
    get_attack,
)
from robustbench_dc.devices import full_precision, module_device
from robustbench_dc.errors import UserError
from robustbench_dc.files import atomic_write
from robustbench_dc.inference import predict
from robustbench_dc.names import Norm


class _InputConnected(nn.Module):
    """``model(copy of x) + 0 * sum(x)``: the same outputs, but a model whose graph ignores its input (all
    gradients cut) gets zero gradients instead of an autograd error, as an attacker following gradients would;
    and a model that changes its input in place changes only its own copy."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.nonfinite_gradients = 0  # images whose input gradient had a NaN or inf, over every backward pass

    def forward(self, x: Tensor) -> Tensor:
        if x.requires_grad:
            x.register_hook(self._watch)
        return self.model(x.clone()) + 0 * x.sum()

    def _watch(self, grad: Tensor) -> None:
        self.nonfinite_gradients += int((~torch.isfinite(grad)).flatten(1).any(1).sum())


DEFAULT_ATTACK_BATCH_SIZE = 250

BACKENDS = {name: f"robustbench_dc.attacks.{name}_backend" for name in names.BACKENDS}
#: packages that carry out one attack whatever the backend (``Attack.library``)
LIBRARIES = {
    "pyautoattack": "robustbench_dc.attacks.pyautoattack_backend",
    "robustbench_dc": "robustbench_dc.attacks.early_stop",
}


def _backend(name: str):
    if name not in BACKENDS:
        raise UserError(f"unknown attack backend {name!r}; valid: {', '.join(BACKENDS)}")
    return importlib.import_module(BACKENDS[name])


def crafter(attack: Attack, backend: str) -> Callable:
    """The ``craft`` function that carries out ``attack``: its own library's where it has one, else the backend's."""
    if attack.implementation is not None:
        _backend(backend)  # a wrong backend name is an error all the same
        return importlib.import_module(LIBRARIES[attack.implementation]).craft
    return _backend(backend).craft


def carried_out_by(attack: Attack, backend: str) -> str:
    """The package whose code crafts ``attack`` (what a result cell records as its backend)."""
    return attack.implementation or backend


def _check_classes(attack: Attack, model: nn.Module, x: Tensor) -> None:
    if attack.min_classes > 2:
        with torch.no_grad():
            classes = int(model(x).shape[1])
        if classes < attack.min_classes:
            raise UserError(
                f"{attack.name} needs a model with at least {attack.min_classes} classes (its DLR loss reads the "
                f"{attack.min_classes}{'rd' if attack.min_classes == 3 else 'th'} largest logit), this one has "
                f"{classes}; use pgd or apgd-ce"
            )


def _resumed(attack: Attack, partial: Path | None, index: int, seed: int, n: int) -> tuple[Path | None, Tensor | None]:
    """For a resumable attack given a folder: batch ``index``'s file, with the generator seeded for this batch alone
    (its draws whatever ran before it), and its ``n`` images where a run before finished it (a damaged file is
    recomputed, never trusted); else (None, None)."""
    if partial is None or not attack.resumable:
        return None, None
    torch.manual_seed(seed + 1_000_003 * (index + 1))
    kept = partial / f"batch-{index}.safetensors"
    try:
        images = load_file(str(kept))["images"] if kept.is_file() else None
    except Exception:  # noqa: BLE001  (a torn or foreign file)
        images = None
    return kept, images if images is not None and images.shape[0] == n else None


def _keep(kept: Path | None, images: Tensor) -> None:
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(kept, lambda tmp: save_file({"images": images.contiguous()}, str(tmp)))


def run_attack(
    attack: Attack,
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    eps: float,
    *,
    backend: str = "torchattacks",
    seed: int = 0,
    batch_size: int = DEFAULT_ATTACK_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
    on_detail: Callable[[str], None] | None = None,
    partial: Path | None = None,
) -> Tensor:
    """Adversarial versions of ``images`` (float in [0, 1], returned on the CPU); the model is attacked in eval
    mode on its own device, in fp32, and its mode restored.

    ``eps == 0`` returns the images unchanged. Randomness (PGD starts, Square) is seeded by ``seed`` and
    leaves the global generators as they were. ``on_batch`` hears each finished batch's size, ``on_detail`` what
    a batch is doing where an attack has parts (AutoAttack's component attacks). ``partial``: a folder where a
    ``resumable`` attack keeps each finished batch (each batch seeded from ``seed`` and its index), so that a run
    interrupted after some batches does only the others.
    """
    if not (0 <= eps <= 1 if attack.norm == Norm.LINF else 0 <= eps < float("inf")):
        raise UserError(
            f"eps must be in [0, 1] (pixel units), got {eps}"
            if attack.norm == Norm.LINF
            else f"L2 eps must be a finite number >= 0, got {eps}"
        )
    if eps == 0:
        return images.clone()
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    craft = crafter(attack, backend)
    device = module_device(model)
    was_training = model.training
    model.eval()
    if isinstance(attack, BPDA):
        surrogate = bpda_surrogate(model, attack.straight_through)
    elif isinstance(attack, SmoothedPGD):
        surrogate = smoothed_surrogate(model, attack.radius * eps, attack.samples)
    else:
        surrogate = model
    attacked = _InputConnected(surrogate).eval()
    restarts = attack.restarts if isinstance(attack, PGD) else 1
    try:
        out = []
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), full_precision():
            _check_classes(attack, model, images[:1].to(device))
            torch.manual_seed(seed)
            for index, i in enumerate(range(0, images.shape[0], batch_size)):
                kept, done = _resumed(attack, partial, index, seed, min(batch_size, images.shape[0] - i))
                if done is not None:
                    out.append(done)
                    if on_batch is not None:
                        on_batch(done.shape[0])
                    continue
                x, y = images[i : i + batch_size].to(device, copy=True), labels[i : i + batch_size].to(device)
                if attack.predicted_labels:
                    y = predict(model, x).to(device)
                adv = craft(attack, attacked, x, y, eps, on_detail)
                if (
                    attacked.nonfinite_gradients
                ):  # sign(NaN) = 0: the attack moved nothing, and its accuracy would say robust
                    raise UserError(
                        f"the model's input gradients are not finite (NaN or inf) on {attacked.nonfinite_gradients} "
                        f"image(s) of a batch of {x.shape[0]} under {attack.name}; an accuracy from this attack would "
                        "be meaningless. Check the model (a division by a norm that can be zero?), or evaluate it "
                        "with query-only attacks (square)"
                    )
                for _ in range(restarts - 1):
                    still_right = (predict(model, adv) == y.cpu()).to(device)
                    if not still_right.any():
                        break
                    again = craft(attack, attacked, x[still_right], y[still_right], eps, on_detail)
                    adv[still_right] = again
                out.append(adv.cpu())
                _keep(kept, out[-1])
                if on_batch is not None:
                    on_batch(x.shape[0])
        return torch.cat(out)
    finally:
        model.train(was_training)


__all__ = [
    "APGDCE",
    "APGDDLR",
    "ATTACKS",
    "BACKENDS",
    "BIM",
    "BPDA",
    "FGM",
    "FGSM",
    "PGDL2",
    "FGSMPredicted",
    "PGD",
    "SmoothedPGD",
    "Attack",
    "AutoAttack",
    "AutoAttackTorchattacks",
    "Square",
    "attacks_named",
    "carried_out_by",
    "crafter",
    "bpda_surrogate",
    "eps_label",
    "get_attack",
    "run_attack",
]
