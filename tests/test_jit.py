"""jit: compiled results vs eager vs JAX, composition with every
transformation, caching/retracing, static args, lowering, errors, dtypes,
and one example program per registered primitive (PRIMITIVE_EXAMPLES)."""
import logging
import os
import subprocess
import sys
import textwrap
from functools import partial

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import tracegrad as tg
import tracegrad.numpy as tnp
from tracegrad import core
from tracegrad.interpreters import xla

from oracle import assert_close

jit_mod = sys.modules["tracegrad.jit"]
bf16 = np.dtype(ml_dtypes.bfloat16)


@pytest.fixture(autouse=True)
def _no_disk_cache(monkeypatch):
    monkeypatch.setenv("TRACEGRAD_DISABLE_DISK_CACHE", "1")


def rnd(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _prims_in(jaxpr):
    """Names of all primitives in a jaxpr, including sub-jaxprs in params."""
    if isinstance(jaxpr, core.ClosedJaxpr):
        jaxpr = jaxpr.jaxpr
    out = set()
    for eqn in jaxpr.eqns:
        out.add(eqn.primitive.name)
        for v in eqn.params.values():
            for sub in (v if isinstance(v, (tuple, list)) else (v,)):
                if isinstance(sub, (core.Jaxpr, core.ClosedJaxpr)):
                    out |= _prims_in(sub)
    return out


# --------------------------------------------------------------------------
# basics


def f_basic(x, y):
    return tnp.sin(x * y) + 1


def test_jit_matches_eager_and_jax():
    x, y = rnd(8), rnd(8, seed=1)
    out = tg.jit(f_basic)(x, y)
    assert type(out) is tg.Array and out._buf is not None
    assert_close(out, f_basic(x, y))
    assert_close(out, jax.jit(lambda x, y: jnp.sin(x * y) + 1)(x, y))


def test_results_are_device_arrays_read_zero_copy():
    f = tg.jit(f_basic)
    out = f(rnd(8), rnd(8))
    assert out._v is None  # nothing copied to the host yet
    assert out.shape == (8,) and out.dtype == np.float32 and out._v is None
    v = np.asarray(out)
    # on the CPU numpy views the device buffer's memory
    assert v.ctypes.data == out._buf.unsafe_buffer_pointer()
    assert out._v is not None and np.asarray(out).ctypes.data == v.ctypes.data  # cached


def test_device_arrays_go_straight_back_in():
    f = tg.jit(f_basic)
    a = f(rnd(8), rnd(8))
    b = f(a, a)
    assert a._v is None  # not read back to the host on the way in
    assert_close(b, f_basic(np.asarray(a), np.asarray(a)))


def test_eager_ops_accept_jit_results():
    a = tg.jit(f_basic)(rnd(4, 3), rnd(4, 3))
    b = tnp.sin(a) * 2.0 + a.sum(axis=0)
    ref = np.sin(np.asarray(a)) * 2.0 + np.asarray(a).sum(axis=0)
    assert_close(b, ref)
    assert tg.grad(lambda z: tnp.sum(tnp.sin(z)))(a).shape == (4, 3)


def test_pytrees_kwargs_and_none():
    @tg.jit
    def f(params, x, *, scale=None, bias):
        h = tnp.tanh(x @ params["w"] + params["b"]) if scale is None else scale * x
        return {"h": h, "pair": (h.sum(), bias * 2.0), "nothing": None}

    params = {"w": rnd(3, 2), "b": rnd(2, seed=1)}
    x = rnd(4, 3, seed=2)
    out = f(params, x, bias=np.float32(3.0))
    ref_h = np.tanh(x @ params["w"] + params["b"])
    assert_close(out["h"], ref_h, rtol=1e-5, atol=1e-5)
    assert_close(out["pair"][1], np.float32(6.0))
    assert out["nothing"] is None
    out2 = f(params, x, scale=2.0, bias=np.float32(1.0))
    assert_close(out2["h"], 2.0 * x)


def test_python_scalars_are_weak_inputs():
    f = tg.jit(lambda x, s: x * s)
    x = rnd(3)
    out = f(x, 2.0)
    assert out.dtype == np.float32  # the weak scalar adopts x's dtype
    assert_close(out, x * np.float32(2.0))
    f(x, 5.0)
    assert f._cache_size() == 1 and f._trace_count == 1  # value is not part of the key
    assert_close(f(x, 5.0), x * np.float32(5.0))
    w = tg.jit(lambda s: s * 2)(3.0)
    assert w.dtype == np.float64 and w.weak
    i = tg.jit(lambda s: s + 1)(3)
    assert i.dtype == np.int64 and int(i) == 4


def test_constants_closed_over():
    c = rnd(5, seed=3)
    f = tg.jit(lambda x: x + c * 2 + tg.Array(c))
    assert_close(f(rnd(5)), rnd(5) + c * 3)


def test_output_is_input_and_constant_outputs():
    f = tg.jit(lambda x: (x, 2.0, tnp.ones(2)))
    a, b, c = f(rnd(3))
    assert_close(a, rnd(3))
    assert float(b) == 2.0 and b.weak
    assert_close(c, np.ones(2))


def test_no_arguments():
    assert_close(tg.jit(lambda: tnp.arange(4.0) * 2)(), np.arange(4.0) * 2)


def test_method_decoration():
    class M:
        def __init__(self, k):
            self.k = k

        @partial(tg.jit, static_argnums=0)
        def apply(self, x):
            return x * self.k

        __hash__ = lambda self: hash(self.k)
        __eq__ = lambda self, o: self.k == o.k

    assert_close(M(3.0).apply(rnd(2)), rnd(2) * 3.0)


# --------------------------------------------------------------------------
# caching and retracing


def test_cache_hits_and_retrace_counter():
    f = tg.jit(lambda x, y: tnp.sin(x * y) + 1)
    x = rnd(8)
    f(x, x)
    f(x, x)
    f(tg.Array(x), x)          # Array on the host: same signature
    f(f(x, x), x)              # device array: same signature
    assert f._cache_size() == 1 and f._trace_count == 1 and f._compile_count == 1
    f(rnd(9), rnd(9))
    assert f._cache_size() == 2 and f._trace_count == 2
    assert "x changed from f32[8] to f32[9]" in f._last_retrace_reason
    f(x.astype(np.float64), x)
    assert f._trace_count == 3 and "f64[8]" in f._last_retrace_reason
    f(x, x)
    assert f._trace_count == 3


def test_retrace_on_weak_type_change():
    f = tg.jit(lambda a, b: a + b)
    x = rnd(3)
    f(x, 1.0)
    f(x, np.float64(1.0))  # a strong f64 scalar is a different signature
    assert f._trace_count == 2
    assert "weak" in f._last_retrace_reason


def test_log_compiles(caplog, monkeypatch):
    monkeypatch.setattr(tg.config, "log_compiles", True)
    f = tg.jit(lambda x, y: tnp.sin(x * y) + 1)
    with caplog.at_level(logging.WARNING, logger="tracegrad.jit"):
        f(rnd(2), rnd(2))
        f(rnd(3), rnd(3))
    text = caplog.text
    assert "tracing for (f32[2], f32[2])" in text
    assert "retracing" in text and "x changed from f32[2] to f32[3]" in text
    assert "compiled for" in text


def test_log_compiles_env_var():
    code = textwrap.dedent("""
        import numpy as np, tracegrad as tg
        tg.jit(lambda x: x + 1)(np.ones(2))
    """)
    env = dict(os.environ, TRACEGRAD_LOG_COMPILES="1", TRACEGRAD_DISABLE_DISK_CACHE="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "jit(<lambda>)" in r.stderr and "compiled for" in r.stderr


def test_static_args_by_value():
    calls = []

    @partial(tg.jit, static_argnums=(1,), static_argnames=("mode",))
    def f(x, shape, mode="sum"):
        calls.append(shape)
        y = tnp.reshape(x, shape)
        return y.sum(axis=0) if mode == "sum" else y.max(axis=0)

    x = rnd(6)
    assert_close(f(x, (2, 3)), x.reshape(2, 3).sum(0))
    assert_close(f(x, (2, 3)), x.reshape(2, 3).sum(0))
    assert_close(f(x, tuple([2, 3])), x.reshape(2, 3).sum(0))  # equal by value
    assert len(calls) == 1
    assert_close(f(x, (3, 2)), x.reshape(3, 2).sum(0))
    assert len(calls) == 2 and "changed from (2, 3) to (3, 2)" in f._last_retrace_reason
    assert_close(f(x, (2, 3), mode="max"), x.reshape(2, 3).max(0))
    # static by keyword too (a separate cache entry, as in JAX)
    assert_close(f(x, shape=(2, 3), mode="max"), x.reshape(2, 3).max(0))
    assert_close(f(x, shape=(2, 3), mode="max"), x.reshape(2, 3).max(0))
    assert len(calls) == 4


def test_static_argnums_negative_and_python_int_vs_float():
    f = tg.jit(lambda x, n: x * n, static_argnums=-1)
    assert_close(f(rnd(2), 3), rnd(2) * 3)
    f(rnd(2), 3.0)  # an int and a float static are different keys
    assert f._trace_count == 2


def test_clear_cache():
    f = tg.jit(lambda x, y: tnp.sin(x * y) + 1)
    f(rnd(2), rnd(2))
    f._clear_cache()
    f(rnd(2), rnd(2))
    assert f._trace_count == 2


def test_cache_is_shared_by_jit_of_the_same_function():
    def g(x):
        return tnp.cos(x) * 3

    for _ in range(3):
        tg.jit(g)(rnd(4))  # a new jit wrapper each time, as in a loop
    assert tg.jit(g)._trace_count == 1 and tg.jit(g)._cache_size() == 1
    tg.jit(g, static_argnums=()).__call__(rnd(5))
    assert tg.jit(g)._trace_count == 2
    assert tg.jit(g, donate_argnums=0)._trace_count == 0  # other settings: own cache


# --------------------------------------------------------------------------
# compositions


def g_scalar(x, y):
    return tnp.sum(tnp.sin(x * y) * tnp.exp(-x) + x ** 2)


def jg_scalar(x, y):
    return jnp.sum(jnp.sin(x * y) * jnp.exp(-x) + x ** 2)


def test_grad_of_jit():
    x, y = rnd(5, dtype=np.float64), rnd(5, dtype=np.float64, seed=1)
    assert_close(tg.grad(tg.jit(g_scalar))(x, y), jax.grad(jg_scalar)(x, y))
    assert_close(tg.grad(tg.jit(g_scalar), argnums=(0, 1))(x, y),
                 jax.grad(jg_scalar, argnums=(0, 1))(x, y))


def test_grad_of_jit_runs_known_half_compiled_and_stages_linear_half():
    f = tg.jit(lambda x: tnp.sin(x) * x)
    _, f_jvp = tg.linearize(f, rnd(4))
    lin = f_jvp.jaxpr
    jit_eqns = [e for e in lin.jaxpr.eqns if e.primitive.name == "jit"]
    assert len(jit_eqns) == 1
    inner = _prims_in(jit_eqns[0].params["jaxpr"])
    assert "sin" not in inner and "cos" not in inner  # primal work was done already
    assert inner <= {"mul", "add_any", "add"}
    # the known half ran through XLA: its residuals are device arrays
    assert any(type(c) is tg.Array and c._buf is not None for c in f_jvp.jaxpr.consts)


def test_grad_of_jit_cached_across_calls():
    f = tg.jit(lambda x: tnp.sum(tnp.tanh(x) ** 2))
    x = rnd(6, dtype=np.float64)
    g = tg.grad(f)
    g(x)
    n = len(jit_mod._runners_by_jaxpr)
    for _ in range(3):
        assert_close(g(x), jax.grad(lambda x: jnp.sum(jnp.tanh(x) ** 2))(x))
    assert len(jit_mod._runners_by_jaxpr) == n  # no new executables per call
    assert f._trace_count == 1


def test_vmap_of_jit():
    f = tg.jit(lambda x, y: tnp.sin(x) @ y)
    xs, y = rnd(3, 4, 5), rnd(5, 2, seed=1)
    ref = jax.vmap(lambda x, y: jnp.sin(x) @ y, in_axes=(0, None))(xs, y)
    assert_close(tg.vmap(f, in_axes=(0, None))(xs, y), ref, rtol=1e-5, atol=1e-5)
    xs2 = rnd(4, 3, 5)
    ref2 = jax.vmap(lambda x, y: jnp.sin(x) @ y, in_axes=(1, None))(xs2, y)
    assert_close(tg.vmap(f, in_axes=(1, None))(xs2, y), ref2, rtol=1e-5, atol=1e-5)


def test_vmap_of_jit_keeps_unbatched_outputs_unbatched():
    f = tg.jit(lambda x, y: (x * 2, tnp.sin(y)))
    xs, y = rnd(3, 2), rnd(4, seed=1)
    a, b = tg.vmap(f, in_axes=(0, None))(xs, y)
    ra, rb = jax.vmap(lambda x, y: (x * 2, jnp.sin(y)), in_axes=(0, None))(xs, y)
    assert_close([a, b], [ra, rb])
    a, b = tg.vmap(f, in_axes=(0, None), out_axes=(0, None))(xs, y)
    assert b.shape == (4,)


def test_jit_of_grad_of_jit():
    inner = tg.jit(lambda x: tnp.sum(tnp.sin(x) * x))
    f = tg.jit(tg.grad(inner))
    x = rnd(4, dtype=np.float64)
    assert_close(f(x), jax.grad(lambda x: jnp.sum(jnp.sin(x) * x))(x))
    assert "jit" in _prims_in(tg.make_jaxpr(f)(x))


def test_jit_of_grad():
    x, y = rnd(5, dtype=np.float64), rnd(5, dtype=np.float64, seed=1)
    f = tg.jit(tg.grad(g_scalar, argnums=(0, 1)))
    assert_close(f(x, y), jax.grad(jg_scalar, argnums=(0, 1))(x, y))
    assert "sin" in _prims_in(tg.make_jaxpr(f)(x, y))


def test_jit_of_vmap_of_grad():
    xs, y = rnd(4, 5, dtype=np.float64), rnd(5, dtype=np.float64, seed=1)
    f = tg.jit(tg.vmap(tg.grad(g_scalar), in_axes=(0, None)))
    ref = jax.vmap(jax.grad(jg_scalar), in_axes=(0, None))(xs, y)
    assert_close(f(xs, y), ref)


def test_jacfwd_jacrev_hessian_of_jit():
    x = rnd(3, dtype=np.float64)
    f = tg.jit(lambda x: tnp.sin(x) * tnp.sum(x ** 2))
    jf = lambda x: jnp.sin(x) * jnp.sum(x ** 2)
    assert_close(tg.jacfwd(f)(x), jax.jacfwd(jf)(x))
    assert_close(tg.jacrev(f)(x), jax.jacrev(jf)(x))
    h = tg.jit(lambda x: tnp.sum(tnp.sin(x) * x ** 3))
    assert_close(tg.hessian(h)(x), jax.hessian(lambda x: jnp.sum(jnp.sin(x) * x ** 3))(x))


def test_jvp_of_jit_and_grad_of_grad():
    x = np.float64(0.7)
    f = tg.jit(lambda x: tnp.sin(x) * x ** 3)
    jf = lambda x: jnp.sin(x) * x ** 3
    p, t = tg.jvp(f, (x,), (np.float64(1.0),))
    rp, rt = jax.jvp(jf, (x,), (1.0,))
    assert_close([p, t], [rp, rt], check_dtype=False)
    assert_close(tg.grad(tg.grad(f))(x), jax.grad(jax.grad(jf))(x), check_dtype=False)


def test_nested_jit():
    inner = tg.jit(lambda x: tnp.cos(x) * 2)

    @tg.jit
    def outer(x):
        return inner(x) + inner(x + 1)

    x = rnd(4)
    assert_close(outer(x), np.cos(x) * 2 + np.cos(x + 1) * 2)
    text = outer.lower(x).as_text()
    assert "func.func private" in text and "call @" in text
    assert_close(tg.grad(lambda x: outer(x).sum())(x), -2 * np.sin(x) - 2 * np.sin(x + 1))


def test_make_jaxpr_shows_jit_eqn_and_dce():
    def two(x):
        return tnp.sin(x), tnp.cos(x)

    f = tg.jit(two)
    j = tg.make_jaxpr(f)(rnd(3))
    assert [e.primitive.name for e in j.jaxpr.eqns] == ["jit"]
    assert "jit[" in str(j) and "sin" in str(j)
    j1 = tg.make_jaxpr(lambda x: f(x)[0])(rnd(3))  # the unused output is pruned inside
    inner = j1.jaxpr.eqns[0].params["jaxpr"]
    assert len(inner.out_avals) == 1 and _prims_in(inner) == {"sin"}


def test_closure_over_outer_tracer():
    def outer(x):
        return tg.jit(lambda y: x * y + tnp.sin(x))(2.0)

    assert_close(tg.grad(outer)(0.5), 2.0 + np.cos(0.5), check_dtype=False)
    assert_close(tg.vmap(outer)(np.arange(3.0)), np.arange(3.0) * 2 + np.sin(np.arange(3.0)))


def test_jit_p_rules_complete():
    row = core.coverage(print_table=False)["jit"]
    assert all(v is not False for v in row.values()), row
    assert jit_mod.jit_p.partial_eval is not None and jit_mod.jit_p.dce is not None


# --------------------------------------------------------------------------
# lower / compile / devices


def test_lower_as_text_and_compile():
    x = rnd(8)
    low = tg.jit(f_basic).lower(x, x)
    text = low.as_text()
    for op in ("stablehlo.multiply", "stablehlo.sine", "stablehlo.add", "func.func public @main"):
        assert op in text
    assert "loc(" in low.as_text(debug_info=True)
    comp = low.compile()
    cost = comp.cost_analysis()
    assert cost["flops"] > 0 and cost["transcendentals"] >= 8
    assert_close(comp(x, x), f_basic(x, x))
    assert "sine" in comp.as_text()
    with pytest.raises(TypeError, match="compiled for f32\\[8\\]"):
        comp(rnd(9), rnd(9))


def test_lower_abstract_args_and_reduce_ops():
    spec = tg.ShapeDtypeStruct((4, 3), np.float32)
    text = tg.jit(lambda x: tnp.max(x, axis=1) + tnp.sum(x)).lower(spec).as_text()
    assert "stablehlo.reduce" in text and "stablehlo.maximum" in text


def test_devices_and_device_put():
    devs = tg.devices()
    assert devs and devs[0] == xla.default_device()
    a = tg.device_put(rnd(3), devs[0])
    assert type(a) is tg.Array and a._buf is not None and xla.is_committed(a._buf)
    tree = tg.device_put({"a": rnd(2), "b": 1.5})
    assert tree["b"].weak and tree["b"].dtype == np.float64
    f = tg.jit(f_basic, device=devs[0])
    assert_close(f(a, a), f_basic(rnd(3), rnd(3)))
    assert_close(tg.jit(f_basic, device="cpu")(rnd(3), rnd(3)), f_basic(rnd(3), rnd(3)))


def test_block_until_ready_waits_for_every_leaf_and_returns_its_input():
    f = tg.jit(lambda x: (x * 2, {"s": x.sum(), "n": None}))
    out = f(tg.device_put(np.arange(2e5)))
    tree = (out, 3, "label", np.ones(2))
    assert tg.block_until_ready(tree) is tree
    for leaf in (out[0], out[1]["s"]):
        assert leaf._buf.is_ready()
    ref = jax.block_until_ready(jax.jit(lambda x: (x * 2, x.sum()))(np.arange(2e5)))
    assert_close(out[0], ref[0])
    assert_close(out[1]["s"], ref[1])
    one = f(np.ones(3))[0]
    assert tg.block_until_ready(one) is one and one._buf.is_ready()
    assert tg.block_until_ready(1.5) == 1.5


def test_donate_argnums():
    f = tg.jit(lambda x, y: x * 2 + y, donate_argnums=0)
    assert "tf.aliasing_output" in f.lower(rnd(4), rnd(4)).as_text()
    a = tg.device_put(rnd(4))
    out = f(a, rnd(4))
    assert_close(out, rnd(4) * 2 + rnd(4))
    assert a._buf.is_deleted()
    with pytest.raises(ValueError, match="x has been deleted"):
        f(a, rnd(4))


# --------------------------------------------------------------------------
# errors


def test_unhashable_static_arg_names_argnum():
    f = tg.jit(lambda x, shape: tnp.reshape(x, shape), static_argnums=1)
    with pytest.raises(ValueError, match=r"static argument 1 \(shape\) has unhashable type list"):
        f(rnd(6), [2, 3])


def test_python_control_flow_on_traced_value():
    @tg.jit
    def branchy(x):
        if x.sum() > 0:
            return x
        return -x

    with pytest.raises(tg.ConcretizationError) as e:
        branchy(rnd(3))
    msg = str(e.value)
    assert "branchy" in msg and "test_jit.py" in msg and "static_argnums" in msg


def test_mismatched_devices_error():
    code = textwrap.dedent("""
        import numpy as np, tracegrad as tg
        d0, d1 = tg.devices()[:2]
        a, b = tg.device_put(np.ones(3), d0), tg.device_put(np.ones(3), d1)
        f = tg.jit(lambda x, y: x + y)
        try:
            f(a, b)
        except ValueError as e:
            print("ERR", e)
        c = tg.jit(lambda x: x * 2)(b)          # runs where its committed argument is
        print("DEV", c._buf.devices())
        print("MOVED", np.asarray(tg.jit(lambda x, y: x + y, device=d0)(a, b)))
        print("UNCOMMITTED", np.asarray(f(a, np.ones(3))))
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               TRACEGRAD_DISABLE_DISK_CACHE="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "ERR" in r.stdout and "committed to different devices" in r.stdout
    assert "x: cpu:0" in r.stdout and "y: cpu:1" in r.stdout
    assert "DEV {CpuDevice(id=1)}" in r.stdout
    assert "MOVED [2. 2. 2.]" in r.stdout and "UNCOMMITTED [2. 2. 2.]" in r.stdout


def _bogus_primitive(lower):
    p = core.Primitive("jit_test_bogus", impl=lambda x: x, abstract_eval=lambda x: x, lower=lower)
    core.registry.pop(p.name, None)
    return p


def test_xla_compile_failure_is_wrapped():
    from jaxlib.mlir import ir
    from jaxlib.mlir.dialects import stablehlo as hlo
    from tracegrad.interpreters import lowering

    def lower(ctx, x):
        return [hlo.CustomCallOp([lowering.ir_type(ctx.avals_out[0])], [x],
                                 call_target_name=ir.StringAttr.get("no_such_target")).result]

    p = _bogus_primitive(lower)

    def uses_bogus(x):
        return p.bind(x) + 1

    with pytest.raises(tg.JitCompileError) as e:
        tg.jit(uses_bogus)(rnd(3))
    msg = str(e.value)
    assert "jit(uses_bogus)" in msg and "test_jit.py" in msg and "no_such_target" in msg
    assert "func.func" not in msg  # no raw module dump


def test_lowering_failure_is_wrapped():
    def lower(ctx, x):
        raise RuntimeError("cannot lower this")

    p = _bogus_primitive(lower)

    def uses_bogus(x):
        return p.bind(x) * 2

    with pytest.raises(tg.JitCompileError) as e:
        tg.jit(uses_bogus)(rnd(3))
    msg = str(e.value)
    assert "jit(uses_bogus)" in msg and "cannot lower this" in msg and "test_jit.py" in msg


def test_runtime_failure_is_wrapped():
    f = tg.jit(lambda x: x + 1)
    f(rnd(3))
    runner = next(iter(next(iter(f._traces.values())).runners.values()))
    dead = xla.device_put(rnd(4))
    dead.delete()
    with pytest.raises(tg.JitRuntimeError, match=r"jit\(<lambda>\) failed while running"):
        runner.execute([dead])


def test_bad_argument_and_output_types():
    with pytest.raises(TypeError, match="argument y is of type str"):
        tg.jit(lambda x, y: x)(rnd(2), "a")
    with pytest.raises(TypeError, match=r"output \[1\] is of type str"):
        tg.jit(lambda x: (x, "a"))(rnd(2))


def test_leaked_tracer_into_jit():
    box = []
    tg.grad(lambda x: box.append(x) or x * 2.0)(1.0)
    with pytest.raises(tg.LeakedTracerError):
        tg.jit(lambda a: a + 1)(box[0])


# --------------------------------------------------------------------------
# dtypes


@pytest.mark.parametrize("dtype", [np.float16, bf16, np.float32, np.float64, np.complex64],
                         ids=lambda d: np.dtype(d).name)
def test_float_dtypes(dtype):
    x = (rnd(6) * 0.5).astype(dtype)
    y = (rnd(6, seed=1) * 0.5).astype(dtype)
    f = lambda a, b: tnp.exp(a) * b - tnp.tanh(a) / 3
    jf = lambda a, b: jnp.exp(a) * b - jnp.tanh(a) / 3
    out = tg.jit(f)(x, y)
    assert out.dtype == np.dtype(dtype)
    assert_close(out, f(x, y))
    assert_close(out, jf(jnp.asarray(x), jnp.asarray(y)))


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint32],
                         ids=lambda d: np.dtype(d).name)
def test_int_dtypes(dtype):
    x = np.arange(1, 7).astype(dtype)
    f = lambda a: (a * 3 + 1) // 2 - a % 3 + tnp.maximum(a, 4)
    jf = lambda a: (a * 3 + 1) // 2 - a % 3 + jnp.maximum(a, 4)
    out = tg.jit(f)(x)
    assert out.dtype == np.dtype(dtype)
    assert_close(out, f(x))
    assert_close(out, jf(jnp.asarray(x)))


def test_bool_dtype():
    x = np.array([True, False, True, False])
    y = np.array([True, True, False, False])
    f = lambda a, b: (a & ~b) | (a ^ b)
    out = tg.jit(f)(x, y)
    assert out.dtype == np.bool_
    assert_close(out, f(x, y))
    assert_close(out, ((x & ~y) | (x ^ y)))
    assert_close(tg.jit(lambda v: tnp.where(v > 0, v, 0.0))(rnd(5)),
                 np.where(rnd(5) > 0, rnd(5), 0.0).astype(np.float32))


# --------------------------------------------------------------------------
# One small program per registered primitive: jit == eager == JAX.
#
# To add a primitive, append an `Ex(name, tracegrad_fn, jax_fn, args)` row
# (or a name to UNARY/BINARY). `name` must appear in the traced program
# (test_primitive_example checks it, so each row really exercises its
# primitive); test_examples_cover_registry fails for registered primitives
# that have no row. `trace` overrides how the checked jaxpr is made.

lax = jax.lax
R = core.registry


class Ex:
    def __init__(self, name, fn, jfn, args, trace=None, tol=None, eager=True):
        self.name, self.fn, self.jfn, self.args = name, fn, jfn, args
        self.trace, self.tol, self.eager = trace, tol or {}, eager

    def __repr__(self):
        return self.name


def _dom(kind, shape=(2, 3), dtype=np.float32, seed=0):
    r = np.random.default_rng(seed).uniform(size=shape)
    lo, hi = {"any": (-2, 2), "unit": (-0.9, 0.9), "pos": (0.2, 3.0), "gt1": (1.1, 3.0)}[kind]
    return (lo + (hi - lo) * r).astype(dtype)


def _ints(shape=(2, 3), lo=0, hi=7, dtype=np.int32, seed=0):
    return np.random.default_rng(seed).integers(lo, hi, size=shape).astype(dtype)


def _bools(shape=(2, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 2, size=shape).astype(bool)


# unary: name -> (input domain, jax.lax function name)
UNARY = {
    "abs": "any", "acos": "unit", "acosh": "gt1", "asin": "unit", "asinh": "any",
    "atan": "any", "atanh": "unit", "cbrt": "any", "ceil": "any", "cos": "any",
    "cosh": "any", "digamma": "pos", "erf": "any", "erf_inv": "unit", "exp": "any",
    "exp2": "any", "expm1": "any", "floor": "any", "is_finite": "any", "lgamma": "pos",
    "log": "pos", "log1p": "pos", "logistic": "any", "neg": "any", "round": "any",
    "rsqrt": "pos", "sign": "any", "sin": "any", "sinh": "any", "sqrt": "pos", "tan": "unit",
    "tanh": "any",
}
# binary float ops: name -> jax.lax function
BINARY = {
    "add": lax.add, "add_any": lax.add, "sub": lax.sub, "mul": lax.mul, "div": lax.div,
    "rem": lax.rem, "max": lax.max, "min": lax.min, "pow": lax.pow, "atan2": lax.atan2,
    "nextafter": lax.nextafter, "eq": lax.eq, "ne": lax.ne, "lt": lax.lt, "le": lax.le,
    "gt": lax.gt, "ge": lax.ge,
}
BITWISE = {"and": lax.bitwise_and, "or": lax.bitwise_or, "xor": lax.bitwise_xor,
           "shift_left": lax.shift_left, "shift_right_logical": lax.shift_right_logical}


def _unary_ex(name, dom):
    p = R[name]
    return Ex(name, lambda x: p.bind(x), getattr(lax, name), [_dom(dom)])


def _binary_ex(name, jf):
    p = R[name]
    a, b = _dom("pos"), _dom("pos", seed=1)
    return Ex(name, lambda x, y: p.bind(x, y), jf, [a, b])


def _bitwise_ex(name, jf):
    p = R[name]
    return Ex(name, lambda x, y: p.bind(x, y), jf, [_ints(hi=100), _ints(hi=5, seed=1)])


def _maxpool(x):
    return tg.primitives.windowed.reduce_window(x, "max", (2, 2), (1, 1), "VALID")


def _jmaxpool(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (2, 2), (1, 1), "VALID")


@tg.custom_jvp
def _softplus(x):
    return tnp.log1p(tnp.exp(x))


@_softplus.defjvp
def _softplus_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return _softplus(x), t / (1 + tnp.exp(-x))


@tg.custom_vjp
def _scaled(x):
    return x * 2.0


_scaled.defvjp(lambda x: (x * 2.0, None), lambda res, g: (g * 3.0,))


@jax.custom_vjp
def _jscaled(x):
    return x * 2.0


_jscaled.defvjp(lambda x: (x * 2.0, None), lambda res, g: (g * 3.0,))

_inner_jit = tg.jit(lambda x: tnp.cos(x) * 2)
_dn = (((1,), (0,)), ((), ()))  # matrix product dimension numbers

def _cplx():
    return (np.linspace(-1, 1, 6) + 1j * np.linspace(2, 0, 6)).astype(np.complex64).reshape(2, 3)


PRIMITIVE_EXAMPLES = (
    [_unary_ex(n, d) for n, d in UNARY.items()]
    + [_binary_ex(n, f) for n, f in BINARY.items()]
    + [_bitwise_ex(n, f) for n, f in BITWISE.items()]
    + [
        Ex("not", lambda x: R["not"].bind(x), lax.bitwise_not, [_bools()]),
        Ex("integer_pow", lambda x: R["integer_pow"].bind(x, y=3), lambda x: lax.integer_pow(x, 3),
           [_dom("any")]),
        Ex("select_n", lambda p, a, b: R["select_n"].bind(p, a, b), lax.select_n,
           [_bools(), _dom("any"), _dom("any", seed=1)]),
        Ex("clamp", lambda lo, x, hi: R["clamp"].bind(lo, x, hi), lax.clamp,
           [np.float32(-0.5), _dom("any"), np.float32(0.7)]),
        Ex("convert_element_type",
           lambda x: R["convert_element_type"].bind(x, new_dtype=np.dtype(np.int32), weak_type=False),
           lambda x: lax.convert_element_type(x, np.int32), [_dom("any") * 3]),
        Ex("broadcast_in_dim",
           lambda x: R["broadcast_in_dim"].bind(x, shape=(4, 2, 3), broadcast_dimensions=(1, 2)),
           lambda x: lax.broadcast_in_dim(x, (4, 2, 3), (1, 2)), [_dom("any")]),
        Ex("reshape", lambda x: R["reshape"].bind(x, new_sizes=(3, 2)),
           lambda x: lax.reshape(x, (3, 2)), [_dom("any")]),
        Ex("transpose", lambda x: R["transpose"].bind(x, permutation=(1, 0)),
           lambda x: lax.transpose(x, (1, 0)), [_dom("any")]),
        Ex("squeeze", lambda x: R["squeeze"].bind(x, dimensions=(0,)),
           lambda x: lax.squeeze(x, (0,)), [_dom("any", (1, 3))]),
        Ex("rev", lambda x: R["rev"].bind(x, dimensions=(1,)), lambda x: lax.rev(x, (1,)),
           [_dom("any")]),
        Ex("slice", lambda x: x[:, 1:3], lambda x: x[:, 1:3], [_dom("any", (3, 4))]),
        Ex("pad", lambda x: R["pad"].bind(x, np.float32(0.5), padding_config=((1, 2, 0), (0, -1, 1))),
           lambda x: lax.pad(x, np.float32(0.5), ((1, 2, 0), (0, -1, 1))), [_dom("any")]),
        Ex("concatenate", lambda x, y: tnp.concatenate([x, y], axis=1),
           lambda x, y: jnp.concatenate([x, y], axis=1), [_dom("any"), _dom("any", seed=1)]),
        Ex("iota", lambda x: x + R["iota"].bind(dtype=np.dtype(np.float32), shape=(2, 3), dimension=1),
           lambda x: x + lax.broadcasted_iota(np.float32, (2, 3), 1), [_dom("any")]),
        Ex("reduce_sum", lambda x: tnp.sum(x, axis=1), lambda x: jnp.sum(x, axis=1), [_dom("any")]),
        Ex("reduce_max", lambda x: tnp.max(x, axis=0), lambda x: jnp.max(x, axis=0), [_dom("any")]),
        Ex("reduce_min", lambda x: tnp.min(x), lambda x: jnp.min(x), [_dom("any")]),
        Ex("reduce_prod", lambda x: tnp.prod(x, axis=1), lambda x: jnp.prod(x, axis=1),
           [_dom("any")]),
        Ex("reduce_and", lambda x: tnp.all(x, axis=1), lambda x: jnp.all(x, axis=1), [_bools()]),
        Ex("reduce_or", lambda x: tnp.any(x, axis=0), lambda x: jnp.any(x, axis=0), [_bools()]),
        Ex("argmax", lambda x: tnp.argmax(x, axis=1), lambda x: jnp.argmax(x, axis=1),
           [_dom("any")]),
        Ex("argmin", lambda x: tnp.argmin(x, axis=0), lambda x: jnp.argmin(x, axis=0),
           [_dom("any")]),
        Ex("cumsum", lambda x: tnp.cumsum(x, axis=1), lambda x: jnp.cumsum(x, axis=1),
           [_dom("any")]),
        Ex("cumprod", lambda x: tnp.cumprod(x, axis=0), lambda x: jnp.cumprod(x, axis=0),
           [_dom("any")]),
        Ex("cummax", lambda x: R["cummax"].bind(x, axis=1, reverse=False),
           lambda x: lax.cummax(x, axis=1), [_dom("any")]),
        Ex("cummin", lambda x: R["cummin"].bind(x, axis=0, reverse=True),
           lambda x: lax.cummin(x, axis=0, reverse=True), [_dom("any")]),
        Ex("dot_general", lambda a, b: tnp.matmul(a, b), jnp.matmul,
           [_dom("any", (3, 4)), _dom("any", (4, 2), seed=1)], tol=dict(rtol=1e-5, atol=1e-5)),
        Ex("dynamic_slice", lambda x, i: R["dynamic_slice"].bind(x, i, np.int32(1), slice_sizes=(2, 2)),
           lambda x, i: lax.dynamic_slice(x, (i, np.int32(1)), (2, 2)),
           [_dom("any", (4, 4)), np.int32(1)]),
        Ex("dynamic_update_slice",
           lambda x, u, i: R["dynamic_update_slice"].bind(x, u, i, np.int32(0)),
           lambda x, u, i: lax.dynamic_update_slice(x, u, (i, np.int32(0))),
           [_dom("any", (4, 4)), _dom("any", (2, 3), seed=1), np.int32(2)]),
        Ex("gather", lambda x, i: x[i], lambda x, i: x[i],
           [_dom("any", (5, 3)), np.array([4, 0, 2, 2], np.int32)]),
        Ex("scatter", lambda x, i, u: tnp.asarray(x).at[i].set(u), lambda x, i, u: x.at[i].set(u),
           [_dom("any", (5, 3)), np.array([4, 0], np.int32), _dom("any", (2, 3), seed=1)]),
        Ex("scatter_add", lambda x, i, u: tnp.asarray(x).at[i].add(u), lambda x, i, u: x.at[i].add(u),
           [_dom("any", (5, 3)), np.array([4, 0, 4], np.int32), _dom("any", (3, 3), seed=1)]),
        Ex("scatter_mul", lambda x, i, u: tnp.asarray(x).at[i].multiply(u), lambda x, i, u: x.at[i].multiply(u),
           [_dom("any", (5, 3)), np.array([1, 3, 1], np.int32), _dom("any", (3, 3), seed=1)]),
        Ex("scatter_min", lambda x, i, u: tnp.asarray(x).at[i].min(u), lambda x, i, u: x.at[i].min(u),
           [_dom("any", (5, 3)), np.array([1, 3, 1], np.int32), _dom("any", (3, 3), seed=1)]),
        Ex("scatter_max", lambda x, i, u: tnp.asarray(x).at[i].max(u), lambda x, i, u: x.at[i].max(u),
           [_dom("any", (5, 3)), np.array([1, 3, 1], np.int32), _dom("any", (3, 3), seed=1)]),
        Ex("sort", lambda x: tnp.sort(x, axis=1), lambda x: jnp.sort(x, axis=1), [_dom("any", (3, 5))]),
        Ex("reduce_window", _maxpool, _jmaxpool, [_dom("any", (4, 5))]),
        Ex("select_and_gather_add", lambda x, t: tg.jvp(_maxpool, (x,), (t,))[1],
           lambda x, t: jax.jvp(_jmaxpool, (x,), (t,))[1],
           [_dom("any", (4, 5)), _dom("any", (4, 5), seed=1)]),
        Ex("select_and_scatter_add", tg.grad(lambda x: tnp.sum(_maxpool(x) ** 2)),
           jax.grad(lambda x: jnp.sum(_jmaxpool(x) ** 2)), [_dom("any", (4, 5))]),
        Ex("conv_general_dilated",
           lambda x, k: tg.primitives.conv.conv_general_dilated(x, k, (1, 1), "SAME"),
           lambda x, k: lax.conv_general_dilated(x, k, (1, 1), "SAME"),
           [_dom("any", (2, 3, 5, 5)), _dom("any", (4, 3, 3, 3), seed=1)],
           tol=dict(rtol=1e-4, atol=1e-4)),
        Ex("real", lambda z: tnp.real(z * 2), lambda z: jnp.real(z * 2), [_cplx()]),
        Ex("imag", lambda z: tnp.imag(z * 2), lambda z: jnp.imag(z * 2), [_cplx()]),
        Ex("conj", lambda z: tnp.conj(z) * z, lambda z: jnp.conj(z) * z, [_cplx()]),
        Ex("complex", lambda x, y: R["complex"].bind(x, y), lax.complex,
           [_dom("any"), _dom("any", seed=1)]),
        Ex("cond", lambda p, x: tg.lax.cond(p, lambda v: tnp.sin(v), lambda v: v * 2, x),
           lambda p, x: lax.cond(p, jnp.sin, lambda v: v * 2, x), [np.bool_(False), _dom("any")]),
        Ex("while", lambda x: tg.lax.while_loop(lambda c: c[0] < 4, lambda c: (c[0] + 1, c[1] * 1.5 + c[0]),
                                                (0, x))[1],
           lambda x: lax.while_loop(lambda c: c[0] < 4, lambda c: (c[0] + 1, c[1] * 1.5 + c[0]),
                                    (0, x))[1], [_dom("any")]),
        Ex("scan", lambda x: tg.lax.scan(lambda c, r: (c + r, c * r), tnp.zeros(3, np.float32), x),
           lambda x: lax.scan(lambda c, r: (c + r, c * r), jnp.zeros(3, np.float32), x),
           [_dom("any", (4, 3))]),
        Ex("checkpoint", tg.grad(lambda x: tnp.sum(tg.checkpoint(lambda v: tnp.sin(tnp.sin(v)))(x))),
           jax.grad(lambda x: jnp.sum(jax.checkpoint(lambda v: jnp.sin(jnp.sin(v)))(x))),
           [_dom("any")]),
        Ex("custom_jvp_call", lambda x: tg.grad(lambda v: tnp.sum(_softplus(v)))(x),
           jax.grad(lambda v: jnp.sum(jax.nn.softplus(v))), [_dom("any")],
           trace=lambda x: tg.make_jaxpr(_softplus)(x)),
        Ex("custom_vjp_call", lambda x: tg.grad(lambda v: tnp.sum(_scaled(v)))(x),
           jax.grad(lambda v: jnp.sum(_jscaled(v))), [_dom("any")],
           trace=lambda x: tg.make_jaxpr(_scaled)(x)),
        Ex("custom_vjp_lin", lambda x: tg.grad(lambda v: tnp.sum(_scaled(v)))(x),
           jax.grad(lambda v: jnp.sum(_jscaled(v))), [_dom("any")],
           trace=lambda x: tg.linearize(_scaled, x)[1].jaxpr),
        Ex("stop_gradient", tg.grad(lambda x: tnp.sum(x * tg.stop_gradient(x))),
           jax.grad(lambda x: jnp.sum(x * lax.stop_gradient(x))), [_dom("any")]),
        Ex("jit", lambda x: _inner_jit(x) + 1, lambda x: jnp.cos(x) * 2 + 1, [_dom("any")]),
    ]
)


def test_examples_cover_registry():
    have = {e.name for e in PRIMITIVE_EXAMPLES}
    missing = sorted(n for n in core.registry if n not in have)
    assert not missing, (f"registered primitives without a jit example in "
                         f"tests/test_jit.py PRIMITIVE_EXAMPLES: {missing}")


@pytest.mark.parametrize("ex", PRIMITIVE_EXAMPLES, ids=repr)
def test_primitive_example(ex):
    assert ex.name in core.registry, f"{ex.name} is not a registered primitive (renamed?)"
    traced = ex.trace(*ex.args) if ex.trace else tg.make_jaxpr(ex.fn)(*ex.args)
    assert ex.name in _prims_in(traced), f"the example does not use {ex.name}:\n{traced}"
    out = tg.jit(ex.fn)(*ex.args)
    ref = ex.jfn(*[jnp.asarray(a) for a in ex.args])
    assert_close(out, ex.fn(*ex.args), **ex.tol, what="jit vs eager")
    assert_close(out, ref, **ex.tol, what="jit vs jax")


def test_all_array_calls_take_the_unflattened_cached_path():
    f = tg.jit(lambda x, y: x * y + 1.0)
    x, y = tg.device_put(np.arange(3.0)), tg.device_put(np.ones(3))
    first = f(x, y)
    n = len(f._fast)
    assert (2, x._buf.aval, False, y._buf.aval, False) in f._fast
    again = f(x, y)
    assert len(f._fast) == n
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
    np.testing.assert_array_equal(np.asarray(f(x, x)), np.arange(3.0) ** 2 + 1.0)


def test_last_signature_path_rechecks_every_argument():
    """The key-free path for a call like the last one must fall back (and give
    the right answer) as soon as a dtype, shape, weak type or argument kind
    differs, and must not reach a donated (deleted) buffer."""
    f = tg.jit(lambda x, y: x * y + np.float32(1.0))
    x64 = tg.device_put(np.arange(3.0))
    f(x64, x64)
    out = f(x64, x64)  # cached now: this call took the last-signature path
    assert f._last is not None and f._last[2] is f._fast[(2, x64._buf.aval, False,
                                                          x64._buf.aval, False)]
    assert out.dtype == np.float64
    x32 = tg.device_put(np.arange(3.0, dtype=np.float32))
    assert f(x32, x32).dtype == np.float32
    # weak float64 arguments of the same aval as the last call's strong ones:
    # the result follows the float32 constant, as in JAX
    s = tg.device_put(np.float64(3.0))
    f(s, s)
    assert f(s, s).dtype == np.float64
    wk = tg.jit(lambda x: x * 1.0)(3.0)
    assert wk.weak and wk._buf.aval is s._buf.aval
    ref = jax.jit(lambda x, y: x * y + np.float32(1.0))(3.0, 3.0)
    r = f(wk, wk)
    assert r.dtype == ref.dtype == np.float32
    assert_close(r, ref, what="after weak arguments")
    # other shapes, host arrays, a different count of arguments
    np.testing.assert_array_equal(np.asarray(f(np.ones(2), np.ones(2))), [2.0, 2.0])
    np.testing.assert_array_equal(np.asarray(f(x64, x64)), np.arange(3.0) ** 2 + 1.0)
    with pytest.raises(TypeError):
        f(x64)
    # a donated argument is deleted: the call is explained, not run on freed memory
    g = tg.jit(lambda x: x + 1.0, donate_argnums=0)
    a = g(tg.device_put(np.zeros(4)))
    g(tg.device_put(np.zeros(4)))
    b = g(a)
    with pytest.raises(ValueError, match="deleted|donated"):
        g(a)
    np.testing.assert_array_equal(np.asarray(b), np.full(4, 2.0))
