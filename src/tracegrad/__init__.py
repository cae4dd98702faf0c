"""tracegrad: composable function transformations (grad, jit, vmap) for
NumPy-style Python, traced into a small jaxpr-like IR."""
from __future__ import annotations

from . import dtypes, tree_util  # noqa: F401
from . import primitives  # noqa: F401  (registers every primitive)
from .core import Array, ClosedJaxpr, Jaxpr, coverage, eval_jaxpr  # noqa: F401
from .core import ConcretizationError, LeakedTracerError, ShapeDtypeError, TracegradError  # noqa: F401
from .api import (grad, hessian, jacfwd, jacrev, jvp, linearize, make_jaxpr,  # noqa: F401
                  value_and_grad, vjp, vmap, ShapeDtypeStruct)
from . import numpy  # noqa: F401
from .config import config  # noqa: F401
from .jit import jit, block_until_ready, devices, device_put, JitCompileError, JitRuntimeError  # noqa: F401
from .custom_derivatives import custom_jvp, custom_vjp, stop_gradient  # noqa: F401
from .checkpoint import checkpoint, checkpoint_policies, remat  # noqa: F401
from . import lax  # noqa: F401
from .jacobian import jacobian, jacobian_explain, JacobianChoice  # noqa: F401,E402
from . import nn, optim  # noqa: F401

__version__ = "0.1.0"
from . import random, scipy  # noqa: F401,E402
