"""PairSet: one split of one text-audio data set, and its Avalanche view.

Rows are (clip, caption) pairs; a clip with five captions is five rows. The evaluator needs
the clip behind each caption, so every row carries `clip_index`, `caption` and
`dataset_name` as Avalanche data attributes (they survive subset and concat). A training
item is (waveform, caption, clip key): the key tells the loss which rows share a clip.

Avalanche's plugins read batches as (x, y, task labels): the datasets' `collate_fn`
(`collate_avalanche`) gives them the waveforms, a target tensor that holds the keys and
the caption itself (`encode_targets`), and task label 0 (TAIL gives no task id), and the
rows carry `targets` (the clip: rows of one clip share it) and `targets_task_labels`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from tail_bench.losses import caption_key
from tail_bench.runtime import pcm_to_float


@dataclass
class PairSet:
    dataset: str
    split: str
    clips: Sequence[np.ndarray] | np.ndarray  # indexable: clip index -> float32 waveform
    clip_ids: list[str]
    captions: list[str]
    caption_clip: list[int]  # caption row -> clip index
    sample_rate: int

    def __post_init__(self) -> None:
        if len(self.captions) != len(self.caption_clip):
            raise ValueError(f"{self.dataset}/{self.split}: {len(self.captions)} captions but "
                             f"{len(self.caption_clip)} caption->clip links")
        if len(self.clips) != len(self.clip_ids):
            raise ValueError(f"{self.dataset}/{self.split}: {len(self.clips)} clips but "
                             f"{len(self.clip_ids)} clip ids")
        bad = [i for i, c in enumerate(self.caption_clip) if not 0 <= c < len(self.clip_ids)]
        if bad:
            raise ValueError(f"{self.dataset}/{self.split}: caption row {bad[0]} points to clip "
                             f"{self.caption_clip[bad[0]]}, expected 0..{len(self.clip_ids) - 1}")

    def __len__(self) -> int:
        return len(self.captions)

    def describe(self) -> dict[str, Any]:
        return {"clips": len(self.clip_ids), "captions": len(self.captions)}

    def to_avalanche(self):
        from avalanche.benchmarks.utils import AvalancheDataset, DataAttribute

        n = len(self.captions)
        width = max((len(c.encode()) for c in self.captions), default=0)
        return AvalancheDataset([_PairRows(self)], data_attributes=[
            DataAttribute(list(self.caption_clip), "clip_index"),
            DataAttribute(list(self.captions), "caption"),
            DataAttribute([self.dataset] * n, "dataset_name"),
            DataAttribute(list(self.caption_clip), "targets"),
            DataAttribute([0] * n, "targets_task_labels"),
        ], collate_fn=partial(collate_avalanche, width=width))


def test_view(dataset) -> tuple[Any, list[str], list[int], str]:
    """What scoring one test set needs from its Avalanche dataset: one row per clip (in clip
    order), every caption row's text, the position of each caption's clip among those rows,
    and the data set's name."""
    clip_index = [int(c) for c in dataset.clip_index]
    first: dict[int, int] = {}
    for row, c in enumerate(clip_index):
        first.setdefault(c, row)
    clips = sorted(first)
    position = {c: i for i, c in enumerate(clips)}
    return (dataset.subset([first[c] for c in clips]), list(dataset.caption),
            [position[c] for c in clip_index], dataset.dataset_name[0])


def clip_key(dataset: str, clip: int) -> int:
    """A stable integer per (data set, clip), so a joint batch never confuses clips."""
    return zlib.crc32(f"{dataset}/{clip}".encode()) & 0x7FFFFFFF


class _PairRows(Dataset):
    def __init__(self, pairs: PairSet) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str, int]:
        c = self.pairs.caption_clip[i]
        clip = np.asarray(self.pairs.clips[c])
        wave = torch.from_numpy(clip if clip.dtype == np.int16 else clip.astype(np.float32))
        return wave, self.pairs.captions[i], clip_key(self.pairs.dataset, c)


def collate_pairs(batch: list[tuple[torch.Tensor, str, int]]
                  ) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """Stack equal-length clips (16-bit PCM stays PCM unless the batch mixes formats);
    captions stay strings (the model tokenizes them). Keys (B, 2): clip key and caption key,
    what the losses need to tell matching pairs, made here so they reach the device without
    a host sync."""
    waves, texts, clips = zip(*batch, strict=True)
    if len({w.dtype for w in waves}) > 1:
        waves = [pcm_to_float(w) for w in waves]
    keys = torch.tensor([[c, caption_key(t)] for c, t in zip(clips, texts, strict=True)])
    return torch.stack(list(waves)), list(texts), keys


PAD = -1  # after the caption's bytes in a target row (UTF-8 never encodes a byte as -1)


def encode_targets(texts: Sequence[str], keys: torch.Tensor, width: int = 0) -> torch.Tensor:
    """Avalanche's `mb_y` for a batch: (B, 2 + W) int64, the clip and caption keys followed
    by the caption's UTF-8 bytes, padded with -1 to at least `width` bytes. The caption
    travels inside the target so that a plugin's own `criterion(model(x), y)` (EWC's
    importances, GEM's and AGEM's memories) can embed it; a data set's width is its longest
    caption, so every batch of one data set has the same shape (GEM concatenates them)."""
    raw = [t.encode() for t in texts]
    out = torch.full((len(raw), 2 + max(width, *map(len, raw), 0)), PAD, dtype=torch.int64)
    out[:, :2] = keys
    for row, b in enumerate(raw):
        out[row, 2:2 + len(b)] = torch.frombuffer(bytearray(b), dtype=torch.uint8)
    return out


def decode_targets(y: torch.Tensor) -> tuple[list[str], torch.Tensor]:
    """The captions and keys (B, 2) that `encode_targets` packed into `y`."""
    data = y[:, 2:].cpu()
    texts = [bytes(row[row != PAD].to(torch.uint8).tolist()).decode() for row in data]
    return texts, y[:, :2]


def collate_avalanche(batch: list[tuple[torch.Tensor, str, int]], width: int = 0
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(waveforms, targets, task labels): Avalanche's batch layout, what a data set's
    `collate_fn` gives every loader (the template's and the plugins' own)."""
    wave, texts, keys = collate_pairs(batch)
    return wave, encode_targets(texts, keys, width), torch.zeros(len(texts), dtype=torch.int64)
