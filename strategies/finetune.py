"""Finetune (Sequential): every weight trains on each step with InfoNCE only."""

from tail_bench.training.strategy import Strategy


class Finetune(Strategy):
    name = "finetune"
    description = "Finetune (Sequential): all parameters, InfoNCE only (the lower bound)"
