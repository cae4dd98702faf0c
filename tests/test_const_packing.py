"""jit's small consts: packed into one @main argument per dtype when only
fusible ops read them (lowering._const_plan), their own arguments otherwise;
results equal JAX's bit for bit either way."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tracegrad as tg
import tracegrad.numpy as tnp
from tracegrad import core
from tracegrad.interpreters import lowering, xla


@pytest.fixture(autouse=True)
def _no_disk_cache(monkeypatch):
    monkeypatch.setenv("TRACEGRAD_DISABLE_DISK_CACHE", "1")


def main_args(f, *args):
    """The argument types of the lowered @main."""
    text = tg.jit(f).lower(*args).as_text()
    sig = re.search(r"func\.func public @main\((.*?)\) ->", text).group(1)
    return re.findall(r"tensor<([^>]*)>", sig)


def closed(f, *args):
    return tg.make_jaxpr(f)(*args)


IDX1 = np.array([3, 0, 2, 1, 4], np.int64)
IDX2 = np.array([[1, 1], [0, 4]], np.int64)
SIGN1 = np.array([1.0, -1.0, 1.0, -1.0, 1.0])
SIGN2 = np.array([[0.5, 2.0], [-3.0, 0.25]])


def gathers(np_):
    def f(x):
        return (x[IDX1] * np_.asarray(SIGN1)).sum() + (x[IDX2] * np_.asarray(SIGN2)).sum()
    return f


def test_tables_read_by_gathers_and_products_share_one_argument_per_dtype():
    x = np.linspace(-1.0, 1.0, 5)
    # (index tables are int32 by the time they reach the program, as in JAX)
    assert main_args(gathers(tnp), x) == ["9xi32", "9xf64", "5xf64"]  # packs, then x
    packed = lowering.hoisted_consts(closed(gathers(tnp), x))
    np.testing.assert_array_equal(packed[0], np.concatenate([IDX1, IDX2.ravel()]))
    np.testing.assert_array_equal(packed[1], np.concatenate([SIGN1, SIGN2.ravel()]))
    out = tg.jit(gathers(tnp))(x)
    ref = jax.jit(gathers(jnp))(x)
    assert np.asarray(out).tobytes() == np.asarray(ref).tobytes()


def test_grad_of_gathers_keeps_scatter_indices_as_their_own_arguments():
    # the transpose of a gather is a scatter_add, whose indices XLA cannot
    # fuse: a slice of a pack there would be a kernel of its own
    x = np.linspace(-1.0, 1.0, 5)
    args = main_args(tg.grad(gathers(tnp)), x)
    assert "5x1xi32" in args and "2x2x1xi32" in args   # the tables, unpacked
    assert "9xf64" in args and "9xi32" not in args  # the signs, packed
    g = tg.jit(tg.grad(gathers(tnp)))(x)
    np.testing.assert_array_equal(np.asarray(g), np.asarray(jax.grad(gathers(jnp))(x)))


def _through_reshape(closed_jaxpr, flat_consts):
    """The same program with each const read through a reshape equation."""
    from tracegrad.primitives.shapes import reshape_p
    j = closed_jaxpr.jaxpr
    flat_vars = [core.Var(core.ShapedArray(c.shape, c.dtype)) for c in flat_consts]
    eqns = [core.JaxprEqn(reshape_p, [fv], [v], {"new_sizes": v.aval.shape})
            for fv, v in zip(flat_vars, j.constvars)]
    return core.ClosedJaxpr(core.Jaxpr(flat_vars, j.invars, j.outvars, eqns + list(j.eqns)),
                            flat_consts)


def _run(cj, *args):
    exe = xla.compile(lowering.lower_jaxpr(cj))
    ins = [xla.device_put(a) for a in lowering.hoisted_consts(cj) + list(args)]
    return [np.asarray(o) for o in xla.execute(exe, ins)]


def test_a_const_reshaped_into_a_scatter_is_not_packed():
    # reshape is a bitcast: a const read through it packs only if the
    # reshape's result is read fusibly (here by a gather, not by a scatter)
    idx = np.array([0, 2, 2, 1], np.int32)
    other = np.array([5, 6, 7], np.int32)
    x = np.arange(8.0)

    def f(x):
        return x.at[idx].add(1.0) * (x[other] + 1.0).sum()
    cj = _through_reshape(tg.make_jaxpr(f)(x), [idx, other])
    assert [e.primitive.name for e in cj.jaxpr.eqns[:2]] == ["reshape", "reshape"]
    packs = lowering.hoisted_consts(cj)
    assert len(packs) == 2 and packs[0] is idx and packs[1] is other
    np.testing.assert_array_equal(_run(cj, x)[0], np.asarray(jax.jit(f)(x)))

    def g(x):
        return x[idx].sum() * (x[other] + 1.0).sum()
    cj = _through_reshape(tg.make_jaxpr(g)(x), [idx, other])
    packs = lowering.hoisted_consts(cj)
    assert len(packs) == 1 and packs[0].tolist() == [0, 2, 2, 1, 5, 6, 7]
    assert _run(cj, x)[0] == float(jax.jit(g)(x))


def test_packs_of_a_program_of_small_buffers_stay_small():
    # XLA:CPU runs a program with no buffer over 512 bytes on one thread; a
    # pack must not become the first larger buffer
    consts = [np.full(30, float(i)) for i in range(6)]   # 240 bytes each

    def f(x):
        return sum(x * c for c in consts)
    x = np.ones(30)
    packs = lowering.hoisted_consts(closed(f, x))
    assert [p.nbytes for p in packs] == [480, 480, 480]
    np.testing.assert_array_equal(np.asarray(tg.jit(f)(x)), sum(x * c for c in consts))


def test_large_consts_and_lone_consts_are_not_packed():
    big = np.arange(5000.0)              # 40 kB: over the pack limit
    lone = np.array([1, 2, 3], np.int32)

    def f(x):
        return (x * big).sum() + (x[:3] * lone).sum()
    x = np.ones(5000)
    packs = lowering.hoisted_consts(closed(f, x))
    assert len(packs) == 2 and packs[0] is big
    np.testing.assert_array_equal(np.asarray(packs[1]), lone)


_DTYPES = [np.bool_, np.int8, np.int32, np.int64, np.uint16, np.float32, np.float64,
           np.complex64]


@st.composite
def const_sets(draw):
    out = []
    for _ in range(draw(st.integers(2, 7))):
        dtype = np.dtype(draw(st.sampled_from(_DTYPES)))
        shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
        if np.prod(shape) < 2:
            shape = shape + (2,)
        seed = draw(st.integers(0, 2**16))
        vals = np.random.default_rng(seed).integers(-9, 9, shape)
        out.append((vals != 0) if dtype == np.bool_ else vals.astype(dtype))
    return out


@settings(max_examples=25, deadline=None)
@given(const_sets())
def test_packed_consts_reach_the_program_intact(consts):
    # any mix of dtypes and shapes, read by elementwise ops: every value,
    # dtype and shape survives packing and slicing apart
    def f(np_):
        def g(x):
            return [~np_.asarray(c) if c.dtype == np.bool_ else np_.asarray(c) + x.astype(c.dtype)
                    for c in consts]
        return g
    x = np.array(1, np.int8)
    outs = tg.jit(f(tnp))(x)
    refs = jax.jit(f(jnp))(x)
    for o, r, c in zip(outs, refs, consts):
        o = np.asarray(o)
        assert o.dtype == r.dtype and o.shape == c.shape
        np.testing.assert_array_equal(o, np.asarray(r))
