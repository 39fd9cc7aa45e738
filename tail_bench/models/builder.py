"""One place that builds a backbone from a name (registry) or a local checkpoint path: a
Hugging Face directory, or a WavCaps / LAION-CLAP `.pt` file (with `text_model`, the local
directory of its text model's config and tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from tail_bench.errors import BackboneError
from tail_bench.models.configs import BACKBONES, get_config

if TYPE_CHECKING:
    import torch

    from tail_bench.models.dual import DualEncoder


def build_backbone(spec: str, *, device: torch.device | str = "cpu", force_pretrain: bool = False,
                   progress: bool = True, text_model: Path | str | None = None) -> DualEncoder:
    """`spec` is a registered name (see `tail-bench list`), a local checkpoint directory or
    a checkpoint file; `text_model` is for checkpoint files only."""
    import torch

    device = torch.device(device)
    if text_model is not None and not Path(spec).is_file():
        raise BackboneError(f"--text-model {text_model}: only a checkpoint file (.pt) takes a "
                            f"text model directory; --backbone {spec} is not one")
    if spec in BACKBONES:
        from tail_bench.models.pretrain import load_or_pretrain

        return load_or_pretrain(get_config(spec), device=device, force=force_pretrain,
                                progress=progress)
    if Path(spec).is_file():
        from tail_bench.models.checkpoints import load_file_backbone

        return load_file_backbone(Path(spec), text_model=text_model, device=device)
    if Path(spec).exists():
        from tail_bench.models.hf import load_local_backbone

        return load_local_backbone(Path(spec), device=device)
    get_config(spec)  # raises the error that lists the known names
    raise AssertionError("unreachable")


def pretrains(spec: str) -> bool:
    """Whether building `spec` pretrains it and writes its weights to the cache."""
    if spec not in BACKBONES:
        return False
    from tail_bench.models.pretrain import weights_path

    return not weights_path(get_config(spec)).exists()


def weights_bytes(spec: str) -> int:
    """The bytes of a backbone's weights in fp32 (a registered one's from its
    architecture, a checkpoint's from its files) without loading them: the least a
    run's first checkpoint takes on disk."""
    if spec in BACKBONES:
        from tail_bench.models.pretrain import build_synth

        return sum(4 * t.numel() for t in build_synth(get_config(spec)).state_dict().values())
    path = Path(spec)
    if path.is_file():
        return path.stat().st_size
    files = list(path.rglob("*.safetensors")) or list(path.rglob("*.bin"))
    return sum(f.stat().st_size for f in files)


def model_config(path: Path) -> dict:
    """A Hugging Face directory's config.json, checked (its errors name the file)."""
    file = path / "config.json"
    if not file.exists():
        raise BackboneError(f"{path}: no config.json; expected a Hugging Face model "
                            "directory saved with save_pretrained")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BackboneError(f"{file}: not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise BackboneError(f"{file}: expected a JSON object (a model config)")
    return config


def directory_kind(path: Path) -> str:
    """`clap` (a CLAP directory) or `pair` (audio/ holding an AST, and text/), checked."""
    if (path / "audio").is_dir() and (path / "text").is_dir():
        kind = model_config(path / "audio").get("model_type")
        if kind != "audio-spectrogram-transformer":
            raise BackboneError(f"{path / 'audio'}: model_type {kind!r}; expected "
                                "'audio-spectrogram-transformer'")
        return "pair"
    kind = model_config(path).get("model_type")
    if kind != "clap":
        raise BackboneError(f"{path}: model_type {kind!r}; expected a CLAP checkpoint "
                            "directory (model_type 'clap') or a folder with audio/ and text/ "
                            "subfolders")
    return "clap"


def _extractor_config(path: Path) -> dict:
    file = path / "preprocessor_config.json"
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise BackboneError(f"{file}: not found; expected the feature extractor's config of a "
                            "directory saved with save_pretrained") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BackboneError(f"{file}: not valid JSON ({err})") from err
    if not isinstance(config, dict) or not isinstance(config.get("sampling_rate"), int):
        raise BackboneError(f"{file}: expected a JSON object with an integer sampling_rate")
    return config


def audio_settings(spec: str) -> tuple[int, float]:
    """(sample rate, clip seconds) of a backbone's audio front-end, read from its config
    without loading any weights: the decoded-audio cache `prepare` builds for `spec` is the
    one `run --backbone spec` reads. Agrees with `build_backbone(spec).meta` (tested)."""
    if spec in BACKBONES:
        c = get_config(spec)
        return c.sample_rate, c.clip_seconds
    path = Path(spec)
    if not path.exists():
        get_config(spec)  # raises the error that lists the known names
    if path.is_file():  # WavCaps' config, or LAION-CLAP's fixed 48 kHz / 10 s
        from tail_bench.models.checkpoints import file_audio_settings

        return file_audio_settings(path)
    if directory_kind(path) == "pair":  # AST: 10 ms fbank frames
        config = _extractor_config(path / "audio")
        return config["sampling_rate"], config.get("max_length", 1024) * 0.01
    config = _extractor_config(path)  # CLAP: nb_max_samples at sampling_rate
    return config["sampling_rate"], float(config["nb_max_samples"] / config["sampling_rate"])
