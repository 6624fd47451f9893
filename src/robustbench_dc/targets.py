"""What is evaluated: a module and the identity of the function it computes.

Two targets share stored results only when they compute the same function: the same weights AND the same
architecture, operator settings, factory code or TorchScript graph, and normalisation wrapper. The label is
a name for people, never identity.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_dc.checkpoint import Card, load_checkpoint, robustness_series
from robustbench_dc.model_info import ModelInfo, ModelKind
from robustbench_dc.models.registry import arch_label
from robustbench_dc.protocol import PROTOCOL_SOURCE, protocol_source_config, recipe_id  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class EvalModel:
    """A model to evaluate: the module, the identity of its function, and its description."""

    module: nn.Module
    function_id: str
    info: ModelInfo

    @property
    def label(self) -> str:
        return self.info.label

    @property
    def is_zoo(self) -> bool:
        return self.info.is_zoo

    @property
    def title(self) -> str:
        """``baseline natural seed 1`` for a zoo model, else the label."""
        return self.info.title


def state_sha256(module: nn.Module) -> str:
    """sha256 over the state dict (names, dtypes, shapes, bytes): identifies the weights alone."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def _class_code(cls: type) -> str:
    """A class's source for classes outside torch and this package (user code whose forward may change)."""
    module = cls.__module__ or ""
    if module.split(".")[0] in ("torch", "robustbench_dc", "torchvision"):
        return ""
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        return ""


def structure_description(module: nn.Module) -> str:
    """Everything but the weights that decides what ``module`` computes: each submodule's class and settings
    (``repr``), the source of user-defined classes, and TorchScript or exported-graph code."""
    parts = [repr(module)]
    for name, m in module.named_modules():
        cls = type(m)
        parts.append(f"{name}:{cls.__module__}.{cls.__qualname__}")
        code = getattr(m, "code", None) if isinstance(m, (torch.jit.ScriptModule, torch.fx.GraphModule)) else None
        if isinstance(code, str):
            parts.append(code)
        else:
            parts.append(_class_code(cls))
    spec = getattr(module, "spec", None)
    if spec is not None and hasattr(spec, "to_dict"):
        parts.append(json.dumps(spec.to_dict(), sort_keys=True))
    return "\n".join(parts)


def function_identity(module: nn.Module) -> str:
    """sha256 of the weights and the structure: equal only for modules that compute the same function."""
    h = hashlib.sha256(state_sha256(module).encode())
    h.update(structure_description(module).encode())
    return h.hexdigest()


def from_checkpoint(path: str | Path) -> EvalModel:
    """A zoo checkpoint as an evaluation target."""
    model, card = load_checkpoint(path)
    spec = card.model
    info = ModelInfo(
        label=spec["name"],
        name=spec["name"],
        arch=arch_label(spec["arch"], spec.get("arch_options")),
        width=spec["width"],
        training=card.training["label"],
        seed=card.seed,
        dataset=card.dataset,
        kind=ModelKind.ZOO,
        file=Path(path).name if Path(path).is_dir() else Path(path).parent.name,
        checkpoint_dir=str((Path(path) if Path(path).is_dir() else Path(path).parent).resolve()),
        data_source=card.data_source,
        epochs=card.epochs,
        train_images=card.train_images,
        clean_test_accuracy=card.clean_test_accuracy,
        weights_sha256=card.weights.sha256 if card.weights else "",
        train_config=card.train_config,
        compute=card.compute,
        # the resolved training precision, layout and compilation belong to the recipe: seeds trained in bf16 and in
        # fp32, or compiled and eager, are not pooled ("eager" left out: cards from before the option have no entry)
        recipe=recipe_id(
            {
                **card.train_config,
                "compute": {
                    k: v
                    for k, v in card.compute.items()
                    if k in ("precision", "channels_last") or (k == "compile" and v != "eager")
                },
            }
        ),
        executed_block_rate=card.executed_block_rate,
        robustness_check=_robustness_check(card),
    )
    return EvalModel(model, function_identity(model), info)


def _robustness_check(card: Card) -> dict[str, Any] | None:
    """The card's robustness check with its per-epoch accuracies, which reports show beside the tables: a model
    that overfitted catastrophically is evaluated as trained, and the report says so."""
    if not card.robustness_check:
        return None
    return {**card.robustness_check, **robustness_series(card.history)}


def from_module(module: nn.Module, *, label: str | None = None, **info: Any) -> EvalModel:
    """Any ``nn.Module`` taking images in [0, 1] as an evaluation target.

    Without ``label`` it is named by its function identity (a zoo network: its model name and a short hash).
    """
    fid = function_identity(module)
    name = getattr(getattr(module, "spec", None), "name", None)
    default = f"{name}-{fid[:8]}" if name else f"module-{fid[:8]}"
    described = {
        "kind": ModelKind.THIRD_PARTY,
        "weights_sha256": state_sha256(module),
        **info,
        "label": label or default,
    }
    return EvalModel(module, fid, ModelInfo.from_dict(described))
