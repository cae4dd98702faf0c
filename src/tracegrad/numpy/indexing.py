"""tracegrad.numpy: indexing. `x[idx]`, `x.at[idx].set/add/...`, take,
take_along_axis, put_along_axis, nonzero, argwhere, flatnonzero.

`x[idx]` follows NumPy's indexing rules with JAX's choices:
* static ints, slices, None and Ellipsis lower to slice/rev/squeeze/reshape;
* scalar integer arrays (possibly traced) lower to dynamic_slice;
* everything else (integer arrays, strided slices mixed with them) is one
  gather. Out-of-bounds integer indices are clamped (as JAX), negative ones
  count from the end;
* boolean masks need a concrete value (their result shape depends on it);
* a list as the whole index is an error (as JAX): use a tuple or an array.

`x.at[idx].op(v)` is a scatter built from the same index analysis; out of
bounds updates are dropped by default (mode="drop").

The index analysis is pure Python; for the common indices it is cached per
index structure (x's shape and the index's ints, slices, None, Ellipsis, and
the shapes/dtypes of concrete integer arrays), so eager x[idx] only
normalizes the index values and binds the primitives.
"""
from __future__ import annotations

import operator
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from .. import core, dtypes
from ..core import Array, Tracer, get_aval
from ..primitives import elementwise as ew
from ..primitives import indexing as ix
from ..primitives import shapes as S
from ._util import asarray_value, check_axis, dtype_weak, promote

__all__ = ["take", "take_along_axis", "put_along_axis", "nonzero", "argwhere", "flatnonzero"]

# --------------------------------------------------------------------------
# Parsing an index expression

_NONE, _ELLIPSIS, _SLICE, _INT, _BOOL, _ARRAY = "none", "ellipsis", "slice", "int", "bool", "array"


class _Entry(NamedTuple):
    kind: str
    value: object
    axes: tuple  # the axes of x it consumes


def _dtype_name(dt):
    return dtypes.short_name(dt) if dt != dtypes.bool_ else "bool"


def _index_kind(i, pos):
    if i is None:
        return _NONE, None
    if i is Ellipsis:
        return _ELLIPSIS, None
    if isinstance(i, slice):
        return _SLICE, i
    if isinstance(i, (bool, np.bool_)):
        return _BOOL, bool(i)
    if isinstance(i, (int, np.integer)):
        return _INT, int(i)
    if isinstance(i, str):
        raise TypeError(f"tracegrad does not support string indexing; got {i!r}")
    if isinstance(i, (list, tuple)):
        i = asarray_value(i) if len(i) else Array(np.zeros((0,), dtypes.int64))
    if isinstance(i, (Array, Tracer, np.ndarray)):
        dt = get_aval(i).dtype
        if dt == dtypes.bool_:
            return _BOOL, i
        if dt.kind in "iu":
            return _ARRAY, i
        raise TypeError(f"Indexer must have integer or boolean type, got indexer with type "
                        f"{_dtype_name(dt)} at position {pos}")
    if isinstance(i, (float, complex, np.generic)):
        raise TypeError(f"Indexer must have integer or boolean type, got indexer with type "
                        f"{np.dtype(type(i)).name} at position {pos}, indexer value {i!r}")
    raise IndexError("only integers, slices (`:`), ellipsis (`...`), newaxis (`None`) and "
                     f"integer or boolean arrays are valid indices; got {i!r}")


def _as_tuple(idx):
    if isinstance(idx, tuple):
        return idx
    if isinstance(idx, list):
        raise TypeError("Using a non-tuple sequence for multidimensional indexing is not "
                        "allowed (as in JAX): use `x[tuple(seq)]` to index several axes, or "
                        "`x[tnp.array(seq)]` to index with an integer array.")
    return (idx,)


def _parse(idx, shape):
    """Index expression -> list of _Entry with the axes each one consumes."""
    items = [_index_kind(i, pos) for pos, i in enumerate(_as_tuple(idx))]
    consumed = []
    for kind, v in items:
        if kind in (_NONE, _ELLIPSIS):
            consumed.append(0)
        elif kind == _BOOL:
            consumed.append(0 if isinstance(v, bool) else get_aval(v).ndim)
        else:
            consumed.append(1)
    ellipses = [n for n, (k, _) in enumerate(items) if k == _ELLIPSIS]
    if len(ellipses) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    total = sum(consumed)
    if total > len(shape):
        raise IndexError(f"Too many indices: array is {len(shape)}-dimensional, but {total} "
                         f"were indexed")
    if ellipses:
        consumed[ellipses[0]] = len(shape) - total
    out, ax = [], 0
    for (kind, v), n in zip(items, consumed):
        out.append(_Entry(kind, v, tuple(range(ax, ax + n))))
        ax += n
    return out


def _concrete_mask(m, pos):
    if isinstance(m, Tracer):
        v = m.to_concrete()
        if v is None:
            raise core.ConcretizationError(
                f"Boolean mask index ({m.aval.str_short()}) at position {pos} is a traced "
                f"value, at {core.user_frame()}.\n  The shape of x[mask] depends on the "
                f"values of the mask, so it cannot be traced (jit/vmap/grad). Use "
                f"tnp.where(mask, x, fill) to keep the shape, e.g. "
                f"tnp.sum(tnp.where(mask, x, 0)) instead of tnp.sum(x[mask]).")
        m = v
    return np.asarray(m)


def _expand_bool_masks(entries, shape):
    """Concrete boolean masks -> the integer arrays of their nonzero positions
    (scalar booleans stay: they add an axis)."""
    out = []
    for pos, e in enumerate(entries):
        if e.kind != _BOOL or isinstance(e.value, bool):
            out.append(e)
            continue
        m = _concrete_mask(e.value, pos)
        expected = tuple(shape[a] for a in e.axes)
        if m.ndim == 0:
            out.append(_Entry(_BOOL, bool(m), ()))
            continue
        if any(s not in (0, t) for s, t in zip(m.shape, expected)):
            raise IndexError(f"boolean index did not match shape of indexed array in index "
                             f"{pos}: got {m.shape}, expected {expected}")
        for arr, a in zip(np.nonzero(m), e.axes):
            out.append(_Entry(_ARRAY, arr.astype(dtypes.int64), (a,)))
    return out


def _expand_scalar_bools(x, entries):
    """x[..., True, ...] adds an axis of length 1 (False: length 0): insert a
    size-1 axis into x and index it with arange(1) or arange(0)."""
    if not any(e.kind == _BOOL for e in entries):
        return x, entries, ()
    shape = list(get_aval(x).shape)
    out, ax, bool_axes = [], 0, []
    for e in entries:
        n = len(e.axes)
        if e.kind == _BOOL:
            shape.insert(ax, 1)
            bool_axes.append(ax)
            out.append(_Entry(_ARRAY, np.arange(int(e.value), dtype=dtypes.int64), (ax,)))
            ax += 1
        else:
            out.append(e._replace(axes=tuple(range(ax, ax + n))))
            ax += n
    return S.reshape(x, tuple(shape)), out, tuple(bool_axes)


def _expand_ellipsis(entries, ndim):
    """Ellipsis and the implicit trailing axes -> full slices."""
    out = []
    used = 0
    for e in entries:
        used += len(e.axes)
        if e.kind == _ELLIPSIS:
            out += [_Entry(_SLICE, slice(None), (a,)) for a in e.axes]
        else:
            out.append(e)
    out += [_Entry(_SLICE, slice(None), (a,)) for a in range(used, ndim)]
    return out


def _static_int(v, what):
    if v is None:
        return None
    if isinstance(v, Tracer):
        c = v.to_concrete()
        if c is None:
            raise IndexError(f"Slice entries must be static integers; got a traced {what} "
                             f"({v.aval.str_short()}) at {core.user_frame()}.\n  Use a scalar "
                             f"index x[i] with a traced i, or tnp.take / x.at[...] with an "
                             f"index array, or a dynamic slice with a static size.")
        v = c
    try:
        return operator.index(v)
    except TypeError:
        raise TypeError(f"slice {what} must be an integer or None, got {v!r}") from None


def _slice_indices(sl, n):
    start = _static_int(sl.start, "start")
    stop = _static_int(sl.stop, "stop")
    step = _static_int(sl.step, "step")
    if step == 0:
        raise ValueError("slice step cannot be zero")
    return slice(start, stop, step).indices(n)


def _index_dtype(shape):
    return dtypes.int64 if any(d > 2 ** 31 - 1 for d in shape) else dtypes.int32


def _is_concrete(v):
    return not isinstance(v, Tracer)


_INT_BOUNDS = {}


def _int_bounds(dt):
    b = _INT_BOUNDS.get(dt)
    if b is None:
        info = np.iinfo(dt)
        b = _INT_BOUNDS[dt] = (int(info.min), int(info.max))
    return b


def _normalize_concrete(a, src, n, dt, wrap):
    """_normalize_array of a NumPy value `a` of (aval) dtype `src`. The
    min/max checks skip the passes that would change nothing."""
    if a.dtype.kind not in "iu":  # NumPy's object array of a Python int beyond 64 bits
        raise OverflowError(f"Python int {a} too large to convert to int64 (as an index)")
    if src.kind == "i":
        lo, hi = _int_bounds(a.dtype)
        mn = a.min() if a.size else 0
        # (an axis length that does not fit the index dtype: NumPy raises, as JAX)
        if wrap and (mn < 0 or not lo <= n <= hi):
            a = np.where(a < 0, a + n, a)
            mn = None
        # out-of-range values saturate (only a wider signed type can have them)
        if a.dtype.itemsize > dt.itemsize and a.size:
            dlo, dhi = _int_bounds(dt)
            if mn is None or mn < dlo or a.max() > dhi:
                a = np.minimum(np.maximum(a, dlo), dhi)
    a = a.astype(dt)
    return a[()] if a.ndim == 0 else a  # a NumPy scalar: a jaxpr literal


def _normalize_array(v, n, dt, wrap):
    """An integer index array/scalar -> index dtype dt, negatives counted from
    the end (when `wrap`). Concrete values are computed with NumPy."""
    src = get_aval(v).dtype
    if _is_concrete(v):
        return _normalize_concrete(np.asarray(v), src, n, dt, wrap)
    v = ew.convert(v, dt)
    if wrap and src.kind == "i":
        v = ix.wrap_negative_index(v, n)
    return v


# --------------------------------------------------------------------------
# Index analysis -> gather (also used, transposed, for scatters)


class _GatherPlan(NamedTuple):
    slice_shape: tuple       # shape of x[idx]
    gather_slice_sizes: tuple
    indices: object          # np.ndarray or traced/Array int array, last axis = vector
    dnums: ix.GatherDimensionNumbers
    unique: bool             # no advanced indices: the windows are distinct
    sorted: bool             # ... and in increasing order (no reversed slice)
    newaxis_dims: tuple      # axes of slice_shape added by None


def _advanced_contiguous(entries):
    """Are the integer/array indices adjacent in the index expression?"""
    pos = [n for n, e in enumerate(entries) if e.kind in (_ARRAY, _INT)]
    return all(b - a == 1 for a, b in zip(pos, pos[1:]))


def _broadcast_index_arrays(arrs):
    shapes_ = [get_aval(a).shape for a in arrs]
    try:
        shape = tuple(np.broadcast_shapes(*shapes_))
    except ValueError:
        raise IndexError("shape mismatch: indexing arrays could not be broadcast together "
                         f"with shapes {' '.join(map(str, shapes_))}") from None
    out = []
    for a in arrs:
        if _is_concrete(a):
            out.append(np.broadcast_to(np.asarray(a), shape))
        else:
            out.append(S.broadcast_to(a, shape))
    return out, shape


def _gather_plan(shape, entries, wrap, contiguous):
    """`contiguous`: the advanced indices are adjacent (then their axes
    replace theirs in place; otherwise they go first), as NumPy."""
    entries = _expand_ellipsis(entries, len(shape))
    reversed_slice = False
    dt = _index_dtype(shape)
    advanced = any(e.kind == _ARRAY and get_aval(e.value).ndim > 0 for e in entries)
    adv_pos = [n for n, e in enumerate(entries) if advanced and e.kind in (_ARRAY, _INT)]

    offset_dims, collapsed, start_index_map = [], [], []
    pieces = []          # (index array, first axis in the index batch shape)
    batch_shape = []     # shape of the gather indices without the vector axis
    slice_shape, newaxis_dims, gsizes = [], [], []
    x_axis = y_axis = cy_axis = 0  # y: with None axes, cy: without them

    for pos, e in enumerate(entries):
        if adv_pos and pos == (adv_pos[0] if contiguous else 0):
            arrs = [_normalize_array(entries[p].value, shape[entries[p].axes[0]], dt, wrap)
                    for p in adv_pos]
            arrs, bshape = _broadcast_index_arrays(arrs)
            start = len(batch_shape)
            pieces += [(a, start) for a in arrs]
            batch_shape += bshape
            axes = [entries[p].axes[0] for p in adv_pos]
            start_index_map += axes
            collapsed += axes
            slice_shape += bshape
            y_axis += len(bshape)
            cy_axis += len(bshape)
        if pos in adv_pos:
            x_axis += 1
            gsizes.append(1)
            continue
        if e.kind in (_INT, _ARRAY):  # a scalar: basic indexing
            n = shape[x_axis]
            if n == 0:
                raise IndexError(f"index is out of bounds for axis {x_axis} with size 0")
            if e.kind == _INT:
                v = e.value + n if wrap and e.value < 0 else e.value
                info = np.iinfo(dt)
                v = np.asarray(min(max(v, int(info.min)), int(info.max)), dt)
            else:
                v = _normalize_array(e.value, n, dt, wrap)
            pieces.append((v, len(batch_shape)))
            collapsed.append(x_axis)
            start_index_map.append(x_axis)
            gsizes.append(1)
            x_axis += 1
        elif e.kind == _NONE:
            slice_shape.append(1)
            newaxis_dims.append(y_axis)
            y_axis += 1
        else:  # a slice
            n = shape[x_axis]
            start, stop, step = _slice_indices(e.value, n)
            size = len(range(start, stop, step))
            slice_shape.append(size)
            if step == 1:
                if size != n:  # a window starting at `start`
                    pieces.append((np.asarray(start, dt), len(batch_shape)))
                    start_index_map.append(x_axis)
                gsizes.append(size)
                offset_dims.append(cy_axis)
            else:  # one index per element (a strided or reversed slice)
                reversed_slice |= step < 0
                pieces.append((np.arange(start, stop, step).astype(dt), len(batch_shape)))
                batch_shape.append(size)
                start_index_map.append(x_axis)
                collapsed.append(x_axis)
                gsizes.append(1)
            x_axis += 1
            y_axis += 1
            cy_axis += 1

    indices = _stack_pieces(pieces, tuple(batch_shape), dt)
    dn = ix.GatherDimensionNumbers(offset_dims=tuple(offset_dims),
                                   collapsed_slice_dims=tuple(sorted(collapsed)),
                                   start_index_map=tuple(start_index_map))
    return _GatherPlan(tuple(slice_shape), tuple(gsizes), indices, dn, not advanced,
                       not advanced and not reversed_slice, tuple(newaxis_dims))


def _stack_pieces(pieces, batch_shape, dt):
    """Broadcast every index piece into batch_shape (its axes starting at its
    recorded position) and stack them along a new last axis."""
    full = batch_shape + (1,)
    if not pieces:
        return np.zeros((0,), dt)
    if all(_is_concrete(a) for a, _ in pieces):
        cols = []
        for a, start in pieces:
            a = np.asarray(a)
            shp = [1] * len(full)
            shp[start:start + a.ndim] = a.shape
            cols.append(np.broadcast_to(a.reshape(shp), full))
        return np.concatenate(cols, axis=-1)
    cols = []
    for a, start in pieces:
        nd = get_aval(a).ndim
        if _is_concrete(a):
            a = Array(np.asarray(a))
        cols.append(S.broadcast_in_dim_p.bind(a, shape=full,
                                              broadcast_dimensions=tuple(range(start, start + nd))))
    return S.concatenate(cols, len(full) - 1)


# --------------------------------------------------------------------------
# x[idx]


def _zeros_like_shape(x, shape):
    dt, weak = dtype_weak(x)
    return ew.convert(S.full(tuple(shape), 0, dt), dt, weak)


def _with_newaxes(y, newaxis_dims):
    if not newaxis_dims:
        return y
    shp = list(get_aval(y).shape)
    for d in sorted(newaxis_dims):
        shp.insert(d, 1)
    return S.reshape(y, tuple(shp))


class _SlicePlan(NamedTuple):
    """x[idx] as slice (or dynamic_slice) -> rev -> squeeze -> new axes."""
    dynamic: bool
    starts: tuple          # ints; for dynamic, index values where arrays index
    sizes: tuple
    limits: tuple          # (static) the slice's limit indices
    strides: tuple
    rev_axes: tuple
    squeeze_axes: tuple
    newaxis: tuple


def _slice_plan(shape, entries, wrap):
    """The _SlicePlan of an index without integer arrays (scalar arrays
    allowed: dynamic_slice), or None if it needs a gather."""
    if any(e.kind in (_BOOL,) or (e.kind == _ARRAY and get_aval(e.value).ndim > 0)
           for e in entries):
        return None
    dynamic = any(e.kind == _ARRAY for e in entries)
    entries = _expand_ellipsis(entries, len(shape))
    if dynamic and any(e.kind == _SLICE and _static_int(e.value.step, "step") not in (None, 1, -1)
                       for e in entries):
        return None  # dynamic_slice takes unit steps only
    starts, sizes, strides, rev_axes, squeeze_axes, newaxis = [], [], [], [], [], []
    for e in entries:
        if e.kind == _NONE:
            newaxis.append(len(starts) - len(squeeze_axes) + len(newaxis))
            continue
        axis = e.axes[0]
        n = shape[axis]
        if e.kind in (_INT, _ARRAY):
            if n == 0:
                raise IndexError(f"index is out of bounds for axis {axis} with size 0")
            if e.kind == _INT:
                i = e.value + n if wrap and e.value < 0 else e.value
                starts.append(min(max(i, 0), n - 1))  # clamped, as JAX
            else:
                starts.append(e.value)
            sizes.append(1)
            strides.append(1)
            squeeze_axes.append(axis)
            continue
        start, stop, step = _slice_indices(e.value, n)
        count = len(range(start, stop, step))
        # take the elements in increasing order from `first`, reverse after
        first = 0 if count == 0 else (start if step > 0 else start + (count - 1) * step)
        starts.append(first)
        sizes.append(count)
        strides.append(abs(step))
        if step < 0:
            rev_axes.append(axis)
    limits = () if dynamic else tuple(a + (k - 1) * s + 1 if k else a
                                      for a, k, s in zip(starts, sizes, strides))
    return _SlicePlan(dynamic, tuple(starts), tuple(sizes), limits, tuple(strides),
                      tuple(rev_axes), tuple(squeeze_axes), tuple(newaxis))


def _apply_slice_plan(x, plan, wrap):
    if plan.dynamic:
        shape = get_aval(x).shape
        dt = _index_dtype(shape)
        st = []
        for s, n in zip(plan.starts, shape):
            if isinstance(s, int):
                st.append(np.asarray(s, dt)[()])
            else:
                st.append(_normalize_array(s, n, dt, wrap))
        y = ix.dynamic_slice_p.bind(x, *st, slice_sizes=plan.sizes)
    else:
        y = S.static_slice(x, plan.starts, plan.limits, plan.strides)
    if plan.rev_axes:
        y = S.rev(y, plan.rev_axes)
    if plan.squeeze_axes:
        y = S.squeeze_p.bind(y, dimensions=plan.squeeze_axes)
    return _with_newaxes(y, plan.newaxis)


def _static_or_dynamic(x, entries, wrap):
    """Try x[idx] with slice (static) or dynamic_slice; None if the index
    needs a gather."""
    plan = _slice_plan(get_aval(x).shape, entries, wrap)
    return None if plan is None else _apply_slice_plan(x, plan, wrap)


def _take(x, idx, *, mode=None, fill_value=None, indices_are_sorted=False,
          unique_indices=False, wrap_negative_indices=True):
    x = asarray_value(x)
    shape = get_aval(x).shape
    entries = _parse(idx, shape)
    gmode = ix.canonical_mode(mode, ix.PROMISE_IN_BOUNDS)
    if gmode != ix.FILL_OR_DROP:
        y = _static_or_dynamic(x, entries, wrap_negative_indices)
        if y is not None:
            return y
    entries = _expand_bool_masks(entries, shape)
    contiguous = _advanced_contiguous(entries)  # (scalar booleans do not count, as JAX)
    x, entries, _ = _expand_scalar_bools(x, entries)  # (the new axis is indexed: kept)
    shape = get_aval(x).shape
    plan = _gather_plan(shape, entries, wrap_negative_indices, contiguous)
    if fill_value is not None:
        if isinstance(fill_value, Tracer) or np.ndim(fill_value) != 0:
            raise ValueError("fill_value of an indexed get() must be a static scalar")
        fill_value = np.asarray(fill_value).item()
    if 0 in plan.slice_shape:
        return _zeros_like_shape(x, plan.slice_shape)
    y = x
    if np.shape(plan.indices) != (0,):
        y = ix.gather(x, plan.indices, plan.dnums, plan.gather_slice_sizes, mode=gmode,
                      fill_value=fill_value, indices_are_sorted=plan.sorted or indices_are_sorted,
                      unique_indices=plan.unique or unique_indices)
    return _with_newaxes(y, plan.newaxis_dims)


# ---- x[idx] with concrete integer arrays: the plan (dnums, slice sizes,
# output axes) depends only on the index's structure -- x's shape, the
# arrays' shapes and dtypes, the ints, where the `:` / None / ... sit -- so it
# is computed once per structure by _gather_plan on stand-in arrays and
# cached; each call only normalizes and stacks the index values.

_FULL = "full slice"


def _array_index_key(idx):
    """(structure key, index arrays) for an index made of concrete integer
    arrays (at least one with an axis), ints, `:`, None and Ellipsis; None for
    anything else (those take the general path)."""
    items = idx if type(idx) is tuple else (idx,)
    key, arrays, has_axis = [], [], False
    for i in items:
        t = type(i)
        if t is np.ndarray or t is Array:
            a = i if t is np.ndarray else i.value
            if a.dtype.kind not in "iu":
                return None
            key.append((a.shape, a.dtype))
            arrays.append(a)
            has_axis = has_axis or a.ndim > 0
        elif t is int and -2 ** 63 <= i < 2 ** 63:  # (an int64, as the general path reads it)
            key.append(i)
        elif i is None or i is Ellipsis:
            key.append(i)
        elif t is slice and i.start is None and i.stop is None and i.step in (None, 1):
            key.append(_FULL)
        else:
            return None
    return (tuple(key), arrays) if has_axis else None


@lru_cache(maxsize=512)
def _cached_array_plan(shape, key):
    """The structural part of _gather_plan for an _array_index_key, its index
    pieces in order, the index dtype and the indices' shape; None when the
    result is empty (the general path makes the zeros)."""
    stand_in = tuple(np.zeros(k[0], k[1]) if type(k) is tuple else
                     slice(None) if k is _FULL else k for k in key)
    entries = _parse(stand_in, shape)
    contiguous = _advanced_contiguous(entries)
    plan = _gather_plan(shape, entries, True, contiguous)
    if 0 in plan.slice_shape:
        return None
    dt = _index_dtype(shape)
    ints = [e for e in _expand_ellipsis(entries, len(shape)) if e.kind in (_INT, _ARRAY)]
    # the index pieces, in _gather_plan's order: (array number, axis length), or
    # (None, normalized value) for an int
    order, k = [], 0
    for e in ints:
        n = shape[e.axes[0]]
        if e.kind == _ARRAY:
            order.append((k, n))
            k += 1
        else:
            order.append((None, _normalize_concrete(np.asarray(e.value), dtypes.int64, n, dt,
                                                    True)))
    return plan._replace(indices=None), tuple(order), dt, np.shape(plan.indices)


_positions: dict = {}  # (n, dtype) -> arange(n) of that index dtype, read-only


def _in_range_index(a, n, dt):
    """_normalize_concrete(a, ...) for an integer array whose values all lie
    in [-n, n), in one NumPy indexing: arange(n)[a] counts negatives from
    the end and has the index dtype already; NumPy raises for a value out
    of range (then None: the general normalization clamps it)."""
    if n > 65536 or (a.dtype.kind == "i" and n > _int_bounds(a.dtype)[1]):
        return None  # (an axis longer than the index type holds: the general error)
    r = _positions.get((n, dt))
    if r is None:
        r = np.arange(n, dtype=dt)
        r.flags.writeable = False
        if len(_positions) >= 64:
            _positions.clear()
        _positions[(n, dt)] = r
    try:
        return r[a]
    except (IndexError, TypeError, OverflowError):
        return None


def _fast_array_getitem(x, idx):
    """x[idx] for the indices _array_index_key accepts, with a cached plan;
    None when the index is of another kind."""
    found = _array_index_key(idx)
    if found is None:
        return None
    key, arrays = found
    y = _eager_take(x, key, arrays)
    if y is not None:
        return y
    shape = get_aval(x).shape
    try:
        cached = _cached_array_plan(shape, key)
    except (IndexError, TypeError):
        return None  # (the general path raises the user-facing error)
    if cached is None:
        return None
    plan, order, dt, ishape = cached
    if len(order) == 1:
        a = arrays[0]
        indices = _in_range_index(a, order[0][1], dt)
        if indices is None:
            indices = _normalize_concrete(a, a.dtype, order[0][1], dt, True)
        indices = indices[..., None]
    else:  # the pieces broadcast into the index vector's components
        indices = np.empty(ishape, dt)
        for j, (k, v) in enumerate(order):
            if k is not None:  # an array (else v is an int's normalized value)
                a = arrays[k]
                v = _normalize_concrete(a, a.dtype, v, dt, True)
            indices[..., j] = v
    y = ix.gather_p.bind(x, indices, dimension_numbers=plan.dnums,
                         slice_sizes=plan.gather_slice_sizes, mode=ix.PROMISE_IN_BOUNDS,
                         fill_value=None, indices_are_sorted=plan.sorted,
                         unique_indices=plan.unique)
    return _with_newaxes(y, plan.newaxis_dims)


# ---- x[idx] with ints, static slices, None and Ellipsis only: the whole
# _SlicePlan is static, cached per (shape, index).


def _static_index_key(idx):
    """A hashable form of an index of Python ints, slices of ints/None, None
    and Ellipsis (slices as tuples); None for anything else."""
    items = idx if type(idx) is tuple else (idx,)
    key = []
    for i in items:
        t = type(i)
        if t is int or i is None or i is Ellipsis:
            key.append(i)
        elif t is slice and all(type(v) is int or v is None for v in (i.start, i.stop, i.step)):
            key.append((i.start, i.stop, i.step))
        else:
            return None
    return tuple(key)


@lru_cache(maxsize=1024)
def _cached_slice_plan(shape, key):
    idx = tuple(slice(*k) if type(k) is tuple else k for k in key)
    return _slice_plan(shape, _parse(idx, shape), True)


class _StaticIndex(NamedTuple):
    """A static x[idx] (a non-dynamic _SlicePlan) in two ready forms."""
    np_index: tuple        # NumPy basic index with the plan's (clamped) ints
    np_shape: tuple        # reshape after it (the new axes), or None
    slice_params: dict     # slice_p's params, or None when the slice is all of x
    plan: _SlicePlan


@lru_cache(maxsize=1024)
def _cached_static_index(shape, key):
    """The _StaticIndex of a static index (key from _static_index_key), or
    None where the plan is dynamic. Eager x[idx] is then one NumPy basic
    indexing (a view, as the slice impl's) instead of up to four primitives:
    the plan's starts are the ints clamped into range as JAX does (NumPy
    would raise), a reversed axis is the same elements read backwards, and
    the trailing Ellipsis keeps a 0-d result an array."""
    plan = _cached_slice_plan(shape, key)
    if plan is None or plan.dynamic:
        return None
    np_index, out_shape = [], []
    for d, (a, k, st, lim) in enumerate(zip(plan.starts, plan.sizes, plan.strides, plan.limits)):
        if d in plan.squeeze_axes:
            np_index.append(a)
        elif d in plan.rev_axes and k:
            last = a + (k - 1) * st
            np_index.append(slice(last, a - 1 if a else None, -st))
            out_shape.append(k)
        else:
            np_index.append(slice(a, lim, st))
            out_shape.append(k)
    np_index.append(Ellipsis)
    np_shape = None
    if plan.newaxis:
        for d in sorted(plan.newaxis):
            out_shape.insert(d, 1)
        np_shape = tuple(out_shape)
    full = all(st == 1 for st in plan.strides) and all(a == 0 for a in plan.starts) \
        and plan.limits == tuple(shape)
    slice_params = None if full else dict(start_indices=plan.starts, limit_indices=plan.limits,
                                          strides=None if all(st == 1 for st in plan.strides)
                                          else plan.strides)
    return _StaticIndex(tuple(np_index), np_shape, slice_params, plan)


def _static_getitem(x, plan):
    """_apply_slice_plan for a _StaticIndex: NumPy directly for an eager
    Array, else the primitives with the plan's ready params."""
    if type(x) is Array and core._ctx.trace is None:
        v = x._v
        if v is None:
            v = x.value
        y = v[plan.np_index]
        if plan.np_shape is not None:
            y = y.reshape(plan.np_shape)
        return Array(y, x.weak)
    p = plan.plan
    y = x if plan.slice_params is None else S.slice_p.bind(x, **plan.slice_params)
    if p.rev_axes:
        y = S.rev(y, p.rev_axes)
    if p.squeeze_axes:
        y = S.squeeze_p.bind(y, dimensions=p.squeeze_axes)
    return _with_newaxes(y, p.newaxis)


_ONE_ARRAY = ((),)  # an _array_index_key key of one array (its shape/dtype unused)


def _eager_take(x, key, arrays):
    """Eager x[a] / x[:, ..., a, :, ...] (one integer array, full slices
    elsewhere): NumPy's integer-array indexing reads the same elements in
    the same layout as the gather, and counts negative indices from the end
    as we do; an out-of-range index makes it raise, and then the general
    path clamps as JAX. None when x or the index is of another kind."""
    if type(x) is not Array or core._ctx.trace is not None or len(arrays) != 1:
        return None
    pos = -1
    for j, k in enumerate(key):
        if type(k) is tuple:
            pos = j
        elif k is not _FULL:
            return None
    v = x._v
    if v is None or v.ndim < len(key):
        return None
    a = arrays[0]
    if a.dtype.kind == "i" and v.shape[pos] > _int_bounds(a.dtype)[1]:
        return None  # (the axis length overflows the index type: the general error)
    try:
        y = v[a] if pos == 0 else v[(slice(None),) * pos + (a,)]
    except (IndexError, TypeError, OverflowError):
        return None
    return Array(y, x.weak)


_ctx = core._ctx  # (the one context object: its .trace changes, never the object)
# index dtypes that hold any axis length (NumPy's unsigned are never negative)
_WIDE_INDEX = frozenset(np.dtype(t) for t in (np.int64, np.uint8, np.uint16, np.uint32,
                                              np.uint64))


def getitem(x, idx):
    if type(x) is Array and _ctx.trace is None:
        v = x._v
        t = type(idx)
        if v is None:
            pass  # (a jit result: the general path reads its buffer)
        elif t is int:
            # eager x[i]: NumPy reads the same row (a view, as slice + squeeze)
            # and counts a negative i from the end as we do; it raises for an
            # i out of range or a 0-d x, which the general path clamps /
            # reports. The trailing Ellipsis keeps a 0-d result an array.
            try:
                return Array(v[idx, ...], x.weak)
            except IndexError:
                pass
        elif t is np.ndarray and idx.ndim and v.ndim:
            # eager x[int array]: NumPy's integer-array indexing reads the
            # same elements in the gather's layout, negatives from the end; it
            # raises for an index out of range (the general path clamps). A
            # signed index narrower than 64 bits must hold the axis length
            # (else the general path's error).
            dt = idx.dtype
            if dt in _WIDE_INDEX or (dt.kind == "i" and v.shape[0] <= _int_bounds(dt)[1]):
                try:
                    return Array(v[idx], x.weak)
                except IndexError:
                    pass
    if type(x) is Array or isinstance(x, Tracer):
        key = _static_index_key(idx)
        if key is not None:
            try:
                plan = _cached_static_index(get_aval(x).shape, key)
            except (IndexError, TypeError, ValueError):
                plan = None  # (the general path raises the user-facing error)
            if plan is not None:
                return _static_getitem(x, plan)
        else:
            y = _fast_array_getitem(x, idx)
            if y is not None:
                return y
    return _take(x, idx)


# --------------------------------------------------------------------------
# x.at[idx].set(...) and friends


def _scatter_update(x, idx, y, prim, *, mode=None, indices_are_sorted=False,
                    unique_indices=False, wrap_negative_indices=True):
    x = asarray_value(x)
    xdt, xweak = dtype_weak(x)
    if type(y) is int and xdt.kind in "iu" and np.iinfo(xdt).min <= y <= np.iinfo(xdt).max:
        y = Array(np.asarray(y, xdt))  # an in-range int keeps an integer array's dtype
    else:
        y = asarray_value(y)
    shape = get_aval(x).shape
    entries = _expand_bool_masks(_parse(idx, shape), shape)
    contiguous = _advanced_contiguous(entries)
    x2, entries, bool_axes = _expand_scalar_bools(x, entries)
    plan = _gather_plan(get_aval(x2).shape, entries, wrap_negative_indices, contiguous)
    if 0 in plan.slice_shape:
        return x
    x2, y = promote(x2, y)
    ys = get_aval(y).shape
    if len(ys) > len(plan.slice_shape) or any(
            a not in (1, b) for a, b in zip(ys[::-1], plan.slice_shape[::-1])):
        raise ValueError(f"cannot broadcast the update of shape {ys} to the indexed shape "
                         f"{plan.slice_shape}")
    y = S.broadcast_to(y, plan.slice_shape)
    if plan.newaxis_dims:  # the scatter has no axes for None: drop them
        y = S.reshape(y, tuple(s for i, s in enumerate(plan.slice_shape)
                               if i not in plan.newaxis_dims))
    dn = ix._as_scatter_dnums(plan.dnums)
    out = prim.bind(x2, plan.indices, y, dimension_numbers=dn,
                    mode=ix.canonical_mode(mode, ix.FILL_OR_DROP),
                    indices_are_sorted=bool(plan.sorted or indices_are_sorted),
                    unique_indices=bool(plan.unique or unique_indices))
    if bool_axes:
        out = S.squeeze_p.bind(out, dimensions=bool_axes)
    return ew.convert(out, xdt, xweak)


class _IndexUpdateRef:
    """x.at[idx]: functional indexed updates with JAX's semantics."""

    __slots__ = ("array", "index")

    def __init__(self, array, index):
        self.array = array
        self.index = index

    def __repr__(self):
        return f"_IndexUpdateRef({self.array!r}, {self.index!r})"

    def get(self, *, indices_are_sorted=False, unique_indices=False, mode=None,
            fill_value=None, wrap_negative_indices=True):
        """x[idx], with a choice of out-of-bounds `mode` ('fill' uses fill_value)."""
        return _take(self.array, self.index, mode=mode, fill_value=fill_value,
                     indices_are_sorted=indices_are_sorted, unique_indices=unique_indices,
                     wrap_negative_indices=wrap_negative_indices)

    def _update(self, values, prim, kw):
        return _scatter_update(self.array, self.index, values, prim, **kw)

    def set(self, values, **kw):
        """x[idx] = values (repeated indices: one of the updates wins)."""
        return self._update(values, ix.scatter_p, kw)

    def add(self, values, **kw):
        """x[idx] += values (repeated indices accumulate)."""
        return self._update(values, ix.scatter_add_p, kw)

    def subtract(self, values, **kw):
        """x[idx] -= values."""
        from .ufuncs import negative
        return self._update(negative(asarray_value(values)), ix.scatter_add_p, kw)

    def multiply(self, values, **kw):
        """x[idx] *= values."""
        return self._update(values, ix.scatter_mul_p, kw)

    mul = multiply

    def divide(self, values, **kw):
        """x[idx] /= values (true division, as JAX: integers become floats)."""
        from .creation import ones_like
        from .ufuncs import true_divide
        den = _scatter_update(ones_like(self.array), self.index, values, ix.scatter_mul_p, **kw)
        return true_divide(self.array, den)

    def power(self, values, **kw):
        """x[idx] **= values."""
        from .creation import ones_like
        from .ufuncs import power
        exps = _scatter_update(ones_like(self.array), self.index, values, ix.scatter_mul_p, **kw)
        return power(self.array, exps)

    def min(self, values, **kw):
        """x[idx] = minimum(x[idx], values)."""
        return self._update(values, ix.scatter_min_p, kw)

    def max(self, values, **kw):
        """x[idx] = maximum(x[idx], values)."""
        return self._update(values, ix.scatter_max_p, kw)


class _IndexUpdateHelper:
    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array

    def __getitem__(self, index):
        return _IndexUpdateRef(self.array, index)

    def __repr__(self):
        return f"_IndexUpdateHelper({self.array!r})"


# --------------------------------------------------------------------------
# take / take_along_axis / put_along_axis


def _int_indices(indices, name):
    indices = asarray_value(indices)
    dt = get_aval(indices).dtype
    if dt.kind not in "iu":
        raise TypeError(f"{name} indices must be of integer type, got {_dtype_name(dt)}")
    return indices


def _ravel(a):
    return S.reshape(a, (get_aval(a).size,))


def take(a, indices, axis=None, out=None, mode=None, unique_indices=False,
         indices_are_sorted=False, fill_value=None):
    """Elements of `a` at `indices` along `axis` (flattened when None).
    mode: None/'fill' (out of range -> fill_value, NaN for floats), 'clip',
    'wrap' (modulo the axis size), or 'promise_in_bounds'."""
    if out is not None:
        raise ValueError("take: the 'out' argument is not supported (arrays are immutable)")
    a = asarray_value(a)
    indices = _int_indices(indices, "take")
    if axis is None:
        a, axis = _ravel(a), 0
    shape = get_aval(a).shape
    axis = check_axis(int(axis), len(shape))
    n = shape[axis]
    if mode is None or mode == "fill":
        gmode = ix.FILL_OR_DROP
        idt = get_aval(indices).dtype
        idt = idt if idt.itemsize >= 4 else dtypes.int32  # room for i + n
        indices = _normalize_array(indices, n, idt, True)
    elif mode == "wrap":
        from .ufuncs import remainder
        indices = remainder(indices, n) if n else indices
        gmode = ix.PROMISE_IN_BOUNDS
    elif mode == "clip":
        gmode = ix.CLIP
    elif mode == "raise":
        raise ValueError("take: mode='raise' is not supported (errors cannot depend on "
                         "traced values); use mode='fill', 'clip' or 'wrap'")
    else:
        gmode = ix.canonical_mode(mode, ix.FILL_OR_DROP)
    ishape = get_aval(indices).shape
    out_shape = shape[:axis] + ishape + shape[axis + 1:]
    if n == 0:
        if int(np.prod(ishape, dtype=np.int64)):
            raise IndexError("Cannot do a non-empty take() from an empty axis.")
        return a if ishape == (0,) else _zeros_like_shape(a, out_shape)
    if 0 in out_shape:
        return _zeros_like_shape(a, out_shape)
    sizes = list(shape)
    sizes[axis] = 1
    k = len(ishape)
    dn = ix.GatherDimensionNumbers(
        offset_dims=tuple(range(axis)) + tuple(range(axis + k, len(shape) + k - 1)),
        collapsed_slice_dims=(axis,), start_index_map=(axis,))
    idx = S.reshape(indices, ishape + (1,))
    return ix.gather(a, idx, dn, sizes, mode=gmode, fill_value=fill_value,
                     indices_are_sorted=indices_are_sorted, unique_indices=unique_indices)


def take_along_axis(arr, indices, axis=-1, mode=None, fill_value=None):
    """out[..., i, ...] = arr[..., indices[..., i, ...], ...] along `axis`
    (other axes broadcast). mode None means 'fill' (as JAX)."""
    a = asarray_value(arr)
    indices = _int_indices(indices, "take_along_axis")
    ishape = get_aval(indices).shape
    if axis is None:
        if len(ishape) != 1:
            raise ValueError(f"take_along_axis indices must be 1D if axis=None, got shape {ishape}")
        a, axis = _ravel(a), 0
    shape = get_aval(a).shape
    if len(shape) != len(ishape):
        raise ValueError(f"indices and arr must have the same number of dimensions; "
                         f"{len(ishape)} vs. {len(shape)}")
    axis = check_axis(int(axis), len(shape))
    n = shape[axis]
    try:
        out_shape = tuple(np.broadcast_shapes(ishape, shape[:axis] + (1,) + shape[axis + 1:]))
    except ValueError:
        raise ValueError(f"take_along_axis: indices of shape {ishape} do not broadcast with "
                         f"arr of shape {shape} (outside axis {axis})") from None
    if n == 0 or 0 in out_shape:
        return _zeros_like_shape(a, out_shape)
    gmode = ix.canonical_mode(mode, ix.FILL_OR_DROP)
    wrap = gmode != ix.PROMISE_IN_BOUNDS
    # wrapping negatives needs room for i + n: the index dtype of the axis
    idt = _index_dtype((n,)) if wrap else get_aval(indices).dtype
    indices = _normalize_array(indices, n, idt, wrap)
    # every axis but `axis`: a full window where indices has size 1; a
    # squeezed axis where arr has size 1; else a batching axis (elementwise)
    index_axes, offset_dims, start_index_map, collapsed, obatch, ibatch = [], [], [], [], [], []
    squeeze, sizes = [], []
    new_i = j = 0
    for i in range(len(shape)):
        if i == axis:
            index_axes.append(i)
            sizes.append(1)
            start_index_map.append(new_i)
            collapsed.append(new_i)
            new_i += 1
            j += 1
        elif ishape[i] == 1:
            offset_dims.append(i)
            sizes.append(shape[i])
            new_i += 1
        elif shape[i] == 1:
            index_axes.append(i)
            squeeze.append(i)
            j += 1
        else:
            index_axes.append(i)
            sizes.append(1)
            obatch.append(new_i)
            ibatch.append(j)
            new_i += 1
            j += 1
    if squeeze:
        a = S.squeeze_p.bind(a, dimensions=tuple(squeeze))
    gshape = tuple(out_shape[i] for i in index_axes) + (1,)
    if _is_concrete(indices):
        idx = np.asarray(indices).reshape(gshape)
    else:
        idx = S.reshape(indices, gshape)
    dn = ix.GatherDimensionNumbers(offset_dims=tuple(offset_dims),
                                   collapsed_slice_dims=tuple(collapsed),
                                   start_index_map=tuple(start_index_map),
                                   operand_batching_dims=tuple(obatch),
                                   start_indices_batching_dims=tuple(ibatch))
    return ix.gather(a, idx, dn, sizes, mode=gmode, fill_value=fill_value)


def put_along_axis(arr, indices, values, axis, inplace=True, *, mode=None):
    """arr with `values` written at `indices` along `axis` (inplace=False is
    required: arrays are immutable)."""
    if inplace:
        raise ValueError("put_along_axis cannot modify arrays in place (arrays are immutable): "
                         "pass inplace=False to get the updated array")
    a = asarray_value(arr)
    indices = _int_indices(indices, "put_along_axis")
    orig_shape = get_aval(a).shape
    if axis is None:
        a, axis = _ravel(a), 0
    shape = get_aval(a).shape
    ishape = get_aval(indices).shape
    if len(shape) != len(ishape):
        raise ValueError(f"put_along_axis arguments 'arr' and 'indices' must have the same "
                         f"ndim, got {len(shape)} and {len(ishape)}")
    axis = check_axis(int(axis), len(shape))
    values = asarray_value(values)
    vs = get_aval(values).shape
    if len(vs) > len(ishape) or any(x not in (1, y) for x, y in zip(vs[::-1], ishape[::-1])):
        raise ValueError(f"put_along_axis argument 'values' must be broadcastable to 'indices': "
                         f"got {vs} and {ishape}")
    values = S.broadcast_to(values, ishape)
    # open-mesh coordinates for the other axes, `indices` for `axis`
    idx = []
    for i, n in enumerate(shape):
        if i == axis:
            idx.append(indices)
        else:
            shp = [1] * len(shape)
            shp[i] = n
            idx.append(np.arange(n).reshape(shp))
    out = _IndexUpdateRef(a, tuple(idx)).set(values, mode=mode)
    return S.reshape(out, orig_shape) if get_aval(out).shape != orig_shape else out


# --------------------------------------------------------------------------
# nonzero / argwhere / flatnonzero


def _nonzero_traced(a, size, fill_value):
    """nonzero with a static `size` under tracing: number the nonzero
    elements with a cumulative sum and scatter their coordinates there."""
    from ..primitives.reductions import cumsum_p
    shape = get_aval(a).shape
    n = int(np.prod(shape, dtype=np.int64))
    flat = _ravel(a)
    nz = ew.ne_p.bind(flat, np.zeros((), get_aval(flat).dtype)[()])
    pos = cumsum_p.bind(ew.convert(nz, dtypes.int64), axis=0, reverse=False)
    pos = ew.sub(pos, np.int64(1))
    # zero elements go to position `size`: out of range, dropped
    target = ew.select(nz, S.full((n,), size, dtypes.int64), pos)
    target = S.reshape(target, (n, 1))
    coords = np.unravel_index(np.arange(n), shape) if shape else ()
    fills = fill_value if isinstance(fill_value, tuple) else (fill_value,) * len(shape)
    if len(fills) != len(shape):
        raise ValueError(f"fill_value must be a scalar or a tuple of length {len(shape)}")
    dn = ix.ScatterDimensionNumbers(update_window_dims=(), inserted_window_dims=(0,),
                                    scatter_dims_to_operand_dims=(0,))
    out = []
    for c, f in zip(coords, fills):
        base = S.full((size,), 0 if f is None else f, dtypes.int64)
        out.append(ix.scatter_p.bind(base, target, Array(c.astype(dtypes.int64)),
                                     dimension_numbers=dn, mode=ix.FILL_OR_DROP,
                                     indices_are_sorted=False, unique_indices=False))
    return tuple(out)


def _concrete_value(a, name):
    if isinstance(a, Tracer):
        v = a.to_concrete()
        if v is None:
            raise core.ConcretizationError(
                f"{name} of a traced array ({a.aval.str_short()}) at {core.user_frame()}.\n"
                f"  Its output shape depends on the values, so it cannot be traced "
                f"(jit/vmap/grad) without a static `size=`. Pass size=N (and fill_value) "
                f"for a fixed-size result, or use tnp.where(condition, x, y) with three "
                f"arguments.")
        return np.asarray(v)
    return np.asarray(a)


def nonzero(a, *, size=None, fill_value=None):
    """Indices of the nonzero elements, one array per axis. Needs a concrete
    array, or a static `size` (results padded with fill_value, default 0)."""
    a = asarray_value(a)
    if get_aval(a).ndim == 0:
        raise ValueError("Calling nonzero on 0d arrays is not allowed. Use "
                         "tnp.atleast_1d(scalar).nonzero() instead.")
    if isinstance(a, Tracer) and a.to_concrete() is None and size is not None:
        return _nonzero_traced(a, int(size), fill_value)
    v = _concrete_value(a, "nonzero")
    res = np.nonzero(v)
    if size is not None:
        size = int(size)
        fills = fill_value if isinstance(fill_value, tuple) else (fill_value,) * len(res)
        res = tuple(np.concatenate([r[:size], np.full(max(size - len(r), 0),
                                                      0 if f is None else f, r.dtype)])
                    for r, f in zip(res, fills))
    return tuple(Array(r.astype(dtypes.int64)) for r in res)


def argwhere(a, *, size=None, fill_value=None):
    """Coordinates of the nonzero elements as rows: shape (N, a.ndim)."""
    a = asarray_value(a)
    nd = get_aval(a).ndim
    if nd == 0:
        v = _concrete_value(a, "argwhere")
        return Array(np.argwhere(v).astype(dtypes.int64))
    cols = nonzero(a, size=size, fill_value=fill_value)
    cols = [S.reshape(c, (get_aval(c).shape[0], 1)) for c in cols]
    return S.concatenate(cols, 1)


def flatnonzero(a, *, size=None, fill_value=None):
    """Indices of the nonzero elements of a flattened."""
    return nonzero(_ravel(asarray_value(a)), size=size, fill_value=fill_value)[0]


METHODS = {
    "__getitem__": getitem,
    "at": property(lambda self: _IndexUpdateHelper(self)),
    "take": lambda self, indices, axis=None, out=None, mode=None, **kw: take(
        self, indices, axis=axis, out=out, mode=mode, **kw),
    "nonzero": lambda self, *, size=None, fill_value=None: nonzero(
        self, size=size, fill_value=fill_value),
}
