"""Interned loop bodies (core.intern_jaxpr) and the transformations
memoized per body: reuse must never change a result."""
import jax
import jax.numpy as jnp
import numpy as np

import tracegrad as tg
import tracegrad.numpy as tnp
from tracegrad import core, lax
from tracegrad.primitives import control_flow as cf


def _scan_sum(scale):
    def f(x):
        def body(c, xi):
            return c * scale + tnp.sin(xi * c), c
        return lax.scan(body, x[0], x)[0]
    return f


def test_same_body_is_interned_and_derived_once():
    f = _scan_sum(0.5)
    x = np.linspace(0.1, 1.0, 7)
    seen = []
    orig = core.intern_jaxpr
    core.intern_jaxpr = lambda c: seen.append(orig(c)) or seen[-1]
    try:
        g1 = tg.grad(f)(x)
        n_transposed = len(cf._transposed_bodies)
        g2 = tg.grad(f)(x)
    finally:
        core.intern_jaxpr = orig
    assert len(seen) == 2 and seen[0] is seen[1]
    assert len(cf._transposed_bodies) == n_transposed   # the second grad derived nothing new
    np.testing.assert_array_equal(np.asarray(g1), np.asarray(g2))

    def jf(x):
        def body(c, xi):
            return c * 0.5 + jnp.sin(xi * c), c
        return jax.lax.scan(body, x[0], x)[0]
    np.testing.assert_allclose(np.asarray(g1), np.asarray(jax.grad(jf)(jnp.asarray(x))),
                               rtol=1e-12)   # (conftest turns JAX's x64 on)


def test_bodies_that_differ_only_in_a_literal_are_not_merged():
    # 0.0 == -0.0 in Python: the key compares literal bits
    x = np.array([1.0, 2.0, 3.0])
    a = tg.grad(_scan_sum(0.0))(x)
    b = tg.grad(_scan_sum(-0.0))(x)
    c = tg.grad(_scan_sum(2.0))(x)
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    # the sign of a zero must survive: 1 * -0 * -0 * -0 is -0, 1 * 0 * 0 * 0 is 0
    def times(scale):
        return lambda x: lax.scan(lambda c, xi: (c * scale, c), x[0], x)[0]
    ones = np.ones(3)
    assert np.signbit(np.asarray(times(-0.0)(ones)))
    assert not np.signbit(np.asarray(times(0.0)(ones)))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_structure_key_sees_params_avals_and_source_lines():
    def trace(fn, *avals):
        return lax._trace(fn, lambda a: a, [core.ShapedArray(s, np.dtype(d)) for s, d in avals],
                          "scan", "body")[0]
    j1 = trace(lambda a: [tnp.sum(a, axis=0)], ((3, 4), "float64"))
    j2 = trace(lambda a: [tnp.sum(a, axis=0)], ((3, 4), "float64"))
    j3 = trace(lambda a: [tnp.sum(a, axis=1)], ((3, 4), "float64"))
    j4 = trace(lambda a: [tnp.sum(a, axis=0)], ((3, 4), "float32"))
    assert j1 is not j2            # traced on different source lines
    key = core.jaxpr_structure
    assert key(j1.jaxpr) != key(j3.jaxpr) != key(j4.jaxpr)
    same = [trace(lambda a: [tnp.sum(a, axis=0)], ((3, 4), "float64")) for _ in range(2)]
    assert same[0] is same[1]      # one source line, twice: one object


def test_cond_branches_derived_once_and_right():
    def f(x):
        y = lax.cond(x[0] > 0, lambda v: tnp.sin(v) * 2.0, lambda v: tnp.cos(v) + v, x)
        return tnp.sum(y * y)

    def jf(x):
        y = jax.lax.cond(x[0] > 0, lambda v: jnp.sin(v) * 2.0, lambda v: jnp.cos(v) + v, x)
        return jnp.sum(y * y)
    for x in (np.linspace(0.1, 1.0, 5), np.linspace(-1.0, 0.5, 5)):
        g1 = tg.grad(f)(x)
        sizes = [len(cf._cond_pe_plans), len(cf._cond_transposes), len(cf._cond_jvps)]
        g2 = tg.grad(f)(x)
        assert [len(cf._cond_pe_plans), len(cf._cond_transposes), len(cf._cond_jvps)] == sizes
        np.testing.assert_array_equal(np.asarray(g1), np.asarray(g2))
        np.testing.assert_allclose(np.asarray(g1), np.asarray(jax.grad(jf)(jnp.asarray(x))),
                                   rtol=1e-12)


def test_while_jvp_and_batched_bodies_derived_once_and_right():
    from tracegrad.interpreters import batching

    def f(x):
        return lax.while_loop(lambda c: c[0] < 5, lambda c: (c[0] + 1, tnp.sin(c[1]) * 1.1),
                              (0, x))[1]

    def jf(x):
        return jax.lax.while_loop(lambda c: c[0] < 5, lambda c: (c[0] + 1, jnp.sin(c[1]) * 1.1),
                                  (0, x))[1]
    x = np.linspace(0.1, 1.0, 4)
    j1 = tg.jacfwd(f)(x)
    sizes = [len(cf._while_jvps), len(batching._batched)]
    j2 = tg.jacfwd(f)(x)
    assert [len(cf._while_jvps), len(batching._batched)] == sizes
    np.testing.assert_array_equal(np.asarray(j1), np.asarray(j2))
    np.testing.assert_allclose(np.asarray(j1), np.asarray(jax.jacfwd(jf)(jnp.asarray(x))),
                               rtol=1e-12)
