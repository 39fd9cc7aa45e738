"""How the suite installs: `strategies/` and `benchmarks/` are `tail_bench.strategies` and
`tail_bench.benchmarks` through setup.cfg's `package_dir` alone (no import hook), in the
editable install the README's `.ci/bootstrap` makes and in a wheel's layout."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = ("import importlib.util as u, json, sys, tail_bench.strategies as s, "
         "tail_bench.benchmarks as b, tail_bench.strategies.ptat;"
         "print(json.dumps([u.find_spec('strategies') is None, u.find_spec('benchmarks') is "
         "None, s.__file__, b.__file__, "
         "any(type(f).__module__.startswith('tail_bench') for f in sys.meta_path)]))")


def _probe(argv: list[str], cwd: Path, env: dict | None = None) -> list:
    return json.loads(subprocess.run([sys.executable, *argv], cwd=cwd, env=env, text=True,
                                     capture_output=True, check=True).stdout)


def test_the_package_installs_no_import_hook():
    init = (ROOT / "tail_bench" / "__init__.py").read_text()
    assert "meta_path" not in init and "MetaPathFinder" not in init


def test_the_readme_setup_is_an_editable_install_of_this_checkout(tmp_path):
    """`.ci/bootstrap` installs the checkout editable: the folders import from it, from
    any working directory, with no top-level `strategies` or `benchmarks`."""
    # from another folder: setuptools leaves a tail_bench.egg-info in the checkout, which
    # would answer for the installed distribution when the checkout is the working directory
    url = json.loads(_probe(["-c", "import importlib.metadata as m, json; print(json.dumps("
                                   "m.distribution('tail-bench').read_text('direct_url.json')))"],
                            tmp_path))
    assert url["dir_info"].get("editable") is True
    assert Path(url["url"].removeprefix("file://")).resolve() == ROOT
    none_s, none_b, strategies, benchmarks, hooked = _probe(["-c", PROBE], tmp_path)
    assert (none_s, none_b, hooked) == (True, True, False)
    assert Path(strategies) == ROOT / "strategies" / "__init__.py"
    assert Path(benchmarks) == ROOT / "benchmarks" / "__init__.py"


def test_a_wheel_holds_the_folders_as_subpackages(tmp_path):
    """setuptools' build_py lays out what a wheel holds (package_dir applied); importing
    from that layout alone finds every strategy and benchmark script."""
    lib = tmp_path / "lib"
    subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                    "build_py", "--build-lib", str(lib)], cwd=ROOT, check=True,
                   capture_output=True)
    for folder in ("strategies", "benchmarks"):
        shipped = sorted(p.name for p in (lib / "tail_bench" / folder).glob("*.py"))
        assert shipped == sorted(p.name for p in (ROOT / folder).glob("*.py")), folder
    # no site (so no editable finder): the layout, then the dependencies' folders
    deps = [p for p in sys.path[1:] if p and not Path(p).resolve().is_relative_to(ROOT)]
    probe = _probe(["-S", "-c", f"import sys; sys.path.extend({deps!r}); exec({PROBE!r})"],
                   tmp_path, env={"PYTHONPATH": str(lib), "PATH": "/usr/bin:/bin"})
    assert probe[:2] == [True, True] and not probe[4]
    assert Path(probe[2]) == lib / "tail_bench" / "strategies" / "__init__.py"
    assert Path(probe[3]) == lib / "tail_bench" / "benchmarks" / "__init__.py"
