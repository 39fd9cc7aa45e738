"""Retrieval metrics as an Avalanche PluginMetric, so Avalanche's loggers show them.

`RetrievalMetrics` scores each test experience with the shared evaluator core
(`RetrievalEvaluator.embed` + `score_set`, the functions a run's tables come from), so a
logger prints exactly the numbers of the suite's tables. Per experience it emits
`{metric}_{direction}_Exp/eval_phase/{stream}_stream/{dataset}`; after the stream,
`{metric}_{direction}_Stream/eval_phase/{stream}_stream`, the mean over the experiences
scored in that `eval` call (the "average" of a CL table row).
"""

from __future__ import annotations

from statistics import mean
from typing import Any

from avalanche.evaluation import PluginMetric
from avalanche.evaluation.metric_results import MetricValue

from tail_bench.evaluation.evaluator import RetrievalEvaluator, score_set

DIRECTIONS = ("t2a", "a2t")
METRICS = ("R@1", "R@5", "R@10", "mAP@10")


class RetrievalMetrics(PluginMetric[dict]):
    def __init__(self, evaluator: RetrievalEvaluator | None = None,
                 metrics: tuple[str, ...] = METRICS) -> None:
        super().__init__()
        self.evaluator = evaluator or RetrievalEvaluator(progress=False)
        self.metrics = metrics
        self.scores: dict[str, dict[str, dict[str, dict]]] = {}  # dataset -> direction -> ...

    def reset(self) -> None:
        self.scores = {}

    def result(self) -> dict[str, dict[str, dict[str, dict]]]:
        return self.scores

    def before_eval(self, strategy: Any) -> None:
        self.reset()

    def after_eval_exp(self, strategy: Any) -> list[MetricValue]:
        exp = strategy.experience
        name = exp.dataset.dataset_name[0]
        audio, text, owner = self.evaluator.embed(strategy.model, exp.dataset)
        self.scores[name], _, _ = score_set(audio, text, owner, chunk=self.evaluator.chunk)
        stream = exp.origin_stream.name
        return [MetricValue(self, f"{m}_{d}_Exp/eval_phase/{stream}_stream/{name}",
                            self.scores[name][d][m]["value"], strategy.clock.train_iterations)
                for d in DIRECTIONS for m in self.metrics]

    def after_eval(self, strategy: Any) -> list[MetricValue]:
        if not self.scores:
            return []
        stream = strategy.experience.origin_stream.name
        return [MetricValue(self, f"{m}_{d}_Stream/eval_phase/{stream}_stream",
                            mean(s[d][m]["value"] for s in self.scores.values()),
                            strategy.clock.train_iterations)
                for d in DIRECTIONS for m in self.metrics]
