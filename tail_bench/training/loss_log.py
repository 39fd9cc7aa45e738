"""Training losses to a logger, as an Avalanche plugin: every loss term of every batch is
summed on the device and handed over as a mean every `every` batches (reading the device
once per `every` batches, not per step) and at the end of each epoch."""

from __future__ import annotations

from collections.abc import Callable

from avalanche.core import SupervisedPlugin
from torch import Tensor

from tail_bench.training import READ_EVERY

Log = Callable[[str, float, int], None]  # (tag, value, global batch)


class LossLogger(SupervisedPlugin, supports_distributed=True):
    def __init__(self, log: Log, *, every: int = READ_EVERY) -> None:
        super().__init__()
        self.log, self.every = log, every
        self.batch = 0
        self.sums: dict[str, Tensor] = {}
        self.count = 0

    def after_training_iteration(self, template, **kwargs) -> None:
        self.batch += 1
        self.count += 1
        terms = {"loss": template.loss.detach().reshape(()), **template.loss_terms}
        for name, value in terms.items():
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        if self.count >= self.every:
            self.flush()

    def after_training_epoch(self, template, **kwargs) -> None:
        self.flush()

    def flush(self) -> None:
        for name, total in self.sums.items():
            self.log(f"train/{name}", float(total) / self.count, self.batch)
        self.sums, self.count = {}, 0
