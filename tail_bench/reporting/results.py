"""The run directory: run.json is the source of truth; CSV and Markdown are derived.

Every file is rewritten atomically after every evaluated step, so a crash or Ctrl-C keeps
all finished steps. `tail-bench report DIR` rebuilds the derived files and plots from the
run files alone. Beside run.json, `clips/<method>-s<seed>.npz` holds each row's per-clip
sums (what bootstrap intervals and paired significance tests resample). A run with
`--orders K` keeps an entry per (method, seed, order): `order` names its data sets in
training order and `order_index` says which of the run's orders it is (0: the first);
its per-clip file and checkpoint folder end in `-o<index>` past the first order.
An entry records its per-clip file's SHA-256 (`clips_sha256`): a file that is missing,
unreadable, or lacks one of the entry's steps is named, its rows lose their intervals of
means and paired tests (the tables say so), and `--resume` computes that entry again.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from tail_bench.errors import RunFileError
from tail_bench.evaluation.bootstrap import ClipScores
from tail_bench.reporting import REPORT_EVERY
from tail_bench.reporting.plots import write_plots
from tail_bench.reporting.tables import (
    Key,
    entry_key,
    order_of,
    render,
    scores_csv,
    sections,
)
from tail_bench.storage import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    run_name,
)

RUN_FILE = "run.json"
CLIPS_DIR = "clips"
SCHEMA = 2  # 2: scores are {"value", "ci95"}; statuses; per-clip sums beside run.json
FINISHED = "done"

ClipTable = dict[Key, dict[int, ClipScores]]


def clips_file(entry: dict[str, Any]) -> str:
    name = run_name(entry["method"], entry["seed"], entry.get("order_index", 0))
    return f"{CLIPS_DIR}/{name}.npz"


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
            self.data.setdefault("resumed", []).append(header)
            for e in self.data["runs"]:
                if e.get("clips_file") and entry_key(e) not in self.clips:
                    self.restart(e, f"{e['clips_file']}: missing or damaged")
            return
        if write and (self.out / RUN_FILE).exists():  # (rank 0 may have written it)
            raise RunFileError(f"{self.out / RUN_FILE} exists: pick a new --out or move it")
        self.data = {"schema": SCHEMA, **(header or {}), "runs": []}
        self.save()

    def find(self, method: str, seed: int, order_index: int = 0) -> dict[str, Any] | None:
        return next((e for e in self.data["runs"]
                     if entry_key(e) == (method, seed, order_index)), None)

    def start(self, *, method: str, seed: int, info: dict[str, Any]) -> dict[str, Any]:
        entry = {"method": method, "seed": seed, "status": "running", **info, "rows": [],
                 "clips_file": None}
        self.data["runs"].append(entry)
        self.clips[entry_key(entry)] = {}
        return entry

    def reopen(self, entry: dict[str, Any], last_step: int) -> None:
        """An unfinished method continues after `last_step` (its checkpoint): later rows
        go, they are computed again. run.json goes first: a kill before the per-clip file
        follows leaves that file holding every kept step (and more), which still reads."""
        entry["status"] = "running"
        entry.pop("failure", None)
        entry["rows"] = [r for r in entry["rows"] if r["step"] <= last_step]
        table = self.clips.setdefault(entry_key(entry), {})
        for step in [s for s in table if s > last_step]:
            del table[step]
        data = _pack(table) if entry.get("clips_file") else None
        if data is not None:
            entry["clips_sha256"] = hashlib.sha256(data).hexdigest()
        self.save()
        if self.write and data is not None:
            atomic_write_bytes(self.out / entry["clips_file"], data)

    def restart(self, entry: dict[str, Any], reason: str) -> None:
        """An entry whose saved state (per-clip file, checkpoint) is missing or damaged is
        computed again from step 0; `restarts` in its record keeps the reason."""
        if self.write:
            what = f"{entry['method']} seed {entry['seed']}" + (
                f" order {entry['order_index'] + 1}" if entry.get("order_index") else "")
            print(f"tail-bench: warning: {reason}; {what} starts again from step 0",
                  file=sys.stderr)
        entry["restarts"] = [*entry.get("restarts", []),
                             {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "reason": reason}]
        for k in ("cost", "extra", "failure", "checkpoint", "clips_sha256"):
            entry.pop(k, None)
        entry.update(status="interrupted", rows=[], clips_file=None)
        self.clips[entry_key(entry)] = {}
        self.save()

    def add_row(self, entry: dict[str, Any], row: dict[str, Any], clips: ClipScores) -> None:
        """The per-clip file goes first, then run.json with its checksum: a kill between
        the two leaves a file holding one step more, which still reads."""
        table = self.clips.setdefault(entry_key(entry), {})
        data = _pack({**table, row["step"]: clips})
        if self.write:  # when it fails, the row is not recorded either
            atomic_write_bytes(self.out / clips_file(entry), data)
        entry["rows"].append(row)
        table[row["step"]] = clips
        entry.update(clips_file=clips_file(entry), clips_sha256=hashlib.sha256(data).hexdigest())
        self.save()

    def stop(self, entry: dict[str, Any], status: str, failure: dict[str, Any]) -> None:
        """An unfinished method: diverged, failed or interrupted."""
        entry.update(status=status, failure=failure)
        self.save(ended="method")

    def finish(self, entry: dict[str, Any], **fields: Any) -> None:
        entry.update(fields, status=FINISHED)
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
        atomic_write_json(self.out / RUN_FILE, self.data)  # first: the tables take seconds
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


def _clips_problem(path: Path, entry: dict[str, Any]) -> tuple[str | None, dict]:
    """(what is wrong with an entry's per-clip file or None, its table). A file that differs
    from its recorded checksum is still used when it reads whole (the zip's CRCs) and holds
    every step of the entry: a kill between it and run.json leaves one like that."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "missing", {}
    if hashlib.sha256(data).hexdigest() == entry.get("clips_sha256"):
        with np.load(io.BytesIO(data)) as npz:
            return None, _unpack(npz)
    try:
        with np.load(io.BytesIO(data)) as npz:
            table = _unpack(npz)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        return f"unreadable ({type(err).__name__}: {err})", {}
    lacking = [r["step"] for r in entry["rows"] if r["step"] not in table]
    if lacking:
        return f"has no sums of step(s) {', '.join(map(str, lacking))}", {}
    return None, {r["step"]: table[r["step"]] for r in entry["rows"]}


def load_clips(run_dir: Path, run: dict[str, Any]) -> ClipTable:
    """Per-clip sums of every entry that has them (older run files have none). A file that
    is missing or damaged is named on stderr and left out: the tables say which rows lack
    their intervals of means, and `--resume` computes that entry again."""
    out: ClipTable = {}
    for e in run["runs"]:
        if not e.get("clips_file"):
            continue
        path = Path(run_dir) / e["clips_file"]
        problem, table = _clips_problem(path, e)
        if problem:
            print(f"tail-bench: warning: {path}: {problem}; {e['method']} seed {e['seed']} "
                  "has no per-clip sums (`tail-bench run --resume` computes them again)",
                  file=sys.stderr)
            continue
        out[entry_key(e)] = table
    return out


def write_derived(out: Path, run: dict[str, Any], clips: ClipTable | None = None) -> None:
    """Every file derived from the run file: tables (Markdown, LaTeX), scores, plots. The
    tables are computed once (their bootstraps are most of the cost) for both formats."""
    atomic_write_text(out / "scores.csv", scores_csv(run))
    parts = sections(run, clips)
    atomic_write_text(out / "tables.md", render(run, clips, "md", parts))
    atomic_write_text(out / "tables.tex", render(run, clips, "latex", parts))
    write_plots(out, run)


def _upgrade(run: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 files (plain float scores, no intervals) read as schema 2 without CIs."""
    if run.get("schema", 1) >= SCHEMA:
        return run
    for e in run["runs"]:
        for row in e["rows"]:
            row["scores"] = {d: {k: {m: {"value": v, "ci95": None} for m, v in ms.items()}
                                 for k, ms in dirs.items()} for d, dirs in row["scores"].items()}
    run["schema"] = SCHEMA
    return run


STATUSES = ("running", FINISHED, "diverged", "failed", "interrupted")


def _is_scores(scores: Any) -> bool:
    """{data set: {direction: {metric: {"value", "ci95"} or a number}}}."""
    return isinstance(scores, dict) and all(
        isinstance(dirs, dict) and all(
            isinstance(ms, dict) and all(
                isinstance(v, int | float) or (isinstance(v, dict)
                                               and isinstance(v.get("value"), int | float))
                for v in ms.values()) for ms in dirs.values())
        for dirs in scores.values())


def _entry_problem(e: Any) -> str | None:
    """What a run file's entry lacks that the reports read, or None."""
    if not isinstance(e, dict):
        return "expected an object"
    if not isinstance(e.get("method"), str) or type(e.get("seed")) is not int:
        return "expected 'method' (text) and 'seed' (an integer)"
    if e.get("status") not in STATUSES:
        return f"status {e.get('status')!r}: expected one of {', '.join(STATUSES)}"
    rows = e.get("rows")
    if not isinstance(rows, list) or not all(
            isinstance(r, dict) and type(r.get("step")) is int and _is_scores(r.get("scores"))
            for r in rows):
        return "expected 'rows': a list of objects with 'step' (an integer) and 'scores'"
    cost = e.get("cost")
    if e["status"] == FINISHED and not (isinstance(cost, dict) and all(
            isinstance(cost.get(k), int | float) for k in ("trainable_params",
                                                          "train_seconds"))):
        return ("status 'done' without its 'cost' (trainable_params, train_seconds): "
                "an unfinished entry marked done? set its status back and --resume")
    return None


def _run_problem(run: Any) -> str | None:
    """What a run file lacks that the reports read, or None (the entries' problems name
    the entry)."""
    if not isinstance(run, dict) or "runs" not in run or "stream" not in run:
        return "expected an object with keys 'stream' and 'runs' of a tail-bench run file"
    stream = run["stream"]
    if not (isinstance(stream, dict) and isinstance(stream.get("name"), str)
            and isinstance(stream.get("datasets"), list) and stream["datasets"]
            and all(isinstance(d, str) for d in stream["datasets"])):
        return "'stream' must be an object with 'name' (text) and 'datasets' (names)"
    if not isinstance(run.get("config", {}), dict):
        return "'config' must be an object (the run's options)"
    if not isinstance(run["runs"], list):
        return "'runs' must be a list of entries"
    for i, e in enumerate(run["runs"]):
        problem = _entry_problem(e)
        if problem:
            what = f" ({e.get('method')} seed {e.get('seed')})" if isinstance(e, dict) else ""
            return f"runs[{i}]{what}: {problem}"
    return None


def load_run(path: Path) -> dict[str, Any]:
    """A run file (or its directory), its structure checked: what the reports and --resume
    read is there, so a damaged or hand-edited file is named in one line."""
    path = Path(path)
    file = path / RUN_FILE if path.is_dir() else path
    try:
        run = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        what = "no such file or directory" if not path.exists() else "no run file"
        raise RunFileError(f"{file}: {what} (expected a directory written by `tail-bench "
                           "run`, or a study directory with study.json)") from err
    except OSError as err:  # a directory, a symlink loop, no permission
        raise RunFileError(f"{file}: not a readable run file ({err.strerror})") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunFileError(f"{file}: not a readable run file: not valid JSON ({err})") from err
    problem = _run_problem(run)
    if problem:
        raise RunFileError(f"{file}: {problem}")
    return _upgrade(run)


MERGE_SAME = ("stream", "backbone", "preset_sizes", "eval_split")  # what makes rows comparable


def _merge_key(run: dict[str, Any], key: str) -> Any:
    if key == "stream":
        return run["stream"]
    if key == "eval_split":
        return run.get("config", {}).get("eval_split", "test")
    return run.get("resolved", {}).get(key, run.get("config", {}).get(key))


def merge_runs(dirs: list[Path]) -> tuple[dict[str, Any], ClipTable]:
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
        for e in run["runs"]:
            key, order = entry_key(e), order_of(run, e)
            if key in seen:
                where, other = seen[key]
                what = f"{e['method']} seed {e['seed']}" + (
                    f" order {key[2] + 1}" if key[2] else "")
                if other != order:  # the same index for another order: not comparable
                    raise RunFileError(f"{d}: {what} is order {' -> '.join(order)} but "
                                       f"{' -> '.join(other)} in {where}")
                raise RunFileError(f"{d}: {what} is also in {where}; merge each (method, "
                                   "seed, order) once")
            seen[key] = (d, order)
            runs.append(e)
        clips.update(load_clips(d, run))
    merged = {**merged, "runs": runs, "merged_from": [str(d) for d in dirs]}
    return merged, clips


def write_merged(out: Path, run: dict[str, Any], clips: ClipTable) -> None:
    """A merged run as a run directory of its own (run.json, per-clip files, tables)."""
    out = Path(out)
    if (out / RUN_FILE).exists():
        raise RunFileError(f"--out {out}: {out / RUN_FILE} exists; pick a new --out")
    for e in run["runs"]:
        key = entry_key(e)
        if key in clips:
            e["clips_file"] = clips_file(e)
            atomic_write_bytes(out / e["clips_file"], _pack(clips[key]))
    write_derived(out, run, clips)
    atomic_write_json(out / RUN_FILE, run)
