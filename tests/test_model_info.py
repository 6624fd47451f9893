"""The typed model description and checkpoint card: what a store or a card holds reads back as the same JSON,
what was written before the types existed (plain dicts in old stores, shipped cards) still reads, and callers'
own keys survive."""

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from robustbench_dc.checkpoint import Card, read_card, write_card
from robustbench_dc.errors import CheckpointError
from robustbench_dc.model_info import UNKNOWN_MODEL, ModelInfo, ModelKind
from robustbench_dc.results.store import ResultStore

# a zoo model's description as releases before ModelInfo stored it (EvalModel.info was a dict)
OLD_ZOO = {
    "label": "tanhconv",
    "name": "tanhconv",
    "arch": "cnn9",
    "width": 0.25,
    "training": "fgsm",
    "seed": 2,
    "dataset": "cifar10",
    "kind": "zoo",
    "file": "cnn9-w0.25-seed2",
    "checkpoint_dir": "/somewhere/cnn9-w0.25-seed2",
    "data_source": "image folders",
    "epochs": 5,
    "train_images": None,
    "clean_test_accuracy": 0.641,
    "weights_sha256": "ab" * 32,
    "train_config": {"model": "tanhconv", "seed": 2},
    "compute": {"precision": "bf16"},
    "recipe": "cd" * 32,
}
# a third-party file's, with a key this release does not know
OLD_FILE = {
    "kind": "third-party",
    "weights_sha256": "ef" * 32,
    "format": "torchscript",
    "file": "net.pt",
    "file_sha256": "01" * 32,
    "arch": "",
    "dataset": None,
    "mean": [0.5, 0.5, 0.5],
    "std": None,
    "label": "net",
    "lab_notebook": "page 12",
}


def test_an_old_zoo_description_reads_as_typed_fields():
    info = ModelInfo.from_dict(OLD_ZOO)
    assert info.kind is ModelKind.ZOO and info.is_zoo
    assert (info.name, info.training, info.seed, info.width) == ("tanhconv", "fgsm", 2, 0.25)
    assert info.title == "tanhconv fgsm seed 2" and info.model_name == "tanhconv"
    assert info.clean_test_accuracy == 0.641 and info.train_config == {"model": "tanhconv", "seed": 2}
    assert info.to_dict() == {k: v for k, v in OLD_ZOO.items() if v is not None}


def test_a_third_party_description_keeps_unknown_keys_and_defaults_its_training():
    info = ModelInfo.from_dict(OLD_FILE)
    assert not info.is_zoo and info.title == "net" and info.model_name == "net"
    assert info.training == "external" and info.mean == (0.5, 0.5, 0.5)
    assert info.extra == {"lab_notebook": "page 12"}
    again = ModelInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert again == info


def test_an_unknown_kind_is_not_taken_for_a_zoo_model():
    info = ModelInfo.from_dict({"kind": "from-the-future", "label": "x"})
    assert info.kind is ModelKind.UNKNOWN and not info.is_zoo
    assert UNKNOWN_MODEL.label == "unknown" and not UNKNOWN_MODEL.is_zoo


def test_a_store_written_with_dict_descriptions_reads_back_typed(tmp_path):
    with ResultStore(tmp_path) as store:
        store.put_function("new", ModelInfo.from_dict(OLD_FILE))
    conn = sqlite3.connect(tmp_path / "results.sqlite")
    conn.execute("INSERT INTO functions VALUES (?, ?)", ("old", json.dumps(OLD_ZOO)))
    conn.commit()
    conn.close()
    with ResultStore(tmp_path, readonly=True) as store:
        functions = store.functions()
    assert functions["old"] == ModelInfo.from_dict(OLD_ZOO) and functions["old"].is_zoo
    assert functions["new"].extra == {"lab_notebook": "page 12"}


CARDS = sorted((Path(__file__).parent.parent / "reports").glob("*/models/*/*/*/*/card.json"))


@pytest.mark.parametrize("path", CARDS, ids=lambda p: p.parent.parent.parent.name)
def test_a_shipped_card_reads_typed_and_writes_back_the_same_json(path):
    data = json.loads(path.read_text())
    card = read_card(path)
    assert card.weights.sha256 == data["weights"]["sha256"] and card.training["label"] == data["training"]["label"]
    assert card.to_dict() == data


def test_a_card_keeps_keys_it_does_not_know_and_refuses_one_without_weights(tmp_path):
    data = json.loads(CARDS[0].read_text())
    card = Card.from_dict({**data, "lab_notebook": "page 12"})
    assert card.extra == {"lab_notebook": "page 12"} and card.to_dict()["lab_notebook"] == "page 12"
    write_card(tmp_path, replace(card, evaluations={"digits Linf 8/255": {"robust_acc": "1.0"}}))
    assert read_card(tmp_path).evaluations == {"digits Linf 8/255": {"robust_acc": "1.0"}}
    del data["weights"]
    with pytest.raises(CheckpointError, match="lacks 'weights'"):
        Card.from_dict(data)
