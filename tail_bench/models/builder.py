"""One place that builds a backbone from a name (registry) or a local checkpoint path."""

from __future__ import annotations

from pathlib import Path

import torch

from tail_bench.models.configs import BACKBONES, get_config
from tail_bench.models.dual import DualEncoder


def build_backbone(spec: str, *, device: torch.device | str = "cpu", force_pretrain: bool = False,
                   progress: bool = True) -> DualEncoder:
    """`spec` is a registered name (see `tail-bench list`) or a local checkpoint directory."""
    device = torch.device(device)
    if spec in BACKBONES:
        from tail_bench.models.pretrain import load_or_pretrain

        return load_or_pretrain(get_config(spec), device=device, force=force_pretrain,
                                progress=progress)
    if Path(spec).exists():
        from tail_bench.models.hf import load_local_backbone

        return load_local_backbone(Path(spec), device=device)
    get_config(spec)  # raises the error that lists the known names
    raise AssertionError("unreachable")
