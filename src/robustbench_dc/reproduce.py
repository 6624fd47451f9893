"""``reproduce``: train and evaluate everything Tables 7 and 8 need, then write the report.

Each stage (one training run, one model's evaluation) is resumable on its own: trainings resume per epoch,
evaluations per result cell, so a run interrupted anywhere and started again does only what is left.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from robustbench_dc import names
from robustbench_dc.errors import UserError
from robustbench_dc.evaluation import evaluate, transfer_matrix
from robustbench_dc.executors import EvalJob, Executor, LocalExecutor
from robustbench_dc.planning import protocol_source_training, resolve_source
from robustbench_dc.reports.paper import paper_tables, paper_value
from robustbench_dc.study import Study, load_study
from robustbench_dc.targets import from_checkpoint
from robustbench_dc.train import TrainConfig, checkpoint_dir, recipe_config
from robustbench_dc.workspace import workspace_dir

TABLE_MODELS = ("baseline", "sphereconv", "ballconv", "tanhconv")


@dataclass(frozen=True)
class Preset:
    """Everything a reproduction run does; ``describe()`` goes into the report."""

    name: str
    dataset: str
    n: int | None
    eps: tuple[float, ...]
    training: tuple[tuple[str, Any], ...] = ()  # the study's [training] settings, a recipe among them (train.recipe_config)
    arch: str = "cnn9"
    models: tuple[str, ...] = TABLE_MODELS
    trainings: tuple[str, ...] = ("natural", "fgsm")
    attacks: tuple[str, ...] = ("fgsm", "fgsm-pred", "bim")
    lipschitz_n: int = 200
    table_eps: float = 8 / 255
    diagnostics_n: int | None = 500
    square_queries: int = 300
    seeds: tuple[int, ...] = (0,)  # training seeds: tables show mean ± sd over them
    note: str = ""
    compile: bool = False  # train through torch.compile (TrainConfig.compile)

    @property
    def width(self) -> float:
        return float(dict(self.training).get("width", 1.0))

    def with_training(self, **settings: Any) -> "Preset":
        """The same preset with these [training] settings changed (e.g. ``epochs=1`` for a test)."""
        return replace(self, training=tuple(sorted({**dict(self.training), **settings}.items())))

    def train_config(self, model: str, training: str, seed: int) -> TrainConfig:
        settings = {k: v for k, v in self.training if k != "compile"}
        return recipe_config(settings.pop("recipe", "standard"), model=model, dataset=self.dataset, arch=self.arch, training=training, seed=seed,
                             **settings, **({"compile": True} if self.compile else {}))  # fmt: skip

    @classmethod
    def from_study(cls, study: Study) -> "Preset":
        """A study with ``report = "paper"``: zoo models of one architecture, without options, named by their zoo names."""
        archs = {m.arch for m in study.models}
        odd = [m.label for m in study.models if not m.trained or m.options or m.operator or m.width is not None or m.label != m.model]
        if len(archs) != 1 or odd:
            raise UserError(f"study {study.name!r}: a paper-tables study needs zoo models of one architecture, labelled by their names, "
                            f"without options{'; not so: ' + ', '.join(odd) if odd else ''}")  # fmt: skip
        t = study.training
        return cls(name=study.name, dataset=study.dataset, n=study.n, eps=study.eps, training=tuple(sorted(t.items())), arch=archs.pop(),
                   models=tuple(m.model for m in study.models), trainings=study.regimes, attacks=study.attacks, lipschitz_n=study.lipschitz_n,
                   table_eps=study.table_eps, diagnostics_n=study.diagnostics_n, square_queries=study.square_queries, seeds=study.seeds,
                   note=" ".join(study.description.split()), compile=bool(t.get("compile", False)))  # fmt: skip


#: the presets are studies shipped with the package (robustbench_dc/studies/NAME.toml, report = "paper")
PRESETS = {name: Preset.from_study(load_study(name)) for name in names.PRESETS}


if tuple(PRESETS) != names.PRESETS:
    raise ImportError(f"robustbench_dc.names.PRESETS {names.PRESETS} does not list the presets defined here {tuple(PRESETS)}")


def _eps_match_stage(preset: Preset, targets: list, ws: Path, data_dir, device, progress) -> None:
    """For FGSM and BIM: the eps at which the natural baseline's white-box accuracy is closest to the paper's
    (which states no eps), then every target evaluated there (white-box and transfer from its protocol source)."""
    paper = paper_tables()
    kw = dict(dataset=preset.dataset, n=preset.n, workspace=ws, data_dir=data_dir, lipschitz=False, device=device, progress=progress)
    baseline = next(t for t in targets if t.info["name"] == "baseline" and t.info["training"] == "natural")
    sources = [resolve_source("default", t, dataset=preset.dataset, workspace=ws, data_dir=data_dir, train_missing=False) for t in targets]
    for attack in ("fgsm", "bim"):
        wanted = paper_value(paper, 7, "natural", attack, "baseline") / 100

        def accuracy_at(eps: float, attack: str = attack) -> float:
            rows = evaluate(baseline, attacks=[attack], eps=[eps], **kw)
            return float(rows.loc[rows["attack"] == attack, "accuracy"].iloc[0])

        eps = match_eps(accuracy_at, wanted, hi=max(preset.eps))
        if eps is None:
            continue
        for target, source in zip(targets, sources):
            evaluate(target, attacks=[attack], eps=[eps], source=source, **kw)


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class Stage:
    kind: str  # "train", "eval", "transfer" or "eps-match"
    config: TrainConfig

    @property
    def label(self) -> str:
        c = self.config
        if self.kind == "transfer":
            return "transfer matrix (every natural model as source for every other)"
        if self.kind == "eps-match":
            return "eps matched to the paper's natural baseline (FGSM, BIM), every model re-evaluated there"
        return f"{self.kind} {c.model} {c.training_label} seed {c.seed}"


def match_eps(accuracy_at: Callable[[float], float], target: float, hi: float, steps: int = 6) -> float | None:
    """The measured eps (a multiple of ``hi / 2**steps``) whose accuracy is closest to ``target`` (a fraction),
    by bisection on [0, hi]; None when even ``hi`` leaves accuracy above the target. Accuracy falls with eps."""
    measured = {hi: accuracy_at(hi)}
    if measured[hi] > target:
        return None
    lo, high = 0.0, hi
    for _ in range(steps):
        mid = (lo + high) / 2
        measured[mid] = accuracy_at(mid)
        lo, high = (mid, high) if measured[mid] > target else (lo, mid)
    return min(measured, key=lambda e: (abs(measured[e] - target), e))


def plan(preset: Preset, seeds: tuple[int, ...]) -> list[Stage]:
    """Trainings first (every target's protocol black-box source among them), then evaluations, then the
    transfer matrix of the first seed's natural models."""
    targets = [preset.train_config(model, training, seed) for seed in seeds for training in preset.trainings for model in preset.models]
    sources = [protocol_source_training(c.to_dict()) for c in targets]
    trainings = list({json.dumps(c.to_dict(), sort_keys=True): c for c in targets + sources}.values())
    transfer = [Stage("transfer", c) for c in targets if c.training == "natural"][:1]
    match = [Stage("eps-match", c) for c in targets if c.model == "baseline" and c.training == "natural"][:1]
    return [Stage("train", c) for c in trainings] + [Stage("eval", c) for c in targets] + transfer + match



def jobs(preset: Preset, seeds: tuple[int, ...]) -> list[EvalJob]:
    """Every target's evaluation: its attacks at every eps against its protocol source, and its diagnostics."""
    return [EvalJob(label=f"{s.config.model} {s.config.training_label} seed {s.config.seed}", dataset=preset.dataset, attacks=preset.attacks,
                    eps=preset.eps, n=preset.n, lipschitz_n=preset.lipschitz_n, target=s.config, source=protocol_source_training(s.config.to_dict()),
                    table_eps=preset.table_eps, diagnostics_n=preset.diagnostics_n, square_queries=preset.square_queries)
            for s in plan(preset, seeds) if s.kind == "eval"]  # fmt: skip


def reproduce(
    preset: Preset,
    *,
    seeds: tuple[int, ...] | None = None,
    workspace: str | Path | None = None,
    data_dir: str | Path | None = None,
    device: str | None = "auto",
    executor: Executor | None = None,
    on_stage: Callable[[int, int, str], None] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Run every stage not already done: trainings and evaluations on ``executor`` (default: this process), then
    the transfer matrix and the eps match here; returns the wall time of each (seconds, this run)."""
    ws = workspace_dir(workspace)
    seeds = preset.seeds if seeds is None else seeds
    stages = plan(preset, seeds)
    trainings = [s.config for s in stages if s.kind == "train"]
    times = (executor or LocalExecutor()).run(trainings, jobs(preset, seeds), workspace=ws, data_dir=data_dir, device=device,
                                              on_stage=None if on_stage is None else lambda i, _, label: on_stage(i, len(stages), label), on_progress=on_progress)  # fmt: skip
    for i, stage in enumerate(stages):
        if stage.kind not in ("transfer", "eps-match"):
            continue
        if on_stage is not None:
            on_stage(i, len(stages), stage.label)
        t0 = time.perf_counter()
        targets = [from_checkpoint(checkpoint_dir(s.config, ws)) for s in stages if s.kind == "eval"]
        if stage.kind == "transfer":
            natural = [t for t in targets if t.info["training"] == "natural" and t.info["seed"] == seeds[0]]
            transfer_matrix(natural, dataset=preset.dataset, attacks=preset.attacks, eps=preset.table_eps, n=preset.n,
                            workspace=ws, data_dir=data_dir, device=device, progress=on_progress)  # fmt: skip
        else:
            _eps_match_stage(preset, targets, ws, data_dir, device, on_progress)
        times[stage.kind] = time.perf_counter() - t0
    return times
