"""Losses: both directions count, and matching pairs of a batch are never negatives."""

import pytest
import torch
import torch.nn.functional as F

from tail_bench.losses import (
    info_nce,
    kl_distill,
    positive_pairs,
    similarity_distillation,
)


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_info_nce_is_the_mean_of_both_directions():
    audio, text = _unit(6, 8, seed=1), _unit(6, 8, seed=2)
    scale = torch.tensor(2.0)
    logits = scale.exp() * audio @ text.T
    labels = torch.arange(6)
    a2t, t2a = F.cross_entropy(logits, labels), F.cross_entropy(logits.T, labels)
    assert abs(a2t - t2a) > 0.05  # an asymmetric case: dropping a direction shows
    assert info_nce(audio, text, scale).item() == pytest.approx(((a2t + t2a) / 2).item())


def test_positive_pairs_mark_shared_clips_and_identical_captions():
    keys = torch.tensor([7, 7, 3, 4])
    texts = ["a dog", "a dog barks", "drill", "drill"]
    pos = positive_pairs(keys, texts)
    from tail_bench.losses import caption_key
    both = torch.tensor([[k, caption_key(t)] for k, t in zip(keys.tolist(), texts, strict=True)])
    assert torch.equal(positive_pairs(both), pos)  # what collate_pairs hands the template
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]).bool()
    assert torch.equal(pos, expected)


def test_matching_pairs_are_excluded_from_the_negatives():
    audio, text = _unit(4, 8, seed=3), _unit(4, 8, seed=4)
    text[1] = text[0]  # rows 0 and 1: two captions of one clip
    audio[1] = audio[0]
    pos = positive_pairs(torch.tensor([5, 5, 6, 7]), ["x", "y", "z", "w"])
    scale = torch.tensor(1.0)
    logits = scale.exp() * audio @ text.T
    keep = ~(pos & ~torch.eye(4, dtype=torch.bool))
    labels = torch.arange(4)
    ref = sum(F.cross_entropy(m.masked_fill(~keep, float("-inf")), labels)
              for m in (logits, logits.T)) / 2
    assert info_nce(audio, text, scale, pos).item() == pytest.approx(ref.item())
    assert info_nce(audio, text, scale, pos) < info_nce(audio, text, scale)
    # the masked pair gets no gradient from the loss
    a = audio.clone().requires_grad_(True)
    sims = a @ text.T
    sims.retain_grad()
    logits = scale.exp() * sims
    masked = logits.masked_fill(~keep, float("-inf"))
    (F.cross_entropy(masked, labels) + F.cross_entropy(masked.T, labels)).backward()
    assert sims.grad[0, 1] == 0 and sims.grad[1, 0] == 0 and sims.grad[0, 2] != 0


def test_similarity_distillation_uses_both_directions():
    a, t = _unit(5, 8, seed=5), _unit(5, 8, seed=6)
    ta, tt = _unit(5, 8, seed=7), _unit(5, 8, seed=8)
    s, th = a @ t.T, ta @ tt.T
    rows, cols = kl_distill(s, th, 0.1, dim=1), kl_distill(s, th, 0.1, dim=0)
    assert abs(rows - cols) > 1e-3
    assert similarity_distillation(a, t, ta, tt, 0.1).item() == pytest.approx(
        ((rows + cols) / 2).item())
    assert similarity_distillation(ta, tt, ta, tt, 0.1).item() == pytest.approx(0, abs=1e-6)


def test_similarity_distillation_ignores_matching_pairs():
    a, t = _unit(4, 8, seed=9), _unit(4, 8, seed=10)
    ta, tt = _unit(4, 8, seed=11), _unit(4, 8, seed=12)
    pos = positive_pairs(torch.tensor([1, 1, 2, 3]), ["p", "q", "r", "s"])
    keep = ~(pos & ~torch.eye(4, dtype=torch.bool))
    s, th = (a @ t.T).double(), (ta @ tt.T).double()

    def kl(x, y):  # KL(softmax(y/T) || softmax(x/T)) over the kept entries only
        p, q = F.softmax(y / 0.1, 0), F.log_softmax(x / 0.1, 0)
        return float((p * (p.log() - q)).sum())

    rows = sum(kl(s[i][keep[i]], th[i][keep[i]]) for i in range(4)) / 4
    cols = sum(kl(s[:, j][keep[:, j]], th[:, j][keep[:, j]]) for j in range(4)) / 4
    got = similarity_distillation(a, t, ta, tt, 0.1, pos)
    assert got.item() == pytest.approx((rows + cols) / 2, rel=1e-4)
    a = a.clone().requires_grad_(True)
    similarity_distillation(a, t, ta, tt, 0.1, pos).backward()
    assert torch.isfinite(a.grad).all()
