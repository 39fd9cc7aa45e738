"""Tables from a run file (pure functions of the run.json dict and its per-clip sums, so
reruns are free).

Values are shown in percent. The comparison table follows the layout of the TAIL paper's
main table: one row per method, final R@1 per data set, averages, learning accuracy,
forgetting, BWT, and the trainable parameters with their share of Finetune's. With one
seed a cell is `value [95% interval]` (clip-level bootstrap); with several it is
`mean±std` over seeds (sample std, ddof=1). Arrows mark differences from the first
strategy that a paired bootstrap over clips and seeds finds significant at 95%; a cell
without one is not significantly different. Only methods that finished every step are
compared; the others are listed with their status. A run with `--gallery union` or `both`
gets its tables for each gallery it reports, labelled, and (for both) the gap between them.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from statistics import mean, stdev
from typing import Any

import numpy as np

from tail_bench.evaluation import bootstrap, cl_metrics, galleries

DIRECTIONS = ("t2a", "a2t")
HEADS = ("audio_head", "text_head", "logit_scale")  # not counted by "share without heads"
FINISHED = "done"
Clips = dict  # (method, seed) -> step -> bootstrap.ClipScores


def value(score: dict | float) -> float:
    return score["value"] if isinstance(score, dict) else score


def matrix(entry: dict[str, Any], datasets: list[str], direction: str,
           metric: str = "R@1") -> list[list[float]]:
    return [[value(row["scores"][d][direction][metric]) for d in datasets]
            for row in entry["rows"]]


def _pct(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.1f}"


def _ci(x: float | None, ci: list[float] | tuple[float, float] | None) -> str:
    if ci is None or x is None:
        return _pct(x)
    return f"{_pct(x)} [{_pct(ci[0])}, {_pct(ci[1])}]"


@dataclass
class Table:
    """A table whatever the output format: header, rows of cells, and a title."""

    header: list[str]
    rows: list[list[str]]
    title: str = ""

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return (self.title + "\n\n" if self.title else "") + "\n".join(lines)

    def latex(self) -> str:
        """A booktabs table, ready for a paper."""
        spec = "l" * min(2, len(self.header)) + "r" * max(0, len(self.header) - 2)
        lines = [r"\begin{table}[t]", r"\centering", r"\small",
                 rf"\caption{{{_tex(self.title)}}}" if self.title else "",
                 rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
                 " & ".join(_tex(h) for h in self.header) + r" \\", r"\midrule",
                 *[" & ".join(_tex(c) for c in r) + r" \\" for r in self.rows],
                 r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        return "\n".join(line for line in lines if line)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
        "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}", "±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$",
        "—": "---", "−": "$-$", "→": r"$\rightarrow$", "`": "", "*": ""}


def _tex(text: str) -> str:
    return "".join(_TEX.get(c, c) for c in str(text))


def setting(run: dict[str, Any], key: str) -> Any:
    """A run's setting as it ran: resolved (schema 2) or as given (older run files)."""
    return run.get("resolved", {}).get(key, run["config"].get(key))


def finished(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in run["runs"] if e["status"] == FINISHED]


def unfinished(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in run["runs"] if e["status"] != FINISHED]


def summary(entry: dict[str, Any], datasets: list[str]) -> dict[str, dict[str, Any]]:
    """cl_metrics.summarize for R@1 and mAP@10 in both directions."""
    return {f"{d}:{m}": cl_metrics.summarize(matrix(entry, datasets, d, m))
            for d in DIRECTIONS for m in ("R@1", "mAP@10")}


# A comparison column: (label, metric, function of a results matrix stack, continual only)
def _final_of(j: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda r: np.asarray(r)[..., -1, j]


def _columns(datasets: list[str]) -> list[tuple[str, str, Callable, bool]]:
    return ([(f"{d.removeprefix(galleries.UNION)} R@1", "R@1", _final_of(j), False)
             for j, d in enumerate(datasets)]
            + [("avg R@1", "R@1", cl_metrics.final_average, False),
               ("avg mAP@10", "mAP@10", cl_metrics.final_average, False),
               ("learning acc R@1", "R@1", cl_metrics.learning_accuracy, True),
               ("forgetting R@1", "R@1", cl_metrics.mean_forgetting, True),
               ("BWT R@1", "R@1", cl_metrics.bwt, True)])


def _rows_of(clips: Clips | None, entry: dict[str, Any]) -> list | None:
    table = (clips or {}).get((entry["method"], entry["seed"]))
    if not table or len(table) != len(entry["rows"]):
        return None
    return [table[row["step"]] for row in entry["rows"]]


def _cell(entries: list[dict[str, Any]], datasets: list[str], direction: str, metric: str,
          fn: Callable, clips: Clips | None) -> tuple[str, list[float]]:
    values = [fn(np.array(matrix(e, datasets, direction, metric))) for e in entries]
    if any(v is None for v in values):
        return "—", []
    values = [float(v) for v in values]
    if len(values) > 1:
        return f"{100 * mean(values):.1f}±{100 * stdev(values):.1f}", values
    rows = _rows_of(clips, entries[0])
    ci = None if rows is None else bootstrap.summary_ci(rows, datasets, direction, metric, fn)
    return _ci(values[0], ci), values


def _mark(a: list[dict[str, Any]], b: list[dict[str, Any]], datasets: list[str],
          direction: str, metric: str, fn: Callable, clips: Clips | None) -> str:
    """'↑'/'↓' when a differs significantly from b (paired over shared seeds), else ''."""
    by_seed = {e["seed"]: e for e in b}
    pairs = [(_rows_of(clips, e), _rows_of(clips, by_seed[e["seed"]])) for e in a
             if e["seed"] in by_seed]
    pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
    if not pairs:
        return ""
    test = bootstrap.paired_difference([x for x, _ in pairs], [y for _, y in pairs],
                                       datasets, direction, metric, fn)
    if not test["significant"]:
        return ""
    return "↑" if test["difference"] > 0 else "↓"


def gallery_of(run: dict[str, Any]) -> str:
    """The run's --gallery (runs before it existed were per-dataset)."""
    return setting(run, "gallery") or "per-dataset"


def _labelled(title: str, run: dict[str, Any], gallery: str) -> str:
    return title if gallery_of(run) == "per-dataset" else f"{title}, {gallery} gallery"


def comparison_table(run: dict[str, Any], clips: Clips | None = None,
                     gallery: str = "per-dataset") -> Table:
    datasets = galleries.keys(run["stream"]["datasets"], gallery)
    by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    rank = {"zero-shot": 0, "continual": 1, "joint": 2}  # the paper's row order
    for e in sorted(finished(run), key=lambda e: rank.get(e.get("role"), 1)):
        by_method[e["method"]].append(e)
    first = run["config"].get("strategy")
    reference = by_method.get(first, [])
    finetune = [e["cost"]["trainable_params"] for e in by_method.get("finetune", [])]
    columns = _columns(datasets)
    header = (["method", "seeds"] + [f"{label} t2a / a2t" for label, *_ in columns]
              + ["trainable params", "share of Finetune", "share without heads & scale"])
    rows = []
    for method, entries in by_method.items():
        continual = len(entries[0]["rows"]) == len(datasets) + 1
        cells = []
        for _, metric, fn, needs_steps in columns:
            if needs_steps and not continual:
                cells.append("— / —")
                continue
            parts = []
            for d in DIRECTIONS:
                text, _ = _cell(entries, datasets, d, metric, fn, clips)
                if method != first and reference and (continual or not needs_steps):
                    ref_ok = len(reference[0]["rows"]) == len(datasets) + 1 or not needs_steps
                    text += _mark(entries, reference, datasets, d, metric, fn,
                                  clips) if ref_ok else ""
                parts.append(text)
            cells.append(" / ".join(parts))
        cost = entries[0]["cost"]
        params = cost["trainable_params"]
        heads = sum(cost.get("trainable_by_module", {}).get(k, 0) for k in HEADS)
        shares = [f"{100 * n / finetune[0]:.2f}%" if finetune and finetune[0] else "—"
                  for n in (params, params - heads)]
        rows.append([method, str(len(entries)), *cells, f"{params:,}", *shares])
    return Table(header, rows, _labelled("Comparison (final row)", run, gallery))


def gallery_gap_table(run: dict[str, Any]) -> Table:
    """Final average R@1 per gallery and how much a method loses without the data set's
    identity (per-dataset minus union), mean over seeds."""
    names, rows = run["stream"]["datasets"], []
    by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in finished(run):
        by_method[e["method"]].append(e)
    for method, entries in by_method.items():
        cells = []
        for d in DIRECTIONS:
            per, uni = (mean(cl_metrics.final_average(matrix(e, galleries.keys(names, g), d))
                             for e in entries) for g in ("per-dataset", "union"))
            cells += [_pct(per), _pct(uni), _pct(per - uni)]
        rows.append([method, *cells])
    return Table(["method"] + [f"{d} {c}" for d in DIRECTIONS
                               for c in ("per-dataset", "union", "gap")], rows,
                 "Gallery gap (final avg R@1, per-dataset − union)")


def legend(run: dict[str, Any]) -> str:
    first = run["config"].get("strategy")
    return (f"One seed: value [95% interval, clip-level bootstrap]; several seeds: mean±std "
            f"over seeds (ddof=1). ↑/↓: significantly higher/lower than `{first}` (paired "
            "bootstrap over clips and seeds, 95%); no arrow: not significantly different. "
            "Learning acc = mean of R[j][j] (plasticity); forgetting = mean over j < T of "
            "max_l R[l][j] − R[T][j]. The last column leaves out the projection heads and the "
            "logit scale (for PTAT: the prompts and their generator alone; the paper's PTAT "
            "share is 2.42%).")


def status_table(run: dict[str, Any]) -> Table:
    """Methods that did not finish every step: never ranked with the finished ones."""
    rows = []
    for e in unfinished(run):
        last = e["rows"][-1]["step"] if e["rows"] else None
        failure = e.get("failure", {})
        rows.append([e["method"], str(e["seed"]), e["status"],
                     "none" if last is None else str(last), failure.get("message", "")])
    return Table(["method", "seed", "status", "last completed step", "why"], rows,
                 "Unfinished (not compared)")


def step_table(run: dict[str, Any], entry: dict[str, Any], direction: str,
               metric: str = "R@1", gallery: str = "per-dataset") -> Table:
    names = run["stream"]["datasets"]
    datasets = galleries.keys(names, gallery)
    r = matrix(entry, datasets, direction, metric)
    full = len(r) == len(datasets) + 1
    rows = []
    for row, values in zip(entry["rows"], r, strict=True):
        label = "zero-shot" if row["step"] == 0 else f"after {row['step']}: {row['after']}"
        seen = cl_metrics.average_after(r, row["step"]) if full else None
        cis = [row["scores"][d][direction][metric].get("ci95")
               if isinstance(row["scores"][d][direction][metric], dict) else None
               for d in datasets]
        rows.append([label, *(_ci(v, c) for v, c in zip(values, cis, strict=True)),
                     _pct(seen)])
    s = cl_metrics.summarize(r) if full else {}
    if s:
        rows.append(["forgetting", *map(_pct, s["forgetting"]), _pct(s["mean_forgetting"])])
    status = "" if entry["status"] == FINISHED else f" — {entry['status'].upper()}"
    title = (_labelled(f"**{entry['method']}** (seed {entry['seed']}), {direction} {metric} (%)",
                       run, gallery)
             + (f": final avg {_pct(s['final_average'])}, learning acc "
                f"{_pct(s['learning_accuracy'])}, BWT {_pct(s['bwt'])}, FWT {_pct(s['fwt'])}"
                if s else "") + status)
    return Table(["row", *names, "avg seen / mean"], rows, title)


def cost_table(run: dict[str, Any]) -> Table:
    rows = []
    for e in run["runs"]:
        c = e.get("cost", {})
        rows.append([e["method"], str(e["seed"]), f"{c.get('trainable_params', 0):,}",
                     f"{c.get('backbone_params', 0):,}", f"{c.get('train_seconds', 0):.1f}",
                     f"{c.get('eval_seconds', 0):.1f}", f"{c.get('peak_memory_mb', 0):.0f}",
                     c.get("memory_kind", "—"), _stored(c), e["status"]])
    return Table(["method", "seed", "trainable params", "backbone params", "train s",
                  "eval s", "peak MB", "memory", "stored data", "status"], rows, "Cost")


def _stored(cost: dict[str, Any]) -> str:
    """What a method keeps between steps (a replay buffer), or — for none."""
    if "memory_clips" not in cost:
        return "—"
    return f"{cost['memory_clips']:,} clips, {cost['memory_mb']:.1f} MB"


def sections(run: dict[str, Any], clips: Clips | None = None) -> list[str | Table]:
    """The report, in order: paragraphs and tables (every format renders the same)."""
    stream = run["stream"]
    out: list[str | Table] = [
        f"tail-bench run: {stream['name']} ({' -> '.join(stream['datasets'])})",
        f"Backbone `{setting(run, 'backbone')}`, preset `{setting(run, 'preset')}`, device "
        f"`{setting(run, 'device')}`, precision `{setting(run, 'precision') or 'fp32'}`, "
        f"scored on the `{setting(run, 'eval_split') or 'test'}` splits."]
    shown = galleries.shown(gallery_of(run))
    if finished(run):
        out += [legend(run), *(comparison_table(run, clips, g) for g in shown)]
        if len(shown) > 1:
            out.append(gallery_gap_table(run))
    if unfinished(run):
        out.append(status_table(run))
    if run["runs"]:
        out += [cost_table(run), "Per step. Each cell: value [95% interval, clip-level "
                                 "bootstrap]."]
        out += [step_table(run, e, d, gallery=g) for e in run["runs"] if e["rows"]
                for g in shown for d in DIRECTIONS]
    return out


def render(run: dict[str, Any], clips: Clips | None = None, fmt: str = "md") -> str:
    """The whole report as Markdown (`md`) or as LaTeX tables with booktabs (`latex`)."""
    title, *body = sections(run, clips)
    if fmt == "latex":
        return "\n\n".join(f"% {p}" if isinstance(p, str) else p.latex()
                             for p in [title, *body]) + "\n"
    parts = [f"# {title}"]
    for p in body:
        if isinstance(p, str):
            parts.append(p)
        elif p.title.startswith("**"):  # a per-step table: its title is a bold line
            parts.append(p.markdown())
        else:
            parts.append(f"## {p.title}\n\n" + Table(p.header, p.rows).markdown())
    return "\n\n".join(parts) + "\n"


def scores_csv(run: dict[str, Any]) -> str:
    """Long format: one line per method, seed, step, data set, direction and metric."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "seed", "status", "step", "after", "dataset", "direction", "metric",
                "value", "ci95_low", "ci95_high"])
    for e in run["runs"]:
        for row in e["rows"]:
            for ds, dirs in row["scores"].items():
                for d, metrics in dirs.items():
                    for m, v in metrics.items():
                        ci = v.get("ci95") if isinstance(v, dict) else None
                        lo, hi = ("", "") if ci is None else (f"{ci[0]:.6f}", f"{ci[1]:.6f}")
                        w.writerow([e["method"], e["seed"], e["status"], row["step"],
                                    row["after"] or "", ds, d, m, f"{value(v):.6f}", lo, hi])
    return buf.getvalue()
