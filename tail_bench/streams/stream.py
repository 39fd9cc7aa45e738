"""A stream of text-audio data sets, and its Avalanche scenario."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from tail_bench.errors import ConfigError
from tail_bench.streams.pairs import PairSet


@dataclass
class Stream:
    name: str
    train: list[PairSet]
    val: list[PairSet]
    test: list[PairSet]
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. removed overlap, skipped items

    @property
    def datasets(self) -> list[str]:
        return [p.dataset for p in self.train]

    def scenario(self, *, joint: bool = False, eval_split: str = "test"):
        """One experience per data set in stream order (Avalanche CLScenario); with `joint`,
        a single experience holding every step's training data (the Joint reference).
        `eval_split="val"` scores the validation splits: for tuning, never for reporting."""
        from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets

        if eval_split not in ("test", "val"):
            raise ConfigError(f"--eval-split {eval_split!r}: expected test or val")
        train = [p.to_avalanche() for p in self.train]
        if joint:
            union = train[0]
            for data in train[1:]:
                union = union.concat(data)
            train = [union]
        held_out = self.test if eval_split == "test" else self.val
        return benchmark_from_datasets(train=train, test=[p.to_avalanche() for p in held_out])

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "datasets": self.datasets,
            "splits": {p.dataset: {s: q.describe() for s, q in
                                   (("train", p), ("val", v), ("test", t))}
                       for p, v, t in zip(self.train, self.val, self.test, strict=True)},
            "notes": self.notes,
        }


def check_order(order: list[str], names: list[str]) -> None:
    if any(o not in names for o in order) or len(set(order)) != len(order):
        raise ConfigError(f"--order {','.join(order)}: expected distinct names from {names}")


def reorder(stream: Stream, order: list[str] | None) -> Stream:
    """Keep the data sets named in `order`, in that order (a permutation or a subset)."""
    if not order:
        return stream
    names = stream.datasets
    check_order(order, names)
    idx = [names.index(o) for o in order]
    return Stream(stream.name, [stream.train[i] for i in idx], [stream.val[i] for i in idx],
                  [stream.test[i] for i in idx], stream.notes)


ORDER_SEED = 0  # the generator of --orders' shuffles: random.Random(ORDER_SEED)


def stream_orders(base: list[str], k: int, seed: int = ORDER_SEED) -> list[list[str]]:
    """`--orders k`: `base` (the given order, or the stream's default) first, then the
    first k-1 distinct shuffles of it that one `random.Random(seed)` draws (`sample` of
    the whole list; a shuffle equal to an earlier order is skipped). A pure function of
    (base, k, seed), so every job of a sweep and every `--resume` gets the same orders,
    and order i is the same whatever k is (k only cuts the list)."""
    if k > math.factorial(len(base)):
        n = len(base)
        raise ConfigError(f"--orders {k}: a stream of {n} data set{'s' * (n != 1)} "
                          f"({', '.join(base)}; --order and --length choose them) has only "
                          f"{math.factorial(n)} order{'s' * (math.factorial(n) != 1)}")
    rng, orders = random.Random(seed), [list(base)]
    while len(orders) < k:
        drawn = rng.sample(base, len(base))
        if drawn not in orders:
            orders.append(drawn)
    return orders
