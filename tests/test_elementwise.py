"""Elementwise tnp functions vs jax.numpy (x64): values, shapes, dtypes,
broadcasting and promotion, vmap and lowering, over hypothesis inputs.

Subnormal inputs are excluded: XLA on CPU flushes them to zero while eager
NumPy keeps them (a documented difference of eager mode)."""
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import oracle
import tracegrad as tg
import tracegrad.numpy as tnp
from tracegrad import dtypes

FLOATS = [np.float16, np.float32, np.float64]
INTS = [np.int8, np.int32, np.int64, np.uint8, np.uint32]

# name: (domain low, high)
UNARY_FLOAT = {
    "sin": (-5, 5), "cos": (-5, 5), "tan": (-1.2, 1.2), "arcsin": (-0.95, 0.95),
    "arccos": (-0.95, 0.95), "arctan": (-5, 5), "sinh": (-3, 3), "cosh": (-3, 3),
    "tanh": (-3, 3), "arcsinh": (-5, 5), "arccosh": (1.1, 5), "arctanh": (-0.9, 0.9),
    "exp": (-5, 5), "exp2": (-5, 5), "expm1": (-3, 3), "log": (0.1, 5), "log1p": (-0.5, 5),
    "log2": (0.1, 5), "log10": (0.1, 5), "sqrt": (0.1, 5), "cbrt": (-5, 5),
    "square": (-3, 3), "reciprocal": (0.5, 3), "abs": (-3, 3), "sign": (-3, 3),
    "floor": (-3, 3), "ceil": (-3, 3), "round": (-3, 3), "trunc": (-3, 3),
    "negative": (-3, 3), "isfinite": (-3, 3), "isnan": (-3, 3), "isinf": (-3, 3),
    "sinc": (-3, 3), "deg2rad": (-3, 3), "rad2deg": (-3, 3), "signbit": (-3, 3),
}
BINARY_FLOAT = {
    "add": (-3, 3), "subtract": (-3, 3), "multiply": (-3, 3), "true_divide": (0.5, 3),
    "maximum": (-3, 3), "minimum": (-3, 3), "arctan2": (0.2, 3), "hypot": (0.2, 3),
    "power": (0.5, 2), "logaddexp": (-3, 3), "equal": (-3, 3), "not_equal": (-3, 3),
    "less": (-3, 3), "less_equal": (-3, 3), "greater": (-3, 3), "greater_equal": (-3, 3),
    "floor_divide": (0.5, 3), "remainder": (0.5, 3), "fmod": (0.5, 3), "copysign": (-3, 3),
}
BINARY_INT = ["add", "subtract", "multiply", "maximum", "minimum", "floor_divide",
              "remainder", "fmod", "bitwise_and", "bitwise_or", "bitwise_xor", "equal",
              "less", "greater_equal", "true_divide"]


def _array(dtype, shape, lo, hi):
    return hnp.arrays(dtype, shape, elements=st.floats(lo, hi, allow_subnormal=False)
                      .map(lambda v: np.asarray(0.0 if abs(v) < 1e-3 else v).astype(dtype)))


@pytest.mark.parametrize("name", sorted(UNARY_FLOAT))
@given(data=st.data())
def test_unary_float(name, data):
    lo, hi = UNARY_FLOAT[name]
    dtype = data.draw(st.sampled_from(FLOATS))
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    x = data.draw(_array(dtype, shape, lo, hi))
    out = getattr(tnp, name)(x)
    ref = getattr(jnp, name)(x)
    tol = {"rtol": 5e-2, "atol": 5e-2} if dtype == np.float16 else {}
    oracle.assert_close(out, ref, **tol)


@pytest.mark.parametrize("name", sorted(BINARY_FLOAT))
@given(data=st.data())
def test_binary_float_broadcasting(name, data):
    lo, hi = BINARY_FLOAT[name]
    dt1, dt2 = data.draw(st.sampled_from(FLOATS)), data.draw(st.sampled_from(FLOATS))
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3))
    x = data.draw(_array(dt1, shapes.input_shapes[0], lo, hi))
    y = data.draw(_array(dt2, shapes.input_shapes[1], lo, hi))
    out = getattr(tnp, name)(x, y)
    ref = getattr(jnp, name)(x, y)
    tol = {"rtol": 5e-2, "atol": 5e-2} if np.float16 in (dt1, dt2) else {"rtol": 1e-5, "atol": 1e-5}
    oracle.assert_close(out, ref, **tol)


@pytest.mark.parametrize("name", BINARY_INT)
@given(data=st.data())
def test_binary_int(name, data):
    dt1, dt2 = data.draw(st.sampled_from(INTS)), data.draw(st.sampled_from(INTS))
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=4))
    x = data.draw(hnp.arrays(dt1, shape, elements=st.integers(1, 20)))
    y = data.draw(hnp.arrays(dt2, shape, elements=st.integers(1, 7)))
    oracle.assert_close(getattr(tnp, name)(x, y), getattr(jnp, name)(x, y))


@given(data=st.data())
def test_python_scalars_are_weak(data):
    dt = data.draw(st.sampled_from(FLOATS + [np.int32, np.uint8]))
    x = np.arange(4).astype(dt)
    for f in (lambda a: a + 1, lambda a: 2 * a, lambda a: a * 2.5, lambda a: a - True):
        oracle.assert_close(f(tnp.asarray(x)), f(jnp.asarray(x)))


def test_promotion_lattice_matches_jax():
    all_dt = [np.bool_, np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16,
              np.int32, np.int64, np.float16, dtypes.bfloat16, np.float32, np.float64]
    for a in all_dt:
        for b in all_dt:
            assert tnp.promote_types(a, b) == jnp.promote_types(a, b), (a, b)
            for w in (1, 1.0):
                x = tnp.zeros(2, a) + w
                y = jnp.zeros(2, a) + w
                assert x.dtype == y.dtype, (a, w)


def test_float64_stays_float64():
    x = np.ones(3)
    assert tnp.sin(x).dtype == np.float64
    assert (tnp.ones(3, np.float32) + x).dtype == np.float64
    assert tnp.mean(np.arange(3)).dtype == np.float64


def test_where_clip_logical():
    x = np.linspace(-2, 2, 7)
    oracle.assert_close(tnp.where(x > 0, x, 0.0), jnp.where(x > 0, x, 0.0))
    oracle.assert_close(tnp.clip(x, -1, 1), jnp.clip(x, -1, 1))
    oracle.assert_close(tnp.logical_and(x > 0, x < 1), jnp.logical_and(x > 0, x < 1))
    oracle.assert_close(tnp.logical_not(x > 0), jnp.logical_not(x > 0))
    oracle.assert_close(tnp.where(x > 0, 1, 2), jnp.where(x > 0, 1, 2))


def test_integer_division_semantics():
    a = np.array([7, -7, 7, -7, 0], np.int32)
    b = np.array([2, 2, -2, -2, 3], np.int32)
    for name in ("floor_divide", "remainder", "fmod", "true_divide"):
        oracle.assert_close(getattr(tnp, name)(a, b), getattr(jnp, name)(a, b))
    oracle.assert_close(tnp.power(a, 3), jnp.power(a, 3))
    oracle.assert_close(tnp.asarray(a) ** tnp.asarray(np.array([0, 1, 2, 3, 4], np.int32)),
                        jnp.asarray(a) ** jnp.array([0, 1, 2, 3, 4], np.int32))


def test_operators_on_arrays_and_tracers():
    x = np.linspace(0.5, 2, 4).astype(np.float32)

    def f(a):
        return (-a + 1) * 2 / a ** 2 - a // 1 + a % 0.5 + abs(a) + (a > 1) * 1.0

    g = lambda a: f(tnp.asarray(a))
    oracle.check_eval(g, f, x)
    oracle.check_jvp(g, f, [x])


@given(data=st.data())
def test_vmap_and_lowering_binary(data):
    name = data.draw(st.sampled_from(["add", "multiply", "maximum", "arctan2", "power", "less"]))
    in_axes = data.draw(st.sampled_from([(0, 0), (0, None), (None, 0), (1, 0), (0, -1)]))
    x = np.linspace(0.5, 2, 6).reshape(2, 3)
    y = np.linspace(0.7, 1.5, 6).reshape(2, 3)
    f, g = getattr(tnp, name), getattr(jnp, name)
    oracle.check_lowering(lambda a, b: f(a, b), [x, y])
    if in_axes in ((1, 0), (0, -1)):  # make the mapped axes equal in size
        x = x.T.copy()
    oracle.check_vmap(f, g, [x, y], in_axes=in_axes)


@pytest.mark.parametrize("dtype", [np.float16, dtypes.bfloat16, np.float32, np.float64, np.int32, np.uint8, np.bool_])
def test_lowering_dtypes(dtype):
    x = (np.arange(6).reshape(2, 3) % 3).astype(dtype)
    if dtype == np.bool_:
        f = lambda a: tnp.logical_and(a, tnp.logical_not(a))
    elif np.dtype(dtype).kind in "iu":
        f = lambda a: tnp.maximum(a * 2 + 1, a) // 2
    else:
        f = lambda a: tnp.sin(a) * a + tnp.exp(a) - 1
    oracle.check_lowering(f, [x])


def test_every_elementwise_primitive_lowers():
    x = np.linspace(0.2, 0.8, 4)
    fns = [getattr(tnp, n) for n in UNARY_FLOAT] + [tnp.rsqrt, lambda a: tnp.arctan2(a, a + 1),
                                                   lambda a: tnp.nextafter(a, a + 1)]
    for f in fns:
        oracle.check_lowering(f, [x])
    from tracegrad.primitives import elementwise as ew
    for p in (ew.erf_p, ew.erf_inv_p, ew.lgamma_p, ew.digamma_p, ew.logistic_p):
        oracle.check_lowering(lambda a, p=p: p.bind(a), [x])
    i = np.array([1, 2, 3, 4], np.int32)
    oracle.check_lowering(lambda a: tnp.left_shift(a, 2) + tnp.right_shift(a, 1), [i])
    oracle.check_lowering(lambda a: tnp.right_shift(a, 1), [i.astype(np.uint32)])
    oracle.check_lowering(lambda a: tnp.clip(a, 0.3, 0.6), [x])


def test_complex_parts():
    z = (np.linspace(-1, 1, 4) + 1j * np.linspace(2, 0, 4)).astype(np.complex128)
    for name in ("real", "imag", "conj", "abs"):
        f, g = getattr(tnp, name), getattr(jnp, name)
        oracle.check_eval(f, g, z)
        oracle.check_lowering(f, [z])
    f = lambda a: tnp.real(a * tnp.conj(a)) + tnp.imag(a) ** 2
    g = lambda a: jnp.real(a * jnp.conj(a)) + jnp.imag(a) ** 2
    oracle.check_eval(f, g, z)
    oracle.check_vjp(f, g, [z])
    oracle.check_jvp(f, g, [z])
    oracle.check_vmap(f, g, [np.stack([z, 2 * z])])
    mk = lambda x, y: tnp.real(tnp.conj(tnp.asarray(x) + 1j * tnp.asarray(y)) * 3.0)
    x = np.linspace(0, 1, 3)
    oracle.check_vjp(mk, lambda x, y: jnp.real(jnp.conj(x + 1j * y) * 3.0), [x, x + 1])


@pytest.mark.parametrize("xs,ys,dtype", [
    ((3, 4), (3, 4), np.float64), ((), (5,), np.float64), ((5,), (), np.float64),
    ((2, 3), (2, 3), np.float32), ((4,), (4,), np.complex128),
])
def test_div_jvp_is_jaxs_formula(xs, ys, dtype):
    """d(x/y) = tx / y + (-ty * x) * y**-2, JAX's own terms in JAX's order:
    eager values equal jax.jvp's bit for bit (real dtypes), only the y term
    or both, and jit(jvp) and vjp agree with JAX."""
    from tracegrad.primitives import elementwise as ew
    import jax
    rng = np.random.default_rng(3)

    def arr(s):
        a = rng.uniform(0.5, 2.0, s) * rng.choice([-1.0, 1.0], s)
        if np.dtype(dtype).kind == "c":
            a = a + 1j * rng.uniform(0.5, 2.0, s)
        return np.asarray(a, dtype)

    x, y, tx, ty = arr(xs), arr(ys), arr(xs), arr(ys)
    f = lambda a, b: ew.div_p.bind(*tnp.broadcast_arrays(a, b)) if xs != ys else ew.div_p.bind(a, b)
    g = lambda a, b: jax.lax.div(*jnp.broadcast_arrays(a, b))
    exact = {} if np.dtype(dtype).kind == "c" else dict(rtol=0, atol=0)
    for ttx in (tx, np.zeros_like(tx)):
        out, t = tg.jvp(f, (x, y), (ttx, ty))
        rout, rt = jax.jvp(g, (x, y), (ttx, ty))
        oracle.assert_close(out, rout, **exact)
        oracle.assert_close(t, rt, **exact)
        jout, jt = tg.jit(lambda a, b, c, d: tg.jvp(f, (a, b), (c, d)))(x, y, ttx, ty)
        oracle.assert_close(jt, rt)
    # only the denominator varies: the x operand is a constant of the rule
    oracle.assert_close(tg.jvp(lambda b: f(x, b), (y,), (ty,))[1],
                        jax.jvp(lambda b: g(x, b), (y,), (ty,))[1], **exact)
    oracle.check_vjp(f, g, [x, y])


def test_div_jvp_of_a_reciprocal():
    """1/y (a sigmoid's division) differentiates as ty * -(out / y): one op on
    the tangent, no y**-2; values, jvp, vjp, vmap and jit still JAX's."""
    import jax
    f = lambda y: 1.0 / (1.0 + tnp.exp(-y))
    g = lambda y: 1.0 / (1.0 + jnp.exp(-y))
    y = np.linspace(-3.0, 3.0, 7)
    jx = tg.make_jaxpr(lambda a, t: tg.jvp(f, (a,), (t,)))(y, y)
    assert "integer_pow" not in str(jx)
    oracle.check_jvp(f, g, [y])
    oracle.check_vjp(f, g, [y])
    oracle.assert_close(tg.jit(tg.vmap(tg.grad(lambda a: f(a).sum())))(np.stack([y, -y])),
                        jax.vmap(jax.grad(lambda a: g(a).sum()))(np.stack([y, -y])))
    # a non-literal numerator 1 (an array) and a complex 1 take JAX's form
    jx2 = tg.make_jaxpr(lambda a, t: tg.jvp(lambda b: np.ones(7) / b, (a,), (t,)))(y, y)
    assert "integer_pow" in str(jx2)
    z = y + 0.5j
    oracle.assert_close(tg.jvp(lambda b: (1 + 0j) / b, (z,), (z,))[1],
                        jax.jvp(lambda b: (1 + 0j) / b, (z,), (z,))[1])
