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
import os
import struct
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


def _wav_lie(path: Path) -> str | None:
    """What a WAV header claims that its bytes contradict (libsndfile trusts the former,
    or quietly clamps to the file's end): a data chunk larger than the file, a block size
    other than channels x sample width, data not a whole number of frames."""
    with open(path, "rb") as f:
        head = f.read(4096)
        size = os.fstat(f.fileno()).st_size
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    at, fmt = 12, None
    while at + 8 <= len(head):
        chunk, length = head[at:at + 4], struct.unpack("<I", head[at + 4:at + 8])[0]
        if chunk == b"fmt " and at + 24 <= len(head):
            channels, _, _, align, bits = struct.unpack("<HIIHH", head[at + 10:at + 24])
            fmt = (channels, align, bits)
        if chunk == b"data":
            start = at + 8
            if fmt is not None:
                channels, align, bits = fmt
                if align != channels * math.ceil(bits / 8):
                    return (f"the header says {channels} channels of {bits} bits but blocks "
                            f"of {align} bytes")
                if length % align:
                    return (f"the header's {length} data bytes are not whole frames of "
                            f"{channels} channels")
            if start + length > size:
                held = (size - start) // max(1, fmt[1] if fmt else 1)
                return (f"the header promises {length // max(1, fmt[1] if fmt else 1)} "
                        f"frames, the file holds {held}")
            return None
        at += 8 + length + (length & 1)
    return None


def header_problem(path: Path) -> str | None:
    """`kind: detail` when a file's header cannot be read, promises no samples, or claims
    what its bytes contradict (the last claimed frame cannot be read); None when sound."""
    try:
        info = sf.info(str(path))
        if info.frames <= 0:
            return "empty audio: the file holds no samples"
        lie = _wav_lie(Path(path)) if info.format in ("WAV", "WAVEX") else None
        if lie is None:
            with sf.SoundFile(str(path)) as f:  # the last claimed frame must be there
                f.seek(info.frames - 1)
                if len(f.read(1, dtype="int16")) != 1:
                    lie = f"the header promises {info.frames} frames, fewer can be read"
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        return "unreadable audio: " + str(err).splitlines()[0]
    return None if lie is None else f"unreadable audio: {lie}"


def load_clip(path: Path, *, sample_rate: int, seconds: float) -> np.ndarray:
    n = round(seconds * sample_rate)
    try:
        info = sf.info(str(path))
        # what the clip needs, and a margin the resampler's kernel reads past it, so the
        # clip equals the start of the whole file resampled
        frames = min(info.frames, math.ceil(seconds * info.samplerate) + RESAMPLE_MARGIN)
        lie = _wav_lie(Path(path)) if info.format in ("WAV", "WAVEX") else None
        data, rate = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(path, f"unreadable audio ({err}); expected WAV, FLAC or OGG") from err
    if lie is None and 0 < len(data) < frames:
        lie = f"the header promises {info.frames} frames, the file holds {len(data)}"
    if lie is not None:
        raise AudioError(path, f"unreadable audio: {lie}")
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
