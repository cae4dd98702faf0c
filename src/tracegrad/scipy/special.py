"""tracegrad.scipy.special (as jax.scipy.special)."""
from __future__ import annotations

from ..numpy.reductions import logsumexp  # noqa: F401

__all__ = ["logsumexp"]
