"""Evaluation: retrieval metrics (functional core), CL metrics, the shared evaluator."""
