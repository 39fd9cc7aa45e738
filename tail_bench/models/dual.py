"""The dual encoder: towers -> 2-layer heads -> L2-normalised embeddings, and a logit scale.

A strategy that prompts the towers attaches a `prompter` module (see `Prompter`); the
towers themselves stay untouched, so one backbone serves every strategy.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Prompter(Protocol):
    """What a prompting strategy attaches as `model.prompter`.

    `audio` gets the audio tower's input features (`model.audio.features(wave)`, computed
    once per batch by `encode_audio`), so a query through the frozen tower
    (`model.audio(features)`) costs no second front-end run.
    """

    def audio(self, model: DualEncoder, features: Tensor) -> Tensor | list[Tensor] | None: ...

    def text(self, model: DualEncoder, tokens: dict[str, Tensor]
             ) -> tuple[Tensor | list[Tensor] | None, Tensor | list[Tensor] | None]: ...


class _Kept:
    """The last audio tower output, for Avalanche plugins that read `model.features`
    (FeatureDistillationPlugin). A copy of the model starts empty: a deep copy of a tensor
    inside an autograd graph fails, and a teacher must not hold the student's batch."""

    def __init__(self) -> None:
        self.value: Tensor | None = None

    def __deepcopy__(self, memo: dict) -> _Kept:
        return _Kept()


def head(width: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, out))


class DualEncoder(nn.Module):
    def __init__(self, *, audio: nn.Module, text: nn.Module, embed_dim: int = 512,
                 head_hidden: int = 1024, audio_head: nn.Module | None = None,
                 text_head: nn.Module | None = None, logit_scale: float = math.log(1 / 0.07),
                 meta: dict | None = None) -> None:
        """New 2-layer heads unless pretrained ones are given (e.g. CLAP's projections)."""
        super().__init__()
        self.audio, self.text = audio, text
        self.audio_head = audio_head or head(audio.width, head_hidden, embed_dim)
        self.text_head = text_head or head(text.width, head_hidden, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)))
        self.prompter: nn.Module | None = None
        self.meta = dict(meta or {})  # name, sample rate, clip length: what loaders need
        self.keep_features = False  # True: keep `features` (only Avalanche plugins read it)
        self._kept = _Kept()

    @property
    def features(self) -> Tensor | None:
        """The audio tower's output of the last audio pass (with `keep_features`)."""
        return self._kept.value

    @features.setter
    def features(self, value: Tensor | None) -> None:
        self._kept.value = value

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Every parameter but a strategy's prompter: what Finetune trains."""
        skip = set() if self.prompter is None else {id(p) for p in self.prompter.parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def inputs(self, wave: Tensor, texts: list[str]) -> tuple[Tensor, dict[str, Tensor]]:
        """The towers' inputs: audio features (the front-end, run once per batch) and tokens.
        Every model built from the same backbone shares them (a frozen teacher included)."""
        return self.audio.features(wave), self.text.tokenize(texts, self.device)

    def audio_output(self, features: Tensor) -> Tensor:
        """The audio head's output before L2 normalisation."""
        prefix = None if self.prompter is None else self.prompter.audio(self, features)
        pooled = self.audio(features, prefix=prefix)
        if self.keep_features:  # fp32, like a teacher's pass outside autocast
            self.features = pooled.float()
        return self.audio_head(pooled)

    def embed_audio(self, features: Tensor) -> Tensor:
        return F.normalize(self.audio_output(features), dim=-1)

    def embed_text(self, tokens: dict[str, Tensor]) -> Tensor:
        prefix, post = (None, None) if self.prompter is None else self.prompter.text(self, tokens)
        return F.normalize(self.text_head(self.text(tokens, prefix=prefix, post=post)), dim=-1)

    def embed(self, features: Tensor, tokens: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return self.embed_audio(features), self.embed_text(tokens)

    def encode_audio(self, wave: Tensor) -> Tensor:
        return self.embed_audio(self.audio.features(wave))

    def encode_text(self, texts: list[str]) -> Tensor:
        return self.embed_text(self.text.tokenize(texts, self.device))

    def forward(self, wave: Tensor, texts: list[str] | None = None
                ) -> Tensor | tuple[Tensor, Tensor]:
        """(audio, text) embeddings; without texts, `model(x)` as Avalanche's plugins call
        it: the audio head's output before normalisation (MAS's output norm and LwF's
        softmax need it unnormalised; the template's criterion normalises it)."""
        if texts is None:
            return self.audio_output(self.audio.features(wave))
        return self.embed(*self.inputs(wave, texts))
