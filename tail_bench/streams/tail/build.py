"""The TAIL stream from the records: layouts detected, overlap removed, every file checked
(from the decoded-audio cache when it is fresh, else by its header), the problem policy
applied, each split a PairSet of audio files read from the cache where there is one."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from tail_bench.errors import ConfigError, DataError
from tail_bench.storage import cache_root
from tail_bench.streams.audio import AudioFiles
from tail_bench.streams.cache import (
    DecodedCache,
    built_settings,
    cache_for,
    describe_settings,
)
from tail_bench.streams.pairs import PairSet
from tail_bench.streams.stream import Stream
from tail_bench.streams.tail.layouts import DATASETS, SPLITS, Found, detect_all
from tail_bench.streams.tail.records import (
    Clip,
    Problem,
    Split,
    check_headers,
    check_patterns,
    read_dataset,
)


def youtube_id(audioset_id: str) -> str:
    return audioset_id.removesuffix(".wav").removeprefix("Y")


def source_id(dataset: str, clip: Clip) -> str:
    """What identifies the recording: AudioCaps and AudioSet_SL are both cut from YouTube
    videos of AudioSet; a Clotho or BBC recording is its file."""
    if dataset == "audiocaps":
        return f"youtube:{clip.clip_id}"
    if dataset == "audioset":
        return f"youtube:{youtube_id(clip.clip_id)}"
    return f"{dataset}:{clip.clip_id}"


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


@dataclass
class Records:
    """The four data sets as read: where each was found, its splits, and what was done."""

    root: Path
    layouts: dict[str, Found]
    data: dict[str, dict[str, Split]]
    notes: dict

    def splits(self) -> list[Split]:
        return [s for splits in self.data.values() for s in splits.values()]

    def problems(self) -> list[Problem]:
        return [p for s in self.splits() for p in s.problems]


def read_all(root: Path, *, patterns: tuple[str, ...] = ()) -> Records:
    """Every split of the four data sets, each in its own layout, overlap removed."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--data-root {root}: not a directory")
    check_patterns(patterns)
    layouts = detect_all(root, audiocaps_patterns=patterns)
    data = {d: read_dataset(layouts[d]) for d in DATASETS}
    notes = {"layouts": {d: f.layout for d, f in layouts.items()},
             "overlap_removed": remove_overlap(data)}
    return Records(root, layouts, data, notes)


def default_cache_dir(root: Path) -> Path:
    key = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:12]
    return cache_root() / "features" / key


def split_cache(root: Path, split: Split, sample_rate: int, seconds: float) -> DecodedCache:
    return cache_for(default_cache_dir(root), split.dataset, split.split, sample_rate, seconds)


def check_cache_settings(root: Path, *, sample_rate: int, seconds: float) -> None:
    """A decoded-audio cache built for other front-end settings is not this run's: refuse
    before any work rather than decode 200,000 clips on the fly."""
    have = built_settings(default_cache_dir(root))
    if have and (sample_rate, seconds) not in have:
        built = " and ".join(describe_settings(*h) for h in have)
        raise DataError(f"--data-root {root}: its decoded-audio cache was built for {built}, "
                        f"but the backbone reads {describe_settings(sample_rate, seconds)}; "
                        f"build it with `tail-bench prepare --data-root {root} --cache "
                        "--backbone BACKBONE`")


def check_audio(records: Records, *, sample_rate: int, seconds: float, threads: int = 8
                ) -> dict[tuple[str, str], tuple[Path, dict[str, int]]]:
    """Check every located file: a split whose cache is fresh for all of them takes the
    cache's decoding failures as problems; the others get every header opened. Returns
    the fresh caches: (split key) -> (data file, {file: row})."""
    fresh, unchecked = {}, []
    for s in records.splits():
        located = [c for c in s.clips if c.audio is not None]
        hit = split_cache(records.root, s, sample_rate, seconds).lookup(
            [c.audio for c in located])
        if hit is None:
            unchecked.append(s)
            continue
        data, rows, failed = hit
        for c in located:
            if str(c.audio) in failed:
                s.problem(c, "unreadable audio", c.file, c.row, f"{c.clip_id} -> {c.audio}",
                          failed[str(c.audio)])
        fresh[(s.dataset, s.split)] = (data, rows)
    check_headers(unchecked, threads=threads)
    return fresh


def to_pairset(split: Split, *, sample_rate: int, seconds: float,
               cached: tuple[Path, dict[str, int]] | None) -> PairSet:
    clips = [c for c in split.clips if not c.bad]
    captions, owners = [], []
    for i, c in enumerate(clips):
        captions += c.captions
        owners += [i] * len(c.captions)
    rows = (cached[0], [cached[1][str(c.audio)] for c in clips]) if cached else None
    source = AudioFiles([c.audio for c in clips], sample_rate=sample_rate, seconds=seconds,
                        cached=rows)
    return PairSet(dataset=split.dataset, split=split.split, clips=source,
                   clip_ids=[c.clip_id for c in clips], captions=captions,
                   caption_clip=owners, sample_rate=sample_rate)


def check_policy(policy: str) -> None:
    if policy not in ("fail", "skip"):
        raise ConfigError(f"--on-error {policy!r}: expected fail or skip")


def fail_on(problems: list[Problem]) -> None:
    if problems:
        shown = "\n  ".join(map(str, problems[:25]))
        more = f"\n  … and {len(problems) - 25} more" if len(problems) > 25 else ""
        raise DataError(f"{len(problems)} problem(s) in the data (use --on-error skip to "
                        f"drop and record them, or fix them):\n  {shown}{more}")


def build_tail(root: Path, *, sample_rate: int, clip_seconds: float, policy: str = "fail",
               patterns: tuple[str, ...] = ()) -> Stream:
    check_policy(policy)
    check_cache_settings(root, sample_rate=sample_rate, seconds=clip_seconds)
    records = read_all(root, patterns=patterns)
    fresh = check_audio(records, sample_rate=sample_rate, seconds=clip_seconds)
    problems = records.problems()
    if policy == "fail":
        fail_on(problems)
    notes = {**records.notes, "skipped": [asdict(p) for p in problems]}
    decoded = [f"{s.dataset}/{s.split}" for s in records.splits()
               if (s.dataset, s.split) not in fresh]
    if decoded:
        print(f"tail-bench: no fresh decoded-audio cache at "
              f"{describe_settings(sample_rate, clip_seconds)} for {', '.join(decoded)}: "
              f"decoding those clips every epoch (`tail-bench prepare --data-root {root} "
              "--cache --backbone BACKBONE` builds it once)", file=sys.stderr)
    parts = {s: [to_pairset(records.data[d][s], sample_rate=sample_rate, seconds=clip_seconds,
                            cached=fresh.get((d, s))) for d in records.data] for s in SPLITS}
    empty = [f"{p.dataset}/{p.split}" for ps in parts.values() for p in ps if not p.clip_ids]
    if empty:
        raise DataError(f"no usable clips in {', '.join(empty)} under {root}")
    return Stream("tail", parts["train"], parts["val"], parts["test"], notes)
