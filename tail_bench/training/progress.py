"""A progress bar per training epoch, as an Avalanche plugin."""

from __future__ import annotations

from avalanche.core import SupervisedPlugin
from tqdm.auto import tqdm


class ProgressBar(SupervisedPlugin):
    def __init__(self, *, label: str, enabled: bool = True) -> None:
        super().__init__()
        self.label, self.enabled, self.bar = label, enabled, None

    def before_training_epoch(self, strategy, **kwargs) -> None:
        exp = strategy.experience
        name = exp.dataset.dataset_name[0] if len(exp.dataset) else "?"
        self.bar = tqdm(total=len(strategy.dataloader), disable=not self.enabled, unit="batch",
                        desc=f"{self.label} step {exp.current_experience + 1} [{name}] "
                             f"epoch {strategy.clock.train_exp_epochs + 1}/{strategy.train_epochs}",
                        leave=False)

    def after_training_iteration(self, strategy, **kwargs) -> None:
        self.bar.update()
        if self.enabled and self.bar.n % 25 == 1:  # reading the loss syncs the device
            self.bar.set_postfix(loss=f"{strategy.loss.item():.3f}")

    def after_training_epoch(self, strategy, **kwargs) -> None:
        self.bar.close()
