"""Write a small TAIL data root in the real distribution formats, for trying the loaders.

    python -m tail_bench.streams.fixture DIR [--break KIND ...]

Audio comes from the tail-synth generator, so a run on it learns something. Files use
the formats users meet: AudioCaps `Y<id>.wav` at 32 kHz, Clotho 44.1 kHz stereo WAV with
spaces in names, BBC 48 kHz FLAC, AudioSet_SL FLAC with ids ending in `.wav`, and a few
AudioSet clips cut from AudioCaps videos: two from test videos (they leave AudioSet's
train split) and two from train videos that land in AudioSet's val/test (they leave those).
`--break` adds one known problem: missing-column, missing-file, corrupt-file,
empty-caption, duplicate-id, empty-audio, outside-path.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from tail_bench.streams import synth
from tail_bench.streams.sounds import SAMPLE_RATE
from tail_bench.streams.tail import WAVCAPS

BREAKS = ("missing-column", "missing-file", "corrupt-file", "empty-caption", "duplicate-id",
          "empty-audio", "outside-path")


def _write(path: Path, wave: np.ndarray, rate: int, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.from_numpy(wave)
    if rate != SAMPLE_RATE:
        x = torchaudio.functional.resample(x, SAMPLE_RATE, rate)
    data = x.numpy()
    if channels == 2:
        data = np.stack([data, 0.5 * data], axis=1)
    sf.write(str(path), data, rate)


def _ytid(i: int) -> str:
    return ["-", "_", "a", "Z"][i % 4] + f"x{i:04d}_q-{i % 7}"


def _pairs(domain: str, split: str, n: int, seed: int):
    d = next(x for x in synth.DOMAINS if x.key == domain)
    return synth.generate(d, split, n, seconds=2.0, seed=seed)


def write_fixture(root: Path, *, sizes=(12, 4, 6), wavcaps_items: int = 60, seed: int = 0,
                  breaks: tuple[str, ...] = ()) -> Path:
    root = Path(root)
    test_ids = []
    for split, n in zip(("train", "val", "test"), sizes, strict=True):
        p = _pairs("audiocaps", split, n, seed)
        rows = []
        for i in range(n):
            yt = _ytid(1000 * ("train", "val", "test").index(split) + i)
            if split == "test":
                test_ids.append(yt)
            _write(root / "audiocaps" / "audio" / split / f"Y{yt}.wav", p.clips[i], 32_000)
            caps = [c for c, o in zip(p.captions, p.caption_clip, strict=True) if o == i]
            rows += [[f"{split[:2]}{i}{k}", yt, "30", c] for k, c in enumerate(caps)]
        with (root / "audiocaps" / f"{split}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["audiocap_id", "youtube_id", "start_time", "caption"])
            w.writerows(rows)
    for split, name, n in zip(("train", "val", "test"),
                              ("development", "validation", "evaluation"), sizes, strict=True):
        p = _pairs("clotho", split, n, seed)
        (root / "clotho").mkdir(parents=True, exist_ok=True)
        with (root / "clotho").joinpath(f"clotho_captions_{name}.csv").open(
                "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file_name", *(f"caption_{k}" for k in range(1, 6))])
            for i in range(n):
                fname = f"Field rec, take {i} (stereo).wav"
                _write(root / "clotho" / name / fname, p.clips[i], 44_100, channels=2)
                w.writerow([fname, *[c for c, o in zip(p.captions, p.caption_clip,
                                                       strict=True) if o == i]])
    for key, folder, rate in (("bbc", "BBC_Sound_Effects", 48_000),
                              ("audioset", "AudioSet_SL", 16_000)):
        p = _pairs(key, "train", wavcaps_items, seed)
        items = []
        for i in range(wavcaps_items):
            if key == "bbc":
                cid = f"{7066104 + i:08d}"
                file_stem = cid
                items.append({"id": cid, "caption": p.captions[i], "description": p.captions[i],
                              "category": "['Machines']", "duration": 2.0,
                              "audio": "wav_path", "download_link": "placeholder"})
            else:
                # two from AudioCaps test videos, two from train videos (AudioCaps train
                # clips 0 and 2, whose AudioSet ids hash to test and val), then new videos
                yt = test_ids[i] if i < 2 else _ytid(2 * (i - 2)) if i < 4 else _ytid(5000 + i)
                cid = f"Y{yt}.wav"
                file_stem = f"Y{yt}"
                items.append({"id": cid, "caption": p.captions[i], "audio": "wav_path",
                              "duration": 2.0})
            _write(root / "wavcaps" / "audio" / folder / f"{file_stem}.flac", p.clips[i], rate)
        path = root / "wavcaps" / "json_files" / WAVCAPS[key]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"num_captions_per_audio": 1, "data": items}))
    for kind in breaks:
        _break(root, kind)
    return root


def _break(root: Path, kind: str) -> None:
    csv_path = root / "audiocaps" / "train.csv"
    lines = csv_path.read_text().splitlines()
    if kind == "missing-column":
        csv_path.write_text("\n".join([lines[0].replace("caption", "text"), *lines[1:]]) + "\n")
    elif kind == "missing-file":
        next((root / "clotho" / "evaluation").glob("*take 2*")).unlink()
    elif kind == "corrupt-file":
        (root / "wavcaps" / "audio" / "BBC_Sound_Effects" / "07066105.flac").write_bytes(
            b"fLaC" + bytes(200))
    elif kind == "empty-caption":
        cells = lines[3].split(",")
        csv_path.write_text("\n".join([*lines[:3], ",".join([*cells[:3], '""']),
                                       *lines[4:]]) + "\n")
    elif kind == "duplicate-id":
        csv_path.write_text("\n".join([*lines, lines[1]]) + "\n")
    elif kind == "empty-audio":  # a valid WAV header with no samples
        folder = root / "wavcaps" / "audio" / "BBC_Sound_Effects"
        (folder / "07066106.flac").unlink()
        sf.write(str(folder / "07066106.wav"), np.zeros(0, dtype=np.float32), 48_000)
    elif kind == "outside-path":  # a real audio file outside the root, named through '..'
        meta = root / "clotho" / "clotho_captions_evaluation.csv"
        first = next((root / "clotho" / "evaluation").glob("*take 1*"))
        outside = root.parent / "outside.wav"
        outside.write_bytes(first.read_bytes())
        rows = meta.read_text().splitlines()
        rows[2] = rows[2].replace(first.name, "../../../outside.wav")
        meta.write_text("\n".join(rows) + "\n")
    else:
        raise ValueError(f"--break {kind!r}: expected one of {BREAKS}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("--break", dest="breaks", action="append", default=[], choices=BREAKS)
    a = p.parse_args()
    print(write_fixture(a.root, breaks=tuple(a.breaks)))


if __name__ == "__main__":
    main()
