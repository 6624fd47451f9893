"""Device, precision and layout paths, exercised on the CPU; the CUDA tests run where a GPU is present."""

import os
import platform
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_dc.devices import ComputeMode, keep_freed_memory, resolve_device, training_mode
from robustbench_dc.errors import UserError
from robustbench_dc.evaluation import evaluate
from robustbench_dc.files import X86_MACHINES
from robustbench_dc.models import create_model
from robustbench_dc.ops import DecoupledConv2d
from robustbench_dc.ops.functional import patch_norm2d, scale_channels
from robustbench_dc.train import TrainConfig, train

CUDA = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU on this machine: the CUDA path runs only where one is present"
)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    with pytest.raises(UserError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU is available"):
            resolve_device("cuda:0")


def test_auto_precision_is_fp32_where_the_cpu_only_emulates_bf16(monkeypatch):
    """oneDNN runs bf16 on any AVX-512 CPU, emulating it where the CPU has neither AVX-512 bf16 nor AMX; 'auto'
    took it there, and training ran at 0.34-0.49x its fp32 speed (an Intel Xeon whose hypervisor hides both).
    'auto' takes bf16 only where the hardware computes it; an explicit bf16 still runs on the emulation."""
    from robustbench_dc import devices

    cpu = torch.device("cpu")
    monkeypatch.setattr(devices.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(devices, "bf16_supported", lambda device: True)  # oneDNN's test: plain AVX-512 passes
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert training_mode(cpu, "auto").precision == "fp32"
    assert training_mode(cpu, "bf16").precision == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert training_mode(cpu, "auto").precision == "bf16"
    monkeypatch.setattr(devices, "bf16_supported", lambda device: False)  # no oneDNN bf16 at all
    assert training_mode(cpu, "auto").precision == "fp32"


def test_training_mode_choices():
    cpu = torch.device("cpu")
    assert training_mode(cpu, "fp32") == ComputeMode("cpu", "fp32", True)
    assert training_mode(cpu, "fp32", decoupled=True).channels_last is False
    assert training_mode(cpu, "auto").precision in ("bf16", "fp32")
    with pytest.raises(UserError, match="needs a CUDA device"):
        training_mode(cpu, "fp16")
    with pytest.raises(UserError, match="unknown precision"):
        TrainConfig(model="baseline", dataset="digits", precision="fp8")


def test_datasets_hold_plain_nchw_images():
    """numpy's ``x[:, None]`` gives a one-channel array channels-last strides that still count as contiguous: a
    network fed such images ran every convolution channels-last (seen: the digits networks, whatever their mode)."""
    import numpy as np

    from robustbench_dc.data import ImageDataset, dataset_info, load_dataset

    ambiguous = torch.from_numpy(np.zeros((5, 8, 8), dtype=np.uint8)[:, None])
    assert ambiguous.is_contiguous() and ambiguous.stride() != (64, 64, 8, 1)
    assert ImageDataset(
        dataset_info("digits"), "test", ambiguous, torch.zeros(5, dtype=torch.int64), "x"
    ).images.stride() == (64, 64, 8, 1)
    batch = load_dataset("digits", "train").float_images(torch.arange(8))
    assert batch.stride() == (64, 64, 8, 1)


def test_channels_last_is_not_used_where_its_cpu_gradient_is_unsafe(tmp_path):
    """oneDNN's channels-last weight gradient of a strided 1x1 convolution with 2-5 input channels corrupts memory
    on some CPUs (AVX2): such networks train in NCHW on the CPU, and asking for channels-last there is refused."""
    from robustbench_dc.devices import channels_last_hazard
    from robustbench_dc.train import build, place_for_training

    narrow = TrainConfig(
        model="baseline", dataset="digits", arch="resnet32", width=0.25
    )  # a 4 -> 8 channel strided shortcut
    hazard = channels_last_hazard(build(narrow))
    assert hazard is not None and "1x1 convolution, stride 2, 4 input channels" in hazard
    assert (
        channels_last_hazard(build(TrainConfig(model="baseline", dataset="digits", arch="resnet32", width=0.5))) is None
    )
    cpu = torch.device("cpu")
    assert training_mode(cpu, "fp32", hazard=hazard).channels_last is False
    assert (
        training_mode(torch.device("cuda"), "fp32", hazard=hazard).channels_last is True
    )  # a CPU kernel's fault: CUDA keeps it
    with pytest.raises(UserError, match="use --channels-last no"):
        training_mode(cpu, "fp32", True, hazard=hazard)
    assert place_for_training(build(narrow), narrow, cpu).channels_last is False


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 1, 1), (1, 0, 1), (1, 2, 2), (1, "same", 1)])
def test_patch_norm_matches_the_unfolded_patches(stride, padding, dilation):
    x = torch.randn(2, 5, 9, 9, dtype=torch.float64)
    r = patch_norm2d(x, (3, 3), stride=stride, padding=padding, dilation=dilation, eps=0.0)
    pad = 2 * dilation // 2 if padding == "same" else padding
    cols = F.unfold(x, 3, dilation=dilation, padding=pad, stride=stride)
    expected = cols.pow(2).sum(1).sqrt().view(2, 1, *r.shape[2:])
    torch.testing.assert_close(r, expected)


def test_channels_last_and_bf16_give_the_same_operator():
    torch.manual_seed(0)
    layer = DecoupledConv2d(8, 16, 3, padding=1, magnitude="tanh", relative_rho=True).eval()
    x = torch.randn(4, 8, 12, 12)
    ref = layer(x)
    torch.testing.assert_close(layer(x.contiguous(memory_format=torch.channels_last)), ref, rtol=1e-5, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = layer(x)
    assert low.dtype == torch.bfloat16 and float((low.float() - ref).abs().max()) < 0.05 * float(ref.abs().max())
    t = torch.randn(2, 6, 5, 5).contiguous(memory_format=torch.channels_last)
    s = torch.rand(2, 1, 5, 5)
    torch.testing.assert_close(scale_channels(t, s), t * s)


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_and_channels_last_gradients_match_fp32(channels_last):
    """The fused backward under autocast: the convolution in bf16, the patch norm accumulated in fp32, the
    parameters' gradients in their own dtype; in either layout."""
    torch.manual_seed(0)
    layer = DecoupledConv2d(16, 8, 3, padding=1, magnitude="tanh", relative_rho=True)
    x = torch.randn(4, 16, 10, 10)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    grads = []
    for bf16 in (False, True):
        xi = x.clone().contiguous(memory_format=fmt).requires_grad_(True)
        layer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = layer(xi)
        (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        assert xi.grad.dtype == torch.float32 and layer.weight.grad.dtype == torch.float32
        grads.append((xi.grad, layer.weight.grad.clone()))
    for full, low in zip(*grads):
        assert float((low - full).norm() / full.norm()) < 0.03


class InPlace(nn.Module):
    """A model that changes its input in place (x.mul_) before classifying it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x.mul_(0.5))


def test_a_model_that_changes_its_input_cannot_corrupt_the_test_images(tmp_path):
    model = InPlace(create_model("baseline", width=0.125, in_channels=1, input_size=8)).eval()
    rows = evaluate(
        model,
        dataset="digits",
        attacks=["fgsm", "bim"],
        eps=[0.0, 8 / 255],
        n=60,
        lipschitz=False,
        workspace=tmp_path,
        device="cpu",
    ).accuracy
    acc = {(r.attack, r.eps): r.accuracy for r in rows.itertuples()}
    assert acc[("fgsm", 0.0)] == acc[("none", 0.0)] == acc[("bim", 0.0)]  # was: the eps-0 attacks saw halved images


def test_training_records_its_compute_mode(tmp_path):
    from robustbench_dc.checkpoint import read_card

    config = TrainConfig(
        model="tanhconv",
        dataset="synthetic",
        width=0.125,
        epochs=1,
        batch_size=64,
        precision="fp32",
        channels_last=True,
    )
    card = read_card(train(config, workspace=tmp_path, device="cpu"))
    assert (
        card.compute["precision"] == "fp32"
        and card.compute["channels_last"] is True
        and card.compute["device"] == "cpu"
        and card.compute["keeps_freed_memory"] is keep_freed_memory()
    )


@CUDA
def test_cuda_evaluation_matches_the_cpu(tmp_path):
    torch.manual_seed(0)
    model = create_model("tanhconv", width=0.125, in_channels=1, input_size=8).eval()
    kw = dict(dataset="digits", attacks=["fgsm", "bim"], eps=[8 / 255], n=100, lipschitz=True, lipschitz_n=20)
    cpu = evaluate(model, workspace=tmp_path / "cpu", device="cpu", **kw).accuracy
    gpu = evaluate(model, workspace=tmp_path / "gpu", device="cuda", **kw).accuracy
    for a, b in zip(cpu.itertuples(), gpu.itertuples()):
        assert abs(a.accuracy - b.accuracy) <= 0.02, (a.attack, a.accuracy, b.accuracy)


@CUDA
def test_cuda_training_runs_and_records_its_device(tmp_path):
    from robustbench_dc.checkpoint import read_card

    config = TrainConfig(model="tanhconv", dataset="digits", width=0.25, epochs=2, batch_size=64, training="fgsm")
    card = read_card(train(config, workspace=tmp_path, device="cuda"))
    assert card.compute["device"].startswith("cuda") and card.clean_test_accuracy > 0.5


def test_evaluate_restores_the_modules_mode_and_device(tmp_path):
    model = create_model("baseline", width=0.125, in_channels=1, input_size=8).train()
    evaluate(model, dataset="digits", attacks=["fgsm"], n=20, lipschitz=False, workspace=tmp_path, device="cpu")
    assert model.training and next(model.parameters()).device.type == "cpu"


def test_threads_follow_what_the_process_may_use(monkeypatch):
    from robustbench_dc import devices

    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(devices, "_cgroup_quota", lambda: 1.5)  # a cgroup quota of one and a half CPUs
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert devices.usable_cpus() == 1
        monkeypatch.setattr(devices, "_cgroup_quota", lambda: None)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert devices.usable_cpus() == 1 and devices.set_threads() == 1 and torch.get_num_threads() == 1
        assert devices.set_threads(2) == 2 and torch.get_num_threads() == 2
        with pytest.raises(UserError, match="threads must be an integer >= 1"):
            devices.set_threads(0)
    finally:
        torch.set_num_threads(before)


@pytest.mark.real_load
def test_threads_auto_leaves_the_busy_cpus_to_their_processes():
    """A shared CPU: two threads beside one busy process ran 1.8x slower than one (BENCHMARKS.md). ``auto`` counts
    the CPUs others keep busy and uses the rest; a spinning process is seen as about one busy CPU."""
    import subprocess
    import sys

    from robustbench_dc import devices

    assert devices.contention_threads(2, 0.1) == 2 and devices.contention_threads(2, 1.2) == 1
    assert devices.contention_threads(2, 7.0) == 1 and devices.contention_threads(4, None) == 4
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = devices.busy_cpus(0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy is not None and busy >= 0.5


def test_a_command_that_runs_models_leaves_the_busy_cpus_to_their_processes(monkeypatch, capsys):
    """Pinned to both cores, a digits training beside three busy processes took 7.7x its idle time, on the free
    one 2.4x (BENCHMARKS.md): the command line's default is the free CPUs, said on stderr; an integer pins them."""
    from robustbench_dc import cli, devices

    before = torch.get_num_threads()
    monkeypatch.setattr(devices, "usable_cpus", lambda: 2)
    monkeypatch.setattr(devices, "busy_cpus", lambda sample_s=0.25: 1.3)
    try:
        assert cli.main(["eval", "--model", "no-such-model", "--dataset", "digits"]) != 0
        assert torch.get_num_threads() == 1
        assert "runs on 1 of the 2 usable CPUs (--threads 2 pins them all" in capsys.readouterr().err
        assert cli.main(["eval", "--model", "no-such-model", "--dataset", "digits", "--threads", "2"]) != 0
        assert torch.get_num_threads() == 2 and "usable CPUs" not in capsys.readouterr().err
        monkeypatch.setattr(devices, "busy_cpus", lambda sample_s=0.25: 0.2)
        torch.set_num_threads(1)
        assert cli.main(["eval", "--model", "no-such-model", "--dataset", "digits"]) != 0
        assert torch.get_num_threads() == 2 and "usable CPUs" not in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(platform.machine().lower() not in X86_MACHINES, reason="the bf16 instruction checks are x86's")
def test_cards_and_cells_name_the_cpu_and_whether_it_computes_bf16(monkeypatch):
    """Cards and result cells said only "x86_64": an AMX Xeon, an AVX-512 Xeon that emulates bf16 (training 2-3x
    slower) and an AMD EPYC read the same, and the reports' machine notes had to be written by hand. The environment
    now names the CPU's model and its bf16 instructions, and a report's provenance shows them (older cells, which
    hold only the architecture, are shown as before)."""
    from types import SimpleNamespace

    from robustbench_dc.files import environment
    from robustbench_dc.reports.sections import _environments

    monkeypatch.setattr(torch.cpu, "_is_avx512_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    emulating = environment()["cpu"]
    assert emulating != platform.machine() and emulating.endswith("; AVX-512; no bf16 instructions")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    amx = environment()
    assert amx["cpu"].endswith("; AVX-512; bf16 instructions: AMX")

    old = {**amx, "cpu": platform.machine()}

    def entry(env):
        return SimpleNamespace(cell=SimpleNamespace(provenance={"environment": env}))

    lines = _environments([entry(amx), entry(old)])
    assert len(lines) == 2 and sum(amx["cpu"] in line for line in lines) == 1
    assert not any(line.endswith(f"; {platform.machine()}") for line in lines)


GLIBC = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="the allocator switches are glibc's"
)

# Page faults of twenty 64 MB buffers allocated and freed in turn, after a CPU training was set up ("train") or not.
_FAULTS = """
import resource, sys, torch
from robustbench_dc.train import TrainConfig, build, place_for_training
if sys.argv[1] == "train":
    config = TrainConfig(model="baseline", dataset="synthetic", width=0.125)
    place_for_training(build(config), config, torch.device("cpu"))
torch.ones(2**24).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(2**24).sum()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _python(code: str, *args: str, **env: str) -> str:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ("LD_PRELOAD", "GLIBC_TUNABLES")
    }
    return subprocess.run(
        [sys.executable, "-c", code, *args], env={**base, **env}, capture_output=True, text=True, check=True
    ).stdout.strip()


@GLIBC
def test_cpu_training_reuses_freed_memory_instead_of_faulting_it_in_every_step():
    pages = 2**26 // 4096  # of one buffer
    plain = int(_python(_FAULTS, "plain"))
    if plain < 10 * pages:
        pytest.skip(f"{plain} page faults for 20 buffers of {pages} pages: this kernel maps them in larger pages")
    assert int(_python(_FAULTS, "train")) < pages  # the first buffer's memory, kept and reused


@GLIBC
def test_the_allocator_is_left_alone_where_the_user_tuned_it():
    code = "from robustbench_dc.devices import keep_freed_memory; print(keep_freed_memory())"
    assert _python(code) == "True"
    assert _python(code, MALLOC_MMAP_MAX_="65536") == "False"
    assert _python(code, LD_PRELOAD="") == "True"  # set but empty: nothing preloaded


# A tiny training's weights, with the allocator's switch applied ("1") or never applied ("0").
_TRAINED = """
import hashlib, sys, tempfile
import robustbench_dc.devices as D
import robustbench_dc.train as T
if sys.argv[1] == "0":
    T.keep_freed_memory = D.keep_freed_memory = lambda: False
config = T.TrainConfig(model="tanhconv", dataset="synthetic", width=0.125, epochs=1, batch_size=64, train_subset=128)
with tempfile.TemporaryDirectory() as ws:
    run = T.train(config, workspace=ws, device="cpu")
    print(hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest())
"""


@GLIBC
def test_keeping_freed_memory_changes_no_bit_of_a_training():
    kept = _python(_TRAINED, "1")
    assert len(kept) == 64 and kept == _python(_TRAINED, "0")
