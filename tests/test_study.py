"""Studies: TOML files naming models, regimes, attacks and claims; run, then reported model by model."""

import pandas as pd
import pytest

from robustbench_dc.errors import UserError
from robustbench_dc.reports.study_report import StudyCells, build_study_report, measured_targets
from robustbench_dc.results.query import Results
from robustbench_dc.study import load_study, parse_study, run_study, shipped_studies, targets, trainings
from tests.conftest import run_cli

TINY = {
    "name": "tiny", "dataset": "synthetic", "attacks": ["fgsm", "pgd"], "eps": ["8/255"], "n": 48, "source": "protocol",
    "diagnostics": False, "lipschitz_n": 8, "training": {"width": 0.125, "epochs": 1, "batch_size": 32, "recalibration_batches": 2},
    "models": [{"label": "plain", "arch": "resnet32"}, {"label": "gated", "arch": "convnet-aig", "options": {"target_rate": 0.5}}],
    "claims": [{"better": "gated", "than": "plain", "attack": "fgsm", "by": 1}],
}  # fmt: skip


def test_shipped_studies_parse_and_plan():
    assert {"aig", "seeds-smoke"} <= set(shipped_studies())
    aig = load_study("aig")
    assert [m.label for m in aig.models] == ["resnet32", "convnet-aig"]
    assert len(targets(aig)) == 4 and len(trainings(aig)) == 6  # 2 models x 2 regimes, + each one's protocol source
    smoke = load_study("seeds-smoke")
    assert {m.arch for m in smoke.models} == {"cnn9", "resnet32", "convnet-aig", "drconv", "ir-se"}


@pytest.mark.parametrize(
    "change,message",
    [
        ({"colour": 1}, "unknown key colour"),
        ({"models": [{"arch": "cnn9"}]}, "give it a label"),
        ({"models": [{"label": "a"}, {"label": "a"}]}, "distinct labels"),
        ({"attacks": ["fgsm", "deepfool"]}, "unknown attack 'deepfool'"),
        ({"claims": [{"better": "gated", "than": "nobody", "attack": "fgsm"}]}, "no model labelled 'nobody'"),
        ({"claims": [{"better": "gated", "than": "plain", "attack": "bim"}]}, "does not run"),
        ({"models": [{"label": "a", "arch": "convnet-aig", "options": {"rate": 1}}]}, "takes no option rate"),
        ({"models": [{"label": "a", "checkpoint": "x.pt", "options": {"depth": 32}}]}, "apply to trained models only"),
        ({"training": {"model": "tanhconv"}}, r"\[training\]: unknown key model"),
        ({"eps": ["eight"]}, "expected a number or a fraction"),
        ({"regimes": ["mixup"]}, "unknown training regime 'mixup'"),
        ({"source": "resnet"}, "source must be 'protocol' or 'none'"),
        ({"name": "../../../../elsewhere/x"}, "name must be one word"),
        ({"name": "a/b"}, "name must be one word"),
        ({"name": ".hidden"}, "name must be one word"),
        ({"training": {"recipe": "slow"}}, "unknown recipe 'slow'"),
    ],
)
def test_bad_study_files_say_what_is_wrong(change, message):
    raw = {**TINY, **change}
    if "claims" not in change and "models" in change:
        raw["claims"] = []
    with pytest.raises(UserError, match=message):
        parse_study(raw, "tiny.toml")


def test_study_cli_errors_and_list(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ndataset = "digits"\nmodels = [ { label = "a", arch = "vgg" } ]\n')
    r = run_cli("study", str(bad), "--workspace", str(tmp_path / "ws"))
    assert r.returncode == 2 and "unknown architecture 'vgg'" in r.stderr
    r = run_cli("study", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "no shipped study of that name; shipped: aig" in r.stderr
    (tmp_path / "broken.toml").write_text("name = \n")
    assert "not valid TOML" in run_cli("study", str(tmp_path / "broken.toml")).stderr
    listing = run_cli("study", "--list")
    assert listing.returncode == 0 and "aig: ConvNet-AIG" in listing.stdout


def test_two_models_with_one_zoo_name_are_reported_from_their_own_cells(tmp_path):
    """A ResNet-32 and a ConvNet-AIG are both 'baseline' in the zoo: the study keeps their cells apart."""
    study = parse_study(TINY, "tiny.toml")
    ws = tmp_path / "ws"
    times = run_study(study, workspace=ws, device="cpu")
    assert times["train"] > 0 and times["eval"] > 0
    assert run_study(study, workspace=ws, device="cpu")["train"] < times["train"]  # everything found, nothing redone
    measured, missing = measured_targets(study, ws)
    assert not missing and len({m.model.function_id for m in measured}) == 2
    cells = StudyCells(study, Results.load(ws, "synthetic"), measured)
    for m in measured:
        own = Results.load(ws, "synthetic").where(function=m.model.function_id, role="table", kind="accuracy", threat="none")
        assert cells(m.target.label, "natural", "white-box", "none").mean == pytest.approx(100 * own.entries[0].metrics["accuracy"])
        assert cells(m.target.label, "natural", "black-box", "fgsm", 8 / 255) is not None  # from the protocol source
    path = build_study_report(study, workspace=ws, out_dir=tmp_path / "report", command="dc-robust study tiny.toml")
    text = path.read_text()
    assert "| attack" in text and "plain" in text and "gated" in text and "Executed blocks (ConvNet-AIG gates)" in text
    assert "gated (natural) resists white-box fgsm at 8/255 better than plain by at least 1 points" in text
    assert "dc-robust study tiny.toml" in text and "not trained yet" not in text.lower() and "](differences.png)" in text
    frame = pd.read_csv(tmp_path / "report" / "results.csv")
    assert set(frame["function"]) <= {m.model.function_id for m in measured}  # no other model's cells (the sources are not targets)


def test_report_of_a_partly_trained_study_says_what_is_missing(tmp_path):
    study = parse_study({**TINY, "models": [TINY["models"][0]], "claims": [], "source": "none"}, "tiny.toml")
    run_study(study, workspace=tmp_path / "ws", device="cpu")
    bigger = parse_study({**TINY, "claims": [], "source": "none"}, "tiny.toml")
    text = build_study_report(bigger, workspace=tmp_path / "ws", out_dir=tmp_path / "r").read_text()
    assert "Not trained yet, so not in this report: gated natural seed 0" in text


def test_presets_are_shipped_studies_with_the_paper_report():
    from robustbench_dc.reproduce import PRESETS, Preset

    for name, preset in PRESETS.items():
        study = load_study(name)
        assert study.report == "paper" and Preset.from_study(study) == preset
    assert PRESETS["quick"].seeds == (0, 1, 2) and PRESETS["quick"].models == ("baseline", "sphereconv", "ballconv", "tanhconv")
    with pytest.raises(UserError, match="needs zoo models of one architecture"):
        Preset.from_study(load_study("aig"))


def test_a_study_runs_no_factory_code_without_trust(tmp_path):
    """A study file someone sends you must not run code: ``factory`` needs --trust-code, and its relative path is
    the study file's neighbour, not the current directory's."""
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\ndef build():\n    raise SystemExit\n")
    (tmp_path / "weights.pt").write_bytes(b"")
    study_file = tmp_path / "sent.toml"
    study_file.write_text('name = "sent"\ndataset = "digits"\n[[models]]\nlabel = "theirs"\ncheckpoint = "weights.pt"\nfactory = "evil.py:build"\n')
    r = run_cli("study", str(study_file), "--workspace", str(tmp_path / "ws"), "--no-progress", cwd=tmp_path.parent)
    assert r.returncode == 2 and "--trust-code" in r.stderr and not marker.exists()
    with pytest.raises(UserError, match="imports and runs that code"):
        run_study(load_study(study_file), workspace=tmp_path / "ws")
    assert not marker.exists()
    from robustbench_dc.study import external_spec

    trusted = load_study(study_file, trust_code=True)
    _, kwargs = external_spec(trusted, trusted.model("theirs"))
    assert kwargs["factory"] == f"{tmp_path / 'evil.py'}:build"


def test_recipe_in_a_study_and_explicit_settings_override_it():
    study = parse_study({**TINY, "training": {"recipe": "fast", "width": 0.125, "epochs": 1}}, "tiny.toml")
    config = trainings(study)[0]
    assert config.schedule == "triangle" and config.epochs == 1 and config.batch_size == 512 and config.init == "dirac"


def test_bpda_runs_only_where_it_differs_from_pgd():
    """In a study bpda-pgd runs for the models with a surrogate gradient (decoupled layers, hard decisions), not for
    those where it would be plain PGD with the same seed."""
    from robustbench_dc.study import jobs

    study = parse_study({**TINY, "attacks": ["fgsm", "bpda-pgd"]}, "tiny.toml")
    by_label = {j.label: j.attacks for j in jobs(study)}
    assert by_label == {"plain natural seed 0": ("fgsm",), "gated natural seed 0": ("fgsm", "bpda-pgd")}
