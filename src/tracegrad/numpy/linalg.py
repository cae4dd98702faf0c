"""tracegrad.numpy: products and diagonals (dot, matmul, einsum, tensordot,
trace, diagonal, tril, ...). Every contraction is one `dot_general`; the
`tnp.linalg` namespace (norm, det, solve, ...) lives in linalg_ns.py."""
from __future__ import annotations

import numpy as np

from .. import core, dtypes
from ..core import Array, get_aval
from ..primitives import elementwise as ew
from ..primitives import shapes as S
from ..primitives.linalg import canonicalize_precision, dot_general_p
from ..primitives.reductions import reduce_sum_p
from . import ufuncs
from ..interpreters.tape import TapeTracer
from ._util import asarray_value, check_axis, promote
from .reductions import sum as _sum
from .shape import moveaxis, stack

__all__ = [
    "dot", "matmul", "vdot", "vecdot", "inner", "outer", "tensordot", "einsum", "matvec",
    "vecmat", "trace", "diagonal", "diag", "diagflat", "tril", "triu", "kron", "cross",
]


# --------------------------------------------------------------------------
# helpers


def _prep(a, b, preferred_element_type):
    """Promote both operands to their common dtype; canonical preferred type."""
    a, b = promote(asarray_value(a), asarray_value(b))
    pet = None if preferred_element_type is None else dtypes.canonicalize(preferred_element_type)
    return a, b, pet


def _dot(a, b, contract, batch=((), ()), precision=None, pet=None):
    out = dot_general_p.bind(a, b, dimension_numbers=(contract, batch),
                             precision=canonicalize_precision(precision),
                             preferred_element_type=pet)
    if pet is not None and get_aval(out).weak_type:
        out = ew.convert(out, pet, False)  # an explicit output type is strong
    return out


def _shape(x):
    return get_aval(x).shape


def _transpose(x, perm):
    perm = tuple(int(p) for p in perm)
    if perm == tuple(range(len(perm))):
        return x
    return S.transpose_p.bind(x, permutation=perm)


def _squeeze(x, dims):
    return S.squeeze_p.bind(x, dimensions=tuple(sorted(dims))) if dims else x


def _zeros_like(x):
    a = get_aval(x)
    return S.full(a.shape, 0, a.dtype)


def _conj(x):
    return ufuncs.conjugate(x) if dtypes.is_complex(get_aval(x).dtype) else x


def _fast_matmul(a, b):
    """Eager matrix @ matrix / matrix @ vector / vector @ matrix of one float
    dtype: skip every generic step (the eager MLP hot path)."""
    ta, tb = type(a), type(b)
    taped = ta is TapeTracer or tb is TapeTracer  # eager grad: operands hold Arrays
    if taped:
        a_, b_ = (a.value if ta is TapeTracer else a), (b.value if tb is TapeTracer else b)
    elif core._ctx.trace is None:
        a_, b_ = a, b
    else:
        return None
    # (a NumPy operand, e.g. a weight matrix passed as data, is a strong constant)
    if type(a_) in _ARRAY_TYPES and type(b_) in _ARRAY_TYPES:
        va = a_._v if type(a_) is Array else a_
        vb = b_._v if type(b_) is Array else b_
        if (va is not None and vb is not None and 1 <= va.ndim <= 2 and 1 <= vb.ndim <= 2
                and va.ndim + vb.ndim > 2 and va.dtype == vb.dtype and va.dtype.kind == "f"
                and va.dtype.itemsize >= 4 and va.shape[-1] == vb.shape[0]):
            if taped:
                return _dot(a, b, ((va.ndim - 1,), (0,)))
            return Array(va @ vb, type(a_) is Array and a_.weak and type(b_) is Array and b_.weak)
    return None


_ARRAY_TYPES = (Array, np.ndarray)


# --------------------------------------------------------------------------
# products


def dot(a, b, *, precision=None, preferred_element_type=None):
    """numpy.dot: scalars multiply; else contract a's last axis with b's
    last (b 1-D) or second-to-last axis."""
    if preferred_element_type is None:
        out = _fast_matmul(a, b)
        if out is not None:
            return out
    a, b, pet = _prep(a, b, preferred_element_type)
    na, nb = len(_shape(a)), len(_shape(b))
    if na == 0 or nb == 0:
        contract = ((), ())
    else:
        contract = ((na - 1,), (0,) if nb == 1 else (nb - 2,))
    return _dot(a, b, contract, precision=precision, pet=pet)


def matmul(a, b, *, precision=None, preferred_element_type=None):
    """numpy.matmul: 1-D operands are promoted to matrices and the added axis
    removed; leading (batch) axes broadcast. Size-1 batch axes are squeezed
    rather than broadcast (no copies), as jnp.matmul does."""
    if preferred_element_type is None:
        out = _fast_matmul(a, b)
        if out is not None:
            return out
    a, b, pet = _prep(a, b, preferred_element_type)
    sa, sb = _shape(a), _shape(b)
    for i, s in enumerate((sa, sb)):
        if len(s) < 1:
            raise ValueError(f"matmul input operand {i} must have ndim at least 1, "
                             f"but it has ndim {len(s)}")
    a_mat, b_mat = len(sa) > 1, len(sb) > 1
    if sa[-1] != (sb[-2] if b_mat else sb[0]):
        raise ValueError(f"matmul: size mismatch in the contracted axis: shapes {sa} and {sb}")
    ab = sa[:-2] if a_mat else ()
    bb = sb[:-2] if b_mat else ()
    nbatch = max(len(ab), len(bb))
    ab = (None,) * (nbatch - len(ab)) + tuple(ab)
    bb = (None,) * (nbatch - len(bb)) + tuple(bb)
    a_sq, b_sq, both_sq = [], [], []
    a_batch, b_batch = [], []
    idx_batch, idx_a, idx_b = [], [], []
    for i, (x, y) in enumerate(zip(ab, bb)):
        if x is None:
            idx_b.append(i)
        elif y is None:
            idx_a.append(i)
        elif x == 1 and y == 1:
            a_sq.append(len(idx_batch) + len(idx_a) + len(a_sq))
            b_sq.append(len(idx_batch) + len(idx_b) + len(b_sq))
            both_sq.append(i)
        elif x == 1:
            idx_b.append(i)
            a_sq.append(len(idx_batch) + len(idx_a) + len(a_sq))
        elif y == 1:
            idx_a.append(i)
            b_sq.append(len(idx_batch) + len(idx_b) + len(b_sq))
        elif x == y:
            a_batch.append(len(idx_batch) + len(idx_a))
            b_batch.append(len(idx_batch) + len(idx_b))
            idx_batch.append(i)
        else:
            raise ValueError(f"matmul: batch shapes {sa[:-2]} and {sb[:-2]} do not broadcast "
                             f"(operands {sa} and {sb})")
    if a_mat:
        idx_a.append(nbatch)
    if b_mat:
        idx_b.append(nbatch + a_mat)
    perm = np.argsort(idx_batch + idx_a + idx_b)
    a = _squeeze(a, a_sq)
    b = _squeeze(b, b_sq)
    na, nb = len(_shape(a)), len(_shape(b))
    out = _dot(a, b, ((na - 1,), (nb - 1 - b_mat,)), (tuple(a_batch), tuple(b_batch)),
               precision, pet)
    out = _transpose(out, perm)
    if both_sq:
        shape = list(_shape(out))
        for i in both_sq:
            shape.insert(i, 1)
        out = S.reshape(out, tuple(shape))
    return out


def vdot(a, b, *, precision=None, preferred_element_type=None):
    """Flattened dot product, conjugating a."""
    a, b = asarray_value(a), asarray_value(b)
    a = _conj(a)
    return dot(_ravel(a), _ravel(b), precision=precision,
               preferred_element_type=preferred_element_type)


def _ravel(x):
    s = _shape(x)
    return x if len(s) == 1 else S.reshape(x, (int(np.prod(s, dtype=np.int64)),))


def vecdot(x1, x2, *, axis=-1, precision=None, preferred_element_type=None):
    """Conjugate dot product of vectors along `axis`, batch axes broadcast."""
    x1, x2, pet = _prep(x1, x2, preferred_element_type)
    s1, s2 = _shape(x1), _shape(x2)
    if s1[axis] != s2[axis]:
        raise ValueError(f"vecdot: axes must match; got shapes {s1} and {s2} with axis={axis}")
    x1 = moveaxis(_conj(x1), axis, -1)
    x2 = moveaxis(x2, axis, -1)
    out = matmul(S.reshape(x1, _shape(x1)[:-1] + (1, _shape(x1)[-1])),
                 S.reshape(x2, _shape(x2) + (1,)), precision=precision,
                 preferred_element_type=pet)
    return S.reshape(out, _shape(out)[:-2])


def matvec(x1, x2):
    """Batched matrix-vector product (..., n, m) x (..., m) -> (..., n)."""
    x2 = asarray_value(x2)
    out = matmul(x1, S.reshape(x2, _shape(x2) + (1,)))
    return S.reshape(out, _shape(out)[:-1])


def vecmat(x1, x2):
    """Batched conjugate vector-matrix product (..., n) x (..., n, m) -> (..., m)."""
    x1 = _conj(asarray_value(x1))
    s = _shape(x1)
    out = matmul(S.reshape(x1, s[:-1] + (1, s[-1])), x2)
    return S.reshape(out, _shape(out)[:-2] + _shape(out)[-1:])


def inner(a, b, *, precision=None, preferred_element_type=None):
    """Contract the last axes of a and b (scalars multiply)."""
    a, b, pet = _prep(a, b, preferred_element_type)
    na, nb = len(_shape(a)), len(_shape(b))
    contract = ((), ()) if na == 0 or nb == 0 else ((na - 1,), (nb - 1,))
    return _dot(a, b, contract, precision=precision, pet=pet)


def outer(a, b, out=None):
    """ravel(a)[:, None] * ravel(b)[None, :]."""
    if out is not None:
        raise ValueError("tnp.outer does not support out=")
    a, b = promote(asarray_value(a), asarray_value(b))
    a, b = _ravel(a), _ravel(b)
    return _dot(a, b, ((), ()))  # an outer product is a dot with nothing contracted


def tensordot(a, b, axes=2, *, precision=None, preferred_element_type=None):
    """Contract a's `axes` with b's: an int N means a's last N with b's first N."""
    a, b, pet = _prep(a, b, preferred_element_type)
    na, nb = len(_shape(a)), len(_shape(b))
    if isinstance(axes, (int, np.integer)) and not isinstance(axes, bool):
        n = int(axes)
        if n < 0 or n > min(na, nb):
            raise TypeError(f"tensordot: number of axes {n} exceeds the input ranks "
                            f"({_shape(a)} and {_shape(b)})")
        contract = (tuple(range(na - n, na)), tuple(range(n)))
    elif isinstance(axes, (tuple, list)) and len(axes) == 2:
        ax1, ax2 = axes
        if isinstance(ax1, (int, np.integer)) and isinstance(ax2, (int, np.integer)):
            ax1, ax2 = (ax1,), (ax2,)
        if not (isinstance(ax1, (tuple, list)) and isinstance(ax2, (tuple, list))):
            raise TypeError("tensordot axes must be an int, a pair of ints or a pair of "
                            f"sequences of ints, got {axes!r}")
        if len(ax1) != len(ax2):
            raise TypeError(f"tensordot axes lists must have equal lengths, got {ax1} and {ax2}")
        contract = (tuple(check_axis(int(i), na) for i in ax1),
                    tuple(check_axis(int(i), nb) for i in ax2))
    else:
        raise TypeError("tensordot axes must be an int, a pair of ints or a pair of "
                        f"sequences of ints, got {axes!r}")
    for i, j in zip(*contract):
        if _shape(a)[i] != _shape(b)[j]:
            raise ValueError(f"tensordot: shape mismatch in contracted axes: a axis {i} has "
                             f"size {_shape(a)[i]}, b axis {j} has size {_shape(b)[j]}")
    return _dot(a, b, contract, precision=precision, pet=pet)


def kron(a, b):
    """Kronecker product: out[i*p + k, j*q + l] = a[i, j] * b[k, l] (any rank)."""
    a, b = promote(asarray_value(a), asarray_value(b))
    sa, sb = _shape(a), _shape(b)
    n = max(len(sa), len(sb))
    sa, sb = (1,) * (n - len(sa)) + tuple(sa), (1,) * (n - len(sb)) + tuple(sb)
    # interleave: a -> (a0, 1, a1, 1, ...), b -> (1, b0, 1, b1, ...)
    a = S.reshape(a, tuple(x for s in sa for x in (s, 1)))
    b = S.reshape(b, tuple(x for s in sb for x in (1, s)))
    prod = ufuncs.multiply(a, b)
    return S.reshape(prod, tuple(x * y for x, y in zip(sa, sb)))


def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """Cross product of 3-vectors (or 2-vectors, zero-extended) along an axis."""
    u = ufuncs
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = promote(asarray_value(a), asarray_value(b))
    a, b = moveaxis(a, axisa, -1), moveaxis(b, axisb, -1)
    if _shape(a)[-1] not in (2, 3) or _shape(b)[-1] not in (2, 3):
        raise ValueError("incompatible dimensions for cross product (dimension must be 2 or 3)")

    def comp(x, i):
        s = _shape(x)
        if i >= s[-1]:
            return S.full(s[:-1], 0, get_aval(x).dtype)
        return S.reshape(S.slice_in_dim(x, i, i + 1, 1, len(s) - 1), s[:-1])

    a0, a1, a2 = (comp(a, i) for i in range(3))
    b0, b1, b2 = (comp(b, i) for i in range(3))
    if _shape(a)[-1] == 2 and _shape(b)[-1] == 2:
        return u.subtract(u.multiply(a0, b1), u.multiply(a1, b0))
    c = [u.subtract(u.multiply(a1, b2), u.multiply(a2, b1)),
         u.subtract(u.multiply(a2, b0), u.multiply(a0, b2)),
         u.subtract(u.multiply(a0, b1), u.multiply(a1, b0))]
    out = stack(c, axis=0)
    return moveaxis(out, 0, axisc)


# --------------------------------------------------------------------------
# einsum


def _parse_einsum(subscripts, shapes):
    """-> (label list per operand, output label list). Labels are letters;
    the axes under '...' get labels ('...', d), d = distance from the last
    ellipsis axis, so ellipsis axes broadcast right-aligned as in NumPy."""
    subscripts = subscripts.replace(" ", "")
    if "->" in subscripts:
        lhs, out = subscripts.split("->")
        explicit = True
    else:
        lhs, out, explicit = subscripts, "", False
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum: {len(terms)} operand subscripts for {len(shapes)} operands")

    def split_ellipsis(t, what):
        if "." not in t:
            return None
        if t.count("...") != 1 or t.replace("...", "").count("."):
            raise ValueError(f"einsum: invalid ellipsis in {what} {t!r}")
        return t.split("...")

    ell_rank = 0
    labels = []
    for t, s in zip(terms, shapes):
        parts = split_ellipsis(t, "subscripts")
        if parts is None:
            if len(t) != len(s):
                raise ValueError(f"einsum: subscripts {t!r} do not match an operand of rank "
                                 f"{len(s)} (shape {tuple(s)})")
            labels.append(list(t))
            continue
        pre, post = parts
        e = len(s) - len(pre) - len(post)
        if e < 0:
            raise ValueError(f"einsum: subscripts {t!r} name more axes than the operand's "
                             f"{len(s)}")
        ell_rank = max(ell_rank, e)
        labels.append(list(pre) + [("...", e - 1 - k) for k in range(e)] + list(post))
    for t in labels:
        for c in t:
            if not isinstance(c, tuple) and not c.isalpha():
                raise ValueError(f"einsum: invalid subscript character {c!r}")
    ell = [("...", ell_rank - 1 - k) for k in range(ell_rank)]
    if not explicit:
        counts = {}
        for t in labels:
            for c in t:
                if not isinstance(c, tuple):
                    counts[c] = counts.get(c, 0) + 1
        return labels, ell + sorted(c for c, n in counts.items() if n == 1)
    parts = split_ellipsis(out, "output")
    # ellipsis axes left out of an explicit output are summed, as in NumPy
    out_labels = list(out) if parts is None else list(parts[0]) + ell + list(parts[1])
    for c in out_labels:
        if not isinstance(c, tuple) and not any(c in t for t in labels):
            raise ValueError(f"einsum: output subscript {c!r} does not appear in the inputs")
    if len(set(out_labels)) != len(out_labels):
        raise ValueError(f"einsum: output subscripts {out!r} repeat a label")
    return labels, out_labels


def _diag_last_two(x):
    """Main diagonal of the trailing (n, n) block -> last axis of size n.
    Exact and cheap: the diagonal of a flattened n*n block is a stride-(n+1)
    slice."""
    s = _shape(x)
    n = s[-1]
    flat = S.reshape(x, s[:-2] + (n * n,))
    if n <= 1:
        return S.reshape(flat, s[:-2] + (n,))
    return S.slice_in_dim(flat, 0, n * n, n + 1, len(s) - 2)


def _take_diagonal(x, ax1, ax2):
    """Diagonal over two equal-size axes, appended as the last axis."""
    nd = len(_shape(x))
    rest = [i for i in range(nd) if i not in (ax1, ax2)]
    return _diag_last_two(_transpose(x, rest + [ax1, ax2]))


def einsum(subscripts, *operands, optimize="greedy", precision=None,
           preferred_element_type=None):
    """numpy.einsum: any subscripts (ellipsis, repeated labels for
    diagonals/traces, implicit output). Labels found in one operand only
    are summed first; operands are then contracted pairwise with
    dot_general, greedily picking the pair with the smallest result."""
    if not isinstance(subscripts, str):
        subscripts, operands = _sublists_to_str(subscripts, operands)
    ops = [asarray_value(o) for o in operands]
    if not ops:
        raise ValueError("einsum needs at least one operand")
    ops = promote(*ops)
    pet = None if preferred_element_type is None else dtypes.canonicalize(preferred_element_type)
    labels, out_labels = _parse_einsum(subscripts, [_shape(o) for o in ops])
    # sizes: a label of size 1 in some operand broadcasts against the others
    sizes = {}
    for t, o in zip(labels, ops):
        for c, n in zip(t, _shape(o)):
            if sizes.get(c, 1) != 1 and n != 1 and sizes[c] != n:
                raise ValueError(f"einsum: label {c!r} has sizes {sizes[c]} and {n} in "
                                 f"{subscripts!r}")
            if n != 1 or c not in sizes:
                sizes[c] = n
    ops, labels = list(ops), [list(t) for t in labels]
    for i, (o, t) in enumerate(zip(ops, labels)):
        # size-1 axes that broadcast are dropped: the operand does not vary along them
        drop = [k for k, c in enumerate(t) if _shape(o)[k] == 1 and sizes[c] != 1]
        if drop:
            o = _squeeze(o, drop)
            t = [c for k, c in enumerate(t) if k not in drop]
        # repeated labels in one operand: take the diagonal
        while True:
            dup = next((c for c in t if t.count(c) > 1), None)
            if dup is None:
                break
            a1 = t.index(dup)
            a2 = t.index(dup, a1 + 1)
            o = _take_diagonal(o, a1, a2)
            t = [c for k, c in enumerate(t) if k not in (a1, a2)] + [dup]
        ops[i], labels[i] = o, t

    def needed(skip):
        keep = set(out_labels)
        for j, t in enumerate(labels):
            if j not in skip:
                keep |= set(t)
        return keep

    # labels appearing in one operand only (and not in the output): sum them now
    for i in range(len(ops)):
        keep = needed({i})
        axes = tuple(k for k, c in enumerate(labels[i]) if c not in keep)
        if axes:
            ops[i] = reduce_sum_p.bind(ops[i], axes=axes)
            labels[i] = [c for k, c in enumerate(labels[i]) if k not in axes]

    while len(ops) > 1:
        i, j = _pick_pair(labels, sizes, out_labels, optimize)
        a, b, ta, tb = ops[i], ops[j], labels[i], labels[j]
        keep = needed({i, j})
        shared = [c for c in ta if c in tb]
        batch = [c for c in shared if c in keep]
        contract = [c for c in shared if c not in keep]
        dn = ((tuple(ta.index(c) for c in contract), tuple(tb.index(c) for c in contract)),
              (tuple(ta.index(c) for c in batch), tuple(tb.index(c) for c in batch)))
        out = dot_general_p.bind(a, b, dimension_numbers=dn,
                                 precision=canonicalize_precision(precision),
                                 preferred_element_type=pet)
        t_out = batch + [c for c in ta if c not in shared] + [c for c in tb if c not in shared]
        ops = [o for k, o in enumerate(ops) if k not in (i, j)] + [out]
        labels = [t for k, t in enumerate(labels) if k not in (i, j)] + [t_out]

    (res,), (t,) = ops, labels
    # labels left but not in the output (possible with a single operand)
    axes = tuple(k for k, c in enumerate(t) if c not in set(out_labels))
    if axes:
        res = reduce_sum_p.bind(res, axes=axes)
        t = [c for k, c in enumerate(t) if k not in axes]
    res = _transpose(res, [t.index(c) for c in out_labels])
    if pet is not None:
        res = ew.convert(res, pet, False)
    return res


def _pick_pair(labels, sizes, out_labels, optimize):
    n = len(labels)
    if not optimize or n == 2:
        return 0, 1
    best, best_cost = (0, 1), None
    for i in range(n):
        for j in range(i + 1, n):
            others = set(out_labels)
            for k, t in enumerate(labels):
                if k not in (i, j):
                    others |= set(t)
            res = set(labels[i]) | set(labels[j])
            res = [c for c in res if c in others or not (c in labels[i] and c in labels[j])]
            cost = int(np.prod([sizes[c] for c in res], dtype=np.int64))
            if best_cost is None or cost < best_cost:
                best, best_cost = (i, j), cost
    return best


def _sublists_to_str(first, rest):
    """einsum(op0, sublist0, op1, sublist1, ..., [sublist_out]) -> string form."""
    args = [first] + list(rest)
    ops, subs = args[0::2], args[1::2]
    out = None
    if len(ops) > len(subs):
        out = ops.pop()
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

    def conv(sub):
        s = ""
        for v in sub:
            s += "..." if v is Ellipsis else letters[int(v)]
        return s
    spec = ",".join(conv(s) for s in subs)
    if out is not None:
        spec += "->" + conv(out)
    return spec, ops


# --------------------------------------------------------------------------
# diagonals and triangles


def diagonal(a, offset=0, axis1=0, axis2=1):
    """The offset diagonal over axes (axis1, axis2), as the last axis."""
    a = asarray_value(a)
    s = _shape(a)
    nd = len(s)
    if nd < 2:
        raise ValueError("diagonal requires an array of at least two dimensions")
    ax1, ax2 = check_axis(int(axis1), nd, "axis1"), check_axis(int(axis2), nd, "axis2")
    if ax1 == ax2:
        raise ValueError(f"axis1 and axis2 cannot be the same (got {axis1} and {axis2})")
    offset = core.operator_index(offset)
    rest = [i for i in range(nd) if i not in (ax1, ax2)]
    x = _transpose(a, rest + [ax1, ax2])
    n, m = s[ax1], s[ax2]
    L = max(0, min(n + min(offset, 0), m - max(offset, 0)))
    r0, c0 = min(max(-offset, 0), n), min(max(offset, 0), m)
    x = S.static_slice(x, (0,) * (nd - 2) + (r0, c0), tuple(_shape(x)[:-2]) + (r0 + L, c0 + L))
    return _diag_last_two(x)


def trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    """Sum of the offset diagonal (dtype as tnp.sum)."""
    if out is not None:
        raise ValueError("tnp.trace does not support out=")
    return _sum(diagonal(a, offset, axis1, axis2), axis=-1, dtype=dtype)


def diag(v, k=0):
    """1-D v: a matrix with v on diagonal k. 2-D v: its diagonal k."""
    v = asarray_value(v)
    s = _shape(v)
    k = core.operator_index(k)
    if len(s) == 2:
        return diagonal(v, k)
    if len(s) != 1:
        raise ValueError("diag input must be 1-D or 2-D")
    n = s[0] + abs(k)
    dt = get_aval(v).dtype
    v = S.pad(v, np.zeros((), dt)[()], ((max(0, -k), max(0, k), 0),))
    rows = S.broadcast_in_dim_p.bind(v, shape=(n, n), broadcast_dimensions=(0,))
    return ew.select_n_p.bind(_tri_mask(n, n, k, "eq"), S.full((n, n), 0, dt), rows)


def diagflat(v, k=0):
    v = asarray_value(v)
    return diag(_ravel(v), k)


def _tri_mask(n, m, k, how):
    """Bool (n, m) mask built from iotas: col - row <= k ('le') or == k ('eq')."""
    dt = dtypes.int64
    r = S.iota(dt, (n, m), 0)
    c = S.iota(dt, (n, m), 1)
    d = ew.sub_p.bind(c, r)
    kk = np.asarray(k, dt)[()]
    return ew.le_p.bind(d, kk) if how == "le" else ew.eq_p.bind(d, kk)


def _tri_select(m, k, keep_lower, name):
    m = asarray_value(m)
    s = _shape(m)
    if len(s) < 2:
        raise ValueError(f"Argument to tnp.{name} must be at least 2-D, got shape {s}")
    mask = _tri_mask(s[-2], s[-1], k if keep_lower else k - 1, "le")
    mask = S.broadcast_in_dim_p.bind(mask, shape=s, broadcast_dimensions=(len(s) - 2, len(s) - 1))
    z = _zeros_like(m)
    # select_n(pred, on_false, on_true)
    return ew.select_n_p.bind(mask, z, m) if keep_lower else ew.select_n_p.bind(mask, m, z)


def tril(m, k=0):
    """Zero the entries above diagonal k of the last two axes."""
    return _tri_select(m, core.operator_index(k), True, "tril")


def triu(m, k=0):
    """Zero the entries below diagonal k of the last two axes."""
    return _tri_select(m, core.operator_index(k), False, "triu")


METHODS = {
    "dot": lambda self, b, *, precision=None, preferred_element_type=None: dot(
        self, b, precision=precision, preferred_element_type=preferred_element_type),
    "__matmul__": lambda self, other: matmul(self, other),
    "__rmatmul__": lambda self, other: matmul(other, self),
    "trace": trace,
    "diagonal": diagonal,
}
