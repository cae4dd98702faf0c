"""tracegrad.jit vs jax.jit, measured side by side in one run (ratios:
tracegrad time / jax time; < 1 means tracegrad is faster).

Rows:
  * cached-call dispatch of sin(x*y)+1 on f32[8] (device and NumPy inputs),
    and an eager tracegrad op on a jit result (Array.value is cached)
  * first call (trace + lower + compile) of 100- and 1000-op elementwise
    chains; each repeat uses a new function and new constants so no cache
    (ours in memory or on disk, or jax's) can answer
  * run time of a 10k-op elementwise chain on f32[1000]
  * MLP training step 64-256-256-10, batch 128, f32 (grad + SGD update)
  * 1000x1000 f32 matmul chain (three products)

    python benchmarks/bench_jit.py [--json PATH] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TRACEGRAD_DISABLE_DISK_CACHE", "1")  # first-call rows compile for real

import numpy as np

from _timing import best_median, print_table

import jax
import jax.numpy as jnp

import tracegrad as tg
import tracegrad.numpy as tnp

jax.config.update("jax_enable_x64", True)


def _block(x):
    return x.block_until_ready()


def dispatch(rows, quick):
    x = np.linspace(0, 1, 8, dtype=np.float32)
    y = x + 1
    f = tg.jit(lambda a, b: tnp.sin(a * b) + 1)
    jf = jax.jit(lambda a, b: jnp.sin(a * b) + 1)
    bx, by = tg.device_put(x), tg.device_put(y)
    jx, jy = jnp.asarray(x), jnp.asarray(y)
    n = 1000 if quick else 5000
    rows.append(("cached call sin(x*y)+1 f32[8], device args", "jax.jit",
                 best_median(lambda: jf(jx, jy), n), best_median(lambda: f(bx, by), n)))
    rows.append(("  same, with block_until_ready", "jax.jit",
                 best_median(lambda: _block(jf(jx, jy)), n),
                 best_median(lambda: _block(f(bx, by)), n)))
    rows.append(("cached call sin(x*y)+1 f32[8], numpy args", "jax.jit",
                 best_median(lambda: jf(x, y), n), best_median(lambda: f(x, y), n)))
    # eager ops on jit results read Array.value once (zero-copy on CPU), then
    # run exactly like ops on host Arrays
    out = f(bx, by)
    host = tg.Array(np.asarray(out))
    rows.append(("eager tnp.sin on a jit result (value cached)", "tnp host Array",
                 best_median(lambda: tnp.sin(host), n), best_median(lambda: tnp.sin(out), n)))
    rows.append(("jit call + first eager op on its result", "jit call alone",
                 best_median(lambda: f(bx, by), n), best_median(lambda: tnp.sin(f(bx, by)), n)))


def _chain_tg(n_ops, c):
    def f(x):
        for i in range(n_ops // 3):
            x = tnp.sin(x) * c + (0.001 * (i % 7))
        return x
    return f


def _chain_jax(n_ops, c):
    def f(x):
        for i in range(n_ops // 3):
            x = jnp.sin(x) * c + (0.001 * (i % 7))
        return x
    return f


def first_call(rows, quick):
    x = np.linspace(0, 1, 16, dtype=np.float32)
    reps = 2 if quick else 3
    sizes = (100,) if quick else (100, 1000)
    for n_ops in sizes:
        t_tg, t_jax = [], []
        for r in range(reps):
            c = np.float32(0.5 + 0.01 * r + 0.001 * n_ops)  # new module text every time
            f = tg.jit(_chain_tg(n_ops, c))
            t0 = time.perf_counter()
            _block(f(x))
            t_tg.append(time.perf_counter() - t0)
            jf = jax.jit(_chain_jax(n_ops, c))
            t0 = time.perf_counter()
            _block(jf(x))
            t_jax.append(time.perf_counter() - t0)
        rows.append((f"first call, {n_ops}-op chain (trace+lower+compile)", "jax.jit",
                     float(np.median(t_jax)), float(np.median(t_tg))))


def chain_run(rows, quick):
    n_ops = 1000 if quick else 10000
    x = np.linspace(0, 1, 1000, dtype=np.float32)
    c = np.float32(0.75)
    f, jf = tg.jit(_chain_tg(n_ops, c)), jax.jit(_chain_jax(n_ops, c))
    bx, jx = tg.device_put(x), jnp.asarray(x)
    t0 = time.perf_counter()
    _block(f(bx))
    t_first_tg = time.perf_counter() - t0
    t0 = time.perf_counter()
    _block(jf(jx))
    t_first_jax = time.perf_counter() - t0
    np.testing.assert_allclose(np.asarray(f(bx)), np.asarray(jf(jx)), rtol=1e-4, atol=1e-5)
    n = 5 if quick else 10
    rows.append((f"first call, {n_ops}-op chain f32[1000]", "jax.jit", t_first_jax, t_first_tg))
    rows.append((f"run, {n_ops}-op chain f32[1000]", "jax.jit",
                 best_median(lambda: _block(jf(jx)), n, repeat=5, warmup=1),
                 best_median(lambda: _block(f(bx)), n, repeat=5, warmup=1)))


def _mlp_params(rng, sizes):
    # scale before casting: a float32 array / np.float64 scalar is float64 in NumPy 2
    return [((rng.standard_normal((m, n)) / np.sqrt(m)).astype(np.float32),
             np.zeros(n, np.float32)) for m, n in zip(sizes[:-1], sizes[1:])]


def mlp_step(rows, quick):
    rng = np.random.default_rng(0)
    params = _mlp_params(rng, [64, 256, 256, 10])
    xb = rng.standard_normal((128, 64)).astype(np.float32)
    yb = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 128)]

    def loss_tg(params, x, y):
        h = x
        for i, (w, b) in enumerate(params):
            h = tnp.matmul(h, w) + b
            if i < len(params) - 1:
                h = tnp.tanh(h)
        logp = h - tnp.log(tnp.sum(tnp.exp(h), axis=1, keepdims=True))
        return -tnp.mean(tnp.sum(logp * y, axis=1))

    def loss_jax(params, x, y):
        h = x
        for i, (w, b) in enumerate(params):
            h = jnp.matmul(h, w) + b
            if i < len(params) - 1:
                h = jnp.tanh(h)
        logp = h - jnp.log(jnp.sum(jnp.exp(h), axis=1, keepdims=True))
        return -jnp.mean(jnp.sum(logp * y, axis=1))

    @tg.jit
    def step_tg(params, x, y):
        g = tg.grad(loss_tg)(params, x, y)
        return tg.tree_util.tree_map(lambda p, d: p - 0.01 * d, params, g)

    @jax.jit
    def step_jax(params, x, y):
        g = jax.grad(loss_jax)(params, x, y)
        return jax.tree_util.tree_map(lambda p, d: p - 0.01 * d, params, g)

    p_tg = tg.device_put(params)
    p_jax = jax.tree_util.tree_map(jnp.asarray, params)
    xt, yt = tg.device_put(xb), tg.device_put(yb)
    xj, yj = jnp.asarray(xb), jnp.asarray(yb)
    a, b = step_tg(p_tg, xt, yt), step_jax(p_jax, xj, yj)
    for (wa, ba), (wb, bb) in zip(a, b):
        np.testing.assert_allclose(np.asarray(wa), np.asarray(wb), rtol=1e-4, atol=1e-5)
    n = 30 if quick else 100
    rows.append(("MLP step 64-256-256-10, batch 128 f32", "jax.jit",
                 best_median(lambda: jax.block_until_ready(step_jax(p_jax, xj, yj)), n),
                 best_median(lambda: [_block(w) for w, _ in step_tg(p_tg, xt, yt)], n)))


def matmul_chain(rows, quick):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1000, 1000)).astype(np.float32) / 32
    b = rng.standard_normal((1000, 1000)).astype(np.float32) / 32
    f = tg.jit(lambda a, b: tnp.matmul(tnp.matmul(tnp.matmul(a, b), b), b))
    jf = jax.jit(lambda a, b: jnp.matmul(jnp.matmul(jnp.matmul(a, b), b), b))
    ta, tb = tg.device_put(a), tg.device_put(b)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    np.testing.assert_allclose(np.asarray(f(ta, tb)), np.asarray(jf(ja, jb)), rtol=1e-3, atol=1e-4)
    n = 2 if quick else 5
    rows.append(("matmul chain 3x (1000x1000 f32)", "jax.jit",
                 best_median(lambda: _block(jf(ja, jb)), n, repeat=5, warmup=1),
                 best_median(lambda: _block(f(ta, tb)), n, repeat=5, warmup=1)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    ap.add_argument("--quick", action="store_true", help="fewer repeats and smaller programs")
    args = ap.parse_args()
    rows = []
    t0 = time.perf_counter()
    for section in (dispatch, first_call, chain_run, mlp_step, matmul_chain):
        section(rows, args.quick)
    print_table("tracegrad.jit vs peers (median; ratio = tracegrad / peer)", rows)
    print(f"\n(total {time.perf_counter() - t0:.1f} s, device {tg.devices()[0]}, "
          f"jax {jax.__version__})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([{"case": c, "peer": p, "peer_s": a, "tracegrad_s": b, "ratio": b / a}
                       for c, p, a, b in rows], fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
