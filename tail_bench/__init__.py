"""tail-bench: continual learning for text-audio retrieval (the TAIL benchmark)."""

__version__ = "0.1.0"
