"""What `tail-bench run` prints when it ends: the comparison in at most WIDTH columns, then
where the full tables and plots are.

Its cells are the comparison table's own (same values, intervals, arrows and row order), so
the console and tables.md never disagree; it keeps the columns a reader looks at first and
leaves the per-data-set ones to the files. Learning accuracy and forgetting are shown
without their interval or spread (the tables have them).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tail_bench.record import Run
from tail_bench.reporting.tables import Clips, Table, comparison_table

WIDTH = 100
GAP = "  "
NAME = 18  # a longer method name gets a line of its own
COLUMNS = {  # summary column -> the comparison table's column it comes from
    "avg R@1 t2a": "avg R@1 t2a / a2t",
    "avg R@1 a2t": "avg R@1 t2a / a2t",
    "learn t2a/a2t": "learning acc R@1 t2a / a2t",
    "forget t2a/a2t": "forgetting R@1 t2a / a2t",
    "share": "share of Finetune",
}


def _value_only(cell: str) -> str:
    """'19.2 [18.0, 20.1]↑' or '19.2±0.4↑' -> '19.2↑'."""
    arrow = cell[-1] if cell.endswith(("↑", "↓")) else ""
    return cell.split(" [")[0].split("±")[0].removesuffix(arrow) + arrow


def rows(run: Run, table: Table) -> list[list[str]]:
    """[method, avg t2a, avg a2t, learning acc, forgetting, share, train s] per row of
    the comparison table, in its order."""
    at = {h: i for i, h in enumerate(table.header)}
    seconds: dict[str, list[float]] = {}
    for e in run.finished():  # the rows the comparison table compares: no partial costs
        seconds.setdefault(e.method, []).append(e.cost["train_seconds"])
    out = []
    for row in table.rows:
        method = row[0].removesuffix(" †")
        avg = row[at[COLUMNS["avg R@1 t2a"]]].split(" / ")
        learn, forget = ("/".join(_value_only(c) for c in row[at[COLUMNS[k]]].split(" / "))
                         for k in ("learn t2a/a2t", "forget t2a/a2t"))
        train = sum(seconds[method]) / len(seconds[method])
        out.append([row[0], *avg, learn.replace("—/—", "—"), forget.replace("—/—", "—"),
                    row[at[COLUMNS["share"]]], f"{train:.0f}"])
    return out


def _lines(header: list[str], body: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell (the averages, with intervals, left-aligned; the
    rest right-aligned); a method name longer than NAME gets a line of its own, its figures
    on the next."""
    rest = [max(len(r[i]) for r in [header, *body]) for i in range(1, len(header))]
    room = WIDTH - sum(rest) - len(GAP) * len(rest)
    name = min(max(len(r[0]) for r in [header, *body] if len(r[0]) <= NAME), room)

    def fmt(cells: list[str], first: str) -> str:
        parts = [first.ljust(name)] + [c.rjust(w) if i > 1 else c.ljust(w)
                                       for i, (c, w) in enumerate(zip(cells, rest,
                                                                      strict=True))]
        return GAP.join(parts).rstrip()

    out = [fmt(header[1:], header[0])]
    for r in body:
        if len(r[0]) > name:
            out += [r[0], fmt(r[1:], "")]
        else:
            out.append(fmt(r[1:], r[0]))
    return out


def console_summary(run: Run, clips: Clips | None, out: Path) -> str:
    """The comparison in WIDTH columns, its legend, then the paths of the full results."""
    table = comparison_table(run, clips)
    first = run.config.get("strategy")
    header = ["method", *COLUMNS, "train s"]
    seeds = {e.seed for e in run.entries}
    how = ("value [95% interval]" if len(seeds) == 1
           else "mean±std over seeds, learning acc and forgetting: mean")
    legend = (f"Final row, %: {how}; ↑/↓: significantly above/below {first}; share: "
              "trainable parameters, of Finetune's; train s: per seed.")
    plots = sorted(p.stem for p in Path(out).glob("*.png"))
    files = [f"Full tables: {out}/tables.md (also tables.tex, scores.csv, run.json)."]
    if plots:
        files.append(f"Plots: {out}/ {', '.join(plots)} (.png and .svg).")
    return "\n".join(["Comparison (final row)", *_lines(header, rows(run, table)),
                      *_wrap(legend), *[w for f in files for w in _wrap(f)]])


def _wrap(text: str) -> list[str]:
    """Lines of at most WIDTH columns (a path longer than that stays whole)."""
    return textwrap.wrap(text, WIDTH, break_long_words=False, break_on_hyphens=False)
