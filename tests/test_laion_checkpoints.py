"""LAION-CLAP's own .pt files: the key mapping against laion_clap's architecture (its key
names and shapes, tests/fixtures/laion_clap_htsat_tiny.json, taken from its code), both
ways, and tiny files that load and reproduce HF's ClapModel; the weights-only reader."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_checkpoints import laion_state, roberta_dir
from tiny_clap import tiny_clap
from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel

from tail_bench.errors import BackboneError
from tail_bench.models import laion
from tail_bench.models.builder import audio_settings, build_backbone
from tail_bench.models.checkpoints import SELF_BUILT
from tail_bench.models.ptfile import read_weights

pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter")
FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "laion_clap_htsat_tiny.json")
                     .read_text())
DROPPED = {"front-end (STFT weights)", "front-end (mel filterbank)", "AudioSet tagging head",
           "shifted-window mask buffer (recomputed)", "training-loss MLP"}


@pytest.mark.parametrize("fused", [False, True])
def test_every_key_of_laion_architecture_is_accounted_for(fused):
    theirs = FIXTURE["unfused"] | (FIXTURE["fused_only"] if fused else {})
    with torch.device("meta"):  # HTSAT-tiny + RoBERTa-base: ClapConfig's defaults
        hf = ClapModel(ClapConfig(audio_config=ClapAudioConfig(
            enable_fusion=fused, fusion_type="aff_2d" if fused else None))).state_dict()
    ours = laion.from_hf(hf)
    built = {k for k in ours if k.endswith(SELF_BUILT)}  # HF persists them, laion_clap not
    assert built == {"text_branch.embeddings.position_ids",
                     "text_branch.embeddings.token_type_ids"}
    assert set(ours) - built <= set(theirs)
    assert all(list(ours[k].shape) == theirs[k] for k in set(ours) - built)
    left = set(theirs) - set(ours)
    assert {laion.dropped_reason(k) for k in left} == DROPPED  # nothing left unexplained
    assert {k for k in theirs if laion.dropped_reason(k) is None} <= set(ours)
    mapped = laion.to_hf({k: torch.empty(v, device="meta") for k, v in theirs.items()})
    assert set(mapped) == set(hf) - {k for k in hf if k.endswith(SELF_BUILT)}
    if fused:
        assert any("fusion_model" in k for k in mapped)


@pytest.mark.parametrize("fused", [False, True])
def test_hf_to_laion_and_back_is_bit_identical(fused):
    torch.manual_seed(0)
    state = tiny_clap(fused).state_dict()
    back = laion.to_hf(laion.from_hf(state))
    assert set(back) == set(state)
    for k, v in state.items():
        assert torch.equal(back[k], v), k
    assert any(k.endswith("attn.qkv.weight") for k in laion.from_hf(state))


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    return roberta_dir(tmp_path_factory.mktemp("roberta"))


@pytest.mark.parametrize("fused", [False, True])
def test_a_laion_file_reproduces_hf_clap(fused, text_dir, tmp_path, monkeypatch):
    state = laion_state(fusion=fused)
    path = tmp_path / "630k-tiny.pt"
    # as laion_clap's training saves it: under DistributedDataParallel, next to a numpy
    # metric, in pickle protocol 4 (which torch's own weights-only reader rejects)
    torch.save({"epoch": 3, "name": "tiny", "val_mAP": np.float64(0.5),
                "state_dict": {"module." + k: v for k, v in state.items()}}, path,
               pickle_protocol=4)
    model = build_backbone(str(path), text_model=text_dir)
    assert audio_settings(str(path)) == (model.meta["sample_rate"],
                                         model.meta["clip_seconds"]) == (48000, 10.0)
    assert model.audio.model.config.enable_fusion is fused
    assert model.text.max_length == laion.TEXT_MAX_TOKENS
    extractor = ClapFeatureExtractor(**laion.audio_settings(state))
    ref = ClapModel(ClapConfig(audio_config=model.audio.model.config.to_dict(),
                               text_config=model.text.model.config.to_dict(),
                               projection_dim=24)).eval()
    missing, unexpected = ref.load_state_dict(laion.to_hf(state), strict=False)
    assert not unexpected and all(k.endswith(SELF_BUILT) for k in missing)
    wave = torch.randn(2, 480000, generator=torch.Generator().manual_seed(0)) * 0.1
    monkeypatch.setattr(np.random, "randint", lambda low, high: 0)  # no clip is longer
    inputs = extractor(list(wave.numpy()), sampling_rate=48000, return_tensors="pt")
    if fused:  # HF marked one clip of the batch "longer" at random; the suite does not
        inputs["is_longer"][:] = False
    tokens = model.text.tokenizer(["a dog barks", "rain"], padding=True, return_tensors="pt")
    with torch.no_grad():
        ra = ref.get_audio_features(**inputs).pooler_output
        rt = ref.get_text_features(**tokens).pooler_output
        a, t = model(wave, ["a dog barks", "rain"])
    torch.testing.assert_close(a, torch.nn.functional.normalize(ra, dim=-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(t, torch.nn.functional.normalize(rt, dim=-1), atol=1e-5, rtol=0)
    assert model.logit_scale.item() == pytest.approx(2.5)  # logit_scale_a


def test_unknown_keys_in_a_laion_file_are_named(text_dir, tmp_path):
    state = laion_state() | {"audio_branch.mel_conv1d.0.weight": torch.ones(1),
                             "visual.proj": torch.ones(1)}
    torch.save({"state_dict": state}, tmp_path / "x.pt")
    with pytest.raises(BackboneError, match=r"unexpected keys: visual\.proj"):
        build_backbone(str(tmp_path / "x.pt"), text_model=text_dir)
    del state["visual.proj"]
    torch.save({"state_dict": state}, tmp_path / "x.pt")
    with pytest.raises(BackboneError, match=r"unexpected keys: audio_model\.audio_encoder\."
                                            r"mel_conv1d"):
        build_backbone(str(tmp_path / "x.pt"), text_model=text_dir)


@pytest.mark.parametrize("protocol", [2, 4])
def test_weights_only_reading(protocol, tmp_path):
    path = tmp_path / "w.pt"
    data = {"w": torch.arange(6.0).view(2, 3)[:, 1:], "b": torch.ones(2, dtype=torch.bfloat16),
            "step": np.int64(7), "cfg": {"sr": 32000}}
    torch.save(data, path, pickle_protocol=protocol)
    out = read_weights(path)
    assert torch.equal(out["w"], data["w"]) and torch.equal(out["b"], data["b"])
    assert out["step"] == 7 and out["cfg"] == {"sr": 32000}
    assert read_weights(path, with_data=False)["w"].shape == (2, 2)
    torch.save({"w": torch.ones(1), "args": argparse.Namespace(lr=1)}, path,
               pickle_protocol=protocol)
    with pytest.raises(BackboneError, match=r"would run argparse\.Namespace; the suite "
                                            r"loads weights only"):
        read_weights(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError, match="not a PyTorch checkpoint"):
        read_weights(path)
