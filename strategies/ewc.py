"""EWC for retrieval, online variant (Schwarz et al. 2018).

After each step a diagonal Fisher is estimated from squared InfoNCE gradients of the
step's batches (empirical Fisher over mini-batches), normalised to mean 1 so that lambda
does not depend on the loss scale, and merged as F <- decay * F + F_new. The penalty
lambda/2 * sum F (theta - theta*)^2 anchors the weights after the last step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from tail_bench import distributed
from tail_bench.losses import info_nce, positive_pairs
from tail_bench.models.dual import DualEncoder
from tail_bench.streams.pairs import collate_pairs
from tail_bench.training.strategy import Strategy


@dataclass
class EWCOptions:
    lambda_ewc: float = 1.0  # picked on the val splits over {0.01, 0.1, 1, 10} (docs)
    decay: float = 1.0  # online EWC: weight of the older importances
    fisher_batches: int = 32  # batches used to estimate the Fisher (0: all)


class EWC(Strategy):
    name = "ewc"
    description = "EWC (online): all parameters + diagonal-Fisher quadratic penalty"
    Options = EWCOptions

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.importance: dict[str, Tensor] = {}
        self.anchor: dict[str, Tensor] = {}

    def penalty(self, model: DualEncoder) -> Tensor:
        total = torch.zeros((), device=model.device)
        for name, p in model.named_parameters():
            if name in self.anchor:
                total = total + (self.importance[name] * (p - self.anchor[name]) ** 2).sum()
        return self.options.lambda_ewc / 2 * total

    def before_backward(self, template, **kwargs) -> None:
        if self.anchor:
            template.add_loss("ewc", self.penalty(template.model))

    def fisher(self, model: DualEncoder, dataset, batch_size: int) -> dict[str, Tensor]:
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        fisher = {n: torch.zeros_like(p) for n, p in params.items()}
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                            collate_fn=collate_pairs)
        for used, (wave, texts, keys) in enumerate(loader):
            if self.options.fisher_batches and used >= self.options.fisher_batches:
                break
            if used % distributed.size() != distributed.rank():
                continue  # another process's batch; the sums are added up below
            model.zero_grad()
            keys = keys.to(model.device)
            info_nce(*model(wave.to(model.device), texts), model.logit_scale,
                     positive_pairs(keys)).backward()
            for n, p in params.items():
                if p.grad is not None:
                    fisher[n] += p.grad.detach() ** 2
        model.zero_grad()
        for f in fisher.values():
            distributed.all_reduce_sum(f)
        scale = torch.cat([f.flatten() for f in fisher.values()]).mean().clamp(min=1e-20)
        return {n: f / scale for n, f in fisher.items()}

    def after_training_exp(self, template, **kwargs) -> None:
        model = template.model
        new = self.fisher(model, template.experience.dataset, template.train_mb_size)
        d = self.options.decay
        self.importance = {n: d * self.importance[n] + f if n in self.importance else f
                           for n, f in new.items()}
        self.anchor = {n: p.detach().clone() for n, p in model.named_parameters()
                       if n in new}

    def state_dict(self) -> dict[str, Any]:
        return {"importance": self.importance, "anchor": self.anchor}

    def load_state_dict(self, state: dict[str, Any], model: DualEncoder) -> None:
        self.importance, self.anchor = state["importance"], state["anchor"]
