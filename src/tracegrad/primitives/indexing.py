"""Indexing primitives with XLA/JAX lax semantics:

  dynamic_slice(operand, *start_indices, slice_sizes)
  dynamic_update_slice(operand, update, *start_indices)
  gather(operand, indices, dimension_numbers, slice_sizes, mode, fill_value, ...)
  scatter / scatter_add / scatter_mul / scatter_min / scatter_max
      (operand, indices, updates, dimension_numbers, mode, ...)

Conventions (as JAX): the index vector of gather/scatter is always the last
axis of `indices`; dynamic start indices are clamped so the whole window is in
range. Out-of-bounds handling of gather/scatter is the `mode` param:

  "clip"              indices are clamped so the whole window is in range
  "fill_or_drop"      gather: a window that is not fully in range is filled
                      with fill_value; scatter: such a window is dropped
  "promise_in_bounds" no checks: XLA's native behaviour (gather clamps,
                      scatter drops)

Batching dims (operand_batching_dims / start_indices_batching_dims) are what
vmap uses when both the operand and the indices carry a batch axis.
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
from jaxlib.mlir.dialects import stablehlo as hlo

from .. import core, dtypes
from ..core import Primitive, ShapedArray, get_aval
from ..interpreters import ad, batching, lowering
from ..interpreters.ad import Zero, is_undefined
from . import elementwise as ew
from . import shapes

CLIP, FILL_OR_DROP, PROMISE_IN_BOUNDS = "clip", "fill_or_drop", "promise_in_bounds"
_MODES = {"clip": CLIP, "fill": FILL_OR_DROP, "drop": FILL_OR_DROP,
          "fill_or_drop": FILL_OR_DROP, "promise_in_bounds": PROMISE_IN_BOUNDS}


def canonical_mode(mode, default):
    """A user's mode string (None = `default`) -> one of the three modes."""
    if mode is None:
        return default
    name = getattr(mode, "name", mode)  # also accept an enum member by name
    m = _MODES.get(str(name).lower())
    if m is None:
        raise ValueError(f"unknown gather/scatter mode {mode!r}: expected one of 'clip', "
                         f"'fill', 'drop', 'promise_in_bounds'")
    return m


class GatherDimensionNumbers(NamedTuple):
    """How gather slices the operand (see XLA's Gather semantics).

    offset_dims: output axes that hold the slice (window) axes.
    collapsed_slice_dims: operand axes of slice size 1 dropped from the output.
    start_index_map: operand axis that each component of an index vector starts.
    operand_batching_dims / start_indices_batching_dims: paired axes of the
        operand and the indices that are gathered elementwise (batch axes).
    """
    offset_dims: tuple
    collapsed_slice_dims: tuple
    start_index_map: tuple
    operand_batching_dims: tuple = ()
    start_indices_batching_dims: tuple = ()


class ScatterDimensionNumbers(NamedTuple):
    """The transpose of GatherDimensionNumbers for scatter."""
    update_window_dims: tuple
    inserted_window_dims: tuple
    scatter_dims_to_operand_dims: tuple
    operand_batching_dims: tuple = ()
    scatter_indices_batching_dims: tuple = ()


def _tuples(nt):
    return type(nt)(*(tuple(int(d) for d in f) for f in nt))


def _is_int(dt):
    return np.dtype(dt).kind in "iu"


def _check_indices_dtype(name, aval):
    if not _is_int(aval.dtype):
        raise TypeError(f"{name} indices must have an integer dtype, got "
                        f"{dtypes.short_name(aval.dtype)}")


def _default_fill(dtype):
    """JAX's gather fill value: NaN, the int minimum, the uint maximum, True."""
    dtype = np.dtype(dtype)
    if dtypes.is_float(dtype):
        return np.nan
    if dtype == dtypes.bool_:
        return True
    if dtype.kind == "u":
        return np.iinfo(dtype).max
    return np.iinfo(dtype).min


def _operand_weak_eager(prim, argnums=(0,)):
    """Output weak type = all of the given operands' (not the index's)."""
    def eager(args, params):
        out = Primitive.eager(prim, args, params)
        weak = True
        for i in argnums:
            a = args[i]
            if not (a.weak if type(a) is core.Array else get_aval(a).weak_type):
                weak = False
                break
        return out if out.weak == weak else core.Array(out.value, weak)
    prim.eager = eager


# --------------------------------------------------------------------------
# NumPy helpers shared by the gather/scatter impls


def _full_starts(operand_shape, indices, start_index_map, operand_batching_dims,
                 indices_batching_dims):
    """The start of every window in operand coordinates: batch_shape + (rank,).
    Batching axes start at the position of the index in its batch axis."""
    bshape = indices.shape[:-1]
    starts = np.zeros(bshape + (len(operand_shape),), np.int64)
    idx = indices.astype(np.int64)
    for k, d in enumerate(start_index_map):
        starts[..., d] = idx[..., k]
    for od, idim in zip(operand_batching_dims, indices_batching_dims):
        shape = [1] * len(bshape)
        shape[idim] = bshape[idim]
        starts[..., od] = np.arange(bshape[idim]).reshape(shape)
    return starts


def _window_grids(starts, sizes):
    """Per operand axis, the coordinates of every window element:
    arrays of shape batch_shape + sizes."""
    nb, r = starts.ndim - 1, len(sizes)
    bshape = starts.shape[:-1]
    grids = []
    for d in range(r):
        s = starts[..., d].reshape(bshape + (1,) * r)
        ramp = np.arange(sizes[d]).reshape((1,) * nb + tuple(sizes[d] if i == d else 1 for i in range(r)))
        grids.append(s + ramp)
    return np.broadcast_arrays(*grids)


def _batch_positions(out_rank, offset_dims):
    return [p for p in range(out_rank) if p not in offset_dims]


@lru_cache(maxsize=1024)
def _numpy_take_layout(shape, index_map, collapsed, batching, sizes, window_dims, nb):
    """Is this gather (or scatter) plain NumPy integer-array indexing --
    every indexed axis collapsed to a window of 1, every other axis taken
    whole, no batching axes? Then operand[key], with the index columns on the
    indexed axes and `:` elsewhere, reads (or addresses) the same elements,
    in NumPy's layout: the non-indexed axes in order with the nb index batch
    axes as one block at position `p` (the first indexed axis when they are
    adjacent, else the front). Returns (p, perm, inverse): perm takes the
    gather's output layout (window_dims = offset / update window axes) to
    NumPy's (np.transpose(gathered, perm)), inverse back (both None when
    they are the identity); None for any other gather."""
    r = len(shape)
    if batching or not index_map or len(set(index_map)) != len(index_map) \
            or sorted(index_map) != sorted(collapsed) or len(sizes) != r:
        return None
    for d in range(r):
        if d in index_map:
            if sizes[d] != 1 or shape[d] == 0:
                return None
        elif sizes[d] != shape[d]:
            return None
    nrest = r - len(index_map)
    if len(window_dims) != nrest:
        return None
    lo = min(index_map)
    p = lo if sorted(index_map) == list(range(lo, lo + len(index_map))) else 0
    out_rank = nb + nrest
    batch_pos = _batch_positions(out_rank, window_dims)
    # NumPy's axis t holds: rest axis t (t < p), batch axis t - p, rest axis t - nb
    perm = [window_dims[t] if t < p else batch_pos[t - p] if t < p + nb else window_dims[t - nb]
            for t in range(out_rank)]
    if perm == list(range(out_rank)):
        return p, None, None
    return p, tuple(perm), tuple(int(i) for i in np.argsort(perm))


def _index_columns(indices, wide=True):
    """The index vector's components as NumPy index arrays, read as int64 as
    the general path does (uint64 beyond int64 wraps to negative); with
    wide=False other integer types stay (NumPy indexes with them as is)."""
    if indices.dtype != np.int64 and (wide or indices.dtype == np.uint64):
        indices = indices.astype(np.int64)
    return [indices[..., k] for k in range(indices.shape[-1])]


def _scatter_window_sizes(rank, dn, updates_shape):
    """Window size per operand axis (1 for inserted and batching axes)."""
    sizes, pos = [], 0
    for d in range(rank):
        if d in dn.inserted_window_dims or d in dn.operand_batching_dims:
            sizes.append(1)
        else:
            sizes.append(updates_shape[dn.update_window_dims[pos]])
            pos += 1
    return tuple(sizes)


def _inverse_gather(dn: ScatterDimensionNumbers, rank, updates_shape):
    """The gather that reads, for every update element, its scatter target."""
    gdn = GatherDimensionNumbers(
        offset_dims=dn.update_window_dims, collapsed_slice_dims=dn.inserted_window_dims,
        start_index_map=dn.scatter_dims_to_operand_dims,
        operand_batching_dims=dn.operand_batching_dims,
        start_indices_batching_dims=dn.scatter_indices_batching_dims)
    return gdn, _scatter_window_sizes(rank, dn, updates_shape)


def _as_scatter_dnums(dn: GatherDimensionNumbers):
    return ScatterDimensionNumbers(
        update_window_dims=dn.offset_dims, inserted_window_dims=dn.collapsed_slice_dims,
        scatter_dims_to_operand_dims=dn.start_index_map,
        operand_batching_dims=dn.operand_batching_dims,
        scatter_indices_batching_dims=dn.start_indices_batching_dims)


def _gather_mode_reading_scatter(mode):
    """A gather that reads exactly what a scatter with `mode` wrote: clamped
    windows for clip, and nothing (fill 0) for dropped windows otherwise."""
    return (CLIP, None) if mode == CLIP else (FILL_OR_DROP, 0)


def _shift(dims, by=1):
    return tuple(d + by for d in dims)


# --------------------------------------------------------------------------
# Lowering helpers


def _i_const(value, dtype, shape=()):
    return lowering.constant(np.asarray(value, dtype), ShapedArray(shape, dtype))


def _index_upper_bounds(idx_dtype, bounds):
    """Upper bounds as an index-dtype vector (saturated to the dtype's max)."""
    top = np.iinfo(idx_dtype).max
    return np.asarray([min(int(b), top) for b in bounds], idx_dtype)


def _clamp_indices_ir(indices, aidx, upper):
    """clamp(0, indices, upper) with `upper` broadcast along the last axis."""
    dt = aidx.dtype
    hi = lowering.constant(_index_upper_bounds(dt, upper))
    hi = lowering.broadcast_in_dim(hi, aidx, (aidx.ndim - 1,))
    lo = _i_const(0, dt, aidx.shape)
    return lowering.result(hlo.ClampOp(lo, indices, hi))


# --------------------------------------------------------------------------
# dynamic_slice(operand, *start_indices, slice_sizes)


def _clamped_starts(starts, shape, sizes):
    return [int(min(max(int(s), 0), n - k)) for s, n, k in zip(starts, shape, sizes)]


def _ds_impl(operand, *starts, slice_sizes):
    if any(not _is_int(s.dtype) for s in starts):  # eager calls skip abstract_eval
        raise TypeError("invalid start indices")
    st = _clamped_starts(starts, operand.shape, slice_sizes)
    return operand[tuple(slice(a, a + k) for a, k in zip(st, slice_sizes))]


def _check_start_indices(name, operand, starts):
    if len(starts) != operand.ndim:
        raise TypeError(f"{name} needs one start index per axis of the operand "
                        f"{operand.str_short()}, got {len(starts)}")
    for s in starts:
        if s.shape != ():
            raise TypeError(f"{name} start indices must be scalars, got {s.str_short()}")
        _check_indices_dtype(name, s)
    if len({s.dtype for s in starts}) > 1:
        raise TypeError(f"{name} start indices must have one dtype, got "
                        f"{', '.join(s.str_short() for s in starts)}")


def _ds_abstract(operand, *starts, slice_sizes):
    _check_start_indices("dynamic_slice", operand, starts)
    if len(slice_sizes) != operand.ndim:
        raise TypeError(f"dynamic_slice needs one slice size per axis of {operand.str_short()}, "
                        f"got slice_sizes={slice_sizes}")
    for d, (k, n) in enumerate(zip(slice_sizes, operand.shape)):
        if not 0 <= k <= n:
            raise TypeError(f"slice size {k} of axis {d} must be within [0, {n}] for "
                            f"operand {operand.str_short()}")
    return ShapedArray(tuple(slice_sizes), operand.dtype, operand.weak_type)


def _ds_jvp(primals, tangents, slice_sizes):
    operand, *starts = primals
    out = dynamic_slice_p.bind(operand, *starts, slice_sizes=slice_sizes)
    t = tangents[0]
    if type(t) is Zero:
        return out, Zero.like(out)
    return out, dynamic_slice_p.bind(t, *starts, slice_sizes=slice_sizes)


def _ds_transpose(ct, operand, *starts, slice_sizes):
    if type(ct) is Zero or not is_undefined(operand):
        return [None] * (1 + len(starts))
    dt = get_aval(ct).dtype
    # (float cotangents: shapes.full's eager zeros directly; float0 needs ad.zeros)
    zeros = shapes.full(operand.aval.shape, 0, dt) if dt.kind in "fc" else \
        ad.zeros(ShapedArray(operand.aval.shape, dt))
    return [dynamic_update_slice_p.bind(zeros, ct, *starts)] + [None] * len(starts)


def _zero_index(starts):
    """A literal 0 with the dtype of the other start indices."""
    dt = get_aval(starts[0]).dtype if starts else dtypes.int64
    return np.zeros((), dt)[()]


def _stack_start_indices(starts, dims, size):
    """Scalar start indices (each batched with shape (size,) or unbatched) ->
    one (size, K) index array."""
    cols = []
    for s, d in zip(starts, dims):
        if d is None:
            cols.append(shapes.broadcast_in_dim_p.bind(s, shape=(size, 1), broadcast_dimensions=()))
        else:
            cols.append(shapes.reshape_p.bind(s, new_sizes=(size, 1)))
    return shapes.concatenate(cols, 1)


def _ds_batch(args, dims, slice_sizes):
    operand, *starts = args
    od, *sdims = dims
    if all(d is None for d in sdims):
        # only the operand is batched: slice its whole batch axis
        starts = starts[:od] + [_zero_index(starts)] + starts[od:]
        sizes = slice_sizes[:od] + (get_aval(operand).shape[od],) + slice_sizes[od:]
        return dynamic_slice_p.bind(operand, *starts, slice_sizes=tuple(sizes)), od
    # batched starts: one window per batch element, i.e. a gather
    size = batching.axis_size_of(args, dims)
    idx = _stack_start_indices(starts, sdims, size)
    nd = len(slice_sizes)
    if od is None:
        dn = GatherDimensionNumbers(offset_dims=tuple(range(1, nd + 1)), collapsed_slice_dims=(),
                                    start_index_map=tuple(range(nd)))
        out = gather_p.bind(operand, idx, dimension_numbers=dn, slice_sizes=tuple(slice_sizes),
                            mode=CLIP, fill_value=None, indices_are_sorted=False,
                            unique_indices=False)
        return out, 0
    operand = batching.moveaxis(operand, od, 0)
    dn = GatherDimensionNumbers(offset_dims=tuple(range(1, nd + 1)), collapsed_slice_dims=(),
                                start_index_map=tuple(range(1, nd + 1)),
                                operand_batching_dims=(0,), start_indices_batching_dims=(0,))
    out = gather_p.bind(operand, idx, dimension_numbers=dn, slice_sizes=(1,) + tuple(slice_sizes),
                        mode=CLIP, fill_value=None, indices_are_sorted=False, unique_indices=False)
    return out, 0


def _ds_lower(ctx, operand, *starts, slice_sizes):
    return [lowering.result(hlo.DynamicSliceOp(operand, list(starts), list(slice_sizes)))]


dynamic_slice_p = Primitive("dynamic_slice", impl=_ds_impl, abstract_eval=_ds_abstract,
                            jvp=_ds_jvp, transpose=_ds_transpose, batch=_ds_batch,
                            lower=_ds_lower, linear=True)
_operand_weak_eager(dynamic_slice_p)
dynamic_slice_p.vjp = ad.transpose_vjp(dynamic_slice_p)


# --------------------------------------------------------------------------
# dynamic_update_slice(operand, update, *start_indices)


def _dus_impl(operand, update, *starts):
    if any(not _is_int(s.dtype) for s in starts) or update.dtype != operand.dtype:
        raise TypeError("invalid operands")
    st = _clamped_starts(starts, operand.shape, update.shape)
    out = operand.copy()
    out[tuple(slice(a, a + k) for a, k in zip(st, update.shape))] = update
    return out


def _dus_abstract(operand, update, *starts):
    _check_start_indices("dynamic_update_slice", operand, starts)
    if update.dtype != operand.dtype:
        raise TypeError(f"dynamic_update_slice update dtype {dtypes.short_name(update.dtype)} "
                        f"must equal the operand's {dtypes.short_name(operand.dtype)}")
    if update.ndim != operand.ndim or any(u > n for u, n in zip(update.shape, operand.shape)):
        raise TypeError(f"dynamic_update_slice update {update.str_short()} must have the rank "
                        f"of the operand {operand.str_short()} and fit inside it")
    return ShapedArray(operand.shape, operand.dtype, operand.weak_type and update.weak_type)


def _dus_jvp(primals, tangents):
    operand, update, *starts = primals
    t_op, t_up = tangents[:2]
    out = dynamic_update_slice_p.bind(operand, update, *starts)
    if type(t_op) is Zero and type(t_up) is Zero:
        return out, Zero.like(out)
    return out, dynamic_update_slice_p.bind(ad.instantiate(t_op), ad.instantiate(t_up), *starts)


def _dus_transpose(ct, operand, update, *starts):
    nones = [None] * len(starts)
    if type(ct) is Zero:
        return [None, None] + nones
    ct_op = ct_up = None
    uaval = update.aval if is_undefined(update) else get_aval(update)
    if is_undefined(operand):  # the window was overwritten: no cotangent there
        zeros = ad.zeros(ShapedArray(uaval.shape, get_aval(ct).dtype))
        ct_op = dynamic_update_slice_p.bind(ct, zeros, *starts)
    if is_undefined(update):
        ct_up = dynamic_slice_p.bind(ct, *starts, slice_sizes=uaval.shape)
    return [ct_op, ct_up] + nones


def _dus_batch(args, dims):
    operand, update, *starts = args
    od, ud, *sdims = dims
    size = batching.axis_size_of(args, dims)
    if all(d is None for d in sdims):
        # same window in every batch element: one dynamic_update_slice whose
        # window spans the batch axis (kept where the operand has it)
        bd = 0 if od is None else od
        operand = batching.bdim_at_front(operand, od, size) if od is None else operand
        update = batching.broadcast(update, size, bd) if ud is None else batching.moveaxis(update, ud, bd)
        starts = starts[:bd] + [_zero_index(starts)] + starts[bd:]
        return dynamic_update_slice_p.bind(operand, update, *starts), bd
    # batched starts: a scatter with the batch as a batching axis
    operand = batching.bdim_at_front(operand, od, size)
    update = batching.bdim_at_front(update, ud, size)
    idx = _stack_start_indices(starts, sdims, size)
    nd = len(starts)
    dn = ScatterDimensionNumbers(update_window_dims=tuple(range(1, nd + 1)), inserted_window_dims=(),
                                 scatter_dims_to_operand_dims=tuple(range(1, nd + 1)),
                                 operand_batching_dims=(0,), scatter_indices_batching_dims=(0,))
    # (windows of different batch elements never overlap: unique)
    out = scatter_p.bind(operand, idx, update, dimension_numbers=dn, mode=CLIP,
                         indices_are_sorted=False, unique_indices=True)
    return out, 0


def _dus_lower(ctx, operand, update, *starts):
    return [lowering.result(hlo.DynamicUpdateSliceOp(operand, update, list(starts)))]


dynamic_update_slice_p = Primitive("dynamic_update_slice", impl=_dus_impl,
                                   abstract_eval=_dus_abstract, jvp=_dus_jvp,
                                   transpose=_dus_transpose, batch=_dus_batch,
                                   lower=_dus_lower, linear=True)
_operand_weak_eager(dynamic_update_slice_p, (0, 1))
dynamic_update_slice_p.vjp = ad.transpose_vjp(dynamic_update_slice_p)


# --------------------------------------------------------------------------
# gather(operand, indices, dimension_numbers, slice_sizes, mode, fill_value,
#        indices_are_sorted, unique_indices)


def _gather_impl(operand, indices, *, dimension_numbers, slice_sizes, mode, fill_value,
                 indices_are_sorted, unique_indices):
    if indices.dtype.kind not in "iu":  # eager calls skip abstract_eval
        raise TypeError("invalid indices")
    dn = dimension_numbers
    if mode != FILL_OR_DROP and indices.ndim >= 1 and indices.size:
        out = _gather_numpy(operand, indices, dn, slice_sizes)
        if out is not None:
            return out
    bshape = indices.shape[:-1]
    nb = len(bshape)
    starts = _full_starts(operand.shape, indices, dn.start_index_map, dn.operand_batching_dims,
                          dn.start_indices_batching_dims)
    upper = np.asarray(operand.shape, np.int64) - np.asarray(slice_sizes, np.int64)
    if mode == FILL_OR_DROP:
        sub = starts[..., list(dn.start_index_map)]
        valid = np.all((sub >= 0) & (sub <= upper[list(dn.start_index_map)]), axis=-1)
    starts = np.clip(starts, 0, np.maximum(upper, 0))
    full_shape = bshape + tuple(slice_sizes)
    if int(np.prod(full_shape, dtype=np.int64)) == 0:
        out = np.zeros(full_shape, operand.dtype)
    elif operand.ndim == 0:
        out = np.broadcast_to(operand, bshape)
    else:
        out = operand[tuple(_window_grids(starts, slice_sizes))]
    dropped = set(dn.collapsed_slice_dims) | set(dn.operand_batching_dims)
    out = out.reshape(bshape + tuple(k for d, k in enumerate(slice_sizes) if d not in dropped))
    out_rank = nb + len(dn.offset_dims)
    src = [0] * out_rank
    for j, p in enumerate(dn.offset_dims):
        src[p] = nb + j
    for i, p in enumerate(_batch_positions(out_rank, dn.offset_dims)):
        src[p] = i
    out = np.transpose(out, src)
    if mode == FILL_OR_DROP:
        fill = _default_fill(operand.dtype) if fill_value is None else fill_value
        mask = np.transpose(valid.reshape(bshape + (1,) * len(dn.offset_dims)), src)
        out = np.where(mask, out, np.asarray(fill, operand.dtype))
    return np.asarray(out, operand.dtype)


def _gather_numpy(operand, indices, dn, slice_sizes):
    """Clamped gather by NumPy fancy indexing, when the gather is plain
    integer-array indexing (see _numpy_take_layout); None otherwise."""
    nb = indices.ndim - 1
    lay = _numpy_take_layout(operand.shape, dn.start_index_map, dn.collapsed_slice_dims,
                             dn.operand_batching_dims, tuple(slice_sizes), dn.offset_dims, nb)
    if lay is None:
        return None
    if indices.shape[-1] == 1:  # take clamps into [0, n - 1] itself, as XLA's gather
        col = indices[..., 0]
        if col.dtype.kind == "u" and col.dtype.itemsize == 8:
            col = col.astype(np.int64)  # (read as int64, as _index_columns does)
        out = operand.take(col, axis=dn.start_index_map[0], mode="clip")
        if type(out) is not np.ndarray:  # (a NumPy scalar from a 0-d index)
            out = np.asarray(out)
        return out if lay[2] is None else np.transpose(out, lay[2])
    else:
        key = [slice(None)] * operand.ndim
        for c, d in zip(_index_columns(indices), dn.start_index_map):
            key[d] = np.minimum(np.maximum(c, 0), operand.shape[d] - 1)
        out = operand[tuple(key)]
    if lay[2] is not None:
        out = np.transpose(out, lay[2])
    return np.asarray(out, operand.dtype)


def _check_dims(name, what, dims, bound, sorted_=True):
    if len(set(dims)) != len(dims):
        raise TypeError(f"{what} {dims} has repeated dimensions")
    if sorted_ and list(dims) != sorted(dims):
        raise TypeError(f"{what} {dims} must be sorted")
    if any(not 0 <= d < bound for d in dims):
        raise TypeError(f"{what} {dims} must be in [0, {bound})")


def _gather_abstract(operand, indices, *, dimension_numbers, slice_sizes, mode, fill_value,
                     indices_are_sorted, unique_indices):
    dn = dimension_numbers
    name = "gather"
    _check_indices_dtype(name, indices)
    if indices.ndim < 1:
        raise TypeError(f"gather indices must have at least one axis (the index vector "
                        f"axis, last), got {indices.str_short()}")
    nb = indices.ndim - 1
    out_rank = nb + len(dn.offset_dims)
    _check_dims(name, "offset_dims", dn.offset_dims, out_rank)
    if len(dn.start_index_map) != indices.shape[-1]:
        raise TypeError(f"start_index_map {dn.start_index_map} must have one entry per "
                        f"index vector component ({indices.shape[-1]} in {indices.str_short()})")
    _check_dims(name, "start_index_map", dn.start_index_map, operand.ndim, sorted_=False)
    _check_dims(name, "collapsed_slice_dims", dn.collapsed_slice_dims, operand.ndim)
    _check_dims(name, "operand_batching_dims", dn.operand_batching_dims, operand.ndim)
    _check_dims(name, "start_indices_batching_dims", dn.start_indices_batching_dims, nb,
                sorted_=False)
    if set(dn.collapsed_slice_dims) & set(dn.operand_batching_dims) or \
            set(dn.start_index_map) & set(dn.operand_batching_dims):
        raise TypeError("operand_batching_dims must be disjoint from "
                        "collapsed_slice_dims and start_index_map")
    if len(dn.operand_batching_dims) != len(dn.start_indices_batching_dims):
        raise TypeError("operand_batching_dims and start_indices_batching_dims must "
                        "have the same length")
    for od, idim in zip(dn.operand_batching_dims, dn.start_indices_batching_dims):
        if operand.shape[od] != indices.shape[idim]:
            raise TypeError(f"batching axes must have equal sizes, got operand "
                            f"{operand.str_short()} axis {od} and indices "
                            f"{indices.str_short()} axis {idim}")
    if len(slice_sizes) != operand.ndim:
        raise TypeError(f"gather needs one slice size per operand axis, got "
                        f"slice_sizes={slice_sizes} for {operand.str_short()}")
    if len(slice_sizes) != len(dn.offset_dims) + len(dn.collapsed_slice_dims) + \
            len(dn.operand_batching_dims):
        raise TypeError(f"every slice axis must be an offset, collapsed or batching "
                        f"axis: slice_sizes={slice_sizes}, {dn}")
    empty = any(s == 0 for s in indices.shape[:-1])
    for d, (k, n) in enumerate(zip(slice_sizes, operand.shape)):
        if k < 0 or (k > n and not empty):
            raise TypeError(f"gather slice size {k} of axis {d} must be within [0, {n}]")
    for d in dn.collapsed_slice_dims:
        if slice_sizes[d] != 1:
            raise TypeError(f"gather can only collapse axes of slice size 1, got "
                            f"{slice_sizes[d]} for axis {d}")
    for d in dn.operand_batching_dims:
        if slice_sizes[d] > 1:
            raise TypeError(f"gather batching axis {d} must have slice size 0 or 1")
    if mode not in (CLIP, FILL_OR_DROP, PROMISE_IN_BOUNDS):
        raise TypeError(f"unknown mode {mode!r}")
    dropped = set(dn.collapsed_slice_dims) | set(dn.operand_batching_dims)
    offs = iter(k for d, k in enumerate(slice_sizes) if d not in dropped)
    bats = iter(indices.shape[:-1])
    shape = tuple(next(offs) if p in dn.offset_dims else next(bats) for p in range(out_rank))
    return ShapedArray(shape, operand.dtype, operand.weak_type)


def _gather_jvp(primals, tangents, **params):
    operand, indices = primals
    t = tangents[0]
    out = gather_p.bind(operand, indices, **params)
    if type(t) is Zero:
        return out, Zero.like(out)
    # out-of-range windows filled with a constant have a zero derivative
    tparams = dict(params, fill_value=0 if params["mode"] == FILL_OR_DROP else None)
    return out, gather_p.bind(t, indices, **tparams)


def _gather_transpose(ct, operand, indices, *, dimension_numbers, slice_sizes, mode,
                      fill_value, indices_are_sorted, unique_indices):
    if type(ct) is Zero or not is_undefined(operand):
        return [None, None]
    dt = get_aval(ct).dtype
    # (float cotangents: shapes.full's eager zeros directly; float0 needs ad.zeros)
    zeros = shapes.full(operand.aval.shape, 0, dt) if dt.kind in "fc" else \
        ad.zeros(ShapedArray(operand.aval.shape, dt))
    out = scatter_add_p.bind(zeros, indices, ct, dimension_numbers=_as_scatter_dnums(dimension_numbers),
                             mode=mode, indices_are_sorted=indices_are_sorted,
                             unique_indices=unique_indices)
    return [out, None]


def _gather_batch(args, dims, *, dimension_numbers, slice_sizes, **params):
    operand, indices = args
    od, idd = dims
    dn = dimension_numbers
    if idd is None:
        # batched operand, shared indices: the batch axis is one more window axis
        operand = batching.moveaxis(operand, od, 0)
        size = get_aval(operand).shape[0]
        dn2 = GatherDimensionNumbers(
            offset_dims=(0,) + _shift(dn.offset_dims), collapsed_slice_dims=_shift(dn.collapsed_slice_dims),
            start_index_map=_shift(dn.start_index_map),
            operand_batching_dims=_shift(dn.operand_batching_dims),
            start_indices_batching_dims=dn.start_indices_batching_dims)
        return gather_p.bind(operand, indices, dimension_numbers=dn2,
                             slice_sizes=(size,) + tuple(slice_sizes), **params), 0
    indices = batching.moveaxis(indices, idd, 0)
    if od is None:
        # batched indices only: one more batch axis of the indices, first in the output
        dn2 = GatherDimensionNumbers(
            offset_dims=_shift(dn.offset_dims), collapsed_slice_dims=dn.collapsed_slice_dims,
            start_index_map=dn.start_index_map, operand_batching_dims=dn.operand_batching_dims,
            start_indices_batching_dims=_shift(dn.start_indices_batching_dims))
        return gather_p.bind(operand, indices, dimension_numbers=dn2, slice_sizes=slice_sizes,
                             **params), 0
    # both batched: pair the two batch axes as gather batching dims
    operand = batching.moveaxis(operand, od, 0)
    dn2 = GatherDimensionNumbers(
        offset_dims=_shift(dn.offset_dims), collapsed_slice_dims=_shift(dn.collapsed_slice_dims),
        start_index_map=_shift(dn.start_index_map),
        operand_batching_dims=(0,) + _shift(dn.operand_batching_dims),
        start_indices_batching_dims=(0,) + _shift(dn.start_indices_batching_dims))
    return gather_p.bind(operand, indices, dimension_numbers=dn2,
                         slice_sizes=(1,) + tuple(slice_sizes), **params), 0


def _gather_dnums_attr(dn, index_vector_dim):
    return hlo.GatherDimensionNumbers.get(
        offset_dims=list(dn.offset_dims), collapsed_slice_dims=list(dn.collapsed_slice_dims),
        operand_batching_dims=list(dn.operand_batching_dims),
        start_indices_batching_dims=list(dn.start_indices_batching_dims),
        start_index_map=list(dn.start_index_map), index_vector_dim=index_vector_dim)


def _gather_lower(ctx, operand, indices, *, dimension_numbers, slice_sizes, mode, fill_value,
                  indices_are_sorted, unique_indices):
    aop, aidx = ctx.avals_in
    aout = ctx.avals_out[0]
    dn = dimension_numbers
    # XLA's gather clamps start indices itself: that is "clip" (and "promise")
    op = hlo.GatherOp(operand, indices, _gather_dnums_attr(dn, aidx.ndim - 1), list(slice_sizes),
                      indices_are_sorted=bool(indices_are_sorted),
                      results=[lowering.ir_type(aout)])
    out = lowering.result(op)
    if mode != FILL_OR_DROP:
        return [out]
    # fill: mask windows whose start is out of [0, dim - slice size]
    nb = aidx.ndim - 1
    bool_t = dtypes.bool_
    upper = [aop.shape[d] - slice_sizes[d] for d in dn.start_index_map]
    hi = lowering.broadcast_in_dim(lowering.constant(_index_upper_bounds(aidx.dtype, upper)),
                                   aidx, (nb,))
    ge = lowering.compare(indices, _i_const(0, aidx.dtype, aidx.shape), "GE", aidx)
    le = lowering.compare(indices, hi, "LE", aidx)
    ok = lowering.result(hlo.AndOp(ge, le))
    mask = lowering.reduce(ok, ShapedArray(aidx.shape, bool_t), ShapedArray(aidx.shape[:-1], bool_t),
                           (nb,), "and")
    mask = lowering.broadcast_in_dim(mask, ShapedArray(aout.shape, bool_t),
                                     _batch_positions(aout.ndim, dn.offset_dims))
    fill = _default_fill(aop.dtype) if fill_value is None else fill_value
    fill_v = lowering.broadcast_in_dim(lowering.constant(np.asarray(fill, aop.dtype)), aout, ())
    return [lowering.result(hlo.SelectOp(mask, out, fill_v))]


gather_p = Primitive("gather", impl=_gather_impl, abstract_eval=_gather_abstract,
                     jvp=_gather_jvp, transpose=_gather_transpose, batch=_gather_batch,
                     lower=_gather_lower, linear=True)
_operand_weak_eager(gather_p)
gather_p.fusible_reads = True
_gather_vjp_general = ad.transpose_vjp(gather_p)


def _gather_vjp(needs, out, operand, indices, **params):
    """The tape's reverse rule of gather: the transpose (zeros + scatter_add)
    in general, and for an eager cotangent of a plain "take along one axis"
    gather the same scatter-add done by NumPy directly (_gather_ct_numpy),
    skipping the zeros, the scatter's dimension numbers and two binds. The
    pullback of a cotangent under a trace binds the primitives as usual."""
    def pullback(ct):
        if not needs[1] and shapes.eager_ct(ct) is not None:
            r = _gather_ct_numpy(ct, operand, indices, params["dimension_numbers"],
                                 params["slice_sizes"], params["mode"])
            if r is not None:
                return [r, None]
        return _gather_vjp_general(needs, out, operand, indices, **params)(ct)
    return pullback


def _gather_ct_numpy(ct, operand, indices, dn, slice_sizes, mode):
    """The operand's cotangent of a gather that is NumPy integer-array
    indexing with one index column (_numpy_take_layout), as the general
    transpose computes it: zeros of ct's dtype, then the cotangent added at
    every index in order (repeated indices accumulate), indices clamped for
    "clip" and out-of-range ones dropped otherwise (as scatter_add does).
    None when another case or an out-of-range index (for the drop modes)
    needs the general path."""
    c = ct._v
    if c is None:
        c = ct.value
    if type(indices) is core.Array:
        indices = indices.value
    if type(indices) is not np.ndarray or indices.ndim < 1 or indices.shape[-1] != 1 \
            or not indices.size or indices.dtype.kind not in "iu" or c.dtype.kind not in "fc":
        return None
    shape = get_aval(operand).shape
    nb = indices.ndim - 1
    lay = _numpy_take_layout(shape, dn.start_index_map, dn.collapsed_slice_dims,
                             dn.operand_batching_dims, tuple(slice_sizes), dn.offset_dims, nb)
    if lay is None:
        return None
    perm = lay[1]
    vals = c if perm is None else np.transpose(c, perm)  # the updates in NumPy's layout
    axis = dn.start_index_map[0]
    n = shape[axis]
    col = indices[..., 0]
    if col.dtype != np.int64:  # (uint64 beyond int64 reads negative, as the general path)
        col = col.astype(np.int64)
    if mode == CLIP:
        col = np.minimum(np.maximum(col, 0), n - 1)
    if len(shape) == 1 and c.dtype == np.float64:
        # bincount adds the weights in index order from 0.0 in float64: the
        # same sums as np.add.at on zeros; it raises for a negative index and
        # grows for one past the end (both dropped by the drop modes)
        try:
            out = np.bincount(col.ravel(), vals.ravel(), n)
        except ValueError:
            return None
        if out.shape[0] != n:
            return None
        return core.Array(out)
    if mode != CLIP and col.min() < 0:
        return None  # (np.add.at would count it from the end: dropped in general)
    out = np.zeros(shape, c.dtype)
    try:
        np.add.at(out, (slice(None),) * axis + (col,), vals)
    except IndexError:  # an index past the end: dropped in general
        return None
    return core.Array(out)


gather_p.vjp = _gather_vjp


# --------------------------------------------------------------------------
# scatter family: (operand, indices, updates, dimension_numbers, mode,
#                  indices_are_sorted, unique_indices)


def _set_at(out, tgt, vals):
    out[tgt] = vals  # repeated targets: the last update wins (as XLA on CPU)


_COMBINE = {
    "scatter": _set_at,
    "scatter_add": lambda out, tgt, vals: np.add.at(out, tgt, vals),
    "scatter_mul": lambda out, tgt, vals: np.multiply.at(out, tgt, vals),
    "scatter_min": lambda out, tgt, vals: np.minimum.at(out, tgt, vals),
    "scatter_max": lambda out, tgt, vals: np.maximum.at(out, tgt, vals),
}


def _scatter_impl(name):
    combine = _COMBINE[name]

    def impl(operand, indices, updates, *, dimension_numbers, mode, indices_are_sorted,
             unique_indices):
        # eager calls skip abstract_eval: reject what NumPy would accept silently
        if not _is_int(indices.dtype) or updates.dtype != operand.dtype or (
                operand.dtype == dtypes.bool_ and name in ("scatter_add", "scatter_mul")):
            raise TypeError("invalid operands")
        dn = dimension_numbers
        if indices.ndim >= 1 and indices.size:
            out = _scatter_numpy(combine, operand, indices, updates, dn, mode)
            if out is not None:
                return out
        bshape = indices.shape[:-1]
        r = operand.ndim
        win = _scatter_window_sizes(r, dn, updates.shape)
        scatter_pos = [i for i in range(updates.ndim) if i not in dn.update_window_dims]
        # updates as batch_shape + window (with the inserted axes as size 1)
        upd = np.transpose(updates, scatter_pos + list(dn.update_window_dims)).reshape(bshape + win)
        starts = _full_starts(operand.shape, indices, dn.scatter_dims_to_operand_dims,
                              dn.operand_batching_dims, dn.scatter_indices_batching_dims)
        upper = np.asarray(operand.shape, np.int64) - np.asarray(win, np.int64)
        if mode == CLIP:
            starts = np.clip(starts, 0, np.maximum(upper, 0))
        # a window not fully inside the operand is dropped (XLA's semantics)
        valid = np.all((starts >= 0) & (starts <= upper), axis=-1)
        out = operand.copy()
        if r == 0:
            flat = out.reshape(1)
            vals = upd[valid]
            combine(flat, (np.zeros(vals.shape[0], np.intp),), vals)
            return flat.reshape(())
        grids = _window_grids(starts, win)
        m = np.broadcast_to(valid.reshape(bshape + (1,) * r), bshape + win)
        combine(out, tuple(g[m] for g in grids), upd[m])
        return out
    return impl


_scatter_layouts: dict = {}


def _scatter_numpy(combine, operand, indices, updates, dn, mode):
    """The scatter by NumPy fancy indexing, when it is plain integer-array
    indexing (see _numpy_take_layout); None otherwise. Out-of-range indices
    are clamped (clip) or their updates dropped (the other modes)."""
    nb = indices.ndim - 1
    key = (operand.shape, updates.shape, nb, dn)
    lay = _scatter_layouts.get(key, False)
    if lay is False:  # (computed once per shapes and dnums)
        lay = None
        if updates.ndim == nb + len(dn.update_window_dims):
            win = _scatter_window_sizes(operand.ndim, dn, updates.shape)
            lay = _numpy_take_layout(operand.shape, dn.scatter_dims_to_operand_dims,
                                     dn.inserted_window_dims, dn.operand_batching_dims, win,
                                     dn.update_window_dims, nb)
        if len(_scatter_layouts) >= 1024:
            _scatter_layouts.clear()
        _scatter_layouts[key] = lay
    if lay is None:
        return None
    p, perm, _ = lay
    imap = dn.scatter_dims_to_operand_dims
    vals = updates if perm is None else np.transpose(updates, perm)
    # (NumPy indexes with any integer type; clamping needs room for n - 1)
    cols = _index_columns(indices, wide=mode == CLIP)
    if mode == CLIP:
        cols = [np.minimum(np.maximum(c, 0), operand.shape[d] - 1) for c, d in zip(cols, imap)]
    elif all(c.min() >= 0 for c in cols):
        # NumPy raises for an index past the end (a negative one it would
        # count from the end: excluded above), then the updates are dropped below
        key = [slice(None)] * operand.ndim
        for c, d in zip(cols, imap):
            key[d] = c
        out = operand.copy()
        try:
            combine(out, tuple(key), vals)
            return out
        except IndexError:
            pass
    if mode != CLIP:
        ok = None
        for c, d in zip(cols, imap):
            v = (c >= 0) & (c < operand.shape[d])
            ok = v if ok is None else ok & v
        if not ok.all():  # drop the out-of-range updates: keep a flat batch of the others
            keep = ok.reshape(-1)
            cols = [c.reshape(-1)[keep] for c in cols]
            vals = vals.reshape(vals.shape[:p] + (keep.size,) + vals.shape[p + nb:])
            vals = np.compress(keep, vals, axis=p)
    key = [slice(None)] * operand.ndim
    for c, d in zip(cols, imap):
        key[d] = c
    out = operand.copy()
    combine(out, tuple(key), vals)
    return out


def _scatter_abstract(name):
    def rule(operand, indices, updates, *, dimension_numbers, mode, indices_are_sorted,
             unique_indices):
        dn = dimension_numbers
        _check_indices_dtype(name, indices)
        if indices.ndim < 1:
            raise TypeError(f"{name} indices must have at least one axis (the index vector "
                            f"axis, last), got {indices.str_short()}")
        if updates.dtype != operand.dtype:
            raise TypeError(f"{name} updates dtype {dtypes.short_name(updates.dtype)} must equal "
                            f"the operand's {dtypes.short_name(operand.dtype)}")
        if name in ("scatter_add", "scatter_mul") and operand.dtype == dtypes.bool_:
            raise TypeError(f"{name} does not accept dtype bool (as lax): use scatter_max / "
                            f"scatter_min for logical or / and")
        nb = indices.ndim - 1
        _check_dims(name, "update_window_dims", dn.update_window_dims, updates.ndim)
        _check_dims(name, "inserted_window_dims", dn.inserted_window_dims, operand.ndim)
        _check_dims(name, "operand_batching_dims", dn.operand_batching_dims, operand.ndim)
        _check_dims(name, "scatter_dims_to_operand_dims", dn.scatter_dims_to_operand_dims,
                    operand.ndim, sorted_=False)
        _check_dims(name, "scatter_indices_batching_dims", dn.scatter_indices_batching_dims, nb,
                    sorted_=False)
        if len(dn.scatter_dims_to_operand_dims) != indices.shape[-1]:
            raise TypeError(f"scatter_dims_to_operand_dims {dn.scatter_dims_to_operand_dims} "
                            f"must have one entry per index vector component "
                            f"({indices.shape[-1]} in {indices.str_short()})")
        if set(dn.inserted_window_dims) & set(dn.operand_batching_dims) or \
                set(dn.scatter_dims_to_operand_dims) & set(dn.operand_batching_dims):
            raise TypeError("operand_batching_dims must be disjoint from "
                            "inserted_window_dims and scatter_dims_to_operand_dims")
        if len(dn.operand_batching_dims) != len(dn.scatter_indices_batching_dims):
            raise TypeError("operand_batching_dims and scatter_indices_batching_dims "
                            "must have the same length")
        for od, idim in zip(dn.operand_batching_dims, dn.scatter_indices_batching_dims):
            if operand.shape[od] != indices.shape[idim]:
                raise TypeError(f"batching axes must have equal sizes, got operand "
                                f"{operand.str_short()} axis {od} and indices "
                                f"{indices.str_short()} axis {idim}")
        if operand.ndim != len(dn.update_window_dims) + len(dn.inserted_window_dims) + \
                len(dn.operand_batching_dims):
            raise TypeError(f"every operand axis must be a window, inserted or batching "
                            f"axis: operand {operand.str_short()}, {dn}")
        if updates.ndim != len(dn.update_window_dims) + nb:
            raise TypeError(f"updates {updates.str_short()} must have "
                            f"{len(dn.update_window_dims) + nb} axes (window axes + the batch "
                            f"axes of indices {indices.str_short()})")
        scatter_pos = [i for i in range(updates.ndim) if i not in dn.update_window_dims]
        if tuple(updates.shape[i] for i in scatter_pos) != indices.shape[:-1]:
            raise TypeError(f"the scatter axes of updates {updates.str_short()} must match "
                            f"the batch axes of indices {indices.str_short()}")
        win = _scatter_window_sizes(operand.ndim, dn, updates.shape)
        for d, (k, n) in enumerate(zip(win, operand.shape)):
            if k > n:
                raise TypeError(f"window size {k} of operand axis {d} exceeds its size {n}")
        if mode not in (CLIP, FILL_OR_DROP, PROMISE_IN_BOUNDS):
            raise TypeError(f"unknown mode {mode!r}")
        return ShapedArray(operand.shape, operand.dtype, operand.weak_type)
    return rule


def _scatter_batch(prim):
    def rule(args, dims, *, dimension_numbers, **params):
        operand, indices, updates = args
        od, idd, ud = dims
        dn = dimension_numbers
        size = batching.axis_size_of(args, dims)
        operand = batching.bdim_at_front(operand, od, size)
        updates = batching.bdim_at_front(updates, ud, size)
        if idd is None:
            # shared indices: the batch axis is one more window axis
            dn2 = ScatterDimensionNumbers(
                update_window_dims=(0,) + _shift(dn.update_window_dims),
                inserted_window_dims=_shift(dn.inserted_window_dims),
                scatter_dims_to_operand_dims=_shift(dn.scatter_dims_to_operand_dims),
                operand_batching_dims=_shift(dn.operand_batching_dims),
                scatter_indices_batching_dims=dn.scatter_indices_batching_dims)
            return prim.bind(operand, indices, updates, dimension_numbers=dn2, **params), 0
        indices = batching.moveaxis(indices, idd, 0)
        dn2 = ScatterDimensionNumbers(
            update_window_dims=_shift(dn.update_window_dims),
            inserted_window_dims=_shift(dn.inserted_window_dims),
            scatter_dims_to_operand_dims=_shift(dn.scatter_dims_to_operand_dims),
            operand_batching_dims=(0,) + _shift(dn.operand_batching_dims),
            scatter_indices_batching_dims=(0,) + _shift(dn.scatter_indices_batching_dims))
        return prim.bind(operand, indices, updates, dimension_numbers=dn2, **params), 0
    return rule


def _scatter_lower(kind):
    def rule(ctx, operand, indices, updates, *, dimension_numbers, mode, indices_are_sorted,
             unique_indices):
        aop, aidx, aupd = ctx.avals_in
        dn = dimension_numbers
        aout = ctx.avals_out[0]
        no_index = aidx.shape[-1] == 0
        if no_index:
            # XLA mishandles empty index vectors (only one update lands, and a
            # rank-0 operand does not compile): scatter into a new leading
            # axis of size 1, inserted, at index 0
            aop = ShapedArray((1,) + aop.shape, aop.dtype)
            aout = aop
            aidx = ShapedArray(aidx.shape[:-1] + (1,), aidx.dtype)
            operand = lowering.result(hlo.ReshapeOp(lowering.ir_type(aop), operand))
            indices = _i_const(0, aidx.dtype, aidx.shape)
            dn = ScatterDimensionNumbers(
                update_window_dims=dn.update_window_dims,
                inserted_window_dims=(0,) + _shift(dn.inserted_window_dims),
                scatter_dims_to_operand_dims=(0,),
                operand_batching_dims=_shift(dn.operand_batching_dims),
                scatter_indices_batching_dims=dn.scatter_indices_batching_dims)
        if mode == CLIP:
            win = _scatter_window_sizes(aop.ndim, dn, aupd.shape)
            indices = _clamp_indices_ir(indices, aidx, [aop.shape[d] - win[d]
                                                       for d in dn.scatter_dims_to_operand_dims])
        attr = hlo.ScatterDimensionNumbers.get(
            update_window_dims=list(dn.update_window_dims),
            inserted_window_dims=list(dn.inserted_window_dims),
            input_batching_dims=list(dn.operand_batching_dims),
            scatter_indices_batching_dims=list(dn.scatter_indices_batching_dims),
            scattered_dims_to_operand_dims=list(dn.scatter_dims_to_operand_dims),
            index_vector_dim=aidx.ndim - 1)
        op = hlo.ScatterOp([lowering.ir_type(aout)], [operand], indices, [updates],
                           attr, indices_are_sorted=bool(indices_are_sorted),
                           unique_indices=bool(unique_indices))
        # the update computation: combine(current, update)
        lowering.make_reducer_region(kind if kind else (lambda a, b: b), aop.dtype,
                                     op.update_computation)
        out = op.results[0]
        if no_index:
            out = lowering.result(hlo.ReshapeOp(lowering.ir_type(ctx.avals_out[0]), out))
        return [out]
    return rule


def _scatter_prim(name, kind, linear):
    p = Primitive(name, impl=_scatter_impl(name), abstract_eval=_scatter_abstract(name),
                  lower=_scatter_lower(kind), linear=linear)
    p.batch = _scatter_batch(p)
    _operand_weak_eager(p)
    return p


scatter_p = _scatter_prim("scatter", None, False)
scatter_add_p = _scatter_prim("scatter_add", "add", True)
scatter_mul_p = _scatter_prim("scatter_mul", "mul", True)
scatter_min_p = _scatter_prim("scatter_min", "min", False)
scatter_max_p = _scatter_prim("scatter_max", "max", False)


def _params(dn, mode, indices_are_sorted, unique_indices):
    return dict(dimension_numbers=dn, mode=mode, indices_are_sorted=indices_are_sorted,
                unique_indices=unique_indices)


def _gather_back(x, indices, dn, updates_shape, mode, indices_are_sorted=False,
                 unique_indices=False):
    """For every update element, the value of x at its scatter target."""
    gdn, sizes = _inverse_gather(dn, get_aval(x).ndim, updates_shape)
    gmode, fill = _gather_mode_reading_scatter(mode)
    return gather_p.bind(x, indices, dimension_numbers=gdn, slice_sizes=sizes, mode=gmode,
                         fill_value=fill, indices_are_sorted=indices_are_sorted,
                         unique_indices=unique_indices)


def _zeros_of(x, dtype=None):
    a = get_aval(x)
    return shapes.full(a.shape, 0, a.dtype if dtype is None else dtype)


def _ones_of(x, dtype=None):
    a = get_aval(x)
    return shapes.full(a.shape, 1, a.dtype if dtype is None else dtype)


# ---- scatter_add: linear in (operand, updates)


def _scatter_add_jvp(primals, tangents, **params):
    operand, indices, updates = primals
    t_op, _, t_up = tangents
    out = scatter_add_p.bind(operand, indices, updates, **params)
    if type(t_op) is Zero and type(t_up) is Zero:
        return out, Zero.like(out)
    return out, scatter_add_p.bind(ad.instantiate(t_op), indices, ad.instantiate(t_up), **params)


def _scatter_add_transpose(ct, operand, indices, updates, *, dimension_numbers, mode,
                           indices_are_sorted, unique_indices):
    if type(ct) is Zero:
        return [None, None, None]
    ct_op = ct if is_undefined(operand) else None
    ct_up = None
    if is_undefined(updates):
        ct_up = _gather_back(ct, indices, dimension_numbers, updates.aval.shape, mode,
                             indices_are_sorted=indices_are_sorted, unique_indices=unique_indices)
    return [ct_op, None, ct_up]


scatter_add_p.jvp = _scatter_add_jvp
scatter_add_p.transpose = _scatter_add_transpose


# ---- scatter (set)


def _scatter_jvp(primals, tangents, *, dimension_numbers, mode, indices_are_sorted,
                 unique_indices):
    operand, indices, updates = primals
    t_op, _, t_up = tangents
    dn = dimension_numbers
    params = _params(dn, mode, indices_are_sorted, unique_indices)
    if type(t_op) is Zero and type(t_up) is Zero:
        out = scatter_p.bind(operand, indices, updates, **params)
        return out, Zero.like(out)
    t_op = ad.instantiate(t_op)
    t_up = ad.instantiate(t_up)
    hints = dict(indices_are_sorted=indices_are_sorted, unique_indices=unique_indices)
    if unique_indices:
        # each target gets at most one update: keep = "not overwritten"
        keep = scatter_p.bind(_ones_of(operand, dtypes.bool_), indices,
                              _zeros_of(updates, dtypes.bool_), **params)
        out = scatter_p.bind(operand, indices, updates, **params)
        t_kept = ew.select(keep, _zeros_of(t_op), t_op)
        return out, scatter_add_p.bind(t_kept, indices, t_up, **params)
    # Repeated targets: which update wins is up to the backend. Scatter a
    # distinct id per update, read the ids back, and keep only the winners;
    # then value and tangent are both scatter-adds of masked inputs (as JAX).
    ua = get_aval(updates)
    ids_shape = tuple(1 if i in dn.update_window_dims else s for i, s in enumerate(ua.shape))
    n_ids = int(np.prod(ids_shape, dtype=np.int64))
    id_dt = dtypes.int32 if n_ids < 2 ** 31 - 1 else dtypes.int64
    ids = shapes.iota_p.bind(dtype=id_dt, shape=(n_ids,), dimension=0)
    ids = ew.add(shapes.reshape(ids, ids_shape), np.ones((), id_dt)[()])
    ids = shapes.broadcast_in_dim_p.bind(
        ids, shape=ua.shape, broadcast_dimensions=tuple(range(ua.ndim))) if ids_shape != ua.shape else ids
    scattered = scatter_p.bind(_zeros_of(operand, id_dt), indices, ids, **params)
    gathered = _gather_back(scattered, indices, dn, ua.shape, mode, **hints)
    won = ew.eq_p.bind(ids, gathered)
    kept = ew.eq_p.bind(scattered, np.zeros((), id_dt)[()])
    out = scatter_add_p.bind(ew.select(kept, _zeros_of(operand), operand), indices,
                             ew.select(won, _zeros_of(updates), updates), **params)
    tan = scatter_add_p.bind(ew.select(kept, _zeros_of(t_op), t_op), indices,
                             ew.select(won, _zeros_of(t_up), t_up), **params)
    return out, tan


scatter_p.jvp = _scatter_jvp
scatter_p.not_linear_reason = "scatter overwrites its operand"


# ---- scatter_mul: linear in the operand (and in the updates when targets are unique)


def _scatter_mul_jvp(primals, tangents, *, dimension_numbers, mode, indices_are_sorted,
                     unique_indices):
    operand, indices, updates = primals
    t_op, _, t_up = tangents
    dn = dimension_numbers
    params = _params(dn, mode, indices_are_sorted, unique_indices)
    hints = dict(indices_are_sorted=indices_are_sorted, unique_indices=unique_indices)
    out = scatter_mul_p.bind(operand, indices, updates, **params)
    if type(t_op) is Zero and type(t_up) is Zero:
        return out, Zero.like(out)
    tan = None
    if type(t_op) is not Zero:
        tan = scatter_mul_p.bind(t_op, indices, updates, **params)
    if type(t_up) is not Zero:
        if unique_indices:
            coef = t_up
        else:
            # d out[p] = x[p] * sum_j t_j * prod_{k != j} u_k over the updates
            # j hitting p. The exclusive product, without dividing by zero:
            # count the zeros hitting p and multiply the non-zero updates.
            ua = get_aval(updates)
            zero, one = np.zeros((), ua.dtype)[()], np.ones((), ua.dtype)[()]
            nz = ew.ne_p.bind(updates, zero)
            safe = ew.select(nz, _ones_of(updates), updates)
            n_zero = scatter_add_p.bind(_zeros_of(operand), indices,
                                        ew.select(nz, _ones_of(updates), _zeros_of(updates)), **params)
            prod_nz = scatter_mul_p.bind(_ones_of(operand), indices, safe, **params)
            n_zero = _gather_back(n_zero, indices, dn, ua.shape, mode, **hints)
            prod_nz = _gather_back(prod_nz, indices, dn, ua.shape, mode, **hints)
            no_zero = ew.eq_p.bind(n_zero, zero)
            one_zero = ew.eq_p.bind(n_zero, one)
            excl = ew.select(nz, ew.select(one_zero, _zeros_of(updates), prod_nz),
                             ew.select(no_zero, _zeros_of(updates), ew.div(prod_nz, safe)))
            coef = ew.mul(t_up, excl)
        term = ew.mul(operand, scatter_add_p.bind(_zeros_of(operand), indices, coef, **params))
        tan = term if tan is None else ew.add(tan, term)
    return out, tan


def _scatter_mul_transpose(ct, operand, indices, updates, *, dimension_numbers, mode,
                           indices_are_sorted, unique_indices):
    if type(ct) is Zero:
        return [None, None, None]
    params = _params(dimension_numbers, mode, indices_are_sorted, unique_indices)
    if is_undefined(operand) and is_undefined(updates):
        raise TypeError("scatter_mul is not linear in its operand and updates jointly")
    if is_undefined(operand):
        return [scatter_mul_p.bind(ct, indices, updates, **params), None, None]
    if not unique_indices:
        raise TypeError("scatter_mul is linear in its updates only with unique_indices=True "
                        "(repeated targets multiply updates together)")
    ct_up = _gather_back(ew.mul(ct, operand), indices, dimension_numbers, updates.aval.shape,
                         mode, indices_are_sorted=indices_are_sorted, unique_indices=True)
    return [None, None, ct_up]


scatter_mul_p.jvp = _scatter_mul_jvp
scatter_mul_p.transpose = _scatter_mul_transpose


# ---- scatter_min / scatter_max: ties share the derivative equally (as JAX)


def _scatter_extremal_jvp(prim):
    def jvp(primals, tangents, *, dimension_numbers, mode, indices_are_sorted, unique_indices):
        operand, indices, updates = primals
        t_op, _, t_up = tangents
        dn = dimension_numbers
        params = _params(dn, mode, indices_are_sorted, unique_indices)
        hints = dict(indices_are_sorted=indices_are_sorted, unique_indices=unique_indices)
        out = prim.bind(operand, indices, updates, **params)
        if type(t_op) is Zero and type(t_up) is Zero:
            return out, Zero.like(out)
        t_op, t_up = ad.instantiate(t_op), ad.instantiate(t_up)
        ushape = get_aval(updates).shape

        def back(x):
            return _gather_back(x, indices, dn, ushape, mode, **hints)

        initial = back(operand)
        target = back(out)
        won = ew.eq_p.bind(updates, target)        # this update is the extremum
        retained = ew.eq_p.bind(initial, target)   # the operand value ties with it
        zeros_u, ones_u = _zeros_of(updates), _ones_of(updates)
        n_won = back(scatter_add_p.bind(_zeros_of(operand), indices,
                                        ew.select(won, zeros_u, ones_u), **params))
        n_refs = back(scatter_add_p.bind(_zeros_of(operand), indices, ones_u, **params))
        one = np.ones((), get_aval(updates).dtype)[()]
        share_ret = ew.div(ones_u, ew.add(n_won, one))   # 1 / (winners + operand)
        # (denominators made safe where the value is unused: losers, dropped updates)
        share = ew.select(retained, ew.div(ones_u, ew.select(won, ones_u, n_won)), share_ret)
        upd_coef = ew.select(won, zeros_u, share)
        op_share = ew.select(retained, zeros_u, share_ret)
        # the operand's tangent at p is scaled to op_share, spread over the refs
        n_refs = ew.select(ew.eq_p.bind(n_refs, np.zeros((), get_aval(updates).dtype)[()]),
                           n_refs, ones_u)
        op_coef = ew.div(ew.sub(op_share, ones_u), n_refs)
        t_updates = ew.add(ew.mul(back(t_op), op_coef), ew.mul(t_up, upd_coef))
        return out, scatter_add_p.bind(t_op, indices, t_updates, **params)
    return jvp


scatter_min_p.jvp = _scatter_extremal_jvp(scatter_min_p)
scatter_max_p.jvp = _scatter_extremal_jvp(scatter_max_p)


# --------------------------------------------------------------------------
# Python-level wrappers (canonical params; used by tracegrad.numpy and rules)


def wrap_negative_index(i, size):
    """i + size where i < 0 (NumPy's negative indices), for static or traced i."""
    if isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_)):
        return i + size if i < 0 else i
    a = get_aval(i)
    if a.dtype.kind == "u":
        return i
    n = np.asarray(size, a.dtype)[()]
    return ew.select(ew.lt_p.bind(i, np.zeros((), a.dtype)[()]), i, ew.add(i, n))


def _start_indices(operand, start_indices, allow_negative_indices):
    shape = get_aval(operand).shape
    if len(start_indices) != len(shape):
        raise TypeError(f"expected {len(shape)} start indices for an operand of shape {shape}, "
                        f"got {len(start_indices)}")
    if allow_negative_indices:
        start_indices = [wrap_negative_index(i, n) for i, n in zip(start_indices, shape)]
    # one index dtype for all (XLA requires it): the widest of them
    avals = [get_aval(i) for i in start_indices]
    if any(not _is_int(a.dtype) for a in avals):
        raise TypeError("start indices must be integers, got "
                        f"{', '.join(a.str_short() for a in avals)}")
    strong = [a.dtype for a in avals if not a.weak_type]
    dt = np.result_type(*strong) if strong else dtypes.int64
    return [ew.convert(i, dt) if a.dtype != dt or a.weak_type else i
            for i, a in zip(start_indices, avals)]


def dynamic_slice(operand, start_indices, slice_sizes, *, allow_negative_indices=True):
    """lax.dynamic_slice: negative starts count from the end (when allowed),
    then starts are clamped so the window is in range."""
    starts = _start_indices(operand, list(start_indices), allow_negative_indices)
    return dynamic_slice_p.bind(operand, *starts, slice_sizes=tuple(int(k) for k in slice_sizes))


def dynamic_update_slice(operand, update, start_indices, *, allow_negative_indices=True):
    starts = _start_indices(operand, list(start_indices), allow_negative_indices)
    return dynamic_update_slice_p.bind(operand, update, *starts)


def gather(operand, indices, dimension_numbers, slice_sizes, *, mode=None, fill_value=None,
           indices_are_sorted=False, unique_indices=False):
    """lax.gather; mode None means "promise_in_bounds" (as JAX)."""
    mode = canonical_mode(mode, PROMISE_IN_BOUNDS)
    if mode != FILL_OR_DROP:
        fill_value = None
    elif fill_value is not None:
        fill_value = np.asarray(fill_value).item()
    return gather_p.bind(operand, indices, dimension_numbers=_tuples(dimension_numbers),
                         slice_sizes=tuple(int(k) for k in slice_sizes), mode=mode,
                         fill_value=fill_value, indices_are_sorted=bool(indices_are_sorted),
                         unique_indices=bool(unique_indices))


def _scatter_fn(prim):
    def fn(operand, indices, updates, dimension_numbers, *, mode=None, indices_are_sorted=False,
           unique_indices=False):
        """lax scatter; mode None means "fill_or_drop" (as JAX)."""
        return prim.bind(operand, indices, updates, dimension_numbers=_tuples(dimension_numbers),
                         mode=canonical_mode(mode, FILL_OR_DROP),
                         indices_are_sorted=bool(indices_are_sorted),
                         unique_indices=bool(unique_indices))
    fn.__name__ = prim.name
    return fn


scatter = _scatter_fn(scatter_p)
scatter_add = _scatter_fn(scatter_add_p)
scatter_mul = _scatter_fn(scatter_mul_p)
scatter_min = _scatter_fn(scatter_min_p)
scatter_max = _scatter_fn(scatter_max_p)


def dynamic_slice_in_dim(operand, start_index, slice_size, axis=0, *,
                         allow_negative_indices=True):
    """dynamic_slice along one axis (the others whole)."""
    shape = get_aval(operand).shape
    axis = axis % len(shape)
    starts = [np.zeros((), get_aval(start_index).dtype)[()]] * len(shape)
    starts[axis] = start_index
    sizes = list(shape)
    sizes[axis] = slice_size
    return dynamic_slice(operand, starts, sizes, allow_negative_indices=allow_negative_indices)


def dynamic_index_in_dim(operand, index, axis=0, keepdims=True, *, allow_negative_indices=True):
    """operand[..., index, ...] along `axis` (kept as size 1 when keepdims)."""
    out = dynamic_slice_in_dim(operand, index, 1, axis,
                               allow_negative_indices=allow_negative_indices)
    if keepdims:
        return out
    return shapes.squeeze_p.bind(out, dimensions=(axis % get_aval(operand).ndim,))


def dynamic_update_slice_in_dim(operand, update, start_index, axis, *,
                                allow_negative_indices=True):
    """dynamic_update_slice at `start_index` along one axis (0 elsewhere)."""
    nd = get_aval(operand).ndim
    starts = [np.zeros((), get_aval(start_index).dtype)[()]] * nd
    starts[axis % nd] = start_index
    return dynamic_update_slice(operand, update, starts,
                                allow_negative_indices=allow_negative_indices)


def dynamic_update_index_in_dim(operand, update, index, axis, *, allow_negative_indices=True):
    """Write `update` (without or with the size-1 axis) at `index` along `axis`."""
    nd = get_aval(operand).ndim
    ua = get_aval(update)
    if ua.ndim == nd - 1:
        shp = list(ua.shape)
        shp.insert(axis % nd, 1)
        update = shapes.reshape(update, tuple(shp))
    return dynamic_update_slice_in_dim(operand, update, index, axis,
                                       allow_negative_indices=allow_negative_indices)
