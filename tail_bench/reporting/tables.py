"""Tables from a run file (pure functions of the run.json dict, so reruns are free).

Values are shown in percent. The comparison table follows the layout of the TAIL paper's
main table: one row per method, final R@1 per data set, averages, forgetting, BWT, and the
trainable parameters with their share of Finetune's.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from statistics import mean, pstdev
from typing import Any

from tail_bench.evaluation import cl_metrics

DIRECTIONS = ("t2a", "a2t")


def matrix(entry: dict[str, Any], datasets: list[str], direction: str,
           metric: str = "R@1") -> list[list[float]]:
    return [[row["scores"][d][direction][metric] for d in datasets] for row in entry["rows"]]


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _cell(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "—"
    if len(vals) == 1:
        return _pct(vals[0])
    return f"{100 * mean(vals):.1f}±{100 * pstdev(vals):.1f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _done(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in run["runs"] if e["rows"]]


def summary(entry: dict[str, Any], datasets: list[str]) -> dict[str, dict[str, Any]]:
    """cl_metrics.summarize for R@1 and mAP@10 in both directions."""
    return {f"{d}:{m}": cl_metrics.summarize(matrix(entry, datasets, d, m))
            for d in DIRECTIONS for m in ("R@1", "mAP@10")}


def comparison_table(run: dict[str, Any]) -> str:
    datasets = run["stream"]["datasets"]
    by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    rank = {"zero-shot": 0, "continual": 1, "joint": 2}  # the paper's row order
    for e in sorted(_done(run), key=lambda e: rank.get(e.get("role"), 1)):
        by_method[e["method"]].append(e)
    finetune = [e["cost"]["trainable_params"] for e in by_method.get("finetune", [])
                if "cost" in e]
    header = (["method", "seeds"] + [f"{d} R@1 t2a / a2t" for d in datasets]
              + ["avg R@1 t2a / a2t", "avg mAP@10 t2a / a2t", "forgetting R@1 t2a / a2t",
                 "BWT R@1 t2a / a2t", "trainable params", "share of Finetune"])
    rows = []
    for method, entries in by_method.items():
        sums = [summary(e, datasets) for e in entries]
        finals = [matrix(e, datasets, d)[-1] for e in entries for d in DIRECTIONS]

        def pair(key: str, field: str, s=sums) -> str:
            return " / ".join(_cell([x[f"{d}:{key}"].get(field) for x in s]) for d in DIRECTIONS)

        per_ds = [" / ".join(_cell([finals[2 * i + k][j] for i in range(len(entries))])
                             for k in range(2)) for j in range(len(datasets))]
        params = [e["cost"]["trainable_params"] for e in entries if "cost" in e]
        share = (f"{100 * params[0] / finetune[0]:.2f}%" if params and finetune else "—")
        rows.append([method, str(len(entries)), *per_ds, pair("R@1", "final_average"),
                     pair("mAP@10", "final_average"), pair("R@1", "mean_forgetting"),
                     pair("R@1", "bwt"), f"{params[0]:,}" if params else "—", share])
    return _table(header, rows)


def step_table(run: dict[str, Any], entry: dict[str, Any], direction: str,
               metric: str = "R@1") -> str:
    datasets = run["stream"]["datasets"]
    r = matrix(entry, datasets, direction, metric)
    rows = []
    for row, values in zip(entry["rows"], r, strict=True):
        label = "zero-shot" if row["step"] == 0 else f"after {row['step']}: {row['after']}"
        seen = cl_metrics.average_after(r, row["step"]) if len(r) == len(datasets) + 1 else None
        rows.append([label, *map(_pct, values), _pct(seen)])
    s = cl_metrics.summarize(r) if len(r) == len(datasets) + 1 else {}
    if s:
        rows.append(["forgetting", *map(_pct, s["forgetting"]), _pct(s["mean_forgetting"])])
    title = (f"**{entry['method']}** (seed {entry['seed']}), {direction} {metric} (%)"
             + (f": final avg {_pct(s['final_average'])}, BWT {_pct(s['bwt'])}, "
                f"FWT {_pct(s['fwt'])}" if s else ""))
    return title + "\n\n" + _table(["row", *datasets, "avg seen / mean"], rows)


def cost_table(run: dict[str, Any]) -> str:
    rows = []
    for e in _done(run):
        c = e.get("cost", {})
        rows.append([e["method"], str(e["seed"]), f"{c.get('trainable_params', 0):,}",
                     f"{c.get('backbone_params', 0):,}", f"{c.get('train_seconds', 0):.1f}",
                     f"{c.get('eval_seconds', 0):.1f}", f"{c.get('peak_memory_mb', 0):.0f}",
                     c.get("memory_kind", "—"), e["status"]])
    return _table(["method", "seed", "trainable params", "backbone params", "train s",
                   "eval s", "peak MB", "memory", "status"], rows)


def render_markdown(run: dict[str, Any]) -> str:
    stream = run["stream"]
    parts = [f"# tail-bench run: {stream['name']} ({' -> '.join(stream['datasets'])})", "",
             f"Backbone `{run['config']['backbone']}`, preset `{run['config']['preset']}`, "
             f"device `{run['config']['device']}`, scored on the "
             f"`{run['config'].get('eval_split', 'test')}` splits.", ""]
    if _done(run):
        parts += ["## Comparison (final row; mean±std over seeds)", "", comparison_table(run),
                  "", "## Cost", "", cost_table(run), "", "## Per step", ""]
        for e in _done(run):
            for d in DIRECTIONS:
                parts += [step_table(run, e, d), ""]
    return "\n".join(parts)


def scores_csv(run: dict[str, Any]) -> str:
    """Long format: one line per method, seed, step, data set, direction and metric."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "seed", "step", "after", "dataset", "direction", "metric", "value"])
    for e in run["runs"]:
        for row in e["rows"]:
            for ds, dirs in row["scores"].items():
                for d, metrics in dirs.items():
                    for m, v in metrics.items():
                        w.writerow([e["method"], e["seed"], row["step"], row["after"] or "",
                                    ds, d, m, f"{v:.6f}"])
    return buf.getvalue()
