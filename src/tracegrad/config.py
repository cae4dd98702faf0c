"""Process-wide settings: `tracegrad.config.log_compiles = True` or
`tracegrad.config.update("log_compiles", True)`.

log_compiles: log every jit trace and compile (and why a function was
    retraced) on the "tracegrad.jit" logger at WARNING level. Defaults to the
    environment variable TRACEGRAD_LOG_COMPILES=1.
eager_tape: eager grad/vjp record a tape of direct reverse rules
    (interpreters/tape.py) instead of linearizing; False uses linearize +
    transpose everywhere (the tests compare both).
"""
from __future__ import annotations

import os


class Config:
    def __init__(self):
        self.log_compiles = os.environ.get("TRACEGRAD_LOG_COMPILES", "") not in ("", "0")
        self.eager_tape = True

    def update(self, name, value):
        if not hasattr(self, name):
            raise AttributeError(f"unknown tracegrad config option {name!r}; "
                                 f"known: {', '.join(sorted(vars(self)))}")
        setattr(self, name, value)

    def __repr__(self):
        return f"Config({', '.join(f'{k}={v!r}' for k, v in sorted(vars(self).items()))})"


config = Config()
