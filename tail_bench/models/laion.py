"""LAION-CLAP's own checkpoint files (`630k-audioset-best.pt`, `630k-audioset-fusion-best.pt`,
...), read directly as a Hugging Face `ClapModel`.

A file holds `state_dict` (keys maybe prefixed `module.`) of laion_clap's `CLAP`:
`audio_branch.*` (HTS-AT, its torchlibrosa front-end and tagging head included),
`text_branch.*` (RoBERTa with pooler), `audio_projection.{0,2}` and `text_projection.{0,2}`
(Linear-ReLU-Linear), `audio_transform.*` and `text_transform.*` (MLPs that only its training
loss uses), `logit_scale_a`, `logit_scale_t`. The key mapping is the one `transformers`
uses to convert these files (its convert_clap_original_pytorch_to_hf.py), written here
both ways: `audio_branch` -> `audio_model.audio_encoder` (HTS-AT renames in `htsat_keys`),
`text_branch` -> `text_model`, projection index 0 -> `linear1` and 2 -> `linear2`; the
training-loss MLPs and HTS-AT's front-end, tagging head and window masks are dropped.

The front-end is HF's `ClapFeatureExtractor` with laion_clap's audio settings (48 kHz,
FFT 1024, hop 480, 64 mels from 50 Hz to 14 kHz, 10 s): truncation `fusion` for a file with
the fusion block (`patch_embed.mel_conv2d`), else `rand_trunc`; padding `repeatpad`. The
RoBERTa config and tokenizer come from a local directory (`--text-model`); captions are
cut at 77 tokens as laion_clap tokenizes them.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from tail_bench.errors import BackboneError
from tail_bench.models import htsat_keys

AUDIO, TEXT = "audio_branch.", "text_branch."
HF_AUDIO, HF_TEXT = "audio_model.audio_encoder.", "text_model."
PROJECTIONS = ("audio_projection.", "text_projection.")
DROPPED = {"audio_transform.": "training-loss MLP", "text_transform.": "training-loss MLP"}
SAMPLE_RATE, CLIP_SECONDS = 48_000, 10.0  # every laion_clap audio config
TEXT_MAX_TOKENS = 77
_INDEX = {"0": "linear1", "2": "linear2"}


def is_laion(state: dict[str, Any]) -> bool:
    return any(k.startswith(AUDIO) for k in state) and any(k.startswith(TEXT) for k in state)


def dropped_reason(key: str) -> str | None:
    """Why a LAION key has no counterpart in HF's ClapModel, or None if it has one."""
    if key.startswith(AUDIO):
        return htsat_keys.dropped_reason(key[len(AUDIO):])
    return next((why for start, why in DROPPED.items() if key.startswith(start)), None)


def to_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """LAION-CLAP keys (without `module.`) -> `ClapModel` keys; dropped kinds are left out
    and unknown keys pass through, so loading names them."""
    out = htsat_keys.to_hf({k[len(AUDIO):]: v for k, v in state.items() if k.startswith(AUDIO)})
    out = {HF_AUDIO + k: v for k, v in out.items()}
    for key, value in state.items():
        if key.startswith(AUDIO) or dropped_reason(key):
            continue
        if key.startswith(TEXT):
            key = HF_TEXT + key[len(TEXT):]
        elif key.startswith(PROJECTIONS):
            side, index, rest = key.split(".", 2)
            key = f"{side}.{_INDEX.get(index, index)}.{rest}"
        out[key] = value
    return out


def from_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """`ClapModel` keys -> LAION-CLAP keys: the inverse of `to_hf` on every key HF has."""
    back = {v: k for k, v in _INDEX.items()}
    out = htsat_keys.from_hf({k[len(HF_AUDIO):]: v for k, v in state.items()
                              if k.startswith(HF_AUDIO)})
    out = {AUDIO + k: v for k, v in out.items()}
    for key, value in state.items():
        if key.startswith(HF_AUDIO):
            continue
        if key.startswith(HF_TEXT):
            key = TEXT + key[len(HF_TEXT):]
        elif key.startswith(PROJECTIONS):
            side, index, rest = key.split(".", 2)
            key = f"{side}.{back.get(index, index)}.{rest}"
        out[key] = value
    return out


def audio_settings(state: dict[str, Tensor]) -> dict[str, Any]:
    """`ClapFeatureExtractor` arguments: laion_clap's audio settings, fused or not."""
    fused = AUDIO + "patch_embed.mel_conv2d.weight" in state
    return {"feature_size": state[AUDIO + "bn0.weight"].shape[0], "sampling_rate": SAMPLE_RATE,
            "hop_length": 480, "max_length_s": int(CLIP_SECONDS), "fft_window_size": 1024,
            "frequency_min": 50, "frequency_max": 14_000, "padding": "repeatpad",
            "truncation": "fusion" if fused else "rand_trunc"}


def laion_clap(state: dict[str, Tensor], text_dir, *, name: str):
    """(`ClapModel`, feature extractor, tokenizer) of a LAION-CLAP state (without
    `module.`) and the local RoBERTa directory for its text config and tokenizer."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig

    from tail_bench.models.checkpoints import load_exactly, text_directory

    audio = {k[len(AUDIO):]: v for k, v in state.items() if k.startswith(AUDIO)}
    audio_config = htsat_keys.audio_config(audio, where=name)
    if audio["patch_embed.proj.weight"].shape[1] != 1:
        raise BackboneError(f"{name}: HTS-AT patch embedding with "
                            f"{audio['patch_embed.proj.weight'].shape[1]} input channels (a "
                            "channel-map fusion); only unfused and aff_2d-fused CLAP load")
    types = state.get(TEXT + "embeddings.token_type_embeddings.weight")
    if types is None or types.shape[0] != 1:
        raise BackboneError(f"{name}: its text branch is not RoBERTa (token types "
                            f"{None if types is None else types.shape[0]}); only laion_clap's "
                            "RoBERTa text branch is supported")
    text_config, tokenizer = text_directory(text_dir, "roberta", where=name)
    projection = state["text_projection.2.weight"].shape[0]
    fields = ClapTextConfig().to_dict()
    text = {k: v for k, v in text_config.to_dict().items() if k in fields}
    config = ClapConfig(audio_config=audio_config, projection_dim=projection,
                        text_config={**text, "projection_dim": projection})
    clap = ClapModel(config)
    load_exactly(clap, to_hf(state), where=name)
    return clap.eval(), ClapFeatureExtractor(**audio_settings(state)), tokenizer
