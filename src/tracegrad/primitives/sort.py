"""sort(*operands, dimension, is_stable, num_keys): sort along `dimension`
by the first `num_keys` operands (lexicographically), carrying the other
operands along (argsort = sort a key together with an iota).

Order: NumPy's, i.e. a total order where -0.0 == 0.0 and NaNs go last;
complex keys compare by real part, then imaginary part.

Differentiation: the sort permutes its operands, so tangents are permuted
the same way. The jvp sorts an iota along to learn the permutation `perm`
(out[i] = x[perm[i]]), then applies it to the tangents with another sort:
sorting (inverse permutation, tangent) by the inverse permutation puts
t[perm[i]] at i. That sort is linear in its carried operands, so sort_p is
marked linear: its transpose sorts the cotangents by `perm` itself (the
inverse operation), and only operands beyond the keys may be undefined.
"""
from __future__ import annotations

import numpy as np
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo as hlo

from .. import dtypes
from ..core import Primitive, get_aval
from ..interpreters import batching, lowering
from ..interpreters.ad import Zero, is_undefined
from . import shapes

_INDEX = dtypes.int64


def _np_keys(k):
    """NumPy key arrays (most significant first) giving the total order."""
    if dtypes.is_complex(k.dtype):
        return _np_keys(k.real) + _np_keys(k.imag)
    if dtypes.is_float(k.dtype):
        k = k.astype(np.float64) if k.dtype == dtypes.bfloat16 else k
        k = np.where(k == 0, np.zeros((), k.dtype), k)  # -0.0 sorts equal to 0.0
    return [k]


def _sort_impl(*operands, dimension, is_stable, num_keys):
    keys = [kk for k in operands[:num_keys] for kk in _np_keys(k)]
    # lexsort: the last key is the primary one; it is stable and puts NaNs last
    perm = np.lexsort(keys[::-1], axis=dimension) if operands[0].size else \
        np.zeros(operands[0].shape, np.intp)
    return [np.take_along_axis(x, perm, axis=dimension) for x in operands]


def _sort_abstract(*operands, dimension, is_stable, num_keys):
    if not operands:
        raise TypeError("sort needs at least one operand")
    shape = operands[0].shape
    for x in operands:
        if x.shape != shape:
            raise TypeError(f"sort operands must have equal shapes, got "
                            f"{', '.join(a.str_short() for a in operands)}")
    if not 0 <= dimension < len(shape):
        raise TypeError(f"sort dimension {dimension} is out of range for operands of shape {shape}")
    if not 1 <= num_keys <= len(operands):
        raise TypeError(f"sort num_keys={num_keys} must be between 1 and the number of "
                        f"operands ({len(operands)})")
    for k in operands[:num_keys]:
        if k.dtype == dtypes.float0:
            raise TypeError("sort keys cannot have dtype float0")
    return [x.update(weak_type=x.weak_type) for x in operands]


def _iota_like(x, dimension):
    return shapes.iota(_INDEX, get_aval(x).shape, dimension)


def permutation(keys, dimension, num_keys=None):
    """perm with sorted[i] = x[perm[i]] along `dimension` (stable)."""
    num_keys = len(keys) if num_keys is None else num_keys
    outs = sort_p.bind(*keys, _iota_like(keys[0], dimension), dimension=dimension,
                       is_stable=True, num_keys=num_keys)
    return outs[-1]


def _permute(perm, xs, dimension):
    """xs[perm] along `dimension` for each x: sort (inverse perm, x) by the
    inverse permutation (a permutation: no ties, so the order is unique)."""
    inv = sort_p.bind(perm, _iota_like(perm, dimension), dimension=dimension,
                      is_stable=True, num_keys=1)[1]
    return sort_p.bind(inv, *xs, dimension=dimension, is_stable=True, num_keys=1)[1:]


def _sort_jvp(primals, tangents, dimension, is_stable, num_keys):
    iota = _iota_like(primals[0], dimension)
    outs = sort_p.bind(*primals, iota, dimension=dimension, is_stable=is_stable,
                       num_keys=num_keys)
    perm, outs = outs[-1], outs[:-1]
    live = [i for i, t in enumerate(tangents) if type(t) is not Zero]
    touts = [Zero.like(o) for o in outs]
    if live:
        moved = _permute(perm, [tangents[i] for i in live], dimension)
        for i, t in zip(live, moved):
            touts[i] = t
    return outs, touts


def _sort_transpose(cts, *operands, dimension, is_stable, num_keys):
    keys = operands[:num_keys]
    if any(is_undefined(k) for k in keys):
        raise TypeError("sort is not linear in its keys")
    undef = [i for i, x in enumerate(operands) if is_undefined(x)]
    out = [None] * len(operands)
    live = [i for i in undef if type(cts[i]) is not Zero]
    if not live:
        return out
    # forward: y = x[perm]; transpose: ct_x[perm[i]] = ct_y[i], i.e. sort by perm
    perm = permutation(list(keys), dimension)
    moved = sort_p.bind(perm, *[cts[i] for i in live], dimension=dimension, is_stable=True,
                        num_keys=1)[1:]
    for i, c in zip(live, moved):
        out[i] = c
    return out


def _sort_batch(args, dims, dimension, is_stable, num_keys):
    xs, _ = batching.move_all_to_front(args, dims)
    outs = sort_p.bind(*xs, dimension=dimension + 1, is_stable=is_stable, num_keys=num_keys)
    return outs, [0] * len(outs)


# ---- lowering: a comparator region "lhs < rhs" in the total order


def _canonical_float(x, aval):
    """-0.0 -> 0.0 and every NaN -> +NaN, so TOTALORDER comparison sorts like
    NumPy (zeros equal, NaNs last)."""
    zero = lowering.constant(np.zeros((), aval.dtype))
    nan = lowering.constant(np.full((), np.nan, aval.dtype))
    x = hlo.SelectOp(lowering.compare(x, zero, "EQ", aval), zero, x).result
    return hlo.SelectOp(lowering.compare(x, x, "NE", aval), nan, x).result


def _key_parts(x, aval):
    """(value, scalar aval, comparison type) parts of one key, most significant first."""
    dt = np.dtype(aval.dtype)
    if dtypes.is_complex(dt):
        part = lowering._Aval((), np.finfo(dt).dtype)
        return (_key_parts(hlo.RealOp(x).result, part) + _key_parts(hlo.ImagOp(x).result, part))
    if dtypes.is_float(dt):
        return [(_canonical_float(x, aval), aval, "TOTALORDER")]
    return [(x, aval, None)]


def _sort_lower(ctx, *operands, dimension, is_stable, num_keys):
    types = [lowering.ir_type(a) for a in ctx.avals_out]
    op = hlo.SortOp(types, list(operands), dimension=dimension, is_stable=is_stable)
    scalars = [lowering._Aval((), a.dtype) for a in ctx.avals_in]
    block = op.comparator.blocks.append(*[lowering.ir_type(s) for s in scalars for _ in (0, 1)])
    with ir.InsertionPoint(block):
        args = list(block.arguments)
        parts = []
        for k in range(num_keys):
            lhs, rhs = args[2 * k], args[2 * k + 1]
            parts += list(zip(_key_parts(lhs, scalars[k]), _key_parts(rhs, scalars[k])))
        # lexicographic: lt_0 | (eq_0 & (lt_1 | (eq_1 & ...)))
        result = None
        for (a, aval, ct), (b, _, _) in reversed(parts):
            lt = lowering.compare(a, b, "LT", aval, ct)
            if result is None:
                result = lt
            else:
                eq = lowering.compare(a, b, "EQ", aval, ct)
                result = hlo.OrOp(lt, hlo.AndOp(eq, result).result).result
        hlo.ReturnOp([result])
    return list(op.results)


sort_p = Primitive("sort", impl=_sort_impl, abstract_eval=_sort_abstract, jvp=_sort_jvp,
                   transpose=_sort_transpose, batch=_sort_batch, lower=_sort_lower,
                   multiple_results=True, linear=True)


def sort(operands, dimension=-1, is_stable=True, num_keys=1):
    """lax.sort: one array or a sequence of arrays sorted by the first num_keys."""
    single = not isinstance(operands, (list, tuple))
    ops = [operands] if single else list(operands)
    nd = get_aval(ops[0]).ndim
    dim = dimension % nd if nd else dimension
    outs = sort_p.bind(*ops, dimension=dim, is_stable=bool(is_stable), num_keys=int(num_keys))
    return outs[0] if single else tuple(outs)
