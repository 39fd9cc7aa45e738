"""Per-step checkpoints: what a method needs to continue after its last finished step.

`DIR/checkpoints/<method>-s<seed>/step-<k>/` holds
- `model.safetensors`: every weight and buffer of the model, a strategy's prompter included;
- `state.safetensors` + `state.json`: the strategy's `state_dict()` (tensors apart from
  the rest, never pickled), the RNG states (Python, NumPy, torch, every CUDA device) and
  the loss scaler's state.
The optimizer needs nothing (a fresh AdamW per step) and neither does the data-loader
generator: each step seeds its own from (seed, step). A step's folder is written under a
temporary name and renamed when complete, and the previous step's folder is removed only
after that, so a crash at any moment leaves one complete checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from tail_bench.record import CHECKPOINTS_DIR, run_name
from tail_bench.storage import atomic_write_bytes, atomic_write_json

FORMAT = 1
TENSOR = "__tensor__"


def _host(t: torch.Tensor) -> torch.Tensor:
    """A contiguous host copy that later training cannot change."""
    return t.detach().to("cpu", copy=True).contiguous()


def _walk(tree: Any, tensor: Callable[[str, torch.Tensor], Any], path: str) -> Any:
    """A JSON tree of a state (the checkpoint contract: tensors, numbers, strings, lists
    and str-keyed dicts), each tensor replaced by `tensor(its path, it)`."""
    if isinstance(tree, torch.Tensor):
        return tensor(path, tree)
    if isinstance(tree, dict):
        if not all(isinstance(k, str) for k in tree):
            raise TypeError(f"state at {path or '/'}: dict keys must be strings")
        return {k: _walk(v, tensor, f"{path}/{k}") for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [_walk(v, tensor, f"{path}/{i}") for i, v in enumerate(tree)]
    if tree is None or isinstance(tree, bool | int | float | str):
        return tree
    raise TypeError(f"state at {path or '/'}: a {type(tree).__name__}; expected tensors, "
                    "numbers, strings, or lists and str-keyed dicts of them")


def _join(tree: Any, tensors: dict[str, torch.Tensor], device: torch.device) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {TENSOR}:
            return tensors[tree[TENSOR]].to(device)
        return {k: _join(v, tensors, device) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join(v, tensors, device) for v in tree]
    return tree


def rng_state() -> dict[str, Any]:
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(mt), gauss],
            "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict[str, Any]) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def folder(run_dir: Path, method: str, seed: int, order_index: int = 0) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR / run_name(method, seed, order_index)


def _split(tree: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    """A JSON tree of `tree` with each tensor replaced by {TENSOR: its key in `tensors`},
    where a host copy of it goes."""
    def keep(where: str, t: torch.Tensor) -> dict[str, str]:
        tensors[where] = _host(t)
        return {TENSOR: where}

    return _walk(tree, keep, path)


def state_bytes(tree: Any) -> int:
    """The size of a strategy's `state_dict()` as a checkpoint stores it: every tensor's
    bytes plus the JSON of everything else (no tensor is copied)."""
    sizes: list[int] = []

    def count(_: str, t: torch.Tensor) -> dict[str, str]:
        sizes.append(t.numel() * t.element_size())
        return {TENSOR: ""}

    return len(json.dumps(_walk(tree, count, ""))) + sum(sizes)


def latest(where: Path) -> Path | None:
    """The newest complete step folder (temporary folders never count)."""
    steps = [p for p in Path(where).glob("step-*") if (p / "state.json").exists()]
    return max(steps, key=lambda p: int(p.name.split("-")[1]), default=None)


def save(where: Path, step: int, *, model: torch.nn.Module, strategy, template
         ) -> tuple[float, int]:
    """Write step `step`'s checkpoint, then drop older ones; (seconds, bytes) it took."""
    start = time.perf_counter()
    where = Path(where)
    tmp, final = where / f".step-{step}.tmp", where / f"step-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: _host(v) for k, v in model.state_dict().items()}
    atomic_write_bytes(tmp / "model.safetensors", save_tensors(weights))
    tensors: dict[str, torch.Tensor] = {}
    tree = {"format": FORMAT, "step": step,
            "strategy": _split(strategy.state_dict(), tensors, "strategy"),
            "rng": _split(rng_state(), tensors, "rng"),
            "scaler": template.scaler.state_dict()}
    atomic_write_bytes(tmp / "state.safetensors", save_tensors(tensors))
    atomic_write_json(tmp / "state.json", tree)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    fd = os.open(where, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself is durable before the older step goes
    finally:
        os.close(fd)
    size = sum(f.stat().st_size for f in final.iterdir())
    for old in where.glob("step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return time.perf_counter() - start, size


def load(where: Path, *, model: torch.nn.Module, strategy, template) -> int:
    """Restore the newest checkpoint under `where` (model set up by the strategy first);
    the step it was taken after, 0 when there is none."""
    step_dir = latest(where)
    if step_dir is None:
        return 0
    device = next(model.parameters()).device
    tensors = load_tensors((step_dir / "state.safetensors").read_bytes())
    tree = json.loads((step_dir / "state.json").read_text(encoding="utf-8"))
    # the strategy's state first: one that grows the model per step (CODA-Prompt) gives it
    # the checkpoint's shape, then the weights fill it
    strategy.load_state_dict(_join(tree["strategy"], tensors, device), model)
    weights = load_tensors((step_dir / "model.safetensors").read_bytes())
    model.load_state_dict({k: v.to(device) for k, v in weights.items()})
    if tree["scaler"]:
        template.scaler.load_state_dict(tree["scaler"])
    set_rng_state(_join(tree["rng"], tensors, torch.device("cpu")))
    return int(tree["step"])


def remove(where: Path) -> None:
    """A finished method needs no checkpoint."""
    shutil.rmtree(where, ignore_errors=True)
    parent = Path(where).parent
    if parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
