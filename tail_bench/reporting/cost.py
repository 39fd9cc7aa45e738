"""What a method costs: wall time and peak memory of a block of work.

On CUDA the peak is torch's max allocated memory. On CPU it is the process's peak resident
memory sampled every 10 ms while the block runs (it includes what the process held before,
reported separately as `rss_start_mb`, so methods can be compared by the difference).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import torch

_PAGE = 4096


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE / 2**20
    except OSError:  # not Linux: fall back to the lifetime peak
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class CostMeter:
    device: torch.device
    seconds: float = 0.0
    peak_mb: float = 0.0
    rss_start_mb: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def __enter__(self) -> CostMeter:
        self._start = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.rss_start_mb = self.peak_mb = _rss_mb()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak_mb = max(self.peak_mb, _rss_mb())

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._start
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self.peak_mb, _rss_mb())

    def as_dict(self) -> dict[str, float | str]:
        kind = "cuda_max_allocated" if self.device.type == "cuda" else "cpu_peak_rss"
        out: dict[str, float | str] = {"seconds": round(self.seconds, 3),
                                       "peak_memory_mb": round(self.peak_mb, 1),
                                       "memory_kind": kind}
        if self.device.type != "cuda":
            out["rss_start_mb"] = round(self.rss_start_mb, 1)
        return out
