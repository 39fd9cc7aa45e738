"""ZSCL adapted to retrieval (Zheng et al., "Preventing Zero-Shot Transfer Degradation in
Continual Learning of Vision-Language Models", ICCV 2023).

Every parameter trains. Two parts, as in the paper:
- Distillation in feature space toward the initial (zero-shot) model, on a reference set
  that belongs to no step: on every batch, a batch of reference pairs is embedded and the
  KL between the initial model's and the current model's in-batch similarity
  distributions (rows a2t, columns t2a) is added. The initial model's reference
  embeddings are fixed, so they are computed once. The paper's reference set is
  ConceptualCaptions images with ImageNet class names; here (CHOICE) it is the first
  `reference_clips` clips of the embedded backbone's own pretraining corpus, or, for any
  other backbone, a CSV of audio files and captions the user gives (`reference`).
- Weight ensembling in parameter space: during each step the weights are averaged every
  `we_every` batches and at the step's end; the step's starting weights (the previous
  step's result, or the initial model) are in the average (CHOICE), and the average is
  the model after the step,
  the one scored and the one the next step starts from, so the ensemble carries across
  steps. Off by default: the tuning protocol picked we_every=0 on tail-synth (docs), so the
  default is the distillation alone; `--opt zscl.we_every=10` restores the paper's method.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tail_bench.errors import ConfigError
from tail_bench.losses import caption_key, positive_pairs, similarity_distillation
from tail_bench.models.configs import BACKBONES
from tail_bench.models.dual import DualEncoder
from tail_bench.training.strategy import Strategy


@dataclass
class ZSCLOptions:
    lambda_ref: float = 1.0  # weight of the reference distillation (CHOICE)
    tau: float = 0.07  # similarity temperature, as LwF's (CHOICE)
    reference: str = ""  # CSV (columns file,caption); empty: the synth backbone's corpus
    reference_clips: int = 500  # clips of the pretraining corpus (synth backbones only)
    ref_batch: int = 32  # reference pairs per training batch (CHOICE)
    we_every: int = 0  # batches between weight snapshots; 0: no weight ensembling (picked
    # over {10, 0} x lambda_ref {1, 5} on tail-synth's val splits, docs/strategies.md)


def read_reference(path: Path, *, sample_rate: int, seconds: float
                   ) -> tuple[np.ndarray, list[str], list[int]]:
    """(clips, captions, caption -> clip) from a CSV with columns `file,caption`; files are
    relative to the CSV's folder, and a file named twice is one clip."""
    from tail_bench.streams.audio import load_clip

    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    clip_of: dict[str, int] = {}
    for row in rows:
        clip_of.setdefault(row["file"], len(clip_of))
    clips = np.stack([load_clip(path.parent / name, sample_rate=sample_rate, seconds=seconds)
                      for name in clip_of])
    return clips, [r["caption"] for r in rows], [clip_of[r["file"]] for r in rows]


class ZSCL(Strategy):
    name = "zscl"
    description = ("ZSCL: all parameters + distillation toward the zero-shot model on a "
                   "reference set + weight ensembling")
    Options = ZSCLOptions

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gen = torch.Generator().manual_seed(torch.initial_seed())
        self.ref: tuple[Tensor, list[str], Tensor] | None = None  # waves, captions, clip of
        # the initial model's audio and text embeddings of the reference set (its
        # distillation targets: embeddings, not a teacher model as in distill.py)
        self.reference_embeddings: tuple[Tensor, Tensor] | None = None
        self.average: list[Tensor] = []
        self.snapshots = self.batches = 0

    def check(self, backbone: str) -> None:
        o = self.options
        if o.reference_clips < 2 or o.ref_batch < 2 or o.we_every < 0:
            raise ConfigError(f"--opt zscl: reference_clips={o.reference_clips}, "
                              f"ref_batch={o.ref_batch}, we_every={o.we_every}: expected "
                              "reference_clips >= 2, ref_batch >= 2, we_every >= 0")
        path = Path(o.reference) if o.reference else None
        if path is None and backbone not in BACKBONES:
            raise ConfigError(
                f"--opt zscl.reference: backbone {backbone!r} has no built-in reference set "
                "(only the embedded synth backbones do: their pretraining corpus); give a "
                "CSV with columns file,caption of audio outside every step of the stream, "
                "e.g. --opt zscl.reference=ref/captions.csv (docs/strategies.md)")
        if path is not None:
            if not path.is_file():
                raise ConfigError(f"--opt zscl.reference={path}: no such file; expected a CSV "
                                  "with columns file,caption")
            with open(path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
            if not {"file", "caption"} <= set(header):
                raise ConfigError(f"--opt zscl.reference={path}: columns {header}; expected "
                                  "file,caption")

    def load_reference(self, model: DualEncoder) -> tuple[np.ndarray, list[str], list[int]]:
        rate, seconds = model.meta["sample_rate"], model.meta["clip_seconds"]
        if self.options.reference:
            return read_reference(Path(self.options.reference), sample_rate=rate,
                                  seconds=seconds)
        from tail_bench.streams import synth

        cfg = BACKBONES[model.meta["backbone"]]
        corpus = synth.pretraining_corpus(self.options.reference_clips, seconds=seconds,
                                          seed=cfg.pretrain_seed)
        if corpus.sample_rate != rate:
            corpus = synth.resampled(corpus, rate)
        return np.asarray(corpus.clips), corpus.captions, corpus.caption_clip

    @torch.no_grad()
    def setup(self, model: DualEncoder) -> None:
        """Everything trains; the reference set is embedded once by the initial model."""
        self.check(model.meta.get("backbone", ""))
        super().setup(model)
        clips, captions, owner = self.load_reference(model)
        waves = torch.as_tensor(clips, dtype=torch.float32)
        self.ref = (waves, captions, torch.tensor(owner))
        was = model.training
        model.eval()
        audio = torch.cat([model.encode_audio(waves[i:i + 64].to(model.device))
                           for i in range(0, len(waves), 64)])
        text = torch.cat([model.encode_text(captions[i:i + 64])
                          for i in range(0, len(captions), 64)])
        model.train(was)
        self.reference_embeddings = (audio, text)

    def reference_loss(self, model: DualEncoder) -> Tensor:
        """KL of the current model's in-batch similarities on a reference batch to the
        initial model's (zero at the initial model)."""
        waves, captions, owner = self.ref
        rows = torch.randperm(len(captions), generator=self.gen)[: self.options.ref_batch]
        clips = owner[rows]
        texts = [captions[i] for i in rows.tolist()]
        audio, text = model(waves[clips].to(model.device), texts)
        t_audio, t_text = (self.reference_embeddings[0][clips],
                           self.reference_embeddings[1][rows])
        keys = torch.stack([clips, torch.tensor([caption_key(t) for t in texts])], 1)
        return similarity_distillation(audio, text, t_audio, t_text, self.options.tau,
                                       positive_pairs(keys.to(model.device)))

    def before_backward(self, template, **kwargs) -> None:
        with template.autocast():
            loss = self.reference_loss(template.model)
        template.add_loss("ref", self.options.lambda_ref * loss)

    def _params(self, model: DualEncoder) -> list[Tensor]:
        return [p for p in model.parameters() if p.requires_grad]

    def before_training_exp(self, template, **kwargs) -> None:
        self.average = [p.detach().clone() for p in self._params(template.model)]
        self.snapshots, self.batches = 1, 0

    @torch.no_grad()
    def _snapshot(self, model: DualEncoder) -> None:
        self.snapshots += 1
        for avg, p in zip(self.average, self._params(model), strict=True):
            avg += (p.detach() - avg) / self.snapshots

    def after_training_iteration(self, template, **kwargs) -> None:
        self.batches += 1
        if self.options.we_every and self.batches % self.options.we_every == 0:
            self._snapshot(template.model)

    @torch.no_grad()
    def after_training_exp(self, template, **kwargs) -> None:
        if self.options.we_every:
            if self.batches % self.options.we_every:  # the step's last weights count too
                self._snapshot(template.model)
            for avg, p in zip(self.average, self._params(template.model), strict=True):
                p.copy_(avg)
        self.average = []

    def report(self) -> dict:
        return {"reference_pairs": len(self.ref[1]) if self.ref else 0}

    def state_dict(self) -> dict[str, Any]:
        """Where the reference batches' draw stands (the reference set and its initial
        embeddings are rebuilt by `setup` from the initial model; the average is per step)."""
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any], model: DualEncoder) -> None:
        self.gen.set_state(state["gen"].cpu())
