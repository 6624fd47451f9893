"""The one pipeline of a multi-model run: a study becomes a plan of frozen stages (trainings, evaluations, the
transfer matrix, the eps match), which ``run_study`` runs on an executor (this process, or Ray).

Each stage is resumable on its own: trainings resume per epoch, evaluations per result cell, so a run
interrupted anywhere and started again does only what is left. ``dc-robust reproduce --preset X`` is this
pipeline on the shipped study X.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

from robustbench_dc.attacks import Attack, attacks_named
from robustbench_dc.errors import UserError
from robustbench_dc.evaluation import EvalSpec
from robustbench_dc.executors import DiagnosticsSpec, EvalJob, Executor, LocalExecutor, train_label
from robustbench_dc.names import Outcome, Regime
from robustbench_dc.planning import protocol_source_training
from robustbench_dc.results.store import StudyTarget
from robustbench_dc.study import Study, StudyModel
from robustbench_dc.train import TrainConfig, checkpoint_dir
from robustbench_dc.workspace import workspace_dir


@dataclass(frozen=True)
class TrainStage:
    config: TrainConfig

    @property
    def label(self) -> str:
        return train_label(self.config)


@dataclass(frozen=True)
class EvalStage:
    job: EvalJob

    @property
    def label(self) -> str:
        return f"evaluate {self.job.label}"


@dataclass(frozen=True)
class TransferStage:
    """Every natural model of the first seed as the black-box source for every other (role ``transfer-matrix``)."""

    models: tuple[TrainConfig, ...]
    dataset: str
    attacks: tuple[Attack, ...]
    eps: float
    n: int | None
    label = "transfer matrix (every natural model as source for every other)"


@dataclass(frozen=True)
class EpsMatchStage:
    """For FGSM and BIM: the eps at which the natural baseline's white-box accuracy is closest to the paper's (which
    states no eps), then every target evaluated there, white-box and against its protocol source."""

    baseline: TrainConfig
    targets: tuple[TrainConfig, ...]
    dataset: str
    n: int | None
    hi: float
    outcome: Outcome
    label = "eps matched to the paper's natural baseline (FGSM, BIM), every model re-evaluated there"


Stage = Union[TrainStage, EvalStage, TransferStage, EpsMatchStage]


@dataclass(frozen=True)
class Plan:
    stages: tuple[Stage, ...]

    @property
    def trainings(self) -> list[TrainConfig]:
        return [s.config for s in self.stages if isinstance(s, TrainStage)]

    @property
    def jobs(self) -> list[EvalJob]:
        return [s.job for s in self.stages if isinstance(s, EvalStage)]

    @property
    def afterwards(self) -> list[TransferStage | EpsMatchStage]:
        """The stages that read every evaluation's models (run in this process, after the executor's work)."""
        return [s for s in self.stages if isinstance(s, (TransferStage, EpsMatchStage))]


def trainings(study: Study, targets: list[tuple[StudyTarget, TrainConfig | None]] | None = None) -> list[TrainConfig]:
    """Every training the study needs, each once: the targets', their protocol sources', then the natural baseline
    that the eps match is found on."""
    configs = [c for _, c in (targets or _targets(study)) if c is not None]
    if study.source == "protocol":
        configs += [protocol_source_training(c.to_dict()) for c in configs]
    if study.eps_match:
        configs.append(_match_baseline(study))
    return list({json.dumps(c.to_dict(), sort_keys=True): c for c in configs}.values())


def _first_seed(study: Study) -> int:
    """The study file's first training seed, also when the command line runs others (``--seeds``): the seed whose
    models the transfer matrix holds and whose natural baseline the eps match is found on, so that seeds computed
    in separate runs share one matrix and one matched eps."""
    return (study.declared_seeds or study.seeds)[0]


def _match_baseline(study: Study) -> TrainConfig:
    return study.train_config(study.model("baseline"), Regime.NATURAL, _first_seed(study))


def _targets(study: Study) -> list[tuple[StudyTarget, TrainConfig | None]]:
    return [
        (t, None if t.seed < 0 else study.train_config(study.model(t.label), t.training, t.seed))
        for t in study.targets()
    ]


def external_spec(study: Study, m: StudyModel) -> tuple[str, dict[str, Any]]:
    """A third-party model's file (relative paths are relative to the study file) and ``load_external`` arguments."""
    here = Path(study.path).parent if study.path and Path(study.path).is_file() else None
    path = Path(m.checkpoint or "")
    if not path.is_absolute() and here is not None:
        path = here / path
    factory = m.factory
    if factory is not None:
        if not study.trust_code:
            raise UserError(
                f"study {study.name!r}: model {m.label!r} has factory = {factory!r}, which imports and runs that code; "
                "if you trust it, run again with --trust-code (Python: load_study(..., trust_code=True))"
            )
        file, _, function = factory.rpartition(":")
        if file.endswith(".py") and not Path(file).is_absolute() and here is not None:
            factory = f"{here / file}:{function}"
    return str(path.resolve()), dict(
        arch=m.arch if m.factory is None else None,
        model_name=m.model,
        width=m.width,
        factory=factory,
        mean=m.mean,
        std=m.std,
        label=m.label,
    )


def attacks_for(study: Study, config: TrainConfig | None) -> tuple[str, ...]:
    """The study's attacks for one target; bpda-pgd only where it differs from PGD (a zoo model with a decoupled
    layer or a hard decision: for the others it is plain PGD with the same seed, and the report says n/a)."""
    if "bpda-pgd" not in study.attacks or config is None:
        return study.attacks
    from robustbench_dc.attacks.bpda import has_surrogate
    from robustbench_dc.train import build

    return study.attacks if has_surrogate(build(config)) else tuple(a for a in study.attacks if a != "bpda-pgd")


def jobs(study: Study, targets: list[tuple[StudyTarget, TrainConfig | None]] | None = None) -> list[EvalJob]:
    """One evaluation job per target: its attacks at every eps, Lipschitz estimates and, for a checkpoint or a
    model of one of ``diagnostics_seeds`` (every seed by default), the diagnostics."""
    out = []
    diagnostics = (
        DiagnosticsSpec(study.table_eps, study.diagnostics_n, study.square_queries, study.attack_outcome)
        if study.diagnostics
        else None
    )
    for t, config in targets or _targets(study):
        source = (
            protocol_source_training(config.to_dict()) if study.source == "protocol" and config is not None else None
        )
        out.append(
            EvalJob(
                label=t.describe(),
                dataset=study.dataset,
                spec=EvalSpec(
                    attacks=tuple(attacks_named(attacks_for(study, config), outcome=study.attack_outcome)),
                    eps=study.all_eps,
                    eps_l2=study.eps_l2,
                    n=study.n,
                    lipschitz_n=study.lipschitz_n,
                ),
                target=config,
                external=None if config is not None else external_spec(study, study.model(t.label)),
                source=source,
                diagnostics=diagnostics if _diagnosed(study, t) else None,
                names=t,
            )
        )
    return out


def _diagnosed(study: Study, target: StudyTarget) -> bool:
    """The diagnostics check how a model is evaluated, not a number averaged over seeds: a study may run them on
    some training seeds only (a checkpoint, which has no seed, always)."""
    return study.diagnostics_seeds is None or target.seed < 0 or target.seed in study.diagnostics_seeds


def plan(study: Study) -> Plan:
    """Trainings first (every target's protocol black-box source among them), then evaluations, then, where the
    study asks for them, the transfer matrix of the first seed's natural models and the eps match (found on the first
    seed's natural baseline, every target of this run evaluated there)."""
    targets = _targets(study)
    configs = [c for _, c in targets if c is not None]
    stages: list[Stage] = [TrainStage(c) for c in trainings(study, targets)]
    stages += [EvalStage(j) for j in jobs(study, targets)]
    if study.transfer_matrix and _first_seed(study) in study.seeds:
        natural = tuple(c for c in configs if c.training == Regime.NATURAL and c.seed == _first_seed(study))
        attacks = tuple(attacks_named(study.attacks, outcome=study.attack_outcome))
        stages.append(TransferStage(natural, study.dataset, attacks, study.table_eps, study.n))
    if study.eps_match:
        stages.append(
            EpsMatchStage(
                _match_baseline(study), tuple(configs), study.dataset, study.n, max(study.eps), study.attack_outcome
            )
        )
    return Plan(tuple(stages))


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


def _run_transfer(
    stage: TransferStage, ws: Path, data_dir: Any, device: Any, progress: Callable[[str], None] | None
) -> None:
    from robustbench_dc.evaluation import transfer_matrix
    from robustbench_dc.targets import from_checkpoint

    models = [from_checkpoint(checkpoint_dir(c, ws)) for c in stage.models]
    transfer_matrix(
        models,
        dataset=stage.dataset,
        attacks=stage.attacks,
        eps=stage.eps,
        n=stage.n,
        workspace=ws,
        data_dir=data_dir,
        device=device,
        progress=progress,
    )


def _run_eps_match(
    stage: EpsMatchStage, ws: Path, data_dir: Any, device: Any, progress: Callable[[str], None] | None
) -> None:
    from robustbench_dc.evaluation import evaluate
    from robustbench_dc.paper import paper_tables, paper_value
    from robustbench_dc.targets import from_checkpoint

    paper = paper_tables()
    kw = dict(
        dataset=stage.dataset,
        n=stage.n,
        workspace=ws,
        data_dir=data_dir,
        lipschitz=False,
        device=device,
        progress=progress,
    )
    baseline = from_checkpoint(checkpoint_dir(stage.baseline, ws))
    targets = [
        (
            from_checkpoint(checkpoint_dir(c, ws)),
            from_checkpoint(checkpoint_dir(protocol_source_training(c.to_dict()), ws)),
        )
        for c in stage.targets
    ]
    for attack in attacks_named(("fgsm", "bim"), outcome=stage.outcome):
        value = paper_value(paper, 7, "natural", attack.name, "baseline")
        if value is None:
            continue
        wanted = value / 100

        def accuracy_at(eps: float, attack: Attack = attack) -> float:
            return evaluate(baseline, attacks=[attack], eps=[eps], **kw).accuracy_of(attack.name, eps)

        eps = match_eps(accuracy_at, wanted, hi=stage.hi)
        if eps is None:
            continue
        for target, source in targets:
            evaluate(target, attacks=[attack], eps=[eps], source=source, **kw)


def run_study(
    study: Study,
    *,
    workspace: str | Path | None = None,
    data_dir: str | Path | None = None,
    device: str | None = "auto",
    executor: Executor | None = None,
    on_stage: Callable[[int, int, str], None] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Run every stage of ``plan(study)`` not already done: trainings and evaluations on ``executor`` (default: this
    process), then the transfer matrix and the eps match here. Returns the wall time of each kind (seconds, this
    run)."""
    ws = workspace_dir(workspace)
    the_plan = plan(study)
    check_one_precision(study, the_plan.trainings, ws, device)
    total = len(the_plan.stages)
    times = (executor or LocalExecutor()).run(
        the_plan.trainings,
        the_plan.jobs,
        workspace=ws,
        data_dir=data_dir,
        device=device,
        on_stage=None if on_stage is None else lambda i, _, label: on_stage(i, total, label),
        on_progress=on_progress,
    )
    for i, stage in enumerate(the_plan.afterwards, start=total - len(the_plan.afterwards)):
        if on_stage is not None:
            on_stage(i, total, stage.label)
        t0 = time.perf_counter()
        if isinstance(stage, TransferStage):
            _run_transfer(stage, ws, data_dir, device, on_progress)
            times["transfer"] = time.perf_counter() - t0
        else:
            _run_eps_match(stage, ws, data_dir, device, on_progress)
            times["eps-match"] = time.perf_counter() - t0
    return times


def check_one_precision(study: Study, configs: list[TrainConfig], ws: Path, device: str | None) -> None:
    """Before any training: precision "auto" resolves per device (bf16 where computed in hardware, else fp32), so a
    study continued on another machine could train its other models or seeds in another precision; their report
    could not average them (other recipes) nor compare them fairly. Refused here, naming what ran how."""
    from robustbench_dc.checkpoint import CARD_FILE, read_card
    from robustbench_dc.devices import resolve_device, training_mode

    auto = [c for c in configs if c.precision == "auto"]
    finished = {
        train_label(c): read_card(checkpoint_dir(c, ws)).compute["precision"]
        for c in auto
        if (checkpoint_dir(c, ws) / CARD_FILE).is_file()
    }
    if not finished or len(finished) == len(auto):
        return
    dev = resolve_device(device)
    here = training_mode(dev, "auto").precision
    other = sorted(label for label, precision in finished.items() if precision != here)
    if other:
        raise UserError(
            f"study {study.name!r}: {len(other)} of its finished trainings ran in {finished[other[0]]} "
            f"({', '.join(other[:3])}{', ...' if len(other) > 3 else ''}), and this {dev} would train the rest in "
            f"{here}; one study's models share one precision (its report never averages or pairs other recipes). Go on "
            "where 'auto' resolves to it (bf16: a CUDA GPU, or a CPU with AVX-512 bf16 or AMX), or set "
            f'precision = "{here}" under [training] (every model then retrains)'
        )


def check_data(study: Study, data_dir: str | Path | None) -> None:
    """Before any work: a CIFAR-10 study needs its data folder (the other datasets are bundled or installed)."""
    if study.dataset == "cifar10" and not data_dir:
        raise UserError(
            f"study {study.name!r} needs CIFAR-10: pass --data-dir DIR (torchvision batches or train/ and test/ image "
            "folders; with --download, torchvision's copy is fetched into it); Python: data_dir="
        )


def record_targets(study: Study, workspace: str | Path | None = None) -> None:
    """Make the store say which function each of the study's trained or third-party models is (what its report
    reads): for cells computed before the store recorded it, and where the study file changed since (the recorded
    spec differs from the plan's). Models not trained yet are left out; the report says so."""
    from robustbench_dc.checkpoint import CARD_FILE
    from robustbench_dc.executors import job_target
    from robustbench_dc.results.store import ResultStore

    ws = workspace_dir(workspace)
    with ResultStore(ws) as store:
        known = store.study_targets(study.name)
        for job in jobs(study):
            if job.names is None or known.get(job.names, ("", ""))[1] == job.planned_model():
                continue
            if job.target is not None and not (checkpoint_dir(job.target, ws) / CARD_FILE).exists():
                continue
            store.put_study_target(job.names, job_target(job, ws).function_id, job.planned_model())
