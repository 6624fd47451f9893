"""The Ray executor on a local Ray instance (2 CPUs): the same checkpoints and cells as the local executor,
the driver as the only writer, and a training whose worker dies is retried."""

import os
from dataclasses import replace
from pathlib import Path

import pytest
from safetensors.torch import load_file

pytest.importorskip("ray", reason="the Ray executor is an optional extra: pip install 'robustbench-dc[ray]'")

from robustbench_dc.executors import LocalExecutor, RayExecutor  # noqa: E402
from robustbench_dc.pipeline import plan, run_study  # noqa: E402
from robustbench_dc.results.store import ResultStore  # noqa: E402
from robustbench_dc.study import StudyModel, load_study, parse_study  # noqa: E402
from robustbench_dc.train import train  # noqa: E402

RAY = {"num_cpus": 2}
_SMOKE = load_study("smoke")
SMOKE = replace(
    _SMOKE,
    dataset="synthetic",
    models=(StudyModel("tanhconv", model="tanhconv"),),
    eps=(8 / 255,),
    table_eps=8 / 255,
    lipschitz_n=10,
    diagnostics_n=24,
    square_queries=10,
    eps_match=False,
    training={**_SMOKE.training, "epochs": 1, "width": 0.125},
)


def _cells(ws: Path) -> dict[str, dict]:
    with ResultStore(ws) as store:
        return {c.key.store_key(): c.metrics for c in store.cells()}


def _weights(ws: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(ws)): load_file(str(p)) for p in (ws / "models").rglob("model.safetensors")}


def _same_weights(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(
        a[d].keys() == b[d].keys() and all(torch.equal(a[d][k], b[d][k]) for k in a[d]) for d in a
    )


@pytest.fixture
def two_threads():
    """The local run with as many threads as each Ray task (cpus_per_task=2): oneDNN's reductions follow the
    thread count, so runs on other thread counts differ in their last bits (the card and each cell's provenance
    say how many threads made them)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_smoke_preset_on_ray_equals_local(tmp_path, two_threads):
    run_study(SMOKE, workspace=tmp_path / "local", executor=LocalExecutor())
    seen = []
    run_study(
        SMOKE,
        workspace=tmp_path / "ray",
        executor=RayExecutor(cpus_per_task=2, init_options=RAY),
        on_stage=lambda i, n, label: seen.append(label),
    )
    trainings = plan(SMOKE).trainings
    assert len(list((tmp_path / "ray" / "models").rglob("card.json"))) == len(trainings)
    assert _same_weights(_weights(tmp_path / "local"), _weights(tmp_path / "ray"))
    local, ray_cells = _cells(tmp_path / "local"), _cells(tmp_path / "ray")
    assert local.keys() == ray_cells.keys() and local == ray_cells
    assert any(label.startswith("done: evaluate") for label in seen)


def _dying_train(marker: Path):
    """A training function whose worker process dies the first time it is called."""

    def run(config, **kwargs):
        if not marker.exists():
            marker.write_text("killed once")
            os._exit(1)
        return train(config, **kwargs)

    return run


def test_killed_training_worker_is_retried_and_the_store_is_complete(tmp_path, two_threads):
    import cloudpickle

    import tests.test_ray as this

    cloudpickle.register_pickle_by_value(this)
    study = parse_study(
        {
            "name": "tiny",
            "dataset": "synthetic",
            "attacks": ["fgsm"],
            "eps": ["8/255"],
            "n": 32,
            "diagnostics": False,
            "lipschitz_n": 8,
            "source": "protocol",
            "training": {"width": 0.125, "epochs": 1, "batch_size": 32, "recalibration_batches": 2},
            "models": [{"label": "plain", "arch": "cnn9"}, {"label": "decoupled", "model": "tanhconv", "arch": "cnn9"}],
        },
        "tiny.toml",
    )
    run_study(study, workspace=tmp_path / "local", device="cpu")
    marker = tmp_path / "killed"
    executor = RayExecutor(
        cpus_per_task=2, shared_workspace=False, train_function=_dying_train(marker), init_options=RAY
    )
    run_study(study, workspace=tmp_path / "ray", device="cpu", executor=executor)
    assert marker.exists()  # a worker did die
    assert _same_weights(
        _weights(tmp_path / "local"), _weights(tmp_path / "ray")
    )  # written by the driver from the object store
    local, ray_cells = _cells(tmp_path / "local"), _cells(tmp_path / "ray")
    assert local == ray_cells  # complete, and one row per cell (keys are unique)
    with ResultStore(tmp_path / "ray") as store:
        assert store.count() == len(local)


def test_ray_tasks_default_to_the_local_thread_count():
    """Tasks of one CPU trained other bits than a local run (other thread count) with no word; the default is now
    the local run's CPUs, so the two executors agree unless the user trades that for parallelism."""
    from robustbench_dc.devices import usable_cpus

    assert RayExecutor(init_options=RAY).cpus == usable_cpus()
    assert RayExecutor(cpus_per_task=1, init_options=RAY).cpus == 1
