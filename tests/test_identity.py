"""Regression tests: a stored result is reused only for exactly the same function and data."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from robustbench_dc.data import dataset_info, load_dataset
from robustbench_dc.evaluation import evaluate
from robustbench_dc.external import load_external
from robustbench_dc.models import create_model
from robustbench_dc.results.store import ResultStore
from robustbench_dc.targets import from_module, function_identity
from tests.thirdparty import PoolNet

DIGITS = dataset_info("digits")
KW = dict(dataset="digits", attacks=["fgsm"], eps=[16 / 255], n=40, lipschitz=False)


def test_same_state_dict_under_two_zoo_models_is_two_functions(tmp_path):
    torch.manual_seed(0)
    state = create_model("tanhconv", width=0.125, in_channels=1, input_size=8).state_dict()
    torch.save(state, tmp_path / "w.pt")
    tanh = load_external(tmp_path / "w.pt", DIGITS, arch="cnn9", model_name="tanhconv", width=0.125)
    sphere = load_external(
        tmp_path / "w.pt", DIGITS, arch="cnn9", model_name="sphereconv", width=0.125
    )  # --width is honoured
    assert tanh.info.weights_sha256 == sphere.info.weights_sha256
    assert tanh.function_id != sphere.function_id
    first = evaluate(tanh, workspace=tmp_path / "ws", **KW).accuracy
    second = evaluate(sphere, workspace=tmp_path / "ws", **KW).accuracy
    assert not first["cached"].any() and not second["cached"].any()  # was: the first numbers, marked "(stored)"


def test_same_weights_under_another_factory_is_another_function(tmp_path):
    net = PoolNet("max")
    torch.save(net.state_dict(), tmp_path / "w.pt")
    a = load_external(tmp_path / "w.pt", DIGITS, factory="tests.thirdparty:build_max")
    b = load_external(tmp_path / "w.pt", DIGITS, factory="tests.thirdparty:build_avg")
    assert a.info.weights_sha256 == b.info.weights_sha256 and a.function_id != b.function_id
    evaluate(a, workspace=tmp_path, **KW)
    assert not evaluate(b, workspace=tmp_path, **KW).accuracy["cached"].any()


class Scaled(nn.Module):
    def __init__(self, model: nn.Module, scale: float) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x):
        return self.model(x) * self.scale


class Shifted(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x + 0.1)


def test_wrappers_and_torchscript_graphs_are_identified_by_what_they_compute(tmp_path):
    net = PoolNet("max").eval()
    ids = {function_identity(m) for m in (net, Scaled(net, 2.0), Shifted(net), nn.Sequential(net))}
    assert len(ids) == 4  # the same parameters in all four
    a = torch.jit.script(Scaled(net, 2.0))
    b = torch.jit.script(Shifted(net))
    assert function_identity(a) != function_identity(b)
    assert function_identity(PoolNet("max").eval()) != function_identity(net)  # other weights
    copy = PoolNet("max")
    copy.load_state_dict(net.state_dict())
    assert function_identity(copy) == function_identity(net)  # same function, same identity


def test_label_is_not_identity_and_default_labels_differ(tmp_path):
    a, b = PoolNet("max"), PoolNet("max")
    ta, tb = from_module(a), from_module(b)
    assert ta.label != tb.label and ta.label.startswith("module-")
    evaluate(a, label="same", workspace=tmp_path, **KW)
    assert not evaluate(b, label="same", workspace=tmp_path, **KW).accuracy["cached"].any()
    assert evaluate(a, label="other", workspace=tmp_path, **KW).accuracy["cached"].all()


def _write_cifar_like(root, fmt: str, seed: int = 0, size: tuple[int, int] = (32, 32)):
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for c in range(10):
            d = root / split / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(2):
                arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i}.{fmt}", quality=75) if fmt == "jpg" else Image.fromarray(arr).save(
                    d / f"{i}.{fmt}"
                )


def test_two_copies_of_a_dataset_are_two_datasets(tmp_path):
    _write_cifar_like(tmp_path / "png", "png")
    _write_cifar_like(tmp_path / "jpeg", "jpg")
    model = create_model("baseline", width=0.125).eval()
    kw = dict(dataset="cifar10", attacks=["fgsm"], eps=[8 / 255], n=None, lipschitz=False, workspace=tmp_path / "ws")
    evaluate(model, data_dir=tmp_path / "png", **kw)
    again = evaluate(model, data_dir=tmp_path / "jpeg", **kw).accuracy
    assert not again["cached"].any()  # was: the PNG copy's numbers
    with ResultStore(tmp_path / "ws") as store:
        assert len({c.key.data for c in store.cells()}) == 2


def test_image_cache_sees_a_replaced_file_of_the_same_size(tmp_path):
    _write_cifar_like(tmp_path / "bmp", "bmp")
    cache = tmp_path / "cache"
    before = load_dataset("cifar10", "test", tmp_path / "bmp", cache_dir=cache)
    victim = tmp_path / "bmp" / "test" / "class0" / "0.bmp"
    size = victim.stat().st_size
    Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(victim)
    assert victim.stat().st_size == size
    after = load_dataset("cifar10", "test", tmp_path / "bmp", cache_dir=cache)
    assert int(after.images[0].max()) == 7 and not torch.equal(before.images, after.images)  # was: the old pixels
    assert before.content_sha256() != after.content_sha256()


@pytest.mark.parametrize("n", [10, 40])
def test_subset_and_role_are_identity(tmp_path, n):
    model = PoolNet("max")
    evaluate(model, workspace=tmp_path, **{**KW, "n": n})
    assert not evaluate(model, workspace=tmp_path, role="diagnostics", **{**KW, "n": n}).accuracy["cached"].any()
    assert evaluate(model, workspace=tmp_path, **{**KW, "n": n}).accuracy["cached"].all()
