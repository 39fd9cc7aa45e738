"""--gallery: the union gallery ranks each query against every test set's candidates."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from tail_bench.evaluation.evaluator import RetrievalEvaluator
from tail_bench.record import Run
from tail_bench.reporting.tables import render
from tail_bench.streams.pairs import PairSet


class Lookup(nn.Module):
    """A model whose clip embedding is its waveform and whose caption embedding is given."""

    def __init__(self, text: dict[str, list[float]]):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(()))
        self.text = text

    @property
    def device(self):
        return self.scale.device

    def encode_audio(self, wave):
        return wave.float()

    def encode_text(self, texts):
        return torch.tensor([self.text[t] for t in texts])


def _set(name: str, captions: list[str]) -> PairSet:
    clips = np.eye(2, dtype=np.float32)  # clip i = e_i, in both sets
    return PairSet(name, "test", clips, [f"{name}{i}" for i in range(2)], captions, [0, 1],
                   16000)


def test_union_differs_from_per_dataset_by_construction():
    """Two test sets with the same two clips: each set alone is solved perfectly, but in
    the union every relevant clip ties with its twin from the other set, so t2a and a2t
    R@1 are exactly 1/2 (a tie at its expected value)."""
    model = Lookup({"a dog": [1, 0], "rain": [0, 1], "the dog": [1, 0], "the rain": [0, 1]})
    stream = [SimpleNamespace(dataset=_set("a", ["a dog", "rain"]).to_avalanche()),
              SimpleNamespace(dataset=_set("b", ["the dog", "the rain"]).to_avalanche())]
    per = RetrievalEvaluator(progress=False).evaluate(model, stream).scores
    assert set(per) == {"a", "b"}
    both = RetrievalEvaluator(progress=False, gallery="both").evaluate(model, stream)
    assert set(both.scores) == {"a", "b", "union:a", "union:b"}
    for name in ("a", "b"):
        assert both.scores[name] == per[name]
        for direction in ("t2a", "a2t"):
            assert per[name][direction]["R@1"]["value"] == 1.0
            assert both.scores[f"union:{name}"][direction]["R@1"]["value"] == 0.5
            assert both.scores[f"union:{name}"][direction]["R@5"]["value"] == 1.0
    assert both.clips.counts["union:a"]["t2a"].tolist() == [1.0, 1.0]  # per clip of "a"


def test_a_bad_gallery_is_refused():
    with pytest.raises(ValueError, match="gallery 'all'"):
        RetrievalEvaluator(gallery="all")


def _run(gallery: str | None) -> Run:
    score = {"value": 0.5, "ci95": None}
    scores = {d: {k: {"R@1": score, "mAP@10": score} for k in ("t2a", "a2t")}
              for d in ("a", "b", "union:a", "union:b")}
    rows = [{"step": i, "after": None if i == 0 else "ab"[i - 1], "scores": scores}
            for i in range(3)]
    config = {"strategy": "m"} | ({} if gallery is None else {"gallery": gallery})
    return Run.from_json({
        "schema": 2, "stream": {"name": "s", "datasets": ["a", "b"]}, "config": config,
        "resolved": {} if gallery is None else {"gallery": gallery},
        "runs": [{"method": "m", "seed": 0, "status": "done", "role": "continual",
                  "rows": rows, "cost": {"trainable_params": 1}}]})


@pytest.mark.parametrize("gallery, titles", [
    (None, ["## Comparison (final row)\n"]),  # runs from before --gallery: per-dataset
    ("per-dataset", ["## Comparison (final row)\n"]),
    ("union", ["## Comparison (final row), union gallery"]),
    ("both", ["## Comparison (final row), per-dataset gallery",
              "## Comparison (final row), union gallery",
              "## Gallery gap (final avg R@1, per-dataset − union)"]),
])
def test_tables_show_the_galleries_run_labelled(gallery, titles):
    text = render(_run(gallery))
    assert all(t in text for t in titles)
    assert text.count("## Comparison") == len([t for t in titles if "Comparison" in t])
    assert ("Gallery gap" in text) == (gallery == "both")
    assert "2.42%" not in text  # PTAT's share from the paper: only in runs with PTAT
