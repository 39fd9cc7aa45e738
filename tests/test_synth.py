
import numpy as np
import pytest

from tail_bench.models.configs import BACKBONES
from tail_bench.models.towers import WordTokenizer
from tail_bench.presets import get_preset
from tail_bench.streams import synth
from tail_bench.streams.pairs import PairSet
from tail_bench.streams.sounds import CONCEPTS, SAMPLE_RATE, record


def test_same_seed_same_data_other_seed_other_data():
    d = synth.DOMAINS[0]
    a = synth.generate(d, "test", 6, seconds=1.0, seed=3)
    b = synth.generate(d, "test", 6, seconds=1.0, seed=3)
    c = synth.generate(d, "test", 6, seconds=1.0, seed=4)
    np.testing.assert_array_equal(a.clips, b.clips)
    assert a.captions == b.captions
    assert not np.allclose(a.clips, c.clips)
    assert synth.described(d, "test", 6, seed=3)[1] == a.captions  # captions without audio


def test_splits_are_independent_and_shaped():
    d = synth.DOMAINS[0]
    train = synth.generate(d, "train", 5, seconds=2.0, seed=0)
    test = synth.generate(d, "test", 5, seconds=2.0, seed=0)
    assert train.clips.shape == (5, 2 * SAMPLE_RATE) and train.clips.dtype == np.float32
    assert len(train.captions) == 5  # AudioCaps-like: one caption per training clip
    assert len(test.captions) == 25 and test.caption_clip == [i // 5 for i in range(25)]
    assert not np.allclose(train.clips, test.clips)
    assert np.abs(train.clips).max() <= 0.8 + 1e-5


@pytest.mark.parametrize("domain", synth.DOMAINS, ids=lambda d: d.key)
def test_captions_follow_each_domain_style(domain):
    captions = synth.described(domain, "test", 40, seed=0)[1]
    assert len(captions) == 40 * domain.captions[1]
    lengths = [len(synth.tokens(c)) for c in captions]
    assert max(lengths) <= min(c.max_words for c in BACKBONES.values())  # never truncated
    if domain.style == "event":
        assert all(c.endswith(".") and c[0].isupper() for c in captions)
    if domain.style == "descriptive":
        assert min(lengths) >= 10  # long descriptions of a foreground and a background
    if domain.style == "library":
        assert all(":" in c or " - " in c or "(" in c for c in captions)
    if domain.style == "tags":
        assert all("." not in c and c.count(",") >= 1 for c in captions)


def test_caption_styles_differ_in_length_the_way_the_real_sets_do():
    mean = {d.key: np.mean([len(c.split()) for c in synth.described(d, "test", 100, seed=0)[1]])
            for d in synth.DOMAINS}
    assert mean["clotho"] > mean["audiocaps"] > mean["bbc"]
    assert mean["clotho"] > mean["audioset"]


def test_no_step_caption_has_a_token_the_pretraining_never_read():
    """Zero out-of-vocabulary tokens: the steps' words are all in the lexicon, and the
    pretraining text of every embedded backbone uses every word of the lexicon."""
    tok = WordTokenizer(synth.lexicon(), max_words=64)
    step_text = []
    for d in synth.stream_domains(6):
        for split in synth.SPLITS:
            step_text += synth.described(d, split, 60, seed=1)[1]
    assert not (tok(step_text)["ids"] == 1).any()
    for cfg in BACKBONES.values():
        known = synth.pretraining_texts(cfg.pretrain_clips, cfg.pretrain_texts,
                                        seed=cfg.pretrain_seed)
        assert synth.unseen_tokens(synth.lexicon(), known) == set(), cfg.name
        assert synth.unseen_tokens(step_text, known) == set(), cfg.name


def test_a_sound_is_named_by_the_same_words_in_every_domain():
    """No label flips: each noun-verb pair and each label belongs to one sound only."""
    owner: dict[str, str] = {}
    for c in CONCEPTS.values():
        phrases = [f"{n} {v}" for n in c.nouns for v in (*c.verbs, *c.harsh_verbs)]
        for p in [*phrases, c.label, *([c.harsh_label] if c.harsh_label else [])]:
            assert owner.setdefault(p, c.key) == c.key, p
    for c in CONCEPTS.values():
        assert bool(c.harsh_verbs) == bool(c.harsh_label), c.key


def test_pretraining_hears_every_family_and_steps_still_bring_new_sounds():
    heard = set(synth.PRETRAIN_DOMAIN.concepts)
    assert {CONCEPTS[k].family for k in heard} == {c.family for c in CONCEPTS.values()}
    assert heard.isdisjoint(synth.HELD_OUT)
    assert set(synth.TEXT_DOMAIN.concepts) == set(CONCEPTS)  # the text side reads them all
    for d in synth.DOMAINS:
        held_out = [k for k in d.concepts if k in synth.HELD_OUT]
        new_subtypes = [k for k in d.harsh if k not in synth.PRETRAIN_HARSH]
        assert held_out and new_subtypes, d.key
        assert all(CONCEPTS[k].harsh_verbs for k in d.harsh), d.key
        unheard = [any(e.concept.key in synth.HELD_OUT or (e.harsh and e.concept.key not in
                                                         synth.PRETRAIN_HARSH) for e in s.events)
                   for s in synth.described(d, "test", 300, seed=0)[0]]
        assert 0.15 <= np.mean(unheard) <= 0.4, d.key  # something new, not everything


def test_domains_overlap_but_differ_in_concept_mix():
    sets = [set(d.concepts) for d in synth.DOMAINS]
    assert all(sets[0] & s for s in sets[1:])
    tops = {d.concepts[0] for d in synth.DOMAINS}
    assert len(tops) >= 3
    scenes = synth.described(synth.DOMAINS[2], "test", 400, seed=0)[0]
    keys = [s.events[0].concept.key for s in scenes]
    assert keys.count(synth.DOMAINS[2].concepts[0]) > 3 * keys.count(
        synth.DOMAINS[2].concepts[-1])  # Zipf-like


@pytest.mark.parametrize("domain", synth.DOMAINS, ids=lambda d: d.key)
def test_test_captions_are_nearly_all_distinct(domain):
    n = get_preset("default").test_clips
    captions = synth.described(domain, "test", n, seed=0)[1]
    pairs = PairSet(domain.key, "test", np.zeros((n, 1), np.float32),
                          [str(i) for i in range(n)], captions,
                          [i // domain.captions[1] for i in range(len(captions))], SAMPLE_RATE)
    assert synth.duplicate_captions(pairs) <= 0.05 * len(captions)


def _band_share(clips: np.ndarray, lo: float, hi: float) -> float:
    power = np.abs(np.fft.rfft(clips, axis=1)) ** 2
    freqs = np.fft.rfftfreq(clips.shape[1], 1 / SAMPLE_RATE)
    return float(power[:, (freqs >= lo) & (freqs < hi)].sum() / power.sum())


def test_each_domain_records_through_its_own_channel():
    rng = np.random.default_rng(0)
    channel = {d.key: d.channels[0] for d in synth.DOMAINS}
    noise = rng.standard_normal(SAMPLE_RATE).astype(np.float32)
    assert _band_share(record(noise, channel["audioset"], rng)[None], 4300, 8000) < 1e-2
    bbc = record(noise, channel["bbc"], rng)[None]
    assert _band_share(bbc, 0, 200) < 1e-3 and _band_share(bbc, 7200, 8000) < 1e-3
    assert len(np.unique(record(noise, channel["audiocaps"], rng))) <= 2 ** 6 + 1  # codec
    click = np.zeros(SAMPLE_RATE, np.float32)
    click[1600:1700] = 1.0
    tail = {k: float(np.mean(record(click, ch, rng)[8000:] ** 2)) for k, ch in channel.items()}
    assert tail["clotho"] > 10 * tail["bbc"]  # a reverberant room and wind


def test_longer_streams_add_variants():
    domains = synth.stream_domains(6, seed=0)
    assert [d.key for d in domains][4:] == ["audiocaps-v2", "clotho-v2"]
    assert domains[4].concepts != domains[0].concepts
    assert domains[4].channels != domains[0].channels
    with pytest.raises(ValueError, match="--length"):
        synth.stream_domains(0)


def test_a_cached_split_reads_back_bit_for_bit_and_a_damaged_one_is_generated_again(
        tmp_path, monkeypatch, capsys):
    from tail_bench.streams import generated

    monkeypatch.setenv("TAIL_BENCH_CACHE", str(tmp_path))
    d = synth.DOMAINS[1]
    first = generated.generate(d, "test", 6, seconds=2.0, seed=3)
    path = generated.split_path(d, "test", 6, seconds=2.0, seed=3)
    assert path.exists()
    assert generated.split_path(d, "test", 6, seconds=2.0, seed=4) != path
    real = synth.generate
    monkeypatch.setattr(synth, "generate", lambda *a, **k: pytest.fail("generated again"))
    again = generated.generate(d, "test", 6, seconds=2.0, seed=3)
    assert np.array_equal(again.clips, first.clips) and again.clips.dtype == np.float32
    assert (again.captions, again.caption_clip, again.clip_ids, again.sample_rate) == (
        first.captions, first.caption_clip, first.clip_ids, first.sample_rate)
    path.write_bytes(path.read_bytes()[:100])
    monkeypatch.setattr(synth, "generate", real)
    third = generated.generate(d, "test", 6, seconds=2.0, seed=3)
    assert np.array_equal(third.clips, first.clips)
    assert f"cached split {path} is unreadable" in capsys.readouterr().err
