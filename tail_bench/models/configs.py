"""The registry of named backbone configs (one place, as in timm/open_clip)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from tail_bench.errors import ConfigError


@dataclass(frozen=True)
class BackboneConfig:
    name: str
    kind: str = "synth"  # synth: the suite's own towers, pretrained by the suite
    sample_rate: int = 16_000
    clip_seconds: float = 2.0
    n_mels: int = 64
    patch_frames: int = 8  # mel frames per audio token (10 ms hop)
    width: int = 128  # token width of both towers
    depth: int = 3
    heads: int = 4
    mlp_ratio: int = 2
    max_words: int = 40
    embed_dim: int = 128
    head_hidden: int = 256  # 2-layer projection heads
    pretrain_clips: int = 6000  # audio clips, three captions each
    pretrain_texts: int = 6000  # paraphrase pairs for the text-side stage
    pretrain_epochs: int = 8
    pretrain_lr: float = 1e-3
    pretrain_seed: int = 0

    def key(self) -> str:
        """Hash of every field: the pretrained-weights cache is keyed by it."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


BACKBONES: dict[str, BackboneConfig] = {
    c.name: c for c in [
        BackboneConfig(name="synth-small"),
        BackboneConfig(name="synth-tiny", n_mels=32, width=64, depth=2, embed_dim=64,
                       head_hidden=128, pretrain_clips=800, pretrain_texts=3000,
                       pretrain_epochs=8),
    ]
}


def get_config(name: str) -> BackboneConfig:
    if name not in BACKBONES:
        raise ConfigError(f"--backbone {name}: unknown backbone; expected one of "
                          f"{sorted(BACKBONES)} "
                          "or a path to a local checkpoint directory")
    return BACKBONES[name]
