"""Natural and adversarial training (docs/protocol.md, section 3) into the workspace's model store, resumable per epoch.

Determinism: all randomness of an epoch (order, augmentation, random starts) comes from a generator seeded
by ``(seed, epoch)``, and the state after every epoch is saved atomically; so a run killed at any moment and
started again with the same command ends with the same weights as one that was never interrupted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from robustbench_dc.checkpoint import Card, read_card, robustness_series, save_checkpoint
from robustbench_dc.data import ImageDataset, dataset_info, load_dataset
from robustbench_dc.devices import (
    ComputeMode,
    channels_last_hazard,
    describe_device,
    keep_freed_memory,
    resolve_device,
    training_mode,
)
from robustbench_dc.diagnostics.checks import catastrophic_overfitting
from robustbench_dc.errors import UserError
from robustbench_dc.files import atomic_write_bytes
from robustbench_dc.inference import predict
from robustbench_dc.models import ARCHITECTURES, ModelSpec, Network, create_model
from robustbench_dc.models.gates import execution_rates
from robustbench_dc.models.registry import arch_label
from robustbench_dc.names import INITS, PRECISIONS, SCHEDULES, Regime, unknown
from robustbench_dc.names import RECIPES as RECIPE_NAMES
from robustbench_dc.ops import DecoupledConv2d, DecoupledLinear, project_weights
from robustbench_dc.perturb import ascend_linf, cross_entropy_objective
from robustbench_dc.workspace import CARD_FILE, RUN_FILE, cache_dir, recipe_run_dir, run_dir, workspace_dir

log = logging.getLogger(__name__)

RESUME_FILE = "resume.pt"


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``training``: natural; fgsm (half clean, half FGSM at eps crafted with the true labels,
    equal weights); kurakin (Kurakin et al. 2017: half FGSM crafted with the model's predicted labels, so that
    no label leaks, at a per-example eps from a normal of sd eps/2 truncated to [0, eps], adversarial loss
    weight ``adv_weight``); pgd (Madry: ``pgd_steps`` steps of ``pgd_step`` with random start); fgsm-rs (Wong
    et al.: random start, step 1.25 eps)."""

    model: str
    dataset: str
    arch: str = "cnn9"
    width: float = 1.0
    training: Regime = Regime.NATURAL
    eps: float = 8 / 255
    pgd_steps: int = 7
    pgd_step: float = 2 / 255
    adv_weight: float = 0.3  # kurakin: weight of the adversarial half in the loss
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    seed: int = 0
    train_subset: int | None = None
    weight_projection: bool = False
    augment: bool | None = None  # None: the dataset's default (crop + flip for CIFAR-10)
    recalibration_batches: int = 50  # training batches over which running statistics are recomputed at the end
    precision: str = "auto"  # autocast dtype for training: auto (bf16 where supported), fp32, bf16, fp16 (CUDA)
    channels_last: bool | None = None  # None: chosen per device and network (devices.training_mode)
    compile: bool = False  # training steps through torch.compile (inductor); falls back to eager where compiling fails
    operator: dict[str, Any] = field(default_factory=dict)
    arch_options: dict[str, Any] = field(default_factory=dict)  # see ARCHITECTURES.defaults(arch)
    warmup: float = 0.25  # fraction of the steps over which onecycle and triangle schedules rise to lr
    label_smoothing: float = (
        0.0  # of the training cross-entropy (it can flatten the loss around the data: docs/recipes.md)
    )
    ema_decay: float = (
        0.0  # the saved weights are an exponential moving average of the steps' weights (0: the last step's)
    )
    init: str = "default"  # "dirac": identity-initialised convolutions (the first in_channels filters of each)
    decay_norms: bool = True  # false: no weight decay on BatchNorm parameters and biases
    robustness_check: int = (
        0  # after each epoch, FGSM and PGD-10 on this many fixed training images (catastrophic overfitting)
    )

    def __post_init__(self) -> None:
        try:  # a card's regime reads back as a string: its member, typed (and equal to that string)
            object.__setattr__(self, "training", Regime(self.training))
        except ValueError:
            raise UserError(unknown("training regime", self.training, Regime)) from None
        for name, what, valid in (
            ("schedule", "schedule", SCHEDULES),
            ("precision", "precision", PRECISIONS),
            ("init", "init", INITS),
        ):
            if getattr(self, name) not in valid:
                raise UserError(f"unknown {what} {getattr(self, name)!r}; valid: {', '.join(valid)}")
        self._check_numbers()
        dataset_info(self.dataset)
        ARCHITECTURES.options(ModelSpec(name=self.model, arch=self.arch, arch_options=self.arch_options))

    def _check_numbers(self) -> None:
        if not 0 <= self.eps <= 1:
            raise UserError(f"eps must be in [0, 1] (pixel units), got {self.eps}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("width", "lr", "momentum", "weight_decay", "eps", "pgd_step"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (name in ("width", "lr") and value == 0):
                raise UserError(
                    f"{name} must be a finite number{' > 0' if name in ('width', 'lr') else ' >= 0'}, got {value}"
                )
        for name, value in (
            ("recalibration_batches", self.recalibration_batches),
            ("robustness_check", self.robustness_check),
        ):
            if value < 0:
                raise UserError(f"{name} must be >= 0 (0: off), got {value}")
        if not 0 < self.adv_weight <= 1:
            raise UserError(f"adv_weight must be in (0, 1], got {self.adv_weight}")
        if self.train_subset is not None and self.train_subset < 1:
            raise UserError(f"train_subset must be >= 1, got {self.train_subset}")
        if not 0 <= self.warmup < 1 or not 0 <= self.label_smoothing < 1 or not 0 <= self.ema_decay < 1:
            raise UserError(
                f"warmup, label_smoothing and ema_decay must be in [0, 1), got {self.warmup}, {self.label_smoothing}, "
                f"{self.ema_decay}"
            )
        if self.ema_decay and not self.recalibration_batches:
            raise UserError(
                "ema_decay needs recalibration_batches > 0: averaged weights need BatchNorm statistics of their own"
            )

    @property
    def arch_label(self) -> str:
        """The store's name for the architecture: ``convnet-aig``, or ``convnet-aig+target_rate=0.5`` with options."""
        return arch_label(self.arch, self.arch_options)

    @property
    def training_label(self) -> str:
        """The store's name for the regime: ``fgsm``, or ``fgsm-eps4`` when eps is not 8/255."""
        if self.training == Regime.NATURAL or math.isclose(self.eps, 8 / 255):
            return self.training
        return f"{self.training}-eps{self.eps * 255:g}"

    def to_dict(self) -> dict[str, Any]:
        """The run's settings, as the card and the resume state record them."""
        d = asdict(self)
        for key, default in _LATER_FIELDS.items():  # set only: runs from before these existed keep their identity
            if d[key] == default:
                del d[key]
        return d


#: Named sets of TrainConfig settings (docs/recipes.md says why each value and what it was measured to do); explicit
#: settings override a recipe's, and the card records the resolved settings, so a recipe is never part of an identity.
RECIPES: dict[str, dict[str, Any]] = {
    "standard": {},  # TrainConfig's defaults: docs/protocol.md, section 3
    "fast": {
        "epochs": 10,
        "batch_size": 512,
        "lr": 0.4,
        "schedule": "triangle",
        "warmup": 0.2,
        "weight_decay": 5e-4,
        "decay_norms": False,
        "init": "dirac",
        "ema_decay": 0.99,
        "recalibration_batches": 50,
    },
}
assert tuple(RECIPES) == RECIPE_NAMES


def recipe_config(recipe: str = "standard", **settings: Any) -> TrainConfig:
    """The TrainConfig of a named recipe (``RECIPES``) with ``settings`` overriding its values."""
    if recipe not in RECIPES:
        raise UserError(unknown("recipe", recipe, RECIPES))
    return TrainConfig(**{**RECIPES[recipe], **settings})


#: Fields added after the first stores were written, with their defaults: ``to_dict`` leaves them out at the default.
_LATER_FIELDS: dict[str, Any] = {
    "arch_options": {},
    "compile": False,
    "warmup": 0.25,
    "label_smoothing": 0.0,
    "ema_decay": 0.0,
    "init": "default",
    "decay_norms": True,
    "robustness_check": 0,
}


@dataclass(frozen=True)
class BatchStats:
    epoch: int
    batch: int
    batches: int
    loss: float
    accuracy: float
    images_per_s: float


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    epochs: int
    loss: float
    accuracy: float  # on the training batches (adversarial part included)
    images_per_s: float
    seconds: float
    robustness: dict[str, float] | None = None  # TrainConfig.robustness_check's accuracies after this epoch

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["robustness"] is None:  # histories from before the check existed keep their shape
            del d["robustness"]
        return d


def checkpoint_dir(config: TrainConfig, workspace: Path) -> Path:
    named = run_dir(
        workspace,
        dataset=config.dataset,
        model=config.model,
        training=config.training_label,
        arch=config.arch_label,
        width=config.width,
        seed=config.seed,
    )
    return recipe_run_dir(named, config.to_dict())


def build(config: TrainConfig) -> Network:
    info = dataset_info(config.dataset)
    torch.manual_seed(config.seed)
    model = create_model(
        config.model,
        arch=config.arch,
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        width=config.width,
        input_size=info.input_size,
        mean=info.mean,
        std=info.std,
        arch_options=config.arch_options,
        **config.operator,
    )
    if config.init == "dirac":
        dirac_init(model)
    return model


def dirac_init(model: nn.Module) -> None:
    """Identity-initialise every 2-d convolution (ordinary or decoupled) of odd kernel size: its first ``in_channels``
    filters pass their input channel through (airbench, Jordan 2024), the rest keep their random init; a deep plain
    network then starts near a shallow one and trains faster."""
    with torch.no_grad():
        for m in model.modules():
            if (
                isinstance(m, (nn.Conv2d, DecoupledConv2d))
                and m.weight.ndim == 4
                and m.weight.shape[-1] % 2 == 1
                and getattr(m, "groups", 1) == 1
            ):
                w = m.weight
                k = min(w.shape[0], w.shape[1])
                nn.init.dirac_(w[:k])


def augment_batch(x: Tensor, generator: torch.Generator, pad: int = 4) -> Tensor:
    """Random crop with zero padding and random horizontal flip, per image, vectorised."""
    n, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    # the random numbers come from the CPU generator on every device: the same crops and flips everywhere
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
    flip = (torch.rand(n, generator=generator) < 0.5).to(dev)
    rows = (dy[:, None] + torch.arange(h, device=dev)[None]).view(n, 1, h, 1)
    cols = dx[:, None] + torch.arange(w, device=dev)[None]
    cols = torch.where(flip[:, None], cols.flip(1), cols).view(n, 1, 1, w)
    idx_n = torch.arange(n, device=dev).view(n, 1, 1, 1)
    idx_c = torch.arange(x.shape[1], device=dev).view(1, -1, 1, 1)
    return padded[idx_n, idx_c, rows, cols]


def truncated_eps(n: int, eps: float, generator: torch.Generator) -> Tensor:
    """Per-example eps from a normal of mean 0 and sd eps/2, folded to positive and truncated to [0, eps] by
    redrawing (Kurakin et al. 2017 draw from [0, 16] with sd 8)."""
    out = (torch.randn(n, generator=generator) * eps / 2).abs()
    while bool((out > eps).any()):
        bad = out > eps
        out[bad] = (torch.randn(int(bad.sum()), generator=generator) * eps / 2).abs()
    return out


def adversarial_batch(
    model: nn.Module, x: Tensor, y: Tensor, config: TrainConfig, generator: torch.Generator
) -> tuple[Tensor, Tensor | None]:
    """The inputs the model learns from in this batch (crafted with the model in eval mode) and per-example
    loss weights (None: equal weights)."""
    if config.training == Regime.NATURAL:
        return x, None
    model.eval()
    weights = None
    objective = cross_entropy_objective(model, y)
    if config.training == Regime.FGSM:
        half = x.shape[0] // 2
        adv = ascend_linf(cross_entropy_objective(model, y[half:]), x[half:], eps=config.eps, step=config.eps, steps=1)
        out = torch.cat([x[:half], adv])
    elif config.training == Regime.KURAKIN:
        half = x.shape[0] // 2
        xa = x[half:].detach().clone().requires_grad_(True)
        logits = model(xa)
        loss = F.cross_entropy(logits, logits.argmax(1).detach(), reduction="sum")  # predicted labels: no label leaking
        (grad,) = torch.autograd.grad(loss, xa)
        eps = truncated_eps(xa.shape[0], config.eps, generator).to(x.device, x.dtype).view(-1, 1, 1, 1)
        out = torch.cat([x[:half], (xa.detach() + eps * grad.sign()).clamp(0, 1)])
        weights = torch.cat(
            [torch.ones(half, device=x.device), torch.full((x.shape[0] - half,), config.adv_weight, device=x.device)]
        )
    elif config.training == Regime.PGD:
        out = ascend_linf(
            objective,
            x,
            eps=config.eps,
            step=config.pgd_step,
            steps=config.pgd_steps,
            random_start=True,
            generator=generator,
        )
    else:  # Regime.FGSM_RS
        out = ascend_linf(
            objective, x, eps=config.eps, step=1.25 * config.eps, steps=1, random_start=True, generator=generator
        )
    model.train()
    return out, weights


def training_batch(
    model: nn.Module,
    data: ImageDataset,
    idx: Tensor,
    config: TrainConfig,
    augment: bool,
    generator: torch.Generator,
    mode: ComputeMode | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Inputs, labels and loss weights of one training step: images ``idx`` (gathered where the data lives),
    augmented if asked, then made adversarial; in the mode's layout."""
    idx = idx.to(data.images.device)
    x, y = data.float_images(idx), data.labels[idx]
    if augment:
        x = augment_batch(x, generator)
    if mode is not None and mode.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with mode.autocast() if mode is not None else contextlib.nullcontext():
        x, weights = adversarial_batch(model, x, y, config, generator)
    return x, y, weights


def place_for_training(model: nn.Module, config: TrainConfig, device: torch.device) -> ComputeMode:
    """Choose the training precision and layout for this network on ``device`` and move it there accordingly (on the
    CPU, with the allocator keeping freed memory: ``keep_freed_memory``)."""
    if device.type == "cpu":
        keep_freed_memory()
    decoupled = any(isinstance(m, (DecoupledConv2d, DecoupledLinear)) for m in model.modules())
    mode = training_mode(
        device, config.precision, config.channels_last, decoupled=decoupled, hazard=channels_last_hazard(model)
    )
    model.to(device, memory_format=torch.channels_last if mode.channels_last else torch.preserve_format)  # type: ignore[call-overload]
    return mode


def train_step(
    model: Network,
    opt: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    mode: ComputeMode,
    scaler: torch.amp.GradScaler | None = None,
    weights: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """One optimiser step on a prepared batch, in the mode's precision; returns (logits, loss).
    ``weights``: per-example loss weights (see ``Network.training_loss``)."""
    with mode.autocast():
        logits = model(x)
        loss = model.training_loss(logits, y, weights, label_smoothing)
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()
    return logits, loss


def batch_step(
    model: Network,
    data: ImageDataset,
    idx: Tensor,
    config: TrainConfig,
    augment: bool,
    generator: torch.Generator,
    mode: ComputeMode,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One training step from batch indices (the batch made as ``training_batch`` makes it, then ``train_step``):
    (logits, labels, loss)."""
    x, y, weights = training_batch(model, data, idx, config, augment, generator, mode)
    logits, loss = train_step(model, opt, x, y, mode, scaler, weights, config.label_smoothing)
    return logits, y, loss


class TrainingSteps:
    """Runs training steps on the model, or with ``compile`` through ``torch.compile(model)`` (the crafting of
    adversarial batches too; recalibration and evaluation stay eager). Where compiling fails (no C++ compiler, an
    operation inductor cannot take) the step is redone eagerly from the same random state and every later step
    runs eager; ``outcome`` says which happened, for the card. A failure comes from compiling, before the
    compiled code runs, so the model's state is untouched by it."""

    def __init__(self, model: Network, compile: bool) -> None:
        if compile:
            # dynamo's recompile limit counts graphs per code object across every model of the process: after a
            # few trainings in one process (a preset, a study) it would silently run the rest eager
            torch._dynamo.reset()
        # static shapes: the last, smaller batch of an epoch gets a graph of its own; with dynamic shapes dynamo
        # would recompile one for every size and use it for the full batches too, measured slower than eager
        # the compiled module forwards every attribute to the model, so it stands in for the Network
        self.model = model
        self.compiled = cast(Network, torch.compile(model, dynamic=False)) if compile else None
        self.outcome = "torch.compile (inductor)" if compile else "eager"
        self.proven = False

    def run(self, step: Callable[[Network], Any], generator: torch.Generator) -> Any:
        if self.compiled is None:
            return step(self.model)
        if self.proven:
            return step(self.compiled)
        saved = generator.get_state(), torch.random.get_rng_state()
        try:
            out = step(self.compiled)
        except torch._dynamo.exc.TorchDynamoException as exc:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            log.warning("torch.compile failed (%s); training goes on without it", reason)
            self.compiled, self.outcome = None, f"eager (torch.compile failed: {reason})"
            generator.set_state(saved[0])
            torch.random.set_rng_state(saved[1])
            return step(self.model)
        self.proven = True
        return out


def recalibrate_statistics(model: nn.Module, batches: Iterable[Tensor]) -> int:
    """Recompute running statistics (BatchNorm's, and the relative radius's patch-norm mean) as exact averages
    over ``batches`` with the final weights; returns how many batches were used.

    The exponential averages kept during training trail weights that kept moving: after a short run the same
    weights can be far worse in eval mode than in training mode (SWA's ``update_bn`` fixes the same problem).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    radii = [m for m in model.modules() if isinstance(m, (DecoupledConv2d, DecoupledLinear)) and m.config.relative_rho]
    momenta = [m.momentum for m in norms], [m.rho_momentum for m in radii]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # type: ignore[assignment]  # None: a cumulative average, as BatchNorm documents
    for radius in radii:
        radius.rho_batches_tracked, radius.rho_momentum = 0, None
    count = 0
    try:
        for x in batches:
            model.train()
            with torch.no_grad():
                model(x)
            count += 1
    finally:
        for norm, momentum in zip(norms, momenta[0]):
            norm.momentum = momentum
        for radius, rho_momentum in zip(radii, momenta[1]):
            radius.rho_momentum = rho_momentum
    if count == 0 and (norms or radii):
        raise ValueError("recalibrate_statistics needs at least one batch")
    return count


def _optimizer_and_schedule(model: nn.Module, config: TrainConfig, steps_per_epoch: int):
    if config.decay_norms:
        groups: list[dict[str, Any]] = [{"params": list(model.parameters())}]
    else:  # weight decay shrinks a BatchNorm scale or a bias without changing what the next layer can express
        flat = [p for p in model.parameters() if p.ndim <= 1]
        groups = [{"params": [p for p in model.parameters() if p.ndim > 1]}, {"params": flat, "weight_decay": 0.0}]
    opt = torch.optim.SGD(
        groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=True
    )
    total = config.epochs * steps_per_epoch
    sched: torch.optim.lr_scheduler.LRScheduler
    if config.schedule == "onecycle" and total >= 8:  # one-cycle needs a few steps per phase; tiny runs use cosine
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total, pct_start=config.warmup)
    elif config.schedule == "triangle":  # linear rise to lr over the warm-up, then linear fall to zero at the last step
        rise = max(1, round(config.warmup * total))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda t: (t + 1) / rise if t < rise else max(0.0, (total - 1 - t) / max(1, total - rise))
        )
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    return opt, sched


def robustness_check(model: nn.Module, data: ImageDataset, config: TrainConfig) -> dict[str, float]:
    """FGSM and PGD-10 (step eps/4, random start) accuracy on ``config.robustness_check`` fixed training images, in
    fp32 and eval mode: when FGSM training overfits catastrophically (Wong et al. 2020), PGD accuracy collapses
    within an epoch while FGSM accuracy rises. Its own generator: the training's random draws are untouched."""
    t0 = time.perf_counter()
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[: config.robustness_check].to(
        data.images.device
    )
    x, y = data.float_images(idx), data.labels[idx]
    g = torch.Generator().manual_seed(config.seed)
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    with torch.autocast(x.device.type, enabled=False):
        for name, step, steps, start in (("fgsm", config.eps, 1, False), ("pgd10", config.eps / 4, 10, True)):
            correct = 0
            for xb, yb in zip(x.split(256), y.split(256)):
                adv = ascend_linf(
                    cross_entropy_objective(model, yb),
                    xb,
                    eps=config.eps,
                    step=step,
                    steps=steps,
                    random_start=start,
                    generator=g,
                )
                correct += int((predict(model, adv) == yb).sum())
            out[name] = correct / len(y)
    model.train(was_training)
    out["seconds"] = time.perf_counter() - t0
    return out


def test_accuracy(model: nn.Module, test: ImageDataset) -> float:
    return float((predict(model, test.float_images()) == test.labels).float().mean())


def train(
    config: TrainConfig,
    *,
    workspace: str | Path | None = None,
    data_dir: str | Path | None = None,
    download: bool = False,
    device: str | torch.device | None = "auto",
    on_batch: Callable[[BatchStats], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> Path:
    """Train (or resume, or find already trained) and return the checkpoint directory.

    ``device``: ``auto`` (CUDA, else MPS, else CPU), or a device name. Precision and layout follow the
    config (``auto``: bf16 autocast where supported, channels-last where faster); the card records them.
    """
    ws = workspace_dir(workspace)
    out_dir = checkpoint_dir(config, ws)
    wanted = config.to_dict()
    if (out_dir / CARD_FILE).exists():  # checkpoint_dir chose the folder of this configuration's run
        read_card(out_dir)  # a damaged card is reported, not trained over
        log.info("already trained: %s", out_dir)
        return out_dir

    _check_writable(out_dir)  # before any work: an unwritable workspace is found now, not after the first epoch
    atomic_write_bytes(out_dir / RUN_FILE, json.dumps({"train_config": wanted}, sort_keys=True).encode())  # claims it
    train_set = load_dataset(config.dataset, "train", data_dir, download=download, cache_dir=cache_dir(ws))
    test_set = load_dataset(config.dataset, "test", data_dir, download=download, cache_dir=cache_dir(ws))
    if len(train_set) == 0 or len(test_set) == 0:
        raise UserError(
            f"{config.dataset}: the {'training' if len(train_set) == 0 else 'test'} set is empty; check --data-dir"
        )
    dev = resolve_device(device)
    train_set = train_set.subset(config.train_subset, seed=0).to(dev)  # the same subset for every model and seed
    augment = train_set.info.augment if config.augment is None else config.augment
    model = build(config)
    mode = place_for_training(model, config, dev)
    scaler = torch.amp.GradScaler(dev.type) if mode.precision == "fp16" else None
    steps = math.ceil(len(train_set) / config.batch_size)
    opt, sched = _optimizer_and_schedule(model, config, steps)
    history: list[dict[str, Any]] = []
    start_epoch, wall = 0, 0.0
    runner = TrainingSteps(model, config.compile)
    averaged = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=False)
        if config.ema_decay
        else None
    )

    resume_path = out_dir / RESUME_FILE
    if resume_path.exists():
        start_epoch, history, wall = _resume(resume_path, wanted, mode, dev, model, opt, sched, averaged)
        log.info("resuming %s after epoch %d", out_dir, start_epoch)

    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        torch.manual_seed(config.seed * 1_000_003 + epoch)  # in-model randomness (gates' Gumbel noise, dropout)
        order = torch.randperm(len(train_set), generator=g)
        model.train()
        loss_sum = correct = seen = 0.0
        for b in range(steps):
            idx = order[b * config.batch_size : (b + 1) * config.batch_size]
            logits, y, loss = runner.run(
                lambda m: batch_step(m, train_set, idx, config, augment, g, mode, opt, scaler), g
            )
            sched.step()
            if config.weight_projection:
                project_weights(model)
            if averaged is not None:
                averaged.update_parameters(model)
            loss_sum += float(loss.detach()) * len(y)
            correct += float((logits.argmax(1) == y).sum())
            seen += len(y)
            if on_batch is not None:
                elapsed = time.perf_counter() - t0
                on_batch(BatchStats(epoch, b, steps, loss_sum / seen, correct / seen, seen / max(elapsed, 1e-9)))
        seconds = time.perf_counter() - t0
        if not math.isfinite(loss_sum):
            raise UserError(
                f"training diverged: the loss is not finite in epoch {epoch + 1} of {out_dir}; nothing of this epoch "
                f"is saved. Lower --lr (now {config.lr:g}) or change the model, then run again"
            )
        wall += seconds
        checked = robustness_check(_trained(model, averaged), train_set, config) if config.robustness_check else None
        stats = EpochStats(epoch + 1, config.epochs, loss_sum / seen, correct / seen, seen / seconds, seconds, checked)
        history.append(stats.to_dict())
        state = {
            "config": json.dumps(wanted, sort_keys=True),
            "mode": json.dumps(mode.to_dict(), sort_keys=True),
            "epoch": epoch + 1,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "history": json.dumps(history),
            "wall_time_s": wall,
            **({"averaged": averaged.state_dict()} if averaged is not None else {}),
        }
        atomic_write_bytes(resume_path, _torch_bytes(state))
        if on_epoch is not None:
            on_epoch(stats)

    recalibration = _final_weights(model, averaged, train_set, config, augment, mode)
    model.eval()
    acc = test_accuracy(model, test_set)  # fp32, like every evaluation
    rates = execution_rates(model, test_set.float_images())
    run = {"mode": mode, "compile": runner.outcome, "device": dev, "wall": wall, "recalibration": recalibration}
    card = _card(model, config, train_set, test_set, history, acc, rates, run)
    save_checkpoint(model, out_dir, card)
    resume_path.unlink(missing_ok=True)
    (out_dir / RUN_FILE).unlink(missing_ok=True)
    return out_dir


def _trained(model: nn.Module, averaged: AveragedModel | None) -> nn.Module:
    """The network the run would end with now: the weight average where the recipe keeps one."""
    return averaged.module if averaged is not None else model


def _resume(
    path: Path,
    wanted: dict[str, Any],
    mode: ComputeMode,
    dev: torch.device,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    averaged: AveragedModel | None,
) -> tuple[int, list[dict[str, Any]], float]:
    """Restore a run from its resume state, refusing one made with other settings or in another compute mode;
    returns the epochs done, their history and their wall time."""
    try:
        state = torch.load(path, weights_only=True, map_location=dev)
    except Exception as exc:  # noqa: BLE001  (a truncated or foreign file: anything can come out of the unpickler)
        raise UserError(
            f"{path}: unreadable resume state ({type(exc).__name__}); delete it to start this run over"
        ) from exc
    keys = {"config", "epoch", "model", "optimizer", "scheduler", "history", "wall_time_s"}
    if not isinstance(state, dict) or not keys <= set(state):
        raise UserError(
            f"{path}: not a resume state of this suite (a torch file with other keys); delete it to start over"
        )
    if state["config"] != json.dumps(wanted, sort_keys=True):
        raise UserError(f"{path} belongs to a run with other settings; delete it to start over")
    here = json.dumps(mode.to_dict(), sort_keys=True)
    if state.get("mode", here) != here:  # older states: unchecked
        raise UserError(
            f"{path}: its first {state['epoch']} epochs were trained as {state['mode']}, this machine would go on as "
            f"{here} (precision 'auto' resolves per device); a run is never mixed: resume it where it started, or "
            "delete resume.pt to start over here"
        )
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    if averaged is not None:
        averaged.load_state_dict(state["averaged"])
    return state["epoch"], json.loads(state["history"]), state["wall_time_s"]


def _final_weights(
    model: nn.Module,
    averaged: AveragedModel | None,
    train_set: ImageDataset,
    config: TrainConfig,
    augment: bool,
    mode: ComputeMode,
) -> dict[str, int]:
    """Give ``model`` its final weights (the average, where kept) and recalibrate its normalisation statistics on
    training batches of the regime (deterministic: its own generator, so an interrupted run redoes it identically);
    returns how many batches and images that took."""
    if averaged is not None:
        with torch.no_grad():
            for p, q in zip(model.parameters(), averaged.module.parameters()):
                p.copy_(q)
    if not config.recalibration_batches:
        return {"batches": 0, "images": 0}
    g = torch.Generator().manual_seed(config.seed * 1_000_003 + config.epochs)
    chunks = torch.randperm(len(train_set), generator=g).split(config.batch_size)[: config.recalibration_batches]
    # every batch is crafted first, against the final statistics, before they are reset and recomputed
    batches = [training_batch(model, train_set, idx, config, augment, g, mode)[0] for idx in chunks]
    with mode.autocast():
        return {"batches": recalibrate_statistics(model, batches), "images": sum(len(c) for c in chunks)}


def _regime_card(config: TrainConfig) -> dict[str, Any]:
    regime: dict[str, Any] = {"regime": config.training, "label": config.training_label, "eps": config.eps}
    if config.training == Regime.PGD:
        regime.update(pgd_steps=config.pgd_steps, pgd_step=config.pgd_step)
    if config.training == Regime.KURAKIN:
        eps_text = f"|N(0, {config.eps / 2:.4g})| truncated to [0, {config.eps:.4g}]"
        regime.update(adv_weight=config.adv_weight, labels="predicted", eps_per_example=eps_text)
    return regime


def _card(
    model: Network,
    config: TrainConfig,
    train_set: ImageDataset,
    test_set: ImageDataset,
    history: list[dict[str, Any]],
    acc: float,
    rates: list[float],
    run: dict[str, Any],
) -> Card:
    """The checkpoint card: the full training configuration, its data, history, accuracy and compute mode."""
    info = train_set.info
    series = robustness_series(history)
    check = {
        "images": config.robustness_check,
        "attacks": "FGSM and PGD-10 (step eps/4, random start) at the training eps, fp32",
        "catastrophic_overfitting_epoch": catastrophic_overfitting(series["epoch"], series["fgsm"], series["pgd10"]),
    }
    return Card(
        model=model.spec.to_dict(),
        dataset=config.dataset,
        data_source=train_set.source,
        input_shape=[info.in_channels, info.input_size, info.input_size],
        normalization={"mean": list(info.mean), "std": list(info.std)},
        training=_regime_card(config),
        train_config=config.to_dict(),
        train_images=len(train_set),
        epochs=config.epochs,
        seed=config.seed,
        clean_test_accuracy=acc,
        test_images=len(test_set),
        history=history,
        recalibration=run["recalibration"],
        robustness_check=check if config.robustness_check else None,
        executed_block_rate={"test_images": len(test_set), "per_block": rates, "mean": sum(rates) / len(rates)}
        if rates
        else None,
        compute={
            **run["mode"].to_dict(),
            "compile": run["compile"],
            "device_name": describe_device(run["device"]),
            "threads": torch.get_num_threads(),
            # epoch times depend on it: a CPU run's allocator either kept freed memory or faulted it in anew
            **({"keeps_freed_memory": keep_freed_memory()} if run["device"].type == "cpu" else {}),
        },
        wall_time_s=run["wall"],
    )


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check."):
            pass
    except OSError as exc:
        raise UserError(f"cannot write to {directory} ({exc.strerror or exc}); choose a writable --workspace") from exc


def _torch_bytes(obj: Any) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()
