"""Strategies: one file each, found by name (tail_bench.training.registry).

To add one, drop a module here with a `tail_bench.training.strategy.Strategy` subclass
that sets `name` and `description`; nothing else in the suite needs editing.
"""
