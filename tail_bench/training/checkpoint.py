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

`state.json` holds the SHA-256 of both tensor files, and `save` returns the three files'
checksums for run.json: `load` verifies them before it touches the model, so a deleted,
truncated or altered checkpoint is named (`DamagedCheckpoint`) instead of half-loaded.
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

from tail_bench.errors import TailBenchError
from tail_bench.record import CHECKPOINTS_DIR, run_name
from tail_bench.storage import atomic_write_bytes, atomic_write_text, sha256

FORMAT = 1
TENSOR = "__tensor__"
FILES = ("model.safetensors", "state.safetensors", "state.json")


class DamagedCheckpoint(TailBenchError):
    """A checkpoint that is missing, or whose files differ from their checksums; the
    message names the file. Its method starts again from step 0."""


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
         ) -> dict[str, Any]:
    """Write step `step`'s checkpoint, then drop older ones. Returns what run.json keeps
    of it: step, seconds, bytes and each file's SHA-256."""
    start = time.perf_counter()
    where = Path(where)
    tmp, final = where / f".step-{step}.tmp", where / f"step-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = save_tensors({k: _host(v) for k, v in model.state_dict().items()})
    atomic_write_bytes(tmp / "model.safetensors", weights)
    tensors: dict[str, torch.Tensor] = {}
    tree = {"format": FORMAT, "step": step,
            "strategy": _split(strategy.state_dict(), tensors, "strategy"),
            "rng": _split(rng_state(), tensors, "rng"),
            "scaler": template.scaler.state_dict()}
    state = save_tensors(tensors)
    atomic_write_bytes(tmp / "state.safetensors", state)
    tree["sha256"] = {"model.safetensors": sha256(weights), "state.safetensors": sha256(state)}
    text = json.dumps(tree, indent=1) + "\n"
    atomic_write_text(tmp / "state.json", text)
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
    return {"step": step, "seconds": time.perf_counter() - start, "bytes": size,
            "sha256": {**tree["sha256"], "state.json": sha256(text.encode())}}


def _verified(step_dir: Path, recorded: dict[str, Any] | None) -> dict[str, bytes]:
    """Every file of a step folder, checked against the checksums in its state.json and,
    when run.json recorded this step, against run.json's."""
    files = {}
    for name in FILES:
        try:
            files[name] = (step_dir / name).read_bytes()
        except FileNotFoundError:
            raise DamagedCheckpoint(f"{step_dir / name}: missing") from None
    try:
        inner = json.loads(files["state.json"])["sha256"]
    except (ValueError, KeyError, TypeError) as err:
        raise DamagedCheckpoint(f"{step_dir / 'state.json'}: unreadable ({err})") from None
    mine = recorded.get("sha256", {}) if recorded and recorded.get("step") == int(
        step_dir.name.split("-")[1]) else {}
    for name, data in files.items():
        digest = sha256(data)
        if any(name in source and source[name] != digest for source in (inner, mine)):
            raise DamagedCheckpoint(f"{step_dir / name}: its checksum differs from the one "
                                    "recorded when it was written")
    return files


def load(where: Path, *, model: torch.nn.Module, strategy, template,
         recorded: dict[str, Any] | None = None) -> int:
    """Restore the newest checkpoint under `where` (model set up by the strategy first);
    the step it was taken after, 0 when there is none and none was `recorded` (run.json's
    record of the last one written). Every file is verified before anything is loaded."""
    step_dir = latest(where)
    if step_dir is None:
        if recorded and recorded.get("step"):
            step = recorded["step"]
            raise DamagedCheckpoint(f"{Path(where) / f'step-{step}'}: missing")
        return 0
    files = _verified(step_dir, recorded)
    device = next(model.parameters()).device
    tensors = load_tensors(files["state.safetensors"])
    tree = json.loads(files["state.json"])
    # the strategy's state first: one that grows the model per step (CODA-Prompt) gives it
    # the checkpoint's shape, then the weights fill it
    strategy.load_state_dict(_join(tree["strategy"], tensors, device), model)
    weights = load_tensors(files["model.safetensors"])
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
