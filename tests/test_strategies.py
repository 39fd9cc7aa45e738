import copy
import json

import pytest
import torch

from strategies.ewc import EWC
from strategies.l2p import L2P
from strategies.lwf import LwF
from strategies.ptat import PTAT
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
    wave, texts = _batch(exp)
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
    wave, _ = _batch(exp, 8)
    with torch.no_grad():
        query = model.audio(wave)
        pool.keys.copy_(torch.randn_like(pool.keys))
        pool.keys[4] = query[0]  # a key equal to sample 0's query wins for sample 0 only
    assert pool.select(query)[0, 0].item() == 4
    cos = torch.nn.functional.cosine_similarity(query[:, None], pool.keys[None], dim=-1)
    assert torch.equal(pool.select(query), cos.topk(2, dim=1).indices)  # per sample

    def key_query_similarity():
        with torch.no_grad():
            q = torch.nn.functional.normalize(model.audio(wave), dim=-1)
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
          "--epochs", "1", "--out", str(out), "--no-progress"])
    run = json.loads((out / "run.json").read_text())
    by = {e["method"]: e for e in run["runs"]}
    assert set(by) == {"ptat", "finetune", "lwf", "ewc", "l2p", "zeroshot", "joint"}
    for name in ("ptat", "finetune", "lwf", "ewc", "l2p"):
        assert [r["step"] for r in by[name]["rows"]] == [0, 1, 2, 3, 4]
        assert by[name]["status"] == "done"
    full = by["finetune"]["cost"]["trainable_params"]
    assert by["ptat"]["cost"]["trainable_params"] < full
    assert by["lwf"]["cost"]["trainable_params"] == by["ewc"]["cost"]["trainable_params"] == full
    assert len(by["l2p"]["extra"]["prompt_usage_per_step"]) == 4
    table = (out / "tables.md").read_text()
    assert "| ptat | 1 |" in table and "share of Finetune" in table


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
    assert run["runs"][0]["status"] == "running"
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
