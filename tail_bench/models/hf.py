"""Hugging Face towers and backbones read from local directories (nothing is downloaded).

Prompt insertion per tower:
- `HFTextTower` (BERT, RoBERTa, MiniLM, CLAP's text tower) and `ASTAudioTower`: prompt tokens
  go in after the embedding layer, so tokens keep their position embeddings and prompts
  carry none; the attention mask covers them and padding stays masked.
- `ClapAudioTower` (HTS-AT, window attention): prompts become prefix keys/values of every
  window attention of the last stage (whose width is the tower's output width): each window
  also attends to the prompts, projected by that layer's own frozen key/value weights.
Attention runs through `F.scaled_dot_product_attention` in every tower (`set_attention`
switches back to the explicit softmax, the reference it is tested against).
Audio towers run the torch front-end of their feature extractor (`frontends.frontend_for`)
on the wave's device. Weights load through `from_pretrained(local_files_only=True)`
(safetensors, or torch.load with weights_only as transformers does).
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers.masking_utils import create_bidirectional_mask

from tail_bench.errors import BackboneError
from tail_bench.models.builder import directory_kind
from tail_bench.models.dual import DualEncoder
from tail_bench.models.encoder import Prompt, post_slots, put_at
from tail_bench.models.frontends import FrontEnd, expect_features, frontend_for
from tail_bench.runtime import to_device


def _shallow(*prompts: Prompt) -> None:
    if any(isinstance(p, list) for p in prompts):
        raise ValueError("deep prompts are not supported on Hugging Face towers")


class HFTextTower(nn.Module):
    depth = 0  # deep prompts are implemented for the embedded towers only

    def __init__(self, model: nn.Module, tokenizer, max_length: int = 64,
                 pool: str = "cls", normalize: Callable[[str], str] | None = None) -> None:
        """pool: "cls" (the first token's last hidden state) or "pooler" (the model's own
        pooler on it, as CLAP's text features use). normalize: applied to each caption
        before tokenizing (the text cleaning a checkpoint was trained with)."""
        super().__init__()
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length
        self.width, self.pool, self.normalize = model.config.hidden_size, pool, normalize
        set_attention(self, "sdpa")

    @classmethod
    def from_pretrained(cls, path: Path, max_length: int = 64) -> HFTextTower:
        from transformers import AutoModel, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").exists():
            raise BackboneError(f"{path}: expected a Hugging Face model directory with "
                                "config.json, tokenizer files and weights")
        return cls(_load(AutoModel, path, "weights"), _load(AutoTokenizer, path, "tokenizer"),
                   max_length)

    def tokenize(self, texts: list[str], device: torch.device | str) -> dict[str, Tensor]:
        if self.normalize is not None:
            texts = [self.normalize(t) for t in texts]
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"input_ids": to_device(enc["input_ids"], device),
                "attention_mask": to_device(enc["attention_mask"], device)}

    def forward(self, tokens: dict[str, Tensor], *, prefix: Prompt = None,
                post: Prompt = None) -> Tensor:
        """Prefix prompts go right after [CLS], after the embedding layer (no position);
        post prompts go right after each caption's last real token ([SEP]), before the
        padding, as input embeddings, so they take the positions that continue the
        caption's (and the embedding layer's token type and LayerNorm, as a word would)."""
        _shallow(prefix, post)
        ids, mask = tokens["input_ids"], tokens["attention_mask"]
        emb = self.model.embeddings
        if post is None:
            h = emb(input_ids=ids)
        else:
            b, n = ids.shape
            token_at, post_at = post_slots(mask.sum(1), n, post.shape[1])
            words = emb.word_embeddings(ids)
            words = put_at(put_at(words.new_zeros(b, n + post.shape[1], words.shape[-1]),
                              token_at, words), post_at, post)
            mask = torch.ones(b, words.shape[1], dtype=mask.dtype, device=mask.device).scatter(
                1, token_at, mask)
            h = emb(inputs_embeds=words)
        parts, masks = [h[:, :1]], [mask[:, :1]]
        if prefix is not None:
            parts.append(prefix.to(h.dtype))
            masks.append(torch.ones(prefix.shape[:2], dtype=mask.dtype, device=mask.device))
        hidden = torch.cat([*parts, h[:, 1:]], 1)
        full = torch.cat([*masks, mask[:, 1:]], 1)
        if self.model.config._attn_implementation == "sdpa":
            # a boolean mask as transformers builds it for SDPA, without the host sync of
            # its check whether the mask can be left out (fused kernels take it either way)
            attn = full.bool()[:, None, None, :]
        else:
            attn = create_bidirectional_mask(config=self.model.config, inputs_embeds=hidden,
                                             attention_mask=full)
        last = self.model.encoder(hidden, attention_mask=attn).last_hidden_state
        return self.model.pooler(last) if self.pool == "pooler" else last[:, 0]


class ASTAudioTower(nn.Module):
    """Audio Spectrogram Transformer: prompts after the [CLS] and distillation tokens."""

    depth = 0

    def __init__(self, model: nn.Module, frontend: FrontEnd) -> None:
        super().__init__()
        self.model, self.frontend = model, frontend
        self.width = model.config.hidden_size

    def features(self, wave: Tensor) -> Tensor:
        """(B, S) -> fbank `input_values` (B, frames, n_mels)."""
        return self.frontend(wave)

    def forward(self, features: Tensor, *, prefix: Prompt = None) -> Tensor:
        _shallow(prefix)
        expect_features(features, 3)
        h = self.model.embeddings(features)
        if prefix is not None:
            h = torch.cat([h[:, :2], prefix.to(h.dtype), h[:, 2:]], 1)
        for layer in self.model.layers:
            h = layer(h, None)
        h = self.model.layernorm(h)
        return (h[:, 0] + h[:, 1]) / 2


def _window_attention(self, hidden_states, attention_mask=None, output_attentions=False):
    """ClapAudioSelfAttention.forward with `self.prefix` (B, P, C) as extra keys/values
    that every window of a sample attends to (projected by this layer's own key/value
    weights, with no position bias), through `F.scaled_dot_product_attention` (fused
    kernels) while `self.sdpa`. Windows are grouped per sample, (B, windows x heads, n, d),
    so the relative position bias, the shifted-window mask and the prefix are one
    (windows x heads) bias broadcast over the batch, never a per-window copy. Without
    `self.sdpa` (or when attention weights are asked for) it is the explicit softmax:
    HF's own forward without a prefix, the same softmax over prefix + window with one."""
    prefix = self.prefix
    if prefix is None and (not self.sdpa or output_attentions):
        return self._plain_forward(hidden_states, attention_mask, output_attentions)
    bw, n, _ = hidden_states.shape
    heads, d = self.num_attention_heads, self.attention_head_size
    windows = (bw // prefix.shape[0] if prefix is not None  # window batches are sample-major
               else 1 if attention_mask is None else attention_mask.shape[0])
    b = bw // windows

    def grouped(x: Tensor, length: int) -> Tensor:  # -> (B, windows x heads, length, d)
        return x.reshape(b, windows, length, heads, d).permute(0, 1, 3, 2, 4).reshape(
            b, windows * heads, length, d)

    q, k, v = (grouped(f(hidden_states), n) for f in (self.query, self.key, self.value))
    bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
    bias = bias.view(n, n, heads).permute(2, 0, 1).unsqueeze(0)  # (1, heads, n, n)
    if attention_mask is not None:  # (windows, n, n): the shifted windows' mask
        bias = bias + attention_mask.unsqueeze(1)
    bias = bias.expand(windows, heads, n, n).reshape(windows * heads, n, n)
    if prefix is not None:
        p = prefix.shape[1]
        kp, vp = (grouped(f(prefix).unsqueeze(1).expand(b, windows, p, -1), p)
                  for f in (self.key, self.value))
        k, v = torch.cat([kp, k], 2), torch.cat([vp, v], 2)
        bias = torch.cat([bias.new_zeros(windows * heads, n, p), bias], -1)
    if self.sdpa and not output_attentions:
        probs = None
        context = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.unsqueeze(0).to(q.dtype),
            dropout_p=self.dropout.p if self.training else 0.0)
    else:
        scores = q @ k.transpose(-1, -2) / math.sqrt(d) + bias
        probs = self.dropout(nn.functional.softmax(scores, dim=-1))
        context = probs @ v
    context = context.view(b, windows, heads, n, d).permute(0, 1, 3, 2, 4).reshape(bw, n, -1)
    if output_attentions:
        return context, probs.reshape(bw, heads, n, -1)
    return (context,)


class ClapAudioTower(nn.Module):
    """HTS-AT from a CLAP checkpoint, prompts as prefix keys/values of its last stage.

    A fused CLAP (`enable_fusion`) takes what `ClapFusionMel` makes: one channel for clips
    that fit the window (its global branch alone, as HF runs a clip it does not mark
    longer), four (whole clip shrunk, three crops) for longer ones, which go through the
    fusion block. HF's extractor also marks one random clip of a batch without longer ones
    "longer"; here a batch never is (CHOICE: a clip's embedding must not depend on its
    batch; laion_clap itself does the same outside training)."""

    depth = 0

    def __init__(self, model: nn.Module, frontend: FrontEnd) -> None:
        super().__init__()
        self.model, self.frontend = model, frontend
        encoder = model.audio_encoder
        self.width = encoder.num_features
        for layer in encoder.layers:  # installed once, in every window attention
            for block in layer.blocks:
                a = block.attention.self
                a.prefix, a.sdpa, a._plain_forward = None, True, a.forward
                a.forward = types.MethodType(_window_attention, a)
        self._attn = [b.attention.self for b in encoder.layers[-1].blocks]  # prompted

    def features(self, wave: Tensor) -> Tensor:
        """(B, S) -> log-mel `input_features` (B, 1, frames, n_mels)."""
        return self.frontend(wave)

    def forward(self, features: Tensor, *, prefix: Prompt = None) -> Tensor:
        _shallow(prefix)
        expect_features(features, 4)
        is_longer = None
        if self.model.config.enable_fusion:
            is_longer = torch.full((features.shape[0], 1), features.shape[1] == 4,
                                   device=features.device)
        for a in self._attn:
            a.prefix = prefix
        try:
            return self.model(input_features=features, is_longer=is_longer).pooler_output
        finally:
            for a in self._attn:
                a.prefix = None


ATTENTION = ("sdpa", "eager")


def set_attention(model: nn.Module, kind: str) -> None:
    """How every Hugging Face tower in `model` computes attention: "sdpa" (the default:
    `F.scaled_dot_product_attention`, flash or memory-efficient kernels where the device
    has them) or "eager" (explicit matmul and softmax: the reference, equal within float
    tolerance, tested). Text towers and AST take it as `attn_implementation`. CLAP's text
    model does not declare SDPA support in transformers: its attention calls the same
    interface as RoBERTa's but lacks RoBERTa's `is_causal = False`, and that interface
    takes a missing one for causal when no padding mask is needed; it is set here."""
    if kind not in ATTENTION:
        raise ValueError(f"attention {kind!r}: expected one of {ATTENTION}")
    for m in model.modules():
        if isinstance(m, ClapAudioTower):
            for layer in m.model.audio_encoder.layers:
                for block in layer.blocks:
                    block.attention.self.sdpa = kind == "sdpa"
        elif isinstance(m, HFTextTower | ASTAudioTower):
            m.model.config._attn_implementation = kind
            for a in m.model.modules():
                if hasattr(a, "attention_head_size") and not hasattr(a, "is_causal"):
                    a.is_causal = False


def _load(loader, path: Path, what: str):
    """`loader.from_pretrained(path)`, offline; a directory without weights (or tokenizer, or
    preprocessor config) is named instead of surfacing as a raw OSError."""
    try:
        return loader.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise BackboneError(f"{path}: cannot load its {what} ({str(err).splitlines()[0]}); "
                            "expected a directory saved with save_pretrained (config.json, "
                            "model.safetensors, tokenizer and preprocessor_config.json)") from err


def clap_backbone(clap: nn.Module, extractor, tokenizer, *, name: str,
                  text_max_length: int = 64) -> DualEncoder:
    """A `ClapModel` with its feature extractor and tokenizer as a DualEncoder: the one way to
    build one (checkpoint directories and files, benchmarks/throughput.py). `name` goes in
    meta. A fused model needs the fusion front-end and an unfused one the other."""
    fused = bool(clap.config.audio_config.enable_fusion)
    if fused != (extractor.truncation == "fusion"):
        raise BackboneError(
            f"{name}: audio_config.enable_fusion={str(fused).lower()} but the feature "
            f"extractor has truncation={extractor.truncation!r}; expected "
            f"{'fusion' if fused else 'rand_trunc'} (preprocessor_config.json)")
    return DualEncoder(audio=ClapAudioTower(clap.audio_model, frontend_for(extractor)),
                       text=HFTextTower(clap.text_model, tokenizer, pool="pooler",
                                        max_length=text_max_length),
                       audio_head=clap.audio_projection, text_head=clap.text_projection,
                       logit_scale=clap.logit_scale_a.item(),
                       meta={"backbone": name, "sample_rate": extractor.sampling_rate,
                             "clip_seconds": float(extractor.nb_max_samples
                                                   / extractor.sampling_rate)})


def load_local_backbone(path: Path, *, device: torch.device) -> DualEncoder:
    """A CLAP directory (HTS-AT + RoBERTa, with its projections), or a folder holding
    `audio/` (an Audio Spectrogram Transformer) and `text/` (BERT-family) with new heads."""
    from transformers import AutoFeatureExtractor, AutoModel, AutoTokenizer

    path = Path(path)
    if directory_kind(path) == "clap":
        from transformers import ClapModel

        clap = _load(ClapModel, path, "weights")
        extractor = _load(AutoFeatureExtractor, path, "feature extractor")
        tokenizer = _load(AutoTokenizer, path, "tokenizer")
        model = clap_backbone(clap, extractor, tokenizer, name=str(path))
    else:
        audio = _load(AutoModel, path / "audio", "weights")
        extractor = _load(AutoFeatureExtractor, path / "audio", "feature extractor")
        seconds = extractor.max_length * 0.01  # fbank frames of 10 ms
        model = DualEncoder(audio=ASTAudioTower(audio, frontend_for(extractor)),
                            text=HFTextTower.from_pretrained(path / "text"),
                            meta={"backbone": str(path), "sample_rate": extractor.sampling_rate,
                                  "clip_seconds": seconds})
    return model.to(device).eval()
