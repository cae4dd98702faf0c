"""Transformation machinery: ad, batching, partial_eval, lowering, xla."""
