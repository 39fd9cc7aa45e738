"""The embedded backbone's towers: log-mel audio transformer and word-level text transformer.

A tower maps its input to one pooled vector of `width`, and takes prompt tokens of that
width; any tower with this interface (HF towers included) plugs into `DualEncoder`. Audio
towers split in two: `features(wave)` (the front-end, no gradient) and `forward(features)`
(the network), so that a prompter's query and the prompted pass share one front-end run.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from tail_bench.models.configs import BackboneConfig
from tail_bench.models.encoder import Prompt, PromptableEncoder
from tail_bench.models.frontends import LogMel, expect_features
from tail_bench.runtime import to_device

SPECIALS = ("[PAD]", "[UNK]")
_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


class AudioTower(nn.Module):
    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.width, self.depth = cfg.width, cfg.depth
        self.frontend = LogMel(cfg.sample_rate, cfg.n_mels)
        self.patch = cfg.patch_frames
        frames = int(cfg.clip_seconds * 100) + 1
        self.embed = nn.Linear(cfg.n_mels * cfg.patch_frames, cfg.width)
        self.encoder = PromptableEncoder(width=cfg.width, depth=cfg.depth, heads=cfg.heads,
                                         mlp_ratio=cfg.mlp_ratio, max_len=frames // self.patch)

    def features(self, wave: Tensor) -> Tensor:
        """(B, S) -> log-mel (B, frames, n_mels)."""
        return self.frontend(wave)

    def forward(self, features: Tensor, *, prefix: Prompt = None) -> Tensor:
        expect_features(features, 3)
        b, t, m = features.shape
        t = t // self.patch * self.patch
        x = features[:, :t].reshape(b, t // self.patch, self.patch * m)
        return self.encoder(self.embed(x), prefix=prefix)


class WordTokenizer:
    """Lower-cased words and punctuation -> ids; unknown words map to [UNK]."""

    def __init__(self, vocab: list[str], max_words: int) -> None:
        self.vocab = [*SPECIALS, *[w for w in vocab if w not in SPECIALS]]
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.max_words = max_words

    def __call__(self, texts: list[str], device: torch.device | str = "cpu"
                 ) -> dict[str, Tensor]:
        rows = [[self.index.get(w, 1) for w in _TOKEN.findall(t.lower())][: self.max_words] or [1]
                for t in texts]
        ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        ids = to_device(ids, device)
        return {"ids": ids, "pad": ids == 0}


class TextTower(nn.Module):
    def __init__(self, cfg: BackboneConfig, vocab: list[str]) -> None:
        super().__init__()
        self.width, self.depth = cfg.width, cfg.depth
        self.tokenizer = WordTokenizer(vocab, cfg.max_words)
        self.embed = nn.Embedding(len(self.tokenizer.vocab), cfg.width, padding_idx=0)
        self.encoder = PromptableEncoder(width=cfg.width, depth=cfg.depth, heads=cfg.heads,
                                         mlp_ratio=cfg.mlp_ratio, max_len=cfg.max_words)

    def tokenize(self, texts: list[str], device: torch.device | str) -> dict[str, Tensor]:
        return self.tokenizer(texts, device)

    def forward(self, tokens: dict[str, Tensor], *, prefix: Prompt = None,
                post: Prompt = None) -> Tensor:
        return self.encoder(self.embed(tokens["ids"]), tokens["pad"], prefix=prefix, post=post)
