"""Longer streams: every continual method on tail-synth at 4, 8 and 16 steps, how its
final average, plasticity and forgetting change with the number of steps, and what it
costs per step (training time, peak memory, stored state).

    python benchmarks/stream_length.py --out results/reference/stream-length  # run, report
    tail-bench report results/reference/stream-length   # rebuild from the run files only
    tail-bench bench stream_length --out DIR --lengths 4 8 --seeds 0   # other sizes

Sizes (the study must fit in one hour on a 2-core CPU): the `quick` preset (synth-tiny
backbone; 96/32/96/96 training clips per step, cycled over the stream; 40 test clips per
data set; 2 epochs; batch 32) instead of the default one (synth-small, 1000/300/800/1000
clips, 500 test clips, 4 epochs), 3 seeds, and the runs' tables and plots written once,
at the end (`--report-every run`). Every continual method (a registered strategy that
trains step by step: not zeroshot, not joint) runs with its defaults. Measured: 22.2 min
with one torch thread (4 steps 1.9 min, 8 steps 5.1 min, 16 steps 15.2 min).

Writes to `--out`: `configs/length-<L>.yaml` (the exact run options: `tail-bench run
--config configs/length-8.yaml --out NEW` replays one), `runs/length-<L>/` (each a
`tail-bench run` directory, which `tail-bench report` rebuilds), `study.json` (what was
asked and how long each length took), and, derived from the run files alone (rebuilt by
`tail-bench report OUT`, no training): `summary.json`, `table.md`, `quality.png` and
`cost.png`. A length whose run directory
exists is continued (`--resume`) or, when finished, kept.

The report (what "stored state" and its growth kinds mean) is in
`tail_bench/reporting/study.py`; `tail-bench report OUT` rebuilds it without training.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from tail_bench import config
from tail_bench.reporting.study import STUDY_FILE, STUDY_TABLE, report, run_dir

LENGTHS = (4, 8, 16)
SEEDS = (0, 1, 2)
PRESET = "quick"


def continual_methods(plugins: list[str] = ()) -> list[str]:
    """Every registered strategy that learns step by step (not the zero-shot and joint
    reference rows)."""
    from tail_bench.training.registry import available_strategies

    return [name for name, cls in available_strategies(list(plugins)).items()
            if cls.trains and not cls.joint]


def config_for(out: Path, length: int, *, methods: list[str], seeds: list[int], preset: str,
               epochs: int | None, device: str, progress: bool):
    from tail_bench.config import RunConfig

    return RunConfig(strategy=methods[0], baselines=methods[1:], preset=preset,
                     epochs=epochs, seeds=list(seeds), length=length, device=device,
                     out=run_dir(out, length), progress=progress, tensorboard=False,
                     report_every="run")


def run_study(out: Path, *, lengths: list[int], methods: list[str], seeds: list[int],
              preset: str = PRESET, epochs: int | None = None, device: str = "auto",
              progress: bool = True) -> dict[str, Any]:
    """Run (or continue) every length, then write the report."""
    import yaml

    from tail_bench.runner import run
    from tail_bench.storage import atomic_write_json, atomic_write_text

    out = Path(out)
    study_file = out / STUDY_FILE
    study = json.loads(study_file.read_text()) if study_file.exists() else {}
    study.update({"lengths": list(lengths), "methods": list(methods), "seeds": list(seeds),
                  "preset": preset, "epochs": epochs, "device": device})
    study.setdefault("elapsed_seconds", {})
    for length in lengths:
        cfg = config_for(out, length, methods=methods, seeds=seeds, preset=preset,
                         epochs=epochs, device=device, progress=progress)
        options = {k: v for k, v in cfg.as_dict().items() if k != "out"}
        atomic_write_text(out / "configs" / f"length-{length}.yaml",
                          f"# {run_dir(out, length)}: tail-bench run --config THIS --out DIR "
                          "replays it\n" + yaml.safe_dump(options, sort_keys=False))
        start = time.perf_counter()
        run(cfg, resume=(cfg.out / "run.json").exists())
        spent = time.perf_counter() - start
        key = str(length)
        study["elapsed_seconds"][key] = round(study["elapsed_seconds"].get(key, 0) + spent, 1)
        atomic_write_json(study_file, study)
        print(f"length {length}: {spent:.0f} s", flush=True)
    return report(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(
        prog="tail-bench bench stream_length",
        description="Every continual method on tail-synth at several stream lengths: quality "
                    "and cost against the number of steps (docs/results.md). A length "
                    "already in --out is kept, or continued when unfinished; `tail-bench "
                    "report OUT` rebuilds the table and figures without training.")
    p.add_argument("--out", type=Path, default=Path("results/reference/stream-length"),
                   help="the study directory (default: the reference one)")
    p.add_argument("--lengths", "--length", type=int, nargs="+", default=list(LENGTHS),
                   help="stream lengths (tail-synth --length), default 4 8 16")
    p.add_argument("--methods", nargs="+", help="default: every continual method")
    run_flags = ("seeds", "preset", "epochs", "device", "progress")
    config.add_arguments(p, only=run_flags)
    p.epilog = (f"Study defaults: --seeds {' '.join(map(str, SEEDS))} (data and training "
                f"seeds), --preset {PRESET} (sized to fit an hour on 2 CPU cores); the other "
                "run flags as `tail-bench run`'s.")
    a = p.parse_args(argv)
    run_as = config.script_values(a, run_flags, seeds=list(SEEDS), preset=PRESET)
    summary = run_study(a.out, lengths=a.lengths, methods=a.methods or continual_methods(),
                        **run_as)
    print((Path(a.out) / STUDY_TABLE).read_text())
    return summary


if __name__ == "__main__":
    main()
