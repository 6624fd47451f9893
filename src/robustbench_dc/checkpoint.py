"""Self-describing checkpoints (safetensors weights + JSON card) and the workspace's model store.

A checkpoint is complete when its card exists: the weights are written first, the card last, each
atomically (temporary file, then rename), so an interrupted write never leaves a half checkpoint.
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from robustbench_dc.errors import CheckpointError, UserError
from robustbench_dc.files import atomic_write, atomic_write_bytes, environment, regular_file, sha256_file
from robustbench_dc.models import ModelSpec, Network, build_model
from robustbench_dc.models.registry import parse_model_name
from robustbench_dc.names import Regime
from robustbench_dc.names import regime as regime_of
from robustbench_dc.workspace import CARD_FILE, models_dir, workspace_dir
from robustbench_dc.zoo import shipped_roots

CARD_FORMAT = "robustbench-dc/checkpoint-v1"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class WeightsFile:
    """The card's pointer to its weights: a file inside the checkpoint directory and the file's sha256."""

    file: str
    sha256: str


@dataclass(frozen=True)
class Card:
    """A checkpoint's card, typed: what was trained (``model``, the network's spec; ``train_config``, the full
    configuration), on what data, how well, and on what machine. On disk it is the JSON of ``to_dict``; cards of
    earlier releases read as they are (``from_dict``), and keys this release does not know ride along in ``extra``."""

    model: dict[str, Any]  # the network's ModelSpec.to_dict(), from which load_checkpoint rebuilds it
    dataset: str
    training: dict[str, Any]  # the regime: its name, label, eps and the regime's own settings
    train_config: dict[str, Any]
    seed: int
    epochs: int
    clean_test_accuracy: float
    weights: WeightsFile | None = None  # set by save_checkpoint once the weights are written
    format: str = CARD_FORMAT
    data_source: str = ""
    input_shape: list[int] | None = None
    normalization: dict[str, Any] | None = None
    train_images: int | None = None
    test_images: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    recalibration: dict[str, Any] | None = None
    robustness_check: dict[str, Any] | None = None
    executed_block_rate: dict[str, Any] | None = None
    compute: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    evaluations: dict[str, Any] = field(default_factory=dict)  # added by evaluations of this checkpoint
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The card's JSON: every field that holds something, ``extra``'s keys beside them."""
        out = dict(self.extra)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "extra" and value not in (None, {}, []):
                out[f.name] = asdict(value) if isinstance(value, WeightsFile) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | Path = CARD_FILE) -> Card:
        """A card read from JSON, validated: the keys without which no model can be rebuilt or described."""
        if not isinstance(data, dict) or data.get("format") != CARD_FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            raise CheckpointError(
                f"{where}: not a robustbench-dc checkpoint card (format {found!r}, expected {CARD_FORMAT!r})"
            )
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        for key in required + ["weights"]:
            if key not in data:
                raise CheckpointError(f"{where}: checkpoint card lacks {key!r}; retrain or restore the file")
        weights = data["weights"]
        if not isinstance(weights, dict) or not {"file", "sha256"} <= set(weights):
            raise CheckpointError(
                f"{where}: the card's 'weights' entry needs 'file' and 'sha256'; retrain or restore the file"
            )
        for key, kinds in (("clean_test_accuracy", (int, float)), ("seed", (int,)), ("epochs", (int,))):
            if isinstance(data[key], bool) or not isinstance(data[key], kinds):
                raise CheckpointError(
                    f"{where}: the card's {key!r} is {data[key]!r}, not a number; retrain or restore it"
                )
        for key in ("model", "training", "train_config"):
            if not isinstance(data[key], dict):
                raise CheckpointError(f"{where}: the card's {key!r} is not a table; retrain or restore the file")
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known and v is not None}
        values["weights"] = WeightsFile(str(weights["file"]), str(weights["sha256"]))
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})


def robustness_series(history: list[dict[str, Any]]) -> dict[str, list]:
    """The per-epoch robustness check of a training history as parallel lists: ``epoch``, ``fgsm``, ``pgd10``."""
    checked = [h for h in history if h.get("robustness")]
    return {
        "epoch": [int(h["epoch"]) for h in checked],
        "fgsm": [h["robustness"]["fgsm"] for h in checked],
        "pgd10": [h["robustness"]["pgd10"] for h in checked],
    }


def write_card(directory: Path, card: Card) -> None:
    atomic_write_bytes(directory / CARD_FILE, (json.dumps(card.to_dict(), indent=2, sort_keys=True) + "\n").encode())


def save_checkpoint(model: Network, directory: Path, card: Card) -> Path:
    """Write ``model.safetensors`` then ``card.json`` (with the model's spec and the weights' sha256)."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS_FILE
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(weights, lambda tmp: save_file(state, str(tmp)))
    written = replace(
        card,
        model=model.spec.to_dict(),
        weights=WeightsFile(WEIGHTS_FILE, sha256_file(weights)),
        versions=environment(),
    )
    write_card(directory, written)
    return directory


def read_card(path: Path) -> Card:
    """The card of a checkpoint directory (or of ``card.json`` itself), validated."""
    card_path = path / CARD_FILE if path.is_dir() else path
    if not card_path.exists():
        raise CheckpointError(
            f"{card_path}: no checkpoint card here; a checkpoint directory holds {CARD_FILE} and {WEIGHTS_FILE}"
        )
    regular_file(card_path, "checkpoint card")
    try:
        data = json.loads(card_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{card_path}: corrupt checkpoint card ({exc}); retrain or restore the file") from exc
    return Card.from_dict(data, card_path)


def load_checkpoint(path: str | os.PathLike) -> tuple[Network, Card]:
    """Rebuild a model from its card alone and load its verified weights; returns ``(model in eval mode, card)``."""
    path = Path(path)
    card = read_card(path)
    directory = path if path.is_dir() else path.parent
    if card.weights is None:  # read_card refuses such a card; a Card built in Python may lack it
        raise CheckpointError(f"{directory / CARD_FILE}: the card names no weights file")
    weights = directory / card.weights.file
    if weights.resolve().parent != directory.resolve():
        raise CheckpointError(
            f"{directory / CARD_FILE}: the weights file {card.weights.file!r} is not inside the checkpoint directory"
        )
    if not weights.is_file():
        raise CheckpointError(f"{weights}: weights file missing for card {directory / CARD_FILE}")
    digest = sha256_file(weights)
    if digest != card.weights.sha256:
        raise CheckpointError(
            f"{weights}: sha256 {digest[:16]}... does not match the card's {card.weights.sha256[:16]}...; the file is "
            "corrupt, truncated or was replaced. Retrain (delete the directory) or restore it."
        )
    try:
        spec = ModelSpec.from_dict(card.model)
        model = build_model(spec)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{directory / CARD_FILE}: cannot rebuild the model from the card: {exc}") from exc
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: unreadable safetensors file ({exc})") from exc
    load_state_dict_checked(model, state, source=str(weights))
    return model.eval(), card


def load_state_dict_checked(model: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that lists the first missing and unexpected keys.

    BatchNorm's ``num_batches_tracked`` may be missing (state dicts saved before PyTorch 0.4.1), as
    ``load_state_dict`` itself accepts.
    """
    expected = model.state_dict()
    state = {**{k: v for k, v in expected.items() if k.endswith("num_batches_tracked") and k not in state}, **state}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {', '.join(missing[:5])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:5])})")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatches (first: {'; '.join(wrong[:3])})")
        raise CheckpointError(f"{source}: weights do not fit the model: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def find_checkpoints(
    workspace: Path,
    *,
    dataset: str | None = None,
    model: str | None = None,
    training: str | None = None,
    arch: str | None = None,
    width: float | None = None,
    seed: int | None = None,
) -> list[Path]:
    """Checkpoint directories in the store matching every given field (other recipes' runs of the same name too)."""
    root = models_dir(workspace)
    name = f"{arch or '*'}-w{'*' if width is None else f'{width:g}'}-seed{'*' if seed is None else seed}"
    patterns = [
        "/".join([dataset or "*", model or "*", training or "*", run, CARD_FILE]) for run in {name, f"{name}+*"}
    ]
    return sorted({p.parent for pattern in patterns for p in root.glob(pattern)}) if root.is_dir() else []


def resolve_checkpoint(
    name_or_path: str | os.PathLike,
    *,
    dataset: str | None,
    training: str = "natural",
    seed: int = 0,
    arch: str | None = None,
    width: float | None = None,
    workspace: str | os.PathLike | None = None,
) -> Path:
    """A checkpoint directory: the path itself, or the one store entry for ``dataset + model + training + seed``.

    A bare model name (``tanhconv``) always means the store, even where a folder of that name lies in the current
    directory; write ``./tanhconv`` (or pass a ``Path``) for the folder."""
    path = Path(name_or_path)
    bare_name = (
        isinstance(name_or_path, str)
        and "/" not in name_or_path
        and os.sep not in name_or_path
        and _is_model_name(name_or_path)
    )
    if not bare_name and (
        path.is_file() or (path / CARD_FILE).is_file()
    ):  # a folder that merely shares a model's name is not a checkpoint
        return path
    ws = workspace_dir(workspace)
    if not bare_name and ("/" in str(name_or_path) or os.sep in str(name_or_path) or not isinstance(name_or_path, str)):
        raise CheckpointError(
            f"{path}: no such checkpoint (a folder holding {CARD_FILE}, that card, or a model file); for a model of "
            "the store give its name (tanhconv)"
        )
    parse_model_name(str(name_or_path))  # an unknown name fails here, listing the valid ones
    if regime_of(training).split("-eps")[0] not in tuple(Regime):
        raise UserError(
            f"unknown training {training!r}; valid: {', '.join(Regime)} ('adversarial', the tables' word, is fgsm), "
            "optionally with the eps a store label carries (fgsm-eps4)"
        )
    if dataset is None:
        raise UserError(f"{name_or_path!r} is not a file; to look it up in the model store, give the dataset too")
    found = find_checkpoints(
        ws, dataset=dataset, model=str(name_or_path), training=training, arch=arch, width=width, seed=seed
    )
    if not found:  # the user's store first, then the networks the project ships
        found = _shipped(dataset=dataset, model=str(name_or_path), training=training, arch=arch, width=width, seed=seed)
    if not found:
        regime = training.split("-eps")[0]
        hint = f"train it: dc-robust train --model {name_or_path} --dataset {dataset} --training {regime} --seed {seed}"
        raise CheckpointError(
            f"no checkpoint for model={name_or_path} dataset={dataset} training={training} "
            f"seed={seed}{'' if arch is None else f' arch={arch}'}{'' if width is None else f' width={width:g}'} in "
            f"{models_dir(ws)}; {hint} (or list the store: dc-robust models)"
        )
    if len(found) > 1:
        listing = ", ".join(p.name for p in found)
        raise UserError(
            f"several checkpoints match ({listing}); choose one with --arch and --width, or give its folder (runs "
            "named with a +hash are other training settings of the same name: their card.json says which)"
        )
    return found[0]


def _shipped(**fields: Any) -> list[Path]:
    """The first shipped folder's checkpoints that match (``zoo.shipped_roots``); where a study ships a table model and,
    beside it, a source of other settings under the same name (``...-seed1+hash``), the table model."""
    for root in shipped_roots():
        found = find_checkpoints(root, **fields)
        plain = [p for p in found if "+" not in p.name]
        if found:
            return plain if len(plain) == 1 else found
    return []


def _is_model_name(name: str) -> bool:
    try:
        parse_model_name(name)
    except UserError:
        return False
    return True


def load_model(
    name_or_path: str | os.PathLike,
    *,
    dataset: str | None = None,
    training: str = "natural",
    seed: int = 0,
    arch: str | None = None,
    width: float | None = None,
    workspace: str | os.PathLike | None = None,
    device: str | torch.device | None = "cpu",
) -> Network:
    """A trained model, rebuilt from its checkpoint card, in eval mode, on ``device`` (``auto``: CUDA, else MPS, else
    CPU).

    ``load_model("tanhconv", dataset="cifar10", training="fgsm", seed=0)`` looks in the workspace's model store;
    a path to a checkpoint directory or card loads that checkpoint.
    """
    directory = resolve_checkpoint(
        name_or_path, dataset=dataset, training=training, seed=seed, arch=arch, width=width, workspace=workspace
    )
    model, card = load_checkpoint(directory)
    if dataset is not None and card.dataset != dataset:
        raise CheckpointError(f"{directory}: checkpoint was trained on {card.dataset!r}, not {dataset!r}")
    from robustbench_dc.devices import resolve_device

    return model.to(resolve_device(device))
