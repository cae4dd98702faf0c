"""tracegrad.numpy.linalg (tnp.linalg): norms, det/slogdet, solve/inv and
the array-API linalg names (matmul, tensordot, vecdot, diagonal, trace...).

det, slogdet, solve and inv run Gaussian elimination with partial pivoting
written in primitives (unrolled over the static matrix size), so they are
differentiable to any order, batch under vmap and lower under jit without
any LAPACK call. Eagerly, outside every transformation, they call NumPy's
LAPACK directly (faster, same results up to rounding).
"""
from __future__ import annotations

import numpy as np

from .. import core, dtypes
from ..core import Array, get_aval
from ..primitives import elementwise as ew
from ..primitives import reductions as R
from ..primitives import shapes as S
from . import linalg as _base
from . import ufuncs
from ._util import asarray_value, canonical_axes, promote_inexact
from .linalg import cross, einsum, matmul, outer, tensordot, vecdot  # noqa: F401
from .reductions import sum as _tsum
from .shape import matrix_transpose  # noqa: F401

__all__ = [
    "norm", "vector_norm", "matrix_norm", "det", "slogdet", "solve", "inv", "matmul", "outer",
    "tensordot", "vecdot", "cross", "einsum", "diagonal", "trace", "matrix_transpose",
]


def _shape(x):
    return get_aval(x).shape


def diagonal(x, *, offset=0):
    """Array-API diagonal: over the last two axes."""
    return _base.diagonal(x, offset, -2, -1)


def trace(x, *, offset=0, dtype=None):
    """Array-API trace: over the last two axes."""
    return _base.trace(x, offset, -2, -1, dtype)


# --------------------------------------------------------------------------
# norms


def _sum(x, axes, keepdims):
    return _tsum(x, axis=axes, keepdims=keepdims)


def _keep(out, shape, axes, keepdims):
    if not keepdims:
        return out
    return S.reshape(out, tuple(1 if i in axes else s for i, s in enumerate(shape)))


def _extreme(x, axes, keepdims, kind):
    """max / min over axes (max of an empty set is 0, as jnp's initial=0)."""
    shape = _shape(x)
    if not axes:
        return x
    if kind == "max":
        out = R.reduce_max_p.bind(x, axes=tuple(axes))
        if any(shape[a] == 0 for a in axes):
            out = ew.max_p.bind(out, np.zeros((), get_aval(x).dtype)[()])
    else:
        if any(shape[a] == 0 for a in axes):
            raise ValueError("zero-size array to a minimum reduction (norm with ord=-inf / -1)")
        out = R.reduce_min_p.bind(x, axes=tuple(axes))
    return _keep(out, shape, axes, keepdims)


def _abs2(x):
    """|x|^2 with x's real dtype."""
    u = ufuncs
    if dtypes.is_complex(get_aval(x).dtype):
        return u.real(u.multiply(x, u.conjugate(x)))
    return u.multiply(x, x)


def vector_norm(x, *, axis=None, keepdims=False, ord=2):
    x = asarray_value(x)
    (x,) = promote_inexact(x)
    u = ufuncs
    axes = canonical_axes(axis, len(_shape(x)))
    if ord is None or (not isinstance(ord, str) and ord == 2):
        return u.sqrt(_sum(_abs2(x), axes, keepdims))
    if isinstance(ord, str):
        raise ValueError(f"Invalid order {ord!r} for vector norm (use tnp.inf for the max norm)")
    if ord == np.inf:
        return _extreme(u.abs(x), axes, keepdims, "max")
    if ord == -np.inf:
        return _extreme(u.abs(x), axes, keepdims, "min")
    if ord == 0:
        rdt = dtypes.finfo(get_aval(x).dtype).dtype
        return _tsum(u.not_equal(x, 0), axis=axes, keepdims=keepdims, dtype=rdt)
    if ord == 1:
        return _sum(u.abs(x), axes, keepdims)
    ax = u.abs(x)
    dt = get_aval(ax).dtype
    p = np.asarray(ord, dt)[()]
    return u.power(_sum(u.power(ax, p), axes, keepdims), np.asarray(1.0 / ord, dt)[()])


def norm(x, ord=None, axis=None, keepdims=False):
    """numpy.linalg.norm: vector norms over one axis, matrix norms over two
    ('fro', 1, -1, inf, -inf); with axis=None a 1-D input gets a vector
    norm, a 2-D input a matrix norm, and ord=None any input the 2-norm of
    all its entries."""
    x = asarray_value(x)
    (x,) = promote_inexact(x)
    u = ufuncs
    nd = len(_shape(x))
    if axis is None:
        if ord is None:
            return u.sqrt(_sum(_abs2(x), tuple(range(nd)), keepdims))
        axes = tuple(range(nd))
    else:
        axes = canonical_axes(axis, nd)
        if not isinstance(axis, (tuple, list)):
            axes = axes[:1]
    if len(axes) == 1:
        return vector_norm(x, axis=axes, keepdims=keepdims, ord=2 if ord is None else ord)
    if len(axes) != 2:
        raise ValueError(f"Improper number of axes for norm: axis={axis}. Pass one axis for a "
                         "vector norm or two axes for a matrix norm.")
    row, col = axes
    if ord is None or ord in ("f", "fro"):
        return u.sqrt(_sum(_abs2(x), axes, keepdims))
    if isinstance(ord, str) or ord in (2, -2):
        raise ValueError(f"matrix norm ord={ord!r} needs singular values (an SVD), which "
                         "tracegrad does not provide; supported: None, 'fro', 1, -1, inf, -inf")
    if ord in (1, -1):
        s = _sum(u.abs(x), (row,), keepdims)
        c = col - 1 if (not keepdims and col > row) else col
        return _extreme(s, (c,), keepdims, "max" if ord == 1 else "min")
    if ord in (np.inf, -np.inf):
        s = _sum(u.abs(x), (col,), keepdims)
        r = row - 1 if (not keepdims and row > col) else row
        return _extreme(s, (r,), keepdims, "max" if ord > 0 else "min")
    raise ValueError(f"Invalid order {ord!r} for matrix norm")


def matrix_norm(x, *, keepdims=False, ord="fro"):
    return norm(x, ord=ord, axis=(-2, -1), keepdims=keepdims)


# --------------------------------------------------------------------------
# Gaussian elimination with partial pivoting, in primitives


def _scalar(v, dt):
    return np.asarray(v, dt)[()]


def _col(x, j):
    """x[..., :, j] -> (..., n)."""
    s = _shape(x)
    return S.reshape(S.slice_in_dim(x, j, j + 1, 1, len(s) - 1), s[:-1])


def _row(x, j):
    """x[..., j, :] -> (..., w)."""
    s = _shape(x)
    return S.reshape(S.slice_in_dim(x, j, j + 1, 1, len(s) - 2), s[:-2] + s[-1:])


def _bcast(v, shape, dims):
    return S.broadcast_in_dim_p.bind(v, shape=shape, broadcast_dimensions=tuple(dims))


def _eliminate(x, n):
    """Forward elimination on x (..., n, w), pivoting on the first n columns.
    Returns (the row echelon form U, the permutation's sign as x's dtype)."""
    shape = _shape(x)
    nd = len(shape)
    batch = shape[:-2]
    dt = get_aval(x).dtype
    real = dtypes.finfo(dt).dtype
    row_ids = S.iota(dtypes.int64, shape, nd - 2)
    vec_ids = S.iota(dtypes.int64, batch + (n,), nd - 2)
    lead = tuple(range(nd - 2))
    sign = S.full(batch, 1, dt)
    zero = _scalar(0, dt)
    for j in range(n):
        col = _col(x, j)
        mag = ew.abs_p.bind(col)
        if get_aval(mag).dtype != real:
            mag = ew.convert(mag, real)
        # the largest |entry| on or below the diagonal picks the pivot row
        below = ew.ge_p.bind(vec_ids, _scalar(j, dtypes.int64))
        score = ew.select_n_p.bind(below, S.full(batch + (n,), -1, real), mag)
        p = R.argmax_p.bind(score, axes=(nd - 2,), index_dtype=dtypes.int64)
        is_p = ew.eq_p.bind(vec_ids, _bcast(p, batch + (n,), lead))
        is_p_rows = _bcast(is_p, shape, lead + (nd - 2,))
        row_j = _row(x, j)
        row_p = R.reduce_sum_p.bind(ew.select_n_p.bind(is_p_rows, S.full(shape, 0, dt), x),
                                    axes=(nd - 2,))
        # swap rows j and p
        at_j = ew.eq_p.bind(row_ids, _scalar(j, dtypes.int64))
        x = ew.select_n_p.bind(is_p_rows, x, _bcast(row_j, shape, lead + (nd - 1,)))
        x = ew.select_n_p.bind(at_j, x, _bcast(row_p, shape, lead + (nd - 1,)))
        swapped = ew.ne_p.bind(p, _scalar(j, dtypes.int64))
        sign = ew.select_n_p.bind(swapped, sign, ew.neg_p.bind(sign))
        # eliminate below the pivot (a zero pivot means a zero column: skip)
        pivot = S.reshape(S.slice_in_dim(row_p, j, j + 1, 1, nd - 2), batch)
        safe = ew.select_n_p.bind(ew.eq_p.bind(pivot, zero), pivot, S.full(batch, 1, dt))
        factor = ew.div_p.bind(_col(x, j), _bcast(safe, batch + (n,), lead))
        update = ew.sub_p.bind(x, ew.mul_p.bind(_bcast(factor, shape, lead + (nd - 2,)),
                                                 _bcast(row_p, shape, lead + (nd - 1,))))
        after = ew.gt_p.bind(row_ids, _scalar(j, dtypes.int64))
        x = ew.select_n_p.bind(after, x, update)
    return x, sign


def _back_substitute(u, n):
    """Gauss-Jordan on the echelon form u (..., n, w): returns the columns
    n: of the reduced form (the solution of the augmented system)."""
    shape = _shape(u)
    nd = len(shape)
    batch = shape[:-2]
    lead = tuple(range(nd - 2))
    row_ids = S.iota(dtypes.int64, shape, nd - 2)
    for j in range(n - 1, -1, -1):
        row = _row(u, j)
        piv = S.reshape(S.slice_in_dim(row, j, j + 1, 1, nd - 2), batch)
        row = ew.div_p.bind(row, _bcast(piv, batch + shape[-1:], lead))
        u = ew.select_n_p.bind(ew.eq_p.bind(row_ids, _scalar(j, dtypes.int64)), u,
                               _bcast(row, shape, lead + (nd - 1,)))
        coef = _col(u, j)
        update = ew.sub_p.bind(u, ew.mul_p.bind(_bcast(coef, shape, lead + (nd - 2,)),
                                                 _bcast(row, shape, lead + (nd - 1,))))
        u = ew.select_n_p.bind(ew.lt_p.bind(row_ids, _scalar(j, dtypes.int64)), u, update)
    return S.slice_in_dim(u, n, shape[-1], 1, nd - 1)


def _square(a, name):
    a = asarray_value(a)
    (a,) = promote_inexact(a)
    s = _shape(a)
    if len(s) < 2 or s[-1] != s[-2]:
        raise ValueError(f"Argument to {name}() must have shape [..., n, n], got {s}")
    return a, s[-1]


def _eager_value(x):
    """The NumPy value when running eagerly on a concrete Array, else None."""
    if core._ctx.trace is None and type(x) is Array:
        return x.value
    return None


def _diag_entries(u, n):
    return _base.diagonal(S.slice_in_dim(u, 0, n, 1, len(_shape(u)) - 1), 0, -2, -1)


def det(a):
    """Determinant (..., n, n) -> (...)."""
    a, n = _square(a, "det")
    v = _eager_value(a)
    if v is not None and v.dtype.kind in "fc" and v.dtype.itemsize >= 4:
        return Array(np.asarray(np.linalg.det(v), v.dtype), get_aval(a).weak_type)
    u, sign = _eliminate(a, n)
    d = _diag_entries(u, n)
    return ew.mul_p.bind(sign, R.reduce_prod_p.bind(d, axes=(len(_shape(d)) - 1,)))


def slogdet(a):
    """(sign, log|det|) of (..., n, n); sign 0 and -inf for singular input."""
    a, n = _square(a, "slogdet")
    dt = get_aval(a).dtype
    v = _eager_value(a)
    if v is not None and v.dtype.kind in "fc" and v.dtype.itemsize >= 4:
        s, l = np.linalg.slogdet(v)
        w = get_aval(a).weak_type
        return (Array(np.asarray(s, dt), w),
                Array(np.asarray(l, dtypes.finfo(dt).dtype), w))
    u, sign = _eliminate(a, n)
    d = _diag_entries(u, n)
    ax = (len(_shape(d)) - 1,)
    mag = ew.abs_p.bind(d)
    real = dtypes.finfo(dt).dtype
    if get_aval(mag).dtype != real:
        mag = ew.convert(mag, real)
    logdet = R.reduce_sum_p.bind(ew.log_p.bind(mag), axes=ax)
    is_zero = R.reduce_or_p.bind(ew.eq_p.bind(mag, _scalar(0, real)), axes=ax)
    if dtypes.is_complex(dt):
        unit = ew.div_p.bind(d, ew.convert(mag, dt))
        unit = ew.select_n_p.bind(ew.eq_p.bind(mag, _scalar(0, real)), unit,
                                  S.full(_shape(d), 1, dt))
        s = R.reduce_prod_p.bind(unit, axes=ax)
    else:
        s = R.reduce_prod_p.bind(ew.sign_p.bind(d), axes=ax)
    s = ew.mul_p.bind(sign, s)
    s = ew.select_n_p.bind(is_zero, s, S.full(_shape(s), 0, dt))
    logdet = ew.select_n_p.bind(is_zero, logdet, S.full(_shape(logdet), -np.inf, real))
    return s, logdet


def solve(a, b):
    """Solve a x = b: b (n,) is one vector, b (..., n, k) a batch of columns;
    batch axes broadcast."""
    a, n = _square(a, "solve")
    b = asarray_value(b)
    a, b = promote_inexact(a, b)
    sa, sb = _shape(a), _shape(b)
    if len(sb) == 1:
        if sb[0] != n:
            raise ValueError(f"solve: b of shape {sb} does not match a of shape {sa}")
        return _squeeze_last(solve(a, S.reshape(b, (n, 1))))
    if (len(sb) > 1 and len(sa) == len(sb) + 1 and sa[-1] == sb[-1] and sa[-1] != sb[-2]):
        raise ValueError(f"Invalid shapes for solve: {sa}, {sb}: use solve(a, b[..., None])"
                         "[..., 0] for a batch of vectors")
    if sb[-2] != n:
        raise ValueError(f"solve: b of shape {sb} does not match a of shape {sa}")
    batch = tuple(np.broadcast_shapes(sa[:-2], sb[:-2]))
    a = S.broadcast_to(a, batch + sa[-2:])
    b = S.broadcast_to(b, batch + sb[-2:])
    va, vb = _eager_value(a), _eager_value(b)
    if va is not None and vb is not None and va.dtype.itemsize >= 4:
        try:
            return Array(np.linalg.solve(va, vb).astype(va.dtype, copy=False))
        except np.linalg.LinAlgError:
            pass  # singular: the elimination below gives inf/nan like XLA
    aug = S.concatenate([a, b], len(batch) + 1)
    u, _ = _eliminate(aug, n)
    return _back_substitute(u, n)


def _squeeze_last(x):
    return S.reshape(x, _shape(x)[:-1])


def inv(a):
    """Matrix inverse of (..., n, n)."""
    a, n = _square(a, "inv")
    dt = get_aval(a).dtype
    v = _eager_value(a)
    if v is not None and v.dtype.itemsize >= 4:
        try:
            return Array(np.linalg.inv(v).astype(v.dtype, copy=False))
        except np.linalg.LinAlgError:
            pass
    eye = S.broadcast_to(Array(np.eye(n, dtype=dt)), _shape(a))
    return solve(a, eye)
