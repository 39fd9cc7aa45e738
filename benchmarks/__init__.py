"""Benchmark scripts: figures, not tests. Each module here is one, found by name like the
strategies: `tail-bench bench` lists them, `tail-bench bench NAME ARGS...` runs one, and
`python benchmarks/NAME.py ARGS...` does the same. A script is a module with a docstring
(its first line is the summary) and a `main(argv=None)`.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Benchmark:
    name: str
    summary: str

    def main(self, argv: list[str] | None = None) -> object:
        run: Callable = importlib.import_module(f"{__name__}.{self.name}").main
        return run(argv)


def available_benchmarks() -> dict[str, Benchmark]:
    """Every script in this folder, read without importing it (no torch for a listing)."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        source = (Path(__path__[0]) / f"{info.name}.py").read_text(encoding="utf-8")
        doc = ast.get_docstring(ast.parse(source)) or ""
        found[info.name] = Benchmark(info.name, " ".join(doc.split("\n\n")[0].split()))
    return found
