"""Audio files -> fixed-length mono clips.

soundfile reads WAV/FLAC/OGG (torchaudio no longer does file I/O). Channels are averaged,
the rate is resampled to the backbone's, and the clip is the first `seconds` of the file,
zero-padded if shorter (CHOICE: the start, so the decoded-audio cache is deterministic).
Each file's own rate and channel count are used, whatever its siblings have.

16-bit PCM is k / 32768, soundfile's scale for 16-bit files (CHOICE: not 32767), so a
16-bit source read at its own rate round-trips exactly; otherwise the error is at most
1 / 65536, and samples are clipped to [-1, 32767 / 32768]. The cache of decoded clips is
`streams/cache.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from tail_bench.errors import DataError
from tail_bench.runtime import PCM_SCALE

RESAMPLE_MARGIN = 64  # input frames: more than torchaudio's sinc kernel reaches (6 zero-crossings)


class AudioError(DataError):
    """An audio file that cannot be decoded; the message names the file."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


def load_clip(path: Path, *, sample_rate: int, seconds: float) -> np.ndarray:
    n = round(seconds * sample_rate)
    try:
        info = sf.info(str(path))
        # what the clip needs, and a margin the resampler's kernel reads past it, so the
        # clip equals the start of the whole file resampled
        frames = min(info.frames, math.ceil(seconds * info.samplerate) + RESAMPLE_MARGIN)
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


def open_rows(data: Path, rows: int) -> np.ndarray:
    """A cache's data file, memory-mapped; a truncated or foreign file is named."""
    try:
        array = np.load(data, mmap_mode="r")
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{data}: unreadable decoded-audio cache ({err}); delete it, or "
                        "rebuild it with `tail-bench prepare --cache`") from err
    if array.dtype != np.int16 or array.ndim != 2 or len(array) < rows:
        raise DataError(f"{data}: decoded-audio cache holds {array.dtype} {array.shape}, "
                        f"expected int16 with at least {rows} rows; delete it, or rebuild it "
                        "with `tail-bench prepare --cache`")
    return array


class AudioFiles:
    """Indexable clip source over audio files. With `cached` (the cache's data file and each
    file's row in it) a clip is read from the cache as 16-bit PCM, and stays PCM until the
    model's front-end converts it on the device; otherwise it is decoded to float32."""

    def __init__(self, paths: Sequence[Path], *, sample_rate: int, seconds: float,
                 cached: tuple[Path, list[int]] | None = None) -> None:
        self.paths, self.sample_rate, self.seconds = list(paths), sample_rate, seconds
        self.cached = cached
        self._array: np.ndarray | None = None
        if cached is not None:
            self._open()  # a damaged cache is named now, not in a loader worker

    def _open(self) -> np.ndarray:
        if self._array is None:
            self._array = open_rows(self.cached[0], max(self.cached[1], default=-1) + 1)
        return self._array

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}  # workers map the file themselves

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        if self.cached is not None:
            return np.array(self._open()[self.cached[1][i]])  # the read happens here
        return load_clip(self.paths[i], sample_rate=self.sample_rate, seconds=self.seconds)
