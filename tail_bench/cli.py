"""`tail-bench`: run, list, pretrain, report, prepare, bench.

Heavy imports (torch, Avalanche) happen inside the commands, so `--help` answers at once.
Errors a user can fix (`TailBenchError`) print as one line; anything else keeps its
traceback (a bug, or an error inside a plugin).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tail_bench import config
from tail_bench.errors import Interrupted, TailBenchError


def cmd_run(a: argparse.Namespace) -> None:
    from tail_bench import distributed

    if a.resume is not None:
        from tail_bench.record import load_run

        load_run(a.resume)  # the run file's own faults are named as such, not as --config's
        cfg = config.for_resume(a.resume, config.given(a), a.config)
    else:
        cfg = config.build(config.given(a), a.config)
    if cfg.nproc > 1 and distributed.launched() == 1:
        launch(cfg, a.argv, resume=a.resume is not None)  # the launcher imports no model code
        return

    from tail_bench.record import load_run
    from tail_bench.reporting.results import load_clips
    from tail_bench.reporting.summary import console_summary
    from tail_bench.reporting.tables import status_table
    from tail_bench.runner import run

    out = run(cfg, resume=a.resume is not None)
    if not distributed.is_main():
        return
    result = load_run(out)
    if result.unfinished():
        print(status_table(result).markdown(), end="\n\n")
    print(console_summary(result, load_clips(out, result), out))


def launch(cfg: config.RunConfig, argv: list[str], *, resume: bool) -> None:
    """`run --nproc N`: the same command under torchrun, N processes on this machine (every
    process gets the same --out, named here when none was given)."""
    import subprocess
    import time

    cfg.check(resume=resume)
    # torchrun's own parser would take "--nproc" for an abbreviation of --nproc-per-node
    argv = [a.replace("--nproc", "--processes", 1) if a.split("=")[0] == "--nproc" else a
            for a in argv]
    if cfg.out is None:
        argv = [*argv, "--out", str(Path("results/runs") / time.strftime("%Y%m%d-%H%M%S"))]
    code = subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            f"--nproc-per-node={cfg.nproc}", "-m", "tail_bench", *argv])
    if code:
        raise SystemExit(code)


def cmd_list(a: argparse.Namespace) -> None:
    from tail_bench.benchmarks import available_benchmarks
    from tail_bench.models.configs import BACKBONES
    from tail_bench.presets import PRESETS
    from tail_bench.streams.registry import STREAMS
    from tail_bench.training.registry import descriptions

    print("strategies:")
    for name, text in sorted(descriptions(config.given(a).get("strategy_classes", [])).items()):
        print(f"  {name:<10} {text}")
    print("streams (--stream):")
    for name, text in STREAMS.items():
        print(f"  {name:<10} {text}")
    print("backbones (or a local checkpoint directory, or a WavCaps / LAION-CLAP .pt file "
          "with --text-model DIR):")
    for name, c in BACKBONES.items():
        print(f"  {name:<12} width {c.width}, depth {c.depth}, embed {c.embed_dim}")
    print("presets:")
    for name, p in PRESETS.items():
        print(f"  {name:<10} train clips {p.train_clips}, test {p.test_clips}, "
              f"{p.epochs} epochs, backbone {p.backbone}")
    print("benchmark scripts (tail-bench bench NAME):")
    for name, info in available_benchmarks().items():
        print(f"  {name:<16} {info.summary}")


def cmd_pretrain(a: argparse.Namespace) -> None:
    from tail_bench.models.builder import build_backbone
    from tail_bench.models.configs import get_config
    from tail_bench.models.pretrain import SHIPPED, check_shipped, weights_path
    from tail_bench.runner import resolve_device

    values = config.given(a)
    device = resolve_device(values.get("device", config.default("device")))
    progress = values.get("progress", config.default("progress"))
    start = time.perf_counter()
    if a.check:
        if a.backbone not in SHIPPED:
            raise config.ConfigError(f"pretrain --check --backbone {a.backbone}: no weights "
                                     f"ship for it; expected one of {sorted(SHIPPED)}")
        same, mine = check_shipped(get_config(a.backbone), device=device, progress=progress)
        print(f"{a.backbone}: pretrained here in {time.perf_counter() - start:.0f} s; "
              + ("identical to the shipped weights" if same else
                 f"differs from the shipped weights (sha256 {mine[:16]}, shipped "
                 f"{SHIPPED[a.backbone][:16]}); runs load the cached weights, which come from "
                 "the shipped ones unless `tail-bench pretrain` rebuilt them here"))
        sys.exit(0 if same else 1)
    build_backbone(a.backbone, device=device, force_pretrain=True, progress=progress)
    print(f"pretrained {a.backbone} in {time.perf_counter() - start:.0f} s: "
          f"{weights_path(get_config(a.backbone))}")


def cmd_report(a: argparse.Namespace) -> None:
    from tail_bench.reporting.results import merge_runs, write_derived, write_merged
    from tail_bench.reporting.study import STUDY_TABLE, is_study
    from tail_bench.reporting.study import report as study_report
    from tail_bench.reporting.tables import render, scores_csv
    from tail_bench.storage import writable_dir

    studies = [d for d in a.run_dirs if is_study(d)]
    if studies:
        if len(a.run_dirs) > 1 or a.out is not None or a.format != "md":
            raise config.ConfigError(f"{studies[0]}: a study directory (study.json) is "
                                     "rebuilt in place, alone, as Markdown: give it without "
                                     "other directories, --out or --format")
        study_report(studies[0], runs=True)
        print((studies[0] / STUDY_TABLE).read_text())
        return
    if a.out is not None:
        writable_dir(a.out, f"--out {a.out}")
    run, clips = merge_runs(a.run_dirs)
    if a.out is not None:
        write_merged(a.out, run, clips)
    elif len(a.run_dirs) == 1:
        write_derived(a.run_dirs[0], run, clips)
    print(scores_csv(run) if a.format == "csv" else render(run, clips, a.format))


def cmd_prepare(a: argparse.Namespace) -> None:
    from tail_bench.models.builder import audio_settings
    from tail_bench.presets import get_preset
    from tail_bench.storage import writable_dir
    from tail_bench.streams.cache import default_workers
    from tail_bench.streams.tail import prepare

    values = config.given(a)
    backbone = values.get("backbone") or get_preset(config.default("preset")).backbone
    sample_rate, seconds = audio_settings(backbone)
    from tail_bench.options import typed

    workers = default_workers() if a.workers is None else typed(
        a.workers, int, where=f"--workers {a.workers}", low=1, high=config.WORKERS_MAX)
    if a.out is not None:
        writable_dir(a.out, f"--out {a.out}")
    code = prepare(a.data_root, policy=values.get("on_error", config.default("on_error")),
                   out=a.out, cache=a.cache, sample_rate=sample_rate, clip_seconds=seconds,
                   workers=workers, patterns=tuple(values.get("audiocaps_patterns") or ()),
                   progress=values.get("progress", True))
    sys.exit(code)


def cmd_bench(a: argparse.Namespace) -> None:
    from tail_bench.benchmarks import available_benchmarks

    found = available_benchmarks()
    if a.name is None:
        for name, info in found.items():
            print(f"{name:<16} {info.summary}")
        return
    if a.name not in found:
        raise config.ConfigError(f"tail-bench bench {a.name}: unknown benchmark script; "
                                 f"expected one of {sorted(found)}")
    found[a.name].main(a.args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tail-bench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="train strategies on a stream and write forgetting tables",
                       description="Options come from RunConfig (tail_bench/config.py); "
                                   "--config FILE sets them from YAML/JSON (or a run.json to "
                                   "replay a run) and flags override the file.")
    r.add_argument("--config", type=Path, metavar="FILE",
                   help="YAML/JSON options (field names as keys), or DIR/run.json to replay "
                        "a run")
    r.add_argument("--resume", type=Path, metavar="DIR",
                   help="continue the run in DIR: finished methods are skipped, unfinished "
                        "ones go on after their last finished step (same options only)")
    config.add_arguments(r)
    r.set_defaults(func=cmd_run)

    ls = sub.add_parser("list", help="strategies, streams, backbones, presets, benchmarks")
    config.add_arguments(ls, only=("strategy_classes",))
    ls.set_defaults(func=cmd_list)

    pt = sub.add_parser("pretrain", help="(re)build the embedded backbone's cached weights")
    pt.add_argument("--backbone", default="synth-small")
    pt.add_argument("--check", action="store_true",
                    help="pretrain here without writing anything and say whether this "
                         "machine reproduces the shipped weights (exit 1 if not)")
    config.add_arguments(pt, only=("device", "progress"))
    pt.set_defaults(func=cmd_pretrain)

    rp = sub.add_parser("report", help="rebuild tables and plots from a run directory or a "
                                       "study directory (benchmarks/stream_length.py), or "
                                       "merge several runs (a sweep's jobs) into one table")
    rp.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                    help="one run directory, or several on the same stream and backbone")
    rp.add_argument("--out", type=Path, metavar="DIR",
                    help="also write the (merged) run directory here")
    rp.add_argument("--format", default="md", choices=["md", "csv", "latex"],
                    help="what to print (every format is also written to the run directory)")
    rp.set_defaults(func=cmd_report)

    pr = sub.add_parser("prepare", help="validate a TAIL data root; optionally cache audio",
                        description="Finds each data set's layout (original releases, "
                                    "aac-datasets, WavCaps retrieval; docs/datasets.md), "
                                    "checks every file and reports per split. The audio "
                                    "settings are --backbone's (default: the default "
                                    "preset's).")
    pr.add_argument("--data-root", type=Path, required=True)
    config.add_arguments(pr, only=("on_error", "audiocaps_patterns", "progress"))
    config.add_arguments(pr, only=("backbone",))
    pr.add_argument("--out", type=Path, help="where the report (and skip list) is written")
    pr.add_argument("--cache", action="store_true",
                    help="decode every clip into the cache that `run` reads at the "
                         "backbone's sample rate and clip length (resumes if killed)")
    pr.add_argument("--workers", metavar="N",
                    help="decoding processes (default: the cores available)")
    pr.set_defaults(func=cmd_prepare)

    b = sub.add_parser("bench", help="list or run a benchmark script (figures, not tests)")
    b.add_argument("name", nargs="?", help="a benchmark script (none: list them)")
    b.add_argument("args", nargs=argparse.REMAINDER, help="its own arguments")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args.func(args)
    except (Interrupted, KeyboardInterrupt) as err:
        print(f"tail-bench: {str(err) or 'interrupted'}", file=sys.stderr)
        raise SystemExit(130) from None
    except TailBenchError as err:
        raise SystemExit(f"tail-bench: error: {err}") from None
    except OSError as err:
        if err.filename is None:  # not about a path the user can look at: a bug
            raise
        raise SystemExit(f"tail-bench: error: {err.filename}: {err.strerror}") from None
