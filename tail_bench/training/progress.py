"""Training progress per epoch, as an Avalanche plugin (a bar in a terminal, plain lines in
a log: tail_bench.progress)."""

from __future__ import annotations

from avalanche.core import SupervisedPlugin

from tail_bench.progress import progress
from tail_bench.training import READ_EVERY


class ProgressBar(SupervisedPlugin, supports_distributed=True):
    def __init__(self, *, label: str, enabled: bool = True) -> None:
        super().__init__()
        self.label, self.enabled, self.bar = label, enabled, None

    def before_training_epoch(self, template, **kwargs) -> None:
        exp = template.experience
        name = exp.dataset.dataset_name[0] if len(exp.dataset) else "?"
        self.bar = progress(total=len(template.dataloader), enabled=self.enabled, unit="batch",
                            desc=f"{self.label} step {exp.current_experience + 1} [{name}] "
                                 f"epoch {template.clock.train_exp_epochs + 1}/"
                                 f"{template.train_epochs}", leave=False)

    def after_training_iteration(self, template, **kwargs) -> None:
        self.bar.update()
        if self.enabled and self.bar.n % READ_EVERY == 1:  # reading the loss syncs the device
            self.bar.set_postfix(loss=f"{template.loss.item():.3f}")

    def after_training_epoch(self, template, **kwargs) -> None:
        self.bar.close()
