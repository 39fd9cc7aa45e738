"""Named streams (`--stream`): one builder per name. The stream module (torch, Avalanche)
is imported by the functions that need it, so listing the names costs nothing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tail_bench.errors import ConfigError
from tail_bench.presets import Preset

if TYPE_CHECKING:
    from tail_bench.streams.stream import Stream

STREAMS = {
    "tail-synth": "generated 4-domain stand-in for TAIL (no files needed; --length extends it)",
    "tail": "the real TAIL stream: AudioCaps -> Clotho -> BBC Sound Effects -> AudioSet "
            "(needs --data-root)",
}


def check_stream_args(name: str, *, data_root: Path | None, length: int | None,
                      order: list[str] | None = None,
                      audio: tuple[int, float] | None = None) -> None:
    """Fail on bad stream options before any data is generated or any model pretrained.
    `audio`: the backbone's (sample rate, clip seconds); a tail data root whose decoded
    audio was cached for other settings is refused."""
    if name not in STREAMS:
        raise ConfigError(f"--stream {name}: unknown stream; expected one of "
                          f"{sorted(STREAMS)}")
    if name == "tail" and data_root is None:
        raise ConfigError("--stream tail needs --data-root DIR (see docs/datasets.md)")
    if name == "tail" and length is not None:
        raise ConfigError("--length applies to tail-synth; use --order to shorten tail")
    if order:
        from tail_bench.streams.stream import check_order

        check_order(order, default_order(name, length))
    if name == "tail" and audio is not None:
        from tail_bench.streams.tail import check_cache_settings

        check_cache_settings(Path(data_root), sample_rate=audio[0], seconds=audio[1])


def default_order(name: str, length: int | None = None) -> list[str]:
    """The data sets of a stream in its own order (before any --order)."""
    if name == "tail-synth":
        from tail_bench.streams import synth

        return [d.key for d in synth.stream_domains(length or 4)]
    from tail_bench.streams.tail import DATASETS

    return list(DATASETS)


def orders_of(name: str, *, order: list[str] | None, length: int | None,
              orders: int) -> list[list[str]]:
    """The stream orders a run trains on (`--orders`): the first is --order or the
    stream's default, the others seeded shuffles of it (stream.stream_orders)."""
    from tail_bench.streams.stream import stream_orders

    return stream_orders(list(order) if order else default_order(name, length), orders)


def build_stream(name: str, *, preset: Preset, seed: int = 0, order: list[str] | None = None,
                 length: int | None = None, data_root: Path | None = None,
                 clip_seconds: float = 2.0, sample_rate: int = 16_000, on_error: str = "fail",
                 audiocaps_patterns: list[str] | None = None) -> Stream:
    from tail_bench.streams.stream import Stream, reorder

    check_stream_args(name, data_root=data_root, length=length, order=order)
    if name == "tail-synth":
        from tail_bench.streams import generated, synth

        domains = synth.stream_domains(length or 4, seed=seed)
        sizes = [preset.train_clips[i % len(preset.train_clips)] for i in range(len(domains))]

        def split(part: str, n_eval: int) -> list:
            return [generated.generate(d, part, k if part == "train" else n_eval,
                                       seconds=clip_seconds, seed=seed)
                    for d, k in zip(domains, sizes, strict=True)]

        test = split("test", preset.test_clips)
        # Captions whose tokens repeat another's in the same test set (they tie in t2a).
        notes = {"duplicate_test_captions": {p.dataset: synth.duplicate_captions(p)
                                             for p in test}}
        stream = Stream(name, split("train", 0), split("val", preset.val_clips), test, notes)
        if sample_rate != synth.SAMPLE_RATE:  # a backbone with another rate (e.g. CLAP 48 kHz)
            for part in (stream.train, stream.val, stream.test):
                part[:] = [synth.resampled(p, sample_rate) for p in part]
        return reorder(stream, order)
    from tail_bench.streams.tail import build_tail

    return reorder(build_tail(Path(data_root), sample_rate=sample_rate,
                              clip_seconds=clip_seconds, policy=on_error,
                              patterns=tuple(audiocaps_patterns or ())), order)
