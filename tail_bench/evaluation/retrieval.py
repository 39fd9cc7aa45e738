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


def _check(scores: Tensor, relevant: Tensor) -> Tensor:
    """The number of relevant candidates per query, after checking the inputs."""
    if scores.shape != relevant.shape or scores.dim() != 2:
        raise ValueError(f"scores {tuple(scores.shape)} and relevant {tuple(relevant.shape)} "
                         "must be the same (queries, candidates) shape")
    finite = torch.isfinite(scores.sum(1, dtype=torch.float64))  # NaN and inf propagate
    if not bool(finite.all()):
        q = int((~finite).nonzero()[0])
        raise NonFiniteScores(f"non-finite similarity scores (first at query {q}): "
                              "the embeddings are NaN or inf")
    n_rel = _count(relevant)
    if bool((n_rel == 0).any()):
        q = int((n_rel == 0).nonzero()[0])
        raise ValueError(f"query {q} has no relevant candidate")
    return n_rel


def _count(mask: Tensor) -> Tensor:
    """True entries per row, as float64 (an int32 sum: twice as fast as bool's int64)."""
    return mask.sum(1, keepdim=False, dtype=torch.int32).double()


def query_metrics(scores: Tensor, relevant: Tensor, *, ks: tuple[int, ...] = KS,
                  ap_depth: int = 10) -> dict[str, Tensor]:
    """Per-query R@k and AP@depth for `scores` (Q, N) and a boolean `relevant` (Q, N).

    Linear in N per query: only the first `depth` positions matter, so the top `depth`
    scores (`topk`) stand in for a full sort. Every candidate scoring above one of those
    is itself among them, so the counts before each position come from the top alone,
    except the tie group of the last top score, which may reach past it: that group is
    counted over the whole row."""
    relevant = relevant.bool()
    n_rel = _check(scores, relevant)
    scores = scores.float()
    q, n = scores.shape
    depth = min(max(max(ks), ap_depth), n)
    v, idx = scores.topk(depth, dim=1)  # (Q, D), descending
    rel_top = relevant.gather(1, idx).double()
    higher = v[:, None, :] > v[:, :, None]  # [q, j, i]: top score i above top score j
    same = v[:, None, :] == v[:, :, None]
    t = higher.sum(2).double()  # candidates scoring strictly higher than position j's
    b = (higher * rel_top[:, None, :]).sum(2)  # relevant ones among them
    last = v[:, -1:]
    at_last = scores == last  # the last top score's tie group, over the whole row
    in_last = v == last
    g = torch.where(in_last, _count(at_last)[:, None], same.sum(2).double())
    r = torch.where(in_last, _count(at_last & relevant)[:, None],
                    (same * rel_top[:, None, :]).sum(2))
    pos = torch.arange(1, depth + 1, device=scores.device, dtype=torch.float64).expand(q, -1)

    out: dict[str, Tensor] = {}
    for k in ks:
        kk = min(k, n)
        # P(no relevant in the first kk) = [b == 0] * C(g - r, m) / C(g, m), m = kk - t
        tk, gk, rk, bk = t[:, kk - 1], g[:, kk - 1], r[:, kk - 1], b[:, kk - 1]
        m = kk - tk
        none = torch.ones(q, device=scores.device, dtype=torch.float64)
        for x in range(kk):
            take = x < m
            none = torch.where(take, none * ((gk - rk - x).clamp(min=0) / (gk - x)), none)
        out[f"R@{k}"] = torch.where(bk > 0, torch.ones_like(none), 1 - none)

    d = min(ap_depth, n)
    pr = r[:, :d] / g[:, :d]
    within = (pos[:, :d] - t[:, :d] - 1) * torch.where(
        g[:, :d] > 1, (r[:, :d] - 1) / (g[:, :d] - 1).clamp(min=1), torch.zeros_like(pr))
    gain = pr * (b[:, :d] + 1 + within) / pos[:, :d]
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
