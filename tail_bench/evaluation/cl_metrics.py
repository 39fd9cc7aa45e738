"""Continual-learning metrics on a results matrix R.

R[i][j] is a metric on data set j after step i; row 0 is the model before any step.
Indices below are 1-based like methods.md; T = number of steps = number of data sets.
- average after step i: mean_{j<=i} R[i][j]; final average: mean_j R[T][j]
- forgetting of j < T (Chaudhry et al. 2018): max_{l in [j, T-1]} R[l][j] - R[T][j];
  mean forgetting averages j = 1..T-1 (the last data set cannot be forgotten yet)
- BWT (Lopez-Paz & Ranzato 2017): mean_{j<T} R[T][j] - R[j][j]
- FWT: mean_{j>1} R[j-1][j] - R[0][j]
- Avalanche's forgetting, named apart: R[j][j] - R[T][j]
"""

from __future__ import annotations

from statistics import mean

Matrix = list[list[float]]


def _check(r: Matrix) -> int:
    t = len(r[0])
    if len(r) != t + 1 or any(len(row) != t for row in r):
        raise ValueError(f"expected a (T+1) x T matrix with a zero-shot row 0, got "
                         f"{len(r)} rows of lengths {[len(row) for row in r]}")
    return t


def average_after(r: Matrix, i: int) -> float:
    return mean(r[i][:i]) if i else mean(r[0])


def final_average(r: Matrix) -> float:
    return mean(r[-1])


def forgetting(r: Matrix) -> list[float | None]:
    t = _check(r)
    return [max(r[s][j - 1] for s in range(j, t)) - r[t][j - 1] if j < t else None
            for j in range(1, t + 1)]


def mean_forgetting(r: Matrix) -> float | None:
    values = [f for f in forgetting(r) if f is not None]
    return mean(values) if values else None


def bwt(r: Matrix) -> float | None:
    t = _check(r)
    return mean(r[t][j - 1] - r[j][j - 1] for j in range(1, t)) if t > 1 else None


def fwt(r: Matrix) -> float | None:
    t = _check(r)
    return mean(r[j - 1][j - 1] - r[0][j - 1] for j in range(2, t + 1)) if t > 1 else None


def avalanche_forgetting(r: Matrix) -> list[float | None]:
    t = _check(r)
    return [r[j][j - 1] - r[t][j - 1] if j < t else None for j in range(1, t + 1)]


def summarize(r: Matrix) -> dict[str, object]:
    """Everything the tables print; reference rows (zero-shot, joint) give the final only."""
    out: dict[str, object] = {"final_average": final_average(r)}
    if len(r) == len(r[0]) + 1:
        out.update(average_after=[average_after(r, i) for i in range(len(r))],
                   forgetting=forgetting(r), mean_forgetting=mean_forgetting(r),
                   bwt=bwt(r), fwt=fwt(r), avalanche_forgetting=avalanche_forgetting(r))
    return out
