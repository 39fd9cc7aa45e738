"""CODA-Prompt for retrieval (Smith et al., "CODA-Prompt: COntinual Decomposed
Attention-based Prompting for Rehearsal-Free Continual Learning", CVPR 2023).

The towers are frozen. Each modality has prompt components P_m (length x width), keys K_m
and attention vectors A_m. A sample's query q is its frozen tower output without prompts;
its prompt is sum_m alpha_m P_m with alpha_m = cos(q * A_m, K_m), computed per sample (no
top-k, no batch vote), prepended after [CLS] at the input (CHOICE: shallow, as L2P here;
the paper prefixes 5 layers). Each step adds `components` new components, initialised
orthogonal to the earlier ones (Gram-Schmidt), and freezes the earlier ones; the loss adds
lambda_ortho * mean((B B^T - I)^2) for B = P (flattened), K and A over all components, so
new components stay orthogonal to the old. What trains in a step: that step's
components, the projection heads and the logit scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tail_bench.errors import ConfigError
from tail_bench.models.dual import DualEncoder
from tail_bench.training.strategy import Strategy, train_heads


@dataclass
class CODAOptions:
    components: int = 10  # new components per step and modality (the paper: 100 / 10 tasks)
    prompt_length: int = 8  # tokens per component (the paper's 8)
    lambda_ortho: float = 0.1  # with lr: picked over {0, 0.1} x {1e-3, 3e-3} (docs)
    lr: float = 1e-3  # 0: the run's lr (CHOICE, as L2P and PTAT)


def orthogonal_rows(old: Tensor, k: int) -> Tensor:
    """`k` unit rows orthogonal to each other and to the rows of `old` (Gram-Schmidt, via
    QR); random unit rows once the width is used up."""
    n, d = old.shape
    new = torch.randn(k, d, device=old.device)
    if n + k > d:
        return F.normalize(new, dim=1)
    q, _ = torch.linalg.qr(torch.cat([old, new]).T)
    return q[:, n:].T.contiguous()


def ortho_penalty(b: Tensor) -> Tensor:
    """mean((B B^T - I)^2) over the rows of B: zero for orthonormal rows."""
    eye = torch.eye(len(b), device=b.device)
    return ((b @ b.T - eye) ** 2).mean()


class ComponentPool(nn.Module):
    """One modality's components, one group per step; earlier groups are frozen."""

    def __init__(self, *, width: int, length: int) -> None:
        super().__init__()
        self.width, self.length = width, length
        self.prompts, self.keys, self.attention = (nn.ParameterList() for _ in range(3))

    def grow(self, k: int, device: torch.device) -> None:
        for group in (*self.prompts, *self.keys, *self.attention):
            group.requires_grad_(False)
        old = [torch.cat(list(g)) if len(g) else torch.zeros(0, w, device=device)
               for g, w in ((self.prompts, self.length * self.width),
                            (self.keys, self.width), (self.attention, self.width))]
        p, key, a = (orthogonal_rows(o.detach().flatten(1), k) for o in old)
        self.prompts.append(nn.Parameter(p.view(k, self.length, self.width)))
        self.keys.append(nn.Parameter(key))
        self.attention.append(nn.Parameter(a))

    def weights(self, query: Tensor) -> Tensor:
        """alpha (B, M): cos(q * A_m, K_m), per sample."""
        attention, keys = torch.cat(list(self.attention)), torch.cat(list(self.keys))
        return F.cosine_similarity(query[:, None, :] * attention[None], keys[None], dim=-1)

    def forward(self, query: Tensor) -> Tensor:
        prompts = torch.cat(list(self.prompts))
        return torch.einsum("bm,mld->bld", self.weights(query), prompts)

    def orthogonality(self) -> Tensor:
        return sum(ortho_penalty(torch.cat(list(g)).flatten(1))
                   for g in (self.prompts, self.keys, self.attention))


class CODAPrompter(nn.Module):
    def __init__(self, *, audio_width: int, text_width: int, length: int) -> None:
        super().__init__()
        self.audio_pool = ComponentPool(width=audio_width, length=length)
        self.text_pool = ComponentPool(width=text_width, length=length)

    def audio(self, model: DualEncoder, features: Tensor) -> Tensor:
        with torch.no_grad():
            query = model.audio(features)  # the frozen tower without prompts
        return self.audio_pool(query)

    def text(self, model: DualEncoder, tokens: dict[str, Tensor]) -> tuple[Tensor, None]:
        with torch.no_grad():
            query = model.text(tokens)
        return self.text_pool(query), None


class CODAPrompt(Strategy):
    name = "coda-prompt"
    description = ("CODA-Prompt: frozen towers + per-sample attention-weighted prompt "
                   "components, orthogonal, grown per step")
    Options = CODAOptions

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.prompter: CODAPrompter | None = None
        self.steps = 0

    def check(self, backbone: str) -> None:
        o = self.options
        if o.components < 1 or o.prompt_length < 1 or o.lambda_ortho < 0:
            raise ConfigError(f"--opt coda-prompt: components={o.components}, prompt_length="
                              f"{o.prompt_length}, lambda_ortho={o.lambda_ortho}: expected "
                              "components >= 1, prompt_length >= 1, lambda_ortho >= 0")

    def setup(self, model: DualEncoder) -> None:
        model.requires_grad_(False)
        self.prompter = CODAPrompter(audio_width=model.audio.width, text_width=model.text.width,
                                     length=self.options.prompt_length)
        model.prompter = self.prompter
        self._grow(model)
        train_heads(model)

    def _grow(self, model: DualEncoder) -> None:
        for pool in (self.prompter.audio_pool, self.prompter.text_pool):
            pool.grow(self.options.components, model.device)

    def before_training_exp(self, template, **kwargs) -> None:
        """From step 2: new components, earlier ones frozen, and an optimizer that has them."""
        if self.steps:
            self._grow(template.model)
            template.make_optimizer()

    def before_backward(self, template, **kwargs) -> None:
        ortho = self.prompter.audio_pool.orthogonality() + self.prompter.text_pool.orthogonality()
        template.add_loss("ortho", self.options.lambda_ortho * ortho)

    def after_training_exp(self, template, **kwargs) -> None:
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        """The components are model weights; how many groups there are is the state."""
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any], model: DualEncoder) -> None:
        """Grow to the checkpoint's groups (setup made the first); the weights follow."""
        for _ in range(state["steps"] - 1):
            self._grow(model)
        self.steps = state["steps"]

    def report(self) -> dict:
        total = sum(p.numel() for p in self.prompter.parameters()) if self.prompter else 0
        return {"components_per_modality": self.steps * self.options.components,
                "prompt_params_total": total}
