"""Where the suite keeps files, and how it writes them.

- `cache_root()`: `$TAIL_BENCH_CACHE`, else `~/.cache/tail-bench` (pretrained backbones,
  decoded audio).
- Atomic writes: a crash leaves either the old file or the new one, never half of one, and
  files get the permissions `open()` would give them (mkstemp's are private).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


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
