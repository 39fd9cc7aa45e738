"""Retrieval metrics, functional core: scores and relevance in, per-query values out.

Definitions (docs/metrics.md). Candidates are ranked by score, highest first, and ties are
scored at their expected value under a uniformly random order of the tied candidates
(McSherry & Najork, ECIR 2008), so a collapsed model (every score equal) scores chance.
- R@k: the probability that a relevant candidate is among the first k.
- AP@d: sum over positions i <= d of E[rel_i * precision@i], divided by
  min(number relevant, d). mAP@10 is its mean with d = 10. Without ties and with one
  relevant candidate it is 1/rank when rank <= 10, else 0.
For a tie group occupying positions t+1..t+g with r relevant candidates and b relevant
candidates scoring strictly higher, every position i in it is relevant with probability
r/g, and given that, precision@i has expectation (b + 1 + (i-t-1)(r-1)/(g-1)) / i.
Non-finite scores are an error, never a rank.
"""

from __future__ import annotations

import torch
from torch import Tensor

KS = (1, 5, 10)


class NonFiniteScores(ValueError):
    """Scores with NaN or inf: the embeddings diverged; nothing can be ranked."""


def _check(scores: Tensor, relevant: Tensor) -> None:
    if scores.shape != relevant.shape or scores.dim() != 2:
        raise ValueError(f"scores {tuple(scores.shape)} and relevant {tuple(relevant.shape)} "
                         "must be the same (queries, candidates) shape")
    if not bool(torch.isfinite(scores).all()):
        q = int((~torch.isfinite(scores)).any(1).nonzero()[0])
        raise NonFiniteScores(f"non-finite similarity scores (first at query {q}): "
                              "the embeddings are NaN or inf")
    n_rel = relevant.sum(1)
    if bool((n_rel == 0).any()):
        q = int((n_rel == 0).nonzero()[0])
        raise ValueError(f"query {q} has no relevant candidate")


def query_metrics(scores: Tensor, relevant: Tensor, *, ks: tuple[int, ...] = KS,
                  ap_depth: int = 10) -> dict[str, Tensor]:
    """Per-query R@k and AP@depth for `scores` (Q, N) and a boolean `relevant` (Q, N)."""
    relevant = relevant.bool()
    _check(scores, relevant)
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

    out: dict[str, Tensor] = {}
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


def retrieval_metrics(queries: Tensor, candidates: Tensor, relevant_of: Tensor,
                      candidate_group: Tensor, *, chunk: int = 1024) -> dict[str, Tensor]:
    """Per-query metrics for embedding queries vs candidates, `chunk` queries at a time.

    A candidate j is relevant to query i when candidate_group[j] == relevant_of[i]; memory
    stays O(chunk x candidates) however large the test set.
    """
    parts: dict[str, list[Tensor]] = {}
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk].float()
        scores = q @ candidates.float().T
        relevant = candidate_group[None, :] == relevant_of[start:start + chunk, None]
        for k, v in query_metrics(scores, relevant).items():
            parts.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in parts.items()}


def bidirectional_metrics(audio: Tensor, text: Tensor, caption_clip: Tensor,
                          chunk: int = 1024) -> dict[str, dict[str, Tensor]]:
    """Per-query values. t2a: each caption finds its one clip (one value per caption).
    a2t: each clip finds any of its captions (one value per clip)."""
    clips = torch.arange(len(audio), device=audio.device)
    return {
        "t2a": retrieval_metrics(text, audio, caption_clip, clips, chunk=chunk),
        "a2t": retrieval_metrics(audio, text, clips, caption_clip, chunk=chunk),
    }


def mean_metrics(per_query: dict[str, dict[str, Tensor]]) -> dict[str, dict[str, float]]:
    """Means of `bidirectional_metrics`' per-query values."""
    return {d: {k: float(v.mean()) for k, v in m.items()} for d, m in per_query.items()}
