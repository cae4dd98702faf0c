"""Testing helpers: check_grads compares automatic derivatives with central
finite differences (and forward mode with reverse mode), to any order.

    from tracegrad.test_util import check_grads
    check_grads(f, (x, y), order=2)              # fwd and rev, up to 2nd order

Derivatives are checked along random directions (one tangent per input, one
cotangent per output), so the cost does not grow with the input size:
  * JVP:  jvp(f, x, t) vs (f(x + eps t) - f(x - eps t)) / 2 eps, elementwise;
  * VJP:  <vjp(u), t> vs <u, finite-difference J t>, and vs <u, jvp(t)>
          (the two AD modes must agree to rounding);
  * order > 1: the same checks on x -> jvp(f, x, t)[1] and x -> vjp(f, x)(u).
Integer/bool inputs are held fixed; their tangents are float0 zeros.
Tolerances and step sizes depend on the dtype. A failure names the check
(e.g. "VJP of JVP"), the output leaf and its worst element: index, expected,
got, error and the allowed error.
"""
from __future__ import annotations

import numpy as np

from . import dtypes
from .api import jvp, vjp
from .tree_util import tree_flatten, tree_map, tree_unflatten

__all__ = ["check_grads", "check_jvp", "check_vjp", "numerical_jvp", "GradientCheckError"]

# central differences: truncation error ~ eps**2, rounding error ~ u / eps,
# balanced near eps ~ u**(1/3)
_EPS = {
    dtypes.float16: 3e-2, dtypes.float32: 2e-3, dtypes.float64: 1e-6,
    dtypes.complex64: 2e-3, dtypes.complex128: 1e-6,
}
_TOL = {
    dtypes.float16: 5e-2, dtypes.float32: 5e-3, dtypes.float64: 1e-6,
    dtypes.complex64: 5e-3, dtypes.complex128: 1e-6,
}
if dtypes.bfloat16 is not None:
    _EPS[dtypes.bfloat16] = 1e-1
    _TOL[dtypes.bfloat16] = 2e-1


class GradientCheckError(AssertionError):
    """A derivative disagrees with finite differences (or with the other AD mode)."""


def _np(x):
    return np.asarray(x)


def _is_float(x):
    return dtypes.is_float(_np(x).dtype)


def _wide(x):
    """float64/complex128 copy for comparisons (bf16 has no NumPy math)."""
    x = _np(x)
    return x.astype(np.complex128 if x.dtype.kind == "c" else np.float64)


def _eps_for(leaves, eps):
    if eps is not None:
        return eps
    fl = [_np(x).dtype for x in leaves if _is_float(x)]
    return max((_EPS.get(d, 1e-3) for d in fl), default=1e-6)


def _tol_for(dtype, tol):
    if tol is None:
        return _TOL.get(np.dtype(dtype), 1e-3)
    if isinstance(tol, dict):
        return tol.get(np.dtype(dtype), _TOL.get(np.dtype(dtype), 1e-3))
    return tol


def _rand_like(rng, x):
    x = _np(x)
    if not dtypes.is_float(x.dtype):
        return np.zeros(x.shape, dtypes.float0)
    v = rng.standard_normal(x.shape)
    if x.dtype.kind == "c":
        v = v + 1j * rng.standard_normal(x.shape)
    return np.asarray(v).astype(x.dtype)


def _axpy(a, t, x):
    """x + a * t for float leaves (integer leaves unchanged)."""
    if not _is_float(x):
        return x
    xv = _np(x)
    return (_wide(xv) + a * _wide(t)).astype(xv.dtype)


def numerical_jvp(f, args, tangents, eps):
    """Central difference of f at args along tangents (flat leaves)."""
    leaves, tree = tree_flatten(tuple(args))
    t_leaves = tree_flatten(tuple(tangents))[0]
    plus = tree_unflatten(tree, [_axpy(eps, t, x) for x, t in zip(leaves, t_leaves)])
    minus = tree_unflatten(tree, [_axpy(-eps, t, x) for x, t in zip(leaves, t_leaves)])
    fp, ftree = tree_flatten(f(*plus))
    fm = tree_flatten(f(*minus))[0]
    out = []
    for a, b in zip(fp, fm):
        a, b = _np(a), _np(b)
        if not dtypes.is_float(a.dtype):
            out.append(np.zeros(a.shape, dtypes.float0))
            continue
        with np.errstate(invalid="ignore"):
            d = np.where(_wide(a) == _wide(b), 0, _wide(a) - _wide(b))  # inf - inf -> 0
        out.append(d / (2 * eps))
    return tree_unflatten(ftree, out)


def _compare(got, want, dtype, atol, rtol, what):
    """Elementwise |got - want| <= atol + rtol |want|; on failure describe the
    worst element."""
    got, want = _wide(got), _wide(want)
    if got.shape != want.shape:
        raise GradientCheckError(f"{what}: shape {got.shape} != expected {want.shape}")
    if got.size == 0:
        return
    a, r = _tol_for(dtype, atol), _tol_for(dtype, rtol)
    both_nan = np.isnan(got) & np.isnan(want)
    same_inf = np.isinf(got) & (got == want)
    with np.errstate(invalid="ignore"):
        err = np.abs(got - want)
        allowed = a + r * np.abs(want)
        excess = np.where(both_nan | same_inf, -1.0, np.where(np.isnan(err), np.inf, err - allowed))
    if np.all(excess <= 0):
        return
    flat = int(np.argmax(excess))
    idx = np.unravel_index(flat, got.shape) if got.ndim else ()
    n_bad = int(np.sum(excess > 0))
    raise GradientCheckError(
        f"{what}: {n_bad} of {got.size} elements differ; worst at index {tuple(map(int, idx))}: "
        f"expected {_fmt(want[idx])}, got {_fmt(got[idx])}, error {_fmt(err[idx])} > allowed "
        f"{_fmt(allowed[idx])} "
        f"(atol={a}, rtol={r}, dtype={np.dtype(dtype)})")


def _fmt(v):
    v = complex(v) if np.iscomplexobj(v) else float(v)
    return f"{v:.10g}"


def _inner(xs, ys):
    """Re(sum(conj(x) * y)) over matching float leaves."""
    total = 0.0
    for x, y in zip(xs, ys):
        x, y = _np(x), _np(y)
        if not dtypes.is_float(x.dtype) or not dtypes.is_float(y.dtype) or x.size == 0:
            continue
        total += float(np.real(np.sum(np.conj(_wide(x)) * _wide(y))))
    return total


def _scale(xs, ys):
    total = 0.0
    for x, y in zip(xs, ys):
        x, y = _np(x), _np(y)
        if not dtypes.is_float(x.dtype) or not dtypes.is_float(y.dtype) or x.size == 0:
            continue
        total += float(np.sum(np.abs(_wide(x)) * np.abs(_wide(y))))
    return total


def _out_dtype(leaves):
    fl = [_np(x).dtype for x in leaves if _is_float(x)]
    return max(fl, key=lambda d: _TOL.get(d, 1e-3)) if fl else np.dtype(np.float64)


def check_jvp(f, args, tangents=None, eps=None, atol=None, rtol=None, rng=None, label="JVP"):
    """jvp(f, args, tangents) against central differences, elementwise."""
    args = tuple(args)
    rng = rng if rng is not None else np.random.default_rng(0)
    if tangents is None:
        tangents = tree_map(lambda x: _rand_like(rng, x), args)
    leaves = tree_flatten(args)[0]
    e = _eps_for(leaves, eps)
    out, tout = jvp(f, args, tuple(tangents))
    ref = f(*args)
    o_leaves, o_tree = tree_flatten(out)
    r_leaves, r_tree = tree_flatten(ref)
    if o_tree != r_tree:
        raise GradientCheckError(f"{label}: jvp's primal output structure {o_tree} differs from "
                                 f"f's {r_tree}")
    for i, (o, r) in enumerate(zip(o_leaves, r_leaves)):
        if _is_float(r):
            _compare(o, r, _np(r).dtype, atol, rtol, f"{label} primal output {i}")
    fd = tree_flatten(numerical_jvp(f, args, tangents, e))[0]
    for i, (t, n, r) in enumerate(zip(tree_flatten(tout)[0], fd, r_leaves)):
        if not _is_float(r):
            if _np(t).dtype != dtypes.float0:
                raise GradientCheckError(f"{label}: tangent of integer output {i} should be "
                                         f"float0, got {_np(t).dtype}")
            continue
        # finite differences are as precise as the least precise of inputs and output
        _compare(t, n, _out_dtype([r] + leaves), atol, rtol,
                 f"{label} tangent output {i} vs finite differences (eps={e})")
    return tout


def _elementwise_vjp_report(f, args, u, ct, e, label):
    """After a failed projection check: compare each element of the
    cotangent with the finite difference of <u, f(x)> along that input
    element, and report the worst one."""
    leaves, tree = tree_flatten(tuple(args))
    ct_leaves = tree_flatten(ct)[0]
    u_leaves = tree_flatten(u)[0]
    worst = None
    budget = 2000  # input elements probed at most
    for j, (x, c) in enumerate(zip(leaves, ct_leaves)):
        if not _is_float(x):
            continue
        xv = _np(x)
        for k in range(min(xv.size, budget)):
            budget -= 1
            t = np.zeros(xv.shape, xv.dtype)
            t.reshape(-1)[k] = 1
            ts = [t if i == j else np.zeros(_np(l).shape, _np(l).dtype if _is_float(l)
                                            else dtypes.float0)
                  for i, l in enumerate(leaves)]
            d = tree_flatten(numerical_jvp(f, args, tree_unflatten(tree, ts), e))[0]
            want = _inner(u_leaves, d)
            got = float(np.real(_wide(c).reshape(-1)[k]))
            err = abs(got - want)
            if worst is None or err > worst[0]:
                idx = np.unravel_index(k, xv.shape) if xv.ndim else ()
                worst = (err, j, tuple(map(int, idx)), want, got)
    if worst is None:
        return ""
    err, j, idx, want, got = worst
    return (f"\n  elementwise: worst input leaf {j} index {idx}: finite differences give {_fmt(want)}, "
            f"{label} cotangent is {_fmt(got)} (error {_fmt(err)})")


def check_vjp(f, args, cotangents=None, tangents=None, eps=None, atol=None, rtol=None, rng=None,
              label="VJP", against_jvp=True):
    """vjp(f, *args) against finite differences and (against_jvp) against
    jvp, projected on random directions: <u, J t> computed three ways."""
    args = tuple(args)
    rng = rng if rng is not None else np.random.default_rng(1)
    leaves = tree_flatten(args)[0]
    e = _eps_for(leaves, eps)
    out, f_vjp = vjp(f, *args)
    ref = f(*args)
    o_leaves, o_tree = tree_flatten(out)
    r_leaves = tree_flatten(ref)[0]
    for i, (o, r) in enumerate(zip(o_leaves, r_leaves)):
        if _is_float(r):
            _compare(o, r, _np(r).dtype, atol, rtol, f"{label} primal output {i}")
    if tangents is None:
        tangents = tree_map(lambda x: _rand_like(rng, x), args)
    if cotangents is None:
        cotangents = tree_unflatten(o_tree, [_rand_like(rng, o) for o in o_leaves])
    u_leaves = tree_flatten(cotangents)[0]
    # JAX's convention for complex values: the adjoint is conj . vjp . conj
    ct = f_vjp(tree_unflatten(o_tree, [np.conj(u) if _is_float(u) else u for u in u_leaves]))
    ct_leaves = [np.conj(_np(c)) if _is_float(c) else _np(c) for c in tree_flatten(ct)[0]]
    t_leaves = tree_flatten(tuple(tangents))[0]
    ip_ad = _inner(t_leaves, ct_leaves)
    fd = tree_flatten(numerical_jvp(f, args, tangents, e))[0]
    ip_fd = _inner(fd, u_leaves)
    dt = _out_dtype(r_leaves + leaves)
    a, r = _tol_for(dt, atol), _tol_for(dt, rtol)
    scale = _scale(fd, u_leaves) + _scale(t_leaves, ct_leaves)
    if abs(ip_ad - ip_fd) > a + r * max(abs(ip_fd), scale / max(1, len(u_leaves))):
        detail = _elementwise_vjp_report(f, args, cotangents, ct_leaves, e, label)
        raise GradientCheckError(
            f"{label}: cotangent projection <vjp(u), t> = {_fmt(ip_ad)} differs from finite "
            f"differences <u, J t> = {_fmt(ip_fd)} (error {_fmt(abs(ip_ad - ip_fd))}, atol={a}, rtol={r}, "
            f"eps={e}){detail}")
    if not against_jvp:
        return ct
    # both AD modes compute the same linear map: agree up to rounding
    _, tout = jvp(f, args, tuple(tangents))
    ip_jvp = _inner(tree_flatten(tout)[0], u_leaves)
    if abs(ip_ad - ip_jvp) > a + r * scale:
        raise GradientCheckError(
            f"{label}: reverse and forward mode disagree: <vjp(u), t> = {_fmt(ip_ad)} but "
            f"<u, jvp(t)> = {_fmt(ip_jvp)} (error {_fmt(abs(ip_ad - ip_jvp))})")
    return ct


def check_grads(f, args, order=2, modes=("fwd", "rev"), eps=None, atol=None, rtol=None, seed=0):
    """Check f's derivatives at args up to `order` in the given modes
    ("fwd": jvp, "rev": vjp); raises GradientCheckError naming the failing
    check and its worst element. atol/rtol: a number or a {dtype: tol} dict."""
    args = tuple(args)
    modes = (modes,) if isinstance(modes, str) else tuple(modes)
    for m in modes:
        if m not in ("fwd", "rev"):
            raise ValueError(f"check_grads: unknown mode {m!r}; use 'fwd' and/or 'rev'")
    if order < 1:
        raise ValueError(f"check_grads: order must be >= 1, got {order}")
    rng = np.random.default_rng(seed)
    kw = dict(eps=eps, atol=atol, rtol=rtol)

    def rec(f, order, label):
        if "fwd" in modes:
            lab = f"JVP of {label}" if label else "JVP"
            check_jvp(f, args, rng=rng, label=lab, **kw)
            if order > 1:
                t = tree_map(lambda x: _rand_like(rng, x), args)
                rec(lambda *xs: jvp(f, xs, t)[1], order - 1, lab)
        if "rev" in modes:
            lab = f"VJP of {label}" if label else "VJP"
            check_vjp(f, args, rng=rng, label=lab, against_jvp="fwd" in modes, **kw)
            if order > 1:
                out_leaves, out_tree = tree_flatten(f(*args))
                u = tree_unflatten(out_tree, [_rand_like(rng, o) for o in out_leaves])
                rec(lambda *xs: vjp(f, *xs)[1](u), order - 1, lab)

    rec(f, order, "")
