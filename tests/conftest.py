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
