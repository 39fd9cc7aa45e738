"""Teacher-student strategies: keep a frozen copy of the model after each step and add a
distillation loss on the current step's batches (the pattern of Avalanche's LwF plugin,
with retrieval embeddings in place of class logits)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from tail_bench.models.dual import DualEncoder
from tail_bench.training.strategy import Strategy


def frozen_copy(model: DualEncoder) -> DualEncoder:
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


class DistillationStrategy(Strategy):
    """Subclasses define `distillation_loss`; it applies from the second step on."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.teacher: DualEncoder | None = None

    def distillation_loss(self, audio: Tensor, text: Tensor, t_audio: Tensor, t_text: Tensor,
                          positives: Tensor | None = None) -> dict[str, Tensor]:
        """Loss terms by name; `positives` marks matching pairs of the batch (losses.py)."""
        raise NotImplementedError

    def before_backward(self, template, **kwargs) -> None:
        if self.teacher is None:
            return
        with torch.no_grad(), template.autocast():
            t_audio, t_text = self.teacher.embed(*template.mb_inputs)  # the batch's features
        audio, text, t_audio, t_text = map(template.gather, (*template.mb_output, t_audio,
                                                             t_text))
        terms = self.distillation_loss(audio, text, t_audio, t_text, template.mb_positives)
        for name, value in terms.items():
            template.add_loss(name, value)

    def after_training_exp(self, template, **kwargs) -> None:
        self.teacher = frozen_copy(template.model)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.teacher is None else {"teacher": self.teacher.state_dict()}

    def load_state_dict(self, state: dict[str, Any], model: DualEncoder) -> None:
        if "teacher" in state:
            self.teacher = frozen_copy(model)
            self.teacher.load_state_dict(state["teacher"])
