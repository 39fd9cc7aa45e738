"""The embedded backbone's towers: log-mel audio transformer and word-level text transformer.

A tower maps raw input to one pooled vector of `width`, and takes prompt tokens of that
width; any tower with this interface (HF towers included) plugs into `DualEncoder`.
"""

from __future__ import annotations

import re

import torch
import torchaudio
from torch import Tensor, nn

from tail_bench.models.configs import BackboneConfig
from tail_bench.models.encoder import Prompt, PromptableEncoder

SPECIALS = ("[PAD]", "[UNK]")
_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


class LogMel(nn.Module):
    """Waveform (B, S) -> per-clip standardised log-mel (B, frames, n_mels)."""

    def __init__(self, sample_rate: int, n_mels: int) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=400, hop_length=sample_rate // 100, n_mels=n_mels)

    def forward(self, wave: Tensor) -> Tensor:
        x = torch.log(self.mel(wave) + 1e-5).transpose(1, 2)
        return (x - x.mean((1, 2), keepdim=True)) / (x.std((1, 2), keepdim=True) + 1e-5)


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

    def forward(self, wave: Tensor, *, prefix: Prompt = None) -> Tensor:
        x = self.frontend(wave)
        b, t, m = x.shape
        t = t // self.patch * self.patch
        x = x[:, :t].reshape(b, t // self.patch, self.patch * m)
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
        return {"ids": ids.to(device), "pad": (ids == 0).to(device)}


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
