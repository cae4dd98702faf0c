"""tracegrad.scipy: the parts of jax.scipy built on tracegrad.numpy."""
from __future__ import annotations

from . import special  # noqa: F401
