"""A suite researchers live in: config files and replay, loggers, plots and formats, clear
errors for what users can fix, and tracebacks for what they cannot."""

import csv
import json
import os
import stat

import pytest

from tail_bench.cli import main
from tail_bench.progress import Lines

QUICK = ["--preset", "quick", "--epochs", "1", "--no-progress"]


def _scores(out):
    run = json.loads((out / "run.json").read_text())
    return [(e["method"], e["seed"], [r["scores"] for r in e["rows"]]) for e in run["runs"]]


@pytest.fixture(scope="module")
def finetune_run(tmp_path_factory, _cache):
    out = tmp_path_factory.mktemp("ux") / "run"
    main(["run", "--strategy", "finetune", "--baselines", "zeroshot", *QUICK, "--out",
          str(out)])
    return out


def test_a_run_file_replays_the_run(finetune_run, tmp_path):
    again = tmp_path / "again"
    main(["run", "--config", str(finetune_run / "run.json"), "--out", str(again)])
    assert _scores(again) == _scores(finetune_run)
    first = json.loads((finetune_run / "run.json").read_text())["config"]
    second = json.loads((again / "run.json").read_text())["config"]
    assert {**first, "out": None} == {**second, "out": None}


def test_a_config_file_sets_options_and_flags_override_it(tmp_path, _cache):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("strategy: zeroshot\npreset: quick\nseeds: [3, 4]\nlr: 1e-3\n"
                   "progress: false\n")
    main(["run", "--config", str(cfg), "--seeds", "5", "--out", str(tmp_path / "r")])
    config = json.loads((tmp_path / "r" / "run.json").read_text())["config"]
    assert (config["strategy"], config["seeds"], config["lr"]) == ("zeroshot", [5], 1e-3)


@pytest.mark.parametrize("text, message", [
    ("strategy: [unclosed", "not valid yaml"),
    ("strategy: zeroshot\nepochz: 3\n", "unknown option(s) epochz"),
    ("strategy: zeroshot\nepochs: three\n", "epochs = 'three': expected an integer"),
    ("strategy: zeroshot\nepochs: .inf\n", "epochs = inf: expected an integer"),
    ("strategy: zeroshot\nseeds: [1.9]\n", "seeds = 1.9: expected an integer"),
    ("strategy: zeroshot\nbaselines: [lwf, 3]\n", "baselines = 3: expected a string"),
    ("strategy: zeroshot\nprogress: yes\n", "progress = 'yes': expected true or false"),
    ("- a list\n", "expected a mapping"),
])
def test_a_bad_config_file_is_named(text, message, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(SystemExit) as err:
        main(["run", "--config", str(cfg)])
    assert str(cfg) in str(err.value) and message in str(err.value)


def test_the_shipped_configs_are_valid():
    from pathlib import Path

    from tail_bench.config import load_file

    root = Path(__file__).parent.parent
    files = [*root.glob("configs/*.yaml"), *root.glob("results/reference/*/config.yaml")]
    assert any(f.name == "tail-paper.yaml" for f in files)
    for f in files:
        values = load_file(f)
        assert values["strategy"]
    paper = load_file(root / "configs" / "tail-paper.yaml")
    assert paper["stream"] == "tail" and paper["order"] == [
        "audiocaps", "clotho", "bbc", "audioset"]
    text = (root / "configs" / "tail-paper.yaml").read_text()
    assert text.count("CHOICE") >= 5


def test_the_run_directory_holds_events_plots_and_latex(finetune_run, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(finetune_run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"finetune/seed0/train/loss", "finetune/seed0/train/info_nce",
            "finetune/seed0/R@1_t2a/audiocaps"} <= tags
    r1 = [e.value for e in events.Scalars("finetune/seed0/R@1_t2a/clotho")]
    run = json.loads((finetune_run / "run.json").read_text())
    ft = next(e for e in run["runs"] if e["method"] == "finetune")
    assert r1 == pytest.approx([r["scores"]["clotho"]["t2a"]["R@1"]["value"]
                                for r in ft["rows"]])
    for name in ("r1_t2a.png", "r1_a2t.png", "r_matrix.png", "cost_retention.png"):
        assert (finetune_run / name).stat().st_size > 5000, name
    tex = (finetune_run / "tables.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"$\pm$" not in tex
    main(["report", str(finetune_run), "--format", "latex"])
    assert r"\begin{tabular}" in capsys.readouterr().out
    main(["report", str(finetune_run), "--format", "csv"])
    assert capsys.readouterr().out.startswith("method,seed,status,step")


def test_result_files_are_world_readable(finetune_run):
    umask = os.umask(0)
    os.umask(umask)
    for name in ("run.json", "tables.md", "scores.csv", "r_matrix.png"):
        assert stat.S_IMODE((finetune_run / name).stat().st_mode) == 0o666 & ~umask, name


def test_a_log_gets_lines_not_carriage_returns(capsys):
    bar = Lines(total=10, desc="finetune step 1", every=0.0)
    for _ in range(3):
        bar.update()
    bar.set_postfix(loss="3.210")
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err and err.count("\n") == 4
    assert err.splitlines()[-1].startswith("finetune step 1: 3/10 (") and "loss 3.210" in err


def test_latex_escapes_what_latex_would_misread():
    from tail_bench.reporting.tables import Table

    tex = Table(["method", "share %"], [["l2p_x", "12.0±1.0↑"]], "a & b").latex()
    assert r"l2p\_x" in tex and r"12.0$\pm$1.0$\uparrow$" in tex and r"share \%" in tex
    assert r"\caption{a \& b}" in tex


# --- errors users can fix: one line naming the file or option -------------------------

def _error(argv) -> str:
    with pytest.raises(SystemExit) as err:
        main(argv)
    return str(err.value)


def test_a_garbage_backbone_config_is_named(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    msg = _error(["run", "--strategy", "zeroshot", "--backbone", str(tmp_path), *QUICK])
    assert msg.startswith("tail-bench: error: ") and str(tmp_path / "config.json") in msg
    assert "not valid JSON" in msg


def test_a_clap_directory_without_weights_is_named(tmp_path):
    from transformers import ClapConfig

    ClapConfig().to_json_file(str(tmp_path / "config.json"))
    msg = _error(["run", "--strategy", "zeroshot", "--backbone", str(tmp_path), *QUICK])
    # found before any work, where the audio settings are read
    assert f"{tmp_path / 'preprocessor_config.json'}: not found" in msg and "\n" not in msg
    from transformers import ClapFeatureExtractor

    ClapFeatureExtractor().save_pretrained(tmp_path)
    msg = _error(["run", "--strategy", "zeroshot", "--backbone", str(tmp_path), *QUICK])
    assert f"{tmp_path}: cannot load its weights" in msg and "\n" not in msg


def test_a_non_utf8_csv_is_named(tmp_path):
    from tail_bench.streams.fixture import write_fixture

    root = write_fixture(tmp_path / "root")
    path = root / "audiocaps" / "val.csv"
    path.write_bytes(path.read_bytes() + "1,x,0,caf\xe9\n".encode("latin-1"))
    msg = _error(["prepare", "--data-root", str(root), "--out", str(tmp_path / "p")])
    assert f"{path}: not UTF-8 text" in msg


@pytest.mark.parametrize("content", ["[1, 2]", '"a string"', "{not json"])
def test_report_on_a_bad_run_file_is_named(content, tmp_path):
    (tmp_path / "run.json").write_text(content)
    msg = _error(["report", str(tmp_path)])
    assert str(tmp_path / "run.json") in msg


def test_a_config_file_reads_strategy_options_as_the_command_line_does(tmp_path):
    """YAML 1.2 booleans: `yes` is a string, refused as --opt ptat.deep=yes is."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("strategy: ptat\noptions: {ptat: {deep: yes}}\n")
    msg = _error(["run", "--config", str(cfg), *QUICK, "--out", str(tmp_path / "o")])
    assert "--opt ptat.deep=yes: expected true or false" in msg


@pytest.mark.parametrize("value, expected", [("x", "expected an integer"),
                                             ("2.5", "expected an integer"),
                                             ("maybe", "expected true or false")])
def test_option_values_of_the_wrong_type(value, expected, tmp_path):
    key = "deep" if expected.startswith("expected true") else "prompt_length"
    msg = _error(["run", "--strategy", "ptat", "--opt", f"ptat.{key}={value}", *QUICK,
                  "--out", str(tmp_path / "o")])
    assert f"--opt ptat.{key}={value}: {expected}" in msg


def test_an_option_for_a_method_not_in_the_run_is_refused(tmp_path):
    msg = _error(["run", "--strategy", "finetune", "--opt", "lwf.lambda_sim=2", *QUICK,
                  "--out", str(tmp_path / "o")])
    assert "--opt lwf.…: lwf is not in this run" in msg


def test_a_broken_entry_point_warns_and_the_rest_works(monkeypatch, capsys):
    import tail_bench.training.registry as reg

    class Broken:
        name, value = "gone", "not_installed_module:Gone"

        def load(self):
            import not_installed_module  # noqa: F401

    monkeypatch.setattr(reg, "entry_points", lambda group: [Broken()])
    main(["list"])
    out = capsys.readouterr()
    assert "finetune" in out.out
    assert "entry point gone (not_installed_module:Gone) cannot be loaded" in out.err


def test_a_plugin_whose_options_are_not_a_dataclass_is_refused():
    msg = _error(["list", "--strategy-class", "plugin_strategy:BadOptions"])
    assert "BadOptions.Options must be a dataclass" in msg


def test_a_bug_in_a_plugin_keeps_its_traceback(tmp_path, _cache):
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["run", "--strategy", "crash-at-3", "--strategy-class", "plugin_strategy:CrashAtStep3",
              *QUICK, "--out", str(tmp_path / "c")])


def test_skipped_items_are_real_csv(tmp_path):
    from tail_bench.streams.fixture import write_fixture

    root = write_fixture(tmp_path / "root", breaks=("missing-file",))
    meta = root / "clotho" / "clotho_captions_evaluation.csv"
    meta.write_text(meta.read_text().replace("Field rec, evaluation take 2 (stereo).wav",
                                             "Café rec, take 2.wav"), encoding="utf-8")
    with pytest.raises(SystemExit) as err:
        main(["prepare", "--data-root", str(root), "--on-error", "skip", "--out",
              str(tmp_path / "p"), "--no-progress"])
    assert err.value.code == 0
    rows = list(csv.DictReader((tmp_path / "p" / "skipped.csv").open(encoding="utf-8")))
    assert [r["item"] for r in rows] == ["Café rec, take 2.wav"]


def test_benchmark_scripts_are_a_registry(capsys):
    from tail_bench.benchmarks import available_benchmarks

    found = available_benchmarks()
    assert {"throughput", "sweep", "scale", "param_share"} <= set(found)
    assert all(b.summary for b in found.values())
    main(["bench"])
    assert "throughput" in capsys.readouterr().out
    assert "unknown benchmark script" in _error(["bench", "nope"])


def test_former_names_still_read(tmp_path, capsys):
    """Config and run files of older versions (`benchmark`, `plugins`) and the former flags
    (--benchmark, --plugin) still work; --help shows only the current names."""
    from tail_bench.cli import parser
    from tail_bench.config import given, load_file

    old = tmp_path / "old.yaml"
    old.write_text("strategy: zeroshot\nbenchmark: tail-synth\nplugins: [a.b:C]\n")
    assert load_file(old) == {"strategy": "zeroshot", "stream": "tail-synth",
                              "strategy_classes": ["a.b:C"]}
    args = parser().parse_args(["run", "--benchmark", "tail", "--plugin", "a.b:C"])
    assert given(args) == {"stream": "tail", "strategy_classes": ["a.b:C"]}
    with pytest.raises(SystemExit):
        parser().parse_args(["run", "--help"])
    shown = capsys.readouterr().out
    assert "--stream" in shown and "--strategy-class" in shown
    assert "--benchmark" not in shown and "--plugin " not in shown
