"""Which candidates a query is ranked against (`--gallery`), and where each score is kept.

`per-dataset` (the TAIL paper's protocol): a data set's queries against its own test set.
`union` (task-agnostic): against the union of every test set's candidates, so a model
must retrieve without knowing which data set a query came from. A row's scores hold the
per-dataset ones under the data set's name and the union ones under `union:<name>`.
"""

from __future__ import annotations

GALLERIES = ("per-dataset", "union", "both")
UNION = "union:"


def union_key(dataset: str) -> str:
    return UNION + dataset


def shown(gallery: str) -> list[str]:
    """The galleries a run with `--gallery gallery` reports, in order."""
    return ["per-dataset", "union"] if gallery == "both" else [gallery]


def keys(datasets: list[str], gallery: str) -> list[str]:
    """The score keys of `datasets` under one gallery (`per-dataset` or `union`)."""
    return [union_key(d) if gallery == "union" else d for d in datasets]
