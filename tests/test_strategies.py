"""Every strategy: its mechanism (each test fails when the mechanism is removed or
zeroed), its options, and runs through the CLI."""

import copy
import json
import random
from collections import Counter

import pytest
import torch
from avalanche.core import SupervisedPlugin
from tail_bench.strategies.coda_prompt import CODAPrompt, ortho_penalty
from tail_bench.strategies.er import ER, reservoir
from tail_bench.strategies.ewc import EWC
from tail_bench.strategies.l2p import L2P
from tail_bench.strategies.lora import LoRA, is_lora
from tail_bench.strategies.lwf import LwF
from tail_bench.strategies.ptat import PTAT
from tail_bench.strategies.zscl import ZSCL

from tail_bench.cli import main
from tail_bench.errors import ConfigError
from tail_bench.streams.pairs import collate_pairs
from tail_bench.training.distill import frozen_copy
from tail_bench.training.registry import available_strategies
from tail_bench.training.template import RetrievalTemplate


def _batch(exp, n=32):
    return next(iter(torch.utils.data.DataLoader(exp.dataset, batch_size=n,
                                                 collate_fn=collate_pairs)))


def test_ptat_trains_exactly_its_declared_set(train, tiny_model, quick_stream):
    model = copy.deepcopy(tiny_model)
    s = PTAT()
    s.setup(model)
    declared = {id(p) for p in s.trainable_parameters(model)}
    expected = {id(p) for m in (model.prompter, model.audio_head, model.text_head)
                for p in m.parameters()} | {id(model.logit_scale)}
    assert declared == expected
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, s, quick_stream.scenario().train_stream[0])
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p)
        assert changed == (id(p) in declared), n
    share = sum(p.numel() for p in s.trainable_parameters(model)) / sum(
        p.numel() for p in model.backbone_parameters())
    assert 0.05 < share < 0.5


def test_ptat_text_prompts_are_generated_from_audio_prompts(tiny_model):
    model = copy.deepcopy(tiny_model)
    s = PTAT(options={"prompt_length": 3})
    s.setup(model)
    tokens = model.text.tokenize(["a dog barks"], "cpu")
    prefix, post = model.prompter.text(model, tokens)
    assert prefix.shape == post.shape == (1, 3, model.text.width)
    with torch.no_grad():
        model.prompter.prompts.add_(1.0)
    assert not torch.equal(model.prompter.text(model, tokens)[0], prefix)


@pytest.mark.parametrize("cls", [PTAT, LwF])
def test_distillation_is_zero_at_the_teacher_and_positive_after_an_update(train, cls, tiny_model,
                                                                           quick_stream):
    model = copy.deepcopy(tiny_model)
    s = cls()
    s.setup(model)
    exp = quick_stream.scenario().train_stream[1]
    wave, texts, _ = _batch(exp)
    teacher = frozen_copy(model)

    def terms():
        with torch.no_grad():
            return s.distillation_loss(*model(wave, texts), *teacher(wave, texts))

    assert all(abs(v.item()) < 1e-6 for v in terms().values())
    train(model, s, exp)  # the first step: no teacher yet, plain InfoNCE
    assert s.teacher is not None
    assert all(v.item() > 1e-4 for v in terms().values())


def test_l2p_selects_by_key_query_similarity_and_keys_move_to_queries(train, tiny_model,
                                                                     quick_stream):
    model = copy.deepcopy(tiny_model)
    s = L2P(options={"pool_size": 6, "top_n": 2})
    s.setup(model)
    pool = model.prompter.audio_pool
    exp = quick_stream.scenario().train_stream[0]
    wave, _, _ = _batch(exp, 8)
    with torch.no_grad():
        query = model.audio(model.audio.features(wave))
        pool.keys.copy_(torch.randn_like(pool.keys))
        pool.keys[4] = query[0]  # a key equal to sample 0's query wins for sample 0 only
    assert pool.select(query)[0, 0].item() == 4
    cos = torch.nn.functional.cosine_similarity(query[:, None], pool.keys[None], dim=-1)
    assert torch.equal(pool.select(query), cos.topk(2, dim=1).indices)  # per sample

    def key_query_similarity():
        with torch.no_grad():
            q = torch.nn.functional.normalize(model.audio(model.audio.features(wave)), dim=-1)
            k = torch.nn.functional.normalize(pool.keys, dim=-1)
            return (q @ k.T).topk(2, dim=1).values.mean().item()

    before = key_query_similarity()
    train(model, s, exp, epochs=2, lr=1e-2)
    assert key_query_similarity() > before
    usage = s.report()["prompt_usage_per_step"]
    assert sum(usage[0]["audio"]) == 2 * 2 * len(exp.dataset)  # epochs x top_n x samples


def test_ewc_penalty_is_zero_at_the_anchor_and_grows_away(train, tiny_model, quick_stream):
    model = copy.deepcopy(tiny_model)
    s = EWC()
    s.setup(model)
    train(model, s, quick_stream.scenario().train_stream[0])
    assert s.penalty(model).item() == 0.0
    mean_importance = torch.cat([f.flatten() for f in s.importance.values()]).mean()
    assert mean_importance.item() == pytest.approx(1.0, rel=1e-4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1e-3)
    p1 = s.penalty(model).item()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1e-3)
    assert p1 > 0 and s.penalty(model).item() == pytest.approx(4 * p1, rel=1e-3)


def test_every_strategy_runs_the_quick_stream(tmp_path, _cache):
    out = tmp_path / "all"
    main(["run", "--strategy", "ptat", "--baselines", "all", "--preset", "quick",
          "--epochs", "1", "--gallery", "both", "--out", str(out), "--no-progress"])
    run = json.loads((out / "run.json").read_text())
    assert run["resolved"]["gallery"] == "both"
    by = {e["method"]: e for e in run["runs"]}
    registered = available_strategies()
    assert set(by) == set(registered)  # every registered strategy, none hard-coded
    for name, cls in registered.items():
        assert by[name]["status"] == "done", name
        steps = [0] if not cls.trains else [0, 1] if cls.joint else [0, 1, 2, 3, 4]
        assert [r["step"] for r in by[name]["rows"]] == steps, name
        assert by[name]["rows"][0]["scores"] == by["zeroshot"]["rows"][0]["scores"], name
    full = by["finetune"]["cost"]["trainable_params"]
    assert by["ptat"]["cost"]["trainable_params"] < full
    assert by["lwf"]["cost"]["trainable_params"] == by["ewc"]["cost"]["trainable_params"] == full
    assert len(by["l2p"]["extra"]["prompt_usage_per_step"]) == 4
    assert by["lora"]["cost"]["trainable_by_module"]["audio"] > 0  # the adapters count
    assert by["er"]["cost"]["memory_clips"] > 0 and by["er"]["cost"]["memory_mb"] > 0
    union = by["finetune"]["rows"][-1]["scores"]
    assert set(union) == {*run["stream"]["datasets"],
                          *(f"union:{d}" for d in run["stream"]["datasets"])}
    table = (out / "tables.md").read_text()
    assert "| ptat | 1 |" in table and "share of Finetune" in table
    assert "Comparison (final row), union gallery" in table and "Gallery gap" in table
    assert "clips," in table.split("## Cost")[1]  # ER's stored data


@pytest.mark.parametrize("name", sorted(n for n, c in available_strategies().items()
                                         if c.trains))
def test_every_strategy_trains_exactly_what_it_declares(train, name, tiny_model, quick_stream):
    """For everything registered: a step changes the declared parameters and nothing else."""
    model = copy.deepcopy(tiny_model)
    s = available_strategies()[name]()
    s.setup(model)
    declared = {id(p) for p in s.trainable_parameters(model)}
    assert declared and all(p.requires_grad for p in s.trainable_parameters(model))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    bench = quick_stream.scenario(joint=available_strategies()[name].joint)
    train(model, s, bench.train_stream[0])
    for n, p in model.named_parameters():
        if n in before:
            assert (not torch.equal(before[n], p)) == (id(p) in declared), (name, n)


def test_plugin_strategy_is_listed_and_runs(tmp_path, capsys, _cache):
    main(["list", "--strategy-class", "plugin_strategy:HeadsOnly"])
    assert "heads-only" in capsys.readouterr().out
    out = tmp_path / "plugin"
    main(["run", "--strategy", "heads-only", "--strategy-class", "plugin_strategy:HeadsOnly",
          "--preset", "quick", "--epochs", "1", "--out", str(out), "--no-progress"])
    run = json.loads((out / "run.json").read_text())
    entry = run["runs"][0]
    assert entry["method"] == "heads-only" and len(entry["rows"]) == 5
    assert 0 < entry["cost"]["trainable_params"] < entry["cost"]["backbone_params"]


def test_a_crash_keeps_the_steps_already_done(tmp_path, _cache):
    out = tmp_path / "crash"
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["run", "--strategy", "crash-at-3", "--strategy-class", "plugin_strategy:CrashAtStep3",
              "--preset", "quick", "--epochs", "1", "--out", str(out), "--no-progress"])
    run = json.loads((out / "run.json").read_text())
    assert [r["step"] for r in run["runs"][0]["rows"]] == [0, 1, 2]
    assert run["runs"][0]["status"] == "failed"
    assert "after 2: clotho" in (out / "tables.md").read_text()


def test_entry_points_and_duplicate_names(monkeypatch):
    import tail_bench.training.registry as reg

    class EP:
        name, value = "mine", "plugin_strategy:HeadsOnly"

        def load(self):
            from plugin_strategy import HeadsOnly
            return HeadsOnly

    monkeypatch.setattr(reg, "entry_points", lambda group: [EP()])
    assert "heads-only" in available_strategies()

    class Clash(PTAT):
        pass

    EP.load = lambda self: Clash
    with pytest.raises(ValueError, match="'ptat' is defined twice"):
        available_strategies()


def test_seeds_report_mean_and_std(tmp_path, _cache):
    out = tmp_path / "seeds"
    main(["run", "--strategy", "finetune", "--seeds", "0", "1", "--preset", "quick",
          "--epochs", "1", "--out", str(out), "--no-progress"])
    run = json.loads((out / "run.json").read_text())
    assert [e["seed"] for e in run["runs"]] == [0, 1]
    assert run["runs"][0]["rows"][1]["scores"] != run["runs"][1]["rows"][1]["scores"]
    assert "| finetune | 2 |" in (out / "tables.md").read_text()
    assert "±" in (out / "tables.md").read_text()


class _Host:
    """The parts of the training template a plugin's callback reads."""

    def __init__(self, model, mbatch=None, mb_output=None, positives=None):
        self.model, self.mbatch, self.mb_output = model, mbatch, mb_output
        self.mb_inputs = None if mbatch is None else model.inputs(*mbatch[:2])
        self.mb_positives = positives
        self.loss = torch.zeros(())
        self.loss_terms = {}

    def autocast(self):
        import contextlib

        return contextlib.nullcontext()

    add_loss = RetrievalTemplate.add_loss
    gather = RetrievalTemplate.gather  # the identity with one process


def test_ewc_penalty_enters_the_loss_weighted_by_importance(train, tiny_model, quick_stream):
    model = copy.deepcopy(tiny_model)
    s = EWC(options={"lambda_ewc": 3.0})
    s.setup(model)
    train(model, s, quick_stream.scenario().train_stream[0])
    name, p = next((n, p) for n, p in model.named_parameters() if n in s.anchor)
    with torch.no_grad():
        p.add_(0.01)
    host = _Host(model)
    s.before_backward(host)
    by_hand = 3.0 / 2 * (s.importance[name] * 0.01 ** 2).sum()
    assert host.loss.item() == pytest.approx(by_hand.item(), rel=1e-4) and host.loss > 0
    s.importance[name] = 2 * s.importance[name]  # twice as important: twice the penalty
    assert s.penalty(model).item() == pytest.approx(2 * by_hand.item(), rel=1e-4)


def test_ewc_anchors_at_the_latest_step_and_accumulates_importance(train, tiny_model, quick_stream):
    model = copy.deepcopy(tiny_model)
    s = EWC(options={"decay": 0.5})
    s.setup(model)
    bench = quick_stream.scenario()
    t = train(model, s, bench.train_stream[0])
    first = {n: f.clone() for n, f in s.importance.items()}
    t.train(bench.train_stream[1])
    for n, p in model.named_parameters():
        assert torch.equal(s.anchor[n], p.detach()), n  # the anchor moved to step 2's end
    assert s.penalty(model).item() == 0.0
    new = s.fisher(model, bench.train_stream[1].dataset, 32)
    for n in first:
        torch.testing.assert_close(s.importance[n], 0.5 * first[n] + new[n])


def test_ptat_text_loss_sends_gradient_into_the_audio_prompts(tiny_model):
    model = copy.deepcopy(tiny_model)
    s = PTAT(options={"prompt_length": 3})
    s.setup(model)
    model.encode_text(["a dog barks", "rain falls"]).sum().backward()
    grad = model.prompter.prompts.grad
    assert grad is not None and grad.abs().sum() > 0  # text prompts come from audio prompts


def test_ptat_and_lwf_add_their_distillation_to_the_loss(tiny_model, quick_stream):
    for cls in (PTAT, LwF):
        model = copy.deepcopy(tiny_model)
        s = cls()
        s.setup(model)
        exp = quick_stream.scenario().train_stream[1]
        wave, texts, keys = _batch(exp, 16)
        s.teacher = frozen_copy(model)
        with torch.no_grad():
            for p in s.trainable_parameters(model):
                p.add_(0.05 * torch.randn_like(p))
        out = model(wave, texts)
        host = _Host(model, (wave, texts, keys), out)
        s.before_backward(host)
        terms = {"sim", "feat"} if cls is PTAT else {"sim"}
        assert set(host.loss_terms) == terms
        assert host.loss.item() == pytest.approx(sum(host.loss_terms.values()).item(), rel=1e-5)
        assert host.loss.item() > 1e-4, cls.name


def test_l2p_subtracts_the_key_query_similarity(tiny_model, quick_stream):
    model = copy.deepcopy(tiny_model)
    s = L2P(options={"lambda_key": 0.5})
    s.setup(model)
    model.train()
    wave, texts, _ = _batch(quick_stream.scenario().train_stream[0], 8)
    model(wave, texts)
    sims = [p.key_similarity for p in (model.prompter.audio_pool, model.prompter.text_pool)]
    host = _Host(model)
    s.before_backward(host)
    assert host.loss.item() == pytest.approx(-0.5 * (sims[0] + sims[1]).item() / 2)


@pytest.mark.parametrize("deep", [False, True])
def test_post_prompts_follow_the_last_token_with_positions(tiny_model, deep):
    text = copy.deepcopy(tiny_model.text).eval()
    depth = text.depth if deep else 1
    p = torch.randn(depth, 1, 3, text.width) * 0.5
    prompt = list(p) if deep else p[0]
    batch = ["a dog barks", "a bell rings , while a dog barks loudly in the distance"]
    with torch.no_grad():
        alone = text.tokenize(batch[:1], "cpu")
        as_prefix = text(alone, prefix=prompt)
        as_post = text(alone, post=prompt)
        both = text.tokenize(batch, "cpu")
        two = [q.expand(2, -1, -1) for q in p] if deep else p[0].expand(2, -1, -1)
        batched = text(both, post=two)
    assert (as_prefix - as_post).abs().max() > 1e-3
    torch.testing.assert_close(as_post, batched[:1], rtol=0, atol=1e-5)


class Record(SupervisedPlugin):
    """A plugin that keeps what each batch's loss saw."""

    def __init__(self):
        super().__init__()
        self.captions, self.rows, self.terms = [], [], []

    def before_backward(self, template, **kwargs):
        self.captions.append(list(template.mbatch[1]))
        self.rows.append((len(template.mb_output[0]), template.mb_positives.shape))
        self.terms.append(dict(template.loss_terms))


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


def test_er_buffer_pairs_reach_the_loss(train, tiny_model, quick_stream):
    model = copy.deepcopy(tiny_model)
    s = ER(options={"size": 24, "batch": 8})
    s.setup(model)
    bench = quick_stream.scenario()
    train(model, s, bench.train_stream[0], batch=16)
    assert len(s.items) == 24 and s.cost()["memory_pairs"] == 24
    buffered = {c for _, c, _ in s.items}
    record = Record()
    train(model, s, bench.train_stream[1], plugins=[record], batch=16)
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


def test_zscl_weights_are_the_average_of_the_step_snapshots(train, tiny_model, quick_stream):
    model = copy.deepcopy(tiny_model)
    s = ZSCL(options={"reference_clips": 16, "ref_batch": 8, "we_every": 4})
    s.setup(model)
    start = model.logit_scale.detach().clone()
    seen = []

    class Snap(Record):
        def after_update(self, template, **kwargs):
            seen.append(template.model.logit_scale.detach().clone())

    record = Snap()
    train(model, s, quick_stream.scenario().train_stream[0], lr=1e-2, plugins=[record], batch=16)
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


def test_coda_prompt_components_stay_orthogonal_and_old_ones_freeze(train, tiny_model,
                                                                     quick_stream):
    model = copy.deepcopy(tiny_model)
    s = CODAPrompt(options={"components": 3, "prompt_length": 2, "lambda_ortho": 1.0})
    s.setup(model)
    pool = model.prompter.text_pool
    assert pool.orthogonality().item() == pytest.approx(0.0, abs=1e-5)  # orthonormal init
    with torch.no_grad():
        pool.keys[0][1] = pool.keys[0][0]
    assert ortho_penalty(pool.keys[0]).item() > 0.1
    bench = quick_stream.scenario()
    record = Record()
    train(model, s, bench.train_stream[0], plugins=[record], batch=16)
    assert record.terms[0]["ortho"].item() > 0.1 / 3  # the term reaches the loss
    assert ortho_penalty(pool.keys[0]).item() < record.terms[0]["ortho"].item()
    step1 = [p.detach().clone() for p in (pool.prompts[0], pool.keys[0], pool.attention[0])]
    train(model, s, bench.train_stream[1], batch=16)
    assert len(pool.keys) == 2
    for before, after in zip(step1, (pool.prompts[0], pool.keys[0], pool.attention[0]),
                             strict=True):
        assert torch.equal(before, after)  # step 1's components are frozen in step 2
    new = torch.cat([pool.keys[0], pool.keys[1]])
    assert not torch.equal(pool.keys[1], torch.zeros_like(pool.keys[1]))
    assert {id(p) for p in s.trainable_parameters(model)} >= {id(pool.keys[1])}
    assert new.shape == (6, model.text.width)


@pytest.mark.parametrize("train_heads", [True, False])
def test_lora_trains_only_adapters_and_keeps_the_towers_bit_identical(train, train_heads,
                                                                       tiny_model, quick_stream):
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
    train(model, s, quick_stream.scenario().train_stream[0], lr=1e-2, batch=16)
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
