"""The console summary of a run: at most 100 columns, the comparison table's figures in its
order, then where the full results are. Read from the shipped reference run (8 methods, one
of them named by a 37-character plugin spec)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tail_bench.evaluation import cl_metrics
from tail_bench.record import Run, load_run
from tail_bench.reporting.results import load_clips
from tail_bench.reporting.summary import WIDTH, console_summary

REFERENCE = Path(__file__).parent.parent / "results/reference/tail-synth-default/run"
LONG = "finetune+EWCPlugin(ewc_lambda=10000)"


@pytest.fixture(scope="module")
def reference():
    return load_run(REFERENCE)


def lines_of(text: str, method: str) -> str:
    """The figures line of `method` (its own line, or the next one for a long name)."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.split()[0] == method)
    return lines[i + 1] if lines[i].strip() == method else lines[i]


def test_five_seeds_fit_in_100_columns_with_the_tables_figures(reference, tmp_path):
    (tmp_path / "avg_r1.png").write_bytes(b"")
    text = console_summary(reference, None, tmp_path)
    assert max(map(len, text.splitlines())) <= WIDTH
    methods = [line.split()[0] for line in text.splitlines()[2:11] if line[0] != " "]
    assert methods[:3] == ["zeroshot", "ptat", "finetune"] and methods[-1] == "joint"
    ptat = lines_of(text, "ptat").split()
    # mean±std over 5 seeds, as tables.md shows them; learning acc and forgetting t2a/a2t
    assert ptat[1:6] == ["17.9±0.6", "18.3±0.6", "19.2/19.5", "1.9/1.7", "15.94%"]
    seconds = np.mean([e.cost["train_seconds"] for e in reference.entries
                       if e.method == "ptat"])
    assert ptat[6] == f"{seconds:.0f}"
    assert lines_of(text, "joint").split()[3:5] == ["—", "—"]
    assert LONG in text.splitlines() and lines_of(text, LONG).split()[0] == "20.4±0.3"
    assert f"Full tables: {tmp_path}/tables.md" in text
    assert f"Plots: {tmp_path}/ avg_r1 (.png and .svg)." in text


def test_one_seed_shows_each_average_with_its_interval(reference, tmp_path):
    run = Run(reference.header, [e for e in reference.entries if e.seed == 0])
    text = console_summary(run, load_clips(REFERENCE, run), tmp_path)
    assert max(map(len, text.splitlines())) <= WIDTH
    ptat = next(e for e in run.entries if e.method == "ptat")
    r = ptat.matrix(run.order_of(ptat), "t2a")
    figures = lines_of(text, "ptat")
    assert figures.split()[1] == f"{100 * cl_metrics.final_average(r):.1f}"
    assert figures.split()[2].startswith("[") and "value [95% interval]" in text
    finetune = lines_of(text, "finetune")
    assert "↑" in finetune or "↓" in finetune  # significance marks come with the clips


def test_train_time_comes_from_finished_entries_only(reference, tmp_path):
    """An interrupted seed of a method (no cost yet) does not pull its train time down."""
    import dataclasses

    from tail_bench.record import Status

    seed0 = [e for e in reference.entries if e.seed == 0]
    ptat = next(e for e in seed0 if e.method == "ptat")
    cut = dataclasses.replace(ptat, seed=9, status=Status.INTERRUPTED, cost=None,
                              rows=ptat.rows[:2])
    done = console_summary(Run(reference.header, seed0), None, tmp_path)
    partial = console_summary(Run(reference.header, [*seed0, cut]), None, tmp_path)
    assert lines_of(partial, "ptat").split()[-1] == lines_of(done, "ptat").split()[-1] \
        == f"{ptat.cost['train_seconds']:.0f}"
