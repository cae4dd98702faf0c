"""conv_general_dilated vs jax.lax (x64): values, shapes and dtypes over
random layouts, strides, padding (negative too), lhs/rhs dilation, feature
and batch groups; jvp, vjp (the transpose rules for lhs and rhs), vmap with
batched lhs, batched rhs (kernel), both and unmapped, and the StableHLO
lowering.

Values are compared with JAX for every example; derivatives use exact
bilinearity (the jvp is conv(t_lhs, rhs) + conv(lhs, t_rhs), evaluated
eagerly) and the transposition identity <ct, jvp(t)> == <vjp(ct), t>, and
vmap a loop of the eager conv (JAX would compile every new shape, ~0.1 s
each); the full JAX oracle runs on a fixed set of configurations."""
import jax
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import oracle
import tracegrad as tg
from tracegrad.primitives import conv as C

F64 = np.float64


def _dn_jax(dn):
    return jax.lax.ConvDimensionNumbers(*dn)


@st.composite
def conv_problems(draw):
    nsp = draw(st.integers(1, 2))
    nd = nsp + 2
    perm = st.permutations(list(range(nd)))
    lspec, rspec, ospec = tuple(draw(perm)), tuple(draw(perm)), tuple(draw(perm))
    G = B = 1
    kind = draw(st.sampled_from(["plain", "plain", "feature", "batch"]))
    if kind == "feature":
        G = draw(st.integers(2, 3))
    elif kind == "batch":
        B = 2
    n = B * draw(st.integers(1, 2))
    cg = draw(st.integers(1, 2))
    o = G * B * draw(st.integers(1, 2))
    strides = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    lhs_dil = tuple(draw(st.integers(1, 2)) for _ in range(nsp))
    rhs_dil = tuple(draw(st.integers(1, 2)) for _ in range(nsp))
    insp = tuple(draw(st.integers(1, 6)) for _ in range(nsp))
    ksp = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    pads = []
    for s, d in zip(insp, lhs_dil):
        dil = 1 + d * (s - 1)
        lo = draw(st.integers(-1, 2))
        hi = draw(st.integers(max(-1, -dil - lo), 2))
        pads.append((lo, hi))
    canon_l = (n, G * cg) + insp
    canon_r = (o, cg) + ksp
    lshape = [0] * nd
    rshape = [0] * nd
    for k in range(nd):
        lshape[lspec[k]] = canon_l[k]
        rshape[rspec[k]] = canon_r[k]
    params = dict(window_strides=strides, padding=tuple(pads), lhs_dilation=lhs_dil,
                  rhs_dilation=rhs_dil, dimension_numbers=(lspec, rspec, ospec),
                  feature_group_count=G, batch_group_count=B)
    return tuple(lshape), tuple(rshape), params


def _fns(params, **extra):
    p = dict(params)
    dn = p.pop("dimension_numbers")
    tf = lambda a, b: C.conv_general_dilated(a, b, dimension_numbers=dn, **p, **extra)  # noqa: E731
    jf = lambda a, b: jax.lax.conv_general_dilated(a, b, dimension_numbers=_dn_jax(dn), **p,  # noqa: E731
                                                   **extra)
    return tf, jf


def _vdot(xs, ys):
    return sum(float(np.sum(np.asarray(x, F64) * np.asarray(y, F64))) for x, y in zip(xs, ys))


def _check_derivatives(tf, x, w, rng, rtol=1e-9):
    """jvp by bilinearity, vjp by the transposition identity (both exact)."""
    tx, tw = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    out, tout = tg.jvp(tf, (x, w), (tx, tw))
    ref = np.asarray(tf(tx, w)) + np.asarray(tf(x, tw))
    np.testing.assert_allclose(np.asarray(tout), ref, rtol=rtol, atol=rtol)
    _, f_vjp = tg.vjp(tf, x, w)
    ct = rng.standard_normal(np.shape(out))
    cx, cw = f_vjp(ct)
    assert np.shape(cx) == x.shape and np.shape(cw) == w.shape
    lhs, rhs = _vdot([ct], [tout]), _vdot([cx, cw], [tx, tw])
    assert abs(lhs - rhs) <= 1e-8 * (1 + abs(lhs)), (lhs, rhs)


def _check_vmap_loop(tf, x, w, axes, rng):
    la, ra = axes
    bx = x if la is None else np.stack([x, rng.standard_normal(x.shape).astype(x.dtype)], la)
    bw = w if ra is None else np.stack([w, rng.standard_normal(w.shape).astype(w.dtype)], ra)
    got = np.asarray(tg.vmap(tf, in_axes=(la, ra))(bx, bw))
    rows = [np.asarray(tf(bx if la is None else np.take(bx, i, la),
                          bw if ra is None else np.take(bw, i, ra))) for i in range(2)]
    np.testing.assert_allclose(got, np.stack(rows), rtol=1e-10, atol=1e-12)


@given(prob=conv_problems(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16), data=st.data())
@settings(max_examples=30)
def test_conv_random(prob, dtype, seed, data):
    lshape, rshape, params = prob
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(lshape).astype(dtype)
    w = rng.standard_normal(rshape).astype(dtype)
    tf, jf = _fns(params)
    oracle.check_eval(tf, jf, x, w)
    x64, w64 = x.astype(F64), w.astype(F64)
    _check_derivatives(tf, x64, w64, rng)
    la = data.draw(st.integers(0, x.ndim))
    ra = data.draw(st.integers(0, w.ndim))
    for axes in ((la, None), (None, ra), (la, ra)):
        _check_vmap_loop(tf, x64, w64, axes, rng)
    oracle.check_lowering(tf, (x, w))


# a fixed set of configurations checked with the full JAX oracle
FULL = [
    ((2, 3, 7, 6), (4, 3, 3, 2), dict(window_strides=(1, 1), padding="VALID",
                                      dimension_numbers=("NCHW", "OIHW", "NCHW"))),
    ((2, 7, 6, 3), (3, 2, 3, 4), dict(window_strides=(2, 1), padding="SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))),
    ((2, 4, 7, 6), (6, 2, 3, 2), dict(window_strides=(2, 3), padding=((1, 2), (0, -1)),
                                      rhs_dilation=(2, 1), lhs_dilation=(1, 2),
                                      feature_group_count=2,
                                      dimension_numbers=("NCHW", "OIHW", "NCHW"))),
    ((4, 3, 7, 6), (6, 3, 3, 2), dict(window_strides=(1, 2), padding=((1, 2), (2, 1)),
                                      rhs_dilation=(1, 2), batch_group_count=2,
                                      dimension_numbers=("NCHW", "OIHW", "NCHW"))),
    ((4, 6, 7), (3, 6, 3), dict(window_strides=(2,), padding=((1, 2),), lhs_dilation=(2,),
                                feature_group_count=2, dimension_numbers=("NCH", "IOH", "NHC"))),
]


@pytest.mark.parametrize("i", range(len(FULL)))
def test_conv_full_jax(i):
    lshape, rshape, kw = FULL[i]
    rng = np.random.default_rng(i)
    x, w = rng.standard_normal(lshape), rng.standard_normal(rshape)
    tf = lambda a, b: C.conv_general_dilated(a, b, **kw)  # noqa: E731
    jf = lambda a, b: jax.lax.conv_general_dilated(a, b, **kw)  # noqa: E731
    oracle.check_eval(tf, jf, x, w)
    oracle.check_jvp(tf, jf, (x, w))
    oracle.check_vjp(tf, jf, (x, w))
    # batched input, batched kernel (folded into feature groups), both
    oracle.check_vmap(tf, jf, (np.stack([x, -x]), w), in_axes=(0, None))
    oracle.check_vmap(tf, jf, (x, np.stack([w, 2 * w], 1)), in_axes=(None, 1))
    oracle.check_vmap(tf, jf, (np.stack([x, -x], 2), np.stack([w, 2 * w], 0)), in_axes=(2, 0))
    oracle.check_lowering(tf, (x, w))
    oracle.check_jit(tf, (x, w))


def test_conv_vmap_of_grad_per_example():
    """Per-example gradients of a conv layer: vmap(grad) vs JAX."""
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((5, 1, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3))

    def loss(tconv, tsum, tsin):
        return lambda w_, x_: tsum(tsin(tconv(x_, w_, (1, 1), "SAME")))

    import jax.numpy as jnp
    import tracegrad.numpy as tnp
    g = tg.vmap(tg.grad(loss(C.conv, tnp.sum, tnp.sin)), in_axes=(None, 0))(w, x)
    r = jax.vmap(jax.grad(loss(jax.lax.conv, jnp.sum, jnp.sin)), in_axes=(None, 0))(w, x)
    oracle.assert_close(g, r)
    h = tg.grad(lambda w_: tnp.sum(tg.grad(loss(C.conv, tnp.sum, tnp.sin))(w_, x[0]) ** 2))(w)
    hr = jax.grad(lambda w_: jnp.sum(jax.grad(loss(jax.lax.conv, jnp.sum, jnp.sin))(w_, x[0]) ** 2))(w)
    oracle.assert_close(h, hr)


@pytest.mark.parametrize("padding", ["SAME", "VALID", "SAME_LOWER", ((1, 0), (2, 1))])
@pytest.mark.parametrize("strides", [(1, 1), (2, 3)])
def test_conv_string_padding_layouts(padding, strides):
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((2, 7, 8, 3)), rng.standard_normal((3, 2, 3, 4))
    kw = dict(window_strides=strides, padding=padding, rhs_dilation=(1, 2),
              dimension_numbers=("NHWC", "HWIO", "NHWC"))
    out = C.conv_general_dilated(x, w, **kw)
    oracle.assert_close(out, jax.lax.conv_general_dilated(x, w, **kw))
    xn, wn = np.transpose(x, (0, 3, 1, 2)), np.transpose(w, (3, 2, 0, 1))
    if isinstance(padding, str) and padding != "SAME_LOWER":
        oracle.assert_close(C.conv(xn, wn, strides, padding), jax.lax.conv(xn, wn, strides, padding))
    oracle.assert_close(
        C.conv_with_general_padding(xn, wn, strides, padding, None, (2, 1)),
        jax.lax.conv_with_general_padding(xn, wn, strides, padding, None, (2, 1)))


@pytest.mark.parametrize("dtype,pet", [(np.int32, None), (np.int8, np.int32), (np.float32, np.float64),
                                       (np.float16, np.float32), (np.complex128, None),
                                       (np.int16, np.float32)])
def test_conv_dtypes(dtype, pet):
    rng = np.random.default_rng(9)
    if np.dtype(dtype).kind in "iu":
        x = rng.integers(-3, 4, (2, 3, 5, 5)).astype(dtype)
        w = rng.integers(-3, 4, (4, 3, 2, 2)).astype(dtype)
    elif np.dtype(dtype).kind == "c":
        x = (rng.standard_normal((2, 3, 5, 5)) + 1j * rng.standard_normal((2, 3, 5, 5))).astype(dtype)
        w = (rng.standard_normal((4, 3, 2, 2)) + 1j * rng.standard_normal((4, 3, 2, 2))).astype(dtype)
    else:
        x = rng.standard_normal((2, 3, 5, 5)).astype(dtype)
        w = rng.standard_normal((4, 3, 2, 2)).astype(dtype)
    tf = lambda a, b: C.conv(a, b, (1, 1), "SAME", preferred_element_type=pet)  # noqa: E731
    jf = lambda a, b: jax.lax.conv(a, b, (1, 1), "SAME", preferred_element_type=pet)  # noqa: E731
    tol = {"rtol": 2e-2, "atol": 2e-2} if dtype == np.float16 else {}
    oracle.check_eval(tf, jf, x, w, **tol)
    oracle.check_lowering(tf, (x, w), **tol)


def test_conv_zero_sizes():
    rng = np.random.default_rng(10)
    cases = [((0, 3, 5, 5), (4, 3, 3, 3)), ((2, 3, 2, 5), (4, 3, 3, 3)), ((2, 0, 5, 5), (4, 0, 3, 3)),
             ((2, 3, 5, 5), (0, 3, 3, 3))]
    for ls, rs in cases:
        x, w = rng.standard_normal(ls), rng.standard_normal(rs)
        tf = lambda a, b: C.conv(a, b, (1, 1), "VALID")  # noqa: E731
        jf = lambda a, b: jax.lax.conv(a, b, (1, 1), "VALID")  # noqa: E731
        oracle.check_eval(tf, jf, x, w)
        _check_derivatives(tf, x, w, rng)
        oracle.check_lowering(tf, (x, w))
    # a zero-size vmapped axis
    x, w = rng.standard_normal((0, 2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3))
    out = tg.vmap(lambda a: C.conv(a, w, (1, 1), "VALID"))(x)
    assert out.shape == (0, 2, 4, 3, 3)


def test_conv_transpose_rules_are_convs():
    """grad wrt input and kernel: each one conv (plus flips/reshapes)."""
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal((2, 4, 6, 6)), rng.standard_normal((6, 2, 3, 3))
    f = lambda a, b: C.conv_general_dilated(a, b, (2, 1), "SAME", feature_group_count=2)  # noqa: E731
    ct = np.ones(np.shape(f(x, w)))
    closed = tg.make_jaxpr(lambda a, b: tg.vjp(f, a, b)[1](ct))(x, w)
    names = [e.primitive.name for e in closed.jaxpr.eqns]
    assert names.count("conv_general_dilated") == 2
    assert set(names) <= {"conv_general_dilated", "rev", "reshape", "transpose"}


def test_conv_dimension_numbers_and_pads():
    for shapes, spec in [(((2, 3, 4, 5), (6, 3, 2, 2)), ("NCHW", "OIHW", "NCHW")),
                         (((2, 4, 5, 3), (2, 2, 3, 6)), ("NHWC", "HWIO", "NHWC")),
                         (((2, 4, 5, 3), (2, 3, 2, 6)), ("NHWC", "HIWO", "NCHW")),
                         (((2, 4, 3), (2, 3, 6)), ("NWC", "WIO", "NWC"))]:
        ours = C.conv_dimension_numbers(*shapes, spec)
        ref = jax.lax.conv_dimension_numbers(*shapes, spec)
        assert tuple(map(tuple, ours)) == tuple(map(tuple, ref))
    assert tuple(C.conv_dimension_numbers((1, 2, 3), (1, 2, 3), None)) == ((0, 1, 2),) * 3
    for pad in ("SAME", "VALID", "SAME_LOWER"):
        assert [tuple(p) for p in C.padtype_to_pads((7, 8), (3, 4), (2, 3), pad)] == \
            [tuple(p) for p in jax.lax.padtype_to_pads((7, 8), (3, 4), (2, 3), pad)]


def test_conv_errors():
    x, w = np.zeros((2, 3, 5, 5)), np.zeros((4, 2, 3, 3))
    with pytest.raises(TypeError, match="feature size 3 / feature_group_count 1"):
        C.conv(x, w, (1, 1), "VALID")
    with pytest.raises(TypeError, match="same dtype"):
        C.conv(x.astype(np.float32), np.zeros((4, 3, 3, 3)), (1, 1), "VALID")
    with pytest.raises(TypeError, match="must contain 'N' and 'C'"):
        C.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWX", "OIHW", "NCHW"))
    with pytest.raises(ValueError, match="lhs_dilation"):
        C.conv_general_dilated(x, np.zeros((4, 3, 3, 3)), (1, 1), "SAME", lhs_dilation=(2, 2))
    with pytest.raises(TypeError, match="equal rank"):
        C.conv(x, np.zeros((4, 3, 3)), (1, 1), "VALID")
    with pytest.raises(TypeError, match="conv_general_dilated: .*feature_group_count"):
        tg.make_jaxpr(lambda a: C.conv(a, w, (1, 1), "VALID"))(x)


def test_lenet_sized_eager_conv_is_vectorised():
    """batch 128 of 8x8 digits: the eager impl is one batched matmul (no
    per-pixel loops): forward and backward of two layers in well under a
    second even on a busy machine."""
    import time
    rng = np.random.default_rng(12)
    x = rng.standard_normal((128, 1, 8, 8)).astype(np.float32)
    w1 = rng.standard_normal((6, 1, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((16, 6, 3, 3)).astype(np.float32)

    def net(w1_, w2_):
        import tracegrad.numpy as tnp
        h = tnp.tanh(C.conv(x, w1_, (1, 1), "SAME"))
        h = C.conv(h, w2_, (2, 2), "SAME")
        return tnp.sum(h * h)

    tg.grad(net, (0, 1))(w1, w2)
    t0 = time.perf_counter()
    for _ in range(3):
        g1, g2 = tg.grad(net, (0, 1))(w1, w2)
    assert (time.perf_counter() - t0) / 3 < 1.0
    import jax.numpy as jnp

    def jnet(w1_, w2_):
        h = jnp.tanh(jax.lax.conv(x, w1_, (1, 1), "SAME"))
        h = jax.lax.conv(h, w2_, (2, 2), "SAME")
        return jnp.sum(h * h)

    r1, r2 = jax.grad(jnet, (0, 1))(w1, w2)
    oracle.assert_close((g1, g2), (r1, r2), rtol=2e-4, atol=2e-3)
