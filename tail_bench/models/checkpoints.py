"""Backbones from single checkpoint files (`--backbone FILE.pt`): WavCaps' retrieval models
and LAION-CLAP's own files, told apart by their keys. Both hold their text encoder's
weights but not its config or tokenizer, which come from a local Hugging Face directory
(`--text-model DIR`). Files are read as weights only (`ptfile.read_weights`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from tail_bench.errors import BackboneError
from tail_bench.models import laion, wavcaps
from tail_bench.models.ptfile import read_weights

FORMATS = ("WavCaps retrieval checkpoint (keys audio_encoder.audio_enc.*, "
           "text_encoder.text_encoder.*, audio_proj.*, text_proj.*, temp)",
           "LAION-CLAP checkpoint (keys audio_branch.*, text_branch.*, audio_projection.*, "
           "text_projection.*, logit_scale_a)")
# buffers a module builds itself, which older files hold and newer ones do not (or back)
SELF_BUILT = ("embeddings.position_ids", "embeddings.token_type_ids")
FAMILY_EXAMPLE = {"bert": "bert-base-uncased", "roberta": "roberta-base"}
SHOWN = 4


def key_report(missing: list[str], unexpected: list[str],
               mismatched: list[str] | None = None) -> str:
    """'missing keys: a, b (+3 more); unexpected keys: ...' for the lists that are not empty."""
    parts = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                        ("keys of another shape", mismatched or [])):
        if keys:
            more = f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
            parts.append(f"{label}: {', '.join(keys[:SHOWN])}{more}")
    return "; ".join(parts)


def load_exactly(module: nn.Module, state: dict[str, Tensor], *, where: str,
                 prefix: str = "") -> None:
    """`module.load_state_dict(state)` where every key must match by name and shape (but
    `SELF_BUILT` buffers); otherwise one error naming the keys (with `prefix`, as the file
    names them) that are missing, unexpected or of another shape."""
    expected = module.state_dict()
    state = {k: v for k, v in state.items() if k in expected or not k.endswith(SELF_BUILT)}
    missing = [prefix + k for k in expected if k not in state and not k.endswith(SELF_BUILT)]
    unexpected = [prefix + k for k in state if k not in expected]
    mismatched = [f"{prefix}{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
                  for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or mismatched:
        raise BackboneError(f"{where}: {key_report(missing, unexpected, mismatched)}")
    module.load_state_dict(state, strict=False)


def text_directory(path: Path | str | None, family: str, *, where: str):
    """(config, tokenizer) of the local Hugging Face text model directory a checkpoint
    names with `--text-model`, checked to be of the checkpoint's family."""
    from transformers import AutoConfig, AutoTokenizer

    from tail_bench.models.hf import _load

    example = FAMILY_EXAMPLE[family]
    if path is None:
        raise BackboneError(f"{where}: holds a {family} text encoder's weights but not its "
                            f"config or tokenizer; give --text-model DIR, a local Hugging Face "
                            f"directory of the model it was trained from (e.g. {example}, "
                            "with config.json and tokenizer files)")
    path = Path(path)
    if not (path / "config.json").is_file():
        raise BackboneError(f"--text-model {path}: no config.json; expected a local Hugging "
                            f"Face directory of {example} (config.json and tokenizer files)")
    config = _load(AutoConfig, path, "config")
    if config.model_type != family:
        raise BackboneError(f"--text-model {path}: model_type {config.model_type!r}, but "
                            f"{where} holds a {family} text encoder; expected a {family} "
                            f"directory such as {example}")
    return config, _load(AutoTokenizer, path, "tokenizer")


def _state(obj: Any, path: Path) -> tuple[dict[str, Tensor], Any]:
    """(state dict without `module.`, WavCaps' config or None) of a loaded file."""
    config = None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):  # WavCaps' train.py
        obj, config = obj["model"], obj.get("config")
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):  # laion_clap's
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) for k in obj):
        raise BackboneError(f"{path}: holds no state dict (a mapping of key names to tensors); "
                            f"expected a {FORMATS[0]} or a {FORMATS[1]}")
    if all(k.startswith("module.") for k in obj):  # saved from DistributedDataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj, config


def _kind(state: dict[str, Tensor], path: Path) -> str:
    if wavcaps.is_wavcaps(state):
        return "wavcaps"
    if laion.is_laion(state):
        return "laion"
    raise BackboneError(f"{path}: neither a {FORMATS[0]} nor a {FORMATS[1]}; its keys start "
                        f"{', '.join(sorted({k.split('.')[0] + '.' for k in state})[:SHOWN])}")


def file_audio_settings(path: Path) -> tuple[int, float]:
    """(sample rate, clip seconds) of a checkpoint file, without reading its tensors."""
    state, config = _state(read_weights(path, with_data=False), path)
    if _kind(state, path) == "wavcaps":
        return wavcaps.settings({"config": config}, where=str(path))
    return laion.SAMPLE_RATE, laion.CLIP_SECONDS


def load_file_backbone(path: Path, *, text_model: Path | str | None, device):
    """The DualEncoder of a WavCaps or LAION-CLAP checkpoint file."""
    from tail_bench.models.hf import clap_backbone

    state, config = _state(read_weights(path), path)
    name = str(path)
    if _kind(state, path) == "wavcaps":
        return wavcaps.wavcaps_backbone({"model": state, "config": config}, text_model,
                                        name=name, device=device)
    unknown = [k for k in state if not k.startswith(
        (laion.AUDIO, laion.TEXT, *laion.PROJECTIONS, *laion.DROPPED, "logit_scale_"))]
    if unknown:
        raise BackboneError(f"{path}: not a LAION-CLAP checkpoint: {key_report([], unknown)}")
    clap, extractor, tokenizer = laion.laion_clap(state, text_model, name=name)
    return clap_backbone(clap, extractor, tokenizer, name=name,
                         text_max_length=laion.TEXT_MAX_TOKENS).to(device).eval()
