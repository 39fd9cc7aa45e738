"""Retrieval metrics, functional core: scores and relevance in, per-query values out.

Definitions (docs/metrics.md):
- Items are ranked by score, highest first. The rank of the best relevant item is
  1 + the number of candidates scoring strictly higher (ties resolve in the query's favour).
- R@k: 1 if a relevant item has rank <= k.
- AP@d: relevant items take positions in score order, ties among relevant items in any
  order and ahead of tied non-relevant ones; the m-th relevant item sits at position
  p_m = m + (non-relevant items scoring strictly higher). AP@d = sum over p_m <= d of
  m / p_m, divided by min(number relevant, d). mAP@10 is its mean with d = 10.
  With one relevant item this is 1/rank when rank <= 10, else 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

KS = (1, 5, 10)


def query_metrics(scores: Tensor, relevant: Tensor, *, ks: tuple[int, ...] = KS,
                  ap_depth: int = 10) -> dict[str, Tensor]:
    """Per-query R@k and AP@depth for `scores` (Q, N) and a boolean `relevant` (Q, N)."""
    if scores.shape != relevant.shape or scores.dim() != 2:
        raise ValueError(f"scores {tuple(scores.shape)} and relevant {tuple(relevant.shape)} "
                         "must be the same (queries, candidates) shape")
    relevant = relevant.bool()
    n_rel = relevant.sum(1)
    if bool((n_rel == 0).any()):
        q = int((n_rel == 0).nonzero()[0])
        raise ValueError(f"query {q} has no relevant candidate")
    scores = scores.float()
    n = scores.shape[1]
    nonrel = scores.masked_fill(relevant, float("-inf")).sort(dim=1).values
    depth = int(n_rel.max())
    rel = scores.masked_fill(~relevant, float("-inf")).topk(depth, dim=1).values
    higher = n - torch.searchsorted(nonrel, rel.contiguous(), right=True)
    m = torch.arange(1, depth + 1, device=scores.device).expand_as(higher)
    pos = (m + higher).float()
    valid = m <= n_rel[:, None]
    out = {f"R@{k}": (pos[:, 0] <= k).float() for k in ks}
    hits = valid & (pos <= ap_depth)
    ap = torch.where(hits, m / pos, torch.zeros_like(pos)).sum(1)
    out[f"mAP@{ap_depth}"] = ap / n_rel.clamp(max=ap_depth).float()
    return out


def retrieval_metrics(queries: Tensor, candidates: Tensor, relevant_of: Tensor,
                      candidate_group: Tensor, *, chunk: int = 1024) -> dict[str, float]:
    """Mean metrics for embedding queries vs candidates, `chunk` queries at a time.

    A candidate j is relevant to query i when candidate_group[j] == relevant_of[i]; memory
    stays O(chunk x candidates) however large the test set.
    """
    sums: dict[str, float] = {}
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]
        scores = q @ candidates.T
        relevant = candidate_group[None, :] == relevant_of[start:start + chunk, None]
        for k, v in query_metrics(scores, relevant).items():
            sums[k] = sums.get(k, 0.0) + float(v.sum())
    return {k: v / len(queries) for k, v in sums.items()}


def bidirectional_metrics(audio: Tensor, text: Tensor, caption_clip: Tensor,
                          chunk: int = 1024) -> dict[str, dict[str, float]]:
    """t2a: each caption finds its one clip. a2t: each clip finds any of its captions."""
    clips = torch.arange(len(audio), device=audio.device)
    return {
        "t2a": retrieval_metrics(text, audio, caption_clip, clips, chunk=chunk),
        "a2t": retrieval_metrics(audio, text, clips, caption_clip, chunk=chunk),
    }
