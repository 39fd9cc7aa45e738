"""The decoded-audio cache: every clip of a split decoded once, read back by the runs.

On disk, under `cache_root()/features/<hash of the data root>/<rate>Hz-<seconds>s-v<version>/`
(one folder per front-end setting, so a cache is only read at the settings it was built
for):
- `<dataset>-<split>.json`, the manifest: the settings, the data file, and each source
  file's path, size and mtime with its row; files that failed to decode are listed with
  the reason. It is written last, atomically: a cache without it does not exist.
- `<dataset>-<split>.<build>.npy`: one row of 16-bit PCM per file (k / 32768, soundfile's
  scale; half the bytes of float32).
- While building: `<dataset>-<split>.partial.json` and `<dataset>-<split>.<build>.log` (one
  line per finished chunk of rows, with its failures). A killed build resumes from them;
  a build is complete only when its manifest exists.
- `.lock`: held (fcntl) by the one `prepare` writing the folder; a second one is refused.

Decoding runs in `workers` processes, each writing its rows into the data file with
`pwrite`, so memory stays one chunk of clips per process whatever the split's size.
A run maps each of its clips to a row through the manifest, and reads a split's cache
only if every clip's file is in it unchanged (path, size and mtime).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from tail_bench.errors import DataError
from tail_bench.progress import progress as progress_bar
from tail_bench.storage import atomic_write_json
from tail_bench.streams.audio import AudioError, load_clip, to_pcm16

CACHE_VERSION = 3  # 3: one folder per setting, manifest per file (2: one list per split)
CROP = "start"


def settings_name(sample_rate: int, seconds: float) -> str:
    return f"{sample_rate}Hz-{seconds:g}s-v{CACHE_VERSION}"


def describe_settings(sample_rate: int, seconds: float) -> str:
    return f"{sample_rate} Hz, {seconds:g} s clips"


def _stat(path: Path) -> list:
    st = os.stat(path)
    return [str(path), st.st_size, st.st_mtime_ns]


@dataclass
class DecodedCache:
    """One split's cache at one setting (`folder` is the setting's folder)."""

    folder: Path
    name: str  # <dataset>-<split>
    sample_rate: int
    seconds: float

    @property
    def manifest_path(self) -> Path:
        return self.folder / f"{self.name}.json"

    @property
    def samples(self) -> int:
        return round(self.seconds * self.sample_rate)

    def manifest(self) -> dict | None:
        try:
            m = json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        same = (m.get("version"), m.get("sample_rate"), m.get("seconds"), m.get("crop")) == (
            CACHE_VERSION, self.sample_rate, self.seconds, CROP)
        return m if same and (self.folder / m.get("data", "")).is_file() else None

    def lookup(self, paths: Sequence[Path]
               ) -> tuple[Path, dict[str, int], dict[str, str]] | None:
        """(data file, {file: row} of those decoded, {file: why} of those that failed) when
        every path is in the complete cache with the size and mtime it had then; None when
        any is not (the split is stale, or was never cached)."""
        m = self.manifest()
        if m is None:
            return None
        index = {f[0]: i for i, f in enumerate(m["files"])}
        rows, failed = {}, {}
        for p in paths:
            i = index.get(str(p))
            if i is None:
                return None
            try:
                st = os.stat(p)
            except OSError:
                return None
            if [st.st_size, st.st_mtime_ns] != m["files"][i][1:]:
                return None
            why = m["failed"].get(str(i))
            if why is None:
                rows[str(p)] = i
            else:
                failed[str(p)] = why
        return self.folder / m["data"], rows, failed


def cache_for(folder: Path, dataset: str, split: str, sample_rate: int,
              seconds: float) -> DecodedCache:
    return DecodedCache(Path(folder) / settings_name(sample_rate, seconds), f"{dataset}-{split}",
                        sample_rate, seconds)


def built_settings(folder: Path) -> list[tuple[int, float]]:
    """The settings that have at least one complete split cached under `folder`."""
    out = []
    for sub in sorted(Path(folder).glob(f"*Hz-*s-v{CACHE_VERSION}")):
        for m in sub.glob("*-*.json"):
            if m.name.endswith(".partial.json"):
                continue
            with contextlib.suppress(OSError, json.JSONDecodeError, KeyError):
                blob = json.loads(m.read_text())
                out.append((int(blob["sample_rate"]), float(blob["seconds"])))
                break
    return out


@contextlib.contextmanager
def writing(folder: Path) -> Iterator[None]:
    """Hold the folder's lock while building; a second builder is refused in one line."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise DataError(f"{folder}: another `tail-bench prepare` ({holder}) is writing "
                            "this decoded-audio cache; wait for it to end") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)


# --- building -------------------------------------------------------------------------

def _decode_rows(data: str, offset: int, samples: int, rows: list[tuple[int, str]],
                 sample_rate: int, seconds: float) -> dict[int, str]:
    """Decode `rows` [(row, file)] into the data file at their rows (a worker's job);
    returns {row: why} for the files that failed (their rows stay zeros)."""
    failed = {}
    fd = os.open(data, os.O_WRONLY)
    try:
        for row, path in rows:
            try:
                clip = to_pcm16(load_clip(Path(path), sample_rate=sample_rate, seconds=seconds))
            except AudioError as err:
                failed[row] = str(err)
                continue
            os.pwrite(fd, clip.tobytes(), offset + row * samples * 2)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    return failed


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


@dataclass
class _Job:
    """One split being built: its partial state and the chunks still to decode."""

    cache: DecodedCache
    files: list[list]
    build: str
    chunk: int
    done: set[int]
    failed: dict[str, str]

    @property
    def data(self) -> Path:
        return self.cache.folder / f"{self.cache.name}.{self.build}.npy"

    @property
    def log(self) -> Path:
        return self.cache.folder / f"{self.cache.name}.{self.build}.log"

    @property
    def partial(self) -> Path:
        return self.cache.folder / f"{self.cache.name}.partial.json"

    def create(self) -> None:
        """The data file (sparse until written) and the partial manifest of a new build."""
        if self.partial.is_file() and json.loads(self.partial.read_text())["build"] == \
                self.build:
            return  # resumed
        np.lib.format.open_memmap(self.data, mode="w+", dtype=np.int16,
                                  shape=(len(self.files), self.cache.samples))
        atomic_write_json(self.partial, {"build": self.build, "chunk": self.chunk,
                                         "samples": self.cache.samples, "files": self.files})

    def chunks(self) -> list[int]:
        return [k for k in range(math.ceil(len(self.files) / self.chunk)) if k not in self.done]

    def rows(self, k: int) -> list[tuple[int, str]]:
        lo = k * self.chunk
        return [(r, self.files[r][0]) for r in range(lo, min(lo + self.chunk, len(self.files)))]

    def record(self, k: int, failed: dict[int, str]) -> None:
        self.done.add(k)
        self.failed.update({str(r): why for r, why in failed.items()})
        with open(self.log, "a") as f:
            f.write(json.dumps({"chunk": k, "failed": failed}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def finish(self) -> None:
        c = self.cache
        atomic_write_json(c.manifest_path, {
            "version": CACHE_VERSION, "sample_rate": c.sample_rate, "seconds": c.seconds,
            "crop": CROP, "data": self.data.name, "files": self.files, "failed": self.failed})
        self.partial.unlink(missing_ok=True)
        for old in [*c.folder.glob(f"{c.name}.*.npy"), *c.folder.glob(f"{c.name}.*.log")]:
            if old != self.data:
                old.unlink(missing_ok=True)  # a reader that has it open keeps its copy


def _plan(cache: DecodedCache, paths: Sequence[Path], workers: int,
          chunk: int | None) -> _Job | None:
    """The job for one split, nothing written yet: None when its cache is complete for
    these files; a killed build of the same files goes on from its log."""
    files = [_stat(p) for p in paths]
    m = cache.manifest()
    if m is not None and m["files"] == files:
        return None
    partial = cache.folder / f"{cache.name}.partial.json"
    with contextlib.suppress(OSError, json.JSONDecodeError, KeyError):
        blob = json.loads(partial.read_text())
        job = _Job(cache, files, blob["build"], blob["chunk"], set(), {})
        if blob["files"] == files and blob["samples"] == cache.samples and job.data.is_file():
            with contextlib.suppress(FileNotFoundError), open(job.log) as f:
                for line in f:
                    with contextlib.suppress(json.JSONDecodeError):  # a torn last line
                        entry = json.loads(line)
                        job.done.add(entry["chunk"])
                        job.failed.update(entry["failed"])
            return job
    chunk = chunk or max(1, min(256, math.ceil(len(files) / (4 * max(1, workers)))))
    return _Job(cache, files, uuid.uuid4().hex[:12], chunk, set(), {})


def _check_room(jobs: list[_Job]) -> None:
    if not jobs:
        return
    need = sum(len(j.chunks()) * j.chunk * j.cache.samples * 2 for j in jobs)
    free = shutil.disk_usage(jobs[0].cache.folder).free
    if need > free:
        raise DataError(f"{jobs[0].cache.folder}: the decoded-audio cache needs about "
                        f"{need / 1e9:.1f} GB more, and the disk has {free / 1e9:.1f} GB "
                        "free; free space, or point $TAIL_BENCH_CACHE at a larger disk")


def build(splits: list[tuple[DecodedCache, Sequence[Path]]], *, workers: int,
          progress: bool = True, chunk: int | None = None) -> dict[str, dict[str, str]]:
    """Decode every (cache, files) whose cache is missing or stale, in `workers` processes
    (1: in this one), `chunk` rows per task (default: enough tasks to balance the workers,
    at most 256 rows). Returns {cache name: {file: why}} for files that failed to decode.
    A killed build resumes where it stopped; a second concurrent builder is refused."""
    if not splits:
        return {}
    folder = splits[0][0].folder
    with writing(folder):
        jobs = [j for j in (_plan(c, p, workers, chunk) for c, p in splits) if j is not None]
        _check_room(jobs)
        for j in jobs:
            j.create()
        total = sum(len(j.files) for j in jobs)
        left = sum(len(j.rows(k)) for j in jobs for k in j.chunks())
        bar = progress_bar(total=total, initial=total - left, desc="decode", unit="clip",
                           enabled=progress)
        tasks = [(j, k) for j in jobs for k in j.chunks()]
        offsets = {id(j): np.load(j.data, mmap_mode="r").offset for j in jobs}
        args = lambda j, k: (str(j.data), offsets[id(j)], j.cache.samples,  # noqa: E731
                             j.rows(k), j.cache.sample_rate, j.cache.seconds)
        try:
            if workers <= 1:
                for j, k in tasks:
                    j.record(k, _decode_rows(*args(j, k)))
                    bar.update(len(j.rows(k)))
            else:
                _parallel(tasks, args, workers, bar)
        finally:
            bar.close()
        for j in jobs:
            j.finish()
    return {c.name: c.lookup(paths)[2] for c, paths in splits}


def _parallel(tasks: list, args, workers: int, bar) -> None:
    ctx = get_context("spawn")  # torch in a forked child can deadlock on its thread pool
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_one_thread) as pool:
        pending: dict[Future, tuple] = {}
        queue = iter(tasks)
        for j, k in queue:  # keep every worker busy, a bounded number in flight
            pending[pool.submit(_decode_rows, *args(j, k))] = (j, k)
            if len(pending) >= 2 * workers:
                break
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                j, k = pending.pop(fut)
                j.record(k, fut.result())
                bar.update(len(j.rows(k)))
                nxt = next(queue, None)
                if nxt is not None:
                    pending[pool.submit(_decode_rows, *args(*nxt))] = nxt


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
