"""Reductions with axis/keepdims: sum, mean, ..."""
from __future__ import annotations

import numpy as np

from .. import core, dtypes
from ..core import get_aval
from ..primitives import elementwise as ew
from ..primitives import reductions as red
from ..primitives import shapes
from ._util import asarray_value, canonical_axes


def _keep(x, out, axes, keepdims):
    if not keepdims:
        return out
    shape = tuple(1 if i in axes else s for i, s in enumerate(get_aval(x).shape))
    return shapes.reshape(out, shape)


def sum(a, axis=None, dtype=None, keepdims=False, initial=None, where=None):
    a = asarray_value(a)
    av = get_aval(a)
    dt = dtypes.canonicalize(dtype) if dtype is not None else (
        dtypes.default_int if av.dtype == dtypes.bool_ or (av.dtype.kind == "i" and av.dtype.itemsize < 8)
        else dtypes.uint64 if av.dtype.kind == "u" and av.dtype.itemsize < 8 else av.dtype)
    a = ew.convert(a, dt, av.weak_type and dt == av.dtype)
    axes = canonical_axes(axis, av.ndim)
    out = red.reduce_sum_p.bind(a, axes=axes) if axes else a
    if initial is not None:
        out = ew.add_p.bind(out, np.asarray(initial, dt)[()])
    return _keep(a, out, axes, keepdims)


def mean(a, axis=None, dtype=None, keepdims=False):
    a = asarray_value(a)
    av = get_aval(a)
    axes = canonical_axes(axis, av.ndim)
    n = int(np.prod([av.shape[i] for i in axes], dtype=np.int64))
    dt = dtypes.canonicalize(dtype) if dtype is not None else (
        av.dtype if dtypes.is_float(av.dtype) else dtypes.default_float)
    s = sum(ew.convert(a, dt, av.weak_type), axis=axes, keepdims=keepdims)
    return ew.div_p.bind(s, np.asarray(n, dt)[()])
