"""tracegrad.numpy (import as tnp): NumPy's API written in tracegrad
primitives, with JAX's dtype promotion (64-bit on, Python scalars weak)."""
from __future__ import annotations

import numpy as _np

from ..core import Array as ndarray  # noqa: F401  (isinstance checks, as jnp.ndarray)
from .. import dtypes as _dtypes
from .creation import *  # noqa: F401,F403
from .creation import array, asarray  # noqa: F401
from .reductions import *  # noqa: F401,F403
from .reductions import sum, mean  # noqa: F401
from .ufuncs import *  # noqa: F401,F403
from .ufuncs import abs, round, divmod, where  # noqa: F401
from .shape import *  # noqa: F401,F403
from .indexing import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from . import _methods  # noqa: F401  (installs operators on Array and Tracer)
from . import linalg_ns as linalg  # noqa: E402  (tnp.linalg: norm, det, solve, ...)

float16, float32, float64 = _np.float16, _np.float32, _np.float64
bfloat16 = _dtypes.bfloat16
int8, int16, int32, int64 = _np.int8, _np.int16, _np.int32, _np.int64
uint8, uint16, uint32, uint64 = _np.uint8, _np.uint16, _np.uint32, _np.uint64
bool_ = _np.bool_
complex64, complex128 = _np.complex64, _np.complex128
pi, e, inf, nan, euler_gamma = _np.pi, _np.e, _np.inf, _np.nan, _np.euler_gamma
newaxis = None
dtype = _np.dtype
promote_types = _dtypes.promote_types
finfo = _dtypes.finfo
iinfo = _np.iinfo
issubdtype = _dtypes.issubdtype
