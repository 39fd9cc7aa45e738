"""One run: a stream, a backbone, several methods and seeds, one run directory.

A run is planned, then executed. `plan()` makes every check (options, strategies and their
options, Avalanche plugins, the stream's arguments, processes) and resolves every setting
(the `resolved` block of run.json that `--resume` compares) before any work: pretraining,
stream building and evaluation come after it. A `Session` then holds what the methods of
a run share (the run store, loggers, the backbone, the evaluator, the current stream) and
runs each (method, seed, order) as a `MethodRun`: start (its entry and row 0), steps,
finish (its cost).

Each method starts from the same pretrained backbone and the same stream; row 0 is the
backbone itself, scored once per data seed before any strategy touches it (the Zero-shot
row), and the shared evaluator scores every method after every step. A method whose loss
or embeddings turn non-finite is marked diverged and the run goes on; a crash marks it
failed, Ctrl-C interrupted, and the finished steps stay on disk. After every step but the
last a checkpoint is written (training/checkpoint.py), so `--resume DIR` continues an
unfinished method where it stopped, with the scores an uninterrupted run gives (a row with
Avalanche plugins starts over: their state has no checkpoint). Costs are recorded per
method: wall time, peak memory and the parameters it trains; and per step: training time,
its peak memory, and the bytes of the strategy's state (`state_dict()`, what a checkpoint
stores beyond the weights) and of the model, so growth with the number of steps shows.
With `--orders K` every (seed, method) runs on each of K stream orders (the same data,
reordered; row 0 is shared, as it is scored by data set name).
"""

from __future__ import annotations

import copy
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import tail_bench
from tail_bench import distributed, storage
from tail_bench.config import RunConfig
from tail_bench.errors import ConfigError, Diverged, Interrupted, WriteFailed
from tail_bench.evaluation.evaluator import Evaluation, RetrievalEvaluator
from tail_bench.evaluation.retrieval import NonFiniteScores
from tail_bench.models.builder import audio_settings, build_backbone, pretrains, weights_bytes
from tail_bench.presets import Preset, get_preset
from tail_bench.record import RUN_FILE, Entry, Role, Row, Status, load_run
from tail_bench.reporting.cost import CostMeter
from tail_bench.reporting.loggers import RunLoggers, check_wandb
from tail_bench.reporting.results import RunStore
from tail_bench.runtime import resolve_compile, resolve_precision
from tail_bench.storage import DirLock
from tail_bench.streams.registry import build_stream, check_stream_args, orders_of
from tail_bench.streams.stream import Stream, reorder
from tail_bench.training import checkpoint
from tail_bench.training.avalanche_compat import make_plugin, parse_plugin_spec, split_method
from tail_bench.training.loss_log import LossLogger
from tail_bench.training.progress import ProgressBar
from tail_bench.training.registry import available_strategies
from tail_bench.training.template import RetrievalTemplate


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"--device {name}: expected auto, cpu, cuda or cuda:N") from err
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine; use cpu")
    return device


def count(params) -> int:
    return sum(p.numel() for p in params)


def by_module(model: torch.nn.Module, params) -> dict[str, int]:
    """Trainable parameters per top-level module (prompter, audio_head, logit_scale, ...)."""
    ids, out = {id(p) for p in params}, {}
    for name, p in model.named_parameters():
        if id(p) in ids:
            out[name.split(".")[0]] = out.get(name.split(".")[0], 0) + p.numel()
    return out


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def method_list(strategy: str, baselines: list[str], known: dict) -> list[str]:
    """The run's rows: --strategy first, then --baselines (`all`: every other strategy;
    the --strategy among them is its own row already). A row given twice is refused."""
    if baselines == ["all"]:
        baselines = [n for n in known if n != strategy]
    twice = sorted({b for b in baselines if baselines.count(b) > 1})
    if twice:
        raise ConfigError(f"--baselines {','.join(baselines)}: {twice[0]} given twice; "
                          "expected each method once")
    methods = [strategy, *[b for b in baselines if b != strategy]]
    unknown = [split_method(m)[0] for m in methods if split_method(m)[0] not in known]
    if unknown:
        raise ConfigError(f"unknown strategy {unknown[0]!r}: expected one of {sorted(known)}")
    return methods



@dataclass
class Settings:
    """What a run resolved from its options and preset: what every method runs under."""

    epochs: int
    lr: float
    batch: int
    eval_batch: int
    device: torch.device
    precision: str
    compile: bool
    workers: int
    eval_split: str
    progress: bool


def resolve(cfg: RunConfig, preset: Preset, device: torch.device) -> Settings:
    batch = preset.batch_size if cfg.batch_size is None else cfg.batch_size
    try:
        precision = resolve_precision(cfg.precision, device)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    return Settings(epochs=preset.epochs if cfg.epochs is None else cfg.epochs,
                    lr=preset.lr if cfg.lr is None else cfg.lr, batch=batch,
                    eval_batch=cfg.eval_batch_size or (256 if device.type == "cuda"
                                                       else max(batch, 64)),
                    device=device, precision=precision,
                    compile=resolve_compile(cfg.compile), workers=cfg.workers,
                    eval_split=cfg.eval_split, progress=cfg.progress)


@dataclass(frozen=True)
class Method:
    """One row of a run: a strategy class, its options, and Avalanche plugin specs."""

    name: str  # the row's name: the strategy's, then `+Plugin(...)` per plugin
    cls: type
    options: dict[str, Any]
    avalanche_plugins: tuple[str, ...] = ()  # specs, e.g. EWCPlugin(ewc_lambda=10)

    @property
    def role(self) -> Role:
        if not self.cls.trains:
            return Role.ZERO_SHOT
        return Role.JOINT if self.cls.joint else Role.CONTINUAL


@dataclass
class Plan:
    """A run, checked and resolved: what `Session` executes."""

    cfg: RunConfig
    methods: list[Method]
    preset: Preset
    backbone: str
    orders: list[list[str]]
    settings: Settings
    out: Path
    resolved: dict[str, Any]  # run.json's `resolved`: what --resume must find again

    def data_seed(self, seed: int) -> int:
        return seed if self.cfg.data_seed is None else self.cfg.data_seed


def plan_methods(cfg: RunConfig, backbone: str, device: torch.device) -> list[Method]:
    """The run's rows, every strategy option and Avalanche plugin checked (a strategy's
    `check` included: an option that cannot work with `backbone` stops the run here)."""
    known = available_strategies(cfg.strategy_classes)
    names = method_list(cfg.strategy, cfg.baselines, known)
    for owner in cfg.options:
        if owner not in known:
            raise ConfigError(f"--opt {owner}.…: no strategy {owner!r}; expected one of "
                              f"{sorted(known)}")
        if owner not in {split_method(m)[0] for m in names}:
            raise ConfigError(f"--opt {owner}.…: {owner} is not in this run (methods: "
                              f"{', '.join(names)}); add it to --baselines or drop the option")
    methods = []
    for name in names:
        strategy, specs = split_method(name)
        for spec in specs:
            make_plugin(spec, device)  # an unknown or classification-only plugin stops here
        method = Method(name, known[strategy], cfg.options.get(strategy, {}), tuple(specs))
        method.cls(options=method.options).check(backbone)
        methods.append(method)
    return methods


def plan(cfg: RunConfig, *, resume: bool = False) -> Plan:
    """Every check and every resolved setting of a run, before any work (no pretraining,
    stream building or evaluation; nothing is written). With `resume`, the run in
    `cfg.out` must have been started under the same resolved settings."""
    cfg.check(resume=resume)
    device = resolve_device(cfg.device)
    preset = get_preset(cfg.preset)
    backbone = cfg.backbone or preset.backbone
    methods = plan_methods(cfg, backbone, device)
    check_stream_args(cfg.stream, data_root=cfg.data_root, length=cfg.length,
                      order=cfg.order, audio=audio_settings(backbone))
    orders = orders_of(cfg.stream, order=cfg.order, length=cfg.length, orders=cfg.orders)
    settings = resolve(cfg, preset, device)
    world = distributed.launched()
    if cfg.nproc not in (1, world):
        raise ConfigError(f"--nproc {cfg.nproc}: torchrun started {world} processes; give "
                          "--nproc only without torchrun, or the same number")
    if settings.batch % world:
        raise ConfigError(f"--batch-size {settings.batch}: expected a multiple of the {world} "
                          "processes (each takes an equal share of every batch)")
    check_wandb(cfg.wandb)
    out = cfg.out or Path("results/runs") / time.strftime("%Y%m%d-%H%M%S")
    resolved = {"out": str(out), "methods": [m.name for m in methods],
                "epochs": settings.epochs, "lr": settings.lr, "batch_size": settings.batch,
                "eval_batch_size": settings.eval_batch,
                "device": str(device),  # as asked: with several processes each takes one
                "precision": settings.precision, "compile": settings.compile,
                "cpu_threads": torch.get_num_threads(),  # wall times (and CPU bits) depend on it
                "backbone": backbone, "preset_sizes": preset.as_dict(),
                "data_seeds": {s: s if cfg.data_seed is None else cfg.data_seed
                               for s in cfg.seeds},
                "gallery": cfg.gallery, "world_size": world, "orders": orders}
    if resume:
        DirLock(out).check(f"--resume {out}")  # a writer's refusal before a settings diff
        resumable(out, resolved)
    return Plan(cfg, methods, preset, backbone, orders, settings, out, resolved)


def resumable(out: Path, resolved: dict[str, Any]) -> None:
    """--resume continues a run only under what it was started with: the same suite
    version and the same resolved settings (device, precision, backbone, preset sizes)."""
    stored = load_run(out)
    diffs = []
    suite = f"tail-bench {tail_bench.__version__}"
    if stored.header.get("suite") != suite:
        diffs.append(f"suite {suite} (run.json: {stored.header.get('suite')})")
    before_options = {"world_size": 1, "compile": False,  # run files older than these
                      "orders": [stored.datasets]}
    for key, value in resolved.items():
        before = stored.resolved.get(key, before_options.get(key))
        if key != "out" and json.loads(json.dumps(value)) != before:
            diffs.append(f"{key} {value} (run.json: {before})")
    if diffs:
        raise ConfigError(f"--resume {out}: this run differs from {out / 'run.json'}: "
                          f"{'; '.join(diffs)}")


def claim(out: Path, lock: DirLock, *, resume: bool, backbone: str) -> None:
    """Before any work: the run directory can be written, has room for a first checkpoint
    (the backbone's weights at least), and is this process's alone; the cache can take the
    weights that pretraining writes."""
    what = f"--resume {out}" if resume else f"--out {out}"
    storage.writable_dir(out, what)
    lock.acquire(what)
    if not resume and (out / RUN_FILE).exists():  # written by a run that held the lock
        raise ConfigError(f"{what}: {out / RUN_FILE} exists; pick a new --out, move it, or "
                          "continue it with --resume")
    if pretrains(backbone):
        storage.writable_dir(storage.cache_root() / "backbones",
                             f"the cache of pretrained backbones ($TAIL_BENCH_CACHE, "
                             f"{storage.cache_root()})")
    storage.room_for(out, weights_bytes(backbone), what)


def run(cfg: RunConfig, *, resume: bool = False) -> Path:
    """Run every (seed, method) of `cfg`; with `resume`, continue the run in `cfg.out`:
    finished methods are skipped, unfinished ones continue after their last checkpoint."""
    session = Session(plan(cfg, resume=resume), resume=resume)
    try:
        session.run()
    finally:
        session.close()
    return session.out


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Session:
    """What the methods of a run share: the run store and loggers, the backbone, the
    evaluator, and the stream of the current data seed with its zero-shot scores."""

    def __init__(self, plan: Plan, *, resume: bool) -> None:
        self.plan, self.cfg, self.settings = plan, plan.cfg, copy.copy(plan.settings)
        self.settings.device = distributed.start(plan.settings.device)
        self.main = distributed.is_main()
        self.settings.progress = self.settings.progress and self.main
        self.out = distributed.same(plan.out)
        self.plan.resolved["out"] = str(self.out)
        self.store: RunStore | None = None
        self.loggers: RunLoggers | None = None
        self.lock = DirLock(self.out)
        try:
            if self.main:
                claim(self.out, self.lock, resume=resume, backbone=plan.backbone)
            if resume:
                self.store = RunStore(self.out, {"at": now(), "command": sys.argv},
                                      resume=True, write=self.main,
                                      report_every=self.cfg.report_every)
        except BaseException:
            self.lock.release()
            raise
        self.stream: Stream | None = None
        self.data_seed: int | None = None
        self.zero_shot: Evaluation | None = None
        self.zero_seconds = 0.0

    def run(self) -> None:
        self.base = self._backbone()
        s = self.settings
        self.evaluator = RetrievalEvaluator(batch_size=s.eval_batch, num_workers=s.workers,
                                            progress=s.progress, precision=s.precision,
                                            gallery=self.cfg.gallery)
        for seed in self.cfg.seeds:
            todo = [(k, m) for k in range(len(self.plan.orders)) for m in self.plan.methods
                    if not self._settled(m, seed, k)]
            if not todo:
                continue
            self._stream_for(self.plan.data_seed(seed))
            self._open()
            for k, method in todo:
                MethodRun(self, method, seed, k).run()

    def _settled(self, method: Method, seed: int, order_index: int) -> bool:
        entry = self.store.find(method.name, seed, order_index) if self.store else None
        return entry is not None and entry.status.settled

    def _backbone(self):
        for building in (True, False):  # rank 0 pretrains (or loads) first, the others load
            if building == self.main:
                base = build_backbone(self.plan.backbone, device=self.settings.device,
                                      progress=self.settings.progress,
                                      text_model=self.cfg.text_model)
            distributed.barrier()
        return base

    def _stream_for(self, data_seed: int) -> None:
        """The stream of `data_seed` and the backbone's scores on it (row 0)."""
        if data_seed == self.data_seed:
            return
        cfg, self.data_seed = self.cfg, data_seed
        self.stream = None  # free the previous data first
        self.stream = build_stream(cfg.stream, preset=self.plan.preset, seed=data_seed,
                                   order=cfg.order, length=cfg.length,
                                   data_root=cfg.data_root,
                                   clip_seconds=self.base.meta["clip_seconds"],
                                   sample_rate=self.base.meta["sample_rate"],
                                   on_error=cfg.on_error,
                                   audiocaps_patterns=cfg.audiocaps_patterns)
        with CostMeter(self.settings.device) as ev:
            self.zero_shot = self.evaluator.evaluate(self.base, self.stream.scenario(
                eval_split=cfg.eval_split).test_stream)
        self.zero_seconds = ev.seconds

    def _open(self) -> None:
        """The run store (a new run: once its stream is known) and the loggers."""
        cfg = self.cfg
        if self.store is None:
            self.store = RunStore(self.out, {"suite": f"tail-bench {tail_bench.__version__}",
                                             "created": now(), "command": sys.argv,
                                             "config": cfg.as_dict(),
                                             "resolved": self.plan.resolved,
                                             "stream": self.stream.describe()},
                                  write=self.main, report_every=cfg.report_every)
        if self.loggers is None:
            self.loggers = RunLoggers(self.out, tensorboard=cfg.tensorboard and self.main,
                                      wandb=cfg.wandb if self.main else None,
                                      config=cfg.as_dict())

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        if self.loggers is not None:
            self.loggers.close()
        distributed.stop()
        self.lock.release()


def stored_bytes(strategy, model: torch.nn.Module) -> dict[str, int]:
    """What a method keeps after a step: its strategy's state (`state_dict()`: a Fisher and
    anchor, a distillation teacher, a replay buffer, a usage history; tensors by their
    bytes, the rest by its JSON) and the model's weights and buffers (which grow for a
    method that adds modules per step). Avalanche plugins' state is not in it (it has no
    contract)."""
    model_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return {"state_bytes": checkpoint.state_bytes(strategy.state_dict()),
            "model_bytes": int(model_bytes)}


class MethodRun:
    """One (method, seed, order): start (its entry, or the stored one on --resume),
    steps (train, score, checkpoint), finish (its cost). A step that diverges, a crash
    and Ctrl-C each stop it with their status; the finished steps stay."""

    def __init__(self, session: Session, method: Method, seed: int, order_index: int) -> None:
        self.session, self.method, self.seed, self.k = session, method, seed, order_index
        self.store, self.device = session.store, session.settings.device
        self.stream = reorder(session.stream, session.plan.orders[order_index])
        seed_everything(seed)
        self.strategy = method.cls(options=method.options)
        self.avalanche_plugins = [make_plugin(spec, self.device)
                                  for spec in method.avalanche_plugins]
        self.where = checkpoint.folder(self.store.out, method.name, seed, order_index)
        self.tag = f"{method.name}/seed{seed}" + (f"/order{order_index + 1}"
                                                  if order_index else "")
        # Avalanche plugins keep state (a replay buffer, EWC's importances) that no
        # contract saves: a row with plugins writes no checkpoint and starts over
        self.keeps = method.cls.trains and not method.avalanche_plugins
        self.model: torch.nn.Module | None = None

    def run(self) -> Entry:
        entry, resumed = self.start()
        try:
            with CostMeter(self.device) as total:
                done = self.steps(entry, resumed)
        except Diverged as err:
            if self.store.write:
                print(f"tail-bench: {err}; its status is 'diverged' and no score is kept "
                      "past the last finite step", file=sys.stderr)
                checkpoint.remove(self.where)
            self.store.stop(entry, Status.DIVERGED, {"message": str(err), **err.where})
            return entry
        except KeyboardInterrupt:
            try:
                self.store.stop(entry, Status.INTERRUPTED, {"message": "interrupted (Ctrl-C)"})
            except KeyboardInterrupt:  # a second Ctrl-C while the tables were written
                raise Interrupted(f"interrupted twice during {self.stopped(entry)}; "
                                  f"{self.kept()}; `tail-bench report {self.store.out}` "
                                  "rebuilds the tables") from None
            raise Interrupted(f"interrupted during {self.stopped(entry)}; "
                              f"{self.kept()}") from None
        except OSError as err:
            if err.errno not in storage.WRITE_FAILURES:
                self.stop(entry, Status.FAILED, f"{type(err).__name__}: {err}")
                raise
            reason = f"cannot write {err.filename}: {err.strerror}"
            self.stop(entry, Status.INTERRUPTED, reason)
            raise WriteFailed(f"{reason}; stopped {self.stopped(entry)}; once fixed, "
                              f"{self.kept()}") from None
        except BaseException as err:
            self.stop(entry, Status.FAILED, f"{type(err).__name__}: {err}")
            raise
        self.finish(entry, total, done)
        return entry

    def stopped(self, entry: Entry) -> str:
        order = f", order {self.k + 1}" if self.k else ""
        return f"{self.method.cls.name} (seed {self.seed}{order}) after step {entry.last_step}"

    def kept(self) -> str:
        return (f"finished steps are kept in {self.store.out} (continue with `tail-bench run "
                f"--resume {self.store.out}`)")

    def stop(self, entry: Entry, status: Status, message: str) -> None:
        """Record why the method stopped, unless run.json cannot be written either (a
        full disk): it then keeps `running`, which --resume treats the same."""
        try:
            self.store.stop(entry, status, {"message": message})
        except OSError as err:
            if err.errno not in storage.WRITE_FAILURES:
                raise

    def start(self) -> tuple[Entry, bool]:
        """The method's entry with row 0 (the zero-shot scores), or the stored one (one
        whose saved state was damaged has no rows: it starts again)."""
        entry = self.store.find(self.method.name, self.seed, self.k)
        if entry is not None and entry.rows:
            return entry, True
        if entry is not None:
            checkpoint.remove(self.where)
            self.add_zero_row(entry)
            return entry, False
        m = self.method
        plugins = [{"spec": spec, "class": f"{type(p).__module__}.{type(p).__qualname__}",
                    "options": parse_plugin_spec(spec)[1]}
                   for spec, p in zip(m.avalanche_plugins, self.avalanche_plugins, strict=True)]
        entry = self.store.start(Entry(
            method=m.name, seed=self.seed, status=Status.RUNNING, role=m.role,
            description=m.cls.description, options=asdict(self.strategy.options),
            data_seed=self.session.data_seed, strategy=m.cls.name,
            order=self.stream.datasets, order_index=self.k, avalanche_plugins=plugins))
        self.add_zero_row(entry)
        return entry, False

    def add_zero_row(self, entry: Entry) -> None:
        s = self.session
        self.store.add_row(entry, Row(step=0, after=None, scores=s.zero_shot.scores,
                                      eval_seconds=round(s.zero_seconds, 3)),
                           s.zero_shot.clips)
        self.log(s.zero_shot, 0)

    def steps(self, entry: Entry, resumed: bool) -> int:
        """Train and score every step not yet in `entry`; the steps done before (resumed)."""
        if not self.method.cls.trains:
            if resumed:
                self.store.reopen(entry, 0)
            return 0
        self.model = copy.deepcopy(self.session.base).to(self.device)
        self.strategy.setup(self.model)
        scenario = self.stream.scenario(joint=self.method.cls.joint,
                                        eval_split=self.session.settings.eval_split)
        template = self.template()
        done = 0
        if resumed and self.keeps:
            try:
                done = checkpoint.load(self.where, model=self.model, strategy=self.strategy,
                                       template=template, recorded=entry.checkpoint)
            except checkpoint.DamagedCheckpoint as err:  # verified before anything loaded
                checkpoint.remove(self.where)
                self.store.restart(entry, str(err))
                self.add_zero_row(entry)
        if resumed:
            self.store.reopen(entry, done)
        if self.keeps and entry.checkpoint is None:
            entry.checkpoint = {"writes": 0, "seconds": 0.0, "mb": 0.0}
        steps = len(scenario.train_stream)
        for i, exp in enumerate(scenario.train_stream, 1):
            if i > done:
                self.step(entry, template, i, exp, scenario.test_stream)
                if i < steps:
                    self.save(entry, template, i)
        return done

    def template(self) -> RetrievalTemplate:
        s, name = self.session.settings, self.method.name
        loggers = self.session.loggers
        return RetrievalTemplate(
            model=self.model, strategy=self.strategy, lr=s.lr, train_mb_size=s.batch,
            train_epochs=s.epochs, device=self.device, seed=self.seed,
            num_workers=s.workers, precision=s.precision, compile=s.compile,
            plugins=[ProgressBar(label=name, enabled=s.progress),
                     LossLogger(lambda t, v, b: loggers.scalar(f"{self.tag}/{t}", v, b)),
                     *self.avalanche_plugins])

    def step(self, entry: Entry, template: RetrievalTemplate, i: int, exp, test_stream) -> None:
        with CostMeter(self.device) as tr:
            template.train(exp)
        distributed.check_in_sync(self.model)  # so teachers, anchors are the same
        with CostMeter(self.device) as ev:
            try:
                result = self.session.evaluator.evaluate(self.model, test_stream)
            except NonFiniteScores as err:
                raise Diverged(f"{self.method.cls.name} diverged: {err} after step {i}",
                               step=i) from err
        after = "all (joint)" if self.method.cls.joint else self.stream.datasets[i - 1]
        self.store.add_row(entry, Row(step=i, after=after, scores=result.scores,
                                      train_seconds=round(tr.seconds, 3),
                                      eval_seconds=round(ev.seconds, 3),
                                      train_peak_memory_mb=round(tr.peak_mb, 1),
                                      **stored_bytes(self.strategy, self.model)),
                           result.clips)
        self.log(result, i)

    def save(self, entry: Entry, template: RetrievalTemplate, i: int) -> None:
        """The checkpoint after step `i` (rank 0; none for rows with Avalanche plugins)."""
        if not (self.keeps and self.store.write):
            return
        written = checkpoint.save(self.where, i, model=self.model, strategy=self.strategy,
                                  template=template)
        saved = entry.checkpoint
        saved.update(writes=saved["writes"] + 1,
                     seconds=round(saved["seconds"] + written["seconds"], 3),
                     mb=round(written["bytes"] / 2**20, 2), step=i, sha256=written["sha256"])

    def log(self, result: Evaluation, step: int) -> None:
        loggers = self.session.loggers
        for ds, dirs in result.scores.items():
            for direction, metrics in dirs.items():
                loggers.scalar(f"{self.tag}/R@1_{direction}/{ds}", metrics["R@1"]["value"],
                               step)
        loggers.flush()

    def finish(self, entry: Entry, total: CostMeter, done: int) -> None:
        """The method's cost (time of steps run before a resume included) and report."""
        trains, model = self.method.cls.trains, self.model
        trained = self.strategy.trainable_parameters(model) if trains else []
        rows = entry.rows[1:]
        zero_seconds = 0.0 if trains else self.session.zero_seconds
        earlier = sum(r.train_seconds + r.eval_seconds for r in rows[:done])  # resumed
        cost = {"trainable_params": count(trained),
                "trainable_by_module": by_module(model, trained) if trains else {},
                "backbone_params": count((model or self.session.base).backbone_parameters()),
                "train_seconds": round(sum(r.train_seconds for r in rows), 3),
                "eval_seconds": round(sum(r.eval_seconds for r in rows) + zero_seconds, 3),
                **{k: v for k, v in total.as_dict().items() if k != "seconds"},
                "wall_seconds": round(total.seconds + earlier + zero_seconds, 3),
                **self.strategy.cost()}
        self.store.finish(entry, cost=cost, extra=self.strategy.report())
        if self.store.write:
            checkpoint.remove(self.where)
