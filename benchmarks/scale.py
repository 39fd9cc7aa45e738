"""Full-size rehearsal of the real TAIL stream: what preparing, loading, evaluating and
reporting cost at the published sizes, how each cost grows, and what a full run costs.

It writes a data root in real formats (`tail_bench.streams.fixture`) with the published
clip and caption counts of the four data sets times `--fraction`, in `--layout`, with
generated audio at each data set's usual rate and file length, then measures, in one run:
- `tail-bench prepare --cache` (the CLI, a subprocess) with 1, 2 and all workers: clips/s
  and the peak resident memory of the process and its workers;
- the decoded-audio cache's bytes per clip and for the whole stream;
- the clips/s a run's loader delivers from the cache (batches of 64, shuffled) with N
  workers, with the cache in the page cache and evicted from it;
- the stream's build at run start (metadata, overlap, the cache's manifests);
- evaluation at the real test-set sizes (random embeddings: the scoring, not the towers),
  per-dataset and union galleries: wall time and peak memory;
- the report: a synthetic run with every method's rows at those sizes, its run.json and
  clips/ sizes, and `tail-bench report`'s time and peak memory;
each at 1x, 2x and 4x (`--growth`) of the data, with the growth exponent of each cost. From
the measured inputs and a GPU throughput file (`benchmarks/throughput.py --json`) it
prints the full TAIL's cost on one GPU: hours per method per seed, and disk.

    python benchmarks/scale.py --fraction 0.025 --out results/reference/scale
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

FULL = {  # published clips per split (AudioCaps v1, Clotho v2.1; WavCaps items, split 80/10/10)
    "audiocaps": (49_838, 495, 975), "clotho": (3_839, 1_045, 1_045),
    "bbc": 31_201, "audioset": 108_317}
CAPTIONS = {"audiocaps": (1, 5, 5), "clotho": (5, 5, 5), "bbc": (1, 1, 1), "audioset": (1, 1, 1)}
RATES = (32_000, 44_100, 32_000, 32_000)  # aac-datasets/WavCaps 32 kHz FLAC; Clotho 44.1 kHz
FILE_SECONDS = (10.0, 20.0, 30.0, 10.0)  # AudioCaps segments 10 s; Clotho 15-30 s; BBC longer
HASH_SHARE = {"train": 0.8, "val": 0.1, "test": 0.1}  # WavCaps' split (CHOICE, hash_split)
METHODS = ("ptat", "finetune", "lwf", "ewc", "l2p", "er", "zscl", "coda-prompt", "lora",
           "joint", "zeroshot")
LIKE = {"ptat": "ptat", "l2p": "l2p", "coda-prompt": "l2p"}  # unmeasured -> measured rate
DEFAULT_THROUGHPUT = Path(__file__).resolve().parent.parent / "results" / "reference" / \
    "scale" / "throughput-h200.json"


def full_counts() -> dict[str, dict[str, tuple[int, int]]]:
    """(clips, captions) per data set and split at full size."""
    out = {}
    for d, sizes in FULL.items():
        clips = sizes if isinstance(sizes, tuple) else tuple(
            round(sizes * HASH_SHARE[s]) for s in ("train", "val", "test"))
        out[d] = {s: (n, n * k) for s, n, k in zip(("train", "val", "test"), clips,
                                                     CAPTIONS[d], strict=True)}
    return out


def spec_for(fraction: float, pool: int):
    from tail_bench.streams.fixture import Spec

    scaled = lambda n: max(1, round(n * fraction))  # noqa: E731
    return Spec(sizes=tuple(scaled(n) for n in FULL["audiocaps"]),
                clotho_sizes=tuple(scaled(n) for n in FULL["clotho"]),
                wavcaps_items=(scaled(FULL["bbc"]), scaled(FULL["audioset"])),
                seconds=FILE_SECONDS, rates=RATES, pool=pool)


class PeakRSS:
    """Samples the memory of a process and its children every `every` seconds: the peak
    of their summed resident memory (which counts shared libraries once per process), of
    their summed private memory (USS: what they hold alone), and of the largest one."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        import psutil

        self.proc, self.every = psutil.Process(pid), every
        self.total = self.private = self.largest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                mem = [p.memory_full_info() for p in
                       [self.proc, *self.proc.children(recursive=True)]]
            except psutil.Error:
                mem = []
            if mem:
                self.total = max(self.total, sum(m.rss for m in mem))
                self.private = max(self.private, sum(m.uss for m in mem))
                self.largest = max(self.largest, max(m.rss for m in mem))
            self._stop.wait(self.every)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_measured(cmd: list[str], env: dict[str, str]) -> dict:
    """Wall time and peak memory of a command (and its children)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    with PeakRSS(proc.pid) as peak:
        out, _ = proc.communicate()
    if proc.returncode not in (0, 1):  # 1: problems in the data (reported, not a failure)
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}")
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak.total / 2**20,
            "peak_private_mb": peak.private / 2**20,
            "largest_process_mb": peak.largest / 2**20, "output": out}


def clap_stub(folder: Path, sample_rate: int, seconds: float) -> Path:
    """A backbone directory holding only the feature extractor's config: enough for
    `prepare --backbone` to know the audio settings of a CLAP checkpoint."""
    from transformers import ClapFeatureExtractor

    ClapFeatureExtractor(sampling_rate=sample_rate, max_length_s=seconds).save_pretrained(folder)
    (folder / "config.json").write_text('{"model_type": "clap"}')
    return folder


def du(path: Path) -> int:
    """Bytes on disk (sparse files count what is written)."""
    if path.is_file():
        return path.stat().st_blocks * 512
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def measure_prepare(root: Path, backbone: Path, workers: int, cache: Path, out: Path) -> dict:
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "TAIL_BENCH_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "tail_bench", "prepare", "--data-root", str(root),
           "--cache", "--backbone", str(backbone), "--workers", str(workers), "--on-error",
           "skip", "--out", str(out), "--no-progress"]
    shutil.rmtree(out, ignore_errors=True)
    r = run_measured(cmd, env)
    if not (out / "prepare-report.json").is_file():
        raise RuntimeError(f"{' '.join(cmd)} wrote no report:\n{r['output'][-3000:]}")
    report = json.loads((out / "prepare-report.json").read_text())
    built = report["cache"]
    return {"workers": workers, "clips": built["clips"], "seconds": r["seconds"],
            "decode_seconds": built["seconds"],
            "clips_per_s": built["clips"] / built["seconds"],
            "peak_rss_mb": r["peak_rss_mb"], "peak_private_mb": r["peak_private_mb"],
            "largest_process_mb": r["largest_process_mb"],
            "cache_bytes": built["bytes_on_disk"],
            "cache_bytes_per_clip": built["bytes_on_disk"] / built["clips"],
            "problems": len(report["problems"])}


def _evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def measure_loader(root: Path, cache: Path, *, sample_rate: int, seconds: float,
                   workers: list[int], batches: int, batch_size: int = 64) -> dict:
    """Stream build time at run start, and clips/s the loader delivers from the cache."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    os.environ["TAIL_BENCH_CACHE"] = str(cache)
    from tail_bench.streams.tail import build_tail

    start = time.perf_counter()
    stream = build_tail(root, sample_rate=sample_rate, clip_seconds=seconds, policy="skip")
    build_seconds = time.perf_counter() - start
    train = max(stream.train, key=lambda p: len(p.clip_ids))
    assert train.clips.cached is not None, "the loader benchmark needs a fresh cache"
    data = train.clips.cached[0]
    rows = []
    for w in workers:
        for state in ("page cache", "evicted"):
            if state == "evicted":
                _evict(data)
            else:  # read it once so it is in the page cache
                np.load(data, mmap_mode="r").sum(dtype=np.int64)
            dataset = train.to_avalanche()  # what a run trains on, its own collate
            sampler = RandomSampler(dataset, num_samples=batches * batch_size,
                                    replacement=batches * batch_size > len(dataset),
                                    generator=torch.Generator().manual_seed(0))
            loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                                num_workers=w, collate_fn=dataset.collate_fn)
            n, t0 = 0, time.perf_counter()
            for wave, _, _ in loader:  # to the end: its workers stop as in a run
                n += len(wave)
            t = time.perf_counter() - t0
            rows.append({"workers": w, "state": state, "clips": n, "seconds": t,
                         "clips_per_s": n / t})
    return {"stream_build_seconds": build_seconds, "loader": rows,
            "split": f"{train.dataset}/{train.split}", "split_clips": len(train.clip_ids)}


def _test_sizes(factor: float) -> dict[str, tuple[int, int]]:
    return {d: (round(c * factor), round(k * factor)) for d, (c, k) in
            ((d, s["test"]) for d, s in full_counts().items())}


def _embeddings(factor: float, dim: int):
    import torch

    gen = torch.Generator().manual_seed(0)
    sets = []
    for name, (clips, captions) in _test_sizes(factor).items():
        norm = torch.nn.functional.normalize
        owner = torch.arange(captions) * clips // captions  # captions spread over clips
        sets.append((name, norm(torch.randn(clips, dim, generator=gen), dim=-1),
                     norm(torch.randn(captions, dim, generator=gen), dim=-1), owner))
    return sets


def eval_worker(factor: float, dim: int, queue) -> None:
    """Scoring at the real test sizes x factor, in a fresh process (its peak is its own)."""
    import resource

    import torch

    from tail_bench.evaluation.evaluator import score_embedded
    from tail_bench.evaluation.retrieval import bidirectional_metrics

    torch.set_num_threads(int(os.environ.get("SCALE_THREADS", "0")) or torch.get_num_threads())
    sets = _embeddings(factor, dim)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    metrics_s = 0.0
    for _, a, t, o in sets:
        s = time.perf_counter()
        bidirectional_metrics(a, t, o)
        metrics_s += time.perf_counter() - s
    t1 = time.perf_counter()
    score_embedded(sets, union=False)
    t2 = time.perf_counter()
    score_embedded(sets, union=True)
    t3 = time.perf_counter()
    union = (t3 - t2) - (t2 - t1)
    queue.put({"factor": factor, "clips": sum(len(a) for _, a, _, _ in sets),
               "captions": sum(len(t) for _, _, t, _ in sets),
               "per_dataset_seconds": t2 - t1, "per_dataset_metrics_seconds": metrics_s,
               "per_dataset_bootstrap_seconds": (t2 - t1) - metrics_s,
               "union_seconds": union, "total_seconds": t2 - t1 + union,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "embeddings_rss_mb": base, "threads": torch.get_num_threads()})


def report_worker(factor: float, out: str, seeds: int, queue) -> None:
    """A synthetic run at the real test sizes x factor: every method, `seeds` seeds, a row
    per step on both galleries; the time to write it as a run does, its sizes, and the
    time and peak memory of `tail-bench report` on it (tables, CSV, plots)."""
    import resource

    from tail_bench.config import RunConfig
    from tail_bench.evaluation.bootstrap import ClipScores
    from tail_bench.evaluation.galleries import union_key
    from tail_bench.record import Entry, Role, Row, Status, load_run
    from tail_bench.reporting.results import RunStore, load_clips, write_derived

    sizes = _test_sizes(factor)
    datasets = list(sizes)
    rng = np.random.default_rng(0)
    cfg = RunConfig(strategy="ptat", baselines=list(METHODS[1:]), stream="tail",
                    data_root=Path("/data/tail"), gallery="both", seeds=list(range(seeds)))
    header = {"suite": "tail-bench scale", "created": "synthetic", "command": ["scale"],
              "config": cfg.as_dict(),
              "resolved": {"methods": list(METHODS), "epochs": 5, "batch_size": 64,
                           "device": "cuda", "precision": "bf16", "orders": [datasets],
                           "gallery": "both", "world_size": 1},
              "stream": {"name": "tail", "datasets": datasets, "notes": {},
                         "splits": {d: {"test": {"clips": c, "captions": k}}
                                    for d, (c, k) in sizes.items()}}}
    t0 = time.perf_counter()
    store = RunStore(Path(out), header, report_every="run")
    for seed in range(seeds):
        for method in METHODS:
            steps = 0 if method == "zeroshot" else 1 if method == "joint" else len(datasets)
            role = Role.ZERO_SHOT if steps == 0 else Role.JOINT if steps == 1 else \
                Role.CONTINUAL
            entry = store.start(Entry(
                method=method, seed=seed, status=Status.RUNNING, role=role,
                description=method, options={}, data_seed=seed, strategy=method,
                order=datasets, order_index=0, avalanche_plugins=[]))
            for step in range(steps + 1):
                clips, scores = ClipScores(), {}
                for d, (c, k) in sizes.items():
                    for key in (d, union_key(d)):
                        owner = np.arange(k) * c // k
                        counts = {"t2a": np.bincount(owner, minlength=c).astype(float),
                                  "a2t": np.ones(c)}
                        clips.counts[key], clips.sums[key], scores[key] = counts, {}, {}
                        for direction, n in counts.items():
                            sums = {m: rng.random(c) * n for m in
                                    ("R@1", "R@5", "R@10", "mAP@10")}
                            clips.sums[key][direction] = sums
                            scores[key][direction] = {  # intervals: the evaluation's part
                                m: {"value": float(v.sum() / n.sum()),
                                    "ci95": [float(v.sum() / n.sum())] * 2}
                                for m, v in sums.items()}
                store.add_row(entry, Row(step=step, after=None if step == 0 else
                                         datasets[step - 1], scores=scores,
                                         train_seconds=1.0, eval_seconds=1.0), clips)
            store.finish(entry, cost={"trainable_params": 1, "trainable_by_module": {},
                                      "backbone_params": 1, "train_seconds": 1.0,
                                      "eval_seconds": 1.0, "peak_memory_mb": 1.0,
                                      "memory_kind": "cuda_max_allocated",
                                      "wall_seconds": 2.0}, extra={})
    store.close()
    write_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    run = load_run(Path(out))
    write_derived(Path(out), run, load_clips(Path(out), run))
    report_seconds = time.perf_counter() - t1
    queue.put({"factor": factor, "rows": sum(len(e.rows) for e in run.entries),
               "write_seconds": write_seconds, "report_seconds": report_seconds,
               "run_json_bytes": (Path(out) / "run.json").stat().st_size,
               "clips_bytes": du(Path(out) / "clips"),
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def in_process(target, *args) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def exponent(points: dict[float, float]) -> float | None:
    """Least-squares slope of log(cost) on log(size): 1 is linear, 2 quadratic, 0 flat."""
    xs = [math.log(x) for x, y in points.items() if y > 0]
    ys = [math.log(y) for y in points.values() if y > 0]
    if len(xs) < 2:
        return None
    return float(np.polyfit(xs, ys, 1)[0])


def gpu_inputs(path: Path) -> dict[str, dict[str, float]]:
    """bf16 training and evaluation clips/s per method from a throughput.py --json file;
    methods it does not measure take the rate of the one they resemble (LIKE, else
    Finetune): a teacher's extra forward pass is not in it, so theirs is a lower bound."""
    blob = json.loads(Path(path).read_text())
    rows = {r["method"]: r for r in blob["rows"] if r.get("precision") == "bf16" and
            "train_clips_per_s" in r}
    out = {}
    for m in METHODS:
        src = rows.get(m) or rows[LIKE.get(m, "finetune")]
        out[m] = {"train": src["train_clips_per_s"], "eval": src["eval_clips_per_s"],
                  "measured": m in rows, "as": src["method"]}
    return {"methods": out, "source": blob.get("source", str(path)),
            "settings": blob.get("settings", {})}


def cost_table(gpu: dict, *, epochs: int, loader_cps: float, scoring_s: float,
               report_s: float) -> list[dict]:
    """Hours per method per seed on one GPU, from the measured inputs."""
    counts = full_counts()
    train_rows = [counts[d]["train"][1] for d in counts]  # captions: one row each
    eval_clips = sum(s["test"][0] for s in counts.values())
    steps = len(train_rows)
    out = []
    for m, rate in gpu["methods"].items():
        train_rate = min(rate["train"], loader_cps)
        evals = 1 if m == "zeroshot" else 2 if m == "joint" else steps + 1
        rows = 0 if m == "zeroshot" else sum(train_rows)
        train_h = epochs * rows / train_rate / 3600
        eval_h = evals * (eval_clips / min(rate["eval"], loader_cps) + scoring_s) / 3600
        out.append({"method": m, "train_h": train_h, "eval_h": eval_h,
                    "report_h": report_s / 3600, "total_h": train_h + eval_h + report_s / 3600,
                    "train_clips_per_s": train_rate, "rate_from": rate["as"],
                    "measured": rate["measured"]})
    return out


def markdown(rows: list[list], header: list[str]) -> str:
    from tail_bench.reporting.tables import Table

    return Table(header, [[str(c) for c in r] for r in rows]).markdown()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fraction", type=float, default=0.025,
                   help="the data root's share of the published sizes at growth 1")
    p.add_argument("--growth", type=float, nargs="+", default=[1, 2, 4],
                   help="sizes measured, as multiples of --fraction (and of the real test "
                        "sets for evaluation and reporting)")
    p.add_argument("--layout", default="aac-datasets",
                   help="the data root's layout (fixture --layout)")
    p.add_argument("--sample-rate", type=int, default=48_000, help="cache rate (CLAP's)")
    p.add_argument("--seconds", type=float, default=10.0, help="cache clip length (CLAP's)")
    p.add_argument("--pool", type=int, default=64,
                   help="distinct generated clips per data set and split (files cycle)")
    p.add_argument("--prepare-workers", type=int, nargs="+", default=[1, 2],
                   help="worker counts timed at growth 1 (all cores are added)")
    p.add_argument("--loader-workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--loader-batches", type=int, default=30)
    p.add_argument("--dim", type=int, default=512, help="embedding width (CLAP's 512)")
    p.add_argument("--seeds", type=int, default=3, help="seeds in the synthetic run")
    p.add_argument("--epochs", type=int, default=5, help="epochs per step (tail-paper.yaml)")
    p.add_argument("--throughput", type=Path, default=DEFAULT_THROUGHPUT,
                   help="GPU figures: a benchmarks/throughput.py --json file")
    p.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the data roots and caches")
    p.add_argument("--out", type=Path, help="write config.json, scale.json and report.md")
    a = p.parse_args(argv)
    from tail_bench.streams.cache import default_workers
    from tail_bench.streams.fixture import write_fixture

    cores = default_workers()
    work = Path(a.work or tempfile.mkdtemp(prefix="tail-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    stub = clap_stub(work / "clap-stub", a.sample_rate, a.seconds)
    result: dict = {"data": [], "evaluation": [], "report": [],
                    "machine": {"cores": cores, "cpu": platform.processor() or
                                platform.machine(), "python": platform.python_version()}}
    start = time.perf_counter()
    for g in a.growth:
        fraction = a.fraction * g
        root, cache = work / f"root-{g:g}x", work / "cache"
        for old in (root, cache, work / f"hf-{g:g}x"):
            shutil.rmtree(old, ignore_errors=True)
        t = time.perf_counter()
        write_fixture(root, layout=a.layout, spec=spec_for(fraction, a.pool),
                      hf_cache=work / f"hf-{g:g}x")
        written = {"growth": g, "fraction": fraction, "write_seconds": time.perf_counter() - t,
                   "source_bytes": du(root) + du(work / f"hf-{g:g}x")}
        print(f"[{g:g}x] wrote {root} in {written['write_seconds']:.0f} s", flush=True)
        counts = sorted({*(a.prepare_workers if g == a.growth[0] else []), cores})
        written["prepare"] = [measure_prepare(root, stub, w, cache, work / "prepare")
                              for w in counts]
        for r in written["prepare"]:
            print(f"[{g:g}x] prepare {r['workers']} workers: {r['clips_per_s']:.1f} clips/s, "
                  f"peak {r['peak_rss_mb']:.0f} MB", flush=True)
        written.update(in_process(loader_worker, str(root), str(cache), a.sample_rate,
                                  a.seconds, a.loader_workers, a.loader_batches))
        result["data"].append(written)
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(work / f"hf-{g:g}x", ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
    for g in a.growth:
        result["evaluation"].append(in_process(eval_worker, g, a.dim))
        print(f"[{g:g}x] evaluation {result['evaluation'][-1]['total_seconds']:.1f} s",
              flush=True)
        out = work / f"run-{g:g}x"
        shutil.rmtree(out, ignore_errors=True)
        result["report"].append(in_process(report_worker, g, str(out), a.seeds))
        print(f"[{g:g}x] report {result['report'][-1]['report_seconds']:.1f} s", flush=True)
        if not a.keep:
            shutil.rmtree(out, ignore_errors=True)
    result["wall_seconds"] = time.perf_counter() - start
    result["growth_exponents"] = exponents(result)
    result["full_tail"] = full_tail(result, a)
    text = render(result, a)
    print(text)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()
                  if k not in ("out", "work", "keep")}
        (a.out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
        (a.out / "scale.json").write_text(json.dumps(result, indent=1) + "\n")
        (a.out / "report.md").write_text(text + "\n")
    return result


def loader_worker(root: str, cache: str, sample_rate: int, seconds: float, workers: list[int],
                  batches: int, queue) -> None:
    queue.put(measure_loader(Path(root), Path(cache), sample_rate=sample_rate, seconds=seconds,
                             workers=workers, batches=batches))


def exponents(result: dict) -> dict[str, float | None]:
    data, ev, rep = result["data"], result["evaluation"], result["report"]
    all_cores = [next(r for r in d["prepare"] if r["workers"] == max(
        x["workers"] for x in d["prepare"])) for d in data]
    size = lambda rows, key: {r["growth"] if "growth" in r else r["factor"]: key(r)  # noqa: E731
                              for r in rows}
    return {
        "prepare seconds": exponent({d["growth"]: r["decode_seconds"]
                                     for d, r in zip(data, all_cores, strict=True)}),
        "prepare peak memory": exponent({d["growth"]: r["peak_private_mb"]
                                         for d, r in zip(data, all_cores, strict=True)}),
        "prepare largest process": exponent({d["growth"]: r["largest_process_mb"]
                                             for d, r in zip(data, all_cores, strict=True)}),
        "cache bytes": exponent({d["growth"]: r["cache_bytes"]
                                 for d, r in zip(data, all_cores, strict=True)}),
        "stream build at run start": exponent(size(data, lambda d: d["stream_build_seconds"])),
        "evaluation, per-dataset": exponent(size(ev, lambda r: r["per_dataset_seconds"])),
        "evaluation, union": exponent(size(ev, lambda r: r["union_seconds"])),
        "evaluation peak memory": exponent(size(ev, lambda r: r["peak_rss_mb"])),
        "run files written": exponent(size(rep, lambda r: r["write_seconds"])),
        "report": exponent(size(rep, lambda r: r["report_seconds"])),
        "report peak memory": exponent(size(rep, lambda r: r["peak_rss_mb"])),
        "run.json bytes": exponent(size(rep, lambda r: r["run_json_bytes"])),
        "clips/ bytes": exponent(size(rep, lambda r: r["clips_bytes"])),
    }


def full_tail(result: dict, a: argparse.Namespace) -> dict:
    """The full TAIL on one GPU from the measured inputs (each stated)."""
    gpu = gpu_inputs(a.throughput)
    first = result["data"][0]
    per_clip = max(first["prepare"], key=lambda r: r["workers"])["cache_bytes_per_clip"]
    best_loader = max(r["clips_per_s"] for r in first["loader"] if r["state"] == "evicted")
    ev = next(r for r in result["evaluation"] if r["factor"] == 1) if any(
        r["factor"] == 1 for r in result["evaluation"]) else result["evaluation"][0]
    rep = next((r for r in result["report"] if r["factor"] == 1), result["report"][0])
    clips = sum(c for s in full_counts().values() for c, _ in s.values())
    scoring = ev["per_dataset_seconds"] + ev["union_seconds"]
    rows = cost_table(gpu, epochs=a.epochs, loader_cps=best_loader, scoring_s=scoring,
                      report_s=rep["report_seconds"] / (len(METHODS) * a.seeds))
    disk = {"cache_gb": per_clip * clips / 1e9, "run_json_gb": rep["run_json_bytes"] / 1e9,
            "clips_gb": rep["clips_bytes"] / 1e9}
    return {"inputs": {"epochs": a.epochs, "full_clips": clips,
                       "train_rows": {d: s["train"][1] for d, s in full_counts().items()},
                       "test_clips": {d: s["test"][0] for d, s in full_counts().items()},
                       "loader_clips_per_s": best_loader, "scoring_seconds": scoring,
                       "cache_bytes_per_clip": per_clip, "gpu": gpu},
            "methods": rows, "disk": disk,
            "total_gpu_hours_per_seed": sum(r["total_h"] for r in rows)}


def render(result: dict, a: argparse.Namespace) -> str:
    lines = ["# Full-size rehearsal (benchmarks/scale.py)\n",
             f"Data root: {a.layout} layout, {a.fraction:g} of the published sizes at 1x "
             f"(growth {', '.join(f'{g:g}x' for g in a.growth)}); cache at {a.sample_rate} Hz x "
             f"{a.seconds:g} s; {result['machine']['cores']} cores; wall "
             f"{result['wall_seconds'] / 60:.1f} min.\n", "## prepare --cache\n"]
    rows = [[f"{d['growth']:g}x", r["clips"], r["workers"], f"{r['clips_per_s']:.1f}",
             f"{r['decode_seconds']:.1f}", f"{r['peak_rss_mb']:.0f}",
             f"{r['peak_private_mb']:.0f}", f"{r['largest_process_mb']:.0f}",
             f"{r['cache_bytes_per_clip'] / 1e3:.0f}"]
            for d in result["data"] for r in d["prepare"]]
    lines.append(markdown(rows, ["size", "clips", "workers", "clips/s", "decode s",
                                 "peak RSS MB (all)", "peak private MB (all)",
                                 "largest process MB", "cache kB/clip"]))
    lines.append("\n## Loader (from the cache, batches of 64)\n")
    rows = [[f"{d['growth']:g}x", d["split"], r["workers"], r["state"], f"{r['clips_per_s']:.0f}"]
            for d in result["data"] for r in d["loader"]]
    lines.append(markdown(rows, ["size", "split", "workers", "cache", "clips/s"]))
    rows = [[f"{d['growth']:g}x", f"{d['stream_build_seconds']:.1f}"] for d in result["data"]]
    lines.append("\nStream build at run start (metadata, overlap, manifests):\n")
    lines.append(markdown(rows, ["size", "seconds"]))
    lines.append("\n## Evaluation at the real test sizes (scoring only, random embeddings)\n")
    rows = [[f"{r['factor']:g}x", r["clips"], r["captions"],
             f"{r['per_dataset_metrics_seconds']:.1f}",
             f"{r['per_dataset_bootstrap_seconds']:.1f}", f"{r['per_dataset_seconds']:.1f}",
             f"{r['union_seconds']:.1f}", f"{r['peak_rss_mb']:.0f}"] for r in result["evaluation"]]
    lines.append(markdown(rows, ["size", "clips", "captions", "metrics s", "bootstrap s",
                                 "per-dataset s", "union s", "peak RSS MB"]))
    lines.append("\n## Run files and report (synthetic run: every method, "
                 f"{a.seeds} seeds, both galleries)\n")
    rows = [[f"{r['factor']:g}x", r["rows"], f"{r['write_seconds']:.1f}",
             f"{r['report_seconds']:.1f}", f"{r['peak_rss_mb']:.0f}",
             f"{r['run_json_bytes'] / 1e6:.1f}", f"{r['clips_bytes'] / 1e6:.1f}"]
            for r in result["report"]]
    lines.append(markdown(rows, ["size", "rows", "write s", "report s", "peak RSS MB",
                                 "run.json MB", "clips/ MB"]))
    lines.append("\n## Growth exponents (log cost vs log size; 1 = linear)\n")
    lines.append(markdown([[k, "n/a" if v is None else f"{v:.2f}"]
                           for k, v in result["growth_exponents"].items()], ["cost", "exponent"]))
    ft = result["full_tail"]
    inp = ft["inputs"]
    lines.append("\n## The full TAIL on one GPU, per seed\n")
    lines.append(f"Inputs: {inp['full_clips']:,} clips; training rows per step "
                 f"{', '.join(f'{d} {n:,}' for d, n in inp['train_rows'].items())}; "
                 f"{inp['epochs']} epochs; {sum(inp['test_clips'].values()):,} test clips "
                 f"scored after every step; loader {inp['loader_clips_per_s']:.0f} clips/s "
                 f"(cache evicted, best worker count here); scoring "
                 f"{inp['scoring_seconds']:.0f} s per evaluation (this CPU, both galleries: "
                 f"an upper bound); GPU rates from {inp['gpu']['source']}.\n")
    rows = [[r["method"], f"{r['train_clips_per_s']:.0f}" + ("" if r["measured"] else
                                                              f" (as {r['rate_from']})"),
             f"{r['train_h']:.2f}", f"{r['eval_h']:.2f}", f"{r['total_h']:.2f}"]
            for r in ft["methods"]]
    lines.append(markdown(rows, ["method", "train clips/s", "train h", "eval h", "total h"]))
    d = ft["disk"]
    lines.append(f"\nAll methods, one seed: {ft['total_gpu_hours_per_seed']:.1f} GPU hours. "
                 f"Disk: decoded-audio cache {d['cache_gb']:.0f} GB; run.json "
                 f"{d['run_json_gb'] * 1e3:.0f} MB and clips/ {d['clips_gb'] * 1e3:.0f} MB "
                 f"for {a.seeds} seeds.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
