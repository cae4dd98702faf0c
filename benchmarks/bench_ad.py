"""Automatic differentiation costs, side by side in one run:

1. eager value_and_grad of a 2-layer MLP training step (64-256-256-10,
   batch 128, float32, softmax cross-entropy) vs HIPS autograd and JAX
   without jit (goal: faster than both);
2. make_jaxpr(grad(f)) of a 1000-op elementwise program vs
   jax.make_jaxpr(jax.grad(f)) (goal: <= 0.5x JAX);
3. the cheap-gradient ratio, time(value_and_grad f) / time(f), eagerly, for
   the MLP loss and a long elementwise chain (goal: <= 4x), with the peers'
   own ratios on the chain (autograd, torch, JAX without jit) for context.

    python benchmarks/bench_ad.py [--json PATH] [--quick]

Ratios are tracegrad / peer (below 1 means tracegrad is faster); in the
cheap-gradient rows the "peer" is tracegrad's own forward pass.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

# One thread for NumPy's BLAS and for XLA (JAX) alike: the matrices here are
# small, and on a shared 2-core machine multi-threaded BLAS calls are
# dominated by thread contention (10x slower). Override by setting these.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402

from _timing import print_table  # noqa: E402

import tracegrad as tg  # noqa: E402
import tracegrad.numpy as tnp  # noqa: E402

def best_median(fn, number, repeat=9, warmup=2):
    """CPU seconds per call (process_time: single-threaded libraries, so this
    is the work done), lower quartile of `repeat` batches of `number` calls.
    On a loaded shared machine, wall-clock medians mostly measure the load."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        for _ in range(number):
            fn()
        times.append((time.process_time() - t0) / number)
    times.sort()
    return times[len(times) // 4]


SIZES = (64, 256, 256, 10)
BATCH = 128


def _mlp_data():
    rng = np.random.default_rng(0)
    params = []
    for m, n in zip(SIZES[:-1], SIZES[1:]):
        params.append((rng.standard_normal((m, n)).astype(np.float32) / np.float32(np.sqrt(m)),
                       np.zeros(n, np.float32)))
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    labels = rng.integers(0, SIZES[-1], BATCH)
    onehot = np.eye(SIZES[-1], dtype=np.float32)[labels]
    return params, x, onehot


def make_loss(np_):
    """Softmax cross-entropy of a tanh MLP, written against a NumPy-like module."""
    def loss(params, x, onehot):
        h = x
        for w, b in params[:-1]:
            h = np_.tanh(np_.matmul(h, w) + b)
        w, b = params[-1]
        logits = np_.matmul(h, w) + b
        m = np_.max(logits, axis=1, keepdims=True)
        z = logits - m
        logz = np_.log(np_.sum(np_.exp(z), axis=1, keepdims=True))
        return -np_.sum(onehot * (z - logz)) / x.shape[0]
    return loss


def mlp_rows(rows, ratios, quick):
    params, x, onehot = _mlp_data()
    n = 5 if quick else 20
    loss_tg = make_loss(tnp)
    tparams = [(tnp.asarray(w), tnp.asarray(b)) for w, b in params]
    tx, toh = tnp.asarray(x), tnp.asarray(onehot)
    vg_tg = tg.value_and_grad(loss_tg)
    t_tg = best_median(lambda: vg_tg(tparams, tx, toh), n)
    t_fwd = best_median(lambda: loss_tg(tparams, tx, toh), n)
    ref_val, ref_g = vg_tg(tparams, tx, toh)
    try:
        import autograd
        import autograd.numpy as anp
        vg_ag = autograd.value_and_grad(make_loss(anp))
        v, g = vg_ag(params, x, onehot)
        np.testing.assert_allclose(float(v), float(ref_val), rtol=1e-4)
        np.testing.assert_allclose(g[0][0], np.asarray(ref_g[0][0]), rtol=1e-3, atol=1e-5)
        rows.append(("MLP value_and_grad eager", "autograd", best_median(lambda: vg_ag(params, x, onehot), n), t_tg))
    except ImportError:
        print("note: autograd not installed (pip install autograd), skipping its row")
    try:
        import jax
        import jax.numpy as jnp
        vg_jx = jax.value_and_grad(make_loss(jnp))
        jparams = [(jnp.asarray(w), jnp.asarray(b)) for w, b in params]
        jx_, joh = jnp.asarray(x), jnp.asarray(onehot)

        def run_jax():
            v, g = vg_jx(jparams, jx_, joh)
            v.block_until_ready()
            return v, g

        v, _ = run_jax()
        np.testing.assert_allclose(float(v), float(ref_val), rtol=1e-4)
        rows.append(("MLP value_and_grad eager", "jax (no jit)", best_median(run_jax, n), t_tg))
    except ImportError:
        print("note: jax not installed, skipping its row")
    ratios.append(("MLP loss (64-256-256-10, batch 128)", t_fwd, t_tg))


def _chain(np_, n_ops):
    """An elementwise program of n_ops operations (sin, *, tanh, + cycle)."""
    def f(x):
        y = x
        for i in range(n_ops // 4):
            y = np_.sin(y)
            y = y * 0.9
            y = np_.tanh(y)
            y = y + x
        return np_.sum(y)
    return f


def tracing_rows(rows, quick):
    n_ops = 1000
    x = np.linspace(0.1, 1.0, 16)
    f_tg = _chain(tnp, n_ops)
    n = 2 if quick else 5
    t_tg = best_median(lambda: tg.make_jaxpr(tg.grad(f_tg))(x), n, repeat=5, warmup=1)
    try:
        import jax
        import jax.numpy as jnp
        f_jx = _chain(jnp, n_ops)
        t_jx = best_median(lambda: jax.make_jaxpr(jax.grad(f_jx))(x), n, repeat=5, warmup=1)
        rows.append((f"make_jaxpr(grad(f)), {n_ops}-op elementwise", "jax", t_jx, t_tg))
    except ImportError:
        print("note: jax not installed, skipping the tracing row")


def chain_ratio(ratios, peer_ratios, quick):
    for size, n_ops in ((100_000, 200), (16, 200)):
        x = np.linspace(0.1, 1.0, size)
        tx = tnp.asarray(x)
        f = _chain(tnp, n_ops)
        vg = tg.value_and_grad(f)
        n = 3 if quick else 10
        t_f = best_median(lambda: f(tx), n)
        t_g = best_median(lambda: vg(tx), n)
        case = f"elementwise chain, {n_ops} ops on f64[{size}]"
        ratios.append((case, t_f, t_g))
        for peer, (pf, pg) in _peer_chain(x, n_ops).items():
            peer_ratios.append((case, peer, best_median(pf, n), best_median(pg, n)))


def _peer_chain(x, n_ops):
    """(forward, value_and_grad) callables of the chain for each installed
    peer: their own cheap-gradient ratio puts ours in context."""
    out = {}
    try:
        import autograd
        import autograd.numpy as anp
        f = _chain(anp, n_ops)
        vg = autograd.value_and_grad(f)
        out["autograd"] = (lambda: f(x), lambda: vg(x))
    except ImportError:
        pass
    try:
        import torch
        ft = _chain(torch, n_ops)
        xt = torch.tensor(x)

        def torch_vg():
            xx = xt.detach().requires_grad_(True)
            y = ft(xx)
            y.backward()
            return y, xx.grad
        out["torch"] = (lambda: ft(xt), torch_vg)
    except ImportError:
        pass
    try:
        import jax
        import jax.numpy as jnp
        fj = _chain(jnp, n_ops)
        vgj = jax.value_and_grad(fj)
        xj = jnp.asarray(x)
        out["jax (no jit)"] = (lambda: fj(xj).block_until_ready(), lambda: vgj(xj)[0].block_until_ready())
    except ImportError:
        pass
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write results to this JSON file")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args(argv)
    rows, ratios, peer_ratios = [], [], []
    mlp_rows(rows, ratios, args.quick)
    tracing_rows(rows, args.quick)
    chain_ratio(ratios, peer_ratios, args.quick)
    print_table("tracegrad vs peers (ratio = tracegrad / peer; < 1 is faster)", rows)
    print_table("cheap gradient (ratio = value_and_grad / forward, eager; goal <= 4x)",
                [(c, "forward", a, b) for c, a, b in ratios])
    if peer_ratios:
        print_table("the peers' own cheap-gradient ratios (their value_and_grad / their forward)",
                    [(f"{c}: {p}", "forward", a, b) for c, p, a, b in peer_ratios])
    if args.json:
        out = [dict(case=c, peer=p, peer_us=a * 1e6, tracegrad_us=b * 1e6, ratio=b / a) for c, p, a, b in rows]
        out += [dict(case=c, peer="forward (cheap-gradient ratio)", peer_us=a * 1e6, tracegrad_us=b * 1e6,
                     ratio=b / a) for c, a, b in ratios]
        out += [dict(case=c, peer=f"{p}: its own forward (cheap-gradient ratio)", peer_us=a * 1e6,
                     peer_grad_us=b * 1e6, ratio=b / a) for c, p, a, b in peer_ratios]
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
