"""Grid-search a strategy's options on the validation splits and print the figures.

Example:
    python benchmarks/sweep.py --strategy ewc --grid lambda_ewc=1,10,100 --preset default
Scores come from `--eval-split val`, so the test splits stay untouched for reporting.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

from tail_bench.evaluation import cl_metrics
from tail_bench.reporting.results import load_run
from tail_bench.reporting.tables import matrix
from tail_bench.runner import RunConfig, run


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--strategy", required=True)
    p.add_argument("--grid", nargs="+", required=True, metavar="KEY=V1,V2")
    p.add_argument("--preset", default="default")
    p.add_argument("--lr", type=float)
    a = p.parse_args()
    keys = [g.split("=", 1)[0] for g in a.grid]
    values = [g.split("=", 1)[1].split(",") for g in a.grid]
    print(f"{a.strategy} on the val splits ({a.preset}): final avg R@1 t2a, mean forgetting t2a")
    for combo in itertools.product(*values):
        opts = dict(zip(keys, combo, strict=True))
        with tempfile.TemporaryDirectory() as tmp:
            out = run(RunConfig(strategy=a.strategy, preset=a.preset, lr=a.lr,
                                out=Path(tmp) / "run", options={a.strategy: opts},
                                eval_split="val", progress=False))
            result = load_run(out)
        r = matrix(result["runs"][0], result["stream"]["datasets"], "t2a")
        f = cl_metrics.mean_forgetting(r)
        print(f"  {opts}: final avg {100 * cl_metrics.final_average(r):.1f}, "
              f"forgetting {'—' if f is None else f'{100 * f:.1f}'}", flush=True)


if __name__ == "__main__":
    main()
