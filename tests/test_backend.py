"""Backend room: device_put / compile / execute and Jaxpr -> StableHLO lowering."""
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

try:
    import tracegrad  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    # normalized: core.user_frame compares code paths with its own abspath
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, "src")))

import ml_dtypes
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import func, stablehlo as hlo

from tracegrad import core
from tracegrad.interpreters import lowering, xla
from tracegrad.interpreters.lowering import ir_type

bf16 = np.dtype(ml_dtypes.bfloat16)
ALL_DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
              np.uint32, np.uint64, np.float16, bf16, np.float32, np.float64,
              np.complex64, np.complex128]


@pytest.fixture(autouse=True)
def _no_disk_cache(monkeypatch):
    monkeypatch.setenv("TRACEGRAD_DISABLE_DISK_CACHE", "1")


def _sample(dtype, shape=(5,)):
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    if dtype == np.bool_:
        return (np.arange(n) % 2 == 0).reshape(shape)
    x = (np.arange(n) + 1).reshape(shape)
    if dtype.kind == "c":
        return (x + 0.5j * x).astype(dtype)
    return x.astype(dtype)


def prim(name, lower, multiple_results=False):
    """A throwaway Primitive that does not stay in core.registry."""
    p = core.Primitive(f"backend_test_{name}", lower=lower, multiple_results=multiple_results)
    core.registry.pop(p.name, None)
    return p


def run_jaxpr(closed, *args, **kw):
    module = lowering.lower_jaxpr(closed, **kw)
    exe = xla.compile(module)
    consts = lowering.hoisted_consts(closed, **kw)
    outs = xla.execute(exe, [xla.device_put(c) for c in consts] + [xla.device_put(a) for a in args])
    return [xla.to_numpy(o) for o in outs], module


# ---------------------------------------------------------------- transfers

def test_devices():
    assert xla.default_device() in xla.devices()
    assert xla.backend().platform == xla.default_device().client.platform
    assert xla.devices("cpu")


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
def test_device_put_roundtrip(dtype):
    x = _sample(dtype, (2, 3))
    b = xla.device_put(x)
    assert xla.is_buffer(b)
    y = xla.to_numpy(b)
    assert y.dtype == np.dtype(dtype)  # 64-bit types are never truncated
    np.testing.assert_array_equal(y, x)


def test_device_put_scalars_and_layouts():
    assert xla.to_numpy(xla.device_put(1.5)).dtype == np.float64
    assert xla.to_numpy(xla.device_put(3)).dtype == np.int64
    assert xla.to_numpy(xla.device_put(True)).dtype == np.bool_
    t = np.arange(12.0).reshape(3, 4).T  # non-contiguous
    np.testing.assert_array_equal(xla.to_numpy(xla.device_put(t)), t)
    ro = np.arange(4.0)
    ro.flags.writeable = False
    np.testing.assert_array_equal(xla.to_numpy(xla.device_put(ro)), ro)
    z = xla.device_put(np.zeros((0, 3), np.float32))
    assert xla.to_numpy(z).shape == (0, 3)
    b = xla.device_put(np.ones(3))
    assert xla.device_put(b) is b  # already there
    with pytest.raises(TypeError):
        xla.device_put(np.array(["a"]))


def test_device_put_is_not_aliased():
    x = np.arange(1024, dtype=np.float32)  # large enough to be aligned
    b = xla.device_put(x)
    x[:] = -1
    np.testing.assert_array_equal(xla.to_numpy(b), np.arange(1024, dtype=np.float32))


def test_device_put_core_array_reuses_buffer():
    buf = xla.device_put(np.ones(3))
    a = core.Array(None, buf=buf)
    assert xla.device_put(a) is buf
    np.testing.assert_array_equal(np.asarray(a), np.ones(3))


# ---------------------------------------------------------------- hand-built module

def _sin_mul_plus_one_module(dtype=np.float32, n=8):
    aval = core.ShapedArray((n,), np.dtype(dtype))
    with lowering.lock, lowering.ir_context(), ir.Location.unknown():
        m = ir.Module.create()
        t = ir_type(aval)
        with ir.InsertionPoint(m.body):
            fn = func.FuncOp("main", ir.FunctionType.get([t, t], [t]))
            fn.attributes["sym_visibility"] = ir.StringAttr.get("public")
            block = fn.add_entry_block()
            with ir.InsertionPoint(block):
                x, y = block.arguments
                s = hlo.SineOp(hlo.MulOp(x, y).result).result
                out = hlo.AddOp(s, lowering.constant(1, aval)).result
                func.ReturnOp([out])
        lowering.verify(m)
    return m


def test_hand_built_module():
    m = _sin_mul_plus_one_module()
    text = lowering.module_text(m)
    assert "stablehlo.sine" in text and "stablehlo.multiply" in text
    exe = xla.compile(m)
    x = np.linspace(0, 1, 8, dtype=np.float32)
    y = np.linspace(1, 2, 8, dtype=np.float32)
    out, = xla.execute(exe, [xla.device_put(x), xla.device_put(y)])
    np.testing.assert_allclose(xla.to_numpy(out), np.sin(x * y) + 1, rtol=1e-6)
    out, = exe(xla.device_put(x), xla.device_put(y))  # cached handlers path
    np.testing.assert_allclose(xla.to_numpy(out), np.sin(x * y) + 1, rtol=1e-6)
    out, = xla.execute(exe, [x, y])  # numpy args: transferred on the slow path
    np.testing.assert_allclose(xla.to_numpy(out), np.sin(x * y) + 1, rtol=1e-6)
    ca = xla.cost_analysis(exe)
    assert ca["flops"] > 0 and "transcendentals" in ca
    assert "sine" in exe.hlo_text()
    assert exe.name == "main"
    with pytest.raises(Exception, match="arguments"):
        xla.execute(exe, [xla.device_put(x)])


def test_compile_memory_cache():
    m1, m2 = _sin_mul_plus_one_module(), _sin_mul_plus_one_module()
    assert xla.compile(m1) is xla.compile(m2)  # same text, same device


def test_timing_sanity():
    exe = xla.compile(_sin_mul_plus_one_module())
    x = xla.device_put(np.ones(8, np.float32))
    args = [x, x]
    xla.execute(exe, args)
    n = 20000
    for label, fn in [("execute f32[8] x2", lambda: xla.execute(exe, args)),
                      ("device_put f32[8]", lambda: xla.device_put(np.ones(8, np.float32))),
                      ("to_numpy", lambda: xla.to_numpy(x))]:
        fn()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        print(f"\n{label}: {(time.perf_counter() - t0) / n * 1e6:.2f} us/call")


def test_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACEGRAD_DISABLE_DISK_CACHE", "0")
    monkeypatch.setenv("TRACEGRAD_CACHE_DIR", str(tmp_path))
    m = _sin_mul_plus_one_module(n=13)  # a module no other test compiles
    e1 = xla.compile(m, use_cache=True)
    assert e1.from_cache is None and list(tmp_path.glob("*.xla"))
    xla._memory_cache.clear()
    e2 = xla.compile(m)
    assert e2.from_cache == "disk"
    x = np.arange(13, dtype=np.float32)
    out, = xla.execute(e2, [x, x])
    np.testing.assert_allclose(xla.to_numpy(out), np.sin(x * x) + 1, rtol=1e-6)


# ---------------------------------------------------------------- lowering real jaxprs

def _binary_jaxpr(p, aval_in, aval_out=None, source_info="model.py:7 (f)"):
    a, b = core.Var(aval_in), core.Var(aval_in)
    out = core.Var(aval_out or aval_in)
    return core.ClosedJaxpr(core.Jaxpr([], [a, b], [out],
                                       [core.JaxprEqn(p, [a, b], [out], {}, source_info)]))


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
def test_lower_add_all_dtypes(dtype):
    dtype = np.dtype(dtype)
    op = hlo.OrOp if dtype == np.bool_ else hlo.AddOp
    p = prim("add", lowering.elementwise(op))
    aval = core.ShapedArray((5,), dtype)
    x = _sample(dtype)
    (out,), _ = run_jaxpr(_binary_jaxpr(p, aval), x, x)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, (x | x) if dtype == np.bool_ else x + x)


def test_unsigned_compare_and_types():
    def lt(ctx, a, b):
        return [lowering.compare(a, b, "LT", ctx.avals_in[0])]
    p = prim("lt", lt)
    aval = core.ShapedArray((3,), np.dtype(np.uint32))
    x = np.array([2**31 + 1, 1, 5], np.uint32)
    y = np.array([1, 2**31 + 1, 5], np.uint32)
    (out,), m = run_jaxpr(_binary_jaxpr(p, aval, core.ShapedArray((3,), np.dtype(bool))), x, y)
    np.testing.assert_array_equal(out, x < y)
    text = lowering.module_text(m)
    assert "tensor<3xui32>" in text and "UNSIGNED" in text
    with lowering.ir_context():
        assert str(ir_type(core.ShapedArray((), bf16))) == "tensor<bf16>"
        assert str(ir_type(core.ShapedArray((2,), np.dtype(np.complex64)))) == "tensor<2xcomplex<f32>>"
        assert str(ir_type(core.ShapedArray((1,), np.dtype(bool)))) == "tensor<1xi1>"


def test_convert_and_literals_and_consts():
    f32 = core.ShapedArray((4,), np.dtype(np.float32))
    s32 = core.ShapedArray((), np.dtype(np.float32))
    b4 = core.ShapedArray((4,), np.dtype(bool))

    def to_bool(ctx, x):
        return [lowering.convert(x, ctx.avals_in[0], ctx.avals_out[0])]
    conv = prim("to_bool", to_bool)
    mul = prim("mul", lowering.elementwise(hlo.MulOp))
    add = prim("add", lowering.elementwise(hlo.AddOp))
    x, c_big, c_full, t, r, q, u = (core.Var(f32) for _ in range(7))
    c_small = core.Var(s32)
    lit = core.Literal(np.float32(2.0), core.ShapedArray((), np.dtype(np.float32), True))
    r_bool = core.Var(b4)
    jaxpr = core.Jaxpr(
        [c_big, c_small, c_full], [x], [u, r_bool, x],
        [core.JaxprEqn(mul, [x, lit], [t], {}, "m.py:1 (f)"),   # literal broadcast
         core.JaxprEqn(add, [t, c_big], [r], {}, "m.py:2 (f)"),
         core.JaxprEqn(add, [r, c_small], [q], {}, "m.py:3 (f)"),  # scalar const
         core.JaxprEqn(add, [q, c_full], [u], {}, "m.py:4 (f)"),
         core.JaxprEqn(conv, [x], [r_bool], {}, "m.py:5 (f)")])
    big = np.array([10, 20, 30, 40], np.float32)
    full = np.full((4,), 0.25, np.float32)
    closed = core.ClosedJaxpr(jaxpr, [big, np.float32(0.5), full])
    xv = np.array([0, 1, -2, 3], np.float32)
    expect = xv * 2 + big + 0.5 + 0.25

    # default: scalars embedded, arrays hoisted to leading arguments
    hoisted = lowering.hoisted_consts(closed)
    assert len(hoisted) == 2 and hoisted[0] is big and hoisted[1] is full
    (u_out, b_out, x_out), m = run_jaxpr(closed, xv)
    np.testing.assert_allclose(u_out, expect)
    np.testing.assert_array_equal(b_out, xv != 0)
    np.testing.assert_array_equal(x_out, xv)
    text = lowering.module_text(m)
    assert "%arg2: tensor<4xf32>" in text and "%arg3" not in text
    assert "dense<5.000000e-01> : tensor<f32>" in text
    dbg = lowering.module_text(m, debug_info=True)
    assert '"m.py":2:0' in dbg

    # everything embedded; np.full becomes scalar constant + broadcast
    assert lowering.hoisted_consts(closed, inline_const_max_size=4) == []
    (u_out, _, _), m = run_jaxpr(closed, xv, inline_const_max_size=4)
    np.testing.assert_allclose(u_out, expect)
    text = lowering.module_text(m)
    assert "dense<2.500000e-01> : tensor<f32>" in text and "broadcast_in_dim" in text
    assert "%arg1" not in text


def test_reduce_and_reducer_region():
    x_aval = core.ShapedArray((3, 4), np.dtype(np.int32))
    o_aval = core.ShapedArray((3,), np.dtype(np.int32))
    for kind, ref in [("add", np.sum), ("max", np.max), ("min", np.min), ("mul", np.prod)]:
        p = prim(f"reduce_{kind}", lambda ctx, x, kind=kind: [
            lowering.reduce(x, ctx.avals_in[0], ctx.avals_out[0], [1], kind)])
        a, o = core.Var(x_aval), core.Var(o_aval)
        closed = core.ClosedJaxpr(core.Jaxpr([], [a], [o], [core.JaxprEqn(p, [a], [o], {})]))
        xv = np.arange(12, dtype=np.int32).reshape(3, 4) - 5
        (out,), _ = run_jaxpr(closed, xv)
        np.testing.assert_array_equal(out, ref(xv, axis=1))


def _cond_while_primitives():
    f32 = core.ShapedArray((), np.dtype(np.float32))
    mul = prim("mul", lowering.elementwise(hlo.MulOp))
    neg = prim("neg", lowering.elementwise(hlo.NegOp))
    lt = prim("lt", lambda ctx, a, b: [lowering.compare(a, b, "LT", ctx.avals_in[0])])

    def cond_lower(ctx, pred, *ops, branches):
        op = hlo.IfOp([ir_type(a) for a in ctx.avals_out], pred)
        ctx.lower_region(op.true_branch, branches[1], captured=ops)
        ctx.lower_region(op.false_branch, branches[0], captured=ops)
        return list(op.results)
    cond = prim("cond", cond_lower, multiple_results=True)

    def while_lower(ctx, *carry, cond_jaxpr, body_jaxpr):
        op = hlo.WhileOp([ir_type(a) for a in ctx.avals_out], list(carry))
        ctx.lower_region(op.cond, cond_jaxpr, arg_avals=ctx.avals_in)
        ctx.lower_region(op.body, body_jaxpr, arg_avals=ctx.avals_in)
        return list(op.results)
    while_p = prim("while", while_lower, multiple_results=True)
    return f32, mul, neg, lt, cond, while_p


def test_cond_and_while_regions():
    f32, mul, neg, lt, cond, while_p = _cond_while_primitives()
    b = core.ShapedArray((), np.dtype(bool))
    # branches: false -> -x ; true -> x * 3  (true branch has a scalar const)
    x0, y0 = core.Var(f32), core.Var(f32)
    br_false = core.ClosedJaxpr(core.Jaxpr([], [x0], [y0], [core.JaxprEqn(neg, [x0], [y0], {})]))
    k, x1, y1 = core.Var(f32), core.Var(f32), core.Var(f32)
    br_true = core.ClosedJaxpr(core.Jaxpr([k], [x1], [y1], [core.JaxprEqn(mul, [x1, k], [y1], {})]),
                               [np.float32(3)])
    # loop: while x < 100: x = x * 2
    cx, cp = core.Var(f32), core.Var(b)
    cond_j = core.ClosedJaxpr(core.Jaxpr([], [cx], [cp], [core.JaxprEqn(
        lt, [cx, core.Literal(np.float32(100), f32)], [cp], {})]))
    bx, by = core.Var(f32), core.Var(f32)
    body_j = core.ClosedJaxpr(core.Jaxpr([], [bx], [by], [core.JaxprEqn(
        mul, [bx, core.Literal(np.float32(2), f32)], [by], {})]))

    p, x, c, w = core.Var(b), core.Var(f32), core.Var(f32), core.Var(f32)
    top = core.ClosedJaxpr(core.Jaxpr([], [p, x], [c, w], [
        core.JaxprEqn(cond, [p, x], [c], {"branches": (br_false, br_true)}, "t.py:1 (g)"),
        core.JaxprEqn(while_p, [c], [w], {"cond_jaxpr": cond_j, "body_jaxpr": body_j}, "t.py:2 (g)"),
    ]))
    for pv, xv in [(True, 1.5), (False, -1.5)]:
        (cv, wv), m = run_jaxpr(top, np.bool_(pv), np.float32(xv))
        expect_c = xv * 3 if pv else -xv
        assert cv == np.float32(expect_c)
        ref = expect_c
        while ref < 100:
            ref *= 2
        assert wv == np.float32(ref)
    text = lowering.module_text(m)
    assert "stablehlo.if" in text and "stablehlo.while" in text


def test_call_sub_jaxpr_as_function():
    f32 = core.ShapedArray((2,), np.dtype(np.float32))
    sin = prim("sin", lowering.elementwise(hlo.SineOp))
    a, s = core.Var(f32), core.Var(f32)
    inner = core.ClosedJaxpr(core.Jaxpr([], [a], [s], [core.JaxprEqn(sin, [a], [s], {})]))
    call = prim("call", lambda ctx, *xs, jaxpr: ctx.call_sub_jaxpr(jaxpr, *xs, name="inner"),
                multiple_results=True)
    inline = prim("inline", lambda ctx, *xs, jaxpr: ctx.lower_sub_jaxpr(jaxpr, *xs),
                  multiple_results=True)
    x, y, z, w = (core.Var(f32) for _ in range(4))
    top = core.ClosedJaxpr(core.Jaxpr([], [x], [z, w], [
        core.JaxprEqn(call, [x], [y], {"jaxpr": inner}),
        core.JaxprEqn(call, [y], [z], {"jaxpr": inner}),  # same func reused
        core.JaxprEqn(inline, [x], [w], {"jaxpr": inner}),
    ]))
    xv = np.array([0.3, 0.7], np.float32)
    (zv, wv), m = run_jaxpr(top, xv)
    np.testing.assert_allclose(zv, np.sin(np.sin(xv)), rtol=1e-6)
    np.testing.assert_allclose(wv, np.sin(xv), rtol=1e-6)
    text = lowering.module_text(m)
    assert text.count("func.func private @inner") == 1 and text.count("call @inner") == 2


def test_errors_name_primitive_and_line():
    f32 = core.ShapedArray((3,), np.dtype(np.float32))
    nolower = prim("nolower", None)
    bad = prim("bad", lambda ctx, a, b: (_ for _ in ()).throw(ValueError("boom")))
    for p, msg in [(nolower, "no lowering rule for primitive 'backend_test_nolower'"),
                   (bad, "'backend_test_bad' at model.py:7 \\(f\\) failed: ValueError: boom")]:
        with pytest.raises(lowering.LoweringError, match=msg):
            lowering.lower_jaxpr(_binary_jaxpr(p, f32))
    # a rule that builds ill-typed IR is caught by verification, with location
    wrong = prim("wrong", lambda ctx, a, b: [lowering.constant(np.zeros(5, np.float32))])
    with pytest.raises(lowering.LoweringError, match="verify") as ei:
        lowering.lower_jaxpr(_binary_jaxpr(wrong, f32))
    assert "model.py" in str(ei.value) or "return" in str(ei.value)


def test_second_device_subprocess():
    """Compile for / transfer to a non-default device (needs 2 CPU devices,
    which must be requested before the backend starts: a fresh process)."""
    code = textwrap.dedent("""
        import numpy as np
        from tracegrad.interpreters import xla
        from tests.test_backend import _sin_mul_plus_one_module
        d0, d1 = xla.devices()[:2]
        exe = xla.compile(_sin_mul_plus_one_module(), device=d1)
        x = np.linspace(0, 1, 8, dtype=np.float32)
        b0 = xla.device_put(x, d0)
        b1 = xla.device_put(b0, d1)
        assert b1.devices() == {d1}
        out, = xla.execute(exe, [b1, b1])
        assert out.devices() == {d1}
        np.testing.assert_allclose(xla.to_numpy(out), np.sin(x * x) + 1, rtol=1e-6)
        out, = xla.execute(exe, [b0, b1])  # wrong device: moved on the slow path
        out, = xla.execute(exe, [b1, b1])
        print("OK")
    """)
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               PYTHONPATH=os.pathsep.join([os.path.join(root, "src"), root]),
               TRACEGRAD_DISABLE_DISK_CACHE="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       cwd=root, timeout=120)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
def test_embedded_constants_all_dtypes(dtype):
    dtype = np.dtype(dtype)
    vals = np.array([1, 0, 3]).astype(dtype) if dtype != np.bool_ else np.array([True, False, True])
    if dtype.kind == "u":
        vals[0] = np.iinfo(dtype).max  # must not come back sign-mangled
    aval = core.ShapedArray((3,), dtype)
    c = core.Var(aval)
    lit = core.Literal(np.asarray(vals[0]), core.ShapedArray((), dtype))
    closed = core.ClosedJaxpr(core.Jaxpr([c], [], [c, lit], []), [vals])
    (out, out_lit), _ = run_jaxpr(closed, inline_const_max_size=100)
    assert out.dtype == dtype and out_lit.dtype == dtype
    np.testing.assert_array_equal(out, vals)
    assert out_lit == vals[0]


@pytest.mark.parametrize("src,dst", [(np.float32, np.int32), (np.int32, np.float16),
                                     (np.complex64, np.float32), (np.float64, bf16),
                                     (np.uint8, np.bool_), (np.float32, np.bool_),
                                     (np.bool_, np.float32), (np.int64, np.uint32)],
                         ids=str)
def test_convert_pairs(src, dst):
    a_in, a_out = core.ShapedArray((4,), np.dtype(src)), core.ShapedArray((4,), np.dtype(dst))
    p = prim("convert", lambda ctx, x: [lowering.convert(x, ctx.avals_in[0], ctx.avals_out[0])])
    x, y = core.Var(a_in), core.Var(a_out)
    closed = core.ClosedJaxpr(core.Jaxpr([], [x], [y], [core.JaxprEqn(p, [x], [y], {})]))
    xv = np.array([0, 1, 2, 3]).astype(src)
    if np.dtype(src).kind == "c":
        xv = xv + 1j
    (out,), _ = run_jaxpr(closed, xv)
    expect = (xv.real if np.dtype(src).kind == "c" else xv).astype(dst)
    np.testing.assert_array_equal(out, expect)


def test_traced_jaxpr_with_real_primitives():
    """A jaxpr traced by core from the real primitive modules lowers and runs."""
    from tracegrad.primitives import elementwise as E, reductions as R

    def f(x, y):
        z = E.add_p.bind(core.registry["sin"].bind(E.mul_p.bind(x, y)), np.float32(1))
        return [z, R.reduce_sum_p.bind(z, axes=(0,))]
    aval = core.ShapedArray((8,), np.dtype(np.float32))
    closed = core.trace_to_jaxpr(f, [aval, aval])
    x = np.linspace(0, 1, 8, dtype=np.float32)
    (z, s), m = run_jaxpr(closed, x, x)
    np.testing.assert_allclose(z, np.sin(x * x) + 1, rtol=1e-6)
    np.testing.assert_allclose(s, (np.sin(x * x) + 1).sum(), rtol=1e-5)
    assert "test_backend.py" in lowering.module_text(m, debug_info=True)
