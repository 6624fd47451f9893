import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from robustbench_dc.checkpoint import load_checkpoint, load_model
from robustbench_dc.data import FASHION_MNIST_SYSTEM_DIR, load_dataset
from robustbench_dc.diagnostics.checks import catastrophic_overfitting
from robustbench_dc.errors import CheckpointError, DataNotFoundError, UserError
from robustbench_dc.models import create_model
from robustbench_dc.ops.functional import patch_norm2d
from robustbench_dc.targets import from_checkpoint, recipe_id
from robustbench_dc.train import (
    RECIPES,
    TrainConfig,
    _optimizer_and_schedule,
    augment_batch,
    build,
    recalibrate_statistics,
    recipe_config,
    train,
)


@pytest.mark.parametrize(
    "key", [("baseline", "natural", 0), ("tanhconv", "natural", 0), ("baseline", "fgsm", 0), ("tanhconv", "fgsm", 0)]
)
def test_training_on_digits_reaches_real_accuracy(digits_models, key):
    model, card = load_checkpoint(digits_models[key])
    assert card.clean_test_accuracy > 0.8  # chance is 0.1
    assert card.training["regime"] == key[1] and card.seed == key[2]
    assert card.weights.sha256 and card.versions["torch"] == torch.__version__.split("+")[0]
    test = load_dataset("digits", "test")
    acc = (model(test.float_images()).argmax(1) == test.labels).float().mean().item()
    assert acc == pytest.approx(card.clean_test_accuracy, abs=1e-6)  # rebuilt from the card alone


def test_load_model_from_store(digits_models):
    ws = digits_models["workspace"]
    model = load_model("tanhconv", dataset="digits", training="fgsm", seed=0, workspace=ws)
    assert not model.training and model.spec.name == "tanhconv"
    with pytest.raises(CheckpointError, match="no checkpoint for model=ballconv.*dc-robust train --model ballconv"):
        load_model("ballconv", dataset="digits", workspace=ws)
    with pytest.raises(CheckpointError, match="trained on 'digits', not 'cifar10'"):
        load_model(str(digits_models[("baseline", "natural", 0)]), dataset="cifar10")


def test_recalibration_gives_exact_averages_and_restores_momentum():
    torch.manual_seed(0)
    model = create_model("tanhconv", width=0.125, input_size=8, num_classes=4)
    layer, bn = model.features[0][0], model.features[0][1]
    seen_by_layer, seen_by_bn = [], []
    layer.register_forward_hook(lambda m, i, o: seen_by_layer.append(i[0]))
    bn.register_forward_hook(lambda m, i, o: seen_by_bn.append(i[0]))
    batches = [torch.rand(16, 3, 8, 8) * (i + 1) for i in range(3)]
    assert recalibrate_statistics(model, iter(batches)) == 3
    assert bn.momentum == 0.1 and layer.rho_momentum == 0.1 and layer.config.relative_rho
    norms = [patch_norm2d(x, layer.kernel_size, padding=layer.padding).mean() for x in seen_by_layer]
    assert float(layer.patch_norm_mean) == pytest.approx(float(sum(norms)) / 3, rel=1e-5)
    assert torch.allclose(bn.running_mean, torch.stack([x.mean((0, 2, 3)) for x in seen_by_bn]).mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="at least one batch"):
        recalibrate_statistics(model, iter([]))


def test_short_run_is_as_good_in_eval_mode_as_in_training_mode(tmp_path):
    """Three epochs on digits: without recalibration BatchNorm's running averages still trail the weights."""
    config = TrainConfig(model="tanhconv", dataset="digits", width=0.5, epochs=3, batch_size=128)
    _, card = load_checkpoint(train(config, workspace=tmp_path))
    assert card.recalibration == {"batches": 12, "images": 1433}
    assert card.clean_test_accuracy > 0.9


def test_same_seed_same_weights(tmp_path):
    config = TrainConfig(
        model="tanhconv", dataset="synthetic", width=0.125, epochs=2, batch_size=32, training="fgsm", eps=0.05
    )
    a = load_file(str(train(config, workspace=tmp_path / "a") / "model.safetensors"))
    b = load_file(str(train(config, workspace=tmp_path / "b") / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_kill_and_resume_gives_the_same_weights(tmp_path):
    args = [
        "train",
        "--model",
        "tanhconv",
        "--dataset",
        "digits",
        "--width",
        "0.25",
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ref = subprocess.run(
        [sys.executable, "-m", "robustbench_dc.cli", *args, "--workspace", str(tmp_path / "ref")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert ref.returncode == 0, ref.stderr
    ws = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "robustbench_dc.cli", *args, "--workspace", str(ws)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:  # kill -9 right after the second epoch ends, mid-way through the third
        if line.startswith("epoch 2/4"):
            time.sleep(0.2)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    run = ws / "models/digits/tanhconv/natural/cnn9-w0.25-seed0"
    assert (run / "resume.pt").exists() and not (run / "card.json").exists()
    again = subprocess.run(
        [sys.executable, "-m", "robustbench_dc.cli", *args, "--workspace", str(ws)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr
    assert "epoch 1/4" not in again.stdout and "epoch 3/4" in again.stdout  # resumed, not restarted
    a = load_file(str(run / "model.safetensors"))
    b = load_file(str(tmp_path / "ref/models/digits/tanhconv/natural/cnn9-w0.25-seed0/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_checkpoint_is_a_clear_error(digits_models, tmp_path):
    import shutil

    src = digits_models[("baseline", "natural", 0)]
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model.safetensors: sha256 .* does not match the card"):
        load_checkpoint(bad)
    (bad / "card.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt checkpoint card"):
        load_checkpoint(bad)
    from tests.conftest import run_cli

    r = run_cli("models", "--workspace", str(tmp_path))
    assert r.returncode == 0


def test_missing_dataset_says_where_it_looked(tmp_path):
    with pytest.raises(
        DataNotFoundError, match=r"(?s)looked for train-images-idx3-ubyte.*" + str(tmp_path) + ".*--download"
    ):
        load_dataset("mnist", "train", data_dir=tmp_path)
    with pytest.raises(DataNotFoundError, match="neither .*cifar-10-batches-py .* nor .*train"):
        load_dataset("cifar10", "train", data_dir=tmp_path)
    from tests.conftest import run_cli

    r = run_cli(
        "train",
        "--model",
        "baseline",
        "--dataset",
        "cifar10",
        "--data-dir",
        str(tmp_path),
        "--workspace",
        str(tmp_path / "ws"),
    )
    assert r.returncode == 2 and "error: cifar10 (train) not found" in r.stderr and "Traceback" not in r.stderr


def test_image_folder_reader_and_cache(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for c in range(10):
            d = tmp_path / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (32, 32), (c * 20, i * 50, 7)).save(d / f"{i}.png")
    cache = tmp_path / "cache"
    ds = load_dataset("cifar10", "train", data_dir=tmp_path, cache_dir=cache)
    assert ds.images.shape == (20, 3, 32, 32) and ds.labels.tolist() == [c for c in range(10) for _ in range(2)]
    assert int(ds.images[3, 0, 0, 0]) == 20 and int(ds.images[3, 1, 0, 0]) == 50
    assert len(list(cache.glob("*.npz"))) == 1
    again = load_dataset("cifar10", "train", data_dir=tmp_path, cache_dir=cache)
    assert torch.equal(again.images, ds.images)


def test_augmentation_is_a_crop_or_flip_of_the_image():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = augment_batch(x, torch.Generator().manual_seed(0), pad=0)
    for i in range(2):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))


@pytest.mark.skipif(
    not (FASHION_MNIST_SYSTEM_DIR / "train-images-idx3-ubyte.gz").exists(),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_fashion_mnist_one_epoch_on_a_subset(tmp_path):
    config = TrainConfig(
        model="baseline", dataset="fashion-mnist", width=0.25, epochs=1, batch_size=64, lr=0.05, train_subset=3000
    )
    _, card = load_checkpoint(train(config, workspace=tmp_path))
    assert card.test_images == 10000 and card.train_images == 3000
    assert card.clean_test_accuracy > 0.6  # chance is 0.1


def test_kurakin_regime_uses_predicted_labels_per_example_eps_and_weights(tmp_path):
    from robustbench_dc.checkpoint import read_card
    from robustbench_dc.train import TrainConfig, adversarial_batch, build, train, truncated_eps

    g = torch.Generator().manual_seed(0)
    eps = truncated_eps(4000, 8 / 255, g)
    assert (
        float(eps.min()) >= 0 and float(eps.max()) <= 8 / 255 and 0.3 < float(eps.mean()) * 255 / 8 < 0.5
    )  # E|N(0, s)| = 0.8 s
    config = TrainConfig(
        model="baseline", dataset="synthetic", width=0.125, training="kurakin", epochs=1, batch_size=64
    )
    model = build(config).train()
    x, y = torch.rand(8, 3, 8, 8), torch.zeros(8, dtype=torch.long)
    out, weights = adversarial_batch(model, x, y, config, g)
    assert torch.equal(out[:4], x[:4]) and weights.tolist() == pytest.approx([1.0] * 4 + [0.3] * 4)
    assert float((out[4:] - x[4:]).abs().amax()) <= 8 / 255 + 1e-6 and model.training
    # the true labels do not enter the crafting: other labels give the same examples
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(adversarial_batch(model, x, y, config, g1)[0], adversarial_batch(model, x, y + 1, config, g2)[0])
    card = read_card(train(config, workspace=tmp_path))
    assert card.training["labels"] == "predicted" and card.training["adv_weight"] == 0.3


def test_compile_failure_falls_back_to_eager_with_the_same_weights(tmp_path, monkeypatch):
    """A compiler that fails (no C++ toolchain, say): the run goes on eager, says so in the card, and ends with
    the weights an eager run gives (the failed compile touched neither the model nor the random state)."""
    config = TrainConfig(
        model="tanhconv", dataset="synthetic", width=0.125, epochs=1, batch_size=32, training="fgsm", eps=0.05
    )
    eager_dir = train(config, workspace=tmp_path / "eager")
    eager = load_file(str(eager_dir / "model.safetensors"))

    def no_compiler(gm, example_inputs):
        raise RuntimeError("no C++ compiler found")

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, backend=no_compiler, **kw))
    directory = train(replace(config, compile=True), workspace=tmp_path / "fallback")
    _, card = load_checkpoint(directory)
    assert card.compute["compile"].startswith("eager (torch.compile failed") and card.train_config["compile"] is True
    fell_back = load_file(str(directory / "model.safetensors"))
    assert all(torch.equal(eager[k], fell_back[k]) for k in eager)
    assert "compile" not in config.to_dict()  # off: the identity of runs from before the option existed
    plain = from_checkpoint(eager_dir).info
    compute = {k: v for k, v in plain.compute.items() if k in ("precision", "channels_last")}
    assert plain.recipe == recipe_id({**plain.train_config, "compute": compute})  # an eager card keeps the old recipe
    assert from_checkpoint(directory).info.recipe != plain.recipe  # asked to compile: never pooled with eager seeds


@pytest.mark.slow
def test_compiled_trainings_one_after_another_all_run_compiled(tmp_path):
    """Several trainings in one process (a preset, a study): dynamo's recompile limit counts graphs across them,
    so without a fresh start per training the later ones would silently run eager."""
    from torch._dynamo.utils import counters

    compiled_frames = []
    for seed in (0, 1):
        before = counters["frames"]["ok"]
        config = TrainConfig(
            model="tanhconv",
            dataset="synthetic",
            width=0.125,
            epochs=1,
            batch_size=64,
            train_subset=128,
            recalibration_batches=1,
            seed=seed,
            compile=True,
        )
        with torch._dynamo.config.patch(recompile_limit=1):  # (monkeypatch's undo would delete the setting)
            _, card = load_checkpoint(train(config, workspace=tmp_path))
        assert card.compute["compile"] == "torch.compile (inductor)" and math.isfinite(card.history[-1]["loss"])
        compiled_frames.append(counters["frames"]["ok"] - before)
    assert compiled_frames[0] >= 1 and compiled_frames[1] >= 1, (
        compiled_frames
    )  # the second training compiled its own graph too


def test_compiled_training_keeps_static_shapes_when_the_last_batch_is_smaller(tmp_path, monkeypatch):
    """The epoch's last, smaller batch gets a graph of its own; a dynamic-shape graph (measured slower than eager
    on the CPU) would otherwise take over the full batches too."""
    symbolic = []

    def recording(gm, example_inputs):  # a backend that notes whether dynamo handed it symbolic sizes, then runs eager
        symbolic.append(
            any(
                isinstance(a, torch.SymInt)
                or (isinstance(a, torch.Tensor) and any(isinstance(d, torch.SymInt) for d in a.shape))
                for a in example_inputs
            )
        )
        return gm.forward

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, backend=recording, **kw))
    config = TrainConfig(
        model="tanhconv",
        dataset="synthetic",
        width=0.125,
        epochs=2,
        batch_size=64,
        train_subset=96,
        recalibration_batches=1,
        compile=True,
    )
    train(config, workspace=tmp_path)
    assert len(symbolic) >= 2 and not any(symbolic), symbolic  # a graph per batch size, none symbolic


def test_standard_recipe_keeps_the_identity_of_runs_made_before_recipes():
    """The fields recipes added are left out of ``to_dict`` at their defaults: stores and cards written before keep
    their training identity (and so their checkpoints and cells)."""
    config = TrainConfig(model="baseline", dataset="digits")
    assert set(config.to_dict()) == {
        "model",
        "dataset",
        "arch",
        "width",
        "training",
        "eps",
        "pgd_steps",
        "pgd_step",
        "adv_weight",
        "epochs",
        "batch_size",
        "lr",
        "momentum",
        "weight_decay",
        "schedule",
        "seed",
        "train_subset",
        "weight_projection",
        "augment",
        "recalibration_batches",
        "precision",
        "channels_last",
        "operator",
    }
    assert recipe_config("standard", model="baseline", dataset="digits") == config
    fast = recipe_config("fast", model="baseline", dataset="digits", epochs=3)
    assert (
        fast.epochs == 3 and fast.schedule == "triangle" and fast.to_dict()["ema_decay"] == RECIPES["fast"]["ema_decay"]
    )
    with pytest.raises(UserError, match="unknown recipe 'slow'; valid: standard, fast"):
        recipe_config("slow", model="baseline", dataset="digits")
    with pytest.raises(UserError, match="ema_decay needs recalibration_batches"):
        TrainConfig(model="baseline", dataset="digits", ema_decay=0.9, recalibration_batches=0)


def test_triangle_schedule_rises_then_falls_to_zero():
    config = TrainConfig(model="baseline", dataset="digits", schedule="triangle", warmup=0.2, epochs=2, lr=0.4)
    model = torch.nn.Linear(2, 2)
    opt, sched = _optimizer_and_schedule(model, config, steps_per_epoch=5)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.2, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05, 0.0])


def test_no_decay_for_norms_and_biases():
    config = TrainConfig(model="baseline", dataset="digits", decay_norms=False, weight_decay=1e-3)
    model = build(config)
    opt, _ = _optimizer_and_schedule(model, config, steps_per_epoch=5)
    decayed, free = opt.param_groups
    assert decayed["weight_decay"] == 1e-3 and all(p.ndim > 1 for p in decayed["params"])
    assert free["weight_decay"] == 0 and free["params"] and all(p.ndim == 1 for p in free["params"])
    assert len(decayed["params"]) + len(free["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("model_name", ["baseline", "tanhconv"])
def test_dirac_init_passes_channels_through(model_name):
    """A dirac-initialised 3x3 convolution copies its input channels to its first filters (ordinary convolution);
    a decoupled one sees each patch at the angle of its centre pixel."""
    model = build(TrainConfig(model=model_name, dataset="digits", init="dirac", width=0.5))
    conv = model.features[1][0]  # in == out channels
    assert conv.weight.shape[0] == conv.weight.shape[1]
    expected = torch.zeros_like(conv.weight)
    expected[:, :, 1, 1] = torch.eye(conv.weight.shape[0])
    assert torch.equal(conv.weight.detach(), expected)
    widen = model.features[4][0]  # after the pooling: out > in: the extra filters keep their random init
    cin = widen.weight.shape[1]
    assert torch.equal(widen.weight[:cin, :, 1, 1].detach(), torch.eye(cin)) and widen.weight[cin:].abs().sum() > 0
    if model_name == "baseline":
        x = torch.rand(2, conv.in_channels, 8, 8)
        assert torch.allclose(conv(x), x, atol=1e-6)


def test_ema_weights_are_saved_and_resume_identically(tmp_path):
    """With ema_decay the checkpoint holds the averaged weights (then recalibrated); a run interrupted after an epoch
    and resumed ends with the same bits as one that ran through."""
    config = TrainConfig(
        model="baseline", dataset="digits", width=0.25, epochs=3, batch_size=64, ema_decay=0.9, robustness_check=50
    )
    straight = load_file(str(train(config, workspace=tmp_path / "a") / "model.safetensors"))
    stops = []

    def stop_after_first(stats) -> None:
        if stats.epoch == 1 and not stops:
            stops.append(1)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, workspace=tmp_path / "b", on_epoch=stop_after_first)
    resumed_dir = train(config, workspace=tmp_path / "b")
    resumed = load_file(str(resumed_dir / "model.safetensors"))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    _, card = load_checkpoint(resumed_dir)
    assert card.train_config["ema_decay"] == 0.9
    checks = [h["robustness"] for h in card.history]
    assert len(checks) == 3 and all(0 <= c["pgd10"] <= c["fgsm"] + 0.1 and 0 <= c["fgsm"] <= 1 for c in checks)
    assert card.robustness_check["images"] == 50 and "catastrophic_overfitting_epoch" in card.robustness_check
    plain = load_file(str(train(replace(config, ema_decay=0.0), workspace=tmp_path / "c") / "model.safetensors"))
    assert any(not torch.equal(plain[k], straight[k]) for k in plain)  # the average is not the last step's weights


def test_catastrophic_overfitting_is_the_pgd_collapse_while_fgsm_rises():
    def check(*pairs):
        return [i + 1 for i in range(len(pairs))], [f for f, _ in pairs], [p for _, p in pairs]

    assert catastrophic_overfitting(*check((0.3, 0.25), (0.35, 0.3), (0.6, 0.02))) == 3
    assert catastrophic_overfitting(*check((0.3, 0.25), (0.35, 0.3), (0.36, 0.28))) is None  # steady
    assert catastrophic_overfitting(*check((0.3, 0.25), (0.1, 0.1))) is None  # both fell: not the signature
    assert catastrophic_overfitting(*check((0.3, 0.3), (0.3, 0.14))) is None  # FGSM still an attack: gap of 16
    assert catastrophic_overfitting(*check((0.08, 0.08), (0.06, 0.02))) is None  # natural training: both near zero
    assert catastrophic_overfitting([], [], []) is None


def test_catastrophic_overfitting_is_seen_when_the_network_collapses_before_it_was_ever_robust():
    """paper-cpu's FGSM-trained SphereConv of training seed 2 (its card's first nine epochs, 256 check images): PGD-10
    accuracy fell from 7.4% to 0.4% at epoch 5 while FGSM accuracy rose from 22% to 63%, and FGSM rose to 93% by the
    last epoch with PGD-10 at 0%. The rule then asked for a best PGD-10 accuracy of at least 10% before the fall, and
    its card said no catastrophic overfitting."""
    fgsm = [0.105, 0.113, 0.230, 0.223, 0.633, 0.664, 0.668, 0.297, 0.668]
    pgd10 = [0.070, 0.070, 0.074, 0.031, 0.004, 0.004, 0.0, 0.0, 0.023]
    assert catastrophic_overfitting(list(range(1, 10)), fgsm, pgd10) == 5


def test_a_bare_model_name_means_the_store_even_beside_a_folder_of_that_name(digits_models, tmp_path, monkeypatch):
    """``./tanhconv/`` in the working directory once replaced the store's tanhconv, ignoring --workspace,
    --training and --seed; a bare name is the store's, the folder needs ./ or a Path."""
    import shutil

    from robustbench_dc.checkpoint import resolve_checkpoint

    ws = digits_models["workspace"]
    shutil.copytree(
        digits_models[("baseline", "natural", 0)], tmp_path / "tanhconv"
    )  # another model, named like a zoo model
    monkeypatch.chdir(tmp_path)
    found = resolve_checkpoint("tanhconv", dataset="digits", training="fgsm", seed=0, workspace=ws)
    assert found == digits_models[("tanhconv", "fgsm", 0)]
    assert (
        resolve_checkpoint("./tanhconv", dataset="digits", workspace=ws) == tmp_path / "tanhconv"
        or resolve_checkpoint("./tanhconv", dataset="digits", workspace=ws).resolve()
        == (tmp_path / "tanhconv").resolve()
    )


def test_two_recipes_of_one_name_train_side_by_side_and_merge(tmp_path):
    """Run folders are named by dataset, model, regime, architecture, width and seed only; a study that trains its
    FGSM models longer than its natural ones needs a natural baseline of each length for one seed (a target, and
    the FGSM models' protocol source). The second recipe's run lies beside the first (``+<hash>``), each is found
    again as already trained, a name lookup lists both, and a merge puts each where its recipe belongs."""
    from robustbench_dc.checkpoint import resolve_checkpoint
    from robustbench_dc.results.merge import merge_workspaces
    from robustbench_dc.train import checkpoint_dir

    short = TrainConfig(model="baseline", dataset="synthetic", width=0.125, epochs=1, batch_size=64, train_subset=128)
    long = replace(short, epochs=2)
    ws = tmp_path / "ws"
    first, second = train(short, workspace=ws, device="cpu"), train(long, workspace=ws, device="cpu")
    assert first.name == "cnn9-w0.125-seed0" and second.name.startswith("cnn9-w0.125-seed0+")
    assert load_checkpoint(first)[1].epochs == 1 and load_checkpoint(second)[1].epochs == 2
    assert not (first / "run.json").exists() and not (second / "run.json").exists()  # only while a run is unfinished
    assert (checkpoint_dir(short, ws), checkpoint_dir(long, ws)) == (first, second)
    assert train(long, workspace=ws, device="cpu") == second  # already trained: found, not retrained
    with pytest.raises(UserError, match=r"several checkpoints match .*\+hash are other training settings"):
        resolve_checkpoint("baseline", dataset="synthetic", workspace=ws)

    other = tmp_path / "other"  # another machine trained the long recipe first: it got the plain name there
    assert train(long, workspace=other, device="cpu").name == "cnn9-w0.125-seed0"
    into = tmp_path / "merged"
    merge_workspaces(into, [other])
    summary = merge_workspaces(into, [ws])  # the short recipe lands beside the long one, and the long one is known
    assert (summary.checkpoints_added, summary.checkpoints_same, summary.checkpoint_conflicts) == (1, 1, [])
    assert load_checkpoint(checkpoint_dir(short, into))[1].epochs == 1
    assert load_checkpoint(checkpoint_dir(long, into))[1].epochs == 2
