"""Where and how a model runs: device choice, and the training-time precision and memory layout.

Attacks and evaluation always run in fp32 (a lower-precision gradient is a weaker attack); only training
uses autocast and channels-last, chosen per device and recorded in the checkpoint card.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

import torch
from torch import nn

from robustbench_dc.errors import UserError
from robustbench_dc.files import X86_MACHINES, cpu_bf16_instructions
from robustbench_dc.names import PRECISIONS

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto``: CUDA if present, else MPS, else the CPU; an explicit device must exist."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise UserError(f"unknown device {spec!r}; valid: {DEVICE_CHOICES}") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
            raise UserError(
                f"--device {spec}: no CUDA GPU is available (torch {torch.__version__} is {build}); use --device cpu "
                "or auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})"
            )
    elif device.type == "mps":
        if not _mps_available():
            raise UserError(f"--device {spec}: MPS is not available on this machine; use --device cpu or auto")
    elif device.type != "cpu":
        raise UserError(f"unsupported device {spec!r}; valid: {DEVICE_CHOICES}")
    return device


def usable_cpus() -> int:
    """The CPUs this process may really use: its affinity mask, a cgroup CPU quota (v2 ``cpu.max``, v1
    ``cfs_quota_us``), and ``OMP_NUM_THREADS`` where set; ``os.cpu_count()`` sees none of these."""
    counts = [len(os.sched_getaffinity(0))] if hasattr(os, "sched_getaffinity") else [os.cpu_count() or 1]
    quota = _cgroup_quota()
    if quota is not None:
        counts.append(max(1, math.floor(quota)))
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        counts.append(int(omp))
    return max(1, min(counts))


def _cgroup_quota() -> float | None:
    """CPUs granted by this process's cgroup quota, or None for no quota (or no cgroup to read)."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def busy_cpus(sample_s: float = 0.25) -> float | None:
    """How many CPUs other processes keep busy right now (from ``/proc/stat`` over ``sample_s``), or None where
    that cannot be read. Sampled before this process does any work, so what it sees is the others' load."""

    def times() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    try:
        total0, idle0 = times()
        time.sleep(sample_s)
        total1, idle1 = times()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / (total1 - total0))


def contention_threads(usable: int, busy: float | None) -> int:
    """The threads that waste no step waiting for a descheduled sibling: the usable CPUs the others leave free
    (at least one). ``benchmarks/bench_threads_contention.py`` measured why: with one other busy process on 2
    cores, 2 threads ran 1.8x slower than 1 (BENCHMARKS.md)."""
    if busy is None:
        return usable
    return max(1, usable - round(busy))


def set_threads(threads: int | str | None = None) -> int:
    """Set torch's intra-op threads: ``threads``; ``"auto"``, the usable CPUs that other processes leave free now
    (``contention_threads``); or every CPU the process may use (``usable_cpus``, the default: the same threads,
    and so the same bits, whatever else runs). Returns the number. More threads than free CPUs make every step
    wait for descheduled siblings."""
    if threads is not None and threads != "auto" and (not isinstance(threads, int) or threads < 1):
        raise UserError(f"threads must be an integer >= 1 or 'auto', got {threads!r}")
    if threads == "auto":
        n = contention_threads(usable_cpus(), busy_cpus())
    else:
        n = int(threads) if threads else usable_cpus()
    torch.set_num_threads(n)
    return n


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (the CPU for a module that has none)."""
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
#: environment variables by which a user tunes glibc's malloc (or replaces it) themselves; then it is left alone
_ALLOCATOR_ENV = (
    "MALLOC_MMAP_MAX_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "LD_PRELOAD",
    "GLIBC_TUNABLES",
)


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for the next allocation instead of giving it back to the kernel.

    Every CPU training or attack step allocates and frees the same large activation buffers; glibc serves each
    one above its mmap threshold with a fresh mapping, whose every page the kernel then faults in and zeroes again:
    12% of a DCNet FGSM training's CPU time went to the kernel, and its epochs ran 1.25x faster without it
    (BENCHMARKS.md, "Page faults"). Only where memory comes from changes, no bit of any result; the process keeps
    its peak memory instead of returning it between steps. Done once per process, on glibc only, and not where the
    user set any of ``_ALLOCATOR_ENV`` (their own tuning, or another allocator). Returns whether it is in effect."""
    if platform.system() != "Linux" or any(os.environ.get(name) for name in _ALLOCATOR_ENV):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (musl and others lack it, and their malloc has no such switches)
    except (OSError, AttributeError):
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


@contextlib.contextmanager
def placed(modules: Iterable[nn.Module], device: torch.device) -> Iterator[None]:
    """Move ``modules`` to ``device`` for the duration; then restore each one's device and train/eval mode. On the
    CPU, freed memory is kept for reuse from then on (``keep_freed_memory``)."""
    if device.type == "cpu":
        keep_freed_memory()
    saved = [(m, module_device(m), m.training) for m in modules]
    try:
        for m, _, _ in saved:
            m.to(device)
        yield
    finally:
        for m, original, training in saved:
            m.to(original)
            m.train(training)


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """fp32 inside, whatever autocast the caller opened: attacks and evaluation never inherit a lower precision
    (a bf16 gradient is a weaker attack, and the cell would say fp32)."""
    with contextlib.ExitStack() as stack:
        for kind in ("cpu", "cuda", "mps"):
            if kind == "cpu" or (kind == "cuda" and torch.cuda.is_available()) or (kind == "mps" and _mps_available()):
                stack.enter_context(torch.autocast(kind, enabled=False))
        yield


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs on ``device`` at all (``--precision bf16``); on the CPU oneDNN also runs it on
    AVX-512 without bf16 instructions, by emulation, slower than fp32 (``bf16_native``)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware, which is what makes bf16 training faster than fp32: a CUDA GPU
    without emulation, an x86 CPU with AVX-512 bf16 or AMX. oneDNN's own test accepts plain AVX-512, where it
    emulates bf16: a training step of cnn9 ran at 0.34-0.49x its fp32 speed there (BENCHMARKS.md). Other CPUs (aarch64)
    keep oneDNN's test."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu" and platform.machine().lower() in X86_MACHINES:
        return bf16_supported(device) and bool(cpu_bf16_instructions())
    return bf16_supported(device)


@dataclass(frozen=True)
class ComputeMode:
    """How training runs: device, autocast dtype (None: fp32) and memory layout. Recorded in the card."""

    device: str
    precision: str  # "fp32", "bf16" or "fp16"
    channels_last: bool

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self):
        dtype = self.autocast_dtype
        return torch.autocast(torch.device(self.device).type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def to_dict(self) -> dict:
        return asdict(self)


def channels_last_hazard(model: nn.Module) -> str | None:
    """The first layer of ``model`` whose channels-last gradient on a CPU is unsafe, or None: oneDNN's kernel for
    the weight gradient of a strided 1x1 convolution with 2 to 5 input channels in channels-last layout corrupts
    memory on some CPUs (seen with torch 2.14.1 on an AVX2 AMD EPYC: heap corruption, or with 2 threads a
    gradient 51 off, silently; NCHW is right there, and so is 6 or more channels). Below 8 channels is refused."""
    for name, m in model.named_modules():
        if type(m) is nn.Conv2d and m.kernel_size == (1, 1) and max(m.stride) > 1 and m.in_channels < 8:
            return f"{name} (1x1 convolution, stride {m.stride[0]}, {m.in_channels} input channels)"
    return None


def training_mode(
    device: torch.device,
    precision: str = "auto",
    channels_last: bool | None = None,
    *,
    decoupled: bool = False,
    hazard: str | None = None,
) -> ComputeMode:
    """``auto`` precision: bf16 autocast where the device computes bf16 in hardware (``bf16_native``: CUDA, CPUs with
    AVX-512 bf16 or AMX), else fp32. Channels-last by default on CUDA and, on the CPU, for networks without decoupled
    layers (where we measured it faster; the decoupled operator's channel reductions gain little from it there) and
    without a layer whose channels-last gradient is unsafe on a CPU (``hazard``, from ``channels_last_hazard``)."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "auto":
        precision = "bf16" if bf16_native(device) else "fp32"
    if precision == "bf16" and not bf16_supported(device):
        raise UserError(f"bf16 is not supported on {device}; use --precision fp32")
    if precision == "fp16" and device.type != "cuda":
        raise UserError("fp16 training (with a gradient scaler) needs a CUDA device; use bf16 or fp32 on the CPU")
    if channels_last and device.type == "cpu" and hazard:
        raise UserError(
            f"channels-last training on the CPU is unsafe for this network's {hazard}: oneDNN computes its gradient "
            "wrongly on some CPUs; use --channels-last no (a study: channels_last = false), or a width with at least "
            "8 channels there"
        )
    if channels_last is None:
        channels_last = device.type == "cuda" or (device.type == "cpu" and not decoupled and hazard is None)
    return ComputeMode(str(device), precision, bool(channels_last))
