"""Write a small TAIL data root in the real distribution formats, for trying the loaders.

    python -m tail_bench.streams.fixture DIR [--layout LAYOUT] [--break KIND ...]

Audio comes from the tail-synth generator, so a run on it learns something. Files use
the formats users meet: AudioCaps at 32 kHz with YouTube ids starting with `-` or `_`,
Clotho 44.1 kHz stereo WAV with spaces in names, BBC 48 kHz FLAC, AudioSet_SL FLAC with
ids ending in `.wav`, and a few AudioSet clips cut from AudioCaps videos: two from test
videos (they leave AudioSet's train split) and two from train videos that land in
AudioSet's val/test (they leave those).

`--layout` writes the same clips and captions in the layout a tool delivers
(docs/datasets.md): `original` (the releases), `aac-datasets` (its folders and file names;
`WavCaps/` links into a Hugging Face cache folder, `--hf-cache`), `wavcaps` (WavCaps'
retrieval folders for AudioCaps and Clotho, JSON and CSV; BBC and AudioSet_SL as released),
or one per data set: `audiocaps=aac-datasets,clotho=wavcaps`.
`--break` adds one known problem: missing-column, missing-file, corrupt-file,
empty-caption, duplicate-id, empty-audio, outside-path.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from tail_bench.streams import synth
from tail_bench.streams.audio import to_pcm16
from tail_bench.streams.sounds import SAMPLE_RATE
from tail_bench.streams.tail.layouts import (
    CLOTHO_SPLITS,
    DATASETS,
    LAYOUTS,
    SPLITS,
    WAVCAPS_JSON,
    WAVCAPS_SOURCES,
    detect,
)


@dataclass(frozen=True)
class Spec:
    """What a fixture holds. The default is the small root the tests use; the full-size
    rehearsal (benchmarks/scale.py) writes the published sizes with a `pool` of distinct
    generated clips that the files cycle through (each at its own gain, captions numbered
    past the pool), at each data set's usual rate and file length."""

    sizes: tuple[int, int, int] = (12, 4, 6)  # AudioCaps and Clotho train/val/test clips
    clotho_sizes: tuple[int, int, int] | None = None  # None: `sizes`
    wavcaps_items: tuple[int, int] = (60, 60)  # BBC, AudioSet_SL (split by hash)
    seconds: tuple[float, float, float, float] = (2.0, 2.0, 2.0, 2.0)  # file length
    rates: tuple[int, int, int, int] = (32_000, 44_100, 48_000, 16_000)
    pool: int | None = None  # distinct clips per data set and split (None: every file)

    def rate(self, dataset: str) -> int:
        return self.rates[DATASETS.index(dataset)]

    def length(self, dataset: str) -> float:
        return self.seconds[DATASETS.index(dataset)]


BREAKS = ("missing-column", "missing-file", "corrupt-file", "empty-caption", "duplicate-id",
          "empty-audio", "outside-path")
HF_SNAPSHOT = Path("datasets--cvssp--WavCaps") / "snapshots" / "85a0c21e26fa7696a5a74ce54fada99a"


def _write(path: Path, wave: np.ndarray, rate: int, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.from_numpy(wave)
    if rate != SAMPLE_RATE:
        x = torchaudio.functional.resample(x, SAMPLE_RATE, rate)
    data = x.numpy()
    if channels == 2:
        data = np.stack([data, 0.5 * data], axis=1)
    # 16-bit samples rounded here, so every format and layout stores the same ones
    sf.write(str(path), to_pcm16(data), rate)


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _json(path: Path, blob: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(blob, indent=1))


def _ytid(i: int) -> str:
    return ["-", "_", "a", "Z"][i % 4] + f"x{i:04d}_q-{i % 7}"


@functools.cache  # the same clips for every layout a process writes
def _pairs(domain: str, split: str, n: int, seed: int, seconds: float):
    d = next(x for x in synth.DOMAINS if x.key == domain)
    return synth.generate(d, split, n, seconds=seconds, seed=seed)


def _clips(domain: str, split: str, n: int, seed: int, spec: Spec
           ) -> Iterator[tuple[np.ndarray, list[str]]]:
    """(wave at 16 kHz, captions) of `n` files; past the pool, a generated clip comes back
    at another gain with its captions numbered, so files and captions stay distinct."""
    m = n if spec.pool is None else min(n, spec.pool)
    p = _pairs(domain, split, m, seed, spec.length(domain))
    for i in range(n):
        k, lap = i % m, i // m
        caps = [c if not lap else f"{c} (take {lap + 1})" for c in _captions(p, k)]
        yield (p.clips[k] if not lap else p.clips[k] * (0.5 + 0.5 / lap)), caps


def _captions(p, i: int) -> list[str]:
    return [c for c, o in zip(p.captions, p.caption_clip, strict=True) if o == i]


def layouts_of(layout: str | dict[str, str]) -> dict[str, str]:
    """`original`, `aac-datasets`, `wavcaps`, or `dataset=layout,...` -> one per data set.
    WavCaps' retrieval code keeps BBC and AudioSet_SL as released (its `wavcaps` is theirs)."""
    if isinstance(layout, str) and "=" in layout:
        layout = dict(part.split("=", 1) for part in layout.split(","))
    per = dict.fromkeys(DATASETS, layout) if isinstance(layout, str) else {
        d: layout.get(d, "original") for d in DATASETS}
    bad = [f"{d}={v}" for d, v in per.items() if v not in LAYOUTS or d not in DATASETS]
    if bad or (isinstance(layout, dict) and set(layout) - set(DATASETS)):
        raise ValueError(f"--layout {layout}: expected one of {LAYOUTS}, or "
                         f"DATASET=LAYOUT,... with data sets {DATASETS}")
    return {d: "original" if v == "wavcaps" and d in WAVCAPS_SOURCES else v
            for d, v in per.items()}


def _audiocaps(root: Path, layout: str, spec: Spec, seed: int) -> list[str]:
    test_ids, rate = [], spec.rate("audiocaps")
    for split, n in zip(SPLITS, spec.sizes, strict=True):
        rows, clips = [], []
        for i, (wave, caps) in enumerate(_clips("audiocaps", split, n, seed, spec)):
            yt = _ytid(1000 * SPLITS.index(split) + i) if n < 1000 else _ytid(
                10**6 * SPLITS.index(split) + i)
            if split == "test":
                test_ids.append(yt)
            rows += [[f"{split[:2]}{i}{k}", yt, "30", c] for k, c in enumerate(caps)]
            clips.append((f"Y{yt}.wav", caps))
            audio = {"original": f"audiocaps/audio/{split}/Y{yt}.wav",
                     "aac-datasets": f"AUDIOCAPS/audio_{rate}Hz/{split}/{yt}_30.flac",
                     "wavcaps": f"AudioCaps/waveforms/{split}/Y{yt}.wav"}[layout]
            _write(root / audio, wave, rate)
        header = ["audiocap_id", "youtube_id", "start_time", "caption"]
        if layout == "original":
            _csv(root / "audiocaps" / f"{split}.csv", header, rows)
        elif layout == "aac-datasets":
            _csv(root / "AUDIOCAPS" / "csv_files_v1" / f"{split}.csv", header, rows)
        else:
            _retrieval_files(root / "AudioCaps", "AudioCaps", split, clips)
    return test_ids


def _retrieval_files(folder: Path, name: str, split: str,
                     clips: list[tuple[str, list[str]]]) -> None:
    """WavCaps' retrieval metadata: json_files/<split>.json and csv_files/<split>.csv."""
    five = len(clips[0][1]) == 5
    keys = [f"caption_{k}" for k in range(1, 6)] if five else ["caption"]
    items = [{**dict(zip(keys, caps, strict=True)), "wav": f"{name}/waveforms/{split}/{f}",
              "audio": f"/mnt/data/{name}/waveforms/{split}/{f}", "duration": 2.0,
              "id": f if name == "AudioCaps" else str(100_000 + i)}
             for i, (f, caps) in enumerate(clips)]
    _json(folder / "json_files" / f"{split}.json",
          {"num_captions_per_audio": 5 if five else 1, "data": items})
    _csv(folder / "csv_files" / f"{split}.csv", ["file_name", *keys],
         [[f, *caps] for f, caps in clips])


def _clotho(root: Path, layout: str, spec: Spec, seed: int) -> None:
    for split, n in zip(SPLITS, spec.clotho_sizes or spec.sizes, strict=True):
        name = CLOTHO_SPLITS[split]
        clips = list(_clips("clotho", split, n, seed, spec))
        names = [f"Field rec, {name} take {i} (stereo).wav" for i in range(n)]
        folder = {"original": root / "clotho" / name,
                  "aac-datasets": root / "CLOTHO_v2.1" / "clotho_audio_files" / name,
                  "wavcaps": root / "Clotho" / "waveforms" / split}[layout]
        for fname, (wave, _) in zip(names, clips, strict=True):
            _write(folder / fname, wave, spec.rate("clotho"), channels=2)
        rows = [(f, caps) for f, (_, caps) in zip(names, clips, strict=True)]
        header = ["file_name", *(f"caption_{k}" for k in range(1, 6))]
        csv_name = f"clotho_captions_{name}.csv"
        if layout == "original":
            _csv(root / "clotho" / csv_name, header, [[f, *c] for f, c in rows])
        elif layout == "aac-datasets":
            _csv(root / "CLOTHO_v2.1" / "clotho_csv_files" / csv_name, header,
                 [[f, *c] for f, c in rows])
        else:
            _retrieval_files(root / "Clotho", "Clotho", split, rows)


def _wavcaps(root: Path, key: str, layout: str, spec: Spec, seed: int, test_ids: list[str],
             hf_cache: Path) -> None:
    source, rate = WAVCAPS_SOURCES[key], spec.rate(key)
    items_n = spec.wavcaps_items[0 if key == "bbc" else 1]
    if layout == "aac-datasets":  # the Hugging Face snapshot, linked as WavCaps/
        base = hf_cache / HF_SNAPSHOT
        audio = base / "Audio" / source
        if not (root / "WavCaps").exists():
            root.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.abspath(base), root / "WavCaps", target_is_directory=True)
    else:
        base, audio = root / "wavcaps", root / "wavcaps" / "audio" / source
    items = []
    for i, (wave, (caption,)) in enumerate(_clips(key, "train", items_n, seed, spec)):
        if key == "bbc":
            cid = stem = f"{7066104 + i:08d}"
            items.append({"id": cid, "caption": caption, "description": caption,
                          "category": "['Machines']", "duration": spec.length(key),
                          "audio": "wav_path", "download_link": "placeholder"})
        else:
            # two from AudioCaps test videos, two from train videos (AudioCaps train
            # clips 0 and 2, whose AudioSet ids hash to test and val), then new videos
            yt = (test_ids[i] if i < min(2, len(test_ids)) else
                  _ytid(2 * (i - 2)) if 2 <= i < 4 and spec.sizes[0] > 2 else
                  _ytid(5000 + i if items_n < 5000 else 10**7 + i))
            cid, stem = f"Y{yt}.wav", f"Y{yt}"
            items.append({"id": cid, "caption": caption, "audio": "wav_path",
                          "duration": spec.length(key)})
        _write(audio / f"{stem}.flac", wave, rate)
    text = json.dumps({"num_captions_per_audio": 1, "data": items})
    path = base / "json_files" / source / WAVCAPS_JSON[key]
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout == "aac-datasets":  # the snapshot's files link to content-addressed blobs
        blob = hf_cache / "datasets--cvssp--WavCaps" / "blobs" / hashlib.sha256(
            text.encode()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_text(text)
        path.unlink(missing_ok=True)
        os.symlink(os.path.relpath(blob, path.parent), path)
    else:
        path.write_text(text)


def write_fixture(root: Path, *, layout: str | dict[str, str] = "original",
                  spec: Spec = Spec(), seed: int = 0, breaks: tuple[str, ...] = (),
                  hf_cache: Path | None = None) -> Path:
    """The same clips and captions in `layout` (see the module docstring)."""
    root = Path(root)
    per = layouts_of(layout)
    hf_cache = Path(hf_cache) if hf_cache is not None else root / ".hf-cache"
    test_ids = _audiocaps(root, per["audiocaps"], spec, seed)
    _clotho(root, per["clotho"], spec, seed)
    for key in WAVCAPS_SOURCES:
        _wavcaps(root, key, per[key], spec, seed, test_ids, hf_cache)
    for kind in breaks:
        _break(root, kind)
    return root


def _edit_json(path: Path, edit) -> None:
    blob = json.loads(path.read_text())
    edit(blob["data"])
    path.write_text(json.dumps(blob, indent=1))


def _edit_rows(path: Path, edit) -> None:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    edit(rows)
    _csv(path, rows[0], rows[1:])


def _break(root: Path, kind: str) -> None:
    """One known problem, wherever the layout keeps the file it concerns."""
    ac, cl, bbc = detect(root, "audiocaps"), detect(root, "clotho"), detect(root, "bbc")
    rows_format = ac.format == "audiocaps-rows"
    train = ac.metadata["train"]
    if kind == "missing-column":
        if not rows_format:
            raise ValueError("--break missing-column: needs AudioCaps in a CSV layout "
                             "(original or aac-datasets)")
        lines = train.read_text().splitlines()
        train.write_text("\n".join([lines[0].replace("caption", "text"), *lines[1:]]) + "\n")
    elif kind == "missing-file":
        next(cl.audio["test"].glob("*take 2*")).unlink()
    elif kind == "corrupt-file":
        (bbc.audio["train"] / "07066105.flac").write_bytes(b"fLaC" + bytes(200))
    elif kind == "empty-caption":  # AudioCaps train clip 2 (row 4 of the CSV)
        if rows_format:
            _edit_rows(train, lambda rows: rows[3].__setitem__(3, ""))
        else:
            _edit_json(train, lambda items: items[2].__setitem__("caption", ""))
            _edit_rows(train.parent.parent / "csv_files" / "train.csv",
                       lambda rows: rows[3].__setitem__(1, ""))
    elif kind == "duplicate-id":  # AudioCaps train's first row, again
        if rows_format:
            _edit_rows(train, lambda rows: rows.append(rows[1]))
        else:
            _edit_json(train, lambda items: items.append(items[0]))
            _edit_rows(train.parent.parent / "csv_files" / "train.csv",
                       lambda rows: rows.append(rows[1]))
    elif kind == "empty-audio":  # a valid WAV header with no samples
        (bbc.audio["train"] / "07066106.flac").unlink()
        sf.write(str(bbc.audio["train"] / "07066106.wav"), np.zeros(0, dtype=np.float32),
                 48_000)
    elif kind == "outside-path":  # a real audio file outside the root, named through '..'
        if cl.metadata["test"].suffix != ".csv":
            raise ValueError("--break outside-path: needs Clotho's file names in a CSV")
        first = next(cl.audio["test"].glob("*take 1*"))
        outside = root.parent / "outside.wav"
        outside.write_bytes(first.read_bytes())
        name = os.path.relpath(outside, cl.audio["test"])
        _edit_rows(cl.metadata["test"], lambda rows: rows[2].__setitem__(0, name))
    else:
        raise ValueError(f"--break {kind!r}: expected one of {BREAKS}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("--layout", default="original",
                   help=f"{', '.join(LAYOUTS)}, or DATASET=LAYOUT,... (default original)")
    p.add_argument("--hf-cache", type=Path,
                   help="aac-datasets: where WavCaps' Hugging Face snapshot goes (default "
                        "ROOT/.hf-cache)")
    p.add_argument("--break", dest="breaks", action="append", default=[], choices=BREAKS)
    a = p.parse_args()
    try:
        print(write_fixture(a.root, layout=a.layout, breaks=tuple(a.breaks),
                            hf_cache=a.hf_cache))
    except ValueError as err:
        p.error(str(err))


if __name__ == "__main__":
    main()
