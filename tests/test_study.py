"""Studies: TOML files naming models, regimes, attacks and claims; run, then reported model by model."""

import json
from pathlib import Path

import pandas as pd
import pytest

from robustbench_dc.errors import UserError
from robustbench_dc.pipeline import plan, run_study, trainings
from robustbench_dc.reports.build import write_study_report
from robustbench_dc.reports.study_report import StudyCells, build_study_report, measured_targets
from robustbench_dc.results.query import Results
from robustbench_dc.study import load_study, parse_study, shipped_studies
from tests.conftest import run_cli

TINY = {
    "name": "tiny",
    "dataset": "synthetic",
    "attacks": ["fgsm", "pgd"],
    "eps": ["8/255"],
    "n": 48,
    "source": "protocol",
    "diagnostics": False,
    "lipschitz_n": 8,
    "training": {"width": 0.125, "epochs": 1, "batch_size": 32, "recalibration_batches": 2},
    "models": [
        {"label": "plain", "arch": "resnet32"},
        {"label": "gated", "arch": "convnet-aig", "options": {"target_rate": 0.5}},
    ],
    "claims": [{"better": "gated", "than": "plain", "attack": "fgsm", "by": 1}],
}


def test_shipped_studies_parse_and_plan():
    assert {"aig", "seeds-smoke"} <= set(shipped_studies())
    aig = load_study("aig")
    assert [m.label for m in aig.models] == ["resnet32", "convnet-aig"]
    assert len(aig.targets()) == 4 and len(trainings(aig)) == 6  # 2 models x 2 regimes, + each one's protocol source
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
        (
            {"claims": [{"better": "gated", "than": "plain", "attack": "fgsm", "threat": "whitebox"}]},
            r"claims\[0\]: a claim's threat is white-box or black-box, got 'whitebox'",
        ),
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
        # every value is checked for its type, with the key named (never read as something else, never a traceback)
        ({"seeds": "abc"}, "seeds: expected a list, got 'abc'"),
        ({"seeds": [0, "1"]}, "seeds: expected an integer, got '1'"),
        ({"seeds": [2**64]}, r"seeds must be integers in \[0, 2\*\*32\)"),
        ({"seeds": [0, 1], "diagnostics_seeds": [2]}, r"diagnostics_seeds must be some of the study's seeds \[0, 1\]"),
        ({"diagnostics_seeds": []}, "diagnostics_seeds must be some of the study's seeds"),
        ({"training": {"width": "wide"}}, r"\[training\] width: expected a number, got 'wide'"),
        ({"training": {"epochs": 1e12}}, r"\[training\] epochs: expected an integer, got 1000000000000.0 \(float\)"),
        ({"training": {"compile": "yes"}}, r"\[training\] compile: expected a bool"),
        ({"models": 5}, "models: expected a list, got 5"),
        ({"models": ["resnet32"]}, r"models\[0\]: expected a table"),
        ({"models": [{"label": 3}]}, r"models\[0\] label: expected a str"),
        ({"diagnostics": "false"}, "diagnostics: expected a bool, got 'false'"),
        ({"n": 0}, 'n must be an integer >= 1 or "all", got 0'),
        ({"n": "half"}, 'n must be an integer >= 1 or "all"'),
        ({"square_queries": 2.5}, "square_queries must be an integer >= 1"),
        ({"attacks": "fgsm"}, "attacks: expected a list"),
        (
            {"claims": [{"better": "gated", "than": "plain", "attack": "fgsm", "by": "lots"}]},
            r"claims\[0\] by: expected a number",
        ),
        ({"transfer_matrix": 1}, "transfer_matrix: expected a bool"),
        ({"training": {"fgsm": 8}}, r"\[training.fgsm\]: expected a table, got 8"),
        ({"training": {"fgsm": {"epochs": 2}}}, r"\[training.fgsm\] sets a regime that none of the study's models"),
        ({"regimes": ["natural", "fgsm"], "training": {"fgsm": {"seed": 1}}}, r"\[training.fgsm\]: unknown key seed"),
        (
            {"regimes": ["natural", "fgsm"], "training": {"fgsm": {"epochs": "many"}}},
            r"\[training.fgsm\] epochs: expected an integer",
        ),
    ],
)
def test_bad_study_files_say_what_is_wrong(change, message):
    raw = {**TINY, **change}
    if "claims" not in change and "models" in change:
        raw["claims"] = []
    with pytest.raises(UserError, match=message):
        parse_study(raw, "tiny.toml")


def test_diagnostics_run_on_the_chosen_seeds_only():
    """The diagnostics check how a model is evaluated: a study may run them on its first seed's models only (half
    of a paper-cpu model's evaluation time, BENCHMARKS.md), and the plan says so job by job."""
    from robustbench_dc.pipeline import jobs

    every = jobs(parse_study({**TINY, "seeds": [0, 1], "diagnostics": True}, "tiny.toml"))
    assert len(every) == 4 and all(j.diagnostics is not None for j in every)
    first = jobs(parse_study({**TINY, "seeds": [0, 1], "diagnostics": True, "diagnostics_seeds": [0]}, "tiny.toml"))
    assert {(j.names.seed, j.diagnostics is not None) for j in first} == {(0, True), (1, False)}
    assert load_study("paper-cpu").diagnostics_seeds == (0,)


def test_study_cli_errors_and_list(tmp_path, monkeypatch):
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
    (tmp_path / "aig").mkdir()  # a folder named like a shipped study (a workspace, say) does not hide the study
    monkeypatch.chdir(tmp_path)
    assert load_study("aig").name == "aig"


def test_two_models_with_one_zoo_name_are_reported_from_their_own_cells(tmp_path):
    """A ResNet-32 and a ConvNet-AIG are both 'baseline' in the zoo: the study keeps their cells apart."""
    study = parse_study(TINY, "tiny.toml")
    ws = tmp_path / "ws"
    times = run_study(study, workspace=ws, device="cpu")
    assert times["train"] > 0 and times["eval"] > 0
    assert run_study(study, workspace=ws, device="cpu")["train"] < times["train"]  # everything found, nothing redone
    results = Results.load(ws, "synthetic")
    measured, missing = measured_targets(study, results)
    assert not missing and len({m.function_id for m in measured}) == 2
    cells = StudyCells(study, results, measured)
    for m in measured:
        own = results.where(function=m.function_id, role="table", kind="accuracy", threat="none")
        assert cells(m.target.label, "natural", "white-box", "none").mean == pytest.approx(
            100 * own.entries[0].metrics["accuracy"]
        )
        assert cells(m.target.label, "natural", "black-box", "fgsm", 8 / 255) is not None  # from the protocol source
    path = build_study_report(study, workspace=ws, out_dir=tmp_path / "report", command="dc-robust study tiny.toml")
    text = path.read_text()
    assert "| attack" in text and "plain" in text and "gated" in text and "Executed blocks (ConvNet-AIG gates)" in text
    assert "gated (natural) resists white-box fgsm at 8/255 better than plain by at least 1 points" in text
    # the one significance rule (the exact test decides), said as the paper report says it
    assert "that test rejects equality at 5%" in text and "interval excludes zero" not in text
    assert (
        "dc-robust study tiny.toml" in text and "not evaluated yet" not in text.lower() and "](differences.png)" in text
    )
    assert (
        "## Lipschitz estimates" in text and "](lipschitz.png)" in text
    )  # the study computed Lipschitz cells: they are shown
    frame = pd.read_csv(tmp_path / "report" / "results.csv")
    assert set(frame["function"]) <= {
        m.function_id for m in measured
    }  # no other model's cells (the sources are not targets)

    # the report reads the store alone: without the checkpoints it is the same report
    import shutil
    import sqlite3

    from robustbench_dc.pipeline import record_targets

    shutil.move(ws / "models", tmp_path / "models-aside")
    assert (
        build_study_report(
            study, workspace=ws, out_dir=tmp_path / "again", command="dc-robust study tiny.toml"
        ).read_text()
        == text
    )
    # a store whose cells were evaluated before it recorded which model is which: record_targets finds them again
    shutil.move(tmp_path / "models-aside", ws / "models")
    with sqlite3.connect(ws / "results.sqlite") as db:
        db.execute("DELETE FROM study_targets")
    assert (
        "Not evaluated yet (or not trained), so not in this report: plain natural seed 0, gated natural seed 0"
        in build_study_report(study, workspace=ws, out_dir=tmp_path / "old").read_text()
    )
    record_targets(study, ws)
    assert (
        build_study_report(
            study, workspace=ws, out_dir=tmp_path / "again", command="dc-robust study tiny.toml"
        ).read_text()
        == text
    )


def test_report_of_a_partly_trained_study_says_what_is_missing(tmp_path):
    study = parse_study({**TINY, "models": [TINY["models"][0]], "claims": [], "source": "none"}, "tiny.toml")
    run_study(study, workspace=tmp_path / "ws", device="cpu")
    bigger = parse_study({**TINY, "claims": [], "source": "none"}, "tiny.toml")
    path, tables = write_study_report(bigger, workspace=tmp_path / "ws", out_dir=tmp_path / "r")
    assert (
        "Not evaluated yet (or not trained), so not in this report: gated natural seed 0" in path.read_text()
        and tables == ""
    )


def test_a_paper_tables_report_of_an_unfinished_study_says_it_is_incomplete(tmp_path):
    """The paper template's tables read as the whole study while models were missing from the store; it says which
    under its introduction now, in the study template's words."""
    models = [{"label": "baseline"}, {"label": "tanhconv", "model": "tanhconv"}]
    paper = {**TINY, "report": "paper", "attacks": ["fgsm"], "source": "none", "claims": []}
    run_study(parse_study({**paper, "models": models[:1]}, "tiny.toml"), workspace=tmp_path / "ws", device="cpu")
    whole = parse_study({**paper, "models": models}, "tiny.toml")
    text = write_study_report(whole, workspace=tmp_path / "ws", out_dir=tmp_path / "r")[0].read_text()
    assert "**Incomplete.** Not evaluated yet (or not trained), so not in this report: tanhconv natural seed 0" in text
    run_study(whole, workspace=tmp_path / "ws", device="cpu")
    done = write_study_report(whole, workspace=tmp_path / "ws", out_dir=tmp_path / "r")[0]
    assert "Incomplete" not in done.read_text()


def test_a_report_of_fewer_seeds_than_the_study_says_which_it_leaves_out(tmp_path):
    """A run narrowed by --seeds made a report that read as the whole study (its description naming three seeds,
    no word of the two left out); both templates say which training seeds it leaves out now."""
    from robustbench_dc.study import with_options

    paper = {**TINY, "models": [{"label": "baseline"}], "attacks": ["fgsm"], "source": "none", "claims": []}
    for report in ("paper", "study"):
        study = with_options(parse_study({**paper, "report": report, "seeds": [0, 1, 2]}, "tiny.toml"), seeds="0")
        run_study(study, workspace=tmp_path / report, device="cpu")
        text = write_study_report(study, workspace=tmp_path / report, out_dir=tmp_path / report / "r")[0].read_text()
        assert "Training seeds 1, 2 of the study (0, 1, 2) are not in this report: it was built with `--seeds 0`" in (
            " ".join(text.split())
        ), report
        assert ("**Incomplete.**" in text) == (report == "paper")
    whole = with_options(parse_study({**paper, "report": "paper", "seeds": [0]}, "tiny.toml"), seeds="0")
    assert (
        "not in this report"
        not in write_study_report(whole, workspace=tmp_path / "paper", out_dir=tmp_path / "whole")[0].read_text()
    )


def test_a_paper_tables_report_narrowed_by_seeds_leaves_the_other_seeds_cells_out(tmp_path):
    """`--seeds 0 --report-only` on a store that also held seed 1's cells averaged both seeds in the paper template
    (it selected the whole store), while the report said it was built from seed 0 alone."""
    import pandas as pd

    from robustbench_dc.study import with_options

    paper = {**TINY, "models": [{"label": "baseline"}], "attacks": ["fgsm"], "source": "none", "claims": []}
    study = parse_study({**paper, "report": "paper", "seeds": [0, 1]}, "tiny.toml")
    ws = tmp_path / "ws"
    seed0 = with_options(study, seeds="0")
    run_study(seed0, workspace=ws, device="cpu")
    before, tables = write_study_report(seed0, workspace=ws, out_dir=tmp_path / "before")
    run_study(with_options(study, seeds="1"), workspace=ws, device="cpu")
    after, tables_after = write_study_report(seed0, workspace=ws, out_dir=tmp_path / "after")
    assert after.read_text() == before.read_text() and tables_after == tables
    assert set(pd.read_csv(tmp_path / "after" / "results.csv")["model.seed"]) == {0}
    both = write_study_report(study, workspace=ws, out_dir=tmp_path / "both")[0]
    assert (
        set(pd.read_csv(tmp_path / "both" / "results.csv")["model.seed"]) == {0, 1}
        and both.read_text() != after.read_text()
    )


def test_a_paper_tables_report_reads_the_studys_own_models_not_an_earlier_recipe_beside_them(tmp_path):
    """A study file changed its training (paper-cpu's FGSM epochs 15 -> 20) and went on in the same workspace: the
    new models train beside the old ones under the same names, and the paper template, which selected every cell of
    the store's arch and width, refused its report ("2 sets of cells differ in more than the training seed") once
    both were evaluated. It reads the functions the store records as the study's models now."""
    paper = {**TINY, "report": "paper", "models": [{"label": "baseline"}], "attacks": ["fgsm"], "source": "none"}
    ws = tmp_path / "ws"
    run_study(parse_study({**paper, "claims": []}, "tiny.toml"), workspace=ws, device="cpu")
    longer = parse_study({**paper, "claims": [], "training": {**TINY["training"], "epochs": 2}}, "tiny.toml")
    run_study(longer, workspace=ws, device="cpu")
    assert len({e.key.function for e in Results.load(ws, "synthetic").entries}) == 2  # both recipes' cells are kept
    write_study_report(longer, workspace=ws, out_dir=tmp_path / "r")
    cells = pd.read_csv(tmp_path / "r" / "results.csv")
    assert set(cells["model.epochs"]) == {2} and cells["function"].nunique() == 1


def test_presets_are_shipped_studies_with_the_paper_report():
    from robustbench_dc import names

    for name in names.PRESETS:
        study = load_study(name)
        assert study.report == "paper" and study.transfer_matrix and study.eps_match
        stages = plan(study).afterwards
        assert [type(s).__name__ for s in stages] == ["TransferStage", "EpsMatchStage"]
    quick = load_study("quick")
    assert quick.seeds == (0, 1, 2) and [m.label for m in quick.models] == [
        "baseline",
        "sphereconv",
        "ballconv",
        "tanhconv",
    ]
    assert not plan(load_study("aig")).afterwards  # only where a study asks for them
    with pytest.raises(UserError, match="needs zoo models of one architecture"):
        parse_study({**TINY, "report": "paper", "claims": []}, "tiny.toml")
    with pytest.raises(UserError, match="eps_match needs a trained model labelled"):
        parse_study({**TINY, "eps_match": True, "claims": []}, "tiny.toml")


def test_seeds_run_apart_share_one_matched_eps_and_one_transfer_matrix():
    """A later seed run on its own (--seeds 1) finds the eps match on the study's first seed's natural baseline, as
    one run of every seed does, and computes no second transfer matrix: merged, the seeds' cells are read at one eps
    and in one matrix (before, each run matched on its own baseline and built its own matrix)."""
    from robustbench_dc.pipeline import EpsMatchStage, TransferStage, trainings
    from robustbench_dc.study import with_options

    study = load_study("paper-cpu")
    together, apart = plan(study), plan(with_options(study, seeds="1"))
    match = [s for s in together.afterwards if isinstance(s, EpsMatchStage)][0]
    match_apart = [s for s in apart.afterwards if isinstance(s, EpsMatchStage)][0]
    assert match.baseline.seed == match_apart.baseline.seed == 0
    assert match_apart.baseline == match.baseline and {c.seed for c in match_apart.targets} == {1}
    assert match_apart.baseline in trainings(with_options(study, seeds="1"))
    assert not [s for s in apart.afterwards if isinstance(s, TransferStage)]
    assert {c.seed for s in together.afterwards if isinstance(s, TransferStage) for c in s.models} == {0}


PAPER_CPU = Path(__file__).parent.parent / "reports" / "paper-cpu"


def test_the_shipped_checkpoints_are_the_planned_trainings():
    """One function owns the training identity: the paper-cpu checkpoints shipped in reports/ are exactly what
    the study plans, each planned training once (a resumed long run continues them instead of training others)."""
    cards = sorted((PAPER_CPU / "models").rglob("card.json"))
    planned = [json.dumps(c.to_dict(), sort_keys=True) for c in trainings(load_study("paper-cpu"))]
    shipped = [json.dumps(json.loads(card.read_text())["train_config"], sort_keys=True) for card in cards]
    assert sorted(shipped) == sorted(planned)


def test_a_study_runs_no_factory_code_without_trust(tmp_path):
    """A study file someone sends you must not run code: ``factory`` needs --trust-code, and its relative path is
    the study file's neighbour, not the current directory's."""
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\ndef build():\n    raise SystemExit\n"
    )
    (tmp_path / "weights.pt").write_bytes(b"")
    study_file = tmp_path / "sent.toml"
    study_file.write_text(
        'name = "sent"\ndataset = "digits"\n[[models]]\nlabel = "theirs"\ncheckpoint = "weights.pt"\nfactory = '
        '"evil.py:build"\n'
    )
    r = run_cli("study", str(study_file), "--workspace", str(tmp_path / "ws"), "--no-progress", cwd=tmp_path.parent)
    assert r.returncode == 2 and "--trust-code" in r.stderr and not marker.exists()
    with pytest.raises(UserError, match="imports and runs that code"):
        run_study(load_study(study_file), workspace=tmp_path / "ws")
    assert not marker.exists()
    from robustbench_dc.pipeline import external_spec

    trusted = load_study(study_file, trust_code=True)
    _, kwargs = external_spec(trusted, trusted.model("theirs"))
    assert kwargs["factory"] == f"{tmp_path / 'evil.py'}:build"


def test_recipe_in_a_study_and_explicit_settings_override_it():
    study = parse_study({**TINY, "training": {"recipe": "fast", "width": 0.125, "epochs": 1}}, "tiny.toml")
    config = trainings(study)[0]
    assert config.schedule == "triangle" and config.epochs == 1 and config.batch_size == 512 and config.init == "dirac"


def test_a_regime_table_sets_that_regimes_trainings_only():
    """[training.fgsm] gives FGSM training more epochs than natural training (paper-cpu: FGSM-trained networks need
    them to reach the clean accuracy the natural ones reach sooner); the other regime's identity is unchanged."""
    training = {"recipe": "fast", "width": 0.125, "epochs": 1, "fgsm": {"epochs": 3, "lr": 0.2}}
    study = parse_study({**TINY, "regimes": ["natural", "fgsm"], "training": training}, "tiny.toml")
    targets = {(t.label, t.training): study.train_config(study.model(t.label), t.training, 0) for t in study.targets()}
    assert {k: (c.epochs, c.lr) for k, c in targets.items()} == {
        ("plain", "natural"): (1, 0.4),
        ("gated", "natural"): (1, 0.4),
        ("plain", "fgsm"): (3, 0.2),
        ("gated", "fgsm"): (3, 0.2),
    }
    # the protocol's black-box source is a natural baseline of the target's recipe (epochs included), seed + 1
    sources = {(c.arch, c.epochs) for c in trainings(study) if c.training == "natural" and c.seed == 1}
    assert sources == {("resnet32", 1), ("resnet32", 3), ("convnet-aig", 1), ("convnet-aig", 3)}
    without = parse_study({**TINY, "regimes": ["natural", "fgsm"], "training": {**training, "fgsm": {}}}, "tiny.toml")
    natural = [c.to_dict() for c in trainings(without) if c.training == "natural" and c.seed == 0]
    assert natural and natural == [c.to_dict() for c in trainings(study) if c.training == "natural" and c.seed == 0]


def test_bpda_runs_only_where_it_differs_from_pgd():
    """In a study bpda-pgd runs for the models with a surrogate gradient (decoupled layers, hard decisions), not for
    those where it would be plain PGD with the same seed."""
    from robustbench_dc.pipeline import jobs

    study = parse_study({**TINY, "attacks": ["fgsm", "bpda-pgd"]}, "tiny.toml")
    by_label = {j.label: tuple(a.name for a in j.spec.attacks) for j in jobs(study)}
    assert by_label == {"plain natural seed 0": ("fgsm",), "gated natural seed 0": ("fgsm", "bpda-pgd")}


def test_a_study_is_not_continued_in_another_precision(tmp_path, monkeypatch):
    """paper-cpu's shipped checkpoints ran in bf16 (a CPU with AMX): continued where precision 'auto' resolves
    to fp32, the study is refused before any training; where it resolves to bf16, it goes on."""
    import shutil
    from pathlib import Path

    from robustbench_dc import devices
    from robustbench_dc.pipeline import check_one_precision

    shutil.copytree(Path(__file__).parent.parent / "reports" / "paper-cpu" / "models", tmp_path / "models")
    # one training left to do, whatever the shipped study holds: a study whose every model is trained trains nothing
    shutil.rmtree(tmp_path / "models" / "cifar10" / "tanhconv" / "fgsm" / "cnn9-w0.5-seed2")
    study = load_study("paper-cpu")
    monkeypatch.setattr(devices, "bf16_native", lambda device: False)
    with pytest.raises(
        UserError,
        match=r"finished trainings ran in bf16 .*would train the rest in fp32; one study's models share one precision",
    ):
        check_one_precision(study, trainings(study), tmp_path, "cpu")
    with pytest.raises(UserError, match="one study's models share one precision"):
        run_study(study, workspace=tmp_path, device="cpu", data_dir=tmp_path)
    monkeypatch.setattr(devices, "bf16_native", lambda device: True)
    check_one_precision(study, trainings(study), tmp_path, "cpu")


def test_a_study_model_may_have_its_own_learning_rate():
    """A network without BatchNorm stays at chance at the fast recipe's 0.4 (the paper-gap study's arm): its own lr."""
    from robustbench_dc.study import parse_study

    raw = {
        "name": "s",
        "dataset": "digits",
        "training": {"recipe": "fast"},
        "models": [{"label": "bn"}, {"label": "nobn", "options": {"batchnorm": False}, "lr": 0.05}],
    }
    study = parse_study(raw)
    assert study.train_config(study.model("nobn"), "natural", 0).lr == 0.05
    assert study.train_config(study.model("bn"), "natural", 0).lr == 0.4
