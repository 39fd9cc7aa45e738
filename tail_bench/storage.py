"""Where the suite keeps files, and how it writes them.

- `cache_root()`: `$TAIL_BENCH_CACHE`, else `~/.cache/tail-bench` (pretrained backbones,
  decoded audio).
- Atomic writes: a crash leaves either the old file or the new one, never half of one, and
  files get the permissions `open()` would give them (mkstemp's are private).
- One writer per run directory: `DirLock` holds an advisory `fcntl` lock on `DIR/.lock`.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tail_bench.errors import RunFileError

LOCK_FILE = ".lock"


def run_name(method: str, seed: int, order_index: int = 0) -> str:
    """How one (method, seed, stream order) of a run names its files: `<method>-s<seed>`,
    and `-o<k>` past the run's first order, so a one-order run names them as before."""
    return f"{method}-s{seed}" + (f"-o{order_index}" if order_index else "")


def cache_root() -> Path:
    """$TAIL_BENCH_CACHE, else $XDG_CACHE_HOME/tail-bench (~/.cache/tail-bench)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tail-bench"
    return Path(os.environ.get("TAIL_BENCH_CACHE", default))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # what open() would give: mkstemp makes 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


class DirLock:
    """The advisory lock of a run directory, held from `acquire()` until `release()` or the
    process ends: the kernel drops an flock with its last open descriptor, so a lock file
    a killed run left behind is stale by construction and is simply taken over. The file
    keeps the holder's pid, for the refusal's message."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, what: str) -> None:
        """Take the lock or refuse in one line; `what` names the option (`--out DIR`)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            raise RunFileError(f"{what}: another tail-bench process (pid {holder}) is "
                               "writing this run directory; wait for it to end, or pick "
                               "another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # the lock goes with the descriptor; the file may stay
            self._fd = None
