"""Named run sizes. `quick` is for tests and smoke runs; `default` is the embedded benchmark."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tail_bench.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    name: str
    train_clips: tuple[int, ...]  # per step, cycled for streams longer than this
    val_clips: int
    test_clips: int
    epochs: int
    batch_size: int
    lr: float
    backbone: str

    def as_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("quick", (96, 32, 96, 96), 16, 40, 2, 32, 5e-4, "synth-tiny"),
    # lr: Finetune's pick on the val splits (results/sweeps/tail-synth-default, docs/strategies.md)
    Preset("default", (1000, 300, 800, 1000), 200, 500, 4, 64, 1e-4, "synth-small"),
]}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"--preset {name}: unknown preset; expected one of {sorted(PRESETS)}")
    return PRESETS[name]
