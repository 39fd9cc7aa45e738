"""Losses shared by pretraining and every strategy (functional, batch-level).

False negatives: a batch can hold several captions of one clip (Clotho has five) and
identical caption strings (library labels). Such pairs are not negatives of each other.
CHOICE: they are excluded from the negatives (their logits are masked out), and each
row keeps its own pair as the one positive. `positives` is the (B, B) boolean matrix of
pairs that match (same clip or same caption string; the diagonal included). Every loss
built on an in-batch similarity matrix takes it, distillation included.
"""

from __future__ import annotations

import zlib

import torch
import torch.nn.functional as F
from torch import Tensor


def caption_key(caption: str) -> int:
    """A stable integer per caption string: identical strings are one caption (never each
    other's negatives in training; embedded once in evaluation)."""
    return zlib.crc32(caption.encode()) & 0x7FFFFFFF


def positive_pairs(keys: Tensor, texts: list[str] | None = None) -> Tensor:
    """(B, B) bool: i and j share a clip or an identical caption string. `keys` (B, 2) holds
    a clip key and a caption key per row, as `collate_pairs` makes them; or give clip keys
    (B,) and the caption strings."""
    if texts is not None:
        keys = torch.stack([keys, torch.tensor([caption_key(t) for t in texts],
                                               device=keys.device)], 1)
    same = keys[:, None, :] == keys[None, :, :]
    return same[..., 0] | same[..., 1]


def _masked(logits: Tensor, positives: Tensor | None) -> Tensor:
    """Off-diagonal positives set to -inf: neither target nor negative."""
    if positives is None:
        return logits
    eye = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
    return logits.masked_fill(positives & ~eye, float("-inf"))


def info_nce(audio: Tensor, text: Tensor, logit_scale: Tensor,
             positives: Tensor | None = None) -> Tensor:
    """Symmetric InfoNCE over the in-batch similarity matrix (a2t and t2a, averaged)."""
    logits = _masked(logit_scale.exp().clamp(max=100.0) * audio.float() @ text.float().T,
                     positives)
    labels = torch.arange(len(audio), device=audio.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def kl_distill(student: Tensor, teacher: Tensor, temperature: float, dim: int = -1) -> Tensor:
    """KL(teacher || student) of softmax(x / T) along `dim`, batch mean; entries that are
    -inf in both (masked positives) take no part.

    No T^2 factor: it keeps gradients comparable for T > 1 (Hinton), but the temperatures
    used on cosine similarities here are < 1, where it would shrink the term ~200x.
    """
    masked = ~torch.isfinite(teacher)
    log_s = F.log_softmax(student.float() / temperature, dim=dim).masked_fill(masked, 0.0)
    log_t = F.log_softmax(teacher.detach().float() / temperature, dim=dim).masked_fill(masked,
                                                                                      0.0)
    return (log_t.exp().masked_fill(masked, 0.0) * (log_t - log_s)).sum(dim).mean()


def similarity_distillation(audio: Tensor, text: Tensor, t_audio: Tensor, t_text: Tensor,
                            temperature: float, positives: Tensor | None = None) -> Tensor:
    """Distil the in-batch similarity distributions: rows (a2t) and columns (t2a)."""
    student = _masked(audio.float() @ text.float().T, positives)
    teacher = _masked(t_audio.float() @ t_text.float().T, positives)
    return (kl_distill(student, teacher, temperature, dim=1)
            + kl_distill(student, teacher, temperature, dim=0)) / 2


def feature_distillation(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """KL between embeddings seen as distributions over the embedding dimension."""
    return kl_distill(student, teacher, temperature, dim=-1)
