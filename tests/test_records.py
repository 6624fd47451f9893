"""Model records as RobustBench keeps them: its fields alone, one file per model and threat model, no local paths."""

import json

from robustbench_dc.model_info import ModelInfo
from robustbench_dc.records import ROBUSTBENCH_FIELDS, architecture, robustbench_record, write_records


def _record(name: str, eps: str, autoattack: str | None, threat: str = "Linf") -> dict:
    fields = {k: "" for k in ROBUSTBENCH_FIELDS}
    return {
        **fields,
        "name": name,
        "dataset": "cifar10",
        "threat_model": threat,
        "eps": eps,
        "clean_acc": "90.00",
        "autoattack_acc": autoattack,
        "robust_acc": "40.00",
        "function_id": "f" * 64,
    }


def test_a_record_travels_without_local_paths():
    assert (
        architecture(ModelInfo.from_dict({"kind": "third-party", "arch": "/home/me/secret/nets.py:wide_resnet"}))
        == "wide_resnet (factory)"
    )
    assert architecture(ModelInfo.from_dict({"kind": "third-party", "arch": "mypkg.nets:wrn"})) == "wrn (factory)"
    assert (
        architecture(ModelInfo.from_dict({"kind": "third-party", "arch": "", "format": "torchscript"}))
        == "TorchScript module"
    )
    assert architecture(ModelInfo.from_dict({"kind": "zoo", "arch": "cnn9", "width": 0.5})) == "cnn9 (width 0.5)"


def test_robustbench_files_only_where_autoattack_ran(tmp_path):
    assert robustbench_record(_record("m", "8/255", None)) is None
    records = [
        _record("my net/v2", "8/255", "41.50"),
        _record("my net/v2", "4/255", "60.00"),
        _record("my net/v2", "L2 0.5", None, "L2"),
    ]
    written = write_records(tmp_path, records)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in written)
    # two eps of one threat model: a file each; the L2 record without AutoAttack only in our own folder
    assert names == [
        "cifar10/Linf/my_net_v2-eps4_255.json",
        "cifar10/Linf/my_net_v2-eps8_255.json",
        "dc-robust/my_net_v2.json",
    ]
    rb = json.loads((tmp_path / "cifar10/Linf/my_net_v2-eps8_255.json").read_text())
    assert list(rb) == list(ROBUSTBENCH_FIELDS) and rb["autoattack_acc"] == "41.50"
    assert len(json.loads((tmp_path / "dc-robust/my_net_v2.json").read_text())) == 3
