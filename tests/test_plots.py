"""The figures stay legible with 2 and with 11 methods: checked from matplotlib's own layout
(every panel at least MIN_PANEL inches, no two pieces of text overlapping, every text inside
the figure), on a run file made up here so the layout, not the scores, is under test."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tail_bench.record import Run
from tail_bench.reporting import plots

DATASETS = ["audiocaps", "clotho", "bbc", "audioset"]
ELEVEN = ["ptat", "finetune", "lwf", "ewc", "l2p", "er", "zscl", "coda-prompt", "lora",
          "joint", "zeroshot"]
TWO = ["ptat", "finetune+EWCPlugin(ewc_lambda=10000)"]  # a plugin's spec is a long name
FULL = 1_040_897  # every parameter: five methods tie here, as in a real run
PARAMS = {"ptat": 165_889, "l2p": 140_000, "coda-prompt": 300_000, "lora": 180_000}
MIN_PANEL = (2.4, 1.8)  # inches: the least width and height of any panel
FIGURES = {"r1_t2a.png", "r1_a2t.png", "r_matrix.png", "avg_r1.png", "cost_retention.png"}


def made_up_run(methods: list[str], seeds: int = 3) -> Run:
    rng = np.random.default_rng(0)
    runs = []
    for seed in range(seeds):
        for m in methods:
            steps = {"joint": 1, "zeroshot": 0}.get(m, len(DATASETS))
            rows = []
            for s in range(steps + 1):
                scores = {d: {dr: {"R@1": {"value": float(rng.uniform(0.1, 0.3)),
                                           "ci95": [0.05, 0.35]}}
                              for dr in ("t2a", "a2t")} for d in DATASETS}
                rows.append({"step": s, "after": DATASETS[s - 1] if s else None,
                             "scores": scores})
            runs.append({"method": m, "seed": seed, "status": "done",
                         "role": {"joint": "joint", "zeroshot": "zero-shot"}.get(m,
                                                                                 "continual"),
                         "rows": rows,
                         "cost": {"trainable_params": PARAMS.get(m, FULL),
                                  "train_seconds": float(rng.uniform(30, 90))}})
    return Run.from_json({"schema": 2, "stream": {"datasets": DATASETS},
                          "config": {"strategy": methods[0]}, "runs": runs})


def texts(fig, renderer) -> list:
    """Every drawn, non-empty text of a figure: titles, axis and tick labels, cell values,
    legends."""
    found = [t for t in fig.texts if t.get_visible()]
    found += [t for leg in fig.legends for t in leg.get_texts()]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        box = ax.get_window_extent(renderer)
        found += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        if ax.get_legend():
            found += ax.get_legend().get_texts()
        for axis, lo, hi in ((ax.xaxis, box.x0, box.x1), (ax.yaxis, box.y0, box.y1)):
            for t in axis.get_ticklabels(which="both"):
                c = t.get_window_extent(renderer)
                mid = (c.x0 + c.x1) / 2 if axis is ax.xaxis else (c.y0 + c.y1) / 2
                if lo - 1 <= mid <= hi + 1:  # ticks outside the view are not drawn
                    found.append(t)
    return [t for t in found if t.get_visible() and t.get_text().strip()]


def layout_problems(fig) -> list[str]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    dpi = fig.dpi
    out = []
    for ax in fig.axes:
        b = ax.get_window_extent(renderer)
        if ax.get_visible() and (b.width < MIN_PANEL[0] * dpi or b.height < MIN_PANEL[1] * dpi):
            out.append(f"panel {ax.get_title()!r} is {b.width / dpi:.2f} x "
                       f"{b.height / dpi:.2f} in")
    page = fig.bbox
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts(fig, renderer)]
    for text, b in boxes:
        if b.x0 < page.x0 - 1 or b.y0 < page.y0 - 1 or b.x1 > page.x1 + 1 or b.y1 > page.y1 + 1:
            out.append(f"{text!r} leaves the figure")
    for (ta, a), (tb, b) in itertools.combinations(boxes, 2):
        w = min(a.x1, b.x1) - max(a.x0, b.x0)
        h = min(a.y1, b.y1) - max(a.y0, b.y0)
        if w > 1 and h > 1:  # more than a pixel each way: touching is not overlapping
            out.append(f"{ta!r} overlaps {tb!r}")
    return out


@pytest.mark.parametrize("methods", [TWO, ELEVEN], ids=["2 methods", "11 methods"])
def test_every_figure_is_legible(tmp_path, monkeypatch, methods):
    problems: dict[str, list[str]] = {}
    save = plots._save

    def checked(fig, path):
        problems[path.name] = layout_problems(fig)
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", checked)
    paths = plots.write_plots(tmp_path, made_up_run(methods))
    assert {p.name for p in paths} == FIGURES
    assert problems == {name: [] for name in FIGURES}
    for p in paths:
        assert p.stat().st_size > 5000
        assert p.with_suffix(".svg").read_text().lstrip().startswith("<?xml")


def test_panels_wrap_at_four_per_row(tmp_path, monkeypatch):
    shapes = {}
    save = plots._save

    def record(fig, path):
        shapes[path.name] = {(round(ax.get_position().x0, 2)) for ax in fig.axes
                             if ax.get_visible()}
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", record)
    plots.write_plots(tmp_path, made_up_run(ELEVEN))
    assert len(shapes["r1_t2a.png"]) == plots.COLUMNS  # 10 methods with rows: 4 + 4 + 2
    assert len(shapes["r_matrix.png"]) == plots.COLUMNS


def test_svg_rebuilds_byte_identically(tmp_path):
    run = made_up_run(TWO)
    plots.write_plots(tmp_path / "a", run)
    plots.write_plots(tmp_path / "b", run)
    for name in FIGURES:
        svg = name.replace(".png", ".svg")
        assert (tmp_path / "a" / svg).read_bytes() == (tmp_path / "b" / svg).read_bytes()
