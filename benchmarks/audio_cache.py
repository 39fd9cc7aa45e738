"""Decode vs cached read of 1,000 clips (the `tail-bench prepare --cache` trade-off).

Writes N clips as 44.1 kHz stereo files (WAV or FLAC) of `--file-seconds`, then times
(1) decoding them to mono clips of `--seconds` at `--rate` (soundfile + resample, what an
epoch costs without the cache), (2) building the int16 cache, (3) reading every clip from
the cache as float32, and prints the cache's size on disk.

    python benchmarks/audio_cache.py --clips 1000 --seconds 10 --format flac --rate 48000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from tail_bench.streams.audio import AudioFiles


def read_all(src: AudioFiles) -> float:
    start = time.perf_counter()
    for i in range(len(src)):
        src[i]
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=10.0, help="clip length the model reads")
    p.add_argument("--file-seconds", type=float, default=15.0, help="length of each file")
    p.add_argument("--format", default="wav", choices=["wav", "flac"])
    p.add_argument("--rate", type=int, default=16_000, help="the backbone's sample rate")
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        n = int(44_100 * a.file_seconds)
        for i in range(a.clips):
            path = Path(tmp) / f"clip {i}.{a.format}"
            sf.write(path, (0.1 * rng.standard_normal((n, 2))).astype(np.float32), 44_100)
            paths.append(path)
        cache = Path(tmp) / "cache" / "bench"
        src = AudioFiles(paths, sample_rate=a.rate, seconds=a.seconds, cache=cache)
        decode = read_all(src)
        start = time.perf_counter()
        src.build_cache(progress=False)
        build = time.perf_counter() - start
        cached = AudioFiles(paths, sample_rate=a.rate, seconds=a.seconds, cache=cache)
        read = read_all(cached)
        size = cache.with_suffix(".npy").stat().st_size / 2**20
    print(f"{a.clips} clips, {a.format} 44.1 kHz stereo {a.file_seconds:g} s -> "
          f"mono {a.rate / 1000:g} kHz {a.seconds:g} s")
    per = 1000 / a.clips
    print(f"  decode (every epoch without cache): {decode:7.2f} s  ({per * decode:.2f} ms/clip)")
    print(f"  build cache (once):                 {build:7.2f} s")
    print(f"  read from cache:                    {read:7.2f} s  ({per * read:.3f} ms/clip)")
    print(f"  speed-up per epoch: {decode / read:.0f}x")
    print(f"  cache on disk: {size:.1f} MiB (int16; float32 would be {2 * size:.1f} MiB)")


if __name__ == "__main__":
    main()
