"""The embedded backbone: built from a synth config, pretrained once by the suite, cached.

The cache file is keyed by the config, the vocabulary and the corpus version, so a change
to any of them builds a new backbone instead of loading a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tail_bench.models.configs import BackboneConfig
from tail_bench.models.dual import DualEncoder
from tail_bench.models.towers import AudioTower, TextTower
from tail_bench.models.weights import CorruptWeights, load_checked, save_checked
from tail_bench.streams import synth
from tail_bench.streams.pairs import collate_pairs
from tail_bench.training.losses import info_nce, positive_pairs

CORPUS_VERSION = 3  # 3: InfoNCE without false negatives


def cache_root() -> Path:
    """$TAIL_BENCH_CACHE, else ~/.cache/tail-bench."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tail-bench"
    return Path(os.environ.get("TAIL_BENCH_CACHE", default))


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


def pretrain(model: DualEncoder, cfg: BackboneConfig, *, device: torch.device,
             batch_size: int = 64, progress: bool = True) -> dict[str, float]:
    """InfoNCE on the generated pretraining corpus (generic captions, no attributes)."""
    corpus = synth.pretraining_corpus(cfg.pretrain_clips, seconds=cfg.clip_seconds,
                                      seed=cfg.pretrain_seed)
    data = corpus.to_avalanche()
    gen = torch.Generator().manual_seed(cfg.pretrain_seed)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True,
                                         collate_fn=collate_pairs, generator=gen, drop_last=True)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.pretrain_lr, weight_decay=0.01)
    steps = cfg.pretrain_epochs * len(loader)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.pretrain_lr, total_steps=steps,
                                                pct_start=0.1)
    start, loss = time.perf_counter(), torch.tensor(0.0)
    with tqdm(total=steps, desc=f"pretrain {cfg.name}", disable=not progress, unit="batch") as bar:
        for _ in range(cfg.pretrain_epochs):
            for wave, texts, keys in loader:
                a, t = model(wave.to(device), texts)
                loss = info_nce(a, t, model.logit_scale, positive_pairs(keys.to(device)))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return {"seconds": time.perf_counter() - start, "final_loss": loss.item()}


def load_or_pretrain(cfg: BackboneConfig, *, device: torch.device, force: bool = False,
                     progress: bool = True) -> DualEncoder:
    """The cached backbone when its file passes the integrity check; else pretrain it (a
    corrupt cache file is named and rebuilt)."""
    model = build_synth(cfg)
    path = weights_path(cfg)
    if path.exists() and not force:
        try:
            model.load_state_dict(load_checked(path))
            return model.to(device).eval()
        except CorruptWeights as err:
            print(f"tail-bench: cached backbone {path} is corrupt ({err}); rebuilding it",
                  file=sys.stderr)
    stats = pretrain(model, cfg, device=device, progress=progress)
    save_checked(model.state_dict(), path,
                 {"config": json.dumps(cfg.__dict__), "stats": json.dumps(stats)})
    return model.to(device).eval()
