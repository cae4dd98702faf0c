"""Structured control flow (tracegrad.lax: cond, switch, while_loop,
fori_loop, scan, map) under every transformation, against JAX (x64).

Each program is written once as make(lax, numpy) and instantiated with
(tracegrad.lax, tracegrad.numpy) and (jax.lax, jax.numpy). Checked: eager,
jit, jvp, vjp/grad, vmap (several in_axes, batched predicates), vmap of grad,
grad of vmap, jit of grad; zero-length scans and loops that never run;
nested AD through scan; the error messages.
"""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tracegrad as tg
import tracegrad.numpy as tnp
from oracle import assert_close, check_eval, check_jvp, check_lowering, check_vjp, check_vmap
from tracegrad import core

jtu = jax.tree_util


def both(make, *a):
    return make(tg.lax, tnp, *a), make(jax.lax, jnp, *a)


def jit_check(tf, args, ref):
    """tracegrad.jit(tf)(*args) == ref; without jit, the lowering path."""
    if hasattr(tg, "jit"):
        assert_close(tg.jit(tf)(*args), ref, what="jit")
    else:
        check_lowering(tf, args)


def loss_of(f, N):
    """A scalar of all float outputs of f (weights keep every output live)."""
    def loss(*a):
        leaves = [x for x in jtu.tree_leaves(f(*a)) if np.dtype(x.dtype).kind == "f"]
        return sum(N.sum(N.sin(x) * (k + 1.0)) for k, x in enumerate(leaves))
    return loss


def stack2(a, axis):
    a = np.asarray(a)
    return np.stack([a, (a * 0.5 + 0.25).astype(a.dtype)], axis=axis)


def check_all(make, args, argnums, in_axes_list, extra=(), tol=None):
    """eager, jit, jvp, vjp, vmap(in_axes...), vmap∘grad, grad∘vmap, jit∘grad.
    argnums: the float args that are differentiated (others held fixed)."""
    tol = tol or {}
    tf, jf = both(make, *extra)
    check_eval(tf, jf, *args, **tol)
    jit_check(tf, args, jf(*args))

    def fix(f):  # f of the differentiated args only
        def g(*d):
            full = list(args)
            for i, x in zip(argnums, d):
                full[i] = x
            return f(*full)
        return g

    dargs = [args[i] for i in argnums]
    check_jvp(fix(tf), fix(jf), dargs, **tol)
    check_vjp(fix(tf), fix(jf), dargs, **tol)
    for axes in in_axes_list:
        bargs = [a if ax is None else stack2(a, ax) for a, ax in zip(args, axes)]
        check_vmap(tf, jf, bargs, in_axes=axes, **tol)
    tl, jl = loss_of(fix(tf), tnp), loss_of(fix(jf), jnp)
    nums = tuple(range(len(dargs)))
    ref_g = jax.grad(jl, nums)(*dargs)
    assert_close(tg.grad(tl, nums)(*dargs), ref_g, what="grad", **tol)
    if hasattr(tg, "jit"):
        assert_close(tg.jit(tg.grad(tl, nums))(*dargs), ref_g, what="jit(grad)", **tol)
    bd = [stack2(a, 0) for a in dargs]
    assert_close(tg.vmap(tg.grad(tl, nums))(*bd), jax.vmap(jax.grad(jl, nums))(*bd),
                 what="vmap(grad)", **tol)
    gv = lambda L, V, N: L(lambda *a: N.sum(V(tl if N is tnp else jl)(*a)), nums)
    assert_close(gv(tg.grad, tg.vmap, tnp)(*bd), gv(jax.grad, jax.vmap, jnp)(*bd),
                 what="grad(vmap)", **tol)


# --------------------------------------------------------------------------
# scan


def make_scan(L, N, reverse, unroll, kind):
    """A body with a pytree carry (float array, int counter), a closed-over
    const, an explicit const argument, two xs and two ys."""
    def f(c0, xs, w):
        k = N.cos(w) * 0.5  # closed over by the body

        def body(carry, x):
            c, n = carry
            x1, x2 = x
            c2 = N.sin(c) * k + x1 * c - x2 * w
            if kind == 1:
                c2 = N.tanh(c2 + c * c)
            return (c2, n + 1), {"y": c2 * 2.0 + w, "z": N.cos(x1) * c}

        return L.scan(body, (c0, 0), (xs, xs * 0.3 + 1.0), reverse=reverse, unroll=unroll)
    return f


shapes_ = st.sampled_from([(), (2,), (2, 3), (0,)])


SCAN_AXES = [(0, 0, 0), (None, 1, None), (0, None, None), (None, None, 0)]


@settings(max_examples=12)
@given(length=st.integers(0, 14), reverse=st.booleans(), kind=st.integers(0, 1),
       seed=st.integers(0, 100))
def test_scan_auto_unroll_matches_jax(length, reverse, kind, seed):
    """unroll=None (tracegrad's default): a compiled small body runs 4 steps
    per loop iteration, then the remainder in a one-step loop; the results
    are JAX's (unroll=1), and so are the gradients through both loops."""
    rng = np.random.default_rng(seed)
    c0, w = rng.standard_normal(3), rng.standard_normal(3)
    xs = rng.standard_normal((length, 3))
    tf = make_scan(tg.lax, tnp, reverse, None, kind)
    jf = make_scan(jax.lax, jnp, reverse, 1, kind)
    assert_close(tg.jit(tf)(c0, xs, w), jax.jit(jf)(c0, xs, w))
    loss = lambda f, N: lambda c0, xs, w: N.sum(f(c0, xs, w)[1]["y"]) + N.sum(f(c0, xs, w)[0][0])
    assert_close(tg.jit(tg.grad(loss(tf, tnp), (0, 1, 2)))(c0, xs, w),
                 jax.grad(loss(jf, jnp), (0, 1, 2))(c0, xs, w))


def _carry_ys_scan(N, L, reverse, unroll):
    """A scan whose ys include its incoming carries (as a gradient's saved
    residuals do), once each and one twice, beside an ordinary y."""
    def f(c0, xs):
        def body(c, x):
            a, k = c
            return (a * 0.5 + N.sin(x), k + 1.0), (a, x * 2.0, k, a)
        return L.scan(body, (c0, 0.0), xs, reverse=reverse, unroll=unroll)
    return f


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("unroll", [1, 2, 3, None, True])
@pytest.mark.parametrize("length", [1, 2, 5, 11])
def test_scan_ys_that_are_the_incoming_carry(reverse, unroll, length):
    # stored from the previous step's outgoing carry (control_flow._carry_ys):
    # the values are JAX's, forwards and backwards, at every unroll, and so
    # are the gradients (whose saved residuals take the same path)
    rng = np.random.default_rng(length)
    c0, xs = rng.standard_normal(3), rng.standard_normal((length, 3))
    tf = _carry_ys_scan(tnp, tg.lax, reverse, unroll)
    jf = _carry_ys_scan(jnp, jax.lax, reverse, 1 if unroll is None else unroll)
    assert_close(tg.jit(tf)(c0, xs), jax.jit(jf)(c0, xs))
    loss = lambda f, N: lambda c0, xs: N.sum(N.cos(f(c0, xs)[1][0]) * f(c0, xs)[1][1])
    assert_close(tg.jit(tg.grad(loss(tf, tnp), (0, 1)))(c0, xs),
                 jax.grad(loss(jf, jnp), (0, 1))(c0, xs))


def test_scan_stores_an_incoming_carry_y_from_the_step_before():
    f = _carry_ys_scan(tnp, tg.lax, False, 1)
    text = tg.jit(f).lower(np.ones(3), np.ones((10, 3))).as_text()
    assert "tensor<11x3xf64>" in text and "tensor<11xf64>" in text   # length + 1 rows

    # what it is for: a gradient's forward loop saves its incoming carries;
    # stored in the step, XLA copied each carry every iteration (3 copies
    # here, the LSTM's gradient 9); now only the step counter is copied
    def loss(w, xs):
        def step(c, x):
            h, k = c
            g = tnp.tanh(h * w + x)
            k = k * g + h
            return (g * k, k), None
        return tnp.sum(tg.lax.scan(step, (tnp.ones(64), tnp.ones(64)), xs)[0][0])
    jf = tg.jit(tg.grad(loss))
    jf(np.ones(64), np.ones((100, 64)))
    (rec,) = jf._fast.values()
    hlo = rec[-1].hlo_text()
    entry = hlo[hlo.index("\nENTRY"):]
    forward_body = re.search(r"body=(%[\w.]+)", entry).group(1)
    comp = hlo[hlo.index("\n" + forward_body + " "):]
    comp = comp[:comp.index("\n}")]
    assert comp.count(" copy(") <= 1


def _sine_count(f, *args):
    return tg.jit(f).lower(*args).as_text().count("stablehlo.sine")


def test_scan_auto_unroll_structure():
    body = lambda c, x: (tnp.sin(c) + x, None)
    run = lambda unroll, n=3, reverse=True: (
        lambda xs: tg.lax.scan(body, tnp.zeros(n), xs, unroll=unroll, reverse=reverse)[0])
    # a backward loop of 10 steps: a loop of 2 x 4 steps, then a one-step loop for the last 2
    assert _sine_count(run(None), np.ones((10, 3))) == 4 + 1
    assert _sine_count(run(None), np.ones((9, 3))) == 4 + 1  # remainder 1: one step inline
    assert _sine_count(run(None), np.ones((7, 3))) == 1      # too short to unroll
    assert _sine_count(run(None, reverse=False), np.ones((10, 3))) == 1  # forward: rolled
    assert _sine_count(run(1), np.ones((10, 3))) == 1        # the user's factor wins
    assert _sine_count(run(2), np.ones((10, 3))) == 2
    assert _sine_count(run(2, reverse=False), np.ones((10, 3))) == 2
    big = 70000  # elements per step over the budget: stays rolled
    assert _sine_count(run(None, big), np.ones((10, big))) == 1
    w = np.eye(3, dtype=np.float32)  # a matmul in the body: stays rolled
    mm = lambda xs: tg.lax.scan(lambda c, x: (tnp.sin(w @ c) + x, None),
                                tnp.zeros(3, np.float32), xs, reverse=True)[0]
    assert _sine_count(mm, np.ones((10, 3), np.float32)) == 1


def test_a_gradient_unrolls_its_backward_loop_only():
    body = lambda N: lambda c, x: (N.sin(c) * x, None)
    f = lambda xs: tnp.sum(tg.lax.scan(body(tnp), tnp.ones(3), xs)[0])
    text = tg.jit(tg.grad(f)).lower(np.ones((10, 3))).as_text()
    # the forward loop stays rolled: one step's sin and cos (its residual);
    # the backward loop runs 2 x 4 steps, then a loop for the last 2
    assert text.count("stablehlo.sine") == 1 and text.count("stablehlo.cosine") == 1
    assert text.count("stablehlo.while") == 1 + 2
    xs = np.linspace(0.5, 1.5, 30).reshape(10, 3)
    ref = jax.grad(lambda xs: jnp.sum(jax.lax.scan(body(jnp), jnp.ones(3), xs)[0]))(xs)
    np.testing.assert_allclose(tg.jit(tg.grad(f))(xs), ref, rtol=1e-12)


@settings(max_examples=4)
@given(shape=shapes_, length=st.integers(0, 4), reverse=st.booleans(),
       unroll=st.sampled_from([1, 2, 3]), kind=st.integers(0, 1),
       axes=st.sampled_from(SCAN_AXES), seed=st.integers(0, 100))
def test_scan_matches_jax(shape, length, reverse, unroll, kind, axes, seed):
    rng = np.random.default_rng(seed)
    c0 = rng.standard_normal(shape)
    xs = rng.standard_normal((length,) + shape)
    w = rng.standard_normal(shape)
    check_all(make_scan, (c0, xs, w), (0, 1, 2), [axes], extra=(reverse, unroll, kind))


def test_scan_float32_and_dtypes_preserved():
    tf, jf = both(make_scan, False, 1, 0)
    args = (np.ones(3, np.float32), np.linspace(0, 1, 12, dtype=np.float32).reshape(4, 3),
            np.full(3, 0.5, np.float32))
    out = check_eval(tf, jf, *args)
    assert out[0][0].dtype == np.float32 and out[0][1].dtype == jf(*args)[0][1].dtype
    jit_check(tf, args, jf(*args))
    check_vjp(lambda *a: tf(*a)[1], lambda *a: jf(*a)[1], args)


def test_scan_zero_length_and_no_xs():
    # zero-length: the carry passes through, ys are empty with the right shape
    f = lambda L, N: (lambda c, xs: L.scan(lambda c, x: (c * x, (c + x, x > 0)), c, xs))
    tf, jf = both(f)
    args = (np.ones(2), np.zeros((0, 2)))
    check_eval(tf, jf, *args)
    jit_check(tf, args, jf(*args))
    check_vjp(lambda c, xs: tf(c, xs)[0], lambda c, xs: jf(c, xs)[0], args)
    # xs=None with length
    g = lambda L, N: (lambda c: L.scan(lambda c, _: (N.sin(c) + 1.0, c), c, None, length=3))
    tg_, jg = both(g)
    check_eval(tg_, jg, np.arange(3.0))
    check_vjp(tg_, jg, (np.arange(3.0),))
    assert_close(tg.lax.map(lambda x: tnp.sin(x) * 2, np.arange(6.0).reshape(3, 2)),
                 jax.lax.map(lambda x: jnp.sin(x) * 2, np.arange(6.0).reshape(3, 2)))


def test_scan_residuals_are_not_stacked_for_consts():
    """Reverse mode saves loop-invariant values (W) once, not per iteration."""
    def rnn_loss(W, h0, xs):
        def step(h, x):
            h = tnp.tanh(W @ h + x) if hasattr(tnp, "matmul") else tnp.tanh(tnp.sum(W * h, axis=1) + x)
            return h, h
        h, hs = tg.lax.scan(step, h0, xs)
        return tnp.sum(hs) + tnp.sum(h)

    W, h0, xs = np.eye(4) * 0.5, np.ones(4), np.ones((50, 4))
    j = tg.make_jaxpr(tg.grad(rnn_loss))(W, h0, xs)
    scans = [e for e in j.jaxpr.eqns if e.primitive.name == "scan"]
    assert len(scans) == 2  # forward (known) scan and the transposed scan
    for e in scans:
        for v in e.outvars:
            assert v.aval.shape != (50, 4, 4), f"W stacked per iteration: {e.outvars}"
    # the transposed scan runs backwards and accumulates the cotangent of W
    assert scans[1].params["reverse"] is True
    assert any(v.aval.shape == (4, 4) for v in scans[1].outvars)


def test_scan_loop_invariant_residuals_are_hoisted():
    """A residual computed from consts only (exp(0.1 w)) is computed once,
    outside the loop, and passed to the backward scan as a const."""
    def make(L, N):
        return lambda c, xs, w: N.sum(L.scan(lambda c, x: (N.exp(w * 0.1) * N.sin(c) + x, c),
                                             c, xs)[0])
    tf, jf = both(make)
    args = (np.linspace(0, 1, 3), np.linspace(-1, 1, 12).reshape(4, 3), np.arange(3.0))
    assert_close(tg.grad(tf, (0, 1, 2))(*args), jax.grad(jf, (0, 1, 2))(*args))
    j = tg.make_jaxpr(tg.grad(tf, (0, 1, 2)))(*args)
    assert j.jaxpr.eqns[1].primitive.name == "exp"  # hoisted before the forward scan
    fwd, bwd = [e for e in j.jaxpr.eqns if e.primitive.name == "scan"]
    assert [v.aval.shape for v in fwd.outvars] == [(3,), (4, 3), (4, 3)]  # carry, cos c, sin c
    assert bwd.params["num_consts"] == 1 and bwd.invars[0] is j.jaxpr.eqns[1].outvars[0]
    # unknowns that feed no output: no residuals, a zero gradient
    g = lambda L, N: (lambda x, y: N.sum(L.scan(lambda c, x: ((c[0] * 2.0, c[1] + y), c[0] * x),
                                                (x, y), np.ones(3))[1]))
    tg_, jg = both(g)
    assert_close(tg.grad(tg_, (0, 1))(1.5, 2.0), jax.grad(jg, (0, 1))(1.5, 2.0))


def test_scan_dce_drops_unused_outputs_and_carries():
    def f(c, xs):
        def body(carry, x):
            a, b = carry
            return (a + x, tnp.sin(b) * 2.0), (a * x, tnp.cos(b))
        (a, b), (y1, y2) = tg.lax.scan(body, (c, c), xs)
        return a, y1  # b and y2 are dead, and b does not feed a or y1
    j = tg.make_jaxpr(f)(np.ones(2), np.ones((3, 2)))
    (e,) = [e for e in j.jaxpr.eqns if e.primitive.name == "scan"]
    assert len(e.outvars) == 2 and e.params["num_carry"] == 1
    names = {q.primitive.name for q in e.params["jaxpr"].jaxpr.eqns}
    assert "sin" not in names and "cos" not in names
    assert_close(core.eval_jaxpr(j.jaxpr, j.consts, np.ones(2), np.ones((3, 2))),
                 list(f(np.ones(2), np.ones((3, 2)))))


def test_scan_with_checkpoint_saves_fewer_residuals():
    def body(c, x):
        h = tnp.sin(c) * x
        h = tnp.cos(h) * c
        return tnp.tanh(h) + h * 0.1, None

    def loss(c, xs, remat):
        return tnp.sum(tg.lax.scan(tg.checkpoint(body) if remat else body, c, xs)[0])

    def n_stacked(remat, body=body):
        j = tg.make_jaxpr(tg.grad(lambda c, xs: tnp.sum(tg.lax.scan(
            tg.checkpoint(body) if remat else body, c, xs)[0])))(np.ones(3), np.ones((5, 3)))
        fwd = [e for e in j.jaxpr.eqns if e.primitive.name == "scan"][0]
        return sum(1 for v in fwd.outvars if v.aval.shape[:1] == (5,))

    # staged, a cheap elementwise body with many residuals is rematerialized
    # automatically: only the carry is stacked, as with an explicit checkpoint
    assert n_stacked(True) == n_stacked(False) == 1
    # a body with a matmul keeps its residuals (recomputing it would cost more)
    w = np.eye(3) * 0.5

    def mm_body(c, x):
        h = tnp.sin(c @ w) * x
        return tnp.tanh(h) * c, None
    assert n_stacked(False, mm_body) > n_stacked(True, mm_body)
    c, xs = np.linspace(0.1, 0.5, 3), np.linspace(-1, 1, 15).reshape(5, 3)
    jbody = lambda c, x: (jnp.tanh(jnp.cos(jnp.sin(c) * x) * c) + jnp.cos(jnp.sin(c) * x) * c * 0.1, None)
    ref = jax.grad(lambda c: jnp.sum(jax.lax.scan(jbody, c, xs)[0]))(c)
    assert_close(tg.grad(lambda c: loss(c, xs, True))(c), ref)


def test_auto_remat_of_scan_matches_jax_under_jit():
    """jit(grad) of an LSTM-like elementwise scan (auto-rematerialized) and of
    one with a matmul (not), against JAX."""
    r = np.random.default_rng(0)
    w, u = r.standard_normal(4) * 0.5, r.standard_normal((4, 4)) * 0.3
    xs = r.standard_normal((7, 4))

    def make(np_, with_dot):
        def loss(c, w):
            def step(carry, x):
                h, s = carry
                g = (np_.concatenate([x, h]) * np_.concatenate([w, w]))[:4] + (h @ u if with_dot else h)
                s = s * np_.tanh(g) + np_.sin(g) * 0.5
                return (np_.tanh(s) * h + x, s), np_.sum(s)
            (h, s), ys = (tg.lax if np_ is tnp else jax.lax).scan(step, (c, c * 0.5), xs)
            return np_.sum(h * s) + np_.sum(ys)
        return loss
    c = r.standard_normal(4)
    for with_dot in (False, True):
        want = jax.jit(jax.grad(make(jnp, with_dot), argnums=(0, 1)))(c, w)
        assert_close(tg.jit(tg.grad(make(tnp, with_dot), argnums=(0, 1)))(c, w), want)
        assert_close(tg.grad(make(tnp, with_dot), argnums=(0, 1))(c, w), want)


def test_scan_make_jaxpr_prints_like_jax():
    j = tg.make_jaxpr(lambda c, xs: tg.lax.scan(lambda c, x: (c + x, c * x), c, xs))(1.0, np.ones(3))
    s = str(j)
    assert "scan[jaxpr=" in s and "length=3" in s and "num_carry=1" in s and "num_consts=0" in s
    assert "reverse=False" in s


# --------------------------------------------------------------------------
# cond / switch


def make_cond(L, N):
    def f(p, x, y):
        k = N.exp(y * 0.1)  # captured by one branch only
        return L.cond(p > 0,
                      lambda a, b: {"u": N.sin(a["v"]) * b, "w": a["v"] + 1.0},
                      lambda a, b: {"u": a["v"] * b * k, "w": N.cos(a["v"]) * 2.0},
                      {"v": x}, y)
    return f


COND_AXES = [(None, 0, 0), (0, 0, None), (0, None, None), (0, 0, 0)]


@settings(max_examples=4)
@given(shape=shapes_, p=st.sampled_from([-1.0, 0.0, 2.0]), axes=st.sampled_from(COND_AXES),
       seed=st.integers(0, 100))
def test_cond_matches_jax(shape, p, axes, seed):
    rng = np.random.default_rng(seed)
    args = (np.float64(p), rng.standard_normal(shape), rng.standard_normal(shape))
    # the batched-predicate case (both branches run, then select) always
    check_all(make_cond, args, (1, 2), [axes] if axes[0] == 0 else [axes, (0, 0, 0)])


def make_switch(L, N):
    def f(i, x):
        return L.switch(i, [lambda a: N.sin(a), lambda a: a * 2.0, lambda a: N.exp(a) - a * a], x)
    return f


@pytest.mark.parametrize("i", [-3, 0, 1, 2, 9])
def test_switch_clamps_index(i):
    tf, jf = both(make_switch)
    x = np.linspace(-1, 1, 4)
    args = (np.int32(i), x)
    check_eval(tf, jf, *args)
    jit_check(tf, args, jf(*args))
    check_vjp(lambda x: tf(np.int32(i), x), lambda x: jf(np.int32(i), x), (x,))
    check_jvp(lambda x: tf(np.int32(i), x), lambda x: jf(np.int32(i), x), (x,))


def test_switch_batched_index_and_grad():
    tf, jf = both(make_switch)
    idx = np.array([-1, 0, 1, 2, 5], np.int32)
    xs = np.linspace(-1, 1, 15).reshape(5, 3)
    check_vmap(tf, jf, (idx, xs))
    check_vmap(tf, jf, (np.int32(2), xs), in_axes=(None, 0))
    tl, jl = loss_of(tf, tnp), loss_of(jf, jnp)
    assert_close(tg.vmap(tg.grad(tl, 1))(idx, xs), jax.vmap(jax.grad(jl, 1))(idx, xs))
    assert_close(tg.jit(tg.vmap(tf))(idx, xs), jax.vmap(jf)(idx, xs))


def test_cond_int_pred_and_literal_branch():
    # numeric predicates are compared with 0; a branch may return a constant
    f = lambda L, N: (lambda p, x: L.cond(p, lambda x: x * 3.0, lambda x: 1.0, x))
    tf, jf = both(f)
    for p in (0, 3):
        check_eval(tf, jf, np.int64(p), 2.5)
        check_vjp(lambda x: tf(np.int64(p), x), lambda x: jf(np.int64(p), x), (np.float64(2.5),))
    assert tg.make_jaxpr(lambda x: tf(1, x))(np.float64(2.5)).out_avals[0].weak_type is False
    assert tg.make_jaxpr(lambda x: tf(1, x))(2.5).out_avals[0].weak_type is True


def test_cond_closure_over_outer_tracer():
    """A branch that closes over a value being differentiated."""
    def make(L, N):
        def f(x, y):
            return L.cond(x.sum() > 0, lambda: N.sin(x) * y, lambda: x * 0.0)
        return f
    tf, jf = both(make)
    args = (np.array([0.3, 0.4]), np.array([1.5, -2.0]))
    for argnums in (0, 1, (0, 1)):
        assert_close(tg.jacrev(tf, argnums)(*args), jax.jacrev(jf, argnums)(*args))
        assert_close(tg.jacfwd(tf, argnums)(*args), jax.jacfwd(jf, argnums)(*args))
    check_vmap(tf, jf, [stack2(a, 0) for a in args])


def test_cond_dce_drops_unused_outputs():
    def f(p, x):
        a, b = tg.lax.cond(p, lambda x: (tnp.sin(x), tnp.cos(x)), lambda x: (x, tnp.exp(x)), x)
        return a
    j = tg.make_jaxpr(f)(True, np.ones(2))
    (e,) = [e for e in j.jaxpr.eqns if e.primitive.name == "cond"]
    assert len(e.outvars) == 1
    assert all(q.primitive.name not in ("cos", "exp")
               for br in e.params["branches"] for q in br.jaxpr.eqns)


# --------------------------------------------------------------------------
# while_loop / fori_loop


def make_while(L, N):
    def f(x, n):
        def c(s):
            return s[0] < n

        def b(s):
            i, u, v = s
            return i + 1, N.sin(u) * 1.5 + v, v * 0.9 + u * 0.05

        return L.while_loop(c, b, (0, x, x * 0.5))
    return f


@settings(max_examples=5)
@given(shape=shapes_, n=st.integers(0, 4), seed=st.integers(0, 100))
def test_while_matches_jax(shape, n, seed):
    rng = np.random.default_rng(seed)
    tf, jf = both(make_while)
    x = rng.standard_normal(shape)
    args = (x, np.int64(n))
    check_eval(tf, jf, *args)
    jit_check(tf, args, jf(*args))
    fx = lambda f: (lambda x: f(x, np.int64(n))[1:])
    check_jvp(fx(tf), fx(jf), (x,))
    # linearize (jvp + partial eval) works through while_loop, as in JAX
    t = rng.standard_normal(shape)
    _, lin = tg.linearize(fx(tf), x)
    assert_close(lin(t), jax.jvp(fx(jf), (x,), (t,))[1], what="linearize")
    # vmap: batched predicate (lanes finish at different times) and unbatched
    xb = np.stack([x, x * 0.5, -x])
    check_vmap(tf, jf, (xb, np.array([0, n, 3])))
    check_vmap(tf, jf, (xb, np.int64(n)), in_axes=(0, None))
    check_vmap(tf, jf, (x, np.array([n, 1, 0])), in_axes=(None, 0))
    # jacfwd (vmap of jvp) and jit of jvp through the loop
    assert_close(tg.jacfwd(lambda x: fx(tf)(x)[0])(x), jax.jacfwd(lambda x: fx(jf)(x)[0])(x))
    assert_close(tg.jit(lambda x, t: tg.jvp(fx(tf), (x,), (t,)))(x, t),
                 jax.jvp(fx(jf), (x,), (t,)), what="jit(jvp)")
    bn = np.array([0, 2, 4])
    assert_close(tg.jit(tg.vmap(tf, (0, 0)))(xb, bn), jax.vmap(jf, (0, 0))(xb, bn),
                 what="jit(vmap)")


def test_while_forward_mode_through_closed_over_values():
    """Tangents that enter through the body's closure (not the carry): the
    carry tangents are found by a fixed point."""
    def make(L, N):
        def f(x, w):
            return L.while_loop(lambda s: s[0] < 4, lambda s: (s[0] + 1, N.sin(s[1]) * w + s[2], s[2]),
                                (0, x, 0.5 * x))[1]
        return f
    tf, jf = both(make)
    x, w = np.linspace(-1, 1, 3), np.linspace(0.5, 1.5, 3)
    for argnums in (0, 1, (0, 1)):
        assert_close(tg.jacfwd(tf, argnums)(x, w), jax.jacfwd(jf, argnums)(x, w))
    check_vmap(tf, jf, (x, stack2(w, 0)), in_axes=(None, 0))


def test_while_dce_drops_independent_carries():
    def h(x):
        i, a, b = tg.lax.while_loop(lambda s: s[0] < 3,
                                    lambda s: (s[0] + 1, s[1] * 2.0, tnp.sin(s[2])), (0, x, x))
        return a
    j = tg.make_jaxpr(h)(1.0)
    (e,) = j.jaxpr.eqns
    assert len(e.outvars) == 2 and "sin" not in str(j)
    assert_close(core.eval_jaxpr(j.jaxpr, j.consts, 1.0)[0], h(1.0))


def test_while_reverse_mode_error():
    tf, _ = both(make_while)
    with pytest.raises(core.TracegradError) as e:
        tg.grad(lambda x: tnp.sum(tf(x, 3)[1]))(np.ones(2))
    msg = str(e.value)
    assert "Reverse-mode differentiation does not work for lax.while_loop" in msg
    assert "scan" in msg and "fori_loop" in msg and "test_control_flow.py" in msg


def make_fori(L, N, lo, hi):
    return lambda x, w: L.fori_loop(lo, hi, lambda i, c: N.sin(c) * w + c * (i * 0.1), x)


@pytest.mark.parametrize("lo,hi", [(0, 4), (3, 1), (2, 2), (1, 5)])
def test_fori_loop_static_bounds_is_reverse_differentiable(lo, hi):
    x, w = np.linspace(-1, 1, 3), np.linspace(0.5, 1, 3)
    check_all(make_fori, (x, w), (0, 1), [(0, 0), (None, 0)], extra=(lo, hi))
    j = tg.make_jaxpr(make_fori(tg.lax, tnp, lo, hi))(x, w)
    assert any(e.primitive.name == "scan" for e in j.jaxpr.eqns)


def test_fori_loop_dynamic_bounds_is_a_while():
    f = lambda L, N: (lambda x, n: L.fori_loop(0, n, lambda i, c: c * 1.5 + i, x))
    tf, jf = both(f)
    j = tg.make_jaxpr(tf)(1.0, 3)
    assert any(e.primitive.name == "while" for e in j.jaxpr.eqns)
    for n in (0, 4):
        assert_close(tg.jit(tf)(1.0, n), jf(1.0, n))
        assert_close(tg.jvp(lambda x: tf(x, n), (1.0,), (1.0,)), jax.jvp(lambda x: jf(x, n), (1.0,), (1.0,)))
    # concrete Array bounds still give a scan (as JAX's concrete-bound check)
    assert_close(tg.grad(lambda x: tf(x, tnp.asarray(3)))(1.0), jax.grad(lambda x: jf(x, 3))(1.0))
    with pytest.raises(ValueError, match="unroll"):
        tg.jit(lambda x, n: tg.lax.fori_loop(0, n, lambda i, c: c, x, unroll=2))(1.0, 3)


# --------------------------------------------------------------------------
# nested AD and nested control flow


def make_particle(L, N, steps):
    """Leapfrog integration of a particle in a quartic potential with scan."""
    def potential(q, a):
        return N.sum(0.25 * q ** 4 - a * q ** 2 + 0.1 * q)

    def run(q0, p0, a):
        dt = 0.05

        def force(q):
            return -(q ** 3 - 2.0 * a * q + 0.1)

        def step(state, _):
            q, p = state
            p = p + 0.5 * dt * force(q)
            q = q + dt * p
            p = p + 0.5 * dt * force(q)
            return (q, p), potential(q, a)

        (q, p), vs = L.scan(step, (q0, p0), None, length=steps)
        return N.sum(p ** 2) * 0.5 + potential(q, a) + 0.01 * N.sum(vs)
    return run


def test_nested_ad_through_scan():
    tf, jf = both(make_particle, 12)
    q0, p0, a = np.array([0.3, -0.8]), np.array([0.1, 0.2]), np.float64(0.7)
    tg_g, jx_g = tg.grad(tf, (0, 1, 2)), jax.grad(jf, (0, 1, 2))
    assert_close(tg_g(q0, p0, a), jx_g(q0, p0, a), what="grad")
    v = (np.array([1.0, -0.5]), np.array([0.3, 0.2]), np.float64(0.4))
    # forward-over-reverse: Hessian-vector product
    hvp_t = tg.jvp(lambda *x: tg_g(*x), (q0, p0, a), v)
    hvp_j = jax.jvp(lambda *x: jx_g(*x), (q0, p0, a), v)
    assert_close(hvp_t, hvp_j, what="jvp(grad)")
    # reverse-over-reverse
    gg_t = tg.grad(lambda q: tnp.sum(tg.grad(tf)(q, p0, a) ** 2))(q0)
    gg_j = jax.grad(lambda q: jnp.sum(jax.grad(jf)(q, p0, a) ** 2))(q0)
    assert_close(gg_t, gg_j, what="grad(grad)")
    assert_close(tg.hessian(tf)(q0, p0, a), jax.hessian(jf)(q0, p0, a), what="hessian")
    assert_close(tg.jit(tg.hessian(tf))(q0, p0, a), jax.hessian(jf)(q0, p0, a), what="jit(hessian)")
    # per-example gradients of the whole simulation
    qb = np.stack([q0, q0 * 0.5, -q0])
    assert_close(tg.vmap(tg.grad(tf), (0, None, None))(qb, p0, a),
                 jax.vmap(jax.grad(jf), (0, None, None))(qb, p0, a), what="vmap(grad)")


def make_nested(L, N):
    def f(x, xs):
        def outer(c, row):
            # cond inside scan, scan inside cond, a fori (scan) inside scan
            c = L.cond(N.sum(c) > 0, lambda c: N.sin(c) * row,
                       lambda c: L.scan(lambda a, r: (a * 0.5 + r, a), c, N.stack([row, row * 2.0]))[0], c)
            c = L.fori_loop(0, 2, lambda i, a: N.tanh(a + row * i), c)
            return c, N.sum(c)
        return L.scan(outer, x, xs)
    return f


def test_nested_control_flow():
    x, xs = np.array([0.2, -0.5]), np.linspace(-1, 1, 8).reshape(4, 2)
    check_all(make_nested, (x, xs), (0, 1), [(0, 0), (None, 1), (0, None)])


def test_while_inside_scan_forward_mode():
    def make(L, N):
        def f(x):
            def body(c, n):
                return L.while_loop(lambda s: s[0] < n, lambda s: (s[0] + 1, N.sin(s[1]) + c),
                                    (0, c))[1], c
            return L.scan(body, x, np.array([0, 2, 1, 3]))
        return f
    tf, jf = both(make)
    x = np.array([0.1, 0.7])
    check_eval(tf, jf, x)
    check_jvp(tf, jf, (x,))
    check_vmap(tf, jf, (stack2(x, 0),))
    jit_check(tf, (x,), jf(x))


# --------------------------------------------------------------------------
# errors


def test_cond_branch_mismatch_error():
    with pytest.raises(TypeError) as e:
        tg.lax.cond(True, lambda x: {"a": x, "b": x}, lambda x: {"a": x, "b": x[:2].astype(np.float32)},
                    np.ones(3))
    msg = str(e.value)
    assert "['b']" in msg and "(3,)" in msg and "(2,)" in msg and "float32" in msg
    assert "float64" in msg and "test_control_flow.py" in msg
    with pytest.raises(TypeError, match="pytree structure"):
        tg.lax.cond(True, lambda x: (x, x), lambda x: x, 1.0)
    with pytest.raises(TypeError, match="branch 2"):
        tg.lax.switch(0, [lambda x: x, lambda x: x, lambda x: x.astype(np.int32)], 1.0)


def test_scan_and_while_carry_mismatch_errors():
    with pytest.raises(TypeError) as e:
        tg.lax.scan(lambda c, x: ((c[0], c[1][:2]), x), (1.0, np.zeros(3)), np.ones(4))
    msg = str(e.value)
    assert "carry[1]" in msg and "(3,)" in msg and "(2,)" in msg and "test_control_flow.py" in msg
    with pytest.raises(TypeError, match="structure"):
        tg.lax.scan(lambda c, x: ((c, c), x), 1.0, np.ones(4))
    with pytest.raises(TypeError, match="must be a pair"):
        tg.lax.scan(lambda c, x: c, 1.0, np.ones(4))
    with pytest.raises(TypeError) as e:
        tg.lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1].astype(np.float32)),
                          (0, np.ones(2)))
    assert "carry[1]" in str(e.value) and "float32" in str(e.value)
    with pytest.raises(TypeError, match="boolean scalar"):
        tg.lax.while_loop(lambda c: c, lambda c: c + 1, 1)
    with pytest.raises(ValueError, match="leading axis"):
        tg.lax.scan(lambda c, x: (c, x), 0.0, (np.ones(3), np.ones(4)))
    with pytest.raises(TypeError, match="[Pp]red must be a scalar"):
        tg.lax.cond(np.array([True, False]), lambda: 1.0, lambda: 2.0)


def test_weak_typed_init_is_promoted():
    f = lambda L, N: (lambda: L.while_loop(lambda c: c < 10, lambda c: c + 1.5, 0))
    assert_close(f(tg.lax, tnp)(), f(jax.lax, jnp)())
    g = lambda L, N: (lambda xs: L.scan(lambda c, x: (c + x, c), 0, xs))
    xs = np.arange(3, dtype=np.float32)
    assert_close(g(tg.lax, tnp)(xs), g(jax.lax, jnp)(xs))


def test_every_rule_is_registered():
    table = core.coverage(print_table=False)
    for name in ("cond", "while", "scan"):
        row = table[name]
        assert all(v is not False for v in row.values()), (name, row)
        p = core.registry[name]
        assert p.partial_eval is not None and p.dce is not None
    assert core.registry["while"].transpose is not None  # raises the clear error
