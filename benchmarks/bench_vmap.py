"""vmap and Jacobians, measured side by side in one run.

1. Per-example gradients, batch 128, f32, of a linear model (64 -> 10) and of
   the MLP 64-256-256-10 (tanh, softmax cross-entropy):
     tracegrad vmap(grad)  vs  a Python loop of tracegrad grad over examples
     (the goal: vmap >= 20x faster)  vs  jax.vmap(jax.grad) without jit,
   and jitted: tracegrad.jit(vmap(grad)) vs jax.jit(jax.vmap(jax.grad)).
2. jacfwd vs jacrev of a small tanh network f: R^n -> R^m
   (f(x) = W2 tanh(W1 x + b), 32 hidden units, float64), n, m in
   {1, 10, 100, 1000}, for tracegrad and JAX, without jit and jitted. The
   forward/reverse ratio shows the crossover: forward mode wins when n < m.

    python benchmarks/bench_vmap.py [--json PATH] [--quick]

BLAS runs single-threaded unless OPENBLAS_NUM_THREADS / OMP_NUM_THREADS is
set: on this shared 2-core machine multi-threaded OpenBLAS slows down 10-15x
whenever another process is busy (measured: f64 32x1000 @ 1000x1000 takes
6 ms with one thread, 80 ms with two under load), which would swamp every
NumPy-backed row.
"""
from __future__ import annotations

import os

if "OPENBLAS_NUM_THREADS" not in os.environ and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before NumPy loads OpenBLAS

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from _timing import best_median, fmt_us, print_table

import jax
import jax.numpy as jnp
import tracegrad as tg
import tracegrad.numpy as tnp

jax.config.update("jax_enable_x64", True)


def _time(fn, budget, repeat=5):
    """Median seconds per call; calls per batch chosen to fill ~`budget` s."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    number = max(1, int(budget / repeat / one))
    return best_median(fn, number, repeat=repeat, warmup=1)


def _block(x):
    jax.tree_util.tree_map(lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a, x)
    return x


# --------------------------------------------------------------------------
# 1. per-example gradients


def _mlp_params(rng, sizes):
    # (divide before the cast: a float32 array / np.float64 scalar is float64 under NEP 50)
    return [((rng.standard_normal((m, n)) / np.sqrt(m)).astype(np.float32),
             np.zeros(n, np.float32)) for m, n in zip(sizes[:-1], sizes[1:])]


def _loss(np_):
    def loss(params, x, y):
        h = x
        for i, (w, b) in enumerate(params):
            h = np_.matmul(h, w) + b
            if i < len(params) - 1:
                h = np_.tanh(h)
        logp = h - np_.log(np_.sum(np_.exp(h)))
        return -np_.sum(logp * y)
    return loss


def per_example(rows, results, quick):
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((128, 64)).astype(np.float32)
    yb = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 128)]
    budget = 0.3 if quick else 1.0
    for label, sizes in (("linear 64-10", [64, 10]), ("MLP 64-256-256-10", [64, 256, 256, 10])):
        params = _mlp_params(rng, sizes)
        g_tg = tg.grad(_loss(tnp))
        g_jax = jax.grad(_loss(jnp))
        vg_tg = tg.vmap(g_tg, (None, 0, 0))
        vg_jax = jax.vmap(g_jax, (None, 0, 0))

        def loop():
            return [g_tg(params, xb[i], yb[i]) for i in range(xb.shape[0])]

        # same numbers three ways
        a, b = vg_tg(params, xb, yb), vg_jax(params, xb, yb)
        lp = loop()
        for (wa, ba), (wb, bb) in zip(a, b):
            np.testing.assert_allclose(np.asarray(wa), np.asarray(wb), rtol=2e-3, atol=2e-5)
        np.testing.assert_allclose(np.stack([np.asarray(g[0][0]) for g in lp]), np.asarray(a[0][0]),
                                   rtol=1e-4, atol=1e-6)

        t_vmap = _time(lambda: vg_tg(params, xb, yb), budget)
        t_loop = _time(loop, 2 * budget, repeat=3)
        t_jax = _time(lambda: _block(vg_jax(params, xb, yb)), budget)
        jv_tg = tg.jit(vg_tg)
        jv_jax = jax.jit(vg_jax)
        pj = jax.tree_util.tree_map(jnp.asarray, params)
        xj, yj = jnp.asarray(xb), jnp.asarray(yb)
        pt, xt, yt = tg.device_put(params), tg.device_put(xb), tg.device_put(yb)
        np.testing.assert_allclose(np.asarray(jv_tg(pt, xt, yt)[0][0]), np.asarray(a[0][0]), rtol=1e-3, atol=1e-5)
        t_jit_tg = _time(lambda: _block(jv_tg(pt, xt, yt)), budget)
        t_jit_jax = _time(lambda: _block(jv_jax(pj, xj, yj)), budget)
        name = f"per-example grads {label}, b=128"
        rows.append((f"{name}: vmap(grad) vs loop", "tg loop", t_loop, t_vmap))
        rows.append((f"{name}: vmap(grad)", "jax eager", t_jax, t_vmap))
        rows.append((f"{name}: jit(vmap(grad))", "jax.jit", t_jit_jax, t_jit_tg))
        results[label] = {"tg_vmap_s": t_vmap, "tg_loop_s": t_loop, "jax_vmap_eager_s": t_jax,
                          "tg_jit_vmap_s": t_jit_tg, "jax_jit_vmap_s": t_jit_jax,
                          "loop_over_vmap": t_loop / t_vmap}


# --------------------------------------------------------------------------
# 2. jacfwd vs jacrev


def _net(np_, w1, b, w2):
    return lambda x: np_.matmul(w2, np_.tanh(np_.matmul(w1, x) + b))


def jacobians(results, quick):
    sizes = [1, 10, 100, 1000]
    hidden = 32
    budget = 0.08 if quick else 0.25
    rng = np.random.default_rng(1)
    table = []
    for n in sizes:
        for m in sizes:
            w1 = rng.standard_normal((hidden, n)) / np.sqrt(n)
            b = rng.standard_normal(hidden)
            w2 = rng.standard_normal((m, hidden)) / np.sqrt(hidden)
            x = rng.standard_normal(n)
            f_tg, f_jax = _net(tnp, w1, b, w2), _net(jnp, w1, b, w2)
            row = {"n": n, "m": m}
            ref = np.asarray(jax.jacrev(f_jax)(x))
            variants = {
                "tg_fwd": tg.jacfwd(f_tg), "tg_rev": tg.jacrev(f_tg),
                "jax_fwd": jax.jacfwd(f_jax), "jax_rev": jax.jacrev(f_jax),
                "tg_jit_fwd": tg.jit(tg.jacfwd(f_tg)), "tg_jit_rev": tg.jit(tg.jacrev(f_tg)),
                "jax_jit_fwd": jax.jit(jax.jacfwd(f_jax)), "jax_jit_rev": jax.jit(jax.jacrev(f_jax)),
            }
            for key, fn in variants.items():
                xin = jnp.asarray(x) if key.startswith("jax") else x
                np.testing.assert_allclose(np.asarray(fn(xin)), ref, rtol=1e-9, atol=1e-12, err_msg=key)
                row[key + "_s"] = _time(lambda: _block(fn(xin)), budget)
            table.append(row)
    results["jacobians"] = table

    print("\nJacobian of a tanh network R^n -> R^m (32 hidden, f64): forward vs reverse mode")
    print("  fwd/rev < 1: forward mode is faster (expected when n < m)")
    hdr = (f"{'n':>5s} {'m':>5s} | {'tg fwd':>9s} {'tg rev':>9s} {'fwd/rev':>8s} | {'jax fwd':>9s} "
           f"{'jax rev':>9s} {'fwd/rev':>8s} | {'tg jit f':>9s} {'tg jit r':>9s} {'fwd/rev':>8s} | "
           f"{'jax jit f':>9s} {'jax jit r':>9s} {'fwd/rev':>8s} | {'tg/jax best':>11s} {'jit':>6s}")
    print(hdr)
    for r in table:
        def trio(prefix):
            f, rv = r[prefix + "fwd_s"], r[prefix + "rev_s"]
            return f"{fmt_us(f):>9s} {fmt_us(rv):>9s} {f / rv:8.2f}"
        best_tg = min(r["tg_fwd_s"], r["tg_rev_s"])
        best_jax = min(r["jax_fwd_s"], r["jax_rev_s"])
        best_tg_j = min(r["tg_jit_fwd_s"], r["tg_jit_rev_s"])
        best_jax_j = min(r["jax_jit_fwd_s"], r["jax_jit_rev_s"])
        print(f"{r['n']:5d} {r['m']:5d} | {trio('tg_')} | {trio('jax_')} | {trio('tg_jit_')} | "
              f"{trio('jax_jit_')} | {best_tg / best_jax:10.2f}x {best_tg_j / best_jax_j:5.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    ap.add_argument("--quick", action="store_true", help="shorter timing budgets")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows, results = [], {}
    per_example(rows, results, args.quick)
    print_table("Per-example gradients (ratio = tracegrad / peer; < 1 means tracegrad is faster)", rows)
    for label, r in results.items():
        print(f"  {label}: vmap(grad) is {r['loop_over_vmap']:.1f}x faster than a Python loop of grad")
    jacobians(results, args.quick)
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")
    if args.json:
        out = {"rows": [{"case": c, "peer": p, "peer_s": a, "tracegrad_s": b, "ratio": b / a}
                        for c, p, a, b in rows], "results": results}
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
