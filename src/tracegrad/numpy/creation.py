"""Array creation: array, asarray, zeros/ones/full(+_like), arange, linspace, eye."""
from __future__ import annotations

import numpy as np

from .. import core, dtypes
from ..core import Array, get_aval
from ..primitives.shapes import full as _full
from ._util import asarray_value


def _dt(dtype):
    return None if dtype is None else dtypes.canonicalize(dtype)


def asarray(a, dtype=None, copy=None):
    return asarray_value(a, _dt(dtype))


def array(a, dtype=None, copy=True, ndmin=0):
    out = asarray_value(a, _dt(dtype))
    if type(out) is Array and out.weak:
        out = Array(out.value, False)  # jnp.array(python scalar) is strongly typed
    while get_aval(out).ndim < ndmin:
        from .shape import expand_dims
        out = expand_dims(out, 0)
    return out


def _shape(shape):
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(int(s) for s in shape)


def full(shape, fill_value, dtype=None):
    shape = _shape(shape)
    if dtype is None:
        dt, _ = (get_aval(fill_value).dtype, False) if not isinstance(fill_value, (int, float, bool, complex)) \
            else (dtypes.python_scalar_dtype(fill_value), True)
    else:
        dt = _dt(dtype)
    if isinstance(fill_value, core.Tracer) or (type(fill_value) is Array and get_aval(fill_value).shape != ()):
        from ..primitives import elementwise as ew
        from ..primitives.shapes import broadcast_to
        return broadcast_to(ew.convert(asarray_value(fill_value), dt), shape)
    if core._ctx.trace is None:
        return Array(np.full(shape, np.asarray(fill_value), dtype=dt))
    return _full(shape, np.asarray(fill_value), dt)


def zeros(shape, dtype=None):
    return full(shape, 0, _dt(dtype) or dtypes.default_float)


def ones(shape, dtype=None):
    return full(shape, 1, _dt(dtype) or dtypes.default_float)


def empty(shape, dtype=None):
    return zeros(shape, dtype)


def _like(a, dtype, shape):
    av = get_aval(asarray_value(a))
    return (av.shape if shape is None else _shape(shape)), (_dt(dtype) or av.dtype)


def zeros_like(a, dtype=None, shape=None):
    s, d = _like(a, dtype, shape)
    return full(s, 0, d)


def ones_like(a, dtype=None, shape=None):
    s, d = _like(a, dtype, shape)
    return full(s, 1, d)


def full_like(a, fill_value, dtype=None, shape=None):
    s, d = _like(a, dtype, shape)
    return full(s, fill_value, d)


empty_like = zeros_like


def _concrete(x, name):
    if isinstance(x, core.Tracer):
        v = x.to_concrete()
        if v is None:
            raise core.concretization_error(x, f"the {name} argument (it sets a shape)")
        return v
    return x


def arange(start, stop=None, step=None, dtype=None):
    start = _concrete(start, "start")
    stop = _concrete(stop, "stop")
    step = _concrete(step, "step")
    args = [np.asarray(a).item() if type(a) is Array else a for a in (start, stop, step)]
    if args[1] is None:
        v = np.arange(args[0]) if args[2] is None else np.arange(0, args[0], args[2])
    else:
        v = np.arange(args[0], args[1], 1 if args[2] is None else args[2])
    if dtype is not None:
        v = v.astype(_dt(dtype))
    elif v.dtype.kind == "i":
        v = v.astype(dtypes.default_int)
    return _const(v)


def _const(v):
    return Array(v)


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    if isinstance(start, core.Tracer) or isinstance(stop, core.Tracer):
        from . import ufuncs
        from .shape import moveaxis, expand_dims
        dt = _dt(dtype) or dtypes.default_float
        div = (num - 1) if endpoint else num
        steps = arange(num, dtype=dt)
        start_a, stop_a = asarray(start, dt), asarray(stop, dt)
        delta = ufuncs.true_divide(ufuncs.subtract(stop_a, start_a), max(div, 1))
        out = ufuncs.add(expand_dims(start_a, -1) if get_aval(start_a).ndim else start_a,
                         ufuncs.multiply(steps, expand_dims(delta, -1) if get_aval(delta).ndim else delta))
        out = moveaxis(out, -1, axis) if get_aval(out).ndim > 1 else out
        return (out, delta) if retstep else out
    v = np.linspace(np.asarray(start), np.asarray(stop), num, endpoint=endpoint, retstep=retstep,
                    axis=axis)
    if retstep:
        v, st = v
    dt = _dt(dtype) or dtypes.default_float
    out = Array(np.asarray(v).astype(dt))
    return (out, st) if retstep else out


def eye(N, M=None, k=0, dtype=None):
    return Array(np.eye(N, M, k, dtype=_dt(dtype) or dtypes.default_float))


def identity(n, dtype=None):
    return eye(n, dtype=dtype)
