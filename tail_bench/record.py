"""The run record: what a run directory's run.json holds, typed, and the files beside it.

This module is the only one that spells the run file's statuses, roles, keys and file
names; the runner, the run store, tables, plots, the study report and the sweep merge all
read and write runs through `Run`, `Entry` and `Row`. A run file is JSON: a header (suite,
command, config, resolved settings, stream) and one entry per (method, seed, stream
order), each with a row per evaluated step (row 0: before any training). Older files
still load: schema 1 scores (plain floats) read as values without intervals, and entries
from before `--orders` are order 0 of the stream's own order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

from tail_bench.errors import RunFileError

RUN_FILE = "run.json"
CLIPS_DIR = "clips"  # per-clip sums of every row, one .npz per entry
CHECKPOINTS_DIR = "checkpoints"  # per-step checkpoints of unfinished entries
LOCK_FILE = ".lock"  # the advisory lock of the process writing the directory (its pid)
SCHEMA = 2  # 2: scores are {"value", "ci95"}; statuses; per-clip sums beside run.json

Key = tuple[str, int, int]  # (method, seed, order index): what identifies an entry
Scores = dict[str, dict[str, dict[str, Any]]]  # data set -> direction -> metric -> score


class Status(StrEnum):
    """Where an entry stands. Only `DONE` finished every step and is compared."""

    RUNNING = "running"
    DONE = "done"
    DIVERGED = "diverged"  # non-finite loss or embeddings: kept up to the last finite step
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def settled(self) -> bool:
        """Nothing left to do on `--resume`: finished, or diverged (it would again)."""
        return self in (Status.DONE, Status.DIVERGED)


class Role(StrEnum):
    """What an entry's row is, in the order tables list them."""

    ZERO_SHOT = "zero-shot"  # the backbone itself, scored before any step
    CONTINUAL = "continual"
    JOINT = "joint"  # one step on the union of every step's data (an upper reference)


def run_name(method: str, seed: int, order_index: int = 0) -> str:
    """How one (method, seed, stream order) of a run names its files: `<method>-s<seed>`,
    and `-o<k>` past the run's first order."""
    return f"{method}-s{seed}" + (f"-o{order_index}" if order_index else "")


def value(score: dict | float) -> float:
    """A score's value (schema 2: `{"value", "ci95"}`)."""
    return score["value"] if isinstance(score, dict) else score


def _split(data: dict[str, Any], names: tuple[str, ...]) -> tuple[dict, dict]:
    return ({k: v for k, v in data.items() if k in names},
            {k: v for k, v in data.items() if k not in names})


@dataclass
class Row:
    """One evaluated step of an entry: step 0 is the backbone before any training."""

    step: int
    after: str | None  # the data set just trained on ("all (joint)" for Joint)
    scores: Scores
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    train_peak_memory_mb: float | None = None
    state_bytes: int | None = None  # the strategy's state_dict() after the step
    model_bytes: int | None = None
    more: dict[str, Any] = field(default_factory=dict)  # keys of other suite versions

    _KEYS = ("step", "after", "scores", "train_seconds", "eval_seconds",
             "train_peak_memory_mb", "state_bytes", "model_bytes")

    def score(self, dataset: str, direction: str, metric: str = "R@1") -> float:
        return value(self.scores[dataset][direction][metric])

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self._KEYS}
        return {k: v for k, v in out.items() if v is not None or k == "after"} | self.more

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Row:
        known, more = _split(data, cls._KEYS)
        return cls(**known, more=more)


@dataclass
class Entry:
    """One (method, seed, stream order) of a run: how it was set up, its rows, its cost."""

    method: str  # the row's name: a strategy, with `+Plugin(...)` specs when it has any
    seed: int
    status: Status
    role: Role | None = None
    description: str | None = None
    options: dict[str, Any] | None = None
    data_seed: int | None = None
    strategy: str | None = None
    order: list[str] | None = None  # data sets in training order (None: the stream's)
    order_index: int = 0
    avalanche_plugins: list[dict[str, Any]] | None = None
    rows: list[Row] = field(default_factory=list)
    clips_file: str | None = None
    clips_sha256: str | None = None  # of the per-clip file, verified when it is read
    checkpoint: dict[str, Any] | None = None  # writes, seconds, mb; step, sha256 of the last
    restarts: list[dict[str, Any]] | None = None  # computed again: when and why
    failure: dict[str, Any] | None = None  # why it stopped (unfinished entries)
    cost: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None  # the strategy's report()
    more: dict[str, Any] = field(default_factory=dict)

    _INFO = ("role", "description", "options", "data_seed", "strategy", "order",
             "order_index", "avalanche_plugins")
    _AFTER = ("clips_file", "clips_sha256", "checkpoint", "restarts", "failure", "cost",
              "extra")

    @property
    def key(self) -> Key:
        return self.method, self.seed, self.order_index

    @property
    def finished(self) -> bool:
        """Finished every step (the only entries tables compare)."""
        return self.status is Status.DONE

    @property
    def last_step(self) -> int | None:
        return self.rows[-1].step if self.rows else None

    def clips_name(self) -> str:
        return f"{CLIPS_DIR}/{run_name(self.method, self.seed, self.order_index)}.npz"

    def matrix(self, datasets: list[str], direction: str,
               metric: str = "R@1") -> list[list[float]]:
        """The results matrix: one row per evaluated step, one column per data set."""
        return [[row.score(d, direction, metric) for d in datasets] for row in self.rows]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "seed": self.seed,
                               "status": self.status.value}
        for k in self._INFO:
            v = getattr(self, k)
            if v is not None:
                out[k] = v.value if isinstance(v, Enum) else v
        out["rows"] = [r.to_json() for r in self.rows]
        for k in self._AFTER:
            if getattr(self, k) is not None or k == "clips_file":
                out[k] = getattr(self, k)
        return out | self.more

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        known, more = _split(data, ("method", "seed", "status", "rows", *cls._INFO,
                                    *cls._AFTER))
        role = known.pop("role", None)
        return cls(**{**known, "status": Status(known["status"]),
                      "role": None if role is None else Role(role),
                      "rows": [Row.from_json(r) for r in known.get("rows", [])]}, more=more)


@dataclass
class Run:
    """A run file: its header (everything but the entries) and its entries."""

    header: dict[str, Any]
    entries: list[Entry] = field(default_factory=list)

    @property
    def stream(self) -> dict[str, Any]:
        return self.header["stream"]

    @property
    def datasets(self) -> list[str]:
        return self.stream["datasets"]

    @property
    def config(self) -> dict[str, Any]:
        return self.header.get("config", {})

    @property
    def resolved(self) -> dict[str, Any]:
        return self.header.get("resolved", {})

    @property
    def reference(self) -> str | None:
        """The run's --strategy: the row others are compared with."""
        return self.config.get("strategy")

    def setting(self, key: str) -> Any:
        """A setting as it ran: resolved, or as given (run files before `resolved`)."""
        return self.resolved.get(key, self.config.get(key))

    def find(self, method: str, seed: int, order_index: int = 0) -> Entry | None:
        return next((e for e in self.entries if e.key == (method, seed, order_index)), None)

    def order_of(self, entry: Entry) -> list[str]:
        """The data sets an entry trained on, in its order."""
        return entry.order or self.datasets

    def finished(self) -> list[Entry]:
        return [e for e in self.entries if e.finished]

    def unfinished(self) -> list[Entry]:
        return [e for e in self.entries if not e.finished]

    def planned_orders(self) -> dict[int, list[str]]:
        """Every stream order by index: those entries ran and those the run was asked
        for (`resolved.orders`), so a run stopped in its first order says it has more."""
        asked = self.resolved.get("orders") or []
        return {**dict(enumerate(asked)),
                **{e.order_index: self.order_of(e) for e in self.entries}}

    def several_orders(self) -> bool:
        return len(self.planned_orders()) > 1

    def to_json(self) -> dict[str, Any]:
        return {**self.header, "runs": [e.to_json() for e in self.entries]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        header = {k: v for k, v in _upgrade(data).items() if k != "runs"}
        return cls(header, [Entry.from_json(e) for e in data["runs"]])


def order_indices(entries: list[Entry]) -> list[int]:
    return sorted({e.order_index for e in entries})


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
    """What a run file's entry lacks that the reports and --resume read, or None."""
    if not isinstance(e, dict):
        return "expected an object"
    if not isinstance(e.get("method"), str) or type(e.get("seed")) is not int:
        return "expected 'method' (text) and 'seed' (an integer)"
    if e.get("status") not in {s.value for s in Status}:
        return (f"status {e.get('status')!r}: expected one of "
                f"{', '.join(s.value for s in Status)}")
    if e.get("role", Role.CONTINUAL.value) not in {r.value for r in Role}:
        return f"role {e['role']!r}: expected one of {', '.join(r.value for r in Role)}"
    if type(e.get("order_index", 0)) is not int or not (
            e.get("order") is None or (isinstance(e["order"], list)
            and all(isinstance(d, str) for d in e["order"]))):
        return "expected 'order' (data set names) and 'order_index' (an integer)"
    rows = e.get("rows")
    if not isinstance(rows, list) or not all(
            isinstance(r, dict) and type(r.get("step")) is int and _is_scores(r.get("scores"))
            for r in rows):
        return "expected 'rows': a list of objects with 'step' (an integer) and 'scores'"
    cost = e.get("cost")
    if e["status"] == Status.DONE.value and not (isinstance(cost, dict) and all(
            isinstance(cost.get(k), int | float) for k in ("trainable_params",
                                                          "train_seconds"))):
        return ("status 'done' without its 'cost' (trainable_params, train_seconds): "
                "an unfinished entry marked done? set its status back and --resume")
    return None


def _run_problem(data: Any) -> str | None:
    """What a run file lacks that the reports and --resume read, or None (an entry's
    problem names the entry)."""
    if not isinstance(data, dict) or "runs" not in data or "stream" not in data:
        return "expected an object with keys 'stream' and 'runs' of a tail-bench run file"
    stream = data["stream"]
    if not (isinstance(stream, dict) and isinstance(stream.get("name"), str)
            and isinstance(stream.get("datasets"), list) and stream["datasets"]
            and all(isinstance(d, str) for d in stream["datasets"])):
        return "'stream' must be an object with 'name' (text) and 'datasets' (names)"
    for key in ("config", "resolved"):
        if not isinstance(data.get(key, {}), dict):
            return f"'{key}' must be an object (the run's options)"
    if not isinstance(data["runs"], list):
        return "'runs' must be a list of entries"
    for i, e in enumerate(data["runs"]):
        problem = _entry_problem(e)
        if problem:
            what = f" ({e.get('method')} seed {e.get('seed')})" if isinstance(e, dict) else ""
            return f"runs[{i}]{what}: {problem}"
    return None


def load_run(path: Path) -> Run:
    """A run directory's run file (or the file itself), as a `Run`. Its structure is
    checked first, so a damaged or hand-edited file is named in one line."""
    path = Path(path)
    file = path / RUN_FILE if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        what = "no such file or directory" if not path.exists() else "no run file"
        raise RunFileError(f"{file}: {what} (expected a directory written by `tail-bench "
                           "run`, or a study directory with study.json)") from err
    except OSError as err:  # a directory, a symlink loop, no permission
        raise RunFileError(f"{file}: not a readable run file ({err.strerror})") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunFileError(f"{file}: not a readable run file: not valid JSON ({err})") from err
    problem = _run_problem(data)
    if problem:
        raise RunFileError(f"{file}: {problem}")
    return Run.from_json(data)
