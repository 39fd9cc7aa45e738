import pytest
import torch
from sklearn.metrics import average_precision_score
from torchmetrics.functional.retrieval import retrieval_average_precision, retrieval_hit_rate

from tail_bench.evaluation.retrieval import (
    NonFiniteScores,
    bidirectional_metrics,
    mean_metrics,
    query_metrics,
)


def sorted_query_metrics(scores: torch.Tensor, relevant: torch.Tensor, *,
                         ks: tuple[int, ...], ap_depth: int) -> dict[str, torch.Tensor]:
    """The library's former implementation, a full sort per query: the reference the
    top-k one must equal."""
    relevant = relevant.bool()
    scores = scores.float()
    q, n = scores.shape
    order = scores.argsort(dim=1, descending=True)
    s = scores.gather(1, order)  # sorted, descending
    rel = relevant.gather(1, order).double()
    asc = s.flip(1).contiguous()  # ascending, for searchsorted
    rel_before = torch.cat([rel.new_zeros(q, 1), rel.cumsum(1)], 1)  # (Q, N+1)

    depth = min(max(max(ks), ap_depth), n)
    v = s[:, :depth].contiguous()  # the score at each of the first `depth` positions
    t = n - torch.searchsorted(asc, v, right=True)  # candidates scoring strictly higher
    g = n - torch.searchsorted(asc, v, right=False) - t  # tie group size
    b = rel_before.gather(1, t)  # relevant candidates strictly higher
    r = rel_before.gather(1, t + g) - b  # relevant candidates in the tie group
    pos = torch.arange(1, depth + 1, device=s.device, dtype=torch.float64).expand(q, -1)
    t, g = t.double(), g.double()

    out: dict[str, torch.Tensor] = {}
    for k in ks:
        kk = min(k, n)
        # P(no relevant in the first kk) = [b == 0] * C(g - r, m) / C(g, m), m = kk - t
        tk, gk, rk, bk = t[:, kk - 1], g[:, kk - 1], r[:, kk - 1], b[:, kk - 1]
        m = kk - tk
        none = torch.ones(q, device=s.device, dtype=torch.float64)
        for x in range(kk):
            take = x < m
            none = torch.where(take, none * ((gk - rk - x).clamp(min=0) / (gk - x)), none)
        out[f"R@{k}"] = torch.where(bk > 0, torch.ones_like(none), 1 - none)

    d = min(ap_depth, n)
    pr = r[:, :d] / g[:, :d]
    within = (pos[:, :d] - t[:, :d] - 1) * torch.where(
        g[:, :d] > 1, (r[:, :d] - 1) / (g[:, :d] - 1).clamp(min=1), torch.zeros_like(pr))
    gain = pr * (b[:, :d] + 1 + within) / pos[:, :d]
    n_rel = relevant.sum(1).double()
    out[f"mAP@{ap_depth}"] = gain.sum(1) / n_rel.clamp(max=ap_depth)
    return out


@pytest.mark.parametrize("n, levels", [(7, 2), (50, 3), (50, 50), (300, 5), (2000, 10**9)])
def test_top_k_equals_a_full_sort_with_ties_everywhere(n, levels):
    """Scores drawn from few values tie across the top-k boundary, inside it and past it;
    several relevant candidates per query, and depths beyond and below n."""
    gen = torch.Generator().manual_seed(n + levels % 1000)
    scores = torch.randint(0, min(levels, 2**31 - 1), (64, n), generator=gen).float() / 7
    relevant = torch.rand(64, n, generator=gen) < 3 / n
    relevant[torch.arange(64), torch.randint(0, n, (64,), generator=gen)] = True
    for ks, depth in (((1, 5, 10), 10), ((1, 3), 4), ((1,), 200)):
        got = query_metrics(scores, relevant, ks=ks, ap_depth=depth)
        want = sorted_query_metrics(scores, relevant, ks=ks, ap_depth=depth)
        for key in want:
            torch.testing.assert_close(got[key], want[key], atol=1e-12, rtol=0)


def test_hand_made_single_relevant():
    scores = torch.tensor([[0.9, 0.5, 0.1], [0.9, 0.5, 0.1], [0.2, 0.3, 0.1]])
    relevant = torch.tensor([[1, 0, 0], [0, 0, 1], [0, 0, 1]]).bool()
    m = query_metrics(scores, relevant, ks=(1, 2))
    assert m["R@1"].tolist() == [1, 0, 0]
    assert m["R@2"].tolist() == [1, 0, 0]
    assert m["mAP@10"].tolist() == pytest.approx([1, 1 / 3, 1 / 3])


def _brute_force(scores: torch.Tensor, relevant: torch.Tensor, k: int, d: int = 10):
    """R@k and AP@d averaged over every order of the tied candidates (exact expectation)."""
    import itertools

    s, rel = scores.tolist(), relevant.tolist()
    groups: dict[float, list[int]] = {}
    for j, v in enumerate(s):
        groups.setdefault(v, []).append(j)
    levels = [groups[v] for v in sorted(groups, reverse=True)]
    hits = aps = n = 0
    for orders in itertools.product(*(itertools.permutations(g) for g in levels)):
        ranking = [j for g in orders for j in g]
        flags = [rel[j] for j in ranking]
        hits += any(flags[:k])
        found, ap = 0, 0.0
        for i, f in enumerate(flags[:d], 1):
            if f:
                found += 1
                ap += found / i
        aps += ap / min(sum(rel), d)
        n += 1
    return hits / n, aps / n


@pytest.mark.parametrize("scores, relevant", [
    ([0.5, 0.5, 0.5, 0.1], [0, 0, 1, 0]),
    ([0.5, 0.5, 0.5, 0.1], [1, 0, 1, 0]),
    ([0.9, 0.5, 0.5, 0.5, 0.5, 0.1], [0, 1, 0, 1, 1, 0]),
    ([0.7, 0.7, 0.3, 0.3, 0.3, 0.3, 0.3], [0, 1, 1, 0, 0, 1, 0]),
    ([0.2] * 7, [0, 0, 0, 1, 0, 1, 0]),
])
def test_ties_score_their_expected_value_under_random_order(scores, relevant):
    scores, relevant = torch.tensor([scores]), torch.tensor([relevant]).bool()
    for k in (1, 2, 3):
        m = query_metrics(scores, relevant, ks=(k,), ap_depth=3)
        r, ap = _brute_force(scores[0], relevant[0], k, d=3)
        assert m[f"R@{k}"].item() == pytest.approx(r, abs=1e-6)
        assert m["mAP@3"].item() == pytest.approx(ap, abs=1e-6)


def test_ties_match_a_monte_carlo_over_random_tie_orders():
    g = torch.Generator().manual_seed(3)
    scores = (torch.rand(40, 30, generator=g) * 4).round() / 4  # few levels: many ties
    relevant = torch.rand(40, 30, generator=g) < 0.15
    relevant[torch.arange(40), torch.randint(30, (40,), generator=g)] = True
    ours = query_metrics(scores, relevant)
    draws = 2000
    total = {k: torch.zeros(40) for k in ours}
    for _ in range(draws):  # break ties by a random jitter smaller than the level spacing
        jitter = scores + torch.rand(scores.shape, generator=g) * 1e-3
        for k, v in query_metrics(jitter, relevant).items():
            total[k] += v
    for k, v in ours.items():
        assert (total[k] / draws - v).abs().max() < 0.03, k


def test_a_collapsed_model_scores_exactly_chance():
    n = 50
    emb = torch.ones(n, 8) / 8 ** 0.5  # every embedding equal
    owner = torch.arange(n).repeat_interleave(5)
    m = bidirectional_metrics(emb, emb[owner], owner)
    t2a = {k: float(v.mean()) for k, v in m["t2a"].items()}
    a2t = {k: float(v.mean()) for k, v in m["a2t"].items()}
    for k in (1, 5, 10):
        assert t2a[f"R@{k}"] == pytest.approx(k / n)
        # a2t: 5 of 250 captions relevant; P(none in the first k) = C(245, k) / C(250, k)
        none = 1.0
        for x in range(k):
            none *= (245 - x) / (250 - x)
        assert a2t[f"R@{k}"] == pytest.approx(1 - none)
    assert t2a["mAP@10"] == pytest.approx(sum(1 / i for i in range(1, 11)) / n)


def test_non_finite_scores_raise():
    scores = torch.tensor([[0.1, float("nan"), 0.3]])
    with pytest.raises(NonFiniteScores, match="non-finite"):
        query_metrics(scores, torch.tensor([[1, 0, 0]]).bool())


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
    a = mean_metrics(bidirectional_metrics(audio, text, owner, chunk=7))
    b = mean_metrics(bidirectional_metrics(audio, text, owner, chunk=1000))
    for d in ("t2a", "a2t"):
        for k in a[d]:
            assert a[d][k] == pytest.approx(b[d][k])
    assert a["a2t"]["R@1"] > a["t2a"]["R@1"] > 1 / 30  # five chances per clip beat one


def test_perfect_and_errors():
    emb = torch.eye(4)
    m = mean_metrics(bidirectional_metrics(emb, emb, torch.arange(4)))
    assert all(v == 1.0 for d in m.values() for v in d.values())
    with pytest.raises(ValueError, match="query 1 has no relevant"):
        query_metrics(torch.rand(2, 3), torch.tensor([[1, 0, 0], [0, 0, 0]]).bool())
