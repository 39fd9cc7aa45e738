"""Benchmark streams: the generated tail-synth stream and the real TAIL stream."""
