"""scan vs an unrolled loop vs jax.lax.scan: jit compile time and run time of
a tanh RNN (hidden 64, 1000 steps) and of its gradient.

    python benchmarks/bench_scan.py [--json PATH] [--quick] [--steps N] [--unrolled-steps M]

Compile time is the first call of a freshly jitted function (trace, lower,
XLA compile, run once), with tracegrad's executable caches (memory and disk)
and JAX's persistent cache out of the way; the median of a few fresh
compiles (CPU time reported too: steadier on a busy machine). Run time is
per cached call, blocking on the result: the fastest of several batches,
alternating between the compared functions. The unrolled loop (a Python
for loop, traced step by step) uses `--unrolled-steps` (default 100) steps:
at 1000 steps XLA's compile time explodes (minutes; ~20 s already at 100),
which is the point of scan. Its rows compare it with the tracegrad scan of
the same length.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TRACEGRAD_DISABLE_DISK_CACHE", "1")  # measure real compiles

import numpy as np

from _timing import best_median, print_table

import jax
import jax.numpy as jnp

import tracegrad as tg
import tracegrad.numpy as tnp
from tracegrad.interpreters import xla

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_enable_compilation_cache", False)

HIDDEN = 64


def rnn(L, N, unrolled=False):
    """(params, h0, xs) -> loss of a tanh RNN; L/N: (lax, numpy) of a library."""
    def loss(params, h0, xs):
        W, U, b = params

        def step(h, x):
            h = N.tanh(N.dot(W, h) + N.dot(U, x) + b)
            return h, N.sum(h)

        if unrolled:
            h, ys = h0, []
            for t in range(xs.shape[0]):
                h, y = step(h, xs[t])
                ys.append(y)
            return N.sum(N.stack(ys)) * 1e-3 + N.sum(h)
        h, ys = L.scan(step, h0, xs)
        return N.sum(ys) * 1e-3 + N.sum(h)
    return loss


def make_args(steps, dtype=np.float32):
    rng = np.random.default_rng(0)
    s = 1.0 / np.sqrt(HIDDEN)
    params = tuple(a.astype(dtype) for a in (rng.standard_normal((HIDDEN, HIDDEN)) * s,
                                             rng.standard_normal((HIDDEN, HIDDEN)) * s,
                                             rng.standard_normal(HIDDEN) * 0.1))
    return params, np.zeros(HIDDEN, dtype), rng.standard_normal((steps, HIDDEN)).astype(dtype)


def _block(out):
    for leaf in jax.tree_util.tree_leaves(out):
        leaf.block_until_ready()
    return out


def _first_call(make_fn, args):
    fn = make_fn()  # a new function object: no trace/executable reuse
    xla._memory_cache.clear()
    c0, t0 = time.process_time(), time.perf_counter()
    _block(fn(*args))
    return time.perf_counter() - t0, time.process_time() - c0


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def compile_times(makers, repeat):
    """Median seconds (wall, CPU) of the first call of a fresh jitted
    function, for each maker; the makers take turns so that load on the
    machine hits all alike. CPU time (all threads of this process) is the
    steadier figure on a busy machine."""
    times = [[] for _ in makers]
    for _ in range(repeat):
        for t, (make_fn, a) in zip(times, makers):
            t.append(_first_call(make_fn, a))
    return [(_median([w for w, _ in t]), _median([c for _, c in t])) for t in times]


def run_times(fns, number, repeat=9):
    """Seconds per call of each (fn, args): the fastest of `repeat` batches of
    `number` calls, batches of the different fns alternating. On a shared,
    busy machine the fastest batch is the steadiest estimate of the cost
    itself (slower batches measure the other processes)."""
    for fn, a in fns:
        _block(fn(*a))
    times = [[] for _ in fns]
    for _ in range(repeat):
        for t, (fn, a) in zip(times, fns):
            t.append(best_median(lambda: _block(fn(*a)), number, repeat=1, warmup=1))
    return [min(t) for t in times]


def measure(steps, unrolled_steps, quick):
    rep = 1 if quick else 3
    number = 3 if quick else 20
    args = make_args(steps)
    uargs = make_args(unrolled_steps)
    tl, jl = rnn(tg.lax, tnp), rnn(jax.lax, jnp)
    tu = rnn(tg.lax, tnp, unrolled=True)
    variants = {
        "fwd": (lambda f: f, lambda f: f),
        "grad": (lambda f: tg.grad(f), lambda f: jax.grad(f)),
    }
    rows, results = [], {}
    for name, (twrap, jwrap) in variants.items():
        # correctness first: the three agree
        ref = jax.jit(jwrap(jl))(*args)
        out = tg.jit(twrap(tl))(*args)
        for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(ref)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-3, atol=2e-4)
        out_u = tg.jit(twrap(tu))(*uargs)
        ref_u = tg.jit(twrap(tl))(*uargs)
        for a, b in zip(jax.tree_util.tree_leaves(out_u), jax.tree_util.tree_leaves(ref_u)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-3, atol=2e-4)

        r = {}
        (r["jax_scan_compile"], r["jax_scan_compile_cpu"]), (r["tg_scan_compile"], r["tg_scan_compile_cpu"]) = \
            compile_times([(lambda: jax.jit(jwrap(rnn(jax.lax, jnp))), args),
                           (lambda: tg.jit(twrap(rnn(tg.lax, tnp))), args)], rep)
        r["jax_scan_run"], r["tg_scan_run"] = run_times(
            [(jax.jit(jwrap(jl)), args), (tg.jit(twrap(tl)), args)], number)
        ((r["tg_unrolled_compile"], _),) = compile_times(
            [(lambda: tg.jit(twrap(rnn(tg.lax, tnp, unrolled=True))), uargs)], 1)
        ((r["tg_scan_short_compile"], _),) = compile_times(
            [(lambda: tg.jit(twrap(rnn(tg.lax, tnp))), uargs)], rep)
        r["tg_unrolled_run"], r["tg_scan_short_run"] = run_times(
            [(tg.jit(twrap(tu)), uargs), (tg.jit(twrap(tl)), uargs)], number)
        results[name] = r
        T, Tu = steps, unrolled_steps
        rows += [
            (f"{name} T={T} compile", "jax.lax.scan", r["jax_scan_compile"], r["tg_scan_compile"]),
            (f"{name} T={T} compile (CPU time)", "jax.lax.scan", r["jax_scan_compile_cpu"],
             r["tg_scan_compile_cpu"]),
            (f"{name} T={T} run", "jax.lax.scan", r["jax_scan_run"], r["tg_scan_run"]),
            (f"{name} T={Tu} compile", "tg unrolled", r["tg_unrolled_compile"], r["tg_scan_short_compile"]),
            (f"{name} T={Tu} run", "tg unrolled", r["tg_unrolled_run"], r["tg_scan_short_run"]),
        ]
    return rows, results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the measurements to this JSON file")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--unrolled-steps", type=int, default=100)
    a = ap.parse_args(argv)
    rows, results = measure(a.steps, a.unrolled_steps, a.quick)
    print_table(f"tanh RNN, hidden {HIDDEN}, float32, CPU (tracegrad scan / peer; "
                f"unrolled loop measured at T={a.unrolled_steps} steps: XLA compile time "
                f"explodes for long unrolled loops)", rows)
    goals = []
    for name, r in results.items():
        goals.append((f"{name} compile <= jax", r["tg_scan_compile"] <= r["jax_scan_compile"]))
        goals.append((f"{name} compile CPU time <= jax",
                      r["tg_scan_compile_cpu"] <= r["jax_scan_compile_cpu"]))
        goals.append((f"{name} run <= 1.05x jax", r["tg_scan_run"] <= 1.05 * r["jax_scan_run"]))
    print("\ngoals: " + ", ".join(f"{g}: {'met' if ok else 'NOT met'}" for g, ok in goals))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"hidden": HIDDEN, "steps": a.steps, "unrolled_steps": a.unrolled_steps,
                       "results": results,
                       "rows": [{"case": c, "peer": p, "peer_s": x, "tracegrad_s": y, "ratio": y / x}
                                for c, p, x, y in rows]}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
