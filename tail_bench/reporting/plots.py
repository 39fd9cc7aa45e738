"""Plots from a run file: R@1 on every data set after every step, one panel per method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tail_bench.reporting.tables import DIRECTIONS, matrix


def write_plots(out: Path, run: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = run["stream"]["datasets"]
    entries = [e for e in run["runs"] if len(e["rows"]) > 1 and e["seed"] == run["runs"][0]["seed"]]
    paths = []
    for direction in DIRECTIONS:
        if not entries:
            break
        fig, axes = plt.subplots(1, len(entries), figsize=(3.2 * len(entries), 3),
                                 squeeze=False, sharey=True)
        for ax, e in zip(axes[0], entries, strict=True):
            r = matrix(e, datasets, direction)
            for j, name in enumerate(datasets):
                ax.plot(range(len(r)), [100 * row[j] for row in r], marker="o", label=name)
            ax.set_title(e["method"])
            ax.set_xlabel("after step")
            ax.set_xticks(range(len(r)))
        axes[0][0].set_ylabel(f"{direction} R@1 (%)")
        axes[0][-1].legend(fontsize=7)
        fig.tight_layout()
        path = Path(out) / f"r1_{direction}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
