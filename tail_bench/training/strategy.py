"""The strategy contract: a continual-learning method is an Avalanche plugin.

A strategy declares what it trains (`setup` freezes or adds modules, `trainable_parameters`
lists them), adds loss terms in `before_backward` and keeps state across steps in
`before_/after_training_exp`, like any Avalanche plugin, and hands that state to per-step
checkpoints through `state_dict`/`load_state_dict`. The training loop is shared
(`RetrievalTemplate`); a strategy never copies it. Options are a dataclass so that
`--opt NAME.KEY=VALUE` is typed and checked.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from avalanche.core import SupervisedPlugin
from torch import nn

from tail_bench.errors import ConfigError
from tail_bench.models.dual import DualEncoder
from tail_bench.options import typed


@dataclasses.dataclass
class NoOptions:
    pass


class Strategy(SupervisedPlugin, supports_distributed=True):
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    trains: ClassVar[bool] = True  # False: reference row evaluated before any step only
    joint: ClassVar[bool] = False  # True: one step on the union of every step's data
    Options: ClassVar[type] = NoOptions

    def __init_subclass__(cls, supports_distributed: bool = True, **kwargs) -> None:
        """Strategies run data-parallel through the template (docs/strategies.md: several
        processes), so each one tells Avalanche so unless it says otherwise."""
        super().__init_subclass__(supports_distributed=supports_distributed, **kwargs)

    def __init__(self, *, options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.options = parse_options(self.Options, options or {}, owner=self.name)

    def setup(self, model: DualEncoder) -> None:
        """Prepare the model once, before step 1. Default: every backbone weight trains."""
        for p in model.parameters():
            p.requires_grad_(True)

    def trainable_parameters(self, model: DualEncoder) -> list[nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def learning_rate(self, run_lr: float) -> float:
        """The step size for this method: its `lr` option when it has one other than 0
        (prompt and adapter methods take a larger step), else the run's."""
        return getattr(self.options, "lr", 0) or run_lr

    def check(self, backbone: str) -> None:
        """Raise ConfigError for options that cannot work with `backbone` (a name or a
        checkpoint path); the run calls it before any work."""

    def cost(self) -> dict[str, Any]:
        """Cost entries beyond parameters and time, merged into the run's cost: what a
        method stores between steps (`memory_clips`, `memory_mb` for a replay buffer)."""
        return {}

    def report(self) -> dict[str, Any]:
        """Extra per-run results for the run file (e.g. prompt-usage histograms)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What this strategy carries from one step to the next beyond the model's weights
        (a Fisher, an anchor, a teacher, a usage history): tensors, numbers, strings, and
        lists or str-keyed dicts of them. Saved after every step so a run can resume."""
        return {}

    def load_state_dict(self, state: dict[str, Any], model: DualEncoder) -> None:
        """Take back what `state_dict` returned (tensors on the model's device, tuples as
        lists). Called after `setup` and before the checkpoint's weights are loaded into
        `model`: a strategy that adds modules per step adds them here, so the model has
        the checkpoint's shape; the global RNG states are restored after it."""


def train_heads(model: DualEncoder, *modules: nn.Module) -> None:
    """`modules`, both projection heads and the logit scale train (what prompt and adapter
    methods train beside their own parameters); nothing else changes."""
    for module in (*modules, model.audio_head, model.text_head):
        module.requires_grad_(True)
    model.logit_scale.requires_grad_(True)


def parse_options(cls: type, raw: dict[str, Any], *, owner: str) -> Any:
    """Build an options dataclass from text or a file's values (tail_bench/options.py's
    grammar, typed by each field's default); unknown keys and values of the wrong type
    are an error naming the option."""
    if not dataclasses.is_dataclass(cls):
        raise ConfigError(f"strategy {owner!r}: its Options must be a dataclass, got {cls!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(f"--opt {owner}.{key}: unknown option; {owner} takes "
                              f"{sorted(fields) or 'no options'}")
        default = fields[key].default
        kind = str if default is None else type(default)
        values[key] = typed(value, kind, where=f"--opt {owner}.{key}={value}")
    return cls(**values)
