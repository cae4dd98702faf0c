"""Primitive family: linalg. `dot_general` (lax semantics): contract
`lhs_contract` with `rhs_contract`, zip `lhs_batch` with `rhs_batch`; the
output axes are (batch..., lhs free..., rhs free...)."""
from __future__ import annotations

import math

import numpy as np
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo as hlo

from .. import dtypes
from ..core import Primitive, ShapedArray, get_aval
from ..interpreters import ad, lowering
from ..interpreters.ad import Zero, is_undefined
from . import elementwise as ew
from . import shapes

# ---------------------------------------------------------------- helpers


def _free(ndim, contract, batch):
    """The axes of an operand that are neither contracted nor batch axes."""
    taken = set(contract) | set(batch)
    return [i for i in range(ndim) if i not in taken]


def _type_rank(dt):
    """XLA's "higher precision type" order (mixed-dtype dots take the higher)."""
    cplx = dt.kind == "c"
    c = np.finfo(dt).dtype if cplx else dt
    if dtypes.is_float(c):
        fi = dtypes.finfo(c)
        return (cplx, int(fi.maxexp), int(fi.nmant), fi.bits, True)
    bits = 1 if c == dtypes.bool_ else c.itemsize * 8
    return (cplx, -1, -1, bits, c.kind != "u")


def dot_dtype(lhs_dt, rhs_dt, preferred=None):
    """Output dtype of a dot of the two dtypes (lax rule, XLA's MaybeUpcast)."""
    if lhs_dt == rhs_dt:
        res = lhs_dt
    else:
        rl, rr = _type_rank(lhs_dt), _type_rank(rhs_dt)
        if rl == rr:
            raise TypeError(f"argument types {dtypes.short_name(lhs_dt)} and "
                            f"{dtypes.short_name(rhs_dt)} have no common dot type")
        res = lhs_dt if rl > rr else rhs_dt
    if preferred is None or preferred == res:
        return res
    if not dtypes.is_float(res) and _bits(preferred) < _bits(res):
        raise TypeError(f"preferred_element_type {dtypes.short_name(preferred)} must not be "
                        f"narrower than the result type {dtypes.short_name(res)}")
    return preferred


def _bits(dt):
    return 1 if dt == dtypes.bool_ else dt.itemsize * 8


_NUMPY_FAST = frozenset(np.dtype(t) for t in (np.float32, np.float64, np.complex64, np.complex128))


def canonicalize_precision(precision):
    """None, 'highest', lax.Precision.HIGHEST, or a pair -> None or a pair of
    names in ('DEFAULT', 'HIGH', 'HIGHEST') (hashable, for jit's cache)."""
    if precision is None:
        return None
    if isinstance(precision, (tuple, list)):
        if len(precision) != 2:
            raise ValueError(f"precision must be one value or a pair, got {precision!r}")
        pair = tuple(_precision_name(p) for p in precision)
        return None if pair == (None, None) else tuple(p or "DEFAULT" for p in pair)
    p = _precision_name(precision)
    return None if p is None else (p, p)


_PRECISION_ALIASES = {"DEFAULT": "DEFAULT", "BFLOAT16": "DEFAULT", "FASTEST": "DEFAULT",
                      "HIGH": "HIGH", "TENSORFLOAT32": "HIGH", "BFLOAT16_3X": "HIGH",
                      "HIGHEST": "HIGHEST", "FLOAT32": "HIGHEST"}


def _precision_name(p):
    if p is None:
        return None
    name = getattr(p, "name", p)
    try:
        return _PRECISION_ALIASES[str(name).upper()]
    except KeyError:
        raise ValueError(f"unknown precision {p!r}: use 'default', 'high' or 'highest'") from None


def precision_attr(precision):
    """StableHLO precision_config for a canonical precision (None -> no attr)."""
    if precision is None:
        return None
    return ir.ArrayAttr.get([hlo.PrecisionAttr.get(p) for p in precision])


# ---------------------------------------------------------------- dot_general

def _dot_impl(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    (lc, rc), (lb, rb) = dimension_numbers
    out_dt = dot_dtype(lhs.dtype, rhs.dtype, preferred_element_type)
    # operands go to the output dtype (as the CPU lowering converts them);
    # half floats accumulate in f32, as XLA does
    calc = np.dtype(np.float32) if out_dt in (dtypes.float16, dtypes.bfloat16) else out_dt
    if lhs.dtype != calc:
        lhs = lhs.astype(calc)
    if rhs.dtype != calc:
        rhs = rhs.astype(calc)
    if not lb and len(lc) == 1 and 0 < lhs.ndim <= 2 and 0 < rhs.ndim <= 2:
        # matrix/vector products and their transposes (the eager MLP's
        # forward and backward): straight to BLAS, transposes as views
        a = lhs if lc[0] == lhs.ndim - 1 else lhs.T
        b = rhs if rc[0] == 0 else rhs.T
        # (a contraction of length 1 is an outer product: np.matmul skips
        # BLAS there and is ~10x slower than np.dot's gemm)
        out = np.dot(a, b) if lhs.shape[lc[0]] == 1 and calc in _NUMPY_FAST else a @ b
        if out.ndim == 0:
            out = np.asarray(out)
    else:
        out = _dot_generic(lhs, rhs, lc, rc, lb, rb)
    return out if out.dtype == out_dt else out.astype(out_dt)


def _dot_generic(lhs, rhs, lc, rc, lb, rb):
    """Any dot_general as one (batched) matmul: lhs -> (B, M, K), rhs -> (B, K, N)."""
    lf = _free(lhs.ndim, lc, lb)
    rf = _free(rhs.ndim, rc, rb)
    bshape = tuple(lhs.shape[i] for i in lb)
    lfs = tuple(lhs.shape[i] for i in lf)
    rfs = tuple(rhs.shape[i] for i in rf)
    # (math.prod, not np.prod: ~3 us less per call, and this runs per op under vmap)
    B = math.prod(bshape)
    M = math.prod(lfs)
    N = math.prod(rfs)
    K = math.prod([lhs.shape[i] for i in lc])
    a = lhs.transpose(tuple(lb) + tuple(lf) + tuple(lc))
    b = rhs.transpose(tuple(rb) + tuple(rc) + tuple(rf))
    if not lb:
        if M == 1 or N == 1 or K == 1:
            # matrix-vector / outer products: np.dot on 2-D still uses BLAS
            out = np.dot(a.reshape(M, K), b.reshape(K, N))
        else:
            out = a.reshape(M, K) @ b.reshape(K, N)
    elif K == 1:
        out = _batched_outer(a.reshape(B, M), b.reshape(B, N))
    else:
        out = np.matmul(a.reshape(B, M, K), b.reshape(B, K, N))
    return out.reshape(bshape + lfs + rfs)


def _batched_outer(a, b):
    """(B, M), (B, N) -> (B, M, N): out[i] = outer(a[i], b[i]).

    Per-example weight gradients under vmap. np.matmul with K == 1 does not
    use BLAS (~3x slower than a broadcast multiply), and the broadcast
    multiply pays ~7 ns per row of M for its inner ufunc loop of length N.
    With many rows, one BLAS gemm per example written straight into its
    slice of the result is faster (measured f32, B=128: 256x256 ~1.3x,
    64x256 ~1.6x, 256x10 ~1.6x); each example's block stays in cache
    between BLAS's beta=0 clear and its write. Below that size the ~0.65 us
    per call of np.dot loses."""
    B, M = a.shape
    N = b.shape[1]
    if (a.dtype in _NUMPY_FAST and B > 1 and N > 1
            and (M >= 128 or (M >= 16 and M * N >= 8192))):
        out = _empty_huge_aligned((B, M, N), a.dtype)
        dot = np.dot
        for x, y, o in zip(a.reshape(B, M, 1), b.reshape(B, 1, N), out):
            dot(x, y, out=o)
        return out
    return a[:, :, None] * b[:, None, :]


_HUGE_PAGE = 1 << 21


def _empty_huge_aligned(shape, dtype):
    """np.empty, but a large result starts on a 2 MiB boundary.

    Results of 32 MiB and more are fresh mmaps on every call (glibc's
    threshold), which NumPy madvises for transparent huge pages; the kernel
    backs only the 2 MiB-aligned part of a mapping with huge pages and the
    rest with 4 KiB pages, ~500 extra page faults (~0.8 ms) for a 32 MiB
    result at an unlucky address. Over-allocating by 2 MiB and starting at
    the aligned address avoids that; the unused head and tail are never
    touched, so they cost address space, not memory."""
    dtype = np.dtype(dtype)
    n = math.prod(shape) * dtype.itemsize
    if n < 2 * _HUGE_PAGE:
        return np.empty(shape, dtype)
    buf = np.empty(n + _HUGE_PAGE, np.uint8)
    start = -buf.ctypes.data % _HUGE_PAGE
    return buf[start:start + n].view(dtype).reshape(shape)


def _check_dims(name, aval, dims, what):
    if any(not 0 <= d < aval.ndim for d in dims):
        raise TypeError(f"{what} dimensions {tuple(dims)} are out of range for {name} "
                        f"{aval.str_short()}")
    if len(set(dims)) != len(dims):
        raise TypeError(f"{what} dimensions {tuple(dims)} of {name} must be distinct")


def _dot_abstract(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    (lc, rc), (lb, rb) = dimension_numbers
    _check_dims("lhs", lhs, lc, "contracting")
    _check_dims("lhs", lhs, lb, "batch")
    _check_dims("rhs", rhs, rc, "contracting")
    _check_dims("rhs", rhs, rb, "batch")
    if set(lc) & set(lb) or set(rc) & set(rb):
        raise TypeError(f"batch and contracting dimensions must be disjoint, got "
                        f"{dimension_numbers}")
    if len(lb) != len(rb):
        raise TypeError(f"lhs_batch {tuple(lb)} and rhs_batch {tuple(rb)} must have equal lengths")
    if len(lc) != len(rc):
        raise TypeError(f"lhs_contracting {tuple(lc)} and rhs_contracting {tuple(rc)} must have "
                        f"equal lengths")
    lbs, rbs = tuple(lhs.shape[i] for i in lb), tuple(rhs.shape[i] for i in rb)
    if lbs != rbs:
        raise TypeError(f"batch dimensions must have equal sizes, got {lbs} (lhs {lhs.str_short()}) "
                        f"and {rbs} (rhs {rhs.str_short()})")
    lcs, rcs = tuple(lhs.shape[i] for i in lc), tuple(rhs.shape[i] for i in rc)
    if lcs != rcs:
        raise TypeError(f"contracting dimensions must have equal sizes, got {lcs} "
                        f"(lhs {lhs.str_short()}) and {rcs} (rhs {rhs.str_short()})")
    dt = dot_dtype(lhs.dtype, rhs.dtype, preferred_element_type)
    shape = lbs + tuple(lhs.shape[i] for i in _free(lhs.ndim, lc, lb)) \
        + tuple(rhs.shape[i] for i in _free(rhs.ndim, rc, rb))
    return ShapedArray(shape, dt, lhs.weak_type and rhs.weak_type)




def _match_dtype(x, dt):
    return x if get_aval(x).dtype == dt else ew.convert(x, dt)


def _transpose_lhs(g, y, x_aval, dimension_numbers, precision, preferred_element_type,
                   swap_ans=False):
    """Cotangent of lhs x of dot_general(x, y): a dot of g with y over y's
    free axes, then a transpose back into x's axis order."""
    (x_contract, y_contract), (x_batch, y_batch) = dimension_numbers
    y_aval = get_aval(y)
    x_kept = _free(x_aval.ndim, x_contract, x_batch)
    y_kept = _free(y_aval.ndim, y_contract, y_batch)
    nb = len(x_batch)
    # where batch / x-free / y-free axes sit in g
    if swap_ans:
        ans_batch = tuple(range(nb))
        ans_y = tuple(range(nb, nb + len(y_kept)))
    else:
        ans_batch = tuple(range(nb))
        ans_y = tuple(range(nb + len(x_kept), nb + len(x_kept) + len(y_kept)))
    # the result's axes: batch, x free (from g), then x's contracted axes in
    # the order y lists its contracted axes
    x_contract_sorted_by_y = [x_contract[i] for i in sorted(range(len(y_contract)),
                                                            key=y_contract.__getitem__)]
    unsorted = list(x_batch) + x_kept + x_contract_sorted_by_y
    ident = list(range(len(unsorted)))
    if unsorted != ident and list(x_batch) + x_contract_sorted_by_y + x_kept == ident:
        # dot(y, g) gives x's axis order directly (the weight cotangent of
        # h @ W: outer(h, g), not outer(g, h).T): no transpose, and the
        # result (e.g. per-example weight gradients under vmap) is contiguous
        if precision is not None:
            precision = precision[::-1]
        dims = ((tuple(y_kept), ans_y), (tuple(y_batch), ans_batch))
        out = dot_general_p.bind(y, g, dimension_numbers=dims, precision=precision,
                                 preferred_element_type=preferred_element_type)
        return _match_dtype(out, x_aval.dtype)
    if (swap_ans and nb and x_kept
            and math.prod(y_aval.shape[i] for i in y_kept) >= 4):
        # g is (batch, y free, x free): dot(g, y) would contract g's middle
        # axes, a transposed-lhs batched dot that XLA's CPU backend runs on
        # its generic loop instead of its gemm library (1.3-1.5x slower for
        # GMM's einsum gradient, d=4..20). Put g's contracted axes last, as
        # in the lhs case; XLA fuses this transpose into g's producer. A
        # contraction shorter than 4 stays as it is: there the generic loop
        # is faster (~1.5x at length 2, GMM d=2).
        g = shapes.transpose_p.bind(g, permutation=ans_batch + tuple(
            range(nb + len(y_kept), nb + len(y_kept) + len(x_kept))) + ans_y)
        ans_y = tuple(range(nb + len(x_kept), nb + len(x_kept) + len(y_kept)))
    dims = ((ans_y, tuple(y_kept)), (ans_batch, tuple(y_batch)))
    out = dot_general_p.bind(g, y, dimension_numbers=dims, precision=precision,
                             preferred_element_type=preferred_element_type)
    if unsorted != ident:
        out_axes = tuple(sorted(range(len(unsorted)), key=unsorted.__getitem__))
        out = shapes.transpose_p.bind(out, permutation=out_axes)
    return _match_dtype(out, x_aval.dtype)


def _dot_transpose(ct, lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    if is_undefined(lhs) and is_undefined(rhs):
        raise TypeError("dot_general is not linear in both operands at once")
    if type(ct) is Zero:
        return [None, None]
    if is_undefined(lhs):
        return [_transpose_lhs(ct, rhs, lhs.aval, dimension_numbers, precision,
                               preferred_element_type), None]
    (lc, rc), (lb, rb) = dimension_numbers
    swapped = ((rc, lc), (rb, lb))
    return [None, _transpose_lhs(ct, lhs, rhs.aval, swapped, precision, preferred_element_type,
                                 swap_ans=True)]


def _bump(dims, b):
    """Axis numbers after inserting a new axis at b."""
    return tuple(d + 1 if d >= b else d for d in dims)


def _dot_batch(args, dims, dimension_numbers, precision=None, preferred_element_type=None):
    """A vmapped axis becomes a dot batch axis (both operands batched) or a
    free axis (one operand batched): never a copy."""
    lhs, rhs = args
    lbd, rbd = dims
    (lc, rc), (lb, rb) = dimension_numbers
    lnd, rnd = get_aval(lhs).ndim, get_aval(rhs).ndim
    if lbd is not None and rbd is not None:
        new = ((_bump(lc, lbd), _bump(rc, rbd)), ((lbd,) + _bump(lb, lbd), (rbd,) + _bump(rb, rbd)))
        out_dim = 0
    elif lbd is not None:
        lhs_free = _free(lnd, _bump(lc, lbd), _bump(lb, lbd))
        out_dim = len(lb) + lhs_free.index(lbd)
        new = ((_bump(lc, lbd), rc), (_bump(lb, lbd), rb))
    else:
        rhs_free = _free(rnd, _bump(rc, rbd), _bump(rb, rbd))
        lhs_free = _free(lnd, lc, lb)
        out_dim = len(lb) + len(lhs_free) + rhs_free.index(rbd)
        new = ((lc, _bump(rc, rbd)), (lb, _bump(rb, rbd)))
    out = dot_general_p.bind(lhs, rhs, dimension_numbers=new, precision=precision,
                             preferred_element_type=preferred_element_type)
    return out, out_dim


def _dot_lower(ctx, lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    (lc, rc), (lb, rb) = dimension_numbers
    out_aval = ctx.avals_out[0]
    la, ra = ctx.avals_in
    # operands of another dtype are converted to the output's (as JAX on CPU)
    if la.dtype != out_aval.dtype:
        lhs = lowering.convert(lhs, la, la.update(dtype=out_aval.dtype))
    if ra.dtype != out_aval.dtype:
        rhs = lowering.convert(rhs, ra, ra.update(dtype=out_aval.dtype))
    dnums = hlo.DotDimensionNumbers.get(
        lhs_batching_dimensions=list(lb), rhs_batching_dimensions=list(rb),
        lhs_contracting_dimensions=list(lc), rhs_contracting_dimensions=list(rc))
    return [hlo.dot_general(lowering.ir_type(out_aval), lhs, rhs, dnums,
                            precision_config=precision_attr(precision))]


dot_general_p = Primitive("dot_general", impl=_dot_impl, abstract_eval=_dot_abstract,
                          transpose=_dot_transpose, batch=_dot_batch,
                          lower=_dot_lower, linear=True)
dot_general_p.jvp = ad.bilinear_jvp(
    dot_general_p, finish=lambda t, out: _match_dtype(t, get_aval(out).dtype))
dot_general_p.vjp = ad.transpose_vjp(dot_general_p, each=True)


def canonical_dimension_numbers(dimension_numbers):
    (lc, rc), (lb, rb) = dimension_numbers
    t = lambda ds: tuple(int(d) for d in ds)  # noqa: E731
    return ((t(lc), t(rc)), (t(lb), t(rb)))


def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """lax.dot_general: operands must already have dot-compatible dtypes."""
    pet = None if preferred_element_type is None else dtypes.canonicalize(preferred_element_type)
    return dot_general_p.bind(lhs, rhs,
                              dimension_numbers=canonical_dimension_numbers(dimension_numbers),
                              precision=canonicalize_precision(precision),
                              preferred_element_type=pet)
