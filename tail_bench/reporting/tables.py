"""Tables from a run (pure functions of a `record.Run` and its per-clip sums, so reruns
are free): this module renders, tail_bench/record.py says what a run holds.

Values are shown in percent. The comparison table follows the layout of the TAIL paper's
main table: one row per method, final R@1 per data set, averages, learning accuracy,
forgetting, BWT, and the trainable parameters with their share of Finetune's. With one
seed a cell is `value [95% interval]` (clip-level bootstrap); with several it is
`mean±std` over seeds (sample std, ddof=1). Arrows mark differences from the first
strategy that a paired bootstrap over clips and seeds finds significant at 95%; a cell
without one is not significantly different. Only methods that finished every step are
compared; the others are listed with their status. A run with `--gallery union` or `both`
gets its tables for each gallery it reports, labelled, and (for both) the gap between them.
A run over several stream orders (`--orders`) pools every order and seed of a method into
`mean±std`; its per-data-set columns are by data set name (each entry's final score on
that data set, wherever the data set came in its order), its summaries (learning accuracy,
forgetting, BWT) are each computed in the entry's own order, and a column gives each
method's rank in each order, marking (†) those whose rank changes.
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
from tail_bench.record import Entry, Role, Run, order_indices, value

DIRECTIONS = ("t2a", "a2t")
HEADS = ("audio_head", "text_head", "logit_scale")  # not counted by "share without heads"
Clips = dict  # (method, seed, order index) -> step -> bootstrap.ClipScores
CHANGES = "†"  # a method whose rank changes across stream orders


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
    section: bool = True  # Markdown: a `## title` section; False: the title as a line

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
        "^": r"\textasciicircum{}", "±": r"$\pm$", "†": r"$\dagger$", "×": r"$\times$",
        "↑": r"$\uparrow$", "↓": r"$\downarrow$",
        "—": "---", "−": "$-$", "→": r"$\rightarrow$", "`": "", "*": ""}


def _tex(text: str) -> str:
    return "".join(_TEX.get(c, c) for c in str(text))


def summary(entry: Entry, datasets: list[str]) -> dict[str, dict[str, Any]]:
    """cl_metrics.summarize for R@1 and mAP@10 in both directions."""
    return {f"{d}:{m}": cl_metrics.summarize(entry.matrix(datasets, d, m))
            for d in DIRECTIONS for m in ("R@1", "mAP@10")}


# A comparison column: (label, metric, the function of a results matrix stack for an entry
# whose columns are `keys` (its data sets in its own order), continual only)
Summary = Callable[[np.ndarray], np.ndarray]
KeyedSummary = Callable[[list[str]], Summary]


def _final_of(j: int) -> Summary:
    return lambda r: np.asarray(r)[..., -1, j]


def _final_on(key: str) -> KeyedSummary:
    """A data set's final score, found by name in each entry's own order."""
    return lambda keys: _final_of(keys.index(key))


def _any_order(fn: Summary) -> KeyedSummary:
    return lambda keys: fn


def _columns(datasets: list[str]) -> list[tuple[str, str, KeyedSummary, bool]]:
    return ([(f"{d.removeprefix(galleries.UNION)} R@1", "R@1", _final_on(d), False)
             for d in datasets]
            + [("avg R@1", "R@1", _any_order(cl_metrics.final_average), False),
               ("avg mAP@10", "mAP@10", _any_order(cl_metrics.final_average), False),
               ("learning acc R@1", "R@1", _any_order(cl_metrics.learning_accuracy), True),
               ("forgetting R@1", "R@1", _any_order(cl_metrics.mean_forgetting), True),
               ("BWT R@1", "R@1", _any_order(cl_metrics.bwt), True)])


def _rows_of(clips: Clips | None, entry: Entry) -> list | None:
    table = (clips or {}).get(entry.key)
    if not table or len(table) != len(entry.rows):
        return None
    return [table[row.step] for row in entry.rows]


KeysOf = Callable[[Entry], list[str]]


def _cell(entries: list[Entry], keys_of: KeysOf, direction: str, metric: str,
          make: KeyedSummary, clips: Clips | None) -> tuple[str, list[float]]:
    values = [make(keys_of(e))(np.array(e.matrix(keys_of(e), direction, metric)))
              for e in entries]
    if any(v is None for v in values):
        return "—", []
    values = [float(v) for v in values]
    if len(values) > 1:
        return f"{100 * mean(values):.1f}±{100 * stdev(values):.1f}", values
    rows, keys = _rows_of(clips, entries[0]), keys_of(entries[0])
    ci = None if rows is None else bootstrap.summary_ci(rows, keys, direction, metric,
                                                        make(keys))
    return _ci(values[0], ci), values


def _mark(a: list[Entry], b: list[Entry], keys_of: KeysOf,
          direction: str, metric: str, make: KeyedSummary, clips: Clips | None) -> str:
    """'↑'/'↓' when a differs significantly from b (paired over the (seed, order) runs
    both have), else ''."""
    by_run = {e.key[1:]: e for e in b}
    pairs = [(_rows_of(clips, e), _rows_of(clips, by_run[e.key[1:]]), keys_of(e))
             for e in a if e.key[1:] in by_run]
    pairs = [(x, y, k) for x, y, k in pairs if x is not None and y is not None]
    if not pairs:
        return ""
    test = bootstrap.paired_difference([x for x, _, _ in pairs], [y for _, y, _ in pairs],
                                       None, direction, metric, None,
                                       per_pair=[(k, make(k)) for _, _, k in pairs])
    if not test["significant"]:
        return ""
    return "↑" if test["difference"] > 0 else "↓"


def gallery_of(run: Run) -> str:
    """The run's --gallery (runs before it existed were per-dataset)."""
    return run.setting("gallery") or "per-dataset"


def _labelled(title: str, run: Run, gallery: str) -> str:
    return title if gallery_of(run) == "per-dataset" else f"{title}, {gallery} gallery"


def _by_method(run: Run) -> dict[str, list[Entry]]:
    """Finished entries by method, in the paper's row order."""
    by_method: dict[str, list[Entry]] = defaultdict(list)
    rank = {Role.ZERO_SHOT: 0, Role.CONTINUAL: 1, Role.JOINT: 2}
    for e in sorted(run.finished(), key=lambda e: rank.get(e.role, 1)):
        by_method[e.method].append(e)
    return by_method


def ranks_by_order(run: Run, gallery: str = "per-dataset"
                   ) -> dict[str, dict[int, int]]:
    """Each finished method's rank in each stream order it ran: by its final average t2a
    R@1 (mean over its seeds in that order; 1 = best; tied methods share a rank, and
    scores equal to 1e-9 tie), among the methods that finished in that order."""
    score: dict[int, dict[str, float]] = defaultdict(dict)
    for method, entries in _by_method(run).items():
        for k in order_indices(entries):
            runs = [e for e in entries if e.order_index == k]
            score[k][method] = round(mean(cl_metrics.final_average(e.matrix(
                galleries.keys(run.order_of(e), gallery), "t2a")) for e in runs), 9)
    ranks: dict[str, dict[int, int]] = defaultdict(dict)
    for k, by in score.items():
        for method, v in by.items():
            ranks[method][k] = 1 + sum(w > v for w in by.values())
    return ranks


def rank_changes(ranks: dict[int, int]) -> bool:
    return len(set(ranks.values())) > 1


def comparison_table(run: Run, clips: Clips | None = None,
                     gallery: str = "per-dataset") -> Table:
    datasets = galleries.keys(run.datasets, gallery)
    by_method = _by_method(run)
    first = run.reference
    reference = by_method.get(first, [])
    finetune = [e.cost["trainable_params"] for e in by_method.get("finetune", [])]
    columns = _columns(datasets)
    orders = run.several_orders()
    ranks = ranks_by_order(run, gallery) if orders else {}

    def keys_of(e: Entry) -> list[str]:
        return galleries.keys(run.order_of(e), gallery)

    header = (["method", "seeds × orders" if orders else "seeds"]
              + [f"{label} t2a / a2t" for label, *_ in columns]
              + ["trainable params", "share of Finetune", "share without heads & scale"]
              + (["rank by order (final avg t2a R@1)"] if orders else []))
    rows = []
    for method, entries in by_method.items():
        continual = len(entries[0].rows) == len(datasets) + 1
        cells = []
        for _, metric, make, needs_steps in columns:
            if needs_steps and not continual:
                cells.append("— / —")
                continue
            parts = []
            for d in DIRECTIONS:
                text, _ = _cell(entries, keys_of, d, metric, make, clips)
                if method != first and reference and (continual or not needs_steps):
                    ref_ok = len(reference[0].rows) == len(datasets) + 1 or not needs_steps
                    text += _mark(entries, reference, keys_of, d, metric, make,
                                  clips) if ref_ok else ""
                parts.append(text)
            cells.append(" / ".join(parts))
        cost = entries[0].cost
        params = cost["trainable_params"]
        heads = sum(cost.get("trainable_by_module", {}).get(k, 0) for k in HEADS)
        shares = [f"{100 * n / finetune[0]:.2f}%" if finetune and finetune[0] else "—"
                  for n in (params, params - heads)]
        label, count = method, str(len(entries))
        extra = []
        if orders:
            seeds = len({e.seed for e in entries})
            count = f"{seeds} × {len(order_indices(entries))}"
            mine = ranks.get(method, {})
            label += f" {CHANGES}" if rank_changes(mine) else ""
            extra = [", ".join(f"{k + 1}: {r}" for k, r in sorted(mine.items()))]
        rows.append([label, count, *cells, f"{params:,}", *shares, *extra])
    return Table(header, rows, _labelled("Comparison (final row)", run, gallery))


def gallery_gap_table(run: Run) -> Table:
    """Final average R@1 per gallery and how much a method loses without the data set's
    identity (per-dataset minus union), mean over seeds."""
    rows = []
    by_method: dict[str, list[Entry]] = defaultdict(list)
    for e in run.finished():
        by_method[e.method].append(e)
    for method, entries in by_method.items():
        cells = []
        for d in DIRECTIONS:
            per, uni = (mean(cl_metrics.final_average(e.matrix(
                galleries.keys(run.order_of(e), g), d)) for e in entries)
                for g in ("per-dataset", "union"))
            cells += [_pct(per), _pct(uni), _pct(per - uni)]
        rows.append([method, *cells])
    return Table(["method"] + [f"{d} {c}" for d in DIRECTIONS
                               for c in ("per-dataset", "union", "gap")], rows,
                 "Gallery gap (final avg R@1, per-dataset − union)")


def legend(run: Run) -> str:
    first = run.reference
    ptat = any(e.method.split("+")[0] == "ptat" for e in run.entries)
    return (orders_legend(run) + f"One seed: value [95% interval, clip-level bootstrap]; "
            f"several seeds: mean±std "
            f"over seeds (ddof=1). ↑/↓: significantly higher/lower than `{first}` (paired "
            "bootstrap over clips and seeds, 95%); no arrow: not significantly different. "
            "Learning acc = mean of R[j][j] (plasticity); forgetting = mean over j < T of "
            "max_l R[l][j] − R[T][j]. The last column leaves out the projection heads and the "
            "logit scale" + (" (for PTAT: the prompts and their generator alone; the paper's "
                             "PTAT share is 2.42%)" if ptat else "") + ".")


def orders_legend(run: Run) -> str:
    """Which stream orders a run pools, and how its table reads them (none: one order)."""
    if not run.several_orders():
        return ""
    seen = run.planned_orders()
    listed = "; ".join(f"{k + 1}: {' → '.join(o)}" for k, o in sorted(seen.items()))
    return (f"Stream orders ({listed}). Each cell pools every order and seed of a method "
            "(mean±std over both, ddof=1); a data set's column is each run's final score on "
            "that data set wherever it came in the run's order, and learning accuracy, "
            "forgetting and BWT are computed in each run's own order. Rank by order: the "
            "method's rank by final average t2a R@1 (mean over seeds) in each order; "
            f"{CHANGES} marks a method whose rank changes across orders. ")


def status_table(run: Run) -> Table:
    """Methods that did not finish every step: never ranked with the finished ones."""
    rows, orders = [], run.several_orders()
    for e in run.unfinished():
        last, why = e.last_step, (e.failure or {}).get("message", "")
        rows.append([e.method, str(e.seed), *_order_cell(e, orders), e.status.value,
                     "none" if last is None else str(last), why])
    return Table(["method", "seed", *(["order"] if orders else []), "status",
                  "last completed step", "why"], rows, "Unfinished (not compared)")


def _order_cell(entry: Entry, orders: bool) -> list[str]:
    """The order column of a run over several orders (1-based, as the legend lists them)."""
    return [str(entry.order_index + 1)] if orders else []


def step_table(run: Run, entry: Entry, direction: str,
               metric: str = "R@1", gallery: str = "per-dataset") -> Table:
    names = run.order_of(entry)
    datasets = galleries.keys(names, gallery)
    r = entry.matrix(datasets, direction, metric)
    full = len(r) == len(datasets) + 1
    rows = []
    for row, values in zip(entry.rows, r, strict=True):
        label = "zero-shot" if row.step == 0 else f"after {row.step}: {row.after}"
        seen = cl_metrics.average_after(r, row.step) if full else None
        cis = [row.scores[d][direction][metric].get("ci95")
               if isinstance(row.scores[d][direction][metric], dict) else None
               for d in datasets]
        rows.append([label, *(_ci(v, c) for v, c in zip(values, cis, strict=True)),
                     _pct(seen)])
    s = cl_metrics.summarize(r) if full else {}
    if s:
        rows.append(["forgetting", *map(_pct, s["forgetting"]), _pct(s["mean_forgetting"])])
    status = "" if entry.finished else f" — {entry.status.value.upper()}"
    which = f"seed {entry.seed}" + (f", order {entry.order_index + 1}"
                                    if run.several_orders() else "")
    title = (_labelled(f"**{entry.method}** ({which}), {direction} {metric} (%)",
                       run, gallery)
             + (f": final avg {_pct(s['final_average'])}, learning acc "
                f"{_pct(s['learning_accuracy'])}, BWT {_pct(s['bwt'])}, FWT {_pct(s['fwt'])}"
                if s else "") + status)
    return Table(["row", *names, "avg seen / mean"], rows, title, section=False)


def cost_table(run: Run) -> Table:
    rows, orders = [], run.several_orders()
    for e in run.entries:
        c = e.cost or {}
        rows.append([e.method, str(e.seed), *_order_cell(e, orders),
                     f"{c.get('trainable_params', 0):,}",
                     f"{c.get('backbone_params', 0):,}", f"{c.get('train_seconds', 0):.1f}",
                     f"{c.get('eval_seconds', 0):.1f}", f"{c.get('peak_memory_mb', 0):.0f}",
                     c.get("memory_kind", "—"), _stored(c), e.status.value])
    return Table(["method", "seed", *(["order"] if orders else []), "trainable params",
                  "backbone params", "train s",
                  "eval s", "peak MB", "memory", "stored data", "status"], rows, "Cost")


def _stored(cost: dict[str, Any]) -> str:
    """What a method keeps between steps (a replay buffer), or — for none."""
    if "memory_clips" not in cost:
        return "—"
    return f"{cost['memory_clips']:,} clips, {cost['memory_mb']:.1f} MB"


def sections(run: Run, clips: Clips | None = None) -> list[str | Table]:
    """The report, in order: paragraphs and tables (every format renders the same)."""
    stream = run.stream
    out: list[str | Table] = [
        f"tail-bench run: {stream['name']} ({' -> '.join(stream['datasets'])})",
        f"Backbone `{run.setting('backbone')}`, preset `{run.setting('preset')}`, device "
        f"`{run.setting('device')}`, precision `{run.setting('precision') or 'fp32'}`, "
        f"scored on the `{run.setting('eval_split') or 'test'}` splits."]
    shown = galleries.shown(gallery_of(run))
    if run.finished():
        out += [legend(run), *(comparison_table(run, clips, g) for g in shown)]
        if len(shown) > 1:
            out.append(gallery_gap_table(run))
        lacking = [e for e in run.finished() if e.clips_file and clips is not None
                   and _rows_of(clips, e) is None]
        if lacking:
            out.append("Without per-clip sums (their file is missing or damaged), so without "
                       "the interval of a single run's mean and paired tests: "
                       + ", ".join(f"{e.method} seed {e.seed} ({e.clips_file})"
                                   for e in lacking)
                       + "; `tail-bench run --resume` computes them again.")
    if run.unfinished():
        out.append(status_table(run))
    if run.entries:
        out += [cost_table(run), "Per step. Each cell: value [95% interval, clip-level "
                                 "bootstrap]."]
        out += [step_table(run, e, d, gallery=g) for e in run.entries if e.rows
                for g in shown for d in DIRECTIONS]
    return out


def render(run: Run, clips: Clips | None = None, fmt: str = "md",
           parts: list[str | Table] | None = None) -> str:
    """The whole report as Markdown (`md`) or as LaTeX tables with booktabs (`latex`);
    `parts`: the run's `sections`, when already computed for another format."""
    title, *body = parts if parts is not None else sections(run, clips)
    if fmt == "latex":
        return "\n\n".join(f"% {p}" if isinstance(p, str) else p.latex()
                             for p in [title, *body]) + "\n"
    parts = [f"# {title}"]
    for p in body:
        if isinstance(p, str):
            parts.append(p)
        elif not p.section:
            parts.append(p.markdown())
        else:
            parts.append(f"## {p.title}\n\n" + Table(p.header, p.rows).markdown())
    return "\n\n".join(parts) + "\n"


def scores_csv(run: Run) -> str:
    """Long format: one line per method, seed, step, data set, direction and metric (and
    the run's stream order, 1-based, last)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "seed", "status", "step", "after", "dataset", "direction", "metric",
                "value", "ci95_low", "ci95_high", "order"])
    for e in run.entries:
        for row in e.rows:
            for ds, dirs in row.scores.items():
                for d, metrics in dirs.items():
                    for m, v in metrics.items():
                        ci = v.get("ci95") if isinstance(v, dict) else None
                        lo, hi = ("", "") if ci is None else (f"{ci[0]:.6f}", f"{ci[1]:.6f}")
                        w.writerow([e.method, e.seed, e.status.value, row.step,
                                    row.after or "", ds, d, m, f"{value(v):.6f}", lo, hi,
                                    e.order_index + 1])
    return buf.getvalue()
