"""--orders K: every method over K stream orders (the given one, then seeded shuffles),
crossed with the seeds. The comparison table pools orders and seeds with its per-data-set
columns taken by data set name, ranks every method in every order and marks those whose
rank changes; --resume and report merging key runs by (method, seed, order)."""

import dataclasses
import json
import shutil
from statistics import mean, stdev

import pytest

from tail_bench.cli import main
from tail_bench.evaluation import cl_metrics
from tail_bench.record import Run, Status, load_run
from tail_bench.reporting.results import load_clips
from tail_bench.reporting.tables import CHANGES, comparison_table
from tail_bench.streams.stream import stream_orders

FIRST = ["audiocaps", "clotho"]  # two data sets: the other order moves every one of them
QUICK = ["--preset", "quick", "--epochs", "1", "--no-progress", "--no-tensorboard",
         "--order", ",".join(FIRST)]


@pytest.fixture(scope="module")
def two_orders(tmp_path_factory, _cache):
    out = tmp_path_factory.mktemp("orders") / "run"
    main(["run", "--strategy", "finetune", "--baselines", "ewc", "--orders", "2", *QUICK,
          "--out", str(out)])
    return out


def _row(table, method):
    return next(r for r in table.rows if r[0].split()[0] == method)


def _t2a(cell: str) -> str:
    """The t2a value of a `t2a / a2t` cell, without its interval or arrow."""
    return cell.split(" / ")[0].split(" [")[0].rstrip("↑↓")


def test_each_order_is_a_run_of_its_own(two_orders):
    run = load_run(two_orders)
    orders = run.resolved["orders"]
    assert orders == stream_orders(FIRST, 2) == [FIRST, FIRST[::-1]]
    assert stream_orders(["a", "b", "c", "d"], 5)[:3] == stream_orders(["a", "b", "c", "d"], 3)
    assert run.config["orders"] == 2 and run.datasets == FIRST
    assert [(e.method, e.seed, e.order_index, e.order) for e in run.entries] == [
        ("finetune", 0, 0, FIRST), ("ewc", 0, 0, FIRST),
        ("finetune", 0, 1, FIRST[::-1]), ("ewc", 0, 1, FIRST[::-1])]
    for e in run.entries:
        assert e.status is Status.DONE
        assert [r.after for r in e.rows[1:]] == e.order
        assert e.rows[0].scores == run.entries[0].rows[0].scores  # one row 0
        assert all(r.model_bytes > 0 for r in e.rows[1:])
    ewc = [r.state_bytes for r in run.entries[1].rows[1:]]
    assert ewc[0] == ewc[1] > run.entries[1].rows[1].model_bytes  # Fisher and anchor
    assert run.entries[0].rows[1].state_bytes == len("{}")  # finetune keeps nothing
    assert sorted(p.name for p in (two_orders / "clips").iterdir()) == [
        "ewc-s0-o1.npz", "ewc-s0.npz", "finetune-s0-o1.npz", "finetune-s0.npz"]
    table = (two_orders / "tables.md").read_text()
    assert "Stream orders (1: audiocaps → clotho; 2: clotho → audiocaps)" in table
    assert "**ewc** (seed 0, order 2), t2a R@1 (%)" in table
    (two_orders / "tables.md").unlink()
    main(["report", str(two_orders)])  # rebuilt from run.json alone
    assert (two_orders / "tables.md").read_text() == table


def test_columns_are_aligned_by_data_set_name(two_orders):
    run = load_run(two_orders)
    clips = load_clips(two_orders, run)
    # the reversed order alone: each data set's column holds that data set's final score,
    # which sits in the other position of the run's results matrix
    reversed_only = Run(run.header, [e for e in run.entries if e.order_index == 1])
    table = comparison_table(reversed_only, clips)
    for e in reversed_only.entries:
        row = _row(table, e.method)
        for ds in FIRST:
            cell = row[table.header.index(f"{ds} R@1 t2a / a2t")]
            final = e.rows[-1].score(ds, "t2a")
            assert _t2a(cell) == f"{100 * final:.1f}", (e.method, ds)
            assert e.matrix(e.order, "t2a")[-1][e.order.index(ds)] == final
    # both orders: mean ± std of each data set's final scores, found by name in each run
    table = comparison_table(run, clips)
    assert table.header[1] == "seeds × orders"
    for method in ("finetune", "ewc"):
        row, runs = _row(table, method), [e for e in run.entries if e.method == method]
        assert row[1] == "1 × 2"
        for ds in FIRST:
            values = [e.rows[-1].score(ds, "t2a") for e in runs]
            assert _t2a(row[table.header.index(f"{ds} R@1 t2a / a2t")]) == \
                f"{100 * mean(values):.1f}±{100 * stdev(values):.1f}"
        # learning accuracy is each run's diagonal in its own order
        la = [cl_metrics.learning_accuracy(e.matrix(e.order, "t2a")) for e in runs]
        assert _t2a(row[table.header.index("learning acc R@1 t2a / a2t")]) == \
            f"{100 * mean(la):.1f}±{100 * stdev(la):.1f}"


def _expected_marks(run):
    final = {(e.order_index, e.method): cl_metrics.final_average(
        e.matrix(e.order, "t2a")) for e in run.entries}
    ranks = {}
    for (k, method), v in final.items():
        rivals = [w for (j, _), w in final.items() if j == k]
        ranks.setdefault(method, {})[k] = 1 + sum(w > v + 1e-9 for w in rivals)
    return ranks, {m: len(set(r.values())) > 1 for m, r in ranks.items()}


@pytest.mark.parametrize("shift", [None, (0.5, -0.5), (0.5, 0.5)],
                         ids=["as-run", "ewc-first-then-last", "ewc-first-in-both"])
def test_rank_changes_are_marked_from_the_numbers(two_orders, shift):
    run = load_run(two_orders)
    if shift is not None:  # move ewc's final scores: above or below finetune in each order
        for e in run.entries:
            if e.method == "ewc":
                for ds in FIRST:
                    score = e.rows[-1].scores[ds]["t2a"]["R@1"]
                    score["value"] = min(1.0, max(0.0, score["value"] + shift[e.order_index]))
    ranks, changes = _expected_marks(run)
    if shift == (0.5, -0.5):
        assert changes == {"finetune": True, "ewc": True}
    elif shift == (0.5, 0.5):
        assert changes == {"finetune": False, "ewc": False}
    table = comparison_table(run)
    for method in ("finetune", "ewc"):
        row = _row(table, method)
        assert (CHANGES in row[0]) == changes[method], (method, ranks)
        assert row[-1] == f"1: {ranks[method][0]}, 2: {ranks[method][1]}"


def test_resume_continues_each_order_on_its_own(two_orders, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(two_orders, out)
    run = json.loads((out / "run.json").read_text())
    cut = next(e for e in run["runs"] if e["method"] == "ewc" and e["order_index"] == 1)
    cut["status"], cut["rows"] = "interrupted", cut["rows"][:2]  # killed in its second step
    (out / "run.json").write_text(json.dumps(run))
    main(["run", "--resume", str(out), "--no-progress"])
    straight, resumed = load_run(two_orders).entries, load_run(out).entries
    assert [(e.method, e.order_index, e.status) for e in resumed] == [
        (e.method, e.order_index, Status.DONE) for e in straight]
    for a, b in zip(straight, resumed, strict=True):  # ewc order 2 again, the same floats
        assert [r.scores for r in a.rows] == [r.scores for r in b.rows], a.method


def test_report_merges_jobs_of_different_orders(two_orders, tmp_path, capsys):
    jobs = []
    for k in (0, 1):  # each order's runs written by a job of its own
        jobs.append(tmp_path / f"order-{k}")
        shutil.copytree(two_orders, jobs[-1])
        run = json.loads((jobs[-1] / "run.json").read_text())
        run["runs"] = [e for e in run["runs"] if e["order_index"] == k]
        (jobs[-1] / "run.json").write_text(json.dumps(run))
    main(["report", *map(str, jobs), "--out", str(tmp_path / "all")])
    merged = load_run(tmp_path / "all")
    assert [(e.method, e.order_index) for e in merged.entries] == [
        ("finetune", 0), ("ewc", 0), ("finetune", 1), ("ewc", 1)]
    assert (tmp_path / "all" / "clips" / "ewc-s0-o1.npz").exists()
    original = load_run(two_orders)
    assert comparison_table(merged, load_clips(tmp_path / "all", merged)).rows == \
        comparison_table(original, load_clips(two_orders, original)).rows
    capsys.readouterr()
    with pytest.raises(SystemExit, match=r"finetune seed 0 order 2 is also in .*merge each"):
        main(["report", str(jobs[1]), str(jobs[1])])


def test_a_run_stopped_in_its_first_order_still_shows_its_orders(two_orders):
    """Tables written before order 2 starts (a stop, or --report-every method) keep the
    orders header and legend: they come from what the run was asked for."""
    from tail_bench.reporting.tables import render

    run = load_run(two_orders)
    run = dataclasses.replace(run, entries=[e for e in run.entries if e.order_index == 0])
    table = render(run, None)
    assert "Stream orders (1: audiocaps → clotho; 2: clotho → audiocaps)" in table
    assert "| seeds × orders |" in table
