"""Files written safely, and what identifies them: atomic writes, sha256, the software environment."""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Callable

from robustbench_dc.errors import UserError


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a unique temporary file beside ``path``, fsync it, then rename it over ``path``.

    Readers see the old file or the new one, never half of one; two writers never share a temporary file. A
    failure of the file system (full, read-only, a folder in the way) is a UserError naming the path.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise write_error(path, exc.errno, exc.strerror or str(exc)) from exc
    except Exception as exc:
        _discard(tmp)
        if type(exc).__name__ == "SafetensorError" and (
            "StorageFull" in str(exc) or "os error 28" in str(exc)
        ):  # safetensors' own I/O
            raise write_error(path, errno.ENOSPC, os.strerror(errno.ENOSPC)) from exc
        raise
    except BaseException:
        _discard(tmp)
        raise


def write_error(path: Path, code: int | None, reason: str) -> UserError:
    """The one-line error for an output file the system would not write, with what to do about it."""
    fix = _USER_FIXABLE.get(code or 0, "choose another output path")
    return UserError(f"cannot write {path}: {reason}; {fix}, then run the same command again (finished work is kept)")


def _discard(tmp: Path | None) -> None:
    if tmp is not None:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


_USER_FIXABLE = {
    errno.ENOSPC: "free some disk space",
    errno.EDQUOT: "free some of your disk quota",
    errno.EROFS: "choose a writable --workspace or --out",
    errno.EACCES: "choose a writable --workspace or --out",
    errno.EPERM: "choose a writable --workspace or --out",
    errno.EISDIR: "a folder has that name: choose another --out or move it",
    errno.ENOTDIR: "a file stands where a folder is needed on that path: choose another --out or move it",
    errno.EEXIST: "a file stands where a folder is needed on that path: choose another --out or move it",
}


def output_dir(path: Path) -> Path:
    """``path`` as a folder to write into, made if missing; a file in the way or an unwritable parent is a UserError."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(path, exc.errno, exc.strerror or str(exc)) from exc
    return path


def save_figure(figure: Any, path: Path) -> None:
    """A Matplotlib figure written atomically (see ``atomic_write``) twice: as the PNG that ``path`` names (for
    the Markdown and HTML reports) and as a vector PDF beside it (for a paper), without a creation date, so the
    same figure gives the same bytes."""
    path = Path(path)
    atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=150, format="png", metadata={"Software": None}))
    pdf = {"CreationDate": None, "Creator": None, "Producer": None}
    atomic_write(path.with_suffix(".pdf"), lambda tmp: figure.savefig(tmp, format="pdf", metadata=pdf))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: None if tmp.write_bytes(data) else None)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: the largest file the suite reads as a checkpoint, card, study or image archive (a CIFAR-10 batch is 31 MB)
MAX_FILE_BYTES = 8 << 30


def regular_file(path: Path, what: str = "file") -> Path:
    """``path`` if it is a regular file of a readable size; a device, a pipe or a socket (``/dev/zero``, a FIFO) would
    be read without end or block forever, so it is refused with a one-line error before any read."""
    import stat

    from robustbench_dc.errors import UserError

    try:
        info = Path(path).stat()
    except OSError as exc:
        raise UserError(f"{path}: cannot read this {what} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path}: not a regular file (a device, pipe or socket?); give the {what} itself")
    if info.st_size > MAX_FILE_BYTES:
        raise UserError(f"{path}: {info.st_size / 2**30:.1f} GiB is larger than any {what} this suite reads")
    return Path(path)


def sha256_file(path: Path) -> str:
    regular_file(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: ``platform.machine()`` of the CPUs whose bf16 instructions torch can be asked about.
X86_MACHINES = ("x86_64", "amd64", "i686", "x86")


@functools.cache
def _cpu_model_name() -> str:
    """The CPU's model as the kernel names it (read once: environment() runs for every result cell)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_bf16_instructions() -> list[str]:
    """The bf16 instructions this x86 CPU has (AVX-512 bf16, AMX): without them oneDNN emulates bf16, slower than
    fp32. Empty on other CPUs, where torch cannot be asked."""
    import torch

    if platform.machine().lower() not in X86_MACHINES:
        return []
    checks = (("AVX-512 bf16", "_is_avx512_bf16_supported"), ("AMX", "_is_amx_tile_supported"))
    return [label for label, check in checks if getattr(torch.cpu, check, lambda: False)()]


def cpu_description() -> str:
    """The host CPU's model and the instructions that set its training speed, for cards and result cells: the same
    recipe runs several times faster in bf16 where the CPU computes bf16 (AMX, AVX-512 bf16) than where oneDNN
    emulates it, so "x86_64" cannot tell a reader which machine a time or a bit pattern came from."""
    import torch

    name = _cpu_model_name()
    if platform.machine().lower() not in X86_MACHINES:
        return name
    avx512, avx2 = (getattr(torch.cpu, f"_is_{isa}_supported", lambda: False)() for isa in ("avx512", "avx2"))
    vector = "AVX-512" if avx512 else "AVX2" if avx2 else "no AVX2"
    native = cpu_bf16_instructions()
    return f"{name}; {vector}; " + (f"bf16 instructions: {', '.join(native)}" if native else "no bf16 instructions")


def environment() -> dict[str, str]:
    """Versions and hardware of this process, for cards, result cells and reports."""
    import torch

    cuda = torch.version.cuda
    return {
        "robustbench_dc": _version(),
        "torch": torch.__version__.split("+")[0],
        "torch_build": f"build with CUDA {cuda}" if cuda else "CPU-only build",
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads",
        "cpu": cpu_description(),
    }


def _version() -> str:
    from robustbench_dc import __version__

    return __version__
