"""Reductions with NumPy's signatures (axis, keepdims, dtype, initial, where)
and JAX's dtype rules (64-bit on): sum/prod of bool and small ints give
int64 (unsigned: uint64); mean/var/std of ints give float32 for 8-32 bit
ints and bool, float64 for 64-bit ones; argmax/argmin/argsort give int64;
max/min keep the dtype. Also cumulative sums/products, sorting, quantiles
and logsumexp."""
from __future__ import annotations

import builtins

import numpy as np

from .. import core, dtypes
from ..core import Array, get_aval
from ..primitives import elementwise as ew
from ..primitives import reductions as red
from ..primitives import shapes
from ..primitives import sort as sort_prims
from ._util import asarray_value, canonical_axes, check_axis, concrete_value, promote_inexact

_ctx = core._ctx  # (the one context object: its .trace changes, never the object)
_sum_impl = red.reduce_sum_p.impl
_add_reduce = np.add.reduce

__all__ = [
    "sum", "mean", "prod", "product", "max", "min", "amax", "amin", "argmax", "argmin",
    "all", "any", "cumsum", "cumprod", "cumulative_sum", "cumulative_prod", "nancumsum",
    "nancumprod", "var", "std", "ptp", "median", "quantile", "percentile", "average",
    "count_nonzero", "sort", "argsort", "logsumexp", "nansum", "nanmax", "nanmin", "nanmean",
]

_max, _any = builtins.max, builtins.any


# --------------------------------------------------------------------------
# helpers


def _keep(x, out, axes, keepdims):
    if not keepdims:
        return out
    shape = tuple(1 if i in axes else s for i, s in enumerate(get_aval(x).shape))
    return shapes.reshape(out, shape)


def _int_promoted(dt):
    """JAX's accumulation dtype for sum/prod: bool and narrow ints widen."""
    if dt == dtypes.bool_ or (dt.kind == "i" and dt.itemsize < 8):
        return dtypes.default_int
    if dt.kind == "u" and dt.itemsize < 8:
        return dtypes.uint64
    return dt


def _scalar(v, dt):
    return np.asarray(v, dt)[()]


def _bcast(x, shape):
    return shapes.broadcast_to(x, tuple(shape))


def _where_fill(a, where, fill):
    """a where `where` is set, else the scalar fill (a reduction identity)."""
    if where is None:
        return a
    av = get_aval(a)
    m = asarray_value(where)
    if get_aval(m).dtype != dtypes.bool_:
        m = ew.ne_p.bind(m, _scalar(0, get_aval(m).dtype))
    m = _bcast(m, np.broadcast_shapes(get_aval(m).shape, av.shape))
    a = _bcast(a, get_aval(m).shape)
    return ew.select_n_p.bind(m, _scalar(fill, av.dtype), a)


def _reduce(prim, a, axes):
    return prim.bind(a, axes=axes) if axes else a


def _size(shape, axes):
    return int(np.prod([shape[i] for i in axes], dtype=np.int64))


# --------------------------------------------------------------------------
# sum, prod, mean


def _sum_or_prod(reduce_p, combine_p, identity, a, axis, dtype, keepdims, initial, where,
                 promote_integers):
    """sum/prod: JAX's integer promotion, `where` masking with the identity,
    `initial` combined after the reduction."""
    a = asarray_value(a)
    av = get_aval(a)
    dt = dtypes.canonicalize(dtype) if dtype is not None else (
        _int_promoted(av.dtype) if promote_integers else av.dtype)
    a = ew.convert(a, dt, av.weak_type and dt == av.dtype)
    a = _where_fill(a, where, identity)
    axes = canonical_axes(axis, get_aval(a).ndim)
    out = _reduce(reduce_p, a, axes)
    if initial is not None:
        out = combine_p.bind(out, _scalar(initial, dt))
    return _keep(a, out, axes, keepdims)


def _fast_sum(a, axis):
    """sum of an eager float Array or eager-grad tracer over an int axis or
    all axes: no promotion, no mask, one reduce_sum (its impl directly for
    an eager Array; the weak type is kept, as the general path's). None for
    anything else."""
    v = concrete_value(a)
    if v is None or v.dtype.kind != "f":
        return None
    nd = v.ndim
    if type(axis) is int and -nd <= axis < nd:
        axes = (axis % nd,)
    elif axis is None and nd:
        axes = tuple(range(nd))
    else:
        return None
    if type(a) is Array:
        return Array(red.reduce_sum_p.impl(v, axes), a.weak)
    return red.reduce_sum_p.bind(a, axes=axes)


def sum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None,
        promote_integers=True):
    if dtype is None and initial is None and where is None and not keepdims:
        if type(a) is Array and _ctx.trace is None:
            # eager float Array over one int axis or all of them (what _fast_sum
            # does, inline: the common case of eager code). NumPy's add.reduce
            # is the impl's result (for floats dtype= changes nothing, and the
            # impl's column sums over a short last axis of a larger array give
            # the same bits) without the impl's checks. NumPy's AxisError for
            # an axis out of range leaves the error to the general path (NumPy
            # takes axis 0 of a 0-d array: we do not).
            v = a._v
            if v is not None and v.dtype.kind == "f" and v.ndim:
                if axis is None or (type(axis) is int and v.size < 128):
                    try:
                        return Array(_add_reduce(v, axis), a.weak)
                    except np.exceptions.AxisError:
                        pass
                elif type(axis) is int and -v.ndim <= axis < v.ndim:
                    return Array(_sum_impl(v, (axis % v.ndim,)), a.weak)
        r = _fast_sum(a, axis)
        if r is not None:
            return r
    return _sum_or_prod(red.reduce_sum_p, ew.add_p, 0, a, axis, dtype, keepdims, initial,
                        where, promote_integers)


def prod(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None,
         promote_integers=True):
    return _sum_or_prod(red.reduce_prod_p, ew.mul_p, 1, a, axis, dtype, keepdims, initial,
                        where, promote_integers)


product = prod


def _count(a, axes, where, dt, keepdims):
    """Number of elements taking part in a reduction (as an array of dt)."""
    if where is None:
        n = _size(get_aval(a).shape, axes)
        shape = get_aval(a).shape
        kshape = tuple(1 if i in axes else s for i, s in enumerate(shape)) if keepdims else \
            tuple(s for i, s in enumerate(shape) if i not in axes)
        return shapes.full(kshape, n, dt) if kshape else _scalar(n, dt)
    ones = shapes.full(get_aval(a).shape, 1, dt)
    return sum(ones, axis=axes, dtype=dt, keepdims=keepdims, where=where)


def mean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=None):
    a = asarray_value(a)
    av = get_aval(a)
    axes = canonical_axes(axis, av.ndim)
    dt = dtypes.canonicalize(dtype) if dtype is not None else dtypes.to_inexact(av.dtype)
    s = sum(ew.convert(a, dt, av.weak_type), axis=axes, dtype=dt, keepdims=keepdims, where=where)
    n = _count(a, axes, where, dt, keepdims)
    return ew.div_p.bind(s, n)


def nansum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    a = _nan_to(asarray_value(a), 0)
    return sum(a, axis=axis, dtype=dtype, keepdims=keepdims, initial=initial, where=where)


def nanmean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=None):
    a = asarray_value(a)
    if not dtypes.is_float(get_aval(a).dtype):
        return mean(a, axis, dtype, keepdims=keepdims, where=where)
    ok = ew.not_p.bind(_isnan(a))
    if where is not None:
        ok = ew.and_p.bind(ok, _bcast(asarray_value(where, dtypes.bool_), get_aval(a).shape))
    return mean(a, axis, dtype, keepdims=keepdims, where=ok)


def _isnan(a):
    return ew.ne_p.bind(a, a)


def _nan_to(a, v):
    if not dtypes.is_float(get_aval(a).dtype):
        return a
    return ew.select_n_p.bind(_isnan(a), a, _scalar(v, get_aval(a).dtype) if get_aval(a).shape == ()
                              else shapes.full(get_aval(a).shape, v, get_aval(a).dtype))


# --------------------------------------------------------------------------
# max, min, ptp


def _minmax(name, prim, kind, a, axis, keepdims, initial, where):
    a = asarray_value(a)
    av = get_aval(a)
    axes = canonical_axes(axis, av.ndim)
    if initial is None and where is not None:
        raise ValueError(f"reduction operation {name} does not have an identity, so to use a "
                         f"where mask one has to specify 'initial'")
    if initial is None and _any(av.shape[i] == 0 for i in axes):
        raise ValueError(f"zero-size array to reduction operation {name} which has no identity")
    a = _where_fill(a, where, red._identity(kind, av.dtype))
    out = _reduce(prim, a, axes)
    if initial is not None and not _is_identity(initial, kind, av.dtype):
        init = _scalar(initial, av.dtype)
        out = (ew.max_p if kind == "max" else ew.min_p).bind(out, init)
    return _keep(a, out, axes, keepdims)


def _is_identity(initial, kind, dtype):
    """initial=-inf for max (+inf for min) of floats changes nothing: the
    reduction's own identity; skipping it saves an op on every logsumexp."""
    return (dtypes.is_float(dtype) and not dtypes.is_complex(dtype)
            and initial == (-np.inf if kind == "max" else np.inf))


def max(a, axis=None, out=None, keepdims=False, initial=None, where=None):
    return _minmax("max", red.reduce_max_p, "max", a, axis, keepdims, initial, where)


def min(a, axis=None, out=None, keepdims=False, initial=None, where=None):
    return _minmax("min", red.reduce_min_p, "min", a, axis, keepdims, initial, where)


amax, amin = max, min


def nanmax(a, axis=None, out=None, keepdims=False, initial=None, where=None):
    a = asarray_value(a)
    out = max(_nan_to(a, -np.inf), axis, keepdims=keepdims, initial=initial, where=where)
    if not dtypes.is_float(get_aval(a).dtype):
        return out
    all_nan = all(_isnan(a), axis=axis, keepdims=keepdims)
    return ew.select_n_p.bind(all_nan, out, _scalar(np.nan, get_aval(out).dtype))


def nanmin(a, axis=None, out=None, keepdims=False, initial=None, where=None):
    a = asarray_value(a)
    out = min(_nan_to(a, np.inf), axis, keepdims=keepdims, initial=initial, where=where)
    if not dtypes.is_float(get_aval(a).dtype):
        return out
    all_nan = all(_isnan(a), axis=axis, keepdims=keepdims)
    return ew.select_n_p.bind(all_nan, out, _scalar(np.nan, get_aval(out).dtype))


def ptp(a, axis=None, out=None, keepdims=False):
    hi = max(a, axis, keepdims=keepdims)
    lo = min(a, axis, keepdims=keepdims)
    return ew.sub_p.bind(hi, lo)


# --------------------------------------------------------------------------
# argmax, argmin


def _argminmax(name, prim, a, axis, keepdims):
    a = asarray_value(a)
    av = get_aval(a)
    if axis is None:
        flat = shapes.reshape(a, (av.size,))
        if av.size == 0:
            raise ValueError(f"attempt to get {name} of an empty sequence")
        out = prim.bind(flat, axes=(0,), index_dtype=dtypes.default_int)
        return shapes.reshape(out, (1,) * av.ndim) if keepdims else out
    ax = check_axis(int(axis), av.ndim)
    if av.ndim == 0:
        a = shapes.reshape(a, (1,))
    elif av.shape[ax] == 0:
        raise ValueError(f"attempt to get {name} of an empty sequence")
    out = prim.bind(a, axes=(ax,), index_dtype=dtypes.default_int)
    return _keep(a, out, (ax,), keepdims) if av.ndim else out


def argmax(a, axis=None, out=None, keepdims=False):
    return _argminmax("argmax", red.argmax_p, a, axis, keepdims)


def argmin(a, axis=None, out=None, keepdims=False):
    return _argminmax("argmin", red.argmin_p, a, axis, keepdims)


# --------------------------------------------------------------------------
# all, any, count_nonzero


def _as_bool(a):
    a = asarray_value(a)
    dt = get_aval(a).dtype
    return a if dt == dtypes.bool_ else ew.ne_p.bind(a, _scalar(0, dt))


def all(a, axis=None, out=None, keepdims=False, *, where=None):
    a = _where_fill(_as_bool(a), where, True)
    axes = canonical_axes(axis, get_aval(a).ndim)
    return _keep(a, _reduce(red.reduce_and_p, a, axes), axes, keepdims)


def any(a, axis=None, out=None, keepdims=False, *, where=None):
    a = _where_fill(_as_bool(a), where, False)
    axes = canonical_axes(axis, get_aval(a).ndim)
    return _keep(a, _reduce(red.reduce_or_p, a, axes), axes, keepdims)


def count_nonzero(a, axis=None, keepdims=False):
    return sum(_as_bool(a), axis=axis, dtype=dtypes.default_int, keepdims=keepdims)


# --------------------------------------------------------------------------
# cumulative sums and products


def _cumulative(prim, a, axis, dtype, fill_nan=None, include_initial=False):
    a = asarray_value(a)
    av = get_aval(a)
    if axis is None or av.ndim == 0:
        a = shapes.reshape(a, (av.size,))
        axis = 0
    ax = check_axis(int(axis), get_aval(a).ndim)
    if fill_nan is not None:
        a = _nan_to(a, fill_nan)
    dt = av.dtype if dtype is None else dtypes.canonicalize(dtype)
    if dt == dtypes.bool_:  # JAX accumulates bools as default ints
        dt = dtypes.default_int
    a = ew.convert(_as_bool(a) if dtype is not None and dtypes.canonicalize(dtype) == dtypes.bool_
                   else a, dt, av.weak_type and dt == av.dtype)
    out = prim.bind(a, axis=ax, reverse=False)
    if dtype is not None and dtypes.canonicalize(dtype) == dtypes.bool_:
        out = ew.convert(out, dtypes.bool_)
    return out


def cumsum(a, axis=None, dtype=None, out=None):
    return _cumulative(red.cumsum_p, a, axis, dtype)


def cumprod(a, axis=None, dtype=None, out=None):
    return _cumulative(red.cumprod_p, a, axis, dtype)


def nancumsum(a, axis=None, dtype=None, out=None):
    return _cumulative(red.cumsum_p, a, axis, dtype, fill_nan=0)


def nancumprod(a, axis=None, dtype=None, out=None):
    return _cumulative(red.cumprod_p, a, axis, dtype, fill_nan=1)


def _cumulative_with_initial(prim, identity, x, axis, dtype, include_initial):
    x = asarray_value(x)
    if get_aval(x).ndim != 1 and axis is None:
        raise ValueError("cumulative functions need an axis for arrays with more than one dimension")
    ax = 0 if axis is None else check_axis(int(axis), get_aval(x).ndim)
    out = _cumulative(prim, x, ax, dtype)
    if include_initial:
        cfg = [(0, 0, 0)] * get_aval(out).ndim
        cfg[ax] = (1, 0, 0)
        out = shapes.pad(out, identity, cfg)
    return out


def cumulative_sum(x, /, *, axis=None, dtype=None, include_initial=False):
    return _cumulative_with_initial(red.cumsum_p, 0, x, axis, dtype, include_initial)


def cumulative_prod(x, /, *, axis=None, dtype=None, include_initial=False):
    return _cumulative_with_initial(red.cumprod_p, 1, x, axis, dtype, include_initial)


# --------------------------------------------------------------------------
# var, std, average


def _upcast_low(dt):
    return dtypes.float32 if dt in (dtypes.float16, dtypes.bfloat16) else dt


def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None, mean=None,
        correction=None):
    if correction is not None:
        if ddof != 0:
            raise ValueError("ddof and correction can't be provided simultaneously.")
        ddof = correction
    a = asarray_value(a)
    av = get_aval(a)
    if dtype is not None:
        out_dt = dtypes.canonicalize(dtype)
        if dtypes.is_complex(av.dtype) and not dtypes.is_complex(out_dt):
            raise ValueError("var of complex values needs a complex dtype (as jax.numpy.var)")
        comp_dt = out_dt
    elif not dtypes.is_float(av.dtype):
        out_dt = comp_dt = dtypes.to_inexact(av.dtype)
    else:
        out_dt = np.zeros((), av.dtype).real.dtype if av.dtype != dtypes.bfloat16 else av.dtype
        comp_dt = av.dtype
    comp_dt = _upcast_low(comp_dt)
    axes = canonical_axes(axis, av.ndim)
    a = ew.convert(a, comp_dt)
    m = globals()["mean"](a, axes, comp_dt, keepdims=True, where=where) if mean is None \
        else asarray_value(mean, comp_dt)
    m = _bcast(m, get_aval(a).shape) if get_aval(m).shape not in ((), get_aval(a).shape) else m
    centered = ew.sub_p.bind(a, m)
    if dtypes.is_complex(comp_dt):
        from .ufuncs import conjugate, real
        centered = real(ew.mul_p.bind(centered, conjugate(centered)))
        comp_dt = get_aval(centered).dtype
    else:
        centered = ew.mul_p.bind(centered, centered)
    n = _count(a, axes, where, comp_dt, keepdims)
    n = ew.sub_p.bind(n, _scalar(ddof, comp_dt))
    total = sum(centered, axes, dtype=comp_dt, keepdims=keepdims, where=where)
    result = ew.convert(ew.div_p.bind(total, n), out_dt)
    # NaN where the normalizer is not positive (N <= ddof)
    pos = ew.gt_p.bind(n, _scalar(0, comp_dt))
    nan = _scalar(np.nan, out_dt)
    rshape = get_aval(result).shape
    if get_aval(pos).shape != rshape:
        pos = _bcast(pos, rshape)
    return ew.select_n_p.bind(pos, nan if rshape == () else shapes.full(rshape, np.nan, out_dt), result)


def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None, mean=None,
        correction=None):
    v = var(a, axis, dtype, ddof=ddof, keepdims=keepdims, where=where, mean=mean,
            correction=correction)
    return ew.sqrt_p.bind(v)


def average(a, axis=None, weights=None, returned=False, keepdims=False):
    a = asarray_value(a)
    nd = get_aval(a).ndim
    axes = canonical_axes(axis, nd)
    if weights is None:
        (a,) = promote_inexact(a)
        avg = mean(a, axis=axes, keepdims=keepdims)
        wsum = _scalar(_size(get_aval(a).shape, axes), get_aval(avg).dtype)
    else:
        a, w = promote_inexact(a, asarray_value(weights))
        ashape, wshape = get_aval(a).shape, get_aval(w).shape
        if ashape != wshape:
            if axis is None:
                raise ValueError("Axis must be specified when shapes of a and weights differ.")
            if wshape != tuple(ashape[i] for i in axes):
                raise ValueError("Shape of weights must be consistent with shape of a along "
                                 "specified axis.")
            order = tuple(int(i) for i in np.argsort(axes))
            if order != tuple(range(len(axes))):
                w = shapes.transpose_p.bind(w, permutation=order)
            w = shapes.reshape(w, tuple(d if i in axes else 1 for i, d in enumerate(ashape)))
            w = _bcast(w, ashape)
        wsum = sum(w, axis=axes, keepdims=keepdims)
        avg = ew.div_p.bind(sum(ew.mul_p.bind(a, w), axis=axes, keepdims=keepdims), wsum)
    if returned:
        wsum = asarray_value(wsum)
        if get_aval(wsum).shape != get_aval(avg).shape:
            wsum = _bcast(wsum, get_aval(avg).shape)
        return avg, wsum
    return avg


# --------------------------------------------------------------------------
# sort, argsort


def _sort_operand(name, a, axis, order):
    """(array, axis) for sort/argsort: axis=None sorts the flattened array."""
    if order is not None:
        raise TypeError(f"'order' argument to {name} is not supported.")
    a = asarray_value(a)
    if axis is None:
        a = shapes.reshape(a, (get_aval(a).size,))
        axis = 0
    nd = get_aval(a).ndim
    if nd == 0:
        raise ValueError(f"{name} of a 0-d array needs axis=None")
    return a, check_axis(int(axis), nd)


def sort(a, axis=-1, kind=None, order=None, *, stable=True, descending=False):
    a, ax = _sort_operand("sort", a, axis, order)
    (out,) = sort_prims.sort_p.bind(a, dimension=ax, is_stable=bool(stable), num_keys=1)
    return shapes.rev(out, (ax,)) if descending else out


def argsort(a, axis=-1, kind=None, order=None, *, stable=True, descending=False, dtype=None):
    a, ax = _sort_operand("argsort", a, axis, order)
    idx_dt = dtypes.default_int if dtype is None else dtypes.canonicalize(dtype)
    iota = shapes.iota(idx_dt, get_aval(a).shape, ax)
    if descending and stable:
        # reversing first keeps equal elements in their original order once
        # the result is reversed back
        a, iota = shapes.rev(a, (ax,)), shapes.rev(iota, (ax,))
    _, idx = sort_prims.sort_p.bind(a, iota, dimension=ax, is_stable=bool(stable), num_keys=1)
    return shapes.rev(idx, (ax,)) if descending else idx


# --------------------------------------------------------------------------
# quantile, percentile, median


_METHODS = ("linear", "lower", "higher", "midpoint", "nearest")


def _take_at(a, idx, axis):
    """a[..., idx, ...] along `axis` for an integer index array idx shaped
    like a without `axis` (plus leading q dims): a select-and-sum, exact
    and differentiable, that also works for traced indices."""
    av = get_aval(a)
    ia = get_aval(idx)
    q_nd = ia.ndim - (av.ndim - 1)
    full = ia.shape[:q_nd] + av.shape
    a_b = shapes.broadcast_in_dim_p.bind(a, shape=full, broadcast_dimensions=tuple(
        range(q_nd, len(full))))
    dims = tuple(i for i in range(len(full)) if i != q_nd + axis)
    idx_b = shapes.broadcast_in_dim_p.bind(idx, shape=full, broadcast_dimensions=dims)
    pos = shapes.iota(ia.dtype, full, q_nd + axis)
    zero = shapes.full(full, 0, av.dtype)
    picked = ew.select_n_p.bind(ew.eq_p.bind(pos, idx_b), zero, a_b)
    return red.reduce_sum_p.bind(picked, axes=(q_nd + axis,))


def quantile(a, q, axis=None, out=None, overwrite_input=False, method="linear", keepdims=False,
             *, interpolation=None):
    if interpolation is not None:
        method = interpolation
    if method not in _METHODS:
        raise ValueError(f"method can only be one of {_METHODS}, got {method!r}")
    a = asarray_value(a)
    (a,) = promote_inexact(a)
    if dtypes.is_complex(get_aval(a).dtype):
        raise ValueError("quantile does not support complex input, as the operation is poorly defined.")
    q = asarray_value(q)
    qa = get_aval(q)
    if qa.ndim > 1:
        raise ValueError(f"q must be have rank <= 1, got shape {qa.shape}")
    if not dtypes.is_float(qa.dtype):
        q = ew.convert(q, get_aval(a).dtype)
    av = get_aval(a)
    nd = av.ndim
    if axis is None:
        kshape = (1,) * nd
        a = shapes.reshape(a, (av.size,))
        ax = 0
    else:
        axes = canonical_axes(axis, nd)
        kshape = tuple(1 if i in axes else s for i, s in enumerate(av.shape))
        rest = tuple(i for i in range(nd) if i not in axes)
        if len(axes) > 1 or nd == 0:
            a = shapes.transpose_p.bind(a, permutation=rest + axes) if nd else a
            a = shapes.reshape(a, tuple(av.shape[i] for i in rest) + (_size(av.shape, axes),))
            ax = len(rest)
        else:
            ax = axes[0]
    av = get_aval(a)
    n = av.shape[ax]
    dt = av.dtype
    # NaN anywhere along the axis makes the result NaN (as jnp.quantile)
    has_nan = red.reduce_or_p.bind(_isnan(a), axes=(ax,))
    a_sorted = sort_prims.sort_p.bind(a, dimension=ax, is_stable=True, num_keys=1)[0]
    qf = ew.convert(q, dt, get_aval(q).weak_type)
    pos = ew.mul_p.bind(qf, _scalar(n - 1, dt))
    lo = ew.floor_p.bind(pos)
    hi = ew.ceil_p.bind(pos)
    hi_w = ew.sub_p.bind(pos, lo)
    lo_w = ew.sub_p.bind(_scalar(1, dt), hi_w)
    lo = ew.clamp_p.bind(_scalar(0, dt), lo, _scalar(_max(n - 1, 0), dt))
    hi = ew.clamp_p.bind(_scalar(0, dt), hi, _scalar(_max(n - 1, 0), dt))
    red_shape = tuple(s for i, s in enumerate(av.shape) if i != ax)
    q_shape = get_aval(q).shape
    out_shape = q_shape + red_shape

    def expand(v):  # q-shaped -> out_shape
        return shapes.broadcast_in_dim_p.bind(v, shape=out_shape, broadcast_dimensions=tuple(
            range(len(q_shape))))

    lo_i = expand(ew.convert(lo, dtypes.default_int))
    hi_i = expand(ew.convert(hi, dtypes.default_int))
    lo_v = _take_at(a_sorted, lo_i, ax)
    hi_v = _take_at(a_sorted, hi_i, ax)
    if method == "linear":
        res = ew.add_p.bind(ew.mul_p.bind(lo_v, expand(lo_w)), ew.mul_p.bind(hi_v, expand(hi_w)))
    elif method == "lower":
        res = lo_v
    elif method == "higher":
        res = hi_v
    elif method == "nearest":
        res = ew.select_n_p.bind(ew.le_p.bind(expand(hi_w), _scalar(0.5, dt)), hi_v, lo_v)
    else:
        res = ew.mul_p.bind(ew.add_p.bind(lo_v, hi_v), _scalar(0.5, dt))
    nan_mask = shapes.broadcast_in_dim_p.bind(has_nan, shape=out_shape, broadcast_dimensions=tuple(
        range(len(q_shape), len(out_shape))))
    res = ew.select_n_p.bind(nan_mask, res, shapes.full(out_shape, np.nan, dt))
    if keepdims:
        res = shapes.reshape(res, q_shape + kshape)
    return res


def percentile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
               keepdims=False, *, interpolation=None):
    q = asarray_value(q)
    (q,) = promote_inexact(q)
    q = ew.div_p.bind(q, _scalar(100, get_aval(q).dtype))
    return quantile(a, q, axis=axis, method=method, keepdims=keepdims, interpolation=interpolation)


def median(a, axis=None, out=None, overwrite_input=False, keepdims=False):
    return quantile(a, 0.5, axis=axis, method="midpoint", keepdims=keepdims)


# --------------------------------------------------------------------------
# logsumexp (also tracegrad.scipy.special.logsumexp)


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False, where=None):
    from ..custom_derivatives import stop_gradient
    from .ufuncs import real
    a = asarray_value(a)
    if b is not None:
        a, b = promote_inexact(a, asarray_value(b))
        shape = np.broadcast_shapes(get_aval(a).shape, get_aval(b).shape)
        a, b = _bcast(a, shape), _bcast(b, shape)
        dt = get_aval(a).dtype
        a = ew.select_n_p.bind(ew.ne_p.bind(b, _scalar(0, dt)), shapes.full(shape, -np.inf, dt), a)
    else:
        (a,) = promote_inexact(a)
    av = get_aval(a)
    dt = av.dtype
    axes = canonical_axes(axis, av.ndim)
    re = real(a) if dtypes.is_complex(dt) else a
    amax = max(re, axis=axes, keepdims=keepdims, where=where, initial=-np.inf)
    rdt = get_aval(amax).dtype
    amax_shape = get_aval(amax).shape
    finite = ew.is_finite_p.bind(amax)
    zeros = shapes.full(amax_shape, 0, rdt) if amax_shape else _scalar(0, rdt)
    amax = stop_gradient(ew.select_n_p.bind(finite, zeros, amax))
    kshape = tuple(1 if i in axes else s for i, s in enumerate(av.shape))
    amax_k = amax if keepdims else shapes.reshape(amax, kshape)
    amax_k = _bcast(ew.convert(amax_k, dt), av.shape)
    e = ew.exp_p.bind(ew.sub_p.bind(a, amax_k))
    if b is not None:
        e = ew.mul_p.bind(e, b)
    s = sum(e, axis=axes, keepdims=keepdims, where=where)
    if b is None and not return_sign and not dtypes.is_complex(dt):
        # a sum of exponentials is >= 0: log|s| is log s, sign and abs are no-ops
        return ew.add_p.bind(ew.log_p.bind(s), ew.convert(amax, get_aval(s).dtype))
    sign = ew.sign_p.bind(s)
    if return_sign or not dtypes.is_complex(dt):
        s = ew.abs_p.bind(s) if not dtypes.is_complex(dt) else _complex_abs(s)
    out = ew.add_p.bind(ew.log_p.bind(s), ew.convert(amax, get_aval(s).dtype))
    if return_sign:
        return out, sign
    if b is not None and not dtypes.is_complex(get_aval(out).dtype):
        neg = ew.lt_p.bind(sign, _scalar(0, get_aval(sign).dtype))
        oshape = get_aval(out).shape
        out = ew.select_n_p.bind(neg, out, shapes.full(oshape, np.nan, get_aval(out).dtype)
                                 if oshape else _scalar(np.nan, get_aval(out).dtype))
    return out


def _complex_abs(s):
    from .ufuncs import absolute
    return ew.convert(absolute(s), get_aval(s).dtype)


# --------------------------------------------------------------------------
# methods on arrays and tracers


def _method_sort(self, axis=-1, kind=None, order=None, *, stable=True, descending=False):
    return sort(self, axis, kind, order, stable=stable, descending=descending)


def _method_argsort(self, axis=-1, kind=None, order=None, *, stable=True, descending=False):
    return argsort(self, axis, kind, order, stable=stable, descending=descending)


METHODS = {
    "sum": sum, "mean": mean, "prod": prod, "max": max, "min": min, "argmax": argmax,
    "argmin": argmin, "all": all, "any": any, "cumsum": cumsum, "cumprod": cumprod,
    "var": var, "std": std, "ptp": ptp, "sort": _method_sort, "argsort": _method_argsort,
}
