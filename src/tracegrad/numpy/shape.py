"""tracegrad.numpy: shape functions (being written)."""
from __future__ import annotations

__all__: list[str] = []
METHODS: dict = {}
