"""tail-bench: continual learning for text-audio retrieval (the TAIL benchmark).

The repository's top-level folders `strategies/` and `benchmarks/` are the subpackages
`tail_bench.strategies` and `tail_bench.benchmarks` (their only import names, so they
cannot collide with other projects' `strategies` or `benchmarks`). An install maps them
there (setup.cfg `package_dir`); in a source checkout on `PYTHONPATH`, the finder below
does the same, ahead of any editable install's mapping, so that the folders always come
from the checkout this package was imported from (a git worktree beside an editable
install of another checkout gets its own strategies, not the install's).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

__version__ = "0.1.0"

_FOLDERS = ("strategies", "benchmarks")


class _CheckoutFolders(importlib.abc.MetaPathFinder):
    """`tail_bench.<folder>` -> `<checkout>/<folder>/` when the package is not installed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.partition(".")
        if package != __name__ or name not in _FOLDERS:
            return None
        init = self.root / name / "__init__.py"
        if not init.exists():
            return None
        return importlib.util.spec_from_file_location(
            fullname, init, submodule_search_locations=[str(init.parent)])


_root = Path(__file__).resolve().parent.parent
if not any(isinstance(f, _CheckoutFolders) for f in sys.meta_path) and all(
        (_root / name / "__init__.py").exists() for name in _FOLDERS):
    sys.meta_path.insert(0, _CheckoutFolders(_root))
