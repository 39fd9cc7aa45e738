"""The real TAIL stream: AudioCaps -> Clotho -> BBC Sound Effects -> AudioSet (WavCaps).

Each loader reads its data set's metadata as distributed (docs/datasets.md gives the
layout under --data-root). Every problem is recorded with the file and row it comes from;
the policy decides: `fail` stops with the full list, `skip` drops those items and records
them. Nothing is ever dropped silently.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import soundfile as sf

from tail_bench.streams.audio import AudioFiles, cache_path
from tail_bench.streams.pairs import PairSet
from tail_bench.streams.stream import Stream

AUDIO_EXTS = ("", ".wav", ".flac", ".ogg")
AUDIOCAPS_PATTERNS = ("Y{youtube_id}", "{youtube_id}", "{youtube_id}_{start_time}")
AUDIOCAPS_COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
CLOTHO_COLUMNS = ("file_name", *(f"caption_{i}" for i in range(1, 6)))
CLOTHO_SPLITS = {"train": "development", "val": "validation", "test": "evaluation"}
WAVCAPS = {"bbc": "BBC_Sound_Effects/bbc_final.json", "audioset": "AudioSet_SL/as_final.json"}
WAVCAPS_AUDIO = {"bbc": "BBC_Sound_Effects", "audioset": "AudioSet_SL"}
SPLITS = ("train", "val", "test")
DATASETS = ("audiocaps", "clotho", "bbc", "audioset")  # the stream's order


class DataError(ValueError):
    """Bad data under --data-root; the message lists each problem with file and row."""


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
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected "
                            f"columns {','.join(required)}, found {reader.fieldnames}")
        return [(i + 2, row) for i, row in enumerate(reader)]


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


def youtube_id(audioset_id: str) -> str:
    return audioset_id.removesuffix(".wav").removeprefix("Y")


def source_id(dataset: str, clip: Clip) -> str:
    """What identifies the recording: AudioCaps and AudioSet_SL are both cut from YouTube
    videos of AudioSet; a Clotho or BBC recording is its file."""
    if dataset == "audiocaps":
        return f"youtube:{clip.clip_id.rsplit('_', 1)[0]}"
    if dataset == "audioset":
        return f"youtube:{youtube_id(clip.clip_id)}"
    return f"{dataset}:{clip.audio or clip.clip_id}"


OURS = ("bbc", "audioset")  # splits made by hash_split; the others' splits are published
EVAL = ("val", "test")


def remove_overlap(data: dict[str, dict[str, Split]]) -> list[dict]:
    """No recording may be in a training split and an evaluation split (of any data set).

    A clip of one of our own hash splits (BBC, AudioSet_SL) that shares its recording with
    a published training split (AudioCaps, Clotho) leaves our evaluation split; otherwise
    the clip leaves the training split, so published test sets stay whole. Returns every
    removal count as {removed_from, because_in, clips}.
    """
    removed: list[dict] = []

    def drop(d: str, s: str, keys: set[str], because: str) -> None:
        split = data[d][s]
        keep = [c for c in split.clips if source_id(d, c) not in keys]
        removed.append({"removed_from": f"{d}/{s}", "because_in": because,
                        "clips": len(split.clips) - len(keep)})
        split.clips = keep

    for d in OURS:
        for s in EVAL:
            for other in (o for o in data if o not in OURS):
                keys = {source_id(other, c) for c in data[other]["train"].clips}
                drop(d, s, keys, f"{other}/train")
    for d in data:
        for other in data:
            for s in EVAL:
                keys = {source_id(other, c) for c in data[other][s].clips}
                drop(d, "train", keys, f"{other}/{s}")
    return [r for r in removed if r["clips"]]


def read_all(root: Path, *, patterns=AUDIOCAPS_PATTERNS) -> tuple[dict[str, dict[str, Split]],
                                                                  dict]:
    """Every split of the four data sets, and the AudioCaps/AudioSet overlap removed."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--data-root {root}: not a directory")
    data = {"audiocaps": {s: read_audiocaps(root, s, patterns) for s in SPLITS},
            "clotho": {s: read_clotho(root, s) for s in SPLITS},
            "bbc": read_wavcaps(root, "bbc"), "audioset": read_wavcaps(root, "audioset")}
    assert tuple(data) == DATASETS
    return data, {"overlap_removed": remove_overlap(data)}


def to_pairset(split: Split, *, sample_rate: int, seconds: float,
               cache_dir: Path | None) -> PairSet:
    clips = [c for c in split.clips if not c.bad]
    captions, owners = [], []
    for i, c in enumerate(clips):
        captions += c.captions
        owners += [i] * len(c.captions)
    cache = (cache_path(cache_dir, split.dataset, split.split, sample_rate, seconds)
             if cache_dir else None)
    source = AudioFiles([c.audio for c in clips], sample_rate=sample_rate, seconds=seconds,
                        cache=cache)
    return PairSet(dataset=split.dataset, split=split.split, clips=source,
                   clip_ids=[c.clip_id for c in clips], captions=captions,
                   caption_clip=owners, sample_rate=sample_rate)


def default_cache_dir(root: Path) -> Path:
    from tail_bench.models.pretrain import cache_root

    key = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:12]
    return cache_root() / "features" / key


def _check_policy(policy: str) -> None:
    if policy not in ("fail", "skip"):
        raise ValueError(f"--on-error {policy!r}: expected fail or skip")


def _splits(data: dict[str, dict[str, Split]]) -> list[Split]:
    return [s for splits in data.values() for s in splits.values()]


def _problems(data: dict[str, dict[str, Split]]) -> list[Problem]:
    return [p for s in _splits(data) for p in s.problems]


def read_checked(root: Path, *, patterns=AUDIOCAPS_PATTERNS
                 ) -> tuple[dict[str, dict[str, Split]], dict]:
    """`read_all`, then every audio file's header opened (`check_headers`)."""
    data, notes = read_all(root, patterns=patterns)
    for s in _splits(data):
        check_headers(s)
    return data, notes


def _fail_on(problems: list[Problem]) -> None:
    if problems:
        shown = "\n  ".join(map(str, problems[:25]))
        more = f"\n  … and {len(problems) - 25} more" if len(problems) > 25 else ""
        raise DataError(f"{len(problems)} problem(s) in the data (use --on-error skip to "
                        f"drop and record them, or fix them):\n  {shown}{more}")


def build_tail(root: Path, *, sample_rate: int, clip_seconds: float, policy: str = "fail",
               patterns=AUDIOCAPS_PATTERNS) -> Stream:
    _check_policy(policy)
    data, notes = read_checked(root, patterns=patterns)
    problems = _problems(data)
    if policy == "fail":
        _fail_on(problems)
    notes["skipped"] = [asdict(p) for p in problems]
    cache = default_cache_dir(root)
    parts = {s: [to_pairset(data[d][s], sample_rate=sample_rate, seconds=clip_seconds,
                            cache_dir=cache) for d in data] for s in SPLITS}
    empty = [f"{p.dataset}/{p.split}" for ps in parts.values() for p in ps if not p.clip_ids]
    if empty:
        raise DataError(f"no usable clips in {', '.join(empty)} under {root}")
    return Stream("tail", parts["train"], parts["val"], parts["test"], notes)


KINDS = ("missing audio", "unreadable audio", "empty audio", "empty caption", "duplicate id",
         "bad item", "path outside data root")


def prepare(root: Path, *, policy: str = "fail", out: Path | None = None, cache: bool = False,
            sample_rate: int = 16_000, clip_seconds: float = 2.0,
            patterns=AUDIOCAPS_PATTERNS, progress: bool = True) -> int:
    """Validate the layout, report per split, optionally decode everything into the cache.

    Returns the exit code: 1 when there are problems and the policy is `fail`.
    """
    import time

    from tail_bench.reporting.io import atomic_write_json, atomic_write_text

    _check_policy(policy)
    data, notes = read_checked(root, patterns=patterns)
    cache_dir = default_cache_dir(root)
    for s in _splits(data) if cache else []:
        for attempt in range(2):  # a file that fails to decode is marked, then rebuilt
            ps = to_pairset(s, sample_rate=sample_rate, seconds=clip_seconds,
                            cache_dir=cache_dir)
            errors = ps.clips.build_cache(progress=progress, desc=f"decode {s.dataset}/{s.split}")
            if not errors or attempt:
                break
            failed = {e.path for e in errors}
            for c in s.clips:
                if c.audio in failed:
                    s.problem(c, "unreadable audio", c.file, c.row,
                              f"{c.clip_id} -> {c.audio}", "decoding failed")
    problems = _problems(data)
    report = {"data_root": str(root), "policy": policy, "notes": notes,
              "cache": str(cache_dir) if cache else None, "splits": {}}
    lines = [f"{'data set/split':<18} {'clips':>6} {'captions':>8} " +
             " ".join(f"{k:>16}" for k in KINDS)]
    for d, splits in data.items():
        for name, s in splits.items():
            counts = Counter(p.kind for p in s.problems)
            row = {"clips": len(s.clips), "captions": sum(len(c.captions) for c in s.clips),
                   "usable_clips": sum(not c.bad for c in s.clips),
                   **{k.replace(" ", "_"): counts[k] for k in KINDS}}
            report["splits"][f"{d}/{name}"] = row
            lines.append(f"{d + '/' + name:<18} {row['clips']:>6} {row['captions']:>8} " +
                         " ".join(f"{counts[k]:>16}" for k in KINDS))
    lines += ["Overlap removed (a recording in a training and an evaluation split):"] + [
        f"  {r['removed_from']}: {r['clips']} clip(s) also in {r['because_in']}"
        for r in notes["overlap_removed"]] + ([] if notes["overlap_removed"] else ["  none"])
    lines += [str(p) for p in problems]
    print("\n".join(lines))
    out = Path(out or Path("results/prepare") / time.strftime("%Y%m%d-%H%M%S"))
    report["problems"] = [asdict(p) for p in problems]
    atomic_write_json(out / "prepare-report.json", report)
    if policy == "skip" and problems:
        rows = ["dataset,split,kind,file,row,item,detail"] + [
            ",".join(json.dumps(str(v)) if k in ("file", "item", "detail") else str(v)
                     for k, v in asdict(p).items()) for p in problems]
        atomic_write_text(out / "skipped.csv", "\n".join(rows) + "\n")
    print(f"report: {out / 'prepare-report.json'}")
    return 1 if problems and policy == "fail" else 0
