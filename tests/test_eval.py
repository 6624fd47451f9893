import dataclasses
import json
import math

import pytest
import torch

import robustbench_dc
from robustbench_dc.attacks import BIM, FGSM, PGD, attacks_named, get_attack, run_attack
from robustbench_dc.data import load_dataset
from robustbench_dc.errors import UserError
from robustbench_dc.evaluation import EvalSpec, evaluate
from robustbench_dc.executors import EvalJob
from robustbench_dc.inference import predict
from robustbench_dc.lipschitz import global_upper_bound, local_lipschitz
from robustbench_dc.models import create_model, list_models
from robustbench_dc.pipeline import jobs as pipeline_jobs
from robustbench_dc.planning import resolve_source
from robustbench_dc.results.store import ResultStore
from robustbench_dc.study import load_study
from robustbench_dc.targets import from_checkpoint, from_module
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def digits_test():
    test = load_dataset("digits", "test")
    return test.float_images(), test.labels


@pytest.fixture(scope="module")
def baseline(digits_models):
    return from_checkpoint(digits_models[("baseline", "natural", 0)]).module


def accuracy(model, x, y):
    return float((predict(model, x) == y).float().mean())


def test_torchattacks_and_foolbox_agree(baseline, digits_test):
    x, y = digits_test
    eps = 24 / 255
    fgsm_ta = predict(baseline, run_attack(FGSM(), baseline, x, y, eps, backend="torchattacks"))
    fgsm_fb = predict(baseline, run_attack(FGSM(), baseline, x, y, eps, backend="foolbox"))
    assert torch.equal(fgsm_ta, fgsm_fb)  # identical predictions
    bim_ta = predict(baseline, run_attack(BIM(), baseline, x, y, eps, backend="torchattacks"))
    bim_fb = predict(baseline, run_attack(BIM(), baseline, x, y, eps, backend="foolbox"))
    assert int(((bim_ta == y) != (bim_fb == y)).sum()) <= max(1, len(y) // 300)


def test_eps_zero_is_clean_and_accuracy_falls_with_eps(baseline, digits_test):
    x, y = digits_test
    clean = accuracy(baseline, x, y)
    for attack in (FGSM(), BIM(), PGD(steps=10)):
        assert accuracy(baseline, run_attack(attack, baseline, x, y, 0.0), y) == clean
    previous = clean
    for eps in (4 / 255, 16 / 255, 48 / 255, 96 / 255):
        acc = accuracy(baseline, run_attack(PGD(steps=10, step=eps / 4), baseline, x, y, eps), y)
        assert acc <= previous + 1e-9
        previous = acc
    bim_prev = clean
    for eps in (4 / 255, 16 / 255, 48 / 255):
        acc = accuracy(baseline, run_attack(BIM(), baseline, x, y, eps), y)
        assert acc <= bim_prev + 1e-9
        bim_prev = acc
    assert accuracy(baseline, run_attack(PGD(steps=20, step=0.05), baseline, x, y, 0.5), y) < 0.05


def test_white_box_fgsm_lowers_accuracy(baseline, digits_test):
    x, y = digits_test
    clean = accuracy(baseline, x, y)
    attacked = accuracy(baseline, run_attack(FGSM(), baseline, x, y, 32 / 255), y)
    assert clean > 0.9 and attacked < clean - 0.2


def test_attack_restores_mode_and_leaves_rng(baseline, digits_test):
    x, y = digits_test
    baseline.train()
    state = torch.random.get_rng_state()
    run_attack(PGD(steps=2), baseline, x[:10], y[:10], 8 / 255, seed=3)
    assert baseline.training and torch.equal(state, torch.random.get_rng_state())
    baseline.eval()


def test_bim_step_count_follows_kurakin():
    assert [BIM().steps_at(e / 255) for e in (1, 2, 4, 8, 16)] == [1, 2, 5, 10, 20]


@pytest.mark.parametrize("name", list_models())
def test_global_bound_is_above_local_estimate(name):
    torch.manual_seed(0)
    model = create_model(name, width=0.125, input_size=8).eval()
    x = torch.rand(16, 3, 8, 8)
    local = local_lipschitz(model, x, eps=8 / 255, steps=5)
    bound = global_upper_bound(model, (3, 8, 8), 10)
    assert bound.supported
    assert bound.log10_linf_l1 >= torch.log10(torch.tensor(local.max)).item()
    if name.startswith("sphereconv"):
        assert bound.eps_dependent  # reported as such, never as a small number
    if name in ("ballconv", "tanhconv"):
        assert torch.isfinite(torch.tensor(bound.log10_l2)) and not bound.eps_dependent


def test_global_bound_on_resnet_and_trained_model(digits_models):
    model = create_model("tanhconv", arch="resnet32", width=0.25, input_size=8).eval()
    x = torch.rand(8, 3, 8, 8)
    assert (
        global_upper_bound(model, (3, 8, 8), 10).log10_linf_l1
        >= torch.log10(torch.tensor(local_lipschitz(model, x, eps=0.03, steps=5).max)).item()
    )


def test_evaluate_stores_cells_and_reuses_them(digits_models, tmp_path):
    target = from_checkpoint(digits_models[("tanhconv", "natural", 0)])
    kw = dict(
        dataset="digits",
        attacks=["fgsm", "bim"],
        eps=[8 / 255, 32 / 255],
        n=100,
        workspace=tmp_path,
        lipschitz_n=20,
        source=from_checkpoint(digits_models[("baseline", "natural", 1)]),
    )
    first = evaluate(target, **kw)
    assert not first.accuracy["cached"].any() and not any(f["cached"].any() for f in first.lipschitz.values())
    assert set(first.accuracy["threat"]) == {"none", "white-box", "black-box"}
    assert list(first.lipschitz) == ["local", "gradient-norm", "global"]
    # one frame per kind: no column of another kind's, counts as integers
    local, gradient, bound = (first.lipschitz[k] for k in ("local", "gradient-norm", "global"))
    assert "log10_l2" not in local and "steps" not in gradient and "zero_fraction" not in local
    assert local["n"].dtype == "int64" and local["steps"].dtype == "int64" and gradient["n"].dtype == "int64"
    assert not any(frame.isna().any().any() for frame in first.lipschitz.values())
    assert first.accuracy["n"].dtype == "int64" and first.accuracy["correct"].dtype == "int64"  # tidy: counts
    again = evaluate(target, **kw)
    assert again.cached
    assert list(again.accuracy["accuracy"]) == list(first.accuracy["accuracy"])
    assert again.accuracy_of("fgsm", 8 / 255, threat="white-box") == first.accuracy_of(
        "fgsm", 8 / 255, threat="white-box"
    )
    # same transfer examples serve every target
    assert len(list((tmp_path / "transfer").glob("*.safetensors"))) == 4
    evaluate(from_checkpoint(digits_models[("baseline", "natural", 0)]), **kw)
    assert len(list((tmp_path / "transfer").glob("*.safetensors"))) == 4


def test_an_eval_spec_is_what_the_keywords_give_and_what_a_study_job_holds(digits_models, tmp_path):
    """One frozen spec of what is measured: ``evaluate(model, spec)`` reads the same cells as the same settings given
    as keywords (eps strings included), keywords replace the spec's fields, a study's job holds the spec rather than
    repeating its fields, and a mistake is refused before any model or data is touched."""
    target = from_checkpoint(digits_models[("baseline", "natural", 0)])
    spec = EvalSpec(attacks=("fgsm",), eps=("8/255", 16 / 255), n=40, lipschitz=False)
    assert spec.attacks == (FGSM(),) and spec.eps == (8 / 255, 16 / 255)
    by_spec = evaluate(target, spec, dataset="digits", workspace=tmp_path)
    by_keywords = evaluate(
        target, dataset="digits", workspace=tmp_path, attacks=["fgsm"], eps=[8 / 255, "16/255"], n=40, lipschitz=False
    )
    assert by_keywords.cached and by_keywords.accuracy["accuracy"].tolist() == by_spec.accuracy["accuracy"].tolist()
    wider = evaluate(target, spec, dataset="digits", workspace=tmp_path, n=60)
    assert set(wider.accuracy["n"]) == {60} and not wider.cached
    with pytest.raises(UserError, match="unknown evaluation setting.*epsilon"):
        evaluate(target, spec, dataset="digits", workspace=tmp_path, epsilon=0.1)
    for bad, message in [
        (dict(eps="eight"), "not a number"),
        (dict(attacks=("pgd-l2",)), "need their own eps"),
        (dict(role="tables"), "unknown role"),
        (dict(batch_size=0), "batch_size"),
    ]:
        with pytest.raises(UserError, match=message):
            EvalSpec.of(spec, **bad)
    job_fields = {f.name for f in dataclasses.fields(EvalJob)}
    assert "spec" in job_fields and not job_fields & ({f.name for f in dataclasses.fields(EvalSpec)} - {"spec"})
    smoke = load_study("smoke")
    job = pipeline_jobs(smoke)[0]
    assert isinstance(job.spec, EvalSpec) and job.spec.attacks == tuple(
        attacks_named(smoke.attacks, outcome=smoke.attack_outcome)
    )


def test_interrupted_evaluation_resumes_without_duplicates(digits_models, tmp_path):
    target = from_checkpoint(digits_models[("baseline", "fgsm", 0)])
    kw = dict(
        dataset="digits",
        attacks=["fgsm", "bim"],
        eps=[8 / 255, 16 / 255],
        n=60,
        workspace=tmp_path,
        source=None,
        lipschitz=False,
    )
    calls = []

    def boom(message):
        calls.append(message)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate(target, progress=boom, **kw)
    with ResultStore(tmp_path) as store:
        assert store.count() == 2
    rows = evaluate(target, **kw).accuracy
    assert rows["cached"].sum() == 2 and len(rows) == 5
    with ResultStore(tmp_path) as store:
        assert store.count() == 5


def test_evaluate_any_module_and_bad_input(digits_models, tmp_path):
    module = from_checkpoint(digits_models[("baseline", "natural", 0)]).module
    rows = robustbench_dc.evaluate(
        module, dataset="digits", attacks=["fgsm"], n=50, workspace=tmp_path, source=None, lipschitz=False
    ).accuracy
    assert rows.iloc[0]["model"].startswith("baseline-") and list(rows["attack"]) == ["none", "fgsm"]
    named = robustbench_dc.evaluate(
        module, dataset="digits", attacks=["fgsm"], n=50, workspace=tmp_path, lipschitz=False, label="mine"
    ).accuracy
    assert set(named["model"]) == {"mine"} and named["cached"].all()  # the label is a name, not identity
    with pytest.raises(
        UserError,
        match="unknown attack .cw.; valid: fgsm, fgsm-pred, bim, pgd, bpda-pgd, pgd-smoothed, apgd-ce, apgd-dlr, "
        "autoattack, autoattack-ta, square",
    ):
        evaluate(module, dataset="digits", attacks=["cw"], workspace=tmp_path, source=None)
    with pytest.raises(UserError, match=r"eps must be in \[0, 1\]"):
        evaluate(module, dataset="digits", eps=[2.0], workspace=tmp_path, source=None)
    with pytest.raises(UserError, match="not a zoo model, so it has no protocol black-box source"):
        resolve_source("default", from_module(module), dataset="digits", workspace=tmp_path)
    said = []  # "auto" (the command line's default): no protocol source for a model from elsewhere, and it says so
    assert resolve_source("auto", from_module(module), dataset="digits", workspace=tmp_path, say=said.append) is None
    assert said and "needs --source NAME|PATH" in said[0]
    with pytest.raises(UserError, match="output has shape \\(2, 10\\); synthetic needs \\(N, 4\\)"):
        evaluate(
            create_model("baseline", width=0.125, input_size=8), dataset="synthetic", workspace=tmp_path, source=None
        )


def test_cli_eval_and_errors(digits_models, tmp_path):
    ws = str(digits_models["workspace"])
    r = run_cli(
        "eval",
        "--model",
        "tanhconv",
        "--dataset",
        "digits",
        "--workspace",
        ws,
        "--eps",
        "8/255,0.1",
        "--n",
        "64",
        "--json",
        "--no-progress",
        "--source",
        "none",
    )
    assert r.returncode == 0, r.stderr
    payload = json.loads(r.stdout)
    assert (
        payload["schema"] == "robustbench-dc/eval-v2"
        and payload["diagnostics"] == []
        and payload["model"]["name"] == "tanhconv"
    )
    rows = payload["accuracy"]
    assert any(row["eps"] == 0.1 for row in rows)  # eps as given, not rounded
    assert {row["threat"] for row in rows} == {"none", "white-box"} and isinstance(rows[0]["correct"], int)
    assert [row["estimate"] for row in payload["lipschitz"]] == ["local", "gradient-norm", "global"]
    r = run_cli(
        "eval",
        "--model",
        "tanhconv",
        "--dataset",
        "digits",
        "--workspace",
        ws,
        "--n",
        "64",
        "--no-progress",
        "--no-lipschitz",
    )
    assert r.returncode == 0, r.stderr
    assert "black-box" in r.stdout and "baseline natural seed 1" in r.stdout and "95% CI" in r.stdout
    for args, message in [
        (["--model", "nosuchconv"], "unknown model"),
        (["--model", "tanhconv", "--attacks", "cw"], "unknown attack 'cw'"),
        (["--model", "tanhconv", "--eps", "2"], "epsilons must be in [0, 1]"),
        (
            ["--checkpoint", str(digits_models[("baseline", "natural", 0)]), "--dataset", "synthetic"],
            "trained on 'digits', not 'synthetic'",
        ),
    ]:
        r = (
            run_cli("eval", "--dataset", "digits", "--workspace", ws, "--no-progress", *args)
            if "--dataset" not in args
            else run_cli("eval", "--workspace", ws, "--no-progress", *args)
        )
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr
    r = run_cli(
        "eval", "--model", "tanhconv", "--dataset", "digits", "--workspace", str(tmp_path / "empty"), "--no-progress"
    )
    assert r.returncode == 2 and "no checkpoint for model=tanhconv" in r.stderr


def test_evaluate_the_callers_own_tensors(digits_models, tmp_path):
    test = load_dataset("digits", "test")
    module = from_checkpoint(digits_models[("baseline", "natural", 0)]).module
    x, y = test.float_images()[:80], test.labels[:80]
    rows = evaluate(
        module, x=x, y=y, attacks=["fgsm"], eps=16 / 255, n=None, workspace=tmp_path, lipschitz=False
    ).accuracy
    named = evaluate(
        module, dataset="digits", attacks=["fgsm"], eps=16 / 255, n=None, workspace=tmp_path, lipschitz=False
    ).accuracy
    assert rows.iloc[0]["n"] == 80 and rows.iloc[0]["accuracy"] > 0.8
    same = evaluate(
        module, x=test.images[:80], y=y, attacks=["fgsm"], eps=16 / 255, n=None, workspace=tmp_path, lipschitz=False
    )
    assert same.cached  # the same pixels given as uint8 are the same data
    assert len(named) == 2  # the named dataset is other data (all 360 images): its own cells
    with pytest.raises(UserError, match=r"pixels in \[0, 1\]"):
        evaluate(module, x=x * 255, y=y, workspace=tmp_path)
    with pytest.raises(UserError, match="give the test data one way: dataset=NAME, x=IMAGES with y=LABELS, or loader="):
        evaluate(module, dataset="digits", x=x, y=y, workspace=tmp_path)


def test_per_example_outcomes_are_saved(digits_models, tmp_path):
    import pandas as pd

    ws = str(digits_models["workspace"])
    out = tmp_path / "per_example.csv"
    r = run_cli(
        "eval",
        "--model",
        "baseline",
        "--dataset",
        "digits",
        "--workspace",
        ws,
        "--n",
        "50",
        "--source",
        "none",
        "--no-lipschitz",
        "--no-progress",
        "--save-per-example",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(out)
    assert len(table) == 3 * 50 and set(table["attack"]) == {"none", "fgsm", "bim"}
    clean = table[table["attack"] == "none"]
    test = load_dataset("digits", "test")
    model = from_checkpoint(digits_models[("baseline", "natural", 0)]).module
    right = (
        predict(model, test.float_images()[torch.tensor(clean["test_index"].tolist())])
        == test.labels[torch.tensor(clean["test_index"].tolist())]
    ).int()
    assert right.tolist() == clean["correct"].tolist()  # the indices point at the images that were scored


def test_model_record_and_robust_accuracy_in_the_card(digits_models, tmp_path):
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(digits_models["workspace"] / "models", ws / "models")
    record = tmp_path / "records"
    r = run_cli(
        "eval",
        "--model",
        "baseline",
        "--dataset",
        "digits",
        "--workspace",
        str(ws),
        "--n",
        "60",
        "--eps",
        "16/255",
        "--attacks",
        "fgsm,pgd,fgm",
        "--eps-l2",
        "1.0",
        "--source",
        "none",
        "--no-lipschitz",
        "--no-progress",
        "--save-model-record",
        str(record),
    )
    assert r.returncode == 0, r.stderr
    # no AutoAttack, so no RobustBench model_info file (it ranks by autoattack_acc); ours hold both threat models
    assert [p.relative_to(record).as_posix() for p in record.rglob("*.json")] == ["dc-robust/baseline.json"]
    assert "no RobustBench model_info file" in r.stderr
    linf, l2 = json.loads((record / "dc-robust/baseline.json").read_text())
    assert linf["threat_model"] == "Linf" and linf["eps"] == "16/255" and set(linf["attacks"]) == {"fgsm", "pgd"}
    assert (
        linf["robust_acc"] == min(linf["attacks"].values(), key=float) and linf["autoattack_acc"] is None
    )  # AutoAttack did not run
    assert "AutoAttack was not run" in linf["footnote"] and float(linf["clean_acc"]) >= float(linf["robust_acc"])
    assert l2["threat_model"] == "L2" and l2["eps"] == "L2 1" and set(l2["attacks"]) == {"fgm"}
    card = json.loads((ws / "models/digits/baseline/natural/cnn9-w0.25-seed0/card.json").read_text())
    (key, entry), *_ = [(k, v) for k, v in card["evaluations"].items() if " Linf " in k]
    assert key.startswith("digits Linf 16/255 n=60 data=") and entry["robust_acc"] == linf["robust_acc"]
    from robustbench_dc.checkpoint import load_checkpoint

    load_checkpoint(ws / "models/digits/baseline/natural/cnn9-w0.25-seed0")  # the card stays a valid card


def test_adversarial_examples_are_saved_with_their_figure(digits_models, tmp_path):
    import shutil

    from PIL import Image
    from safetensors import safe_open

    out, ws = tmp_path / "adv", tmp_path / "ws"
    shutil.copytree(digits_models["workspace"] / "models", ws / "models")
    r = run_cli(
        "eval",
        "--model",
        "baseline",
        "--dataset",
        "digits",
        "--workspace",
        str(ws),
        "--n",
        "40",
        "--eps",
        "16/255",
        "--attacks",
        "fgsm,pgd",
        "--source",
        "none",
        "--no-lipschitz",
        "--no-progress",
        "--json",
        "--save-adversarials",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    rows = {row["attack"]: row for row in json.loads(r.stdout)["accuracy"]}
    assert sorted(p.name for p in out.iterdir()) == [
        "examples.png",
        "fgsm-16over255.safetensors",
        "pgd-16over255.safetensors",
    ]
    with safe_open(str(out / "fgsm-16over255.safetensors"), "pt") as f:
        adv, labels, pred, idx = (
            f.get_tensor("adversarial"),
            f.get_tensor("labels"),
            f.get_tensor("predictions"),
            f.get_tensor("indices"),
        )
        assert f.metadata()["attack"] == "fgsm" and float(f.metadata()["eps"]) == pytest.approx(16 / 255)
    test = load_dataset("digits", "test")
    clean = test.float_images()[idx]
    assert float((adv - clean).abs().max()) <= 16 / 255 + 1e-6 and torch.equal(labels, test.labels[idx])
    assert float((pred == labels).float().mean()) == pytest.approx(
        rows["fgsm"]["accuracy"]
    )  # the very examples the cell counted
    with Image.open(out / "examples.png") as im:
        im.verify()


def test_attacks_and_predictions_stay_fp32_inside_a_callers_autocast(baseline, digits_test):
    """A caller's bf16 autocast does not reach the attack or the prediction: the cell says fp32, and it is."""
    x, y = digits_test[0][:64], digits_test[1][:64]
    seen = []
    hook = baseline.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        plain = run_attack(BIM(), baseline, x, y, 16 / 255)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            inside = run_attack(BIM(), baseline, x, y, 16 / 255)
            predicted = predict(baseline, inside)
    finally:
        hook.remove()
    assert torch.equal(plain, inside) and torch.equal(predicted, predict(baseline, plain))
    assert set(seen) == {torch.float32}


class NaNGradient(torch.nn.Module):
    """Finite outputs, NaN input gradients (a square root at zero): sign(NaN) = 0, so FGSM would move nothing."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x) + 0 * torch.sqrt(x.flatten(1)[:, :1] * 0)


def test_an_attack_without_a_usable_gradient_is_an_error_not_a_robust_accuracy(baseline, digits_test, tmp_path):
    x, y = digits_test
    model = NaNGradient(baseline)
    assert torch.equal(predict(model, x), predict(baseline, x))  # the forward pass is fine
    with pytest.raises(UserError, match="input gradients are not finite .* under fgsm"):
        run_attack(FGSM(), model, x, y, 8 / 255)
    with pytest.raises(UserError, match="not finite"):
        evaluate(model, dataset="digits", attacks=["fgsm"], eps=[8 / 255], n=50, lipschitz=False, workspace=tmp_path)


def test_bpda_in_a_table_takes_straight_through_or_is_refused(baseline, tmp_path):
    """For a model without decoupled layers bpda-pgd is plain PGD: refused, unless parts to pass straight through
    are named, which the command line passes on as the diagnostics do."""
    with pytest.raises(UserError, match="would be plain PGD with the same seed.*--straight-through"):
        evaluate(
            baseline, dataset="digits", attacks=["bpda-pgd"], eps=[16 / 255], n=40, lipschitz=False, workspace=tmp_path
        )
    quantised = torch.nn.Sequential(Quantise(), baseline)
    torch.save(quantised, tmp_path / "quantised.pt")
    args = [
        "eval",
        "--checkpoint",
        str(tmp_path / "quantised.pt"),
        "--trust-checkpoint",
        "--dataset",
        "digits",
        "--workspace",
        str(tmp_path / "ws"),
        "--attacks",
        "pgd,bpda-pgd",
        "--eps",
        "16/255",
        "--n",
        "60",
        "--no-lipschitz",
        "--json",
        "--no-progress",
    ]
    r = run_cli(*args, "--straight-through", "0")
    assert r.returncode == 0, r.stderr
    rows = {row["attack"]: row for row in json.loads(r.stdout)["accuracy"] if row["threat"] == "white-box"}
    assert rows["bpda-pgd"]["params"]["straight_through"] == ["0"]
    assert rows["bpda-pgd"]["accuracy"] < rows["pgd"]["accuracy"]  # straight through the quantiser, PGD breaks it
    refused = run_cli(*args)
    assert refused.returncode == 2 and "would be plain PGD" in refused.stderr


class Quantise(torch.nn.Module):
    def forward(self, x):
        return torch.round(x * 8) / 8


class ElevenForLargeBatches(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return torch.cat([out, out[:, :1]], 1) if x.shape[0] > 2 else out


class IntegerLogits(ElevenForLargeBatches):
    def forward(self, x):
        return (self.model(x) * 100).round().long()


class NoisyAtTestTime(ElevenForLargeBatches):
    def forward(self, x):
        return self.model((x + 0.3 * torch.randn_like(x)).clamp(0, 1))


class CountingCalls(ElevenForLargeBatches):
    """Changes its state in every forward pass (outputs unchanged: the determinism check cannot see it)."""

    def __init__(self, model):
        super().__init__(model)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        return self.model(x)


@pytest.mark.parametrize(
    "wrapper,message",
    [
        (ElevenForLargeBatches, r"output has shape \(\d+, 11\) on a batch of \d+ images"),
        (IntegerLogits, "not floating-point logits"),
        (NoisyAtTestTime, "differ between two passes over the same images"),
        (CountingCalls, "changed its weights or buffers while it was evaluated"),
    ],
)
def test_the_model_contract_is_checked_on_every_batch_and_cell(digits_models, tmp_path, wrapper, message):
    """Each of these once gave a number (0% with advice about --mean/--std, robust = clean, a random draw stored
    as a function, another function's accuracy); now each is an error that names the cause."""
    import copy

    model = wrapper(copy.deepcopy(from_checkpoint(digits_models[("baseline", "natural", 0)]).module))
    with pytest.raises(UserError, match=message):
        evaluate(model, dataset="digits", attacks=["fgsm"], eps=[16 / 255], n=100, lipschitz=False, workspace=tmp_path)


class FailsOnLargeBatches(ElevenForLargeBatches):
    def forward(self, x):
        if x.shape[0] > 64:
            raise RuntimeError("out of memory in my layer")
        return self.model(x)


def test_an_exception_of_a_third_party_model_is_its_error_not_a_bug_of_the_suite(digits_models, tmp_path):
    model = FailsOnLargeBatches(from_checkpoint(digits_models[("baseline", "natural", 0)]).module)
    with pytest.raises(
        UserError, match=r"the model raised RuntimeError on a batch of \d+ images: out of memory in my layer"
    ):
        evaluate(model, dataset="digits", attacks=[], eps=[8 / 255], n=200, lipschitz=False, workspace=tmp_path)


def test_autoattack_is_the_official_package_and_only_it_fills_autoattack_acc(digits_models, tmp_path):
    """attack autoattack runs the official AutoAttack (pyautoattack, what RobustBench evaluates with) and its cells
    say so; torchattacks' port is autoattack-ta, and a record's autoattack_acc comes from the official one only."""
    from importlib.metadata import version

    from robustbench_dc.records import ROBUSTBENCH_FIELDS, model_record, write_records
    from robustbench_dc.results.store import ResultStore

    target = from_checkpoint(digits_models[("baseline", "natural", 0)])
    frame = evaluate(
        target,
        dataset="digits",
        attacks=["autoattack", "autoattack-ta"],
        eps=[16 / 255],
        n=16,
        workspace=tmp_path,
        lipschitz=False,
    )
    with ResultStore(tmp_path) as store:
        backends = {
            c.key.attack: (c.key.backend, c.key.backend_version)
            for c in store.cells()
            if c.key.attack.startswith("autoattack")
        }
    assert backends == {
        "autoattack": ("pyautoattack", version("pyautoattack")),
        "autoattack-ta": ("torchattacks", version("torchattacks")),
    }
    official = frame.accuracy_of("autoattack", 16 / 255)
    record = model_record(target, frame.accuracy, dataset="digits", eps=16 / 255)
    assert record["autoattack_acc"] == f"{100 * official:.2f}"
    clean = frame.accuracy_of()
    assert official <= clean
    # RobustBench's layout, read the way its generate_leaderboard reads it: every *.json of <dataset>/<threat model>,
    # its fields alone, ranked by autoattack_acc; our own record beside it, outside that folder
    written = write_records(tmp_path / "model_info", [record])
    assert [p.relative_to(tmp_path / "model_info").as_posix() for p in written] == [
        "digits/Linf/baseline.json",
        "dc-robust/baseline.json",
    ]
    models = [json.loads(p.read_text()) for p in (tmp_path / "model_info/digits/Linf").glob("*.json")]
    models.sort(key=lambda m: m["autoattack_acc"], reverse=True)
    assert list(models[0]) == list(ROBUSTBENCH_FIELDS) and models[0]["autoattack_acc"] == record["autoattack_acc"]
    assert models[0]["architecture"] == "cnn9 (width 0.25)" and models[0]["eps"] == "16/255"


def test_the_callers_own_images_need_not_be_square(tmp_path):
    """Own tensors of any height and width: accuracy, attacks and the global bound at the images' own shape."""
    torch.manual_seed(0)
    model = create_model("tanhconv", width=0.125, in_channels=3, input_size=8).eval()
    x = (torch.rand(20, 3, 8, 12) * 255).round() / 255
    y = torch.randint(0, 10, (20,))
    result = evaluate(model, x=x, y=y, attacks=["fgsm"], eps=8 / 255, n=None, workspace=tmp_path, lipschitz_n=8)
    assert list(result.accuracy["n"]) == [20, 20] and result.accuracy_of("fgsm", 8 / 255) <= result.accuracy_of()
    bound = result.lipschitz["global"].iloc[0]
    assert bool(bound["supported"]) and math.isfinite(bound["log10_l2"])


def test_the_eval_command_is_library_calls_a_python_user_makes_too(digits_models, tmp_path):
    """What ``eval --json --save-model-record`` prints and writes comes from records.eval_document and
    records.record_evaluation, so a Python user gets the same document and the same files (cells read back)."""
    import shutil

    from robustbench_dc.attacks import BPDA, attacks_named
    from robustbench_dc.records import eval_document, record_evaluation

    ws = tmp_path / "ws"
    shutil.copytree(digits_models["workspace"] / "models", ws / "models")
    common = ["--dataset", "digits", "--workspace", str(ws), "--n", "48", "--eps", "16/255", "--attacks", "fgsm,bim"]
    r = run_cli("eval", "--model", "tanhconv", *common, "--source", "none", "--json", "--no-progress")
    assert r.returncode == 0, r.stderr
    target = from_checkpoint(digits_models[("tanhconv", "natural", 0)])
    result = evaluate(target, dataset="digits", workspace=ws, n=48, eps=[16 / 255], attacks=["fgsm", "bim"])
    assert result.cached
    document = eval_document(target, result)
    cli_document = json.loads(r.stdout)
    for kind in ("accuracy", "lipschitz"):
        for row in document[kind] + cli_document[kind]:
            row.pop("cached")
    assert json.loads(json.dumps(document, default=str)) == cli_document

    notes = record_evaluation(target, result, eps=[16 / 255], records_dir=tmp_path / "records")
    assert notes[0] == f"model records: 1 files in {tmp_path / 'records'}" and "no RobustBench" in notes[1]
    assert json.loads((tmp_path / "records/dc-robust/tanhconv.json").read_text())[0]["eps"] == "16/255"

    bpda, fgsm = attacks_named(["bpda-pgd", "fgsm"], straight_through=("quantise",))
    assert bpda == BPDA(straight_through=("quantise",)) and fgsm == get_attack("fgsm")
    assert attacks_named(["bpda-pgd"]) == [BPDA()]
    with pytest.raises(UserError, match="unknown attack 'pgd7'"):
        attacks_named(["pgd7"])
