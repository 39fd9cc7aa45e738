"""Generated tail-synth splits, cached on disk: a run on a data seed it has seen reads its
clips back instead of synthesising them again (about half a minute for the default preset).

One file per split, `cache_root()/streams/<domain>-<split>-<key>.npz`, holding the float32
waveforms as generated (bit for bit), the captions, their clip links and the clip ids. The
key hashes the generator's source files, numpy's version and every argument of
`synth.generate` (the domain's full description included), so a change to any of them
generates anew instead of reading a stale split. Files are written atomically; an
unreadable one is generated again and overwritten.
"""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

from tail_bench.storage import atomic_write_bytes, cache_root
from tail_bench.streams import synth
from tail_bench.streams.pairs import PairSet

SOURCES = ("synth.py", "sounds.py", "pairs.py", "generated.py")  # what a split depends on


def split_path(domain: synth.Domain, split: str, n_clips: int, *, seconds: float,
               seed: int) -> Path:
    h = hashlib.sha256()
    for name in SOURCES:
        h.update((Path(__file__).parent / name).read_bytes())
    h.update(f"{np.__version__}|{domain!r}|{split}|{n_clips}|{seconds!r}|{seed}".encode())
    return cache_root() / "streams" / f"{domain.key}-{split}-{h.hexdigest()[:16]}.npz"


def generate(domain: synth.Domain, split: str, n_clips: int, *, seconds: float,
             seed: int) -> PairSet:
    """`synth.generate(domain, split, n_clips, ...)`, read from the cache when it holds it."""
    path = split_path(domain, split, n_clips, seconds=seconds, seed=seed)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                return PairSet(dataset=domain.key, split=split, clips=f["clips"],
                               clip_ids=f["clip_ids"].tolist(), captions=f["captions"].tolist(),
                               caption_clip=f["caption_clip"].tolist(),
                               sample_rate=int(f["sample_rate"]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            print(f"tail-bench: cached split {path} is unreadable ({err}); generating it again",
                  file=sys.stderr)
    pairs = synth.generate(domain, split, n_clips, seconds=seconds, seed=seed)
    buf = io.BytesIO()
    np.savez(buf, clips=np.asarray(pairs.clips),
             clip_ids=np.asarray(pairs.clip_ids, dtype=str),
             captions=np.asarray(pairs.captions, dtype=str),
             caption_clip=np.asarray(pairs.caption_clip, dtype=np.int64),
             sample_rate=np.int64(pairs.sample_rate))
    atomic_write_bytes(path, buf.getvalue())
    return pairs
