"""Where the suite keeps files, and how it writes them.

- `cache_root()`: `$TAIL_BENCH_CACHE`, else `~/.cache/tail-bench` (pretrained backbones,
  decoded audio).
- Atomic writes: a crash leaves either the old file or the new one, never half of one, and
  files get the permissions `open()` would give them (mkstemp's are private).
- Before any work: `writable_dir` and `room_for` refuse, in one line, a directory the run
  could not write (a file in its place, read-only) or a disk without room.
- One writer per run directory: `DirLock` holds an advisory `fcntl` lock on `DIR/.lock`.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tail_bench.errors import ConfigError, RunFileError
from tail_bench.record import LOCK_FILE

# What a write can fail with that the user fixes (room, permissions), not a bug.
WRITE_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                  errno.EFBIG}


def cache_root() -> Path:
    """$TAIL_BENCH_CACHE, else $XDG_CACHE_HOME/tail-bench (~/.cache/tail-bench)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tail-bench"
    return Path(os.environ.get("TAIL_BENCH_CACHE", default))


def writable_dir(path: Path, what: str) -> None:
    """Create `path` if needed and write (and remove) a probe file in it; refuse in one
    line, naming `what` (`--out DIR`), a file in its place or a directory that cannot be
    written (read-only mount, permissions)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what}: {path} is a file; expected a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(f"{what}: {path} cannot be written ({err.strerror})") from None


def room_for(path: Path, need: int, what: str) -> None:
    """Refuse a disk with fewer than `need` bytes free under `path`."""
    free = shutil.disk_usage(path).free
    if free < need:
        raise ConfigError(f"{what}: {free / 2**20:.1f} MiB free on its disk; a checkpoint "
                          f"needs about {need / 2**20:.1f} MiB")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256(data: bytes) -> str:
    """The checksum run.json records for the files a resume reads back."""
    return hashlib.sha256(data).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically; an OSError names `path`, not its temporary."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_umask())  # what open() would give: mkstemp makes 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


class DirLock:
    """The advisory lock of a run directory, held from `acquire()` until `release()` or the
    process ends: the kernel drops an flock with its last open descriptor, so a lock file
    a killed run left behind is stale by construction and is simply taken over. The file
    keeps the holder's pid, for the refusal's message. The holder removes the temporary
    files of atomic writes that a kill cut short (no one else writes there)."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, what: str) -> None:
        """Take the lock or refuse in one line; `what` names the option (`--out DIR`)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        self._take(fd, what)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        for tmp in self.path.parent.rglob(".*.tmp"):  # atomic writes a kill cut short
            if tmp.is_file():
                tmp.unlink()

    def check(self, what: str) -> None:
        """Refuse, as `acquire` would, while another process holds the lock; writes nothing
        (the planning step calls it before comparing a resumed run's settings)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        self._take(fd, what)
        os.close(fd)  # and with it the lock just taken

    @staticmethod
    def _take(fd: int, what: str) -> None:
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

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # the lock goes with the descriptor; the file may stay
            self._fd = None
