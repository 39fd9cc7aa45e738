"""benchmarks/stream_length.py on the quick preset at tiny lengths: the configs replay,
and the table's values are the run files' (`tail-bench report` rebuilds them without
training)."""

import json
from statistics import mean, stdev

import pytest

from tail_bench.config import load_file
from tail_bench.evaluation import cl_metrics
from tail_bench.record import Entry, Status, load_run

METHODS = ["ewc", "l2p"]  # a fixed-size state (Fisher, anchor), a growing one (usage history)


def _final(entry):
    return cl_metrics.final_average(entry.matrix(entry.order, "t2a"))


def _cell(values):
    return f"{100 * mean(values):.1f} ± {100 * stdev(values):.1f}"


def test_stored_state_is_counted_as_a_checkpoint_keeps_it():
    import torch

    from tail_bench.training.checkpoint import state_bytes

    state = {"fisher": {"w": torch.zeros(10, 10)}, "anchor": [torch.zeros(5, dtype=torch.half)],
             "usage": [[1, 2], [3]]}
    skeleton = {"fisher": {"w": {"__tensor__": ""}}, "anchor": [{"__tensor__": ""}],
                "usage": [[1, 2], [3]]}
    assert state_bytes(state) == 400 + 10 + len(json.dumps(skeleton))
    assert state_bytes({}) == 2


@pytest.mark.parametrize("series, kind", [
    ([[5, 5, 5, 5]], "constant"),
    ([[1, 2, 3, 4, 5, 6]], "without bound"),          # steady growth
    ([[1, 4, 6, 7, 7, 8]], "bounded"),               # levels off in the second half
    ([[1, 3, 5, 7, 9, 11], [1, 3, 5, 5, 9, 11]], "bounded"),  # one seed stalls
    ([[1, 2, 3]], "too short to tell"),               # no first half to compare with
])
def test_growth_kinds(series, kind):
    from tail_bench.reporting.study import _growth

    g = _growth(series)
    assert g["kind"] == kind and g["grows"] == (kind == "without bound")
    if kind == "without bound":
        assert g["kb_per_step"] == pytest.approx((6 - 3) / 3 / 1024)


def test_tables_are_rewritten_after_each_method_by_default():
    """run.json after every step; rendering the tables after each of them cost the
    README's main job about 100 s of its 13.8 min, so the default is once per method."""
    from tail_bench.config import RunConfig, default

    assert default("report_every") == "method" == RunConfig(strategy="ptat").report_every


@pytest.mark.parametrize("every, writes", [("step", 4), ("method", 1), ("run", 1)])
def test_report_every_says_when_tables_and_plots_are_rewritten(every, writes, tmp_path,
                                                               monkeypatch):
    from tail_bench.reporting import results

    calls = []
    monkeypatch.setattr(results, "write_derived", lambda *a, **k: calls.append(1))
    store = results.RunStore(tmp_path, {"stream": {}}, report_every=every)  # a save
    entry = store.start(Entry(method="m", seed=0, status=Status.RUNNING))
    store.save()
    store.save()
    store.finish(entry, cost={}, extra={})
    store.close()
    assert len(calls) == writes
    assert json.loads((tmp_path / "run.json").read_text())["runs"][0]["status"] == "done"


def test_the_study_table_comes_from_the_run_files(tmp_path, _cache, monkeypatch, capsys):
    from tail_bench.benchmarks import stream_length as study

    from tail_bench.reporting import results

    out = tmp_path / "study"
    derived = []
    write_derived = results.write_derived
    monkeypatch.setattr(results, "write_derived",
                        lambda *a, **k: derived.append(a[0]) or write_derived(*a, **k))
    study.main(["--out", str(out), "--lengths", "2", "3", "--seeds", "0", "1", "--methods",
                *METHODS, "--epochs", "1", "--no-progress"])
    # --report-every run: each length's tables and plots once, when its run ends
    assert derived == [out / "runs" / "length-2", out / "runs" / "length-3"]
    assert (out / "runs" / "length-3" / "tables.md").exists()
    for length in (2, 3):
        run = load_run(out / "runs" / f"length-{length}")
        replay = load_file(out / "configs" / f"length-{length}.yaml")
        assert replay == {k: v for k, v in run.config.items() if k != "out"}
        assert replay["length"] == length and replay["preset"] == "quick"
    for name in ("table.md", "summary.json", "quality.png", "cost.png", "study.json"):
        assert (out / name).stat().st_size > 100, name

    def check(table: str, summary: dict) -> None:
        for length in (2, 3):
            run = load_run(out / "runs" / f"length-{length}")
            for method in METHODS:
                runs = [e for e in run.entries if e.method == method]
                finals = [_final(e) for e in runs]
                forget = [cl_metrics.mean_forgetting(e.matrix(e.order, "t2a"))
                          for e in runs]
                cell = summary["methods"][method]["by_length"][str(length)]
                assert cell["final_average"]["mean"] == pytest.approx(mean(finals))
                assert cell["seeds"] == [0, 1]
                assert f"| {method} | {length} | 2 | {_cell(finals)} |" in table
                assert f" | {_cell(forget)} | " in table
                state = [e.rows[-1].state_bytes + e.rows[-1].model_bytes for e in runs]
                assert cell["stored_mb"]["mean"] == pytest.approx(mean(state) / 2**20)
        growth = {m: summary["methods"][m]["growth"] for m in METHODS}
        # 3 steps: L2P's usage history grows, but there is no first half to compare with
        assert growth["l2p"]["kind"] == "too short to tell"
        assert growth["l2p"]["kb_per_step"] > 0
        assert growth["ewc"]["kind"] == "constant" and growth["ewc"]["kb_per_step"] == 0
        assert "| l2p | " in table and " | too short to tell |" in table

    check((out / "table.md").read_text(), json.loads((out / "summary.json").read_text()))

    # a changed run file changes the table, rebuilt with no training at all
    import tail_bench.runner as runner

    monkeypatch.setattr(runner, "run", lambda *a, **k: 1 / 0)
    path = out / "runs" / "length-3" / "run.json"
    run = json.loads(path.read_text())
    for e in run["runs"]:
        if e["method"] == "ewc" and e["seed"] == 1:
            for ds in e["order"]:
                e["rows"][-1]["scores"][ds]["t2a"]["R@1"]["value"] = 0.5
    path.write_text(json.dumps(run))
    (out / "table.md").unlink()
    (out / "runs" / "length-3" / "tables.md").unlink()
    from tail_bench.cli import main as cli

    cli(["report", str(out)])
    assert "| ewc | 3 | 2 |" in capsys.readouterr().out
    for extra in (["--format", "latex"], ["--out", str(tmp_path / "merged")],
                  [str(out / "runs" / "length-2")]):
        with pytest.raises(SystemExit, match="rebuilt in place, alone, as Markdown"):
            cli(["report", str(out), *extra])
    assert (out / "runs" / "length-3" / "tables.md").exists()  # each length's own tables
    table = (out / "table.md").read_text()
    check(table, json.loads((out / "summary.json").read_text()))
    assert f"| ewc | 3 | 2 | {_cell([_final(Entry.from_json(run['runs'][0])), 0.5])} |" in table


def test_the_shipped_study_table_is_its_run_files():
    """results/reference/stream-length/table.md is what its run files give today."""
    from pathlib import Path

    from tail_bench.reporting.study import collect, markdown

    root = Path(__file__).resolve().parents[1] / "results" / "reference" / "stream-length"
    summary = collect(root)
    assert summary["lengths"] == [4, 8, 16] and not summary["unfinished"]
    assert summary["methods"]["coda-prompt"]["growth"]["kind"] == "without bound"
    assert markdown(summary) == (root / "table.md").read_text()
