"""Reductions over axes (reduce_sum/max/min/prod/and/or, argmax/argmin) and
cumulative reductions along one axis (cumsum/cumprod/cummax/cummin)."""
from __future__ import annotations

import numpy as np
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo as hlo

from .. import core, dtypes
from ..core import Primitive, ShapedArray, get_aval
from ..interpreters import ad, lowering
from ..interpreters.ad import Zero
from . import elementwise as ew
from . import shapes


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
    if len(axes) == 1 and axes[0] == x.ndim - 1 and x.ndim > 1:
        n = x.shape[-1]
        if 2 <= n <= 7 and x.size >= 64 * n * (n - 1) and x.dtype in _COLUMN_SUM_DTYPES:
            return _sum_short_last_axis(x, n)
    # (np.sum's own call for an array, without its Python wrapper)
    return np.add.reduce(x, axis=axes, dtype=x.dtype)


# (float16 is summed in float32 by NumPy; complex pairs in another order)
_COLUMN_SUM_DTYPES = frozenset(np.dtype(t) for t in (
    np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
    np.uint8, np.uint16, np.uint32, np.uint64))


def _sum_short_last_axis(x, n):
    """Sum over a short last axis (xyz coordinates, pairs of terms) as n-1
    whole-column adds: np.add.reduce runs its inner loop once per row there,
    ~11 ns a row whatever n is (2520 rows of 2: 28 us, this: 1.4 us). From
    zero, left to right, as NumPy adds up to 7 real numbers: the same bits
    (a row of -0.0 sums to +0.0)."""
    out = np.add(x[..., 0], x.dtype.type(0))
    for i in range(1, n):
        np.add(out, x[..., i], out=out)
    return out


def _sum_transpose(ct, x, axes):
    if type(ct) is Zero:
        return [None]
    shape = x.aval.shape
    kept = tuple(i for i in range(len(shape)) if i not in axes)
    return [shapes.broadcast_in_dim_p.bind(ct, shape=shape, broadcast_dimensions=kept)]


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
_sum_vjp_general = ad.transpose_vjp(reduce_sum_p)


def _sum_vjp(needs, out, x, *, axes):
    """Tape rule of reduce_sum: for an eager cotangent (outside any trace)
    the transpose's broadcast_in_dim impl directly (weak as ct, as its bind
    gives), skipping the UndefinedPrimal and the bind."""
    def pullback(ct):
        c = shapes.eager_ct(ct)
        if c is not None:
            shape = get_aval(x).shape
            kept = tuple(i for i in range(len(shape)) if i not in axes)
            return [core.Array(shapes.broadcast_in_dim_p.impl(c, shape, kept), ct.weak)]
        return _sum_vjp_general(needs, out, x, axes=axes)(ct)
    return pullback


reduce_sum_p.vjp = _sum_vjp


# --------------------------------------------------------------------------
# Shared helpers


def _number_check(name, x, allow_bool=True, allow_complex=True):
    if x.dtype == dtypes.float0:
        raise TypeError(f"{name} does not accept float0 operands")
    if not allow_bool and x.dtype == dtypes.bool_:
        raise TypeError(f"{name} does not accept dtype bool")
    if not allow_complex and dtypes.is_complex(x.dtype):
        raise TypeError(f"{name} does not accept complex dtype {dtypes.short_name(x.dtype)}")


def _reducer_batch(prim):
    """Batching for reductions over `axes`: the batch axis is never reduced."""
    def rule(args, dims, axes, **params):
        (x,), (d,) = args, dims
        new_axes = shift_axes(axes, d)
        return prim.bind(x, axes=new_axes, **params), out_bdim(new_axes, d)
    return rule


def _keep_dims_shape(shape, axes):
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def _bcast_back(y, shape, axes):
    """A reduced value broadcast back to the operand's shape."""
    kept = tuple(i for i in range(len(shape)) if i not in axes)
    return shapes.broadcast_in_dim_p.bind(y, shape=tuple(shape), broadcast_dimensions=kept)


def _lower_reducer(kind):
    return lambda ctx, x, axes: [lowering.reduce(x, ctx.avals_in[0], ctx.avals_out[0], axes, kind)]


# --------------------------------------------------------------------------
# reduce_max / reduce_min: jvp splits the tangent equally among ties (JAX's
# convention): sum(t * at_max) / count(at_max).


def _identity(kind, dtype):
    return lowering.reduce_identity(kind, dtype)


def _chooser_impl(kind):
    f = np.max if kind == "max" else np.min

    def impl(x, axes):
        if not axes:
            return x
        # the identity makes empty reductions well defined (-inf / +inf ...)
        return np.asarray(f(x, axis=axes, initial=_identity(kind, x.dtype)), dtype=x.dtype)
    return impl


def _chooser_jvp(prim):
    def jvp(primals, tangents, axes):
        (x,), (t,) = primals, tangents
        out = prim.bind(x, axes=axes)
        if type(t) is Zero:
            return out, Zero.like(out)
        at, count = _chooser_mask(x, out, axes, get_aval(t).dtype)
        picked = reduce_sum_p.bind(ew.mul_p.bind(t, at), axes=axes)
        return out, ew.div_p.bind(picked, count)
    return jvp


def _chooser_mask(x, out, axes, dtype):
    """(1 where x attains the max/min, how many do) in `dtype`."""
    at = ew.convert(ew.eq_p.bind(x, _bcast_back(out, get_aval(x).shape, axes)), dtype)
    return at, reduce_sum_p.bind(at, axes=axes)


def _chooser_vjp(needs, out, x, axes):
    """The transpose of _chooser_jvp: ct / count, sent back to the ties. The
    mask is built only if a cotangent arrives (a max often feeds a
    stop_gradient, as in logsumexp)."""
    def pullback(ct):
        at, count = _chooser_mask(x, out, axes, get_aval(out).dtype)
        return [ew.mul_p.bind(_bcast_back(ew.div_p.bind(ct, count), get_aval(x).shape, axes), at)]
    return pullback


def _chooser_abstract(name):
    def rule(x, axes):
        _number_check(name, x, allow_complex=False)
        return reduce_aval(name, x, axes)
    return rule


reduce_max_p = Primitive("reduce_max", impl=_chooser_impl("max"),
                         abstract_eval=_chooser_abstract("reduce_max"),
                         lower=_lower_reducer("max"))
reduce_max_p.jvp, reduce_max_p.vjp = _chooser_jvp(reduce_max_p), _chooser_vjp
reduce_max_p.batch = _reducer_batch(reduce_max_p)

reduce_min_p = Primitive("reduce_min", impl=_chooser_impl("min"),
                         abstract_eval=_chooser_abstract("reduce_min"),
                         lower=_lower_reducer("min"))
reduce_min_p.jvp, reduce_min_p.vjp = _chooser_jvp(reduce_min_p), _chooser_vjp
reduce_min_p.batch = _reducer_batch(reduce_min_p)


# --------------------------------------------------------------------------
# reduce_prod: the jvp differentiates a pairwise product tree (as JAX does),
# so it is exact when some factors are zero, to every order.


def _prod_impl(x, axes):
    if not axes:
        return x
    return np.asarray(np.prod(x, axis=axes, dtype=x.dtype), dtype=x.dtype)


def _prod_abstract(x, axes):
    _number_check("reduce_prod", x, allow_bool=False)
    return reduce_aval("reduce_prod", x, axes)


def _prod_tree(x):
    """Product over axis 0 by multiplying halves (odd halves padded with 1)."""
    n = get_aval(x).shape[0]
    nd = get_aval(x).ndim
    while n > 1:
        n1 = (n + 1) // 2
        a = shapes.slice_in_dim(x, 0, n1, 1, 0)
        b = shapes.slice_in_dim(x, n1, n, 1, 0)
        if n - n1 != n1:
            b = shapes.pad(b, 1, ((0, 1, 0),) + ((0, 0, 0),) * (nd - 1))
        x = ew.mul_p.bind(a, b)
        n = n1
    return shapes.reshape(x, get_aval(x).shape[1:])


def _prod_jvp(primals, tangents, axes):
    (x,), (t,) = primals, tangents
    out = reduce_prod_p.bind(x, axes=axes)
    if type(t) is Zero or not axes:
        return out, t
    xa = get_aval(x)
    rest = tuple(i for i in range(xa.ndim) if i not in axes)
    n = int(np.prod([xa.shape[i] for i in axes], dtype=np.int64))
    if n == 0:
        return out, ad.zeros(get_aval(out).tangent_aval())
    out_shape = get_aval(out).shape

    def flat(v):  # reduced axes first, flattened into one
        v = shapes.transpose_p.bind(v, permutation=tuple(axes) + rest)
        return shapes.reshape(v, (n,) + out_shape)

    _, (tout,) = ad.jvp_flat(lambda v: [_prod_tree(v)], [flat(x)], [flat(t)])
    return out, tout


reduce_prod_p = Primitive("reduce_prod", impl=_prod_impl, abstract_eval=_prod_abstract,
                          jvp=_prod_jvp, lower=_lower_reducer("mul"))
reduce_prod_p.batch = _reducer_batch(reduce_prod_p)


# --------------------------------------------------------------------------
# reduce_and / reduce_or on booleans


def _logical_abstract(name):
    def rule(x, axes):
        if x.dtype != dtypes.bool_:
            raise TypeError(f"{name} requires a bool operand, got {dtypes.short_name(x.dtype)}")
        return reduce_aval(name, x, axes)
    return rule


reduce_and_p = Primitive("reduce_and", impl=lambda x, axes: np.asarray(np.all(x, axis=axes)) if axes else x,
                         abstract_eval=_logical_abstract("reduce_and"), lower=_lower_reducer("and"))
reduce_and_p.jvp = ad.zero_jvp(reduce_and_p)
reduce_and_p.batch = _reducer_batch(reduce_and_p)
reduce_or_p = Primitive("reduce_or", impl=lambda x, axes: np.asarray(np.any(x, axis=axes)) if axes else x,
                        abstract_eval=_logical_abstract("reduce_or"), lower=_lower_reducer("or"))
reduce_or_p.jvp = ad.zero_jvp(reduce_or_p)
reduce_or_p.batch = _reducer_batch(reduce_or_p)


# --------------------------------------------------------------------------
# argmax / argmin(operand, axes=(axis,), index_dtype): first occurrence; a
# NaN counts as the extreme value (as NumPy and JAX).


def _arg_impl(f):
    def impl(x, axes, index_dtype):
        return np.asarray(f(x, axis=axes[0]), dtype=index_dtype)
    return impl


def _arg_abstract(name):
    def rule(x, axes, index_dtype):
        _number_check(name, x, allow_complex=False)
        if len(axes) != 1:
            raise TypeError(f"{name} takes exactly one axis, got axes={axes}")
        if not 0 <= axes[0] < x.ndim:
            raise TypeError(f"{name}: invalid axis {axes[0]} for operand {x.str_short()}")
        if x.shape[axes[0]] < 1:
            raise ValueError(f"{name} requires a non-empty reduced dimension, got "
                             f"operand {x.str_short()} with axis {axes[0]}")
        if not dtypes.is_int(np.dtype(index_dtype)):
            raise TypeError(f"{name} index_dtype must be an integer type, got {index_dtype}")
        return ShapedArray(tuple(s for i, s in enumerate(x.shape) if i != axes[0]),
                           np.dtype(index_dtype), False)
    return rule


def _arg_lower(kind):
    direction = "GT" if kind == "max" else "LT"

    def rule(ctx, x, axes, index_dtype):
        xa, oa = ctx.avals_in[0], ctx.avals_out[0]
        idx_aval = lowering._Aval(xa.shape, index_dtype)
        iota = hlo.IotaOp(lowering.ir_type(idx_aval), axes[0]).result
        inits = [lowering.constant(_identity(kind, xa.dtype)),
                 lowering.constant(np.zeros((), index_dtype))]
        op = hlo.ReduceOp([lowering.ir_type(oa.update(dtype=xa.dtype)), lowering.ir_type(oa)],
                          [x, iota], inits, list(axes))
        sx = lowering._Aval((), xa.dtype)
        si = lowering._Aval((), index_dtype)
        block = op.body.blocks.append(lowering.ir_type(sx), lowering.ir_type(si),
                                      lowering.ir_type(sx), lowering.ir_type(si))
        with ir.InsertionPoint(block):
            a, ia, b, ib = block.arguments
            pick_a = _pick_first(a, ia, b, ib, direction, sx, si)
            hlo.ReturnOp([hlo.SelectOp(pick_a, a, b).result, hlo.SelectOp(pick_a, ia, ib).result])
        return [op.results[1]]
    return rule


def _pick_first(a, ia, b, ib, direction, sx, si):
    """Reducer predicate "(a, ia) wins over (b, ib)": the strictly better
    value, NaN beating numbers, and on equal values the lower index."""
    cmp, OR, AND = lowering.compare, hlo.OrOp, hlo.AndOp
    earlier = cmp(ia, ib, "LT", si)
    better = cmp(a, b, direction, sx)
    same = cmp(a, b, "EQ", sx)
    if dtypes.is_float(np.dtype(sx.dtype)):
        a_nan, b_nan = cmp(a, a, "NE", sx), cmp(b, b, "NE", sx)
        nan_wins = AND(a_nan, hlo.NotOp(b_nan).result).result
        same = OR(same, AND(a_nan, b_nan).result).result
        better = OR(better, nan_wins).result
    return OR(better, AND(same, earlier).result).result


argmax_p = Primitive("argmax", impl=_arg_impl(np.argmax), abstract_eval=_arg_abstract("argmax"),
                     lower=_arg_lower("max"), keeps_weak=False)
argmax_p.jvp = ad.zero_jvp(argmax_p)
argmax_p.batch = _reducer_batch(argmax_p)
argmin_p = Primitive("argmin", impl=_arg_impl(np.argmin), abstract_eval=_arg_abstract("argmin"),
                     lower=_arg_lower("min"), keeps_weak=False)
argmin_p.jvp = ad.zero_jvp(argmin_p)
argmin_p.batch = _reducer_batch(argmin_p)


# --------------------------------------------------------------------------
# Cumulative reductions along `axis` (reverse=True scans from the end).
# Lowered as XLA does on CPU: a reduce_window whose window spans the whole
# axis, padded by n-1 in front. cumprod/cummax/cummin differentiate a
# parallel prefix scan (exact with zeros and ties split like lax.max).


def _cum_impl(kind):
    def impl(x, axis, reverse):
        if reverse:
            x = np.flip(x, axis)
        if kind == "add":
            y = np.cumsum(x, axis=axis, dtype=x.dtype)
        elif kind == "mul":
            y = np.cumprod(x, axis=axis, dtype=x.dtype)
        elif kind == "max":
            y = np.maximum.accumulate(x, axis=axis)
        else:
            y = np.minimum.accumulate(x, axis=axis)
        return np.asarray(np.flip(y, axis) if reverse else y, dtype=x.dtype)
    return impl


def _cum_abstract(name):
    def rule(x, axis, reverse):
        _number_check(name, x, allow_bool=False, allow_complex=name in ("cumsum", "cumprod"))
        if not 0 <= axis < x.ndim:
            raise TypeError(f"{name}: axis {axis} is out of range for operand {x.str_short()}")
        return x
    return rule


def _cum_batch(prim):
    def rule(args, dims, axis, reverse):
        (x,), (d,) = args, dims
        return prim.bind(x, axis=axis + 1 if axis >= d else axis, reverse=reverse), d
    return rule


def _cum_lower(kind):
    def rule(ctx, x, axis, reverse):
        xa = ctx.avals_in[0]
        n = xa.shape[axis]
        if n == 0:
            return [x]
        nd = xa.ndim
        window = [1] * nd
        window[axis] = n
        pad = np.zeros((nd, 2), np.int64)
        pad[axis] = (0, n - 1) if reverse else (n - 1, 0)
        t = lowering.ir_type(xa)
        op = hlo.ReduceWindowOp([t], [x], [lowering.constant(_identity(kind, xa.dtype))], window,
                                window_strides=[1] * nd,
                                padding=ir.DenseIntElementsAttr.get(pad, shape=[nd, 2]))
        lowering.make_reducer_region(kind, xa.dtype, op.body)
        return [op.result]
    return rule


def _assoc_scan(op, x, axis):
    """Inclusive prefix scan of x along `axis` with an associative `op`
    (the odd/even recursion: O(n) work, O(log n) depth)."""
    n = get_aval(x).shape[axis]
    if n < 2:
        return x
    sl = shapes.slice_in_dim
    pairs = op(sl(x, 0, n - 1, 2, axis), sl(x, 1, n, 2, axis))   # x0*x1, x2*x3, ...
    odd = _assoc_scan(op, pairs, axis)                            # prefixes ending at 1, 3, 5, ...
    tail = sl(x, 2, n, 2, axis)                                   # x2, x4, ...
    m = get_aval(tail).shape[axis]
    even = op(sl(odd, 0, m, 1, axis), tail)                       # prefixes ending at 2, 4, ...
    even = shapes.concatenate([sl(x, 0, 1, 1, axis), even], axis)
    return _interleave(even, odd, axis)


def _interleave(a, b, axis):
    """out[2k] = a[k], out[2k+1] = b[k] along axis (len(a) - len(b) in {0, 1})."""
    sa, sb = get_aval(a).shape, get_aval(b).shape
    na, nb = sa[axis], sb[axis]
    if na != nb:  # give b a dummy last element, cut it off after merging
        cfg = [(0, 0, 0)] * len(sb)
        cfg[axis] = (0, 1, 0)
        b = shapes.pad(b, 0, cfg)
    pair_shape = sa[:axis + 1] + (1,) + sa[axis + 1:]
    both = shapes.concatenate([shapes.reshape(a, pair_shape), shapes.reshape(b, pair_shape)], axis + 1)
    merged = shapes.reshape(both, sa[:axis] + (2 * na,) + sa[axis + 1:])
    return shapes.slice_in_dim(merged, 0, na + nb, 1, axis) if na != nb else merged


def _cum_scan_jvp(prim, op):
    def jvp(primals, tangents, axis, reverse):
        (x,), (t,) = primals, tangents
        out = prim.bind(x, axis=axis, reverse=reverse)
        if type(t) is Zero:
            return out, Zero.like(out)

        def scan(v):
            if reverse:
                return [shapes.rev(_assoc_scan(op, shapes.rev(v, (axis,)), axis), (axis,))]
            return [_assoc_scan(op, v, axis)]
        _, (tout,) = ad.jvp_flat(scan, [x], [t])
        return out, tout
    return jvp


def _cumsum_transpose(ct, x, axis, reverse):
    if type(ct) is Zero:
        return [None]
    return [cumsum_p.bind(ct, axis=axis, reverse=not reverse)]


cumsum_p = Primitive("cumsum", impl=_cum_impl("add"), abstract_eval=_cum_abstract("cumsum"),
                     transpose=_cumsum_transpose, lower=_cum_lower("add"), linear=True)
cumsum_p.jvp = ad.linear_jvp(cumsum_p)
cumsum_p.vjp = ad.transpose_vjp(cumsum_p)
cumsum_p.batch = _cum_batch(cumsum_p)

cumprod_p = Primitive("cumprod", impl=_cum_impl("mul"), abstract_eval=_cum_abstract("cumprod"),
                      lower=_cum_lower("mul"))
cumprod_p.jvp = _cum_scan_jvp(cumprod_p, ew.mul)
cumprod_p.batch = _cum_batch(cumprod_p)

cummax_p = Primitive("cummax", impl=_cum_impl("max"), abstract_eval=_cum_abstract("cummax"),
                     lower=_cum_lower("max"))
cummax_p.jvp = _cum_scan_jvp(cummax_p, lambda a, b: ew.max_p.bind(a, b))
cummax_p.batch = _cum_batch(cummax_p)

cummin_p = Primitive("cummin", impl=_cum_impl("min"), abstract_eval=_cum_abstract("cummin"),
                     lower=_cum_lower("min"))
cummin_p.jvp = _cum_scan_jvp(cummin_p, lambda a, b: ew.min_p.bind(a, b))
cummin_p.batch = _cum_batch(cummin_p)
