"""One run: a stream, a backbone, several methods and seeds, one run directory.

Every option is checked before any work (pretraining, stream building, evaluation). Each
method starts from the same pretrained backbone and the same stream; row 0 is the backbone
itself, scored once per data seed before any strategy touches it (the Zero-shot row), and
the shared evaluator scores every method after every step. A method whose loss or
embeddings turn non-finite is marked `diverged` and the run goes on; a crash marks it
`failed`, Ctrl-C `interrupted`, and the finished steps stay on disk. After every step but
the last a checkpoint is written (training/checkpoint.py), so `--resume DIR` continues an
unfinished method where it stopped, with the scores an uninterrupted run gives (a row with
Avalanche plugins starts over: their state has no checkpoint). Costs are recorded
per method: wall time, peak memory and the parameters it trains; and per step: training
time, its peak memory, and the bytes of the strategy's state (`state_dict()`, what a
checkpoint stores beyond the weights) and of the model, so growth with the number of steps
shows. With `--orders K` every (seed, method) runs on each of K stream orders (the same
data, reordered; row 0 is shared, as it is scored by data set name).
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
from tail_bench.presets import get_preset
from tail_bench.reporting.cost import CostMeter
from tail_bench.reporting.loggers import RunLoggers, check_wandb
from tail_bench.reporting.results import RUN_FILE, RunStore, load_run
from tail_bench.runtime import resolve_precision
from tail_bench.storage import DirLock
from tail_bench.streams.registry import build_stream, check_stream_args, orders_of
from tail_bench.streams.stream import Stream, reorder
from tail_bench.training import checkpoint
from tail_bench.training.avalanche_compat import make_plugin, parse_plugin_spec, split_method
from tail_bench.training.loss_log import LossLogger
from tail_bench.training.progress import ProgressBar
from tail_bench.training.registry import available_strategies
from tail_bench.training.strategy import parse_options
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
    if baselines == ["all"]:
        baselines = [n for n in known if n != strategy]
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
    workers: int
    eval_split: str
    progress: bool


def resolve(cfg: RunConfig, preset) -> Settings:
    device = resolve_device(cfg.device)
    batch = preset.batch_size if cfg.batch_size is None else cfg.batch_size
    try:
        precision = resolve_precision(cfg.precision, device)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    return Settings(epochs=preset.epochs if cfg.epochs is None else cfg.epochs,
                    lr=preset.lr if cfg.lr is None else cfg.lr, batch=batch,
                    eval_batch=cfg.eval_batch_size or (256 if device.type == "cuda"
                                                       else max(batch, 64)),
                    device=device, precision=precision, workers=cfg.workers,
                    eval_split=cfg.eval_split, progress=cfg.progress)


FINISHED = ("done", "diverged")  # what --resume skips; diverging again would be certain


def resumable(out: Path, resolved: dict[str, Any]) -> None:
    """--resume continues a run only under what it was started with: the same suite
    version and the same resolved settings (device, precision, backbone, preset sizes)."""
    stored = load_run(out)
    diffs = []
    suite = f"tail-bench {tail_bench.__version__}"
    if stored.get("suite") != suite:
        diffs.append(f"suite {suite} (run.json: {stored.get('suite')})")
    before_options = {"world_size": 1,  # run files older than these settings
                      "orders": [stored.get("stream", {}).get("datasets")]}
    for key, value in resolved.items():
        before = stored.get("resolved", {}).get(key, before_options.get(key))
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
    cfg.check(resume=resume)
    device = resolve_device(cfg.device)
    known = available_strategies(cfg.plugins)
    methods = method_list(cfg.strategy, cfg.baselines, known)
    for spec in (s for m in methods for s in split_method(m)[1]):
        make_plugin(spec, device)  # an unknown or classification-only plugin stops here
    for owner, opts in cfg.options.items():
        if owner not in known:
            raise ConfigError(f"--opt {owner}.…: no strategy {owner!r}; expected one of "
                              f"{sorted(known)}")
        if owner not in methods:
            raise ConfigError(f"--opt {owner}.…: {owner} is not in this run (methods: "
                              f"{', '.join(methods)}); add it to --baselines or drop the option")
        parse_options(known[owner].Options, opts, owner=owner)
    preset = get_preset(cfg.preset)
    backbone_name = cfg.backbone or preset.backbone
    for name in {split_method(m)[0] for m in methods}:
        known[name](options=cfg.options.get(name, {})).check(backbone_name)
    check_stream_args(cfg.benchmark, data_root=cfg.data_root, length=cfg.length,
                      order=cfg.order, audio=audio_settings(backbone_name))
    orders = orders_of(cfg.benchmark, order=cfg.order, length=cfg.length, orders=cfg.orders)
    run_as = resolve(cfg, preset)
    world = distributed.launched()
    if cfg.nproc not in (1, world):
        raise ConfigError(f"--nproc {cfg.nproc}: torchrun started {world} processes; give "
                          "--nproc only without torchrun, or the same number")
    if run_as.batch % world:
        raise ConfigError(f"--batch-size {run_as.batch}: expected a multiple of the {world} "
                          "processes (each takes an equal share of every batch)")
    check_wandb(cfg.wandb)
    device_name = str(run_as.device)  # as asked: with several processes each takes one
    run_as.device = distributed.start(run_as.device)
    main = distributed.is_main()
    run_as.progress = run_as.progress and main
    out = distributed.same(cfg.out or Path("results/runs") / time.strftime("%Y%m%d-%H%M%S"))
    data_seeds = {s: s if cfg.data_seed is None else cfg.data_seed for s in cfg.seeds}
    resolved = {"out": str(out), "methods": methods, "epochs": run_as.epochs, "lr": run_as.lr,
                "batch_size": run_as.batch, "eval_batch_size": run_as.eval_batch,
                "device": device_name, "precision": run_as.precision,
                "cpu_threads": torch.get_num_threads(),  # wall times (and CPU bits) depend on it
                "backbone": backbone_name, "preset_sizes": preset.as_dict(),
                "data_seeds": data_seeds, "gallery": cfg.gallery, "world_size": world,
                "orders": orders}
    lock = DirLock(out)
    store: RunStore | None = None
    loggers: RunLoggers | None = None
    try:
        if main:
            claim(out, lock, resume=resume, backbone=backbone_name)
        if resume:
            resumable(out, resolved)
            store = RunStore(out, {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                   "command": sys.argv}, resume=True, write=main,
                             report_every=cfg.report_every)
            loggers = RunLoggers(out, tensorboard=cfg.tensorboard and main,
                                 wandb=cfg.wandb if main else None, config=cfg.as_dict())
        for building in (True, False):  # rank 0 pretrains (or loads) first, the others load
            if building == main:
                base = build_backbone(backbone_name, device=run_as.device,
                                      progress=run_as.progress, text_model=cfg.text_model)
            distributed.barrier()
        evaluator = RetrievalEvaluator(batch_size=run_as.eval_batch, num_workers=cfg.workers,
                                       progress=run_as.progress, precision=run_as.precision,
                                       gallery=cfg.gallery)
        stream, built_for = None, None
        for seed in cfg.seeds:
            todo = [(k, m) for k in range(len(orders)) for m in methods
                    if store is None or not finished(store.find(m, seed, k))]
            if not todo:
                continue
            if data_seeds[seed] != built_for:
                built_for = data_seeds[seed]
                stream = None  # free the previous data first
                stream = build_stream(cfg.benchmark, preset=preset, seed=built_for,
                                      order=cfg.order, length=cfg.length,
                                      data_root=cfg.data_root,
                                      clip_seconds=base.meta["clip_seconds"],
                                      sample_rate=base.meta["sample_rate"],
                                      on_error=cfg.on_error,
                                      audiocaps_patterns=cfg.audiocaps_patterns)
                with CostMeter(run_as.device) as ev:
                    zero_shot = evaluator.evaluate(base, stream.benchmark(
                        eval_split=cfg.eval_split).test_stream)
                zero_seconds = ev.seconds
            if store is None:
                store = RunStore(out, {"suite": f"tail-bench {tail_bench.__version__}",
                                       "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                       "command": sys.argv, "config": cfg.as_dict(),
                                       "resolved": resolved, "stream": stream.describe()},
                                 write=main, report_every=cfg.report_every)
                loggers = RunLoggers(out, tensorboard=cfg.tensorboard and main,
                                     wandb=cfg.wandb if main else None, config=cfg.as_dict())
            for k, name in todo:
                strategy, plugins = split_method(name)
                run_method(store, known[strategy], base=base,
                           stream=reorder(stream, orders[k]), order_index=k,
                           evaluator=evaluator, zero_shot=zero_shot,
                           zero_seconds=zero_seconds, seed=seed, data_seed=built_for,
                           run_as=run_as, loggers=loggers,
                           options=cfg.options.get(strategy, {}), avalanche_plugins=plugins)
    finally:
        if store is not None:
            store.close()
        if loggers is not None:
            loggers.close()
        distributed.stop()
        lock.release()
    return out


def finished(entry: dict[str, Any] | None) -> bool:
    return entry is not None and entry["status"] in FINISHED


def stored_bytes(strategy, model: torch.nn.Module) -> dict[str, int]:
    """What a method keeps after a step: its strategy's state (`state_dict()`: a Fisher and
    anchor, a teacher, a replay buffer, a usage history; tensors by their bytes, the rest
    by its JSON) and the model's weights and buffers (which grow for a method that adds
    modules per step). Avalanche plugins' state is not in it (it has no contract)."""
    model_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return {"state_bytes": checkpoint.state_bytes(strategy.state_dict()),
            "model_bytes": int(model_bytes)}


def log_scores(loggers: RunLoggers, tag: str, result: Evaluation, step: int) -> None:
    for ds, dirs in result.scores.items():
        for direction, metrics in dirs.items():
            loggers.scalar(f"{tag}/R@1_{direction}/{ds}", metrics["R@1"]["value"], step)
    loggers.flush()


def _stop(store: RunStore, entry: dict[str, Any], status: str, message: str) -> None:
    """Record why a method stopped, unless run.json cannot be written either (a full
    disk): it then keeps `running`, which --resume treats the same."""
    try:
        store.stop(entry, status, {"message": message})
    except OSError as err:
        if err.errno not in storage.WRITE_FAILURES:
            raise


def run_method(store: RunStore, cls, *, base, stream: Stream, evaluator: RetrievalEvaluator,
               zero_shot: Evaluation, zero_seconds: float, seed: int, data_seed: int,
               run_as: Settings, loggers: RunLoggers, options: dict[str, Any],
               avalanche_plugins: list[str] = (), order_index: int = 0) -> dict[str, Any]:
    """Train and score one (method, seed, order), or continue it after its checkpoint when
    the run file already has it (--resume). Checkpoints follow every step but the last.
    `avalanche_plugins` (specs) are added to the strategy; the row is `strategy+Plugin(...)`.
    `stream` is in the order `order_index` names (0: the run's first)."""
    seed_everything(seed)
    strategy = cls(options=options)
    extra_plugins = [make_plugin(spec, run_as.device) for spec in avalanche_plugins]
    method = "+".join([cls.name, *avalanche_plugins])
    where = checkpoint.folder(store.out, method, seed, order_index)
    entry = store.find(method, seed, order_index)
    zero_row = {"step": 0, "after": None, "scores": zero_shot.scores, "train_seconds": 0.0,
                "eval_seconds": round(zero_seconds, 3)}
    if entry is not None and not entry["rows"]:  # to compute again (its state was damaged)
        checkpoint.remove(where)
    resumed = entry is not None and bool(entry["rows"])
    if entry is None:
        role = "zero-shot" if not cls.trains else ("joint" if cls.joint else "continual")
        info = {"role": role, "description": cls.description,
                "options": asdict(strategy.options), "data_seed": data_seed,
                "strategy": cls.name, "order": stream.datasets, "order_index": order_index,
                "avalanche_plugins": [{"spec": spec, "class": f"{type(p).__module__}."
                                       f"{type(p).__qualname__}",
                                       "options": parse_plugin_spec(spec)[1]}
                                      for spec, p in zip(avalanche_plugins, extra_plugins,
                                                         strict=True)]}
        entry = store.start(method=method, seed=seed, info=info)
    if not resumed:
        store.add_row(entry, dict(zero_row), zero_shot.clips)
    device = run_as.device
    tag_of = f"{method}/seed{seed}" + (f"/order{order_index + 1}" if order_index else "")
    if not resumed:
        log_scores(loggers, tag_of, zero_shot, 0)
    model, done = None, 0
    # Avalanche plugins keep state (a replay buffer, EWC's importances) that no contract
    # saves: a row with plugins writes no checkpoint and starts over on --resume
    keeps = cls.trains and not avalanche_plugins
    kept = (f"finished steps are kept in {store.out} (continue with `tail-bench run "
            f"--resume {store.out}`)")

    def stopped() -> str:
        order = f", order {order_index + 1}" if order_index else ""
        return f"{cls.name} (seed {seed}{order}) after step {entry['rows'][-1]['step']}"

    try:
        with CostMeter(device) as total:
            if cls.trains:
                model = copy.deepcopy(base).to(device)
                strategy.setup(model)
                bench = stream.benchmark(joint=cls.joint, eval_split=run_as.eval_split)
                template = RetrievalTemplate(
                    model=model, strategy=strategy, lr=run_as.lr, train_mb_size=run_as.batch,
                    train_epochs=run_as.epochs, device=device, seed=seed,
                    num_workers=run_as.workers, precision=run_as.precision,
                    plugins=[ProgressBar(label=method, enabled=run_as.progress),
                             LossLogger(lambda t, v, b: loggers.scalar(f"{tag_of}/{t}", v, b)),
                             *extra_plugins])
                if resumed and keeps:
                    try:
                        done = checkpoint.load(where, model=model, strategy=strategy,
                                               template=template,
                                               recorded=entry.get("checkpoint"))
                    except checkpoint.DamagedCheckpoint as err:
                        checkpoint.remove(where)
                        store.restart(entry, str(err))
                        store.add_row(entry, dict(zero_row), zero_shot.clips)
                if resumed:
                    store.reopen(entry, done)
                saved = entry.setdefault("checkpoint", {"writes": 0, "seconds": 0.0,
                                                        "mb": 0.0}) if keeps else {}
                steps = len(bench.train_stream)
                for i, exp in enumerate(bench.train_stream, 1):
                    if i <= done:
                        continue
                    with CostMeter(device) as tr:
                        template.train(exp)
                    distributed.check_in_sync(model)  # so teachers, anchors are the same
                    with CostMeter(device) as ev:
                        try:
                            result = evaluator.evaluate(model, bench.test_stream)
                        except NonFiniteScores as err:
                            raise Diverged(f"{cls.name} diverged: {err} after step {i}",
                                           step=i) from err
                    after = "all (joint)" if cls.joint else stream.datasets[i - 1]
                    store.add_row(entry, {"step": i, "after": after, "scores": result.scores,
                                          "train_seconds": round(tr.seconds, 3),
                                          "eval_seconds": round(ev.seconds, 3),
                                          "train_peak_memory_mb": round(tr.peak_mb, 1),
                                          **stored_bytes(strategy, model)}, result.clips)
                    log_scores(loggers, tag_of, result, i)
                    if i < steps and keeps and store.write:
                        written = checkpoint.save(where, i, model=model, strategy=strategy,
                                                  template=template)
                        saved.update(writes=saved["writes"] + 1,
                                     seconds=round(saved["seconds"] + written["seconds"], 3),
                                     mb=round(written["bytes"] / 2**20, 2),
                                     step=i, sha256=written["sha256"])
            elif resumed:
                store.reopen(entry, 0)
    except Diverged as err:
        if store.write:
            print(f"tail-bench: {err}; its status is 'diverged' and no score is kept past "
                  "the last finite step", file=sys.stderr)
            checkpoint.remove(where)
        store.stop(entry, "diverged", {"message": str(err), **err.where})
        return entry
    except KeyboardInterrupt:
        try:
            store.stop(entry, "interrupted", {"message": "interrupted (Ctrl-C)"})
        except KeyboardInterrupt:  # a second Ctrl-C while the tables were written
            raise Interrupted(f"interrupted twice during {stopped()}; {kept}; `tail-bench "
                              f"report {store.out}` rebuilds the tables") from None
        raise Interrupted(f"interrupted during {stopped()}; {kept}") from None
    except OSError as err:
        if err.errno not in storage.WRITE_FAILURES:
            _stop(store, entry, "failed", f"{type(err).__name__}: {err}")
            raise
        reason = f"cannot write {err.filename}: {err.strerror}"
        _stop(store, entry, "interrupted", reason)
        raise WriteFailed(f"{reason}; stopped {stopped()}; once fixed, {kept}") from None
    except BaseException as err:
        _stop(store, entry, "failed", f"{type(err).__name__}: {err}")
        raise
    trained = strategy.trainable_parameters(model) if cls.trains else []
    rows = entry["rows"][1:]
    train_seconds = sum(r["train_seconds"] for r in rows)
    eval_seconds = sum(r["eval_seconds"] for r in rows) if cls.trains else zero_seconds
    earlier = sum(r["train_seconds"] + r["eval_seconds"] for r in rows[:done])  # resumed
    cost = {"trainable_params": count(trained),
            "trainable_by_module": by_module(model, trained) if cls.trains else {},
            "backbone_params": count((model or base).backbone_parameters()),
            "train_seconds": round(train_seconds, 3), "eval_seconds": round(eval_seconds, 3),
            **{k: v for k, v in total.as_dict().items() if k != "seconds"},
            "wall_seconds": round(total.seconds + earlier
                                  + (0 if cls.trains else zero_seconds), 3),
            **strategy.cost()}
    store.finish(entry, cost=cost, extra=strategy.report())
    if store.write:
        checkpoint.remove(where)
    return entry
