"""Primitive family: windowed (being written)."""
from __future__ import annotations
