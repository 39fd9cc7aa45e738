import copy
import json

import pytest
import torch
from tail_bench.strategies.ewc import EWC
from tail_bench.strategies.l2p import L2P
from tail_bench.strategies.lwf import LwF
from tail_bench.strategies.ptat import PTAT

from tail_bench.cli import main
from tail_bench.streams.pairs import collate_pairs
from tail_bench.training.distill import frozen_copy
from tail_bench.training.registry import available_strategies
from tail_bench.training.template import RetrievalTemplate


def _train(model, strategy, exp, epochs=1, lr=1e-3):
    t = RetrievalTemplate(model=model, strategy=strategy, lr=lr, train_mb_size=32,
                          train_epochs=epochs, device="cpu")
    t.train(exp)
    return t


def _batch(exp, n=32):
    return next(iter(torch.utils.data.DataLoader(exp.dataset, batch_size=n,
                                                 collate_fn=collate_pairs)))


def test_ptat_trains_exactly_its_declared_set(tiny_model, quick_stream):
    model = copy.deepcopy(tiny_model)
    s = PTAT()
    s.setup(model)
    declared = {id(p) for p in s.trainable_parameters(model)}
    expected = {id(p) for m in (model.prompter, model.audio_head, model.text_head)
                for p in m.parameters()} | {id(model.logit_scale)}
    assert declared == expected
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train(model, s, quick_stream.benchmark().train_stream[0])
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
def test_distillation_is_zero_at_the_teacher_and_positive_after_an_update(cls, tiny_model,
                                                                           quick_stream):
    model = copy.deepcopy(tiny_model)
    s = cls()
    s.setup(model)
    exp = quick_stream.benchmark().train_stream[1]
    wave, texts, _ = _batch(exp)
    teacher = frozen_copy(model)

    def terms():
        with torch.no_grad():
            return s.distillation_loss(*model(wave, texts), *teacher(wave, texts))

    assert all(abs(v.item()) < 1e-6 for v in terms().values())
    _train(model, s, exp)  # the first step: no teacher yet, plain InfoNCE
    assert s.teacher is not None
    assert all(v.item() > 1e-4 for v in terms().values())


def test_l2p_selects_by_key_query_similarity_and_keys_move_to_queries(tiny_model, quick_stream):
    model = copy.deepcopy(tiny_model)
    s = L2P(options={"pool_size": 6, "top_n": 2})
    s.setup(model)
    pool = model.prompter.audio_pool
    exp = quick_stream.benchmark().train_stream[0]
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
    _train(model, s, exp, epochs=2, lr=1e-2)
    assert key_query_similarity() > before
    usage = s.report()["prompt_usage_per_step"]
    assert sum(usage[0]["audio"]) == 2 * 2 * len(exp.dataset)  # epochs x top_n x samples


def test_ewc_penalty_is_zero_at_the_anchor_and_grows_away(tiny_model, quick_stream):
    model = copy.deepcopy(tiny_model)
    s = EWC()
    s.setup(model)
    _train(model, s, quick_stream.benchmark().train_stream[0])
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
def test_every_strategy_trains_exactly_what_it_declares(name, tiny_model, quick_stream):
    """For everything registered: a step changes the declared parameters and nothing else."""
    model = copy.deepcopy(tiny_model)
    s = available_strategies()[name]()
    s.setup(model)
    declared = {id(p) for p in s.trainable_parameters(model)}
    assert declared and all(p.requires_grad for p in s.trainable_parameters(model))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    bench = quick_stream.benchmark(joint=available_strategies()[name].joint)
    _train(model, s, bench.train_stream[0])
    for n, p in model.named_parameters():
        if n in before:
            assert (not torch.equal(before[n], p)) == (id(p) in declared), (name, n)


def test_plugin_strategy_is_listed_and_runs(tmp_path, capsys, _cache):
    main(["list", "--plugin", "plugin_strategy:HeadsOnly"])
    assert "heads-only" in capsys.readouterr().out
    out = tmp_path / "plugin"
    main(["run", "--strategy", "heads-only", "--plugin", "plugin_strategy:HeadsOnly",
          "--preset", "quick", "--epochs", "1", "--out", str(out), "--no-progress"])
    run = json.loads((out / "run.json").read_text())
    entry = run["runs"][0]
    assert entry["method"] == "heads-only" and len(entry["rows"]) == 5
    assert 0 < entry["cost"]["trainable_params"] < entry["cost"]["backbone_params"]


def test_a_crash_keeps_the_steps_already_done(tmp_path, _cache):
    out = tmp_path / "crash"
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["run", "--strategy", "crash-at-3", "--plugin", "plugin_strategy:CrashAtStep3",
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


def test_ewc_penalty_enters_the_loss_weighted_by_importance(tiny_model, quick_stream):
    model = copy.deepcopy(tiny_model)
    s = EWC(options={"lambda_ewc": 3.0})
    s.setup(model)
    _train(model, s, quick_stream.benchmark().train_stream[0])
    name, p = next((n, p) for n, p in model.named_parameters() if n in s.anchor)
    with torch.no_grad():
        p.add_(0.01)
    host = _Host(model)
    s.before_backward(host)
    by_hand = 3.0 / 2 * (s.importance[name] * 0.01 ** 2).sum()
    assert host.loss.item() == pytest.approx(by_hand.item(), rel=1e-4) and host.loss > 0
    s.importance[name] = 2 * s.importance[name]  # twice as important: twice the penalty
    assert s.penalty(model).item() == pytest.approx(2 * by_hand.item(), rel=1e-4)


def test_ewc_anchors_at_the_latest_step_and_accumulates_importance(tiny_model, quick_stream):
    model = copy.deepcopy(tiny_model)
    s = EWC(options={"decay": 0.5})
    s.setup(model)
    bench = quick_stream.benchmark()
    t = _train(model, s, bench.train_stream[0])
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
        exp = quick_stream.benchmark().train_stream[1]
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
    wave, texts, _ = _batch(quick_stream.benchmark().train_stream[0], 8)
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
