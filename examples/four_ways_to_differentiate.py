"""Four ways to differentiate the same function: numerically, symbolically,
and by automatic differentiation in forward and in reverse mode.

The function is the logistic map iterated k times,

    l_0(x) = x,    l_{i+1}(x) = 4 l_i(x) (1 - l_i(x)),    f(x) = l_k(x),

the example Baydin et al. use to show expression swell ("Automatic
differentiation in machine learning: a survey", 2018).

1. Numerical: finite differences. The error first falls with the step h
   (truncation error ~h for forward differences, ~h^2 for central ones), then
   rises again as rounding error (~eps/h) takes over: there is a best h, and
   even there only about half (forward) or two thirds (central) of the digits
   are right.
2. Symbolic: sympy differentiates the expression. Exact, but the derivative's
   expression grows exponentially with k unless common subexpressions are
   shared (expression swell). Skipped if sympy is not installed.
3. Forward mode (`tg.jvp`): one pass gives J v, a directional derivative;
   the full Jacobian of F: R^n -> R^m needs n passes.
4. Reverse mode (`tg.vjp` / `tg.grad`): one pass gives u^T J; the full
   Jacobian needs m passes. The gradient of a scalar loss of n parameters
   costs a small constant times one evaluation, whatever n: why training
   uses reverse mode. The traced derivative (`make_jaxpr(grad(f))`) grows
   only linearly with k.

The last part measures the costs as the input and output dimensions grow,
and everything is plotted to examples/output/four_ways_to_differentiate.png.

    python examples/four_ways_to_differentiate.py [--quick]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import tracegrad as tg
import tracegrad.numpy as tnp

OUT_DIR = os.environ.get("TRACEGRAD_EXAMPLES_OUT") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "output")


def logistic_map(x, k):
    for _ in range(k):
        x = 4.0 * x * (1.0 - x)
    return x


# --------------------------------------------------------------------------
# 1-4 on one point


def numerical_errors(f, x0, exact, steps):
    fwd, cen = [], []
    for h in steps:
        fwd.append(abs((f(x0 + h) - f(x0)) / h - exact))
        cen.append(abs((f(x0 + h) - f(x0 - h)) / (2 * h) - exact))
    return np.array(fwd), np.array(cen)


def four_ways(k, x0, verbose):
    def f(x):
        return logistic_map(x, k)

    # forward mode: the tangent of x is 1, so the output tangent is f'(x0)
    _, d_forward = tg.jvp(f, (x0,), (1.0,))
    # reverse mode: the cotangent of the output is 1
    d_reverse = tg.grad(f)(x0)
    exact = float(d_reverse)

    steps = np.logspace(-1, -15, 57)
    fwd_err, cen_err = numerical_errors(lambda x: float(f(x)), x0, exact, steps)

    d_symbolic = None
    try:
        import sympy
        xs = sympy.Symbol("x")
        d_symbolic = float(sympy.diff(logistic_map(xs, k), xs).subs(xs, x0))
    except ImportError:
        pass

    if verbose:
        print(f"f = logistic map iterated k={k} times, derivative at x0 = {x0}")
        print(f"  forward mode (jvp):   {float(d_forward):.15f}")
        print(f"  reverse mode (grad):  {float(d_reverse):.15f}")
        if d_symbolic is not None:
            print(f"  symbolic (sympy):     {d_symbolic:.15f}")
        else:
            print("  symbolic: sympy is not installed (pip install sympy)")
        ib, jb = int(np.argmin(fwd_err)), int(np.argmin(cen_err))
        print(f"  numerical, forward difference: best h = {steps[ib]:.1e}, error "
              f"{fwd_err[ib]:.1e}; h = 1e-12 error {fwd_err[np.argmin(abs(steps - 1e-12))]:.1e}")
        print(f"  numerical, central difference: best h = {steps[jb]:.1e}, error "
              f"{cen_err[jb]:.1e}; h = 1e-12 error {cen_err[np.argmin(abs(steps - 1e-12))]:.1e}")
    return {"forward": float(d_forward), "reverse": float(d_reverse), "symbolic": d_symbolic,
            "steps": steps, "forward_difference_error": fwd_err,
            "central_difference_error": cen_err}


# --------------------------------------------------------------------------
# expression swell


def _count_eqns(jaxpr):
    """Equations, counting those inside nested jaxprs (jit calls)."""
    n = 0
    for eqn in jaxpr.eqns:
        n += 1
        for v in eqn.params.values():
            inner = getattr(v, "jaxpr", v)
            if hasattr(inner, "eqns"):
                n += _count_eqns(inner)
    return n


def expression_swell(depths, verbose):
    try:
        import sympy
    except ImportError:
        sympy = None
        if verbose:
            print("\nexpression swell: sympy is not installed, showing only the AD side")
    rows = []
    x = sympy.Symbol("x") if sympy else None
    for k in depths:
        row = {"k": k}
        jp = tg.make_jaxpr(tg.grad(lambda v: logistic_map(v, k)))(0.3)
        row["ad_eqns"] = _count_eqns(jp.jaxpr)
        if sympy:
            expr = logistic_map(x, k)
            d = sympy.diff(expr, x)
            row["sympy_ops"] = int(sympy.count_ops(d))
            # sharing common subexpressions (what AD does implicitly) removes the swell
            repl, reduced = sympy.cse(d)
            row["sympy_cse_ops"] = int(sum(sympy.count_ops(e) for _, e in repl)
                                       + sympy.count_ops(reduced[0]))
        rows.append(row)
    if verbose:
        print("\nexpression swell: size of the derivative of l_k")
        head = f"  {'k':>3s} {'jaxpr eqns of grad':>19s}"
        if sympy:
            head += f" {'sympy diff (ops)':>17s} {'sympy diff + cse':>17s}"
        print(head)
        for r in rows:
            line = f"  {r['k']:3d} {r['ad_eqns']:19d}"
            if sympy:
                line += f" {r['sympy_ops']:17d} {r['sympy_cse_ops']:17d}"
            print(line)
    return rows


# --------------------------------------------------------------------------
# costs as dimensions grow


def make_vector_fn(n, m, k=3, hidden=64, seed=0):
    """F: R^n -> R^m, F(x) = B l_k(sigmoid(A x)): a dense Jacobian."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(hidden, n)) / np.sqrt(n)
    b = rng.normal(size=(m, hidden)) / np.sqrt(hidden)

    def F(x):
        h = 1.0 / (1.0 + tnp.exp(-(a @ x)))
        return b @ logistic_map(h, k)
    return F


def _time(fn, repeat=3):
    fn()  # compile / warm up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def jacobian_costs(n, m):
    """Seconds to get the full m x n Jacobian by each method, calling the
    jitted one-pass primitives in a Python loop so that the number of passes
    shows: numerical n+1 evaluations, forward n jvps, reverse m vjps."""
    F = make_vector_fn(n, m)
    x = np.linspace(0.1, 0.9, n)
    f_jit = tg.jit(F)
    jvp_jit = tg.jit(lambda x, v: tg.jvp(F, (x,), (v,))[1])
    vjp_jit = tg.jit(lambda x, u: tg.vjp(F, x)[1](u)[0])
    eye_n, eye_m = np.eye(n), np.eye(m)
    h = 1e-7

    def numerical():
        f0 = np.asarray(f_jit(x))
        return np.stack([(np.asarray(f_jit(x + h * e)) - f0) / h for e in eye_n], 1)

    def forward():
        return np.stack([np.asarray(jvp_jit(x, e)) for e in eye_n], 1)

    def reverse():
        return np.stack([np.asarray(vjp_jit(x, e)) for e in eye_m], 0)

    jf, jr, jn = forward(), reverse(), numerical()
    assert np.allclose(jf, jr, atol=1e-10), "forward and reverse Jacobians differ"
    assert np.allclose(jn, jr, atol=1e-4), "numerical Jacobian is off"
    return {"n": n, "m": m, "numerical": _time(numerical), "forward": _time(forward),
            "reverse": _time(reverse)}


def cost_sweeps(dims, verbose):
    many_in = [jacobian_costs(n, 1) for n in dims]     # gradients: R^n -> R
    many_out = [jacobian_costs(1, m) for m in dims]    # R -> R^m
    if verbose:
        print("\nfull Jacobian of F: R^n -> R^m (ms; one jitted pass per call)")
        print(f"  {'n':>5s} {'m':>5s} {'numerical (n+1)':>16s} {'forward (n)':>12s} "
              f"{'reverse (m)':>12s}")
        for r in many_in + many_out:
            print(f"  {r['n']:5d} {r['m']:5d} {r['numerical'] * 1e3:16.2f} "
                  f"{r['forward'] * 1e3:12.2f} {r['reverse'] * 1e3:12.2f}")
        print("  -> reverse mode wins when n >> m (gradients of losses), forward mode "
              "when m >> n")
    return many_in, many_out


# --------------------------------------------------------------------------


def plot(point, swell, many_in, many_out, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0, 0]
    ax.loglog(point["steps"], np.maximum(point["forward_difference_error"], 1e-17), "o-",
              ms=3, label="forward difference")
    ax.loglog(point["steps"], np.maximum(point["central_difference_error"], 1e-17), "s-",
              ms=3, label="central difference")
    ax.set_xlabel("step h")
    ax.set_ylabel("|error| vs reverse-mode AD")
    ax.set_title("1. numerical: truncation vs rounding error")
    ax.invert_xaxis()
    ax.legend()

    ax = axes[0, 1]
    ks = [r["k"] for r in swell]
    ax.semilogy(ks, [r["ad_eqns"] for r in swell], "o-", label="AD: jaxpr of grad (eqns)")
    if "sympy_ops" in swell[0]:
        ax.semilogy(ks, [r["sympy_ops"] for r in swell], "s-", label="sympy.diff (ops)")
        ax.semilogy(ks, [r["sympy_cse_ops"] for r in swell], "^-", label="sympy.diff + cse (ops)")
    ax.set_xlabel("depth k of the logistic map")
    ax.set_ylabel("size of the derivative")
    ax.set_title("2. symbolic: expression swell")
    ax.legend()

    for ax, rows, key, title in ((axes[1, 0], many_in, "n", "3/4. gradients of R^n -> R"),
                                 (axes[1, 1], many_out, "m", "3/4. Jacobians of R -> R^m")):
        d = [r[key] for r in rows]
        for meth, mk in (("numerical", "o-"), ("forward", "s-"), ("reverse", "^-")):
            ax.loglog(d, [r[meth] * 1e3 for r in rows], mk, label=meth)
        ax.set_xlabel(f"{key} (input dim)" if key == "n" else f"{key} (output dim)")
        ax.set_ylabel("ms for the full Jacobian")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(quick=False, verbose=True, save_plot=True, out_dir=None):
    point = four_ways(k=4, x0=0.3, verbose=verbose)
    swell = expression_swell(range(1, 5 if quick else 7), verbose)
    dims = [2, 8, 32] if quick else [2, 8, 32, 128, 512]
    many_in, many_out = cost_sweeps(dims, verbose)
    path = os.path.join(out_dir or OUT_DIR, "four_ways_to_differentiate.png")
    if save_plot:
        try:
            plot(point, swell, many_in, many_out, path)
            if verbose:
                print(f"\nplots saved to {path}")
        except ImportError:
            print("matplotlib is not installed: no plot (pip install matplotlib)")
            path = None
    return {"point": point, "swell": swell, "many_in": many_in, "many_out": many_out,
            "plot": path}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sweeps (smoke test)")
    args = ap.parse_args()
    main(quick=args.quick or bool(os.environ.get("TRACEGRAD_EXAMPLES_QUICK")))
