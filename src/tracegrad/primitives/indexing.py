"""Primitive family: indexing (being written)."""
from __future__ import annotations
