"""A transformer encoder that accepts extra prompt tokens.

Sequence: [CLS] + prefix prompts + tokens + post prompts (+ padding). Prefix prompts carry
no position, so the tokens keep theirs. Post prompts sit right after each sequence's last
real token, before its padding, and take the positions that continue the sequence's
(clamped to the last learnt position): without positions, attention would see them as
just more prefix prompts. Prompts may be shallow (one (B, P, W) tensor, input layer only)
or deep (a list with one tensor per layer, replacing the prompt slots before each layer;
deeper slots take no new position). Pooling: [CLS].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

Prompt = Tensor | list[Tensor] | None


def _at_layer(prompt: Prompt, layer: int) -> Tensor | None:
    if prompt is None or isinstance(prompt, Tensor):
        return prompt if layer == 0 else None
    return prompt[layer]


def post_slots(lengths: Tensor, n: int, lq: int) -> tuple[Tensor, Tensor]:
    """Where tokens and post prompts go in a sequence of n + lq slots: token i of a row with
    `lengths` real tokens stays at i, or moves to i + lq if it is padding; post prompt j
    takes slot length + j. Returns (token slots (B, n), post slots (B, lq))."""
    i = torch.arange(n, device=lengths.device)[None]
    tokens = i + lq * (i >= lengths[:, None])
    post = lengths[:, None] + torch.arange(lq, device=lengths.device)[None]
    return tokens, post


def put_at(x: Tensor, slots: Tensor, values: Tensor) -> Tensor:
    """x with values (B, k, W) written at slots (B, k) along dim 1 (out of place)."""
    return x.scatter(1, slots[..., None].expand(-1, -1, x.shape[-1]), values.to(x.dtype))


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
        """`pad` (B, n) marks padding, which must come after each row's real tokens."""
        b, n, _ = tokens.shape
        if n + 1 > self.pos.shape[1]:
            raise ValueError(f"{n} tokens exceed the encoder's {self.pos.shape[1] - 1}")
        pad = torch.zeros(b, n, dtype=torch.bool, device=tokens.device) if pad is None else pad
        x = tokens + self.pos[:, 1: n + 1]
        p0, q0 = _at_layer(prefix, 0), _at_layer(post, 0)
        lp = 0 if p0 is None else p0.shape[1]
        lq = 0 if q0 is None else q0.shape[1]
        post_at = None
        if lq:
            lengths = (~pad).sum(1)
            token_at, post_at = post_slots(lengths, n, lq)
            where = (post_at + 1).clamp(max=self.pos.shape[1] - 1)
            q = q0 + self.pos[0][where]
            x = put_at(put_at(x.new_zeros(b, n + lq, x.shape[-1]), token_at, x), post_at, q)
            pad = torch.zeros(b, n + lq, dtype=torch.bool, device=pad.device).scatter(
                1, token_at, pad)
        no_pad = torch.zeros(b, 1 + lp, dtype=torch.bool, device=pad.device)
        parts = [self.cls.expand(b, -1, -1) + self.pos[:, :1]]
        if lp:
            parts.append(p0.to(x.dtype))
        h, mask = torch.cat([*parts, x], 1), torch.cat([no_pad, pad], 1)
        for i, layer in enumerate(self.layers):
            if i and (pi := _at_layer(prefix, i)) is not None:
                h = torch.cat([h[:, :1], pi.to(h.dtype), h[:, 1 + lp:]], 1)
            if i and (qi := _at_layer(post, i)) is not None:
                h = put_at(h, post_at + 1 + lp, qi)
            h = layer(h, src_key_padding_mask=mask)
        return self.norm(h[:, 0])
