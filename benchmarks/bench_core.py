"""Core costs, side by side in one run: eager op dispatch vs NumPy (and JAX
eager, autograd, torch where installed), and make_jaxpr tracing cost per
equation vs jax.make_jaxpr on 100/1000/10000-op programs.

    python benchmarks/bench_core.py [--json PATH] [--quick]
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from _timing import best_median, fmt_us, print_table

import tracegrad as tg
import tracegrad.numpy as tnp


def eager_dispatch(rows, quick):
    x32 = np.linspace(0, 1, 8, dtype=np.float32)
    tx = tnp.asarray(x32)
    n = 2000 if quick else 20000
    t_np = best_median(lambda: np.sin(x32), n)
    t_tg = best_median(lambda: tnp.sin(tx), n)
    t_tg_np_in = best_median(lambda: tnp.sin(x32), n)
    t_add_np = best_median(lambda: np.add(x32, x32), n)
    t_add_tg = best_median(lambda: tx + tx, n)
    rows.append(("eager sin f32[8]", "numpy", t_np, t_tg))
    rows.append(("eager sin f32[8] (numpy input)", "numpy", t_np, t_tg_np_in))
    rows.append(("eager x + y f32[8]", "numpy", t_add_np, t_add_tg))
    try:
        import jax.numpy as jnp
        jx = jnp.asarray(x32)
        rows.append(("eager sin f32[8]", "jax eager", best_median(lambda: jnp.sin(jx).block_until_ready(), n // 10), t_tg))
    except ImportError:
        print("note: jax not installed, skipping its eager row")
    try:
        import autograd.numpy as anp
        rows.append(("eager sin f32[8]", "autograd", best_median(lambda: anp.sin(x32), n), t_tg))
    except ImportError:
        print("note: autograd not installed, skipping its row")
    try:
        import torch
        t = torch.from_numpy(x32)
        rows.append(("eager sin f32[8]", "torch", best_median(lambda: torch.sin(t), n), t_tg))
    except ImportError:
        print("note: torch not installed, skipping its row")


def chain(n_ops, lib):
    def f(x):
        for i in range(n_ops // 2):
            x = lib.sin(x) * 1.0001 if i % 2 else lib.cos(x) + 0.5
        return x
    return f


def tracing(rows, quick):
    import jax
    import jax.numpy as jnp
    x = np.linspace(0, 1, 8, dtype=np.float32)
    sizes = (100, 1000) if quick else (100, 1000, 10000)
    for n in sizes:
        reps = 3 if n >= 10000 else 7
        t_jax = best_median(lambda: jax.make_jaxpr(chain(n, jnp))(x), reps, warmup=1)
        t_tg = best_median(lambda: tg.make_jaxpr(chain(n, tnp))(x), reps, warmup=1)
        rows.append((f"make_jaxpr {n}-op chain", "jax", t_jax, t_tg))
        rows.append((f"  per equation", "jax", t_jax / n, t_tg / n))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write results to this JSON file")
    ap.add_argument("--quick", action="store_true", help="fewer repeats and sizes")
    args = ap.parse_args(argv)
    rows = []
    eager_dispatch(rows, args.quick)
    tracing(rows, args.quick)
    print_table("core: eager dispatch and tracing (tracegrad / peer, lower is better)", rows)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([dict(case=c, peer=p, peer_us=a * 1e6, tracegrad_us=b * 1e6, ratio=b / a)
                       for c, p, a, b in rows], fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())
