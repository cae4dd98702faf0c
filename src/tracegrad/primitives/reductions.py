"""Reductions over axes: reduce_sum, ... (more added alongside)."""
from __future__ import annotations

import numpy as np

from ..core import Primitive, ShapedArray, get_aval
from ..interpreters import ad, batching, lowering
from ..interpreters.ad import Zero


def reduce_aval(name, x, axes):
    if len(set(axes)) != len(axes) or any(not 0 <= a < x.ndim for a in axes):
        raise TypeError(f"{name}: invalid axes {axes} for operand {x.str_short()}")
    return ShapedArray(tuple(s for i, s in enumerate(x.shape) if i not in axes), x.dtype, x.weak_type)


def shift_axes(axes, d):
    """Axes of the per-example operand -> axes of the batched operand (batch at d)."""
    return tuple(a + 1 if a >= d else a for a in axes)


def out_bdim(axes, d):
    """Where the batch axis ends up after reducing `axes` (batched coordinates)."""
    return d - sum(1 for a in axes if a < d)


def _sum_impl(x, axes):
    return np.sum(x, axis=axes, dtype=x.dtype)


def _sum_transpose(ct, x, axes):
    if type(ct) is Zero:
        return [None]
    from .shapes import broadcast_in_dim_p
    shape = x.aval.shape
    kept = tuple(i for i in range(len(shape)) if i not in axes)
    return [broadcast_in_dim_p.bind(ct, shape=shape, broadcast_dimensions=kept)]


def _sum_batch(args, dims, axes):
    (x,), (d,) = args, dims
    new_axes = shift_axes(axes, d)
    return reduce_sum_p.bind(x, axes=new_axes), out_bdim(new_axes, d)


reduce_sum_p = Primitive(
    "reduce_sum", impl=_sum_impl,
    abstract_eval=lambda x, axes: reduce_aval("reduce_sum", x, axes),
    transpose=_sum_transpose, batch=_sum_batch,
    lower=lambda ctx, x, axes: [lowering.reduce(x, ctx.avals_in[0], ctx.avals_out[0], axes, "add")],
    linear=True)
reduce_sum_p.jvp = ad.linear_jvp(reduce_sum_p)
