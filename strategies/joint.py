"""Joint: all parameters trained once on the union of every step (the upper bound)."""

from tail_bench.training.strategy import Strategy


class Joint(Strategy):
    name = "joint"
    description = "Joint reference: all parameters on the union of all steps (upper bound)"
    joint = True
