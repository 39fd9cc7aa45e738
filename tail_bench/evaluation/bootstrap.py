"""Uncertainty of retrieval scores: clip-level bootstrap (functional core).

The unit of resampling is the clip: a t2a score averages over captions, several of which
belong to one clip, so they are resampled together. A score is kept as per-clip sums of
per-query values and per-clip query counts; a resample weights each clip by how often it
was drawn (with replacement) and takes (w . sums) / (w . counts). Intervals are percentile
intervals (docs/metrics.md).

Draws are a pure function of (number of clips, data set position, seed index), so every
method of a run sees the same draws on the same test set: comparisons are paired, and the
spread of a difference excludes what the test set does to both methods alike.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

REPLICATES = 1000
LEVEL = 0.95


@dataclass
class ClipScores:
    """One evaluated row: per data set and direction, the per-clip sums of each metric's
    per-query values, and the per-clip query counts."""

    sums: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)
    counts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def n_clips(self, dataset: str) -> int:
        return len(self.counts[dataset]["a2t"])


def clip_sums(values: np.ndarray, owner: np.ndarray, n_clips: int) -> np.ndarray:
    """Per-clip sums of per-query `values`; query i belongs to clip `owner[i]`."""
    return np.bincount(owner, weights=values, minlength=n_clips)


@lru_cache(maxsize=64)
def clip_weights(n_clips: int, replicates: int, *key: int) -> np.ndarray:
    """(replicates, n_clips): how often each clip is drawn in each resample."""
    rng = np.random.default_rng([n_clips, replicates, *key])
    w = rng.multinomial(n_clips, np.full(n_clips, 1.0 / n_clips), size=replicates)
    w = w.astype(np.float64)
    w.flags.writeable = False
    return w


def interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def ci(sums: np.ndarray, counts: np.ndarray, *,
       replicates: int = REPLICATES) -> tuple[float, float]:
    """95% percentile interval of sum(sums) / sum(counts) over clip resamples."""
    w = clip_weights(len(sums), replicates)
    return interval((w @ sums) / (w @ counts))


def matrix_replicates(rows: Sequence[ClipScores], datasets: Sequence[str], direction: str,
                      metric: str, replicates: int, seed_index: int = 0) -> np.ndarray:
    """(replicates, rows, T): the results matrix under each resample of test clips. One
    resample per data set serves every row, as every row scores the same test set.
    Memoised (read-only result): a report asks for the same method's matrix once per
    column and per comparison, and each costs replicates x clips x rows."""
    key = (tuple(map(id, rows)), tuple(datasets), direction, metric, replicates, seed_index)
    hit = _MATRICES.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], rows, strict=True)):
        _MATRICES.move_to_end(key)
        return hit[1]
    out = np.empty((replicates, len(rows), len(datasets)))
    for j, ds in enumerate(datasets):
        w = clip_weights(rows[0].n_clips(ds), replicates, j, seed_index)
        sums = np.stack([row.sums[ds][direction][metric] for row in rows], 1)
        out[:, :, j] = (w @ sums) / (w @ rows[0].counts[ds][direction])[:, None]
    out.flags.writeable = False
    _MATRICES[key] = (tuple(rows), out)  # the rows stay alive, so their ids stay theirs
    while len(_MATRICES) > MEMO_SIZE:
        _MATRICES.popitem(last=False)
    return out


MEMO_SIZE = 512  # matrices of (replicates, rows, T): a few hundred kB each
_MATRICES: OrderedDict = OrderedDict()


def observed(rows: Sequence[ClipScores], datasets: Sequence[str], direction: str,
             metric: str) -> np.ndarray:
    """(rows, T): the results matrix on the test clips as they are."""
    return np.array([[row.sums[ds][direction][metric].sum()
                      / rows[0].counts[ds][direction].sum() for ds in datasets]
                     for row in rows])


Summary = Callable[[np.ndarray], np.ndarray]  # (..., rows, T) -> (...)


def summary_ci(rows: Sequence[ClipScores], datasets: Sequence[str], direction: str,
               metric: str, fn: Summary, *,
               replicates: int = REPLICATES) -> tuple[float, float]:
    """95% interval of any function of one method's results matrix (final average,
    forgetting, ...), over resamples of the test clips."""
    return interval(fn(matrix_replicates(rows, datasets, direction, metric, replicates)))


def paired_difference(a: Sequence[Sequence[ClipScores]], b: Sequence[Sequence[ClipScores]],
                      datasets: Sequence[str] | None, direction: str, metric: str,
                      fn: Summary | None, *, replicates: int = 2000, seed: int = 0,
                      per_pair: Sequence[tuple[Sequence[str], Summary]] | None = None
                      ) -> dict:
    """Paired bootstrap of mean over seeds of fn(R_a) - fn(R_b), over clips and seeds.

    `a[s]`, `b[s]`: the rows of methods a and b for seed s (the same test clips for both).
    Seeds are drawn with replacement; within each drawn seed, both methods get the same
    clip resample. Returns the observed difference, its 95% interval, and whether the
    interval excludes 0. `per_pair[s]` = (datasets, fn) replaces `datasets` and `fn` for
    pair s: runs over several stream orders pair (seed, order) runs, each with its order's
    columns.
    """
    n_seeds = len(a)
    each = list(per_pair) if per_pair is not None else [(datasets, fn)] * n_seeds
    per_seed = np.stack([
        f(matrix_replicates(a[s], ds, direction, metric, replicates, s + 1))
        - f(matrix_replicates(b[s], ds, direction, metric, replicates, s + 1))
        for s, (ds, f) in enumerate(each)])  # (seeds, replicates)
    diff = [float(f(observed(a[s], ds, direction, metric))
                  - f(observed(b[s], ds, direction, metric))) for s, (ds, f) in enumerate(each)]
    pick = np.random.default_rng([seed, n_seeds]).integers(0, n_seeds,
                                                            size=(replicates, n_seeds))
    samples = per_seed[pick, np.arange(replicates)[:, None]].mean(1)
    lo, hi = interval(samples)
    return {"difference": float(np.mean(diff)), "ci95": [lo, hi],
            "significant": bool(lo > 0 or hi < 0)}
