"""Eager scan / while_loop / fori_loop / cond run their bodies as NumPy
programs (interpreters/numpy_program.py: impl calls, interpreted or as
generated code). These tests compare that path, interpreted and compiled,
with evaluating the bodies equation by equation (eval_jaxpr + bind, the
path it replaces: values bit for bit, dtypes, weak types and error
messages), with tracegrad.jit and with JAX."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tracegrad as tg
import tracegrad.numpy as tnp
from oracle import assert_close
from tracegrad import core, dtypes
from tracegrad.interpreters import numpy_program

jtu = jax.tree_util


def both(make, *a):
    return make(tg.lax, tnp, *a), make(jax.lax, jnp, *a)


def slow(f, *args):
    """f(*args) with control-flow bodies evaluated by eval_jaxpr."""
    orig = numpy_program.program
    numpy_program.program = lambda closed, once=False: None
    try:
        return f(*args)
    finally:
        numpy_program.program = orig


def _leaves(t):
    return jtu.tree_leaves(t, is_leaf=lambda x: isinstance(x, tg.Array))


def assert_same(a, b, what="value"):
    """Equal structure, shapes, dtypes, weak types and bits (NaNs equal)."""
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb), what
    for i, (x, y) in enumerate(zip(la, lb)):
        assert getattr(x, "weak", False) == getattr(y, "weak", False), f"{what}[{i}] weak type"
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape and x.dtype == y.dtype, \
            f"{what}[{i}]: {x.shape} {x.dtype} vs {y.shape} {y.dtype}"
        if x.dtype != dtypes.float0:
            assert np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"), f"{what}[{i}]: {x} vs {y}"


class policy:
    """Run with another compile policy: compile=True compiles generated code
    at once (COMPILE_AFTER 1), False never compiles new text, with a fresh
    code cache (everything interpreted)."""

    def __init__(self, compile):
        self.compile = compile

    def __enter__(self):
        self.saved = numpy_program.COMPILE_AFTER, numpy_program._code_cache
        if self.compile:
            numpy_program.COMPILE_AFTER = 1
        else:
            numpy_program.COMPILE_AFTER = 10**9
            numpy_program._code_cache = {}

    def __exit__(self, *exc):
        numpy_program.COMPILE_AFTER, numpy_program._code_cache = self.saved


def each_policy(f, *args):
    """f(*args) interpreted, compiled at once, and with the default policy
    (code compiled by then): all equal (bits); returns the last."""
    with policy(False):
        outs = [f(*args)]
    with policy(True):
        outs.append(f(*args))
    outs.append(f(*args))
    for o in outs[1:]:
        assert_same(o, outs[0], "compile policies")
    return outs[-1]


def programs_used(f, *args):
    """f(*args), asserting that every control-flow body ran as a program."""
    made = []
    orig = numpy_program.program

    def record(closed, once=False):
        p = orig(closed, once)
        if not once:  # (a cond at the top runs its first time by eval_jaxpr)
            made.append(p)
        return p
    numpy_program.program = record
    try:
        out = f(*args)
    finally:
        numpy_program.program = orig
    assert all(p is not None for p in made), "a body fell back to eval_jaxpr"
    return out, made


def check(make, *args, grad=True, jit=True):
    """The program path == the eval_jaxpr path (bits), == JAX and jit (close,
    same dtypes); the same for grad when asked."""
    tf, jf = both(make)
    out, made = programs_used(tf, *args)
    assert made
    assert_same(out, slow(tf, *args), "eager vs eval_jaxpr")
    assert_same(each_policy(tf, *args), out)
    ref = jf(*args)
    assert_close(out, ref, what="eager vs JAX")
    for o, r in zip(_leaves(out), jtu.tree_leaves(ref)):
        if r.dtype != np.bool_:  # (tracegrad keeps Python bools weak, JAX does not)
            assert getattr(o, "weak", False) == r.weak_type, "weak type vs JAX"
    if jit:
        assert_close(tg.jit(tf)(*args), ref, what="jit vs JAX")
    if grad:
        def loss(f, N):
            def g(*a):
                leaves = [x for x in jtu.tree_leaves(f(*a)) if np.dtype(x.dtype).kind == "f"]
                return sum(N.sum(N.sin(x) * (k + 1.0)) for k, x in enumerate(leaves))
            return g
        gt, made = programs_used(tg.grad(loss(tf, tnp)), *args)
        assert made
        assert_same(gt, slow(tg.grad(loss(tf, tnp)), *args), "grad vs eval_jaxpr")
        assert_same(each_policy(tg.grad(loss(tf, tnp)), *args), gt)
        assert_close(gt, jax.grad(loss(jf, jnp))(*args), what="grad vs JAX")
    return out


# --------------------------------------------------------------------------
# dtypes of carries and ys


def make_dtypes(L, N):
    def f(x, xs):
        def body(c, xi):
            v, i, b, w, n = c
            v = v * np.float32(1.5) + xi          # float32
            i = i + 1                              # int32 counter
            b = N.logical_not(b)                   # bool
            w = w + 0.5                            # weakly typed float (init 0.0)
            n = n * 2                              # weakly typed int (init 1)
            return (v, i, b, w, n), (i * 2, b, N.sum(v), w, v > 0, n)
        return L.scan(body, (x, np.int32(0), True, 0.0, 1), xs)
    return f


@pytest.mark.parametrize("length", [0, 1, 2, 5])
def test_scan_carry_and_ys_dtypes(length):
    x = np.array([0.5, -1.0], np.float32)
    xs = np.linspace(-1, 1, 2 * length).astype(np.float32).reshape(length, 2)
    out = check(make_dtypes, x, xs, grad=length > 0)
    (v, i, b, w, n), ys = out
    assert v.dtype == np.float32 and i.dtype == np.int32 and b.dtype == np.bool_
    assert [np.asarray(y).dtype for y in ys] == [np.int32, np.bool_, np.float32,
                                                 np.float64, np.bool_, np.int64]


def make_reverse(L, N):
    def f(x, xs):
        def body(c, xi):
            c = N.tanh(c * xi + 1.0)
            return c, (c, N.sum(c * c))
        return L.scan(body, x, xs, reverse=True)
    return f


def test_reverse_scan():
    x = np.array([0.3, -0.2, 0.9])
    xs = np.linspace(-1, 2, 12).reshape(4, 3)
    check(make_reverse, x, xs)


def make_fori(L, N):
    def f(x):
        def body(i, c):
            v, k, flag = c
            v = v + N.sin(v * i)
            return v, k + i, N.logical_xor(flag, i % 2 == 0)
        return L.fori_loop(0, 7, body, (x, 0, False))
    return f


def make_while(L, N):
    def f(x):
        def cond(c):
            return (c[1] < 6) & (N.sum(c[0]) < 50.0)

        def body(c):
            v, k = c
            return v * 1.5 + k, k + 1
        return L.while_loop(cond, body, (x, 0))
    return f


def test_fori_and_while_int_bool_carries():
    x = np.array([0.2, 0.4])
    check(make_fori, x)
    check(make_while, x, grad=False)
    # dynamic bounds make fori_loop a while loop
    tf, jf = both(lambda L, N: lambda x, n: L.fori_loop(0, n, lambda i, c: c * 2.0 + i, x))
    out = each_policy(tf, x, np.int32(5))
    assert_same(out, slow(tf, x, np.int32(5)))
    assert_close(out, jf(x, np.int32(5)))


def make_int_carry(L, N):
    def f(x):
        def body(c, xi):
            k, v = c
            return (k + 1, v * xi + N.float64(0.0) * k), (k, v)
        return L.scan(body, (0, x), N.stack([x, x * 2.0, x - 1.0]))
    return f


def test_float0_tangents_and_cotangents():
    x = np.array([0.5, 1.5])
    tf, jf = both(make_int_carry)
    out, tan = each_policy(tg.jvp, tf, (x,), (np.ones(2),))
    ref, rtan = jax.jvp(jf, (x,), (np.ones(2),))
    assert_close(out, ref)
    assert_close(tan, rtan)  # int outputs: float0 tangents, as JAX
    assert np.asarray(tan[0][0]).dtype == dtypes.float0
    assert_same((out, tan), slow(tg.jvp, tf, (x,), (np.ones(2),)))
    check(make_int_carry, x)


# --------------------------------------------------------------------------
# nesting


def make_nested(L, N):
    @tg.jit
    def tg_inner(a, r):
        return tnp.sin(a) * r + 1.0

    def jitted(a, r):
        return tg_inner(a, r) if N is tnp else jax.jit(lambda a, r: jnp.sin(a) * r + 1.0)(a, r)

    def f(x, xs):
        def outer(c, row):
            c = L.scan(lambda a, r: (a * 0.5 + r, a * r), c, N.stack([row, row * 2.0]))[0]
            c = L.cond(N.sum(c) > 0, lambda c: N.sin(c) * row, lambda c: N.cos(c) - row, c)
            c = L.switch((N.sum(row) > 0.1).astype(N.int32) + 1, [lambda c: c, lambda c: c * 2.0,
                                                         lambda c: jitted(c, row)], c)
            c = L.fori_loop(0, 2, lambda i, a: N.tanh(a + row * i), c)
            return c, N.sum(c)
        return L.scan(outer, x, xs)
    return f


def test_nested_scan_cond_jit_in_scan():
    x, xs = np.array([0.2, -0.5]), np.linspace(-1, 1, 10).reshape(5, 2)
    check(make_nested, x, xs)


def make_scan_in_cond_and_while(L, N):
    def f(x):
        def inner(c):
            return L.scan(lambda a, r: (N.sin(a) + r, a), c, N.stack([c, c + 1.0, c * 3.0]))[0]
        y = L.cond(N.sum(x) > 0, inner, lambda c: c - 1.0, x)
        return L.while_loop(lambda c: N.sum(c[0]) < 20.0, lambda c: (inner(c[0]) + 1.0, c[1] + 1),
                            (y, 0))
    return f


def test_scan_in_cond_and_while():
    x = np.array([0.3, 0.1])
    check(make_scan_in_cond_and_while, x, grad=False)


def make_custom(L, N):
    scale = np.array([1.0, 0.5, 2.0])  # constants of the call's jaxpr
    if N is tnp:
        shift = tg.Array(np.array([0.1, 0.2, 0.3]))

        @tg.custom_jvp
        def softplus(v):
            return tnp.log1p(tnp.exp(v * scale)) + shift
        softplus.defjvp(lambda p, t: (softplus(p[0]), t[0] / (1.0 + tnp.exp(-p[0]))))
        ckpt = tg.checkpoint
    else:
        shift = jnp.array([0.1, 0.2, 0.3])

        @jax.custom_jvp
        def softplus(v):
            return jnp.log1p(jnp.exp(v * scale)) + shift
        softplus.defjvp(lambda p, t: (softplus(p[0]), t[0] / (1.0 + jnp.exp(-p[0]))))
        ckpt = jax.checkpoint

    def f(x, xs):
        def body(c, row):
            c = ckpt(lambda a: N.tanh(a * row) + a)(c)
            return softplus(c) - 1.0, c
        return L.scan(body, x, xs)
    return f


def test_custom_jvp_and_checkpoint_in_scan():
    x, xs = np.array([0.2, -0.5, 1.0]), np.linspace(-1, 1, 12).reshape(4, 3)
    check(make_custom, x, xs)


# --------------------------------------------------------------------------
# the primitive zoo: every kind of impl inside a body, bit for bit


def make_zoo(L, N):
    def f(x, xs):
        def body(c, row):
            v, k = c
            a = N.abs(v) + N.exp(-v * v) - N.log(1.0 + v * v) + N.sqrt(N.abs(v)) / (1.0 + row * row)
            a = N.maximum(a, row) - N.minimum(a, -row) + N.where(v > row, v, row) ** 2
            a = a + N.floor(v) * N.sign(row) + N.sin(v) * N.cos(row) + N.arctan2(v, row + 2.0)
            m = N.outer(a, row) + N.reshape(N.arange(9.0), (3, 3)) * N.asarray(k).astype(N.float64)
            a = m @ a + row @ m - N.sum(m, axis=0) + N.max(m, axis=1) + N.cumsum(a)
            a = a + N.tensordot(m, a, axes=([0], [0])) - N.tensordot(row, m, axes=([0], [1]))
            m3 = N.einsum("ij,jk->ik", m, m)[None] * N.reshape(row, (3, 1, 1))
            a = a + N.einsum("ijk,k->j", m3, a) * 1e-3
            a = a + N.sum(N.einsum("bij,bj->bi", m3, m), 0) * 1e-3  # (batch axes)
            a = N.concatenate([a[1:], a[:1]]) * N.sort(row)[::-1] + N.mean(m.T, axis=1)
            a = a + m[k % 3] + N.take(a, N.array([2, 0, 1]))
            i = N.argmax(a) + (k // 2) % 3 - (k * 7) % 5
            a = a.at[i % 3].add(1.0).at[0].set(a[2] * 0.5)
            a = N.tanh(a) + N.float32(1.5).astype(N.float64) + (a[0] > 0).astype(N.int32)
            return (a, k + 1), (a, i, N.all(a > 0), (a[0] * 10).astype(N.int8))
        return L.scan(body, (x, 0), xs)
    return f


def test_primitive_zoo_in_scan():
    x, xs = np.array([0.2, -0.5, 1.0]), np.linspace(-1, 1, 15).reshape(5, 3)
    check(make_zoo, x, xs)


def make_broadcasts(L, N):
    def f(x, xs):
        def body(c, row):
            col = N.reshape(row, (3, 1))
            a = N.broadcast_to(c, (3, 3)) * col               # one operand broadcast
            b = N.broadcast_to(c, (3, 3)) + N.broadcast_to(col, (3, 3))  # both
            u = N.tanh(N.broadcast_to(row, (2, 3)))           # unary: stays a real broadcast
            s = N.sum(a * b, axis=0) + N.sum(u, axis=0)
            return s * 0.1, (N.broadcast_to(s, (2, 3)), a)   # a broadcast as an output
        return L.scan(body, x, xs)
    return f


def test_broadcasts_in_bodies_and_batched_bodies():
    x, xs = np.array([0.2, -0.5, 1.0]), np.linspace(-1, 1, 12).reshape(4, 3)
    out = check(make_broadcasts, x, xs)
    assert np.asarray(out[1][0]).shape == (4, 2, 3) and np.asarray(out[1][1]).shape == (4, 3, 3)
    # vmap and jacfwd batch the body: unbatched operands get broadcast
    tf, jf = both(make_broadcasts)
    bx = np.stack([x, x * 2.0])
    vt = tg.vmap(tf, in_axes=(0, None))
    assert_same(each_policy(vt, bx, xs), slow(vt, bx, xs))
    assert_close(vt(bx, xs), jax.vmap(jf, in_axes=(0, None))(bx, xs))
    jt = tg.jacfwd(lambda x: tf(x, xs)[0])
    assert_same(each_policy(jt, x), slow(jt, x))
    assert_close(jt(x), jax.jacfwd(lambda x: jf(x, xs)[0])(x))


def test_random_key_carry():
    def f(key):
        def body(k, _):
            k, sub = tg.random.split(k)
            return k, tg.random.normal(sub, (2,))
        return tg.lax.scan(body, key, None, length=4)
    key = tg.random.PRNGKey(3)
    assert_same(each_policy(f, key), slow(f, key))


# --------------------------------------------------------------------------
# the same jaxpr run again, with other value types


def test_program_reused_across_calls_and_input_types():
    def make(L, N):
        def f(x, n):
            c, ys = L.scan(lambda c, r: (c * r + n, c), x, N.arange(1.0, 5.0))
            return L.cond(c > 10.0, lambda v: (v / n, N.sin(ys)), lambda v: (v * n, ys), c)
        return f
    tf, jf = both(make)
    closed = tg.make_jaxpr(tf)(1.0, np.float64(2.0))
    args = [(1.0, np.float64(2.0)), (np.float64(1.0), np.array(2.0)),
            (tg.Array(np.array(1.0)), 2.0), (1.0, np.float64(2.0))]
    with policy(True):  # (the cond runs by eval_jaxpr, then as interpreted and compiled code)
        outs = [core.eval_jaxpr(closed.jaxpr, closed.consts, *a) for a in args]
    for o in outs[1:]:
        assert_same(o, outs[0])
    assert_close(outs[0], jf(1.0, 2.0))


def test_constants_of_every_kind():
    w = np.array([1.0, -2.0])
    closed = tg.make_jaxpr(lambda x, s: x * w + s * tnp.sin(x))(np.ones(2), 2.0)
    (cv,) = [v for v in closed.jaxpr.constvars if v.aval.shape == (2,)]
    for c in (w, tg.Array(w)):
        cl = core.ClosedJaxpr(closed.jaxpr, [c if v is cv else k for v, k in
                                             zip(closed.jaxpr.constvars, closed.consts)])
        for args in [(np.ones(2), np.float64(3.0)), (np.arange(2.0), np.array(3.0))]:
            want = core.eval_jaxpr(cl.jaxpr, cl.consts, *args)
            prog = numpy_program.program(cl)
            for _ in range(numpy_program.COMPILE_AFTER + 2):  # interpreted, then generated
                assert_same([np.asarray(v) for v in prog.run(*args)], want)
    # 0-d constants: a NumPy scalar, a Python float, a weak Array
    closed = tg.make_jaxpr(lambda x: x * np.array(2.0))(np.ones(2))
    assert len(closed.consts) == 1
    for c in (np.float64(2.0), 2.0, tg.Array(np.array(2.0), True), np.array(2.0)):
        cl = core.ClosedJaxpr(closed.jaxpr, [c])
        prog = numpy_program.program(cl)
        for _ in range(numpy_program.COMPILE_AFTER + 2):
            np.testing.assert_array_equal(prog.run(np.ones(2))[0], [2.0, 2.0])


def test_params_that_are_not_python_names():
    weird = _test_prim("test_weird", lambda x, **p: x * p["lambda"] + p["not a name"],
                       lambda x, **p: x)

    def f(x):
        params = {"lambda": 2.0, "not a name": 1.0}
        return tg.lax.scan(lambda c, r: (weird.bind(c + r, **params), c), x, np.arange(8.0))
    assert_same(each_policy(f, np.float64(1.0)), slow(f, np.float64(1.0)))


def test_primitive_without_impl_falls_back_to_eval_jaxpr():
    # (a primitive with only an eager rule: bodies using it run by eval_jaxpr)
    odd = _test_prim("test_eager_only", None, lambda x: x)
    odd.eager = lambda args, params: tg.Array(np.asarray(args[0]) * 3.0)

    def f(x):
        return tg.lax.scan(lambda c, r: (odd.bind(c) + r, c), x, np.arange(6.0))
    out = f(np.float64(1.0))
    closed = tg.make_jaxpr(f)(np.float64(1.0))
    assert numpy_program.program(closed.jaxpr.eqns[-1].params["jaxpr"]) is None
    for _ in range(2):  # (the same jaxpr again: known to have no program)
        assert_same(core.eval_jaxpr(closed.jaxpr, closed.consts, np.float64(1.0)), out)
    c = 1.0
    for r in range(6):
        c = c * 3.0 + r
    np.testing.assert_array_equal(np.asarray(out[0]), c)


# --------------------------------------------------------------------------
# NumPy warnings, impls returning other dtypes, errors


def test_floating_point_warnings():
    # div, log and sqrt never warn (their impls ignore division by zero and
    # invalid values; programs hold that errstate around the whole loop)
    def f(x):
        def body(c, r):
            return c + 1.0, (c / r, tnp.log(r), tnp.sqrt(r - 1.0))
        return tg.lax.scan(body, x, tnp.array([0.0, 1.0, -1.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = each_policy(f, np.float64(1.0))
        ref = slow(f, np.float64(1.0))
    assert_same(out, ref)
    assert np.isinf(np.asarray(out[1][0])[0]) and np.isnan(np.asarray(out[1][2])[0])

    # other operations warn as they do eagerly, in a body without those
    # (in one with them, programs ignore invalid values and division by zero)
    def g(x):
        return tg.lax.scan(lambda c, r: (c * r - tnp.inf, c), x, tnp.array([1.0, tnp.inf]))
    for run in (g, lambda x: slow(g, x)):
        with pytest.warns(RuntimeWarning, match="invalid value"):
            run(np.float64(tnp.inf))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128])
def test_integer_pow_in_bodies(dtype):
    """integer_pow steps (x**2, x**-2 as 1/(x*x), other powers by the impl's
    products) give the impl's bits and JAX's values, and never warn (zero,
    overflow), as the impl under its errstate."""
    from tracegrad.primitives import elementwise as ew

    def f(x):
        def body(c, r):
            return c, tuple(ew.integer_pow_p.bind(r, y=k) for k in (2, -2, 3, -3, -1, 0, 1))
        return tg.lax.scan(body, 0.0, x)[1]
    big = np.finfo(dtype).max ** 0.75
    x = np.array([0.0, -0.0, 1.5, -2.0, big, np.inf, np.nan], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = each_policy(f, x)
        ref = slow(f, x)
    assert_same(out, ref)
    jref = jax.lax.scan(lambda c, r: (c, tuple(jax.lax.integer_pow(r, k)
                                               for k in (2, -2, 3, -3, -1, 0, 1))), 0.0, x)[1]
    keep = slice(None) if np.dtype(dtype).kind == "f" else slice(0, 4)  # (complex inf/nan
    for o, r in zip(out, jref):                  # products differ between NumPy and XLA)
        assert_close(np.asarray(o)[keep], np.asarray(r)[keep], what="vs jax")


def _test_prim(name, impl, abstract_eval, multiple_results=False):
    p = core.Primitive(name, impl=impl, abstract_eval=abstract_eval,
                       multiple_results=multiple_results)
    del core.registry[name]  # (not a real primitive: keep the rule tables clean)
    return p


def test_impl_results_get_the_abstract_dtype():
    # impls that return float32, a Python float and a list for float64 results
    lossy = _test_prim("test_lossy", lambda x: x.astype(np.float32), lambda x: x)
    pyfloat = _test_prim("test_pyfloat", lambda x: float(np.sum(x)),
                         lambda x: core.ShapedArray((), x.dtype))
    listy = _test_prim("test_listy", lambda x: [x * 2.0], lambda x: [x], multiple_results=True)

    def body(c, r):
        a = lossy.bind(c * r + 1.0 / 3.0)
        s = pyfloat.bind(a)
        (b,) = listy.bind(a)
        return a + s * b, (a, s, b)

    def f(x):
        return tg.lax.scan(body, x, np.linspace(0.5, 2.0, 6))
    x = np.array([0.25, 0.5])
    out = each_policy(f, x)
    leaves = [np.asarray(v) for v in _leaves(out)]
    assert all(v.dtype == np.float64 for v in leaves)
    assert isinstance(out[1][1], tg.Array) and np.asarray(out[1][1]).shape == (6,)
    # what the jaxpr says: float64 values (rounded once to float32 by lossy)
    c, ys = x, []
    for r in np.linspace(0.5, 2.0, 6):
        a = (c * r + 1.0 / 3.0).astype(np.float32).astype(np.float64)
        s = np.sum(a)
        c = a + s * (a * 2.0)
        ys.append((a, s, a * 2.0))
    np.testing.assert_array_equal(leaves[0], c)
    for k in range(3):
        np.testing.assert_array_equal(leaves[1 + k], np.stack([y[k] for y in ys]))
    # (eval_jaxpr instead hands the float32 on: the next equations compute in float32)


def _boom_impl(x, limit):
    if np.any(x >= limit):
        raise ValueError("value over the limit")
    return x


def _boom():
    return _test_prim("test_boom", _boom_impl, lambda x, limit: x)


def error_message(run, *args):
    with pytest.raises(tg.ShapeDtypeError) as e:
        run(*args)
    return str(e.value)


@pytest.mark.parametrize("fail_at", [0, 1, 9])
@pytest.mark.parametrize("compiled", [False, True])
def test_errors_name_the_primitive_and_the_user_line(fail_at, compiled):
    boom = _boom()

    def f(x, limit=float(fail_at) + 0.5):
        return tg.lax.scan(lambda c, r: (boom.bind(c + r, limit=limit), c), x,
                           np.ones(12))  # the line errors point at

    with policy(compiled):
        f(np.float64(0.0), 100.0)  # (the same body, compiled before: with compiled=True,
        m = error_message(f, np.float64(0.0))  # its first run fails in generated code)
    assert "test_boom" in m and "value over the limit" in m and "f64[]" in m
    assert "test_eager_control_flow.py" in m and "(f)" in m
    assert m == error_message(slow, f, np.float64(0.0))
    # nested: the inner scan's error comes out unchanged
    g = lambda x: tg.lax.scan(lambda c, r: (f(c)[0], r), x, np.ones(2))[0]  # noqa: E731
    with policy(compiled):
        m = error_message(g, np.float64(0.0))
    assert "test_boom" in m and "value over the limit" in m


@pytest.mark.parametrize("compiled", [False, True])
def test_error_in_while_and_cond_bodies(compiled):
    boom = _boom()

    def w(x):  # failing in the 5th iteration
        return tg.lax.while_loop(lambda c: c < 10.0, lambda c: boom.bind(c + 1.0, limit=5.5), x)

    def c(x):
        return tg.lax.cond(x > 0, lambda v: boom.bind(v, limit=0.5), lambda v: v, x)

    def cs(x):  # a cond inside a scan, failing in the 4th iteration
        return tg.lax.scan(lambda v, r: (c(v + r), v), x - 4.0, np.ones(6))

    for f in (w, c, cs):
        with policy(compiled):
            m = error_message(f, np.float64(1.0))
        assert "test_boom" in m and m == error_message(slow, f, np.float64(1.0))


# ---- add_any trees over zero pads become one step (_pad_sums)


def _np(x):
    return np.asarray(x.value if isinstance(x, tg.Array) else x)


def _pullback_both_ways(f, x, cts):
    """f's vjp at x as a jaxpr, run as a NumPy program (which must fuse some
    pad sums) and equation by equation, at the cotangents cts."""
    _, pullback = tg.vjp(f, x)
    closed = tg.make_jaxpr(pullback)(cts)
    assert numpy_program._pad_sums(closed.jaxpr)[0], "no pad sum to fuse"
    flat = [np.asarray(c) for c in jtu.tree_leaves(cts)]
    fast = numpy_program.program(closed).run(*flat)
    ref = core.eval_jaxpr(closed.jaxpr, closed.consts, *flat)
    return _np(fast[0]), _np(ref[0])


def _same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pad_sums_tile_and_keep_zero_signs(dtype):
    # slices of one vector: the vjp sums four zero pads that tile the
    # result; a -0 cotangent comes out +0 (0 + -0), as the sum gives it
    def f(x):
        return tnp.concatenate([x[0:2] * 2.0, x[2:5] * -1.0, x[5:6], x[6:8] * 3.0])
    x = np.arange(8, dtype=dtype)
    ct = np.array([-0.0, 1.5, -0.0, 2.0, np.inf, -0.0, 0.25, -3.0], dtype)
    _same_bits(*_pullback_both_ways(f, x, ct))


def test_pad_sums_untiled_overlapping_and_2d():
    def f(x):   # disjoint boxes with a gap (x[4] unused), an overlap, a separate output
        return (x[0:2].sum() * 2.0 + x[5:7].sum() + x[1:3].sum() * -1.0, x[3:4] * 0.5)
    _same_bits(*_pullback_both_ways(f, np.linspace(-1.0, 1.0, 7),
                                    (np.asarray(-0.0), np.array([-0.0]))))

    def g(m):
        return tnp.concatenate([m[:, 0:1] * 2.0, m[:, 1:3] * -1.0], axis=1).sum(axis=0)
    _same_bits(*_pullback_both_ways(g, np.arange(6.0).reshape(2, 3), np.array([-0.0, 1.0, 2.0])))
