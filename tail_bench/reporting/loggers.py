"""Where a run's scalars go besides run.json: TensorBoard event files in the run directory
(on by default), and Weights & Biases when `--wandb PROJECT` is given and wandb is
installed. Tags: `<method>/seed<k>/train/<loss term>` per logged batch and
`<method>/seed<k>/R@1_<direction>/<data set>` after each step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tail_bench.errors import ConfigError

TENSORBOARD_DIR = "tensorboard"


class RunLoggers:
    def __init__(self, out: Path, *, tensorboard: bool = True, wandb: str | None = None,
                 config: dict[str, Any] | None = None) -> None:
        self.writer = self.wandb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(out) / TENSORBOARD_DIR))
        if wandb:
            self.wandb = start_wandb(wandb, out, config or {})

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)
        if self.wandb is not None:
            self.wandb.log({tag: value})

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()


def check_wandb(project: str | None) -> None:
    """Before any work: `--wandb` needs the package."""
    if project:
        try:
            import wandb  # noqa: F401
        except ImportError as err:
            raise ConfigError(f"--wandb {project}: the wandb package is not installed "
                              "(pip install wandb), or leave --wandb out") from err


def start_wandb(project: str, out: Path, config: dict[str, Any]):
    import wandb

    return wandb.init(project=project, dir=str(out), config=config, name=Path(out).name)
