"""The one retrieval evaluator every strategy is scored by.

It reads a test experience as Avalanche holds it: the rows' `clip_index` and `caption`
attributes tell which clip each caption belongs to, so each clip is embedded once.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tail_bench.evaluation.retrieval import bidirectional_metrics
from tail_bench.models.dual import DualEncoder
from tail_bench.streams.pairs import collate_pairs

Scores = dict[str, dict[str, dict[str, float]]]  # dataset -> direction -> metric -> value


class RetrievalEvaluator:
    def __init__(self, *, batch_size: int = 128, chunk: int = 1024, num_workers: int = 0,
                 progress: bool = True) -> None:
        self.batch_size, self.chunk, self.progress = batch_size, chunk, progress
        self.num_workers = num_workers

    @torch.no_grad()
    def embed(self, model: DualEncoder, dataset) -> tuple[torch.Tensor, torch.Tensor,
                                                           torch.Tensor]:
        """(clip embeddings, caption embeddings, caption -> clip row) for one test set."""
        clip_index = list(dataset.clip_index)
        first: dict[int, int] = {}
        for row, c in enumerate(clip_index):
            first.setdefault(int(c), row)
        clips = sorted(first)
        position = {c: i for i, c in enumerate(clips)}
        name = dataset.dataset_name[0]
        loader = DataLoader(dataset.subset([first[c] for c in clips]),
                            batch_size=self.batch_size, collate_fn=collate_pairs,
                            num_workers=self.num_workers)
        audio = [model.encode_audio(w.to(model.device)) for w, _ in
                 tqdm(loader, desc=f"eval {name} audio", leave=False, disable=not self.progress)]
        captions = list(dataset.caption)
        text = [model.encode_text(captions[i:i + self.batch_size])
                for i in range(0, len(captions), self.batch_size)]
        owner = torch.tensor([position[int(c)] for c in clip_index], device=model.device)
        return torch.cat(audio), torch.cat(text), owner

    def evaluate(self, model: DualEncoder, test_stream) -> Scores:
        was_training = model.training
        model.eval()
        try:
            out: Scores = {}
            for exp in test_stream:
                audio, text, owner = self.embed(model, exp.dataset)
                out[exp.dataset.dataset_name[0]] = bidirectional_metrics(audio, text, owner,
                                                                         self.chunk)
            return out
        finally:
            model.train(was_training)
