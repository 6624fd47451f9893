"""Files written safely, and what identifies them: atomic writes, sha256, the software environment."""

from __future__ import annotations

import errno
import hashlib
import os
import platform
import tempfile
from pathlib import Path
from typing import Callable

from robustbench_dc.errors import UserError


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a unique temporary file beside ``path``, fsync it, then rename it over ``path``.

    Readers see the old file or the new one, never half of one; two writers never share a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in _USER_FIXABLE:
            raise UserError(f"cannot write {path}: {os.strerror(exc.errno)}; {_USER_FIXABLE[exc.errno]}, then run the same command "
                            "again (finished work is kept)") from exc  # fmt: skip
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_USER_FIXABLE = {errno.ENOSPC: "free some disk space", errno.EDQUOT: "free some of your disk quota",
                 errno.EROFS: "choose a writable --workspace", errno.EACCES: "choose a writable --workspace"}  # fmt: skip


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
        "cpu": platform.processor() or platform.machine(),
    }


def _version() -> str:
    from robustbench_dc import __version__

    return __version__
