"""L2P for retrieval: frozen towers, a prompt pool with learnable keys per modality.

Each sample's query is its frozen tower output without prompts; the top-N keys by cosine
similarity pick the prompts prepended to that sample (per sample, never a batch vote, which
would leak the data set's identity at test time). Loss: InfoNCE - lambda * mean key-query
similarity of the chosen keys. How often each prompt is chosen is recorded per step, since
pools tend to collapse onto a few prompts; `diversity` (off by default) penalises prompts
chosen often in earlier steps while training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tail_bench import distributed
from tail_bench.models.dual import DualEncoder
from tail_bench.training.strategy import Strategy, train_heads


@dataclass
class L2POptions:
    pool_size: int = 10
    prompt_length: int = 4  # tokens per prompt
    top_n: int = 3  # prompts chosen per sample
    lambda_key: float = 0.5
    diversity: float = 0.0  # > 0: subtract diversity * (share of earlier choices) from scores
    lr: float = 1e-3  # 0: the run's lr (picked on val over {1e-3, 3e-3})


class PromptPool(nn.Module):
    def __init__(self, *, width: int, size: int, length: int, top_n: int) -> None:
        super().__init__()
        self.prompts = nn.Parameter(torch.randn(size, length, width) * 0.02)
        self.keys = nn.Parameter(torch.randn(size, width) * 0.02)
        self.top_n = top_n
        self.register_buffer("counts", torch.zeros(size))  # choices during this step
        self.register_buffer("history", torch.zeros(size))  # choices in earlier steps
        self.diversity = 0.0
        self.key_similarity: Tensor | None = None

    def select(self, query: Tensor) -> Tensor:
        """Indices (B, top_n) of the prompts each sample picks."""
        scores = F.normalize(query, dim=-1) @ F.normalize(self.keys, dim=-1).T
        if self.training and self.diversity and self.history.sum() > 0:
            scores = scores - self.diversity * self.history / self.history.sum()
        return scores.topk(self.top_n, dim=1).indices

    def forward(self, query: Tensor) -> Tensor:
        idx = self.select(query)
        if self.training:
            self.counts += torch.bincount(idx.flatten(), minlength=len(self.counts))
            keys = F.normalize(self.keys[idx], dim=-1)
            self.key_similarity = (keys * F.normalize(query, dim=-1)[:, None]).sum(-1).mean()
        return self.prompts[idx].flatten(1, 2)  # (B, top_n * length, width)


class L2PPrompter(nn.Module):
    def __init__(self, *, audio_width: int, text_width: int, o: L2POptions) -> None:
        super().__init__()
        kw = {"size": o.pool_size, "length": o.prompt_length, "top_n": o.top_n}
        self.audio_pool = PromptPool(width=audio_width, **kw)
        self.text_pool = PromptPool(width=text_width, **kw)

    def audio(self, model: DualEncoder, features: Tensor) -> Tensor:
        with torch.no_grad():
            query = model.audio(features)  # the frozen tower without prompts, same features
        return self.audio_pool(query)

    def text(self, model: DualEncoder, tokens: dict[str, Tensor]) -> tuple[Tensor, None]:
        with torch.no_grad():
            query = model.text(tokens)
        return self.text_pool(query), None


class L2P(Strategy):
    name = "l2p"
    description = "L2P: frozen towers + per-sample prompts picked from a keyed pool"
    Options = L2POptions

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.usage: list[dict[str, list[int]]] = []
        self.prompter: L2PPrompter | None = None

    def setup(self, model: DualEncoder) -> None:
        for p in model.parameters():
            p.requires_grad_(False)
        self.prompter = L2PPrompter(audio_width=model.audio.width,
                                    text_width=model.text.width, o=self.options)
        for pool in (self.prompter.audio_pool, self.prompter.text_pool):
            pool.diversity = self.options.diversity
        model.prompter = self.prompter.to(model.device)
        train_heads(model, model.prompter)

    def before_backward(self, template, **kwargs) -> None:
        sims = [p.key_similarity for p in (self.prompter.audio_pool, self.prompter.text_pool)]
        template.add_loss("key", -self.options.lambda_key * sum(sims) / 2)

    def after_training_exp(self, template, **kwargs) -> None:
        step = {}
        for name, pool in (("audio", self.prompter.audio_pool),
                           ("text", self.prompter.text_pool)):
            distributed.all_reduce_sum(pool.counts)  # every process's choices
            step[name] = [int(c) for c in pool.counts.tolist()]
            pool.history += pool.counts
            pool.counts.zero_()
        self.usage.append(step)

    def report(self) -> dict:
        return {"prompt_usage_per_step": self.usage}

    def state_dict(self) -> dict[str, Any]:
        """The pools' counts and history are model buffers (in the model's checkpoint)."""
        return {"usage": self.usage}

    def load_state_dict(self, state: dict[str, Any], model: DualEncoder) -> None:
        self.usage = state["usage"]
