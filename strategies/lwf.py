"""LwF for retrieval: Finetune + distillation of the previous model's in-batch similarity
distributions (a2t rows and t2a columns), the analogue of distilling class logits."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from tail_bench.losses import similarity_distillation
from tail_bench.training.distill import DistillationStrategy


@dataclass
class LwFOptions:
    lambda_sim: float = 0.3  # picked on the val splits (docs/strategies.md, tuning protocol)
    tau_sim: float = 0.07  # temperature of the similarity softmax (CLIP-like)


class LwF(DistillationStrategy):
    name = "lwf"
    description = "LwF: all parameters + KL on the previous model's in-batch similarities"
    Options = LwFOptions

    def distillation_loss(self, audio: Tensor, text: Tensor, t_audio: Tensor, t_text: Tensor,
                          positives: Tensor | None = None) -> dict[str, Tensor]:
        o = self.options
        return {"sim": o.lambda_sim * similarity_distillation(audio, text, t_audio, t_text,
                                                              o.tau_sim, positives)}
