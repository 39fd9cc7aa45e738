"""Sequential LoRA: low-rank adapters on both towers' attention projections (Hu et al.,
"LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022), via the `peft` library.

One adapter per tower is injected before step 1 and carried through every step (sequential
fine-tuning of the adapters, never merged, so the towers' base weights stay bit-identical).

Targets (CHOICE):
- Embedded towers (`nn.MultiheadAttention` inside `nn.TransformerEncoderLayer`): the packed
  q/k/v projection `in_proj_weight` of every attention, through peft's `target_parameters`
  (`ParamWrapper`: W + scale * B A is put in place of the weight with
  `torch.nn.utils.parametrize` only while that attention module runs, and W itself is never
  written). The output projection is not adapted: an MHA never calls its `out_proj`
  module (it reads the weight inside its fused kernel), so an adapter there would have no
  effect. The paper adapts W_q and W_v; here all three of q/k/v are (they are one packed
  matrix).
  peft's own `nn.MultiheadAttention` layer is not used: it merges the adapter into
  `in_proj_weight` before every forward and subtracts it afterwards, (W + dW) - dW, which
  is not bit-exact, so the frozen towers drifted.
  The layer's fused inference path (`torch._transformer_encoder_layer_fwd`, taken in eval
  under no_grad) reads the attention's weights directly and would skip the adapter, so
  it is switched off while an adapted layer runs (`torch.backends.mha`); evaluation then
  takes the ordinary path, which applies the adapter.
- Hugging Face towers: the `query`, `key`, `value` and attention-output `dense` Linear
  layers (or `q_proj`/`k_proj`/`v_proj`/`out_proj`).

With `train_heads` (CHOICE, default on, as PTAT and L2P) the projection heads and the logit
scale train too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tail_bench.errors import ConfigError
from tail_bench.models.configs import BACKBONES
from tail_bench.models.dual import DualEncoder
from tail_bench.training.strategy import Strategy, train_heads

PROJECTIONS = ("query", "key", "value", "q_proj", "k_proj", "v_proj", "out_proj", "o_proj")


@dataclass
class LoRAOptions:
    rank: int = 16  # picked over {8, 16} x lr {1e-3, 3e-3} on tail-synth's val (docs)
    alpha: float = 16.0  # scaling alpha / rank = 2 (CHOICE)
    dropout: float = 0.0  # Linear targets only (HF towers); MHA targets take none
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


def lora_targets(tower: nn.Module) -> tuple[list[str], list[str]]:
    """(Linear modules, MHA parameters) to adapt in `tower`: an MHA's q/k/v projection is
    one packed `in_proj_weight` (or three `*_proj_weight` when k/v have other widths)."""
    modules: list[str] = []
    parameters: list[str] = []
    for name in attention_projections(tower):
        module = tower.get_submodule(name)
        if not isinstance(module, nn.MultiheadAttention):
            modules.append(name)
        elif module.in_proj_weight is not None:
            parameters.append(f"{name}.in_proj_weight")
        else:
            parameters += [f"{name}.{p}_proj_weight" for p in "qkv"]
    return modules, parameters


def is_lora(name: str) -> bool:
    return "lora_" in name


def _fast_path_off(layer: nn.Module, args) -> None:
    layer._lora_fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)


def _fast_path_back(layer: nn.Module, args, output) -> None:
    torch.backends.mha.set_fastpath_enabled(layer.__dict__.pop("_lora_fast_path", True))


def keep_off_the_fast_path(layer: nn.Module) -> None:
    """Run `layer` (whose attention peft wrapped) without its fused inference path, which
    reads the attention's weights directly: it would skip the adapter (and fail on the
    wrapper, which lacks the MHA's attributes)."""
    layer.register_forward_pre_hook(_fast_path_off)
    layer.register_forward_hook(_fast_path_back, always_call=True)


class LoRA(Strategy):
    name = "lora"
    description = "LoRA (sequential): low-rank adapters on both towers' attention (peft)"
    Options = LoRAOptions

    def check(self, backbone: str) -> None:
        o = self.options
        if o.rank < 1 or not 0 <= o.dropout < 1:
            raise ConfigError(f"--opt lora.rank={o.rank} / lora.dropout={o.dropout}: expected "
                              "rank >= 1 and 0 <= dropout < 1")
        if o.dropout and backbone in BACKBONES:
            raise ConfigError(self._no_dropout(backbone))

    def _no_dropout(self, where: str) -> str:
        return (f"--opt lora.dropout={self.options.dropout}: {where} adapts "
                "nn.MultiheadAttention weights (peft target_parameters), which take no LoRA "
                "dropout; use lora.dropout=0")

    def setup(self, model: DualEncoder) -> None:
        from peft import LoraConfig, inject_adapter_in_model  # heavy: only when it trains

        o = self.options
        model.requires_grad_(False)
        for side, tower in (("audio", model.audio), ("text", model.text)):
            modules, parameters = lora_targets(tower)
            if not modules and not parameters:
                raise ConfigError(f"lora: the {side} tower ({type(tower).__name__}) has no "
                                  "attention projection to adapt")
            if parameters and o.dropout:
                raise ConfigError(self._no_dropout(f"the {side} tower"))
            inject_adapter_in_model(LoraConfig(r=o.rank, lora_alpha=o.alpha,
                                               lora_dropout=o.dropout,
                                               target_modules=modules or None,
                                               target_parameters=parameters or None), tower)
            for layer in dict.fromkeys(name.rsplit(".", 2)[0] for name in parameters):
                keep_off_the_fast_path(tower.get_submodule(layer))  # the MHA's parent
        model.to(model.device)
        for name, p in model.named_parameters():
            p.requires_grad_(is_lora(name))
        if o.train_heads:
            train_heads(model)
