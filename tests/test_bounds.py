"""What users and files can ask for is bounded before any work, and what cannot be read in bounded time is refused:
each case one line that names the cause and the fix (exit 2), never a traceback, a hang or a silent acceptance."""

import os

import pytest
import torch

from robustbench_dc.checkpoint import read_card, resolve_checkpoint
from robustbench_dc.cli import build_parser
from robustbench_dc.data import dataset_info
from robustbench_dc.errors import UserError
from robustbench_dc.evaluation import EvalSpec
from robustbench_dc.external import load_external
from robustbench_dc.study import load_study, parse_study, with_options


@pytest.mark.parametrize(
    "args, message",
    [
        (["--threads", "100000"], "--threads must be from 1 to the"),
        (["--seed", str(2**64)], "seeds are integers in"),
        (["--subset-seed", str(2**70)], "seeds are integers in"),
        (["--width", "1e-9"], "--width must be in"),
        (["--width", "1e9"], "--width must be in"),
        (["--std", "inf"], "finite numbers"),
        (["--std", "0,1,1"], "std is a number > 0"),
    ],
)
def test_absurd_command_line_values_are_refused_before_any_work(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["eval", "--model", "baseline", "--dataset", "digits", *args])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_special_file_is_refused_not_read_forever(tmp_path):
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        with pytest.raises(UserError, match="not a regular file"):
            load_external(path, dataset_info("digits"), arch="cnn9")
    card = tmp_path / "ckpt"
    card.mkdir()
    os.mkfifo(card / "card.json")
    with pytest.raises(UserError, match="not a regular file"):
        read_card(card)


def test_an_unknown_training_names_the_valid_ones(tmp_path):
    with pytest.raises(UserError, match="unknown training 'bogus'; valid: natural, fgsm"):
        resolve_checkpoint("baseline", dataset="digits", training="bogus", workspace=tmp_path)


def test_seeds_are_each_one_model_and_an_empty_list_is_a_mistake(tmp_path):
    raw = {"name": "s", "dataset": "digits", "models": [{"label": "baseline"}], "seeds": [0, 0]}
    with pytest.raises(UserError, match="names a training seed twice"):
        parse_study(raw)
    with pytest.raises(UserError, match="at least one training seed"):  # was ignored: every seed ran
        with_options(load_study("smoke"), seeds="")


def test_a_study_nested_beyond_reason_is_one_line(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text('name = "deep"\nx = ' + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(UserError, match="nested too deeply"):
        load_study(path)


def test_n_all_from_python_means_every_image():
    assert EvalSpec(n="all").n is None
    for bad in (0, -3, "some", 2.5):
        with pytest.raises(UserError, match="n must be a number of test images"):
            EvalSpec(n=bad)


def test_a_misspelled_name_gets_the_closest_valid_ones():
    from robustbench_dc.attacks import get_attack
    from robustbench_dc.models import create_model

    with pytest.raises(UserError, match=r"unknown model 'tanhcnv'; did you mean 'tanhconv'"):
        create_model("tanhcnv")
    with pytest.raises(UserError, match=r"unknown attack 'zzz'; valid: fgsm"):
        get_attack("zzz")


class _Sly(torch.nn.Module):
    """Keeps state in a plain attribute (no parameter, no buffer) that batches larger than 64 change."""

    def __init__(self):
        super().__init__()
        self.lin, self.flip = torch.nn.Linear(64, 10), False

    def forward(self, x):
        self.flip = self.flip or x.shape[0] > 64
        out = self.lin(x.flatten(1))
        return -out if self.flip else out


class _NaNBeyondTheFirstRows(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(64, 10)

    def forward(self, x):
        out = self.lin(x.flatten(1)).clone()
        out[5:] = float("nan")
        return out


def _digits_like(n=200):
    torch.manual_seed(0)
    return torch.randint(0, 256, (n, 1, 8, 8)).float() / 255, torch.randint(0, 10, (n,))


def test_a_model_whose_state_hides_outside_its_parameters_gets_no_numbers(tmp_path):
    """It passed the weights-unchanged check and scored PGD 97% where the true model has 0%."""
    from robustbench_dc.evaluation import evaluate

    x, y = _digits_like()
    with pytest.raises(UserError, match="outputs on a fixed batch of test images changed while it was evaluated"):
        evaluate(_Sly(), x=x, y=y, n=None, attacks=["pgd"], lipschitz=False, workspace=tmp_path)


def test_nan_outputs_beyond_the_first_images_are_called_nan(tmp_path):
    """The message spoke of two passes differing (randomised at test time), not of NaN."""
    from robustbench_dc.evaluation import evaluate

    x, y = _digits_like()
    with pytest.raises(UserError, match="NaN or inf on 59 of the first 64 test images"):
        evaluate(_NaNBeyondTheFirstRows(), x=x, y=y, n=None, attacks=["fgsm"], lipschitz=False, workspace=tmp_path)


def test_any_float_images_in_0_1_are_evaluated_as_given(tmp_path):
    """RobustBench, torchattacks and Foolbox take any float in [0, 1] (resized images); we refused non-k/255 ones."""
    from robustbench_dc.evaluation import evaluate, tensor_dataset
    from robustbench_dc.models import create_model

    torch.manual_seed(0)
    x, y = torch.rand(40, 1, 8, 8), torch.randint(0, 10, (40,))
    data = tensor_dataset(x, y)
    assert data.images.dtype == torch.float32 and torch.equal(data.float_images(), x)  # never quantised
    eight_bit = tensor_dataset((x * 255).round() / 255, y)
    assert eight_bit.images.dtype == torch.uint8 and data.content_sha256() != eight_bit.content_sha256()
    model = create_model("baseline", width=0.125, in_channels=1, input_size=8, num_classes=10)
    result = evaluate(model, x=x, y=y, n=None, attacks=["fgsm"], lipschitz=False, workspace=tmp_path)
    assert set(result.accuracy["n"]) == {40}


def test_a_workspace_that_is_a_file_and_a_source_path_that_is_missing_say_so(tmp_path):
    from robustbench_dc.workspace import workspace_dir

    blocker = tmp_path / "ws"
    blocker.write_text("a file")
    with pytest.raises(UserError, match="is a file, not a folder"):
        workspace_dir(blocker)
    with pytest.raises(UserError, match="no such checkpoint"):  # was: unknown model '/nonexistent/path'
        resolve_checkpoint("/nonexistent/path", dataset="digits", workspace=tmp_path / "empty")


def test_a_card_whose_numbers_are_not_numbers_is_one_line(digits_models, tmp_path):
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(digits_models[("baseline", "natural", 0)], run)
    card = json.loads((run / "card.json").read_text())
    (run / "card.json").write_text(json.dumps({**card, "clean_test_accuracy": "abc"}))
    with pytest.raises(UserError, match="'clean_test_accuracy' is 'abc', not a number"):
        read_card(run)


def test_a_resume_file_with_other_keys_is_one_line(tmp_path):
    from robustbench_dc.train import TrainConfig, train

    config = TrainConfig(model="baseline", dataset="synthetic", width=0.125, epochs=2)
    first = train(config, workspace=tmp_path)
    (first / "card.json").unlink()  # unfinished again: the resume state decides
    torch.save({"something": torch.zeros(1)}, first / "resume.pt")
    with pytest.raises(UserError, match="not a resume state of this suite"):
        train(config, workspace=tmp_path)
