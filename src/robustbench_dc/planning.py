"""What must exist before an evaluation runs: the black-box source, resolved (and trained if missing) up front.

``evaluate`` never trains; the CLI and ``reproduce`` call :func:`resolve_source` first, which says what it does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from robustbench_dc.checkpoint import resolve_checkpoint
from robustbench_dc.errors import UserError
from robustbench_dc.targets import PROTOCOL_SOURCE, EvalModel, from_checkpoint, protocol_source_config
from robustbench_dc.train import TrainConfig, checkpoint_dir, train
from robustbench_dc.workspace import workspace_dir


def protocol_source_training(train_config: dict) -> TrainConfig:
    """The training run of a zoo model's protocol source (see ``targets.PROTOCOL_SOURCE``)."""
    return TrainConfig(**protocol_source_config(train_config))


def _shipped_source(config: TrainConfig, target: EvalModel) -> Path | None:
    """The protocol source where the user's store lacks it but it ships: in the folder whose ``models/`` holds the
    target (a shipped report's own sources), else in any shipped folder."""
    from robustbench_dc.zoo import shipped_roots, store_root

    own = store_root(Path(target.info.checkpoint_dir)) if target.info.checkpoint_dir else None
    for root in ([own] if own is not None else []) + shipped_roots():
        directory = checkpoint_dir(config, root)
        if (directory / "card.json").is_file():
            return directory
    return None


def resolve_source(
    source: str | Path | EvalModel | None,
    target: EvalModel,
    *,
    dataset: str,
    workspace: str | Path | None = None,
    data_dir: str | Path | None = None,
    train_missing: bool = True,
    say: Callable[[str], None] = lambda _: None,
) -> EvalModel | None:
    """``"default"``: the protocol source, trained now if missing (and said so) unless ``train_missing`` is false;
    ``"auto"``: the same for a zoo target, none (and said so) for a model from elsewhere, which has no protocol
    source; ``"none"``/``None``: no black-box rows; a checkpoint path; a zoo name (the store's model of that name with
    the target's seed + 1 for a zoo target, seed 0 otherwise); an ``EvalModel``."""
    if source == "auto" and not target.is_zoo:
        say(
            "note: no black-box rows: a model from outside the zoo needs --source NAME|PATH (a zoo model or checkpoint)"
        )
        return None
    if source is None or source == "none":
        return None
    if isinstance(source, EvalModel):
        return source
    ws = workspace_dir(workspace)
    if source in ("default", "auto"):
        if not target.is_zoo:
            raise UserError(
                f"{target.label!r} is not a zoo model, so it has no protocol black-box source; name one with --source "
                "NAME|PATH (a zoo model or checkpoint), or --source none"
            )
        config = protocol_source_training(dict(target.info.train_config or {}))
        shipped = None if (checkpoint_dir(config, ws) / "card.json").exists() else _shipped_source(config, target)
        if shipped is not None:
            say(
                f"black-box source: {config.model} {config.training_label} seed {config.seed} ({PROTOCOL_SOURCE}), "
                f"shipped beside the target: {shipped}"
            )
            return from_checkpoint(shipped)
        directory = checkpoint_dir(config, ws)
        if (directory / "card.json").exists():
            say(
                f"black-box source: {config.model} {config.training_label} seed {config.seed} ({PROTOCOL_SOURCE}), "
                "found in the store"
            )
        elif not train_missing:
            raise UserError(f"the protocol black-box source ({PROTOCOL_SOURCE}) is not trained: {directory} is missing")
        else:
            say(
                f"black-box source: training {config.model} {config.training_label} seed {config.seed} "
                f"({PROTOCOL_SOURCE}) first"
            )
        return from_checkpoint(train(config, workspace=ws, data_dir=data_dir))
    seed = target.info.seed + 1 if target.is_zoo and target.info.seed is not None else 0
    return from_checkpoint(resolve_checkpoint(str(source), dataset=dataset, workspace=ws, seed=seed))
