"""Long runs: a run killed with SIGKILL in the middle of a method continues with --resume
and ends with the scores of an uninterrupted run, bit for bit (CPU); --resume refuses a
changed configuration or suite version before any work."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tail_bench.cli import main

ROOT = Path(__file__).parent.parent
QUICK = ["--preset", "quick", "--epochs", "1", "--no-progress", "--no-tensorboard",
         "--order", "audiocaps,clotho,bbc"]
METHODS = ["--strategy", "ptat", "--baselines", "ewc,l2p"]
KILLED = ["--strategy", "ptat", "--baselines", "ewc"]  # the stateful ones: a teacher, a Fisher
# 2 vs 1 process, every metric: float sums in another order may rank one query of the
# smallest test set (40) differently, no more (measured: every score identical)
TOLERANCE = 1 / 40

# Runs the CLI, killing itself (SIGKILL: no handler, no cleanup) at the KILL_AT-th call
# of the function KILL_IN names: `train` (a step starts) or `state` (a checkpoint's last
# file is being written: the step's row is in run.json, its checkpoint is not complete).
KILLER = """
import os, signal, sys
from tail_bench.training import checkpoint
from tail_bench.training.template import RetrievalTemplate
where, at, calls = os.environ["KILL_IN"], int(os.environ["KILL_AT"]), [0]
def killing(f):
    def wrapped(*a, **k):
        calls[0] += 1
        if calls[0] == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return f(*a, **k)
    return wrapped
if where == "train":
    RetrievalTemplate.train = killing(RetrievalTemplate.train)
else:
    checkpoint.atomic_write_text = killing(checkpoint.atomic_write_text)
from tail_bench.cli import main
main(sys.argv[1:])
"""


def _killed(argv, kill_in, kill_at):
    env = {**os.environ, "KILL_IN": kill_in, "KILL_AT": str(kill_at),
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"),
                                          os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", KILLER, *argv], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


def _by(out):
    run = json.loads((out / "run.json").read_text())
    return {e["method"]: e for e in run["runs"]}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, _cache):
    out = tmp_path_factory.mktemp("resume") / "straight"
    main(["run", *METHODS, *QUICK, "--out", str(out)])
    return out


def test_a_killed_run_resumes_to_the_same_scores(uninterrupted, tmp_path):
    out = tmp_path / "killed"
    _killed(["run", *KILLED, *QUICK, "--out", str(out)], "train", 2)  # ptat, step 2 starts
    by = _by(out)
    assert by["ptat"]["status"] == "running" and [r["step"] for r in by["ptat"]["rows"]] == [
        0, 1]
    assert [p.name for p in (out / "checkpoints" / "ptat-s0").iterdir()] == ["step-1"]

    # resumed, killed again while writing ewc's step-2 checkpoint: row 2 is in run.json,
    # the checkpoint of step 2 is half written, the one of step 1 is whole
    resume = ["run", "--resume", str(out), "--no-progress"]
    _killed(resume, "state", 3)
    by = _by(out)
    assert by["ptat"]["status"] == "done" and not (out / "checkpoints" / "ptat-s0").exists()
    assert [r["step"] for r in by["ewc"]["rows"]] == [0, 1, 2]
    assert sorted(p.name for p in (out / "checkpoints" / "ewc-s0").iterdir()) == [
        ".step-2.tmp", "step-1"]

    main(resume)
    straight, resumed = _by(uninterrupted), _by(out)
    assert list(resumed) == ["ptat", "ewc"]
    for name, entry in resumed.items():  # each (method, seed) runs on its own
        assert entry["status"] == "done", name
        assert [r["step"] for r in entry["rows"]] == [0, 1, 2, 3], name
        # bit-exact: the same floats, every step, data set, direction and metric
        assert [r["scores"] for r in entry["rows"]] == \
            [r["scores"] for r in straight[name]["rows"]], name
    assert resumed["ewc"]["checkpoint"]["mb"] > 0.5
    assert len(json.loads((out / "run.json").read_text())["resumed"]) == 2
    assert not (out / "checkpoints").exists()  # finished methods keep none


def _training_strategies() -> list[str]:
    from tail_bench.training.registry import available_strategies

    return [name for name, cls in available_strategies().items() if cls.trains]


@pytest.mark.parametrize("name", _training_strategies())
def test_every_strategy_resumes_from_a_checkpoint_exactly(name, tiny_model, quick_stream,
                                                          tmp_path):
    """Each registered strategy trained two steps straight, and trained one step,
    checkpointed, rebuilt from the checkpoint (a fresh instance, other RNG states) and
    trained the second: the same weights, trainable set and state, bit for bit (L2P's
    usage, EWC's Fisher, a teacher, ER's buffer, CODA-Prompt's grown components, ZSCL's
    reference draw, ...). A state a strategy forgets to hand over shows here."""
    import copy

    import torch

    from tail_bench.training import checkpoint
    from tail_bench.training.checkpoint import _split
    from tail_bench.training.registry import available_strategies
    from tail_bench.training.template import RetrievalTemplate

    cls = available_strategies()[name]
    exp = quick_stream.scenario().train_stream[1]  # the smallest step, as both steps

    def build():
        model, strategy = copy.deepcopy(tiny_model), cls()
        strategy.setup(model)
        return model, strategy, RetrievalTemplate(model=model, strategy=strategy, lr=1e-3,
                                                  train_mb_size=32)

    def state(model, strategy):
        tensors = {}
        tree = _split(strategy.state_dict(), tensors, "")
        return (tree, tensors, {k: v.clone() for k, v in model.state_dict().items()},
                [n for n, p in model.named_parameters() if p.requires_grad])

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model, strategy, t = build()
        t.train(exp)
        checkpoint.save(tmp_path / name, 1, model=model, strategy=strategy, template=t)
        t.train(exp)
        straight = state(model, strategy)
        torch.manual_seed(1)  # what the checkpoint restores must not come from here
        model, strategy, t = build()
        assert checkpoint.load(tmp_path / name, model=model, strategy=strategy,
                               template=t) == 1
        t.train(exp)
        (tree, tensors, weights, trains), (tree2, tensors2, weights2, trains2) = (
            straight, state(model, strategy))
    assert tree == tree2 and tensors.keys() == tensors2.keys()
    assert all(torch.equal(tensors[k], tensors2[k]) for k in tensors)
    assert weights.keys() == weights2.keys() and trains == trains2
    assert all(torch.equal(weights[k], weights2[k]) for k in weights), [
        k for k in weights if not torch.equal(weights[k], weights2[k])]


def test_resume_skips_a_finished_run(uninterrupted, tmp_path, monkeypatch, capsys):
    import tail_bench.runner as runner

    out = tmp_path / "copy"
    shutil.copytree(uninterrupted, out)
    monkeypatch.setattr(runner, "build_stream", lambda *a, **k: 1 / 0)
    main(["run", "--resume", str(out), "--no-progress"])
    assert [e["rows"] for e in _by(out).values()] == [e["rows"] for e in
                                                      _by(uninterrupted).values()]


@pytest.mark.parametrize("argv, message", [
    (["--lr", "1e-3"], "--lr 0.001 (run.json: (default))"),
    (["--epochs", "2", "--seeds", "0", "1"], "--epochs 2 (run.json: 1); --seeds 0,1 "
                                             "(run.json: 0)"),
    (["--out", "elsewhere"], "--out elsewhere: --resume continues"),
])
def test_resume_refuses_other_options_naming_them(argv, message, uninterrupted, monkeypatch):
    import tail_bench.runner as runner

    monkeypatch.setattr(runner, "build_backbone", lambda *a, **k: 1 / 0)
    with pytest.raises(SystemExit) as err:
        main(["run", "--resume", str(uninterrupted), *argv])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_resume_refuses_another_suite_version(uninterrupted, monkeypatch):
    import tail_bench
    import tail_bench.runner as runner

    monkeypatch.setattr(runner, "build_backbone", lambda *a, **k: 1 / 0)
    monkeypatch.setattr(tail_bench, "__version__", "9.9")
    with pytest.raises(SystemExit) as err:
        main(["run", "--resume", str(uninterrupted)])
    assert "suite tail-bench 9.9 (run.json: tail-bench " in str(err.value)


def test_report_merges_the_jobs_of_a_sweep(uninterrupted, tmp_path, capsys):
    jobs = []
    for seed in ("0", "1"):  # a Slurm array would run these on two machines
        jobs.append(tmp_path / f"zeroshot-s{seed}")
        main(["run", "--strategy", "zeroshot", "--seeds", seed, *QUICK, "--out",
              str(jobs[-1])])
    capsys.readouterr()
    main(["report", str(uninterrupted), *map(str, jobs), "--out", str(tmp_path / "all")])
    table = capsys.readouterr().out
    assert "| ptat | 1 |" in table and "| zeroshot | 2 |" in table
    merged = json.loads((tmp_path / "all" / "run.json").read_text())
    assert [(e["method"], e["seed"]) for e in merged["runs"]] == [
        ("ptat", 0), ("ewc", 0), ("l2p", 0), ("zeroshot", 0), ("zeroshot", 1)]
    assert merged["config"]["strategy"] == "ptat"  # the first directory's reference
    main(["report", str(tmp_path / "all")])  # a merged directory is a run directory
    assert capsys.readouterr().out == table

    with pytest.raises(SystemExit, match=r"ptat seed 0 is also in .*merge each"):
        main(["report", str(uninterrupted), str(uninterrupted)])
    other = tmp_path / "other-backbone"
    shutil.copytree(jobs[1], other)
    run = json.loads((other / "run.json").read_text())
    run["resolved"]["backbone"] = "synth-small"
    (other / "run.json").write_text(json.dumps(run))
    with pytest.raises(SystemExit, match=r"other-backbone: cannot be merged with .*: their "
                                         r"backbone differ"):
        main(["report", str(jobs[0]), str(other)])
    main(["run", "--strategy", "zeroshot", *QUICK[:-2], "--out", str(tmp_path / "two")])
    with pytest.raises(SystemExit, match="their stream differ"):
        main(["report", str(jobs[0]), str(tmp_path / "two")])


def test_two_processes_train_data_parallel_like_one(uninterrupted, tmp_path):
    out = tmp_path / "ddp"
    main(["run", *METHODS, *QUICK, "--nproc", "2", "--out", str(out)])
    run = json.loads((out / "run.json").read_text())
    assert run["resolved"]["world_size"] == 2 and run["config"]["nproc"] == 2
    one, two = _by(uninterrupted), _by(out)
    assert list(two) == list(one)
    for name in one:
        assert two[name]["status"] == "done", name
        # row 0 too: the evaluator shards the encoding and gathers it
        for a, b in zip(one[name]["rows"], two[name]["rows"], strict=True):
            for ds, dirs in a["scores"].items():
                for d, metrics in dirs.items():
                    for m, score in metrics.items():
                        x, y = score["value"], b["scores"][ds][d][m]["value"]
                        assert abs(x - y) <= TOLERANCE, (name, a["step"], ds, d, m, x, y)
    # only rank 0 wrote: the same files as one process (no checkpoint left either)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == sorted(
        p.relative_to(uninterrupted) for p in uninterrupted.rglob("*"))
    # L2P's prompt counts are summed over the processes: the same totals as one process
    # (each process alone counts half of every batch)
    totals = [[sum(step[pool]) for pool in ("audio", "text") for step in
               e["extra"]["prompt_usage_per_step"]] for e in (one["l2p"], two["l2p"])]
    assert totals[0] == totals[1]
