"""Dual-encoder backbones: named configs, towers that take prompt tokens, one builder."""
