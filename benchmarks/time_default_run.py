"""Time the README's main job on this machine and print its figures (not a test).

Runs `tail-bench run` on the default tail-synth preset twice: cold (empty cache: the
backbone is read from the shipped weights, the stream generated) and warm (both cached).
Usage:
    python benchmarks/time_default_run.py [--strategy finetune] [--baselines ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(args: list[str], env: dict[str, str], out: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tail_bench", "run", *args, "--out", str(out),
                    "--no-progress"], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--strategy", default="finetune")
    p.add_argument("--baselines", default="")
    p.add_argument("--preset", default="default")
    a = p.parse_args(argv)
    args = ["--strategy", a.strategy, "--preset", a.preset]
    if a.baselines:
        args += ["--baselines", a.baselines]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TAIL_BENCH_CACHE": str(Path(tmp) / "cache")}
        cold = timed_run(args, env, Path(tmp) / "cold")
        warm = timed_run(args, env, Path(tmp) / "warm")
        run = json.loads((Path(tmp) / "warm" / "run.json").read_text())
    print(f"preset {a.preset}, methods {run['resolved']['methods']}, torch threads "
          f"{os.environ.get('OMP_NUM_THREADS', 'default')}")
    print(f"wall time cold (empty cache):                    {cold:.1f} s")
    print(f"wall time warm (cached backbone and stream):     {warm:.1f} s")
    for e in run["runs"]:
        c = e["cost"]
        print(f"  {e['method']:<10} train {c['train_seconds']:.1f} s,"
              f" eval {c['eval_seconds']:.1f} s,"
              f" peak {c['peak_memory_mb']:.0f} MB ({c['memory_kind']}),"
              f" trainable {c['trainable_params']:,}")


if __name__ == "__main__":
    main()
