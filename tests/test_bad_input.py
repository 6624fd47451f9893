"""Bad input ends in a clear error before any work, never in a traceback or a silently wrong number."""

import json

import pytest

from robustbench_dc.checkpoint import CARD_FILE, load_checkpoint, resolve_checkpoint
from robustbench_dc.errors import CheckpointError, UserError
from robustbench_dc.reports.render import render_markdown
from robustbench_dc.train import TrainConfig, train
from tests.conftest import run_cli


@pytest.mark.parametrize("field,value", [("width", float("inf")), ("width", 0.0), ("lr", float("nan")), ("weight_decay", -1.0)])
def test_train_config_rejects_non_finite_and_out_of_range_numbers(field, value):
    with pytest.raises(UserError, match=f"{field} must be a finite number"):
        TrainConfig(model="baseline", dataset="digits", **{field: value})


def test_cli_rejects_infinite_width_with_a_message(tmp_path):
    r = run_cli("train", "--model", "baseline", "--dataset", "digits", "--width", "inf", "--workspace", str(tmp_path))
    assert r.returncode == 2 and "not a finite number" in r.stderr and "Traceback" not in r.stderr


def test_unwritable_workspace_is_found_before_training(tmp_path):
    blocker = tmp_path / "ws"
    blocker.write_text("a file, not a directory")
    with pytest.raises(UserError, match="choose a writable --workspace"):
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
    text = render_markdown([("table", (["model"], [["evil | label\n# Injected heading"]]))])
    assert "\n# Injected" not in text and "evil \\| label # Injected heading" in text


def test_diagnostics_refuse_zero_square_queries(digits_models, tmp_path):
    from robustbench_dc.diagnostics.run import run_diagnostics
    from robustbench_dc.targets import from_checkpoint

    with pytest.raises(UserError, match="square_queries must be >= 1"):
        run_diagnostics(from_checkpoint(digits_models[("baseline", "natural", 0)]), dataset="digits", square_queries=0, workspace=tmp_path)


def test_the_command_line_parser_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, robustbench_dc.cli as c; c.build_parser(); assert 'torch' not in sys.modules, 'torch imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
