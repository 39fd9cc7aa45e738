"""The real TAIL stream: AudioCaps -> Clotho -> BBC Sound Effects -> AudioSet (WavCaps).

- `layouts`: where each data set is under --data-root, in each layout users have
  (original releases, aac-datasets, WavCaps' retrieval folders), detected per data set;
- `records`: each data set's metadata read in its layout, every problem recorded with its
  file, row and clip;
- `build`: overlap removed in every direction, files checked, the policy applied (`fail`
  stops with the full list, `skip` drops those items and records them), the Stream built;
- `prepare`: the `tail-bench prepare` command.
Nothing is ever dropped silently.
"""

from tail_bench.errors import DataError
from tail_bench.streams.tail.build import (
    build_tail,
    check_cache_settings,
    read_all,
    source_id,
)
from tail_bench.streams.tail.layouts import (
    AUDIOCAPS_PATTERNS,
    DATASETS,
    LAYOUTS,
    WAVCAPS_JSON,
    WAVCAPS_SOURCES,
    detect_all,
)
from tail_bench.streams.tail.prepare import prepare
from tail_bench.streams.tail.records import KINDS, hash_split

__all__ = ["AUDIOCAPS_PATTERNS", "DATASETS", "KINDS", "LAYOUTS", "WAVCAPS_JSON",
           "WAVCAPS_SOURCES", "DataError", "build_tail", "check_cache_settings", "detect_all",
           "hash_split", "prepare", "read_all", "source_id"]
