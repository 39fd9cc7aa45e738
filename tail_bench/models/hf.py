"""Hugging Face towers read from local directories (nothing is downloaded).

`HFTextTower` wraps a BERT-family encoder (BERT, RoBERTa, MiniLM, CLAP's text tower) so it
takes prompt tokens: they are inserted after the embedding layer, so every word keeps the
position embedding it had without prompts and prompts carry none; the attention mask covers
them, padding stays masked, and pooling is the [CLS] (first) position.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from transformers.masking_utils import create_bidirectional_mask

from tail_bench.models.encoder import Prompt


class HFTextTower(nn.Module):
    depth = 0  # deep prompts are implemented for the embedded towers only

    def __init__(self, model: nn.Module, tokenizer, max_length: int = 64) -> None:
        super().__init__()
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length
        self.width = model.config.hidden_size

    @classmethod
    def from_pretrained(cls, path: Path, max_length: int = 64) -> HFTextTower:
        from transformers import AutoModel, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path}: expected a Hugging Face model directory with "
                                    "config.json, tokenizer files and weights")
        model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=None)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return cls(model, tokenizer, max_length)

    def tokenize(self, texts: list[str], device: torch.device | str) -> dict[str, Tensor]:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"].to(device),
                "attention_mask": enc["attention_mask"].to(device)}

    def forward(self, tokens: dict[str, Tensor], *, prefix: Prompt = None,
                post: Prompt = None) -> Tensor:
        if isinstance(prefix, list) or isinstance(post, list):
            raise ValueError("deep prompts are not supported on Hugging Face text towers")
        ids, mask = tokens["input_ids"], tokens["attention_mask"]
        h = self.model.embeddings(input_ids=ids)
        parts, masks = [h[:, :1]], [mask[:, :1]]
        for p, rest, rest_mask in ((prefix, h[:, 1:], mask[:, 1:]), (post, None, None)):
            if p is not None:
                parts.append(p.to(h.dtype))
                masks.append(torch.ones(p.shape[:2], dtype=mask.dtype, device=mask.device))
            if rest is not None:
                parts.append(rest)
                masks.append(rest_mask)
        hidden, full = torch.cat(parts, 1), torch.cat(masks, 1)
        attn = create_bidirectional_mask(config=self.model.config, inputs_embeds=hidden,
                                         attention_mask=full)
        return self.model.encoder(hidden, attention_mask=attn).last_hidden_state[:, 0]
