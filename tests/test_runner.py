"""The runner's plan: every check before any work, and what it resolves."""

import pytest

from tail_bench import runner
from tail_bench.config import RunConfig
from tail_bench.errors import ConfigError


@pytest.fixture
def no_work(monkeypatch):
    """A run that reaches pretraining, stream building or evaluation fails the test."""
    def work(*args, **kwargs):
        pytest.fail("the run started work before its checks ended")

    for name in ("build_backbone", "build_stream"):
        monkeypatch.setattr(runner, name, work)


@pytest.mark.parametrize("options, backbone, message", [
    ({"ptat": {"deep": "true"}}, "clap-dir", r"--opt ptat.deep=true: backbone .*clap-dir.* "
                                              "no deep-prompt support"),
    ({"lora": {"rank": "0"}}, None, r"--opt lora.rank=0 / lora.dropout=0.0: expected rank"),
    ({"er": {"size": "0"}}, None, r"--opt er.size=0 / er.batch=8: expected size >= 1"),
])
def test_strategy_options_are_checked_before_any_work(options, backbone, message, tmp_path,
                                                      no_work):
    strategy = next(iter(options))
    cfg = RunConfig(strategy=strategy, options=options, out=tmp_path / "run",
                    backbone=None if backbone is None else str(tmp_path / backbone))
    with pytest.raises(ConfigError, match=message):
        runner.plan(cfg)


def test_the_plan_resolves_what_resume_compares(tmp_path, no_work):
    cfg = RunConfig(strategy="finetune", baselines=["zeroshot", "finetune+LwFPlugin()"],
                    preset="quick", device="cpu", seeds=[3], out=tmp_path / "run")
    plan = runner.plan(cfg)
    assert [m.name for m in plan.methods] == ["finetune", "zeroshot", "finetune+LwFPlugin()"]
    assert [m.role.value for m in plan.methods] == ["continual", "zero-shot", "continual"]
    assert plan.methods[2].avalanche_plugins == ("LwFPlugin()",)
    assert plan.resolved["methods"] == [m.name for m in plan.methods]
    assert plan.resolved["device"] == "cpu" and plan.resolved["precision"] == "fp32"
    assert plan.resolved["data_seeds"] == {3: 3} and plan.resolved["batch_size"] == 32
    assert not (tmp_path / "run").exists()  # nothing written


def test_a_broken_strategy_file_is_skipped_with_a_warning(tmp_path, monkeypatch, capsys):
    """The folder scan, like entry points: one file that fails to import is named and
    skipped; every other strategy (and `list`) still works."""
    import tail_bench.strategies as package

    from tail_bench.training.registry import available_strategies

    (tmp_path / "zz_broken.py").write_text("raise RuntimeError('half-written')\n")
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    found = available_strategies()
    assert {"finetune", "ptat"} <= set(found)
    assert ("warning: strategy file zz_broken.py cannot be loaded (RuntimeError: "
            "half-written); skipped") in capsys.readouterr().err
