"""`tail-bench`: run, list, pretrain, report, prepare.

Heavy imports (torch, Avalanche) happen inside the commands, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _options(pairs: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        owner, dot, field = key.partition(".")
        if not (sep and dot and owner and field):
            raise SystemExit(f"tail-bench: --opt {pair!r}: expected STRATEGY.KEY=VALUE, "
                             "e.g. ptat.prompt_length=8")
        out.setdefault(owner, {})[field] = value
    return out


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def cmd_run(a: argparse.Namespace) -> None:
    from tail_bench.reporting.plots import write_plots
    from tail_bench.reporting.results import load_clips, load_run
    from tail_bench.reporting.tables import (
        comparison_table,
        cost_table,
        legend,
        status_table,
        step_table,
        unfinished,
    )
    from tail_bench.runner import RunConfig, run

    cfg = RunConfig(strategy=a.strategy, baselines=_csv(a.baselines) if a.baselines else [],
                    benchmark=a.benchmark, preset=a.preset, epochs=a.epochs, lr=a.lr,
                    batch_size=a.batch_size, seeds=a.seeds or [a.seed], data_seed=a.data_seed,
                    device=a.device, out=a.out, backbone=a.backbone,
                    order=_csv(a.order) if a.order else None, length=a.length,
                    options=_options(a.opt), plugins=a.plugin, data_root=a.data_root,
                    eval_split=a.eval_split, on_error=a.on_error,
                    audiocaps_patterns=a.audiocaps_pattern or None, workers=a.workers,
                    precision=a.precision, eval_batch_size=a.eval_batch_size,
                    progress=not a.no_progress)
    out = run(cfg)
    result = load_run(out)
    clips = load_clips(out, result)
    first = next(e for e in result["runs"] if e["method"] == a.strategy)
    print(step_table(result, first, "t2a"), "\n", step_table(result, first, "a2t"), sep="\n")
    print("\n" + legend(result) + "\n\n" + comparison_table(result, clips))
    if unfinished(result):
        print("\nUnfinished (not compared):\n\n" + status_table(result))
    print("\n" + cost_table(result))
    write_plots(out, result)
    print(f"\nresults: {out}/ (run.json, scores.csv, tables.md, plots)")


def cmd_list(a: argparse.Namespace) -> None:
    from tail_bench.models.configs import BACKBONES
    from tail_bench.presets import PRESETS
    from tail_bench.streams.registry import BENCHMARKS
    from tail_bench.training.registry import available_strategies

    print("strategies:")
    for name, cls in available_strategies(a.plugin).items():
        print(f"  {name:<10} {cls.description}")
    print("benchmarks:")
    for name, text in BENCHMARKS.items():
        print(f"  {name:<10} {text}")
    print("backbones (or a local checkpoint directory):")
    for name, c in BACKBONES.items():
        print(f"  {name:<12} width {c.width}, depth {c.depth}, embed {c.embed_dim}")
    print("presets:")
    for name, p in PRESETS.items():
        print(f"  {name:<10} train clips {p.train_clips}, test {p.test_clips}, "
              f"{p.epochs} epochs, backbone {p.backbone}")


def cmd_pretrain(a: argparse.Namespace) -> None:
    from tail_bench.models.builder import build_backbone
    from tail_bench.models.configs import get_config
    from tail_bench.models.pretrain import weights_path
    from tail_bench.runner import resolve_device

    build_backbone(a.backbone, device=resolve_device(a.device), force_pretrain=True)
    print(f"pretrained {a.backbone}: {weights_path(get_config(a.backbone))}")


def cmd_report(a: argparse.Namespace) -> None:
    from tail_bench.reporting.plots import write_plots
    from tail_bench.reporting.results import load_clips, load_run, write_derived
    from tail_bench.reporting.tables import render_markdown

    run = load_run(a.run_dir)
    clips = load_clips(a.run_dir, run)
    write_derived(a.run_dir, run, clips)
    write_plots(a.run_dir, run)
    print(render_markdown(run, clips))


def cmd_prepare(a: argparse.Namespace) -> None:
    from tail_bench.streams.tail import AUDIOCAPS_PATTERNS, prepare

    code = prepare(a.data_root, policy=a.on_error, out=a.out, cache=a.cache,
                   sample_rate=a.sample_rate, clip_seconds=a.clip_seconds,
                   patterns=tuple(a.audiocaps_pattern or AUDIOCAPS_PATTERNS),
                   progress=not a.no_progress)
    sys.exit(code)


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--on-error", default="fail", choices=["fail", "skip"],
                   help="tail: stop on bad data (default), or skip and record bad items")
    p.add_argument("--audiocaps-pattern", action="append", metavar="PATTERN",
                   help="AudioCaps file stem, repeatable; default: Y{youtube_id}, "
                        "{youtube_id}, {youtube_id}_{start_time} (+ .wav/.flac/.ogg)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tail-bench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="train strategies on a stream and write forgetting tables")
    r.add_argument("--strategy", required=True, help="strategy name (see `tail-bench list`)")
    r.add_argument("--baselines", help="'all' or a comma list of strategies run alongside")
    r.add_argument("--benchmark", default="tail-synth", help="tail-synth (default) or tail")
    r.add_argument("--preset", default="default", help="quick | default (sizes, epochs)")
    r.add_argument("--epochs", type=int, help="epochs per step (default: the preset's)")
    r.add_argument("--lr", type=float, help="learning rate (default: the preset's)")
    r.add_argument("--batch-size", type=int, help="batch size (default: the preset's)")
    r.add_argument("--seed", type=int, default=0, help="training seed")
    r.add_argument("--seeds", type=int, nargs="+", help="several seeds: mean ± std")
    r.add_argument("--data-seed", type=int,
                   help="fix the generated stream's seed for every seed (default: each "
                        "training seed also draws its own tail-synth data)")
    r.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    r.add_argument("--workers", type=int, default=0,
                   help="data-loading processes (decode real audio off the main process)")
    r.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="autocast precision for training and evaluation (losses and metrics "
                        "stay fp32); auto: fp32 on the CPU, bf16 on CUDA")
    r.add_argument("--eval-batch-size", type=int,
                   help="clips per evaluation batch (default: 256 on CUDA, else max(batch, 64))")
    r.add_argument("--out", type=Path, help="run directory (default results/runs/<time>)")
    r.add_argument("--backbone", help="backbone name or local checkpoint directory")
    r.add_argument("--order", help="comma list of data sets: the stream's order (or subset)")
    r.add_argument("--length", type=int, help="tail-synth: number of steps (>4 adds variants)")
    r.add_argument("--opt", action="append", default=[], metavar="STRATEGY.KEY=VALUE",
                   help="strategy option, repeatable (see docs/strategies.md)")
    r.add_argument("--plugin", action="append", default=[], metavar="MODULE:CLASS",
                   help="load a strategy class from an importable module")
    r.add_argument("--data-root", type=Path, help="tail: folder holding the four data sets")
    _data_options(r)
    r.add_argument("--eval-split", default="test", choices=["test", "val"],
                   help="score the test splits (default) or the val splits (for tuning)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.set_defaults(func=cmd_run)

    ls = sub.add_parser("list", help="strategies, benchmarks, backbones and presets")
    ls.add_argument("--plugin", action="append", default=[], metavar="MODULE:CLASS")
    ls.set_defaults(func=cmd_list)

    pt = sub.add_parser("pretrain", help="(re)build the embedded backbone's cached weights")
    pt.add_argument("--backbone", default="synth-small")
    pt.add_argument("--device", default="auto")
    pt.set_defaults(func=cmd_pretrain)

    rp = sub.add_parser("report", help="rebuild tables and plots from a run directory")
    rp.add_argument("run_dir", type=Path)
    rp.set_defaults(func=cmd_report)

    pr = sub.add_parser("prepare", help="validate a TAIL data root; optionally cache audio")
    pr.add_argument("--benchmark", default="tail", choices=["tail"])
    pr.add_argument("--data-root", type=Path, required=True)
    _data_options(pr)
    pr.add_argument("--out", type=Path, help="where the report (and skip list) is written")
    pr.add_argument("--cache", action="store_true", help="build the decoded-audio cache")
    pr.add_argument("--sample-rate", type=int, default=16_000)
    pr.add_argument("--clip-seconds", type=float, default=2.0)
    pr.add_argument("--no-progress", action="store_true", help="no progress bars")
    pr.set_defaults(func=cmd_prepare)
    return p


def main(argv: list[str] | None = None) -> None:
    from tail_bench.errors import Interrupted

    args = parser().parse_args(argv)
    try:
        args.func(args)
    except (Interrupted, KeyboardInterrupt) as err:
        print(f"tail-bench: {err or 'interrupted'}", file=sys.stderr)
        raise SystemExit(130) from None
    except (KeyError, ValueError, FileNotFoundError, FileExistsError, TypeError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise SystemExit(f"tail-bench: error: {msg}") from err
