"""Audio files -> fixed-length mono clips, with a decoded-waveform cache.

soundfile reads WAV/FLAC/OGG (torchaudio no longer does file I/O). Channels are averaged,
the rate is resampled to the backbone's, and the clip is the first `seconds` of the file,
zero-padded if shorter (CHOICE: the start, so the cache is deterministic).

The cache is one .npy of 16-bit PCM per (data set, split), half the size of float32, plus
a manifest holding the front end's settings and each file's size and mtime; a mismatch marks
it stale and it is not used. PCM is k / 32768, soundfile's scale for 16-bit files (CHOICE:
not 32767), so a 16-bit source read at its own rate round-trips exactly; otherwise the
error is at most 1 / 65536, and samples are clipped to [-1, 32767 / 32768].
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from tail_bench.errors import DataError
from tail_bench.progress import progress as progress_bar
from tail_bench.runtime import PCM_SCALE
from tail_bench.storage import atomic_write_json

CACHE_VERSION = 2  # 2: int16 PCM (1: float32)


class AudioError(DataError):
    """An audio file that cannot be decoded; the message names the file."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


def load_clip(path: Path, *, sample_rate: int, seconds: float) -> np.ndarray:
    n = round(seconds * sample_rate)
    try:
        info = sf.info(str(path))
        frames = min(info.frames, math.ceil(seconds * info.samplerate) + 1)
        data, rate = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(path, f"unreadable audio ({err}); expected WAV, FLAC or OGG") from err
    if data.size == 0:
        raise AudioError(path, "audio has no samples")
    mono = data.mean(axis=1)
    if rate != sample_rate:
        mono = torchaudio.functional.resample(torch.from_numpy(mono), rate, sample_rate).numpy()
    out = np.zeros(n, dtype=np.float32)
    out[: min(n, len(mono))] = mono[:n]
    return out


def to_pcm16(clip: np.ndarray) -> np.ndarray:
    return np.round(np.clip(clip, -1.0, (PCM_SCALE - 1) / PCM_SCALE) * PCM_SCALE
                    ).astype(np.int16)


def _manifest(paths: Sequence[Path], sample_rate: int, seconds: float) -> dict:
    files = []
    for p in paths:
        st = Path(p).stat()
        files.append([str(p), st.st_size, st.st_mtime_ns])
    return {"version": CACHE_VERSION, "sample_rate": sample_rate, "seconds": seconds,
            "crop": "start", "files": files}


class AudioFiles:
    """Indexable clip source over audio files; reads the cache when it is fresh. A clip is
    float32 when decoded and 16-bit PCM when it comes from the cache: it stays PCM until the
    model's front-end converts it on the device."""

    def __init__(self, paths: Sequence[Path], *, sample_rate: int, seconds: float,
                 cache: Path | None = None) -> None:
        self.paths, self.sample_rate, self.seconds = list(paths), sample_rate, seconds
        self.cache = cache
        self._array: np.ndarray | None = None
        if cache is not None and self.cache_is_fresh():
            self._array = _open_cache(cache.with_suffix(".npy"), len(self.paths))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        if self._array is not None:
            return np.array(self._array[i])  # int16 PCM: the read happens here, not later
        return load_clip(self.paths[i], sample_rate=self.sample_rate, seconds=self.seconds)

    def cache_is_fresh(self) -> bool:
        meta = self.cache.with_suffix(".json") if self.cache else None
        if meta is None or not meta.exists() or not self.cache.with_suffix(".npy").exists():
            return False
        try:
            return json.loads(meta.read_text()) == _manifest(self.paths, self.sample_rate,
                                                            self.seconds)
        except (OSError, json.JSONDecodeError):
            return False

    def build_cache(self, *, progress: bool = True, desc: str = "decode") -> list[AudioError]:
        """Decode every file into the cache; returns the files that failed (kept as zeros)."""
        if self.cache is None:
            raise ValueError("no cache path was given")
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        n = round(self.seconds * self.sample_rate)
        tmp = self.cache.with_suffix(".tmp.npy")
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int16,
                                          shape=(len(self.paths), n))
        errors = []
        for i, p in enumerate(progress_bar(self.paths, desc=desc, enabled=progress,
                                           leave=False)):
            try:
                array[i] = to_pcm16(load_clip(p, sample_rate=self.sample_rate,
                                              seconds=self.seconds))
            except AudioError as err:
                errors.append(err)
        array.flush()
        del array
        tmp.replace(self.cache.with_suffix(".npy"))
        atomic_write_json(self.cache.with_suffix(".json"),
                          _manifest(self.paths, self.sample_rate, self.seconds))
        self._array = _open_cache(self.cache.with_suffix(".npy"), len(self.paths))
        return errors


def _open_cache(npy: Path, clips: int) -> np.ndarray:
    """The cache's array, memory-mapped; a truncated or foreign file is named."""
    try:
        array = np.load(npy, mmap_mode="r")
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{npy}: unreadable decoded-audio cache ({err}); delete it, or "
                        "rebuild it with `tail-bench prepare --cache`") from err
    if array.dtype != np.int16 or array.ndim != 2 or len(array) != clips:
        raise DataError(f"{npy}: decoded-audio cache holds {array.dtype} {array.shape}, "
                        f"expected int16 ({clips}, samples); delete it, or rebuild it with "
                        "`tail-bench prepare --cache`")
    return array


def cache_path(cache_dir: Path, dataset: str, split: str, sample_rate: int,
               seconds: float) -> Path:
    key = hashlib.sha256(f"{sample_rate}|{seconds}|{CACHE_VERSION}".encode()).hexdigest()[:8]
    return cache_dir / f"{dataset}-{split}-{key}"
