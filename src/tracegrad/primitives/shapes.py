"""Shape primitives: broadcast_in_dim, reshape, transpose, squeeze (more in
this family are added alongside: concatenate, pad, slices, iota, rev...)."""
from __future__ import annotations

import numpy as np
from jaxlib.mlir.dialects import stablehlo as hlo

from .. import core, dtypes
from ..core import Primitive, ShapedArray, get_aval
from ..interpreters import ad, batching, lowering
from ..interpreters.ad import Zero


def _shape_only(prim):
    """jvp for structural ops linear in their single operand."""
    return ad.linear_jvp(prim)


# ---- broadcast_in_dim(x, shape, broadcast_dimensions)

def _bid_impl(x, shape, broadcast_dimensions):
    inter = [1] * len(shape)
    for i, d in enumerate(broadcast_dimensions):
        inter[d] = x.shape[i]
    return np.broadcast_to(np.reshape(x, inter), shape)


def _bid_abstract(x, shape, broadcast_dimensions):
    dims = broadcast_dimensions
    if len(dims) != x.ndim:
        raise TypeError(f"broadcast_dimensions {dims} must have one entry per operand axis "
                        f"(operand {x.str_short()})")
    if any(b <= a for a, b in zip(dims, dims[1:])) or any(not 0 <= d < len(shape) for d in dims):
        raise TypeError(f"broadcast_dimensions {dims} must be strictly increasing and in range "
                        f"for shape {shape}")
    for i, d in enumerate(dims):
        if x.shape[i] not in (1, shape[d]):
            raise TypeError(f"cannot broadcast operand {x.str_short()} to shape {shape} "
                            f"(axis {i} of size {x.shape[i]} vs {shape[d]})")
    if any(s < 0 for s in shape):
        raise TypeError(f"negative dimension in shape {shape}")
    return ShapedArray(shape, x.dtype, x.weak_type)


def _bid_transpose(ct, x, shape, broadcast_dimensions):
    if type(ct) is Zero:
        return [None]
    dims = broadcast_dimensions
    sum_axes = tuple(i for i in range(len(shape)) if i not in dims)
    unit = tuple(dims[i] for i in range(x.aval.ndim) if x.aval.shape[i] == 1 and shape[dims[i]] != 1)
    from .reductions import reduce_sum_p
    axes = tuple(sorted(sum_axes + unit))
    out = reduce_sum_p.bind(ct, axes=axes) if axes else ct
    if get_aval(out).shape != x.aval.shape:
        out = reshape_p.bind(out, new_sizes=x.aval.shape)
    return [out]


def _bid_batch(args, dims, shape, broadcast_dimensions):
    (x,), (d,) = args, dims
    x = batching.moveaxis(x, d, 0)
    size = get_aval(x).shape[0]
    return broadcast_in_dim_p.bind(x, shape=(size,) + tuple(shape),
                                   broadcast_dimensions=(0,) + tuple(b + 1 for b in broadcast_dimensions)), 0


def _bid_lower(ctx, x, shape, broadcast_dimensions):
    return [lowering.broadcast_in_dim(x, ctx.avals_out[0], broadcast_dimensions)]


broadcast_in_dim_p = Primitive("broadcast_in_dim", impl=_bid_impl, abstract_eval=_bid_abstract,
                               transpose=_bid_transpose, batch=_bid_batch, lower=_bid_lower,
                               linear=True)
broadcast_in_dim_p.jvp = _shape_only(broadcast_in_dim_p)


# ---- reshape(x, new_sizes)

def _reshape_abstract(x, new_sizes):
    if int(np.prod(new_sizes, dtype=np.int64)) != x.size or any(s < 0 for s in new_sizes):
        raise TypeError(f"cannot reshape {x.str_short()} ({x.size} elements) to {tuple(new_sizes)}")
    return ShapedArray(new_sizes, x.dtype, x.weak_type)


def _reshape_batch(args, dims, new_sizes):
    x = batching.moveaxis(args[0], dims[0], 0)
    return reshape_p.bind(x, new_sizes=(get_aval(x).shape[0],) + tuple(new_sizes)), 0


reshape_p = Primitive(
    "reshape", impl=lambda x, new_sizes: np.reshape(x, new_sizes),
    abstract_eval=_reshape_abstract,
    transpose=lambda ct, x, new_sizes: [None if type(ct) is Zero else reshape_p.bind(ct, new_sizes=x.aval.shape)],
    batch=_reshape_batch,
    lower=lambda ctx, x, new_sizes: [lowering.result(hlo.ReshapeOp(lowering.ir_type(ctx.avals_out[0]), x))],
    linear=True)
reshape_p.jvp = _shape_only(reshape_p)


# ---- transpose(x, permutation)

def _transpose_abstract(x, permutation):
    if sorted(permutation) != list(range(x.ndim)):
        raise TypeError(f"permutation {permutation} is not a permutation of the axes of {x.str_short()}")
    return ShapedArray(tuple(x.shape[p] for p in permutation), x.dtype, x.weak_type)


def _transpose_transpose(ct, x, permutation):
    if type(ct) is Zero:
        return [None]
    inv = tuple(np.argsort(permutation))
    return [transpose_p.bind(ct, permutation=inv)]


def _transpose_batch(args, dims, permutation):
    x = batching.moveaxis(args[0], dims[0], 0)
    return transpose_p.bind(x, permutation=(0,) + tuple(p + 1 for p in permutation)), 0


transpose_p = Primitive(
    "transpose", impl=lambda x, permutation: np.transpose(x, permutation),
    abstract_eval=_transpose_abstract, transpose=_transpose_transpose, batch=_transpose_batch,
    lower=lambda ctx, x, permutation: [lowering.result(hlo.TransposeOp(x, permutation))],
    linear=True)
transpose_p.jvp = _shape_only(transpose_p)


# ---- squeeze(x, dimensions)

def _squeeze_abstract(x, dimensions):
    for d in dimensions:
        if not 0 <= d < x.ndim or x.shape[d] != 1:
            raise TypeError(f"cannot squeeze axis {d} of {x.str_short()}: it must have size 1")
    return ShapedArray(tuple(s for i, s in enumerate(x.shape) if i not in dimensions),
                       x.dtype, x.weak_type)


def _squeeze_batch(args, dims, dimensions):
    x = batching.moveaxis(args[0], dims[0], 0)
    return squeeze_p.bind(x, dimensions=tuple(d + 1 for d in dimensions)), 0


squeeze_p = Primitive(
    "squeeze", impl=lambda x, dimensions: np.squeeze(x, axis=dimensions) if dimensions else x,
    abstract_eval=_squeeze_abstract,
    transpose=lambda ct, x, dimensions: [None if type(ct) is Zero else reshape_p.bind(ct, new_sizes=x.aval.shape)],
    batch=_squeeze_batch,
    lower=lambda ctx, x, dimensions: [lowering.result(hlo.ReshapeOp(lowering.ir_type(ctx.avals_out[0]), x))],
    linear=True)
squeeze_p.jvp = _shape_only(squeeze_p)


# ---- helpers used across the package

def full(shape, value, dtype):
    """An array of `shape` filled with `value` (a broadcast scalar)."""
    s = np.asarray(value, dtype=dtype)[()]
    if shape == ():
        trace = core.current_trace()
        return core.Array(np.asarray(s)) if trace is None else broadcast_in_dim_p.bind(
            s, shape=(), broadcast_dimensions=())
    return broadcast_in_dim_p.bind(s, shape=tuple(shape), broadcast_dimensions=())


def broadcast_to(x, shape):
    a = get_aval(x)
    if a.shape == tuple(shape):
        return x
    nd = len(shape)
    dims = tuple(range(nd - a.ndim, nd))
    return broadcast_in_dim_p.bind(x, shape=tuple(shape), broadcast_dimensions=dims)


def moveaxis_bind(x, src, dst):
    return batching.moveaxis(x, src, dst)


def reshape(x, shape):
    if get_aval(x).shape == tuple(shape):
        return x
    return reshape_p.bind(x, new_sizes=tuple(shape))
