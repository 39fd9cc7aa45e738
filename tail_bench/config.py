"""A run's options: one dataclass, from which the command line and config files derive.

`RunConfig`'s fields carry their flag, help and parsing in their metadata, so the CLI
(`add_arguments`), config files (`load_file`, YAML or JSON, the field names as keys) and
run files (`run.json`'s `config`, which replays a run) cannot drift apart. Precedence:
the field's default < the config file < flags given on the command line. This module
imports nothing heavy, so `tail-bench --help` stays instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tail_bench import options as grammar
from tail_bench.errors import ConfigError, RunFileError
from tail_bench.evaluation.galleries import GALLERIES
from tail_bench.record import RUN_FILE
from tail_bench.reporting import REPORT_EVERY

PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
COMPILE_CHOICES = ("auto", "on", "off")
RENAMED = {"benchmark": "stream", "plugins": "strategy_classes"}  # files of older versions
SEED_MAX = 2**32 - 1  # NumPy's seeds are 32-bit
WORKERS_MAX = 256  # CHOICE: far above any machine's useful data-loading processes
LENGTH_MAX = 1000  # CHOICE: tail-synth steps; far above the stream-length study's


def option(default: Any = dataclasses.MISSING, *, help: str, kind: str = "value",
           type: type | None = str, choices: tuple[str, ...] | None = None,
           flag: str | None = None, aliases: tuple[str, ...] = (), metavar: str | None = None,
           factory: Any = None, low: int | None = None, high: int | None = None,
           hidden: tuple[str, ...] = ()) -> Any:
    """A RunConfig field with its CLI spelling. kind: value (`--x V`), csv (`--x a,b`),
    many (`--x a b`), append (repeatable `--x V`), opt (repeatable `--opt S.K=V` into a
    dict), switch (a bool that `--no-x` turns off). low, high: an integer option's bounds
    (each item's, for a list), checked by `RunConfig.check`. hidden: former flags, still
    accepted, left out of --help."""
    meta = {"help": help, "kind": kind, "type": type, "choices": choices, "flag": flag,
            "aliases": aliases, "metavar": metavar, "low": low, "high": high,
            "hidden": hidden}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunConfig:
    strategy: str = option(help="strategy name (see `tail-bench list`)")
    baselines: list[str] = option(kind="csv", factory=list,
                                  help="'all' or a comma list of strategies run alongside; "
                                       "STRATEGY+PLUGIN(key=value,...) adds Avalanche "
                                       "plugins to a strategy, a row of its own (see "
                                       "docs/avalanche.md)")
    stream: str = option("tail-synth", hidden=("--benchmark",),
                         help="the stream: tail-synth (default) or tail")
    preset: str = option("default", help="quick | default (sizes, epochs)")
    epochs: int | None = option(None, type=int, low=1,
                                help="epochs per step (default: the preset's)")
    lr: float | None = option(None, type=float, help="learning rate (default: the preset's)")
    batch_size: int | None = option(None, type=int, low=2,
                                    help="batch size (default: the preset's)")
    seeds: list[int] = option(kind="many", type=int, factory=lambda: [0], aliases=("--seed",),
                              low=0, high=SEED_MAX,
                              help="training seeds (default 0); several: mean ± std")
    data_seed: int | None = option(
        None, type=int, low=0, high=SEED_MAX,
        help="fix the generated stream's seed for every seed (default: each training seed "
             "also draws its own tail-synth data)")
    device: str = option("auto", help="auto | cpu | cuda | cuda:N")
    precision: str = option("auto", choices=PRECISION_CHOICES,
                            help="autocast precision for training and evaluation (losses and "
                                 "metrics stay fp32); auto: fp32 on the CPU, bf16 on CUDA")
    compile: str = option("auto", choices=COMPILE_CHOICES,
                          help="torch.compile the training forward (towers, heads, prompts); "
                               "auto: off (CHOICE, until a GPU measurement shows it wins; "
                               "docs/backbones.md)")
    nproc: int = option(1, type=int, aliases=("--processes",), low=1,
                        help="data-parallel processes: starts torchrun --nproc-per-node N "
                             "(one per GPU; gloo on the CPU); the global batch stays "
                             "--batch-size")
    workers: int = option(0, type=int, low=0, high=WORKERS_MAX,
                          help="data-loading processes (decode real audio off the main process)")
    eval_batch_size: int | None = option(
        None, type=int, low=1, help="clips per evaluation batch (default: 256 on CUDA, else "
                             "max(batch size, 64))")
    out: Path | None = option(None, type=Path,
                              help="run directory (default results/runs/<time>)")
    backbone: str | None = option(None, help="backbone name, local checkpoint directory, or "
                                             "WavCaps / LAION-CLAP .pt file")
    text_model: Path | None = option(
        None, type=Path, metavar="DIR",
        help="a .pt backbone's text model: a local Hugging Face directory with its config.json "
             "and tokenizer (e.g. bert-base-uncased for WavCaps' HTSAT-BERT, roberta-base for "
             "LAION-CLAP); the weights come from the .pt")
    order: list[str] | None = option(None, kind="csv",
                                     help="comma list of data sets: the stream's order (or "
                                          "subset)")
    length: int | None = option(None, type=int, low=1, high=LENGTH_MAX,
                                help="tail-synth: number of steps (>4 adds variants)")
    orders: int = option(1, type=int, low=1,
                         help="run every method over K stream orders: --order (or the "
                              "default order) first, then seeded shuffles of it (random."
                              "Random(0), repeats skipped), each crossed with --seeds; the "
                              "tables give mean ± std over orders and seeds")
    options: dict[str, dict[str, Any]] = option(
        kind="opt", factory=dict, flag="--opt", metavar="STRATEGY.KEY=VALUE",
        help="strategy option, repeatable (see docs/strategies.md)")
    strategy_classes: list[str] = option(kind="append", factory=list, hidden=("--plugin",),
                                         flag="--strategy-class", metavar="MODULE:CLASS",
                                         help="load a strategy class from an importable "
                                              "module, repeatable")
    data_root: Path | None = option(None, type=Path,
                                    help="tail: folder holding the four data sets")
    on_error: str = option("fail", choices=("fail", "skip"),
                           help="tail: stop on bad data (default), or skip and record bad "
                                "items")
    audiocaps_patterns: list[str] | None = option(
        None, kind="append", flag="--audiocaps-pattern", metavar="PATTERN",
        help="AudioCaps file stem, repeatable; default: Y{youtube_id}, {youtube_id}, "
             "{youtube_id}_{start_time} (+ .wav/.flac/.ogg)")
    eval_split: str = option("test", choices=("test", "val"),
                             help="score the test splits (default) or the val splits (for "
                                  "tuning)")
    gallery: str = option("per-dataset", choices=GALLERIES,
                          help="rank each query against its own data set's candidates "
                               "(per-dataset, the paper's protocol), against every test "
                               "set's (union: task-agnostic), or report both")
    report_every: str = option(
        "method", choices=REPORT_EVERY,
        help="when the run rewrites its tables, scores.csv and plots: after every step, "
             "after each method ends (default), or once when the run ends (run.json and "
             "the per-clip sums are written after every step whatever this says; `tail-bench "
             "report DIR` rebuilds the rest any time); rendering grows with steps x methods "
             "x seeds, so long runs want `run`")
    progress: bool = option(True, kind="switch", type=bool,
                            help="progress output (--no-progress: none)")
    tensorboard: bool = option(True, kind="switch", type=bool,
                               help="TensorBoard event files in the run directory "
                                    "(--no-tensorboard: none)")
    wandb: str | None = option(None, metavar="PROJECT",
                               help="also log to this Weights & Biases project (needs wandb)")

    def check(self, *, resume: bool = False) -> None:
        """Every option that can be checked without work; messages name the option."""
        def need(ok: bool, option: str, value: Any, expected: str) -> None:
            if not ok:
                raise ConfigError(f"{option} {value}: expected {expected}")

        need(bool(self.strategy), "--strategy", "(none)", "a strategy name")
        need(self.lr is None or (math.isfinite(self.lr) and self.lr > 0), "--lr", self.lr,
             "a finite number > 0")
        need(bool(self.seeds), "--seeds", "(none)", "at least one seed")
        need(len(set(self.seeds)) == len(self.seeds), "--seeds", " ".join(map(str, self.seeds)),
             "distinct seeds")
        for f in dataclasses.fields(self):
            value, m = getattr(self, f.name), f.metadata
            if m["choices"]:
                need(value in m["choices"], _flag(f), value, " or ".join(m["choices"]))
            if m["low"] is not None:
                values = value if isinstance(value, list) else [value]
                need(all(v is None or _within(v, m["low"], m["high"]) for v in values),
                     _flag(f), " ".join(map(str, values)),
                     ("integers " if m["kind"] == "many" else "an integer ")
                     + (f">= {m['low']}" if m["high"] is None
                        else f"between {m['low']} and {m['high']}"))
        if self.data_root is not None and not Path(self.data_root).is_dir():
            raise ConfigError(f"--data-root {self.data_root}: not a directory "
                              "(see docs/datasets.md for the layout)")
        if not resume and self.out is not None and (Path(self.out) / RUN_FILE).exists():
            raise ConfigError(f"--out {self.out}: {Path(self.out) / RUN_FILE} exists; "
                              "pick a new --out, move it, or continue it with --resume")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, the field names as keys: what run.json stores and replays."""
        return {k: str(v) if isinstance(v, Path) else v
                for k, v in dataclasses.asdict(self).items()}


def _within(value: Any, low: int, high: int | None) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high))


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _opt(pairs: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for pair in pairs:
        owner, name, value = grammar.assignment(pair, where="--opt")
        out.setdefault(owner, {})[name] = value
    return out


def add_arguments(parser: argparse.ArgumentParser, only: tuple[str, ...] = ()) -> None:
    """One flag per RunConfig field (or per field named in `only`, for commands that share
    some of run's options); flags not given stay out of the namespace, so a config file's
    values are not overridden by defaults."""
    for f in dataclasses.fields(RunConfig):
        if only and f.name not in only:
            continue
        for flags, shown in (([_flag(f), *f.metadata["aliases"]], True),
                             (list(f.metadata["hidden"]), False)):
            if flags:
                _add_flag(parser, f, flags, shown)


def _add_flag(parser: argparse.ArgumentParser, f: dataclasses.Field, flags: list[str],
              shown: bool) -> None:
    m = f.metadata
    common = {"dest": f.name, "help": m["help"] if shown else argparse.SUPPRESS,
              "default": argparse.SUPPRESS}
    if m["kind"] == "switch":
        parser.add_argument("--no-" + f.name.replace("_", "-"), action="store_false",
                            **common)
    elif m["kind"] in ("append", "opt"):
        parser.add_argument(*flags, action="append", metavar=m["metavar"], **common)
    elif m["kind"] == "many":
        parser.add_argument(*flags, nargs="+", **common)
    else:  # typed by _coerce: one grammar for flags and files
        parser.add_argument(*flags, choices=m["choices"], metavar=m["metavar"], **common)


def _coerce(f: dataclasses.Field, value: Any, where: str) -> Any:
    """A value from the command line or a file, as the field holds it (the grammar of
    tail_bench/options.py). `where`: the flag, or the file."""
    m = f.metadata
    flag = where.startswith("--")

    def label(v: Any) -> str:
        return f"{where} {v}" if flag else f"{where}: {f.name} = {v!r}"

    if value is None:
        return None
    if m["kind"] == "csv":
        if isinstance(value, str):
            return grammar.split(value, where=where if flag else label(value), empty=True)
        if not isinstance(value, list):
            raise ConfigError(f"{label(value)}: expected a list")
        return [grammar.typed(v, str, where=label(v)) for v in value]
    if m["kind"] == "opt":
        if isinstance(value, list) and flag:
            return _opt(value)
        if not (isinstance(value, dict) and all(isinstance(v, dict) for v in value.values())):
            raise ConfigError(f"{label(value)}: expected a mapping of strategy names to "
                              "mappings of option values")
        return {str(k): dict(v) for k, v in value.items()}
    if m["kind"] in ("append", "many"):
        values = value if isinstance(value, list) else [value]
        return [grammar.typed(v, m["type"], where=label(v)) for v in values]
    return grammar.typed(value, m["type"], where=label(value))


def _yaml_loader():
    """PyYAML's safe loader with YAML 1.2 booleans: `true`/`false` only (`yes`, `on` stay
    strings, and are then refused as booleans as on the command line)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    bool_tag = "tag:yaml.org,2002:bool"
    Loader.yaml_implicit_resolvers = {
        c: [(tag, rx) for tag, rx in rs if tag != bool_tag]
        for c, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver(bool_tag, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                 list("tTfF"))
    return Loader


def load_file(path: Path) -> dict[str, Any]:
    """A config file (YAML or JSON; field names as keys), or a run file (`run.json` or its
    directory), whose stored options replay the run (its `out` is dropped)."""
    path = Path(path)
    file = path / RUN_FILE if path.is_dir() else path
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError(f"--config {file}: no such file") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"--config {file}: not UTF-8 text ({err.reason})") from err
    try:
        if file.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.load(text, Loader=_yaml_loader())
        else:
            data = json.loads(text)
    except Exception as err:  # yaml and json raise their own error types
        raise ConfigError(f"--config {file}: not valid {file.suffix[1:] or 'JSON'} "
                          f"({str(err).splitlines()[0]})") from err
    if isinstance(data, dict) and "runs" in data and isinstance(data.get("config"), dict):
        data = {k: v for k, v in data["config"].items() if k != "out"}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {file}: expected a mapping of option names to values")
    data = {RENAMED.get(k, k): v for k, v in data.items()}
    known = {f.name: f for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"--config {file}: unknown option(s) {', '.join(unknown)}; expected "
                          f"some of {', '.join(known)}")
    return {k: _coerce(known[k], v, str(file)) for k, v in data.items()}


def given(namespace: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig values of the flags given on the command line, parsed."""
    known = {f.name: f for f in dataclasses.fields(RunConfig)}
    return {k: _coerce(known[k], v, _flag(known[k])) for k, v in vars(namespace).items()
            if k in known}


def script_values(namespace: argparse.Namespace, names: tuple[str, ...],
                  **defaults: Any) -> dict[str, Any]:
    """The run options `names` of a benchmark script that declared them with
    `add_arguments(only=names)`: as given, else the script's own `defaults` (a study's
    seeds or preset), else RunConfig's."""
    return {n: defaults[n] if n in defaults else default(n) for n in names} | {
        k: v for k, v in given(namespace).items() if k in names}


def default(name: str) -> Any:
    f = next(f for f in dataclasses.fields(RunConfig) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


RESUME_FREE = ("progress", "workers", "report_every")  # how a run goes, not what it computes


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "(none)"
    return "(default)" if value is None else str(value)


def for_resume(run_dir: Path, given: dict[str, Any], config: Path | None = None) -> RunConfig:
    """The configuration stored in `run_dir`'s run file, for --resume. Options given again
    (flags or --config) must equal it, except RESUME_FREE; the error names every one that
    differs."""
    file = Path(run_dir) / RUN_FILE
    if not file.is_file():
        raise ConfigError(f"--resume {run_dir}: no {RUN_FILE} there (expected a directory "
                          "written by `tail-bench run`)")
    stored = load_file(file)
    if not stored.get("strategy"):
        raise RunFileError(f"{file}: its 'config' has no strategy: not the options of a run "
                           "(was it edited?)")
    stored = RunConfig(**stored)
    asked = {**(load_file(config) if config is not None else {}), **given}
    out = asked.pop("out", None)
    if out is not None and Path(out).resolve() != Path(run_dir).resolve():
        raise ConfigError(f"--out {out}: --resume continues {run_dir} in place; drop --out")
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    diffs = [f"{_flag(fields[k])} {_show(v)} (run.json: {_show(getattr(stored, k))})"
             for k, v in asked.items() if k not in RESUME_FREE and v != getattr(stored, k)]
    if diffs:
        raise ConfigError(f"--resume {run_dir}: the options differ from {file}: "
                          f"{'; '.join(diffs)}; resume with the run's own options or start "
                          "a new --out")
    free = {k: v for k, v in asked.items() if k in RESUME_FREE}
    return dataclasses.replace(stored, out=Path(run_dir), **free)


def build(given: dict[str, Any], config: Path | None = None) -> RunConfig:
    """RunConfig from a config file (optional) and the flags given on the command line."""
    values = load_file(config) if config is not None else {}
    values.update(given)
    if not values.get("strategy"):
        raise ConfigError("--strategy is required (on the command line or in --config)")
    return RunConfig(**values)
