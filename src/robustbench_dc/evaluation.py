"""``evaluate``: clean, white-box and black-box accuracy plus Lipschitz estimates, cell by cell into the store.

White-box attacks use the target's own gradients (model in eval mode). Black-box attacks transfer
examples crafted on a source model the target never saw (default: a naturally trained baseline of the same
architecture, dataset and training budget, with seed + 1), crafted once per source and reused for every
target; query attacks (Square) see only the target's outputs. Every model sees the same seeded subset.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from robustbench_dc import lipschitz as lip
from robustbench_dc.attacks import Attack, eps_label, get_attack, run_attack
from robustbench_dc.checkpoint import load_checkpoint, read_card, workspace_dir
from robustbench_dc.data import ImageDataset, dataset_info, load_dataset
from robustbench_dc.errors import UserError
from robustbench_dc.inference import predict
from robustbench_dc.models.layers import with_normalization
from robustbench_dc.stats import wilson_interval
from robustbench_dc.store import ResultStore, cell_key
from robustbench_dc.train import TrainConfig, train

DEFAULT_ATTACKS = ("fgsm", "bim")
DEFAULT_EPS = (8 / 255,)


@dataclass(frozen=True)
class EvalModel:
    """A model to evaluate with what identifies it: the sha256 of its weights and a description."""

    module: nn.Module
    sha256: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return str(self.info.get("label", self.sha256[:12]))


def state_sha256(module: nn.Module) -> str:
    """sha256 over the state dict (names, dtypes, shapes, bytes): identifies an in-memory model's weights."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def from_checkpoint(path: str | Path) -> EvalModel:
    """A zoo checkpoint as an evaluation target."""
    model, card = load_checkpoint(path)
    spec = card["model"]
    info = {
        "label": spec["name"], "name": spec["name"], "arch": spec["arch"], "width": spec["width"],
        "training": card["training"]["label"], "seed": card["seed"], "dataset": card["dataset"], "kind": "zoo",
        "file": str(Path(path)), "data_source": card.get("data_source", ""), "epochs": card["epochs"],
        "train_images": card.get("train_images"), "clean_test_accuracy": card["clean_test_accuracy"],
    }  # fmt: skip
    return EvalModel(model, card["weights"]["sha256"], info)


def from_module(module: nn.Module, *, label: str | None = None, **info: Any) -> EvalModel:
    """Any ``nn.Module`` taking images in [0, 1] as an evaluation target; ``label`` defaults to a zoo
    model's name, else ``custom``."""
    spec = getattr(module, "spec", None)
    label = label or getattr(spec, "name", None) or "custom"
    return EvalModel(module, state_sha256(module), {"label": label, "kind": "third-party", **info})


def default_source(target: EvalModel) -> TrainConfig:
    """The black-box source for a zoo target: a natural baseline trained like it, with another seed."""
    path = target.info.get("file")
    if target.info.get("kind") != "zoo" or not path:
        raise UserError("a black-box evaluation of a model from outside the zoo needs an explicit source (--source NAME|PATH)")
    cfg = read_card(Path(path))["train_config"]
    base = TrainConfig(**{**cfg, "operator": {}})
    return replace(base, model="baseline", training="natural", seed=int(cfg["seed"]) + 1, weight_projection=False)


@dataclass
class _Context:
    store: ResultStore
    workspace: Path
    dataset: str
    images: Tensor
    labels: Tensor
    subset: dict[str, Any]
    backend: str
    recompute: bool
    progress: Callable[[str], None]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def cell(self, target: EvalModel, identity: dict[str, Any], compute: Callable[[], dict[str, Any]], row: dict[str, Any]) -> dict[str, Any]:
        identity = {"model_sha256": target.sha256, "dataset": self.dataset, "subset": self.subset, **identity}
        stored = None if self.recompute else self.store.get(identity)
        if stored is None:
            eps = f" at {eps_label(row['eps'])}" if row.get("eps") else ""
            self.progress(f"{target.label}: {row.get('threat', '')} {row.get('attack', '')}{eps}")
            t0 = time.perf_counter()
            metrics = compute()
            seconds = time.perf_counter() - t0
            self.store.put(identity, metrics, seconds)
            stored = {**metrics, "seconds": seconds}
            cached = False
        else:
            cached = True
        out = {"model": target.label, **row, **stored, "cached": cached}
        self.rows.append(out)
        return stored


def _accuracy_metrics(pred: Tensor, labels: Tensor) -> dict[str, Any]:
    right = pred == labels
    correct, n = int(right.sum()), int(right.numel())
    low, high = wilson_interval(correct, n)
    return {"n": n, "correct": correct, "accuracy": correct / n, "ci_low": low, "ci_high": high,
            "per_example": "".join("1" if r else "0" for r in right.tolist())}  # fmt: skip


def subset_identity(n: int, of: int, seed: int) -> dict[str, Any]:
    """How result cells name their test images: ``n`` of the ``of`` test images, chosen with ``seed``."""
    return {"split": "test", "n": n, "seed": seed, "of": of}


def check_model_fits(module: nn.Module, data: ImageDataset) -> None:
    """Fail clearly when a model cannot take this dataset's images or gives the wrong number of outputs."""
    x = data.float_images(slice(0, 2))
    module.eval()
    try:
        with torch.no_grad():
            out = module(x)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"the model cannot take {data.info.name} images of shape {tuple(x.shape)}: {exc}") from exc
    if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[1] != data.info.num_classes:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise UserError(f"the model's output has shape {shape}; {data.info.name} needs (N, {data.info.num_classes}) logits")
    if not torch.isfinite(out).all():
        raise UserError("the model's outputs are not finite (NaN or inf) on clean test images")


def evaluate(
    model: nn.Module | EvalModel,
    *,
    dataset: str,
    attacks: Sequence[str | Attack] = DEFAULT_ATTACKS,
    eps: Sequence[float] = DEFAULT_EPS,
    n: int | None = 1000,
    subset_seed: int = 0,
    source: nn.Module | EvalModel | str | Path | None = "default",
    backend: str = "torchattacks",
    workspace: str | Path | None = None,
    data_dir: str | Path | None = None,
    recompute: bool = False,
    lipschitz: bool = True,
    lipschitz_n: int = 200,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Evaluate one model; returns one row per result cell (stored in the workspace, reused when present).

    ``source``: ``"default"`` (natural baseline, other seed, trained on demand for zoo models), a model or a
    checkpoint path, or ``None`` for no black-box transfer rows. ``mean``/``std``: normalisation for an
    ``nn.Module`` that expects normalised input (applied in front of it, so attacks work in [0, 1] pixels).
    """
    ws = workspace_dir(workspace)
    target = model if isinstance(model, EvalModel) else from_module(with_normalization(model, mean, std))
    eps = list(eps)
    bad = [e for e in eps if not 0 <= e <= 1]
    if bad or not eps:
        raise UserError(f"eps must be in [0, 1] (pixel units, e.g. 8/255), got {bad or eps}")
    attack_objs = [a if isinstance(a, Attack) else get_attack(a) for a in attacks]
    if target.info.get("dataset") not in (None, dataset):
        raise UserError(f"model {target.label!r} was trained on {target.info['dataset']!r}, not {dataset!r}; pass --dataset {target.info['dataset']}")
    dataset_info(dataset)
    test = load_dataset(dataset, "test", data_dir, cache_dir=ws / "cache")
    check_model_fits(target.module, test)
    sub = test.subset(n, subset_seed)
    images, labels = sub.float_images(), sub.labels
    subset = subset_identity(len(sub), len(test), subset_seed)
    with ResultStore(ws) as store:
        ctx = _Context(store, ws, dataset, images, labels, subset, backend, recompute, progress or (lambda _: None))
        store.put_model(target.sha256, {**target.info, "data_source": test.source})
        ctx.cell(target, {"kind": "accuracy", "threat": "none", "attack": "none", "params": {}, "backend": "", "eps": 0.0},
                 lambda: _accuracy_metrics(predict(target.module, images), labels),
                 {"threat": "none", "attack": "none", "eps": 0.0})  # fmt: skip
        for attack in attack_objs:
            threat = "white-box" if attack.access == "white-box" else "black-box"
            for e in eps:
                params = attack.params(e)
                ident = {"kind": "accuracy", "threat": threat, "attack": attack.name, "params": params, "backend": backend, "eps": e}
                ctx.cell(target, ident, lambda: _accuracy_metrics(predict(target.module, run_attack(attack, target.module, images, labels, e, backend=backend, seed=subset_seed)), labels),
                         {"threat": threat, "attack": attack.name, "eps": e, "params": params})  # fmt: skip
        if source is not None:
            src = _resolve_source(source, target, ws, data_dir, ctx.progress)
            store.put_model(src.sha256, src.info)
            for attack in [a for a in attack_objs if a.access == "white-box"]:
                for e in eps:
                    params = attack.params(e)
                    ident = {"kind": "accuracy", "threat": "black-box", "attack": attack.name, "params": params, "backend": backend, "eps": e,
                             "source_sha256": src.sha256, "source": src.label}
                    ctx.cell(target, ident, lambda: _accuracy_metrics(predict(target.module, _transfer_examples(ctx, src, attack, e)), labels),
                             {"threat": "black-box", "attack": attack.name, "eps": e, "params": params, "source": src.label, "source_sha256": src.sha256})  # fmt: skip
        if lipschitz:
            _lipschitz_cells(ctx, target, test, max(eps), lipschitz_n, subset_seed)
    return pd.DataFrame(ctx.rows)


def transfer_matrix(
    models: Sequence[EvalModel], *, dataset: str, attacks: Sequence[str | Attack] = DEFAULT_ATTACKS, eps: float = 8 / 255,
    n: int | None = 1000, workspace: str | Path | None = None, data_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Every model as the black-box source for every other (and white-box on the diagonal), cell by cell."""
    rows = []
    for src in models:
        for tgt in models:
            if tgt.sha256 == src.sha256:
                continue
            rows.append(evaluate(tgt, dataset=dataset, attacks=attacks, eps=[eps], n=n, source=src, workspace=workspace,
                                 data_dir=data_dir, lipschitz=False, progress=progress))  # fmt: skip
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _resolve_source(source: Any, target: EvalModel, ws: Path, data_dir: Any, progress: Callable[[str], None]) -> EvalModel:
    if isinstance(source, EvalModel):
        src = source
    elif isinstance(source, nn.Module):
        src = from_module(source, label="source")
    elif source == "default":
        config = default_source(target)
        progress(f"black-box source: {config.model} {config.training} seed {config.seed} (trained now if missing)")
        src = from_checkpoint(train(config, workspace=ws, data_dir=data_dir))
    else:
        from robustbench_dc.checkpoint import resolve_checkpoint

        src = from_checkpoint(resolve_checkpoint(str(source), dataset=target.info.get("dataset"), workspace=ws, seed=0))
    if src.sha256 == target.sha256:
        raise UserError("the black-box source is the target itself; choose another --source")
    if src.info.get("kind") == "zoo":
        src = replace(src, info={**src.info, "label": f"{src.info['name']} {src.info['training']} seed {src.info['seed']}"})
    return src


def _transfer_examples(ctx: _Context, src: EvalModel, attack: Attack, eps: float) -> Tensor:
    """Adversarial examples crafted on the source: computed once, kept under ``transfer/`` for every target."""
    key = cell_key({"source": src.sha256, "dataset": ctx.dataset, "subset": ctx.subset, "attack": attack.name,
                    "params": attack.params(eps), "eps": eps, "backend": ctx.backend})  # fmt: skip
    path = ctx.workspace / "transfer" / f"{key}.safetensors"
    if path.is_file() and not ctx.recompute:
        try:
            return load_file(str(path))["images"]
        except Exception:  # a damaged cache file is recomputed, never trusted
            path.unlink(missing_ok=True)
    adv = run_attack(attack, src.module, ctx.images, ctx.labels, eps, backend=ctx.backend, seed=ctx.subset["seed"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"images": adv.contiguous()}, str(tmp))
    tmp.replace(path)
    return adv


def _lipschitz_cells(ctx: _Context, target: EvalModel, test: ImageDataset, eps: float, n: int, seed: int) -> None:
    sub = test.subset(min(n, len(test)), seed)
    x, y = sub.float_images(), sub.labels
    sub_ident = {"n": len(sub), "seed": seed}
    info = test.info
    ctx.cell(target, {"kind": "lipschitz", "attack": "local", "eps": eps, "steps": 10, "lip_subset": sub_ident},
             lambda: lip.as_dict(lip.local_lipschitz(target.module, x, eps=eps, seed=seed)),
             {"threat": "lipschitz", "attack": "local", "eps": eps})  # fmt: skip
    ctx.cell(target, {"kind": "lipschitz", "attack": "gradient-norm", "lip_subset": sub_ident},
             lambda: lip.as_dict(lip.margin_gradient_norms(target.module, x, y)),
             {"threat": "lipschitz", "attack": "gradient-norm"})  # fmt: skip
    ctx.cell(target, {"kind": "lipschitz", "attack": "global"},
             lambda: lip.as_dict(lip.global_upper_bound(target.module, (info.in_channels, info.input_size, info.input_size), info.num_classes)),
             {"threat": "lipschitz", "attack": "global"})  # fmt: skip
