"""The store and the query layer, built from cells directly (no training, no torch models)."""

import hashlib
import json
import logging
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from robustbench_dc.diagnostics.checks import Measured, diagnose, measured_from_cells, pgd_params
from robustbench_dc.model_info import ModelInfo
from robustbench_dc.reports.paper_report import build_report
from robustbench_dc.results.cells import CellKey, Subset, attack_params
from robustbench_dc.results.query import AmbiguousResults, Results
from robustbench_dc.results.store import ResultStore, StoredCell, StudyTarget
from robustbench_dc.targets import protocol_source_config, recipe_id

BASE = {
    "model": "tanhconv",
    "dataset": "digits",
    "arch": "cnn9",
    "width": 0.25,
    "training": "natural",
    "eps": 8 / 255,
    "epochs": 4,
    "seed": 0,
    "operator": {},
    "weight_projection": False,
}


def zoo_info(config: dict) -> ModelInfo:
    return ModelInfo.from_dict(
        {
            "kind": "zoo",
            "name": config["model"],
            "training": config["training"],
            "seed": config["seed"],
            "arch": config["arch"],
            "width": config["width"],
            "label": config["model"],
            "train_config": config,
            "recipe": recipe_id(config),
            "dataset": "digits",
        }
    )


def key(
    function: str, threat="white-box", attack="fgsm", eps=8 / 255, n=100, role="table", source="", params=None
) -> CellKey:
    none = attack == "none"
    return CellKey(
        function=function,
        dataset="digits",
        data="d" * 64,
        subset=Subset(n, 360, 0),
        role=role,
        kind="accuracy",
        threat="none" if none else threat,
        attack=attack,
        params=attack_params(params or {}),
        eps=0.0 if none else eps,
        backend="" if none else "torchattacks",
        backend_version="" if none else "3.5.1",
        source=source,
    )


def put(store: ResultStore, k: CellKey, accuracy: float, n: int = 100) -> None:
    correct = round(accuracy * n)
    store.put(
        k,
        {"n": n, "correct": correct, "accuracy": correct / n, "per_example": "1" * correct + "0" * (n - correct)},
        1.0,
        {"device": "cpu"},
    )


@pytest.fixture
def store(tmp_path):
    with ResultStore(tmp_path) as s:
        yield s


def test_table8_reads_the_protocol_source_only(store, tmp_path):
    target = dict(BASE)
    protocol = protocol_source_config(target)
    other = {**protocol, "seed": 0}  # the transfer matrix's source: shares the target's seed
    for fid, cfg in (("t", target), ("p", protocol), ("o", other)):
        store.put_function(fid, zoo_info(cfg))
    put(store, key("t", attack="none"), 0.9)
    put(store, key("t", threat="black-box", source="p"), 0.40)
    put(store, key("t", threat="black-box", source="o"), 0.60)
    r = Results.load(tmp_path, "digits")
    cell = r.accuracy("tanhconv", "natural", "fgsm", 8 / 255, threat="black-box")
    assert cell.mean == pytest.approx(40.0) and cell.seeds == 1 and cell.std == 0.0  # was: 50 "±0.8 sd over 2 seeds"
    assert "sd" not in cell.text()


def test_cells_differing_in_more_than_the_seed_are_never_pooled(store, tmp_path):
    for fid, cfg in (("a", BASE), ("b", {**BASE, "width": 1.0})):
        store.put_function(fid, zoo_info(cfg))
        put(store, key(fid), 0.3 if fid == "a" else 0.6)
    r = Results.load(tmp_path, "digits")
    with pytest.raises(AmbiguousResults, match="differ in more than the training seed: model"):
        r.accuracy("tanhconv", "natural", "fgsm", 8 / 255)
    assert r.where(width=0.25).accuracy("tanhconv", "natural", "fgsm", 8 / 255).mean == pytest.approx(30.0)


@pytest.mark.parametrize(
    "field,value", [("backend_version", "3.6"), ("n", 50), ("params", '{"step":0.1}'), ("role", "diagnostics")]
)
def test_query_groups_split_on_every_identity_field(store, tmp_path, field, value):
    store.put_function("a", zoo_info(BASE))
    store.put_function("a1", zoo_info({**BASE, "seed": 1}))
    put(store, key("a"), 0.3)
    k = key("a1")
    changed = CellKey.from_dict(
        {**k.to_dict(), **({"subset": {"n": value, "of": 360, "seed": 0}} if field == "n" else {field: value})}
    )
    put(store, changed, 0.5)
    r = Results.load(tmp_path, "digits").where(role=None)
    assert len(r.where(kind="accuracy").groups()) == 2


def test_seeds_aggregate_with_a_t_interval(store, tmp_path):
    for seed, acc in ((0, 0.30), (1, 0.34), (2, 0.32)):
        fid = f"s{seed}"
        store.put_function(fid, zoo_info({**BASE, "seed": seed}))
        put(store, key(fid), acc)
    cell = Results.load(tmp_path, "digits").accuracy("tanhconv", "natural", "fgsm", 8 / 255)
    assert cell.seeds == 3 and cell.mean == pytest.approx(32.0) and cell.std == pytest.approx(2.0)
    assert cell.low == pytest.approx(32 - 4.302653 * 2 / 3**0.5, abs=1e-3)  # t(0.975, 2 df)
    assert "±2.0 sd over 3 seeds" in cell.text()


def test_an_interval_over_seeds_stays_within_what_an_accuracy_can_be(store, tmp_path):
    """Two seeds far apart (one FGSM-trained network overfitted catastrophically, the other not) gave a t-interval
    of [-282.9, 413.6]% in a report: an accuracy's interval is now clipped to [0, 100]."""
    for seed, acc in ((0, 0.93), (1, 0.38)):
        store.put_function(f"s{seed}", zoo_info({**BASE, "seed": seed}))
        put(store, key(f"s{seed}"), acc)
    cell = Results.load(tmp_path, "digits").accuracy("tanhconv", "natural", "fgsm", 8 / 255)
    assert cell.mean == pytest.approx(65.5) and (cell.low, cell.high) == (0.0, 100.0)
    assert cell.text().endswith("[0.0, 100.0]")
    from robustbench_dc.reports.claims import compare

    for seed, acc in ((0, 0.35), (1, 0.34)):  # a steady model: the paired difference's interval stays in +-100
        store.put_function(f"b{seed}", zoo_info({**BASE, "model": "baseline", "seed": seed}))
        put(store, key(f"b{seed}"), acc)
    steady = Results.load(tmp_path, "digits").accuracy("baseline", "natural", "fgsm", 8 / 255)
    c = compare(cell, steady)
    assert c.diff == pytest.approx(31.0) and (c.low, c.high) == (-100.0, 100.0)


def test_report_refuses_to_mix_subsets_and_notes_the_ones_left_out(store, tmp_path):
    """A second subset in the store stopped README's plain `dc-robust report`: it now takes the largest subset
    that holds every model, names the others, and refuses only where no subset holds them all."""
    store.put_function("a", zoo_info({**BASE, "model": "baseline"}))
    for n in (100, 50):
        put(store, key("a", attack="none", n=n), 0.9, n)
        put(store, key("a", n=n), 0.3, n)
    text = build_report(workspace=tmp_path, dataset="digits", out_dir=tmp_path / "r").read_text()
    assert "cells on 50 images are in the store but not in these tables" in text
    text = build_report(workspace=tmp_path, dataset="digits", out_dir=tmp_path / "r", n=50).read_text()
    assert "cells on 100 images are in the store but not in these tables" in text
    store.put_function("b", zoo_info({**BASE, "model": "tanhconv"}))
    put(store, key("b", attack="none", n=20), 0.9, 20)  # a second model on a subset of its own
    with pytest.raises(AmbiguousResults, match="none of them holding every model; choose one with --n"):
        build_report(workspace=tmp_path, dataset="digits", out_dir=tmp_path / "r")
    assert "SPEC" not in text and "docs/protocol.md" in text


def test_an_older_schema_is_set_aside_with_a_warning(tmp_path, caplog):
    conn = sqlite3.connect(tmp_path / "results.sqlite")
    conn.executescript(
        "CREATE TABLE cells (key TEXT PRIMARY KEY, model_sha256 TEXT, kind TEXT, identity TEXT, metrics TEXT, seconds "
        "REAL, created TEXT);INSERT INTO cells VALUES ('k', 'm', 'accuracy', '{}', '{}', 1.0, 'now');"
    )
    conn.commit()
    conn.close()
    with caplog.at_level(logging.WARNING), ResultStore(tmp_path) as store:
        assert store.count() == 0
    assert "older schema" in caplog.text
    tables = {
        r[0]
        for r in sqlite3.connect(tmp_path / "results.sqlite").execute(
            "SELECT name FROM sqlite_master WHERE type='table'"
        )
    }
    assert any(t.startswith("cells_v1_") for t in tables)


def test_a_cell_keys_vocabulary_is_typed_and_keeps_its_stored_identity():
    """Role, kind and threat read back from a store as strings become their members; the key, and so every stored
    cell's reuse, is the same as with the strings (this hash is the key made before the vocabulary was typed)."""
    from robustbench_dc.names import CellKind, Role, Threat

    key = CellKey(
        function="f",
        dataset="digits",
        data="d",
        subset=Subset(10, 100, 0),
        role="diagnostics",
        kind="accuracy",
        threat="white-box",
        attack="fgsm",
        eps=8 / 255,
    )
    assert (key.role, key.kind, key.threat) == (Role.DIAGNOSTICS, CellKind.ACCURACY, Threat.WHITE_BOX)
    assert type(key.role) is Role and type(CellKey.from_dict(key.to_dict()).kind) is CellKind
    assert key.store_key() == "d696242e16ba8e2b50d4dc4228eaba7c74acb77e04543292f2b0c600b6cefed7"
    with pytest.raises(ValueError, match="unknown cell role 'tables'; valid: table, diagnostics, transfer-matrix"):
        replace(key, role="tables")


def test_store_cell_computes_once(store):
    calls = []
    k = key("a")
    first = store.cell(k, lambda: calls.append(1) or {"accuracy": 0.5}, provenance={})
    second = store.cell(k, lambda: calls.append(1) or {"accuracy": 0.7}, provenance={})
    assert calls == [1] and not first.cached and second.cached and second.metrics == {"accuracy": 0.5}
    assert store.cell(k, lambda: {"accuracy": 0.7}, provenance={}, recompute=True).metrics == {"accuracy": 0.7}


def _cell(attack, acc, eps=32 / 255, threat="white-box", params=None, n=100):
    return StoredCell(
        key("f", threat=threat, attack=attack, eps=eps, params=params),
        {"accuracy": acc, "n": n, "per_example": ""},
        {},
        0.0,
    )


def test_diagnostic_pgd_cells_are_found_by_their_full_parameters():
    eps = 32 / 255
    cells = [
        _cell("none", 0.9),
        _cell("fgsm", 0.5),
        _cell("pgd", 0.2, params=pgd_params("pgd20", eps)),
        _cell("pgd", 0.1, params={"step": 2 / 255, "steps": 40, "restarts": 1}),
    ]  # a PGD-40 of another step: not the diagnostic one
    m = measured_from_cells(cells, eps)
    assert m.white == {"fgsm": 0.5, "pgd20": 0.2} and m.n == 100


def right(k: int, n: int = 100) -> str:
    """Per-image outcomes: the first ``k`` of ``n`` images right (so a smaller k is a subset of a larger one)."""
    return "1" * k + "0" * (n - k)


E = 32 / 255


@pytest.mark.parametrize(
    "measured,name,status",
    [
        (
            Measured(n=100, outcomes={("white-box", "fgsm", E): right(50), ("white-box", "bim", E): right(20)}),
            "iterative >= single-step",
            "pass",
        ),
        (
            Measured(n=100, outcomes={("white-box", "fgsm", E): right(20), ("white-box", "bim", E): right(50)}),
            "iterative >= single-step",
            "warn",
        ),
        # a reversal at another eps than the table's is found too
        (
            Measured(
                n=100,
                outcomes={
                    ("white-box", "fgsm", E): right(50),
                    ("white-box", "pgd20", E): right(20),
                    ("white-box", "fgsm", 2 * E): right(10),
                    ("white-box", "pgd20", 2 * E): right(30),
                },
            ),
            "iterative >= single-step",
            "warn",
        ),
        # too few reversed images to be significant, or too small an effect: no warning
        (
            Measured(n=100, outcomes={("white-box", "fgsm", E): right(20), ("white-box", "bim", E): right(23)}),
            "iterative >= single-step",
            "pass",
        ),
        (
            Measured(n=100, outcomes={("white-box", "fgsm", E): right(20), ("black-box", "fgsm", E): right(40)}),
            "white-box >= black-box",
            "pass",
        ),
        (
            Measured(
                n=100,
                outcomes={
                    ("white-box", "fgsm", E): right(50),
                    ("white-box", "bim", E): right(40),
                    ("black-box", "fgsm", E): right(20),
                },
            ),
            "white-box >= black-box",
            "warn",
        ),
        (
            Measured(n=100, outcomes={("white-box", "pgd20", E): right(30), ("white-box", "bpda-pgd", E): right(10)}),
            "BPDA does not beat true gradients",
            "warn",
        ),
        (
            Measured(n=100, outcomes={("white-box", "pgd20", E): right(30), ("white-box", "bpda-pgd", E): right(31)}),
            "BPDA does not beat true gradients",
            "pass",
        ),
        (
            Measured(
                n=100, outcomes={("white-box", "pgd20", E): right(30), ("white-box", "pgd-smoothed", 2 * E): right(10)}
            ),
            "smoothed gradients do not beat true gradients",
            "n/a",
        ),  # not measured at the same eps
        (
            Measured(
                n=100,
                outcomes={("white-box", "pgd20", 2 * E): right(30), ("white-box", "pgd-smoothed", 2 * E): right(10)},
            ),
            "smoothed gradients do not beat true gradients",
            "warn",
        ),
        (
            Measured(n=100, sweep=[(0.01, 0.5), (0.02, 0.3), (0.5, 0.0)]),
            "monotone in eps, near zero at large eps",
            "pass",
        ),
        (
            Measured(n=100, sweep=[(0.01, 0.5), (0.02, 0.6), (0.5, 0.0)]),
            "monotone in eps, near zero at large eps",
            "warn",
        ),
        (
            Measured(n=100, sweep=[(0.01, 0.5), (0.02, 0.3), (0.5, 0.2)]),
            "monotone in eps, near zero at large eps",
            "warn",
        ),
        (Measured(n=100, white={"pgd20": 0.3, "pgd40": 0.29, "pgd20x3": 0.3}), "PGD converged", "pass"),
        (Measured(n=100, white={"pgd20": 0.3, "pgd40": 0.2}), "PGD converged", "warn"),
        (
            Measured(n=100, gradient={"zero": 0.0, "nonfinite": 0.0}, health={"saturation": {"a": 0.95}}),
            "gradient health",
            "warn",
        ),
        (
            Measured(n=100, gradient={"zero": 0.0, "nonfinite": 0.0}, health={"saturation": {"a": 0.5}}),
            "gradient health",
            "pass",
        ),
        (Measured(n=100), "gradient health", "n/a"),
        (Measured(n=100, white={"apgd-ce": 0.30, "apgd-dlr": 0.31}), "DLR loss does not beat cross-entropy", "pass"),
        (Measured(n=100, white={"apgd-ce": 0.60, "apgd-dlr": 0.10}), "DLR loss does not beat cross-entropy", "warn"),
    ],
)
def test_checks(measured, name, status):
    assert {d.name: d.status for d in diagnose(measured)}[name] == status


def test_cli_shows_a_bugs_traceback(monkeypatch):
    from robustbench_dc import cli

    def bug(args):
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "models", (cli.COMMANDS["models"][0], bug))
    with pytest.raises(RuntimeError, match="a bug"):  # not swallowed into "error: ..." with exit 2
        cli.main(["models"])


def test_claims_use_paired_tests_and_premises(store, tmp_path):
    from robustbench_dc.reports.claims import claims, compare

    for name in ("baseline", "tanhconv"):
        store.put_function(name, zoo_info({**BASE, "model": name}))
    put(store, key("baseline", attack="fgsm"), 0.30)
    put(store, key("tanhconv", attack="fgsm"), 0.60)  # right on a superset of the baseline's images
    put(store, key("baseline", attack="bim"), 0.05)
    put(store, key("tanhconv", attack="bim"), 0.06)
    r = Results.load(tmp_path, "digits")
    cell = lambda m, tr, th, at: r.accuracy(m, tr, at, 8 / 255, threat=th)  # noqa: E731
    c = compare(cell("tanhconv", "natural", "white-box", "fgsm"), cell("baseline", "natural", "white-box", "fgsm"))
    assert (
        c.diff == pytest.approx(30.0)
        and c.p < 1e-6
        and c.low > 0
        and "right only under the first: 30 images" in c.detail
    )
    verdicts = {cl.text: cl.verdict for cl in claims(cell)}
    assert (
        verdicts["Naturally trained TanhConv resists white-box FGSM far better than the baseline (>= 10 points)"]
        == "reproduced"
    )
    assert verdicts["Under white-box BIM the natural TanhConv's advantage disappears (within 5 points)"] == "reproduced"
    # no advantage to lose: the "disappears" claims of models without one are not applicable, never "reproduced"
    assert (
        verdicts["Under white-box BIM the natural BallConv's advantage disappears (within 5 points)"]
        == "not applicable"
    )
    assert verdicts["... but not against white-box BIM (within 5 points)"] == "not applicable"


def test_mcnemar_and_paired_interval_match_hand_computation():
    from robustbench_dc.stats import mcnemar_exact, paired_difference_interval

    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(10, 0) == pytest.approx(2 * 0.5**10)
    assert mcnemar_exact(6, 4) == pytest.approx(0.7539, abs=1e-4)
    low, high = paired_difference_interval(30, 0, 100)
    assert low == pytest.approx(0.30 - 1.96 * (30 - 9) ** 0.5 / 100, abs=1e-3) and high > 0.3


def test_many_processes_opening_and_writing_one_new_store(tmp_path):
    """Schema creation is one write transaction: processes racing to open a new store never set each other's
    tables aside, and every write lands."""
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from tests.test_results import key, put; from "
        "robustbench_dc.results.store import ResultStore\nwith ResultStore(Path(sys.argv[1])) as s:\n    [put(s, "
        "key(f'f{sys.argv[2]}', n=10 + i), 0.5) for i in range(40)]"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(i)], stderr=subprocess.PIPE, text=True)
        for i in range(6)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    with ResultStore(tmp_path) as store:
        assert store.count() == 240
    tables = {
        r[0]
        for r in sqlite3.connect(tmp_path / "results.sqlite").execute(
            "SELECT name FROM sqlite_master WHERE type='table'"
        )
    }
    assert tables == {"meta", "functions", "cells", "study_targets"}


@pytest.mark.parametrize("share,status", [(0.02, "pass"), (0.5, "warn")])
def test_direction_check(share, status):
    m = Measured(
        n=100,
        direction={"gradient_not_better_fraction": share, "mean_gain_gradient": 1.0, "mean_gain_best_random": 0.1},
    )
    assert {d.name: d.status for d in diagnose(m)}["gradient beats random directions"] == status


def _workspace_with_seed(ws, seed: int, accuracy: float) -> None:
    """A workspace as one invocation of a study leaves it: one seed's model (card and weights) and its cells."""
    run = ws / "models" / "digits" / "tanhconv" / "natural" / f"cnn9-w0.25-seed{seed}"
    run.mkdir(parents=True)
    weights = b"weights of seed %d" % seed
    (run / "model.safetensors").write_bytes(weights)
    sha = hashlib.sha256(weights).hexdigest()
    (run / "card.json").write_text('{"weights": {"file": "model.safetensors", "sha256": "%s"}}' % sha)
    with ResultStore(ws) as s:
        fid = f"fn-seed{seed}"
        s.put_function(fid, zoo_info({**BASE, "seed": seed}))
        put(s, key(fid, attack="none"), 0.9)
        put(s, key(fid), accuracy)
        s.put_study_target(StudyTarget("st", "tanhconv", "natural", seed), fid, "{}")


def test_seeds_computed_apart_merge_into_one_report(tmp_path):
    """Two invocations (two machines, two stores) of the same study, one seed each: merged, the tables aggregate
    the two seeds; merging again adds nothing; a cell both sides hold with other numbers is kept, not averaged."""
    from robustbench_dc.results.merge import merge_workspaces

    a, b, merged = tmp_path / "laptop-a", tmp_path / "laptop-b", tmp_path / "merged"
    _workspace_with_seed(a, 0, 0.30)
    _workspace_with_seed(b, 1, 0.50)
    summary = merge_workspaces(merged, [a, b])
    assert (summary.cells_added, summary.checkpoints_added, summary.cell_conflicts) == (4, 2, [])
    cell = Results.load(merged, "digits").accuracy("tanhconv", "natural", "fgsm", 8 / 255)
    assert cell.seeds == 2 and cell.mean == pytest.approx(40.0)
    with ResultStore(merged) as s:
        origins = {c.provenance["merged_from"] for c in s.cells()}
    assert origins == {str(a.resolve()), str(b.resolve())}
    assert Results.load(merged, "digits").targets == {
        StudyTarget("st", "tanhconv", "natural", s): f"fn-seed{s}" for s in (0, 1)
    }  # a study report finds both
    again = merge_workspaces(merged, [a, b])
    assert (again.cells_added, again.cells_same, again.checkpoints_added, again.checkpoints_same) == (0, 4, 0, 2)
    with ResultStore(b) as s:  # the same cell recomputed elsewhere with other numbers
        put(s, key("fn-seed1"), 0.52)
    conflict = merge_workspaces(merged, [b])
    assert len(conflict.cell_conflicts) == 1 and "none was averaged" in " ".join(conflict.lines())
    assert Results.load(merged, "digits").accuracy("tanhconv", "natural", "fgsm", 8 / 255).mean == pytest.approx(40.0)


def test_a_merge_names_a_study_model_that_is_another_function_on_each_side(tmp_path):
    """A study file changed between two workspaces (paper-cpu's FGSM models retrained for 20 epochs): both record
    the same model of the study as other functions. The destination's stays the study's model, as before, and the
    merge now says so for each one (before, it kept it silently, and the report showed the older model)."""
    from robustbench_dc.results.merge import merge_workspaces

    old, new, merged = tmp_path / "old", tmp_path / "new", tmp_path / "merged"
    _workspace_with_seed(old, 0, 0.30)
    _workspace_with_seed(new, 0, 0.50)
    with ResultStore(new) as s:
        s.put_study_target(StudyTarget("st", "tanhconv", "natural", 0), "fn-retrained", "{}")
    merge_workspaces(merged, [old])
    summary = merge_workspaces(merged, [new])
    assert summary.target_conflicts == ["study st: tanhconv natural seed 0"]
    assert "study st: tanhconv natural seed 0: another model on each side" in "\n".join(summary.lines())
    assert Results.load(merged, "digits").targets[StudyTarget("st", "tanhconv", "natural", 0)] == "fn-seed0"
    assert merge_workspaces(merged, [old]).target_conflicts == []


def test_a_merge_fills_what_a_functions_stored_description_lacks(tmp_path):
    """A seed-0 store written before descriptions carried the card's robustness check, merged with one that has
    it: the merged description has it (before, the destination's older one was kept, and a two-seed report's
    catastrophic-overfitting table lost seed 0's collapsed network), and nothing the destination holds changes."""
    from dataclasses import replace

    from robustbench_dc.results.merge import merge_workspaces

    old, new, merged = tmp_path / "old", tmp_path / "new", tmp_path / "merged"
    _workspace_with_seed(old, 0, 0.30)
    _workspace_with_seed(new, 0, 0.30)
    check = {"images": 256, "catastrophic_overfitting_epoch": 6, "epoch": [1], "fgsm": [0.5], "pgd10": [0.1]}
    with ResultStore(new) as s:
        info = s.functions()["fn-seed0"]
        s.put_function("fn-seed0", replace(info, robustness_check=check, label="renamed"))
    merge_workspaces(merged, [old])
    with ResultStore(merged) as s:
        assert s.functions()["fn-seed0"].robustness_check is None
    merge_workspaces(merged, [new])
    with ResultStore(merged) as s:
        fuller = s.functions()["fn-seed0"]
    assert fuller.robustness_check == check and fuller.label == info.label


def test_merge_cli_and_bad_sources(tmp_path):
    from tests.conftest import run_cli

    _workspace_with_seed(tmp_path / "a", 0, 0.30)
    r = run_cli("merge", str(tmp_path / "a"), "--workspace", str(tmp_path / "m"))
    assert r.returncode == 0 and "result cells: 2 added" in r.stdout and "checkpoints: 1 added" in r.stdout
    r = run_cli("merge", str(tmp_path / "nothing"), "--workspace", str(tmp_path / "m"))
    assert r.returncode == 2 and "not a workspace" in r.stderr


def test_a_merge_verifies_what_it_copies_and_refuses_what_fails(tmp_path):
    """A source whose cells' metrics are not JSON, whose cell identity was tampered with, whose function description
    is not JSON, or whose checkpoint has a flipped byte merged with exit 0 and broke the destination's next report."""
    from robustbench_dc.results.merge import merge_workspaces

    source, merged = tmp_path / "source", tmp_path / "merged"
    _workspace_with_seed(source, 0, 0.30)
    _workspace_with_seed(source, 1, 0.50)
    weights = source / "models/digits/tanhconv/natural/cnn9-w0.25-seed1/model.safetensors"
    weights.write_bytes(b"Weights of seed 1")  # one flipped byte
    conn = sqlite3.connect(source / "results.sqlite")
    (k0,), (k1,) = conn.execute("SELECT key FROM cells WHERE function = 'fn-seed0' ORDER BY key").fetchall()
    conn.execute("UPDATE cells SET metrics = 'not json' WHERE key = ?", (k0,))
    identity = json.loads(conn.execute("SELECT identity FROM cells WHERE key = ?", (k1,)).fetchone()[0])
    conn.execute("UPDATE cells SET identity = ? WHERE key = ?", (json.dumps({**identity, "eps": 0.5}), k1))
    conn.execute("INSERT INTO functions VALUES ('fn-broken', '{not json')")
    conn.commit()
    conn.close()
    summary = merge_workspaces(merged, [source])
    refused = " ".join(summary.refused)
    assert len(summary.refused) == 4 and "sha256 is not the one its card records" in refused
    assert "identity, metrics or provenance do not check" in refused and "fn-broken" in refused
    assert (summary.cells_added, summary.checkpoints_added) == (2, 1)
    assert not list((merged / "models").rglob(".*.merging"))
    cell = Results.load(merged, "digits").accuracy("tanhconv", "natural", "fgsm", 8 / 255)  # reportable
    assert cell.seeds == 1 and cell.mean == pytest.approx(50.0)


def test_a_merge_on_a_full_disk_leaves_no_partial_copy_and_says_why(tmp_path, monkeypatch):
    import errno

    from robustbench_dc.errors import UserError
    from robustbench_dc.results import merge

    source, merged = tmp_path / "source", tmp_path / "merged"
    _workspace_with_seed(source, 0, 0.30)

    def full(src, dst, **kw):
        Path(dst).mkdir(exist_ok=True)
        (Path(dst) / "model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(merge.shutil, "copytree", full)
    with pytest.raises(UserError, match="No space left on device.*free space and merge again"):
        merge.merge_workspaces(merged, [source])
    assert not [p for p in merged.rglob("*") if p.name.endswith(".merging")]


def test_merges_at_once_into_one_store_all_finish(tmp_path):
    """Two merges into one store at once ended in a traceback in 1 to 4 of 8 tries (a shared partial folder)."""
    from concurrent.futures import ThreadPoolExecutor

    from robustbench_dc.results.merge import merge_workspaces

    sources = [tmp_path / f"s{i}" for i in range(2)]
    for i, source in enumerate(sources):
        _workspace_with_seed(source, i, 0.3)
    merged = tmp_path / "merged"
    with ThreadPoolExecutor(4) as pool:
        summaries = list(pool.map(lambda s: merge_workspaces(merged, [s]), sources * 2))
    assert sum(s.checkpoints_added for s in summaries) == 2 and sum(s.cells_added for s in summaries) == 4
    assert not [p for p in merged.rglob("*") if p.name.endswith(".merging")]


@pytest.mark.parametrize(
    "error, message",
    [
        ("attempt to write a readonly database", "the store itself is not damaged: keep it"),
        ("database or disk is full", "free disk space"),
        ("file is not a database", "if it is damaged, move it away"),
    ],
)
def test_a_store_that_cannot_be_written_is_not_called_damaged(tmp_path, monkeypatch, error, message):
    """On a full or read-only disk a healthy results.sqlite was told to be moved away (following it loses cells)."""
    from robustbench_dc.errors import UserError

    real = sqlite3.connect

    def failing(*args, **kwargs):
        conn = real(*args, **kwargs)

        class Failing:
            def execute(self, *a, **k):
                raise (sqlite3.DatabaseError if "not a database" in error else sqlite3.OperationalError)(error)

            def close(self):
                conn.close()

        return Failing()

    monkeypatch.setattr(sqlite3, "connect", failing)
    with pytest.raises(UserError, match=message):
        ResultStore(tmp_path)
