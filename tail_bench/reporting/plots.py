"""Plots from a run, rewritten atomically with the tables (when `--report-every` says;
each as PNG and SVG):

- `avg_r1.png`: every method in one panel per direction: average R@1 over the data sets
  seen so far after each step (mean over seeds and orders; band: min to max); methods
  that train once (joint) or never (zero-shot) are a horizontal line at their final
  average;
- `r1_t2a.png`, `r1_a2t.png`: R@1 on every data set after every step, a panel per method;
- `r_matrix.png`: each method's results matrix R[i][j] (t2a and a2t R@1) as a heatmap;
- `cost_retention.png`: trainable parameters and training time against final average R@1
  and forgetting, per method, with the seeds' spread (min to max).
Per-method figures are a grid of at most `COLUMNS` panels per row, each panel `PANEL`
inches whatever the number of methods, with one legend for the figure. The first seed of
each method (in the first stream order) is drawn where one seed is shown; every seed and
order counts in the spread.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from tail_bench.evaluation import cl_metrics
from tail_bench.record import Entry, Run
from tail_bench.reporting.tables import DIRECTIONS
from tail_bench.storage import atomic_write_bytes

COLUMNS = 4  # panels per row at most
PANEL = (3.2, 2.6)  # inches per panel
DPI = 90
CELL_TEXT_MAX = 8  # heatmaps write their values in the cells up to this many data sets
MARKERS = "osD^vP*Xh<>"
TITLE = 30  # characters per line of a panel title


def _save(fig, path: Path) -> Path:
    """`path` (PNG) and the same figure as SVG next to it. The layout is computed once (the
    PNG's) and kept for the SVG. The SVG keeps text as text (editable, and a third of the
    time of drawing glyphs as paths), and carries no date and fixed element ids, so a
    rebuild from the same run file gives the same bytes."""
    import matplotlib.pyplot as plt

    for fmt, target in (("png", path), ("svg", path.with_suffix(".svg"))):
        buf = io.BytesIO()
        meta = {"Date": None} if fmt == "svg" else None
        with plt.rc_context({"svg.hashsalt": "tail-bench", "svg.fonttype": "none"}):
            fig.savefig(buf, format=fmt, dpi=DPI, metadata=meta)
        fig.set_layout_engine("none")
        atomic_write_bytes(target, buf.getvalue())
    plt.close(fig)
    return path


def _first_seed(run: Run) -> list[Entry]:
    seen, out = set(), []
    for e in run.entries:
        if e.rows and e.method not in seen:
            seen.add(e.method)
            out.append(e)
    return out


def _style(i: int) -> dict[str, Any]:
    """Method i's colour and marker, the same in every figure (11 methods stay apart)."""
    return {"color": f"C{i % 10}", "marker": MARKERS[i % len(MARKERS)]}


def _title(text: str) -> str:
    """A panel title on lines that fit the panel (a plugin's spec is one long word)."""
    return "\n".join(textwrap.wrap(text, TITLE))


def _grid(n: int, rows_each: int = 1):
    """A figure of n panels (times `rows_each` rows per panel), at most COLUMNS per row."""
    import matplotlib.pyplot as plt

    cols = min(n, COLUMNS)
    rows = math.ceil(n / cols) * rows_each
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL[0] * cols, PANEL[1] * rows + 0.6),
                             squeeze=False, layout="constrained")
    return fig, axes


def _hide_unused(axes, used: set[tuple[int, int]]) -> None:
    for (i, j), ax in np.ndenumerate(axes):
        if (i, j) not in used:
            ax.set_visible(False)


def curves(out: Path, run: Run, entries: list[Entry]) -> list[Path]:
    paths = []
    for direction in DIRECTIONS:
        fig, axes = _grid(len(entries))
        handles: dict[str, Any] = {}
        for k, e in enumerate(entries):
            ax = axes[k // COLUMNS][k % COLUMNS]
            datasets = run.order_of(e)
            r = e.matrix(datasets, direction)
            for j, name in enumerate(datasets):
                (handles[name],) = ax.plot(range(len(r)), [100 * row[j] for row in r],
                                           marker="o", markersize=3, label=name,
                                           color=f"C{j % 10}")
            ax.set_title(_title(e.method + ("" if e.finished
                                           else f" ({e.status.value})")), fontsize=9)
            ax.set_xlabel("after step", fontsize=8)
            ax.set_ylabel(f"{direction} R@1 (%)", fontsize=8)
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.tick_params(labelsize=7)
        _hide_unused(axes, {(k // COLUMNS, k % COLUMNS) for k in range(len(entries))})
        fig.legend(handles.values(), handles.keys(), loc="outside lower center",
                   ncol=min(len(handles), 6), fontsize=7)
        paths.append(_save(fig, Path(out) / f"r1_{direction}.png"))
    return paths


def heatmaps(out: Path, run: Run, entries: list[Entry]) -> Path:
    """Two rows of panels per row of methods: t2a above a2t."""
    fig, axes = _grid(len(entries), rows_each=2)
    used = set()
    for k, e in enumerate(entries):
        datasets = run.order_of(e)
        for d, direction in enumerate(DIRECTIONS):
            i, j = 2 * (k // COLUMNS) + d, k % COLUMNS
            used.add((i, j))
            ax = axes[i][j]
            r = 100 * np.array(e.matrix(datasets, direction))
            ax.imshow(r, cmap="viridis", vmin=0, aspect="auto")
            if len(datasets) <= CELL_TEXT_MAX:
                for (a, b), v in np.ndenumerate(r):
                    ax.text(b, a, f"{v:.0f}", ha="center", va="center", fontsize=7,
                            color="w")
            ax.set_xticks(range(len(datasets)), datasets, rotation=90, fontsize=6)
            ax.set_yticks(range(len(r)), [str(s) for s in range(len(r))], fontsize=6)
            ax.set_title(_title(f"{e.method} {direction}"), fontsize=8)
            ax.set_ylabel("after step", fontsize=7)
    _hide_unused(axes, used)
    return _save(fig, Path(out) / "r_matrix.png")


def _by_method(run: Run) -> dict[str, list[Entry]]:
    by: dict[str, list[Entry]] = defaultdict(list)
    for e in run.finished():
        by[e.method].append(e)
    return by


def average_curves(out: Path, run: Run, styles: dict[str, dict]) -> Path | None:
    """`avg_r1.png`: every method's average R@1 over the data sets seen so far."""
    import matplotlib.pyplot as plt

    by = _by_method(run)
    steps = len(run.datasets)
    if not by or steps < 2:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(2 * PANEL[0] * 1.3, PANEL[1] * 1.6),
                             layout="constrained", sharey=True)
    for ax, direction in zip(axes, DIRECTIONS, strict=True):
        for method, entries in by.items():
            style = styles[method]
            r = np.array([e.matrix(run.order_of(e), direction) for e in entries])
            if r.shape[1] == steps + 1:
                seen = 100 * np.array([cl_metrics.average_after(r, i)
                                       for i in range(steps + 1)])  # (steps + 1, runs)
                ax.plot(range(steps + 1), seen.mean(1), label=method, markersize=4, **style)
                ax.fill_between(range(steps + 1), seen.min(1), seen.max(1), alpha=0.15,
                                color=style["color"], linewidth=0)
            else:
                ax.axhline(100 * np.mean(cl_metrics.final_average(r)), color=style["color"],
                           linestyle=":", label=f"{method} (not continual)")
        ax.set_title(f"{direction}: average R@1 over the data sets seen", fontsize=9)
        ax.set_xlabel("after step (0: zero-shot, every data set)", fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("R@1 (%)", fontsize=8)
    _legend_below(fig, axes[0])
    return _save(fig, Path(out) / "avg_r1.png")


def _legend_below(fig, ax) -> None:
    """One legend for the figure, under its panels: long method names (a plugin's spec)
    take no width from them."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", fontsize=7,
               ncol=max(1, min(4, len(labels), 150 // max(map(len, labels)))))


def _log_axis(ax, values: list[float]) -> None:
    """A log x axis labelled at whole decades only, spanning at least two of them."""
    from matplotlib.ticker import LogLocator, NullFormatter

    lo, hi = min(values), max(values)
    ax.set_xscale("log")
    ax.set_xlim(10 ** math.floor(math.log10(lo) - 0.05), 10 ** math.ceil(math.log10(hi) + 0.05))
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_minor_formatter(NullFormatter())


def cost_retention(out: Path, run: Run, styles: dict[str, dict]) -> Path | None:
    """Cost (x) against retention (y) for every finished continual method; none for a
    one-step stream, where forgetting is undefined. Methods are told apart by a legend
    (colour and marker), not by labels next to the points, which overlap where costs tie."""
    import matplotlib.pyplot as plt

    datasets = run.datasets
    if len(datasets) < 2:
        return None
    by = {m: [e for e in es if len(e.rows) == len(datasets) + 1]
          for m, es in _by_method(run).items()}
    by = {m: es for m, es in by.items() if es}
    if not by:
        return None
    fig, axes = plt.subplots(2, 2, figsize=(2 * PANEL[0] * 1.2, 2 * PANEL[1] * 1.3),
                             layout="constrained")
    params = []
    for method, entries in by.items():
        r = [np.array(e.matrix(run.order_of(e), "t2a")) for e in entries]
        ys = {"final average t2a R@1 (%)": [100 * cl_metrics.final_average(m) for m in r],
              "forgetting t2a R@1 (%)": [100 * cl_metrics.mean_forgetting(m) for m in r]}
        xs = {"trainable parameters": [e.cost["trainable_params"] for e in entries],
              "training time (s)": [e.cost["train_seconds"] for e in entries]}
        params += xs["trainable parameters"]
        for row, (ylabel, y) in enumerate(ys.items()):
            for col, (xlabel, x) in enumerate(xs.items()):
                ax = axes[row][col]
                ax.errorbar(np.mean(x), np.mean(y), xerr=_spread(x), yerr=_spread(y),
                            label=method, linestyle="none", **styles[method])
                ax.set_xlabel(xlabel, fontsize=8)
                ax.set_ylabel(ylabel, fontsize=8)
                ax.tick_params(labelsize=7)
    for ax in axes[:, 0]:
        _log_axis(ax, params)
    _legend_below(fig, axes[0][0])
    fig.suptitle("cost against retention (bars: min to max over seeds)", fontsize=9)
    return _save(fig, Path(out) / "cost_retention.png")


def _spread(values: list[float]) -> list[list[float]]:
    """Error bars from the mean to the min and max; never negative (the mean of equal
    values can fall an ulp outside them, which matplotlib refuses)."""
    m = float(np.mean(values))
    return [[max(0.0, m - min(values))], [max(0.0, max(values) - m)]]


def write_plots(out: Path, run: Run) -> list[Path]:
    """Every figure of a run (PNG paths; an SVG lies next to each)."""
    import matplotlib

    matplotlib.use("Agg")
    entries = [e for e in _first_seed(run) if len(e.rows) > 1]
    if not entries:
        return []
    styles = {e.method: _style(i) for i, e in enumerate(_first_seed(run))}
    paths = [*curves(out, run, entries), heatmaps(out, run, entries)]
    paths += [p for p in (average_curves(out, run, styles), cost_retention(out, run, styles))
              if p is not None]
    return paths
