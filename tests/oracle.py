"""The oracle: run the same program through tracegrad and JAX (x64 on) and
compare values, shapes, dtypes, derivatives and batched results.

Tolerances are per dtype (relative and absolute, see TOL)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import tracegrad as tg
from tracegrad import dtypes

jax.config.update("jax_enable_x64", True)

# (rtol, atol) per dtype of the compared values
TOL = {
    np.dtype(np.float16): (2e-2, 2e-2),
    dtypes.bfloat16: (5e-2, 5e-2),
    np.dtype(np.float32): (2e-5, 2e-5),
    np.dtype(np.float64): (1e-10, 1e-12),
    np.dtype(np.complex64): (2e-5, 2e-5),
    np.dtype(np.complex128): (1e-10, 1e-12),
}


def _np(x):
    return np.asarray(x)


def assert_close(actual, expected, rtol=None, atol=None, check_dtype=True, what="value"):
    a_leaves, a_tree = jax.tree_util.tree_flatten(actual)
    e_leaves, e_tree = jax.tree_util.tree_flatten(expected)
    assert len(a_leaves) == len(e_leaves), f"{what}: structure {a_tree} != {e_tree}"
    for i, (a, e) in enumerate(zip(a_leaves, e_leaves)):
        a, e = _np(a), _np(e)
        assert a.shape == e.shape, f"{what}[{i}]: shape {a.shape} != expected {e.shape}"
        if check_dtype:
            assert a.dtype == e.dtype, f"{what}[{i}]: dtype {a.dtype} != expected {e.dtype}"
        if a.dtype == dtypes.float0 or e.dtype == dtypes.float0 or a.size == 0:
            continue
        r, t = TOL.get(e.dtype, (0, 0))
        r = r if rtol is None else rtol
        t = t if atol is None else atol
        if e.dtype.kind in "iub":
            np.testing.assert_array_equal(a, e, err_msg=f"{what}[{i}]")
        else:
            np.testing.assert_allclose(a.astype(np.float64) if a.dtype == dtypes.bfloat16 else a,
                                       e.astype(np.float64) if e.dtype == dtypes.bfloat16 else e,
                                       rtol=r, atol=t, equal_nan=True, err_msg=f"{what}[{i}]")


def check_eval(tg_fn, jax_fn, *args, **tol):
    """Eager tracegrad == JAX, and eval_jaxpr(make_jaxpr(f)) == f."""
    out = tg_fn(*args)
    ref = jax_fn(*[jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args])
    assert_close(out, ref, **tol, what="eval")
    closed = tg.make_jaxpr(tg_fn)(*args)
    flat = jax.tree_util.tree_leaves(args)
    re = tg.eval_jaxpr(closed.jaxpr, closed.consts, *flat)
    assert_close(re, jax.tree_util.tree_leaves(out), **tol, what="eval_jaxpr")
    return out


def _rand_like(x, rng):
    x = np.asarray(x)
    return rng.standard_normal(x.shape).astype(x.dtype)


def check_jvp(tg_fn, jax_fn, args, rng=None, **tol):
    rng = rng or np.random.default_rng(0)
    tangents = tuple(_rand_like(a, rng) for a in args)
    out, tout = tg.jvp(tg_fn, tuple(args), tangents)
    rout, rtout = jax.jvp(jax_fn, tuple(jnp.asarray(a) for a in args), tuple(jnp.asarray(t) for t in tangents))
    assert_close(out, rout, **tol, what="jvp primal")
    assert_close(tout, rtout, **tol, what="jvp tangent")


def check_vjp(tg_fn, jax_fn, args, rng=None, **tol):
    rng = rng or np.random.default_rng(1)
    out, f_vjp = tg.vjp(tg_fn, *args)
    rout, r_vjp = jax.vjp(jax_fn, *[jnp.asarray(a) for a in args])
    ct = jax.tree_util.tree_map(lambda o: _rand_like(o, rng), rout)
    assert_close(out, rout, **tol, what="vjp primal")
    assert_close(f_vjp(ct), r_vjp(jax.tree_util.tree_map(jnp.asarray, ct)), **tol, what="vjp cotangent")


def check_vmap(tg_fn, jax_fn, args, in_axes=0, out_axes=0, **tol):
    out = tg.vmap(tg_fn, in_axes, out_axes)(*args)
    ref = jax.vmap(jax_fn, in_axes, out_axes)(*[jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args])
    assert_close(out, ref, **tol, what=f"vmap(in_axes={in_axes})")


def check_jit(tg_fn, args, **tol):
    """jit(f) == eager f (values and dtypes)."""
    out = tg.jit(tg_fn)(*args)
    ref = tg_fn(*args)
    assert_close(out, ref, **tol, what="jit")


def check_all(tg_fn, jax_fn, args, diff=True, batch=True, jit=True, **tol):
    check_eval(tg_fn, jax_fn, *args, **tol)
    if diff:
        check_jvp(tg_fn, jax_fn, args, **tol)
        check_vjp(tg_fn, jax_fn, args, **tol)
    if batch:
        # map over a new leading axis of every argument
        bargs = [np.stack([np.asarray(a), np.asarray(a) * 0.5 + 0.25]).astype(np.asarray(a).dtype)
                 for a in args]
        check_vmap(tg_fn, jax_fn, bargs, **tol)
    if jit and hasattr(tg, "jit"):
        check_jit(tg_fn, args, **tol)


def check_lowering(tg_fn, args, **tol):
    """Lower make_jaxpr(f) to StableHLO, compile and run it with XLA directly
    (independent of tracegrad.jit), and compare with eager f."""
    from tracegrad.interpreters import lowering, xla
    closed = tg.make_jaxpr(tg_fn)(*args)
    module = lowering.lower_jaxpr(closed)
    exe = xla.compile(module)
    flat = [np.asarray(a) for a in jax.tree_util.tree_leaves(args)]
    outs = xla.execute(exe, lowering.hoisted_consts(closed) + [xla.device_put(a) for a in flat])
    ref = jax.tree_util.tree_leaves(tg_fn(*args))
    assert_close([np.asarray(o) for o in outs], ref, **tol, what="lowered")
