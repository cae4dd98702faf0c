"""Training throughput of the digits MLP and LeNet: tracegrad (jit) vs JAX
(jax.jit + optax Adam) vs PyTorch eager (CPU), measured side by side in one
run, same architecture, same initial weights, same batch, float32, Adam.

  * MLP 64-128-64-10 (relu), batch 64 (examples/mlp_digits.py)
  * LeNet: conv3x3(16)-relu-maxpool2-conv3x3(32)-relu-maxpool2-dense64-relu-
    dense10 on 1x8x8 images, batch 64 (examples/lenet_digits.py, no dropout)

Each framework runs chains of training steps, each step consuming the
previous step's parameters, on a fixed batch already in its own array type;
tracegrad's and JAX's repeats are interleaved (the machine is shared) and
the median is reported. PyTorch is timed afterwards (its OpenMP threads
would slow down whatever runs right after them), at its default thread count
and single-threaded; the faster is reported. Before timing, the three are
checked to agree on the loss trajectory of the first steps.

    python benchmarks/bench_nn.py [--json PATH] [--quick]

Ratios are tracegrad time / peer time (< 1: tracegrad is faster).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

# PyTorch's OpenMP threads spin for a while after each op by default; on a
# 2-core machine that steals the CPU from whichever framework runs next in
# the interleaved repeats. Let idle threads sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import fmt_us  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import tracegrad as tg  # noqa: E402
from tracegrad import nn, optim, random  # noqa: E402

try:
    import optax
except ImportError:
    optax = None
try:
    import torch
except ImportError:
    torch = None

BATCH = 64
LR = 1e-3


# --------------------------------------------------------------------------
# data and models


def digits_batch(images):
    try:
        from sklearn.datasets import load_digits
        d = load_digits()
        x, y = d.data[:BATCH] / 16.0, d.target[:BATCH]
    except ImportError:
        rng = np.random.default_rng(0)
        x, y = rng.random((BATCH, 64)), rng.integers(0, 10, BATCH)
    x = x.astype(np.float32)
    if images:
        x = x.reshape(BATCH, 1, 8, 8)
    return x, y.astype(np.int32)


def tg_mlp(key):
    k = random.split(key, 3)
    return nn.Sequential(nn.Linear(64, 128, key=k[0]), nn.relu, nn.Linear(128, 64, key=k[1]),
                         nn.relu, nn.Linear(64, 10, key=k[2]))


def tg_lenet(key):
    k = random.split(key, 4)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding="SAME", key=k[0]), nn.relu, nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding="SAME", key=k[1]), nn.relu, nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128, 64, key=k[2]), nn.relu, nn.Linear(64, 10, key=k[3]))


def _params_of(model):
    """[(kind, weight, bias)] in layer order, as NumPy arrays."""
    out = []
    for layer in model.layers:
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            kind = "dense" if isinstance(layer, nn.Linear) else "conv"
            out.append((kind, np.asarray(layer.weight), np.asarray(layer.bias)))
    return out


# ---- tracegrad


def make_tg(model):
    opt = optim.adam(LR)

    def loss_fn(m, x, y):
        return nn.softmax_cross_entropy(m(x), y)

    @tg.jit
    def step(m, s, x, y):
        loss, g = tg.value_and_grad(loss_fn)(m, x, y)
        u, s = opt.update(g, s, m)
        return optim.apply_updates(m, u), s, loss

    state = [tg.device_put(model), tg.device_put(opt.init(model))]

    def run(n, x, y):
        m, s = state
        for _ in range(n):
            m, s, loss = step(m, s, x, y)
        loss.block_until_ready()
        state[:] = [m, s]
        return loss

    return run, tg.device_put


# ---- JAX


def _jax_forward(params, x, lenet):
    h = x
    for i, (kind, w, b) in enumerate(params):
        if kind == "conv":
            h = jax.lax.conv_general_dilated(h, w, (1, 1), "SAME",
                                             dimension_numbers=("NCHW", "OIHW", "NCHW"))
            h = jax.nn.relu(h + b.reshape(-1, 1, 1))
            h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2),
                                      "VALID")
        else:
            if h.ndim > 2:
                h = h.reshape(h.shape[0], -1)
            h = h @ w + b
            if i < len(params) - 1:
                h = jax.nn.relu(h)
    return h


def _jax_adam():
    """optax.adam if installed, else the same update written out in JAX."""
    if optax is not None:
        return optax.adam(LR), optax.apply_updates

    def init(p):
        z = jax.tree_util.tree_map(jnp.zeros_like, p)
        return (jnp.zeros((), jnp.int32), z, z)

    def update(g, s, p=None):
        c, mu, nu = s
        c = c + 1
        mu = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, mu, g)
        nu = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, nu, g)
        bc1, bc2 = 1 - 0.9 ** c.astype(jnp.float32), 1 - 0.999 ** c.astype(jnp.float32)
        u = jax.tree_util.tree_map(lambda m, v: -LR * (m / bc1) / (jnp.sqrt(v / bc2) + 1e-8),
                                   mu, nu)
        return u, (c, mu, nu)

    class Opt:
        pass
    o = Opt()
    o.init, o.update = init, update
    return o, lambda p, u: jax.tree_util.tree_map(lambda a, b: a + b, p, u)


def make_jax(np_params, lenet):
    kinds = tuple(k for k, _, _ in np_params)
    arrays = [(jnp.asarray(w), jnp.asarray(b)) for _, w, b in np_params]
    opt, apply_updates = _jax_adam()

    def loss_fn(arrays, x, y):
        params = [(k, w, b) for k, (w, b) in zip(kinds, arrays)]
        logits = _jax_forward(params, x, lenet)
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    @jax.jit
    def step(p, s, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        u, s = opt.update(g, s, p)
        return apply_updates(p, u), s, loss

    state = [arrays, opt.init(arrays)]

    def run(n, x, y):
        p, s = state
        for _ in range(n):
            p, s, loss = step(p, s, x, y)
        loss.block_until_ready()
        state[:] = [p, s]
        return loss

    return run, jnp.asarray


# ---- PyTorch (eager)


def make_torch(np_params, lenet):
    layers = []
    for i, (kind, w, b) in enumerate(np_params):
        if kind == "conv":
            c = torch.nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], padding="same")
            c.weight.data = torch.tensor(w)
            c.bias.data = torch.tensor(b)
            layers += [c, torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
        else:
            if lenet and i == 2:
                layers.append(torch.nn.Flatten())
            d = torch.nn.Linear(w.shape[0], w.shape[1])
            d.weight.data = torch.tensor(w.T.copy())  # torch stores (out, in)
            d.bias.data = torch.tensor(b)
            layers.append(d)
            if i < len(np_params) - 1:
                layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()

    def run(n, x, y):
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        return loss.detach()

    return run, lambda a: torch.tensor(a).long() if a.dtype.kind == "i" else torch.tensor(a)


# --------------------------------------------------------------------------


def bench_model(name, lenet, quick, results):
    model = (tg_lenet if lenet else tg_mlp)(random.key(0))
    np_params = _params_of(model)
    x, y = digits_batch(lenet)
    runners = {"tracegrad": make_tg(model), "jax": make_jax(np_params, lenet)}
    if torch is not None:
        runners["torch"] = make_torch(np_params, lenet)
    data = {k: (conv(x), conv(y)) for k, (_, conv) in runners.items()}

    # same weights, same batch, same optimiser: the first losses agree
    first = {k: [float(run(1, *data[k])) for _ in range(3)] for k, (run, _) in runners.items()}
    for k, v in first.items():
        np.testing.assert_allclose(v, first["tracegrad"], rtol=2e-4, atol=2e-5,
                                   err_msg=f"{name}: {k} loss trajectory differs")

    n = (50 if quick else 200) if not lenet else (20 if quick else 100)
    repeats = 3 if quick else 7

    def timed(keys):
        for k in keys:  # warm up outside the timing
            runners[k][0](max(1, n // 4), *data[k])
        times = {k: [] for k in keys}
        for _ in range(repeats):  # interleaved: slow phases of the machine hit all alike
            for k in keys:
                t0 = time.perf_counter()
                runners[k][0](n, *data[k])
                times[k].append((time.perf_counter() - t0) / n)
        return {k: float(np.median(v)) for k, v in times.items()}

    # tracegrad and JAX first, without PyTorch's thread pool in between (its
    # threads linger after each op and slow down whatever runs next)
    med = timed(["tracegrad", "jax"])
    threads = {}
    if torch is not None:
        # PyTorch at its default thread count and single-threaded (often
        # faster on this 2-core machine); the faster of the two is reported
        default = torch.get_num_threads()
        best = None
        for nt in sorted({default, 1}, reverse=True):
            torch.set_num_threads(nt)
            t = timed(["torch"])["torch"]
            threads[nt] = t
            if best is None or t < best[1]:
                best = (nt, t)
        torch.set_num_threads(default)
        med["torch"] = best[1]
    results.append({"model": name, "batch": BATCH, "seconds_per_step": med,
                    "steps_per_second": {k: 1.0 / v for k, v in med.items()},
                    "torch_seconds_per_step_by_threads": threads,
                    "first_losses": first})


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    args = ap.parse_args()
    if torch is not None:
        torch.manual_seed(0)
    results = []
    t0 = time.perf_counter()
    bench_model(f"MLP 64-128-64-10, batch {BATCH}, Adam", False, args.quick, results)
    bench_model(f"LeNet 8x8 (conv16-pool-conv32-pool-64-10), batch {BATCH}, Adam", True,
                args.quick, results)

    print("\ntraining steps per second (median of interleaved repeats; float32, CPU)")
    peers = [p for p in ("jax", "torch") if p in results[0]["steps_per_second"]]
    head = f"{'model':62s} {'tracegrad':>10s}" + "".join(f" {p:>10s}" for p in peers)
    head += "".join(f" {'tg/' + p + ' time':>14s}" for p in peers)
    print(head)
    for r in results:
        sps, sec = r["steps_per_second"], r["seconds_per_step"]
        line = f"{r['model']:62s} {sps['tracegrad']:10.0f}" + "".join(
            f" {sps[p]:10.0f}" for p in peers)
        line += "".join(f" {sec['tracegrad'] / sec[p]:13.2f}x" for p in peers)
        print(line)
        print(f"{'  (time per step)':62s} {fmt_us(sec['tracegrad']):>10s}" + "".join(
            f" {fmt_us(sec[p]):>10s}" for p in peers))
        if r["torch_seconds_per_step_by_threads"]:
            by = ", ".join(f"{nt} thread{'s' if nt > 1 else ''} {fmt_us(t)}" for nt, t in
                           r["torch_seconds_per_step_by_threads"].items())
            print(f"{'  (torch eager by thread count; the faster is shown)':62s} {by}")
    if torch is None:
        print("(PyTorch is not installed: no torch column)")
    print(f"\ntotal {time.perf_counter() - t0:.1f} s; jax {jax.__version__}"
          + (f", optax {optax.__version__}" if optax else ", Adam written in JAX (no optax)")
          + (f", torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch else ""))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
