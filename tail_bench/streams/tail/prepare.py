"""`tail-bench prepare`: find each data set's layout, validate the data root, report per
split, and optionally decode every clip into the cache a run at the same front-end
settings reads (decoding runs in parallel processes and resumes after a kill)."""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from tail_bench.storage import atomic_write_json, atomic_write_text
from tail_bench.streams import cache as audio_cache
from tail_bench.streams.tail.build import (
    check_policy,
    default_cache_dir,
    read_all,
    split_cache,
)
from tail_bench.streams.tail.records import KINDS, check_headers


def _decode(records, *, sample_rate: int, seconds: float, workers: int,
            progress: bool) -> dict:
    """Build every split's cache; files that fail to decode become problems."""
    jobs = []
    for s in records.splits():
        files = [c.audio for c in s.clips if c.audio is not None]
        jobs.append((split_cache(records.root, s, sample_rate, seconds), files))
    start = time.perf_counter()
    failed = audio_cache.build(jobs, workers=workers, progress=progress)
    seconds_taken = time.perf_counter() - start
    for s in records.splits():
        why = failed[f"{s.dataset}-{s.split}"]
        for c in s.clips:
            if c.audio is not None and str(c.audio) in why:
                s.problem(c, "unreadable audio", c.file, c.row, f"{c.clip_id} -> {c.audio}",
                          why[str(c.audio)])
    folder = jobs[0][0].folder
    size = sum(f.stat().st_blocks * 512 for f in folder.glob("*.npy"))
    clips = sum(len(f) for _, f in jobs)
    return {"folder": str(folder), "clips": clips, "seconds": round(seconds_taken, 3),
            "workers": workers, "bytes_on_disk": size}


def prepare(root: Path, *, sample_rate: int, clip_seconds: float, policy: str = "fail",
            out: Path | None = None, cache: bool = False, workers: int = 1,
            patterns: tuple[str, ...] = (), progress: bool = True) -> int:
    """Validate the layouts and files, report per split, optionally decode everything into
    the cache for (sample_rate, clip_seconds). Returns the exit code: 1 when there are
    problems and the policy is `fail`."""
    check_policy(policy)
    records = read_all(root, patterns=patterns)
    print("\n".join(records.layouts[d].describe(Path(root)) for d in records.layouts))
    setting = audio_cache.describe_settings(sample_rate, clip_seconds)
    built = None
    if cache:
        built = _decode(records, sample_rate=sample_rate, seconds=clip_seconds,
                        workers=workers, progress=progress)
        rate = built["clips"] / max(built["seconds"], 1e-9)
        print(f"decoded {built['clips']} clips at {setting} in {built['seconds']:.1f} s "
              f"({rate:.1f} clips/s, {workers} worker{'s' * (workers != 1)}; files already "
              f"cached are not decoded again); cache {built['folder']} "
              f"({built['bytes_on_disk'] / 2**30:.2f} GiB)")
    else:
        check_headers(records.splits(), threads=max(8, workers))
    problems = records.problems()
    report = {"data_root": str(root), "policy": policy, "notes": records.notes,
              "audio": {"sample_rate": sample_rate, "clip_seconds": clip_seconds},
              "cache": built, "cache_root": str(default_cache_dir(root)), "splits": {}}
    lines = [f"{'data set/split':<18} {'clips':>6} {'captions':>8} " +
             " ".join(f"{k:>16}" for k in KINDS)]
    for d, splits in records.data.items():
        for name, s in splits.items():
            counts = Counter(p.kind for p in s.problems)
            row = {"clips": len(s.clips), "captions": sum(len(c.captions) for c in s.clips),
                   "usable_clips": sum(not c.bad for c in s.clips),
                   **{k.replace(" ", "_"): counts[k] for k in KINDS}}
            report["splits"][f"{d}/{name}"] = row
            lines.append(f"{d + '/' + name:<18} {row['clips']:>6} {row['captions']:>8} " +
                         " ".join(f"{counts[k]:>16}" for k in KINDS))
    removed = records.notes["overlap_removed"]
    lines += ["Overlap removed (a recording in a training and an evaluation split):"] + [
        f"  {r['removed_from']}: {r['clips']} clip(s) also in {r['because_in']}"
        for r in removed] + ([] if removed else ["  none"])
    lines += [str(p) for p in problems]
    print("\n".join(lines))
    out = Path(out or Path("results/prepare") / time.strftime("%Y%m%d-%H%M%S"))
    report["problems"] = [asdict(p) for p in problems]
    atomic_write_json(out / "prepare-report.json", report)
    if policy == "skip" and problems:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(asdict(problems[0])))
        writer.writeheader()
        writer.writerows(asdict(p) for p in problems)
        atomic_write_text(out / "skipped.csv", buf.getvalue())
    print(f"report: {out / 'prepare-report.json'}")
    return 1 if problems and policy == "fail" else 0
