"""dtypes: JAX's type-promotion lattice with 64-bit types always enabled.

Differences from JAX on purpose: float64/int64/complex128 are never truncated
to 32 bits (as JAX with `jax_enable_x64=True`). Python scalars are *weak*:
they take the dtype of the array they meet (`f32 + 1.0 -> f32`).
"""
from __future__ import annotations

import functools

import numpy as np

try:  # bfloat16 comes with jaxlib's ml_dtypes
    import ml_dtypes

    bfloat16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover
    bfloat16 = None

bool_ = np.dtype(np.bool_)
int8, int16, int32, int64 = (np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64))
uint8, uint16, uint32, uint64 = (np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64))
float16, float32, float64 = (np.dtype(t) for t in (np.float16, np.float32, np.float64))
complex64, complex128 = np.dtype(np.complex64), np.dtype(np.complex128)

# float0: the dtype of tangents of integer/bool values (as in JAX).
float0 = np.dtype([("float0", np.void, 0)])

default_int, default_float, default_complex = int64, float64, complex128

# Lattice nodes: numpy dtypes plus three weak "kinds" for Python scalars.
_I, _F, _C = "i*", "f*", "c*"
_edges = {
    bool_: [_I],
    _I: [uint8, int8],
    uint8: [int16, uint16], uint16: [int32, uint32], uint32: [int64, uint64], uint64: [_F],
    int8: [int16], int16: [int32], int32: [int64], int64: [_F],
    _F: [float16, float32 if bfloat16 is None else bfloat16, _C],
    float16: [float32], float32: [float64, complex64], float64: [complex128],
    _C: [complex64], complex64: [complex128], complex128: [],
}
if bfloat16 is not None:
    _edges[_F] = [float16, bfloat16, _C]
    _edges[bfloat16] = [float32]


def _upper_sets():
    ups = {}

    def up(n):
        if n not in ups:
            s = {n}
            for m in _edges[n]:
                s |= up(m)
            ups[n] = frozenset(s)
        return ups[n]

    for n in _edges:
        up(n)
    return ups


_UP = _upper_sets()
_WEAK_DEFAULT = {_I: default_int, _F: default_float, _C: default_complex}


def _node(dtype, weak):
    if not weak or dtype == bool_:
        return dtype
    k = dtype.kind
    return _I if k in "iu" else _F if k == "f" else _C


@functools.lru_cache(maxsize=4096)
def _join(nodes):
    common = frozenset.intersection(*(_UP[n] for n in nodes))
    for n in common:
        if _UP[n] == common:
            return n
    raise TypeError(f"no common dtype for {nodes}")  # pragma: no cover


@functools.lru_cache(maxsize=4096)
def promote(*dtype_weak_pairs):
    """Result (dtype, weak_type) of combining (dtype, weak) pairs, JAX-style."""
    dts = {d for d, _ in dtype_weak_pairs}
    weaks = [w for _, w in dtype_weak_pairs]
    if len(dts) == 1 and not all(weaks):
        return dtype_weak_pairs[0][0], False
    node = _join(tuple(sorted({_node(d, w) for d, w in dtype_weak_pairs}, key=str)))
    if isinstance(node, str):
        return _WEAK_DEFAULT[node], True
    return node, False


def promote_types(a, b):
    """Like jnp.promote_types: strong dtypes only."""
    return promote((np.dtype(a), False), (np.dtype(b), False))[0]


def python_scalar_dtype(x):
    if isinstance(x, bool):
        return bool_
    if isinstance(x, int):
        return default_int
    if isinstance(x, float):
        return default_float
    if isinstance(x, complex):
        return default_complex
    raise TypeError(f"not a Python scalar: {x!r}")


def canonicalize(dtype):
    """User-given dtype (type, string, np.dtype) -> np.dtype."""
    if dtype is float:
        return default_float
    if dtype is int:
        return default_int
    if dtype is complex:
        return default_complex
    if dtype is bool:
        return bool_
    if isinstance(dtype, str) and dtype == "bfloat16":
        return bfloat16
    return np.dtype(dtype)


def issubdtype(dtype, category):
    if dtype == bfloat16:
        return category in (np.floating, np.inexact, np.number, np.generic)
    return np.issubdtype(dtype, category)


def is_float(dtype):
    return dtype.kind in "fc" or dtype == bfloat16


def is_inexact(dtype):
    return is_float(dtype)


def is_complex(dtype):
    return dtype.kind == "c"


def is_int(dtype):
    return dtype.kind in "iu"


def tangent_dtype(dtype):
    """Dtype of a tangent/cotangent of a value of `dtype` (float0 for ints/bools)."""
    return dtype if is_float(dtype) else float0


def short_name(dtype):
    """JAX-style short names for printing: f32, i64, bool, bf16, ..."""
    if dtype == bfloat16:
        return "bf16"
    if dtype == bool_:
        return "bool"
    if dtype == float0:
        return "float0"
    return {"f": "f", "i": "i", "u": "u", "c": "c"}[dtype.kind] + str(dtype.itemsize * 8 if dtype.kind != "c" else dtype.itemsize * 8)


def finfo(dtype):
    return ml_dtypes.finfo(dtype) if dtype == bfloat16 else np.finfo(dtype)


# JAX maps integer/bool dtypes to an inexact dtype by width, not through the
# lattice: 8-32 bit ints and bool -> float32, 64-bit ints -> float64.
_TO_INEXACT = {bool_: float32, int8: float32, int16: float32, int32: float32,
               uint8: float32, uint16: float32, uint32: float32,
               int64: float64, uint64: float64}


def to_inexact(dtype):
    return _TO_INEXACT.get(dtype, dtype)
