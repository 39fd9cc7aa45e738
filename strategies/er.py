"""ER: experience replay with a reservoir buffer (Chaudhry et al., "On Tiny Episodic
Memories in Continual Learning", 2019; reservoir sampling: Vitter, 1985).

Every parameter trains, as in Finetune. The buffer holds at most `size` (clip, caption)
pairs, a uniform sample of every training pair seen so far (reservoir sampling, updated
after each step). From step 2 on, each training batch gets `batch` pairs drawn from the
buffer without replacement, appended to it, so old and new pairs are scored against each
other in one InfoNCE (CHOICE: one joint batch, as in Chaudhry et al., rather than a second
loss on the memory batch). The buffer stores the waveforms themselves: its clips and
megabytes are reported in the cost table.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from tail_bench import distributed
from tail_bench.errors import ConfigError
from tail_bench.losses import positive_pairs
from tail_bench.runtime import pcm_to_float
from tail_bench.streams.pairs import collate_pairs
from tail_bench.training.strategy import Strategy


@dataclass
class EROptions:
    size: int = 200  # pairs kept (CHOICE)
    batch: int = 8  # buffer pairs appended to each batch (0: as many as the batch holds);
    # picked on tail-synth's val splits over {8, 16, 32, 0} (docs/strategies.md)


def reservoir(seen: int, incoming: int, size: int, rng: random.Random) -> dict[int, int]:
    """Reservoir sampling of `incoming` new items after `seen` earlier ones: which buffer
    slot each kept new item takes ({slot: new item index}; a later item may take the slot
    of an earlier one). After the update every item seen so far is in the buffer with
    probability min(1, size / (seen + incoming))."""
    slots: dict[int, int] = {}
    for i in range(incoming):
        t = seen + i
        j = t if t < size else rng.randrange(t + 1)
        if j < size:
            slots[j] = i
    return slots


def _as_float_if_mixed(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    if a.dtype == b.dtype:
        return a, b
    return pcm_to_float(a), pcm_to_float(b)


class ER(Strategy):
    name = "er"
    description = "ER: all parameters + a reservoir buffer of earlier pairs in every batch"
    Options = EROptions

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rng = random.Random(torch.initial_seed())  # the run's seed: seeded per method
        self.seen = 0
        self.items: list[tuple[int, str, str]] = []  # (clip key, caption, data set)
        self.waves: dict[int, Tensor] = {}  # clip key -> waveform, one copy per clip

    def check(self, backbone: str) -> None:
        o = self.options
        if o.size < 1 or o.batch < 0:
            raise ConfigError(f"--opt er.size={o.size} / er.batch={o.batch}: expected "
                              "size >= 1 and batch >= 0")

    def sample(self, n: int) -> tuple[Tensor, list[str], Tensor] | None:
        """`n` buffer pairs (or all), drawn without replacement, collated like a batch.
        With several processes every one draws the same pairs (the same generator) and
        keeps its interleaved share of them."""
        picked = self.rng.sample(self.items, min(n, len(self.items)))
        picked = picked[distributed.rank()::distributed.size()]
        if not picked:  # fewer buffer pairs than processes
            return None
        return collate_pairs([(self.waves[k], caption, k) for k, caption, _ in picked])

    def before_forward(self, template, **kwargs) -> None:
        if not self.items:
            return
        wave, texts, keys = template.mbatch
        # as many as the whole batch holds (every process's rows)
        memory = self.sample(self.options.batch or len(texts) * distributed.size())
        if memory is not None:
            m_wave, m_texts, m_keys = memory
            wave, m_wave = _as_float_if_mixed(wave, m_wave.to(wave.device, non_blocking=True))
            keys = torch.cat([keys, m_keys.to(keys.device, non_blocking=True)])
            template.mbatch = (torch.cat([wave, m_wave]), [*texts, *m_texts], keys)
        template.mb_positives = positive_pairs(distributed.gather_rows(keys))

    def after_training_exp(self, template, **kwargs) -> None:
        data = template.experience.dataset
        name = data.dataset_name[0]
        slots = reservoir(self.seen, len(data), self.options.size, self.rng)
        self.seen += len(data)
        for slot, i in sorted(slots.items()):
            wave, caption, key = data[i]
            item = (key, caption, name)
            if slot == len(self.items):
                self.items.append(item)
            else:
                self.items[slot] = item
            if key not in self.waves:
                self.waves[key] = wave.clone()  # own the samples (not a view of the data)
        kept = {k for k, _, _ in self.items}
        self.waves = {k: w for k, w in self.waves.items() if k in kept}

    def cost(self) -> dict:
        size = sum(w.numel() * w.element_size() for w in self.waves.values()) + sum(
            len(c.encode()) for _, c, _ in self.items)
        return {"memory_clips": len(self.waves), "memory_pairs": len(self.items),
                "memory_mb": round(size / 2**20, 3)}

    def report(self) -> dict:
        return {"buffer_pairs_by_dataset": dict(Counter(d for _, _, d in self.items)),
                "pairs_seen": self.seen}

    def state_dict(self) -> dict[str, Any]:
        """The buffer (pairs and waveforms), the pairs seen and the sampler's state."""
        version, mt, gauss = self.rng.getstate()
        return {"rng": [version, list(mt), gauss], "seen": self.seen,
                "items": [list(item) for item in self.items],
                "waves": {str(k): w for k, w in self.waves.items()}}

    def load_state_dict(self, state: dict[str, Any], model) -> None:
        version, mt, gauss = state["rng"]
        self.rng.setstate((version, tuple(mt), gauss))
        self.seen = state["seen"]
        self.items = [(int(k), caption, name) for k, caption, name in state["items"]]
        self.waves = {int(k): w.cpu() for k, w in state["waves"].items()}  # kept on the host
