"""Fast paths of eager reverse mode (interpreters/tape.py, ad.transpose_vjp,
tnp's matmul shortcut): each must give exactly what the general path gives
(values, dtypes, weak types), checked against linearize + transpose
(`config.eager_tape = False`) and JAX."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tracegrad as tg
import tracegrad.numpy as tnp
from tracegrad import core
from tracegrad.interpreters import tape

from oracle import assert_close
from test_tape import _grad_both_ways



# ---- matmul with a NumPy operand (a weight matrix passed as data)

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", [((3, 4), (4,)), ((4,), (4, 3)), ((3, 4), (4, 2)), ((1, 1), (1,))])
@pytest.mark.parametrize("numpy_side", [0, 1])
def test_matmul_numpy_operand_eager(dtype, shapes, numpy_side):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(s).astype(dtype) for s in shapes)
    ops = [tnp.asarray(a), tnp.asarray(b)]
    ops[numpy_side] = (a, b)[numpy_side]
    got = ops[0] @ ops[1]
    want = jnp.asarray(a) @ jnp.asarray(b)
    assert type(got) is core.Array and not got.weak  # a NumPy array is a strong constant
    assert got.dtype == want.dtype and got.shape == want.shape
    assert_close(np.asarray(got), np.asarray(want))
    assert_close(np.asarray(tnp.matmul(*ops)), np.asarray(want))
    assert_close(np.asarray(tnp.dot(*ops)), np.asarray(want))


@pytest.mark.parametrize("numpy_side", [0, 1])
def test_matmul_numpy_operand_grad(numpy_side):
    rng = np.random.default_rng(1)
    W = rng.standard_normal((5, 3))
    x = rng.standard_normal(3) if numpy_side == 0 else rng.standard_normal(5)

    def f(x):
        y = W @ x if numpy_side == 0 else x @ W
        return tnp.sum(tnp.tanh(y) * y)

    def fj(x):
        y = W @ x if numpy_side == 0 else x @ W
        return jnp.sum(jnp.tanh(y) * y)

    g_tape, g_lin = _grad_both_ways(f, tnp.asarray(x))
    want = jax.grad(fj)(jnp.asarray(x))
    assert g_tape.dtype == g_lin.dtype == want.dtype
    assert_close(np.asarray(g_tape), np.asarray(g_lin))
    assert_close(np.asarray(g_tape), np.asarray(want))


def test_matmul_numpy_operand_mismatch_still_raises():
    with pytest.raises((TypeError, ValueError)):
        tnp.ones((3, 4)) @ np.ones((3,))
    with pytest.raises((TypeError, ValueError)):
        tg.grad(lambda x: tnp.sum(np.ones((2, 3)) @ x))(tnp.ones(4))


def test_matmul_numpy_int_operand_promotes():
    # mixed dtypes are not the fast path's: the general path promotes (as JAX)
    got = tnp.ones((2, 3)) @ np.arange(3)
    want = jnp.ones((2, 3)) @ jnp.arange(3)
    assert got.dtype == want.dtype
    assert_close(np.asarray(got), np.asarray(want))


# ---- the tape's bookkeeping

def test_transpose_vjp_pullback_reusable_and_only_needed_operands():
    # the UndefinedPrimals are made when the pullback runs: calling it twice,
    # and with only one operand differentiated, gives the linearize results
    x, y = tnp.asarray(np.array([0.5, -1.0, 2.0])), tnp.asarray(np.array([3.0, 0.25, -2.0]))

    def f(x, y):
        return x * y + tnp.reshape(x, (3, 1))[:, 0] * 2.0

    for argnums in (0, 1, (0, 1)):
        g_tape, g_lin = _grad_both_ways(lambda a, b: tnp.sum(f(a, b)), x, y, argnums=argnums)
        for gt, gl in zip(*(v if isinstance(v, tuple) else (v,) for v in (g_tape, g_lin))):
            assert_close(np.asarray(gt), np.asarray(gl))
    out, pull = tg.vjp(f, x, y)
    ct = tnp.asarray(np.array([1.0, 2.0, 3.0]))
    first, second = pull(ct), pull(ct)
    for a, b in zip(first, second):
        assert_close(np.asarray(a), np.asarray(b))
    assert_close(np.asarray(first[0]), np.asarray(y) * np.asarray(ct) + 2.0 * np.asarray(ct))
    assert_close(np.asarray(first[1]), np.asarray(x) * np.asarray(ct))


def test_backward_accumulates_fan_out():
    # one value used by many operations: its cotangents are summed in the walk
    x = tnp.asarray(np.array([0.3, -0.7]))

    def f(x):
        return tnp.sum(x * x + tnp.sin(x) + x * 3.0 + x)

    g_tape, g_lin = _grad_both_ways(f, x)
    want = jax.grad(lambda x: jnp.sum(x * x + jnp.sin(x) + x * 3.0 + x))(jnp.asarray(x))
    assert_close(np.asarray(g_tape), np.asarray(g_lin))
    assert_close(np.asarray(g_tape), np.asarray(want))


def test_tape_records_only_tracked_float_results():
    tr = tape.TapeTrace()
    x = tape.TapeTracer(tr, tnp.asarray(np.array([1.0, 2.0])), tr.new_slot())
    with core.set_trace(tr):
        c = tnp.asarray(np.array([3.0, 4.0])) * 2.0   # constant: not recorded
        b = x > 1.5                                     # bool result: not recorded
        y = x * c
    tr.finish()
    assert type(c) is core.Array and type(b) is core.Array
    assert type(y) is tape.TapeTracer
    assert len(tr.entries) == 1
