import json
import os

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from robustbench_dc.data import dataset_info, load_dataset
from robustbench_dc.errors import CheckpointError, UserError
from robustbench_dc.evaluation import evaluate
from robustbench_dc.external import load_external
from tests.conftest import run_cli
from tests.thirdparty import SmallNet

MEAN, STD = (0.3,), (0.4,)
INFO = dataset_info("digits")


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    """A SmallNet trained briefly on normalised digits, saved three ways."""
    torch.manual_seed(0)
    train = load_dataset("digits", "train")
    x, y = (train.float_images() - MEAN[0]) / STD[0], train.labels
    model = SmallNet()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    d = tmp_path_factory.mktemp("third-party")
    torch.save(model.state_dict(), d / "small.pt")
    save_file(model.state_dict(), str(d / "small.safetensors"))
    torch.jit.save(torch.jit.trace(model, torch.rand(1, 1, 8, 8)), str(d / "small_script.pt"))
    exported = torch.export.export(model, (torch.rand(2, 1, 8, 8),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(exported, str(d / "small.pt2"))
    torch.export.save(
        torch.export.export(model, (torch.rand(4, 1, 8, 8),)), str(d / "small_static.pt2")
    )  # torch.export's default
    torch.jit.save(torch.jit.script(model), str(d / "small_scripted.pt"))
    return model, d


@pytest.mark.parametrize("name", ["small_script.pt", "small_scripted.pt", "small.pt2", "small_static.pt2"])
def test_every_format_evaluates_with_the_default_options(small_files, tmp_path, name):
    """Traced and scripted TorchScript, and torch.export programs with dynamic and with static (default) shapes:
    the default options (Lipschitz estimates included) work, and a bound that cannot apply says so."""
    model, d = small_files
    r = run_cli(
        "eval",
        "--checkpoint",
        str(d / name),
        "--dataset",
        "digits",
        "--workspace",
        str(tmp_path),
        "--mean",
        "0.3",
        "--std",
        "0.4",
        "--n",
        "30",
        "--attacks",
        "fgsm",
        "--eps",
        "16/255",
        "--json",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    payload = json.loads(r.stdout)
    rows = payload["accuracy"]
    clean = next(row for row in rows if row["threat"] == "none")
    x = load_dataset("digits", "test").subset(30, 0)
    with torch.no_grad():
        expected = (model((x.float_images() - MEAN[0]) / STD[0]).argmax(1) == x.labels).sum()
    assert clean["correct"] == int(expected)
    assert len(payload["lipschitz"]) == 3


def _cli_eval(path, ws, *extra):
    r = run_cli(
        "eval",
        "--checkpoint",
        str(path),
        "--dataset",
        "digits",
        "--workspace",
        str(ws),
        "--mean",
        "0.3",
        "--std",
        "0.4",
        "--n",
        "100",
        "--attacks",
        "fgsm,bim",
        "--eps",
        "16/255",
        "--no-lipschitz",
        "--json",
        "--no-progress",
        *extra,
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["accuracy"]
    return {(row["threat"], row["attack"]): row["accuracy"] for row in rows}


def test_four_formats_agree_through_cli_and_api(small_files, tmp_path):
    model, d = small_files
    api = evaluate(
        model,
        dataset="digits",
        mean=MEAN,
        std=STD,
        attacks=["fgsm", "bim"],
        eps=[16 / 255],
        n=100,
        source=None,
        lipschitz=False,
        workspace=tmp_path,
    ).accuracy
    expected = {(r.threat, r.attack): r.accuracy for r in api.itertuples()}
    assert expected[("none", "none")] > 0.8 and expected[("white-box", "bim")] < expected[("none", "none")]
    for name, extra in [
        ("small.pt", ["--factory", "tests.thirdparty:build"]),
        ("small.safetensors", ["--factory", "tests.thirdparty:build"]),
        ("small_script.pt", []),
        ("small.pt2", []),
    ]:
        assert _cli_eval(d / name, tmp_path / name, *extra) == expected, name
        target = load_external(d / name, INFO, factory="tests.thirdparty:build" if extra else None, mean=MEAN, std=STD)
        assert target.info.file_sha256 and target.info.format in ("state-dict", "torchscript", "torch-export")
        api_rows = evaluate(
            target,
            dataset="digits",
            attacks=["fgsm", "bim"],
            eps=[16 / 255],
            n=100,
            source=None,
            lipschitz=False,
            workspace=tmp_path / ("api-" + name),
        ).accuracy
        assert {(r.threat, r.attack): r.accuracy for r in api_rows.itertuples()} == expected


def test_results_name_the_file_and_its_hash(small_files, tmp_path):
    from robustbench_dc.results.store import ResultStore

    _, d = small_files
    _cli_eval(d / "small_script.pt", tmp_path)
    with ResultStore(tmp_path) as store:
        infos = list(store.functions().values())
    assert [i.file for i in infos] == ["small_script.pt"]
    assert len(infos[0].file_sha256) == 64


def test_state_dict_key_mismatch_lists_keys(small_files, tmp_path):
    model, _ = small_files
    state = model.state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["fc.bias"]
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(
        CheckpointError, match=r"1 missing keys \(first: fc.bias\); 1 unexpected keys \(first: extra.weight\)"
    ):
        load_external(tmp_path / "bad.pt", INFO, factory="tests.thirdparty:build")
    r = run_cli(
        "eval",
        "--checkpoint",
        str(tmp_path / "bad.pt"),
        "--factory",
        "tests.thirdparty:build",
        "--dataset",
        "digits",
        "--workspace",
        str(tmp_path),
    )
    assert r.returncode == 2 and "missing keys" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "factory,message",
    [
        ("tests.thirdparty:build_wrong_classes", r"output has shape \(2, 3\); digits needs \(N, 10\)"),
        ("tests.thirdparty:build_nonfinite", "not finite"),
    ],
)
def test_wrong_outputs(tmp_path, factory, message):
    from tests import thirdparty

    module = getattr(thirdparty, factory.split(":")[1])()
    torch.save(module.state_dict(), tmp_path / "m.pt")
    target = load_external(tmp_path / "m.pt", INFO, factory=factory)
    with pytest.raises(UserError, match=message):
        evaluate(target, dataset="digits", source=None, workspace=tmp_path)


def test_wrong_input_shape(small_files, tmp_path):
    _, d = small_files
    target = load_external(d / "small.pt", INFO, factory="tests.thirdparty:build")
    with pytest.raises(
        UserError, match=r"cannot take cifar10 images of shape \(2, 3, 32, 32\)|cannot take synthetic images"
    ):
        evaluate(target, dataset="synthetic", source=None, workspace=tmp_path)
    with pytest.raises(UserError, match="--input-size 32 does not match digits"):
        load_external(d / "small.pt", INFO, factory="tests.thirdparty:build", input_size=32)
    with pytest.raises(UserError, match="--num-classes 100 does not match"):
        load_external(d / "small.pt", INFO, factory="tests.thirdparty:build", num_classes=100)


def test_empty_and_truncated_files(small_files, tmp_path):
    _, d = small_files
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="the file is empty"):
        load_external(tmp_path / "empty.pt", INFO, factory="tests.thirdparty:build")
    for name in ("small.pt", "small.safetensors"):
        data = (d / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            load_external(tmp_path / name, INFO, factory="tests.thirdparty:build")


class _Exploit:
    """Unpickling this creates a marker file: a stand-in for arbitrary code execution."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_executing_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pt", "wb") as f:
        torch.save({"weight": _Exploit(str(marker))}, f)
    for kwargs in ({"factory": "tests.thirdparty:build"}, {}):
        with pytest.raises(CheckpointError, match="refused to load.*--trust-checkpoint"):
            load_external(tmp_path / "evil.pt", INFO, **kwargs)
    r = run_cli(
        "eval", "--checkpoint", str(tmp_path / "evil.pt"), "--dataset", "digits", "--workspace", str(tmp_path / "ws")
    )
    assert r.returncode == 2 and "refused to load" in r.stderr
    assert not marker.exists()


def test_trusted_pickled_module_loads_with_a_warning(small_files, tmp_path):
    model, _ = small_files
    torch.save(model, tmp_path / "full.pt")
    with pytest.raises(CheckpointError, match="refused to load"):
        load_external(tmp_path / "full.pt", INFO)
    target = load_external(tmp_path / "full.pt", INFO, trust=True, mean=MEAN, std=STD)
    assert target.info.format == "pickled-module"
    r = run_cli(
        "eval",
        "--checkpoint",
        str(tmp_path / "full.pt"),
        "--trust-checkpoint",
        "--dataset",
        "digits",
        "--workspace",
        str(tmp_path / "ws"),
        "--mean",
        "0.3",
        "--std",
        "0.4",
        "--n",
        "20",
        "--attacks",
        "fgsm",
        "--no-lipschitz",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    assert "runs whatever code" in r.stderr


def test_forgotten_normalisation_gets_a_hint(small_files, tmp_path):
    """A model that expects 0-255 pixels scores near chance on [0, 1] inputs: eval says what to pass."""
    model, _ = small_files

    class Expects255(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, x):
            return self.net((x / 255 - MEAN[0]) / STD[0])

    path = tmp_path / "expects255.pt"
    torch.jit.save(torch.jit.trace(Expects255().eval(), torch.rand(1, 1, 8, 8)), str(path))
    common = [
        "eval",
        "--checkpoint",
        str(path),
        "--dataset",
        "digits",
        "--workspace",
        str(tmp_path),
        "--n",
        "100",
        "--attacks",
        "fgsm",
        "--no-lipschitz",
        "--no-progress",
    ]
    r = run_cli(*common)
    assert (
        r.returncode == 0 and "If the model expects normalised inputs, pass --mean/--std (digits's: --mean" in r.stderr
    ), r.stdout[:600]
    ok = run_cli(*common, "--mean", "0", "--std", str(1 / 255))
    assert ok.returncode == 0 and "note: clean accuracy" not in ok.stderr
