"""Progress output that suits where it goes: a live bar in a terminal, and in a log (CI,
`nohup`, a file) one plain line every few seconds instead of carriage-return redraws."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

LINE_EVERY_S = 10.0


class Lines:
    """tqdm's small interface (update, set_postfix, close, iteration), printing one line
    at most every `every` seconds, and one when done."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None,
                 desc: str = "", every: float = LINE_EVERY_S, unit: str = "it",
                 initial: int = 0, **_: Any) -> None:
        self.iterable, self.desc, self.every, self.unit = iterable, desc, every, unit
        self.initial = initial  # counted before this run (a resumed job): not in the rate
        self.total = total if total is not None else (
            len(iterable) if hasattr(iterable, "__len__") else None)
        self.n, self.postfix, self.start = initial, "", time.monotonic()
        self.last = self.start

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.every:
            self._line()

    def _line(self) -> None:
        self.last = time.monotonic()
        print(self.line(self.last - self.start), file=sys.stderr, flush=True)

    def line(self, elapsed: float) -> str:
        """`desc: n/total (elapsed s, rate unit/s, about T s left[, postfix])`."""
        of = f"/{self.total}" if self.total is not None else ""
        parts = [f"{elapsed:.0f} s"]
        done = self.n - self.initial
        if elapsed > 0 and done > 0:
            rate = done / elapsed
            parts.append(f"{rate:.1f} {self.unit}/s")
            if self.total is not None and self.n < self.total:
                parts.append(f"about {(self.total - self.n) / rate:.0f} s left")
        parts += [self.postfix] if self.postfix else []
        return f"{self.desc}: {self.n}{of} ({', '.join(parts)})"

    def close(self) -> None:
        if self.n > self.initial and self.last is not None:
            self._line()
        self.last = None  # closed: one final line only


def progress(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs: Any):
    """A bar where stderr is a terminal, plain lines where it is not, nothing if disabled."""
    if enabled and sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(iterable, **kwargs)
    if not enabled:
        from tqdm.auto import tqdm

        return tqdm(iterable, disable=True, **kwargs)
    return Lines(iterable, **kwargs)
