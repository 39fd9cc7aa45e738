"""The embedded backbone: built from a synth config, pretrained once by the suite, cached.

Pretraining plays the part of a real CLAP's (docs/tail-synth.md): the text tower reads every
word the stream can use, the audio tower hears every sound family, and the steps still
carry sounds it never heard (held-out concepts and sub-types) through channels it never met.
The cache file is keyed by the config, the vocabulary and the corpus version, so a change
to any of them builds a new backbone instead of loading a stale one. The default backbone
also ships with the suite (`shipped/`, pinned by its tensors' checksum in SHIPPED): a
machine without a cached file loads it instead of pretraining for minutes, and every CPU
starts from the same weights (floating-point pretraining can differ between CPUs;
`tail-bench pretrain --check` tells whether this one reproduces them).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tail_bench.losses import info_nce, positive_pairs
from tail_bench.models.configs import BackboneConfig
from tail_bench.models.dual import DualEncoder
from tail_bench.models.towers import AudioTower, TextTower
from tail_bench.models.weights import CorruptWeights, checksum, load_checked, save_checked
from tail_bench.progress import progress as progress_bar
from tail_bench.storage import cache_root
from tail_bench.streams import synth

CORPUS_VERSION = 4  # 4: tail-synth v2 (every word; all families; held-out sounds)
SHIPPED_DIR = Path(__file__).parent / "shipped"
# backbone -> sha256 of its shipped tensors (weights.checksum), pretrained on this project's
# 2-core CPU machine (one torch thread)
SHIPPED = {"synth-small": "2e34bb4f6ae0d22227235bf47dbcf6d27de5aee613a04573ae5740666035839f"}


def weights_path(cfg: BackboneConfig) -> Path:
    vocab = "\n".join(synth.lexicon())
    key = hashlib.sha256(f"{cfg.key()}|{vocab}|{CORPUS_VERSION}".encode()).hexdigest()[:12]
    return cache_root() / "backbones" / f"{cfg.name}-{key}.safetensors"


def build_synth(cfg: BackboneConfig) -> DualEncoder:
    torch.manual_seed(cfg.pretrain_seed)
    return DualEncoder(audio=AudioTower(cfg), text=TextTower(cfg, synth.lexicon()),
                       embed_dim=cfg.embed_dim, head_hidden=cfg.head_hidden,
                       meta={"backbone": cfg.name, "sample_rate": cfg.sample_rate,
                             "clip_seconds": cfg.clip_seconds})


class UnknownWords(RuntimeError):
    """The pretraining text misses words of the lexicon: a step could bring unknown tokens."""


def pretrain(model: DualEncoder, cfg: BackboneConfig, *, device: torch.device,
             batch_size: int = 64, progress: bool = True) -> dict[str, float]:
    """Two InfoNCE terms per batch (CHOICE, docs/tail-synth.md): audio-text on the audio
    corpus (one of each clip's three captions, drawn per epoch; a clip and its minimal-pair
    sibling share a batch) and text-text on half as many paraphrase pairs, which teach the
    text tower every word, held-out concepts' words included. The front end has no weights, so each
    clip's features are computed once."""
    start = time.perf_counter()
    corpus = synth.pretraining_corpus(cfg.pretrain_clips, seconds=cfg.clip_seconds,
                                      seed=cfg.pretrain_seed)
    pairs = synth.paraphrase_corpus(cfg.pretrain_texts, seed=cfg.pretrain_seed)
    missing = synth.unseen_tokens(synth.lexicon(), synth.pretraining_texts(
        cfg.pretrain_clips, cfg.pretrain_texts, seed=cfg.pretrain_seed))
    if missing:
        raise UnknownWords(f"pretraining text never uses {sorted(missing)}; every word of the "
                           "lexicon must occur (raise pretrain_texts)")
    model.to(device).train()
    with torch.no_grad():
        features = torch.cat([model.audio.features(torch.as_tensor(
            np.asarray(corpus.clips[i:i + 256])).to(device))
            for i in range(0, len(corpus.clip_ids), 256)])
    captions: list[list[str]] = [[] for _ in corpus.clip_ids]
    for text, clip in zip(corpus.captions, corpus.caption_clip, strict=True):
        captions[clip].append(text)
    del corpus
    gen = torch.Generator().manual_seed(cfg.pretrain_seed)
    batch_size = min(batch_size, len(captions)) // 2 * 2
    half = batch_size // 2  # paraphrase pairs per batch: the text tower is the cheaper one
    per_epoch = len(captions) // batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.pretrain_lr, weight_decay=0.01)
    steps = cfg.pretrain_epochs * per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.pretrain_lr, total_steps=steps,
                                                pct_start=0.1)
    loss = torch.tensor(0.0)
    text_order = torch.randperm(len(pairs), generator=gen)
    with progress_bar(total=steps, desc=f"pretrain {cfg.name}", enabled=progress,
                      unit="batch") as bar:
        for step in range(steps):
            if step % per_epoch == 0:  # siblings (2k, 2k + 1) stay together
                first = 2 * torch.randperm(len(captions) // 2, generator=gen)
                order = torch.stack([first, first + 1], 1).flatten()
            clips = order[step % per_epoch * batch_size:][:batch_size]
            pick = torch.randint(0, 1 << 30, (batch_size,), generator=gen)
            texts = [captions[c][int(k) % len(captions[c])] for c, k in zip(
                clips.tolist(), pick, strict=True)]
            keys = clips.to(device)
            audio = F.normalize(model.audio_head(model.audio(features[keys])), dim=-1)
            loss_at = info_nce(audio, model.encode_text(texts), model.logit_scale,
                               positive_pairs(keys, texts))
            rows = text_order[torch.arange(step * half, (step + 1) * half) % len(pairs)].tolist()
            first, second = [pairs[r][0] for r in rows], [pairs[r][1] for r in rows]
            ids = torch.tensor(rows, device=device)
            loss_tt = info_nce(model.encode_text(first), model.encode_text(second),
                               model.logit_scale,
                               positive_pairs(ids, first) | positive_pairs(ids, second))
            loss = loss_at + loss_tt
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return {"seconds": time.perf_counter() - start, "final_loss": loss.item()}


def shipped_path(cfg: BackboneConfig) -> Path | None:
    """The shipped weights of `cfg` (same file name as its cache file, so a changed config,
    vocabulary or corpus finds none), or None."""
    path = SHIPPED_DIR / weights_path(cfg).name
    return path if cfg.name in SHIPPED and path.exists() else None


def load_or_pretrain(cfg: BackboneConfig, *, device: torch.device, force: bool = False,
                     progress: bool = True) -> DualEncoder:
    """The cached backbone when its file passes the integrity check; else the cache is
    (re)built: from the shipped weights when they pass it and their pinned checksum, else by
    pretraining (a corrupt file is named)."""
    model = build_synth(cfg)
    path = weights_path(cfg)
    for source in () if force else (path, shipped_path(cfg)):
        if source is None or not source.exists():
            continue
        try:
            tensors = load_checked(source)
            if source != path:
                if checksum(tensors) != SHIPPED[cfg.name]:
                    raise CorruptWeights("not the checksum the suite pins")
                save_checked(tensors, path, {"config": json.dumps(cfg.__dict__),
                                             "source": str(source)})
            model.load_state_dict(tensors)
            return model.to(device).eval()
        except CorruptWeights as err:
            kind = "cached" if source == path else "shipped"
            print(f"tail-bench: {kind} backbone {source} is corrupt ({err}); rebuilding it",
                  file=sys.stderr)
    stats = pretrain(model, cfg, device=device, progress=progress)
    save_checked(model.state_dict(), path,
                 {"config": json.dumps(cfg.__dict__), "stats": json.dumps(stats)})
    return model.to(device).eval()


def check_shipped(cfg: BackboneConfig, *, device: torch.device, progress: bool = True
                  ) -> tuple[bool, str]:
    """Pretrain `cfg` here (nothing is written) and compare with its shipped weights:
    (identical, this machine's checksum)."""
    model = build_synth(cfg)
    pretrain(model, cfg, device=device, progress=progress)
    mine = checksum(model.state_dict())
    return mine == SHIPPED[cfg.name], mine
