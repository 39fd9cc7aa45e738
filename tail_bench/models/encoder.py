"""A transformer encoder that accepts extra prompt tokens.

Sequence: [CLS] + prefix prompts + tokens (+ padding) + post prompts. Position embeddings
are added to [CLS] and the tokens only, so prompts carry no position and the tokens keep
theirs. Prompts may be shallow (one (B, P, W) tensor, input layer only) or deep (a list with
one tensor per layer, replacing the prompt slots before each layer). Pooling: [CLS].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

Prompt = Tensor | list[Tensor] | None


def _at_layer(prompt: Prompt, layer: int) -> Tensor | None:
    if prompt is None or isinstance(prompt, Tensor):
        return prompt if layer == 0 else None
    return prompt[layer]


class PromptableEncoder(nn.Module):
    def __init__(self, *, width: int, depth: int, heads: int, mlp_ratio: int, max_len: int):
        super().__init__()
        self.width, self.depth = width, depth
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.randn(1, max_len + 1, width) * 0.02)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(width, heads, width * mlp_ratio, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(depth))
        self.norm = nn.LayerNorm(width)

    def forward(self, tokens: Tensor, pad: Tensor | None = None, *, prefix: Prompt = None,
                post: Prompt = None) -> Tensor:
        b, n, _ = tokens.shape
        if n + 1 > self.pos.shape[1]:
            raise ValueError(f"{n} tokens exceed the encoder's {self.pos.shape[1] - 1}")
        x = torch.cat([self.cls.expand(b, -1, -1), tokens], 1) + self.pos[:, : n + 1]
        pad = torch.zeros(b, n, dtype=torch.bool, device=x.device) if pad is None else pad
        p0, q0 = _at_layer(prefix, 0), _at_layer(post, 0)
        lp = 0 if p0 is None else p0.shape[1]
        lq = 0 if q0 is None else q0.shape[1]
        no_pad = torch.zeros(b, 1, dtype=torch.bool, device=x.device)
        parts, masks = [x[:, :1]], [no_pad]
        if lp:
            parts.append(p0)
            masks.append(no_pad.expand(b, lp))
        parts.append(x[:, 1:])
        masks.append(pad)
        if lq:
            parts.append(q0)
            masks.append(no_pad.expand(b, lq))
        h, mask = torch.cat(parts, 1), torch.cat(masks, 1)
        for i, layer in enumerate(self.layers):
            if i and (pi := _at_layer(prefix, i)) is not None:
                h = torch.cat([h[:, :1], pi, h[:, 1 + lp:]], 1)
            if i and (qi := _at_layer(post, i)) is not None:
                h = torch.cat([h[:, : h.shape[1] - lq], qi], 1)
            h = layer(h, src_key_padding_mask=mask)
        return self.norm(h[:, 0])
