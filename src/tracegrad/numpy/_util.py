"""Conversion, dtype promotion and broadcasting shared by tracegrad.numpy."""
from __future__ import annotations

import math

import numpy as np

from .. import core, dtypes
from ..core import Array, Tracer, get_aval
from ..interpreters.tape import TapeTracer
from ..primitives import elementwise as ew
from ..primitives import shapes

_SCALARS = (bool, int, float, complex)


def asarray_value(x, dtype=None):
    """Any array-like -> something primitives accept (Array/Tracer/np array)."""
    t = type(x)
    if t is Array or isinstance(x, Tracer):
        if dtype is not None and get_aval(x).dtype != dtype:
            return ew.convert(x, dtype)
        return x
    if t is np.ndarray or isinstance(x, np.generic):
        v = np.asarray(x)
    elif t in _SCALARS:
        v = np.asarray(x, dtype=dtypes.python_scalar_dtype(x))
        return Array(v if dtype is None else v.astype(dtype), weak=dtype is None)
    elif isinstance(x, (list, tuple)):
        return _from_sequence(x, dtype)
    elif hasattr(x, "__array__") or hasattr(x, "__jax_array__"):
        v = np.asarray(x)
    else:
        raise TypeError(f"cannot convert {type(x).__name__} to a tracegrad array")
    v = _canonical(v)
    if dtype is not None and v.dtype != dtype:
        v = v.astype(dtype)
    return Array(v)


def _canonical(v):
    if v.dtype.kind in "OUSMm" or (v.dtype.kind == "V" and v.dtype not in (dtypes.float0, dtypes.bfloat16)):
        raise TypeError(f"tracegrad arrays cannot hold dtype {v.dtype}")
    return v


def _from_sequence(x, dtype):
    leaves = _seq_leaves(x)
    if any(isinstance(l, Tracer) for l in leaves):
        from .shape import stack
        return stack([asarray_value(e, dtype) for e in x])
    pairs = [(get_aval(l).dtype, get_aval(l).weak_type) for l in leaves] if leaves else []
    v = np.array([np.asarray(l) if type(l) is Array else l for l in x] if not leaves or
                 not any(type(l) is Array for l in leaves) else _to_np_nested(x))
    if dtype is None:
        if pairs:
            dt, weak = dtypes.promote(*pairs)
            # a literal list of Python scalars is a strong array of the default type
            dtype = dt
        else:
            dtype = dtypes.float64
    return Array(_canonical(v.astype(dtype)))


def _to_np_nested(x):
    if isinstance(x, (list, tuple)):
        return [_to_np_nested(e) for e in x]
    return np.asarray(x.value) if type(x) is Array else x


def _seq_leaves(x):
    out = []
    for e in x:
        if isinstance(e, (list, tuple)):
            out += _seq_leaves(e)
        else:
            out.append(e)
    return out


def dtype_weak(x):
    t = type(x)
    if t is Array:
        return x.value.dtype, x.weak
    if t is TapeTracer:  # eager grad's tracers hold a concrete value
        return dtype_weak(x.value)
    if t in _SCALARS:
        return dtypes.python_scalar_dtype(x), True
    a = get_aval(x)
    return a.dtype, a.weak_type


def promote(*args):
    """Convert args to their common JAX dtype (weak scalars adapt)."""
    pairs = [dtype_weak(a) for a in args]
    fast = _promote_strong(args, pairs)
    if fast is not None:
        return fast
    dt, weak = dtypes.promote(*pairs)
    out = []
    for a, (d, w) in zip(args, pairs):
        if type(a) in _SCALARS:
            # a 0-d Array keeps weakness; traced, it becomes a weak literal
            out.append(Array(np.asarray(a, dt), weak))
        elif d != dt or (w != weak and not weak):
            out.append(ew.convert(asarray_value(a), dt, weak))
        else:
            out.append(a)
    return out


def _promote_strong(args, pairs):
    """The common case without walking the lattice: operands of one strong
    dtype, or a strong float operand and Python int/float scalars (which
    take its dtype). None when the general rules are needed."""
    dt = None
    for a, (d, w) in zip(args, pairs):
        if type(a) in (int, float):
            continue
        if w or (dt is not None and d != dt):
            return None
        dt = d
    if dt is None:
        return None
    if all(type(a) not in (int, float) for a in args):
        return list(args)
    if dt.kind != "f":
        return None
    return [Array(np.asarray(a, dt), False) if type(a) in (int, float) else a for a in args]


def concrete_value(a):
    """The NumPy value behind an eager Array (outside any transformation) or
    an eager-grad tape tracer, for the fast paths; None for anything else."""
    t = type(a)
    if t is Array:
        return a._v if core._ctx.trace is None else None
    if t is TapeTracer:
        return a.value._v
    return None


def tape_operands(x, y, inexact):
    """Eager grad's shortcut past promotion and broadcasting: (x, y) when
    they are tape tracers, eager Arrays or NumPy arrays of one strong float
    dtype (or one of them a Python int/float, which takes that dtype) with
    equal shapes or a rank-0 side; a constant (not a tracer) that broadcasts
    to the tracer's shape is broadcast here, by the broadcast_in_dim impl
    the general path would run on it. Else None (the general path)."""
    vals = []
    dt = None
    for a in (x, y):
        t = type(a)
        if t is TapeTracer:
            a = a.value
            t = type(a)
        if t is Array:
            if a.weak:
                return None
            m = a._meta
        elif t is np.ndarray:
            m = a
        elif t is not float and t is not int:
            return None
        else:
            continue
        if dt is None:
            dt = m.dtype
        elif m.dtype != dt:
            return None
        vals.append(m.shape)
    if dt is None or dt.kind != "f":
        return None
    out = [Array(np.asarray(a, dt), False) if type(a) in (int, float) else a for a in (x, y)]
    if len(vals) == 2 and vals[0] != vals[1] and () not in vals:
        i = 1 if type(x) is TapeTracer else 0  # the constant's side
        if type(out[i]) is TapeTracer:
            return None
        cs, ts = vals[i], vals[1 - i]
        nd = len(ts)
        if len(cs) > nd:
            return None
        cv = out[i].value if type(out[i]) is Array else out[i]
        if math.prod(ts) <= shapes._SMALL_BROADCAST:
            # what the impl does for a small result, in one NumPy assignment
            # (it broadcasts over the trailing axes, and raises where the
            # shapes do not broadcast: then the general path's error)
            b = np.empty(ts, dt)
            try:
                b[...] = cv
            except ValueError:
                return None
            out[i] = Array(b)
            return out
        if any(c != 1 and c != n for c, n in zip(cs, ts[nd - len(cs):])):
            return None
        out[i] = Array(shapes.broadcast_in_dim_p.impl(cv, ts, tuple(range(nd - len(cs), nd))))
    return out


def promote_inexact(*args):
    """Like promote, then ints/bools become the default float (as jnp)."""
    args = promote(*args)
    dt, weak = dtype_weak(args[0])
    if not dtypes.is_float(dt):
        fdt = dtypes.to_inexact(dt)
        return [ew.convert(asarray_value(a), fdt, weak) for a in args]
    return args


def broadcast_arrays(*args):
    """NumPy broadcasting to a common shape (rank-0 operands stay scalars:
    primitives broadcast those themselves)."""
    shapes_ = [get_aval(a).shape for a in args]
    if len({s for s in shapes_ if s != ()}) <= 1:  # equal shapes or scalars
        return list(args)
    try:
        out_shape = np.broadcast_shapes(*shapes_)
    except ValueError:
        raise core.ShapeDtypeError(
            f"operands could not be broadcast together with shapes "
            f"{' '.join(str(s) for s in shapes_)}\n  at {core.user_frame()}") from None
    return [a if s == out_shape or s == () else shapes.broadcast_to(a, out_shape)
            for a, s in zip(args, shapes_)]


def check_axis(axis, ndim, name="axis"):
    if not -ndim <= axis < max(ndim, 1) or (ndim == 0 and axis not in (0, -1)):
        raise core.ShapeDtypeError(f"{name} {axis} is out of bounds for array of dimension {ndim}")
    return axis % ndim if ndim else 0


def canonical_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    out = tuple(check_axis(int(a), ndim) for a in axis)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in {axis}")
    return out
