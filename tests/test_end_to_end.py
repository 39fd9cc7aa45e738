import csv
import json

import pytest

from tail_bench.cli import main
from tail_bench.evaluation import cl_metrics
from tail_bench.record import load_run
from tail_bench.reporting.results import load_clips
from tail_bench.reporting.tables import render


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, _cache):
    out = tmp_path_factory.mktemp("runs") / "quick"
    main(["run", "--strategy", "finetune", "--baselines", "zeroshot,joint", "--preset", "quick",
          "--out", str(out), "--no-progress"])
    return out, json.loads((out / "run.json").read_text())


def test_run_file_holds_every_step_of_every_method(quick_run):
    _, run = quick_run
    datasets = run["stream"]["datasets"]
    assert datasets == ["audiocaps", "clotho", "bbc", "audioset"]
    by = {e["method"]: e for e in run["runs"]}
    assert set(by) == {"finetune", "zeroshot", "joint"}
    assert [r["step"] for r in by["finetune"]["rows"]] == [0, 1, 2, 3, 4]
    assert len(by["zeroshot"]["rows"]) == 1 and len(by["joint"]["rows"]) == 2
    for e in run["runs"]:
        assert e["status"] == "done"
        for row in e["rows"]:
            for d in datasets:
                for direction in ("t2a", "a2t"):
                    m = {k: v["value"] for k, v in row["scores"][d][direction].items()}
                    assert set(m) == {"R@1", "R@5", "R@10", "mAP@10"}
                    assert 0 <= m["R@1"] <= m["R@5"] <= m["R@10"] <= 1
    # every method starts from the same backbone: identical zero-shot rows
    assert by["finetune"]["rows"][0]["scores"] == by["zeroshot"]["rows"][0]["scores"]
    assert by["finetune"]["rows"][1]["scores"] != by["finetune"]["rows"][0]["scores"]
    cost = by["finetune"]["cost"]
    assert cost["trainable_params"] == cost["backbone_params"] > 100_000
    assert cost["train_seconds"] > 0 and cost["peak_memory_mb"] > 100
    assert by["zeroshot"]["cost"]["trainable_params"] == 0


def test_tables_and_csv_are_derived_from_the_run_file(quick_run):
    out, _ = quick_run
    run = load_run(out)
    assert (out / "tables.md").read_text() == render(run, load_clips(out, run))
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert all(float(x["ci95_low"]) <= float(x["value"]) <= float(x["ci95_high"]) for x in rows)
    assert len(rows) == (5 + 1 + 2) * 4 * 2 * 4
    r = run.entries[0].matrix(run.datasets, "t2a")
    first = [float(x["value"]) for x in rows if x["method"] == "finetune" and x["step"] == "4"
             and x["direction"] == "t2a" and x["metric"] == "R@1"]
    assert first == pytest.approx(r[4], abs=1e-6)
    table = (out / "tables.md").read_text()
    f = cl_metrics.forgetting(r)
    assert f"| forgetting | {100 * f[0]:.1f} |" in table
    (out / "tables.md").unlink()
    main(["report", str(out)])
    assert (out / "tables.md").read_text() == render(run, load_clips(out, run))
    assert (out / "r1_t2a.png").stat().st_size > 1000


def test_refuses_to_overwrite_a_run(quick_run):
    out, _ = quick_run
    with pytest.raises(SystemExit, match="exists"):
        main(["run", "--strategy", "zeroshot", "--preset", "quick", "--out", str(out),
              "--no-progress"])
