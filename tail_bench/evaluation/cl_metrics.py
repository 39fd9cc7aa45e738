"""Continual-learning metrics on a results matrix R.

R[i][j] is a metric on data set j after step i; row 0 is the backbone before any step and
before any strategy touched it. Indices below are 1-based like methods.md; T = number of
steps = number of data sets.
- average after step i: mean_{j<=i} R[i][j]; final average: mean_j R[T][j]
- learning accuracy (plasticity): mean_j R[j][j], what each step learnt when it ended
- forgetting of j < T (Chaudhry et al. 2018): max_{l in [j, T-1]} R[l][j] - R[T][j];
  mean forgetting averages j = 1..T-1 (the last data set cannot be forgotten yet)
- BWT (Lopez-Paz & Ranzato 2017): mean_{j<T} R[T][j] - R[j][j]
- FWT: mean_{j>1} R[j-1][j] - R[0][j]
- Avalanche's forgetting, named apart: R[j][j] - R[T][j]

Every function takes a (T+1) x T matrix (lists or an array) and returns floats, or a stack
of matrices (..., T+1, T), e.g. bootstrap replicates, and returns arrays over the stack.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Matrix = list[list[float]]


def _check(r) -> np.ndarray:
    a = np.asarray(r, dtype=np.float64)
    if a.ndim < 2 or a.shape[-2] != a.shape[-1] + 1:
        shape = [len(row) for row in r] if isinstance(r, list) else list(a.shape)
        raise ValueError(f"expected a (T+1) x T matrix with a zero-shot row 0, got "
                         f"{len(r)} rows of lengths {shape}")
    return a


def _out(x: np.ndarray):
    return float(x) if np.ndim(x) == 0 else x


def _diag(a: np.ndarray) -> np.ndarray:
    """R[j][j] for j = 1..T: (..., T)."""
    t = a.shape[-1]
    return a[..., np.arange(1, t + 1), np.arange(t)]


def average_after(r, i: int):
    a = np.asarray(r, dtype=np.float64)
    return _out(a[..., i, :i].mean(-1) if i else a[..., 0, :].mean(-1))


def final_average(r):
    return _out(np.asarray(r, dtype=np.float64)[..., -1, :].mean(-1))


def learning_accuracy(r):
    return _out(_diag(_check(r)).mean(-1))


def _forgetting(a: np.ndarray) -> np.ndarray:
    """(..., T-1): forgetting of data sets 1..T-1."""
    t = a.shape[-1]
    rows = a[..., 1:t, :t - 1]  # R[l][j] for l = 1..T-1
    valid = np.arange(1, t)[:, None] >= np.arange(1, t)[None, :]  # l >= j
    best = np.where(valid, rows, -np.inf).max(-2)
    return best - a[..., t, :t - 1]


def forgetting(r) -> list[float | None] | np.ndarray:
    """Per data set; the last has none (None, or NaN for a stack)."""
    a = _check(r)
    f = _forgetting(a) if a.shape[-1] > 1 else np.zeros((*a.shape[:-2], 0))
    if a.ndim == 2:
        return [*map(float, f), None]
    return np.concatenate([f, np.full((*f.shape[:-1], 1), np.nan)], -1)


def mean_forgetting(r):
    a = _check(r)
    return _out(_forgetting(a).mean(-1)) if a.shape[-1] > 1 else None


def bwt(r):
    a = _check(r)
    if a.shape[-1] < 2:
        return None
    return _out((a[..., -1, :-1] - _diag(a)[..., :-1]).mean(-1))


def fwt(r):
    a = _check(r)
    t = a.shape[-1]
    if t < 2:
        return None
    return _out((a[..., np.arange(1, t), np.arange(1, t)] - a[..., 0, 1:]).mean(-1))


def avalanche_forgetting(r) -> list[float | None]:
    a = _check(r)
    f = _diag(a)[..., :-1] - a[..., -1, :-1]
    if a.ndim == 2:
        return [*map(float, f), None]
    return np.concatenate([f, np.full((*f.shape[:-1], 1), np.nan)], -1)


SCALARS = ("final_average", "learning_accuracy", "mean_forgetting", "bwt", "fwt")


def summarize(r) -> dict[str, Any]:
    """Everything the tables print; reference rows (zero-shot, joint) give the final only."""
    out: dict[str, Any] = {"final_average": final_average(r)}
    a = np.asarray(r, dtype=np.float64)
    if a.shape[-2] == a.shape[-1] + 1:
        out.update(average_after=[average_after(r, i) for i in range(a.shape[-2])],
                   learning_accuracy=learning_accuracy(r), forgetting=forgetting(r),
                   mean_forgetting=mean_forgetting(r), bwt=bwt(r), fwt=fwt(r),
                   avalanche_forgetting=avalanche_forgetting(r))
    return out
