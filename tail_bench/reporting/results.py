"""The run directory: run.json is the source of truth; CSV and Markdown are derived.

Every file is rewritten atomically after every evaluated step, so a crash or Ctrl-C keeps
all finished steps. `tail-bench report DIR` rebuilds the derived files and plots from the
run files alone. Beside run.json, `clips/<method>-s<seed>.npz` holds each row's per-clip
sums (what bootstrap intervals and paired significance tests resample).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from tail_bench.errors import RunFileError
from tail_bench.evaluation.bootstrap import ClipScores
from tail_bench.reporting.plots import write_plots
from tail_bench.reporting.tables import render, scores_csv
from tail_bench.storage import atomic_write_bytes, atomic_write_json, atomic_write_text

RUN_FILE = "run.json"
CLIPS_DIR = "clips"
SCHEMA = 2  # 2: scores are {"value", "ci95"}; statuses; per-clip sums beside run.json
FINISHED = "done"

# (method, seed) -> step -> ClipScores
ClipTable = dict[tuple[str, int], dict[int, ClipScores]]


def clips_file(entry: dict[str, Any]) -> str:
    return f"{CLIPS_DIR}/{entry['method']}-s{entry['seed']}.npz"


class RunStore:
    def __init__(self, out: Path, header: dict[str, Any]) -> None:
        self.out = Path(out)
        if (self.out / RUN_FILE).exists():
            raise RunFileError(f"{self.out / RUN_FILE} exists: pick a new --out or move it")
        self.data: dict[str, Any] = {"schema": SCHEMA, **header, "runs": []}
        self.clips: ClipTable = {}
        self.save()

    def start(self, *, method: str, seed: int, info: dict[str, Any]) -> dict[str, Any]:
        entry = {"method": method, "seed": seed, "status": "running", **info, "rows": [],
                 "clips_file": None}
        self.data["runs"].append(entry)
        self.clips[(method, seed)] = {}
        return entry

    def add_row(self, entry: dict[str, Any], row: dict[str, Any], clips: ClipScores) -> None:
        entry["rows"].append(row)
        table = self.clips[(entry["method"], entry["seed"])]
        table[row["step"]] = clips
        entry["clips_file"] = clips_file(entry)
        atomic_write_bytes(self.out / entry["clips_file"], _pack(table))
        self.save()

    def stop(self, entry: dict[str, Any], status: str, failure: dict[str, Any]) -> None:
        """An unfinished method: diverged, failed or interrupted."""
        entry.update(status=status, failure=failure)
        self.save()

    def finish(self, entry: dict[str, Any], **fields: Any) -> None:
        entry.update(fields, status=FINISHED)
        self.save()

    def save(self) -> None:
        write_derived(self.out, self.data, self.clips)
        atomic_write_json(self.out / RUN_FILE, self.data)


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


def load_clips(run_dir: Path, run: dict[str, Any]) -> ClipTable:
    """Per-clip sums of every entry that has them (older run files have none)."""
    out: ClipTable = {}
    for e in run["runs"]:
        path = Path(run_dir) / e["clips_file"] if e.get("clips_file") else None
        if path is not None and path.exists():
            with np.load(path) as data:
                out[(e["method"], e["seed"])] = _unpack(data)
    return out


def write_derived(out: Path, run: dict[str, Any], clips: ClipTable | None = None) -> None:
    """Every file derived from the run file: tables (Markdown, LaTeX), scores, plots."""
    atomic_write_text(out / "scores.csv", scores_csv(run))
    atomic_write_text(out / "tables.md", render(run, clips, "md"))
    atomic_write_text(out / "tables.tex", render(run, clips, "latex"))
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


def load_run(path: Path) -> dict[str, Any]:
    path = Path(path)
    file = path / RUN_FILE if path.is_dir() else path
    try:
        run = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise RunFileError(f"{file}: no run file (expected a directory written by "
                           "`tail-bench run`)") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunFileError(f"{file}: not valid JSON ({err})") from err
    if not isinstance(run, dict) or "runs" not in run or "stream" not in run:
        raise RunFileError(f"{file}: expected an object with keys 'stream' and 'runs' of a "
                           "tail-bench run file")
    return _upgrade(run)
