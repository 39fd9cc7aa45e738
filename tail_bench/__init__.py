"""tail-bench: continual learning for text-audio retrieval (the TAIL benchmark).

The repository's top-level folders `strategies/` and `benchmarks/` are the subpackages
`tail_bench.strategies` and `tail_bench.benchmarks` (their only import names, so they
cannot collide with other projects' `strategies` or `benchmarks`): setup.cfg maps them
there (`package_dir`), for editable installs (`.ci/bootstrap`) and wheels alike.
"""

__version__ = "0.1.0"
