"""The mechanisms of er, zscl, coda-prompt and lora: each test fails when its mechanism is
removed or zeroed."""

import copy
import random
from collections import Counter

import pytest
import torch
from avalanche.core import SupervisedPlugin
from tail_bench.strategies.coda_prompt import CODAPrompt, ortho_penalty
from tail_bench.strategies.er import ER, reservoir
from tail_bench.strategies.lora import LoRA, is_lora
from tail_bench.strategies.zscl import ZSCL

from tail_bench.cli import main
from tail_bench.errors import ConfigError
from tail_bench.streams.pairs import collate_pairs
from tail_bench.training.template import RetrievalTemplate


class Record(SupervisedPlugin):
    """A plugin that keeps what each batch's loss saw."""

    def __init__(self):
        super().__init__()
        self.captions, self.rows, self.terms = [], [], []

    def before_backward(self, template, **kwargs):
        self.captions.append(list(template.mbatch[1]))
        self.rows.append((len(template.mb_output[0]), template.mb_positives.shape))
        self.terms.append(dict(template.loss_terms))


def _train(model, strategy, exp, *, epochs=1, lr=1e-3, plugins=()):
    t = RetrievalTemplate(model=model, strategy=strategy, lr=lr, train_mb_size=16,
                          train_epochs=epochs, device="cpu", plugins=list(plugins))
    t.train(exp)
    return t


def test_reservoir_keeps_a_uniform_sample_of_everything_seen():
    steps, size, trials = (50, 150, 100), 30, 1000
    hits = Counter()
    for trial in range(trials):
        rng, buffer, seen = random.Random(trial), [], 0
        for step, n in enumerate(steps):
            for slot, i in reservoir(seen, n, size, rng).items():
                item = (step, i)
                buffer.append(item) if slot == len(buffer) else buffer.__setitem__(slot, item)
            seen += n
        assert len(buffer) == size == len(set(buffer))
        hits.update(buffer)
    rate = [hits[(s, i)] / trials for s, n in enumerate(steps) for i in range(n)]
    assert sum(rate) == pytest.approx(size)
    assert max(abs(r - size / sum(steps)) for r in rate) < 0.04  # each pair: 30/300
    per_step = [sum(hits[(s, i)] for i in range(n)) / trials for s, n in enumerate(steps)]
    assert per_step == pytest.approx([5, 15, 10], abs=0.5)  # in proportion to the steps


def test_er_buffer_pairs_reach_the_loss(tiny_model, quick_stream):
    model = copy.deepcopy(tiny_model)
    s = ER(options={"size": 24, "batch": 8})
    s.setup(model)
    bench = quick_stream.benchmark()
    _train(model, s, bench.train_stream[0])
    assert len(s.items) == 24 and s.cost()["memory_pairs"] == 24
    buffered = {c for _, c, _ in s.items}
    record = Record()
    _train(model, s, bench.train_stream[1], plugins=[record])
    current = set(bench.train_stream[1].dataset.caption)
    for captions, (rows, positives) in zip(record.captions, record.rows, strict=True):
        extra = captions[-8:]
        assert rows == len(captions) and positives == (rows, rows)
        assert set(extra) <= buffered and not set(captions[:-8]) - current
    clips = s.cost()["memory_clips"]
    assert 0 < clips <= 24
    assert s.cost()["memory_mb"] >= clips * model.meta["clip_seconds"] * 16000 * 2 / 2**20


def test_zscl_distils_toward_the_initial_model_on_the_reference_set(tiny_model):
    model = copy.deepcopy(tiny_model)
    s = ZSCL(options={"reference_clips": 16, "ref_batch": 8})
    s.setup(model)
    assert s.reference_loss(model).item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        for p in model.text_head.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    s.gen.manual_seed(1)
    away = s.reference_loss(model)
    assert away.item() > 1e-4
    away.backward()
    params = list(model.text_head.parameters())
    grads = [p.grad for p in params]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    norm = torch.cat([g.flatten() for g in grads]).norm().item()
    with torch.no_grad():  # a move of length 1e-3 along -grad (a fixed 0.5 * grad overshoots)
        for p in params:
            p.sub_(1e-3 / norm * p.grad)
    s.gen.manual_seed(1)  # the same reference batch
    drop = away.item() - s.reference_loss(model).item()
    assert drop == pytest.approx(1e-3 * norm, rel=0.05)  # as the first order predicts


def test_zscl_weights_are_the_average_of_the_step_snapshots(tiny_model, quick_stream):
    model = copy.deepcopy(tiny_model)
    s = ZSCL(options={"reference_clips": 16, "ref_batch": 8, "we_every": 4})
    s.setup(model)
    start = model.logit_scale.detach().clone()
    seen = []

    class Snap(Record):
        def after_update(self, template, **kwargs):
            seen.append(template.model.logit_scale.detach().clone())

    record = Snap()
    _train(model, s, quick_stream.benchmark().train_stream[0], lr=1e-2, plugins=[record])
    assert all("ref" in terms for terms in record.terms)  # distillation from step 1
    snapshots = [start, *seen[3::4]]  # after batches 4, 8, ... and the last
    if len(seen) % 4:
        snapshots.append(seen[-1])
    assert len(seen) % 4 and len(snapshots) >= 3
    assert model.logit_scale.item() == pytest.approx(torch.stack(snapshots).mean().item(),
                                                     abs=1e-6)
    assert model.logit_scale.item() != pytest.approx(seen[-1].item(), abs=1e-6)


def test_zscl_needs_a_reference_set_for_other_backbones(tmp_path):
    with pytest.raises(ConfigError, match=r"zscl\.reference.*no built-in reference set"):
        ZSCL().check("/models/clap")
    with pytest.raises(ConfigError, match="no such file"):
        ZSCL(options={"reference": str(tmp_path / "none.csv")}).check("/models/clap")
    (tmp_path / "bad.csv").write_text("path,text\n")
    with pytest.raises(ConfigError, match="expected file,caption"):
        ZSCL(options={"reference": str(tmp_path / "bad.csv")}).check("/models/clap")
    with pytest.raises(SystemExit, match=r"zscl\.reference"):  # before any work
        main(["run", "--strategy", "zscl", "--backbone", str(tmp_path), "--preset", "quick",
              "--out", str(tmp_path / "run"), "--no-progress"])
    assert not (tmp_path / "run").exists()


def test_zscl_reads_a_user_reference_csv(tiny_model, tmp_path):
    import numpy as np
    import soundfile as sf

    for i in range(3):
        sf.write(tmp_path / f"c{i}.wav", np.random.default_rng(i).normal(0, 0.1, 8000)
                 .astype(np.float32), 16000)
    (tmp_path / "ref.csv").write_text("file,caption\nc0.wav,a dog barks\nc1.wav,rain falls\n"
                                      "c2.wav,a bell rings\nc0.wav,a dog barking\n")
    s = ZSCL(options={"reference": str(tmp_path / "ref.csv"), "ref_batch": 4})
    s.check("/models/clap")
    clips, captions, owner = s.load_reference(tiny_model)
    assert clips.shape == (3, 32000) and owner == [0, 1, 2, 0] and captions[3] == "a dog barking"


def test_coda_prompt_weights_are_per_sample_cosines(tiny_model, quick_stream):
    model = copy.deepcopy(tiny_model)
    s = CODAPrompt(options={"components": 4, "prompt_length": 2})
    s.setup(model)
    pool = model.prompter.audio_pool
    wave = next(iter(torch.utils.data.DataLoader(quick_stream.train[0].to_avalanche(),
                                                 batch_size=3, collate_fn=collate_pairs)))[0]
    with torch.no_grad():
        features = model.audio.features(wave)
        query = model.audio(features)
        alpha = pool.weights(query)
        a, k = pool.attention[0], pool.keys[0]
        expected = torch.stack([torch.nn.functional.cosine_similarity(q * a, k, dim=-1)
                                for q in query])
        torch.testing.assert_close(alpha, expected)
        prompts = model.prompter.audio(model, features)
        torch.testing.assert_close(prompts, torch.einsum("bm,mld->bld", alpha,
                                                         pool.prompts[0]))
        alone = model.prompter.audio(model, features[1:2])  # no coupling across the batch
        torch.testing.assert_close(alone[0], prompts[1])
        assert (prompts[0] - prompts[1]).abs().max() > 1e-6


def test_coda_prompt_components_stay_orthogonal_and_old_ones_freeze(tiny_model, quick_stream):
    model = copy.deepcopy(tiny_model)
    s = CODAPrompt(options={"components": 3, "prompt_length": 2, "lambda_ortho": 1.0})
    s.setup(model)
    pool = model.prompter.text_pool
    assert pool.orthogonality().item() == pytest.approx(0.0, abs=1e-5)  # orthonormal init
    with torch.no_grad():
        pool.keys[0][1] = pool.keys[0][0]
    assert ortho_penalty(pool.keys[0]).item() > 0.1
    bench = quick_stream.benchmark()
    record = Record()
    _train(model, s, bench.train_stream[0], plugins=[record])
    assert record.terms[0]["ortho"].item() > 0.1 / 3  # the term reaches the loss
    assert ortho_penalty(pool.keys[0]).item() < record.terms[0]["ortho"].item()
    step1 = [p.detach().clone() for p in (pool.prompts[0], pool.keys[0], pool.attention[0])]
    _train(model, s, bench.train_stream[1])
    assert len(pool.keys) == 2
    for before, after in zip(step1, (pool.prompts[0], pool.keys[0], pool.attention[0]),
                             strict=True):
        assert torch.equal(before, after)  # step 1's components are frozen in step 2
    new = torch.cat([pool.keys[0], pool.keys[1]])
    assert not torch.equal(pool.keys[1], torch.zeros_like(pool.keys[1]))
    assert {id(p) for p in s.trainable_parameters(model)} >= {id(pool.keys[1])}
    assert new.shape == (6, model.text.width)


@pytest.mark.parametrize("train_heads", [True, False])
def test_lora_trains_only_adapters_and_keeps_the_towers_bit_identical(train_heads, tiny_model,
                                                                       quick_stream):
    model = copy.deepcopy(tiny_model)
    towers = {f"{side}.{n}": p.detach().clone() for side in ("audio", "text")
              for n, p in getattr(model, side).named_parameters()}
    s = LoRA(options={"train_heads": train_heads})
    s.setup(model)
    declared = {n for n, p in model.named_parameters() if p.requires_grad}
    heads = {n for n in declared if n.split(".")[0] in ("audio_head", "text_head",
                                                        "logit_scale")}
    assert {n for n in declared if not is_lora(n)} == heads
    assert bool(heads) == train_heads
    lora = [n for n in declared if is_lora(n)]
    assert any(n.startswith("audio.") for n in lora) and any(n.startswith("text.") for n in lora)
    _train(model, s, quick_stream.benchmark().train_stream[0], lr=1e-2)
    after = {n: p for n, p in model.named_parameters()}
    for name, before in towers.items():  # peft renames a wrapped weight `base_layer`
        side = name.split(".", 1)[0]
        candidates = [n for n in after if n.startswith(side + ".") and not is_lora(n)
                      and n.replace("base_layer.", "") == name]
        assert len(candidates) == 1, name
        assert torch.equal(after[candidates[0]], before), name
    assert any(not torch.equal(p, torch.zeros_like(p)) for n, p in after.items()
               if "lora_B" in n)  # B starts at zero: the adapters learnt
    wave = torch.randn(2, int(model.meta["clip_seconds"] * model.meta["sample_rate"])) * 0.1
    texts = ["a dog barks", "rain falls on a metal roof"]
    model.train()  # the ordinary path, as in training
    trained = [model.encode_audio(wave).detach(), model.encode_text(texts).detach()]
    bare = copy.deepcopy(model)  # the same model with its adapters zeroed
    with torch.no_grad():
        for n, p in bare.named_parameters():
            if "lora_B" in n:
                p.zero_()
    model.eval()
    bare.eval()
    with torch.no_grad():  # how it is evaluated: eval and no_grad, the layers' fast path
        for encode, before in zip(("encode_audio", "encode_text"), trained, strict=True):
            x = wave if encode == "encode_audio" else texts
            evaluated = getattr(model, encode)(x)
            torch.testing.assert_close(evaluated, before, atol=1e-5, rtol=0)
            assert (evaluated - getattr(bare, encode)(x)).abs().max() > 1e-3, encode
    assert torch.backends.mha.get_fastpath_enabled()  # switched off only inside the towers


def test_lora_dropout_is_refused_on_attention_weights(tiny_model):
    with pytest.raises(ConfigError, match=r"lora\.dropout"):
        LoRA(options={"dropout": 0.1}).check("synth-tiny")
    with pytest.raises(ConfigError, match=r"lora\.dropout"):
        LoRA(options={"dropout": 0.1}).setup(copy.deepcopy(tiny_model))
