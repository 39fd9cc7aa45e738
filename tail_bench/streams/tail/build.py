"""The TAIL stream from the records: overlap removed, the problem policy applied, each
split a PairSet of audio files (read from the decoded-audio cache when it is fresh)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

from tail_bench.errors import ConfigError, DataError
from tail_bench.storage import cache_root
from tail_bench.streams.audio import AudioFiles, cache_path
from tail_bench.streams.pairs import PairSet
from tail_bench.streams.stream import Stream
from tail_bench.streams.tail.records import (
    AUDIOCAPS_PATTERNS,
    DATASETS,
    SPLITS,
    Clip,
    Problem,
    Split,
    check_headers,
    read_audiocaps,
    read_clotho,
    read_wavcaps,
)


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
    key = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:12]
    return cache_root() / "features" / key


def check_policy(policy: str) -> None:
    if policy not in ("fail", "skip"):
        raise ConfigError(f"--on-error {policy!r}: expected fail or skip")


def splits_of(data: dict[str, dict[str, Split]]) -> list[Split]:
    return [s for splits in data.values() for s in splits.values()]


def problems_of(data: dict[str, dict[str, Split]]) -> list[Problem]:
    return [p for s in splits_of(data) for p in s.problems]


def read_checked(root: Path, *, patterns=AUDIOCAPS_PATTERNS
                 ) -> tuple[dict[str, dict[str, Split]], dict]:
    """`read_all`, then every audio file's header opened (`check_headers`)."""
    data, notes = read_all(root, patterns=patterns)
    for s in splits_of(data):
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
    check_policy(policy)
    data, notes = read_checked(root, patterns=patterns)
    problems = problems_of(data)
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
