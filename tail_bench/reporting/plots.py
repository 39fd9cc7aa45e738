"""Plots from a run, rewritten atomically with the tables (when `--report-every` says):

- `r1_t2a.png`, `r1_a2t.png`: R@1 on every data set after every step, a panel per method;
- `r_matrix.png`: each method's results matrix R[i][j] (t2a and a2t R@1) as a heatmap;
- `cost_retention.png`: trainable parameters and training time against final average R@1
  and forgetting, per method, with the seeds' spread (min to max).
The first seed of each method (in the first stream order) is drawn where one seed is
shown; every seed and order counts in the spread.
"""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

import numpy as np

from tail_bench.evaluation import cl_metrics
from tail_bench.record import Entry, Run
from tail_bench.reporting.tables import DIRECTIONS
from tail_bench.storage import atomic_write_bytes


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _first_seed(run: Run) -> list[Entry]:
    seen, out = set(), []
    for e in run.entries:
        if e.rows and e.method not in seen:
            seen.add(e.method)
            out.append(e)
    return out


def curves(out: Path, run: Run, entries: list[Entry]) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = []
    for direction in DIRECTIONS:
        fig, axes = plt.subplots(1, len(entries), figsize=(3.2 * len(entries), 3),
                                 squeeze=False, sharey=True)
        for ax, e in zip(axes[0], entries, strict=True):
            datasets = run.order_of(e)
            r = e.matrix(datasets, direction)
            for j, name in enumerate(datasets):
                ax.plot(range(len(r)), [100 * row[j] for row in r], marker="o", label=name)
            ax.set_title(e.method + ("" if e.finished else f" ({e.status.value})"))
            ax.set_xlabel("after step")
            ax.set_xticks(range(len(r)))
        axes[0][0].set_ylabel(f"{direction} R@1 (%)")
        axes[0][-1].legend(fontsize=7)
        fig.tight_layout()
        paths.append(_save(fig, Path(out) / f"r1_{direction}.png"))
    return paths


def heatmaps(out: Path, run: Run, entries: list[Entry]) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(entries), figsize=(2.6 * len(entries), 5.2),
                             squeeze=False)
    for col, e in enumerate(entries):
        datasets = run.order_of(e)
        for row, direction in enumerate(DIRECTIONS):
            ax = axes[row][col]
            r = 100 * np.array(e.matrix(datasets, direction))
            ax.imshow(r, cmap="viridis", vmin=0, aspect="auto")
            for (i, j), v in np.ndenumerate(r):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="w")
            ax.set_xticks(range(len(datasets)), datasets, rotation=45, fontsize=7)
            ax.set_yticks(range(len(r)), ["0"] + [str(i) for i in range(1, len(r))],
                          fontsize=7)
            ax.set_title(f"{e.method} {direction}", fontsize=8)
            if col == 0:
                ax.set_ylabel("after step")
    fig.tight_layout()
    return _save(fig, Path(out) / "r_matrix.png")


def cost_retention(out: Path, run: Run) -> Path | None:
    """Cost (x) against retention (y) for every finished continual method; none for a
    one-step stream, where forgetting is undefined."""
    import matplotlib.pyplot as plt

    datasets = run.datasets
    if len(datasets) < 2:
        return None
    by: dict[str, list[Entry]] = defaultdict(list)
    for e in run.finished():
        if len(e.rows) == len(datasets) + 1:
            by[e.method].append(e)
    if not by:
        return None
    fig, axes = plt.subplots(2, 2, figsize=(8, 6.4))
    for method, entries in by.items():
        r = [np.array(e.matrix(run.order_of(e), "t2a")) for e in entries]
        ys = {"final average t2a R@1 (%)": [100 * cl_metrics.final_average(m) for m in r],
              "forgetting t2a R@1 (%)": [100 * cl_metrics.mean_forgetting(m) for m in r]}
        xs = {"trainable parameters": [e.cost["trainable_params"] for e in entries],
              "training time (s)": [e.cost["train_seconds"] for e in entries]}
        for row, (ylabel, y) in enumerate(ys.items()):
            for col, (xlabel, x) in enumerate(xs.items()):
                ax = axes[row][col]
                ax.errorbar(np.mean(x), np.mean(y), fmt="o", xerr=_spread(x), yerr=_spread(y))
                ax.annotate(method, (np.mean(x), np.mean(y)), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
                ax.set_xlabel(xlabel)
                ax.set_ylabel(ylabel)
                if col == 0:
                    ax.set_xscale("log")
    fig.suptitle("cost against retention (bars: min to max over seeds)", fontsize=9)
    fig.tight_layout()
    return _save(fig, Path(out) / "cost_retention.png")


def _spread(values: list[float]) -> list[list[float]]:
    """Error bars from the mean to the min and max; never negative (the mean of equal
    values can fall an ulp outside them, which matplotlib refuses)."""
    m = float(np.mean(values))
    return [[max(0.0, m - min(values))], [max(0.0, max(values) - m)]]


def write_plots(out: Path, run: Run) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    entries = [e for e in _first_seed(run) if len(e.rows) > 1]
    if not entries:
        return []
    paths = [*curves(out, run, entries), heatmaps(out, run, entries)]
    extra = cost_retention(out, run)
    return paths + ([extra] if extra else [])
