"""Eager fast paths of indexing, slicing and sums against their general paths.

The eager tape's reverse rules of gather ("take along one axis": a NumPy
scatter-add / bincount), slice (zeros + assignment), reshape / squeeze and
reduce_sum short-cut the transpose rules for an eager cotangent; the slice
impl caches its checked index; eager x[i] / x[int array] index NumPy
directly; tape_operands broadcasts a small constant by one assignment. Each
must give exactly what the general path gives (values bit for bit, shape,
dtype, weak type; repeated and out-of-range indices in every mode), and
pullbacks called under a trace must still bind primitives (higher order,
vmap, jit). JAX (x64) checks the values."""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import tracegrad as tg
import tracegrad.numpy as tnp
from tracegrad import core
from tracegrad.core import Array
from tracegrad.interpreters import ad
from tracegrad.interpreters.tape import TapeTrace, TapeTracer
from tracegrad.numpy import _util as U
from tracegrad.numpy import indexing as tix
from tracegrad.primitives import indexing as pix
from tracegrad.primitives import reductions as red
from tracegrad.primitives import shapes as S

from oracle import assert_close

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def _same(fast, slow, what=""):
    """Equal values (NaN-aware, bit for bit), shape, dtype and weak type."""
    assert type(fast) is Array and type(slow) is Array, (what, type(fast), type(slow))
    fa, sa = core.get_aval(fast), core.get_aval(slow)
    assert fa == sa, (what, fa, sa)
    np.testing.assert_array_equal(np.asarray(fast), np.asarray(slow), err_msg=str(what))
    f, s = np.asarray(fast), np.asarray(slow)
    if f.dtype.kind in "fc":  # (signed zeros too)
        assert np.array_equal(np.signbit(f.real), np.signbit(s.real)), what


def _values(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        v = v + 1j * rng.standard_normal(shape)
    return v.astype(dtype)


# --------------------------------------------------------------------------
# gather's reverse rule


def _take_params(shape, axis, nb, mode, numpy_layout):
    """gather params of x[..., idx, ...] along `axis` (one index column);
    the window axes after the batch axes, or in NumPy's layout."""
    r = len(shape)
    if numpy_layout:
        offset = tuple(range(axis)) + tuple(range(axis + nb, r - 1 + nb))
    else:
        offset = tuple(range(nb, nb + r - 1))
    dn = pix.GatherDimensionNumbers(offset_dims=offset, collapsed_slice_dims=(axis,),
                                    start_index_map=(axis,))
    sizes = tuple(1 if d == axis else n for d, n in enumerate(shape))
    return dict(dimension_numbers=dn, slice_sizes=sizes, mode=mode, fill_value=None,
                indices_are_sorted=False, unique_indices=False)


def _gather_pullbacks(x, idx, params, ct):
    """(fast, general) operand cotangents of gather's tape rule."""
    out = pix.gather_p.bind(x, idx, **params)
    fast = pix.gather_p.vjp([True, False], out, x, idx, **params)(ct)
    slow = pix._gather_vjp_general([True, False], out, x, idx, **params)(ct)
    assert fast[1] is None and slow[1] is None
    return out, fast[0], slow[0]


MODES = [pix.CLIP, pix.PROMISE_IN_BOUNDS, pix.FILL_OR_DROP]
CASES = [  # operand shape, axis, index batch shape
    ((5,), 0, (7,)), ((5,), 0, ()), ((5,), 0, (3, 4)), ((1,), 0, (6,)),
    ((4, 3), 0, (6,)), ((4, 3), 1, (2, 5)), ((2, 3, 4), 1, (5,)), ((2, 0, 3), 2, (4,)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128])
@pytest.mark.parametrize("shape,axis,bshape", CASES)
@pytest.mark.parametrize("numpy_layout", [False, True])
def test_gather_pullback_in_range(dtype, shape, axis, bshape, numpy_layout):
    """Repeated in-range indices (negative ones are out of range for the
    primitive): the fast rule runs and matches the general one bit for bit
    in every mode, for strong and weak operands and cotangents."""
    rng = np.random.default_rng(1)
    n = shape[axis]
    idx = rng.integers(0, n, bshape + (1,)).astype(np.int32)
    idx.reshape(-1)[:2] = 0  # (repeats for sure)
    for mode in MODES:
        params = _take_params(shape, axis, len(bshape), mode, numpy_layout)
        for weak_x in (False, True):
            x = Array(_values(shape, dtype), weak_x)
            out = pix.gather_p.bind(x, idx, **params)
            for weak_ct in (False, True):
                ct = Array(_values(out.shape, dtype, 2), weak_ct)
                assert pix._gather_ct_numpy(ct, x, idx, params["dimension_numbers"],
                                            params["slice_sizes"], mode) is not None
                _, fast, slow = _gather_pullbacks(x, idx, params, ct)
                _same(fast, slow, (mode, weak_x, weak_ct))


@pytest.mark.parametrize("idx_dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint32,
                                       np.uint64])
@pytest.mark.parametrize("shape,axis", [((6,), 0), ((3, 6), 1)])
def test_gather_pullback_out_of_range(idx_dtype, shape, axis):
    """Out-of-range and negative indices: clamped for clip, dropped for the
    other modes (the fast rule defers to the general one where it must)."""
    signed = np.dtype(idx_dtype).kind == "i"
    for vals in ([0, 5, 5, 7, 100, 2, -1, -6, -100], [0, -1, 3, -1, -6, 2], [9, 1, 1]):
        raw = np.array([v for v in vals if signed or v >= 0])
        idx = raw.astype(idx_dtype)[:, None]
        for mode in MODES:
            for dtype in (np.float64, np.float32):
                params = _take_params(shape, axis, 1, mode, False)
                x = Array(_values(shape, dtype))
                out = pix.gather_p.bind(x, idx, **params)
                ct = Array(_values(out.shape, dtype, 3))
                if mode == pix.CLIP:  # (clamped: always the fast rule)
                    assert pix._gather_ct_numpy(ct, x, idx, params["dimension_numbers"],
                                                params["slice_sizes"], mode) is not None
                _, fast, slow = _gather_pullbacks(x, idx, params, ct)
                _same(fast, slow, (mode, dtype, vals))
    # uint64 beyond int64 (read as negative by the general path)
    big = np.array([[2 ** 64 - 2], [1]], np.uint64)
    for mode in MODES:
        params = _take_params((6,), 0, 1, mode, False)
        x = Array(_values((6,), np.float64))
        ct = Array(np.array([1.5, -2.0]))
        _, fast, slow = _gather_pullbacks(x, big, params, ct)
        _same(fast, slow, mode)


def test_gather_pullback_signed_zeros_and_specials():
    """bincount's float64 sums equal np.add.at's: -0.0, inf, nan."""
    idx = np.array([[0], [1], [1], [2], [2], [3]], np.int64)
    ct = Array(np.array([-0.0, -0.0, -0.0, np.inf, -np.inf, np.nan]))
    params = _take_params((5,), 0, 1, pix.PROMISE_IN_BOUNDS, False)
    x = Array(np.zeros(5))
    _, fast, slow = _gather_pullbacks(x, idx, params, ct)
    _same(fast, slow)


def test_gather_pullback_other_cases_general():
    """Cases the fast rule leaves to the general path still work: a
    multi-column index, a windowed (non-collapsed) gather, empty indices."""
    x = Array(_values((4, 5), np.float64))
    # x[i, j] with index pairs
    dn = pix.GatherDimensionNumbers(offset_dims=(), collapsed_slice_dims=(0, 1),
                                    start_index_map=(0, 1))
    params = dict(dimension_numbers=dn, slice_sizes=(1, 1), mode=pix.CLIP, fill_value=None,
                  indices_are_sorted=False, unique_indices=False)
    idx = np.array([[0, 1], [3, 4], [0, 1]])
    ct = Array(np.array([1.0, 2.0, 3.0]))
    assert pix._gather_ct_numpy(ct, x, idx, dn, (1, 1), pix.CLIP) is None
    _, fast, slow = _gather_pullbacks(x, idx, params, ct)
    _same(fast, slow)
    # windows of 2 rows
    dn = pix.GatherDimensionNumbers(offset_dims=(1, 2), collapsed_slice_dims=(),
                                    start_index_map=(0,))
    params = dict(params, dimension_numbers=dn, slice_sizes=(2, 5))
    idx = np.array([[0], [2], [3]])
    ct = Array(_values((3, 2, 5), np.float64))
    assert pix._gather_ct_numpy(ct, x, idx, dn, (2, 5), pix.CLIP) is None
    _, fast, slow = _gather_pullbacks(x, idx, params, ct)
    _same(fast, slow)
    # empty index batch
    params = _take_params((4, 5), 0, 1, pix.CLIP, False)
    idx = np.zeros((0, 1), np.int64)
    ct = Array(np.zeros((0, 5)))
    _, fast, slow = _gather_pullbacks(x, idx, params, ct)
    _same(fast, slow)


@pytest.mark.parametrize("mode,jmode", [(pix.CLIP, lax.GatherScatterMode.CLIP),
                                        (pix.FILL_OR_DROP, lax.GatherScatterMode.FILL_OR_DROP)])
def test_gather_vjp_vs_jax(mode, jmode):
    """tg.vjp (the eager tape: the fast rule) against jax.vjp of lax.gather,
    with repeated and out-of-range indices."""
    x = _values((3, 6), np.float64)
    idx = np.array([[0], [5], [5], [7], [-2], [2]], np.int32)
    p = _take_params((3, 6), 1, 1, mode, True)
    jdn = lax.GatherDimensionNumbers(offset_dims=p["dimension_numbers"].offset_dims,
                                     collapsed_slice_dims=(1,), start_index_map=(1,))
    out, pb = tg.vjp(lambda a: pix.gather_p.bind(a, idx, **p), x)
    rout, rpb = jax.vjp(lambda a: lax.gather(a, jnp.asarray(idx), jdn, p["slice_sizes"],
                                             mode=jmode, fill_value=0), jnp.asarray(x))
    ct = _values(np.shape(rout), np.float64, 4)
    assert_close(pb(ct)[0], rpb(jnp.asarray(ct))[0])


# --------------------------------------------------------------------------
# slice, reshape, squeeze and reduce_sum reverse rules


def _rule_pair(prim, x, params, ct):
    out = prim.bind(x, **params)
    fast = prim.vjp([True], out, x, **params)(ct)
    slow = ad.transpose_vjp(prim)([True], out, x, **params)(ct)
    return fast[0], slow[0]


SLICES = [((5,), (1,), (4,), None), ((5,), (0,), (5,), (2,)), ((4, 6), (1, 0), (3, 6), None),
          ((4, 6), (0, 1), (4, 6), (3, 2)), ((3, 0), (1, 0), (2, 0), None), ((), (), (), None)]


@pytest.mark.parametrize("shape,start,limit,strides", SLICES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex64])
def test_slice_impl_and_pullback(shape, start, limit, strides, dtype):
    params = dict(start_indices=start, limit_indices=limit, strides=strides)
    for weak in (False, True):
        x = Array(_values(shape, dtype), weak)
        y = S.slice_p.bind(x, **params)
        st = strides or (1,) * len(shape)
        ref = np.asarray(x)[tuple(slice(a, b, s) for a, b, s in zip(start, limit, st))]
        assert type(np.asarray(y)) is np.ndarray
        _same(y, Array(np.asarray(ref), weak))
        for weak_ct in (False, True):
            ct = Array(_values(y.shape, dtype, 5), weak_ct)
            fast, slow = _rule_pair(S.slice_p, x, params, ct)
            _same(fast, slow, (weak, weak_ct))


def test_slice_impl_cache_keeps_errors():
    """A bad slice raises on every call (only valid params are cached), and
    a valid one on another shape is checked against that shape."""
    x = Array(np.zeros((3, 4)))
    for _ in range(2):
        with pytest.raises(TypeError, match="slice"):
            S.slice_p.bind(x, start_indices=(0, 2), limit_indices=(3, 5), strides=None)
    S.slice_p.bind(x, start_indices=(0, 0), limit_indices=(3, 4), strides=None)
    with pytest.raises(TypeError, match="slice"):
        S.slice_p.bind(Array(np.zeros((3, 3))), start_indices=(0, 0), limit_indices=(3, 4),
                       strides=None)
    # list params (a direct impl call): not cached, still checked
    assert S._slice_impl(np.arange(5.0), [1], [3], None).tolist() == [1.0, 2.0]


@pytest.mark.parametrize("prim,shape,params", [
    (S.reshape_p, (2, 3), dict(new_sizes=(3, 2))), (S.reshape_p, (), dict(new_sizes=(1, 1))),
    (S.squeeze_p, (1, 4, 1), dict(dimensions=(0, 2))), (S.squeeze_p, (3,), dict(dimensions=())),
    (red.reduce_sum_p, (3, 4), dict(axes=(1,))), (red.reduce_sum_p, (3, 4), dict(axes=(0, 1))),
    (red.reduce_sum_p, (2, 3, 4), dict(axes=(0, 2))), (red.reduce_sum_p, (3,), dict(axes=())),
    (red.reduce_sum_p, (80, 90), dict(axes=(0,))),  # (a large broadcast: a view)
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_shape_and_sum_pullbacks(prim, shape, params, dtype):
    for weak in (False, True):
        x = Array(_values(shape, dtype), weak)
        out = prim.bind(x, **params)
        for weak_ct in (False, True):
            ct = Array(_values(out.shape, dtype, 6), weak_ct)
            fast, slow = _rule_pair(prim, x, params, ct)
            _same(fast, slow, (weak, weak_ct))


# --------------------------------------------------------------------------
# pullbacks called under a trace bind primitives: higher order, vmap, jit


def _f_index(x, idx):
    A = x.reshape(3, 4)
    return tnp.sum(tnp.sin(A[1][idx]) * A[2:3, :][0][idx] + A[0][idx] ** 2)


def _j_index(x, idx):
    A = x.reshape(3, 4)
    return jnp.sum(jnp.sin(A[1][idx]) * A[2:3, :][0][idx] + A[0][idx] ** 2)


IDX = np.array([[0, 3, 3], [1, 1, -1]])


def test_grad_and_hessian_vs_jax():
    x = _values((12,), np.float64)
    f = functools.partial(_f_index, idx=IDX)
    jf = functools.partial(_j_index, idx=jnp.asarray(IDX))
    assert_close(tg.grad(f)(x), jax.grad(jf)(jnp.asarray(x)))
    assert_close(tg.hessian(f)(x), jax.hessian(jf)(jnp.asarray(x)))
    assert_close(tg.grad(lambda y: tnp.sum(tg.grad(f)(y) ** 3))(x),
                 jax.grad(lambda y: jnp.sum(jax.grad(jf)(y) ** 3))(jnp.asarray(x)))


def test_tape_pullback_under_vmap_jit_and_grad():
    """The eager tape's pullback called with traced cotangents."""
    x = _values((12,), np.float64)

    def g(y):
        A = y.reshape(3, 4)
        return A[1][IDX] * A[0:2, 1:3].sum() + A[2][IDX]
    out, pb = tg.vjp(g, x)
    jout, jpb = jax.vjp(lambda y: (lambda A: A[1][jnp.asarray(IDX)] * A[0:2, 1:3].sum()
                                   + A[2][jnp.asarray(IDX)])(y.reshape(3, 4)), jnp.asarray(x))
    cts = _values((5,) + IDX.shape, np.float64, 7)
    expected = np.stack([np.asarray(jpb(jnp.asarray(c))[0]) for c in cts])
    assert_close(tg.vmap(lambda c: pb(c)[0])(cts), expected)
    assert_close(tg.jit(lambda c: pb(c)[0])(cts[0]), expected[0])
    assert_close(pb(cts[0])[0], expected[0])
    # grad of a function of the pullback (linear in ct: its gradient is g's vjp again)
    w = _values((12,), np.float64, 8)
    gr = tg.grad(lambda c: tnp.sum(pb(c)[0] * w))(cts[0])
    jgr = jax.grad(lambda c: jnp.sum(jpb(c)[0] * jnp.asarray(w)))(jnp.asarray(cts[0]))
    assert_close(gr, jgr)


@pytest.mark.parametrize("n", [3, 4, 5])
def test_det_objective_vs_jax(n):
    from suite.backends import TracegradBackend
    from suite.objectives import det_objective
    B = TracegradBackend()
    theta = _values((n * n,), np.float64, n)
    f = functools.partial(det_objective, B, n=n)
    A = theta.reshape(n, n)
    assert_close(f(B.put(theta)), np.linalg.det(A), rtol=1e-10)
    # d det / dA = det(A) inv(A)^T
    assert_close(B.grad(f)(B.put(theta)), (np.linalg.det(A) * np.linalg.inv(A).T).ravel(),
                 rtol=1e-9, atol=1e-12)
    jf = jax.grad(lambda t: jnp.linalg.det(t.reshape(n, n)))
    assert_close(B.grad(f)(B.put(theta)), jf(jnp.asarray(theta)), rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------
# eager x[i] and x[int array]


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 2), ()])
@pytest.mark.parametrize("i", [0, 2, -1, -3, 7, -9])
def test_eager_getitem_int(shape, i):
    for weak in (False, True):
        for dtype in (np.float64, np.int32):
            x = Array(_values(shape, np.float64).astype(dtype), weak)
            try:
                slow = tix._take(x, i)
            except Exception as e:  # the same error from the fast entry
                with pytest.raises(type(e)):
                    x[i]
                continue
            _same(x[i], slow, (shape, i))
            if shape:
                jv = jnp.asarray(np.asarray(x))[i]
                assert_close(x[i], jv, check_dtype=False)


@pytest.mark.parametrize("idx_dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8,
                                       np.uint16, np.uint64])
@pytest.mark.parametrize("shape", [(5,), (4, 3), (0,)])
def test_eager_getitem_int_array(idx_dtype, shape):
    rng = np.random.default_rng(2)
    for raw in ([0, 1, 1, 3], [[2, -1], [-4, 0]], [4, 9, -9], [2], []):
        raw = np.array(raw, np.int64)
        if np.dtype(idx_dtype).kind == "u":
            raw = np.abs(raw)
        idx = raw.astype(idx_dtype)
        for weak in (False, True):
            x = Array(rng.standard_normal(shape), weak)
            try:
                slow = tix._take(x, idx)
            except Exception as e:
                with pytest.raises(type(e)):
                    x[idx]
                continue
            _same(x[idx], slow, (raw, weak))
            if shape[0] and idx.size:
                assert_close(x[idx], jnp.asarray(np.asarray(x))[jnp.asarray(idx)])


def test_eager_getitem_narrow_index_long_axis():
    """An int8 index into an axis longer than int8 holds: the general
    path's behaviour, not NumPy's."""
    x = Array(np.arange(300.0))
    idx = np.array([1, -2], np.int8)
    try:
        slow = tix._take(x, idx)
    except Exception as e:
        with pytest.raises(type(e)):
            x[idx]
    else:
        _same(x[idx], slow)


# --------------------------------------------------------------------------
# tape_operands: a small constant broadcast into a taped binary op


@pytest.mark.parametrize("ts,cs", [((4, 3), (3,)), ((4, 3), (1, 3)), ((4, 3), (4, 1)),
                                   ((2, 3, 4), (3, 1)), ((2, 0, 3), (3,)),
                                   ((100, 50), (50,)),  # (over the small size: the impl)
                                   ((4, 3), (4,)), ((4, 1), (3,)), ((3,), (1, 3))])
def test_tape_operands_broadcast(ts, cs):
    tape = TapeTrace()
    t = TapeTracer(tape, Array(_values(ts, np.float64)), tape.new_slot())
    c = _values(cs, np.float64, 9)
    for args in ((t, c), (c, t), (t, Array(c))):
        got = U.tape_operands(*args, False)
        try:
            expect = np.broadcast_to(c, ts)
            ok = len(cs) <= len(ts)
        except ValueError:
            ok = False
        if not ok:
            assert got is None
            continue
        i = 1 if type(args[0]) is TapeTracer else 0
        assert got[1 - i] is args[1 - i]
        _same(got[i], Array(np.array(expect)))
    tape.finish()


def test_taped_product_with_broadcast_constant_vs_jax():
    x = _values((4, 3), np.float64)
    c = _values((3,), np.float64, 1)
    out, pb = tg.vjp(lambda a: a * c - c * a ** 2, x)
    rout, rpb = jax.vjp(lambda a: a * c - c * a ** 2, jnp.asarray(x))
    assert_close(out, rout)
    ct = _values((4, 3), np.float64, 2)
    assert_close(pb(ct)[0], rpb(jnp.asarray(ct))[0])
    with pytest.raises(Exception):
        tg.grad(lambda a: tnp.sum(a * np.ones(4)))(x)
