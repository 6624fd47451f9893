"""The shipped networks by name: found where the user's store has none (the store first), their black-box source found
beside them instead of trained, and their files never written by an evaluation."""

import hashlib
import shutil

import pytest

from robustbench_dc.checkpoint import load_model, resolve_checkpoint
from robustbench_dc.evaluation import evaluate
from robustbench_dc.planning import resolve_source
from robustbench_dc.records import record_evaluation
from robustbench_dc.targets import from_checkpoint
from robustbench_dc.zoo import is_shipped, shipped_roots, store_root


@pytest.fixture
def shipped(digits_models, tmp_path, monkeypatch):
    """A shipped folder (as reports/<study>/ is) holding copies of the digits models, and an empty user store."""
    root = tmp_path / "zoo"
    shutil.copytree(digits_models["workspace"] / "models", root / "models")
    monkeypatch.setenv("DC_ROBUST_ZOO", str(root))
    return root, tmp_path / "user-ws"


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_shipped_network_is_found_by_name_where_the_store_has_none(shipped, digits_models):
    root, ws = shipped
    assert shipped_roots()[0] == root
    path = resolve_checkpoint("tanhconv", dataset="digits", training="natural", seed=0, workspace=ws)
    assert path.parent.parent.parent.parent.parent == root and is_shipped(path) and store_root(path) == root
    model = load_model("tanhconv", dataset="digits", workspace=ws)
    assert not model.training
    # the user's own store comes first
    mine = resolve_checkpoint("tanhconv", dataset="digits", seed=0, workspace=digits_models["workspace"])
    assert not is_shipped(mine) and store_root(mine) == digits_models["workspace"]


def test_evaluating_a_shipped_network_writes_only_the_users_store(shipped):
    root, ws = shipped
    path = resolve_checkpoint("baseline", dataset="digits", training="fgsm", seed=0, workspace=ws)
    before = _digest(path)
    target = from_checkpoint(path)
    said: list[str] = []
    source = resolve_source("auto", target, dataset="digits", workspace=ws, say=said.append)
    assert source is not None and "shipped beside the target" in said[0]  # not trained: it ships
    assert not (ws / "models").exists()
    result = evaluate(target, dataset="digits", attacks=["fgsm"], n=40, source=source, workspace=ws, lipschitz=False)
    notes = record_evaluation(target, result, eps=[8 / 255])
    assert any("card was left as it is" in n for n in notes)
    assert _digest(path) == before and (ws / "results.sqlite").is_file()
