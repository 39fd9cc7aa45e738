"""`tail-bench prepare`: validate a data root, report per split, optionally decode every
clip into the cache."""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from tail_bench.storage import atomic_write_json, atomic_write_text
from tail_bench.streams.tail.build import (
    check_policy,
    default_cache_dir,
    problems_of,
    read_checked,
    splits_of,
    to_pairset,
)
from tail_bench.streams.tail.records import AUDIOCAPS_PATTERNS, KINDS


def prepare(root: Path, *, policy: str = "fail", out: Path | None = None, cache: bool = False,
            sample_rate: int = 16_000, clip_seconds: float = 2.0,
            patterns=AUDIOCAPS_PATTERNS, progress: bool = True) -> int:
    """Validate the layout, report per split, optionally decode everything into the cache.

    Returns the exit code: 1 when there are problems and the policy is `fail`.
    """




    check_policy(policy)
    data, notes = read_checked(root, patterns=patterns)
    cache_dir = default_cache_dir(root)
    for s in splits_of(data) if cache else []:
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
    problems = problems_of(data)
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
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(asdict(problems[0])))
        writer.writeheader()
        writer.writerows(asdict(p) for p in problems)
        atomic_write_text(out / "skipped.csv", buf.getvalue())
    print(f"report: {out / 'prepare-report.json'}")
    return 1 if problems and policy == "fail" else 0
