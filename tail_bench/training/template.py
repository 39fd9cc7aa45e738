"""RetrievalTemplate: Avalanche's SupervisedTemplate taught (audio, caption) batches.

Overrides what assumes classification (unpack, forward, criterion), the train loader
(Avalanche drops the collate function for experiences without task labels) and the
optimizer (built from the strategy's trainable parameters only, fresh AdamW per step, so a
frozen teacher or frozen tower can never start training).

A minibatch is (waveforms, captions, keys); `mb_positives` marks the pairs of the batch
that match (same clip or same caption), which no loss treats as negatives, and `mb_inputs`
holds the towers' inputs (audio features, tokens), computed once per batch and shared by
every pass over it (a distillation teacher's included). `autocast()` is the run's
precision; losses are computed in fp32, and fp16 steps go through a GradScaler.

Loaders yield Avalanche's batch layout (x, targets, task labels; the data sets'
`collate_fn`), so Avalanche's plugins can replace the loader (ReplayPlugin) or make their
own; `_unpack_minibatch` turns it into the retrieval batch above. Avalanche's own plugins
are wrapped to see Avalanche's view of the template (`avalanche_compat`); an `evaluator`
(an EvaluationPlugin with `RetrievalMetrics` and loggers) scores each test set with the
shared evaluator core in `eval`.

The GPU stays fed: pinned, non-blocking copies, persistent loader workers, fused AdamW on
CUDA, and no host sync inside a step (`compile` adds torch.compile on the training
forward). A non-finite loss stops training with `Diverged` naming the step, epoch and
batch; the check reads the device every `check_every` batches (every batch on the CPU),
and the progress bar reads the loss on those batches only.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler

from tail_bench import distributed
from tail_bench.errors import Diverged
from tail_bench.losses import info_nce, positive_pairs
from tail_bench.models.dual import DualEncoder
from tail_bench.runtime import autocast
from tail_bench.streams.pairs import decode_targets
from tail_bench.training import READ_EVERY
from tail_bench.training.avalanche_compat import RetrievalCriterion, bridge
from tail_bench.training.strategy import Strategy


class _Interleaved(Sampler):
    """The order a one-process shuffling loader draws (the same generator, the same
    draw), of which this process takes every world-th index: batch k of all processes
    together is batch k of one process (padded by wrapping when n % world != 0)."""

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n, self.generator = n, generator
        self.rank, self.world = distributed.rank(), distributed.size()

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator).tolist()
        order += order[: -self.n % self.world]
        return iter(order[self.rank::self.world])

    def __len__(self) -> int:
        return -(-self.n // self.world)


class StepLoss(nn.Module):
    """A batch's whole loss as one module's forward, for DistributedDataParallel: the
    embeddings, the criterion and every plugin's `before_backward` terms (distillation,
    key losses, penalties, reference batches), so every parameter a loss uses is used
    inside the wrapped forward."""

    def __init__(self, template: RetrievalTemplate) -> None:
        super().__init__()
        self.model = template.model
        object.__setattr__(self, "template", template)  # not a submodule

    def forward(self) -> Tensor:
        t = self.template
        t.mb_output = t._embed_batch()
        t.loss = t.loss + t.criterion()
        SupervisedTemplate._before_backward(t)
        loss, t.loss = t.loss, t._make_empty_loss()  # the training loop adds it back
        return loss


class RetrievalTemplate(SupervisedTemplate):
    def __init__(self, *, model: DualEncoder, strategy: Strategy, lr: float,
                 weight_decay: float = 0.01, train_mb_size: int = 64, train_epochs: int = 1,
                 device: torch.device | str = "cpu", seed: int = 0, num_workers: int = 0,
                 plugins: Sequence[SupervisedPlugin] = (), check_every: int = READ_EVERY,
                 precision: str = "fp32", compile: bool = False,
                 evaluator: EvaluationPlugin | None = None) -> None:
        self.strategy, self.num_workers, self.precision = strategy, num_workers, precision
        device = torch.device(device)
        if device.type == "cpu":
            # Distillation softmaxes at low temperature leave subnormal floats in the
            # backward pass, which x86 CPUs compute ~10x slower (PTAT's steps after the
            # first ran 8x slower). Flushing them to zero changes values below 1e-38 only.
            torch.set_flush_denormal(True)
        self.check_every = 1 if device.type == "cpu" else check_every
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self._batch, self._bad_at = 0, None
        self._in_epoch, self._ddp, self._step_loss = False, None, None
        self.lr, self.weight_decay, self.seed = lr, weight_decay, seed
        if evaluator is None:
            with warnings.catch_warnings():  # "no loggers": the shared evaluator scores
                warnings.simplefilter("ignore", UserWarning)
                evaluator = EvaluationPlugin(loggers=[])
        super().__init__(model=model, optimizer=self._new_optimizer(model),
                         criterion=RetrievalCriterion(model),
                         train_mb_size=train_mb_size, train_epochs=train_epochs,
                         eval_mb_size=train_mb_size, device=device,
                         plugins=[strategy, *bridge(plugins, device)], evaluator=evaluator)
        # compiled here, not on the model: a teacher deep-copied from the model must not
        # share the student's compiled forward
        self._embed = torch.compile(model.embed) if compile else model.embed

    def _new_optimizer(self, model: DualEncoder) -> torch.optim.Optimizer:
        params = self.strategy.trainable_parameters(model)
        if not params:
            raise ValueError(f"strategy {self.strategy.name!r} declares no trainable parameters")
        return torch.optim.AdamW(params, lr=self.strategy.learning_rate(self.lr),
                                 weight_decay=self.weight_decay,
                                 fused=all(p.is_cuda for p in params) or None)

    def make_optimizer(self, **kwargs) -> None:
        self.optimizer = self._new_optimizer(self.model)
        self.optimized_param_id = {}  # tells Avalanche the optimizer exists

    def make_train_dataloader(self, shuffle: bool = True, **kwargs) -> None:
        """Seeded from (seed, step): a step's order needs no state to resume. With several
        processes each loads its interleaved share of every batch of the same order."""
        gen = torch.Generator().manual_seed(self.seed * 1000 + self.experience.current_experience)
        cuda = torch.device(self.device).type == "cuda"
        world = distributed.size()
        sampler = _Interleaved(len(self.adapted_dataset), gen) if world > 1 else None
        self.dataloader = DataLoader(self.adapted_dataset, batch_size=self.train_mb_size // world,
                                     shuffle=shuffle and sampler is None, sampler=sampler,
                                     collate_fn=self.adapted_dataset.collate_fn, generator=gen,
                                     num_workers=self.num_workers, pin_memory=cuda,
                                     persistent_workers=self.num_workers > 0)

    def autocast(self):
        return autocast(self.device, self.precision)

    def _unpack_minibatch(self) -> None:
        wave, targets, _ = self.mbatch
        texts, keys = decode_targets(targets)
        keys = keys.to(self.device, non_blocking=True)
        self.mbatch = (wave.to(self.device, non_blocking=True), texts, keys)
        self.mb_positives = positive_pairs(distributed.gather_rows(keys))

    def forward(self):
        """The batch's embeddings. With several processes, while training, the whole loss
        of the batch is computed here, inside DistributedDataParallel's forward
        (`StepLoss`: the criterion and every strategy's `before_backward` terms), so that
        DDP averages the gradients bucket by bucket while backward still runs."""
        if not (self._in_epoch and distributed.active()):
            return self._embed_batch()
        if self._ddp is None:  # per step: a step may change what trains (CODA-Prompt)
            mine = {id(p) for p in self.model.parameters()}
            if any(id(p) not in mine for g in self.optimizer.param_groups for p in g["params"]):
                raise ValueError(f"strategy {self.strategy.name!r} trains parameters outside the "
                                 "model; with several processes only the model's gradients "
                                 "are averaged (attach them to the model, as prompters are)")
            self._ddp = distributed.data_parallel(StepLoss(self), self.device)
        self._step_loss = self._ddp()
        return self.mb_output

    def _embed_batch(self):
        wave, texts, _ = self.mbatch
        self.mb_inputs = self.model.inputs(wave, texts)
        with self.autocast():
            return self._embed(*self.mb_inputs)

    def training_epoch(self, **kwargs) -> None:
        self._in_epoch = True
        try:
            super().training_epoch(**kwargs)
        finally:
            self._in_epoch = False

    def _before_training_exp(self, **kwargs) -> None:
        self._ddp = None
        super()._before_training_exp(**kwargs)

    def _before_backward(self, **kwargs) -> None:
        if self._step_loss is None:  # with DDP the terms were added inside its forward
            super()._before_backward(**kwargs)

    def gather(self, rows: Tensor) -> Tensor:
        """This process's rows of the batch -> the whole batch's (every process's, with
        gradient); the identity with one process. Losses that compare rows with each other
        (in-batch negatives, similarity distributions) take gathered rows and
        `mb_positives`, which is always over the whole batch."""
        return distributed.gather(rows)

    def eval_epoch(self, **kwargs) -> None:
        """No per-batch pass: retrieval ranks a whole test set, which the evaluator's
        metric (`RetrievalMetrics`) embeds and scores in `after_eval_exp`."""

    def criterion(self):
        if self._step_loss is not None:  # computed inside DDP's forward
            return self._step_loss
        audio, text = map(self.gather, self.mb_output)
        loss = info_nce(audio, text, self.model.logit_scale, self.mb_positives)
        self.loss_terms = {"info_nce": loss.detach()}
        return loss

    def add_loss(self, name: str, value: Tensor) -> None:
        """How a strategy adds a term to this batch's loss (in `before_backward`): the term
        is also kept by name, on the device, for the loggers."""
        self.loss = self.loss + value
        self.loss_terms[name] = value.detach()

    def _before_training_epoch(self, **kwargs) -> None:
        self._batch, self._bad_at = 0, None
        self._in_epoch, self._ddp, self._step_loss = False, None, None
        super()._before_training_epoch(**kwargs)

    def backward(self) -> None:
        """Note the first batch with a non-finite loss (on the device), then backward."""
        self._batch += 1
        bad = ~torch.isfinite(self.loss.detach()).all()
        here = torch.full((), self._batch, device=bad.device)
        self._bad_at = (torch.where(bad, here, torch.zeros_like(here)) if self._bad_at is None
                        else torch.where((self._bad_at == 0) & bad, here, self._bad_at))
        if self._batch % self.check_every == 0:
            self._check_finite()
        self._step_loss = None
        # several processes: DDP averages their gradients during backward, which is the
        # one-process gradient (`gather`'s backward sends each process the whole loss's
        # share of its rows)
        self.scaler.scale(self.loss).backward()

    def optimizer_step(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def _after_training_epoch(self, **kwargs) -> None:
        self._check_finite()
        super()._after_training_epoch(**kwargs)

    def _check_finite(self) -> None:
        if self._bad_at is None:
            return
        if not (batch := int(distributed.all_reduce_max(self._bad_at.clone()))):
            return
        exp = self.experience
        step, name = exp.current_experience + 1, exp.dataset.dataset_name[0]
        epoch = self.clock.train_exp_epochs + 1
        raise Diverged(f"{self.strategy.name} diverged: non-finite loss in step {step} "
                       f"({name}), epoch {epoch}, batch {batch}", step=step, epoch=epoch,
                       batch=batch)
