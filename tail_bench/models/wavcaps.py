"""WavCaps' audio-text retrieval models (`HTSAT-BERT-PT.pt`, `HTSAT-RoBERTa-*.pt`, ...) as a
DualEncoder, read from WavCaps' own checkpoint files.

What such a file holds (WavCaps' `retrieval/models/ase_model.py`): under `model`, the state
of `ASE`: `audio_encoder.audio_enc.*` (HTS-AT, with its torchlibrosa front-end weights),
`text_encoder.text_encoder.*` (a BERT or RoBERTa without pooler), `audio_proj.{0,2}` and
`text_proj.{0,2}` (Linear-ReLU-Linear to `embed_size`), `temp`; and under `config` the
training settings when the script saved them. The text model's config and tokenizer are
not in the file: they come from a local Hugging Face directory (`--text-model`).

As WavCaps computes them: the audio embedding is HTS-AT's mean over its last tokens, then
`audio_proj`; the text embedding is the first token's last hidden state ([CLS] / <s>), then
`text_proj`; both L2-normalised; the logit scale is 1 / `temp`. The front-end is
torchlibrosa's log-mel with the checkpoint's settings (a hann STFT, slaney mel, 10 log10 of
the power clamped at 1e-10), here `ClapLogMel`, run on the device; clips are zero-padded.
Captions get WavCaps' training normalisation (`wavcaps_caption`) and are cut at 30 tokens.
Checkpoints with a CNN audio encoder (CNN14, ResNet38) are refused.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import Tensor, nn

from tail_bench.errors import BackboneError
from tail_bench.models import htsat_keys

AUDIO = "audio_encoder.audio_enc."
TEXT = "text_encoder.text_encoder."
HEADS = ("audio_proj.", "text_proj.")
# WavCaps' retrieval/settings/*.yaml (audio_args), with the 10 s its HTS-AT can take:
# used where a checkpoint carries no config (CHOICE: the published settings)
DEFAULT_AUDIO = {"sr": 32000, "n_fft": 1024, "hop_length": 320, "f_min": 50, "f_max": 14000,
                 "n_mels": 64, "max_length": 10}
TEXT_MAX_TOKENS = 30  # WavCaps' TextEncoder truncates captions there
# the HTS-AT of WavCaps' AudioEncoder, as ClapAudioConfig arguments (what audio_config reads
# from its weights; tested)
HTSAT = {"spec_size": 256, "num_mel_bins": 64, "window_size": 8, "patch_size": 4,
         "patch_stride": [4, 4], "patch_embeds_hidden_size": 96, "depths": [2, 2, 6, 2],
         "num_attention_heads": [4, 8, 16, 32], "hidden_size": 768, "drop_path_rate": 0.1,
         "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
MEL_ATOL = 1e-6  # a stored filterbank against the one its settings give (float32 rounding)

_SPACE_BEFORE_PUNCT = re.compile(r'\s([,.!?;:"](?:\s|$))')
_PUNCT = re.compile(r'[(,.!?;:|*")]')


def wavcaps_caption(text: str) -> str:
    """A caption as WavCaps trained on it (its `text_preprocess`): lower case; a space before
    punctuation that ends a word removed; the characters ( , . ! ? ; : | * " ) replaced by a
    space; each step followed by one pass turning double spaces into single ones."""
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text.lower()).replace("  ", " ")
    return _PUNCT.sub(" ", text).replace("  ", " ")


def is_wavcaps(state: dict[str, Any]) -> bool:
    return any(k.startswith(AUDIO) for k in state) and any(k.startswith(TEXT) for k in state)


def audio_args(config: Any, *, where: str) -> dict[str, Any]:
    """The front-end settings: the checkpoint's `config.audio_args` where it has them, else
    WavCaps' published ones; checked to be numbers an HTS-AT input can be made from."""
    given = config.get("audio_args") if isinstance(config, dict) else None
    args = dict(DEFAULT_AUDIO)
    if isinstance(given, dict):
        args.update({k: given[k] for k in DEFAULT_AUDIO if k in given})
    for k, v in args.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise BackboneError(f"{where}: config.audio_args.{k} = {v!r}; expected a number >= 0")
    if args["max_length"] == 0:  # WavCaps' "no limit": the whole file, at most what fits
        args["max_length"] = DEFAULT_AUDIO["max_length"]
    frames = 1 + math.floor(args["sr"] * args["max_length"] / args["hop_length"])
    if frames > htsat_keys.SPEC_SIZE * (htsat_keys.SPEC_SIZE // args["n_mels"]):
        raise BackboneError(
            f"{where}: config.audio_args.max_length = {args['max_length']} s gives {frames} "
            f"frames; HTS-AT takes at most {htsat_keys.SPEC_SIZE ** 2 // args['n_mels']}")
    return args


def settings(checkpoint: dict, *, where: str) -> tuple[int, float]:
    """(sample rate, clip seconds) of a WavCaps checkpoint, from its config alone."""
    args = audio_args(checkpoint.get("config"), where=where)
    return int(args["sr"]), float(args["max_length"])


def text_family(state: dict[str, Tensor], config: Any, *, where: str) -> str:
    """'bert' or 'roberta': from the config's text encoder name where it is stored, else
    from the weights (RoBERTa has one token type, BERT two)."""
    name = None
    if isinstance(config, dict) and isinstance(config.get("text_encoder_args"), dict):
        name = config["text_encoder_args"].get("type")
    if isinstance(name, str):
        low = name.lower()
        if "roberta" in low:
            return "roberta"
        if "bert" in low and "distilbert" not in low:
            return "bert"
        raise BackboneError(f"{where}: text encoder {name!r}; only BERT and RoBERTa text "
                            "encoders are supported")
    types = state.get(TEXT + "embeddings.token_type_embeddings.weight")
    if types is None:
        raise BackboneError(f"{where}: no {TEXT}embeddings.token_type_embeddings.weight; "
                            "expected a BERT or RoBERTa text encoder")
    return "roberta" if types.shape[0] == 1 else "bert"


def frontend(args: dict[str, Any]):
    from transformers.audio_utils import mel_filter_bank

    from tail_bench.models.frontends import ClapLogMel

    mel = mel_filter_bank(num_frequency_bins=args["n_fft"] // 2 + 1,
                          num_mel_filters=args["n_mels"], min_frequency=args["f_min"],
                          max_frequency=args["f_max"], sampling_rate=args["sr"],
                          norm="slaney", mel_scale="slaney")
    return ClapLogMel(n_fft=args["n_fft"], hop_length=args["hop_length"],
                      mel_filters=torch.from_numpy(mel),
                      clip_samples=round(args["sr"] * args["max_length"]), padding="pad")


def _check_mel(audio: dict[str, Tensor], fe, args: dict[str, Any], *, where: str) -> None:
    """The stored filterbank (torchlibrosa's melW) must be the one the settings describe:
    a checkpoint trained at another rate, band or FFT size is refused here."""
    stored = audio.get("audio_feats_extractor.log_trans.melW")
    if stored is None:
        return
    ours = fe.mel.T.to(stored.dtype)
    if stored.shape != ours.shape or (stored - ours).abs().max() > MEL_ATOL:
        given = ", ".join(f"{k} {args[k]}" for k in ("sr", "n_fft", "n_mels", "f_min", "f_max"))
        raise BackboneError(
            f"{where}: its mel filterbank (audio_feats_extractor.log_trans.melW, "
            f"{tuple(stored.shape)}) is not the one its audio settings give ({given}); the "
            "checkpoint was trained with other settings than config.audio_args (or, without "
            "a config, WavCaps' published ones) say")


def head(state: dict[str, Tensor], prefix: str) -> nn.Sequential:
    first, second = state[prefix + "0.weight"], state[prefix + "2.weight"]
    return nn.Sequential(nn.Linear(first.shape[1], first.shape[0]), nn.ReLU(),
                         nn.Linear(second.shape[1], second.shape[0]))


def wavcaps_backbone(checkpoint: dict, text_dir, *, name: str, device="cpu"):
    """The DualEncoder of a WavCaps checkpoint (`read_weights` of the .pt) and the local
    Hugging Face directory of its text model (config.json and tokenizer)."""
    from transformers import AutoModel, ClapAudioConfig, ClapAudioModel

    from tail_bench.models.checkpoints import key_report, load_exactly, text_directory

    state, config = checkpoint["model"], checkpoint.get("config")
    audio = {k[len(AUDIO):]: v for k, v in state.items() if k.startswith(AUDIO)}
    if "patch_embed.proj.weight" not in audio:
        kind = "CNN" if any(k.startswith("conv_block") for k in audio) else "unknown"
        raise BackboneError(f"{name}: a WavCaps checkpoint with a {kind} audio encoder "
                            f"({next(iter(audio), 'no keys')}, ...); only HTS-AT is supported")
    args = audio_args(config, where=name)
    fe = frontend(args)
    _check_mel(audio, fe, args, where=name)
    family = text_family(state, config, where=name)
    text_config, tokenizer = text_directory(text_dir, family, where=name)
    missing = [p + s for p in HEADS for s in ("0.weight", "0.bias", "2.weight", "2.bias")
               if p + s not in state] + ([] if "temp" in state else ["temp"])
    known = (AUDIO, TEXT, *HEADS, "temp")
    unexpected = [k for k in state if not k.startswith(known)]
    if missing or unexpected:
        raise BackboneError(f"{name}: not a WavCaps retrieval checkpoint: "
                            f"{key_report(missing, unexpected)}")

    clap_audio = ClapAudioModel(ClapAudioConfig(**htsat_keys.audio_config(audio, where=name)))
    load_exactly(clap_audio.audio_encoder, htsat_keys.to_hf(audio), where=name,
                 prefix=AUDIO)
    text_model = AutoModel.from_config(text_config, add_pooling_layer=False)
    text = {k[len(TEXT):]: v for k, v in state.items() if k.startswith(TEXT)}
    load_exactly(text_model, text, where=name, prefix=TEXT)
    heads = {}
    for prefix in HEADS:
        heads[prefix] = head(state, prefix)
        load_exactly(heads[prefix], {k[len(prefix):]: v for k, v in state.items()
                                     if k.startswith(prefix)}, where=name, prefix=prefix)
    return assemble(clap_audio, text_model, tokenizer, audio_head=heads["audio_proj."],
                    text_head=heads["text_proj."], temp=float(state["temp"]), args=args,
                    name=name).to(device).eval()


def assemble(audio: nn.Module, text: nn.Module, tokenizer, *, audio_head: nn.Module,
             text_head: nn.Module, temp: float, args: dict[str, Any], name: str):
    """The one way a WavCaps model becomes a DualEncoder (checkpoint files, benchmarks)."""
    from tail_bench.models.dual import DualEncoder
    from tail_bench.models.hf import ClapAudioTower, HFTextTower

    return DualEncoder(
        audio=ClapAudioTower(audio, frontend(args)),
        text=HFTextTower(text, tokenizer, max_length=TEXT_MAX_TOKENS, pool="cls",
                         normalize=wavcaps_caption),
        audio_head=audio_head, text_head=text_head, logit_scale=math.log(1 / temp),
        meta={"backbone": name, "sample_rate": int(args["sr"]),
              "clip_seconds": float(args["max_length"])})


def random_backbone(text_config, tokenizer, *, name: str, embed_size: int = 1024):
    """WavCaps' HTS-AT (`HTSAT`) and a text model of `text_config` with random weights and
    WavCaps' heads and settings: the architecture of HTSAT-BERT for benchmarks."""
    from transformers import AutoModel, ClapAudioConfig, ClapAudioModel

    audio = ClapAudioModel(ClapAudioConfig(**HTSAT))
    text = AutoModel.from_config(text_config, add_pooling_layer=False)
    mlp = lambda width: nn.Sequential(nn.Linear(width, embed_size), nn.ReLU(),  # noqa: E731
                                      nn.Linear(embed_size, embed_size))
    return assemble(audio, text, tokenizer, audio_head=mlp(audio.config.hidden_size),
                    text_head=mlp(text_config.hidden_size), temp=0.07, args=DEFAULT_AUDIO,
                    name=name)
