"""Where a study's work runs: one process after another (``local``), or as Ray tasks across cores, GPUs and
machines (``ray``, the optional extra ``robustbench-dc[ray]``).

The work is the same for both: trainings (each resumable per epoch), then evaluation jobs (a model's attacks,
Lipschitz estimates and diagnostics, each needing its training and its black-box source's). With Ray, every
training and every job is a task; a job's trainings are passed to it as arguments, so Ray starts it when they
are done (the driver never waits on them). The driver is the only writer of the result store: a job evaluates
into a private store in its worker and returns its cells, which the driver writes one transaction per cell.

Checkpoints reach the jobs in one of two ways:

- ``shared_workspace=True`` (default): every worker sees the workspace at the same path (one machine, or a
  network file system). Trainings write their checkpoints and per-epoch resume state there, as locally, so a
  killed run resumes.
- ``shared_workspace=False``: trainings run in a worker-private directory and return their checkpoint files
  through Ray's object store; the driver writes them into its workspace, and the jobs that need them receive
  them as arguments. A training interrupted on a worker starts over there (its resume state is private).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from robustbench_dc.checkpoint import CARD_FILE
from robustbench_dc.devices import usable_cpus
from robustbench_dc.errors import UserError
from robustbench_dc.evaluation import EvalSpec
from robustbench_dc.files import atomic_write_bytes
from robustbench_dc.names import Outcome
from robustbench_dc.progress import as_progress
from robustbench_dc.results.cells import CellKey
from robustbench_dc.results.store import ResultStore, StudyTarget
from robustbench_dc.train import TrainConfig, checkpoint_dir, train
from robustbench_dc.workspace import cache_dir, models_dir, results_path, workspace_dir

EXECUTORS = ("local", "ray")

OnStage = Callable[[int, int, str], None]


@dataclass(frozen=True)
class DiagnosticsSpec:
    """The diagnostics of one job: centred on ``eps``, on the first ``n`` test images (None: all)."""

    eps: float = 8 / 255
    n: int | None = 500
    square_queries: int = 300
    outcome: Outcome = Outcome.ANY_ITERATE  # what its iterative attacks' cells record


@dataclass(frozen=True)
class EvalJob:
    """One model's evaluation: what ``spec`` measures (role ``table``), then, unless ``diagnostics`` is None, the
    diagnostics. The model is a zoo training (``target``) or a third-party file (``external``: path and
    ``load_external`` arguments); ``source`` is the black-box source's training, if any."""

    label: str
    dataset: str
    spec: EvalSpec
    target: TrainConfig | None = None
    external: tuple[str, dict[str, Any]] | None = None
    source: TrainConfig | None = None
    diagnostics: DiagnosticsSpec | None = DiagnosticsSpec()
    names: StudyTarget | None = None  # which model of which study this is: recorded in the store for the study's report

    def planned_model(self) -> str:
        """What was planned for this model (its training, or its file and loader arguments), as the store records it."""
        return json.dumps(
            self.target.to_dict() if self.target is not None else self.external, sort_keys=True, default=str
        )

    def needs(self) -> list[TrainConfig]:
        return [c for c in (self.target, self.source) if c is not None]


def job_target(job: EvalJob, workspace: Path):
    """The model a job evaluates: its zoo checkpoint in ``workspace`` (trained before), or its third-party file."""
    from robustbench_dc.data import dataset_info
    from robustbench_dc.external import load_external
    from robustbench_dc.targets import from_checkpoint

    if job.target is not None:
        return from_checkpoint(checkpoint_dir(job.target, workspace))
    if job.external is None:
        raise ValueError(f"job {job.label!r} names neither a training nor a file")
    path, kwargs = job.external
    return load_external(path, dataset_info(job.dataset), **kwargs)


def run_job(
    job: EvalJob,
    workspace: Path,
    data_dir: Any = None,
    device: Any = "auto",
    progress: Callable[[str], None] | None = None,
) -> None:
    """Evaluate one job into ``workspace``'s store (its checkpoints must be there)."""
    from robustbench_dc.diagnostics.run import run_diagnostics
    from robustbench_dc.evaluation import evaluate
    from robustbench_dc.targets import from_checkpoint

    target = job_target(job, workspace)
    source = None if job.source is None else from_checkpoint(checkpoint_dir(job.source, workspace))
    kw = dict(
        dataset=job.dataset, source=source, workspace=workspace, data_dir=data_dir, device=device, progress=progress
    )
    evaluate(target, job.spec, **kw)
    if job.diagnostics is not None:
        d = job.diagnostics
        run_diagnostics(target, eps=d.eps, n=d.n, square_queries=d.square_queries, outcome=d.outcome, **kw)
    if job.names is not None:
        with ResultStore(workspace) as store:
            store.put_study_target(job.names, target.function_id, job.planned_model())


class Executor(Protocol):
    def run(
        self,
        trainings: list[TrainConfig],
        jobs: list[EvalJob],
        *,
        workspace: Path,
        data_dir: Any,
        device: Any,
        on_stage: OnStage | None = None,
        on_progress: Callable[[str], None] | None = None,
    ) -> dict[str, float]: ...


def train_label(c: TrainConfig) -> str:
    return f"train {c.model} {c.arch_label} {c.training_label} seed {c.seed}"


class LocalExecutor:
    """Everything in this process, trainings first, then jobs; returns the wall time of each (seconds)."""

    def run(
        self,
        trainings: list[TrainConfig],
        jobs: list[EvalJob],
        *,
        workspace: Path,
        data_dir: Any = None,
        device: Any = "auto",
        on_stage: OnStage | None = None,
        on_progress: Callable[[str], None] | None = None,
    ) -> dict[str, float]:
        times = {"train": 0.0, "eval": 0.0}
        total = len(trainings) + len(jobs)
        progress = as_progress(on_progress)
        for i, config in enumerate(trainings):
            if on_stage is not None:
                on_stage(i, total, train_label(config))
            t0 = time.perf_counter()

            def on_batch(s: Any, c: TrainConfig = config) -> None:
                progress.advance(s.epoch * s.batches + s.batch + 1, c.epochs * s.batches, "batches")

            train(config, workspace=workspace, data_dir=data_dir, device=device, on_batch=on_batch)
            times["train"] += time.perf_counter() - t0
        for j, job in enumerate(jobs):
            if on_stage is not None:
                on_stage(len(trainings) + j, total, f"evaluate {job.label}")
            t0 = time.perf_counter()
            run_job(job, workspace, data_dir, device, progress)
            times["eval"] += time.perf_counter() - t0
        return times


# --- Ray ---------------------------------------------------------------------------------------------------


def _checkpoint_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file() and p.name != "resume.pt"}


def _ray_train(
    config: TrainConfig,
    workspace: str,
    data_dir: Any,
    device: Any,
    shared: bool,
    threads: int,
    train_function: Callable[..., Path],
) -> tuple[str, dict[str, bytes]]:
    """A training task: the checkpoint's path relative to the workspace, and its files unless the workspace is
    shared."""
    import torch

    torch.set_num_threads(threads)
    if shared:
        directory = train_function(config, workspace=Path(workspace), data_dir=data_dir, device=device)
        return str(directory.relative_to(workspace)), {}
    with tempfile.TemporaryDirectory(prefix="dc-robust-train-") as private:
        directory = train_function(config, workspace=Path(private), data_dir=data_dir, device=device)
        return str(directory.relative_to(private)), _checkpoint_files(directory)


def _private_workspace(workspace: Path, shared: bool, checkpoints: tuple[tuple[str, dict[str, bytes]], ...]) -> Path:
    private = Path(tempfile.mkdtemp(prefix="dc-robust-eval-"))
    if shared:
        os.symlink(models_dir(workspace), models_dir(private), target_is_directory=True)
        os.symlink(cache_dir(workspace), cache_dir(private), target_is_directory=True)
        if results_path(workspace).exists():  # start from the cells already stored (a consistent copy)
            with sqlite3.connect(results_path(workspace)) as main, sqlite3.connect(results_path(private)) as copy:
                main.backup(copy)
    else:
        for relative, files in checkpoints:
            for name, data in files.items():
                atomic_write_bytes(private / relative / name, data)
    return private


def _ray_job(
    job: EvalJob,
    workspace: str,
    data_dir: Any,
    device: Any,
    shared: bool,
    threads: int,
    *checkpoints: tuple[str, dict[str, bytes]],
) -> dict[str, Any]:
    """An evaluation task: evaluates into a private store and returns the cells (and model descriptions) it added."""
    import torch

    torch.set_num_threads(threads)
    private = _private_workspace(Path(workspace), shared, checkpoints)
    try:
        before = set()
        if results_path(private).exists():
            with ResultStore(private) as store:
                before = {c.key.store_key() for c in store.cells()}
        run_job(job, private, data_dir, device)
        with ResultStore(private) as store:
            cells = [
                (c.key.to_dict(), c.metrics, c.provenance, c.seconds)
                for c in store.cells()
                if c.key.store_key() not in before
            ]
            names = (
                []
                if job.names is None
                else [(t, *fs) for t, fs in store.study_targets(job.names.study).items() if t == job.names]
            )
            return {"cells": cells, "functions": store.functions(), "targets": names}
    finally:
        shutil.rmtree(private, ignore_errors=True)


class RayExecutor:
    """Trainings and jobs as Ray tasks (see the module's docstring); ``address``: a running cluster's, or None
    to start a local instance. Each task asks for ``cpus_per_task`` CPUs and, on CUDA, one GPU, and runs that many
    torch threads. The default is what a local run on an idle machine uses (``usable_cpus``): both give the same
    weights and cells bit for bit (oneDNN's reductions follow the thread count); fewer CPUs per task run more tasks
    at once and train other bits, which each card records (``compute.threads``)."""

    def __init__(
        self,
        address: str | None = None,
        *,
        shared_workspace: bool = True,
        cpus_per_task: int | None = None,
        max_retries: int = 3,
        train_function: Callable[..., Path] = train,
        init_options: dict[str, Any] | None = None,
    ) -> None:
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            raise UserError(
                "the Ray executor needs Ray: pip install 'robustbench-dc[ray]' (or pip install ray)"
            ) from exc
        if cpus_per_task is None:
            cpus_per_task = usable_cpus()
        if cpus_per_task < 1:
            raise UserError(f"cpus_per_task must be >= 1, got {cpus_per_task}")
        self.address, self.shared, self.cpus, self.retries = address, shared_workspace, cpus_per_task, max_retries
        self.train_function, self.init_options = train_function, dict(init_options or {})

    def _resources(self, device: Any) -> dict[str, Any]:
        import ray

        gpus = ray.cluster_resources().get("GPU", 0)
        wants_gpu = str(device).startswith("cuda") or (str(device) == "auto" and gpus > 0)
        if str(device).startswith("cuda") and gpus == 0:
            raise UserError(f"--device {device}: the Ray cluster has no GPU; use --device cpu or auto")
        return {
            "num_cpus": self.cpus,
            "num_gpus": 1 if wants_gpu else 0,
            "max_retries": self.retries,
            "retry_exceptions": False,
        }

    def run(
        self,
        trainings: list[TrainConfig],
        jobs: list[EvalJob],
        *,
        workspace: Path,
        data_dir: Any = None,
        device: Any = "auto",
        on_stage: OnStage | None = None,
        on_progress: Callable[[str], None] | None = None,
    ) -> dict[str, float]:
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, **self.init_options)
        try:
            return self._run(
                trainings, jobs, workspace=workspace_dir(workspace), data_dir=data_dir, device=device, on_stage=on_stage
            )
        finally:
            if started_here:
                ray.shutdown()

    def _run(
        self,
        trainings: list[TrainConfig],
        jobs: list[EvalJob],
        *,
        workspace: Path,
        data_dir: Any,
        device: Any,
        on_stage: OnStage | None,
    ) -> dict[str, float]:
        import ray

        t0 = time.perf_counter()
        options = self._resources(device)
        data = None if data_dir is None else str(Path(data_dir).resolve())
        task = (str(workspace), data, "cuda" if options["num_gpus"] else "cpu", self.shared, self.cpus)
        refs = self._submit_trainings(ray.remote(_ray_train).options(**options), trainings, workspace, task)
        missing = [c for j in jobs for c in j.needs() if _key(c) not in refs]
        if missing:
            raise ValueError(f"jobs need trainings that were not planned: {[train_label(c) for c in missing]}")
        job_task = ray.remote(_ray_job).options(**options)
        job_refs = {job_task.remote(j, *task, *[refs[_key(c)] for c in j.needs()]): j for j in jobs}
        labels = {r: train_label(c) for c, r in zip(trainings, refs.values())} | {
            r: f"evaluate {j.label}" for r, j in job_refs.items()
        }
        pending, done, total = list(labels), 0, len(labels)
        with ResultStore(workspace) as store:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                result = ray.get(ready[0])
                if ready[0] in job_refs:
                    _store_job_result(store, result)
                elif not self.shared:
                    _write_checkpoint(workspace, *result)
                if on_stage is not None:
                    on_stage(done, total, f"done: {labels[ready[0]]}")
                done += 1
        return {"ray (all tasks)": time.perf_counter() - t0}

    def _submit_trainings(
        self, train_task: Any, trainings: list[TrainConfig], workspace: Path, task: tuple[Any, ...]
    ) -> dict[str, Any]:
        """One object reference per training: its task, or, without a shared workspace, a checkpoint trained
        before, whose files go to the object store as they are."""
        import ray

        refs = {}
        for c in trainings:
            directory = checkpoint_dir(c, workspace)
            if not self.shared and (directory / CARD_FILE).exists():
                refs[_key(c)] = ray.put((str(directory.relative_to(workspace)), _checkpoint_files(directory)))
            else:
                refs[_key(c)] = train_task.remote(c, *task, self.train_function)
        return refs


def _store_job_result(store: ResultStore, result: dict[str, Any]) -> None:
    """An evaluation task's functions, cells and study targets, into the driver's store."""
    for function, info in result["functions"].items():
        store.put_function(function, info)
    for key_dict, metrics, provenance, seconds in result["cells"]:
        store.put(CellKey.from_dict(key_dict), metrics, seconds, provenance)
    for target, function, spec in result["targets"]:
        store.put_study_target(target, function, spec)


def _write_checkpoint(workspace: Path, relative: str, files: dict[str, bytes]) -> None:
    """A checkpoint that travelled through the object store, unless the workspace has it; the card last, since
    it marks a finished run."""
    if (workspace / relative / CARD_FILE).exists():
        return
    for name, payload in sorted(files.items(), key=lambda f: f[0] == CARD_FILE):
        atomic_write_bytes(workspace / relative / name, payload)


def _key(config: TrainConfig) -> str:
    return json.dumps(config.to_dict(), sort_keys=True)


def get_executor(
    name: str, *, ray_address: str | None = None, shared_workspace: bool = True, cpus_per_task: int | None = None
) -> Executor:
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(ray_address, shared_workspace=shared_workspace, cpus_per_task=cpus_per_task)
    raise UserError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")
