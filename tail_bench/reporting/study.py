"""The stream-length study's report: a pure function of its run files.

A study directory (`benchmarks/stream_length.py` writes one) holds `study.json` (what was
asked, wall time per length), `configs/length-<L>.yaml` and one `tail-bench run`
directory per length under `runs/length-<L>/`. `tail-bench report DIR` rebuilds, with no
training, each length's tables and plots and the study's `summary.json`, `table.md`,
`quality.png` (final average t2a R@1, learning accuracy and forgetting against length,
bars: min to max over seeds) and `cost.png` (training time, peak memory and stored state
against length, and the stored state after every step of the longest stream).

Stored state is what a method keeps after a step: its strategy's `state_dict()` (the
checkpoint contract, docs/strategies.md: EWC's importances and anchor, a distillation
teacher, L2P's usage history, ER's replay buffer) plus the model's weights and buffers
(which grow for CODA-Prompt, whose components are added per step), as recorded in every
row of the run file. On the longest stream, a method's
stored state is `constant` when it does not change after step 1 (a Fisher, a teacher),
grows `without bound` when it is larger after every step of the second half (after step
L/2 to after step L, every seed) and grows there at least half as fast per step as over
the first half (it is not levelling off), and is `bounded` otherwise (it grew, then
levelled off: a replay buffer filling up to its size). A longest stream of fewer than 4
steps has no first half to compare with: a state that changes there is `too short to
tell`. Growth per step: (size after step L − size after step L/2) / (L − L/2), and
likewise over the first half.
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import mean, stdev
from typing import Any

import numpy as np

from tail_bench.record import RUN_FILE, Entry, Role, Run, load_run

STUDY_FILE = "study.json"
STUDY_TABLE = "table.md"
TOO_SHORT = "too short to tell"  # growth over fewer than 4 steps
METRICS = {"final_average": "final avg t2a R@1 (%)",
           "learning_accuracy": "learning acc t2a R@1 (%)",
           "forgetting": "forgetting t2a R@1 (%)"}
COSTS = {"train_seconds": "training time (s)", "peak_memory_mb": "peak memory (MB)",
         "stored_mb": "stored state after the last step (MB)"}


def is_study(path: Path) -> bool:
    return (Path(path) / STUDY_FILE).is_file()


def run_dir(out: Path, length: int) -> Path:
    return Path(out) / "runs" / f"length-{length}"


def _per_run(run: Run, entry: Entry) -> dict[str, Any]:
    """One (method, seed) of one length: quality, cost and stored state per step."""
    from tail_bench.evaluation import cl_metrics

    s = cl_metrics.summarize(entry.matrix(run.order_of(entry), "t2a", "R@1"))
    cost = entry.cost
    rows = entry.rows[1:]
    peak = cost["peak_memory_mb"] - cost.get("rss_start_mb", 0.0)  # CPU: above the start
    stored = [(r.state_bytes or 0) + (r.model_bytes or 0) for r in rows]
    return {"seed": entry.seed, "final_average": s["final_average"],
            "learning_accuracy": s["learning_accuracy"], "forgetting": s["mean_forgetting"],
            "train_seconds": cost["train_seconds"],
            "train_seconds_per_step": cost["train_seconds"] / len(rows),
            "peak_memory_mb": round(peak, 1),
            "state_mb": [round((r.state_bytes or 0) / 2**20, 6) for r in rows],
            "model_mb": [round((r.model_bytes or 0) / 2**20, 6) for r in rows],
            "stored_mb": stored[-1] / 2**20, "stored_bytes_per_step": stored}


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": mean(values), "std": stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def _growth(series: list[list[int]]) -> dict[str, Any]:
    """Stored bytes after every step of the longest stream (one series per seed): how it
    grows (constant, bounded, without bound: see the module's docstring) and by how much
    per step over each half."""
    n = len(series[0])
    half = max(n // 2, 1)  # after step L/2 (1-based), index half - 1
    second = mean((s[-1] - s[half - 1]) / max(n - half, 1) for s in series)
    first = mean((s[half - 1] - s[0]) / (half - 1) for s in series) if half > 1 else None
    rising = n > half and all(b > a for s in series
                              for a, b in zip(s[half - 1:], s[half:], strict=False))
    if not any(x != s[0] for s in series for x in s):
        kind = "constant"
    elif first is None:
        kind = TOO_SHORT  # no first half to compare with
    elif rising and second >= 0.5 * first:
        kind = "without bound"
    else:
        kind = "bounded"
    return {"steps": n, "half": half,
            "mb_after_half": mean(s[half - 1] for s in series) / 2**20,
            "mb_after_last": mean(s[-1] for s in series) / 2**20,
            "kb_per_step": second / 1024,
            "kb_per_step_first_half": None if first is None else first / 1024,
            "kind": kind, "grows": kind == "without bound"}


def collect(out: Path) -> dict[str, Any]:
    """Every finished continual (method, seed) of every length, from the run files."""
    out = Path(out)
    study = json.loads((out / STUDY_FILE).read_text())
    lengths = sorted(int(p.name.split("-")[1]) for p in (out / "runs").glob("length-*")
                     if (p / RUN_FILE).exists())
    data: dict[str, dict[int, list[dict[str, Any]]]] = {}
    unfinished = []
    for length in lengths:
        run = load_run(run_dir(out, length))
        for e in run.entries:
            if e.role is not Role.CONTINUAL:
                continue
            if not e.finished:
                unfinished.append(f"{e.method} seed {e.seed} at length {length}: "
                                  f"{e.status.value}")
                continue
            data.setdefault(e.method, {}).setdefault(length, []).append(_per_run(run, e))
    summary: dict[str, Any] = {"preset": study.get("preset"), "lengths": lengths,
                               "elapsed_seconds": study.get("elapsed_seconds", {}),
                               "unfinished": unfinished, "methods": {}}
    for method, by_length in data.items():
        m: dict[str, Any] = {"by_length": {}}
        for length, runs in sorted(by_length.items()):
            m["by_length"][str(length)] = {
                "seeds": [r["seed"] for r in runs],
                **{k: _spread([r[k] for r in runs]) for k in
                   (*METRICS, "train_seconds", "train_seconds_per_step", "peak_memory_mb",
                    "stored_mb")},
                "runs": runs}
        longest = max(by_length)
        m["growth"] = {"length": longest, **_growth(
            [r["stored_bytes_per_step"] for r in by_length[longest]]),
            "state_mb_last": mean(r["state_mb"][-1] for r in by_length[longest]),
            "model_mb_last": mean(r["model_mb"][-1] for r in by_length[longest])}
        summary["methods"][method] = m
    return summary


def _pm(s: dict[str, float], scale: float = 100.0, digits: int = 1) -> str:
    text = f"{scale * s['mean']:.{digits}f}"
    return text + (f" ± {scale * s['std']:.{digits}f}" if s["n"] > 1 else "")


def markdown(summary: dict[str, Any]) -> str:
    from tail_bench.reporting.tables import Table

    lengths = summary["lengths"]
    lines = [f"# Stream length: tail-synth, preset `{summary['preset']}`", "",
             "Every cell: mean ± std over seeds (sample std). R@1 is text-to-audio, per data "
             "set's own gallery; forgetting is the mean over the first L−1 data sets of "
             "(best earlier R@1 − final R@1). Peak memory: the method's peak above the "
             "process's memory when it started (CPU: resident memory). Stored state: the "
             "strategy's state_dict plus the model's weights after the last step.", ""]
    rows = [[method, str(length), str(len(c["seeds"])), _pm(c["final_average"]),
             _pm(c["learning_accuracy"]), _pm(c["forgetting"]), _pm(c["train_seconds"], 1, 1),
             _pm(c["train_seconds_per_step"], 1, 2), _pm(c["peak_memory_mb"], 1, 0),
             _pm(c["stored_mb"], 1, 3)]
            for method, m in summary["methods"].items() for length in lengths
            if (c := m["by_length"].get(str(length))) is not None]
    lines.append(Table(["method", "steps", "seeds", "final avg R@1", "learning acc R@1",
                        "forgetting R@1", "train s", "train s / step", "peak MB",
                        "stored MB"], rows).markdown())
    lines += ["", f"## Stored state over the longest stream ({max(lengths)} steps)", "",
              "Growth: `constant` (no change after step 1), `without bound` (larger after "
              "every step of the second half, every seed, and per step at least half as "
              "fast as over the first half), `bounded` (grew, then levelled off), "
              f"`{TOO_SHORT}` (it changed, over fewer than 4 steps). KB per "
              "step: (after step L − after step L/2) / (L − L/2), and likewise over the "
              "first half.", ""]
    rows = []
    for method, m in summary["methods"].items():
        g = m["growth"]
        first = g["kb_per_step_first_half"]
        rows.append([method, f"{g['state_mb_last']:.3f}", f"{g['model_mb_last']:.3f}",
                     f"{g['mb_after_half']:.3f}", f"{g['mb_after_last']:.3f}",
                     "—" if first is None else f"{first:.2f}", f"{g['kb_per_step']:.2f}",
                     g["kind"]])
    lines.append(Table(["method", "state_dict MB", "model MB", "stored MB after step L/2",
                        "after step L", "KB per step (first half)",
                        "KB per step (second half)", "growth"], rows).markdown())
    elapsed = summary.get("elapsed_seconds") or {}
    if elapsed:
        total = sum(elapsed.values())
        lines += ["", "Wall time: " + ", ".join(f"{k} steps {v / 60:.1f} min" for k, v in
                                                 sorted(elapsed.items(), key=lambda x: int(x[0])))
                  + f"; total {total / 60:.1f} min."]
    if summary["unfinished"]:
        lines += ["", "Unfinished (left out): " + "; ".join(summary["unfinished"]) + "."]
    return "\n".join(lines) + "\n"


def _bars(ax, lengths: list[int], stats: list[dict[str, float]], scale: float,
          label: str, shift: float = 0.0) -> None:
    """Mean and min-to-max bars; `shift` (in octaves) keeps methods' bars apart."""
    lengths = [k * 2**shift for k in lengths]
    y = [scale * s["mean"] for s in stats]
    err = [[max(0.0, scale * (s["mean"] - s["min"])) for s in stats],
           [max(0.0, scale * (s["max"] - s["mean"])) for s in stats]]
    ax.errorbar(lengths, y, yerr=err, marker="o", capsize=3, label=label)


def _shift(i: int, n: int) -> float:
    return 0.04 * (i - (n - 1) / 2)


def _against_length(ax, summary: dict[str, Any], key: str, label: str, scale: float) -> None:
    """One panel: `key` against the number of steps, a line per method."""
    methods = summary["methods"]
    for i, (method, m) in enumerate(methods.items()):
        ls = sorted(int(k) for k in m["by_length"])
        _bars(ax, ls, [m["by_length"][str(k)][key] for k in ls], scale, method,
              _shift(i, len(methods)))
    ax.set_xlabel("steps in the stream")
    ax.set_ylabel(label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(summary["lengths"], [str(k) for k in summary["lengths"]])


def figures(out: Path, summary: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tail_bench.reporting.plots import _save

    paths = []
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (key, label) in zip(axes, METRICS.items(), strict=True):
        _against_length(ax, summary, key, label, 100)
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"tail-synth, preset {summary['preset']}: quality against stream length "
                 "(bars: min to max over seeds)", fontsize=9)
    fig.tight_layout()
    paths.append(_save(fig, Path(out) / "quality.png"))

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    for ax, (key, label) in zip(axes.flat, COSTS.items(), strict=False):
        _against_length(ax, summary, key, label, 1)
        if key == "stored_mb":
            ax.set_yscale("log")
    ax = axes[1][1]
    for method, m in summary["methods"].items():
        longest = m["by_length"][str(m["growth"]["length"])]["runs"]
        per_step = np.mean([r["stored_bytes_per_step"] for r in longest], axis=0) / 2**20
        ax.plot(range(1, len(per_step) + 1), per_step, marker=".", label=method)
    ax.set_xlabel("after step (longest stream)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("stored state (MB)")
    ax.set_yscale("log")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("cost against stream length (bars: min to max over seeds)", fontsize=9)
    fig.tight_layout()
    paths.append(_save(fig, Path(out) / "cost.png"))
    return paths


def report(out: Path, *, runs: bool = False) -> dict[str, Any]:
    """table.md, summary.json and the figures, from the run files alone; with `runs`,
    each length's own tables and plots too."""
    from tail_bench.reporting.results import load_clips, write_derived
    from tail_bench.storage import atomic_write_json, atomic_write_text

    if runs:
        for path in sorted(Path(out).glob("runs/length-*")):
            if (path / RUN_FILE).exists():
                run = load_run(path)
                write_derived(path, run, load_clips(path, run))
    summary = collect(out)
    atomic_write_json(Path(out) / "summary.json", summary)
    atomic_write_text(Path(out) / STUDY_TABLE, markdown(summary))
    figures(out, summary)
    return summary
