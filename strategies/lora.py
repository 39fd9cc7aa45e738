"""Sequential LoRA: low-rank adapters on both towers' attention projections (Hu et al.,
"LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022), via the `peft` library.

One adapter per tower is injected before step 1 and carried through every step (sequential
fine-tuning of the adapters, never merged, so the towers' base weights stay bit-identical).
Targets (CHOICE): every attention projection, i.e. `nn.MultiheadAttention` (its packed q/k/v
and output projections) on the embedded towers; the `query`, `key`, `value` and attention
output `dense` Linear layers (or `q_proj`/`k_proj`/`v_proj`/`out_proj`) on Hugging Face
towers. With `train_heads` (CHOICE, default on, as PTAT and L2P) the projection heads and
the logit scale train too.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from tail_bench.errors import ConfigError
from tail_bench.models.dual import DualEncoder
from tail_bench.training.strategy import Strategy

PROJECTIONS = ("query", "key", "value", "q_proj", "k_proj", "v_proj", "out_proj", "o_proj")


@dataclass
class LoRAOptions:
    rank: int = 8  # (CHOICE)
    alpha: float = 16.0  # scaling alpha / rank = 2 (CHOICE)
    dropout: float = 0.0
    train_heads: bool = True  # heads and logit scale train too (CHOICE)
    lr: float = 1e-3  # 0: the run's lr (CHOICE: adapters take a larger step, as prompts)


def attention_projections(tower: nn.Module) -> list[str]:
    """Names of the modules LoRA adapts in `tower`: its attention projections."""
    names: list[str] = []
    for name, module in tower.named_modules():
        inside = any(name.startswith(m + ".") for m in names)  # e.g. an MHA's out_proj
        projection = isinstance(module, nn.Linear) and (
            name.rsplit(".", 1)[-1] in PROJECTIONS or name.endswith("attention.output.dense"))
        if isinstance(module, nn.MultiheadAttention) or (projection and not inside):
            names.append(name)
    return names


def is_lora(name: str) -> bool:
    return "lora_" in name


class LoRA(Strategy):
    name = "lora"
    description = "LoRA (sequential): low-rank adapters on both towers' attention (peft)"
    Options = LoRAOptions

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        o = self.options
        if o.rank < 1 or not 0 <= o.dropout < 1:
            raise ConfigError(f"--opt lora.rank={o.rank} / lora.dropout={o.dropout}: expected "
                              "rank >= 1 and 0 <= dropout < 1")

    def setup(self, model: DualEncoder) -> None:
        from peft import LoraConfig, inject_adapter_in_model  # heavy: only when it trains

        o = self.options
        model.requires_grad_(False)
        for side, tower in (("audio", model.audio), ("text", model.text)):
            targets = attention_projections(tower)
            if not targets:
                raise ConfigError(f"lora: the {side} tower ({type(tower).__name__}) has no "
                                  "attention projection to adapt")
            inject_adapter_in_model(LoraConfig(r=o.rank, lora_alpha=o.alpha,
                                               lora_dropout=o.dropout, target_modules=targets),
                                    tower)
        model.to(model.device)
        for name, p in model.named_parameters():
            p.requires_grad_(is_lora(name))
        if o.train_heads:
            for module in (model.audio_head, model.text_head):
                module.requires_grad_(True)
            model.logit_scale.requires_grad_(True)

    def learning_rate(self, run_lr: float) -> float:
        return self.options.lr or run_lr
