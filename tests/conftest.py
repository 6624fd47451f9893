import os
import sys

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))  # OMP_NUM_THREADS=1 runs the suite on a one-thread path

#: The trained models' precision: DC_ROBUST_TEST_PRECISION=fp32 runs the suite on another floating-point path than
#: the default (bf16 where the CPU computes it), to show that no test rests on the bits one CPU's kernels happen to
#: train.
TRAINING_PRECISION = os.environ.get("DC_ROBUST_TEST_PRECISION", "auto")


@pytest.fixture(autouse=True)
def _no_default_workspace(tmp_path_factory, monkeypatch):
    """No test writes into the user's own workspace: the default is a temporary folder (a test may set its own)."""
    monkeypatch.setenv("DC_ROBUST_WORKSPACE", str(tmp_path_factory.mktemp("default-workspace")))


@pytest.fixture(autouse=True)
def _an_idle_machine(request, monkeypatch):
    """Commands that run models take the CPUs that other processes leave free when they start: the tests read an
    idle machine, so that their threads (and bits) do not follow whatever else the CI machine runs. A test marked
    ``real_load`` reads the real one."""
    if request.node.get_closest_marker("real_load") is None:
        from robustbench_dc import devices

        monkeypatch.setattr(devices, "busy_cpus", lambda sample_s=0.25: 0.0)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    monkeypatch.setenv("DC_ROBUST_WORKSPACE", str(ws))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return ws


@pytest.fixture(scope="session")
def digits_models(tmp_path_factory):
    """Small models trained once on digits for the tests that need trained models: {(name, training): dir}."""
    from robustbench_dc.train import TrainConfig, train

    ws = tmp_path_factory.mktemp("digits-ws")
    out = {}
    for name, training, seed in [
        ("baseline", "natural", 0),
        ("tanhconv", "natural", 0),
        ("baseline", "fgsm", 0),
        ("tanhconv", "fgsm", 0),
        ("baseline", "natural", 1),
    ]:
        config = TrainConfig(
            model=name,
            dataset="digits",
            width=0.25,
            epochs=4,
            batch_size=64,
            lr=0.05,
            training=training,
            seed=seed,
            precision=TRAINING_PRECISION,
        )
        out[(name, training, seed)] = train(config, workspace=ws)
    out["workspace"] = ws
    return out


def run_cli(*args: str, cwd=None, env=None, timeout=600):
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "robustbench_dc.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def browser_dom(page) -> str:
    """The DOM a headless Chromium builds from the HTML file ``page`` (scripts run); skips where there is none."""
    import shutil
    import subprocess

    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no headless browser here (Debian: apt-get install chromium); the HTML is still checked as text")
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
