"""The typed model description: what a store holds reads back as the same description, descriptions written
before the type existed (plain dicts in old stores) still read, and callers' own keys survive."""

import json
import sqlite3

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
