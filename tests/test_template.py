import copy

import pytest
import torch
from tail_bench.strategies.finetune import Finetune
from tail_bench.strategies.zeroshot import ZeroShot

from tail_bench.losses import info_nce
from tail_bench.training.template import RetrievalTemplate


def test_info_nce_prefers_matching_pairs():
    e = torch.eye(4)
    good = info_nce(e, e, torch.tensor(3.0))
    bad = info_nce(e, e.roll(1, 0), torch.tensor(3.0))
    assert good < 0.1 < bad


def test_one_step_trains_and_lowers_the_loss(tiny_model, quick_stream):
    model = copy.deepcopy(tiny_model)
    strategy = Finetune()
    strategy.setup(model)
    exp = quick_stream.scenario().train_stream[0]
    template = RetrievalTemplate(model=model, strategy=strategy, lr=1e-3, train_mb_size=32,
                                 train_epochs=1, device="cpu")

    def loss() -> float:
        wave, texts, _ = next(iter(torch.utils.data.DataLoader(
            exp.dataset, batch_size=96, collate_fn=template_collate)))
        with torch.no_grad():
            return info_nce(*model(wave, texts), model.logit_scale).item()

    from tail_bench.streams.pairs import collate_pairs as template_collate
    before = loss()
    template.train_epochs = 4
    template.train(exp)
    assert loss() < before
    opt_params = {id(p) for g in template.optimizer.param_groups for p in g["params"]}
    assert opt_params == {id(p) for p in model.parameters()}


def test_a_strategy_without_trainable_parameters_is_refused(tiny_model):
    model = copy.deepcopy(tiny_model)
    s = ZeroShot()
    s.setup(model)
    with pytest.raises(ValueError, match="no trainable parameters"):
        RetrievalTemplate(model=model, strategy=s, lr=1e-3)


def test_cpu_training_flushes_subnormal_floats(tiny_model):
    """Subnormals in a distillation backward made PTAT's CPU steps 8x slower
    (quick preset, step 2: 39.9 s, 4.9 s flushed); the template flushes them on the CPU."""
    torch.set_flush_denormal(False)
    assert torch.tensor([1e-40]).item() != 0  # subnormal float32 kept
    model = copy.deepcopy(tiny_model)
    strategy = Finetune()
    strategy.setup(model)
    RetrievalTemplate(model=model, strategy=strategy, lr=1e-3, device="cpu")
    assert torch.tensor([1e-40]).item() == 0
