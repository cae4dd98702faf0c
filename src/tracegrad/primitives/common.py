"""Helpers shared by the primitive families: standard abstract-eval and
batching rules, typed constants, and unbroadcasting of cotangents."""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..core import ShapedArray, get_aval
from ..interpreters import batching


def const_like(x, value):
    """A scalar constant with x's dtype (a jaxpr Literal when traced)."""
    dt = get_aval(x).dtype
    return np.asarray(value, dtype=dt)[()]


def check_same_dtypes(name, avals):
    dts = {a.dtype for a in avals}
    if len(dts) > 1:
        raise TypeError(f"{name} requires arguments to have the same dtype, got "
                        f"{', '.join(dtypes.short_name(a.dtype) for a in avals)}")


def elementwise_shape(name, avals):
    """Operands must have equal shapes; rank-0 operands broadcast."""
    shapes = {a.shape for a in avals if a.shape != ()}
    if len(shapes) > 1:
        raise TypeError(f"{name} requires operands of equal shapes (or scalars), got "
                        f"{', '.join(a.str_short() for a in avals)}")
    return shapes.pop() if shapes else ()


def elementwise_aval(name, avals, out_dtype=None, kinds=None):
    """Standard elementwise abstract eval; `kinds` restricts dtype kinds
    ('f' floating incl. complex/bf16, 'i' integer, 'b' bool)."""
    check_same_dtypes(name, avals)
    shape = elementwise_shape(name, avals)
    dt = avals[0].dtype
    if kinds is not None and _kind(dt) not in kinds:
        raise TypeError(f"{name} does not accept dtype {dtypes.short_name(dt)}")
    weak = all(a.weak_type for a in avals)
    if out_dtype is not None:
        return ShapedArray(shape, out_dtype, False)
    return ShapedArray(shape, dt, weak)


def _kind(dt):
    if dt == dtypes.bool_:
        return "b"
    if dtypes.is_float(dt):
        return "f"
    return "i"


def elementwise_batch(prim):
    """Batching rule for elementwise primitives (scalars broadcast)."""
    def rule(args, dims, **params):
        if len(args) == 1:
            return prim.bind(args[0], **params), dims[0]
        shapes = [get_aval(a).shape for a in args]
        d0 = dims[0]
        if d0 is not None and all(d == d0 for d in dims) and all(s == shapes[0] for s in shapes):
            # the common case (every operand batched alike): no moves at all
            return prim.bind(*args, **params), d0
        size = batching.axis_size_of(args, dims)
        ex_shape = ()
        for s, d in zip(shapes, dims):
            s = s if d is None else s[:d] + s[d + 1:]
            if s != ():
                ex_shape = s
        full = (size,) + ex_shape
        out = []
        for a, s, d in zip(args, shapes, dims):
            if d is None and s == ():
                out.append(a)
                continue
            if d is not None and d != 0:
                a = batching.moveaxis(a, d, 0)
                shape = get_aval(a).shape
            else:
                shape = s
            if shape != full:
                if d is None:
                    dims_ = tuple(range(1 + len(ex_shape) - len(shape), 1 + len(ex_shape)))
                else:
                    dims_ = (0,) if shape == (size,) else tuple(range(len(shape)))
                from . import shapes as _shapes
                a = _shapes.broadcast_in_dim_p.bind(a, shape=full, broadcast_dimensions=dims_)
            out.append(a)
        return prim.bind(*out, **params), 0
    return rule


def unbroadcast(ct, aval):
    """Sum a cotangent down to a rank-0 operand that was broadcast."""
    ca = get_aval(ct)
    if ca.shape == aval.shape:
        return ct
    from . import reductions
    return reductions.reduce_sum_p.bind(ct, axes=tuple(range(ca.ndim)))


def scalar(v, dtype):
    return np.asarray(v, dtype=dtype)[()]
