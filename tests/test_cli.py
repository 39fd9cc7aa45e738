import subprocess
import sys

import pytest

from tail_bench.cli import main


def test_help_is_fast_and_imports_no_avalanche():
    code = ("import sys; from tail_bench.cli import parser; parser().format_help(); "
            "print(any(m.startswith(('avalanche', 'torch')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_list_imports_no_torch_nor_avalanche():
    code = ("import sys; from tail_bench.cli import main; main(['list']); "
            "print(any(m.startswith(('avalanche', 'torch')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_list_reads_the_strategies_as_importing_them_gives():
    from tail_bench.training.registry import available_strategies, descriptions

    imported = {name: cls.description for name, cls in available_strategies().items()}
    assert descriptions() == imported and len(imported) >= 11


def test_list_names_every_strategy(capsys):
    main(["list"])
    out = capsys.readouterr().out
    for name in ("finetune", "zeroshot", "joint", "tail-synth", "synth-small", "quick"):
        assert name in out


@pytest.mark.parametrize("argv, message", [
    (["run", "--strategy", "nope", "--preset", "quick"], "unknown strategy 'nope'"),
    (["run", "--strategy", "finetune", "--opt", "finetune"], "expected STRATEGY.KEY=VALUE"),
    (["run", "--strategy", "finetune", "--opt", "finetune.x=1", "--preset", "quick"],
     "unknown option"),
    (["run", "--strategy", "finetune", "--preset", "huge"], "--preset huge: unknown preset"),
    (["run", "--strategy", "finetune", "--preset", "quick", "--order", "clotho,nope"],
     "--order clotho,nope"),
    (["run", "--strategy", "finetune", "--stream", "tail"], "needs --data-root"),
    (["report", "/nonexistent/run"], "/nonexistent/run: no such file or directory"),
    (["run", "--strategy", "finetune", "--preset", "quick", "--length", "1", "--orders", "2"],
     "a stream of 1 data set (audiocaps; --order and --length choose them) has only 1 order"),
])
def test_bad_input_gets_a_clear_error(argv, message, tmp_path):
    if argv[0] == "run":
        argv = [*argv, "--out", str(tmp_path / "out"), "--no-progress"]
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert message in str(err.value)


def test_pretrain_check_says_whether_this_machine_reproduces_the_shipped_weights(
        monkeypatch, capsys):
    from tail_bench.models import pretrain

    monkeypatch.setattr(pretrain, "check_shipped", lambda cfg, **k: (False, "ab" * 32))
    with pytest.raises(SystemExit) as err:
        main(["pretrain", "--check", "--no-progress"])
    assert err.value.code == 1
    assert "differs from the shipped weights (sha256 abababababababab" in capsys.readouterr().out
    with pytest.raises(SystemExit) as err:
        main(["pretrain", "--check", "--backbone", "synth-tiny"])
    assert "no weights ship for it; expected one of ['synth-small']" in str(err.value)
