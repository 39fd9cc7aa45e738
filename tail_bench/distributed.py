"""Data-parallel runs: one process per device, started by torchrun (or `run --nproc N`).

Every process trains on its share of each global batch (the batch size stays the run's),
computes the losses that compare rows of a batch on the whole batch (`gather`), and the
gradients are averaged over the processes by DistributedDataParallel (`data_parallel`),
bucket by bucket while backward runs, so communication overlaps computation and a step
equals a one-process step up to the order of float sums. DDP's reducer needs every
parameter a loss uses to be used inside the wrapped forward: the template wraps the whole
loss of a batch (`training.template.StepLoss`: embeddings, criterion, every strategy's
terms), and allows parameters that get no gradient in a batch. Evaluation shards the clips and
captions to encode and gathers the embeddings; every process then holds the same scores,
and only rank 0 writes files. gloo on the CPU, nccl on CUDA. With one process every
helper here is the identity.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def launched() -> int:
    """The world size torchrun started this process in (1: not under torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    """This process's rank (torchrun's RANK also before and after the process group)."""
    return dist.get_rank() if active() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def start(device: torch.device) -> torch.device:
    """Join the process group torchrun prepared; the device this process uses (cuda:N
    by local rank on CUDA). CPU processes share the cores instead of each taking all."""
    if launched() == 1 or active():
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", launched()))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_node))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def stop() -> None:
    if active():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """In place: the sum over processes."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def _all_rows(t: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Every process's rows of `t` (any counts), in rank order, and the counts."""
    n = torch.tensor([len(t)], device=t.device)
    counts = [torch.zeros_like(n) for _ in range(size())]
    dist.all_gather(counts, n)
    rows = [int(c.item()) for c in counts]
    padded = torch.zeros((max(rows), *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: len(t)] = t
    parts = [torch.empty_like(padded) for _ in range(size())]
    dist.all_gather(parts, padded)
    return torch.cat([p[:c] for p, c in zip(parts, rows, strict=True)]), rows


class _Gather(torch.autograd.Function):
    """all_gather whose backward sums the gradients of every process and keeps this
    process's rows (an all-reduce, which every backend has)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        rows, counts = _all_rows(t.detach())
        ctx.start, ctx.rows = sum(counts[: rank()]), len(t)
        return rows

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start:ctx.start + ctx.rows]


def gather(t: torch.Tensor) -> torch.Tensor:
    """Every process's rows (any counts, e.g. a replay strategy's extra rows), in rank
    order, with gradient: the backward sums what every process's (identical) loss sends
    to this process's rows."""
    return _Gather.apply(t) if active() else t


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Every process's rows (any counts), in rank order, without gradient."""
    return _all_rows(t.detach())[0] if active() else t


def shard(n: int) -> range:
    """This process's contiguous share of n items (contiguous keeps the gathered order)."""
    w, r = size(), rank()
    return range(n * r // w, n * (r + 1) // w)


def check_in_sync(module: torch.nn.Module) -> None:
    """Every process holds the same weights (so teachers and anchors copied from them are
    the same): a cheap checksum compared over processes; a mismatch is a bug."""
    if not active():
        return
    with torch.no_grad():
        total = torch.stack([p.double().sum() for p in module.parameters()]).sum().reshape(1)
    low, high = total.clone(), total.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if not torch.equal(low, high):
        raise RuntimeError(f"processes hold different weights (checksums {low.item()} to "
                           f"{high.item()}): data-parallel training went out of step")


def data_parallel(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`module` under DistributedDataParallel (the identity with one process). Unused
    parameters are allowed (a trainable parameter may get no gradient in a batch: it keeps
    none, as with one process); buffers are not broadcast (each process keeps its own
    counts, such as L2P's, summed where they are read)."""
    if not active():
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None,
                                   find_unused_parameters=True, broadcast_buffers=False)


def barrier() -> None:
    if active():
        dist.barrier()


def same(obj):
    """Rank 0's value of a picklable object, on every process (e.g. a default --out
    named by the clock)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
