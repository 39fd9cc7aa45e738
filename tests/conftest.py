"""Shared fixtures. The backbone cache goes to a per-session folder, so tests never read
weights a developer left in ~/.cache and CI pretrains the tiny backbone itself."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    os.environ["TAIL_BENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield


@pytest.fixture(scope="session")
def tiny_model(_cache):
    from tail_bench.models.builder import build_backbone

    return build_backbone("synth-tiny", device="cpu", progress=False)


@pytest.fixture(scope="session")
def quick_stream():
    from tail_bench.presets import get_preset
    from tail_bench.streams.registry import build_stream

    return build_stream("tail-synth", preset=get_preset("quick"), seed=0)


@pytest.fixture
def train():
    """`train(model, strategy, exp, ...)`: one step of the shared training loop on the CPU;
    returns the template."""
    from tail_bench.training.template import RetrievalTemplate

    def step(model, strategy, exp, *, epochs=1, lr=1e-3, batch=32, plugins=()):
        t = RetrievalTemplate(model=model, strategy=strategy, lr=lr, train_mb_size=batch,
                              train_epochs=epochs, device="cpu", plugins=list(plugins))
        t.train(exp)
        return t

    return step
