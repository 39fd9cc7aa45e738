"""The tuning protocol's grid files: same budget for every method, and rows with an
Avalanche plugin whose options the grid sets."""

import json
from pathlib import Path

import pytest
from tail_bench.benchmarks.sweep import load_grid, row_spec

from tail_bench.training.avalanche_compat import parse_plugin_spec, split_method

GRIDS = sorted((Path(__file__).parents[1] / "benchmarks" / "grids").glob("*.json"))


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.stem)
def test_every_shipped_grid_gives_each_method_the_same_budget(path):
    grid = load_grid(path)
    assert {len(c) for c in grid["methods"].values()} == {grid["budget"]}
    assert set(grid["order"]) == set(grid["methods"])


def test_a_plugin_configuration_becomes_the_row_the_cli_takes():
    spec = row_spec("finetune+EWCPlugin", {"plugin": {"ewc_lambda": 1000}})
    assert spec == "finetune+EWCPlugin(ewc_lambda=1000)"
    base, plugins = split_method(spec)
    assert base == "finetune" and parse_plugin_spec(plugins[0])[1] == {"ewc_lambda": 1000}
    assert row_spec("ptat", {"opt": {"lr": 1e-3}}) == "ptat"


@pytest.mark.parametrize("methods, message", [
    ({"ewc": [{"plugin": {"ewc_lambda": 1}}]}, "last Avalanche plugin"),
    ({"ewc": [{"lambda": 1}]}, "expected keys lr, opt, plugin"),
    ({"ewc": [{}, {}]}, "same budget"),
])
def test_a_grid_that_breaks_the_protocol_is_refused(tmp_path, methods, message):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps({"budget": 1, "methods": methods}))
    with pytest.raises(SystemExit, match=message):
        load_grid(path)
