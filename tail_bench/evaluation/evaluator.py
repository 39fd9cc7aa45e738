"""The one retrieval evaluator every strategy is scored by.

It reads a test experience as Avalanche holds it: the rows' `clip_index` and `caption`
attributes tell which clip each caption belongs to, so each clip is embedded once, and
each distinct caption string is embedded once (identical strings get identical
embeddings whatever the batch, and tie exactly). Every test set of an evaluation is
embedded in one pass of full batches (`embed_sets`). Every score comes with a clip-level
bootstrap 95% interval; the per-clip sums behind it are returned for paired tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Subset

from tail_bench import distributed
from tail_bench.evaluation import bootstrap
from tail_bench.evaluation.bootstrap import ClipScores
from tail_bench.evaluation.galleries import GALLERIES, union_key
from tail_bench.evaluation.retrieval import bidirectional_metrics, retrieval_metrics
from tail_bench.models.dual import DualEncoder
from tail_bench.progress import progress
from tail_bench.runtime import autocast
from tail_bench.streams.pairs import collate_pairs, test_view

# dataset -> direction -> metric -> {"value": float, "ci95": [low, high]}
Scores = dict[str, dict[str, dict[str, dict]]]


@dataclass
class Evaluation:
    scores: Scores
    clips: ClipScores


@dataclass
class Gallery:
    """Every test set's candidates together; the scored set's clips start at row `offset`."""

    audio: torch.Tensor
    text: torch.Tensor
    owner: torch.Tensor  # caption row -> clip row of `audio`
    offset: int = 0


def score_set(audio: torch.Tensor, text: torch.Tensor, owner: torch.Tensor, *,
              chunk: int = 1024, gallery: Gallery | None = None
              ) -> tuple[dict[str, dict[str, dict]], dict[str, dict[str, np.ndarray]],
                         dict[str, np.ndarray]]:
    """Scores with 95% intervals, per-clip sums and counts for one test set: its queries
    against its own candidates, or against `gallery` (which holds them)."""
    n = len(audio)
    if gallery is None:
        per_query = bidirectional_metrics(audio, text, owner, chunk)
    else:
        clips = torch.arange(n, device=audio.device) + gallery.offset
        per_query = {
            "t2a": retrieval_metrics(text, gallery.audio, owner + gallery.offset,
                                     torch.arange(len(gallery.audio), device=audio.device),
                                     chunk=chunk),
            "a2t": retrieval_metrics(audio, gallery.text, clips, gallery.owner, chunk=chunk)}
    owner_np = owner.cpu().numpy()
    query_clip = {"t2a": owner_np, "a2t": np.arange(n)}
    scores: dict[str, dict[str, dict]] = {}
    sums: dict[str, dict[str, np.ndarray]] = {}
    counts: dict[str, np.ndarray] = {}
    for direction, metrics in per_query.items():
        counts[direction] = np.bincount(query_clip[direction], minlength=n).astype(np.float64)
        sums[direction], scores[direction] = {}, {}
        for metric, values in metrics.items():
            s = bootstrap.clip_sums(values.double().cpu().numpy(), query_clip[direction], n)
            lo, hi = bootstrap.ci(s, counts[direction])
            sums[direction][metric] = s
            scores[direction][metric] = {"value": float(s.sum() / counts[direction].sum()),
                                         "ci95": [lo, hi]}
    return scores, sums, counts


class RetrievalEvaluator:
    def __init__(self, *, batch_size: int = 128, chunk: int = 1024, num_workers: int = 0,
                 progress: bool = True, precision: str = "fp32",
                 gallery: str = "per-dataset") -> None:
        if gallery not in GALLERIES:
            raise ValueError(f"gallery {gallery!r}: expected one of {GALLERIES}")
        self.batch_size, self.chunk, self.progress = batch_size, chunk, progress
        self.num_workers, self.precision = num_workers, precision
        self.union = gallery != "per-dataset"

    def embed(self, model: DualEncoder, dataset) -> tuple[torch.Tensor, torch.Tensor,
                                                           torch.Tensor]:
        """(clip embeddings, caption embeddings, caption -> clip row) for one test set."""
        return self.embed_sets(model, [dataset])[0]

    @torch.no_grad()
    def embed_sets(self, model: DualEncoder, datasets: list
                   ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """`embed` for several test sets at once, in full batches: the clips of every set
        go through one loader (only the very last batch is partial), and the distinct
        captions of every set are embedded once, in batches of similar length (ordered by
        length: little padding). A clip's or caption's embedding does not depend on its
        batch (eval mode), so this equals embedding set by set (tested). With several
        processes each encodes a contiguous share and all gather the rest."""
        views = [test_view(d) for d in datasets]
        clips = ConcatDataset([clips for clips, *_ in views])
        cuda = model.device.type == "cuda"
        loader = DataLoader(Subset(clips, distributed.shard(len(clips))),
                            batch_size=self.batch_size, collate_fn=collate_pairs,
                            num_workers=self.num_workers, pin_memory=cuda)
        names = "+".join(name for *_, name in views)
        distinct = sorted({c for _, captions, *_ in views for c in captions},
                          key=lambda c: (len(c), c))
        row_of = {c: i for i, c in enumerate(distinct)}
        mine = [distinct[i] for i in distributed.shard(len(distinct))]
        with autocast(model.device, self.precision):
            audio = [model.encode_audio(batch[0].to(model.device, non_blocking=True)).float()
                     for batch in progress(loader, desc=f"eval {names} audio", leave=False,
                                           enabled=self.progress)]
            text = [model.encode_text(mine[i:i + self.batch_size]).float()
                    for i in range(0, len(mine), self.batch_size)]
        audio = distributed.gather_rows(torch.cat(audio))
        text = distributed.gather_rows(torch.cat(text))
        out, start = [], 0
        for set_clips, captions, owner, _ in views:
            rows = torch.tensor([row_of[c] for c in captions], device=text.device)
            out.append((audio[start:start + len(set_clips)], text[rows],
                        torch.tensor(owner, device=model.device)))
            start += len(set_clips)
        return out

    def evaluate(self, model: DualEncoder, test_stream) -> Evaluation:
        was_training = model.training
        model.eval()
        try:
            datasets = [exp.dataset for exp in test_stream]
            sets = [(d.dataset_name[0], *embedded) for d, embedded
                    in zip(datasets, self.embed_sets(model, datasets), strict=True)]
            return score_embedded(sets, union=self.union, chunk=self.chunk)
        finally:
            model.train(was_training)


def score_embedded(sets: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]], *,
                   union: bool, chunk: int = 1024) -> Evaluation:
    """Every test set's scores from its (name, clip embeddings, caption embeddings,
    caption -> clip row): against its own candidates, and with `union` also against the
    union of every set's candidates (under `union:<name>`)."""
    result = Evaluation({}, ClipScores())

    def add(key: str, scored: tuple) -> None:
        result.scores[key], result.clips.sums[key], result.clips.counts[key] = scored

    for name, audio, text, owner in sets:
        add(name, score_set(audio, text, owner, chunk=chunk))
    if union:
        offsets = np.cumsum([0] + [len(a) for _, a, _, _ in sets])
        gallery = Gallery(torch.cat([a for _, a, _, _ in sets]),
                          torch.cat([t for _, _, t, _ in sets]),
                          torch.cat([o + int(off) for (*_, o), off
                                     in zip(sets, offsets, strict=False)]))
        for (name, audio, text, owner), off in zip(sets, offsets, strict=False):
            gallery.offset = int(off)
            add(union_key(name), score_set(audio, text, owner, chunk=chunk, gallery=gallery))
    return result
