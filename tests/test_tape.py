"""The eager tape (interpreters/tape.py) against linearize + transpose and JAX.

Eager grad/vjp record a tape of direct reverse rules; every other context
linearizes. These tests run the table of test_ad.py (which exercises every
differentiable primitive) through both paths and compare, check that every
primitive with a direct `vjp` rule is covered by that table, and that the
tape composes with the other transformations."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tracegrad as tg
import tracegrad.numpy as tnp
from tracegrad import core
from tracegrad.config import config
from tracegrad.interpreters import ad, tape

from oracle import assert_close
from test_ad import TABLE, _prims, _rand_tangent, _sample


def _vjp_both_ways(entry, args, ct):
    assert config.eager_tape
    out_t, pull_t = tg.vjp(entry.tg, *args)
    config.eager_tape = False
    try:
        out_l, pull_l = tg.vjp(entry.tg, *args)
        got_l = pull_l(ct)
    finally:
        config.eager_tape = True
    return out_t, pull_t(ct), out_l, got_l


def _grad_both_ways(f, *args, argnums=0):
    """grad of f by the tape and by linearize + transpose."""
    g_tape = tg.grad(f, argnums=argnums)(*args)
    config.eager_tape = False
    try:
        g_lin = tg.grad(f, argnums=argnums)(*args)
    finally:
        config.eager_tape = True
    return g_tape, g_lin


@pytest.mark.parametrize("entry", [e for e in TABLE if "rev" in e.modes], ids=lambda e: e.name)
@pytest.mark.parametrize("seed", [0, 1])
def test_tape_matches_linearize_and_jax(entry, seed):
    args = _sample(entry, seed)
    r = np.random.default_rng(seed + 7)
    with np.errstate(all="ignore"):
        out = entry.tg(*args)
        ct = jax.tree_util.tree_map(lambda o: _rand_tangent(r, o), out)
        out_t, got_t, out_l, got_l = _vjp_both_ways(entry, args, ct)
        want = jax.vjp(entry.jx, *[jnp.asarray(a) for a in args])[1](ct)
    assert_close(out_t, out_l, what=f"{entry.name} primal")
    fl = [tg.dtypes.is_float(np.asarray(a).dtype) for a in args]
    pick = lambda gs: [g for g, f in zip(gs, fl) if f]  # noqa: E731
    tol = dict(rtol=1e-4, atol=1e-5) if any(np.asarray(a).dtype == np.float32 for a in args) else {}
    assert_close(pick(got_t), pick(got_l), what=f"{entry.name} tape vs linearize", **tol)
    assert_close(pick(got_t), pick(want), what=f"{entry.name} tape vs jax", **tol)


def _second_order(entry, args, ct):
    """d/dargs <ct', pullback(ct)>: reverse mode over the pullback's program
    (which holds the add_any and transposed ops the table itself lacks)."""
    def inner(*a):
        gs = tg.vjp(entry.tg, *a)[1](ct)
        return sum(tnp.sum(tnp.real(g * tnp.conj(g))) for g in gs if tg.dtypes.is_float(g.dtype))
    return inner


@pytest.mark.parametrize("entry", [e for e in TABLE if "rev" in e.modes], ids=lambda e: e.name)
def test_tape_second_order_matches_linearize(entry):
    args = _sample(entry, 3)
    r = np.random.default_rng(11)
    fl = [tg.dtypes.is_float(np.asarray(a).dtype) for a in args]
    if not any(fl):
        return
    with np.errstate(all="ignore"):
        ct = jax.tree_util.tree_map(lambda o: _rand_tangent(r, o), entry.tg(*args))
        inner = _second_order(entry, args, ct)
        argnums = tuple(i for i, f in enumerate(fl) if f)
        g_tape, g_lin = _grad_both_ways(inner, *args, argnums=argnums)
    assert_close(g_tape, g_lin, rtol=1e-6, atol=1e-8, what=f"{entry.name} second order")


def test_every_direct_vjp_rule_is_exercised_by_the_table():
    covered = set()
    for e in TABLE:
        if "rev" in e.modes:
            args = _sample(e, 0)
            with np.errstate(all="ignore"):
                _prims(tg.make_jaxpr(e.tg)(*args).jaxpr, covered)
                ct = jax.tree_util.tree_map(lambda o: _rand_tangent(np.random.default_rng(0), o), e.tg(*args))
                _prims(tg.make_jaxpr(lambda *a: tg.vjp(e.tg, *a)[1](ct))(*args).jaxpr, covered)
    # (zero-derivative primitives share ad.zero_vjp: their outputs are constants)
    with_rule = {n for n, p in core.registry.items() if p.vjp not in (None, ad.zero_vjp)}
    assert with_rule, "no primitive has a direct vjp rule"
    assert not with_rule - covered, f"direct vjp rules not in the table: {sorted(with_rule - covered)}"


def test_zero_derivative_primitives_stay_off_the_tape():
    def f(x):
        k = tnp.floor(x * 3.0) + tnp.sign(x) + tg.stop_gradient(x * x)
        return tnp.sum(k * x)
    x = np.array([-0.7, 0.2, 1.4])
    pull = tape.vjp_flat(lambda x: [f(x)], [x])[1]
    # x * 3.0 and x * x are recorded (their cotangents are never asked for),
    # then k * x and the sum; floor, sign, stop_gradient and the adds of
    # constants are not
    assert len(pull.tape.entries) == 4
    assert_close(tg.grad(f)(x), jax.grad(lambda x: jnp.sum((jnp.floor(x * 3.0) + jnp.sign(x)
                                                            + jax.lax.stop_gradient(x * x)) * x))(x))


def _mlp(np_):
    def loss(params, x):
        h = x
        for w, b in params[:-1]:
            h = np_.tanh(h @ w + b)
        w, b = params[-1]
        logits = h @ w + b
        return np_.sum(logits - np_.max(logits, axis=1, keepdims=True)) / x.shape[0]
    return loss


def test_mlp_gradient_same_both_ways():
    r = np.random.default_rng(0)
    params = [(r.standard_normal((4, 8)), r.standard_normal(8)), (r.standard_normal((8, 3)), np.zeros(3))]
    x = r.standard_normal((5, 4))
    g_tape = tg.grad(_mlp(tnp))(params, x)
    config.eager_tape = False
    try:
        g_lin = tg.grad(_mlp(tnp))(params, x)
    finally:
        config.eager_tape = True
    assert_close(g_tape, g_lin)
    jparams = jax.tree_util.tree_map(jnp.asarray, params)
    assert_close(g_tape, jax.grad(_mlp(jnp))(jparams, jnp.asarray(x)))


def test_pullback_under_vmap_jit_and_grad():
    f = lambda x: tnp.sin(x) * x + tnp.tanh(x) / (1.0 + x * x)  # noqa: E731
    fj = lambda x: jnp.sin(x) * x + jnp.tanh(x) / (1.0 + x * x)  # noqa: E731
    x = np.linspace(-1.0, 1.0, 5)
    _, pull = tg.vjp(f, x)          # recorded eagerly: a tape
    _, pull_j = jax.vjp(fj, jnp.asarray(x))
    cts = np.eye(5)
    assert_close(tg.vmap(pull)(cts), jax.vmap(pull_j)(cts))          # the jacobian, batched
    assert_close(tg.jit(pull)(cts[1]), pull_j(cts[1]))
    # a pullback is a function of its cotangent: differentiate through it
    assert_close(tg.grad(lambda c: tnp.sum(pull(c)[0] ** 2))(cts[2]),
                 jax.grad(lambda c: jnp.sum(pull_j(c)[0] ** 2))(cts[2]))
    # called twice: the tape is not consumed
    assert_close(pull(cts[3]), pull(cts[3]))


def test_higher_order_and_mixed_modes_eagerly():
    f = lambda x: tnp.sum(tnp.sin(x) ** 3 * tnp.exp(-x))  # noqa: E731
    fj = lambda x: jnp.sum(jnp.sin(x) ** 3 * jnp.exp(-x))  # noqa: E731
    x = np.linspace(0.1, 1.0, 4)
    assert_close(tg.grad(lambda x: tnp.sum(tg.grad(f)(x)))(x), jax.grad(lambda x: jnp.sum(jax.grad(fj)(x)))(x))
    assert_close(tg.hessian(f)(x), jax.hessian(fj)(x))
    assert_close(tg.jvp(tg.grad(f), (x,), (np.ones(4),)), jax.jvp(jax.grad(fj), (x,), (jnp.ones(4),)))
    assert_close(tg.grad(lambda x: tg.jvp(f, (x,), (np.ones(4),))[1])(x),
                 jax.grad(lambda x: jax.jvp(fj, (x,), (jnp.ones(4),))[1])(x))
    # no perturbation confusion: d/dx [x * d/dy (x + y)] = 1
    assert tg.grad(lambda x: x * tg.grad(lambda y: x + y)(1.0))(2.0) == 1.0


def test_python_control_flow_and_concrete_values_under_eager_grad():
    def f(x):
        if tnp.sum(x) > 0:          # concrete: the tape holds values
            return tnp.sum(tnp.sin(x)) * float(tnp.max(x))
        return tnp.sum(x)
    x = np.array([0.5, 1.5])
    assert_close(tg.grad(f)(x), np.cos(x) * 1.5)
    assert_close(tg.grad(f)(-x), np.ones(2))


def test_integer_inputs_unused_inputs_and_constant_outputs():
    def f(x, n, unused):
        return tnp.sum(x ** n), n * 2, tnp.ones(3)
    x = np.array([1.0, 2.0])
    out, pull = tg.vjp(f, x, 3, np.ones(2))
    g = pull((np.float64(1.0), np.zeros((), tg.dtypes.float0), np.ones(3)))
    assert_close(g[0], 3 * x ** 2)
    assert g[1].dtype == tg.dtypes.float0
    assert_close(g[2], np.zeros(2))


def test_leaked_tape_tracer_is_an_error():
    leaked = []

    def f(x):
        leaked.append(x)
        return tnp.sum(x)
    tg.grad(f)(np.ones(2))
    assert isinstance(leaked[0], tape.TapeTracer)
    with pytest.raises(core.LeakedTracerError, match="escaped"):
        tnp.sin(leaked[0]) + 1.0


def test_the_tape_is_used_eagerly_only():
    f = lambda x: [tnp.sin(x)]  # noqa: E731
    assert isinstance(tape.vjp_flat(f, [np.ones(2)])[1], tape.TapeFunction)
    seen = []
    tg.jit(lambda x: seen.append(type(tape.vjp_flat(f, [x])[1])) or x)(np.ones(2))
    assert seen == [tg.interpreters.ad.LinearFunction]
    config.eager_tape = False
    try:
        assert isinstance(tape.vjp_flat(f, [np.ones(2)])[1], tg.interpreters.ad.LinearFunction)
    finally:
        config.eager_tape = True


def test_traced_grad_does_not_use_the_tape():
    """Under jit/make_jaxpr reverse mode is linearize + transpose: the jaxpr
    shows the linearized program (no tape tracers can be staged)."""
    jaxpr = tg.make_jaxpr(tg.grad(lambda x: tnp.sum(tnp.sin(x))))(np.ones(3))
    names = [e.primitive.name for e in jaxpr.jaxpr.eqns]
    assert "cos" in names and "mul" in names
