"""Losses shared by pretraining and every strategy (functional, batch-level)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def info_nce(audio: Tensor, text: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE over the in-batch similarity matrix (a2t and t2a, averaged)."""
    logits = logit_scale.exp().clamp(max=100.0) * audio @ text.T
    labels = torch.arange(len(audio), device=audio.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def kl_distill(student: Tensor, teacher: Tensor, temperature: float, dim: int = -1) -> Tensor:
    """KL(teacher || student) of softmax(x / T) along `dim`, batch mean.

    No T^2 factor: it keeps gradients comparable for T > 1 (Hinton), but the temperatures
    used on cosine similarities here are < 1, where it would shrink the term ~200x.
    """
    log_s = F.log_softmax(student / temperature, dim=dim)
    log_t = F.log_softmax(teacher.detach() / temperature, dim=dim)
    kl = (log_t.exp() * (log_t - log_s)).sum(dim)
    return kl.mean()


def similarity_distillation(audio: Tensor, text: Tensor, t_audio: Tensor, t_text: Tensor,
                            temperature: float) -> Tensor:
    """Distil the in-batch similarity distributions: rows (a2t) and columns (t2a)."""
    student, teacher = audio @ text.T, t_audio @ t_text.T
    return (kl_distill(student, teacher, temperature, dim=1)
            + kl_distill(student, teacher, temperature, dim=0)) / 2


def feature_distillation(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """KL between embeddings seen as distributions over the embedding dimension."""
    return kl_distill(student, teacher, temperature, dim=-1)
