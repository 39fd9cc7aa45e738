"""The strategies docs/strategies.md shows, run as they are written there."""

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
    main(["run", "--strategy", name, "--plugin", f"doc_{module}:{cls}", "--preset", "quick",
          "--epochs", "1", "--out", str(out), "--no-progress", "--no-tensorboard"])
    entry = json.loads((out / "run.json").read_text())["runs"][0]
    assert entry["status"] == "done" and [r["step"] for r in entry["rows"]] == [0, 1, 2, 3, 4]
    if name == "tiny-replay":
        assert entry["extra"]["buffer_rows"] == 64
    else:
        assert 0 < entry["cost"]["trainable_params"] < entry["cost"]["backbone_params"]
    sys.modules.pop(f"doc_{module}", None)
