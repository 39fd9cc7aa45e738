"""One typed option grammar for `--opt`, config files and Avalanche plugin specs.

A value arrives as text (the command line, a plugin spec) or as a value a YAML or JSON
file already typed; either way it becomes the type its option declares by the same rules:

- a boolean is `true` or `false` (any case), or a file's boolean; nothing else;
- an integer is written as one (`8`, `-3`), or is a file's integer: `1.9`, `1.0`,
  `true` and overflows are refused, and every integer fits in 64 bits unless its option
  bounds it more tightly;
- a number is an integer or a finite decimal (`1e-3`, `0.5`); `inf` and `nan` are refused;
- a string is the text as given (a file's number is not a string).

Lists (`--baselines`, `--order`, a plugin's options) split on their separator outside
brackets and quotes; unbalanced brackets or quotes and empty items are refused. A plugin
spec `NAME(key=value, ...)` has no declared types, so its values say their own: `true`,
`false`, `none`, numbers, quoted strings and `[lists]` of them. Config files read YAML 1.2
booleans only (`yes`/`on` stay strings), so a file accepts what the command line does.
"""

from __future__ import annotations

import importlib
import math
import re
from pathlib import Path
from typing import Any

from tail_bench.errors import ConfigError

INT64 = 2**63 - 1
EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            Path: "a path"}
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_PAIRS = {"(": ")", "[": "]", "{": "}"}
_QUOTES = "'\""


def split(text: str, sep: str = ",", *, where: str, empty: bool = False) -> list[str]:
    """`text`'s items between `sep`s outside brackets and quotes, stripped. Unbalanced
    brackets or quotes, and empty items (unless `empty`: for an empty `text` only), are
    refused naming `where`."""
    if empty and not text.strip():
        return []
    items, stack, quote, start = [], [], None, 0
    for i, c in enumerate(text):
        if quote:
            quote = None if c == quote else quote
        elif c in _QUOTES:
            quote = c
        elif c in _PAIRS:
            stack.append(_PAIRS[c])
        elif c in _PAIRS.values():
            if not stack or stack.pop() != c:
                raise ConfigError(f"{where} {text!r}: unbalanced {c!r} at character {i + 1}")
        elif c == sep and not stack:
            items.append(text[start:i].strip())
            start = i + 1
    if quote or stack:
        missing = quote or stack[-1]
        raise ConfigError(f"{where} {text!r}: unbalanced brackets or quotes ({missing!r} "
                          "missing)")
    items.append(text[start:].strip())
    if not all(items):
        raise ConfigError(f"{where} {text!r}: an empty item; expected items separated by "
                          f"{sep!r}")
    return items


def typed(value: Any, kind: type, *, where: str, low: int | float | None = None,
          high: int | float | None = None) -> Any:
    """`value` (text, or a value a file typed) as `kind`: bool, int, float, str or Path,
    within [low, high] when given. ConfigError `<where>: expected ...` otherwise (`where`
    names the option and shows the value as the user wrote it)."""
    if kind in (str, Path):
        if not isinstance(value, str | Path if kind is Path else str):
            raise ConfigError(f"{where}: expected {EXPECTED[kind]}")
        return kind(value)
    parsed = literal(value, where=where, strict=False) if isinstance(value, str) else value
    ok = {bool: isinstance(parsed, bool),
          int: isinstance(parsed, int) and not isinstance(parsed, bool),
          float: isinstance(parsed, int | float) and not isinstance(parsed, bool)
          and math.isfinite(parsed)}.get(kind)
    if ok is None:
        raise TypeError(f"{where}: no grammar for options of type {kind!r}")
    if not ok:
        raise ConfigError(f"{where}: expected {EXPECTED[kind]}"
                          + (" (finite)" if kind is float else ""))
    if kind is bool:
        return parsed
    parsed = kind(parsed)
    low = -INT64 - 1 if low is None and kind is int else low
    high = INT64 if high is None and kind is int else high
    if (low is not None and parsed < low) or (high is not None and parsed > high):
        bounds = (f">= {low}" if high is None else f"<= {high}" if low is None
                  else f"between {low} and {high}")
        raise ConfigError(f"{where}: expected {EXPECTED[kind]} {bounds}")
    return parsed


def literal(text: str, *, where: str, strict: bool = True) -> Any:
    """A self-describing value: true/false/none (any case), an integer, a finite number,
    a quoted string, or a [list] of them. Other text is itself as a string when not
    `strict`, and refused when `strict` (a plugin spec, where types are not declared)."""
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    if _INT.fullmatch(t):
        return int(t)
    if _FLOAT.fullmatch(t):
        return float(t)  # finite: the pattern has no inf or nan
    if len(t) >= 2 and t[0] in _QUOTES and t[-1] == t[0]:
        return t[1:-1]
    if t.startswith("[") and t.endswith("]"):
        return [literal(v, where=where) for v in split(t[1:-1], where=where, empty=True)]
    if strict:
        raise ConfigError(f"{where}: {text!r} is not a value; expected true, false, none, a "
                          "number, a quoted string or a [list]")
    return text


def call(spec: str, *, where: str) -> tuple[str, dict[str, Any]]:
    """`NAME` or `NAME(key=value, ...)` -> (NAME, {key: literal value})."""
    text = spec.strip()
    name, paren, rest = text.partition("(")
    name = name.strip()
    if not name or (paren and not rest.endswith(")")):
        raise ConfigError(f"{where} {spec!r}: expected NAME or NAME(key=value, ...)")
    out: dict[str, Any] = {}
    for item in split(rest[:-1], where=f"{where} {spec!r}:", empty=True) if paren else []:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise ConfigError(f"{where} {spec!r}: {item!r}: options must be key=value")
        if key in out:
            raise ConfigError(f"{where} {spec!r}: {key} given twice")
        out[key] = literal(value, where=f"{where} {spec!r}: {key}")
    return name, out


def import_object(spec: str, *, where: str, default_module: str | None = None) -> Any:
    """`module:Name` or `module.Name` imported (a bare `Name` from `default_module`)."""
    module, sep, attr = spec.partition(":") if ":" in spec else spec.rpartition(".")
    module = module if sep else default_module
    if not module or not attr:
        raise ConfigError(f"{where} {spec!r}: expected module:Class, e.g. my_pkg.mine:Mine")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"{where} {spec!r}: cannot import {attr} from {module} ({err})"
                          ) from err


def assignment(text: str, *, where: str) -> tuple[str, str, str]:
    """`OWNER.KEY=VALUE` -> (owner, key, value text)."""
    key, sep, value = text.partition("=")
    owner, dot, name = key.partition(".")
    if not (sep and dot and owner and name):
        raise ConfigError(f"{where} {text!r}: expected STRATEGY.KEY=VALUE, "
                          "e.g. ptat.prompt_length=8")
    return owner, name, value
