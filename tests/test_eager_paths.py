"""Eager fast paths against the general paths they short-cut.

Eager tracegrad.numpy calls on concrete Arrays (and eager grad's tape
tracers) skip the generic conversion/promotion/primitive machinery for the
common cases: x[i] / static slicing, x[int array], reshape, Array op NumPy
array (one dtype, or dtypes JAX and NumPy promote alike), sum over an axis
or all, a constant broadcast into a taped binary op. Each
must give exactly what the general path gives: values, shape, dtype, weak
type, errors, and (under the tape) the same cotangents. JAX (x64) checks
the values too."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tracegrad as tg
import tracegrad.numpy as tnp
from tracegrad import core
from tracegrad.core import Array
from tracegrad.numpy import _util as U
from tracegrad.numpy import indexing as tix
from tracegrad.numpy import reductions as tred
from tracegrad.numpy import ufuncs
from tracegrad.primitives import elementwise as ew
from tracegrad.primitives import indexing as pix
from tracegrad.primitives import reductions as red
from tracegrad.primitives import shapes as S

from oracle import assert_close

shapes_ = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


def _same(fast, slow, what=""):
    """Equal values (NaN-aware), shape, dtype and weak type."""
    fa, sa = core.get_aval(fast), core.get_aval(slow)
    assert fa == sa, (what, fa, sa)
    np.testing.assert_array_equal(np.asarray(fast), np.asarray(slow), err_msg=str(what))


def _arrays(shape, dtype=np.float64):
    """The same values as a strong Array, a weak Array, and of another dtype."""
    v = (np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) * 0.5 - 1)
    return [Array(v.astype(dtype)), Array(v.astype(dtype), weak=True),
            Array(v.astype(np.int32)), Array(v.astype(np.float32))]


def _tape_both(fast_fn, slow_fn, x, ct_rng=0):
    """tg.vjp (the eager tape) of both functions: outputs and cotangents."""
    out_f, pb_f = tg.vjp(fast_fn, x)
    out_s, pb_s = tg.vjp(slow_fn, x)
    _same(out_f, out_s, "tape primal")
    ct = np.random.default_rng(ct_rng).standard_normal(np.shape(out_s)).astype(
        np.asarray(out_s).dtype)
    _same(pb_f(ct)[0], pb_s(ct)[0], "tape cotangent")
    return out_f, pb_f(ct)[0]


# --------------------------------------------------------------------------
# x[idx]: static indices (ints, slices, None, Ellipsis) and x[int array]


@st.composite
def static_indices(draw):
    shape = draw(shapes_)
    idx, axis = [], 0
    n_items = draw(st.integers(0, len(shape) + 1))
    used_ellipsis = False
    for _ in range(n_items):
        kind = draw(st.sampled_from(["int", "slice", "none", "ellipsis"]))
        if kind == "none":
            idx.append(None)
        elif kind == "ellipsis" and not used_ellipsis:
            idx.append(Ellipsis)
            used_ellipsis = True
        elif axis < len(shape):
            if kind == "int" and shape[axis] > 0:
                idx.append(draw(st.integers(-7, 7)))  # (out of range: JAX clamps)
            else:
                part = st.one_of(st.none(), st.integers(-6, 6))
                step = draw(st.one_of(st.none(), st.sampled_from([1, 2, 3, -1, -2, -3])))
                idx.append(slice(draw(part), draw(part), step))
            axis += 1
    bare = len(idx) == 1 and draw(st.booleans())
    return shape, idx[0] if bare else tuple(idx)


@given(static_indices())
def test_static_getitem_matches_general_path(problem):
    shape, idx = problem
    for x in _arrays(shape):
        fast, slow = x[idx], tix._take(x, idx)
        _same(fast, slow, idx)
    if not any(type(i) is int for i in (idx if type(idx) is tuple else (idx,))):
        # (JAX clamps out-of-range ints too; in-range ones are checked below)
        assert_close(_arrays(shape)[0][idx], jnp.asarray(np.asarray(_arrays(shape)[0]))[idx])
    if all(n > 0 for n in shape):
        _tape_both(lambda a: a[idx], lambda a: tix._take(a, idx), _arrays(shape)[0])


@given(shapes_.filter(lambda s: len(s) > 0), st.integers(-9, 9))
def test_int_getitem_matches_general_path_and_jax(shape, i):
    if shape[0] == 0:
        return
    for x in _arrays(shape):
        _same(x[i], tix._take(x, i), i)
    x = _arrays(shape)[0]
    assert_close(x[i], jnp.asarray(np.asarray(x))[i])
    assert type(np.asarray(x[i])) is np.ndarray  # (a 0-d result stays an array)
    _tape_both(lambda a: a[i], lambda a: tix._take(a, i), x)


@st.composite
def take_problems(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    pos = draw(st.integers(0, len(shape) - 1))
    ishape = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=3))
    dt = draw(st.sampled_from([np.int64, np.int32, np.int8, np.uint8, np.uint32]))
    lo = 0 if np.dtype(dt).kind == "u" else -7
    vals = draw(st.lists(st.integers(lo, 7), min_size=int(np.prod(ishape)),
                         max_size=int(np.prod(ishape))))
    a = np.asarray(vals, dt).reshape(ishape)
    n_full = draw(st.integers(0, len(shape) - 1 - pos))
    return shape, (slice(None),) * pos + (a,) + (slice(None),) * n_full


@given(take_problems())
def test_take_getitem_matches_general_path(problem):
    """x[a] / x[:, a, :]: NumPy integer indexing for in-range indices, the
    clamping general path otherwise."""
    shape, idx = problem
    key = idx[0] if len(idx) == 1 else idx
    for x in _arrays(shape):
        _same(x[key], tix._take(x, key), key)
    x = _arrays(shape)[0]
    pos = next(k for k, i in enumerate(idx) if type(i) is np.ndarray)
    a, n = idx[pos], shape[pos]
    if a.size and a.min() >= -n and a.max() < n:
        assert_close(x[key], jnp.asarray(np.asarray(x))[key])
    _tape_both(lambda t: t[key], lambda t: tix._take(t, key), x)


@given(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4), st.integers(1, 70000),
       st.sampled_from([np.int64, np.int32, np.int8, np.uint8, np.uint64]))
def test_in_range_index_matches_normalize(ishape, n, dt):
    """The one-indexing normalization of in-range index arrays (used for
    every x[int array] gather) equals _normalize_concrete, and declines
    (None) anything out of range."""
    r = np.random.default_rng(n)
    lo = 0 if np.dtype(dt).kind == "u" else -min(n, 127 if dt == np.int8 else n)
    hi = min(n, 255 if dt == np.uint8 else 127 if dt == np.int8 else n + 3)
    a = r.integers(lo, hi, size=ishape).astype(dt)
    idt = tix._index_dtype((n,))
    got = tix._in_range_index(a, n, idt)
    if n > 65536 or (a.size and a.max() >= n):
        assert got is None
        return
    if np.dtype(dt).kind == "i" and n > np.iinfo(dt).max:
        assert got is None  # (the general path raises: the length overflows the index type)
        with pytest.raises(OverflowError):
            tix._normalize_concrete(a, a.dtype, n, idt, True)
        return
    want = tix._normalize_concrete(a, a.dtype, n, idt, True)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_index_type_too_narrow_for_the_axis_raises():
    """An int8 index into an axis longer than 127: JAX raises (the axis
    length overflows the index type when negatives are wrapped), eagerly
    and under the tape, whatever the index values."""
    x = tnp.asarray(np.arange(200.0))
    a = np.array([1, 2], np.int8)
    with pytest.raises(OverflowError):
        jnp.arange(200.0)[a]
    with pytest.raises(OverflowError):
        x[a]
    with pytest.raises(OverflowError):
        tg.grad(lambda t: t[a].sum())(x)
    np.testing.assert_array_equal(np.asarray(x[a.astype(np.uint8)]), [1.0, 2.0])


def test_getitem_errors_unchanged():
    x = tnp.asarray(np.arange(6.0).reshape(2, 3))
    for bad in [(0, 0, 0), (Ellipsis, Ellipsis)]:
        with pytest.raises(IndexError):
            x[bad]
    with pytest.raises(IndexError):
        tnp.asarray(3.0)[0]
    with pytest.raises(ValueError):
        x[::0]


# --------------------------------------------------------------------------
# reshape


def _outcome(fn):
    try:
        return fn(), None
    except (ValueError, TypeError) as e:
        return None, (type(e), str(e))


@given(shapes_, st.lists(st.integers(-1, 4), max_size=3), st.booleans())
def test_reshape_fast_path_matches_general_path(shape, dims, complete):
    """Target shapes of the right size (dims completed by the remaining
    factor), with a -1, or invalid: the same result or the same error."""
    size = int(np.prod(shape))
    known = int(np.prod([d for d in dims if d != -1]))
    if complete and -1 not in dims and known and size % known == 0:
        dims = dims + [size // known]
    new = tuple(dims)
    for x in _arrays(shape):
        want, err = _outcome(lambda: tnp.reshape(x, list(new)))  # (a list: the general path)
        for fast in (lambda: x.reshape(new), lambda: tnp.reshape(x, new),
                     lambda: x.reshape(*new)):
            got, got_err = _outcome(fast)
            assert got_err == err, (new, got_err, err)
            if err is None:
                _same(got, want, new)
    if size and _outcome(lambda: tnp.reshape(_arrays(shape)[0], list(new)))[1] is None:
        assert_close(_arrays(shape)[0].reshape(new),
                     jnp.asarray(np.asarray(_arrays(shape)[0])).reshape(new))
        _tape_both(lambda a: a.reshape(new), lambda a: tnp.reshape(a, list(new)),
                   _arrays(shape)[0])


def test_reshape_errors_unchanged():
    x, e = tnp.asarray(np.arange(6.0)), tnp.asarray(np.zeros((0, 3)))
    for a, bad in [(x, (4, 2)), (x, (-1, -1)), (x, (-2, 3)), (x, (0, -1)), (x, (-3,)),
                   (x, (2 ** 70,)), (e, (-1, 0)), (e, (0, -1)), (e, (-1, -1)), (e, (1,))]:
        with pytest.raises((ValueError, TypeError)) as fast:
            a.reshape(bad)
        with pytest.raises((ValueError, TypeError)) as slow:
            tnp.reshape(a, list(bad))
        assert type(fast.value) is type(slow.value) and str(fast.value) == str(slow.value)
    _same(e.reshape(-1, 5), tnp.reshape(e, [-1, 5]))


# --------------------------------------------------------------------------
# binary ufuncs: eager Array with a NumPy array; taped ops with a constant

BINARY = [("add", ew.add_p, False), ("subtract", ew.sub_p, False),
          ("multiply", ew.mul_p, False), ("maximum", ew.max_p, False),
          ("less", ew.lt_p, False), ("equal", ew.eq_p, False),
          ("arctan2", ew.atan2_p, True), ("true_divide", ew.div_p, True)]


def _general_binary(prim, inexact, x, y):
    args = U.promote_inexact(x, y) if inexact else U.promote(x, y)
    return prim.bind(*U.broadcast_arrays(*args))


@given(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       st.sampled_from([np.float64, np.float32, np.int32, np.int64, np.bool_]),
       st.sampled_from([np.float64, np.float32, np.int32]), st.booleans())
def test_array_with_numpy_array_matches_general_path(shapes, dt, ndt, weak):
    (sx, sy), _ = shapes
    r = np.random.default_rng(0)
    xv = (r.standard_normal(sx) * 3).astype(dt)
    yv = (r.standard_normal(sy) * 3).astype(ndt)
    x = Array(xv, weak=weak)
    for name, prim, inexact in BINARY:
        f = getattr(tnp, name)
        for a, b in ((x, yv), (yv, x)):
            with np.errstate(all="ignore"):
                _same(f(a, b), _general_binary(prim, inexact, a, b), (name, a, b))
        if not weak and dt != np.bool_:
            with np.errstate(all="ignore"):
                assert_close(f(x, yv), getattr(jnp, name)(xv, yv), what=name)
    # operands that do not broadcast: the general path's error
    bad = np.zeros((5, 7), ndt)
    if sx not in ((), (1,), (7,), (1, 7), (5, 7), (5, 1), (1, 1)) and len(sx) <= 2:
        with pytest.raises(core.ShapeDtypeError):
            tnp.multiply(x, bad)


@given(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       st.sampled_from(["ndarray", "array", "weak", "scalar"]))
def test_taped_binary_with_broadcast_constant(shapes, kind):
    """x (on the tape) op c (a constant that broadcasts to x's shape, or
    not): the direct tape operands match promotion + broadcasting."""
    (sx, sc), _ = shapes
    r = np.random.default_rng(1)
    xv = r.standard_normal(sx)
    cv = r.standard_normal(sc) + 2.0
    c = {"ndarray": cv, "array": Array(cv), "weak": Array(cv, weak=True), "scalar": 1.5}[kind]
    x = Array(xv)
    for name, prim, inexact in BINARY[:4] + BINARY[6:]:  # (the differentiable ones)
        f = getattr(tnp, name)
        for fast, slow in ((lambda a: f(a, c), lambda a: _general_binary(prim, inexact, a, c)),
                           (lambda a: f(c, a), lambda a: _general_binary(prim, inexact, c, a))):
            _tape_both(fast, slow, x)
    import jax
    cj = 1.5 if kind == "scalar" else jnp.asarray(cv)
    assert_close(tg.grad(lambda a: tnp.sum(a * c))(x),
                 jax.grad(lambda a: jnp.sum(a * cj))(jnp.asarray(xv)))


@given(shapes_, st.sampled_from([np.float64, np.float32, np.float16, np.int32, np.bool_]),
       st.booleans(), st.sampled_from([2, -3, 0, 2.5, -0.0, 1e300]))
def test_array_with_python_scalar_matches_general_path(shape, dt, weak, c):
    x = Array((np.arange(int(np.prod(shape))).reshape(shape) - 1.5).astype(dt), weak=weak)
    for name, prim, inexact in BINARY:
        f = getattr(tnp, name)
        for a, b in ((x, c), (c, x)):
            with np.errstate(all="ignore"):
                _same(f(a, b), _general_binary(prim, inexact, a, b), (name, a, b, c))
    if dt == np.float64 and not weak:
        with np.errstate(all="ignore"):
            assert_close(x / c, jnp.asarray(np.asarray(x)) / c)
            assert_close(c / x, c / jnp.asarray(np.asarray(x)))


def test_tape_operands_declines_what_it_must():
    from tracegrad.interpreters.tape import TapeTrace, TapeTracer
    tr = TapeTrace()
    t = TapeTracer(tr, Array(np.ones((2, 3))), tr.new_slot())
    t2 = TapeTracer(tr, Array(np.ones((3,))), tr.new_slot())
    assert U.tape_operands(t, np.ones((3,)), False) is not None
    assert U.tape_operands(t, np.ones((4, 2, 3)), False) is None  # (grows the tracer)
    assert U.tape_operands(t, np.ones((2,)), False) is None       # (does not broadcast)
    assert U.tape_operands(t, np.ones((3,), np.float32), False) is None
    assert U.tape_operands(t, t2, False) is None                  # (two tracers to broadcast)
    assert U.tape_operands(t, Array(np.ones(3), weak=True), False) is None


# --------------------------------------------------------------------------
# stack / concatenate


@given(shapes_, st.integers(1, 3), st.integers(-4, 4),
       st.sampled_from(["f64", "mixed weak", "all weak", "f32+f64", "i32"]))
def test_stack_concatenate_match_general_path(shape, k, axis, kind):
    r = np.random.default_rng(k)
    vals = [r.standard_normal(shape) for _ in range(k)]
    if kind == "f64":
        xs = [Array(v) for v in vals]
    elif kind == "mixed weak":
        xs = [Array(v, weak=i % 2 == 0) for i, v in enumerate(vals)]
    elif kind == "all weak":
        xs = [Array(v, weak=True) for v in vals]
    elif kind == "f32+f64":
        xs = [Array(v.astype(np.float32 if i else np.float64)) for i, v in enumerate(vals)]
    else:
        xs = [Array((v * 4).astype(np.int32)) for v in vals]
    for fn in (tnp.stack, tnp.concatenate):
        for seq in (xs, tuple(xs)):
            try:
                fast = fn(seq, axis=axis)
            except Exception as e:  # the general path's error, whatever took it
                with pytest.raises(type(e)) as info:
                    fn(iter(xs), axis=axis)
                assert str(info.value) == str(e)
                continue
            _same(fast, fn(iter(xs), axis=axis), (fn.__name__, kind, axis))
    if kind == "f64" and -len(shape) - 1 <= axis <= len(shape):
        assert_close(tnp.stack(xs, axis=axis), jnp.stack([jnp.asarray(v) for v in vals], axis))


# --------------------------------------------------------------------------
# sum


@given(shapes_, st.one_of(st.none(), st.integers(-4, 4)),
       st.sampled_from([np.float64, np.float32, np.float16, np.int32, np.bool_]), st.booleans())
def test_sum_fast_path_matches_general_path(shape, axis, dt, weak):
    if axis is not None and not -len(shape) <= axis < max(len(shape), 1):
        return
    if len(shape) == 0 and axis is not None:
        return
    x = Array((np.arange(int(np.prod(shape))).reshape(shape) * 0.25).astype(dt), weak=weak)
    general = lambda a: tred._sum_or_prod(red.reduce_sum_p, ew.add_p, 0, a, axis, None,  # noqa
                                          False, None, None, True)
    _same(tnp.sum(x, axis=axis), general(x), (shape, axis))
    _same(x.sum(axis=axis), general(x), (shape, axis))
    if dt == np.float64 and not weak:
        assert_close(tnp.sum(x, axis=axis), jnp.sum(jnp.asarray(np.asarray(x)), axis=axis))
        if int(np.prod(shape)):
            _tape_both(lambda a: tnp.sum(a, axis=axis), general, x)


# --------------------------------------------------------------------------
# shape primitives' eager impls


@given(shapes_, st.data())
def test_broadcast_in_dim_impl_small_and_large(shape, data):
    extra = tuple(data.draw(st.lists(st.integers(0, 3), max_size=2)))
    big = data.draw(st.booleans())
    out_shape = extra + ((5000,) if big else ()) + shape
    x = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    dims = tuple(range(len(out_shape) - len(shape), len(out_shape)))
    got = S.broadcast_in_dim_p.impl(x, out_shape, dims)
    assert got.shape == out_shape and got.dtype == x.dtype
    np.testing.assert_array_equal(got, np.broadcast_to(x, out_shape))
    _same(S.broadcast_in_dim_p.bind(Array(x, weak=True), shape=out_shape,
                                    broadcast_dimensions=dims),
          Array(np.broadcast_to(x, out_shape), weak=True))


@given(shapes_, st.sampled_from([np.float64, np.float32, np.int32, np.bool_, np.complex128]))
def test_full_zeros_eager(shape, dt):
    dt = np.dtype(dt)
    got = S.full(shape, 0, dt)
    want = S.broadcast_in_dim_p.bind(np.zeros((), dt)[()], shape=shape, broadcast_dimensions=()) \
        if shape else Array(np.zeros((), dt))
    _same(got, want, shape)
    assert not got.weak


def test_cached_checks_still_reject():
    """The eager impls' validation is remembered only for what passed."""
    x = Array(np.arange(12.0).reshape(3, 4))
    ok = dict(start_indices=(0, 1), limit_indices=(2, 3), strides=None)
    for _ in range(2):
        S.slice_p.bind(x, **ok)
        with pytest.raises(core.ShapeDtypeError):
            S.slice_p.bind(x, start_indices=(0, 1), limit_indices=(4, 3), strides=None)
        with pytest.raises(core.ShapeDtypeError):
            S.pad_p.bind(x, np.float32(0), padding_config=((0, 0, 0), (1, 1, 0)))


@given(shapes_, st.data())
def test_pad_impl_matches_jax(shape, data):
    cfg = tuple((data.draw(st.integers(-1, 2)), data.draw(st.integers(-1, 2)),
                 data.draw(st.integers(0, 2))) for _ in shape)
    x = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) + 1
    sizes = [lo + hi + n + max(n - 1, 0) * it for n, (lo, hi, it) in zip(shape, cfg)]
    if any(s < 0 for s in sizes):
        return
    from jax import lax
    for _ in range(2):  # (the second call reads the cached layout)
        got = S.pad_p.bind(Array(x), np.float64(-2.5), padding_config=cfg)
        assert_close(got, lax.pad(x, -2.5, cfg))


def test_scatter_add_out_of_range_drops():
    """scatter_add (gather's transpose) with indices past either end: the
    first-try NumPy add.at raises and the dropping path takes over."""
    from tracegrad.primitives.indexing import GatherDimensionNumbers as GDN
    dn = pix._as_scatter_dnums(GDN((), (0,), (0,)))
    from jax import lax
    for idx in ([[0], [3], [1]], [[0], [4], [1]], [[-1], [2], [2]]):
        i = np.asarray(idx, np.int32)
        u = np.asarray([1.0, 2.0, 4.0])
        for mode in ("promise_in_bounds", "drop", "clip"):
            got = pix.scatter_add(np.zeros(4), i, u, dn, mode=mode)
            jdn = lax.ScatterDimensionNumbers((), (0,), (0,))
            ji = np.clip(i, 0, 3) if mode == "clip" else i
            want = lax.scatter_add(jnp.zeros(4), ji, u, jdn,
                                   mode="clip" if mode == "clip" else "drop")
            assert_close(got, want, what=f"{idx} {mode}")


# --------------------------------------------------------------------------
# binary ufuncs with mixed dtypes: NumPy computes directly only where JAX's
# promotion and NumPy's agree (strong operands of one kind, or a bool with a
# number); weak operands, int with float, signed with unsigned and an impl
# that reads its operands' dtypes (true_divide) take the general path

MIXED_DTYPES = [np.bool_, np.int8, np.int32, np.int64, np.uint8, np.uint32, np.float16,
                np.float32, np.float64, np.complex64, np.complex128]


def _values(shape, dt, seed):
    r = np.random.default_rng(seed)
    v = r.standard_normal(shape) * 3
    if np.dtype(dt).kind == "c":
        v = v + 1j * r.standard_normal(shape)
    if np.dtype(dt).kind == "u":
        v = np.abs(v)
    return v.astype(dt)


def _result(fn):
    """(value, None) or (None, the error's type)."""
    try:
        with np.errstate(all="ignore"):
            return fn(), None
    except Exception as e:  # noqa: BLE001  (compared with the general path's)
        return None, type(e)


@given(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3),
       st.sampled_from(["array", "weak array", "ndarray"]), st.booleans())
def test_binary_mixed_dtypes_match_general_path(shapes, kind, weak):
    """Every pair of dtypes, each operator, both operand orders."""
    (sx, sy), _ = shapes
    ops = BINARY[:2] + BINARY[3:]  # (multiply: as add)
    for dx in MIXED_DTYPES:
        x = Array(_values(sx, dx, 0), weak=weak)
        for dy in MIXED_DTYPES:
            yv = _values(sy, dy, 1)
            y = {"array": Array(yv), "weak array": Array(yv, weak=True), "ndarray": yv}[kind]
            for name, prim, inexact in ops:
                f = getattr(tnp, name)
                for a, b in ((x, y), (y, x)):
                    got, err = _result(lambda: f(a, b))
                    want, want_err = _result(lambda: _general_binary(prim, inexact, a, b))
                    assert err == want_err, (name, a, b, err, want_err)
                    if err is None:
                        _same(got, want, (name, a, b))


def test_binary_mixed_dtypes_where_numpy_differs():
    """int32 with float32 is float32 in JAX (float64 in NumPy); a weak f64
    Array with an f32 array is f32; u32 with i32 is i64 in both."""
    i32 = Array(np.arange(3, dtype=np.int32))
    f32 = np.linspace(0.5, 1.5, 3).astype(np.float32)
    assert (i32 * f32).dtype == np.float32
    assert (f32 * i32).dtype == np.float32
    assert (Array(np.ones(3), weak=True) * f32).dtype == np.float32
    assert (Array(np.ones(3, np.float16)) + f32).dtype == np.float32
    assert (Array(np.ones(3, np.uint32)) + np.ones(3, np.int32)).dtype == np.int64
    assert (Array(np.ones(3, np.float32)) / np.ones(3, np.float64)).dtype == np.float64
    assert_close(i32 * f32, jnp.asarray(np.arange(3, dtype=np.int32)) * f32)
    # bools: add is logical or, subtract is our error (not NumPy's)
    t = Array(np.array([True, False]))
    _same(t + np.array([True, True]), Array(np.array([True, True])))
    with pytest.raises(core.ShapeDtypeError):
        t - np.array([True, True])
    with pytest.raises(core.ShapeDtypeError):
        t - t


def test_binary_with_jit_results():
    """Arrays over device buffers (jit results) read their value once."""
    x = tg.device_put(np.arange(6.0).reshape(2, 3))
    c = np.arange(3.0)
    _same(x * c, Array(np.arange(6.0).reshape(2, 3) * c))
    _same(c - tg.device_put(np.arange(3.0)), Array(np.zeros(3)))
    _same(tg.device_put(np.arange(3.0)) * Array(np.ones(3)), Array(np.arange(3.0)))


# --------------------------------------------------------------------------
# x.reshape: sizes NumPy reads differently (any negative as -1), NumPy ints,
# jit results


@given(shapes_, st.lists(st.one_of(st.integers(-3, 4),
                                   st.sampled_from([np.int64(2), np.int32(-1), np.int8(3)])),
                         max_size=3), st.booleans())
def test_reshape_method_odd_sizes_match_general_path(shape, dims, complete):
    size = int(np.prod(shape))
    known = int(np.prod([int(d) for d in dims if d != -1]))
    if complete and known > 0 and size % known == 0:
        dims = dims + [size // known]
    for x in _arrays(shape):
        want, err = _outcome(lambda: tnp.reshape(x, list(dims)))
        for fast in (lambda: x.reshape(tuple(dims)), lambda: x.reshape(*dims)):
            got, got_err = _outcome(fast)
            assert got_err == err, (dims, got_err, err)
            if err is None:
                _same(got, want, dims)


def test_reshape_method_no_shape_and_jit_results():
    one = Array(np.ones((1, 1)), weak=True)
    _same(one.reshape(), tnp.reshape(one, ()))
    with pytest.raises((ValueError, TypeError)):
        Array(np.ones(2)).reshape()
    x = tg.device_put(np.arange(6.0))
    _same(x.reshape(2, 3), Array(np.arange(6.0).reshape(2, 3)))


# --------------------------------------------------------------------------
# sum over one axis or all: NumPy's add.reduce directly, but for one axis of a
# larger array (the impl: column sums over a short last axis)


@given(st.sampled_from([(), (5,), (3, 4), (200, 3), (64, 2), (130,), (3, 50), (2, 70, 2),
                        (40, 7), (40, 8)]),
       st.one_of(st.none(), st.integers(-4, 3)),
       st.sampled_from([np.float64, np.float32, np.float16]), st.booleans(), st.booleans())
def test_sum_one_axis_matches_general_path(shape, axis, dt, weak, zeros):
    r = np.random.default_rng(len(shape) + abs(axis or 0))
    v = r.standard_normal(shape)
    if zeros:  # rows of -0.0 sum to +0.0 (JAX's and NumPy's order from zero)
        v = np.where(r.random(shape) < 0.5, -0.0, np.where(v > 1, np.inf, v))
    x = Array(v.astype(dt), weak=weak)
    general = lambda a: tred._sum_or_prod(red.reduce_sum_p, ew.add_p, 0, a, axis, None,  # noqa
                                          False, None, None, True)
    want, err = _result(lambda: general(x))
    for fast in (lambda: tnp.sum(x, axis=axis), lambda: x.sum(axis=axis)):
        got, got_err = _result(fast)
        assert got_err == err, (shape, axis, got_err, err)
        if err is None:
            _same(got, want, (shape, axis))
            np.testing.assert_array_equal(np.signbit(np.asarray(got)), np.signbit(np.asarray(want)))
    if err is None and dt == np.float64 and not zeros:
        assert_close(tnp.sum(x, axis=axis), jnp.sum(jnp.asarray(v), axis=axis))


# --------------------------------------------------------------------------
# the fast paths are eager only: traced, the same code stages primitives


def test_fast_paths_stage_primitives_when_traced():
    c = np.array([1.0, -1.0, 1.0])

    def f(x):
        y = x.reshape(2, 3) * c * x.reshape((2, 3))
        return tnp.sum(y, axis=1)[0] + y[1][np.array([0, 2])].sum()

    xv = np.arange(6.0) * 0.5 - 1
    jaxpr = str(tg.make_jaxpr(f)(xv))
    for prim in ("reshape", "mul", "reduce_sum", "gather"):
        assert prim in jaxpr, (prim, jaxpr)

    def fj(x):
        y = x.reshape(2, 3) * c * x.reshape((2, 3))
        return jnp.sum(y, axis=1)[0] + y[1][np.array([0, 2])].sum()

    import jax
    assert_close(f(Array(xv)), fj(jnp.asarray(xv)))
    assert_close(tg.grad(f)(Array(xv)), jax.grad(fj)(jnp.asarray(xv)))
    assert_close(tg.jit(f)(Array(xv)), fj(jnp.asarray(xv)))
    xs = np.stack([xv, xv + 1])
    assert_close(tg.vmap(f)(xs), jax.vmap(fj)(jnp.asarray(xs)))
    assert_close(tg.jacfwd(f)(Array(xv)), jax.jacfwd(fj)(jnp.asarray(xv)))
