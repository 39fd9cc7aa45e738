"""Trainable parameters of every strategy, on the embedded backbone and on real-sized ones
counted from configs alone (meta device: no weights, no memory). Prints a table.

    python benchmarks/param_share.py
"""

from __future__ import annotations

import torch
from transformers import BertConfig, BertModel, ClapAudioConfig, ClapAudioModel

from tail_bench.errors import ConfigError
from tail_bench.models import wavcaps
from tail_bench.models.builder import build_backbone
from tail_bench.models.dual import DualEncoder
from tail_bench.models.hf import ClapAudioTower, HFTextTower
from tail_bench.reporting.tables import HEADS
from tail_bench.runner import by_module
from tail_bench.training.registry import available_strategies


def htsat_bert_base(embed_dim: int) -> DualEncoder:
    """HTS-AT (CLAP's audio tower defaults) + BERT-base, 2-layer heads with 1024 hidden."""
    with torch.device("meta"):
        audio = ClapAudioTower(ClapAudioModel(ClapAudioConfig()), frontend=None)
        text = HFTextTower(BertModel(BertConfig()), tokenizer=None)
        return DualEncoder(audio=audio, text=text, embed_dim=embed_dim, head_hidden=1024)


def wavcaps_htsat_bert() -> DualEncoder:
    """WavCaps' HTSAT-BERT (HTSAT-BERT-PT.pt and its fine-tuned files): its own heads."""
    with torch.device("meta"):
        return wavcaps.random_backbone(BertConfig(), tokenizer=None, name="wavcaps")


def count(model_factory) -> dict[str, tuple[int, int]]:
    """Per strategy: (trainable parameters, the same without heads and logit scale).
    Strategies that need an option on this backbone (ZSCL's reference set) are left out."""
    out = {}
    for name, cls in available_strategies().items():
        if not cls.trains:
            continue
        model = model_factory()
        strategy = cls()
        try:
            strategy.setup(model)
        except ConfigError:
            continue
        parts = by_module(model, strategy.trainable_parameters(model))
        total = sum(parts.values())
        out[name] = (total, total - sum(parts.get(k, 0) for k in HEADS))
    return out


def main(argv: list[str] | None = None) -> None:
    backbones = {
        "synth-small (embedded)": lambda: build_backbone("synth-small", progress=False),
        "WavCaps HTSAT-BERT, its heads 768-1024-1024": wavcaps_htsat_bert,
        "HTS-AT + BERT-base, heads 1024-1024": lambda: htsat_bert_base(1024),
        "HTS-AT + BERT-base, heads 1024-512": lambda: htsat_bert_base(512),
    }
    for label, factory in backbones.items():
        counts = count(factory)
        full = counts["finetune"][0]
        print(f"{label}: Finetune trains {full:,} (paper, PTAT: 2.42%)")
        for name, (n, bare) in counts.items():
            print(f"  {name:<10} {n:>13,}  {100 * n / full:6.2f}% of Finetune; without heads "
                  f"and logit scale {bare:>11,}  {100 * bare / full:6.2f}%")


if __name__ == "__main__":
    main()
