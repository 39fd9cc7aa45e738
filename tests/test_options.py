"""tail_bench/options.py: the one typed grammar of --opt, config files and plugin specs."""

from pathlib import Path

import pytest

from tail_bench.errors import ConfigError
from tail_bench.options import INT64, call, literal, split, typed


def test_split_keeps_brackets_and_quotes_whole():
    assert split("ewc, finetune+EWCPlugin(a=1,b='x,y)'),l2p", where="w") == [
        "ewc", "finetune+EWCPlugin(a=1,b='x,y)')", "l2p"]
    assert split("a+B(c=[1, 2])+D()", "+", where="w") == ["a", "B(c=[1, 2])", "D()"]
    assert split(" ", where="w", empty=True) == []


@pytest.mark.parametrize("text, message", [
    ("lwf,er)", "unbalanced ')' at character 7"),
    ("finetune+EWCPlugin(ewc_lambda=1", "')' missing"),
    ("a(]", "unbalanced ']'"),
    ("B(mode='x)", "\"'\" missing"),
    ("lwf,,er", "an empty item"),
    ("lwf,", "an empty item"),
])
def test_split_refuses_what_it_cannot_read_whole(text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        split(text, where="--baselines")


@pytest.mark.parametrize("value, kind, expected", [
    ("8", int, 8), (8, int, 8), ("-3", int, -3), ("true", bool, True), ("FALSE", bool, False),
    (True, bool, True), ("1e-3", float, 1e-3), (2, float, 2.0), ("0.5", float, 0.5),
    ("1.9", str, "1.9"), ("a/b.csv", Path, Path("a/b.csv")),
])
def test_typed_values(value, kind, expected):
    got = typed(value, kind, where="w")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("value, kind, message", [
    ("1.9", int, "expected an integer"), (1.9, int, "expected an integer"),
    ("1.0", int, "expected an integer"), (True, int, "expected an integer"),
    ("yes", bool, "expected true or false"), ("on", bool, "expected true or false"),
    ("1", bool, "expected true or false"), ("inf", float, "expected a number"),
    (float("inf"), float, "expected a number"), ("nan", float, "expected a number"),
    (str(INT64 + 1), int, "expected an integer between"), (3, str, "expected a string"),
])
def test_typed_refuses_other_types(value, kind, message):
    with pytest.raises(ConfigError, match=f"^w: {message}"):
        typed(value, kind, where="w")


def test_typed_bounds():
    assert typed("5", int, where="w", low=0, high=5) == 5
    with pytest.raises(ConfigError, match="w: expected an integer between 0 and 5"):
        typed("6", int, where="w", low=0, high=5)


def test_plugin_specs_say_their_types():
    assert call("my.mod:Mine(a=[1, 'x'], b=None, c=true, d=-2.5e1)", where="w") == (
        "my.mod:Mine", {"a": [1, "x"], "b": None, "c": True, "d": -25.0})
    assert call("EWCPlugin", where="w") == ("EWCPlugin", {})
    for spec, message in [("E(10)", "must be key=value"), ("E(a=x)", "'x' is not a value"),
                          ("E(a=1,a=2)", "a given twice"), ("(a=1)", "expected NAME"),
                          ("E(a=inf)", "'inf' is not a value")]:
        with pytest.raises(ConfigError, match=message):
            call(spec, where="w")
    assert literal("plain", where="w", strict=False) == "plain"
