"""The TAIL data sets' metadata as distributed: one reader per data set, and the records
they make (clips, splits, problems). Every problem is recorded with the file and row it
comes from; nothing is dropped here (docs/datasets.md)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from tail_bench.errors import DataError

AUDIO_EXTS = ("", ".wav", ".flac", ".ogg")
AUDIOCAPS_PATTERNS = ("Y{youtube_id}", "{youtube_id}", "{youtube_id}_{start_time}")
AUDIOCAPS_COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
CLOTHO_COLUMNS = ("file_name", *(f"caption_{i}" for i in range(1, 6)))
CLOTHO_SPLITS = {"train": "development", "val": "validation", "test": "evaluation"}
WAVCAPS = {"bbc": "BBC_Sound_Effects/bbc_final.json", "audioset": "AudioSet_SL/as_final.json"}
WAVCAPS_AUDIO = {"bbc": "BBC_Sound_Effects", "audioset": "AudioSet_SL"}
SPLITS = ("train", "val", "test")
DATASETS = ("audiocaps", "clotho", "bbc", "audioset")  # the stream's order


KINDS = ("missing audio", "unreadable audio", "empty audio", "empty caption", "duplicate id",
         "bad item", "path outside data root")



@dataclass
class Problem:
    dataset: str
    split: str
    kind: str  # one of KINDS
    file: str
    row: int | None  # 1-based line of a CSV (header = 1) or index in a JSON data list
    item: str
    detail: str = ""

    def __str__(self) -> str:
        where = f"{self.file}" + (f", row {self.row}" if self.row is not None else "")
        return f"{where}: {self.kind}: {self.item}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class Clip:
    clip_id: str
    audio: Path | None
    captions: list[str]
    file: str
    row: int
    bad: bool = False  # has a problem: dropped under the skip policy


@dataclass
class Split:
    dataset: str
    split: str
    clips: list[Clip] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def problem(self, clip: Clip | None, kind: str, file: str, row: int | None, item: str,
                detail: str = "") -> None:
        self.problems.append(Problem(self.dataset, self.split, kind, file, row, item, detail))
        if clip is not None:
            clip.bad = True


def _read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    if not path.exists():
        raise DataError(f"{path}: file not found (see docs/datasets.md for the layout)")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected "
                                f"columns {','.join(required)}, found {reader.fieldnames}")
            return [(i + 2, row) for i, row in enumerate(reader)]
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); expected "
                        "the data set's CSV as distributed") from err


def outside(folder: Path, name: str) -> bool:
    """A metadata name that leaves its folder (absolute, or through '..'): never read."""
    base = os.path.normpath(folder)
    path = os.path.normpath(os.path.join(base, name))
    return os.path.isabs(name) or os.path.commonpath([base, path]) != base


def _find(folder: Path, stems: list[str]) -> Path | None:
    for stem in stems:
        for ext in AUDIO_EXTS:
            p = folder / f"{stem}{ext}"
            if p.is_file():
                return p
    return None


def _locate(split: Split, clip: Clip, folder: Path, stems: list[str], file: str, row: int,
            item: str) -> bool:
    """Resolve `clip.audio` among `stems` in `folder`; names that leave the folder are a
    problem and are never looked up. False when a problem was recorded."""
    bad = [s for s in stems if outside(folder, s)]
    if bad:
        split.problem(clip, "path outside data root", file, row, item,
                      f"{bad[0]!r} resolves outside {folder}")
        return False
    clip.audio = _find(folder, stems)
    if clip.audio is None:
        split.problem(clip, "missing audio", file, row, item,
                      f"looked for {', '.join(stems)} (+ .wav/.flac/.ogg) in {folder}")
        return False
    return True


def read_audiocaps(root: Path, split: str, patterns=AUDIOCAPS_PATTERNS) -> Split:
    """One row per caption; rows of the same (youtube_id, start_time) are one clip."""
    path = root / "audiocaps" / f"{split}.csv"
    out, by_key, ids = Split("audiocaps", split), {}, Counter()
    folder = root / "audiocaps" / "audio" / split
    for row_no, row in _read_csv(path, AUDIOCAPS_COLUMNS):
        ids[row["audiocap_id"]] += 1
        key = (row["youtube_id"], row["start_time"])
        clip = by_key.get(key)
        if clip is None:
            stems = [p.format(youtube_id=row["youtube_id"], start_time=row["start_time"])
                     for p in patterns]
            clip = Clip(f"{key[0]}_{key[1]}", None, [], str(path), row_no)
            by_key[key] = clip
            out.clips.append(clip)
            _locate(out, clip, folder, stems, str(path), row_no, row["youtube_id"])
        if ids[row["audiocap_id"]] == 2:
            out.problem(clip, "duplicate id", str(path), row_no, row["audiocap_id"])
        if not row["caption"].strip():
            out.problem(clip, "empty caption", str(path), row_no, row["audiocap_id"])
        clip.captions.append(row["caption"].strip())
    return out


def read_clotho(root: Path, split: str) -> Split:
    name = CLOTHO_SPLITS[split]
    path = root / "clotho" / f"clotho_captions_{name}.csv"
    out, seen = Split("clotho", split), Counter()
    for row_no, row in _read_csv(path, CLOTHO_COLUMNS):
        fname = row["file_name"]
        clip = Clip(fname, None, [row[c].strip() for c in CLOTHO_COLUMNS[1:]], str(path),
                    row_no)
        seen[fname] += 1
        out.clips.append(clip)
        if seen[fname] == 2:
            out.problem(clip, "duplicate id", str(path), row_no, fname)
        folder = root / "clotho" / name
        if outside(folder, fname):
            out.problem(clip, "path outside data root", str(path), row_no, fname,
                        f"{fname!r} resolves outside {folder}")
        elif (folder / fname).is_file():
            clip.audio = folder / fname
        else:
            out.problem(clip, "missing audio", str(path), row_no, fname,
                        f"expected {folder / fname}")
        for c in CLOTHO_COLUMNS[1:]:
            if not row[c].strip():
                out.problem(clip, "empty caption", str(path), row_no, fname, c)
    return out


def hash_split(clip_id: str) -> str:
    """CHOICE: a deterministic 80/10/10 split by SHA-1 of the id (WavCaps gives none)."""
    bucket = int(hashlib.sha1(clip_id.encode()).hexdigest()[:8], 16) % 100
    return "train" if bucket < 80 else "val" if bucket < 90 else "test"


def read_wavcaps(root: Path, dataset: str) -> dict[str, Split]:
    path = root / "wavcaps" / "json_files" / WAVCAPS[dataset]
    if not path.exists():
        raise DataError(f"{path}: file not found (see docs/datasets.md for the layout)")
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(blob, dict) or not isinstance(blob.get("data"), list):
        raise DataError(f"{path}: expected an object with a 'data' list of items "
                        "(WavCaps json_files format)")
    splits = {s: Split(dataset, s) for s in SPLITS}
    folder = root / "wavcaps" / "audio" / WAVCAPS_AUDIO[dataset]
    seen: Counter = Counter()
    for i, item in enumerate(blob["data"]):
        if not isinstance(item, dict) or "id" not in item or "caption" not in item:
            splits["train"].problem(None, "bad item", str(path), i, repr(item)[:60],
                                    "expected keys 'id' and 'caption'")
            continue
        cid = str(item["id"])
        part = splits[hash_split(cid)]
        stems = [cid, cid.removesuffix(".wav")]  # AudioSet_SL ids carry '.wav' even for FLAC
        clip = Clip(cid, None, [str(item["caption"]).strip()], str(path), i)
        part.clips.append(clip)
        seen[cid] += 1
        if seen[cid] == 2:
            part.problem(clip, "duplicate id", str(path), i, cid)
        _locate(part, clip, folder, stems, str(path), i, cid)
        if not clip.captions[0]:
            part.problem(clip, "empty caption", str(path), i, cid)
    return splits


def check_headers(split: Split) -> None:
    """Open every file's header: catches unreadable files without decoding them."""
    for clip in split.clips:
        if clip.audio is None:
            continue
        try:
            frames = sf.info(str(clip.audio)).frames
        except (sf.LibsndfileError, RuntimeError, OSError) as err:
            split.problem(clip, "unreadable audio", clip.file, clip.row,
                          f"{clip.clip_id} -> {clip.audio}", str(err).splitlines()[0])
            continue
        if frames <= 0:
            split.problem(clip, "empty audio", clip.file, clip.row,
                          f"{clip.clip_id} -> {clip.audio}", "the file holds no samples")
