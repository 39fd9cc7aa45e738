"""One run: a stream, a backbone, several methods and seeds, one run directory.

Each method starts from the same pretrained backbone and the same stream; the one shared
evaluator scores it before any step (row 0) and after every step. Costs are recorded per
method: wall time, peak memory and the parameters it trains.
"""

from __future__ import annotations

import copy
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import tail_bench
from tail_bench.evaluation.evaluator import RetrievalEvaluator
from tail_bench.models.builder import build_backbone
from tail_bench.presets import get_preset
from tail_bench.reporting.cost import CostMeter
from tail_bench.reporting.results import RunStore
from tail_bench.streams.registry import build_stream, check_stream_args
from tail_bench.streams.stream import Stream
from tail_bench.training.progress import ProgressBar
from tail_bench.training.registry import available_strategies
from tail_bench.training.strategy import parse_options
from tail_bench.training.template import RetrievalTemplate


@dataclass
class RunConfig:
    strategy: str
    baselines: list[str] = field(default_factory=list)
    benchmark: str = "tail-synth"
    preset: str = "default"
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    data_seed: int = 0
    device: str = "auto"
    out: Path | None = None
    backbone: str | None = None
    order: list[str] | None = None
    length: int | None = None
    options: dict[str, dict[str, str]] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    data_root: Path | None = None
    eval_split: str = "test"
    on_error: str = "fail"
    audiocaps_patterns: list[str] | None = None
    workers: int = 0
    progress: bool = True


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use cpu")
    return device


def count(params) -> int:
    return sum(p.numel() for p in params)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def method_list(strategy: str, baselines: list[str], known: dict) -> list[str]:
    if baselines == ["all"]:
        baselines = [n for n in known if n != strategy]
    methods = [strategy, *[b for b in baselines if b != strategy]]
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise KeyError(f"unknown strategy {unknown[0]!r}: expected one of {sorted(known)}")
    return methods


def run(cfg: RunConfig) -> Path:
    known = available_strategies(cfg.plugins)
    methods = method_list(cfg.strategy, cfg.baselines, known)
    for owner, opts in cfg.options.items():
        if owner not in known:
            raise KeyError(f"--opt {owner}.…: no strategy {owner!r}; expected one of "
                           f"{sorted(known)}")
        parse_options(known[owner].Options, opts, owner=owner)  # fail before any work
    preset = get_preset(cfg.preset)
    check_stream_args(cfg.benchmark, data_root=cfg.data_root, length=cfg.length,
                      order=cfg.order)
    epochs = cfg.epochs or preset.epochs
    lr, batch = cfg.lr or preset.lr, cfg.batch_size or preset.batch_size
    device = resolve_device(cfg.device)
    backbone_name = cfg.backbone or preset.backbone
    base = build_backbone(backbone_name, device=device, progress=cfg.progress)
    stream = build_stream(cfg.benchmark, preset=preset, seed=cfg.data_seed, order=cfg.order,
                          length=cfg.length, data_root=cfg.data_root,
                          clip_seconds=base.meta["clip_seconds"],
                          sample_rate=base.meta["sample_rate"], on_error=cfg.on_error,
                          audiocaps_patterns=cfg.audiocaps_patterns)
    out = cfg.out or Path("results/runs") / time.strftime("%Y%m%d-%H%M%S")
    config = {**asdict(cfg), "out": str(out), "data_root": cfg.data_root and str(cfg.data_root),
              "methods": methods, "epochs": epochs, "lr": lr, "batch_size": batch,
              "device": str(device), "backbone": backbone_name, "preset_sizes": preset.as_dict()}
    store = RunStore(out, {"suite": f"tail-bench {tail_bench.__version__}",
                           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           "command": sys.argv, "config": config, "stream": stream.describe()})
    evaluator = RetrievalEvaluator(batch_size=max(batch, 64), num_workers=cfg.workers,
                                   progress=cfg.progress)
    for seed in cfg.seeds:
        for name in methods:
            run_method(store, known[name], base=base, stream=stream, evaluator=evaluator,
                       seed=seed, epochs=epochs, lr=lr, batch=batch, device=device,
                       options=cfg.options.get(name, {}), eval_split=cfg.eval_split,
                       workers=cfg.workers, progress=cfg.progress)
    return out


def run_method(store: RunStore, cls, *, base, stream: Stream, evaluator: RetrievalEvaluator,
               seed: int, epochs: int, lr: float, batch: int, device: torch.device,
               options: dict[str, Any], eval_split: str = "test", workers: int = 0,
               progress: bool = True) -> dict[str, Any]:
    seed_everything(seed)
    model = copy.deepcopy(base).to(device)
    strategy = cls(options=options)
    strategy.setup(model)
    role = "zero-shot" if not cls.trains else ("joint" if cls.joint else "continual")
    info = {"role": role, "description": cls.description, "options": asdict(strategy.options)}
    entry = store.start(method=cls.name, seed=seed, info=info)
    bench = stream.benchmark(joint=cls.joint, eval_split=eval_split)
    train_seconds = eval_seconds = 0.0
    with CostMeter(device) as total:
        with CostMeter(device) as ev:
            scores = evaluator.evaluate(model, bench.test_stream)
        store.add_row(entry, {"step": 0, "after": None, "scores": scores,
                              "train_seconds": 0.0, "eval_seconds": round(ev.seconds, 3)})
        eval_seconds += ev.seconds
        if cls.trains:
            template = RetrievalTemplate(
                model=model, strategy=strategy, lr=lr, train_mb_size=batch,
                train_epochs=epochs, device=device, seed=seed, num_workers=workers,
                plugins=[ProgressBar(label=cls.name, enabled=progress)])
            for i, exp in enumerate(bench.train_stream, 1):
                with CostMeter(device) as tr:
                    template.train(exp)
                with CostMeter(device) as ev:
                    scores = evaluator.evaluate(model, bench.test_stream)
                after = "all (joint)" if cls.joint else stream.datasets[i - 1]
                store.add_row(entry, {"step": i, "after": after, "scores": scores,
                                      "train_seconds": round(tr.seconds, 3),
                                      "eval_seconds": round(ev.seconds, 3)})
                train_seconds += tr.seconds
                eval_seconds += ev.seconds
    cost = {"trainable_params": count(strategy.trainable_parameters(model)) if cls.trains else 0,
            "backbone_params": count(model.backbone_parameters()),
            "train_seconds": round(train_seconds, 3), "eval_seconds": round(eval_seconds, 3),
            **{k: v for k, v in total.as_dict().items() if k != "seconds"},
            "wall_seconds": round(total.seconds, 3)}
    store.finish(entry, cost=cost, extra=strategy.report())
    return entry
