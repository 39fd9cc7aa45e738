"""The TAIL data sets' metadata, read in the layout each was found in (layouts.py), and the
records they make: clips, splits, problems. Every problem is recorded with the file and
row it comes from, and the clip it concerns; nothing is dropped here (docs/datasets.md).

A clip's id does not depend on the layout: an AudioCaps clip is its YouTube id (one
segment per video), a Clotho clip its file name, a WavCaps clip its `id`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import string
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tail_bench.errors import ConfigError, DataError
from tail_bench.streams.audio import header_problem
from tail_bench.streams.tail.layouts import SPLITS, Found

AUDIO_EXTS = ("", ".wav", ".flac", ".ogg")
AUDIOCAPS_COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
CAPTIONS = tuple(f"caption_{i}" for i in range(1, 6))

KINDS = ("missing audio", "unreadable audio", "empty audio", "empty caption", "duplicate id",
         "bad row", "path outside data root")


@dataclass
class Problem:
    dataset: str
    split: str
    kind: str  # one of KINDS
    file: str
    row: int | None  # 1-based line of a CSV (header = 1) or index in a JSON data list
    item: str
    detail: str = ""
    clip: str = ""  # the clip's id, the same in every layout ("" for a row with no clip)

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
    row_ids: dict[str, tuple[int, Clip]] = field(default_factory=dict)  # AudioCaps' own ids

    def problem(self, clip: Clip | None, kind: str, file: str, row: int | None, item: str,
                detail: str = "") -> None:
        self.problems.append(Problem(self.dataset, self.split, kind, file, row, item, detail,
                                     clip.clip_id if clip is not None else ""))
        if clip is not None:
            clip.bad = True


def check_patterns(patterns: tuple[str, ...]) -> None:
    """--audiocaps-pattern: only the fields {youtube_id} and {start_time}."""
    for p in patterns:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(p) if f is not None]
        except ValueError as err:
            raise ConfigError(f"--audiocaps-pattern {p!r}: {err}; expected a file stem "
                              "with {youtube_id} and optionally {start_time}") from err
        bad = [f for f in fields if f not in ("youtube_id", "start_time")]
        if bad or "youtube_id" not in fields:
            raise ConfigError(f"--audiocaps-pattern {p!r}: "
                              + (f"unknown field {{{bad[0]}}}" if bad else "no {youtube_id}")
                              + "; expected a file stem with {youtube_id} and optionally "
                                "{start_time}, e.g. Y{youtube_id}")


def outside(folder: Path, name: str) -> bool:
    """A metadata name that leaves its folder (absolute, or through '..'): never read."""
    base = os.path.normpath(folder)
    path = os.path.normpath(os.path.join(base, name))
    return os.path.isabs(name) or os.path.commonpath([base, path]) != base


class Folder:
    """One audio folder, listed once: looking 200,000 names up costs no file-system call
    each, and a link is resolved and kept inside the data set's folder."""

    def __init__(self, path: Path, base: Path) -> None:
        self.path, self.base = path, Path(os.path.realpath(base))
        with os.scandir(path) as it:
            self.entries = {e.name: e for e in it}

    def locate(self, split: Split, clip: Clip, stems: list[str], item: str) -> bool:
        """Resolve `clip.audio` among `stems` (+ AUDIO_EXTS); False when a problem was
        recorded (a name leaving the folder, a link leaving the data set, none found)."""
        leaving = [s for s in stems if outside(self.path, s)]
        if leaving:
            split.problem(clip, "path outside data root", clip.file, clip.row, item,
                          f"{leaving[0]!r} resolves outside {self.path}")
            return False
        for stem in stems:
            for ext in AUDIO_EXTS:
                entry = self.entries.get(stem + ext)
                if entry is not None and (entry.is_file() or entry.is_symlink()):
                    return self._take(split, clip, entry, item)
        split.problem(clip, "missing audio", clip.file, clip.row, item,
                      f"looked for {', '.join(stems)} (+ .wav/.flac/.ogg) in {self.path}")
        return False

    def _take(self, split: Split, clip: Clip, entry: os.DirEntry, item: str) -> bool:
        path = Path(entry.path)
        if entry.is_symlink():
            target = os.path.realpath(path)
            if not os.path.isfile(target):
                split.problem(clip, "missing audio", clip.file, clip.row, item,
                              f"{path} is a link to {target}, which is not a file")
                return False
            if os.path.commonpath([self.base, target]) != str(self.base):
                split.problem(clip, "path outside data root", clip.file, clip.row, item,
                              f"{path} links to {target}, outside {self.base}")
                return False
        clip.audio = path
        return True


def _csv_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line, fields)]) of a CSV; a CSV the csv module cannot parse is named with
    its line."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            try:
                header = next(reader, [])
                rows = [(reader.line_num, r) for r in reader if r]
            except csv.Error as err:
                raise DataError(f"{path}, row {reader.line_num}: not readable CSV ({err}); "
                                "expected the data set's CSV as distributed (an unclosed "
                                "quote makes the rest of the file one field)") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); expected "
                        "the data set's CSV as distributed") from err
    return [h.strip() for h in header], rows


def _fields(split: Split, path: Path, header: list[str], line: int, row: list[str]
            ) -> dict[str, str] | None:
    """A row as {column: value}, or None (a problem) when it has the wrong number of
    fields: a caption with an unquoted comma would otherwise be cut short."""
    if len(row) == len(header):
        return dict(zip(header, row, strict=True))
    split.problem(None, "bad row", str(path), line, row[0] if row else "",
                  f"{len(row)} fields, expected {len(header)} ({','.join(header)}); quote "
                  "captions that contain commas")
    return None


def _need(path: Path, header: list[str], columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected columns "
                        f"{','.join(columns)}, found {header}")


def _empty_captions(split: Split, clip: Clip, item: str) -> None:
    for i, c in enumerate(clip.captions):
        if not c:
            split.problem(clip, "empty caption", clip.file, clip.row, item,
                          f"caption {i + 1}" if len(clip.captions) > 1 else "")


def read_audiocaps_rows(found: Found, split: str) -> Split:
    """AudioCaps' own CSV: one row per caption; a clip's rows share its YouTube id."""
    path, folder = found.metadata[split], Folder(found.audio[split], found.base)
    out, clips, starts, ids = Split("audiocaps", split), {}, {}, Counter()
    header, rows = _csv_rows(path)
    _need(path, header, AUDIOCAPS_COLUMNS)
    for line, raw in rows:
        row = _fields(out, path, header, line, raw)
        if row is None:
            continue
        yt, start = row["youtube_id"].strip(), row["start_time"].strip()
        clip = clips.get(yt)
        if clip is None:
            clip = clips[yt] = Clip(yt, None, [], str(path), line)
            out.clips.append(clip)
            stems = [p.format(youtube_id=yt, start_time=start) for p in found.stems]
            folder.locate(out, clip, stems, yt)
            starts[yt] = start
        elif starts[yt] != start:
            out.problem(clip, "duplicate id", str(path), line, yt,
                        f"start times {starts[yt]} and {start}")
        ids[row["audiocap_id"]] += 1
        out.row_ids.setdefault(row["audiocap_id"], (line, clip))
        if ids[row["audiocap_id"]] == 2:
            out.problem(clip, "duplicate id", str(path), line, row["audiocap_id"])
        caption = row["caption"].strip()
        if not caption:
            out.problem(clip, "empty caption", str(path), line, row["audiocap_id"])
        clip.captions.append(caption)
    return out


def youtube_id_of(file_name: str) -> str:
    """WavCaps names an AudioCaps clip `Y<YouTube id>.wav`, as AudioSet_SL's ids."""
    return Path(file_name).stem.removeprefix("Y")


def _clip_rows_csv(path: Path, out: Split) -> list[tuple[int, str, list[str]]]:
    header, rows = _csv_rows(path)
    columns = CAPTIONS if "caption_1" in header else ("caption",)
    _need(path, header, ("file_name", *columns))
    parsed = []
    for line, raw in rows:
        row = _fields(out, path, header, line, raw)
        if row is not None:
            parsed.append((line, row["file_name"], [row[c].strip() for c in columns]))
    return parsed


def _json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); expected "
                        "the data set's JSON as distributed") from err
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err


def _data_list(path: Path, blob: object, what: str) -> list:
    if not isinstance(blob, dict) or not isinstance(blob.get("data"), list):
        raise DataError(f"{path}: expected an object with a 'data' list of items ({what})")
    return blob["data"]


def _clip_rows_json(path: Path, out: Split) -> list[tuple[int, str, list[str]]]:
    """WavCaps retrieval JSON: {"num_captions_per_audio": 1 or 5, "data": [item]}; the file
    is the last part of `wav` (or `audio`, or `id`), captions `caption` or `caption_1..5`."""
    blob = _json(path)
    items = _data_list(path, blob, "WavCaps retrieval json_files format")
    n = blob.get("num_captions_per_audio")
    if n not in (1, 5):
        raise DataError(f"{path}: num_captions_per_audio {n!r}; expected 1 or 5")
    keys = ("caption",) if n == 1 else CAPTIONS
    parsed = []
    for i, item in enumerate(items):
        name = next((item[k] for k in ("wav", "audio", "id")
                     if isinstance(item, dict) and isinstance(item.get(k), str)), None)
        if name is None or not all(isinstance(item.get(k), str) for k in keys):
            out.problem(None, "bad row", str(path), i, repr(item)[:60],
                        f"expected a file name ('wav' or 'id') and {', '.join(keys)}")
            continue
        parsed.append((i, name.replace("\\", "/").rsplit("/", 1)[-1],
                       [item[k].strip() for k in keys]))
    return parsed


def read_clip_rows(found: Found, split: str) -> Split:
    """One row per clip: Clotho's CSVs, and WavCaps' AudioCaps/Clotho JSON or CSV."""
    path, folder = found.metadata[split], Folder(found.audio[split], found.base)
    out, seen = Split(found.dataset, split), Counter()
    rows = (_clip_rows_json if path.suffix == ".json" else _clip_rows_csv)(path, out)
    for line, name, captions in rows:
        cid = youtube_id_of(name) if found.dataset == "audiocaps" else name
        clip = Clip(cid, None, captions, str(path), line)
        out.clips.append(clip)
        seen[cid] += 1
        if seen[cid] == 2:
            out.problem(clip, "duplicate id", str(path), line, name)
        folder.locate(out, clip, [name], name)
        _empty_captions(out, clip, name)
    return out


def hash_split(clip_id: str) -> str:
    """CHOICE: a deterministic 80/10/10 split by SHA-1 of the id (WavCaps gives none)."""
    bucket = int(hashlib.sha1(clip_id.encode()).hexdigest()[:8], 16) % 100
    return "train" if bucket < 80 else "val" if bucket < 90 else "test"


def read_wavcaps_json(found: Found) -> dict[str, Split]:
    """WavCaps' json_files (BBC Sound Effects, AudioSet_SL): items `id` and `caption`; the
    `audio` field is a placeholder. Files are found by id, with and without the `.wav` that
    AudioSet_SL ids carry even where the audio is FLAC."""
    path = found.metadata["train"]
    items = _data_list(path, _json(path), "WavCaps json_files format")
    splits = {s: Split(found.dataset, s) for s in SPLITS}
    folder = Folder(found.audio["train"], found.base)
    seen: Counter = Counter()
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str | int) \
                or not isinstance(item.get("caption"), str):
            splits["train"].problem(None, "bad row", str(path), i, repr(item)[:60],
                                    "expected keys 'id' and 'caption' (a string)")
            continue
        cid = str(item["id"])
        part = splits[hash_split(cid)]
        clip = Clip(cid, None, [item["caption"].strip()], str(path), i)
        part.clips.append(clip)
        seen[cid] += 1
        if seen[cid] == 2:
            part.problem(clip, "duplicate id", str(path), i, cid)
        folder.locate(part, clip, list(dict.fromkeys([cid, cid.removesuffix(".wav")])), cid)
        _empty_captions(part, clip, cid)
    return splits


def read_dataset(found: Found) -> dict[str, Split]:
    """Every split of one data set, read in its layout's format."""
    if found.format == "wavcaps-json":
        return read_wavcaps_json(found)
    reader = read_audiocaps_rows if found.format == "audiocaps-rows" else read_clip_rows
    splits = {s: reader(found, s) for s in SPLITS}
    _ids_in_two_splits(splits)
    return splits


def _ids_in_two_splits(splits: dict[str, Split]) -> None:
    """An AudioCaps caption id (`audiocap_id`) is one caption of one split: one that comes
    again in a later split is a problem there, naming the first."""
    first: dict[str, str] = {}
    for name, split in splits.items():
        for cid, (line, clip) in split.row_ids.items():
            if cid in first:
                split.problem(clip, "duplicate id", clip.file, line, cid,
                              f"also in {first[cid]}")
            else:
                first[cid] = f"{split.dataset}/{name}"


def check_headers(splits: list[Split], *, threads: int = 8) -> None:
    """Open every located file's header (threads: the time is the file system's): catches
    unreadable, empty and lying files (audio.header_problem) without decoding them."""
    clips = [(s, c) for s in splits for c in s.clips if c.audio is not None]
    with ThreadPoolExecutor(max(1, threads)) as pool:
        results = list(pool.map(header_problem, [c.audio for _, c in clips], chunksize=64))
    for (split, clip), error in zip(clips, results, strict=True):
        if error is not None:
            kind, detail = error.split(": ", 1)
            split.problem(clip, kind, clip.file, clip.row, f"{clip.clip_id} -> {clip.audio}",
                          detail)
