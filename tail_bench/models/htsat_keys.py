"""HTS-AT's weights between its original names and Hugging Face's `ClapAudioEncoder`.

WavCaps' retrieval models and LAION-CLAP both embed Ke Chen's HTS-AT (a Swin Transformer
over a log-mel image); `transformers` reimplements it as `ClapAudioEncoder`, so one mapping
serves both file formats. Renames per window-attention block (original -> HF): `norm1` ->
`layernorm_before`, `attn.qkv` -> `attention.self.{query,key,value}` (split in that order),
`attn.proj` -> `attention.output.dense`, `attn.relative_position_*` ->
`attention.self.relative_position_*`, `norm2` -> `layernorm_after`, `mlp.fc1` ->
`intermediate.dense`, `mlp.fc2` -> `output.dense`; and `bn0` -> `batch_norm`. Everything
else (patch embedding, fusion block, patch merging, final norm) keeps its name.

Original keys with no HF counterpart are dropped, by kind (`DROPPED`): the front-end's
fixed STFT and mel weights (the suite computes the front-end itself, from the checkpoint's
settings), the AudioSet tagging head (not part of the embedding), and each shifted block's
`attn_mask` buffer (HF derives it from the window layout).
"""

from __future__ import annotations

import math
import re

from torch import Tensor

from tail_bench.errors import BackboneError

SPEC_SIZE = 256  # the HTS-AT input image side in both WavCaps' and LAION's code

DROPPED = {  # original-key prefix or block suffix -> why it has no HF counterpart
    "spectrogram_extractor.": "front-end (STFT weights)",
    "logmel_extractor.": "front-end (mel filterbank)",
    "audio_feats_extractor.": "front-end (STFT weights and mel filterbank)",
    "tscam_conv.": "AudioSet tagging head",
    "head.": "AudioSet tagging head",
    "attn_mask": "shifted-window mask buffer (recomputed)",
}
_BLOCK = re.compile(r"(layers\.\d+\.blocks\.\d+\.)(.+)")
_RENAMES = (  # within a block, original -> HF
    ("norm1.", "layernorm_before."),
    ("norm2.", "layernorm_after."),
    ("attn.proj.", "attention.output.dense."),
    ("attn.relative_position_bias_table", "attention.self.relative_position_bias_table"),
    ("attn.relative_position_index", "attention.self.relative_position_index"),
    ("mlp.fc1.", "intermediate.dense."),
    ("mlp.fc2.", "output.dense."),
)
_QKV = ("query", "key", "value")


def dropped_reason(key: str) -> str | None:
    """Why an original HTS-AT key has no HF counterpart, or None if it has one."""
    block = _BLOCK.fullmatch(key)
    rest = block.group(2) if block else key
    return next((why for start, why in DROPPED.items() if rest.startswith(start)), None)


def to_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Original HTS-AT keys (no prefix) -> `ClapAudioEncoder` keys. Dropped kinds are left
    out; keys this mapping does not know pass through unchanged, so loading names them."""
    out = {}
    for key, value in state.items():
        if dropped_reason(key):
            continue
        block = _BLOCK.fullmatch(key)
        if block is None:
            out["batch_norm." + key[4:] if key.startswith("bn0.") else key] = value
            continue
        head, rest = block.groups()
        if rest.startswith("attn.qkv."):
            for name, part in zip(_QKV, value.chunk(3, dim=0), strict=True):
                out[f"{head}attention.self.{name}.{rest[len('attn.qkv.'):]}"] = part
            continue
        for old, new in _RENAMES:
            if rest.startswith(old):
                rest = new + rest[len(old):]
                break
        out[head + rest] = value
    return out


def from_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """`ClapAudioEncoder` keys -> original HTS-AT keys: the inverse of `to_hf` on every
    key HF has (query, key and value are concatenated back into `qkv`)."""
    import torch

    out, qkv = {}, {}
    for key, value in state.items():
        block = _BLOCK.fullmatch(key)
        if block is None:
            out["bn0." + key[11:] if key.startswith("batch_norm.") else key] = value
            continue
        head, rest = block.groups()
        split = re.fullmatch(r"attention\.self\.(query|key|value)\.(weight|bias)", rest)
        if split:
            qkv.setdefault(f"{head}attn.qkv.{split.group(2)}", {})[split.group(1)] = value
            continue
        for old, new in _RENAMES:
            if rest.startswith(new):
                rest = old + rest[len(new):]
                break
        out[head + rest] = value
    for key, parts in qkv.items():
        out[key] = torch.cat([parts[name] for name in _QKV], 0)
    return out


def audio_config(state: dict[str, Tensor], *, where: str) -> dict:
    """`ClapAudioConfig` arguments for the HTS-AT whose original-named weights are `state`,
    read from their shapes: widths, depths, heads, window, mel bins, fusion. The input
    image side comes from a shifted block's mask when the file holds one, else it is
    `SPEC_SIZE`; the patch stride is taken equal to the patch size (4 in every HTS-AT)."""
    try:
        proj = state["patch_embed.proj.weight"]
        mels = state["bn0.weight"].shape[0]
    except KeyError as err:
        raise BackboneError(f"{where}: no HTS-AT key {err.args[0]}; expected the weights of an "
                            "HTS-AT audio encoder") from None
    blocks: dict[int, set[int]] = {}
    for key in state:
        if m := re.match(r"layers\.(\d+)\.blocks\.(\d+)\.", key):
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if not blocks or sorted(blocks) != list(range(len(blocks))):
        raise BackboneError(f"{where}: HTS-AT stages {sorted(blocks)}; expected layers.0, "
                            "layers.1, ... with blocks")
    embed, patch = proj.shape[0], proj.shape[-1]
    table = state["layers.0.blocks.0.attn.relative_position_bias_table"]
    window = (math.isqrt(table.shape[0]) + 1) // 2
    spec = SPEC_SIZE
    if (mask := state.get("layers.0.blocks.1.attn_mask")) is not None:
        spec = math.isqrt(mask.shape[0]) * window * patch
    depths = [len(blocks[i]) for i in sorted(blocks)]
    heads = [state[f"layers.{i}.blocks.0.attn.relative_position_bias_table"].shape[1]
             for i in sorted(blocks)]
    fused = "patch_embed.mel_conv2d.weight" in state
    return {"spec_size": spec, "num_mel_bins": mels, "window_size": window,
            "patch_size": patch, "patch_stride": [patch, patch],
            "patch_embeds_hidden_size": embed, "depths": depths,
            "num_attention_heads": heads, "hidden_size": embed * 2 ** (len(depths) - 1),
            "mlp_ratio": state["layers.0.blocks.0.mlp.fc1.weight"].shape[0] / embed,
            "qkv_bias": "layers.0.blocks.0.attn.qkv.bias" in state,
            "enable_patch_layer_norm": "patch_embed.norm.weight" in state,
            "enable_fusion": fused, "fusion_type": "aff_2d" if fused else None,
            # as both codes train it: stochastic depth 0.1, no dropout
            "drop_path_rate": 0.1, "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0}
