"""The run directory: run.json is the source of truth; CSV and Markdown are derived.

Every file is rewritten atomically after every evaluated step, so a crash or Ctrl-C keeps
all finished steps. `tail-bench report DIR` rebuilds the derived files and plots from
run.json alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tail_bench.reporting.io import atomic_write_json, atomic_write_text
from tail_bench.reporting.tables import render_markdown, scores_csv

RUN_FILE = "run.json"


class RunStore:
    def __init__(self, out: Path, header: dict[str, Any]) -> None:
        self.out = Path(out)
        if (self.out / RUN_FILE).exists():
            raise FileExistsError(f"{self.out / RUN_FILE} exists: pick a new --out or move it")
        self.data: dict[str, Any] = {**header, "runs": []}
        self.save()

    def start(self, *, method: str, seed: int, info: dict[str, Any]) -> dict[str, Any]:
        entry = {"method": method, "seed": seed, "status": "running", **info, "rows": []}
        self.data["runs"].append(entry)
        self.save()
        return entry

    def add_row(self, entry: dict[str, Any], row: dict[str, Any]) -> None:
        entry["rows"].append(row)
        self.save()

    def finish(self, entry: dict[str, Any], **fields: Any) -> None:
        entry.update(fields, status="done")
        self.save()

    def save(self) -> None:
        write_derived(self.out, self.data)
        atomic_write_json(self.out / RUN_FILE, self.data)


def write_derived(out: Path, run: dict[str, Any]) -> None:
    atomic_write_text(out / "scores.csv", scores_csv(run))
    atomic_write_text(out / "tables.md", render_markdown(run))


def load_run(path: Path) -> dict[str, Any]:
    path = Path(path)
    file = path / RUN_FILE if path.is_dir() else path
    try:
        run = json.loads(file.read_text())
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{file}: no run file (expected a directory written by "
                                "`tail-bench run`)") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}: not valid JSON ({err})") from err
    if "runs" not in run or "stream" not in run:
        raise ValueError(f"{file}: expected keys 'stream' and 'runs' of a tail-bench run file")
    return run
