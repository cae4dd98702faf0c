"""Windowed reductions (pooling) and the two primitives that differentiate
max/min pooling.

reduce_window(x, computation, window_dimensions, window_strides, padding,
              base_dilation, window_dilation)
    computation 'add' | 'max' | 'min'. XLA's semantics: the operand is first
    dilated (base_dilation - 1 holes between elements), then padded
    (padding = ((lo, hi), ...); negative values crop), both with the
    reduction's identity; windows of `window_dimensions` elements spaced by
    `window_dilation` are taken every `window_strides`.
    'add' is linear; its transpose is another window sum over the cotangent,
    dilated by the strides and padded (JAX's rule). 'max'/'min' have jvp
    select_and_gather_add.

select_and_gather_add(t, x, select, ...) -> per window, the element of t at
    the position where x is largest (select='max') or smallest ('min'); the
    first such position in row-major window order wins; NaN counts as the
    extreme. Linear in t; transpose: select_and_scatter_add.
select_and_scatter_add(s, x, select, ...) -> x-shaped: each window's source
    value s added at that same selected position. Linear in s; transpose:
    select_and_gather_add. So max pooling is differentiable to any order.

Both select primitives pad the operand explicitly (with -inf / +inf for
max / min) and choose by (value, position in the padded array), so the NumPy
implementation and the lowering select exactly the same elements.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo as hlo

from .. import dtypes
from ..core import Primitive, ShapedArray, get_aval
from ..interpreters import batching, lowering
from ..interpreters.ad import Zero, is_undefined

_KINDS = ("add", "max", "min")


# --------------------------------------------------------------------------
# Shapes and NumPy helpers


def _dilate(n, d):
    return 0 if n == 0 else (n - 1) * d + 1


def window_shape(shape, window_dimensions, window_strides, padding, base_dilation,
                 window_dilation):
    out = []
    for n, w, s, (lo, hi), b, wd in zip(shape, window_dimensions, window_strides, padding,
                                        base_dilation, window_dilation):
        padded = _dilate(n, b) + lo + hi
        if padded < 0:
            raise TypeError(f"padding {padding} crops more than the (dilated) operand of "
                            f"shape {tuple(shape)}")
        span = _dilate(w, wd)
        out.append(0 if padded < span else (padded - span) // s + 1)
    return tuple(out)


def _check_window(name, x, window_dimensions, window_strides, padding, base_dilation,
                  window_dilation):
    nd = x.ndim
    for what, v in (("window_dimensions", window_dimensions), ("window_strides", window_strides),
                    ("padding", padding), ("base_dilation", base_dilation),
                    ("window_dilation", window_dilation)):
        if len(v) != nd:
            raise TypeError(f"{name}: {what} {v} must have one entry per axis of operand "
                            f"{x.str_short()}")
    for what, v in (("window_dimensions", window_dimensions), ("window_strides", window_strides),
                    ("base_dilation", base_dilation), ("window_dilation", window_dilation)):
        if any(int(e) < 1 for e in v):
            raise TypeError(f"{name}: {what} must be positive, got {v}")
    if any(len(p) != 2 for p in padding):
        raise TypeError(f"{name}: padding must be (lo, hi) pairs, got {padding}")
    return window_shape(x.shape, window_dimensions, window_strides, padding, base_dilation,
                        window_dilation)


def _np_pad(x, padding, base_dilation, fill):
    """Dilate then pad (negative pads crop), filling with `fill`."""
    big, place = [], []
    for n, (lo, hi), b in zip(x.shape, padding, base_dilation):
        inner = _dilate(n, b)
        big.append(max(lo, 0) + inner + max(hi, 0))
        place.append(slice(max(lo, 0), max(lo, 0) + inner, b))
    out = np.full(big, fill, dtype=x.dtype)
    out[tuple(place)] = x
    crop = tuple(slice(max(-lo, 0), m - max(-hi, 0)) for m, (lo, hi) in zip(big, padding))
    return out[crop]


def _np_unpad(y, shape, padding, base_dilation):
    """Inverse of _np_pad's placement: the operand-shaped values at the
    positions where operand elements went (zero where they were cropped)."""
    big = [max(-lo, 0) + m + max(-hi, 0) for m, (lo, hi) in zip(y.shape, padding)]
    full = np.zeros(big, y.dtype)
    full[tuple(slice(max(-lo, 0), max(-lo, 0) + m) for m, (lo, _) in zip(y.shape, padding))] = y
    return full[tuple(slice(max(lo, 0), max(lo, 0) + _dilate(n, b), b)
                      for n, (lo, _), b in zip(shape, padding, base_dilation))]


def _np_windows(xp, out_shape, window_dimensions, window_strides, window_dilation):
    """Read-only view of shape out_shape + window_dimensions."""
    st = xp.strides
    return as_strided(xp, tuple(out_shape) + tuple(window_dimensions),
                      tuple(a * s for a, s in zip(st, window_strides))
                      + tuple(a * d for a, d in zip(st, window_dilation)), writeable=False)


def _fill(kind, dtype):
    return lowering.reduce_identity(kind, dtype)


# --------------------------------------------------------------------------
# reduce_window


def _rw_impl(x, computation, window_dimensions, window_strides, padding, base_dilation,
             window_dilation):
    out_shape = window_shape(x.shape, window_dimensions, window_strides, padding,
                             base_dilation, window_dilation)
    xp = np.ascontiguousarray(_np_pad(x, padding, base_dilation, _fill(computation, x.dtype)))
    if 0 in out_shape or x.ndim == 0:
        return np.full(out_shape, _fill(computation, x.dtype), x.dtype) if x.ndim else x
    w = _np_windows(xp, out_shape, window_dimensions, window_strides, window_dilation)
    axes = tuple(range(x.ndim, 2 * x.ndim))
    if computation == "add":
        return np.asarray(np.sum(w, axis=axes, dtype=x.dtype), x.dtype)
    f = np.max if computation == "max" else np.min
    return np.asarray(f(w, axis=axes), x.dtype)


def _rw_abstract(x, computation, window_dimensions, window_strides, padding, base_dilation,
                 window_dilation):
    if computation not in _KINDS:
        raise TypeError(f"reduce_window computation must be one of {_KINDS}, got {computation!r}")
    if dtypes.is_complex(x.dtype) and computation != "add":
        raise TypeError(f"reduce_window {computation} does not accept complex operands")
    shape = _check_window("reduce_window", x, window_dimensions, window_strides, padding,
                          base_dilation, window_dilation)
    return ShapedArray(shape, x.dtype, x.weak_type)


def _rw_jvp(primals, tangents, computation, **params):
    (x,), (t,) = primals, tangents
    out = reduce_window_p.bind(x, computation=computation, **params)
    if type(t) is Zero:
        return out, Zero.like(out)
    if computation == "add":
        return out, reduce_window_p.bind(t, computation="add", **params)
    return out, select_and_gather_add_p.bind(t, x, select=computation, **params)


def _rw_transpose(ct, x, computation, window_dimensions, window_strides, padding,
                  base_dilation, window_dilation):
    if computation != "add":
        raise TypeError(f"reduce_window {computation} is not linear")
    if type(ct) is Zero:
        return [None]
    in_shape = x.aval.shape
    out_shape = get_aval(ct).shape
    pads = []
    for n, w, s, (lo, _), b, wd, m in zip(in_shape, window_dimensions, window_strides, padding,
                                          base_dilation, window_dilation, out_shape):
        # each output element spreads back over the inputs of its window:
        # window-sum the stride-dilated cotangent, padded so that every
        # (dilated) input position sees exactly the windows that covered it
        span = _dilate(w, wd)
        before = span - lo - 1
        after = _dilate(n, b) + span - 1 - _dilate(m, s) - before
        pads.append((before, after))
    ct_x = reduce_window_p.bind(ct, computation="add", window_dimensions=window_dimensions,
                                window_strides=base_dilation, padding=tuple(pads),
                                base_dilation=window_strides, window_dilation=window_dilation)
    return [ct_x]


def _with_batch_window(params):
    return dict(params, window_dimensions=(1,) + tuple(params["window_dimensions"]),
                window_strides=(1,) + tuple(params["window_strides"]),
                padding=((0, 0),) + tuple(params["padding"]),
                base_dilation=(1,) + tuple(params["base_dilation"]),
                window_dilation=(1,) + tuple(params["window_dilation"]))


def _rw_batch(args, dims, **params):
    x = batching.moveaxis(args[0], dims[0], 0)
    return reduce_window_p.bind(x, **_with_batch_window(params)), 0


def _padding_attr(padding):
    nd = len(padding)
    return ir.DenseIntElementsAttr.get(np.asarray(padding, np.int64).reshape(nd, 2), shape=[nd, 2])


def _hlo_pad(x, aval, fill, padding, base_dilation):
    """Dilate and pad (negative pads crop) with a stablehlo.pad; returns the
    value and its aval."""
    shape = tuple(_dilate(n, b) + lo + hi for n, (lo, hi), b in zip(aval.shape, padding, base_dilation))
    if all(lo == 0 and hi == 0 for lo, hi in padding) and all(b == 1 for b in base_dilation):
        return x, aval
    fill_v = lowering.constant(np.asarray(fill, aval.dtype))
    out = hlo.PadOp(x, fill_v, [lo for lo, _ in padding], [hi for _, hi in padding],
                    [b - 1 for b in base_dilation]).result
    return out, lowering._Aval(shape, aval.dtype)


def _rw_lower(ctx, x, computation, window_dimensions, window_strides, padding, base_dilation,
              window_dilation):
    xa, oa = ctx.avals_in[0], ctx.avals_out[0]
    if xa.ndim == 0:
        return [x]
    init = lowering.constant(_fill(computation, xa.dtype))
    if any(lo < 0 or hi < 0 for lo, hi in padding):
        # XLA wants non-negative window padding: dilate, pad and crop first
        x, _ = _hlo_pad(x, xa, _fill(computation, xa.dtype), padding, base_dilation)
        padding = ((0, 0),) * xa.ndim
        base_dilation = (1,) * xa.ndim
    op = hlo.ReduceWindowOp([lowering.ir_type(oa)], [x], [init], list(window_dimensions),
                            window_strides=list(window_strides), base_dilations=list(base_dilation),
                            window_dilations=list(window_dilation), padding=_padding_attr(padding))
    lowering.make_reducer_region(computation, xa.dtype, op.body)
    return [op.result]


reduce_window_p = Primitive("reduce_window", impl=_rw_impl, abstract_eval=_rw_abstract,
                            jvp=_rw_jvp, transpose=_rw_transpose, batch=_rw_batch,
                            lower=_rw_lower, linear=True,
                            not_linear_reason="only computation='add' is linear")


# --------------------------------------------------------------------------
# Selection shared by select_and_gather_add / select_and_scatter_add


def _np_select(x, select, window_dimensions, window_strides, padding, base_dilation,
               window_dilation):
    """Flat indices (into the padded operand) of the selected element of
    each window, and the padded shape."""
    out_shape = window_shape(x.shape, window_dimensions, window_strides, padding,
                             base_dilation, window_dilation)
    xp = np.ascontiguousarray(_np_pad(x, padding, base_dilation, _fill(select, x.dtype)))
    k = int(np.prod(window_dimensions, dtype=np.int64))
    if 0 in out_shape:
        return np.zeros(out_shape, np.int64), xp.shape
    w = _np_windows(xp, out_shape, window_dimensions, window_strides, window_dilation)
    w = w.reshape(tuple(out_shape) + (k,))
    # argmax/argmin: first occurrence, and a NaN is taken as the extreme
    pick = np.argmax(w, axis=-1) if select == "max" else np.argmin(w, axis=-1)
    idx = np.arange(xp.size, dtype=np.int64).reshape(xp.shape)
    iw = _np_windows(idx, out_shape, window_dimensions, window_strides, window_dilation)
    iw = iw.reshape(tuple(out_shape) + (k,))
    return np.take_along_axis(iw, pick[..., None], axis=-1)[..., 0], xp.shape


def _sg_impl(t, x, select, window_dimensions, window_strides, padding, base_dilation,
             window_dilation):
    flat, _ = _np_select(x, select, window_dimensions, window_strides, padding, base_dilation,
                         window_dilation)
    tp = _np_pad(t, padding, base_dilation, np.zeros((), t.dtype))
    return np.ascontiguousarray(tp).reshape(-1)[flat] if flat.size else np.zeros(flat.shape, t.dtype)


def _ss_impl(s, x, select, window_dimensions, window_strides, padding, base_dilation,
             window_dilation):
    flat, pshape = _np_select(x, select, window_dimensions, window_strides, padding,
                              base_dilation, window_dilation)
    acc = np.zeros(int(np.prod(pshape, dtype=np.int64)), s.dtype)
    np.add.at(acc, flat.reshape(-1), s.reshape(-1))
    return _np_unpad(acc.reshape(pshape), x.shape, padding, base_dilation)


def _select_check(name, a, x, select):
    if select not in ("max", "min"):
        raise TypeError(f"{name} select must be 'max' or 'min', got {select!r}")
    if dtypes.is_complex(x.dtype):
        raise TypeError(f"{name} does not accept complex operands")
    if not dtypes.is_float(a.dtype):
        raise TypeError(f"{name} needs a floating-point tangent/source, got "
                        f"{dtypes.short_name(a.dtype)}")


def _sg_abstract(t, x, select, **params):
    _select_check("select_and_gather_add", t, x, select)
    if t.shape != x.shape:
        raise TypeError(f"select_and_gather_add tangent and operand shapes must match, got "
                        f"{t.str_short()} and {x.str_short()}")
    shape = _check_window("select_and_gather_add", x, **params)
    return ShapedArray(shape, t.dtype, t.weak_type)


def _ss_abstract(s, x, select, **params):
    _select_check("select_and_scatter_add", s, x, select)
    shape = _check_window("select_and_scatter_add", x, **params)
    if s.shape != shape:
        raise TypeError(f"select_and_scatter_add source shape {s.shape} must be the window "
                        f"output shape {shape} of operand {x.str_short()}")
    return ShapedArray(x.shape, s.dtype, s.weak_type)


def _linear_in_first(prim):
    """jvp of a primitive linear in its first operand, piecewise constant in
    the second (the selection does not move under small perturbations)."""
    def jvp(primals, tangents, **params):
        (a, x), (ta, _) = primals, tangents
        out = prim.bind(a, x, **params)
        if type(ta) is Zero:
            return out, Zero.like(out)
        return out, prim.bind(ta, x, **params)
    return jvp


def _sg_transpose(ct, t, x, **params):
    if is_undefined(x):
        raise TypeError("select_and_gather_add is not linear in its operand")
    if type(ct) is Zero:
        return [None, None]
    return [select_and_scatter_add_p.bind(ct, x, **params), None]


def _ss_transpose(ct, s, x, **params):
    if is_undefined(x):
        raise TypeError("select_and_scatter_add is not linear in its operand")
    if type(ct) is Zero:
        return [None, None]
    return [select_and_gather_add_p.bind(ct, x, **params), None]


def _select_batch(prim):
    def rule(args, dims, **params):
        (a, x), _ = batching.move_all_to_front(args, dims)
        return prim.bind(a, x, **_with_batch_window(params)), 0
    return rule


# ---- lowering: reduce_window over (value, padded position[, tangent])


def _lower_select(xa, x, select, window_dimensions, window_strides, padding, base_dilation,
                  window_dilation, out_shape, extra=None):
    """Returns (flat padded index of each window's pick, padded shape[, the
    window's pick of `extra` = (value, aval)])."""
    fill = _fill(select, xa.dtype)
    xp, pa = _hlo_pad(x, xa, fill, padding, base_dilation)
    size = int(np.prod(pa.shape, dtype=np.int64))
    idx_flat = lowering._Aval((size,), np.int64)
    idx = hlo.IotaOp(lowering.ir_type(idx_flat), 0).result
    idx = hlo.ReshapeOp(lowering.ir_type(lowering._Aval(pa.shape, np.int64)), idx).result
    ops, inits = [xp, idx], [lowering.constant(fill), lowering.constant(np.iinfo(np.int64).max)]
    scal = [lowering._Aval((), xa.dtype), lowering._Aval((), np.int64)]
    outs = [lowering._Aval(out_shape, xa.dtype), lowering._Aval(out_shape, np.int64)]
    if extra is not None:
        ev, ea = extra
        ep, _ = _hlo_pad(ev, ea, np.zeros((), ea.dtype), padding, base_dilation)
        ops.append(ep)
        inits.append(lowering.constant(np.zeros((), ea.dtype)))
        scal.append(lowering._Aval((), ea.dtype))
        outs.append(lowering._Aval(out_shape, ea.dtype))
    nd = len(out_shape)
    op = hlo.ReduceWindowOp([lowering.ir_type(o) for o in outs], ops, inits,
                            list(window_dimensions), window_strides=list(window_strides),
                            base_dilations=[1] * nd, window_dilations=list(window_dilation),
                            padding=_padding_attr(((0, 0),) * nd))
    types = [lowering.ir_type(s) for s in scal]
    block = op.body.blocks.append(*(types + types))
    from .reductions import _pick_first
    with ir.InsertionPoint(block):
        n = len(types)
        lhs, rhs = list(block.arguments[:n]), list(block.arguments[n:])
        pick = _pick_first(lhs[0], lhs[1], rhs[0], rhs[1], "GT" if select == "max" else "LT",
                           scal[0], scal[1])
        hlo.ReturnOp([hlo.SelectOp(pick, a, b).result for a, b in zip(lhs, rhs)])
    return list(op.results), pa


def _sg_lower(ctx, t, x, select, **params):
    ta, xa = ctx.avals_in
    oa = ctx.avals_out[0]
    if xa.ndim == 0:
        return [t]
    if 0 in oa.shape:
        return [lowering.constant(np.zeros((), oa.dtype), oa)]
    results, _ = _lower_select(xa, x, select, out_shape=oa.shape, extra=(t, ta), **params)
    return [results[2]]


def _ss_lower(ctx, s, x, select, window_dimensions, window_strides, padding, base_dilation,
              window_dilation):
    sa, xa = ctx.avals_in
    oa = ctx.avals_out[0]
    if xa.ndim == 0:
        return [s]
    if 0 in sa.shape or 0 in xa.shape:
        return [lowering.constant(np.zeros((), oa.dtype), oa)]
    (_, idx), pa = _lower_select(xa, x, select, window_dimensions, window_strides, padding,
                                 base_dilation, window_dilation, out_shape=sa.shape)
    n = int(np.prod(sa.shape, dtype=np.int64))
    size = int(np.prod(pa.shape, dtype=np.int64))
    idx = hlo.ReshapeOp(lowering.ir_type(lowering._Aval((n, 1), np.int64)), idx).result
    upd = hlo.ReshapeOp(lowering.ir_type(lowering._Aval((n,), sa.dtype)), s).result
    flat_aval = lowering._Aval((size,), sa.dtype)
    zeros = lowering.constant(np.zeros((), sa.dtype), flat_aval)
    dnums = hlo.ScatterDimensionNumbers.get(
        update_window_dims=[], inserted_window_dims=[0], input_batching_dims=[],
        scatter_indices_batching_dims=[], scattered_dims_to_operand_dims=[0], index_vector_dim=1)
    sc = hlo.ScatterOp([lowering.ir_type(flat_aval)], [zeros], idx, [upd], dnums)
    lowering.make_reducer_region("add", sa.dtype, sc.update_computation)
    acc = hlo.ReshapeOp(lowering.ir_type(lowering._Aval(pa.shape, sa.dtype)), sc.results[0]).result
    # back to operand positions: re-add what padding cropped, then stride
    if any(lo < 0 or hi < 0 for lo, hi in padding):
        zero = lowering.constant(np.zeros((), sa.dtype))
        acc = hlo.PadOp(acc, zero, [max(-lo, 0) for lo, _ in padding],
                        [max(-hi, 0) for _, hi in padding], [0] * len(padding)).result
    start = [max(lo, 0) for lo, _ in padding]
    limit = [a + _dilate(m, b) for a, m, b in zip(start, xa.shape, base_dilation)]
    return [hlo.SliceOp(acc, start, limit, list(base_dilation)).result]


select_and_gather_add_p = Primitive(
    "select_and_gather_add", impl=_sg_impl, abstract_eval=_sg_abstract,
    transpose=_sg_transpose, lower=_sg_lower, linear=True)
select_and_gather_add_p.jvp = _linear_in_first(select_and_gather_add_p)
select_and_gather_add_p.batch = _select_batch(select_and_gather_add_p)

select_and_scatter_add_p = Primitive(
    "select_and_scatter_add", impl=_ss_impl, abstract_eval=_ss_abstract,
    transpose=_ss_transpose, lower=_ss_lower, linear=True)
select_and_scatter_add_p.jvp = _linear_in_first(select_and_scatter_add_p)
select_and_scatter_add_p.batch = _select_batch(select_and_scatter_add_p)


# --------------------------------------------------------------------------
# The function others wrap (pooling layers, tnp helpers)


def padtype_to_pads(in_shape, window_shape_, strides, padding):
    """'VALID' | 'SAME' | 'SAME_LOWER' | explicit pairs -> ((lo, hi), ...)."""
    if isinstance(padding, str):
        p = padding.upper()
        if p == "VALID":
            return ((0, 0),) * len(in_shape)
        if p in ("SAME", "SAME_LOWER"):
            pads = []
            for n, w, s in zip(in_shape, window_shape_, strides):
                out = -(-n // s)
                total = max(0, (out - 1) * s + w - n)
                lo = total // 2 if p == "SAME" else total - total // 2
                pads.append((lo, total - lo))
            return tuple(pads)
        raise ValueError(f"unknown padding {padding!r}: use 'VALID', 'SAME', 'SAME_LOWER' "
                         f"or (lo, hi) pairs")
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def reduce_window(operand, computation, window_dimensions, window_strides=None, padding="VALID",
                  base_dilation=None, window_dilation=None):
    """Reduce each window of `operand` with computation 'add' (or 'sum'),
    'max' or 'min' (lax.reduce_window for the standard monoids)."""
    computation = {"sum": "add"}.get(computation, computation)
    nd = get_aval(operand).ndim
    wd = tuple(int(w) for w in window_dimensions)
    ws = (1,) * nd if window_strides is None else tuple(int(s) for s in window_strides)
    bd = (1,) * nd if base_dilation is None else tuple(int(b) for b in base_dilation)
    wdl = (1,) * nd if window_dilation is None else tuple(int(d) for d in window_dilation)
    if isinstance(padding, str):
        # as lax.reduce_window: the operand's own shape, the dilated window
        win_dil = tuple(_dilate(w, d) for w, d in zip(wd, wdl))
        pads = padtype_to_pads(get_aval(operand).shape, win_dil, ws, padding)
    else:
        pads = padtype_to_pads(None, None, None, padding)
    return reduce_window_p.bind(operand, computation=computation, window_dimensions=wd,
                                window_strides=ws, padding=pads, base_dilation=bd,
                                window_dilation=wdl)
