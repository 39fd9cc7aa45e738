"""The run directory: run.json is the source of truth; CSV and Markdown are derived.

run.json is rewritten atomically after every evaluated step, so a crash or Ctrl-C keeps
all finished steps; the derived files (tables, scores, plots) follow `--report-every`.
`tail-bench report DIR` rebuilds them from the run files alone. Beside run.json,
`clips/<method>-s<seed>.npz` holds each row's per-clip sums (what bootstrap intervals and
paired significance tests resample); tail_bench/record.py describes the run file.
An entry records its per-clip file's SHA-256 (`clips_sha256`): a file that is missing,
unreadable, or lacks one of the entry's steps is named, its rows lose their intervals of
means and paired tests (the tables say so), and `--resume` computes that entry again.
"""

from __future__ import annotations

import io
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from tail_bench.errors import RunFileError
from tail_bench.evaluation.bootstrap import ClipScores
from tail_bench.record import RUN_FILE, SCHEMA, Entry, Key, Row, Run, Status, load_run
from tail_bench.reporting import REPORT_EVERY
from tail_bench.reporting.plots import write_plots
from tail_bench.reporting.tables import render, scores_csv, sections
from tail_bench.storage import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256

ClipTable = dict[Key, dict[int, ClipScores]]


class RunStore:
    """run.json and the per-clip files of one run directory. With `write=False` (ranks
    other than 0 of a multi-process run) it keeps the same records and writes nothing."""

    def __init__(self, out: Path, header: dict[str, Any] | None, *, write: bool = True,
                 resume: bool = False, report_every: str) -> None:
        self.out, self.write, self.report_every = Path(out), write, report_every
        self.clips: ClipTable = {}
        if resume:
            self.data = load_run(self.out)
            self.clips = load_clips(self.out, self.data)
            self.data.header.setdefault("resumed", []).append(header)
            for e in self.data.entries:
                if e.clips_file and e.key not in self.clips:
                    self.restart(e, f"{e.clips_file}: missing or damaged")
            return
        if write and (self.out / RUN_FILE).exists():  # (rank 0 may have written it)
            raise RunFileError(f"{self.out / RUN_FILE} exists: pick a new --out or move it")
        self.data = Run({"schema": SCHEMA, **(header or {})})
        self.save()

    def find(self, method: str, seed: int, order_index: int = 0) -> Entry | None:
        return self.data.find(method, seed, order_index)

    def start(self, entry: Entry) -> Entry:
        self.data.entries.append(entry)
        self.clips[entry.key] = {}
        return entry

    def reopen(self, entry: Entry, last_step: int) -> None:
        """An unfinished method continues after `last_step` (its checkpoint): later rows
        go, they are computed again. run.json goes first: a kill before the per-clip file
        follows leaves that file holding every kept step (and more), which still reads."""
        entry.status, entry.failure = Status.RUNNING, None
        entry.rows = [r for r in entry.rows if r.step <= last_step]
        table = self.clips.setdefault(entry.key, {})
        for step in [s for s in table if s > last_step]:
            del table[step]
        data = _pack(table) if entry.clips_file else None
        if data is not None:
            entry.clips_sha256 = sha256(data)
        self.save()
        if self.write and data is not None:
            atomic_write_bytes(self.out / entry.clips_file, data)

    def restart(self, entry: Entry, reason: str) -> None:
        """An entry whose saved state (per-clip file, checkpoint) is missing or damaged is
        computed again from step 0; `restarts` in its record keeps the reason."""
        if self.write:
            what = f"{entry.method} seed {entry.seed}" + (
                f" order {entry.order_index + 1}" if entry.order_index else "")
            print(f"tail-bench: warning: {reason}; {what} starts again from step 0",
                  file=sys.stderr)
        entry.restarts = [*(entry.restarts or []),
                          {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "reason": reason}]
        entry.status, entry.rows = Status.INTERRUPTED, []
        entry.cost = entry.extra = entry.failure = entry.checkpoint = None
        entry.clips_file = entry.clips_sha256 = None
        self.clips[entry.key] = {}
        self.save()

    def add_row(self, entry: Entry, row: Row, clips: ClipScores) -> None:
        """The per-clip file goes first, then run.json with its checksum: a kill between
        the two leaves a file holding one step more, which still reads."""
        table = self.clips.setdefault(entry.key, {})
        data = _pack({**table, row.step: clips})
        if self.write:  # when it fails, the row is not recorded either
            atomic_write_bytes(self.out / entry.clips_name(), data)
        entry.rows.append(row)
        table[row.step] = clips
        entry.clips_file, entry.clips_sha256 = entry.clips_name(), sha256(data)
        self.save()

    def stop(self, entry: Entry, status: Status, failure: dict[str, Any]) -> None:
        """An unfinished method: diverged, failed or interrupted."""
        entry.status, entry.failure = status, failure
        self.save(ended="method")

    def finish(self, entry: Entry, *, cost: dict[str, Any], extra: dict[str, Any]) -> None:
        entry.status, entry.cost, entry.extra = Status.DONE, cost, extra
        self.save(ended="method")

    def close(self) -> None:
        """The run ends (or stops): the derived files of `--report-every run` (the other
        settings wrote them when the last step or method ended)."""
        if self.report_every == "run":
            self.save(ended="run")

    def save(self, ended: str = "step") -> None:
        """run.json always; then the derived files when `ended` (step, method or run) is
        what --report-every asks for, or comes after it."""
        if not self.write:
            return
        atomic_write_json(self.out / RUN_FILE, self.data.to_json())  # first: tables take s
        if REPORT_EVERY.index(ended) >= REPORT_EVERY.index(self.report_every):
            write_derived(self.out, self.data, self.clips)


def _pack(table: dict[int, ClipScores]) -> bytes:
    arrays = {}
    for step, c in table.items():
        for ds, dirs in c.sums.items():
            for direction, metrics in dirs.items():
                arrays[f"{step}|{ds}|{direction}|n"] = c.counts[ds][direction]
                for metric, values in metrics.items():
                    arrays[f"{step}|{ds}|{direction}|{metric}"] = values
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _unpack(data: np.lib.npyio.NpzFile) -> dict[int, ClipScores]:
    table: dict[int, ClipScores] = {}
    for key in data.files:
        step, ds, direction, metric = key.split("|")
        c = table.setdefault(int(step), ClipScores())
        if metric == "n":
            c.counts.setdefault(ds, {})[direction] = data[key]
        else:
            c.sums.setdefault(ds, {}).setdefault(direction, {})[metric] = data[key]
    return table


def _clips_problem(path: Path, entry: Entry) -> tuple[str | None, dict]:
    """(what is wrong with an entry's per-clip file or None, its table). A file that differs
    from its recorded checksum is still used when it reads whole (the zip's CRCs) and holds
    every step of the entry: a kill between it and run.json leaves one like that."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "missing", {}
    if sha256(data) == entry.clips_sha256:
        with np.load(io.BytesIO(data)) as npz:
            return None, _unpack(npz)
    try:
        with np.load(io.BytesIO(data)) as npz:
            table = _unpack(npz)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        return f"unreadable ({type(err).__name__}: {err})", {}
    lacking = [r.step for r in entry.rows if r.step not in table]
    if lacking:
        return f"has no sums of step(s) {', '.join(map(str, lacking))}", {}
    return None, {r.step: table[r.step] for r in entry.rows}


def load_clips(run_dir: Path, run: Run) -> ClipTable:
    """Per-clip sums of every entry that has them (older run files have none). A file that
    is missing or damaged is named on stderr and left out: the tables say which rows lack
    their intervals of means, and `--resume` computes that entry again."""
    out: ClipTable = {}
    for e in run.entries:
        if not e.clips_file:
            continue
        path = Path(run_dir) / e.clips_file
        problem, table = _clips_problem(path, e)
        if problem:
            print(f"tail-bench: warning: {path}: {problem}; {e.method} seed {e.seed} has no "
                  "per-clip sums (`tail-bench run --resume` computes them again)",
                  file=sys.stderr)
            continue
        out[e.key] = table
    return out


def write_derived(out: Path, run: Run, clips: ClipTable | None = None) -> None:
    """Every file derived from the run file: tables (Markdown, LaTeX), scores, plots. The
    tables are computed once (their bootstraps are most of the cost) for both formats."""
    atomic_write_text(out / "scores.csv", scores_csv(run))
    parts = sections(run, clips)
    atomic_write_text(out / "tables.md", render(run, clips, "md", parts))
    atomic_write_text(out / "tables.tex", render(run, clips, "latex", parts))
    write_plots(out, run)


MERGE_SAME = ("stream", "backbone", "preset_sizes", "eval_split")  # what makes rows comparable


def _merge_key(run: Run, key: str) -> Any:
    if key == "stream":
        return run.stream
    if key == "eval_split":
        return run.config.get("eval_split", "test")
    return run.setting(key)


def merge_runs(dirs: list[Path]) -> tuple[Run, ClipTable]:
    """Several run directories (e.g. the jobs of a method x seed grid) as one run: the
    first one's header (its --strategy is the reference row) and every one's entries.
    Runs on another stream, backbone, preset or evaluation split, and a (method, seed,
    order) present twice, are refused naming the directories."""
    first, runs, clips = Path(dirs[0]), [], {}
    merged = load_run(first)
    seen: dict[Key, tuple[Path, list[str]]] = {}
    for d in map(Path, dirs):
        run = merged if d == first else load_run(d)
        differ = [k for k in MERGE_SAME if _merge_key(run, k) != _merge_key(merged, k)]
        if differ:
            raise RunFileError(f"{d}: cannot be merged with {first}: their "
                               f"{', '.join(differ)} differ")
        for e in run.entries:
            key, order = e.key, run.order_of(e)
            if key in seen:
                where, other = seen[key]
                what = f"{e.method} seed {e.seed}" + (
                    f" order {key[2] + 1}" if key[2] else "")
                if other != order:  # the same index for another order: not comparable
                    raise RunFileError(f"{d}: {what} is order {' -> '.join(order)} but "
                                       f"{' -> '.join(other)} in {where}")
                raise RunFileError(f"{d}: {what} is also in {where}; merge each (method, "
                                   "seed, order) once")
            seen[key] = (d, order)
            runs.append(e)
        clips.update(load_clips(d, run))
    merged = Run({**merged.header, "merged_from": [str(d) for d in dirs]}, runs)
    return merged, clips


def write_merged(out: Path, run: Run, clips: ClipTable) -> None:
    """A merged run as a run directory of its own (run.json, per-clip files, tables)."""
    out = Path(out)
    if (out / RUN_FILE).exists():
        raise RunFileError(f"--out {out}: {out / RUN_FILE} exists; pick a new --out")
    for e in run.entries:
        if e.key in clips:
            data = _pack(clips[e.key])
            e.clips_file, e.clips_sha256 = e.clips_name(), sha256(data)
            atomic_write_bytes(out / e.clips_file, data)
    write_derived(out, run, clips)
    atomic_write_json(out / RUN_FILE, run.to_json())
