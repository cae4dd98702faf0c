"""dot_general and the tnp products / linear algebra vs jax.lax / jax.numpy
(x64): values, shapes, dtypes, jvp, vjp, vmap (batched lhs, rhs, both,
unmapped) and the StableHLO lowering, over hypothesis shapes including
empty axes, 1-D operands and batch axes.

JAX compiles every new (op, shape) it runs eagerly (~0.1 s each), so the
broad sweeps use a cheaper oracle that is just as strict: shapes and dtypes
from `jax.eval_shape` (traced, not compiled), values from NumPy (same
semantics as jnp for these functions), tangents from exact multilinearity or
central differences, cotangents through the transposition identity
<ct, jvp(t)> == <vjp(ct), t>, and vmap against a loop of the eager function.
The full JAX oracle (check_eval/jvp/vjp/vmap) runs on a representative subset."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import oracle
import tracegrad as tg
import tracegrad.numpy as tnp
from tracegrad.primitives.linalg import dot_general, dot_general_p

F64 = np.float64


def _rand(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) > 0.5
    if dtype.kind in "iu":
        return rng.integers(-4 if dtype.kind == "i" else 0, 5, size=shape).astype(dtype)
    if dtype.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _with_batch(rng, x, axis, size=2):
    """A batched version of x: `size` random arrays like x stacked on `axis`."""
    return np.stack([_rand(rng, x.shape, x.dtype) for _ in range(size)], axis=axis)


def _leaves(x):
    return [np.asarray(v) for v in jax.tree_util.tree_leaves(x)]


def _vdot(xs, ys):
    return sum(float(np.sum(np.asarray(x, F64) * np.asarray(y, F64))) for x, y in zip(xs, ys))


def check_cheap(tf, jf, nf, args, diff=True, linear=None, rtol=1e-9, atol=1e-11, vmap_axes=None,
                lower=True):
    """tf vs JAX's shapes/dtypes (eval_shape) and NumPy's values (nf); jvp
    against exact (multi)linearity (linear='multi' / 'single') or central
    differences; vjp through the transposition identity; vmap against a loop."""
    out = tf(*args)
    struct = jax.eval_shape(jf, *args)
    got, want = _leaves(out), jax.tree_util.tree_leaves(struct)
    assert len(got) == len(want)
    ref = _leaves(nf(*args))
    for g, w, r in zip(got, want, ref):
        assert g.shape == tuple(w.shape), (g.shape, w.shape)
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        np.testing.assert_allclose(g, r.astype(g.dtype), rtol=max(rtol, _eps(g.dtype)),
                                   atol=max(atol, _eps(g.dtype)))
    closed = tg.make_jaxpr(tf)(*args)
    oracle.assert_close(tg.eval_jaxpr(closed.jaxpr, closed.consts, *args), got)
    rng = np.random.default_rng(0)
    if diff:
        ts = [rng.standard_normal(np.shape(a)) for a in args]
        _, tout = tg.jvp(tf, tuple(args), tuple(ts))
        tout = _leaves(tout)
        if linear == "single":
            tref = _leaves(nf(*ts))
        elif linear == "multi":
            parts = [_leaves(nf(*[t if j == i else a for j, a in enumerate(args)]))
                     for i, t in enumerate(ts)]
            tref = [sum(p[k] for p in parts) for k in range(len(parts[0]))]
        else:
            eps = 1e-6
            plus = _leaves(nf(*[a + eps * t for a, t in zip(args, ts)]))
            minus = _leaves(nf(*[a - eps * t for a, t in zip(args, ts)]))
            tref = [(p - m) / (2 * eps) for p, m in zip(plus, minus)]
        fd_tol = 1e-5 if linear is None else rtol
        for t, r in zip(tout, tref):
            np.testing.assert_allclose(t, r, rtol=fd_tol, atol=fd_tol)
        _, f_vjp = tg.vjp(tf, *args)
        cts = [rng.standard_normal(np.shape(o)) for o in got]
        ct_in = f_vjp(cts[0] if not isinstance(out, (tuple, list)) else tuple(cts))
        lhs, rhs = _vdot(cts, tout), _vdot(_leaves(ct_in), ts)
        assert abs(lhs - rhs) <= 1e-8 * (1 + abs(lhs)), (lhs, rhs)
    if vmap_axes is not None:
        bargs = [a if ax is None else _with_batch(rng, np.asarray(a), ax)
                 for a, ax in zip(args, vmap_axes)]
        got_b = _leaves(tg.vmap(tf, in_axes=tuple(vmap_axes))(*bargs))
        rows = []
        for i in range(2):
            rows.append(_leaves(tf(*[a if ax is None else np.take(a, i, axis=ax)
                                     for a, ax in zip(bargs, vmap_axes)])))
        for k, g in enumerate(got_b):
            np.testing.assert_allclose(g, np.stack([r[k] for r in rows]), rtol=1e-10, atol=1e-12)
    if lower:
        oracle.check_lowering(tf, list(args))
    return out


def _eps(dt):
    return {np.dtype(np.float32): 2e-5, np.dtype(np.float16): 2e-2}.get(np.dtype(dt), 0)


def _full_jax(tf, jf, args, vmap_axes=None, **tol):
    oracle.check_eval(tf, jf, *args, **tol)
    oracle.check_jvp(tf, jf, args, **tol)
    oracle.check_vjp(tf, jf, args, **tol)
    if vmap_axes is not None:
        rng = np.random.default_rng(5)
        bargs = [a if ax is None else _with_batch(rng, np.asarray(a), ax)
                 for a, ax in zip(args, vmap_axes)]
        oracle.check_vmap(tf, jf, bargs, in_axes=tuple(vmap_axes), **tol)
    oracle.check_lowering(tf, list(args), **tol)
    oracle.check_jit(tf, list(args), **tol)


# --------------------------------------------------------------------------
# dot_general over random dimension numbers (full JAX oracle)


@st.composite
def dot_problems(draw):
    nb = draw(st.integers(0, 2))
    nc = draw(st.integers(0, 2))
    nl = draw(st.integers(0, 2 if nb + nc < 3 else 1))
    nr = draw(st.integers(0, 2 if nb + nc < 3 else 1))
    size = st.integers(0, 3) if draw(st.booleans()) else st.integers(1, 3)
    bs = [draw(size) for _ in range(nb)]
    cs = [draw(size) for _ in range(nc)]
    ls = [draw(size) for _ in range(nl)]
    rs = [draw(size) for _ in range(nr)]
    lhs_axes = draw(st.permutations([("b", i) for i in range(nb)] + [("c", i) for i in range(nc)]
                                    + [("f", i) for i in range(nl)]))
    rhs_axes = draw(st.permutations([("b", i) for i in range(nb)] + [("c", i) for i in range(nc)]
                                    + [("f", i) for i in range(nr)]))
    rc_order = draw(st.permutations(list(range(nc))))  # contraction pairs in any order
    sizes = {"b": bs, "c": cs}
    lshape = tuple(sizes[k][i] if k != "f" else ls[i] for k, i in lhs_axes)
    rshape = tuple(sizes[k][i] if k != "f" else rs[i] for k, i in rhs_axes)
    lc = tuple(lhs_axes.index(("c", i)) for i in rc_order)
    rc = tuple(rhs_axes.index(("c", i)) for i in rc_order)
    lb = tuple(lhs_axes.index(("b", i)) for i in range(nb))
    rb = tuple(rhs_axes.index(("b", i)) for i in range(nb))
    return lshape, rshape, ((lc, rc), (lb, rb))


@given(prob=dot_problems(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
@settings(max_examples=8)
def test_dot_general_random(prob, dtype, seed):
    lshape, rshape, dn = prob
    rng = np.random.default_rng(seed)
    x, y = _rand(rng, lshape, dtype), _rand(rng, rshape, dtype)
    tf = lambda a, b: dot_general(a, b, dn)  # noqa: E731
    jf = lambda a, b: jax.lax.dot_general(a, b, dn)  # noqa: E731
    _full_jax(tf, jf, (x, y))


@given(prob=dot_problems(), which=st.sampled_from(["lhs", "rhs", "both"]),
       data=st.data(), seed=st.integers(0, 2**16))
@settings(max_examples=12)
def test_dot_general_vmap(prob, which, data, seed):
    """A batched operand's axis becomes a dot batch axis or a free axis."""
    lshape, rshape, dn = prob
    rng = np.random.default_rng(seed)
    x, y = _rand(rng, lshape, F64), _rand(rng, rshape, F64)
    la = data.draw(st.integers(0, len(lshape))) if which != "rhs" else None
    ra = data.draw(st.integers(0, len(rshape))) if which != "lhs" else None
    if la is not None:
        x = _with_batch(rng, x, la)
    if ra is not None:
        y = _with_batch(rng, y, ra)
    tf = lambda a, b: dot_general(a, b, dn)  # noqa: E731
    jf = lambda a, b: jax.lax.dot_general(a, b, dn)  # noqa: E731
    out_ndim = len(jax.eval_shape(jf, np.zeros(lshape), np.zeros(rshape)).shape)
    out_axis = data.draw(st.integers(0, out_ndim))
    oracle.check_vmap(tf, jf, (x, y), in_axes=(la, ra), out_axes=out_axis)
    # the vmapped jaxpr keeps a single dot_general: no copies of the operands
    closed = tg.make_jaxpr(tg.vmap(tf, in_axes=(la, ra)))(x, y)
    prims = [e.primitive.name for e in closed.jaxpr.eqns]
    assert prims.count("dot_general") == 1
    assert "broadcast_in_dim" not in prims


def test_dot_general_vmap_of_grad_and_grad_of_vmap():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 3, 4)), rng.standard_normal((4, 2))
    f = lambda a, b: tnp.sum(tnp.sin(tnp.matmul(a, b)))  # noqa: E731
    g = lambda a, b: jnp.sum(jnp.sin(jnp.matmul(a, b)))  # noqa: E731
    oracle.assert_close(tg.vmap(tg.grad(f, argnums=(0, 1)), in_axes=(0, None))(x, y),
                        jax.vmap(jax.grad(g, argnums=(0, 1)), in_axes=(0, None))(x, y))
    oracle.assert_close(tg.grad(lambda a, b: tnp.sum(tg.vmap(f, (0, None))(a, b)), (0, 1))(x, y),
                        jax.grad(lambda a, b: jnp.sum(jax.vmap(g, (0, None))(a, b)), (0, 1))(x, y))
    h = tg.hessian(lambda a: f(a, y))(x[0])  # second order through the transpose rules
    oracle.assert_close(h, jax.hessian(lambda a: g(a, y))(x[0]))


@pytest.mark.parametrize("lt,rt,pet", [
    (np.int8, np.int8, np.int32), (np.int32, np.int32, None), (np.float32, np.float64, None),
    (np.int32, np.float32, None), (np.float32, np.float32, np.float64),
    (np.float16, np.float16, np.float32), (np.bool_, np.bool_, None),
    (np.complex64, np.complex64, None), (np.float64, np.float64, np.float32),
    (np.uint8, np.uint8, np.uint32),
])
def test_dot_general_dtypes(lt, rt, pet):
    """Mixed dtypes take the "higher" type (lax rule); preferred_element_type
    sets the accumulation and output type."""
    rng = np.random.default_rng(1)
    x, y = _rand(rng, (3, 4), lt), _rand(rng, (4, 2), rt)
    dn = (((1,), (0,)), ((), ()))
    tf = lambda a, b: dot_general(a, b, dn, preferred_element_type=pet)  # noqa: E731
    jf = lambda a, b: jax.lax.dot_general(a, b, dn, preferred_element_type=pet)  # noqa: E731
    tol = {"rtol": 1e-2, "atol": 1e-2} if np.float16 in (lt, rt) else {}
    oracle.check_eval(tf, jf, x, y, **tol)
    oracle.check_lowering(tf, (x, y), **tol)


def test_dot_general_errors():
    x, y = np.zeros((3, 4)), np.zeros((5, 2))
    with pytest.raises(TypeError, match="contracting dimensions must have equal sizes"):
        dot_general(x, y, (((1,), (0,)), ((), ())))
    with pytest.raises(TypeError, match="out of range"):
        dot_general(x, y, (((2,), (0,)), ((), ())))
    with pytest.raises(TypeError, match="batch dimensions must have equal sizes"):
        dot_general(x, y, (((), ()), ((0,), (0,))))
    with pytest.raises(TypeError, match="dot_general"):
        tg.make_jaxpr(lambda a, b: dot_general(a, b, (((1,), (1,)), ((), ()))))(x, y)
    with pytest.raises(TypeError, match="preferred_element_type"):
        dot_general(np.zeros((2, 2), np.int32), np.zeros((2, 2), np.int32),
                    (((1,), (0,)), ((), ())), preferred_element_type=np.int8)


def test_dot_general_precision_lowering():
    x, y = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)
    f = lambda a, b: dot_general(a, b, (((1,), (0,)), ((), ())), precision="highest")  # noqa: E731
    from tracegrad.interpreters import lowering
    text = lowering.module_text(lowering.lower_jaxpr(tg.make_jaxpr(f)(x, y)))
    assert "stablehlo.dot_general" in text and "HIGHEST" in text
    oracle.check_lowering(f, (x, y))
    jaxpr = tg.make_jaxpr(f)(x, y)
    assert jaxpr.jaxpr.eqns[0].params["precision"] == ("HIGHEST", "HIGHEST")


def test_dot_general_transpose_is_a_dot():
    """The cotangent of either operand is one dot_general (plus a transpose)."""
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 2, 5))
    dn = (((2,), (0,)), ((0,), (1,)))
    closed = tg.make_jaxpr(lambda a, b: tg.vjp(lambda u, v: dot_general(u, v, dn), a, b)[1](
        np.ones((2, 3, 5))))(x, y)
    names = [e.primitive.name for e in closed.jaxpr.eqns]
    assert names.count("dot_general") == 2
    assert set(names) <= {"dot_general", "transpose", "broadcast_in_dim"}


def _lhs_contracts_minor(eqn):
    """The dot's lhs contracted axes are its last ones (XLA CPU's gemm form)."""
    (lc, _), _ = eqn.params["dimension_numbers"]
    nd = len(eqn.invars[0].aval.shape)
    return sorted(lc) == list(range(nd - len(lc), nd))


@pytest.mark.parametrize("lshape,rshape,dn", [
    # GMM's einsum "kij,nkj->nki" with `lower` on the left (d = 5)
    ((3, 5, 5), (7, 3, 5), (((2,), (2,)), ((0,), (1,)))),
    # two lhs-free axes (contracted together in rhs's cotangent), batch axes not leading
    ((2, 3, 2, 4), (5, 3, 4), (((3,), (2,)), ((1,), (1,)))),
    ((4, 2, 2, 3), (3, 6, 4), (((3,), (0,)), ((0,), (2,)))),
])
def test_batched_rhs_cotangent_contracts_minor_axes(lshape, rshape, dn):
    """The rhs cotangent of a batched dot is dot(g, lhs) over g's lhs-free
    axes; g is transposed first so that they are its last axes (XLA's CPU
    backend runs a dot whose lhs contracts middle axes ~1.5x slower: GMM's
    reverse mode). Values, vjp, jvp, vmap and jit still match JAX."""
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal(lshape), rng.standard_normal(rshape)
    tf = lambda a, b: tnp.sin(dot_general(a, b, dn))  # noqa: E731
    jf = lambda a, b: jnp.sin(jax.lax.dot_general(a, b, dn))  # noqa: E731
    ct = rng.standard_normal(jax.eval_shape(jf, x, y).shape)
    closed = tg.make_jaxpr(lambda a, b: tg.vjp(tf, a, b)[1](ct))(x, y)
    dots = [e for e in closed.jaxpr.eqns if e.primitive.name == "dot_general"]
    assert len(dots) == 3 and all(_lhs_contracts_minor(e) for e in dots)
    _full_jax(tf, jf, (x, y), vmap_axes=(0, None))
    oracle.assert_close(tg.jit(lambda a, b: tg.vjp(tf, a, b)[1](ct))(x, y),
                        jax.vjp(jf, x, y)[1](ct))
    f = lambda a, b: tnp.sum(tf(a, b) ** 2)  # noqa: E731
    g = lambda a, b: jnp.sum(jf(a, b) ** 2)  # noqa: E731
    oracle.assert_close(tg.vmap(tg.grad(f, (0, 1)), (None, 0))(x, np.stack([y, 2 * y])),
                        jax.vmap(jax.grad(g, (0, 1)), (None, 0))(x, np.stack([y, 2 * y])))


def test_short_batched_contraction_keeps_its_layout():
    """With lhs-free axes of total length < 4 (GMM d=2) the rhs cotangent
    contracts g's middle axis directly (faster there); values match JAX."""
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((3, 2, 2)), rng.standard_normal((7, 3, 2))
    dn = (((2,), (2,)), ((0,), (1,)))
    ct = rng.standard_normal((3, 2, 7))
    closed = tg.make_jaxpr(lambda a, b: tg.vjp(lambda u, v: dot_general(u, v, dn), a, b)[1](
        ct))(x, y)
    names = [e.primitive.name for e in closed.jaxpr.eqns]
    assert names.count("dot_general") == 2 and names.count("transpose") == 1
    oracle.assert_close(tg.vjp(lambda u, v: dot_general(u, v, dn), x, y)[1](ct),
                        jax.vjp(lambda u, v: jax.lax.dot_general(u, v, dn), x, y)[1](ct))


@pytest.mark.parametrize("dtype", [np.float32, F64, np.complex64, np.complex128, np.int32])
@pytest.mark.parametrize("shape", [(3, 128, 5), (4, 16, 600), (2, 130, 1), (3, 7, 9), (1, 200, 50),
                                   (8, 256, 520)])
def test_batched_outer_products(dtype, shape):
    """Batched dot_generals with nothing contracted (per-example weight
    gradients under vmap): large blocks take one BLAS call per example,
    small ones a broadcast multiply; both match JAX, on contiguous and
    strided operands, with the batch axis anywhere in the output."""
    rng = np.random.default_rng(7)
    b, m, n = shape
    dn = (((), ()), ((), ()))
    tf = lambda a, c: dot_general(a, c, dn)  # noqa: E731
    jf = lambda a, c: jax.lax.dot_general(a, c, dn)  # noqa: E731
    x, y = _rand(rng, (b, m), dtype), _rand(rng, (n, b), dtype)
    out = tg.vmap(tf, in_axes=(0, 1))(x, y)
    ref = jax.vmap(jf, in_axes=(0, 1))(x, y)
    assert out.dtype == ref.dtype and out.shape == ref.shape
    oracle.assert_close(out, ref)
    oracle.assert_close(tg.vmap(tf, in_axes=(0, 1), out_axes=2)(x, y),
                        jax.vmap(jf, in_axes=(0, 1), out_axes=2)(x, y))
    # the impl directly, with two dot batch axes: the products (exactly, for
    # reals; BLAS may fuse the complex multiply-adds)
    lhs, rhs = x.T[None].repeat(2, 0), y[None].repeat(2, 0)  # (2, m, b), (2, n, b)
    direct = dot_general_p.impl(lhs, rhs, (((), ()), ((0, 2), (0, 2))))
    expect = lhs.transpose(0, 2, 1)[:, :, :, None] * rhs.transpose(0, 2, 1)[:, :, None, :]
    assert direct.dtype == expect.dtype and direct.shape == expect.shape
    if np.dtype(dtype).kind == "c":
        np.testing.assert_allclose(direct, expect, rtol=1e-6)
    else:
        np.testing.assert_array_equal(direct, expect)


def test_large_outer_results_start_on_a_huge_page():
    from tracegrad.primitives.linalg import _empty_huge_aligned
    for shape, dt in [((8, 256, 520), np.float32), ((3, 1000, 1000), np.complex128), ((5, 7), F64)]:
        out = _empty_huge_aligned(shape, dt)
        assert out.shape == shape and out.dtype == dt and out.flags.c_contiguous and out.flags.writeable
        if out.nbytes >= 1 << 22:
            assert out.ctypes.data % (1 << 21) == 0
        out[...] = 1  # the whole result is writable memory
        assert out.sum() == out.size


def test_weight_cotangent_needs_no_transpose():
    """The cotangent of W in h @ W is dot(h, g) in W's axis order: no
    transpose, and per-example weight gradients come out C-contiguous."""
    rng = np.random.default_rng(8)
    h, w = rng.standard_normal((6, 300)).astype(np.float32), rng.standard_normal((300, 20)).astype(np.float32)
    closed = tg.make_jaxpr(lambda a, b: tg.vjp(lambda u: tnp.matmul(a, u), b)[1](
        np.ones((6, 20), np.float32)))(h, w)
    assert [e.primitive.name for e in closed.jaxpr.eqns] == ["dot_general"]
    f = lambda wt, x: tnp.sum(tnp.tanh(tnp.matmul(x, wt)))  # noqa: E731
    g = lambda wt, x: jnp.sum(jnp.tanh(jnp.matmul(x, wt)))  # noqa: E731
    out = tg.vmap(tg.grad(f), (None, 0))(w, h)
    assert np.asarray(out).flags.c_contiguous
    oracle.assert_close(out, jax.vmap(jax.grad(g), (None, 0))(w, h))


def test_eager_matmul_fast_path():
    rng = np.random.default_rng(3)
    a = tnp.asarray(rng.standard_normal((8, 5)).astype(np.float32))
    b = tnp.asarray(rng.standard_normal((5, 3)).astype(np.float32))
    out = a @ b
    assert type(out) is tg.core.Array and out.dtype == np.float32 and not out.weak
    np.testing.assert_allclose(np.asarray(out), np.asarray(a) @ np.asarray(b), rtol=1e-6)
    assert dot_general_p.impl(np.asarray(a), np.asarray(b), (((1,), (0,)), ((), ()))).dtype == np.float32
    # a contraction of length 1 (an outer product, e.g. a weight gradient of
    # a batch of one), plain and transposed, real and integer
    for dt in (np.float32, np.int32):
        u, v = np.arange(8, dtype=dt).reshape(8, 1), np.arange(1, 4, dtype=dt).reshape(1, 3)
        out = dot_general_p.impl(u, v, (((1,), (0,)), ((), ())))
        assert out.dtype == dt
        np.testing.assert_array_equal(out, u * v)
        np.testing.assert_array_equal(dot_general_p.impl(u.T, v, (((0,), (0,)), ((), ()))), u * v)
    # numpy on the left defers to the tracegrad array
    assert type(np.asarray(a) @ b) is tg.core.Array


# --------------------------------------------------------------------------
# tnp products


@st.composite
def matmul_shapes(draw):
    k = draw(st.integers(0, 3))
    a_vec, b_vec = draw(st.booleans()), draw(st.booleans())
    nba, nbb = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    nb = max(nba, nbb)
    full = [draw(st.integers(0, 3)) for _ in range(nb)]
    ba = [draw(st.sampled_from([s, 1])) for s in full[nb - nba:]]
    bb = [draw(st.sampled_from([s, 1])) for s in full[nb - nbb:]]
    m, n = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    sa = (k,) if a_vec else tuple(ba) + (m, k)
    sb = (k,) if b_vec else tuple(bb) + (k, n)
    return sa, sb


@given(shapes=matmul_shapes(), dts=st.sampled_from([(F64, F64), (np.float32, np.float32),
                                                    (np.float32, F64), (np.int32, np.int32),
                                                    (np.int32, np.float32), (np.int8, np.int64)]),
       seed=st.integers(0, 2**16))
@settings(max_examples=12)
def test_matmul(shapes, dts, seed):
    rng = np.random.default_rng(seed)
    a, b = _rand(rng, shapes[0], dts[0]), _rand(rng, shapes[1], dts[1])
    oracle.check_eval(tnp.matmul, jnp.matmul, a, b)
    oracle.check_eval(lambda x, y: x @ y, lambda x, y: x @ y, tnp.asarray(a), b)
    if a.dtype == b.dtype == F64:
        check_cheap(tnp.matmul, jnp.matmul, np.matmul, (a, b), linear="multi")
    oracle.check_lowering(tnp.matmul, (a, b))


@given(shapes=matmul_shapes(), which=st.sampled_from(["lhs", "rhs", "both"]),
       seed=st.integers(0, 2**16), data=st.data())
@settings(max_examples=12)
def test_matmul_vmap(shapes, which, seed, data):
    rng = np.random.default_rng(seed)
    a, b = _rand(rng, shapes[0], F64), _rand(rng, shapes[1], F64)
    la = data.draw(st.integers(0, a.ndim)) if which != "rhs" else None
    ra = data.draw(st.integers(0, b.ndim)) if which != "lhs" else None
    a = _with_batch(rng, a, la) if la is not None else a
    b = _with_batch(rng, b, ra) if ra is not None else b
    oracle.check_vmap(tnp.matmul, jnp.matmul, (a, b), in_axes=(la, ra))


def test_matmul_full_jax():
    rng = np.random.default_rng(4)
    _full_jax(tnp.matmul, jnp.matmul, (rng.standard_normal((2, 1, 3, 4)), rng.standard_normal((5, 4, 2))),
              vmap_axes=(1, None))
    _full_jax(tnp.matmul, jnp.matmul, (rng.standard_normal((4,)), rng.standard_normal((2, 4, 3))),
              vmap_axes=(0, 2))


def test_matmul_errors():
    with pytest.raises(ValueError, match="ndim at least 1"):
        tnp.matmul(np.ones(()), np.ones((2,)))
    with pytest.raises(ValueError, match="size mismatch"):
        tnp.matmul(np.ones((2, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="do not broadcast"):
        tnp.matmul(np.ones((2, 2, 3)), np.ones((3, 3, 2)))


def test_matmul_weak_and_promotion():
    x = tnp.asarray(np.ones((2, 2), np.float32))
    assert (x @ np.ones((2, 2))).dtype == jnp.matmul(jnp.ones((2, 2), jnp.float32),
                                                     np.ones((2, 2))).dtype
    assert tnp.dot(x, 2.0).dtype == np.float32
    assert tnp.dot(2, 3).weak and tnp.dot(2, 3).dtype == jnp.dot(2, 3).dtype
    assert tnp.matmul(np.ones((2, 2), np.int32), np.ones(2, np.int32)).dtype == np.int32
    assert tnp.dot(np.ones(2, np.int32), np.ones(2, np.float32)).dtype == np.float32


@given(sa=st.lists(st.integers(0, 3), min_size=0, max_size=3),
       sb=st.lists(st.integers(0, 3), min_size=0, max_size=3), seed=st.integers(0, 2**16))
def test_dot_inner_outer_all_ranks(sa, sb, seed):
    rng = np.random.default_rng(seed)
    if sa and sb:  # numpy.dot: a's last axis meets b's last (1-D) or second-to-last
        sb[-1 if len(sb) == 1 else -2] = sa[-1]
    a, b = _rand(rng, tuple(sa), F64), _rand(rng, tuple(sb), F64)
    check_cheap(tnp.dot, jnp.dot, np.dot, (a, b), linear="multi",
                vmap_axes=(0 if a.ndim else None, None if a.ndim else 0))
    check_cheap(lambda x, y: tnp.asarray(x).dot(y), jnp.dot, np.dot, (a, b), diff=False,
                lower=False)
    if a.ndim and b.ndim:
        sb2 = list(sb)
        sb2[-1] = sa[-1]
        b2 = _rand(rng, tuple(sb2), F64)
        check_cheap(tnp.inner, jnp.inner, np.inner, (a, b2), linear="multi", lower=False)
    check_cheap(tnp.outer, jnp.outer, np.outer, (a, b), linear="multi", vmap_axes=(None, 0),
                lower=False)


def test_vdot_vecdot_matvec():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    check_cheap(tnp.vdot, jnp.vdot, np.vdot, (a, b), linear="multi")
    c = rng.standard_normal((2, 1, 4))
    check_cheap(tnp.vecdot, jnp.vecdot, lambda x, y: np.sum(x * y, -1), (a, c), linear="multi")
    check_cheap(lambda x, y: tnp.vecdot(x, y, axis=0), lambda x, y: jnp.vecdot(x, y, axis=0),
                lambda x, y: np.sum(x * y, 0), (a, b), linear="multi")
    m, v = rng.standard_normal((2, 3, 4)), rng.standard_normal((4,))
    check_cheap(tnp.matvec, jnp.matvec, lambda x, y: x @ y, (m, v), linear="multi")
    w = rng.standard_normal((3,))
    check_cheap(tnp.vecmat, jnp.vecmat, lambda x, y: x @ y, (w, m), linear="multi")
    ai = np.arange(6, dtype=np.int8).reshape(2, 3)
    oracle.check_eval(tnp.vdot, jnp.vdot, ai, ai)


@pytest.mark.parametrize("sa,sb,axes", [
    ((2, 3, 4), (3, 4, 5), 2), ((2, 3), (3, 2), 1), ((2, 3), (4,), 0),
    ((2, 3, 4), (4, 2, 5), ((0, 2), (1, 0))), ((3, 4), (4, 3), (1, 0)),
    ((3, 4), (4, 3), ([-1], [0])), ((0, 3), (3, 2), 1),
])
def test_tensordot(sa, sb, axes):
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    tf = lambda x, y: tnp.tensordot(x, y, axes)  # noqa: E731
    jf = lambda x, y: jnp.tensordot(x, y, axes)  # noqa: E731
    check_cheap(tf, jf, lambda x, y: np.tensordot(x, y, axes), (a, b), linear="multi",
                vmap_axes=(0, None))


def test_tensordot_full_jax():
    rng = np.random.default_rng(6)
    axes = ((0, 2), (1, 0))
    _full_jax(lambda x, y: tnp.tensordot(x, y, axes), lambda x, y: jnp.tensordot(x, y, axes),
              (rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 2, 5))), vmap_axes=(None, 1))


EINSUM_CASES = [
    ("ij,jk->ik", [(3, 4), (4, 5)]), ("ij,jk", [(3, 0), (0, 5)]), ("ii->i", [(3, 3)]),
    ("ii", [(3, 3)]), ("iij->j", [(3, 3, 2)]), ("iji->j", [(3, 2, 3)]),
    ("...ij,...jk", [(2, 3, 4), (4, 5)]), ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("i,i", [(4,), (4,)]), ("i,j", [(3,), (4,)]),
    ("ijk->kji", [(2, 3, 4)]), ("ij,ij->", [(3, 4), (3, 4)]),
    ("a...,a...->...", [(3, 1, 4), (3, 2, 1)]), ("ij->", [(3, 4)]), ("ij,k", [(2, 3), (4,)]),
    ("ij->j", [(3, 4)]), ("i...->...", [(3, 2, 2)]),
    ("ab,bc,cd,da->", [(2, 3), (3, 4), (4, 2), (2, 2)]),
    ("ijk,ikl,j->il", [(2, 3, 4), (2, 4, 5), (3,)]), ("...i,...i->...", [(2, 1, 3), (4, 3)]),
    ("b i, b j -> b i j", [(2, 3), (2, 4)]), ("i,i,i->i", [(3,), (3,), (3,)]),
    ("ij...,j...->i...", [(2, 3), (3,)]), ("ii->", [(0, 0)]), ("iik,kjj->ij", [(2, 2, 3), (3, 4, 4)]),
]


@pytest.mark.parametrize("spec,shapes", EINSUM_CASES)
def test_einsum(spec, shapes):
    rng = np.random.default_rng(6)
    args = [rng.standard_normal(s) for s in shapes]
    tf = lambda *a: tnp.einsum(spec, *a)  # noqa: E731
    jf = lambda *a: jnp.einsum(spec, *a)  # noqa: E731
    nf = lambda *a: np.einsum(spec, *a)  # noqa: E731
    check_cheap(tf, jf, nf, args, linear="multi", vmap_axes=[0] + [None] * (len(args) - 1))
    check_cheap(tf, jf, nf, args, diff=False, lower=False, vmap_axes=[-1] * len(args))


@pytest.mark.parametrize("spec,shapes", [("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
                                         ("iij->j", [(3, 3, 2)]),
                                         ("a...,a...->...", [(3, 1, 4), (3, 2, 1)])])
def test_einsum_full_jax(spec, shapes):
    rng = np.random.default_rng(7)
    args = [rng.standard_normal(s) for s in shapes]
    _full_jax(lambda *a: tnp.einsum(spec, *a), lambda *a: jnp.einsum(spec, *a), args,
              vmap_axes=[0] + [None] * (len(args) - 1))


def test_einsum_dtypes_and_forms():
    rng = np.random.default_rng(7)
    a, b = rng.integers(-3, 3, (2, 3)).astype(np.int32), rng.standard_normal((3,)).astype(np.float32)
    oracle.check_eval(lambda x, y: tnp.einsum("ij,j->i", x, y),
                      lambda x, y: jnp.einsum("ij,j->i", x, y), a, b)
    oracle.check_eval(lambda x: tnp.einsum("ij->ji", x), lambda x: jnp.einsum("ij->ji", x), a)
    c = rng.standard_normal((2, 3))
    # the interleaved (operand, sublist) form
    oracle.assert_close(tnp.einsum(c, [0, 1], c, [0, 2], [1, 2]),
                        np.einsum(c, [0, 1], c, [0, 2], [1, 2]))
    out = tnp.einsum("ij,jk", c, c.T, preferred_element_type=np.float32)
    assert out.dtype == jnp.einsum("ij,jk", c, c.T, preferred_element_type=np.float32).dtype
    with pytest.raises(ValueError, match="einsum"):
        tnp.einsum("ij,jk->il", c, c.T)
    with pytest.raises(ValueError, match="einsum"):
        tnp.einsum("ij,jk", c, c)
    # greedy order: the cheap pair is contracted first (one small intermediate)
    closed = tg.make_jaxpr(lambda x, y, z: tnp.einsum("ij,jk,k->i", x, y, z))(
        np.ones((50, 40)), np.ones((40, 30)), np.ones(30))
    shapes = [e.outvars[0].aval.shape for e in closed.jaxpr.eqns if e.primitive.name == "dot_general"]
    assert shapes == [(40,), (50,)]


# --------------------------------------------------------------------------
# diagonals and triangles


@given(n=st.integers(0, 4), m=st.integers(0, 4), lead=st.integers(0, 2), k=st.integers(-5, 5),
       axes=st.sampled_from([(0, 1), (1, 0), (-1, -2), (0, -1)]), seed=st.integers(0, 2**16))
def test_diagonal_trace(n, m, lead, k, axes, seed):
    rng = np.random.default_rng(seed)
    shape = (2,) * lead + (n, m)
    x = rng.standard_normal(shape)
    a1, a2 = (a % len(shape) for a in axes)
    if a1 == a2:
        a2 = (a1 + 1) % len(shape)
    check_cheap(lambda v: tnp.diagonal(v, k, a1, a2), lambda v: jnp.diagonal(v, k, a1, a2),
                lambda v: np.diagonal(v, k, a1, a2), (x,), linear="single", vmap_axes=(1,))
    check_cheap(lambda v: tnp.trace(v, k, a1, a2), lambda v: jnp.trace(v, k, a1, a2),
                lambda v: np.trace(v, k, a1, a2), (x,), linear="single", lower=False)
    xi = x.astype(np.int32)
    check_cheap(lambda v: tnp.trace(v, k, a1, a2), lambda v: jnp.trace(v, k, a1, a2),
                lambda v: np.trace(v, k, a1, a2), (xi,), diff=False, lower=False)


def test_methods_trace_diagonal():
    x = np.arange(12.0).reshape(3, 4)
    oracle.assert_close(tnp.asarray(x).trace(1), jnp.asarray(x).trace(1))
    oracle.assert_close(tnp.asarray(x).diagonal(-1), jnp.asarray(x).diagonal(-1))
    y = tg.vmap(lambda v: v.diagonal())(np.stack([x, x]))
    oracle.assert_close(y, np.stack([np.diagonal(x)] * 2))


@given(n=st.integers(0, 4), k=st.integers(-3, 3), seed=st.integers(0, 2**16))
def test_diag_tril_triu(n, k, seed):
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n,))
    check_cheap(lambda a: tnp.diag(a, k), lambda a: jnp.diag(a, k), lambda a: np.diag(a, k), (v,),
                linear="single", vmap_axes=(0,))
    m = rng.standard_normal((2, n, n + 1))
    check_cheap(lambda a: tnp.diag(a[0], k), lambda a: jnp.diag(a[0], k),
                lambda a: np.diag(a[0], k), (m,), linear="single", lower=False)
    check_cheap(lambda a: tnp.diagflat(a, k), lambda a: jnp.diagflat(a, k),
                lambda a: np.diagflat(a, k), (m[0],), diff=False, lower=False)
    for tf, jf, nf in ((tnp.tril, jnp.tril, np.tril), (tnp.triu, jnp.triu, np.triu)):
        check_cheap(lambda a: tf(a, k), lambda a: jf(a, k), lambda a: nf(a, k), (m,),
                    linear="single", vmap_axes=(2,))
        check_cheap(lambda a: tf(a, k), lambda a: jf(a, k), lambda a: nf(a, k),
                    (m.astype(np.int16),), diff=False, lower=False)


def test_diag_full_jax():
    rng = np.random.default_rng(8)
    _full_jax(lambda a: tnp.tril(a, -1), lambda a: jnp.tril(a, -1), (rng.standard_normal((2, 3, 4)),),
              vmap_axes=(1,))
    _full_jax(lambda a: tnp.diag(a, 1), lambda a: jnp.diag(a, 1), (rng.standard_normal((3,)),),
              vmap_axes=(0,))
    _full_jax(lambda a: tnp.trace(a, 1, 2, 0), lambda a: jnp.trace(a, 1, 2, 0),
              (rng.standard_normal((3, 2, 4)),), vmap_axes=(1,))


@pytest.mark.filterwarnings("ignore:Arrays of 2-dimensional vectors:DeprecationWarning")
def test_kron_cross():
    rng = np.random.default_rng(8)
    for sa, sb in [((2, 3), (3, 2)), ((2,), (3, 2)), ((2, 1, 2), (3,)), ((0, 2), (2, 2))]:
        a, b = rng.standard_normal(sa), rng.standard_normal(sb)
        check_cheap(tnp.kron, jnp.kron, np.kron, (a, b), linear="multi", vmap_axes=(None, 0),
                    lower=False)
    for sa, sb, kw in [((4, 3), (3,), {}), ((2, 3, 5), (2, 3, 5), {"axis": 1}),
                       ((4, 2), (4, 3), {}), ((4, 2), (4, 2), {}), ((3, 4), (4, 3), {"axisa": 0})]:
        a, b = rng.standard_normal(sa), rng.standard_normal(sb)
        check_cheap(lambda x, y: tnp.cross(x, y, **kw), lambda x, y: jnp.cross(x, y, **kw),
                    lambda x, y: np.cross(x, y, **kw), (a, b), linear="multi", lower=False)


# --------------------------------------------------------------------------
# tnp.linalg


@given(shape=st.sampled_from([(4,), (3, 4), (2, 3, 4), (0,), (3, 0)]),
       ord=st.sampled_from([None, 1, 2, np.inf, -np.inf, 0, 3, -1.5]),
       keepdims=st.booleans(), seed=st.integers(0, 2**16))
def test_vector_norm(shape, ord, keepdims, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) + 0.1
    if 0 in shape and ord in (-np.inf, -1.5):
        return  # numpy raises / JAX returns inf on an empty min: no common answer
    axis = None if len(shape) == 1 else -1
    tf = lambda a: tnp.linalg.norm(a, ord, axis, keepdims)  # noqa: E731
    jf = lambda a: jnp.linalg.norm(a, ord, axis, keepdims)  # noqa: E731
    nf = lambda a: np.linalg.norm(a, ord, axis, keepdims)  # noqa: E731
    check_cheap(tf, jf, nf, (x,), diff=ord != 0 and x.size > 0, rtol=1e-8, atol=1e-10,
                lower=False)
    check_cheap(tf, jf, nf, (x.astype(np.float32),), diff=False, lower=False)
    o2 = 2 if ord is None else ord
    check_cheap(lambda a: tnp.linalg.vector_norm(a, ord=o2), lambda a: jnp.linalg.vector_norm(a, ord=o2),
                lambda a: np.linalg.norm(np.ravel(a), o2), (x,), diff=False, lower=False)


@pytest.mark.parametrize("ord", [None, "fro", 1, -1, np.inf, -np.inf])
def test_matrix_norm(ord):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 4))
    for axis in (None, (1, 0)):
        check_cheap(lambda a: tnp.linalg.norm(a, ord, axis), lambda a: jnp.linalg.norm(a, ord, axis),
                    lambda a: np.linalg.norm(a, ord, axis), (x,), lower=axis is None)
    x3 = rng.standard_normal((2, 3, 4))
    for ax3 in ((1, 2), (2, 0)):
        check_cheap(lambda a: tnp.linalg.norm(a, ord, ax3, True),
                    lambda a: jnp.linalg.norm(a, ord, ax3, True),
                    lambda a: np.linalg.norm(a, ord, ax3, True), (x3,), lower=False)
    o = "fro" if ord is None else ord
    check_cheap(lambda a: tnp.linalg.matrix_norm(a, ord=o), lambda a: jnp.linalg.matrix_norm(a, ord=o),
                lambda a: np.linalg.norm(a, o, (-2, -1)), (x3,), diff=False, lower=False,
                vmap_axes=(0,))


def test_norm_full_jax_and_errors():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 3, 4))
    _full_jax(tnp.linalg.norm, jnp.linalg.norm, (x,), vmap_axes=(1,))
    _full_jax(lambda a: tnp.linalg.norm(a, 1, (0, 2)), lambda a: jnp.linalg.norm(a, 1, (0, 2)), (x,))
    with pytest.raises(ValueError, match="singular values"):
        tnp.linalg.norm(x[0], 2)
    with pytest.raises(ValueError, match="Improper number of axes"):
        tnp.linalg.norm(x, 1)


def _well_conditioned(rng, shape):
    return rng.standard_normal(shape) + 3 * np.eye(shape[-1])


@given(n=st.integers(0, 5), batch=st.sampled_from([(), (2,), (2, 1)]), seed=st.integers(0, 2**16))
@settings(max_examples=8)
def test_det_slogdet(n, batch, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(batch + (n, n))
    diff = n > 0
    check_cheap(tnp.linalg.det, jnp.linalg.det, np.linalg.det, (a,), diff=diff, rtol=1e-8,
                atol=1e-10, vmap_axes=(0,) if diff else None)
    check_cheap(tnp.linalg.slogdet, lambda x: tuple(jnp.linalg.slogdet(x)),
                lambda x: tuple(np.linalg.slogdet(x)), (a,), diff=diff, rtol=1e-8, atol=1e-10,
                vmap_axes=(len(batch),) if diff else None)
    if n:
        check_cheap(tnp.linalg.det, jnp.linalg.det, np.linalg.det, (a.astype(np.float32),),
                    diff=False, lower=False, rtol=1e-4, atol=1e-4)


def test_det_pivoting_singular_and_jax():
    # zero leading pivot: needs a row swap (a permutation matrix, det -1);
    # singular input: det 0, slogdet (0, -inf), both traced (vmap) and eager
    p = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    s = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]])
    for m in (p, s):
        oracle.assert_close(tg.vmap(tnp.linalg.det)(m[None])[0], np.linalg.det(m))
        oracle.assert_close(tnp.linalg.det(m), np.linalg.det(m))
        sign, logdet = tg.vmap(tnp.linalg.slogdet)(m[None])
        oracle.assert_close((sign[0], logdet[0]), tuple(np.linalg.slogdet(m)))
    a = _well_conditioned(np.random.default_rng(11), (3, 3))
    _full_jax(tnp.linalg.det, jnp.linalg.det, (a,), rtol=1e-8, atol=1e-10)
    # second order: d2 det / dA_ij dA_kl = det (inv_ji inv_lk - inv_li inv_jk)
    inv, d = np.linalg.inv(a), np.linalg.det(a)
    ref = d * (np.einsum("ji,lk->ijkl", inv, inv) - np.einsum("li,jk->ijkl", inv, inv))
    oracle.assert_close(tg.hessian(tnp.linalg.det)(a), ref, rtol=1e-7, atol=1e-9)


@given(n=st.integers(1, 4), k=st.sampled_from([None, 1, 3]), ba=st.sampled_from([(), (2,)]),
       bb=st.sampled_from([(), (2,), (1,)]), seed=st.integers(0, 2**16))
@settings(max_examples=6)
def test_solve_inv(n, k, ba, bb, seed):
    rng = np.random.default_rng(seed)
    a = _well_conditioned(rng, ba + (n, n))
    b = rng.standard_normal((n,) if k is None else bb + (n, k))
    nsolve = (lambda x, y: np.linalg.solve(x, y[:, None])[..., 0]) if k is None else np.linalg.solve
    check_cheap(tnp.linalg.solve, jnp.linalg.solve, nsolve, (a, b), rtol=1e-8, atol=1e-10,
                vmap_axes=(None, 0))
    check_cheap(tnp.linalg.inv, jnp.linalg.inv, np.linalg.inv, (a,), rtol=1e-8, atol=1e-10,
                vmap_axes=(0,))


def test_solve_inv_full_jax_and_singular():
    rng = np.random.default_rng(12)
    a, b = _well_conditioned(rng, (3, 3)), rng.standard_normal((3, 2))
    _full_jax(tnp.linalg.solve, jnp.linalg.solve, (a, b), rtol=1e-8, atol=1e-10)
    oracle.check_eval(tnp.linalg.inv, jnp.linalg.inv, a, rtol=1e-8, atol=1e-10)
    # singular matrices give non-finite values (no exception), eager and traced
    s = np.array([[1.0, 2.0], [2.0, 4.0]])
    assert not np.all(np.isfinite(np.asarray(tnp.linalg.inv(s))))
    assert not np.all(np.isfinite(np.asarray(tg.vmap(tnp.linalg.inv)(s[None]))))


def test_linalg_namespace():
    import sys
    mod = sys.modules["tracegrad.numpy.linalg"]  # the module behind tnp.dot & co
    assert hasattr(tnp.linalg, "norm") and hasattr(tnp.linalg, "det")
    assert tnp.dot is mod.dot and tnp.linalg.matmul is mod.matmul
    x = np.arange(24.0).reshape(2, 3, 4)
    oracle.assert_close(tnp.linalg.diagonal(x, offset=1), np.diagonal(x, 1, -2, -1))
    oracle.assert_close(tnp.linalg.trace(x, offset=-1), np.trace(x, -1, -2, -1))
    oracle.assert_close(tnp.linalg.matrix_transpose(x), np.swapaxes(x, -1, -2))
    oracle.assert_close(tnp.linalg.outer(x[0, 0], x[0, 1]), np.outer(x[0, 0], x[0, 1]))
    oracle.assert_close(tnp.linalg.tensordot(x, x.transpose(1, 2, 0), 2),
                        np.tensordot(x, x.transpose(1, 2, 0), 2))
    with pytest.raises(ValueError, match=r"\[\.\.\., n, n\]"):
        tnp.linalg.det(x)
