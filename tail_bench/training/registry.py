"""Find strategies: modules in `strategies/` (the package `tail_bench.strategies`), the
`tail_bench.strategies` entry-point group, and `--strategy-class module:Class`. Adding a
strategy never edits the suite. Strategies import torch and Avalanche (seconds), so this
module imports them only when a strategy class is asked for; `descriptions` lists them
without."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pkgutil
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from tail_bench.errors import ConfigError
from tail_bench.options import import_object

if TYPE_CHECKING:
    from tail_bench.training.strategy import Strategy


def _add(found: dict[str, type[Strategy]], cls: object, origin: str) -> None:
    from tail_bench.training.strategy import Strategy

    if not (inspect.isclass(cls) and issubclass(cls, Strategy) and cls.name):
        raise ConfigError(f"{origin}: expected a Strategy subclass with a `name`, got {cls!r}")
    if not dataclasses.is_dataclass(cls.Options):
        raise ConfigError(f"{origin}: {cls.__qualname__}.Options must be a dataclass (its "
                          f"fields are the --opt {cls.name}.KEY options), got {cls.Options!r}")
    other = found.get(cls.name)
    if other is not None and other is not cls:
        raise ConfigError(f"strategy name {cls.name!r} is defined twice: "
                          f"{other.__module__}.{other.__qualname__} and {origin}")
    found[cls.name] = cls


def load_strategy_class(spec: str) -> type[Strategy]:
    obj = import_object(spec, where="--strategy-class")
    found: dict[str, type[Strategy]] = {}
    _add(found, obj, f"--strategy-class {spec}")
    return obj


def _skipped(what: str, err: Exception) -> None:
    print(f"tail-bench: warning: {what} cannot be loaded ({type(err).__name__}: {err}); "
          "skipped", file=sys.stderr)


def _built_in() -> list[pkgutil.ModuleInfo]:
    import tail_bench.strategies as package

    return sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name)


def available_strategies(plugins: tuple[str, ...] | list[str] = ()) -> dict[str, type[Strategy]]:
    from tail_bench.training.strategy import Strategy

    found: dict[str, type[Strategy]] = {}
    for info in _built_in():
        try:
            module = importlib.import_module(f"tail_bench.strategies.{info.name}")
        except Exception as err:  # one broken file must not break every command
            _skipped(f"strategy file {info.name}.py", err)
            continue
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Strategy) and cls.name and cls.__module__ == module.__name__:
                _add(found, cls, f"{module.__name__}.{cls.__qualname__}")
    return _installed(found, plugins)


def _installed(found: dict[str, type[Strategy]], plugins: tuple[str, ...] | list[str]
               ) -> dict[str, type[Strategy]]:
    """`found` and the strategies of entry points and --strategy-class (loaded: their
    classes are all there is to read)."""
    for ep in entry_points(group="tail_bench.strategies"):
        try:
            cls = ep.load()
        except Exception as err:  # a broken installed package must not break every command
            _skipped(f"entry point {ep.name} ({ep.value})", err)
            continue
        _add(found, cls, f"entry point {ep.name} ({ep.value})")
    for spec in plugins:
        _add(found, load_strategy_class(spec), f"--strategy-class {spec}")
    return found


def descriptions(plugins: tuple[str, ...] | list[str] = ()) -> dict[str, str]:
    """Name -> description of every strategy, for `tail-bench list` in well under a second:
    the built-in modules' class attributes `name` and `description` are read from their
    source, not imported (test_cli checks this gives what importing gives)."""
    found = {}
    for info in _built_in():
        try:
            tree = ast.parse(Path(info.module_finder.path, f"{info.name}.py").read_text())
        except SyntaxError as err:  # as available_strategies: one broken file is skipped
            _skipped(f"strategy file {info.name}.py", err)
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                attrs = {t.id: a.value for a in node.body if isinstance(a, ast.Assign)
                         for t in a.targets if isinstance(t, ast.Name)}
                if isinstance(attrs.get("name"), ast.Constant) and attrs["name"].value:
                    found[attrs["name"].value] = ast.literal_eval(attrs["description"])
    for name, cls in _installed({}, plugins).items():
        if name in found:
            raise ConfigError(f"strategy name {name!r} is defined twice: a built-in strategy "
                              f"and {cls.__module__}.{cls.__qualname__}")
        found[name] = cls.description
    return found


def get_strategy(name: str, plugins: tuple[str, ...] | list[str] = ()) -> type[Strategy]:
    found = available_strategies(plugins)
    if name not in found:
        raise ConfigError(f"unknown strategy {name!r}: expected one of {sorted(found)}")
    return found[name]
