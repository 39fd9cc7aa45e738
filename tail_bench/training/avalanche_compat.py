"""Avalanche's own plugins on the retrieval stream.

Two views of one training loop. Our strategies see the retrieval template as documented in
docs/strategies.md: `mbatch` = (waves, captions, keys) and `mb_output` = (audio, text)
embeddings, which is all a retrieval method needs, so they stay as simple as before.
Avalanche's plugins (any class from `avalanche.training.plugins`) are wrapped in
`AvalanchePlugin` and see `AvalancheView` instead, Avalanche's convention:
`mbatch` = (x, y, task labels) with `x` the waveforms, `y` the targets of
`tail_bench.streams.pairs.encode_targets` (keys and caption bytes), `mb_output` = `model(x)`,
the audio head's output, and `_criterion(model(x), y)` = InfoNCE of those audio outputs
against the embedded captions of `y`. Everything else (loss, model, optimizer, clock,
experience, dataloader) is the template's own, read and written through the view.

A plugin whose method assumes classes (class-balanced buffers, class logits, a classifier
layer) is refused before any work with one line naming the plugin and the assumption
(`check_plugin`); `PLUGIN_FIT` is that table, and docs/avalanche.md shows it.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import torch
import torch.nn.functional as F
from avalanche.core import BasePlugin, SupervisedPlugin
from torch import Tensor

from tail_bench import options as grammar
from tail_bench.errors import ConfigError
from tail_bench.losses import info_nce, positive_pairs
from tail_bench.models.dual import DualEncoder
from tail_bench.streams.pairs import decode_targets, encode_targets

PLUGINS_MODULE = "avalanche.training.plugins"

# Avalanche plugin class name -> (status, why). "runs" entries need no reason.
PLUGIN_FIT: dict[str, tuple[str, str]] = {
    "EWCPlugin": ("runs", "importances from InfoNCE gradients of `criterion(model(x), y)`"),
    "MASPlugin": ("runs", "importances from the norm of the audio head's output"),
    "RWalkPlugin": ("runs", "EWC++ scores from the template's batches; `delta_t` at most "
                            "a step's batches (else Avalanche divides by a zero score)"),
    "SynapticIntelligencePlugin": ("runs", "path integral of the template's loss; CUDA "
                                           "only (see `CPU_ONLY_BROKEN`)"),
    "GEMPlugin": ("runs", "gradient constraints from stored (x, y) of earlier steps"),
    "AGEMPlugin": ("runs", "average gradient of a sample of earlier steps' (x, y)"),
    "LwFPlugin": ("runs", "distils the softmax of the audio head's output over all its "
                          "units (a retrieval model has no class units)"),
    "FeatureDistillationPlugin": ("runs", "cosine distillation of the audio tower's output "
                                          "(`model.features`); mode='cosine' only"),
    "ReplayPlugin": ("runs", "experience-balanced buffer of earlier rows"),
    "FromScratchTrainingPlugin": ("runs", "resets the weights before every step"),
    "GDumbPlugin": ("refused", "keeps a class-balanced buffer keyed by `targets`; every "
                               "clip would be a class of its own"),
    "CWRStarPlugin": ("refused", "consolidates a classifier layer's weights per class; a "
                                 "dual encoder has no classifier layer"),
    "LFLPlugin": ("refused", "needs `model.get_features()` (an Avalanche BaseModel) and "
                             "freezes the last classifier layer; the dual encoder has "
                             "neither"),
    "BiCPlugin": ("refused", "corrects the bias of new classes' logits"),
    "CoPEPlugin": ("refused", "learns class prototypes and replaces the criterion with a "
                              "loss over class labels"),
    "GSS_greedyPlugin": ("refused", "stores one class label per sample (`mb_y` of shape "
                                    "(B,)) for inputs of a fixed `input_size`"),
    "MIRPlugin": ("refused", "needs a per-sample loss (`criterion.reduction = 'none'`); "
                             "InfoNCE is a loss over the batch"),
    "RARPlugin": ("refused", "attacks replayed inputs towards other samples' class labels"),
    "GenerativeReplayPlugin": ("refused", "labels generated inputs with the old model's "
                                          "argmax (class predictions)"),
    "TrainGeneratorAfterExpPlugin": ("refused", "trains a generative model's strategy, not "
                                                "the retrieval model"),
    "CurrentDataNCMUpdate": ("refused", "updates the class means of an NCM classifier "
                                        "(`model.eval_classifier`)"),
    "MemoryNCMUpdate": ("refused", "updates the class means of an NCM classifier "
                                   "(`model.eval_classifier`)"),
    "NCMOracle": ("refused", "updates the class means of an NCM classifier "
                             "(`model.eval_classifier`)"),
    "CurrentDataFeCAMUpdate": ("refused", "updates FeCAM class means and covariances "
                                          "(`model.eval_classifier`)"),
    "MemoryFeCAMUpdate": ("refused", "updates FeCAM class means and covariances "
                                     "(`model.eval_classifier`)"),
    "FeCAMOracle": ("refused", "updates FeCAM class means and covariances "
                               "(`model.eval_classifier`)"),
    "EarlyStoppingPlugin": ("refused", "stops on a metric of periodic evaluation inside a "
                                       "step (`eval_every`); the suite scores every test "
                                       "set after each step"),
    "LRSchedulerPlugin": ("refused", "steps a scheduler bound to an optimizer made before "
                                     "training; RetrievalTemplate makes a fresh AdamW at "
                                     "every step from the strategy's trainable parameters"),
    "SupervisedPlugin": ("not applicable", "the base class of plugins, not a method; a "
                                           "subclass of your own runs unwrapped and sees "
                                           "the retrieval template"),
}
READS_FEATURES = ("LwFPlugin", "FeatureDistillationPlugin")  # need `model.features` kept
# Plugins that solve a quadratic program with one named qpsolvers back end (GEM 0.6 calls
# `solve_qp(..., solver="quadprog")`): without it they fail inside a step.
NEEDS_SOLVER = {"GEMPlugin": "quadprog"}
# Plugins that would run but do nothing on the CPU.
CPU_ONLY_BROKEN = {"SynapticIntelligencePlugin": "keeps `param.detach().cpu()`, which on "
                                                 "the CPU is the weights themselves, so its "
                                                 "importances stay 0 (Avalanche 0.6); run it "
                                                 "on CUDA"}


def avalanche_class(kind: type) -> type | None:
    """The Avalanche plugin class `kind` is (or derives from), or None for our own plugins
    (subclasses of SupervisedPlugin outside Avalanche: strategies, progress, loggers)."""
    if kind is SupervisedPlugin:
        return kind
    return next((c for c in kind.__mro__ if c.__module__.startswith(PLUGINS_MODULE + ".")),
                None)


def check_plugin(plugin: object, device: torch.device | str | None = None) -> None:
    """ConfigError, in one line, for an Avalanche plugin (a class or an instance) that
    cannot apply to retrieval (on `device`, when given)."""
    cls = avalanche_class(plugin if inspect.isclass(plugin) else type(plugin))
    if cls is None:
        return
    shown = plugin.__name__ if inspect.isclass(plugin) else type(plugin).__name__
    status, why = PLUGIN_FIT.get(cls.__name__, ("refused", "not in tail-bench's table of "
                                                "Avalanche plugins (docs/avalanche.md)"))
    if status != "runs":
        raise ConfigError(f"Avalanche plugin {shown} is {status} on a retrieval stream: "
                          f"{why}")
    if device is not None and torch.device(device).type == "cpu" \
            and cls.__name__ in CPU_ONLY_BROKEN:
        raise ConfigError(f"Avalanche plugin {shown} is refused on the CPU: "
                          f"{CPU_ONLY_BROKEN[cls.__name__]}")
    solver = NEEDS_SOLVER.get(cls.__name__)
    if solver is not None:
        import qpsolvers

        if solver not in qpsolvers.available_solvers:
            raise ConfigError(f"Avalanche plugin {shown} needs the QP solver {solver} "
                              f"(qpsolvers has {', '.join(qpsolvers.available_solvers) or 'none'}"
                              f"); install it: pip install {solver}")
    if not inspect.isclass(plugin) and cls.__name__ == "FeatureDistillationPlugin" \
            and plugin.mode != "cosine":
        raise ConfigError(f"Avalanche plugin FeatureDistillationPlugin(mode={plugin.mode!r}):"
                          " expected mode='cosine' (Avalanche 0.6 calls F.mse_loss with a "
                          "`dim` argument it does not take)")


class RetrievalCriterion:
    """`criterion(model(x), y)` for plugins that make their own passes (EWC's importances,
    GEM's and AGEM's reference gradients, RWalk's scores): InfoNCE between the normalised
    audio outputs and the captions packed in `y`, embedded by the same model."""

    def __init__(self, model: DualEncoder) -> None:
        self.model = model

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        texts, keys = decode_targets(y)
        text = self.model.encode_text(texts).float()
        audio = F.normalize(out.float(), dim=-1)
        return info_nce(audio, text, self.model.logit_scale, positive_pairs(keys))


class AvalancheView:
    """The template as Avalanche's plugins expect it (see the module docstring); reads and
    writes of anything else go to the template itself."""

    def __init__(self, template: Any) -> None:
        object.__setattr__(self, "_template", template)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._template, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._template, name, value)

    @property
    def mb_x(self) -> Tensor:
        return self._template.mbatch[0]

    @property
    def mb_y(self) -> Tensor:
        _, texts, keys = self._template.mbatch
        return encode_targets(texts, keys.cpu()).to(keys.device)

    @property
    def mb_task_id(self) -> Tensor:
        return self._template.mbatch[2].new_zeros(len(self._template.mbatch[1]))

    @property
    def mbatch(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.mb_x, self.mb_y, self.mb_task_id

    @property
    def mb_output(self) -> Tensor:
        """`model(x)` of this batch, in fp32 like a teacher's `model(x)`: the audio head on
        the tower output the template's forward kept (no second tower pass)."""
        model = self._template.model
        return model.audio_head(model.features)


CALLBACKS = sorted(n for n, _ in inspect.getmembers(SupervisedPlugin, inspect.isfunction)
                   if n.startswith(("before_", "after_")))


class AvalanchePlugin(SupervisedPlugin):
    """Wraps an Avalanche plugin: every callback reaches it with an `AvalancheView`."""

    def __init__(self, inner: BasePlugin, device: torch.device | str | None = None) -> None:
        check_plugin(inner, device)
        super().__init__()
        self.inner = inner
        self.name = avalanche_class(type(inner)).__name__

    def _call(self, event: str, template: Any, **kwargs: Any) -> Any:
        if event == "before_training" and self.name in READS_FEATURES:
            template.model.keep_features = True
        view = AvalancheView(template)
        if event == "after_training_exp" and self.name == "LwFPlugin":
            return self._lwf_after_training_exp(view)
        return getattr(self.inner, event)(view, **kwargs)

    def _lwf_after_training_exp(self, view: AvalancheView) -> None:
        """LwF's own update, with every unit of the audio output distilled: Avalanche picks
        the units of the classes seen (`task_set[t].targets`), which retrieval has none of."""
        lwf = self.inner.lwf
        lwf.expcount += 1
        lwf.prev_model = copy.deepcopy(view.model)
        lwf.prev_classes_by_task = {0: set(range(view.mb_output.shape[-1]))}


def _forward(event: str):
    def callback(self: AvalanchePlugin, strategy: Any, **kwargs: Any) -> Any:
        return self._call(event, strategy, **kwargs)

    callback.__name__ = event
    return callback


for _event in CALLBACKS:
    setattr(AvalanchePlugin, _event, _forward(_event))


def bridge(plugins: list[Any] | tuple[Any, ...], device: torch.device | str | None = None
           ) -> list[Any]:
    """Avalanche's plugins wrapped (and checked); our own plugins as they are."""
    return [AvalanchePlugin(p, device) if avalanche_class(type(p)) is not None else p
            for p in plugins]


def parse_plugin_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """`EWCPlugin(ewc_lambda=10)` or `my.module:MyPlugin(k=v)` -> (class path, options);
    option values say their type (tail_bench/options.py: true, false, none, numbers,
    quoted strings, [lists])."""
    return grammar.call(spec, where="Avalanche plugin")


def load_plugin_class(name: str) -> type:
    """`EWCPlugin` (from avalanche.training.plugins), `module:Class` or `module.Class`."""
    cls = grammar.import_object(name, where="Avalanche plugin", default_module=PLUGINS_MODULE)
    if not (inspect.isclass(cls) and issubclass(cls, BasePlugin)):
        raise ConfigError(f"Avalanche plugin {name!r}: expected an Avalanche plugin class, "
                          f"got {cls!r}")
    return cls


def make_plugin(spec: str, device: torch.device | str | None = None) -> BasePlugin:
    """A checked plugin instance from its spec (a new one per call: plugins keep state)."""
    name, options = parse_plugin_spec(spec)
    cls = load_plugin_class(name)
    check_plugin(cls, device)
    try:
        plugin = cls(**options)
    except (TypeError, AssertionError, ValueError) as err:
        raise ConfigError(f"Avalanche plugin {spec!r}: {cls.__name__} refused these "
                          f"options ({err or type(err).__name__})") from err
    check_plugin(plugin, device)
    return plugin


def split_method(method: str) -> tuple[str, list[str]]:
    """`finetune+EWCPlugin(ewc_lambda=10)+ReplayPlugin(mem_size=64)` -> ("finetune",
    [the two plugin specs]): one of our strategies plus Avalanche plugins, a row of its
    own. A `+` inside brackets or quotes belongs to an option value."""
    first, *plugins = grammar.split(method, "+", where="method")
    return first, plugins
