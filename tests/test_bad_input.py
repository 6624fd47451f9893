"""Bad input ends in a clear error before any work, never in a traceback or a silently wrong number."""

import json

import pytest

from robustbench_dc.checkpoint import CARD_FILE, load_checkpoint, resolve_checkpoint
from robustbench_dc.errors import CheckpointError, UserError
from robustbench_dc.reports.render import Table, render_markdown
from robustbench_dc.train import TrainConfig, train
from tests.conftest import run_cli


@pytest.mark.parametrize(
    "field,value", [("width", float("inf")), ("width", 0.0), ("lr", float("nan")), ("weight_decay", -1.0)]
)
def test_train_config_rejects_non_finite_and_out_of_range_numbers(field, value):
    with pytest.raises(UserError, match=f"{field} must be a finite number"):
        TrainConfig(model="baseline", dataset="digits", **{field: value})


def test_cli_rejects_infinite_width_with_a_message(tmp_path):
    r = run_cli("train", "--model", "baseline", "--dataset", "digits", "--width", "inf", "--workspace", str(tmp_path))
    assert r.returncode == 2 and "not a finite number" in r.stderr and "Traceback" not in r.stderr


def test_unwritable_workspace_is_found_before_training(tmp_path):
    blocker = tmp_path / "ws"
    blocker.write_text("a file, not a directory")
    with pytest.raises(UserError, match="is a file, not a folder; give --workspace a folder"):
        train(TrainConfig(model="baseline", dataset="synthetic", width=0.125, epochs=1), workspace=blocker)


def test_a_folder_named_like_a_model_does_not_shadow_the_store(digits_models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tanhconv").mkdir()
    found = resolve_checkpoint("tanhconv", dataset="digits", workspace=digits_models["workspace"])
    assert found == digits_models[("tanhconv", "natural", 0)]


def test_card_cannot_point_outside_its_directory(digits_models, tmp_path):
    import shutil

    d = tmp_path / "ckpt"
    shutil.copytree(digits_models[("baseline", "natural", 0)], d)
    card = json.loads((d / CARD_FILE).read_text())
    card["weights"]["file"] = "../elsewhere.safetensors"
    (d / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="not inside the checkpoint directory"):
        load_checkpoint(d)


def test_labels_cannot_break_markdown_tables():
    text = render_markdown([Table(["model"], [["evil | label\n# Injected heading"]])])
    assert "\n# Injected" not in text and "evil \\| label # Injected heading" in text


def test_diagnostics_refuse_zero_square_queries(digits_models, tmp_path):
    from robustbench_dc.diagnostics.run import run_diagnostics
    from robustbench_dc.targets import from_checkpoint

    with pytest.raises(UserError, match="square_queries must be >= 1"):
        run_diagnostics(
            from_checkpoint(digits_models[("baseline", "natural", 0)]),
            dataset="digits",
            square_queries=0,
            workspace=tmp_path,
        )


def test_the_command_line_parser_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, robustbench_dc.cli as c; c.build_parser(); assert 'torch' not in sys.modules, 'torch imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_legacy_and_data_parallel_state_dicts_load(tmp_path):
    import torch

    from robustbench_dc.data import dataset_info
    from robustbench_dc.external import load_external
    from robustbench_dc.models import create_model

    model = create_model("baseline", width=0.125, in_channels=1, input_size=8)
    state = {f"module.{k}": v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "dp.pt")
    loaded = load_external(tmp_path / "dp.pt", dataset_info("digits"), arch="cnn9", width=0.125)
    assert loaded.info.weights_sha256  # loaded: prefix stripped, old BatchNorm counters filled in


def test_factory_from_a_file_and_a_factory_that_raises(tmp_path):
    import torch

    from robustbench_dc.data import dataset_info
    from robustbench_dc.external import load_external
    from tests.thirdparty import SmallNet

    (tmp_path / "mynet.py").write_text(
        "from tests.thirdparty import SmallNet\n\ndef build():\n    return SmallNet()\n\ndef broken():\n    raise "
        "RuntimeError('no GPU here')\n"
    )
    torch.save(SmallNet().state_dict(), tmp_path / "w.pt")
    info = dataset_info("digits")
    assert load_external(tmp_path / "w.pt", info, factory=f"{tmp_path / 'mynet.py'}:build").info.format == "state-dict"
    with pytest.raises(UserError, match="raised RuntimeError: no GPU here"):
        load_external(tmp_path / "w.pt", info, factory=f"{tmp_path / 'mynet.py'}:broken")


def test_a_corrupt_image_is_named(tmp_path):
    from robustbench_dc.data import load_dataset
    from tests.test_identity import _write_cifar_like

    _write_cifar_like(tmp_path / "png", "png")
    bad = tmp_path / "png" / "test" / "class3" / "1.png"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(UserError, match=r"class3/1.png: cannot decode this image"):
        load_dataset("cifar10", "test", tmp_path / "png", cache_dir=tmp_path / "cache")


def test_a_card_without_fields_and_a_bad_resume_state(digits_models, tmp_path):
    import shutil

    d = tmp_path / "ckpt"
    shutil.copytree(digits_models[("baseline", "natural", 0)], d)
    card = json.loads((d / CARD_FILE).read_text())
    del card["train_config"]
    (d / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="lacks 'train_config'"):
        load_checkpoint(d)
    config = TrainConfig(model="baseline", dataset="synthetic", width=0.125, epochs=2)
    from robustbench_dc.train import checkpoint_dir

    run = checkpoint_dir(config, tmp_path / "ws")
    run.mkdir(parents=True)
    (run / "resume.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="unreadable resume state"):
        train(config, workspace=tmp_path / "ws")


def test_two_evaluations_and_a_report_at_once_on_one_workspace(digits_models, tmp_path):
    """Concurrent writers share one store: unique temporary files, one transaction per cell, busy waits."""
    import shutil
    import subprocess
    import sys

    ws = tmp_path / "ws"
    shutil.copytree(digits_models["workspace"] / "models", ws / "models")
    common = [
        "--dataset",
        "digits",
        "--workspace",
        str(ws),
        "--n",
        "120",
        "--eps",
        "8/255,16/255",
        "--no-progress",
        "--no-lipschitz",
    ]
    evals = [
        subprocess.Popen(
            [sys.executable, "-m", "robustbench_dc.cli", "eval", "--model", m, *common],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for m in ("baseline", "tanhconv")
    ]
    import time

    from robustbench_dc.results.store import ResultStore

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and all(
        p.poll() is None for p in evals
    ):  # a report while the evaluations still write
        if (ws / "results.sqlite").exists():
            with ResultStore(ws) as store:
                if store.count() >= 2:
                    break
        time.sleep(0.2)
    report = run_cli(
        "report", "--dataset", "digits", "--workspace", str(ws), "--eps", "16/255", "--out", str(tmp_path / "r")
    )
    outputs = [p.communicate(timeout=300) for p in evals]
    assert [p.returncode for p in evals] == [0, 0], [o[1][-500:] for o in outputs]
    assert report.returncode == 0, report.stderr

    with ResultStore(ws) as store:
        keys = [c.key.store_key() for c in store.cells()]
    assert len(keys) == len(set(keys)) and len(keys) == 2 * (
        1 + 4 + 4
    )  # per model: clean, 2 attacks x 2 eps white and black


def test_a_full_disk_is_a_clear_error_and_leaves_no_partial_files(tmp_path, monkeypatch):
    import errno
    import os

    from robustbench_dc import files

    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", full)
    config = TrainConfig(model="baseline", dataset="synthetic", width=0.125, epochs=1)
    with pytest.raises(UserError, match="No space left on device; free some disk space"):
        train(config, workspace=tmp_path)
    monkeypatch.setattr(files.os, "fsync", real_fsync)
    assert not [p for p in tmp_path.rglob("*.tmp")]  # no half-written file left behind
    train(config, workspace=tmp_path)  # and the same command then works


def test_a_diverging_run_is_not_saved_as_finished(tmp_path):
    config = TrainConfig(model="baseline", dataset="synthetic", width=0.125, epochs=2, lr=1e30, precision="fp32")
    with pytest.raises(UserError, match="training diverged"):
        train(config, workspace=tmp_path)
    assert not list(tmp_path.rglob(CARD_FILE))


def test_written_files_follow_the_umask(tmp_path):
    import os

    from robustbench_dc.files import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "x.json", b"{}")
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o644  # not the temporary file's 0600


def test_torchscript_models_get_diagnostics_without_per_layer_hooks(digits_models, tmp_path):
    import torch

    from robustbench_dc.diagnostics.run import run_diagnostics
    from robustbench_dc.targets import from_checkpoint, from_module

    scripted = torch.jit.trace(
        from_checkpoint(digits_models[("baseline", "natural", 0)]).module.eval(), torch.rand(2, 1, 8, 8)
    )
    diags, _ = run_diagnostics(
        from_module(scripted, label="scripted"),
        dataset="digits",
        n=60,
        square_queries=10,
        eps=32 / 255,
        source=None,
        workspace=tmp_path,
    )
    assert {d.name: d.status for d in diags}["gradient health"] in ("pass", "warn")  # computed, no hook error


def test_every_option_has_help_with_its_default_and_dataset_is_inferred(digits_models, tmp_path):
    import argparse
    import shutil

    from robustbench_dc.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        undocumented = [a.option_strings for a in command._actions if a.option_strings and not a.help]
        assert not undocumented, (name, undocumented)
        text = command.format_help()
        for a in command._actions:
            if a.option_strings and a.default not in (None, False, "", [], argparse.SUPPRESS):
                assert "default" in (a.help or "") or f"(default: {a.default})" in " ".join(text.split()), (
                    name,
                    a.option_strings,
                )
    ws = tmp_path / "ws"
    shutil.copytree(digits_models["workspace"] / "models", ws / "models")
    r = run_cli(
        "eval",
        "--model",
        "baseline",
        "--workspace",
        str(ws),
        "--n",
        "30",
        "--attacks",
        "fgsm",
        "--source",
        "none",
        "--no-lipschitz",
        "--no-progress",
    )
    assert r.returncode == 0 and "baseline" in r.stdout, r.stderr  # --dataset digits, the only one in the store
    r = run_cli(
        "eval", "--checkpoint", str(ws / "models/digits/baseline/natural/cnn9-w0.25-seed0"), "--workspace", str(ws)
    )
    assert r.returncode == 2 and "--checkpoint needs --dataset" in r.stderr
    r = run_cli("report", "--workspace", str(ws), "--seeds", "1", "--out", str(tmp_path / "r1"))
    assert r.returncode == 2 and "no results for dataset 'digits' training seeds [1]" in r.stderr, r.stderr
    r = run_cli("report", "--workspace", str(ws), "--seeds", "zero")
    assert r.returncode == 2 and "--seeds takes comma-separated integers" in r.stderr, r.stderr
    (ws / "models" / "cifar10").mkdir()
    r = run_cli("report", "--workspace", str(ws))
    assert r.returncode == 2 and "give --dataset: the store" in r.stderr and "cifar10, digits" in r.stderr


def test_a_failed_download_is_one_clear_error(tmp_path, monkeypatch):
    import torchvision

    from robustbench_dc.data import load_dataset
    from robustbench_dc.errors import DataNotFoundError

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried http://example.invalid/")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(
        DataNotFoundError,
        match=r"could not download fashion-mnist into .* \(Error downloading train-images-idx3-ubyte.gz:\); check the "
        r"network",
    ):
        load_dataset("fashion-mnist", "test", tmp_path / "fm", download=True)


def test_eps_strings_duplicates_and_tiny_eps(digits_models, tmp_path):
    """eps strings work from Python as on the command line, an eps given twice is computed once, 1e-9 is not '0/255'."""
    from robustbench_dc.attacks import eps_label
    from robustbench_dc.evaluation import evaluate
    from robustbench_dc.targets import from_checkpoint

    model = from_checkpoint(digits_models[("baseline", "natural", 0)])
    rows = evaluate(
        model,
        dataset="digits",
        attacks=["fgsm"],
        eps=["8/255", 8 / 255, "0.0313725490196078"],
        n=30,
        lipschitz=False,
        workspace=tmp_path,
    ).accuracy
    assert list(rows["attack"]) == ["none", "fgsm"]
    assert eps_label(1e-9) == "1e-09" and eps_label(0.0) == "0/255" and eps_label(8 / 255) == "8/255"
    with pytest.raises(UserError, match="not a number or a fraction"):
        evaluate(model, dataset="digits", eps="eight", n=30, workspace=tmp_path)


def test_plan_is_checked_before_the_source_is_trained(digits_models, tmp_path):
    """A typo in --attacks, or --device cuda without a GPU, once stopped only after the black-box source trained."""
    from tests.conftest import run_cli

    ws = tmp_path / "ws"
    r = run_cli(
        "eval",
        "--model",
        "baseline",
        "--dataset",
        "digits",
        "--workspace",
        str(ws),
        "--attacks",
        "fgsm,bmi",
        "--no-progress",
        "--checkpoint",
        str(digits_models[("baseline", "natural", 0)]),
    )
    assert r.returncode == 2 and "unknown attack 'bmi'" in r.stderr
    assert not (ws / "models").exists()  # no protocol source was trained first
    r = run_cli("report", "--dataset", "digits", "--eps=-1", "--workspace", str(ws))
    assert r.returncode == 2 and "epsilon must be in [0, 1]" in r.stderr


def _failing(exc):
    def write(_tmp):
        raise exc

    return write


@pytest.mark.parametrize(
    "where,write,message",
    [
        ("folder", None, r"cannot write .*: Is a directory; a folder has that name"),
        ("under-a-file", None, r"cannot write .*: File exists; a file stands where a folder is needed"),
        ("file", "enospc", r"No space left on device; free some disk space"),
        ("file", "erofs", r"Read-only file system; choose a writable --workspace or --out"),
        ("file", "safetensors-full", r"No space left on device; free some disk space"),
    ],
)
def test_every_output_path_failure_is_one_line_naming_the_path(tmp_path, where, write, message):
    """Whatever the file system refuses (a folder in the way, a file where a folder should be, a full or
    read-only disk, safetensors' own I/O error) comes out of atomic_write as a UserError, and no temporary file is
    left."""
    import errno
    import os

    from safetensors import SafetensorError

    from robustbench_dc.files import atomic_write, atomic_write_bytes

    (tmp_path / "folder").mkdir()
    (tmp_path / "a-file").write_text("x")
    path = {
        "folder": tmp_path / "folder",
        "under-a-file": tmp_path / "a-file" / "out.json",
        "file": tmp_path / "out.json",
    }[where]
    failure = {
        None: None,
        "enospc": OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
        "erofs": OSError(errno.EROFS, os.strerror(errno.EROFS)),
        "safetensors-full": SafetensorError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
        ),
    }[write]
    with pytest.raises(UserError, match=message):
        if failure is None:
            atomic_write_bytes(path, b"{}")
        else:
            atomic_write(path, _failing(failure))
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_report_folder_that_is_a_file_and_a_full_store(tmp_path, digits_models):
    from robustbench_dc.evaluation import evaluate
    from robustbench_dc.results.cells import CellKey
    from robustbench_dc.results.store import ResultStore
    from robustbench_dc.targets import from_checkpoint

    ws = tmp_path / "ws"
    evaluate(
        from_checkpoint(digits_models[("baseline", "natural", 0)]),
        dataset="digits",
        eps=[8 / 255],
        n=20,
        workspace=ws,
        lipschitz=False,
    )
    (tmp_path / "taken").write_text("x")
    r = run_cli("report", "--workspace", str(ws), "--dataset", "digits", "--out", str(tmp_path / "taken"))
    assert (
        r.returncode == 2
        and "taken: File exists; a file stands where a folder is needed" in r.stderr
        and "Traceback" not in r.stderr
    )
    with ResultStore(ws) as store:  # a store whose disk fills up: one line, and what was stored stays
        before = store.count()
        store._conn.execute(f"PRAGMA max_page_count = {store._conn.execute('PRAGMA page_count').fetchone()[0]}")
        key = next(store.cells()).key
        with pytest.raises(UserError, match="the disk is full .*; free some space"):
            for i in range(10_000):
                store.put(
                    CellKey.from_dict({**key.to_dict(), "params": json.dumps({"filler": i})}),
                    {"pad": "x" * 2000},
                    0.0,
                    {},
                )
        assert store.count() >= before


def test_a_report_only_reads_the_store(tmp_path, digits_models, monkeypatch):
    """A report opens the store read-only and writes nothing into the workspace (SQLite's own -wal/-shm files
    aside); where even those cannot be made (a read-only disk), it reads the file as immutable."""
    import sqlite3

    from robustbench_dc.evaluation import evaluate
    from robustbench_dc.reports.paper_report import build_report
    from robustbench_dc.results import store as store_module
    from robustbench_dc.targets import from_checkpoint

    ws = tmp_path / "ws"
    evaluate(
        from_checkpoint(digits_models[("baseline", "natural", 0)]),
        dataset="digits",
        eps=[8 / 255],
        n=20,
        workspace=ws,
        lipschitz=False,
    )
    before = (
        (ws / "results.sqlite").stat().st_mtime_ns,
        sorted(p.name for p in ws.iterdir() if not p.name.startswith("results.sqlite")),
    )
    build_report(workspace=ws, dataset="digits", out_dir=tmp_path / "report", eps=8 / 255)
    assert (
        (ws / "results.sqlite").stat().st_mtime_ns,
        sorted(p.name for p in ws.iterdir() if not p.name.startswith("results.sqlite")),
    ) == before
    real_connect, opened = sqlite3.connect, []

    def read_only_disk(target, *args, **kwargs):  # what SQLite says where it cannot create the -shm file
        opened.append(str(target))
        if "mode=ro" in str(target) and "immutable=1" not in str(target):
            raise sqlite3.OperationalError("unable to open database file")
        return real_connect(target, *args, **kwargs)

    monkeypatch.setattr(store_module.sqlite3, "connect", read_only_disk)
    assert build_report(workspace=ws, dataset="digits", out_dir=tmp_path / "report2", eps=8 / 255).stat().st_size > 0
    assert any("immutable=1" in o for o in opened)


def test_an_unwritable_card_leaves_the_evaluation_in_the_store(tmp_path, monkeypatch, digits_models):
    from robustbench_dc import checkpoint, records

    def refuse(path, data):
        raise UserError(f"cannot write {path}: Read-only file system; choose a writable --workspace or --out")

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", refuse)
    why = records.write_into_card(digits_models[("baseline", "natural", 0)], [], "0" * 64)
    assert why is not None and "Read-only file system" in why


def test_a_run_is_never_resumed_in_another_compute_mode(tmp_path):
    """precision 'auto' resolves per device (bf16 with AVX-512 bf16 or AMX, fp32 without): a run begun on one
    machine is not continued on another in a different precision, which would make a model of neither recipe."""
    import torch

    from robustbench_dc.train import RESUME_FILE, checkpoint_dir

    config = TrainConfig(model="baseline", dataset="synthetic", width=0.125, epochs=2)

    class Interrupt(Exception):
        pass

    def stop(stats) -> None:
        raise Interrupt

    with pytest.raises(Interrupt):
        train(config, workspace=tmp_path, on_epoch=stop)
    path = checkpoint_dir(config, tmp_path) / RESUME_FILE
    state = torch.load(path, weights_only=True)
    mode = json.loads(state["mode"])
    state["mode"] = json.dumps({**mode, "precision": "fp32" if mode["precision"] == "bf16" else "bf16"}, sort_keys=True)
    torch.save(state, path)
    with pytest.raises(UserError, match="a run is never mixed: resume it where it started, or delete resume.pt"):
        train(config, workspace=tmp_path)


def test_the_tables_word_adversarial_is_fgsm_training():
    """``--training adversarial`` (what Tables 7 and 8 say) was rejected, and the eval message suggested it."""
    from robustbench_dc.cli import build_parser

    parser = build_parser()
    assert (
        parser.parse_args(["train", "--model", "baseline", "--dataset", "digits", "--training", "adversarial"]).training
        == "fgsm"
    )
    assert parser.parse_args(["eval", "--model", "baseline", "--training", "adversarial"]).training == "fgsm"


def test_help_states_defaults_of_zero():
    from robustbench_dc.cli import build_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "(default: 0)" in " ".join(train.split())  # --seed 0, --robustness-check 0: were left out (0 == False)


def test_a_model_that_raises_under_attack_is_one_line(tmp_path):
    """A third-party model raising only when attacked (its input needs a gradient) gave a traceback, "a bug in the
    suite"; its predictions were already covered."""
    import torch
    from torch import nn

    from robustbench_dc.evaluation import evaluate

    class NoGradients(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3 * 4 * 4, 3)

        def forward(self, x):
            if x.requires_grad:
                raise RuntimeError("this model refuses gradients")
            return self.fc(x.flatten(1))

    x, y = torch.randint(0, 256, (12, 3, 4, 4), dtype=torch.uint8), torch.arange(12) % 3
    with pytest.raises(UserError, match="fgsm on .* failed: RuntimeError: this model refuses gradients"):
        evaluate(NoGradients(), x=x, y=y, attacks=["fgsm"], workspace=tmp_path, lipschitz=False)
