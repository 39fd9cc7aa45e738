"""Cached weights with an integrity check: a checksum stored with the tensors and a
finite check on load, so a truncated, zeroed or NaN-filled cache file is detected (and
rebuilt by its owner) instead of crashing or loading silently."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from tail_bench.storage import atomic_write_bytes

CHECKSUM = "sha256_of_tensors"


class CorruptWeights(Exception):
    """A cached weights file that fails its check; the message says why."""


def checksum(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checked(tensors: dict[str, torch.Tensor], path: Path,
                 metadata: dict[str, str] | None = None) -> None:
    """Atomic save (storage.atomic_write_bytes) with the tensors' checksum in the file's
    metadata."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(Path(path), save(tensors, metadata={**(metadata or {}),
                                                          CHECKSUM: checksum(tensors)}))


def load_checked(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of `path`, or CorruptWeights naming what is wrong."""
    try:
        with safe_open(str(path), framework="pt") as f:
            stored = (f.metadata() or {}).get(CHECKSUM)
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CorruptWeights(f"unreadable ({err})") from err
    if stored is None:
        raise CorruptWeights("no checksum stored with the weights")
    if checksum(tensors) != stored:
        raise CorruptWeights("checksum mismatch")
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CorruptWeights(f"non-finite values in {bad[0]}")
    return tensors
