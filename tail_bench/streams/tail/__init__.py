"""The real TAIL stream: AudioCaps -> Clotho -> BBC Sound Effects -> AudioSet (WavCaps).

- `records`: each data set's metadata read as distributed (docs/datasets.md gives the
  layout under --data-root), every problem recorded with its file and row;
- `build`: overlap removed in every direction, the policy applied (`fail` stops with the
  full list, `skip` drops those items and records them), the Stream built;
- `prepare`: the `tail-bench prepare` command.
Nothing is ever dropped silently.
"""

from tail_bench.errors import DataError
from tail_bench.streams.tail.build import build_tail, read_all, source_id
from tail_bench.streams.tail.prepare import prepare
from tail_bench.streams.tail.records import (
    AUDIOCAPS_PATTERNS,
    DATASETS,
    KINDS,
    WAVCAPS,
    hash_split,
)

__all__ = ["AUDIOCAPS_PATTERNS", "DATASETS", "KINDS", "WAVCAPS", "DataError", "build_tail",
           "hash_split", "prepare", "read_all", "source_id"]
