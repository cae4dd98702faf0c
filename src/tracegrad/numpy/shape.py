"""tracegrad.numpy: shape functions (reshape, transpose, concatenate, pad,
split, tile, repeat, roll, ...) under their NumPy names, with JAX's dtype
rules. Everything is written with the shape primitives, so it works eagerly
and under every transformation; sizes and axes must be static."""
from __future__ import annotations

import builtins
import math
import operator

import numpy as np

from .. import core, dtypes
from ..core import Array, Tracer, get_aval
from ..primitives import elementwise as ew
from ..primitives import shapes as S
from ._util import asarray_value, concrete_value, dtype_weak, promote

__all__ = [
    "reshape", "ravel", "transpose", "swapaxes", "moveaxis", "squeeze", "expand_dims",
    "broadcast_to", "broadcast_arrays", "broadcast_shapes", "concatenate", "concat", "stack",
    "hstack", "vstack", "dstack", "column_stack", "row_stack", "split", "array_split", "tile",
    "repeat", "flip", "fliplr", "flipud", "roll", "rot90", "pad", "atleast_1d", "atleast_2d",
    "atleast_3d", "meshgrid", "ndim", "shape", "size", "permute_dims", "matrix_transpose",
]


def check_axis(axis, ndim, name="axis"):
    """Normalise one axis (numpy's AxisError, a ValueError and IndexError)."""
    axis = _int(axis, name)
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(f"{name} {axis} is out of bounds for array of dimension {ndim}")
    return axis % ndim


def canonical_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    out = tuple(check_axis(a, ndim) for a in _int_tuple(axis, "axis"))
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in {axis}")
    return out


def _shape_of(x):
    return get_aval(x).shape


def _int(v, what):
    """A static Python int from an int-like (concrete Arrays allowed)."""
    if isinstance(v, Tracer):
        v = v._concrete_or_error(what)
    try:
        return operator.index(v)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {v!r}") from None


def _int_tuple(v, what):
    if isinstance(v, (list, tuple)):
        return tuple(_int(e, what) for e in v)
    if isinstance(v, (np.ndarray, Array)) and np.ndim(v) == 1:
        return tuple(int(e) for e in np.asarray(v))
    return (_int(v, what),)


# --------------------------------------------------------------------------
# reshape / ravel / transpose / axes


def _infer_shape(newshape, size, old_shape):
    """Resolve one -1 entry; the error names both shapes."""
    unknown = newshape.count(-1)
    if unknown > 1:
        raise ValueError(f"can only specify one unknown dimension (-1), got shape {newshape}")
    if min(newshape, default=0) < -1:
        raise ValueError(f"negative dimensions are not allowed in shape {newshape}")
    # (math.prod of Python ints: exact, and ~3 us cheaper than np.prod)
    known = math.prod(newshape) * -1 if unknown else math.prod(newshape)
    if unknown:
        if known == 0 or size % known:
            raise core.ShapeDtypeError(
                f"cannot reshape array of shape {old_shape} (size {size}) into shape {newshape}")
        newshape = tuple(size // known if s == -1 else s for s in newshape)
    elif known != size:
        raise core.ShapeDtypeError(
            f"cannot reshape array of shape {old_shape} (size {size}) into shape {newshape} "
            f"(size {known})")
    return newshape


def reshape(a, shape=None, order="C", *, newshape=None, copy=None):
    if shape is None:
        shape = newshape
    if shape is None:
        raise TypeError("reshape() missing the new shape")
    if order == "C" and type(shape) is tuple:
        out = _fast_reshape(a, shape)
        if out is not None:
            return out
    a = asarray_value(a)
    av = get_aval(a)
    new = _infer_shape(_int_tuple(shape, "a reshape dimension"), av.size, av.shape)
    if order == "C":
        return S.reshape(a, new)
    if order == "F":
        # column-major: reverse the axes, reshape row-major, reverse back
        t = transpose(a)
        return transpose(S.reshape(t, new[::-1]))
    raise ValueError(f"reshape: order must be 'C' or 'F', got {order!r}")


def _fast_reshape(a, shape):
    """reshape of an eager Array or eager-grad tracer to a tuple of Python
    ints (the common case), without the conversions: NumPy reshapes an
    eager value directly (the impl's view, with the weak type kept); a tape
    tracer binds the primitive. None for anything else."""
    v = concrete_value(a)
    if v is None:
        return None
    for s in shape:
        if type(s) is not int or s < -1:  # (NumPy reads any negative size as -1)
            return None
    if type(a) is Array:
        # with sizes >= -1, NumPy accepts exactly the shapes _infer_shape does
        # (at most one -1, equal sizes); it raises for the others, which then
        # take the general path for our error
        try:
            y = v.reshape(shape)
        except (ValueError, TypeError, OverflowError):
            return None
        return a if y.shape == v.shape else Array(y, a.weak)
    new = _infer_shape(shape, v.size, v.shape)
    return a if new == v.shape else S.reshape_p.bind(a, new_sizes=new)


def ravel(a, order="C"):
    return reshape(a, (-1,), order=order)


def transpose(a, axes=None):
    a = asarray_value(a)
    nd = get_aval(a).ndim
    if axes is None:
        perm = tuple(range(nd))[::-1]
    else:
        axes = _int_tuple(axes, "an axis")
        if len(axes) != nd:
            raise ValueError(f"axes {axes} don't match array of dimension {nd}")
        perm = tuple(check_axis(ax, nd) for ax in axes)
        if len(set(perm)) != nd:
            raise ValueError(f"repeated axis in transpose axes {axes}")
    if perm == tuple(range(nd)):
        return a
    return S.transpose_p.bind(a, permutation=perm)


permute_dims = transpose


def matrix_transpose(x):
    x = asarray_value(x)
    if get_aval(x).ndim < 2:
        raise ValueError(f"matrix_transpose needs an array of at least 2 dimensions, "
                         f"got shape {_shape_of(x)}")
    return swapaxes(x, -1, -2)


def swapaxes(a, axis1, axis2):
    a = asarray_value(a)
    nd = get_aval(a).ndim
    i, j = check_axis(_int(axis1, "axis1"), nd), check_axis(_int(axis2, "axis2"), nd)
    perm = list(range(nd))
    perm[i], perm[j] = perm[j], perm[i]
    return transpose(a, perm)


def moveaxis(a, source, destination):
    a = asarray_value(a)
    nd = get_aval(a).ndim
    src = tuple(check_axis(s, nd, "source") for s in _int_tuple(source, "source"))
    dst = tuple(check_axis(d, nd, "destination") for d in _int_tuple(destination, "destination"))
    if len(src) != len(dst):
        raise ValueError("moveaxis: source and destination must have the same number of elements")
    if len(set(src)) != len(src) or len(set(dst)) != len(dst):
        raise ValueError(f"moveaxis: repeated axis in source {source} or destination {destination}")
    # the axes not moved keep their order in the free slots
    rest = [i for i in range(nd) if i not in src]
    perm = [None] * nd
    for s, d in zip(src, dst):
        perm[d] = s
    it = iter(rest)
    perm = tuple(p if p is not None else next(it) for p in perm)
    return transpose(a, perm)


def squeeze(a, axis=None):
    a = asarray_value(a)
    shp = _shape_of(a)
    if axis is None:
        dims = tuple(i for i, s in enumerate(shp) if s == 1)
    else:
        dims = canonical_axes(axis, len(shp))
        bad = [d for d in dims if shp[d] != 1]
        if bad:
            raise ValueError(f"cannot select an axis to squeeze out which has size not equal "
                             f"to one: axis {bad[0]} of shape {shp}")
    if not dims:
        return a
    return S.squeeze_p.bind(a, dimensions=tuple(sorted(dims)))


def expand_dims(a, axis):
    a = asarray_value(a)
    shp = _shape_of(a)
    axes = _int_tuple(axis, "axis")
    out_nd = len(shp) + len(axes)
    pos = sorted(check_axis(ax, out_nd) for ax in axes)
    if len(set(pos)) != len(pos):
        raise ValueError(f"repeated axis in expand_dims axis {axis}")
    it = iter(shp)
    new = tuple(1 if i in pos else next(it) for i in range(out_nd))
    return S.reshape(a, new)


# --------------------------------------------------------------------------
# broadcasting


def broadcast_shapes(*shapes):
    shapes = [(s,) if isinstance(s, (int, np.integer)) else tuple(s) for s in shapes]
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(f"incompatible shapes for broadcasting: "
                         f"{', '.join(map(str, shapes))}") from None


def broadcast_to(array, shape):
    a = asarray_value(array)
    src = _shape_of(a)
    shape = _int_tuple(shape, "a shape entry")
    nd = len(shape)
    if len(src) > nd or any(s not in (1, d) for s, d in zip(src[::-1], shape[::-1])) \
            or any(d < 0 for d in shape):
        raise ValueError(f"incompatible shapes for broadcasting: {src} and requested shape {shape}")
    if src == shape:
        return a
    # size-1 source axes that grow are dropped first, so broadcast_in_dim
    # maps each kept axis onto an equal-size output axis
    return S.broadcast_to(a, shape)


def broadcast_arrays(*args):
    args = [asarray_value(a) for a in args]
    shape = broadcast_shapes(*[_shape_of(a) for a in args])
    return [broadcast_to(a, shape) for a in args]


# --------------------------------------------------------------------------
# joining


def _as_list(arrays, name):
    if isinstance(arrays, (Array, Tracer, np.ndarray)):
        a = asarray_value(arrays)
        if get_aval(a).ndim == 0:
            raise ValueError(f"{name}: need a sequence of arrays, got a 0-d array")
        return list(_iter_leading(a))
    arrays = [asarray_value(x) for x in arrays]
    if not arrays:
        raise ValueError(f"{name}: need at least one array")
    return arrays


def _cast_all(arrays, dtype):
    if dtype is None:
        return promote(*arrays)
    dt = dtypes.canonicalize(dtype)
    return [ew.convert(a, dt) for a in arrays]


def _eager_join(arrays, axis, stack):
    """Eager concatenate/stack of a list or tuple of eager Arrays of one
    dtype along an int axis: NumPy joins them directly (no promotion is
    needed; the result is weak iff every input is, as the general path's
    concatenate). None for anything else, and where NumPy rejects the
    input (the general path raises its error)."""
    if core._ctx.trace is not None or type(axis) is not int or \
            (type(arrays) is not list and type(arrays) is not tuple) or not arrays:
        return None
    vals, weak, dt = [], True, None
    for a in arrays:
        if type(a) is not Array:
            return None
        v = a._v
        if v is None:
            return None
        if dt is None:
            dt = v.dtype
        elif v.dtype != dt:
            return None
        vals.append(v)
        weak = weak and a.weak
    try:
        out = np.stack(vals, axis) if stack else np.concatenate(vals, axis)
    except (ValueError, IndexError, TypeError):
        return None
    return Array(out, weak)


def concatenate(arrays, axis=0, dtype=None):
    if dtype is None:
        out = _eager_join(arrays, axis, False)
        if out is not None:
            return out
    arrays = _as_list(arrays, "concatenate")
    if axis is None:
        arrays = [ravel(a) for a in arrays]
        axis = 0
    nd = get_aval(arrays[0]).ndim
    if nd == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    axis = check_axis(_int(axis, "axis"), nd)
    for a in arrays:
        s = _shape_of(a)
        if len(s) != nd or any(x != y for i, (x, y) in enumerate(zip(s, _shape_of(arrays[0])))
                               if i != axis):
            raise ValueError(f"concatenate: all input array dimensions except for the "
                             f"concatenation axis {axis} must match, got shapes "
                             f"{', '.join(str(_shape_of(b)) for b in arrays)}")
    arrays = _cast_all(arrays, dtype)
    return S.concatenate(arrays, axis)


def concat(arrays, /, *, axis=0):
    return concatenate(arrays, axis=axis)


def stack(arrays, axis=0, out=None, dtype=None):
    if out is not None:
        raise ValueError("stack: the 'out' argument is not supported (arrays are immutable)")
    if dtype is None:
        res = _eager_join(arrays, axis, True)
        if res is not None:
            return res
    arrays = _as_list(arrays, "stack")
    shp = _shape_of(arrays[0])
    if any(_shape_of(a) != shp for a in arrays):
        raise ValueError(f"all input arrays must have the same shape, got "
                         f"{', '.join(str(_shape_of(a)) for a in arrays)}")
    axis = check_axis(_int(axis, "axis"), len(shp) + 1)
    arrays = [expand_dims(a, axis) for a in _cast_all(arrays, dtype)]
    return S.concatenate(arrays, axis)


def _tuple_arrays(tup, name):
    if isinstance(tup, (Array, Tracer, np.ndarray)):
        return _as_list(tup, name)
    return [asarray_value(x) for x in tup]


def hstack(tup, dtype=None):
    arrs = atleast_1d(*_tuple_arrays(tup, "hstack"))
    arrs = arrs if isinstance(arrs, list) else [arrs]
    return concatenate(arrs, 0 if get_aval(arrs[0]).ndim == 1 else 1, dtype=dtype)


def vstack(tup, dtype=None):
    arrs = atleast_2d(*_tuple_arrays(tup, "vstack"))
    return concatenate(arrs if isinstance(arrs, list) else [arrs], 0, dtype=dtype)


row_stack = vstack


def dstack(tup, dtype=None):
    arrs = atleast_3d(*_tuple_arrays(tup, "dstack"))
    return concatenate(arrs if isinstance(arrs, list) else [arrs], 2, dtype=dtype)


def column_stack(tup):
    arrs = []
    for a in _tuple_arrays(tup, "column_stack"):
        nd = get_aval(a).ndim
        # 0-d/1-d inputs become columns
        arrs.append(reshape(a, (-1, 1)) if nd < 2 else a)
    return concatenate(arrs, 1)


def _atleast(nd, args, place):
    outs = []
    for a in args:
        a = asarray_value(a)
        s = _shape_of(a)
        if len(s) < nd:
            a = S.reshape(a, place(s))
        outs.append(a)
    return outs[0] if len(outs) == 1 else outs


def atleast_1d(*arys):
    return _atleast(1, arys, lambda s: (1,))


def atleast_2d(*arys):
    return _atleast(2, arys, lambda s: (1,) * (2 - len(s)) + s)


def atleast_3d(*arys):
    def place(s):
        if len(s) == 0:
            return (1, 1, 1)
        if len(s) == 1:
            return (1, s[0], 1)
        return s + (1,)
    return _atleast(3, arys, place)


# --------------------------------------------------------------------------
# splitting


def _split_points(n, indices_or_sections, name, even):
    if isinstance(indices_or_sections, (int, np.integer)) or (
            isinstance(indices_or_sections, (Array, Tracer, np.ndarray))
            and np.ndim(indices_or_sections) == 0):
        sections = _int(indices_or_sections, "the number of sections")
        if sections <= 0:
            raise ValueError(f"{name}: number of sections must be larger than 0, got {sections}")
        if even and n % sections:
            raise ValueError(f"array split does not result in an equal division: axis of "
                             f"length {n} into {sections} sections")
        # the first n % sections pieces get one extra element (array_split)
        q, r = divmod(n, sections)
        sizes = [q + 1] * r + [q] * (sections - r)
        return list(np.cumsum([0] + sizes))
    idx = _int_tuple(indices_or_sections, "a split index")
    return [0] + list(idx) + [n]


def _split(ary, indices_or_sections, axis, name, even):
    a = asarray_value(ary)
    shp = _shape_of(a)
    axis = check_axis(_int(axis, "axis"), len(shp))
    n = shp[axis]
    pts = _split_points(n, indices_or_sections, name, even)
    out = []
    for lo, hi in zip(pts[:-1], pts[1:]):
        # Python slice semantics: negative indices count from the end,
        # out-of-range ones clip, hi < lo is empty
        start, stop, _ = builtins.slice(int(lo), int(hi)).indices(n)
        stop = builtins.max(stop, start)
        out.append(S.slice_in_dim(a, start, stop, 1, axis))
    return out


def split(ary, indices_or_sections, axis=0):
    return _split(ary, indices_or_sections, axis, "split", True)


def array_split(ary, indices_or_sections, axis=0):
    return _split(ary, indices_or_sections, axis, "array_split", False)


# --------------------------------------------------------------------------
# tile / repeat


def tile(A, reps):
    a = asarray_value(A)
    reps = _int_tuple(reps, "reps")
    if any(r < 0 for r in reps):
        raise ValueError(f"tile: negative repetitions {reps}")
    shp = _shape_of(a)
    d = builtins.max(len(reps), len(shp))
    reps = (1,) * (d - len(reps)) + reps
    shp = (1,) * (d - len(shp)) + shp
    if all(r == 1 for r in reps):
        return S.reshape(a, shp)
    # lay each axis out as (rep, size), broadcast over the rep axes, merge
    inter = tuple(x for r, s in zip(reps, shp) for x in (r, s))
    x = S.reshape(a, shp)
    x = S.broadcast_in_dim_p.bind(x, shape=inter, broadcast_dimensions=tuple(range(1, 2 * d, 2)))
    return S.reshape(x, tuple(r * s for r, s in zip(reps, shp)))


def _repeat_int(x, r, axis):
    """Each element along `axis` r times: broadcast a new axis after it, merge."""
    shp = _shape_of(x)
    inter = shp[:axis + 1] + (r,) + shp[axis + 1:]
    dims = tuple(i for i in range(len(inter)) if i != axis + 1)
    y = S.broadcast_in_dim_p.bind(x, shape=inter, broadcast_dimensions=dims)
    return S.reshape(y, shp[:axis] + (shp[axis] * r,) + shp[axis + 1:])


def repeat(a, repeats, axis=None, *, total_repeat_length=None):
    a = asarray_value(a)
    if isinstance(repeats, Tracer):
        repeats = repeats._concrete_or_error(
            "the repeats argument of repeat (it sets the output shape)")
    reps = np.asarray(repeats)
    if reps.dtype.kind not in "iub":
        raise TypeError(f"repeat: repeats must be integers, got dtype {reps.dtype}")
    reps = reps.astype(np.int64)
    if np.any(reps < 0):
        raise ValueError(f"repeat: negative repeats {reps.tolist()}")
    if axis is None:
        a = ravel(a)
        axis = 0
    shp = _shape_of(a)
    if len(shp) == 0:
        if reps.size != 1:
            raise ValueError("repeat of a 0-d array needs a single repeat count")
        n = int(reps.reshape(-1)[0]) if total_repeat_length is None else total_repeat_length
        return S.broadcast_in_dim_p.bind(a, shape=(n,), broadcast_dimensions=())
    axis = check_axis(_int(axis, "axis"), len(shp))
    n = shp[axis]
    if reps.ndim > 1 or (reps.ndim == 1 and reps.size not in (1, n)):
        raise ValueError(f"repeat: repeats of shape {reps.shape} do not match axis {axis} of "
                         f"length {n}")
    reps = np.broadcast_to(reps.reshape(-1), (n,))
    if n and np.all(reps == reps[0]):
        out = _repeat_int(a, int(reps[0]), axis)
    else:
        # consecutive elements with the same count form one block
        pieces, i = [], 0
        while i < n:
            j = i
            while j < n and reps[j] == reps[i]:
                j += 1
            if reps[i]:
                pieces.append(_repeat_int(S.slice_in_dim(a, i, j, 1, axis), int(reps[i]), axis))
            i = j
        if not pieces:
            out = S.slice_in_dim(a, 0, 0, 1, axis)
        else:
            out = S.concatenate(pieces, axis)
    if total_repeat_length is not None:
        out = _fit_length(out, int(total_repeat_length), axis)
    return out


def _fit_length(x, length, axis):
    """Truncate, or extend by repeating the last element (jnp.repeat's
    total_repeat_length)."""
    m = _shape_of(x)[axis]
    if length <= m:
        return S.slice_in_dim(x, 0, length, 1, axis)
    if m == 0:
        raise ValueError("repeat: cannot extend an empty result to total_repeat_length")
    last = S.slice_in_dim(x, m - 1, m, 1, axis)
    return S.concatenate([x, _repeat_int(last, length - m, axis)], axis)


# --------------------------------------------------------------------------
# flips, rolls, rotations


def flip(m, axis=None):
    m = asarray_value(m)
    axes = canonical_axes(axis, get_aval(m).ndim)
    return S.rev(m, axes)


def fliplr(m):
    m = asarray_value(m)
    if get_aval(m).ndim < 2:
        raise ValueError(f"fliplr needs an array of at least 2 dimensions, got shape {_shape_of(m)}")
    return S.rev(m, (1,))


def flipud(m):
    m = asarray_value(m)
    if get_aval(m).ndim < 1:
        raise ValueError("flipud needs an array of at least 1 dimension, got a 0-d array")
    return S.rev(m, (0,))


def roll(a, shift, axis=None):
    a = asarray_value(a)
    if axis is None:
        return S.reshape(roll(ravel(a), shift, 0), _shape_of(a))
    shp = _shape_of(a)
    axes = _int_tuple(axis, "axis")
    if _is_traced(shift):
        return _roll_dynamic(a, asarray_value(shift), axes)
    shifts = _int_tuple(shift, "shift")
    try:
        shifts, axes = np.broadcast_arrays(np.asarray(shifts), np.asarray(axes))
    except ValueError:
        raise ValueError(f"roll: shift {shift} and axis {axis} must broadcast together") from None
    total = {}
    for s, ax in zip(shifts.reshape(-1), axes.reshape(-1)):
        ax = check_axis(int(ax), len(shp))
        total[ax] = total.get(ax, 0) + int(s)  # repeated axes add up, as numpy
    for ax, s in total.items():
        n = shp[ax]
        if n == 0:
            continue
        s %= n
        if s:
            # the last s elements wrap around to the front
            a = S.concatenate([S.slice_in_dim(a, n - s, n, 1, ax),
                               S.slice_in_dim(a, 0, n - s, 1, ax)], ax)
    return a


def _is_traced(v):
    return isinstance(v, Tracer) and v.to_concrete() is None


def _roll_dynamic(a, shift, axes):
    """roll by a traced shift: slice a window of length n out of the axis
    doubled, starting at (-shift) mod n."""
    from ..primitives.indexing import dynamic_slice_p
    from . import ufuncs
    shp = _shape_of(a)
    sa = get_aval(shift)
    if sa.ndim > 1 or not dtypes.is_int(sa.dtype):
        raise TypeError(f"roll: shift must be an integer scalar or 1-D array, got {sa.str_short()}")
    shift = ew.convert(shift, dtypes.int64)
    n_s = sa.shape[0] if sa.ndim else 1
    if n_s not in (1, len(axes)) and len(axes) != 1:
        raise ValueError(f"roll: {n_s} shifts do not match {len(axes)} axes")
    count = builtins.max(n_s, len(axes))
    for k in range(count):
        s = shift if sa.ndim == 0 else S.squeeze_p.bind(
            S.slice_in_dim(shift, k if n_s > 1 else 0, (k if n_s > 1 else 0) + 1, 1, 0),
            dimensions=(0,))
        ax = check_axis(axes[k if len(axes) > 1 else 0], len(shp))
        n = shp[ax]
        if n == 0:
            continue
        start = ufuncs.remainder(ew.neg(s), np.int64(n))
        starts = [start if i == ax else np.int64(0) for i in range(len(shp))]
        a = dynamic_slice_p.bind(S.concatenate([a, a], ax), *starts, slice_sizes=shp)
    return a


def rot90(m, k=1, axes=(0, 1)):
    m = asarray_value(m)
    nd = get_aval(m).ndim
    axes = _int_tuple(axes, "axes")
    if len(axes) != 2:
        raise ValueError(f"rot90: axes must be two axes, got {axes}")
    if nd < 2:
        raise ValueError(f"rot90 needs an array of at least 2 dimensions, got shape {_shape_of(m)}")
    a0, a1 = check_axis(axes[0], nd), check_axis(axes[1], nd)
    if a0 == a1:
        raise ValueError(f"rot90: axes must be different, got {axes}")
    k = _int(k, "k") % 4
    if k == 0:
        return m
    if k == 2:
        return S.rev(m, tuple(sorted((a0, a1))))
    perm = list(range(nd))
    perm[a0], perm[a1] = perm[a1], perm[a0]
    if k == 1:  # counter-clockwise from a0 towards a1: flip a1, swap
        return transpose(S.rev(m, (a1,)), perm)
    return S.rev(transpose(m, perm), (a1,))


# --------------------------------------------------------------------------
# pad


def _pairs(v, nd, name, as_int=True):
    """numpy's pad_width / constant_values forms -> nd (before, after) pairs."""
    arr = np.asarray(v, dtype=object if not as_int else None)
    if as_int:
        if arr.dtype.kind not in "iu" and arr.size:
            if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)
            else:
                raise TypeError(f"pad: {name} must contain integers, got {v!r}")
        arr = arr.astype(np.int64)
    try:
        arr = np.broadcast_to(arr, (nd, 2)) if arr.ndim <= 2 else None
    except ValueError:
        arr = None
    if arr is None:
        raise ValueError(f"pad: {name} {v!r} cannot be broadcast to ({nd}, 2) "
                         f"(one (before, after) pair per axis)")
    if as_int:  # plain ints: they end up in hashable, printable params
        return [(int(arr[i, 0]), int(arr[i, 1])) for i in range(nd)]
    return [tuple(arr[i]) for i in range(nd)]


def _take_runs(x, idx, axis):
    """x taken at static indices `idx` along `axis`, built from slices:
    runs of indices in arithmetic progression become one (strided, maybe
    reversed) slice, runs of one repeated index a broadcast."""
    idx = [int(i) for i in idx]
    pieces = []
    p = 0
    while p < len(idx):
        step = idx[p + 1] - idx[p] if p + 1 < len(idx) else 1
        q = p + 1
        while q < len(idx) and idx[q] - idx[q - 1] == step:
            q += 1
        first, last, cnt = idx[p], idx[q - 1], q - p
        if step == 0:
            piece = _repeat_int(S.slice_in_dim(x, first, first + 1, 1, axis), cnt, axis)
        elif step > 0:
            piece = S.slice_in_dim(x, first, last + 1, step, axis)
        else:
            piece = S.rev(S.slice_in_dim(x, last, first + 1, -step, axis), (axis,))
        pieces.append(piece)
        p = q
    return S.concatenate(pieces, axis)


def _pad_constant(a, widths, constant_values):
    nd = get_aval(a).ndim
    dt, weak = dtype_weak(a)
    if isinstance(constant_values, (Tracer, Array)) and get_aval(constant_values).ndim == 0:
        vals = [(constant_values, constant_values)] * nd
    else:
        vals = _pairs(constant_values, nd, "constant_values", as_int=False) if nd else []
    conv = {}

    def as_scalar(v):
        key = id(v)
        if key not in conv:
            if isinstance(v, (Tracer, Array)):
                conv[key] = ew.convert(v, dt, weak and get_aval(v).weak_type)
            elif type(v) in (bool, int, float, complex):
                # a Python scalar is weak: it keeps a weak operand weak (as jnp)
                conv[key] = Array(np.asarray(v).astype(dt), True)
            else:
                conv[key] = np.asarray(v).astype(dt)[()]
        return conv[key]

    scalars = [(as_scalar(b), as_scalar(c)) for b, c in vals]
    flat = [v for pair in scalars for v in pair]
    same = all(v is flat[0] for v in flat)
    if not nd:
        return a
    if same:
        return S.pad_p.bind(a, flat[0], padding_config=tuple((lo, hi, 0) for lo, hi in widths))
    # different values per axis/side: pad axis by axis (later axes cover the corners)
    for ax, ((lo, hi), (vb, va)) in enumerate(zip(widths, scalars)):
        cfg = [(0, 0, 0)] * nd
        if lo:
            cfg[ax] = (lo, 0, 0)
            a = S.pad_p.bind(a, vb, padding_config=tuple(cfg))
        if hi:
            cfg[ax] = (0, hi, 0)
            a = S.pad_p.bind(a, va, padding_config=tuple(cfg))
    return a


def _pad_reflect_odd(a, ax, lo, hi, mode):
    """reflect_type='odd': values are mirrored through the edge value
    (2 * edge - mirror), extended chunk by chunk for wide pads as numpy."""
    n = _shape_of(a)[ax]
    offset = 1 if (mode == "reflect" and n > 1) else 0
    step = n - offset
    for before, width in ((True, lo), (False, hi)):
        while width > 0:
            cur = _shape_of(a)[ax]
            chunk = builtins.min(width, step)
            width -= chunk
            if before:
                edge = S.slice_in_dim(a, 0, 1, 1, ax)
                part = S.slice_in_dim(a, offset, offset + chunk, 1, ax)
            else:
                edge = S.slice_in_dim(a, cur - 1, cur, 1, ax)
                part = S.slice_in_dim(a, cur - offset - chunk, cur - offset, 1, ax)
            two = np.asarray(2, get_aval(a).dtype)[()]
            twice_edge = S.broadcast_to(ew.mul_p.bind(edge, two), _shape_of(part))
            part = ew.sub_p.bind(twice_edge, S.rev(part, (ax,)))
            a = S.concatenate([part, a] if before else [a, part], ax)
    return a


_INDEX_MODES = ("edge", "reflect", "symmetric", "wrap")


def pad(array, pad_width, mode="constant", **kwargs):
    a = asarray_value(array)
    shp = _shape_of(a)
    nd = len(shp)
    if callable(mode):
        raise ValueError("pad: a callable mode is not supported")
    widths = _pairs(pad_width, nd, "pad_width") if nd else []
    if any(w < 0 for pair in widths for w in pair):
        raise ValueError(f"pad: index can't contain negative values, got pad_width {pad_width!r}")
    allowed = {"constant": {"constant_values"}, "empty": set(), "edge": set(),
               "wrap": set(), "reflect": {"reflect_type"}, "symmetric": {"reflect_type"}}
    if mode not in allowed:
        raise ValueError(f"pad: mode {mode!r} is not supported; use one of "
                         f"{', '.join(sorted(allowed))}")
    extra = set(kwargs) - allowed[mode]
    if extra:
        raise ValueError(f"pad: unsupported keyword arguments for mode {mode!r}: {sorted(extra)}")
    if mode in ("constant", "empty"):
        return _pad_constant(a, widths, kwargs.get("constant_values", 0))
    reflect_type = kwargs.get("reflect_type", "even")
    if reflect_type not in ("even", "odd"):
        raise ValueError(f"pad: reflect_type must be 'even' or 'odd', got {reflect_type!r}")
    for ax, (lo, hi) in enumerate(widths):
        if lo == 0 and hi == 0:
            continue
        n = shp[ax]
        if n == 0:
            raise ValueError(f"pad: can't extend empty axis {ax} using modes other than "
                             f"'constant' or 'empty'")
        if mode in ("reflect", "symmetric") and reflect_type == "odd":
            a = _pad_reflect_odd(a, ax, lo, hi, mode)
            continue
        # these modes copy elements along the axis: numpy's own pad of the
        # index vector says which element lands where
        idx = np.pad(np.arange(n), (lo, hi), mode=mode)
        a = _take_runs(a, idx, ax)
    return a


# --------------------------------------------------------------------------
# grids and queries


def meshgrid(*xi, copy=True, sparse=False, indexing="xy"):
    if indexing not in ("xy", "ij"):
        raise ValueError(f"meshgrid: indexing must be 'xy' or 'ij', got {indexing!r}")
    args = [asarray_value(x) for x in xi]
    if any(get_aval(x).ndim != 1 for x in args):
        raise ValueError(f"meshgrid arguments must be 1-D, got shapes {[_shape_of(x) for x in args]}")
    swap = indexing == "xy" and len(args) >= 2
    if swap:  # 'xy': the first two output axes are exchanged
        args[0], args[1] = args[1], args[0]
    sizes = [_shape_of(x)[0] for x in args]
    outs = []
    for i, x in enumerate(args):
        shape = tuple(s if j == i else (1 if sparse else sizes[j]) for j, s in enumerate(sizes))
        outs.append(S.broadcast_in_dim_p.bind(x, shape=shape, broadcast_dimensions=(i,)))
    if swap:
        outs[0], outs[1] = outs[1], outs[0]
    return outs


def ndim(a):
    return len(np.shape(a)) if not isinstance(a, (Array, Tracer)) else get_aval(a).ndim


def shape(a):
    return np.shape(a) if not isinstance(a, (Array, Tracer)) else get_aval(a).shape


def size(a, axis=None):
    s = shape(a)
    if axis is None:
        return int(np.prod(s, dtype=np.int64))
    return s[check_axis(axis, len(s))]


# --------------------------------------------------------------------------
# methods


def _iter_leading(x):
    shp = _shape_of(x)
    if not shp:
        raise TypeError("iteration over a 0-d array")
    if type(x) is Array and core._ctx.trace is None:
        v = x.value
        for i in range(shp[0]):
            yield Array(np.asarray(v[i]), x.weak)
        return
    for i in range(shp[0]):
        yield S.squeeze_p.bind(S.slice_in_dim(x, i, i + 1, 1, 0), dimensions=(0,))


_ctx = core._ctx  # (the one context object: its .trace changes, never the object)


def _m_reshape(self, *shape, order="C", **kw):
    if _ctx.trace is None and type(self) is Array and order == "C" and not kw:
        # eager x.reshape(n, m) / x.reshape((n, m)): NumPy's view (the impl's),
        # weak type kept. NumPy accepts the shapes _infer_shape does but for
        # reading any negative size as -1: a result other than the request
        # had one negative size, which must be -1. NumPy's errors (and jit
        # results, not on the host yet) take the general path.
        v = self._v
        new = shape[0] if len(shape) == 1 and type(shape[0]) is tuple else shape
        if v is not None:
            try:
                y = v.reshape(new)
            except (ValueError, TypeError, OverflowError):
                pass
            else:
                if y.shape == new or min(new) == -1:
                    return Array(y, self.weak)
    if not kw and order == "C" and shape:
        # x.reshape(n, m) / x.reshape((n, m)): straight to the fast path
        out = _fast_reshape(self, shape[0] if len(shape) == 1 and type(shape[0]) is tuple
                            else shape)
        if out is not None:
            return out
    if "shape" in kw or "newshape" in kw:
        shape = kw.pop("shape") if "shape" in kw else kw.pop("newshape")
    elif len(shape) == 1:
        shape = shape[0]
    if kw:
        raise TypeError(f"reshape() got unexpected keyword arguments {sorted(kw)}")
    return reshape(self, shape, order=order)


def _m_transpose(self, *axes):
    if len(axes) == 0 or (len(axes) == 1 and axes[0] is None):
        return transpose(self)
    if len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):
        return transpose(self, axes[0])
    return transpose(self, axes)


def _m_iter(self):
    if not _shape_of(self):
        raise TypeError("iteration over a 0-d array")
    return _iter_leading(self)


METHODS = {
    "reshape": _m_reshape,
    "ravel": lambda self, order="C": ravel(self, order),
    "flatten": lambda self, order="C": ravel(self, order),
    "transpose": _m_transpose,
    "swapaxes": lambda self, axis1, axis2: swapaxes(self, axis1, axis2),
    "squeeze": lambda self, axis=None: squeeze(self, axis),
    "repeat": lambda self, repeats, axis=None, *, total_repeat_length=None: repeat(
        self, repeats, axis, total_repeat_length=total_repeat_length),
    "T": property(lambda self: transpose(self)),
    "mT": property(lambda self: matrix_transpose(self)),
    "__iter__": _m_iter,
}
