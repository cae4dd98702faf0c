"""Reductions, cumulative ops, argmax/argmin, sort and reduce_window
(pooling): primitives and tracegrad.numpy functions against jax.lax /
jax.numpy (x64), for values, shapes, dtypes, jvp, vjp, vmap, lowering and
second derivatives."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import oracle
import tracegrad as tg
import tracegrad.numpy as tnp
import tracegrad.scipy.special as tsp
from oracle import assert_close, check_lowering
from tracegrad.primitives import reductions as R
from tracegrad.primitives import sort as S
from tracegrad.primitives import windowed as W

I64 = np.dtype(np.int64)

# The JAX references run under jax.jit: one XLA compilation per shape instead
# of one per eager op (which made JAX, not tracegrad, most of this file's time).


def check_eval(tg_fn, jax_fn, *args, **tol):
    return oracle.check_eval(tg_fn, jax.jit(jax_fn), *args, **tol)


def check_jvp(tg_fn, jax_fn, args, **tol):
    oracle.check_jvp(tg_fn, jax.jit(jax_fn), args, **tol)


def check_vjp(tg_fn, jax_fn, args, **tol):
    oracle.check_vjp(tg_fn, jax.jit(jax_fn), args, **tol)


def check_vmap(tg_fn, jax_fn, args, in_axes=0, **tol):
    oracle.check_vmap(tg_fn, jax.jit(jax_fn), args, in_axes=in_axes, **tol)

# --------------------------------------------------------------------------
# strategies


def shapes(min_dims=0, max_dims=3, min_side=0, max_side=4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


@st.composite
def shape_and_axes(draw, min_dims=0, nonempty_axes=False, min_side=0):
    shape = draw(shapes(min_dims=min_dims, min_side=min_side))
    axes = tuple(sorted(draw(st.sets(st.integers(0, max(len(shape) - 1, 0)), max_size=len(shape)))
                        if shape else ()))
    if nonempty_axes and any(shape[a] == 0 for a in axes):
        axes = tuple(a for a in axes if shape[a] > 0)
    return shape, axes


def values(shape, dtype=np.float64, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        lo = 0 if dtype.kind == "u" else -4
        return rng.integers(lo, 5, shape).astype(dtype)
    x = rng.standard_normal(shape)
    if ties:  # a coarse grid: many equal values
        x = np.round(x * 2) / 2
    return x.astype(dtype)


seeds = st.integers(0, 2 ** 16)


# --------------------------------------------------------------------------
# reduce_max / reduce_min / reduce_prod / reduce_and / reduce_or


REDUCERS = {
    "max": (R.reduce_max_p, jax.lax.reduce_max),
    "min": (R.reduce_min_p, jax.lax.reduce_min),
    "prod": (R.reduce_prod_p, jax.lax.reduce_prod),
}


@pytest.mark.parametrize("name", sorted(REDUCERS))
@given(sa=shape_and_axes(), seed=seeds, ties=st.booleans())
@settings(max_examples=10)
def test_reduce_primitives(name, sa, seed, ties):
    shape, axes = sa
    prim, jfun = REDUCERS[name]
    x = values(shape, seed=seed, ties=ties)
    if ties and name == "prod":  # zeros among the factors
        x = np.round(x)
    f = lambda x: prim.bind(x, axes=axes)
    jf = lambda x: jfun(x, axes)
    check_eval(f, jf, x)
    check_jvp(f, jf, (x,))
    check_vjp(f, jf, (x,))


@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.int64, np.uint8, np.bool_])
@given(sa=shape_and_axes(), seed=seeds)
@settings(max_examples=6)
def test_reduce_primitive_dtypes(dtype, sa, seed):
    shape, axes = sa
    x = values(shape, dtype, seed)
    for prim, jfun in [(R.reduce_max_p, jax.lax.reduce_max), (R.reduce_min_p, jax.lax.reduce_min)]:
        check_eval(lambda x: prim.bind(x, axes=axes), lambda x: jfun(x, axes), x)
    if dtype == np.bool_:
        check_eval(lambda x: R.reduce_and_p.bind(x, axes=axes), lambda x: jax.lax.reduce_and(x, axes), x)
        check_eval(lambda x: R.reduce_or_p.bind(x, axes=axes), lambda x: jax.lax.reduce_or(x, axes), x)
    else:
        check_eval(lambda x: R.reduce_prod_p.bind(x, axes=axes), lambda x: jax.lax.reduce_prod(x, axes), x)


@settings(max_examples=30)
@given(rows=st.integers(1, 700), n=st.integers(1, 9), lead=st.sampled_from([(), (3,)]),
       dtype=st.sampled_from([np.float64, np.float32, np.float16, np.int32, np.int8,
                              np.uint16, np.complex128]),
       seed=st.integers(0, 2**16))
def test_sum_over_a_short_last_axis_is_numpys_sum_bit_for_bit(rows, n, lead, dtype, seed):
    """reduce_sum's eager column-add path (many rows of 2-7) gives NumPy's
    bits, signed zeros, infs and NaNs included, and JAX's values."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(lead + (rows, n)) * 50).astype(dtype)
    if np.dtype(dtype).kind == "f":
        flat = x.reshape(-1)
        flat[rng.integers(0, flat.size, 5)] = rng.choice([0.0, -0.0, np.inf, -np.inf, np.nan], 5)
        x[..., :1, :] = -0.0
    out = R._sum_impl(x, (x.ndim - 1,))
    ref = np.add.reduce(x, axis=x.ndim - 1, dtype=x.dtype)
    assert out.dtype == ref.dtype and out.shape == ref.shape
    np.testing.assert_array_equal(out.view(np.uint8), ref.view(np.uint8))
    if np.dtype(dtype) in (np.float64, np.float32) and 2 <= n <= 7 and rows >= 64 * (n - 1):
        assert R._sum_short_last_axis(x, n).tobytes() == ref.tobytes()  # the path was eligible
    assert_close(tnp.sum(tnp.asarray(x), axis=-1), jnp.sum(jnp.asarray(x), axis=-1), what="vs jax")


def test_reduce_max_ties_split_equally_like_jax():
    x = np.array([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
    g = tg.grad(lambda x: tnp.max(x, axis=1).sum())(x)
    jg = jax.grad(lambda x: jnp.max(x, axis=1).sum())(x)
    assert_close(g, jg)
    np.testing.assert_allclose(np.asarray(g), [[0, .5, .5, 0], [.25, .25, .25, .25]])
    g = tg.grad(lambda x: tnp.min(x))(x)
    assert_close(g, jax.grad(lambda x: jnp.min(x))(x))


def test_reduce_prod_with_zeros_higher_order():
    for x in (np.array([2.0, 0.0, 3.0, 0.5]), np.array([0.0, 1.5, 0.0, -2.0, 3.0]),
              np.array([1.5, -2.0, 0.7])):
        f, jf = (lambda x: tnp.prod(x)), (lambda x: jnp.prod(x))
        assert_close(tg.grad(f)(x), jax.jit(jax.grad(jf))(x))
        assert_close(tg.hessian(f)(x), jax.jit(jax.hessian(jf))(x))


@given(sa=shape_and_axes(min_dims=1), seed=seeds, in_axis=st.integers(0, 3))
@settings(max_examples=8)
def test_reduce_vmap(sa, seed, in_axis):
    shape, axes = sa
    in_axis = in_axis % (len(shape) + 1)
    x = values(shape[:in_axis] + (3,) + shape[in_axis:], seed=seed)
    for prim, jfun in REDUCERS.values():
        check_vmap(lambda x: prim.bind(x, axes=axes), lambda x: jfun(x, axes), (x,), in_axes=in_axis)
    b = x > 0
    check_vmap(lambda b: R.reduce_or_p.bind(b, axes=axes), lambda b: jax.lax.reduce_or(b, axes),
               (b,), in_axes=in_axis)
    check_vmap(lambda b: R.reduce_and_p.bind(b, axes=axes), lambda b: jax.lax.reduce_and(b, axes),
               (b,), in_axes=in_axis)


# --------------------------------------------------------------------------
# argmax / argmin


@pytest.mark.parametrize("which", ["argmax", "argmin"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32, np.bool_])
@given(shape=shapes(min_dims=1, min_side=1), seed=seeds, data=st.data())
@settings(max_examples=5)
def test_argminmax_primitive(which, dtype, shape, seed, data):
    axis = data.draw(st.integers(0, len(shape) - 1))
    x = values(shape, dtype, seed, ties=True)
    if np.dtype(dtype).kind == "f" and x.size > 1 and data.draw(st.booleans()):
        x.reshape(-1)[data.draw(st.integers(0, x.size - 1))] = np.nan  # NaN wins (first one)
    prim = R.argmax_p if which == "argmax" else R.argmin_p
    jfun = jax.lax.argmax if which == "argmax" else jax.lax.argmin
    f = lambda x: prim.bind(x, axes=(axis,), index_dtype=I64)
    check_eval(f, lambda x: jfun(x, axis, jnp.int64), x)
    if x.dtype.kind == "f":
        _, t = tg.jvp(f, (x,), (np.ones_like(x),))
        assert np.asarray(t).dtype == tg.dtypes.float0  # indices have no derivative
    check_vmap(f, lambda x: jfun(x, axis, jnp.int64), (np.stack([x, x[::-1] if x.ndim else x]),))


def test_argminmax_nan_and_errors():
    x = np.array([1.0, np.nan, 5.0, np.nan])
    assert int(tnp.argmax(x)) == 1 and int(tnp.argmin(x)) == 1
    with pytest.raises(ValueError):
        tnp.argmax(np.zeros((0, 3)))
    with pytest.raises(ValueError):
        tnp.argmin(np.zeros((2, 0)), axis=1)
    with pytest.raises(ValueError):
        tnp.max(np.zeros((0, 3)), axis=0)
    with pytest.raises(ValueError):
        tnp.min(np.zeros((3, 2)), where=np.ones((3, 2), bool))
    # an empty reduction with `initial` is fine
    assert_close(tnp.max(np.zeros((0, 3)), axis=0, initial=-1.0),
                 jnp.max(jnp.zeros((0, 3)), axis=0, initial=-1.0))


# --------------------------------------------------------------------------
# cumulative ops


CUMULATIVE = {"cumsum": (R.cumsum_p, jax.lax.cumsum), "cumprod": (R.cumprod_p, jax.lax.cumprod),
              "cummax": (R.cummax_p, jax.lax.cummax), "cummin": (R.cummin_p, jax.lax.cummin)}


@pytest.mark.parametrize("name", sorted(CUMULATIVE))
@given(shape=shapes(min_dims=1), seed=seeds, data=st.data())
@settings(max_examples=6)
def test_cumulative_primitives(name, shape, seed, data):
    prim, jfun = CUMULATIVE[name]
    axis = data.draw(st.integers(0, len(shape) - 1))
    reverse = data.draw(st.booleans())
    x = values(shape, seed=seed, ties=data.draw(st.booleans()))  # ties: zeros, equal maxima
    f = lambda x: prim.bind(x, axis=axis, reverse=reverse)
    jf = lambda x: jfun(x, axis, reverse)
    check_eval(f, jf, x)
    check_jvp(f, jf, (x,))
    check_vjp(f, jf, (x,))
    b = np.stack([x, x * 2 - 1])
    check_vmap(f, jf, (np.moveaxis(b, 0, -1),), in_axes=-1)


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.uint8])
def test_cumulative_dtypes(dtype):
    x = values((3, 5), dtype, 3)
    for prim, jfun in CUMULATIVE.values():
        check_eval(lambda x: prim.bind(x, axis=1, reverse=True), lambda x: jfun(x, 1, True), x)


def test_cumprod_cummax_second_derivatives():
    x = np.array([[1.5, 0.0, -2.0, 0.5, 3.0], [0.5, -1.0, 0.0, 0.0, 2.0]])
    for tf, jf in [(R.cumprod_p, jax.lax.cumprod), (R.cummax_p, jax.lax.cummax)]:
        f = lambda x: (tf.bind(x, axis=1, reverse=False) ** 2).sum()
        g = lambda x: (jf(x, 1) ** 2).sum()
        assert_close(tg.hessian(f)(x), jax.jit(jax.hessian(g))(x))
        gg = lambda x: (tg.grad(f)(x) ** 2).sum()
        jgg = lambda x: (jax.grad(g)(x) ** 2).sum()
        assert_close(tg.grad(gg)(x), jax.jit(jax.grad(jgg))(x))


# --------------------------------------------------------------------------
# sort


@given(shape=shapes(min_dims=1), seed=seeds, data=st.data())
@settings(max_examples=8)
def test_sort_primitive(shape, seed, data):
    dim = data.draw(st.integers(0, len(shape) - 1))
    num_keys = data.draw(st.integers(1, 2))
    x = values(shape, seed=seed, ties=True)
    y = values(shape, seed=seed + 1, ties=True)
    if x.size and data.draw(st.booleans()):  # NaN, -0.0 and inf keys
        flat = x.reshape(-1)
        flat[::3] = np.nan
        flat[1::4] = -0.0
        flat[2::5] = -np.inf
    f = lambda x, y: tuple(S.sort_p.bind(x, y, dimension=dim, is_stable=True, num_keys=num_keys))
    jf = lambda x, y: jax.lax.sort((x, y), dimension=dim, is_stable=True, num_keys=num_keys)
    check_eval(f, jf, x, y)
    xf = np.where(np.isnan(x), 0.25, x)  # differentiate where values are finite
    xf = np.where(np.isinf(xf), 0.75, xf)
    check_jvp(f, jf, (xf, y))
    check_vjp(f, jf, (xf, y))
    check_vmap(f, jf, (np.stack([xf, -xf], -1), y), in_axes=(-1, None))


@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.uint8, np.bool_, np.complex64])
def test_sort_dtypes(dtype):
    x = values((4, 6), dtype, 1)
    if np.dtype(dtype).kind == "c":
        x = (np.round(x.real) + 1j * values((4, 6), np.float32, 2)).astype(dtype)
    check_eval(lambda x: S.sort(x, 1), lambda x: jax.lax.sort(x, dimension=1), x)
    check_eval(lambda x: tnp.argsort(x, axis=0), lambda x: jnp.argsort(x, axis=0), x)
    check_lowering(lambda x: S.sort(x, 1), (x,))


def test_sort_second_derivative_and_jit():
    x = np.array([[0.3, -1.2, 2.0, 0.7], [1.1, 1.0, -0.5, 4.0]])
    w = np.arange(8.0).reshape(2, 4)
    f = lambda x: ((tnp.sort(x, axis=1) * w) ** 3).sum()
    jf = lambda x: ((jnp.sort(x, axis=1) * w) ** 3).sum()
    assert_close(tg.grad(f)(x), jax.jit(jax.grad(jf))(x))
    assert_close(tg.hessian(f)(x), jax.jit(jax.hessian(jf))(x))
    check_lowering(tg.grad(f), (x,))
    check_lowering(lambda x: tg.vmap(tg.grad(f))(x[None]), (x,))


# --------------------------------------------------------------------------
# reduce_window and pooling


@st.composite
def window_config(draw):
    nd = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 6)) for _ in range(nd))
    wd = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    ws = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    kind = draw(st.sampled_from(["VALID", "SAME", "explicit"]))
    pad = kind if kind != "explicit" else tuple(
        (draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(nd))
    dil = draw(st.booleans())
    bd = tuple(draw(st.integers(1, 2)) for _ in range(nd)) if dil else None
    wdl = tuple(draw(st.integers(1, 2)) for _ in range(nd)) if dil else None
    return shape, wd, ws, pad, bd, wdl


_JAX_WINDOW = {"max": jax.lax.max, "min": jax.lax.min, "add": jax.lax.add}


def _window_fns(comp, wd, ws, pad, bd, wdl):
    op = _JAX_WINDOW[comp]
    f = lambda x: W.reduce_window(x, comp, wd, ws, pad, bd, wdl)
    jf = lambda x: jax.lax.reduce_window(x, R._identity(comp, x.dtype), op, wd, ws, pad, bd, wdl)
    return f, jf


@pytest.mark.parametrize("comp", ["max", "min", "add"])
@given(cfg=window_config(), seed=seeds)
@settings(max_examples=8)
def test_reduce_window_values_and_jvp(comp, cfg, seed):
    shape, wd, ws, pad, bd, wdl = cfg
    x = values(shape, seed=seed)
    f, jf = _window_fns(comp, wd, ws, pad, bd, wdl)
    check_eval(f, jf, x)
    check_jvp(f, jf, (x,))
    check_vmap(f, jf, (np.stack([x, -x]),))
    xi = values(shape, np.int32, seed)
    check_eval(f, jf, xi)


@pytest.mark.parametrize("comp", ["max", "min", "add"])
@given(cfg=window_config(), seed=seeds)
@settings(max_examples=6)
def test_reduce_window_vjp(comp, cfg, seed):
    shape, wd, ws, pad, bd, wdl = cfg
    if comp != "add":
        wdl = None  # JAX has no max-pool vjp with window dilation (tested below without JAX)
    x = values(shape, seed=seed)
    f, jf = _window_fns(comp, wd, ws, pad, bd, wdl)
    check_vjp(f, jf, (x,))


@pytest.mark.parametrize("comp", ["max", "min", "add"])
@given(cfg=window_config(), seed=seeds, neg=st.booleans())
@settings(max_examples=8)
def test_reduce_window_transpose_consistent(comp, cfg, seed, neg):
    """<ct, J t> == <J^T ct, t> and the jvp matches central differences, for
    window dilation and negative (cropping) padding, which JAX cannot check."""
    shape, wd, ws, pad, bd, wdl = cfg
    nd = len(shape)
    if neg:
        pad = tuple((-min(1, n - 1), 1) for n in shape)
    x = values(shape, seed=seed)
    f = lambda x: W.reduce_window(x, comp, wd, ws, pad, bd, wdl)
    rng = np.random.default_rng(seed)
    t = rng.standard_normal(shape)
    y, jt = tg.jvp(f, (x,), (t,))
    ct = rng.standard_normal(np.shape(y))
    (jct,) = tg.vjp(f, x)[1](ct)
    np.testing.assert_allclose(np.vdot(ct, np.asarray(jt)), np.vdot(np.asarray(jct), t),
                               rtol=1e-9, atol=1e-9)
    eps = 1e-6  # random values: no ties, so the selection is locally constant
    with np.errstate(invalid="ignore"):  # windows of padding only give -inf
        fd = (np.asarray(f(x + eps * t)) - np.asarray(f(x - eps * t))) / (2 * eps)
    ok = np.isfinite(np.asarray(y))
    np.testing.assert_allclose(np.asarray(jt)[ok], fd[ok], rtol=1e-5, atol=1e-5)
    assert nd == len(wd)


def test_max_pool_ties_pick_first_like_jax():
    x = np.array([[1.0, 1.0, 0.0, 2.0], [1.0, 0.5, 2.0, 2.0], [3.0, 3.0, 3.0, 3.0]])
    for comp in ("max", "min"):
        f, jf = _window_fns(comp, (2, 2), (1, 2), "VALID", None, None)
        check_jvp(f, jf, (x,))
        check_vjp(f, jf, (x,))


@pytest.mark.parametrize("comp", ["max", "add"])
def test_pool_second_derivatives(comp):
    x = values((2, 6, 5), seed=7)
    f, jf = _window_fns(comp, (1, 3, 2), (1, 2, 2), "SAME", None, None)
    loss = lambda x: (f(x) ** 3).sum()
    jloss = lambda x: (jf(x) ** 3).sum()
    gg = lambda x: (tg.grad(loss)(x) ** 2).sum()
    jgg = lambda x: (jax.grad(jloss)(x) ** 2).sum()
    assert_close(tg.grad(gg)(x), jax.jit(jax.grad(jgg))(x))
    check_jvp(tg.grad(loss), jax.grad(jloss), (x,))
    check_vmap(tg.grad(loss), jax.grad(jloss), (np.stack([x, x[::-1]]),), in_axes=0)
    check_lowering(tg.grad(gg), (x,))


# --------------------------------------------------------------------------
# lowering of every primitive (compiled with XLA, compared with eager)


def _lowering_cases():
    x = values((3, 5), seed=11, ties=True)
    xn = x.copy()
    xn[1, 2] = np.nan
    b = x > 0
    t = values((3, 5), seed=12)
    w = dict(window_dimensions=(2, 2), window_strides=(1, 2), padding=((1, 0), (0, 1)),
             base_dilation=(1, 2), window_dilation=(2, 1))
    win_out = W.reduce_window_p.bind(x, computation="max", **w).shape
    s = values(win_out, seed=13)
    return [
        ("reduce_max", lambda x: R.reduce_max_p.bind(x, axes=(1,)), (xn,)),
        ("reduce_min", lambda x: R.reduce_min_p.bind(x, axes=(0, 1)), (x,)),
        ("reduce_prod", lambda x: R.reduce_prod_p.bind(x, axes=(0,)), (x,)),
        ("reduce_and", lambda b: R.reduce_and_p.bind(b, axes=(1,)), (b,)),
        ("reduce_or", lambda b: R.reduce_or_p.bind(b, axes=(0,)), (b,)),
        ("argmax", lambda x: R.argmax_p.bind(x, axes=(1,), index_dtype=I64), (xn,)),
        ("argmin", lambda x: R.argmin_p.bind(x, axes=(0,), index_dtype=np.dtype(np.int32)), (xn,)),
        ("cumsum", lambda x: R.cumsum_p.bind(x, axis=1, reverse=True), (x,)),
        ("cumprod", lambda x: R.cumprod_p.bind(x, axis=0, reverse=False), (x,)),
        ("cummax", lambda x: R.cummax_p.bind(x, axis=1, reverse=False), (xn,)),
        ("cummin", lambda x: R.cummin_p.bind(x, axis=0, reverse=True), (x,)),
        ("sort", lambda x, t: S.sort_p.bind(x, t, dimension=1, is_stable=True, num_keys=1), (xn, t)),
        ("reduce_window", lambda x: W.reduce_window_p.bind(x, computation="add", **w), (x,)),
        ("reduce_window_neg", lambda x: W.reduce_window_p.bind(
            x, computation="min", window_dimensions=(2, 1), window_strides=(1, 1),
            padding=((-1, 1), (1, -2)), base_dilation=(1, 1), window_dilation=(1, 1)), (x,)),
        ("select_and_gather_add", lambda t, x: W.select_and_gather_add_p.bind(t, x, select="max", **w),
         (t, x)),
        ("select_and_scatter_add", lambda s, x: W.select_and_scatter_add_p.bind(s, x, select="min", **w),
         (s, x)),
    ]


@pytest.mark.parametrize("case", _lowering_cases(), ids=lambda c: c[0])
def test_lowering(case):
    _, f, args = case
    check_lowering(f, args)


def test_every_primitive_has_all_rules():
    mine = [R.reduce_max_p, R.reduce_min_p, R.reduce_prod_p, R.reduce_and_p, R.reduce_or_p,
            R.argmax_p, R.argmin_p, R.cumsum_p, R.cumprod_p, R.cummax_p, R.cummin_p, S.sort_p,
            W.reduce_window_p, W.select_and_gather_add_p, W.select_and_scatter_add_p]
    table = tg.coverage(print_table=False)
    for p in mine:
        row = table[p.name]
        missing = [r for r, ok in row.items() if ok is False]
        assert not missing, f"{p.name} lacks {missing}"
    covered = {c[0].replace("_neg", "") for c in _lowering_cases()}
    assert {p.name for p in mine} <= covered


# --------------------------------------------------------------------------
# tracegrad.numpy functions


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int8, np.int64, np.uint8, np.bool_])
@given(sa=shape_and_axes(), seed=seeds, keepdims=st.booleans())
@settings(max_examples=5)
def test_tnp_reductions_dtypes(dtype, sa, seed, keepdims):
    shape, axes = sa
    x = values(shape, dtype, seed)
    nonempty = all(shape[a] > 0 for a in axes)
    fns = ["sum", "prod", "all", "any", "count_nonzero"]
    if dtype != np.bool_:
        fns += ["mean", "var", "std"]
    if nonempty:
        fns += ["max", "min"] + (["ptp"] if dtype != np.bool_ else [])
    kw = lambda name: {} if name == "count_nonzero" else {"keepdims": keepdims}
    both = lambda m, x: tuple(getattr(m, n)(x, axis=axes, **kw(n)) for n in fns)
    check_eval(lambda x: both(tnp, x), lambda x: both(jnp, x), x,
               rtol=1e-4 if dtype == np.float32 else None)


@given(shape=shapes(min_dims=1, min_side=1), seed=seeds, data=st.data())
@settings(max_examples=10)
def test_tnp_arg_and_cumulative(shape, seed, data):
    dtype = data.draw(st.sampled_from([np.float64, np.int8, np.uint8, np.bool_, np.float32]))
    x = values(shape, dtype, seed, ties=True)
    axis = data.draw(st.sampled_from([None] + list(range(-len(shape), len(shape)))))
    keep = data.draw(st.booleans())
    dt = data.draw(st.sampled_from([None, np.float64, np.int32, np.bool_]))
    desc = data.draw(st.booleans())

    def both(m, x):
        out = [m.argmax(x, axis=axis, keepdims=keep), m.argmin(x, axis=axis, keepdims=keep),
               m.cumsum(x, axis=axis, dtype=dt), m.cumprod(x, axis=axis, dtype=dt)]
        if x.dtype != np.bool_:
            out += [m.sort(x, axis=axis, descending=desc), m.argsort(x, axis=axis, descending=desc)]
        return tuple(out)
    check_eval(lambda x: both(tnp, x), lambda x: both(jnp, x), x)


@given(sa=shape_and_axes(min_dims=1, min_side=1), seed=seeds, data=st.data())
@settings(max_examples=8)
def test_tnp_statistics(sa, seed, data):
    shape, axes = sa
    axis = axes if axes else None
    x = values(shape, seed=seed, ties=data.draw(st.booleans()))
    keep = data.draw(st.booleans())
    method = data.draw(st.sampled_from(["linear", "lower", "higher", "midpoint", "nearest"]))
    q = data.draw(st.sampled_from([0.5, 0.0, 1.0, 0.37, (0.1, 0.9)]))
    if x.size and data.draw(st.booleans()):
        x.reshape(-1)[0] = np.nan
    ddof = data.draw(st.integers(0, 2))
    cases = [
        (lambda m, x: m.median(x, axis=axis, keepdims=keep)),
        (lambda m, x: m.quantile(x, np.asarray(q), axis=axis, method=method, keepdims=keep)),
        (lambda m, x: m.percentile(x, np.asarray(q) * 100, axis=axis, method=method)),
        (lambda m, x: m.var(x, axis=axis, ddof=ddof, keepdims=keep)),
        (lambda m, x: m.std(x, axis=axis, ddof=ddof)),
        (lambda m, x: m.average(x, axis=axis, keepdims=keep)),
        (lambda m, x: m.nancumsum(x, axis=axes[0] if axes else None)),
        (lambda m, x: m.nancumprod(x, axis=axes[-1] if axes else None)),
        (lambda m, x: m.nansum(x, axis=axis, keepdims=keep)),
        (lambda m, x: m.nanmean(x, axis=axis)),
        (lambda m, x: m.nanmax(x, axis=axis, keepdims=keep)),
        (lambda m, x: m.nanmin(x, axis=axis)),
        (lambda m, x: m.cumulative_sum(x, axis=-1, include_initial=keep)),
        (lambda m, x: m.cumulative_prod(x, axis=0, include_initial=not keep)),
    ]
    both = lambda m, x: tuple(c(m, x) for c in cases)
    check_eval(lambda x: both(tnp, x), lambda x: both(jnp, x), x)


def test_average_weights_and_logsumexp():
    x = values((3, 4, 5), seed=5)
    w = np.abs(values((4, 5), seed=6)) + 0.1
    check_eval(lambda x, w: tnp.average(x, axis=(1, 2), weights=w, returned=True),
               lambda x, w: jnp.average(x, axis=(1, 2), weights=w, returned=True), x, w)
    w2 = np.abs(values((5, 3), seed=6)) + 0.1
    check_eval(lambda x, w: tnp.average(x, axis=(2, 0), weights=w),
               lambda x, w: jnp.average(x, axis=(2, 0), weights=w), x, w2)
    lse, jlse = tsp.logsumexp, jax.scipy.special.logsumexp
    kws = [dict(), dict(axis=1), dict(axis=(0, 2), keepdims=True)]
    both = lambda f, x: tuple(f(x, **kw) for kw in kws)
    check_eval(lambda x: both(lse, x), lambda x: both(jlse, x), x)
    check_jvp(lambda x: both(lse, x), lambda x: both(jlse, x), (x,))
    check_vjp(lambda x: both(lse, x), lambda x: both(jlse, x), (x,))
    b = values((3, 4, 5), seed=8)
    both_b = lambda f, x, b: (f(x, axis=1, b=b), f(x, axis=2, b=b, return_sign=True))
    check_eval(lambda x, b: both_b(lse, x, b), lambda x, b: both_b(jlse, x, b), x, b)
    xi = np.array([[-np.inf, -np.inf], [np.inf, 1.0], [0.0, -np.inf]])
    check_eval(lambda x: lse(x, axis=1), lambda x: jlse(x, axis=1), xi)
    assert tnp.logsumexp is tsp.logsumexp
    check_lowering(tg.grad(lambda x: lse(x, axis=1).sum()), (x,))


def test_tnp_where_initial_and_methods():
    x = values((4, 5), seed=9)
    m = x > -0.3
    both = lambda mod, x: (
        tuple(getattr(mod, n)(x, axis=1, where=m, initial=0.1) for n in ("max", "min"))
        + tuple(getattr(mod, n)(x, axis=0, where=m) for n in ("sum", "prod", "mean", "all", "any", "var")))
    check_eval(lambda x: both(tnp, x), lambda x: both(jnp, x), x)
    meths = ["max", "min", "prod", "argmax", "argmin", "all", "any", "cumsum", "cumprod", "var",
             "std", "sort", "argsort", "sum", "mean", "ptp"]
    check_eval(lambda x: tuple(getattr(tnp.asarray(x), n)(axis=1) for n in meths),
               lambda x: tuple(getattr(x, n)(axis=1) for n in meths), x)


@given(sa=shape_and_axes(min_dims=1, nonempty_axes=True, min_side=1), seed=seeds)
@settings(max_examples=3)
def test_tnp_derivatives(sa, seed):
    shape, axes = sa
    axis = axes if axes else None
    x = values(shape, seed=seed)
    cases = [
        lambda m, x: m.max(x, axis=axis) * 2.0,
        lambda m, x: m.prod(m.tanh(x), axis=axis),
        lambda m, x: m.var(x, axis=axis, ddof=0),
        lambda m, x: m.std(x + 3.0, axis=axis),
        lambda m, x: m.median(x, axis=axis),
        lambda m, x: m.quantile(x, np.array([0.2, 0.7]), axis=axis),
        lambda m, x: m.cumprod(x, axis=-1),
        lambda m, x: m.sort(x, axis=0)[..., :1] * m.cumsum(x, axis=0)[..., :1],
        lambda m, x: m.ptp(x, axis=axis),
    ]
    tf, jf = (lambda x: tuple(c(tnp, x) for c in cases)), (lambda x: tuple(c(jnp, x) for c in cases))
    check_jvp(tf, jf, (x,))
    check_vjp(tf, jf, (x,))


@given(shape=shapes(min_dims=1, max_dims=2, min_side=1), seed=seeds, data=st.data())
@settings(max_examples=5)
def test_tnp_vmap_in_axes(shape, seed, data):
    x = values((3,) + shape, seed=seed, ties=True)
    y = values(shape, seed=seed + 1)
    in_axes = data.draw(st.sampled_from([(0, None), (0, 0)]))
    yy = y if in_axes[1] is None else np.stack([y, y * 2, -y])
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    cases = [
        lambda m, x, y: m.sort(x * y, axis=axis) + m.cumsum(y, axis=axis),
        lambda m, x, y: m.argsort(x - y, axis=axis),
        lambda m, x, y: m.max(x + y, axis=axis) - m.median(y, axis=axis),
        lambda m, x, y: m.var(x * y, axis=axis) + m.argmax(y, axis=axis),
        lambda m, x, y: m.cumprod(x, axis=axis) * m.min(y),
    ]
    check_vmap(lambda x, y: tuple(c(tnp, x, y) for c in cases),
               lambda x, y: tuple(c(jnp, x, y) for c in cases), (x, yy), in_axes=in_axes)
    # batch axis last, unbatched first operand
    check_vmap(lambda x, y: tnp.sort(x * y, axis=0), lambda x, y: jnp.sort(x * y, axis=0),
               (np.moveaxis(x, 0, -1), y), in_axes=(-1, None))


def test_jaxprs_show_the_primitives():
    x = values((3, 4), seed=1)
    text = str(tg.make_jaxpr(lambda x: (tnp.max(x, 1), tnp.argsort(x), tnp.cumsum(x, 0)))(x))
    for name in ("reduce_max", "sort", "cumsum", "iota"):
        assert name in text
