"""Shape primitives: broadcast_in_dim, reshape, transpose, squeeze,
slice, pad, concatenate, rev, iota (lax semantics), and small helpers that
bind them (`full`, `broadcast_to`, `reshape`, `static_slice`, `pad`, ...)."""
from __future__ import annotations

import math

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

# below this many elements a broadcast is materialised: np.broadcast_to's
# Python overhead (~3 us) is more than copying the values
_SMALL_BROADCAST = 4096


def _bid_impl(x, shape, broadcast_dimensions):
    if x.shape == shape:  # (equal ranks: the dimensions are the identity)
        return x
    inter = [1] * len(shape)
    for i, d in enumerate(broadcast_dimensions):
        inter[d] = x.shape[i]
    x = x.reshape(inter)
    if math.prod(shape) <= _SMALL_BROADCAST:
        out = np.empty(shape, x.dtype)
        out[...] = x
        return out
    return np.broadcast_to(x, shape)


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
    "reshape", impl=lambda x, new_sizes: x.reshape(new_sizes),
    abstract_eval=_reshape_abstract,
    transpose=lambda ct, x, new_sizes: [None if type(ct) is Zero else reshape_p.bind(ct, new_sizes=x.aval.shape)],
    batch=_reshape_batch,
    lower=lambda ctx, x, new_sizes: [lowering.result(hlo.ReshapeOp(lowering.ir_type(ctx.avals_out[0]), x))],
    linear=True)
reshape_p.jvp = _shape_only(reshape_p)
broadcast_in_dim_p.fusible_reads = True


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
    "squeeze", impl=lambda x, dimensions: x.squeeze(axis=dimensions) if dimensions else x,
    abstract_eval=_squeeze_abstract,
    transpose=lambda ct, x, dimensions: [None if type(ct) is Zero else reshape_p.bind(ct, new_sizes=x.aval.shape)],
    batch=_squeeze_batch,
    lower=lambda ctx, x, dimensions: [lowering.result(hlo.ReshapeOp(lowering.ir_type(ctx.avals_out[0]), x))],
    linear=True)
squeeze_p.jvp = _shape_only(squeeze_p)


# ---- slice(x, start_indices, limit_indices, strides): static strided slicing

def _norm_strides(strides, nd):
    return (1,) * nd if strides is None else tuple(strides)


_checked: dict = {}  # (rule, operand shapes/dtypes, params) already validated


def _check(abstract, *vals, **params):
    """Eager impls validate like abstract eval (numpy would clip or promote
    silently); the TypeError is reworded by Primitive.eager. The outcome
    depends only on shapes, dtypes and params, so a passed check is
    remembered: repeated eager calls skip it."""
    try:
        key = (abstract, tuple([(v.shape, v.dtype) for v in vals]), *params.values())
        if key in _checked:
            return
    except (AttributeError, TypeError):  # (a value without shape/dtype; unhashable params)
        key = None
    abstract(*[ShapedArray(np.shape(v), np.asarray(v).dtype) for v in vals], **params)
    if key is not None:
        if len(_checked) >= 4096:
            _checked.clear()
        _checked[key] = True


_slice_indices: dict = {}  # (shape, starts, limits, strides) -> checked NumPy index


def _slice_index(shape, start_indices, limit_indices, strides):
    """The NumPy basic index of a slice, looked up per shape and params
    (valid ones only: the check runs once, as _check's; validity does not
    depend on the dtype); None for params that are not hashable."""
    key = (shape, start_indices, limit_indices, strides)
    try:
        return _slice_indices[key]
    except KeyError:
        pass
    except TypeError:  # (lists from a direct call: no caching)
        return None
    _slice_abstract(ShapedArray(shape, dtypes.float64), start_indices, limit_indices, strides)
    st = _norm_strides(strides, len(shape))
    idx = tuple(slice(a, b, s) for a, b, s in zip(start_indices, limit_indices, st))
    if len(_slice_indices) >= 4096:
        _slice_indices.clear()
    _slice_indices[key] = idx
    return idx


def _slice_impl(x, start_indices, limit_indices, strides):
    idx = _slice_index(x.shape, start_indices, limit_indices, strides)
    if idx is None:
        _check(_slice_abstract, x, start_indices=start_indices, limit_indices=limit_indices,
               strides=strides)
        st = _norm_strides(strides, x.ndim)
        idx = tuple(slice(a, b, s) for a, b, s in zip(start_indices, limit_indices, st))
    return x[idx] if idx else x  # (a 0-d x as is: x[()] would be a NumPy scalar)


def _slice_abstract(x, start_indices, limit_indices, strides):
    nd = x.ndim
    st = _norm_strides(strides, nd)
    if not (len(start_indices) == len(limit_indices) == len(st) == nd):
        raise TypeError(f"start_indices {start_indices}, limit_indices {limit_indices} and "
                        f"strides {strides} must each have one entry per axis of {x.str_short()}")
    out = []
    for i, (a, b, s, d) in enumerate(zip(start_indices, limit_indices, st, x.shape)):
        if not 0 <= a <= b <= d:
            raise TypeError(f"slice [{a}:{b}] of axis {i} (size {d}) of {x.str_short()} must "
                            f"satisfy 0 <= start <= limit <= size")
        if s < 1:
            raise TypeError(f"slice strides must be positive, got {strides}")
        out.append(-(-(b - a) // s))  # ceil((b - a) / s)
    return ShapedArray(tuple(out), x.dtype, x.weak_type)


def _slice_transpose(ct, x, start_indices, limit_indices, strides):
    if type(ct) is Zero:
        return [None]
    shape = x.aval.shape
    st = _norm_strides(strides, len(shape))
    cta = get_aval(ct)
    out_shape = cta.shape
    config = []
    for a, s, d, n in zip(start_indices, st, shape, out_shape):
        # the taken elements sit at a, a+s, ..., a+(n-1)s: interior padding
        # of s-1 puts them back, edge padding fills the rest
        last = a + (n - 1) * s + 1 if n else a
        config.append((a, d - last, s - 1))
    zero = np.zeros((), cta.dtype)[()]  # a scalar: a jaxpr literal
    return [pad_p.bind(ct, zero, padding_config=tuple(config))]


def _slice_batch(args, dims, start_indices, limit_indices, strides):
    (x,), (d,) = args, dims
    size = get_aval(x).shape[d]
    st = _norm_strides(strides, len(start_indices))
    start = start_indices[:d] + (0,) + tuple(start_indices[d:])
    limit = limit_indices[:d] + (size,) + tuple(limit_indices[d:])
    st = st[:d] + (1,) + st[d:]
    return slice_p.bind(x, start_indices=tuple(start), limit_indices=tuple(limit),
                        strides=None if strides is None else tuple(st)), d


def _slice_lower(ctx, x, start_indices, limit_indices, strides):
    st = _norm_strides(strides, len(start_indices))
    if not start_indices:
        return [x]
    return [lowering.result(hlo.SliceOp(x, list(start_indices), list(limit_indices), list(st)))]


slice_p = Primitive("slice", impl=_slice_impl, abstract_eval=_slice_abstract,
                    transpose=_slice_transpose, batch=_slice_batch, lower=_slice_lower,
                    linear=True)
slice_p.jvp = ad.linear_jvp(slice_p)


# ---- pad(x, padding_value, padding_config): ((lo, hi, interior), ...) per
# axis; negative lo/hi crop, interior puts `interior` values between elements

def _pad_impl(x, padding_value, padding_config):
    _check(_pad_abstract, x, padding_value, padding_config=padding_config)
    if not padding_config:
        return x
    big, place, crop = _pad_layout(x.shape, padding_config)
    out = np.empty(big, x.dtype)
    out[...] = padding_value
    out[place] = x
    return out if crop is None else out[crop]


_pad_layouts: dict = {}


def _pad_layout(shape, padding_config):
    """(shape laid out with the non-negative parts of lo/hi, where x goes in
    it, the crop of the negative parts or None), cached per shape and config
    (every slice cotangent is a pad)."""
    key = (shape, padding_config)
    lay = _pad_layouts.get(key)
    if lay is None:
        big, place = [], []
        for n, (lo, hi, it) in zip(shape, padding_config):
            inner = n + max(n - 1, 0) * it
            big.append(max(lo, 0) + inner + max(hi, 0))
            place.append(slice(max(lo, 0), max(lo, 0) + inner, it + 1))
        crop = None
        if any(lo < 0 or hi < 0 for lo, hi, _ in padding_config):
            crop = tuple(slice(max(-lo, 0), b - max(-hi, 0))
                         for b, (lo, hi, _) in zip(big, padding_config))
        lay = (tuple(big), tuple(place), crop)
        if len(_pad_layouts) >= 1024:
            _pad_layouts.clear()
        _pad_layouts[key] = lay
    return lay


def _pad_abstract(x, padding_value, padding_config):
    if padding_value.shape != ():
        raise TypeError(f"padding_value must be a scalar, got {padding_value.str_short()}")
    if padding_value.dtype != x.dtype:
        raise TypeError(f"padding_value dtype {dtypes.short_name(padding_value.dtype)} must "
                        f"equal the operand's dtype {dtypes.short_name(x.dtype)}")
    if len(padding_config) != x.ndim:
        raise TypeError(f"padding_config {padding_config} must have one (lo, hi, interior) "
                        f"triple per axis of {x.str_short()}")
    out = []
    for i, (n, cfg) in enumerate(zip(x.shape, padding_config)):
        lo, hi, it = cfg
        if it < 0:
            raise TypeError(f"interior padding must be non-negative, got {padding_config}")
        m = lo + hi + n + max(n - 1, 0) * it
        if m < 0:
            raise TypeError(f"padding_config {padding_config} gives a negative size {m} for "
                            f"axis {i} of {x.str_short()}")
        out.append(m)
    return ShapedArray(tuple(out), x.dtype, x.weak_type and padding_value.weak_type)


def _pad_transpose(ct, x, padding_value, padding_config):
    if type(ct) is Zero:
        return [None, None]
    from .reductions import reduce_sum_p
    ct_x = ct_pv = None
    if ad.is_undefined(x) or ad.is_undefined(padding_value):
        # undo the edge padding (negated: crop what was added, add back zeros
        # where it cropped), then stride over the interior padding
        zero = np.zeros((), get_aval(ct).dtype)[()]  # a scalar: a jaxpr literal
        unpadded = pad_p.bind(ct, zero, padding_config=tuple((-lo, -hi, 0) for lo, hi, _ in padding_config))
        shape = get_aval(unpadded).shape
        ct_x = slice_p.bind(unpadded, start_indices=(0,) * len(shape), limit_indices=shape,
                            strides=tuple(it + 1 for _, _, it in padding_config))
    if ad.is_undefined(padding_value):
        # the padding value's cotangent: the sum of ct over padded positions
        nd = get_aval(ct).ndim
        total = reduce_sum_p.bind(ct, axes=tuple(range(nd))) if nd else ct
        inner = reduce_sum_p.bind(ct_x, axes=tuple(range(nd))) if nd else ct_x
        from .elementwise import sub_p
        ct_pv = sub_p.bind(total, inner)
    return [ct_x if ad.is_undefined(x) else None, ct_pv]


def _pad_batch(args, dims, padding_config):
    (x, pv), (dx, dp) = args, dims
    if dp is None:
        x = batching.moveaxis(x, dx, 0)
        return pad_p.bind(x, pv, padding_config=((0, 0, 0),) + tuple(padding_config)), 0
    # a batched padding value: pad with zeros, then select it where a mask
    # of "padded position" is set
    size = get_aval(pv).shape[dp]
    xa = get_aval(x)
    x = batching.bdim_at_front(x, dx, size)
    dt = xa.dtype
    padded = pad_p.bind(x, np.zeros((), dt), padding_config=((0, 0, 0),) + tuple(padding_config))
    out_shape = get_aval(padded).shape
    ex_shape = get_aval(x).shape[1:]
    mask = pad_p.bind(full(ex_shape, False, dtypes.bool_), np.asarray(True),
                      padding_config=tuple(padding_config))
    mask = broadcast_in_dim_p.bind(mask, shape=out_shape,
                                   broadcast_dimensions=tuple(range(1, len(out_shape))))
    pv_b = broadcast_in_dim_p.bind(pv, shape=out_shape, broadcast_dimensions=(0,))
    from .elementwise import select_n_p
    return select_n_p.bind(mask, padded, pv_b), 0


def _pad_lower(ctx, x, pv, padding_config):
    if not padding_config:
        return [x]
    lo, hi, it = zip(*padding_config)
    return [lowering.result(hlo.PadOp(x, pv, list(lo), list(hi), list(it)))]


pad_p = Primitive("pad", impl=_pad_impl, abstract_eval=_pad_abstract, transpose=_pad_transpose,
                  batch=_pad_batch, lower=_pad_lower, linear=True)
pad_p.jvp = ad.linear_jvp(pad_p)


# ---- concatenate(*xs, dimension)

def _concat_abstract(*xs, dimension):
    if not xs:
        raise TypeError("concatenate needs at least one operand")
    x0 = xs[0]
    if not 0 <= dimension < max(x0.ndim, 0) or x0.ndim == 0:
        raise TypeError(f"concatenate dimension {dimension} is out of range for operands "
                        f"{', '.join(x.str_short() for x in xs)}")
    for x in xs:
        if x.dtype != x0.dtype:
            raise TypeError("concatenate operands must have equal dtypes, got "
                            f"{', '.join(x.str_short() for x in xs)}")
        if x.ndim != x0.ndim or any(a != b for i, (a, b) in enumerate(zip(x.shape, x0.shape))
                                    if i != dimension):
            raise TypeError(f"concatenate operands must have equal shapes except along "
                            f"dimension {dimension}, got {', '.join(x.str_short() for x in xs)}")
    shape = list(x0.shape)
    shape[dimension] = sum(x.shape[dimension] for x in xs)
    return ShapedArray(tuple(shape), x0.dtype, all(x.weak_type for x in xs))


def _concat_transpose(ct, *xs, dimension):
    if type(ct) is Zero:
        return [None] * len(xs)
    out = []
    start = 0
    for x in xs:
        n = (x.aval if ad.is_undefined(x) else get_aval(x)).shape[dimension]
        out.append(slice_in_dim(ct, start, start + n, 1, dimension) if ad.is_undefined(x) else None)
        start += n
    return out


def _concat_batch(args, dims, dimension):
    d0 = dims[0]
    if d0 is not None and all(d == d0 for d in dims):
        # A stack (every operand has extent 1 along `dimension`, as tnp.stack
        # makes them): join along a new axis placed before the batch axis when
        # dimension <= batch axis, as JAX's stack_p batch rule does, rather than
        # next to it after moving the batch axis to the front. Stacking scalars
        # under vmap then concatenates whole (1, B) rows instead of
        # interleaving (B, 1) columns, which XLA compiles to a slow minor-axis
        # select chain (~2 ms of 39 ms in the BA Jacobian). The reshapes only
        # move a unit axis: free bitcasts.
        pos = dimension if dimension < d0 else dimension + 1
        shapes = [get_aval(x).shape for x in args]
        if all(s[pos] == 1 for s in shapes):
            bd = d0 - 1 if pos < d0 else d0          # batch axis once squeezed
            out_axis, out_bd = (dimension, bd + 1) if dimension <= bd else (dimension + 1, bd)
            xs = []
            for x, s in zip(args, shapes):
                sq = s[:pos] + s[pos + 1:]
                xs.append(reshape(x, sq[:out_axis] + (1,) + sq[out_axis:]))
            return concatenate_p.bind(*xs, dimension=out_axis), out_bd
    # every operand needs the batch axis (unbatched ones are broadcast)
    xs, _ = batching.move_all_to_front(args, dims)
    return concatenate_p.bind(*xs, dimension=dimension + 1), 0


def _concat_lower(ctx, *xs, dimension):
    return [lowering.result(hlo.ConcatenateOp(list(xs), dimension))]


def _concat_impl(*xs, dimension):
    _check(_concat_abstract, *xs, dimension=dimension)
    return np.concatenate(xs, axis=dimension)


concatenate_p = Primitive(
    "concatenate", impl=_concat_impl,
    abstract_eval=_concat_abstract, transpose=_concat_transpose, batch=_concat_batch,
    lower=_concat_lower, linear=True)
concatenate_p.jvp = ad.linear_jvp(concatenate_p)


# ---- rev(x, dimensions): reverse the order of elements along axes

def _rev_abstract(x, dimensions):
    if len(set(dimensions)) != len(dimensions) or any(not 0 <= d < x.ndim for d in dimensions):
        raise TypeError(f"rev dimensions {dimensions} must be distinct axes of {x.str_short()}")
    return ShapedArray(x.shape, x.dtype, x.weak_type)


def _rev_batch(args, dims, dimensions):
    (x,), (d,) = args, dims
    return rev_p.bind(x, dimensions=tuple(a + 1 if a >= d else a for a in dimensions)), d


rev_p = Primitive(
    "rev", impl=lambda x, dimensions: np.flip(x, dimensions) if dimensions else x,
    abstract_eval=_rev_abstract,
    transpose=lambda ct, x, dimensions: [None if type(ct) is Zero else rev_p.bind(ct, dimensions=dimensions)],
    batch=_rev_batch,
    lower=lambda ctx, x, dimensions: [lowering.result(hlo.ReverseOp(x, list(dimensions)))],
    linear=True)
rev_p.jvp = ad.linear_jvp(rev_p)

# the eager tape's reverse rules: these ops are linear, so their transposes
for _p in (broadcast_in_dim_p, reshape_p, transpose_p, squeeze_p, slice_p, pad_p,
           concatenate_p, rev_p):
    _p.vjp = ad.transpose_vjp(_p)


def eager_ct(ct):
    """The NumPy value of an eager cotangent (outside any trace), else None:
    then the pullback binds its transpose rule's primitives as usual."""
    if type(ct) is core.Array and core._ctx.trace is None:
        c = ct._v
        return ct.value if c is None else c
    return None


def _reshape_back_vjp(prim):
    """Tape rule of reshape and squeeze, whose transpose is a reshape back to
    the operand's shape: for an eager cotangent the reshape_p impl directly
    (the result keeps ct's weak type, as reshape_p.bind would)."""
    general = prim.vjp

    def vjp(needs, out, x, **params):
        def pullback(ct):
            c = eager_ct(ct)
            if c is not None:
                return [core.Array(c.reshape(get_aval(x).shape), ct.weak)]
            return general(needs, out, x, **params)(ct)
        return pullback
    return vjp


reshape_p.vjp = _reshape_back_vjp(reshape_p)
squeeze_p.vjp = _reshape_back_vjp(squeeze_p)


def _slice_vjp(needs, out, x, **params):
    """Tape rule of slice: for an eager cotangent, what the transpose's pad
    computes (zeros with ct placed at the sliced positions; pad's result is
    strong: its padding value is), by NumPy through the forward's cached
    index instead of a bind of pad."""
    def pullback(ct):
        c = eager_ct(ct)
        if c is not None and c.dtype.kind in "fc":
            shape = get_aval(x).shape
            idx = _slice_index(shape, params["start_indices"], params["limit_indices"],
                               params["strides"])
            if idx is not None:
                o = np.zeros(shape, c.dtype)
                o[idx] = c
                return [core.Array(o)]
        return _slice_vjp_general(needs, out, x, **params)(ct)
    return pullback


_slice_vjp_general = slice_p.vjp
slice_p.vjp = _slice_vjp


# ---- iota(dtype, shape, dimension): 0, 1, 2, ... along `dimension`

def _iota_impl(dtype, shape, dimension):
    ramp = np.arange(shape[dimension], dtype=dtype)
    return np.broadcast_to(ramp.reshape([-1 if i == dimension else 1 for i in range(len(shape))]),
                           shape)


def _iota_abstract(dtype, shape, dimension):
    if not 0 <= dimension < len(shape):
        raise TypeError(f"iota dimension {dimension} is out of range for shape {shape}")
    if any(s < 0 for s in shape):
        raise TypeError(f"negative dimension in iota shape {shape}")
    if dtype == dtypes.bool_:
        raise TypeError("iota does not accept dtype bool")
    return ShapedArray(tuple(shape), dtype, False)


iota_p = Primitive(
    "iota", impl=_iota_impl, abstract_eval=_iota_abstract,
    # no operands: nothing is ever batched or differentiated
    batch=lambda args, dims, **params: (iota_p.bind(**params), None),
    transpose=lambda ct, **params: [],
    lower=lambda ctx, dtype, shape, dimension: [lowering.result(
        hlo.IotaOp(lowering.ir_type(ctx.avals_out[0]), dimension))],
    keeps_weak=False)
iota_p.jvp = ad.zero_jvp(iota_p)


# ---- helpers used across the package

def full(shape, value, dtype):
    """An array of `shape` filled with `value` (a broadcast scalar)."""
    if type(value) is int and value == 0 and core._ctx.trace is None:
        # eager zeros (every cotangent of a gather, pad, ...): what the
        # broadcast below gives, without binding it
        return core.Array(np.zeros(shape, dtype))
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


def static_slice(x, start_indices, limit_indices, strides=None):
    """lax.slice: x[start:limit:stride] per axis (static ints)."""
    if strides is not None and all(s == 1 for s in strides):
        strides = None
    if (strides is None and all(a == 0 for a in start_indices)
            and tuple(limit_indices) == get_aval(x).shape):
        return x
    return slice_p.bind(x, start_indices=tuple(int(a) for a in start_indices),
                        limit_indices=tuple(int(b) for b in limit_indices),
                        strides=None if strides is None else tuple(int(s) for s in strides))


def slice_in_dim(x, start, limit, stride=1, axis=0):
    """x[start:limit:stride] along one axis (start/limit already in range)."""
    shape = get_aval(x).shape
    start_i = [0] * len(shape)
    limit_i = list(shape)
    strides = [1] * len(shape)
    start_i[axis], limit_i[axis], strides[axis] = start, limit, stride
    return static_slice(x, start_i, limit_i, strides)


def pad(x, padding_value, padding_config):
    """lax.pad with a scalar padding value of x's dtype."""
    dt = get_aval(x).dtype
    if not isinstance(padding_value, core.Tracer) and type(padding_value) is not core.Array:
        padding_value = np.asarray(padding_value, dt)[()]
    return pad_p.bind(x, padding_value, padding_config=tuple(tuple(int(v) for v in c)
                                                             for c in padding_config))


def concatenate(xs, dimension):
    """lax.concatenate of equal-dtype operands."""
    xs = list(xs)
    if len(xs) == 1:
        return xs[0]
    return concatenate_p.bind(*xs, dimension=int(dimension))


def rev(x, dimensions):
    dimensions = tuple(int(d) for d in dimensions)
    return rev_p.bind(x, dimensions=dimensions) if dimensions else x


def iota(dtype, shape, dimension=0):
    return iota_p.bind(dtype=np.dtype(dtype), shape=tuple(int(s) for s in shape),
                       dimension=int(dimension))

# bitcasts: a const read through them packs if their results are read fusibly
reshape_p.fusible_reads = squeeze_p.fusible_reads = "through"
