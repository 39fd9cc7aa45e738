"""The strategies docs/strategies.md shows, run as they are written there."""

import dataclasses
import json
import re
import sys
from pathlib import Path

import pytest

from tail_bench.cli import main

DOC = Path(__file__).parent.parent / "docs" / "strategies.md"
EXAMPLES = re.findall(r"```python\n# strategies/(\w+)\.py.*?\n(.*?)```", DOC.read_text(),
                      re.S)


def test_the_docs_show_the_examples():
    assert [name for name, _ in EXAMPLES] == ["heads_pull", "tiny_replay"]


@pytest.mark.parametrize("module, code", EXAMPLES, ids=[m for m, _ in EXAMPLES])
def test_a_documented_strategy_runs_as_a_plugin(module, code, tmp_path, monkeypatch, _cache):
    (tmp_path / f"doc_{module}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = re.search(r"^class (\w+)\(Strategy\)", code, re.M).group(1)
    name = re.search(r'name = "([\w-]+)"', code).group(1)
    out = tmp_path / "run"
    main(["run", "--strategy", name, "--strategy-class", f"doc_{module}:{cls}", "--preset", "quick",
          "--epochs", "1", "--out", str(out), "--no-progress", "--no-tensorboard"])
    entry = json.loads((out / "run.json").read_text())["runs"][0]
    assert entry["status"] == "done" and [r["step"] for r in entry["rows"]] == [0, 1, 2, 3, 4]
    if name == "tiny-replay":
        assert entry["extra"]["buffer_rows"] == 64
    else:
        assert 0 < entry["cost"]["trainable_params"] < entry["cost"]["backbone_params"]
    sys.modules.pop(f"doc_{module}", None)


def _documented_defaults() -> dict[str, dict[str, str]]:
    """Each `## name: ...` section's option table: option -> default as written."""
    out: dict[str, dict[str, str]] = {}
    for name, body in re.findall(r"^## ([\w-]+): .*?\n(.*?)(?=^## |\Z)", DOC.read_text(),
                                 re.S | re.M):
        rows = re.findall(r"^\| `(\w+)` \| ([^|]+?) \|", body, re.M)
        if rows:
            out[name] = dict(rows)
    return out


def _same(written: str, value) -> bool:
    if isinstance(value, bool):
        return written == str(value).lower()
    if isinstance(value, int | float):
        return float(written) == value
    return written.strip('"`') == value or (written == "(empty)" and value == "")


def test_documented_option_defaults_are_the_code_s():
    from tail_bench.training.registry import available_strategies

    documented = _documented_defaults()
    strategies = available_strategies()
    assert set(documented) <= set(strategies) and len(documented) >= 8
    for name, cls in strategies.items():
        fields = {f.name: f.default for f in dataclasses.fields(cls.Options)}
        table = documented.get(name, {})
        assert set(table) == set(fields), name  # every option documented, none stale
        wrong = {k: (w, fields[k]) for k, w in table.items() if not _same(w, fields[k])}
        assert not wrong, f"{name}: docs/strategies.md says (docs, code) {wrong}"
