"""Per-example gradients with `vmap(grad(loss))`, compared with a Python loop.

A minibatch gradient is the mean of per-example gradients, but the mean
throws the individual ones away. Some methods need them: differentially
private SGD clips each example's gradient before averaging, and gradient
norms per example point at mislabelled or hard examples. With tracegrad the
per-example gradient function is a composition:

    per_example = tg.vmap(tg.grad(loss), in_axes=(None, 0, 0))   # model shared
    grads = per_example(model, xs, ys)      # every leaf gets a leading batch axis

This example checks `vmap(grad)` against a loop of `grad` calls (and the mean
against the batch gradient), times the loop, vmap, and jit(vmap), and runs
one DP-SGD-style step: clip each example's gradient to norm C, then average.

    python examples/per_example_grads.py [--quick]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import tracegrad as tg
import tracegrad.numpy as tnp
from tracegrad import nn, optim, random
from tracegrad.tree_util import tree_leaves, tree_map


def load_data(n):
    try:
        from sklearn.datasets import load_digits
        d = load_digits()
        return (d.data[:n] / 16.0).astype(np.float32), d.target[:n].astype(np.int32)
    except ImportError:  # without scikit-learn: random data of the same shape
        rng = np.random.default_rng(0)
        return rng.random((n, 64), dtype=np.float32), rng.integers(0, 10, n).astype(np.int32)


def make_model(key):
    k1, k2 = random.split(key)
    return nn.Sequential(nn.Linear(64, 32, key=k1), nn.tanh, nn.Linear(32, 10, key=k2))


def loss(model, x, y):
    """Loss of ONE example: x (64,), y () -- Linear works on unbatched rows."""
    return nn.softmax_cross_entropy(model(x), y)


def batch_loss(model, xs, ys):
    return nn.softmax_cross_entropy(model(xs), ys)


per_example_grads = tg.vmap(tg.grad(loss), in_axes=(None, 0, 0))
per_example_grads_jit = tg.jit(per_example_grads)
grad_jit = tg.jit(tg.grad(loss))


def loop_grads(model, xs, ys, grad_fn):
    gs = [grad_fn(model, x, y) for x, y in zip(xs, ys)]
    return tree_map(lambda *leaves: tnp.stack(leaves), *gs)


def per_example_norms(grads):
    sq = sum(tnp.sum(tnp.reshape(g * g, (g.shape[0], -1)), axis=1) for g in tree_leaves(grads))
    return tnp.sqrt(sq)


@tg.jit
def clipped_mean_grad(model, xs, ys, clip):
    """DP-SGD's gradient (without the noise): each example's gradient scaled
    to norm <= clip, then averaged."""
    g = per_example_grads(model, xs, ys)
    norms = per_example_norms(g)
    scale = tnp.minimum(1.0, clip / tnp.maximum(norms, 1e-12))
    return tree_map(lambda l: tnp.mean(l * tnp.reshape(scale, (-1,) + (1,) * (l.ndim - 1)),
                                       axis=0), g), norms


def _best(fn, repeat=3):
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main(quick=False, verbose=True):
    n = 32 if quick else 256
    xs, ys = load_data(n)
    model = make_model(random.key(0))

    g_vmap = per_example_grads(model, xs, ys)
    g_loop = loop_grads(model, xs, ys, grad_jit)
    max_diff = max(float(tnp.max(tnp.abs(a - b)))
                   for a, b in zip(tree_leaves(g_vmap), tree_leaves(g_loop)))
    g_batch = tg.grad(batch_loss)(model, xs, ys)
    mean_diff = max(float(tnp.max(tnp.abs(tnp.mean(a, axis=0) - b)))
                    for a, b in zip(tree_leaves(g_vmap), tree_leaves(g_batch)))
    shapes = [tuple(l.shape) for l in tree_leaves(g_vmap)]

    def block(t):
        for leaf in tree_leaves(t):
            np.asarray(leaf)

    t_loop = _best(lambda: block(loop_grads(model, xs, ys, grad_jit)))
    t_vmap = _best(lambda: block(per_example_grads(model, xs, ys)))
    t_jit = _best(lambda: block(per_example_grads_jit(model, xs, ys)))

    norms = np.asarray(per_example_norms(g_vmap))
    clip = float(np.median(norms))
    g_clipped, _ = clipped_mean_grad(model, xs, ys, clip)
    opt = optim.sgd(0.1)
    state = opt.init(model)
    updates, state = opt.update(g_clipped, state, model)
    new_model = optim.apply_updates(model, updates)

    if verbose:
        print(f"{n} examples, model 64-32-10 ({nn.count_params(model)} parameters)")
        print(f"per-example gradient leaves: {shapes}")
        print(f"max |vmap(grad) - loop of grad|: {max_diff:.2e}")
        print(f"max |mean of per-example grads - batch grad|: {mean_diff:.2e}")
        print(f"time: loop of jitted grad {t_loop * 1e3:.1f} ms, vmap(grad) eager "
              f"{t_vmap * 1e3:.1f} ms, jit(vmap(grad)) {t_jit * 1e3:.2f} ms "
              f"({t_loop / t_jit:.0f}x faster than the loop)")
        order = np.argsort(norms)[::-1][:5]
        print("largest per-example gradient norms (hardest examples): "
              + ", ".join(f"#{i} (label {ys[i]}) {norms[i]:.3f}" for i in order))
        print(f"DP-SGD-style step: clipped every gradient to norm <= {clip:.3f} (the median), "
              f"loss {float(batch_loss(model, xs, ys)):.4f} -> "
              f"{float(batch_loss(new_model, xs, ys)):.4f}")
    return {"max_diff": max_diff, "mean_vs_batch": mean_diff, "shapes": shapes,
            "norms": norms, "times": {"loop": t_loop, "vmap": t_vmap, "jit_vmap": t_jit},
            "loss_before": float(batch_loss(model, xs, ys)),
            "loss_after": float(batch_loss(new_model, xs, ys))}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer examples (smoke test)")
    args = ap.parse_args()
    main(quick=args.quick or bool(os.environ.get("TRACEGRAD_EXAMPLES_QUICK")))
