"""The shared evaluator: distinct captions embedded once, intervals, paired tests."""

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from tail_bench.evaluation import bootstrap
from tail_bench.evaluation.bootstrap import ClipScores
from tail_bench.evaluation.evaluator import RetrievalEvaluator


def test_each_distinct_caption_is_embedded_once_and_batch_size_does_not_matter(
        tiny_model, quick_stream):
    model = copy.deepcopy(tiny_model)
    last = quick_stream.test[-1]  # give one test set repeated captions, as real sets have
    repeated = replace(last, captions=[last.captions[i - i % 3] for i in range(len(last.captions))])
    test = replace(quick_stream, test=[*quick_stream.test[:-1], repeated]).scenario().test_stream
    seen: list[str] = []
    encode = model.encode_text
    model.encode_text = lambda texts: (seen.extend(texts), encode(texts))[1]
    small = RetrievalEvaluator(batch_size=7, progress=False).evaluate(model, test).scores
    captions = [c for exp in test for c in exp.dataset.caption]
    assert sorted(seen) == sorted(set(captions)) and len(seen) < len(captions)
    large = RetrievalEvaluator(batch_size=128, progress=False).evaluate(model, test).scores
    assert small == large


def test_every_test_set_is_embedded_in_full_batches_equal_to_set_by_set(tiny_model,
                                                                        quick_stream):
    """One pass over every set's clips: every audio batch but the last is full; captions
    go in batches ordered by length; the embeddings are those of embedding set by set."""
    model = copy.deepcopy(tiny_model)
    datasets = [exp.dataset for exp in quick_stream.scenario().test_stream]
    evaluator = RetrievalEvaluator(batch_size=16, progress=False)
    one_by_one = [evaluator.embed(model, d) for d in datasets]
    sizes, texts = [], []
    encode_audio, encode_text = model.encode_audio, model.encode_text
    model.encode_audio = lambda wave: (sizes.append(len(wave)), encode_audio(wave))[1]
    model.encode_text = lambda batch: (texts.append(batch), encode_text(batch))[1]
    together = evaluator.embed_sets(model, datasets)
    clips = sum(len(audio) for audio, _, _ in one_by_one)
    assert len(datasets) > 1 and sizes == [16] * (clips // 16) + [clips % 16] * (clips % 16 > 0)
    lengths = [len(t) for batch in texts for t in batch]
    assert lengths == sorted(lengths) and all(len(b) == 16 for b in texts[:-1])
    for mine, reference in zip(together, one_by_one, strict=True):
        for a, b in zip(mine, reference, strict=True):
            assert torch.equal(a, b)


def test_bootstrap_interval_covers_the_value_and_shrinks_with_more_clips():
    rng = np.random.default_rng(0)
    widths = []
    for n in (50, 800):
        sums = rng.binomial(5, 0.3, size=n).astype(float)
        counts = np.full(n, 5.0)
        lo, hi = bootstrap.ci(sums, counts)
        assert lo < sums.sum() / counts.sum() < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2  # ~ 1 / sqrt(n)


def _rows(values_per_row, n_clips=200):
    rows = []
    for v in values_per_row:
        c = ClipScores()
        for ds, p in zip(("a", "b"), v, strict=True):
            c.counts[ds] = {"t2a": np.ones(n_clips), "a2t": np.ones(n_clips)}
            c.sums[ds] = {"t2a": {"R@1": p}, "a2t": {"R@1": p}}
        rows.append(c)
    return rows


def test_paired_difference_separates_real_gaps_from_noise():
    rng = np.random.default_rng(1)
    base = [rng.binomial(1, 0.4, size=200).astype(float) for _ in range(2)]
    better = [np.maximum(b, rng.binomial(1, 0.3, size=200)) for b in base]  # +~18 points
    noise = [np.where(rng.random(200) < 0.03, 1 - b, b) for b in base]  # a few flips
    final = lambda r: np.asarray(r)[..., -1, :].mean(-1)  # noqa: E731
    a, b, c = _rows([base]), _rows([better]), _rows([noise])
    gap = bootstrap.paired_difference([b], [a], ["a", "b"], "t2a", "R@1", final)
    assert gap["significant"] and gap["difference"] > 0.1
    same = bootstrap.paired_difference([c], [a], ["a", "b"], "t2a", "R@1", final)
    assert not same["significant"]
    # paired: the spread of the per-clip differences (~0.075 wide), well under what two
    # independent resamples would give (~0.14)
    assert gap["ci95"][1] - gap["ci95"][0] < 0.1


def test_summary_interval_of_a_results_matrix():
    rng = np.random.default_rng(2)
    rows = _rows([[rng.random(200) for _ in range(2)] for _ in range(3)])
    lo, hi = bootstrap.summary_ci(rows, ["a", "b"], "t2a", "R@1",
                                  lambda r: np.asarray(r)[..., -1, :].mean(-1))
    value = np.mean([rows[-1].sums[d]["t2a"]["R@1"].mean() for d in ("a", "b")])
    assert lo < value < hi and hi - lo < 0.1


@pytest.mark.parametrize("n", [40, 200])
def test_clip_weights_are_resamples_with_replacement(n):
    w = bootstrap.clip_weights(n, 500)
    assert w.shape == (500, n) and np.all(w.sum(1) == n)
    assert np.array_equal(w, bootstrap.clip_weights(n, 500))
