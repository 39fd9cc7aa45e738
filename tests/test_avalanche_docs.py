"""docs/avalanche.md's Python API, run as written: Avalanche's TextLogger prints the R@1 of
the shared evaluator (what a run's tables show)."""

import ast
import re
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import pytest

DOC = Path(__file__).parent.parent / "docs" / "avalanche.md"


def test_the_documented_api_logs_the_evaluators_scores(tmp_path, monkeypatch, _cache):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    printed = StringIO()
    with redirect_stdout(printed):
        exec(compile(code, str(DOC), "exec"), {"__name__": "doc"})
    r1 = ast.literal_eval(printed.getvalue().strip().splitlines()[-1])
    # TextLogger prints each experience's values as it ends, the stream's after the phase
    *_, last_exps, last_stream = (tmp_path / "avalanche-log.txt").read_text().split(
        "-- >> End of eval phase << --")
    logged = dict(re.findall(r"R@1_t2a_Exp/eval_phase/test_stream/(\S+) = ([\d.]+)", last_exps))
    assert set(logged) == set(r1) and len(r1) == 4
    for name, value in r1.items():
        assert float(logged[name]) == pytest.approx(value, abs=5e-5), name
    stream = float(re.search(r"R@1_t2a_Stream/eval_phase/test_stream = ([\d.]+)",
                             last_stream).group(1))
    assert stream == pytest.approx(sum(r1.values()) / 4, abs=5e-5)
    assert len(re.findall(r"_Exp/eval_phase/test_stream/", last_exps)) == 4 * 2 * 4
