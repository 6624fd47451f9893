"""Models from elsewhere: state dicts, safetensors, TorchScript, and (only when trusted) pickled modules.

Loading never runs code from the file unless the user passes ``trust=True``: state dicts are read with
``torch.load(weights_only=True)``, whose unpickler refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from robustbench_dc.checkpoint import CARD_FILE, load_state_dict_checked
from robustbench_dc.data import DatasetInfo
from robustbench_dc.errors import CheckpointError, UserError
from robustbench_dc.files import regular_file, sha256_file
from robustbench_dc.models import create_model
from robustbench_dc.models.layers import with_normalization
from robustbench_dc.targets import EvalModel, from_checkpoint, from_module

log = logging.getLogger(__name__)

TRUST_WARNING = (
    "loading a pickled module with --trust-checkpoint runs whatever code the file's author put in it, with your "
    "permissions; do this only for files you made or whose author you trust"
)


def load_factory(spec: str) -> Callable[[], nn.Module]:
    """``package.module:function`` or ``path/to/file.py:function`` -> the function (the user named this code, so
    importing it is theirs to decide)."""
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise UserError(f"--factory takes package.module:function or path/to/file.py:function, got {spec!r}")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise UserError(f"--factory {spec!r}: no such file {path}")
            loaded = importlib.util.spec_from_file_location(f"_dc_robust_factory_{path.stem}", path)
            if loaded is None or loaded.loader is None:
                raise UserError(f"--factory {spec!r}: {path} cannot be imported as a Python module (is it a .py file?)")
            module = importlib.util.module_from_spec(loaded)
            loaded.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        fn = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"cannot import factory {spec!r}: {exc}") from exc
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001  (the user's file raised while being imported)
        raise UserError(f"factory {spec!r}: importing it raised {type(exc).__name__}: {exc}") from exc
    if not callable(fn):
        raise UserError(f"factory {spec!r} is not callable")
    return fn


class ExportedModule(nn.Module):
    """A ``torch.export`` program (``.pt2``) as a module. Its graph was fixed at export (in eval mode, one hopes)
    and cannot switch between training and evaluation, so ``train()``/``eval()`` only set the flag here. A program
    exported with a static batch size (``torch.export``'s default) runs on any batch in chunks of that size, the
    last one padded with copies of an image whose outputs are dropped (in eval mode every image is on its own)."""

    def __init__(self, graph: nn.Module, batch_size: int | None = None) -> None:
        super().__init__()
        self.graph = graph
        self.batch_size = batch_size  # None: the program takes any batch size

    @classmethod
    def from_program(cls, program: torch.export.ExportedProgram) -> "ExportedModule":
        inputs = [
            n for n in program.graph.nodes if n.op == "placeholder" and n.name in program.graph_signature.user_inputs
        ]
        value = inputs[0].meta.get("val") if len(inputs) == 1 else None
        batch = value.shape[0] if value is not None and value.ndim > 0 else None
        return cls(program.module(), batch if isinstance(batch, int) else None)

    def train(self, mode: bool = True) -> "ExportedModule":
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.batch_size
        if b is None or x.shape[0] == b:
            return self.graph(x)
        outs = []
        for piece in x.split(b):
            pad = b - piece.shape[0]
            full = torch.cat([piece, piece[:1].expand(pad, *piece.shape[1:])]) if pad else piece
            outs.append(self.graph(full)[: piece.shape[0]])
        return torch.cat(outs)


def _is_exported_program(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/archive_format") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors or torch file, never running code from it; a ``module.`` prefix on every
    key (saved from ``nn.DataParallel``) is removed."""
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    state = _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch_state(path)
    if state and all(k.startswith("module.") for k in state):
        log.info("%s: removing the 'module.' prefix of every key (a DataParallel state dict)", path)
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _plain(exc: BaseException) -> str:
    """An exception's first line without terminal escape codes (torch colours some of its messages)."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001  (damaged headers raise many kinds of errors)
        raise CheckpointError(
            f"{path}: not a readable safetensors file (truncated or corrupt?): {_plain(exc)}"
        ) from exc


def _read_torch_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" not in str(exc).lower():  # not a refusal: random or damaged bytes
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint (truncated or corrupt, or another format): {_plain(exc)}"
            ) from exc
        raise CheckpointError(
            f"{path}: refused to load: the file holds pickled Python objects beyond tensors (a full module, or "
            "something that would run code when unpickled). Save a state dict instead (torch.save(model.state_dict(), "
            "...)), or pass --trust-checkpoint if you trust the file's author"
        ) from exc
    except Exception as exc:  # noqa: BLE001  (the unpickler raises anything on damaged bytes; it never runs code here)
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated or corrupt, or another format): {_plain(exc)}"
        ) from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict (names -> tensors), found {type(obj).__name__}")
    return obj


@dataclass(frozen=True)
class BuildRequest:
    """What the user said about a file's network: a zoo architecture or a factory to build a state dict into,
    and whether a pickled module may be unpickled (it runs the file's code)."""

    info: DatasetInfo
    arch: str | None = None
    model_name: str = "baseline"
    width: float | None = None
    factory: str | None = None
    trust: bool = False

    @property
    def builds(self) -> bool:
        return bool(self.arch or self.factory)


def _load_exported(path: Path, request: BuildRequest) -> nn.Module:
    try:
        return ExportedModule.from_program(torch.export.load(str(path)))
    except Exception as exc:  # noqa: BLE001  (damaged archives raise many kinds of errors)
        raise CheckpointError(
            f"{path}: cannot load this torch.export program (truncated, corrupt, or from another torch?): {_plain(exc)}"
        ) from exc


def _load_torchscript(path: Path, request: BuildRequest) -> nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001  (damaged archives raise many kinds of errors)
        raise CheckpointError(
            f"{path}: cannot load this TorchScript file (truncated or corrupt?): {_plain(exc)}"
        ) from exc


def _load_pickled_module(path: Path, request: BuildRequest) -> nn.Module:
    log.warning(TRUST_WARNING)
    try:
        module = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001  (anything can come out of an arbitrary pickle)
        raise CheckpointError(f"{path}: cannot unpickle: {exc}") from exc
    if not isinstance(module, nn.Module):
        raise CheckpointError(f"{path}: the pickle holds a {type(module).__name__}, not an nn.Module")
    return module


def _built_by_factory(factory: str) -> nn.Module:
    try:
        module = load_factory(factory)()
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001  (the user's factory failed: say which, and how)
        raise UserError(f"factory {factory!r} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(module, nn.Module):
        raise UserError(f"factory {factory!r} returned a {type(module).__name__}, not an nn.Module")
    return module


def _load_state_dict(path: Path, request: BuildRequest) -> nn.Module:
    state = _read_state_dict(path)  # refuses code-carrying pickles even when no architecture is given
    if not request.builds:
        raise UserError(
            f"{path} holds a state dict ({len(state)} tensors): say what to build with --arch NAME (a zoo "
            "architecture) or --factory package.module:function"
        )
    if request.arch and request.factory:
        raise UserError("give --arch or --factory, not both")
    if request.factory:
        module = _built_by_factory(request.factory)
    else:
        info = request.info
        module = create_model(
            request.model_name,
            arch=str(request.arch),  # builds, and no factory: an architecture was named
            num_classes=info.num_classes,
            in_channels=info.in_channels,
            width=1.0 if request.width is None else request.width,
            input_size=info.input_size,
            mean=info.mean,
            std=info.std,
        )
        # zoo architectures normalise inside: a state dict without the normalisation buffers gets the dataset's
        for key in ("normalize.mean", "normalize.std"):
            state.setdefault(key, module.state_dict()[key])
    load_state_dict_checked(module, state, source=str(path))
    return module


# Each format: its name in the model's info, whether a file is of it, and how it loads; the first that claims a
# file loads it (a pickled module only with trust and nothing to build; every other file is read as a state dict).
LOADERS: tuple[tuple[str, Callable[[Path, BuildRequest], bool], Callable[[Path, BuildRequest], nn.Module]], ...] = (
    ("torch-export", lambda path, _: _is_exported_program(path), _load_exported),
    ("torchscript", lambda path, _: _is_torchscript(path), _load_torchscript),
    (
        "pickled-module",
        lambda path, r: r.trust and path.suffix != ".safetensors" and not r.builds,
        _load_pickled_module,
    ),
    ("state-dict", lambda path, _: True, _load_state_dict),
)


def _check_dataset_fit(info: DatasetInfo, num_classes: int | None, input_size: int | None) -> None:
    if num_classes is not None and num_classes != info.num_classes:
        raise UserError(f"--num-classes {num_classes} does not match {info.name}, which has {info.num_classes} classes")
    if input_size is not None and input_size != info.input_size:
        raise UserError(
            f"--input-size {input_size} does not match {info.name}, whose images are "
            f"{info.input_size}x{info.input_size}"
        )


def load_external(
    path: str | Path,
    info: DatasetInfo,
    *,
    arch: str | None = None,
    model_name: str = "baseline",
    width: float | None = None,
    factory: str | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    num_classes: int | None = None,
    input_size: int | None = None,
    trust: bool = False,
    label: str | None = None,
) -> EvalModel:
    """An evaluation target from a file: our checkpoint, a state dict / safetensors (with ``arch`` or
    ``factory``), a ``torch.export`` program (``.pt2``), TorchScript, or a pickled module (only with ``trust``)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir() or path.name == CARD_FILE:
        return from_checkpoint(path)
    regular_file(path, "checkpoint")
    _check_dataset_fit(info, num_classes, input_size)
    digest = sha256_file(path)
    request = BuildRequest(info, arch=arch, model_name=model_name, width=width, factory=factory, trust=trust)
    kind, load = next((kind, load) for kind, claims, load in LOADERS if claims(path, request))
    module = with_normalization(load(path, request), mean, std).eval()
    details: dict[str, Any] = {
        "format": kind,
        "file": path.name,
        "file_sha256": digest,
        "arch": arch or factory or "",
        "dataset": None,
        "mean": list(mean) if mean else None,
        "std": list(std) if std else None,
    }
    return from_module(module, label=label or path.stem, **details)
