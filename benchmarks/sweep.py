"""The tuning protocol: every method's configurations from one grid file, scored on the
validation splits only, the same budget for every method (docs/strategies.md).

    python benchmarks/sweep.py benchmarks/grids/tail-synth-default.json --out results/sweeps/x
    python benchmarks/sweep.py GRID --methods ptat l2p      # a subset, same protocol

For each method, in the file's order, each configuration is one `tail-bench run` with
`--eval-split val`; the selection score is the grid's `select` summary (by default the final
average t2a R@1 over every data set's val split). `sees: K` (an integer) selects on the
first K steps of the stream only, as a deployed learner would have to. Finetune's
configurations set the run-wide learning rate; the methods after it run at the chosen one
unless their configuration names its own. A method may be a row with an Avalanche plugin
(`finetune+EWCPlugin`); its configurations' `plugin` key sets the plugin's options.
Writes `sweep.json` and `sweep.md` to `--out` after every configuration (atomically), and
prints the chosen configuration per method.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from tail_bench.evaluation import cl_metrics
from tail_bench.record import load_run
from tail_bench.reporting.tables import Table
from tail_bench.runner import RunConfig, run
from tail_bench.storage import atomic_write_json, atomic_write_text


def load_grid(path: Path) -> dict:
    grid = json.loads(Path(path).read_text())
    budget = grid["budget"]
    for method, configs in grid["methods"].items():
        if len(configs) != budget:
            raise SystemExit(f"{path}: {method} has {len(configs)} configurations; the "
                             f"protocol gives every method the same budget ({budget})")
        for c in configs:
            if set(c) - {"lr", "opt", "plugin"}:
                raise SystemExit(f"{path}: {method} configuration {c}: expected keys lr, opt, "
                                 "plugin")
            if "plugin" in c and "+" not in method:
                raise SystemExit(f"{path}: {method} configuration {c}: `plugin` sets the "
                                 "options of a row's last Avalanche plugin, e.g. a method "
                                 "named finetune+EWCPlugin")
    return grid


def score(run_dir: Path, select: dict) -> tuple[float, dict]:
    result = load_run(run_dir)
    r = np.array(result.entries[0].matrix(result.datasets, select["direction"],
                                          select["metric"]))
    summary = cl_metrics.summarize(r)
    return float(summary[select["summary"]]), {
        k: summary.get(k) for k in ("final_average", "learning_accuracy", "mean_forgetting")}


def row_spec(method: str, config: dict) -> str:
    """The row a configuration runs: `finetune+EWCPlugin` with {"plugin": {"ewc_lambda": 10}}
    is `finetune+EWCPlugin(ewc_lambda=10)`."""
    args = ",".join(f"{k}={v}" for k, v in config.get("plugin", {}).items())
    return f"{method}({args})" if args else method


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("grid", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--methods", nargs="+", help="default: the grid's order")
    a = p.parse_args(argv)
    grid = load_grid(a.grid)
    select, sees = grid["select"], grid["select"].get("sees", "all")
    order = None
    if sees != "all":
        from tail_bench.streams import synth

        order = [d.key for d in synth.stream_domains(4)][: int(sees)]
    lr = None
    record = {"grid": grid, "results": {}, "chosen": {}}
    for method in a.methods or grid["order"]:
        rows = []
        for config in grid["methods"][method]:
            with tempfile.TemporaryDirectory() as tmp:
                opt = config.get("opt", {})
                out = run(RunConfig(strategy=row_spec(method, config), preset=grid["preset"],
                                    seeds=grid["seeds"], lr=config.get("lr", lr),
                                    options={method.split("+")[0]: opt} if opt else {},
                                    order=order,
                                    eval_split="val", out=Path(tmp) / "run", progress=False))
                value, extra = score(out, select)
            rows.append({"config": config, "score": value, **extra})
            print(f"  {method} {config}: {select['summary']} {100 * value:.1f}", flush=True)
            record["results"][method] = rows
            atomic_write_json(a.out / "sweep.json", record)
        best = max(rows, key=lambda r: r["score"])
        record["chosen"][method] = best["config"]
        if method == "finetune":
            lr = best["config"]["lr"]
        print(f"{method}: chosen {best['config']} ({100 * best['score']:.1f})", flush=True)
        atomic_write_json(a.out / "sweep.json", record)
        atomic_write_text(a.out / "sweep.md", markdown(record))


def markdown(record: dict) -> str:
    s = record["grid"]["select"]
    lines = [f"Selection: {s['summary']} of {s['direction']} {s['metric']} on the val splits "
             f"(sees: {s.get('sees', 'all')}), preset {record['grid']['preset']}, seeds "
             f"{record['grid']['seeds']}.", ""]
    rows = [[method, f"`{json.dumps(r['config'])}`", f"{100 * r['score']:.1f}",
             f"{100 * r['final_average']:.1f}", f"{100 * r['learning_accuracy']:.1f}",
             "—" if r["mean_forgetting"] is None else f"{100 * r['mean_forgetting']:.1f}",
             "✓" if record["chosen"].get(method) == r["config"] else ""]
            for method, results in record["results"].items() for r in results]
    lines.append(Table(["method", "configuration", "score", "final avg", "learning acc",
                        "forgetting", "chosen"], rows).markdown())
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
