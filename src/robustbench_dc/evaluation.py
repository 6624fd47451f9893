"""``evaluate``: clean, white-box and black-box accuracy plus Lipschitz estimates, cell by cell into the store.

White-box attacks use the target's own gradients (model in eval mode). Black-box attacks transfer examples
crafted on a source model the target never saw, crafted once per source and reused for every target; query
attacks (Square) see only the target's outputs. Every model sees the same seeded subset. Evaluation computes;
it never trains: the caller resolves the black-box source (see ``robustbench_dc.planning``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import shutil
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from robustbench_dc import lipschitz as lip
from robustbench_dc.attacks import (
    BPDA,
    DEFAULT_ATTACK_BATCH_SIZE,
    Attack,
    carried_out_by,
    eps_label,
    get_attack,
    run_attack,
)
from robustbench_dc.attacks.bpda import has_surrogate
from robustbench_dc.data import DatasetInfo, ImageDataset, dataset_info, load_dataset, subset_indices
from robustbench_dc.devices import describe_device, full_precision, module_device, placed, resolve_device
from robustbench_dc.errors import UserError
from robustbench_dc.files import atomic_write, environment
from robustbench_dc.inference import predict
from robustbench_dc.models.layers import with_normalization
from robustbench_dc.names import CellKind, Norm, Role, Threat
from robustbench_dc.progress import Progress, as_progress, counter
from robustbench_dc.results.cells import CellKey, Subset, attack_params, canonical_json
from robustbench_dc.results.store import ResultStore, StoredCell
from robustbench_dc.stats import wilson_interval
from robustbench_dc.targets import EvalModel, from_module
from robustbench_dc.workspace import cache_dir, transfer_dir, workspace_dir

DEFAULT_ATTACKS = ("fgsm", "bim")
DEFAULT_EPS = (8 / 255,)
PRECISION = "fp32"  # attacks and evaluation run in fp32: a lower-precision gradient is a weaker attack
LOCAL_LIPSCHITZ_STEPS = 10
GLOBAL_BOUND_ITERATIONS = 100


@lru_cache(maxsize=None)
def backend_version(backend: str) -> str:
    try:
        return version(backend)
    except PackageNotFoundError:
        return "unknown"


@dataclass
class _Context:
    store: ResultStore
    workspace: Path
    target: EvalModel
    test: ImageDataset
    data: str
    role: Role
    backend: str
    recompute: bool
    progress: Progress
    batch_size: int
    provenance: dict[str, Any]
    planned: int = 0  # cells this call reads or computes, for "cell k of n" in progress messages
    rows: list[dict[str, Any]] = field(default_factory=list)
    weights: list[Tensor] | None = (
        None  # the target's state when its identity was taken: every computed cell must leave it so
    )
    #: the target behind its contract, fixed images and its outputs on them, taken with its identity
    probe: tuple[nn.Module, Tensor, Tensor] | None = None

    def key(self, subset: Subset, **fields: Any) -> CellKey:
        return CellKey(
            function=self.target.function_id,
            dataset=self.test.info.name,
            data=self.data,
            subset=subset,
            role=self.role,
            precision=PRECISION,
            **fields,
        )

    def attack_key(self, subset: Subset, attack: Attack, eps: float, threat: str, source: str = "") -> CellKey:
        backend = carried_out_by(attack, self.backend)
        return self.key(
            subset,
            kind=CellKind.ACCURACY,
            threat=threat,
            attack=attack.name,
            params=attack_params(attack.params(eps)),
            eps=eps,
            backend=backend,
            backend_version=backend_version(backend),
            source=source,
            batch_size=self.batch_size if attack.randomized else 0,
        )

    def cell(self, key: CellKey, compute: Callable[[], dict[str, Any]], source: EvalModel | None = None) -> StoredCell:
        def announce(k: CellKey) -> None:
            eps = f" at {eps_label(k.eps, k.attack)}" if k.eps else ""
            count = f" (cell {len(self.rows) + 1} of {self.planned})" if self.planned else ""
            self.progress.position(len(self.rows), self.planned)
            self.progress(f"{self.target.label}: {k.threat} {k.attack}{eps}{count}")

        stored = self.store.cell(
            key, self._unchanged(compute), provenance=self.provenance, recompute=self.recompute, on_compute=announce
        )
        shutil.rmtree(self.partial_dir(key), ignore_errors=True)  # the cell holds it now
        self.rows.append(result_row(stored, self.target.label, source.title if source else ""))
        return stored

    def _unchanged(self, compute: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
        """``compute``, refusing to store what it gives if the target's weights or buffers changed meanwhile."""

        def checked() -> dict[str, Any]:
            out = compute()
            if self.weights is not None:
                now = _state(self.target.module)
                if len(now) != len(self.weights) or any(not torch.equal(a, b) for a, b in zip(now, self.weights)):
                    raise UserError(
                        f"{self.target.label}: the model changed its weights or buffers while it was evaluated (in its "
                        "forward pass?); a number computed so belongs to no fixed function. Make its forward pass "
                        "leave its state alone"
                    )
            if self.probe is not None and not torch.allclose(
                probe_outputs(self.probe[0], self.probe[1]), self.probe[2], rtol=1e-4, atol=1e-6
            ):
                raise UserError(
                    f"{self.target.label}: the model's outputs on a fixed batch of test images changed while it was "
                    "evaluated: it keeps state outside its parameters and buffers (a plain attribute its forward pass "
                    "changes?); a number computed so belongs to no fixed function. Make its forward pass leave its "
                    "state alone"
                )
            return out

        return checked

    def partial_dir(self, key: CellKey) -> Path:
        """Where a resumable attack keeps the finished batches of ``key``'s cell until the cell is stored."""
        return self.workspace / "partial" / key.store_key()[:32]

    def attacked(
        self,
        attack: Attack,
        model: EvalModel,
        images: Tensor,
        labels: Tensor,
        eps: float,
        seed: int,
        partial: Path | None = None,
    ) -> Tensor:
        """``run_attack`` on ``model`` with this evaluation's backend and batch size, reporting its batches to the
        progress. A model from outside the zoo that raises while attacked is the input's problem (one line, exit
        2), as it is while predicted; an exception with one of ours is our bug and keeps its traceback."""
        try:
            return run_attack(
                attack,
                model.module,
                images,
                labels,
                eps,
                backend=self.backend,
                seed=seed,
                batch_size=self.batch_size,
                on_batch=counter(self.progress, images.shape[0], "images"),
                on_detail=self.progress.detail,
                partial=partial,
            )
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001  (a third-party model can raise anything under an attack)
            if model.is_zoo:
                raise
            raise UserError(
                f"{attack.name} on {model.label!r} failed: {type(exc).__name__}: {str(exc).strip()[:300]} (raised by "
                "the model's forward or backward pass on a batch of attacked images? if not, please report it)"
            ) from exc


ACCURACY_COLUMNS = (
    "model",
    "function",
    "role",
    "threat",
    "attack",
    "eps",
    "params",
    "source",
    "n",
    "correct",
    "accuracy",
    "ci_low",
    "ci_high",
    "per_example",
    "backend",
    "precision",
    "seconds",
    "cached",
)
LIPSCHITZ_COLUMNS = (
    "model",
    "function",
    "role",
    "estimate",
    "eps",
    "params",
    "images",
    "precision",
    "seconds",
    "cached",
)


def result_row(cell: StoredCell, label: str, source_label: str = "") -> dict[str, Any]:
    """A cell as one tidy row of its kind's frame (``Evaluation.accuracy`` or ``Evaluation.lipschitz``)."""
    k = cell.key
    common = {"model": label, "function": k.function[:12], "role": k.role}
    if k.kind == CellKind.LIPSCHITZ:
        row = {**common, "estimate": k.attack, "eps": k.eps, "params": k.parameters, "images": k.subset.n}
        return {**row, "precision": k.precision, **cell.metrics, "seconds": cell.seconds, "cached": cell.cached}
    row = {**common, "threat": k.threat, "attack": k.attack, "eps": k.eps, "params": k.parameters}
    return {
        **row,
        "source": source_label,
        **cell.metrics,
        "backend": k.backend,
        "precision": k.precision,
        "seconds": cell.seconds,
        "cached": cell.cached,
    }


def _counts_as_integers(frame: pd.DataFrame) -> pd.DataFrame:
    """A kind's frame with its counts (images, steps, n) as integers."""
    counts = {c: "int64" for c in ("images", "steps", "n") if c in frame and frame[c].notna().all()}
    return frame.astype(counts)


@dataclass(frozen=True)
class Evaluation:
    """What ``evaluate`` measured, one tidy frame per kind of result (the way RobustBench returns clean and robust
    accuracy apart): ``accuracy`` holds a row per accuracy cell (clean, white-box, black-box) with integer counts,
    ``lipschitz`` a frame per kind of Lipschitz estimate (``local``, ``gradient-norm``, ``global``), each with its own
    columns and integer counts. All are on the test images at ``test_indices`` of the
    ``dataset`` split whose content hash is ``data_sha256`` (what each row's ``per_example`` string refers to)."""

    accuracy: pd.DataFrame
    lipschitz: dict[str, pd.DataFrame]  # one frame per kind of estimate ("local", "gradient-norm", "global")
    dataset: str
    data_sha256: str
    test_indices: tuple[int, ...]

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]], **fields: Any) -> "Evaluation":
        def frame(kind_rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
            out = pd.DataFrame(kind_rows)
            return out if kind_rows else pd.DataFrame(columns=list(columns))

        accuracy = frame([r for r in rows if "threat" in r], ACCURACY_COLUMNS)
        if len(accuracy):
            accuracy = accuracy.astype({"n": "int64", "correct": "int64"})
        lipschitz: dict[str, pd.DataFrame] = {}
        for r in rows:
            if "estimate" in r:
                lipschitz.setdefault(r["estimate"], []).append(r)  # type: ignore[arg-type]
        kinds = {k: _counts_as_integers(pd.DataFrame(v)) for k, v in lipschitz.items()}  # type: ignore[arg-type]
        return cls(accuracy, kinds, **fields)

    @property
    def lipschitz_rows(self) -> pd.DataFrame:
        """Every estimate in one frame (a column per field of any kind; empty where a kind has none of it): for
        printing and the JSON document, whose shape it keeps."""
        frames = [f for f in self.lipschitz.values() if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(LIPSCHITZ_COLUMNS))

    @property
    def cached(self) -> bool:
        """Whether every result was read from the store (nothing computed by this call)."""
        return bool(self.accuracy["cached"].all() and all(f["cached"].all() for f in self.lipschitz.values()))

    def accuracy_of(self, attack: str = "none", eps: float | None = None, *, threat: str | None = None) -> float:
        """One accuracy: the clean one by default, else ``attack`` at ``eps`` (and ``threat``, where both ran)."""
        rows = self.accuracy[self.accuracy["attack"] == attack]
        if eps is not None:
            rows = rows[(rows["eps"] - eps).abs() < 1e-12]
        if threat is not None:
            rows = rows[rows["threat"] == threat]
        if len(rows) != 1:
            raise KeyError(f"{len(rows)} accuracy rows for attack={attack!r} eps={eps} threat={threat}")
        return float(rows["accuracy"].iloc[0])

    def per_example(self) -> pd.DataFrame:
        """One row per (accuracy cell, test image): whether the model got the image right."""
        rows = [
            {
                "threat": r.threat,
                "attack": r.attack,
                "eps": r.eps,
                "source": r.source,
                "role": r.role,
                "test_index": index,
                "correct": int(right),
            }
            for r in self.accuracy.itertuples()
            for index, right in zip(self.test_indices, r.per_example)
        ]
        return pd.DataFrame(rows, columns=["threat", "attack", "eps", "source", "role", "test_index", "correct"])


def accuracy_metrics(pred: Tensor, labels: Tensor) -> dict[str, Any]:
    right = pred == labels
    correct, n = int(right.sum()), int(right.numel())
    low, high = wilson_interval(correct, n)
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n,
        "ci_low": low,
        "ci_high": high,
        "per_example": "".join("1" if r else "0" for r in right.tolist()),
    }


def check_model_fits(module: nn.Module, data: ImageDataset, *, exact_classes: bool = True) -> int:
    """Fail clearly when a model cannot take this dataset's images or gives the wrong number of outputs (with
    ``exact_classes=False``, for the caller's own data: fewer outputs than its labels need); returns the number
    of outputs."""
    x = data.float_images(slice(0, 2)).to(module_device(module))
    module.eval()
    try:
        with torch.no_grad():
            out = module(x)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"the model cannot take {data.info.name} images of shape {tuple(x.shape)}: {exc}") from exc
    if (
        not isinstance(out, Tensor)
        or out.ndim != 2
        or (out.shape[1] != data.info.num_classes if exact_classes else out.shape[1] < data.info.num_classes)
    ):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise UserError(
            f"the model's output has shape {shape}; {data.info.name} needs (N, {data.info.num_classes}) logits"
        )
    if not torch.isfinite(out).all():
        raise UserError("the model's outputs are not finite (NaN or inf) on clean test images")
    return int(out.shape[1])


def input_mistake_hint(target: EvalModel, result: Evaluation, *, normalised: bool) -> str:
    """A likely input mistake, read from clean accuracy: far below the model card's, or near chance for a
    third-party model evaluated without mean/std (the usual cause: a model that expects normalised inputs)."""
    clean = result.accuracy[result.accuracy["attack"] == "none"]
    if clean.empty:
        return ""
    correct, n = int(clean["correct"].iloc[0]), int(clean["n"].iloc[0])
    acc, (_, high) = correct / n, wilson_interval(correct, n)
    card = target.info.clean_test_accuracy
    if card is not None and high < card - 0.05:
        return (
            f"clean accuracy {100 * acc:.1f}% (95% CI up to {100 * high:.1f}%) is far below the {100 * card:.1f}% its "
            "card records: is this the test data it was trained for (--dataset, --data-dir)?"
        )
    if not target.is_zoo and not normalised and acc < 0.5 and result.dataset != "custom":
        info = dataset_info(result.dataset)
        return (
            f"clean accuracy is only {100 * acc:.1f}%. If the model expects normalised inputs, pass --mean/--std "
            f"({result.dataset}'s: --mean {','.join(f'{m:g}' for m in info.mean)} --std "
            f"{','.join(f'{s:g}' for s in info.std)}); inputs are pixels in [0, 1], so a model trained on 0-255 pixels "
            "needs its own scaling in front"
        )
    return ""


def _eps_values(eps: float | str | Sequence[float | str]) -> list[float]:
    """Numbers or fractions (``8/255``, as on the command line), each once, in the order given."""
    items = [eps] if isinstance(eps, (int, float, str)) else list(eps)
    out: list[float] = []
    for e in items:
        try:
            value = float(Fraction(e.strip())) if isinstance(e, str) else float(e)
        except (ValueError, ZeroDivisionError) as exc:
            raise UserError(f"eps {e!r} is not a number or a fraction such as 8/255") from exc
        if not any(math.isclose(value, v, rel_tol=1e-12, abs_tol=0.0) for v in out):
            out.append(value)
    return out


class ModelContract(nn.Module):
    """The evaluated model behind a check of every batch it is given: floating-point (N, classes) logits for N
    images (every accuracy is counted through it, the clean one and each attack's). A model that gives 11 logits for
    larger batches, or integer "logits" (no gradient, so no attack
    moves anything), would otherwise score a number that means nothing."""

    def __init__(self, model: nn.Module, classes: int, foreign: bool = False) -> None:
        super().__init__()
        self.model, self.classes, self.foreign = model, classes, foreign

    def forward(self, x: Tensor) -> Tensor:
        try:
            out = self.model(x)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001  (a model from outside the zoo can raise anything; ours are our bugs)
            if not self.foreign:
                raise
            raise UserError(
                f"the model raised {type(exc).__name__} on a batch of {x.shape[0]} images: {str(exc).strip()[:300]}"
            ) from exc
        if not isinstance(out, Tensor) or out.ndim != 2 or out.shape != (x.shape[0], self.classes):
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise UserError(
                f"the model's output has shape {shape} on a batch of {x.shape[0]} images; every batch needs "
                f"({x.shape[0]}, {self.classes}) logits"
            )
        if not out.is_floating_point():
            raise UserError(
                f"the model's outputs are {out.dtype}, not floating-point logits: no attack can follow their gradient; "
                "return the logits"
            )
        return out


def _state(module: nn.Module) -> list[Tensor]:
    return [t.detach().clone() for t in module.state_dict().values() if isinstance(t, Tensor)]


def probe_outputs(module: nn.Module, images: Tensor) -> Tensor:
    """The module's outputs on ``images`` in eval mode and fp32, on its device (returned on the CPU)."""
    module.eval()
    with torch.no_grad(), full_precision():
        return module(images.to(module_device(module), copy=True)).float().cpu()


def check_deterministic(module: nn.Module, images: Tensor) -> Tensor:
    """Refuse a model whose outputs differ between two passes over the same images (noise or dropout at test time):
    a stored cell would hold one draw of a random function under a fixed identity; or that are not finite. Returns
    the outputs: the fingerprint every computed cell must leave as it was."""
    x = images[:64]
    first, second = probe_outputs(module, x), probe_outputs(module, x)
    bad = int((~torch.isfinite(first)).flatten(1).any(1).sum())
    if bad:
        raise UserError(
            f"the model's outputs are NaN or inf on {bad} of the first {x.shape[0]} test images; no accuracy of it "
            "means anything. Check the model (a division by a norm that can be zero? weights that hold NaN?)"
        )
    if not torch.allclose(first, second, rtol=1e-4, atol=1e-6):
        raise UserError(
            "the model's outputs differ between two passes over the same images (randomised at test time: noise, "
            "dropout, sampling?); its accuracy is a random variable this suite does not store as one function. "
            "Evaluate a deterministic version (eval mode, no test-time randomness)"
        )
    return first


def as_target(model: nn.Module | EvalModel, *, label: str | None = None, mean=None, std=None) -> EvalModel:
    if isinstance(model, EvalModel):
        return model
    if not isinstance(model, nn.Module):
        raise UserError(f"expected an nn.Module or EvalModel to evaluate, got {type(model).__name__}")
    return from_module(with_normalization(model, mean, std), label=label)


def _from_loader(loader: Iterable[Any]) -> tuple[Tensor, Tensor]:
    """All of a loader's (images, labels) batches, in its order (give it no shuffling: the subset is by position)."""
    xs, ys = [], []
    for i, batch in enumerate(loader):
        if not isinstance(batch, (tuple, list)) or len(batch) < 2 or not all(isinstance(t, Tensor) for t in batch[:2]):
            raise UserError(
                f"loader batch {i} is a {type(batch).__name__}, not (images, labels) tensors; wrap your dataset to "
                "yield them"
            )
        xs.append(batch[0].detach().cpu())
        ys.append(batch[1].detach().cpu())
    if not xs:
        raise UserError("the loader yielded no batches")
    return torch.cat(xs), torch.cat(ys)


def tensor_dataset(x: Tensor | None, y: Tensor | None) -> ImageDataset:
    """The caller's own test images as a dataset: ``x`` of shape (N, C, H, W), uint8, or floats in [0, 1] (8-bit
    values k/255, as image loaders give, are held as uint8; any other float, a resized image say, as float32, never
    quantised), ``y`` of N class indices. Identified by its content."""
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise UserError("x and y must be tensors: images (N, C, H, W) and labels (N,)")
    if x.ndim != 4 or y.ndim != 1 or y.shape[0] != x.shape[0] or x.shape[0] == 0:
        raise UserError(
            f"x must be (N, C, H, W) images and y (N,) labels with the same N > 0; got x {tuple(x.shape)}, y "
            f"{tuple(y.shape)}"
        )
    if y.dtype.is_floating_point or int(y.min()) < 0:
        raise UserError("y must hold class indices (integers >= 0)")
    if x.dtype != torch.uint8:
        x = x.detach().cpu().float()
        if float(x.min()) < 0 or float(x.max()) > 1:
            raise UserError(
                f"x must hold pixels in [0, 1] (found {float(x.min()):.3g} to {float(x.max()):.3g}): pass unnormalised "
                "images and give the model's normalisation as mean=/std=; divide 0-255 images by 255"
            )
        scaled = x * 255
        if torch.allclose(scaled, scaled.round(), atol=1e-3):  # 8-bit images: held, and identified, as such
            x = scaled.round().to(torch.uint8)
    num_classes = max(int(y.max()) + 1, 2)
    c, h, w = (int(d) for d in x.shape[1:])
    info = DatasetInfo("custom", num_classes, c, h, (0.5,) * c, (0.5,) * c, False, input_width=0 if w == h else w)
    return ImageDataset(
        info, "test", x.cpu().contiguous(), y.cpu().long(), f"tensors passed to evaluate ({x.shape[0]} images)"
    )


EpsArg = float | str | Sequence[float | str]


@dataclass(frozen=True)
class EvalSpec:
    """What one evaluation measures, apart from the model and the data: the attacks and the eps each runs at (L2
    attacks at ``eps_l2``, every other at ``eps``), the test subset, the Lipschitz estimates, the attack backend,
    the cells' role and the attack batch size. A study's job holds one; ``evaluate`` takes one or its fields as
    keywords. Eps may be given as strings (``"8/255"``) and attacks by name: both are normalised here, and every
    mistake is refused before any model is moved or data read."""

    attacks: tuple[Attack, ...] = tuple(get_attack(a) for a in DEFAULT_ATTACKS)
    eps: tuple[float, ...] = DEFAULT_EPS
    eps_l2: tuple[float, ...] = ()
    n: int | None = 1000
    subset_seed: int = 0
    lipschitz: bool = True
    lipschitz_n: int = 200
    backend: str = "torchattacks"
    role: Role = Role.TABLE
    batch_size: int = DEFAULT_ATTACK_BATCH_SIZE

    def __post_init__(self) -> None:
        attacks = (self.attacks,) if isinstance(self.attacks, (str, Attack)) else self.attacks
        object.__setattr__(self, "attacks", tuple(a if isinstance(a, Attack) else get_attack(a) for a in attacks))
        if self.n == "all":  # as the command line says it
            object.__setattr__(self, "n", None)
        if self.n is not None and (isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1):
            raise UserError(f"n must be a number of test images >= 1, or 'all' (None), got {self.n!r}")
        object.__setattr__(self, "eps", tuple(_eps_values(self.eps)))
        object.__setattr__(self, "eps_l2", tuple(_eps_values(self.eps_l2 or ())))
        bad = [e for e in self.eps if not 0 <= e <= 1]
        if bad or not self.eps:
            raise UserError(f"eps must be in [0, 1] (pixel units, e.g. 8/255), got {bad or list(self.eps)}")
        if [e for e in self.eps_l2 if not 0 <= e < float("inf")]:
            raise UserError(
                f"eps_l2 must be finite numbers >= 0 (L2 units of [0, 1] pixels, e.g. 0.5), got {list(self.eps_l2)}"
            )
        l2_attacks = [a.name for a in self.attacks if a.norm == Norm.L2]
        if l2_attacks and not self.eps_l2:
            raise UserError(
                f"L2 attacks ({', '.join(l2_attacks)}) need their own eps: eps_l2= (--eps-l2), in L2 units of [0, 1] "
                "pixels, e.g. 0.5"
            )
        try:
            object.__setattr__(self, "role", Role(self.role))
        except ValueError:
            raise UserError(f"unknown role {self.role!r}; valid: {', '.join(Role)}") from None
        if self.batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {self.batch_size}")

    @classmethod
    def of(cls, spec: "EvalSpec | None" = None, **fields: Any) -> "EvalSpec":
        """``spec`` (default: every field's default) with ``fields`` replaced; an unknown field is refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise UserError(f"unknown evaluation setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return replace(spec or cls(), **fields)

    def eps_of(self, attack: Attack) -> tuple[float, ...]:
        return self.eps_l2 if attack.norm == Norm.L2 else self.eps

    def cells(self, *, transfer: bool) -> int:
        """How many cells this spec computes: clean, each attack at each of its eps (white-box and query, plus
        transfer ones with a source), and three Lipschitz estimates."""
        attacks = sum(len(self.eps_of(a)) * (1 + (transfer and a.transferable)) for a in self.attacks)
        return 1 + attacks + 3 * self.lipschitz


def _test_data(
    dataset: str | None, x: Tensor | None, y: Tensor | None, loader: Iterable[Any] | None
) -> tuple[str, ImageDataset | None]:
    """The dataset's name and, for the caller's own images, the dataset made of them (None for a named one)."""
    if sum([dataset is not None, x is not None or y is not None, loader is not None]) != 1:
        raise UserError(
            "give the test data one way: dataset=NAME, x=IMAGES with y=LABELS, or loader= (batches of images and "
            "labels)"
        )
    if loader is not None:
        x, y = _from_loader(loader)
    if dataset is not None:
        dataset_info(dataset)  # an unknown name fails here, before any model is moved or data read
        return dataset, None
    return "custom", tensor_dataset(x, y)


def _accuracy_cells(
    ctx: _Context,
    module: nn.Module,
    spec: EvalSpec,
    subset: Subset,
    images: Tensor,
    labels: Tensor,
    src: EvalModel | None,
) -> None:
    """The clean cell, each attack's cell at each of its eps, and (with a source) each transfer cell."""
    seed, batch = subset.seed, ctx.batch_size

    def white_box(a: Attack, e: float, k: CellKey) -> Callable[[], dict[str, Any]]:
        return lambda: accuracy_metrics(
            predict(module, ctx.attacked(a, ctx.target, images, labels, e, seed, ctx.partial_dir(k)), batch), labels
        )

    def transferred(src: EvalModel, a: Attack, e: float, k: CellKey) -> Callable[[], dict[str, Any]]:
        return lambda: accuracy_metrics(
            predict(module, _transfer_examples(ctx, src, a, e, k, images, labels), batch), labels
        )

    ctx.cell(
        ctx.key(subset, kind=CellKind.ACCURACY, threat=Threat.NONE, attack="none"),
        lambda: accuracy_metrics(predict(module, images, batch), labels),
    )
    for attack in spec.attacks:
        threat = Threat.WHITE_BOX if attack.access == Threat.WHITE_BOX else Threat.BLACK_BOX
        for e in spec.eps_of(attack):
            key = ctx.attack_key(subset, attack, e, threat)
            ctx.cell(key, white_box(attack, e, key))
    if src is None:
        return
    ctx.store.put_function(src.function_id, src.info)
    for attack in [a.for_transfer() for a in spec.attacks if a.transferable]:
        for e in spec.eps_of(attack):
            key = ctx.attack_key(subset, attack, e, Threat.BLACK_BOX, source=src.function_id)
            ctx.cell(key, transferred(src, attack, e, key), source=src)


def evaluate(
    model: nn.Module | EvalModel,
    spec: EvalSpec | None = None,
    *,
    dataset: str | None = None,
    x: Tensor | None = None,
    y: Tensor | None = None,
    loader: Iterable[tuple[Tensor, Tensor]] | None = None,
    source: nn.Module | EvalModel | None = None,
    workspace: str | Path | None = None,
    data_dir: str | Path | None = None,
    recompute: bool = False,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    label: str | None = None,
    device: str | torch.device | None = "auto",
    progress: Callable[[str], None] | None = None,
    **settings: Any,
) -> Evaluation:
    """Evaluate one model; returns its results (every cell stored in the workspace, reused when present).

    What is measured is ``spec`` (an :class:`EvalSpec`), or its fields given as keywords (``attacks=``, ``eps=``,
    ``eps_l2=``, ``n=``, ``subset_seed=``, ``lipschitz=``, ``lipschitz_n=``, ``backend=``, ``role=``,
    ``batch_size=``), which replace those of ``spec`` where both are given.
    The test data: ``dataset`` (a name, read from ``data_dir``), or the caller's own ``x`` and ``y`` tensors or
    ``loader`` (e.g. a ``DataLoader`` yielding (images, labels) in [0, 1], unshuffled), stored under the dataset
    name ``custom`` and identified by their content.
    ``source``: the black-box source model (an ``EvalModel`` or module), or ``None`` for no transfer rows.
    ``mean``/``std``: normalisation for an ``nn.Module`` that expects normalised input (applied in front of
    it, so attacks work in [0, 1] pixels). ``label`` names a module in tables (default: from its identity).
    ``device``: ``auto`` (CUDA, else MPS, else CPU) or a device; the model (and source) are moved there.
    ``progress``: a callback hearing a message per computed cell, or a ``robustbench_dc.progress.Progress``
    that also hears each attack's batches. Attacks run in fp32.
    """
    ws = workspace_dir(workspace)
    spec = EvalSpec.of(spec, **settings)
    target = as_target(model, label=label, mean=mean, std=std)
    if any(isinstance(a, BPDA) and not a.straight_through for a in spec.attacks) and not has_surrogate(target.module):
        raise UserError(
            f"bpda-pgd on {target.label!r} would be plain PGD with the same seed: it has no decoupled layer or hard "
            "decision to give a surrogate gradient; name its non-differentiable parts with --straight-through NAME "
            "(Python: BPDA(straight_through=(NAME,))), or use pgd"
        )
    dataset, own = _test_data(dataset, x, y, loader)
    trained_on = target.info.dataset
    if trained_on not in (None, dataset) and own is None:
        raise UserError(
            f"model {target.label!r} was trained on {trained_on!r}, not {dataset!r}; pass --dataset {trained_on}"
        )
    src = None if source is None else as_target(source, label="source")
    if src is not None and src.function_id == target.function_id:
        raise UserError("the black-box source computes the same function as the target; choose another source")
    dev = resolve_device(device)
    # the modules go to the device for this call only: their device and train/eval mode are restored after
    with placed([target.module] + ([src.module] if src is not None else []), dev):
        test = own if own is not None else load_dataset(dataset, "test", data_dir, cache_dir=cache_dir(ws))
        outputs = check_model_fits(target.module, test, exact_classes=own is None)
        if own is not None:  # the caller's data: as many classes as the model has outputs
            test = replace(test, info=replace(test.info, num_classes=outputs))
        module = ModelContract(target.module, outputs, foreign=not target.is_zoo)
        probe = test.float_images(slice(0, 64))
        fingerprint = check_deterministic(module, probe)
        weights = _state(target.module)
        indices = subset_indices(len(test), spec.n, spec.subset_seed)
        sub = test.select(indices)
        images, labels = sub.float_images(), sub.labels
        subset = Subset(len(sub), len(test), spec.subset_seed)
        with ResultStore(ws) as store:
            provenance = {"label": target.label, "device": describe_device(dev), "environment": environment()}
            ctx = _Context(
                store,
                ws,
                target,
                test,
                test.content_sha256(),
                spec.role,
                spec.backend,
                recompute,
                as_progress(progress),
                spec.batch_size,
                provenance,
                spec.cells(transfer=src is not None),
                weights=weights,
                probe=(module, probe, fingerprint),
            )
            store.put_function(target.function_id, target.info.with_data_source(test.source))
            _accuracy_cells(ctx, module, spec, subset, images, labels, src)
            if spec.lipschitz:
                _lipschitz_cells(ctx, max(spec.eps), spec.lipschitz_n, spec.subset_seed)
        return Evaluation.from_rows(
            ctx.rows, dataset=dataset, data_sha256=ctx.data, test_indices=tuple(indices.tolist())
        )


def transfer_matrix(
    models: Sequence[EvalModel],
    *,
    dataset: str,
    attacks: Sequence[str | Attack] = DEFAULT_ATTACKS,
    eps: float = 8 / 255,
    n: int | None = 1000,
    workspace: str | Path | None = None,
    data_dir: str | Path | None = None,
    device: str | torch.device | None = "auto",
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Every model as the black-box source for every other, and white-box on the diagonal, on one subset
    (role ``transfer-matrix``: these cells never enter Tables 7 and 8); their accuracy rows in one frame."""
    rows = []
    for src in models:
        for tgt in models:
            rows.append(
                evaluate(
                    tgt,
                    dataset=dataset,
                    attacks=attacks,
                    eps=[eps],
                    n=n,
                    workspace=workspace,
                    data_dir=data_dir,
                    source=None if tgt.function_id == src.function_id else src,
                    lipschitz=False,
                    role=Role.TRANSFER_MATRIX,
                    device=device,
                    progress=progress,
                ).accuracy
            )
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(ACCURACY_COLUMNS))


def _transfer_examples(
    ctx: _Context, src: EvalModel, attack: Attack, eps: float, key: CellKey, images: Tensor, labels: Tensor
) -> Tensor:
    """Adversarial examples crafted on the source: computed once, kept under ``transfer/`` for every target."""
    crafted = {k: v for k, v in key.to_dict().items() if k not in ("function", "role", "kind", "threat")}
    name = hashlib.sha256(canonical_json(crafted).encode()).hexdigest()
    path = transfer_dir(ctx.workspace) / f"{name}.safetensors"
    if path.is_file() and not ctx.recompute:
        try:
            return load_file(str(path))["images"]
        except Exception:  # noqa: BLE001  (a damaged cache file is recomputed, never trusted)
            path.unlink(missing_ok=True)
    adv = ctx.attacked(attack, src, images, labels, eps, key.subset.seed)
    atomic_write(path, lambda tmp: save_file({"images": adv.contiguous()}, str(tmp)))
    return adv


def _lipschitz_cells(ctx: _Context, eps: float, n: int, seed: int) -> None:
    sub = ctx.test.subset(min(n, len(ctx.test)), seed)
    x, y = sub.float_images(), sub.labels
    subset = Subset(len(sub), len(ctx.test), seed)
    info, module = ctx.test.info, ctx.target.module
    local = {"steps": LOCAL_LIPSCHITZ_STEPS, "step": eps / 4, "random_start": True, "norm": "linf->l1"}
    ctx.cell(
        ctx.key(
            subset,
            kind=CellKind.LIPSCHITZ,
            threat=Threat.LIPSCHITZ,
            attack="local",
            params=attack_params(local),
            eps=eps,
            batch_size=ctx.batch_size,
        ),
        lambda: lip.as_dict(
            lip.local_lipschitz(module, x, eps=eps, steps=LOCAL_LIPSCHITZ_STEPS, seed=seed, batch_size=ctx.batch_size)
        ),
    )
    ctx.cell(
        ctx.key(
            subset,
            kind=CellKind.LIPSCHITZ,
            threat=Threat.LIPSCHITZ,
            attack="gradient-norm",
            params=attack_params({"norm": "l1"}),
        ),
        lambda: lip.as_dict(lip.margin_gradient_norms(module, x, y, batch_size=ctx.batch_size)),
    )
    shape = info.image_shape
    ctx.cell(
        ctx.key(
            Subset(0, len(ctx.test), 0),
            kind=CellKind.LIPSCHITZ,
            threat=Threat.LIPSCHITZ,
            attack="global",
            params=attack_params({"iterations": GLOBAL_BOUND_ITERATIONS}),
        ),
        lambda: lip.as_dict(lip.global_upper_bound(module, shape, info.num_classes, iters=GLOBAL_BOUND_ITERATIONS)),
    )
