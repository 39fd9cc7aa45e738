"""Device and precision helpers shared by training, evaluation and benchmarks.

Precision is autocast on the model's device: the matmuls run in bf16 or fp16, while losses,
metrics and audio front-ends stay in fp32 (they cast or disable autocast themselves).
CHOICE, the default (`auto`): fp32 on the CPU (CPU autocast is slower than fp32 for these
models), bf16 on CUDA (tensor-core speed with fp32's exponent range, so no loss scaling and
no overflow in attention logits; fp16 is offered with a GradScaler).
"""

from __future__ import annotations

import contextlib

import torch

from tail_bench.errors import ConfigError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PCM_SCALE = 32768.0  # 16-bit PCM k -> k / 32768, soundfile's scale for 16-bit files


def pcm_to_float(wave: torch.Tensor) -> torch.Tensor:
    """Waves travel as 16-bit PCM when they come from the decoded-audio cache (half the
    bytes of float32); they become float where they are used, on their device."""
    return wave.float() / PCM_SCALE if wave.dtype == torch.int16 else wave


def resolve_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if name not in PRECISIONS:
        raise ConfigError(f"--precision {name}: expected auto, fp32, bf16 or fp16")
    if name == "fp16" and device.type != "cuda":
        raise ConfigError("--precision fp16: needs a CUDA device (use fp32 or bf16 on the CPU)")
    return name


def resolve_compile(name: str) -> bool:
    """CHOICE, the default (`auto`): off. Compiling costs a warm-up per method and shape
    and has not yet been measured to win on a GPU for these models; `on` compiles."""
    return name == "on"


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    dtype = PRECISIONS[precision]
    device = torch.device(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def to_device(x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Host -> device without a stream sync: pinned memory, non-blocking copy."""
    device = torch.device(device)
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)
