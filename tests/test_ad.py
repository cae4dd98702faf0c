"""Automatic differentiation: jvp / linearize / vjp / grad / jacobians /
hessians against JAX (x64), higher-order compositions, custom_jvp /
custom_vjp, checkpoint, stop_gradient, error messages, special values, and
check_grads over a table of every differentiable primitive."""
import collections
import functools
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tracegrad as tg
import tracegrad.numpy as tnp
from tracegrad import core
from tracegrad.test_util import GradientCheckError, check_grads
from oracle import assert_close

jax.config.update("jax_enable_x64", True)

rng0 = np.random.default_rng(0)


def J(x):
    return jax.tree_util.tree_map(jnp.asarray, x)


def f_tg(x):
    return tnp.sin(x) * tnp.exp(-x * x) + x ** 3


def f_jx(x):
    return jnp.sin(x) * jnp.exp(-x * x) + x ** 3


# --------------------------------------------------------------------------
# compositions, with JAX's numbers


def test_grad_grad_grad():
    for x in (0.3, -1.7, 2.0):
        want = jax.grad(jax.grad(jax.grad(f_jx)))(x)
        assert_close(tg.grad(tg.grad(tg.grad(f_tg)))(x), want)


def test_jvp_of_grad_and_grad_of_jvp():
    x, t = 0.7, 1.3
    out, tan = tg.jvp(tg.grad(f_tg), (x,), (t,))
    rout, rtan = jax.jvp(jax.grad(f_jx), (x,), (t,))
    assert_close((out, tan), (rout, rtan))
    g = tg.grad(lambda x: tg.jvp(f_tg, (x,), (t,))[1])(x)
    assert_close(g, jax.grad(lambda x: jax.jvp(f_jx, (x,), (t,))[1])(x))


def test_jacfwd_of_jacrev_and_hessian():
    x = rng0.standard_normal(4)

    def g_tg(x):
        return tnp.sum(tnp.tanh(x) * tnp.sum(x * x)) * x

    def g_jx(x):
        return jnp.sum(jnp.tanh(x) * jnp.sum(x * x)) * x

    # JAX references are jitted: compiling once is far cheaper than op-by-op
    assert_close(tg.jacfwd(tg.jacrev(g_tg))(x), jax.jit(jax.jacfwd(jax.jacrev(g_jx)))(x))
    assert_close(tg.jacrev(tg.jacfwd(g_tg))(x), jax.jit(jax.jacrev(jax.jacfwd(g_jx)))(x))
    s_tg = lambda x: tnp.sum(g_tg(x))
    s_jx = lambda x: jnp.sum(g_jx(x))
    assert_close(tg.hessian(s_tg)(x), jax.jit(jax.hessian(s_jx))(x))


def test_jacobians_with_pytrees_and_argnums():
    x = rng0.standard_normal(3)
    y = {"a": rng0.standard_normal(2), "b": 1.5}

    def f(tnp_, x, y):
        return {"u": x * y["b"], "v": (tnp_.sum(x) * y["a"], x[0] * y["a"][1])}

    for jt, jj in ((tg.jacfwd, jax.jacfwd), (tg.jacrev, jax.jacrev)):
        for argnums in (0, 1, (0, 1)):
            got = jt(functools.partial(f, tnp), argnums=argnums)(x, y)
            want = jax.jit(jj(functools.partial(f, jnp), argnums=argnums))(J(x), J(y))
            assert_close(got, want)
    h = tg.hessian(lambda x, y: tnp.sum(x * x) * y["b"] ** 2, argnums=(0, 1))(x, y)
    hj = jax.jit(jax.hessian(lambda x, y: jnp.sum(x * x) * y["b"] ** 2, argnums=(0, 1)))(J(x), J(y))
    assert_close(h, hj)


def test_jacobian_has_aux():
    x = rng0.standard_normal(3)
    for jt, jj in ((tg.jacfwd, jax.jacfwd), (tg.jacrev, jax.jacrev)):
        got, aux = jt(lambda x: (tnp.sin(x), {"n": tnp.sum(x)}), has_aux=True)(x)
        want, jaux = jax.jit(jj(lambda x: (jnp.sin(x), {"n": jnp.sum(x)}), has_aux=True))(x)
        assert_close((got, aux), (want, jaux))


def test_closure_over_outer_tracers():
    # the inner function closes over the outer grad's x (and a vmap's c)
    def f(tnp_, grad_, x):
        return grad_(lambda y: tnp_.sin(x * y) * x)(0.5)

    assert_close(tg.grad(functools.partial(f, tnp, tg.grad))(1.2),
                 jax.grad(functools.partial(f, jnp, jax.grad))(1.2))
    c = np.linspace(0.1, 1.0, 3)
    got = tg.vmap(lambda c: tg.grad(lambda x: tnp.cos(x * c) * c)(0.3))(c)
    want = jax.vmap(lambda c: jax.grad(lambda x: jnp.cos(x * c) * c)(0.3))(c)
    assert_close(got, want)
    # closed-over tracer of an enclosing jvp, differentiated by an inner vjp
    got = tg.jvp(lambda a: tg.vjp(lambda x: x * a * a, 2.0)[1](1.0)[0], (3.0,), (1.0,))
    want = jax.jvp(lambda a: jax.vjp(lambda x: x * a * a, 2.0)[1](1.0)[0], (3.0,), (1.0,))
    assert_close(got, want)


def test_perturbation_confusion():
    # d/dx [x * d/dy (x + y)] = d/dx [x * 1] = 1, for any y (Siskind & Pearlmutter)
    for y in (0.0, 2.0, -3.5):
        g = tg.grad(lambda x: x * tg.grad(lambda y_: x + y_)(y))(1.0)
        assert float(g) == 1.0
    # and the nested-jvp form
    out = tg.jvp(lambda x: x * tg.jvp(lambda y: x + y, (2.0,), (1.0,))[1], (1.0,), (1.0,))
    assert float(out[1]) == 1.0
    # a classic that confuses tape-based systems: d/dx (x * d/dy (x * y)) = 2x
    assert float(tg.grad(lambda x: x * tg.grad(lambda y: x * y)(3.0))(1.5)) == 3.0


def test_vjp_with_cotangent_vector_and_pytrees():
    x = rng0.standard_normal(4)
    v = rng0.standard_normal(4)
    out, f_vjp = tg.vjp(lambda x: tnp.sin(x) * x, x)
    rout, r_vjp = jax.vjp(lambda x: jnp.sin(x) * x, x)
    assert_close(out, rout)
    (ct,) = f_vjp(v)
    assert_close(ct, r_vjp(v)[0])
    # pytree in and out, several primals, integer input gets a float0 cotangent
    P = collections.namedtuple("P", "w b")
    p = P(rng0.standard_normal((2, 3)), rng0.standard_normal(2))

    def f(tnp_, p, x, n):
        y = tnp_.sum(p.w * x[:3], axis=1) + p.b
        return {"y": y * n, "s": tnp_.sum(y)}

    out, f_vjp = tg.vjp(functools.partial(f, tnp), p, x, 3)
    rout, r_vjp = jax.vjp(functools.partial(f, jnp), J(p), J(x), 3)
    ct = {"y": rng0.standard_normal(2), "s": 0.7}
    got, want = f_vjp(ct), r_vjp(J(ct))
    assert_close(got[:2], want[:2])
    assert isinstance(got[0], P)
    assert np.asarray(got[2]).dtype == tg.dtypes.float0


def test_has_aux_everywhere():
    def f(x):
        return tnp.sum(x * x), {"m": tnp.max(x)}

    x = rng0.standard_normal(3)
    g, aux = tg.grad(f, has_aux=True)(x)
    assert_close(g, 2 * x)
    assert_close(aux["m"], x.max())
    (v, aux2), g2 = tg.value_and_grad(f, has_aux=True)(x)
    assert_close(v, np.sum(x * x))
    out, f_vjp, aux3 = tg.vjp(f, x, has_aux=True)
    assert_close(f_vjp(1.0)[0], 2 * x)
    out, tan, aux4 = tg.jvp(f, (x,), (np.ones(3),), has_aux=True)
    assert_close(tan, 2 * np.sum(x))
    out, f_jvp, aux5 = tg.linearize(f, x, has_aux=True)
    assert_close(f_jvp(np.ones(3)), 2 * np.sum(x))
    for a in (aux2, aux3, aux4, aux5):
        assert_close(a["m"], x.max())


def test_argnums_tuple_and_negative():
    f_t = lambda a, b, c: tnp.sum(a * b) + c ** 2
    f_j = lambda a, b, c: jnp.sum(a * b) + c ** 2
    a, b = rng0.standard_normal(3), rng0.standard_normal(3)
    for argnums in ((0, 2), (2, 0), -1, (1,)):
        assert_close(tg.grad(f_t, argnums)(a, b, 1.5), jax.grad(f_j, argnums)(a, b, 1.5))
    v, g = tg.value_and_grad(f_t, (0, 1))(a, b, 1.5)
    rv, rg = jax.value_and_grad(f_j, (0, 1))(a, b, 1.5)
    assert_close((v, g), (rv, rg))
    assert isinstance(g, tuple) and len(g) == 2


def test_linearize_matches_jvp_and_saves_residuals():
    x = rng0.standard_normal(5)
    out, f_jvp = tg.linearize(f_tg, x)
    rout, rf_jvp = jax.linearize(f_jx, x)
    t = rng0.standard_normal(5)
    assert_close((out, f_jvp(t)), (rout, rf_jvp(t)))
    # the linear map is a jaxpr of linear primitives only
    assert all(e.primitive.linear for e in f_jvp.jaxpr.jaxpr.eqns)


def test_integer_outputs_get_float0_tangents():
    f = lambda x: ((x * 2).astype(int), x * 2)
    (o1, o2), (t1, t2) = tg.jvp(f, (1.5,), (1.0,))
    assert np.asarray(t1).dtype == tg.dtypes.float0 and float(t2) == 2.0
    out, f_vjp = tg.vjp(f, 1.5)
    (ct,) = f_vjp((np.zeros((), tg.dtypes.float0), 1.0))
    assert float(ct) == 2.0
    (ct,) = f_vjp((np.zeros((), np.int64), 1.0))  # zeros of the integer dtype also accepted
    assert float(ct) == 2.0
    # jacfwd of an integer output: zeros of the output dtype (as JAX)
    j = tg.jacfwd(lambda x: (x * 2).astype(int))(np.ones(2))
    assert_close(j, jax.jacfwd(lambda x: (x * 2).astype(int))(np.ones(2)))
    # integer primal with float0 tangent
    out, tan = tg.jvp(lambda x, n: x * n, (2.0, 3), (1.0, np.zeros((), tg.dtypes.float0)))
    assert float(tan) == 3.0
    g = tg.grad(lambda x, n: x * n, argnums=(0, 1), allow_int=True)(2.0, 3)
    assert float(g[0]) == 3.0 and np.asarray(g[1]).dtype == tg.dtypes.float0


def test_grad_returns_arrays_with_input_weak_type():
    g = tg.grad(lambda x: x)(1.0)
    assert type(g) is tg.Array and g.weak
    g = tg.grad(lambda x: 3.0)(np.float32(1.0))
    assert type(g) is tg.Array and g.dtype == np.float32 and float(g) == 0.0


def test_holomorphic():
    z = 1.0 + 2.0j
    f_t = lambda z: z * z * tnp.exp(z)
    f_j = lambda z: z * z * jnp.exp(z)
    assert_close(tg.grad(f_t, holomorphic=True)(z), jax.grad(f_j, holomorphic=True)(z))
    zs = np.array([1 + 1j, 0.5 - 2j])
    assert_close(tg.jacfwd(f_t, holomorphic=True)(zs), jax.jacfwd(f_j, holomorphic=True)(zs))
    assert_close(tg.jacrev(f_t, holomorphic=True)(zs), jax.jacrev(f_j, holomorphic=True)(zs))


# --------------------------------------------------------------------------
# errors


def test_error_grad_of_int_input_names_argnum():
    with pytest.raises(TypeError, match=r"argument 1 \(argnums=\(0, 1\)\).*i64"):
        tg.grad(lambda x, y: x * y, argnums=(0, 1))(1.0, 2)
    with pytest.raises(TypeError, match=r"argument 1 \(argnums=1\) at \['k'\]"):
        tg.grad(lambda x, d: x * d["k"], argnums=1)(1.0, {"k": 3})
    with pytest.raises(TypeError, match="allow_int=True"):
        tg.jacrev(lambda x: x)(np.arange(3))


def test_error_non_scalar_output_suggests_jacrev_and_vjp():
    with pytest.raises(TypeError, match=r"scalar.*f64\[3\].*jacrev.*vjp"):
        tg.grad(lambda x: x * 2)(np.ones(3))


def test_error_output_dtypes():
    with pytest.raises(TypeError, match="real-valued outputs.*i64.*vjp"):
        tg.grad(lambda x: x.astype(int))(1.0)
    with pytest.raises(TypeError, match="holomorphic=True"):
        tg.grad(lambda x: x * 1j)(1.0)
    with pytest.raises(TypeError, match="jacrev.*real-valued outputs"):
        tg.jacrev(lambda x: (x * 2).astype(int))(np.ones(2))
    with pytest.raises(TypeError, match="jacfwd.*real-valued inputs.*holomorphic"):
        tg.jacfwd(lambda x: x)(np.ones(2) + 0j)


def test_error_tangent_and_cotangent_types():
    with pytest.raises(TypeError, match="float0"):
        tg.jvp(lambda x: x, (1,), (1,))
    with pytest.raises(TypeError, match="shape"):
        tg.jvp(tnp.sin, (np.ones(3),), (np.ones(2),))
    _, f_vjp = tg.vjp(tnp.sin, np.ones(3))
    with pytest.raises(ValueError, match=r"f32\[3\].*f64\[3\]"):
        f_vjp(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="shape"):
        f_vjp(np.ones(2))
    with pytest.raises(TypeError, match="structure"):
        f_vjp((np.ones(3),))
    with pytest.raises(TypeError, match="pair"):
        tg.grad(lambda x: x, has_aux=True)(1.0)


# --------------------------------------------------------------------------
# special values, as JAX


def test_special_values_like_jax():
    cases = [
        (lambda x: tnp.abs(x), lambda x: jnp.abs(x), 0.0),
        (lambda x: tnp.sqrt(x), lambda x: jnp.sqrt(x), 0.0),
        (lambda x: tnp.maximum(x, 1.0), lambda x: jnp.maximum(x, 1.0), 1.0),
        (lambda x: tnp.minimum(x, 1.0), lambda x: jnp.minimum(x, 1.0), 1.0),
        (lambda x: tnp.max(tnp.stack([x, x, 2 * x])), lambda x: jnp.max(jnp.stack([x, x, 2 * x])), -1.0),
        (lambda x: x ** 0.5, lambda x: x ** 0.5, 0.0),
        (lambda x: tnp.clip(x, 0.0, 1.0), lambda x: jnp.clip(x, 0.0, 1.0), 1.0),
        # a NaN in the branch not taken still poisons the gradient (0 * inf)
        (lambda x: tnp.where(x > 0, tnp.sqrt(x), 0.0), lambda x: jnp.where(x > 0, jnp.sqrt(x), 0.0), 0.0),
        (lambda x: tnp.where(x > 0, tnp.log(x), 0.0), lambda x: jnp.where(x > 0, jnp.log(x), 0.0), 0.0),
    ]
    with np.errstate(all="ignore"):
        for ft, fj, x in cases:
            got, want = tg.grad(ft)(x), jax.grad(fj)(x)
            assert_close(got, want, what=f"grad at {x}")
        g = float(tg.grad(lambda x: tnp.where(x > 0, tnp.sqrt(x), 0.0))(0.0))
    assert np.isnan(g)


def test_double_where_trick():
    # make the untaken branch safe, then select: the gradient is finite
    def safe_sqrt(tnp_, x):
        safe = tnp_.where(x > 0, x, 1.0)
        return tnp_.where(x > 0, tnp_.sqrt(safe), 0.0)

    for x in (0.0, -1.0, 4.0):
        got = tg.grad(functools.partial(safe_sqrt, tnp))(x)
        assert_close(got, jax.grad(functools.partial(safe_sqrt, jnp))(x))
    assert float(tg.grad(functools.partial(safe_sqrt, tnp))(0.0)) == 0.0


# --------------------------------------------------------------------------
# stop_gradient


def test_stop_gradient():
    f_t = lambda x: x * tg.stop_gradient(x) + tg.lax.stop_gradient(tnp.sin(x))
    f_j = lambda x: x * jax.lax.stop_gradient(x) + jax.lax.stop_gradient(jnp.sin(x))
    x = rng0.standard_normal(3)
    assert_close(tg.jvp(f_t, (x,), (np.ones(3),)), jax.jvp(f_j, (x,), (np.ones(3),)))
    assert_close(tg.grad(lambda x: tnp.sum(f_t(x)))(x), x)
    assert_close(tg.vmap(tg.grad(lambda x: tnp.sum(f_t(x))))(np.stack([x, 2 * x])), np.stack([x, 2 * x]))
    assert_close(tg.jit(f_t)(x), f_j(x))
    assert "stop_gradient" in str(tg.make_jaxpr(f_t)(x))
    d = tg.stop_gradient({"a": x, "b": (np.int32(3),)})
    assert_close(d["a"], x) and int(d["b"][0]) == 3
    assert_close(tg.hessian(lambda x: tnp.sum(tg.stop_gradient(x) * x * x))(x), np.diag(2 * x))
    assert tg.grad(lambda x: tnp.sum(tg.stop_gradient(x)))(x).shape == (3,)


# --------------------------------------------------------------------------
# custom_jvp


@tg.custom_jvp
def softplus(x):
    return tnp.log1p(tnp.exp(x))


@softplus.defjvp
def _softplus_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return softplus(x), t * (1.0 / (1.0 + tnp.exp(-x)))


@jax.custom_jvp
def softplus_j(x):
    return jnp.log1p(jnp.exp(x))


@softplus_j.defjvp
def _softplus_j_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return softplus_j(x), t * (1.0 / (1.0 + jnp.exp(-x)))


@tg.custom_jvp
def wrong_sin(x):  # deliberately "wrong" rule: the rule, not the function, is used
    return tnp.sin(x)


wrong_sin.defjvp(lambda p, t: (wrong_sin(p[0]), 3.0 * t[0]))


def test_custom_jvp_rule_is_used_in_every_mode():
    x = np.linspace(-1, 1, 4)
    assert_close(wrong_sin(x), np.sin(x))
    assert_close(tg.jvp(wrong_sin, (x,), (np.ones(4),))[1], 3 * np.ones(4))
    assert_close(tg.grad(lambda x: tnp.sum(wrong_sin(x)))(x), 3 * np.ones(4))
    assert_close(tg.jacfwd(wrong_sin)(x), 3 * np.eye(4))
    assert_close(tg.jacrev(wrong_sin)(x), 3 * np.eye(4))
    assert_close(tg.linearize(wrong_sin, x)[1](np.ones(4)), 3 * np.ones(4))
    # second derivative of the rule's tangent (3 t) is 0
    assert float(tg.grad(tg.grad(wrong_sin))(0.3)) == 0.0


def test_custom_jvp_matches_jax():
    x = np.linspace(-3, 3, 5)
    check = lambda ft, fj: assert_close(ft(x), jax.jit(fj)(x))
    check(tg.vmap(tg.grad(softplus)), jax.vmap(jax.grad(softplus_j)))
    check(tg.grad(lambda x: tnp.sum(tg.vmap(softplus)(x))), jax.grad(lambda x: jnp.sum(jax.vmap(softplus_j)(x))))
    check(tg.vmap(tg.grad(tg.grad(softplus))), jax.vmap(jax.grad(jax.grad(softplus_j))))
    check(tg.jit(tg.vmap(tg.grad(softplus))), jax.vmap(jax.grad(softplus_j)))
    check(tg.grad(lambda x: tnp.sum(tg.jit(softplus)(x))), jax.grad(lambda x: jnp.sum(softplus_j(x))))
    check(tg.jacfwd(softplus), jax.jacfwd(softplus_j))
    check(tg.hessian(lambda x: tnp.sum(softplus(x) * x)), jax.hessian(lambda x: jnp.sum(softplus_j(x) * x)))
    j = tg.make_jaxpr(softplus)(x)
    assert "custom_jvp_call" in str(j) and "jvp=_softplus_jvp" in str(j)


def test_custom_jvp_nondiff_argnums_pytrees_kwargs():
    @functools.partial(tg.custom_jvp, nondiff_argnums=(0,))
    def apply(fn, xs):
        return {"s": fn(xs["a"]) * xs["b"]}

    @apply.defjvp
    def apply_jvp(fn, primals, tangents):
        (xs,), (ts,) = primals, tangents
        out = apply(fn, xs)
        return out, {"s": 2.0 * ts["a"] * xs["b"] + fn(xs["a"]) * ts["b"]}

    xs = {"a": np.array([1.0, 2.0]), "b": 3.0}
    g = tg.grad(lambda xs: tnp.sum(apply(tnp.sin, xs)["s"]))(xs)
    assert_close(g["a"], 6.0 * np.ones(2))
    assert_close(g["b"], np.sum(np.sin(xs["a"])))
    assert_close(tg.vmap(lambda a: apply(tnp.cos, {"a": a, "b": 1.0})["s"])(np.ones((2, 2))),
                 np.cos(np.ones((2, 2))))

    @tg.custom_jvp
    def scaled(x, scale=2.0):
        return x * scale

    scaled.defjvp(lambda p, t: (scaled(*p), t[0] * p[1] + t[1] * p[0]))
    assert_close(tg.grad(lambda x: scaled(x, scale=5.0))(1.0), 5.0)
    assert_close(tg.grad(lambda s: scaled(2.0, scale=s))(1.0), 2.0)


def test_custom_jvp_defjvps_and_symbolic_zeros():
    @tg.custom_jvp
    def f(x, y):
        return x * y

    f.defjvps(lambda tx, out, x, y: 10.0 * tx * y, lambda ty, out, x, y: 100.0 * x * ty)
    assert_close(tg.grad(f, (0, 1))(2.0, 3.0), (30.0, 200.0))

    seen = []

    @tg.custom_jvp
    def g(x, y):
        return x * y

    @functools.partial(g.defjvp, symbolic_zeros=True)
    def g_jvp(p, t):
        seen.append(tuple(type(u).__name__ for u in t))
        (x, y), (tx, ty) = p, t
        tout = (tx * y if type(tx) is not tg.custom_derivatives.SymbolicZero else 0.0) + \
               (x * ty if type(ty) is not tg.custom_derivatives.SymbolicZero else 0.0)
        return g(x, y), tout

    assert_close(tg.grad(g)(2.0, 3.0), 3.0)
    assert seen[-1][1] == "Zero"


def test_custom_jvp_closure_over_vmapped_value():
    # the rule closes over a vmap's batched value and runs under a grad outside the vmap
    def outer(x, c):
        @tg.custom_jvp
        def g(x):
            return tnp.sin(x) * c

        @g.defjvp
        def g_jvp(p, t):
            return g(p[0]), 100 * tnp.cos(p[0]) * c * t[0]

        return g(x)

    def outer_j(x, c):
        @jax.custom_jvp
        def g(x):
            return jnp.sin(x) * c

        @g.defjvp
        def g_jvp(p, t):
            return g(p[0]), 100 * jnp.cos(p[0]) * c * t[0]

        return g(x)

    c = np.arange(3.0)
    assert_close(tg.vmap(tg.grad(outer), (None, 0))(2.0, c), jax.vmap(jax.grad(outer_j), (None, 0))(2.0, c))
    got = tg.grad(lambda x, c: tnp.sum(tg.vmap(outer, (None, 0))(x, c)))(2.0, c)
    want = jax.grad(lambda x, c: jnp.sum(jax.vmap(outer_j, (None, 0))(x, c)))(2.0, c)
    assert_close(got, want)
    # closing over the value being differentiated would drop its derivative: error
    with pytest.raises(TypeError, match="closes over a value .* being differentiated"):
        tg.grad(outer, 1)(2.0, 3.0)


def test_custom_jvp_rule_errors():
    @tg.custom_jvp
    def f(x):
        return tnp.sin(x)

    with pytest.raises(AttributeError, match="No JVP defined"):
        tg.grad(f)(1.0)
    f.defjvp(lambda p, t: (f(p[0]), (t[0], t[0])))
    with pytest.raises(TypeError, match="equal pytree structures"):
        tg.grad(f)(1.0)
    f.defjvp(lambda p, t: (f(p[0]), t[0].astype(np.float32)))
    with pytest.raises(TypeError, match="tangent f32"):
        tg.jvp(f, (1.0,), (1.0,))
    f.defjvp(lambda p, t: f(p[0]))
    with pytest.raises(TypeError, match="pair"):
        tg.jvp(f, (1.0,), (1.0,))


# --------------------------------------------------------------------------
# custom_vjp


@tg.custom_vjp
def clip_gradient(x, lo, hi):
    return x


def _cg_fwd(x, lo, hi):
    return x, (lo, hi)


def _cg_bwd(res, g):
    lo, hi = res
    return (tnp.clip(g, lo, hi), None, None)


clip_gradient.defvjp(_cg_fwd, _cg_bwd)


@jax.custom_vjp
def clip_gradient_j(x, lo, hi):
    return x


clip_gradient_j.defvjp(lambda x, lo, hi: (x, (lo, hi)),
                       lambda res, g: (jnp.clip(g, res[0], res[1]), None, None))


def test_custom_vjp_matches_jax():
    x = np.linspace(-2, 2, 5)
    f_t = lambda x: tnp.sum(clip_gradient(x * x * 3.0, -1.0, 1.0))
    f_j = lambda x: jnp.sum(clip_gradient_j(x * x * 3.0, -1.0, 1.0))
    assert_close(tg.grad(f_t)(x), jax.grad(f_j)(x))
    assert_close(tg.jit(tg.grad(f_t))(x), jax.grad(f_j)(x))
    assert_close(tg.grad(lambda x: tnp.sum(tg.jit(clip_gradient)(x * x * 3.0, -1.0, 1.0)))(x), jax.grad(f_j)(x))
    assert_close(tg.jacrev(lambda x: clip_gradient(x * 3.0, -1.0, 1.0))(x),
                 jax.jacrev(lambda x: clip_gradient_j(x * 3.0, -1.0, 1.0))(x))
    vt = tg.vmap(tg.grad(lambda x: clip_gradient(x * 3.0, -1.0, 1.0)))(x)
    assert_close(vt, jax.vmap(jax.grad(lambda x: clip_gradient_j(x * 3.0, -1.0, 1.0)))(x))
    gv = tg.grad(lambda x: tnp.sum(tg.vmap(lambda x: clip_gradient(x * 3.0, -1.0, 1.0))(x)))(x)
    assert_close(gv, jax.grad(lambda x: jnp.sum(jax.vmap(lambda x: clip_gradient_j(x * 3.0, -1.0, 1.0))(x)))(x))
    assert "custom_vjp_call" in str(tg.make_jaxpr(clip_gradient)(x, -1.0, 1.0))


def test_custom_vjp_residual_pytrees_nondiff_and_second_order():
    @functools.partial(tg.custom_vjp, nondiff_argnums=(1,))
    def f(x, mode):
        return {"y": tnp.sin(x["a"]) * x["b"]}

    def f_fwd(x, mode):
        return f(x, mode), {"cos": tnp.cos(x["a"]), "sin": tnp.sin(x["a"]), "b": x["b"], "tag": "r"}

    def f_bwd(mode, res, g):
        assert mode == "scale" and res["tag"] == "r"  # non-array residuals pass through
        return ({"a": 2.0 * res["cos"] * res["b"] * g["y"], "b": tnp.sum(res["sin"] * g["y"])},)

    f.defvjp(f_fwd, f_bwd)
    x = {"a": np.array([0.1, 0.7]), "b": 1.5}
    g = tg.grad(lambda x: tnp.sum(f(x, "scale")["y"]))(x)
    assert_close(g["a"], 2.0 * np.cos(x["a"]) * 1.5)
    assert_close(g["b"], np.sum(np.sin(x["a"])))
    # reverse-over-reverse differentiates through bwd
    h = tg.jacrev(tg.grad(lambda a: tnp.sum(f({"a": a, "b": 1.5}, "scale")["y"])))(x["a"])
    assert_close(h, np.diag(-2.0 * np.sin(x["a"]) * 1.5))


def test_custom_vjp_forward_mode_error_and_bwd_errors():
    x = np.ones(2)
    with pytest.raises(TypeError, match="forward-mode autodiff.*custom_vjp.*clip_gradient"):
        tg.jvp(lambda x: clip_gradient(x, -1.0, 1.0), (x,), (x,))
    with pytest.raises(TypeError, match="forward-mode"):
        tg.jacfwd(lambda x: clip_gradient(x, -1.0, 1.0))(x)

    @tg.custom_vjp
    def f(x, y):
        return x * y

    with pytest.raises(AttributeError, match="No VJP defined"):
        tg.grad(f)(1.0, 2.0)
    f.defvjp(lambda x, y: (f(x, y), (x, y)), lambda res, g: (g * res[1],))
    with pytest.raises(TypeError, match=r"one cotangent per differentiable argument \(2\)"):
        tg.grad(f)(1.0, 2.0)
    f.defvjp(lambda x, y: (f(x, y), (x, y)), lambda res, g: (g * np.ones(3), None))
    with pytest.raises(TypeError, match="shape"):
        tg.grad(f)(1.0, 2.0)
    f.defvjp(lambda x, y: f(x, y), lambda res, g: (g, g))
    with pytest.raises(TypeError, match="pair"):
        tg.grad(f)(1.0, 2.0)
    # None cotangent = zero
    f.defvjp(lambda x, y: (f(x, y), (x, y)), lambda res, g: (None, g * res[0]))
    assert_close(tg.grad(f, (0, 1))(2.0, 3.0), (0.0, 2.0))


# --------------------------------------------------------------------------
# checkpoint / remat


def _chain(x):
    for _ in range(3):
        x = tnp.sin(x) * tnp.cos(x)
    return tnp.sum(x)


def _count(jaxpr, name):
    n = 0
    for e in jaxpr.eqns:
        n += e.primitive.name == name
        for v in e.params.values():
            inner = getattr(v, "jaxpr", v)
            if isinstance(inner, core.Jaxpr):
                n += _count(inner, name)
    return n


def test_checkpoint_values_and_recompute():
    x = rng0.standard_normal(6)
    cf = tg.checkpoint(_chain)
    assert_close(cf(x), _chain(x))
    assert_close(tg.grad(cf)(x), tg.grad(_chain)(x))
    assert_close(tg.value_and_grad(cf)(x), tg.value_and_grad(_chain)(x))
    # residuals: every intermediate without checkpoint, only the input with it
    _, lin = tg.linearize(_chain, x)
    _, lin_c = tg.linearize(cf, x)
    assert len(lin.jaxpr.consts) > 1 and len(lin_c.jaxpr.consts) == 1
    assert lin_c.jaxpr.consts[0] is x or np.array_equal(np.asarray(lin_c.jaxpr.consts[0]), x)
    # the jaxpr of value_and_grad shows the forward pass twice (the recomputation)
    plain = tg.make_jaxpr(tg.value_and_grad(_chain))(x).jaxpr
    remat = tg.make_jaxpr(tg.value_and_grad(cf))(x).jaxpr
    n_fwd = _count(tg.make_jaxpr(_chain)(x).jaxpr, "sin")
    assert _count(remat, "sin") >= _count(plain, "sin") + n_fwd
    assert "differentiated=True" in str(remat) and "differentiated" not in str(plain)


def test_checkpoint_policies_and_options():
    W, v = rng0.standard_normal((4, 4)), rng0.standard_normal(4)
    g = lambda W, v: tnp.sum(tnp.tanh(tnp.tanh(W @ v) @ W))
    want = tg.grad(g)(W, v)
    n_res = {}
    for name in ("nothing_saveable", "dots_saveable", "everything_saveable"):
        pol = getattr(tg.checkpoint_policies, name)
        assert_close(tg.grad(tg.checkpoint(g, policy=pol))(W, v), want)
        n_res[name] = len(tg.linearize(tg.checkpoint(g, policy=pol), W, v)[1].jaxpr.consts)
    assert n_res["nothing_saveable"] < n_res["dots_saveable"] < n_res["everything_saveable"]

    @functools.partial(tg.remat, static_argnums=(1,), prevent_cse=False)
    def powk(x, k):
        for _ in range(k):
            x = tnp.sin(x)
        return x

    assert_close(tg.grad(lambda x: powk(x, 3))(0.5), tg.grad(lambda x: tnp.sin(tnp.sin(tnp.sin(x))))(0.5))


def test_checkpoint_under_transformations():
    x = rng0.standard_normal(3)
    cf = tg.checkpoint(lambda x: tnp.sin(x) * x)
    ref = jax.checkpoint(lambda x: jnp.sin(x) * x)
    assert_close(tg.jvp(cf, (x,), (np.ones(3),)), jax.jvp(ref, (x,), (np.ones(3),)))
    assert_close(tg.vmap(tg.grad(lambda x: tnp.sum(cf(x))))(np.stack([x, x + 1])),
                 jax.vmap(jax.grad(lambda x: jnp.sum(ref(x))))(np.stack([x, x + 1])))
    assert_close(tg.grad(lambda x: tnp.sum(tg.vmap(cf)(x)))(np.stack([x, x])),
                 jax.grad(lambda x: jnp.sum(jax.vmap(ref)(x)))(np.stack([x, x])))
    assert_close(tg.jit(tg.grad(lambda x: tnp.sum(cf(x))))(x), jax.grad(lambda x: jnp.sum(ref(x)))(x))
    assert_close(tg.hessian(lambda x: tnp.sum(cf(x)))(x), jax.hessian(lambda x: jnp.sum(ref(x)))(x))
    # nested checkpoints, and a closure over an outer tracer
    nested = tg.checkpoint(lambda x: cf(cf(x)))
    assert_close(tg.grad(lambda x: tnp.sum(nested(x)))(x), jax.grad(lambda x: jnp.sum(ref(ref(x))))(x))
    got = tg.grad(lambda y: tnp.sum(tg.checkpoint(lambda x: tnp.sin(x * y))(x)))(0.3)
    assert_close(got, jax.grad(lambda y: jnp.sum(jax.checkpoint(lambda x: jnp.sin(x * y))(x)))(0.3))


def test_lowering_of_the_autodiff_primitives():
    from oracle import check_lowering
    x = rng0.standard_normal(4)
    check_lowering(lambda x: softplus(x) * tg.stop_gradient(x), [x])            # custom_jvp_call
    check_lowering(lambda x: clip_gradient(x * 2.0, -1.0, 1.0), [x])          # custom_vjp_call
    check_lowering(tg.grad(lambda x: tnp.sum(tg.checkpoint(_chain_v)(x))), [x])  # barrier + recompute
    check_lowering(tg.checkpoint(_chain_v, prevent_cse=False), [x])
    mod = tg.make_jaxpr(tg.grad(lambda x: tnp.sum(tg.checkpoint(_chain_v)(x))))(x)
    from tracegrad.interpreters import lowering
    assert "optimization_barrier" in lowering.module_text(lowering.lower_jaxpr(mod))
    # the linear map of a custom_vjp function cannot run forward, compiled or not
    _, f_jvp = tg.linearize(lambda x: clip_gradient(x, -1.0, 1.0), x)
    with pytest.raises(Exception, match="forward-mode"):
        lowering.lower_jaxpr(f_jvp.jaxpr)


def _chain_v(x):
    return tnp.sin(tnp.sin(x) * x)


def test_nextafter_has_zero_derivative():
    # nextafter is treated as having a zero derivative (JAX defines none at all)
    x, y = rng0.standard_normal(3), rng0.standard_normal(3)
    _, t = tg.jvp(tnp.nextafter, (x, y), (np.ones(3), np.ones(3)))
    assert_close(t, np.zeros(3))
    assert_close(tg.grad(lambda x: tnp.sum(tnp.nextafter(x, y)))(x), np.zeros(3))


# --------------------------------------------------------------------------
# check_grads (order 2, fwd and rev) and jvp/vjp against JAX for a table of
# functions that together exercise every differentiable primitive


from tracegrad.primitives import conv as _conv  # noqa: E402
from tracegrad.primitives import elementwise as _ew  # noqa: E402
from tracegrad.primitives import indexing as _ix  # noqa: E402
from tracegrad.primitives import reductions as _red  # noqa: E402
from tracegrad.primitives import windowed as _win  # noqa: E402


def _nz(r, s):
    return r.choice([-1.0, 1.0], size=s) * r.uniform(0.4, 2.0, s)


DOMAINS = {
    "real": lambda r, s: r.standard_normal(s),
    "pos": lambda r, s: r.uniform(0.5, 2.0, s),
    "unit": lambda r, s: r.uniform(-0.9, 0.9, s),
    "gt1": lambda r, s: r.uniform(1.2, 3.0, s),
    "nz": _nz,
    "f32": lambda r, s: r.uniform(0.5, 2.0, s).astype(np.float32),
    "int": lambda r, s: r.integers(-5, 6, s),
    "bool": lambda r, s: r.integers(0, 2, s).astype(bool),
    "idx": lambda r, s: r.integers(0, 2, s),
    "uint": lambda r, s: r.integers(0, 4, s).astype(np.uint32),
    "cplx": lambda r, s: r.standard_normal(s) + 1j * r.standard_normal(s),
}

# fd=False: the function changes its own derivative on purpose (stop_gradient,
# clipped gradients), so finite differences do not apply: compare with JAX to
# second order instead
Entry = collections.namedtuple("Entry", "name tg jx doms shapes modes fd")
S = (2, 3)
_IDX = np.array([0, 2, 0])
_softplus_t, _softplus_j = softplus, softplus_j
_cg_t = lambda x: clip_gradient(x * 2.0, -0.5, 0.5)
_cg_j = lambda x: clip_gradient_j(x * 2.0, -0.5, 0.5)


def _E(name, tgf, jxf, *doms, shapes=None, modes=("fwd", "rev"), fd=True):
    return Entry(name, tgf, jxf, doms, shapes or (S,) * len(doms), modes, fd)


def _at(x):
    return tnp.asarray(x).at  # finite differences call the function on NumPy arrays


@tg.custom_vjp
def _sin_v(x):
    return tnp.sin(x)


_sin_v.defvjp(lambda x: (tnp.sin(x), tnp.cos(x)), lambda c, g: (c * g,))


def _cparts(np_, z):
    return np_.real(np_.conj(z) * z * z), np_.imag(z * z)


def _unary(name, dom="real", tname=None, jname=None):
    return _E(name, getattr(tnp, tname or name), getattr(jnp, jname or tname or name), dom)


TABLE = [
    # ---- elementwise, unary
    *[_unary(n) for n in ("sin", "cos", "arctan", "sinh", "cosh", "tanh", "arcsinh", "exp",
                          "exp2", "expm1", "negative", "sign", "floor", "ceil", "round", "rint",
                          "square")],
    *[_unary(n, "unit") for n in ("tan", "arcsin", "arccos", "arctanh")],
    *[_unary(n, "pos") for n in ("log", "log1p", "sqrt", "cbrt")],
    _unary("arccosh", "gt1"),
    _unary("abs", "nz"),
    _E("rsqrt", tnp.rsqrt, jax.lax.rsqrt, "pos"),
    _E("reciprocal_pow", lambda x: x ** -2, lambda x: x ** -2, "nz"),
    _E("cube", lambda x: x ** 3, lambda x: x ** 3, "real"),
    _E("logistic", lambda x: _ew.logistic_p.bind(x), jax.lax.logistic, "real"),
    _E("erf", lambda x: _ew.erf_p.bind(x), jax.lax.erf, "real"),
    _E("erf_inv", lambda x: _ew.erf_inv_p.bind(x), jax.lax.erf_inv, "unit"),
    _E("lgamma", lambda x: _ew.lgamma_p.bind(x), jax.lax.lgamma, "pos"),
    _E("digamma", lambda x: _ew.digamma_p.bind(x), jax.lax.digamma, "pos"),
    _E("isfinite", tnp.isfinite, jnp.isfinite, "real"),
    _E("astype_int", lambda x: x * x.astype(int), lambda x: x * x.astype(int), "real"),
    _E("astype_f64", lambda x: tnp.sin(x.astype(np.float64)), lambda x: jnp.sin(x.astype(np.float64)), "f32"),
    # ---- complex numbers
    _E("complex_parts", lambda x, y: _cparts(tnp, _ew.complex_p.bind(x, y)),
       lambda x, y: _cparts(jnp, jax.lax.complex(x, y)), "real", "real"),
    _E("complex_input", lambda z: tnp.real(z * tnp.exp(tnp.conj(z))) + tnp.imag(z * z),
       lambda z: jnp.real(z * jnp.exp(jnp.conj(z))) + jnp.imag(z * z), "cplx"),
    _E("complex_output", lambda z: tnp.sin(z) * tnp.conj(z), lambda z: jnp.sin(z) * jnp.conj(z), "cplx"),
    # ---- elementwise, binary
    *[_E(n, getattr(tnp, n), getattr(jnp, n), "real", "real")
      for n in ("add", "subtract", "multiply", "arctan2", "maximum", "minimum")],
    _E("divide", tnp.divide, jnp.divide, "real", "nz"),
    _E("remainder", tnp.remainder, jnp.remainder, "real", "pos"),
    _E("fmod", tnp.fmod, jnp.fmod, "real", "pos"),
    _E("power", tnp.power, jnp.power, "pos", "real"),
    _E("broadcast_scalar", lambda x, y: x * y + y, lambda x, y: x * y + y, "real", "real", shapes=(S, ())),
    *[_E(n, getattr(tnp, n), getattr(jnp, n), "real", "real")
      for n in ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal")],
    *[_E(n, getattr(tnp, n), getattr(jnp, n), "bool", "bool")
      for n in ("bitwise_and", "bitwise_or", "bitwise_xor")],
    _E("invert", tnp.invert, jnp.invert, "int"),
    _E("shifts", lambda a, b: tnp.left_shift(a, b) + tnp.right_shift(a, b),
       lambda a, b: jnp.left_shift(a, b) + jnp.right_shift(a, b), "uint", "uint"),
    _E("where", lambda c, x, y: tnp.where(c > 0, x, y), lambda c, x, y: jnp.where(c > 0, x, y),
       "real", "real", "real"),
    _E("clip", lambda x: tnp.clip(x, -0.5, 0.5), lambda x: jnp.clip(x, -0.5, 0.5), "real"),
    _E("lax_clamp", lambda lo, x, hi: tg.lax.clamp(lo - 1.0, x, hi + 1.0),
       lambda lo, x, hi: jax.lax.clamp(lo - 1.0, x, hi + 1.0), "unit", "real", "unit"),
    _E("lax_clamp_scalar", lambda x: tg.lax.clamp(-0.5, x, 0.5), lambda x: jax.lax.clamp(-0.5, x, 0.5), "real"),
    # ---- reductions
    *[_E(n, functools.partial(getattr(tnp, n), axis=1), functools.partial(getattr(jnp, n), axis=1), "real")
      for n in ("sum", "max", "min", "prod", "cumsum", "cumprod", "argmax", "argmin", "mean")],
    _E("all_any", lambda x: (tnp.all(x > 0), tnp.any(x > 0)), lambda x: (jnp.all(x > 0), jnp.any(x > 0)), "real"),
    _E("cummax", lambda x: _red.cummax_p.bind(x, axis=0, reverse=False),
       lambda x: jax.lax.cummax(x, axis=0), "real"),
    _E("cummin", lambda x: _red.cummin_p.bind(x, axis=1, reverse=True),
       lambda x: jax.lax.cummin(x, axis=1, reverse=True), "real"),
    # ---- shapes
    _E("broadcast_to", lambda x: tnp.broadcast_to(x, (4, 2, 3)), lambda x: jnp.broadcast_to(x, (4, 2, 3)), "real"),
    _E("reshape_T", lambda x: tnp.reshape(x, (3, 2)).T, lambda x: jnp.reshape(x, (3, 2)).T, "real"),
    _E("squeeze", lambda x: tnp.squeeze(x[None], 0), lambda x: jnp.squeeze(x[None], 0), "real"),
    _E("slice", lambda x: x[:, 1:] * x[:, :2], lambda x: x[:, 1:] * x[:, :2], "real"),
    _E("pad", lambda x: tnp.pad(x, ((1, 0), (2, 1))), lambda x: jnp.pad(x, ((1, 0), (2, 1))), "real"),
    _E("concatenate", lambda x, y: tnp.concatenate([x, y * y], axis=1),
       lambda x, y: jnp.concatenate([x, y * y], axis=1), "real", "real"),
    _E("flip", lambda x: tnp.flip(x, 1) * x, lambda x: jnp.flip(x, 1) * x, "real"),
    # ---- indexing
    _E("gather", lambda x: x[:, _IDX], lambda x: x[:, _IDX], "real"),
    _E("dynamic_slice", lambda x, i: x[i], lambda x, i: x[i], "real", "idx", shapes=(S, ())),
    _E("dynamic_update_slice", lambda x, u: _ix.dynamic_update_slice(x, u, (0, 1)),
       lambda x, u: jax.lax.dynamic_update_slice(x, u, (0, 1)), "real", "real", shapes=(S, (2, 2))),
    _E("scatter_set", lambda x, v: _at(x)[:, _IDX].set(v), lambda x, v: x.at[:, _IDX].set(v), "real", "real"),
    _E("scatter_add", lambda x, v: _at(x)[:, _IDX].add(v), lambda x, v: x.at[:, _IDX].add(v), "real", "real"),
    _E("scatter_mul", lambda x, v: _at(x)[:, np.array([0, 2])].multiply(v[:, :2]),
       lambda x, v: x.at[:, np.array([0, 2])].multiply(v[:, :2], unique_indices=True), "real", "real"),
    _E("scatter_min", lambda x, v: _at(x)[:, np.array([0, 2])].min(v[:, :2]),
       lambda x, v: x.at[:, np.array([0, 2])].min(v[:, :2]), "real", "real"),
    _E("scatter_max", lambda x, v: _at(x)[:, np.array([0, 2])].max(v[:, :2]),
       lambda x, v: x.at[:, np.array([0, 2])].max(v[:, :2]), "real", "real"),
    # ---- sorting, linear algebra, convolution, windows
    _E("sort", functools.partial(tnp.sort, axis=1), functools.partial(jnp.sort, axis=1), "real"),
    _E("argsort", lambda x: tnp.take_along_axis(x, tnp.argsort(x, axis=1), axis=1),
       lambda x: jnp.take_along_axis(x, jnp.argsort(x, axis=1), axis=1), "real"),
    _E("matmul", lambda a, b: a @ b, lambda a, b: a @ b, "real", "real", shapes=((2, 3), (3, 4))),
    _E("einsum", lambda a, b: tnp.einsum("bij,bjk->bik", a, b), lambda a, b: jnp.einsum("bij,bjk->bik", a, b),
       "real", "real", shapes=((2, 2, 3), (2, 3, 2))),
    _E("conv", lambda x, k: _conv.conv_general_dilated(x, k, (1, 1), "SAME"),
       lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "SAME"), "real", "real",
       shapes=((1, 2, 4, 4), (2, 2, 3, 3))),
    _E("reduce_window_max", lambda x: _win.reduce_window(x, "max", (2, 2), (1, 1)),
       lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (2, 2), (1, 1), "VALID"), "real",
       shapes=((3, 4),)),
    _E("reduce_window_add", lambda x: _win.reduce_window(x, "add", (2, 2), (1, 2), "SAME"),
       lambda x: jax.lax.reduce_window(x, 0.0, jax.lax.add, (2, 2), (1, 2), "SAME"), "real",
       shapes=((3, 4),)),
    # ---- control flow, jit, custom rules
    _E("cond", lambda x: tg.lax.cond(tnp.sum(x) > 0, tnp.sin, tnp.cos, x),
       lambda x: jax.lax.cond(jnp.sum(x) > 0, jnp.sin, jnp.cos, x), "real"),
    _E("fori_loop", lambda x: tg.lax.fori_loop(0, 3, lambda i, c: tnp.sin(c) * x, x),
       lambda x: jax.lax.fori_loop(0, 3, lambda i, c: jnp.sin(c) * x, x), "real"),
    _E("scan", lambda x: tg.lax.scan(lambda c, r: (c * r, tnp.cos(c)), x[0], x),
       lambda x: jax.lax.scan(lambda c, r: (c * r, jnp.cos(c)), x[0], x), "real"),
    _E("while_loop", lambda x: tg.lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, tnp.sin(c[1])), (0, x))[1],
       lambda x: jax.lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, jnp.sin(c[1])), (0, x))[1],
       "real", modes=("fwd",)),
    _E("jit", lambda x: tg.jit(lambda x: tnp.sin(x) * x)(x), lambda x: jnp.sin(x) * x, "real"),
    _E("custom_jvp", lambda x: _softplus_t(x) * x, lambda x: _softplus_j(x) * x, "real"),
    _E("custom_vjp", lambda x: _sin_v(x) * x, lambda x: jnp.sin(x) * x, "real", modes=("rev",)),
    _E("custom_vjp_clip", lambda x: _cg_t(x) * x, lambda x: _cg_j(x) * x, "real", modes=("rev",), fd=False),
    _E("checkpoint", lambda x: tg.checkpoint(lambda x: tnp.sin(x) * x)(x),
       lambda x: jax.checkpoint(lambda x: jnp.sin(x) * x)(x), "real"),
    _E("stop_gradient", lambda x: tnp.sin(x) * tg.stop_gradient(x * x),
       lambda x: jnp.sin(x) * jax.lax.stop_gradient(x * x), "real", fd=False),
]

# differentiable primitives whose derivatives are tested elsewhere (file: what)
COVERED_ELSEWHERE = {
    "custom_vjp_lin": "test_ad.py: test_custom_vjp_* (reverse mode; forward mode is an error)",
    "nextafter": "test_ad.py: test_nextafter_has_zero_derivative",
}


def _sample(entry, seed):
    r = np.random.default_rng(seed)
    return [DOMAINS[d](r, s) for d, s in zip(entry.doms, entry.shapes)]


def _rand_tangent(r, x):
    x = np.asarray(x)
    if not tg.dtypes.is_float(x.dtype):
        return np.zeros(x.shape, tg.dtypes.float0)
    return r.standard_normal(x.shape).astype(x.dtype)


def _compare_with_jax(entry, args, seed):
    r = np.random.default_rng(seed + 1)
    tans = tuple(_rand_tangent(r, a) for a in args)
    tol = dict(rtol=1e-4, atol=1e-5) if any(np.asarray(a).dtype == np.float32 for a in args) else {}
    if "fwd" in entry.modes:
        out, tout = tg.jvp(entry.tg, tuple(args), tans)
        rout, rtout = jax.jvp(entry.jx, tuple(J(args)), tans)
        assert_close(out, rout, what=f"{entry.name} jvp primal", **tol)
        assert_close(tout, rtout, what=f"{entry.name} jvp tangent", **tol)
    if "rev" in entry.modes:
        out, f_vjp = tg.vjp(entry.tg, *args)
        rout, r_vjp = jax.vjp(entry.jx, *J(args))
        ct = jax.tree_util.tree_map(lambda o: _rand_tangent(r, o), rout)
        got, want = f_vjp(ct), r_vjp(ct)
        fl = [tg.dtypes.is_float(np.asarray(a).dtype) for a in args]
        assert_close([g for g, f in zip(got, fl) if f], [w for w, f in zip(want, fl) if f],
                     what=f"{entry.name} vjp", **tol)
        if not entry.fd:  # second order: forward-over-reverse
            pull_t = lambda *a: tg.vjp(entry.tg, *a)[1](ct)
            pull_j = lambda *a: jax.vjp(entry.jx, *a)[1](ct)
            got = tg.jvp(pull_t, tuple(args), tans)
            want = jax.jvp(pull_j, tuple(J(args)), tans)
            assert_close(got, want, what=f"{entry.name} jvp of vjp", **tol)


@pytest.mark.parametrize("entry", TABLE, ids=[e.name for e in TABLE])
@settings(max_examples=2, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1))
def test_derivatives_of_every_primitive(entry, seed):
    args = _sample(entry, seed)
    with np.errstate(all="ignore"):
        if entry.fd:
            check_grads(entry.tg, args, order=2, modes=entry.modes, seed=seed)
        _compare_with_jax(entry, args, seed)


def _prims(jaxpr, acc):
    for e in jaxpr.eqns:
        acc.add(e.primitive.name)
        for v in e.params.values():
            for sub in (v if isinstance(v, (tuple, list)) else (v,)):
                inner = getattr(sub, "jaxpr", sub)
                if isinstance(inner, core.Jaxpr):
                    _prims(inner, acc)
    return acc


def test_table_covers_every_differentiable_primitive():
    """Every registered primitive with a jvp rule appears in the jaxpr of a
    table entry, of its jvp, of its linearization or of its vjp (those
    jaxprs are differentiated again by the order-2 checks), or is listed in
    COVERED_ELSEWHERE."""
    covered = set()
    for e in TABLE:
        args = _sample(e, 0)
        with np.errstate(all="ignore"):
            _prims(tg.make_jaxpr(e.tg)(*args).jaxpr, covered)
            tans = [_rand_tangent(np.random.default_rng(0), a) for a in args]
            if "fwd" in e.modes:
                _prims(tg.make_jaxpr(lambda *a: tg.jvp(e.tg, a, tuple(tans))[1])(*args).jaxpr, covered)
            _prims(tg.linearize(e.tg, *args)[1].jaxpr.jaxpr, covered)
            if "rev" in e.modes:
                out = e.tg(*args)
                ct = jax.tree_util.tree_map(lambda o: _rand_tangent(np.random.default_rng(0), o), out)
                _prims(tg.make_jaxpr(lambda *a: tg.vjp(e.tg, *a)[1](ct))(*args).jaxpr, covered)
    here = os.path.dirname(os.path.abspath(__file__))
    for name, where in COVERED_ELSEWHERE.items():
        assert os.path.exists(os.path.join(here, where.split(":")[0])), where
    missing = sorted(n for n, p in core.registry.items()
                     if p.jvp is not None and n not in covered and n not in COVERED_ELSEWHERE)
    assert not missing, f"differentiable primitives not covered by the table: {missing}"


def test_custom_rules_and_checkpoint_inside_control_flow():
    x = np.linspace(0.1, 1.0, 4)
    body_t = lambda c, r: (tnp.sin(c) * r, c)
    body_j = lambda c, r: (jnp.sin(c) * r, c)
    cases = [
        (lambda x: tnp.sum(tg.lax.scan(tg.checkpoint(body_t), x, x)[0]),
         lambda x: jnp.sum(jax.lax.scan(jax.checkpoint(body_j), x, x)[0])),
        (lambda x: tnp.sum(tg.checkpoint(lambda x: tg.lax.scan(body_t, x, x)[0])(x)),
         lambda x: jnp.sum(jax.checkpoint(lambda x: jax.lax.scan(body_j, x, x)[0])(x))),
        (lambda x: tnp.sum(tg.lax.scan(lambda c, r: (softplus(c) * r, c), x, x)[0]),
         lambda x: jnp.sum(jax.lax.scan(lambda c, r: (softplus_j(c) * r, c), x, x)[0])),
        (lambda x: tnp.sum(tg.lax.cond(x[0] > 0, lambda x: clip_gradient(x * 3, -1., 1.), tnp.sin, x)),
         lambda x: jnp.sum(jax.lax.cond(x[0] > 0, lambda x: clip_gradient_j(x * 3, -1., 1.), jnp.sin, x))),
    ]
    for ft, fj in cases:
        assert_close(tg.grad(ft)(x), jax.jit(jax.grad(fj))(x))
    assert_close(tg.vmap(tg.grad(tg.checkpoint(lambda x: clip_gradient(x * 3, -1., 1.) * x)))(x),
                 jax.jit(jax.vmap(jax.grad(jax.checkpoint(lambda x: clip_gradient_j(x * 3, -1., 1.) * x))))(x))
    assert_close(tg.jacrev(tg.jit(lambda x: clip_gradient(x * 3, -1., 1.)))(x),
                 jax.jit(jax.jacrev(lambda x: clip_gradient_j(x * 3, -1., 1.)))(x))


def test_small_traced_jacobian_bases_are_computed_large_ones_are_consts():
    """Under jit a basis of up to 64 vectors is built from iotas (no n x n
    argument); a larger one is one constant; eagerly NumPy's eye. Values,
    dtypes and compositions match JAX either way."""
    from tracegrad.interpreters import lowering
    rng = np.random.default_rng(0)
    for n, dtype in ((5, np.float64), (64, np.float32), (65, np.float64)):
        x = rng.standard_normal(n).astype(dtype)
        f = lambda v: tnp.tanh(v[::-1] * v) * 2.0
        g = lambda v: jnp.tanh(v[::-1] * v) * 2.0
        for tr, jtr in ((tg.jacfwd, jax.jacfwd), (tg.jacrev, jax.jacrev)):
            closed = tg.make_jaxpr(tg.jit(tr(f)))(x)
            inner = closed.jaxpr.eqns[0].params["jaxpr"]
            hoisted = lowering.hoisted_consts(inner)
            assert ("iota" in str(inner)) == (n <= 64), (n, tr)
            assert any(np.shape(c) == (n, n) for c in hoisted) == (n > 64), (n, tr)
            out = tg.jit(tr(f))(x)
            assert out.dtype == dtype
            assert_close(out, jtr(g)(x))
            assert_close(tr(f)(x), jtr(g)(x))
    # composed: hessian and vmap(jacfwd) under jit, complex inputs
    x = rng.standard_normal((3, 4))
    h = lambda v: tnp.sum(tnp.sin(v) ** 3)
    assert_close(tg.jit(tg.hessian(h))(x[0]), jax.hessian(lambda v: jnp.sum(jnp.sin(v) ** 3))(x[0]))
    assert_close(tg.jit(tg.vmap(tg.jacfwd(tnp.sin)))(x), jax.vmap(jax.jacfwd(jnp.sin))(x))
    z = x[0] + 1j * x[1]
    assert_close(tg.jit(tg.jacfwd(lambda v: v * v, holomorphic=True))(z),
                 jax.jacfwd(lambda v: v * v, holomorphic=True)(z))


# --------------------------------------------------------------------------
# Cotangents of slices of one value: slices that tile an axis join in one
# concatenate (backward_pass); anything else is padded back and summed.

def _sliced_loss(lib, ranges, axis):
    def f(x):
        total = 0.0
        for k, (a, b) in enumerate(ranges):
            idx = [slice(None)] * x.ndim
            idx[axis] = slice(a, b)
            total = total + lib.sum(lib.sin(x[tuple(idx)] * (k + 1.5)))
        return total
    return f


def _ops(closed):
    return [e.primitive.name for e in closed.jaxpr.eqns]


@settings(max_examples=25)
@given(st.integers(1, 7), st.integers(1, 4), st.integers(0, 1),
       st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), min_size=1, max_size=4))
def test_slice_cotangents_match_jax(n, m, axis, raw):
    shape = (n, m) if axis == 0 else (m, n)
    ranges = [(min(a, b) % (n + 1), max(a, b) % (n + 1)) for a, b in raw]
    ranges = [(min(a, b), max(a, b)) for a, b in ranges]
    x = rng0.standard_normal(shape)
    want = jax.grad(_sliced_loss(jnp, ranges, axis))(J(x))
    got = tg.jit(tg.grad(_sliced_loss(tnp, ranges, axis)))(x)
    assert_close(got, want)


def test_tiling_slice_cotangents_are_one_concatenate():
    ranges = [(0, 2), (2, 5), (5, 6)]  # an LSTM's gates: they tile the axis
    jaxpr = tg.make_jaxpr(tg.grad(_sliced_loss(tnp, ranges, 0)))(np.ones(6))
    assert "concatenate" in _ops(jaxpr) and "pad" not in _ops(jaxpr)
    x = rng0.standard_normal(6)
    assert_close(tg.jit(tg.grad(_sliced_loss(tnp, ranges, 0)))(x),
                 jax.grad(_sliced_loss(jnp, ranges, 0))(J(x)))


def test_slice_cotangents_with_gaps_and_other_axes():
    # gaps are zeros inside the concatenate; equal partial ranges on the
    # other axis are one pad around it
    def f(lib):
        return lambda x: lib.sum(lib.sin(x[1, 0:2])) + lib.sum(lib.cos(x[1, 4:6]) * 2.0)
    jaxpr = tg.make_jaxpr(tg.grad(f(tnp)))(np.ones((3, 7)))
    assert _ops(jaxpr).count("pad") == 1 and "concatenate" in _ops(jaxpr)
    x = rng0.standard_normal((3, 7))
    assert_close(tg.jit(tg.grad(f(tnp)))(x), jax.grad(f(jnp))(J(x)))


def test_overlapping_slice_cotangents_are_summed():
    ranges = [(0, 4), (2, 6)]
    jaxpr = tg.make_jaxpr(tg.grad(_sliced_loss(tnp, ranges, 0)))(np.ones(6))
    assert _ops(jaxpr).count("pad") == 2 and "concatenate" not in _ops(jaxpr)
    x = rng0.standard_normal(6)
    assert_close(tg.jit(tg.grad(_sliced_loss(tnp, ranges, 0)))(x),
                 jax.grad(_sliced_loss(jnp, ranges, 0))(J(x)))
