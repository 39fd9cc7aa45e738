import pytest
import torch
from sklearn.metrics import average_precision_score
from torchmetrics.functional.retrieval import retrieval_average_precision, retrieval_hit_rate

from tail_bench.evaluation.retrieval import bidirectional_metrics, query_metrics


def test_hand_made_single_relevant():
    scores = torch.tensor([[0.9, 0.5, 0.1], [0.9, 0.5, 0.1], [0.2, 0.3, 0.1]])
    relevant = torch.tensor([[1, 0, 0], [0, 0, 1], [0, 0, 1]]).bool()
    m = query_metrics(scores, relevant, ks=(1, 2))
    assert m["R@1"].tolist() == [1, 0, 0]
    assert m["R@2"].tolist() == [1, 0, 0]
    assert m["mAP@10"].tolist() == pytest.approx([1, 1 / 3, 1 / 3])


def test_ties_count_only_strictly_higher():
    scores = torch.tensor([[0.5, 0.5, 0.5, 0.1]])
    m = query_metrics(scores, torch.tensor([[0, 0, 1, 0]]).bool())
    assert m["R@1"].item() == 1 and m["mAP@10"].item() == 1
    # two relevant items tied with a non-relevant one: positions 1 and 2, AP = 1
    m = query_metrics(scores, torch.tensor([[1, 0, 1, 0]]).bool())
    assert m["mAP@10"].item() == pytest.approx(1.0)


def test_several_relevant_captions_hand_computed():
    # ranking: r, n, r, n, r  -> AP@10 = (1/1 + 2/3 + 3/5) / 3
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5]])
    rel = torch.tensor([[1, 0, 1, 0, 1]]).bool()
    m = query_metrics(scores, rel)
    assert m["mAP@10"].item() == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # depth 2 only sees the first: (1/1) / min(3, 2)
    assert query_metrics(scores, rel, ap_depth=2)["mAP@2"].item() == pytest.approx(0.5)


def test_agrees_with_torchmetrics_and_sklearn_on_random_cases():
    g = torch.Generator().manual_seed(0)
    q, n = 50, 40
    scores = torch.rand(q, n, generator=g) + 0.01  # positive and tie-free
    relevant = torch.rand(q, n, generator=g) < 0.1
    relevant[torch.arange(q), torch.randint(n, (q,), generator=g)] = True
    ours = query_metrics(scores, relevant, ks=(1, 5, 10), ap_depth=n)
    ours10 = query_metrics(scores, relevant)
    for i in range(q):
        for k in (1, 5, 10):
            assert ours[f"R@{k}"][i] == retrieval_hit_rate(scores[i], relevant[i], top_k=k)
        # full depth: sklearn's average precision
        assert ours[f"mAP@{n}"][i].item() == pytest.approx(
            average_precision_score(relevant[i].numpy(), scores[i].numpy()))
        # torchmetrics' AP@10 divides by the relevant items found in the top 10; ours by
        # min(#relevant, 10): rescale to compare
        found = relevant[i][scores[i].topk(10).indices].sum().item()
        tm = retrieval_average_precision(scores[i], relevant[i], top_k=10).item()
        expect = tm * found / min(int(relevant[i].sum()), 10)
        assert ours10["mAP@10"][i].item() == pytest.approx(expect)


def test_bidirectional_chunking_does_not_change_results():
    g = torch.Generator().manual_seed(1)
    audio = torch.nn.functional.normalize(torch.randn(30, 8, generator=g), dim=1)
    owner = torch.arange(30).repeat_interleave(5)
    text = torch.nn.functional.normalize(audio[owner] + 0.8 * torch.randn(150, 8, generator=g),
                                         dim=1)
    a = bidirectional_metrics(audio, text, owner, chunk=7)
    b = bidirectional_metrics(audio, text, owner, chunk=1000)
    for d in ("t2a", "a2t"):
        for k in a[d]:
            assert a[d][k] == pytest.approx(b[d][k])
    assert a["a2t"]["R@1"] > a["t2a"]["R@1"] > 1 / 30  # five chances per clip beat one


def test_perfect_and_errors():
    emb = torch.eye(4)
    m = bidirectional_metrics(emb, emb, torch.arange(4))
    assert all(v == 1.0 for d in m.values() for v in d.values())
    with pytest.raises(ValueError, match="query 1 has no relevant"):
        query_metrics(torch.rand(2, 3), torch.tensor([[1, 0, 0], [0, 0, 0]]).bool())
