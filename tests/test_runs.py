"""What makes a run's numbers trustworthy: row 0, divergence, unfinished methods, checked
options, seeds, cached weights."""

import json

import pytest
import torch

from tail_bench.cli import main
from tail_bench.evaluation import cl_metrics
from tail_bench.record import Run, load_run
from tail_bench.reporting.results import load_clips
from tail_bench.reporting.tables import render

QUICK = ["--preset", "quick", "--epochs", "1", "--no-progress"]


def _run(tmp_path, name, *argv):
    out = tmp_path / name
    main(["run", *argv, *QUICK, "--out", str(out)])
    return out, json.loads((out / "run.json").read_text())


@pytest.fixture(scope="module")
def prompted(tmp_path_factory, _cache):
    return _run(tmp_path_factory.mktemp("runs"), "prompted", "--strategy", "ptat",
                "--baselines", "l2p,zeroshot,prompts-at-setup", "--strategy-class",
                "plugin_strategy:PromptsAtSetup")


def test_row_0_is_the_backbone_before_any_strategy_touches_it(prompted):
    _, run = prompted
    by = {e["method"]: e for e in run["runs"]}
    zero = by["zeroshot"]["rows"][0]["scores"]
    for name in ("ptat", "l2p", "prompts-at-setup"):
        assert by[name]["rows"][0]["scores"] == zero, name
        r = Run.from_json(run).find(name, 0).matrix(run["stream"]["datasets"], "t2a")
        expected = sum(r[j - 1][j - 1] - r[0][j - 1] for j in range(2, 5)) / 3
        assert cl_metrics.fwt(r) == pytest.approx(expected)
    # the perturbed heads do change scores after step 1: row 0 was taken before setup
    assert by["prompts-at-setup"]["rows"][1]["scores"] != zero


def test_every_score_carries_a_bootstrap_interval_and_per_clip_sums(prompted):
    out, run = prompted
    clips = load_clips(out, load_run(out))
    for e in run["runs"]:
        for row in e["rows"]:
            for ds, dirs in row["scores"].items():
                for d, metrics in dirs.items():
                    for m, s in metrics.items():
                        lo, hi = s["ci95"]
                        assert lo <= s["value"] <= hi, (e["method"], ds, d, m)
                        c = clips[e["method"], e["seed"], 0][row["step"]]
                        assert c.sums[ds][d][m].sum() / c.counts[ds][d].sum() == \
                            pytest.approx(s["value"])
    first = run["runs"][0]["rows"][1]["scores"]["audiocaps"]["t2a"]["R@1"]
    assert first["ci95"][1] - first["ci95"][0] > 0.01  # 40 clips: a wide interval
    table = (out / "tables.md").read_text()
    assert "learning acc R@1" in table and "paired bootstrap" in table


def test_a_diverging_method_is_marked_and_never_scored(tmp_path, _cache):
    out, run = _run(tmp_path, "nan", "--strategy", "finetune", "--baselines", "zeroshot",
                    "--lr", "1e6")
    by = {e["method"]: e for e in run["runs"]}
    ft = by["finetune"]
    assert ft["status"] == "diverged"
    assert ft["failure"]["step"] == 1 and ft["failure"]["batch"] >= 1
    assert "non-finite loss in step 1 (audiocaps)" in ft["failure"]["message"]
    assert [r["step"] for r in ft["rows"]] == [0]  # no score computed from NaN
    assert by["zeroshot"]["status"] == "done"  # the run went on
    table = (out / "tables.md").read_text()
    compared = table.split("## Unfinished")[0]
    assert "| finetune |" not in compared
    assert "| finetune | 0 | diverged | 0 |" in table


def test_an_interrupted_method_is_unfinished_and_ctrl_c_is_one_line(tmp_path, _cache, capsys):
    out = tmp_path / "ctrl-c"
    with pytest.raises(SystemExit) as err:
        main(["run", "--strategy", "finetune", "--baselines", "interrupt-at-3", "--strategy-class",
              "plugin_strategy:InterruptAtStep3", *QUICK, "--out", str(out)])
    assert err.value.code == 130
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("tail-bench: interrupted during interrupt-at-3 (seed 0) after "
                              "step 2") and str(out) in message
    entry = load_run(out).entries[1]
    assert entry.status == "interrupted" and [r.step for r in entry.rows] == [0, 1, 2]
    main(["report", str(out)])
    table = (out / "tables.md").read_text()
    assert "| interrupt-at-3 | 0 | interrupted | 2 |" in table
    assert "| interrupt-at-3 |" not in table.split("## Unfinished")[0]


def test_a_crash_marks_the_method_failed(tmp_path, _cache):
    out = tmp_path / "crash"
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["run", "--strategy", "crash-at-3", "--strategy-class", "plugin_strategy:CrashAtStep3",
              *QUICK, "--out", str(out)])
    entry = load_run(out).entries[0]
    assert entry.status == "failed" and "simulated crash" in entry.failure["message"]
    assert "| crash-at-3 | 0 | failed | 2 |" in (out / "tables.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "--epochs 0: expected an integer >= 1"),
    (["--epochs", "-1"], "--epochs -1: expected an integer >= 1"),
    (["--lr", "0"], "--lr 0.0: expected a finite number > 0"),
    (["--lr", "-1"], "--lr -1.0: expected a finite number > 0"),
    (["--batch-size", "0"], "--batch-size 0: expected an integer >= 2"),
    (["--batch-size", "-1"], "--batch-size -1: expected an integer >= 2"),
    (["--length", "0"], "--length 0: expected an integer between 1 and 1000"),
    (["--orders", "0"], "--orders 0: expected an integer >= 1"),
    (["--orders", "3", "--order", "clotho,bbc"],
     "--orders 3: a stream of 2 data sets (clotho, bbc; --order and --length choose "
     "them) has only 2 orders"),
    (["--seeds", "0", "0"], "--seeds 0 0: expected distinct seeds"),
    (["--seed", "-1"], "--seeds -1: expected integers between 0 and 4294967295"),
    (["--workers", "-1"], "--workers -1: expected an integer between 0 and 256"),
    (["--data-root", "/nonexistent", "--stream", "tail"], "--data-root /nonexistent: not"),
    (["--device", "tpu"], "--device tpu: expected auto, cpu, cuda or cuda:N"),
    (["--baselines", "ptat", "--opt", "ptat.prompt_length=x"],
         "--opt ptat.prompt_length=x: expected an integer"),
        (["--opt", "ptat.prompt_length=4"], "ptat is not in this run"),
    # one strict grammar: brackets, empty items, duplicates, integers, overflows, bounds
    (["--baselines", "lwf,er)"], "--baselines 'lwf,er)': unbalanced ')'"),
    (["--order", "audiocaps,clotho)"], "--order 'audiocaps,clotho)': unbalanced ')'"),
    (["--baselines", "finetune+EWCPlugin(ewc_lambda=1"], "unbalanced brackets"),
    (["--baselines", "lwf,,er"], "--baselines 'lwf,,er': an empty item"),
    (["--baselines", "lwf, lwf"], "--baselines lwf,lwf: lwf given twice"),
    (["--baselines", "er", "--opt", "er.size=inf"], "--opt er.size=inf: expected an integer"),
    (["--baselines", "ptat", "--opt", "ptat.deep=yes"],
     "--opt ptat.deep=yes: expected true or false"),
    (["--epochs", "1.9"], "--epochs 1.9: expected an integer"),
    (["--epochs", "99999999999999999999999"],
     "--epochs 99999999999999999999999: expected an integer between"),
    (["--lr", "inf"], "--lr inf: expected a number (finite)"),
    (["--seeds", "4294967296"], "--seeds 4294967296: expected integers between 0 and "
                                "4294967295"),
    (["--workers", "100000"], "--workers 100000: expected an integer between 0 and 256"),
    (["--length", "100000"], "--length 100000: expected an integer between 1 and 1000"),
])
def test_every_option_is_checked_before_any_work(argv, message, tmp_path, monkeypatch):
    import tail_bench.runner as runner

    def no_work(*a, **k):
        raise AssertionError("work started before the options were checked")

    monkeypatch.setattr(runner, "build_backbone", no_work)
    monkeypatch.setattr(runner, "build_stream", no_work)
    with pytest.raises(SystemExit) as err:
        main(["run", "--strategy", "finetune", "--preset", "quick", "--no-progress",
              "--out", str(tmp_path / "out"), *argv])
    assert message in str(err.value)


def test_an_existing_out_is_refused_before_any_work(tmp_path, monkeypatch):
    import tail_bench.runner as runner

    monkeypatch.setattr(runner, "build_backbone", lambda *a, **k: 1 / 0)
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"run\.json exists"):
        main(["run", "--strategy", "finetune", "--preset", "quick", "--out", str(tmp_path)])


def test_seeds_draw_their_own_data_unless_it_is_fixed(tmp_path, _cache):
    _, run = _run(tmp_path, "own", "--strategy", "zeroshot", "--seeds", "0", "1")
    assert run["resolved"]["data_seeds"] == {"0": 0, "1": 1}
    assert run["resolved"]["cpu_threads"] == torch.get_num_threads()  # wall times need it
    a, b = (e["rows"][0]["scores"] for e in run["runs"])
    assert a != b  # another test set
    _, fixed = _run(tmp_path, "fixed", "--strategy", "zeroshot", "--seeds", "0", "1",
                    "--data-seed", "5")
    assert fixed["resolved"]["data_seeds"] == {"0": 5, "1": 5}
    a, b = (e["rows"][0]["scores"] for e in fixed["runs"])
    assert a == b


def test_tables_use_the_sample_std_and_only_finished_methods(prompted):
    _, run = prompted
    twin = json.loads(json.dumps(run))
    e = next(x for x in twin["runs"] if x["method"] == "zeroshot")
    other = json.loads(json.dumps(e))
    other["seed"] = 1
    other["rows"][0]["scores"]["audiocaps"]["t2a"]["R@1"]["value"] += 0.1
    twin["runs"].append(other)
    table = render(Run.from_json(twin))
    v = e["rows"][0]["scores"]["audiocaps"]["t2a"]["R@1"]["value"]
    mean, std = 100 * (v + 0.05), 100 * (0.1 / 2 ** 0.5)  # ddof=1 over two seeds
    assert f"| zeroshot | 2 | {mean:.1f}±{std:.1f} / " in table


@pytest.mark.parametrize("damage", ["truncate", "zero", "nan"])
def test_a_corrupt_cached_backbone_is_named_and_rebuilt(damage, tmp_path, monkeypatch, capsys):
    from safetensors.torch import load_file, save_file

    from tail_bench.models.configs import get_config
    from tail_bench.models.pretrain import load_or_pretrain, weights_path

    monkeypatch.setenv("TAIL_BENCH_CACHE", str(tmp_path))
    cfg = get_config("synth-tiny")
    from dataclasses import replace

    cfg = replace(cfg, pretrain_clips=64, pretrain_epochs=1)
    good = load_or_pretrain(cfg, device=torch.device("cpu"), progress=False)
    path = weights_path(cfg)
    blob = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "zero":
        path.write_bytes(bytes(len(blob)))
    else:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        tensors = load_file(str(path))
        tensors[next(iter(tensors))].fill_(float("nan"))
        save_file(tensors, str(path), metadata=meta)
    again = load_or_pretrain(cfg, device=torch.device("cpu"), progress=False)
    err = capsys.readouterr().err
    assert f"cached backbone {path} is corrupt" in err and "rebuilding it" in err
    for (n, p), q in zip(good.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(p, q), n  # rebuilt deterministically, and finite


def test_the_default_backbone_loads_its_shipped_weights_without_pretraining(tmp_path,
                                                                          monkeypatch):
    from tail_bench.models import pretrain
    from tail_bench.models.configs import get_config
    from tail_bench.models.weights import checksum

    monkeypatch.setenv("TAIL_BENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(pretrain, "pretrain", lambda *a, **k: pytest.fail("pretrained"))
    cfg = get_config("synth-small")
    model = pretrain.load_or_pretrain(cfg, device=torch.device("cpu"), progress=False)
    assert checksum(model.state_dict()) == pretrain.SHIPPED["synth-small"]
    assert pretrain.weights_path(cfg).exists()  # the cache is filled from them


def test_shipped_weights_other_than_the_pinned_ones_are_refused(tmp_path, monkeypatch, capsys):
    from tail_bench.models import pretrain
    from tail_bench.models.configs import get_config

    class Pretrained(Exception):
        pass

    def pretraining(*a, **k):
        raise Pretrained

    monkeypatch.setenv("TAIL_BENCH_CACHE", str(tmp_path))
    monkeypatch.setitem(pretrain.SHIPPED, "synth-small", "0" * 64)
    monkeypatch.setattr(pretrain, "pretrain", pretraining)
    cfg = get_config("synth-small")
    with pytest.raises(Pretrained):
        pretrain.load_or_pretrain(cfg, device=torch.device("cpu"), progress=False)
    assert (f"shipped backbone {pretrain.shipped_path(cfg)} is corrupt (not the checksum the "
            "suite pins)") in capsys.readouterr().err


def test_the_shipped_reference_tables_are_its_run_files():
    """results/reference/tail-synth-default/run: tables.md is what run.json and clips/ give
    with today's report code (results are data; nothing is edited by hand)."""
    from pathlib import Path

    from tail_bench.reporting.results import load_clips
    from tail_bench.reporting.tables import render, scores_csv

    root = Path(__file__).resolve().parents[1] / "results/reference/tail-synth-default/run"
    run = load_run(root)
    assert sorted({e.seed for e in run.entries}) == [0, 1, 2, 3, 4]
    assert render(run, load_clips(root, run)) == (root / "tables.md").read_text()
    assert scores_csv(run) == (root / "scores.csv").read_bytes().decode()  # csv: CRLF
