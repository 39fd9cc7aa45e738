import numpy as np
import pytest

from tail_bench.models.towers import WordTokenizer
from tail_bench.streams import synth
from tail_bench.streams.sounds import CONCEPTS, SAMPLE_RATE


def test_same_seed_same_data_other_seed_other_data():
    d = synth.DOMAINS[0]
    a = synth.generate(d, "test", 6, seconds=1.0, seed=3)
    b = synth.generate(d, "test", 6, seconds=1.0, seed=3)
    c = synth.generate(d, "test", 6, seconds=1.0, seed=4)
    np.testing.assert_array_equal(a.clips, b.clips)
    assert a.captions == b.captions
    assert not np.allclose(a.clips, c.clips)


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
    p = synth.generate(domain, "test", 8, seconds=1.0, seed=0)
    per_clip = len(p.captions) / len(p.clip_ids)
    assert per_clip == domain.captions[1]
    lengths = [len(c.split()) for c in p.captions]
    if domain.style == "descriptive":
        assert min(lengths) >= 10  # long descriptions
    if domain.style == "library":
        assert all(":" in c for c in p.captions)
    if domain.style == "tags":
        assert all("." not in c and c.count(",") >= 1 for c in p.captions)


def test_domains_share_concepts_and_have_unseen_ones():
    sets = [set(d.concepts) for d in synth.DOMAINS]
    assert sets[0] & sets[1] and sets[0] & sets[2] and sets[0] & sets[3]
    for d in synth.DOMAINS:
        assert any(not CONCEPTS[k].pretrain for k in d.concepts), d.key
    novel = {k for k, c in CONCEPTS.items() if not c.pretrain}
    assert novel and novel.isdisjoint(synth.PRETRAIN_DOMAIN.concepts)


def test_every_caption_word_is_in_the_vocabulary():
    tok = WordTokenizer(synth.lexicon(), max_words=64)
    for d in synth.stream_domains(5):
        p = synth.generate(d, "test", 10, seconds=0.5, seed=1)
        ids = tok(p.captions)["ids"]
        assert not (ids == 1).any(), f"{d.key}: a word is missing from the lexicon"


def test_longer_streams_add_variants():
    domains = synth.stream_domains(6, seed=0)
    assert [d.key for d in domains][4:] == ["audiocaps-v2", "clotho-v2"]
    assert domains[4].concepts != domains[0].concepts
    with pytest.raises(ValueError, match="--length"):
        synth.stream_domains(0)
