"""Logistic regression and a perceptron on 2-D synthetic data, with the
learned decision boundaries plotted to examples/output/logistic_regression.png.

What it shows: the smallest possible training loop. The model is a dict
{"w": (2,), "b": ()}; `tg.grad` of the loss gives a dict of the same shape;
a jitted gradient-descent step updates it.

* logistic regression minimises binary cross-entropy of sigmoid(w.x + b)
  (`nn.binary_cross_entropy_with_logits`, computed stably from the logits);
* the perceptron minimises the perceptron criterion mean(max(0, -y (w.x + b)))
  with labels y in {-1, +1}: its (sub)gradient is exactly Rosenblatt's update
  rule, -y x for each misclassified point and 0 for the others.

    python examples/logistic_regression.py [--quick]
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import tracegrad as tg
import tracegrad.numpy as tnp
from tracegrad import nn, optim

OUT_DIR = os.environ.get("TRACEGRAD_EXAMPLES_OUT") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "output")


def make_data(n=400, seed=0):
    """Two Gaussian blobs with some overlap; labels 0/1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    centers = np.array([[-1.0, -0.5], [1.2, 0.8]])
    x = centers[y] + rng.normal(scale=0.8, size=(n, 2))
    return x.astype(np.float32), y.astype(np.float32)


def logits(params, x):
    return x @ params["w"] + params["b"]


def logistic_loss(params, x, y):
    return nn.binary_cross_entropy_with_logits(logits(params, x), y)


def perceptron_loss(params, x, y):
    margin = (2.0 * y - 1.0) * logits(params, x)  # labels {0, 1} -> {-1, +1}
    # points on the boundary (margin 0) count as mistakes, as in Rosenblatt's
    # rule; relu(-margin) would have a zero subgradient there and never move
    # away from w = 0
    return tnp.mean(tnp.where(margin <= 0, -margin, 0.0))


def train(loss_fn, x, y, steps, lr):
    params = {"w": np.zeros(2, np.float32), "b": np.zeros((), np.float32)}
    opt = optim.sgd(lr)
    state = opt.init(params)

    @tg.jit
    def step(params, state):
        loss, g = tg.value_and_grad(loss_fn)(params, x, y)
        updates, state = opt.update(g, state, params)
        return optim.apply_updates(params, updates), state, loss

    history = []
    for _ in range(steps):
        params, state, loss = step(params, state)
        history.append(float(loss))
    return params, history


def accuracy(params, x, y):
    return float(np.mean((np.asarray(logits(params, x)) > 0) == (y > 0.5)))


def plot(x, y, models, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    lo, hi = x.min(0) - 0.5, x.max(0) + 0.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
    p = np.asarray(nn.sigmoid(logits(models["logistic regression"], grid))).reshape(gx.shape)
    cs = ax.contourf(gx, gy, p, levels=20, cmap="RdBu_r", alpha=0.35)
    fig.colorbar(cs, ax=ax, label="P(class 1) (logistic regression)")
    ax.scatter(*x[y == 0].T, s=10, c="tab:blue", label="class 0")
    ax.scatter(*x[y == 1].T, s=10, c="tab:red", label="class 1")
    xs = np.linspace(lo[0], hi[0], 2)
    for (name, params), style in zip(models.items(), ("k-", "g--")):
        w, b = np.asarray(params["w"]), float(params["b"])
        ax.plot(xs, -(w[0] * xs + b) / w[1], style, label=f"{name} boundary")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Decision boundaries learned with tracegrad.grad")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main(quick=False, verbose=True, save_plot=True, out_dir=None):
    steps = 50 if quick else 500
    x, y = make_data(200 if quick else 400)
    models, histories = {}, {}
    zero = {"w": np.zeros(2, np.float32), "b": np.zeros((), np.float32)}
    for name, loss_fn, lr in (("logistic regression", logistic_loss, 0.5),
                              ("perceptron", perceptron_loss, 0.1)):
        params, hist = train(loss_fn, x, y, steps, lr)
        models[name], histories[name] = params, hist
        if verbose:
            w = np.asarray(params["w"])
            print(f"{name:20s} loss {hist[0]:.4f} -> {hist[-1]:.4f}   w = [{w[0]:+.3f}, "
                  f"{w[1]:+.3f}], b = {float(params['b']):+.3f}   training accuracy "
                  f"{accuracy(zero, x, y):.3f} (w = 0) -> {accuracy(params, x, y):.3f}")
    path = os.path.join(out_dir or OUT_DIR, "logistic_regression.png")
    if save_plot:
        try:
            plot(x, y, models, path)
            if verbose:
                print(f"decision boundaries saved to {path}")
        except ImportError:
            print("matplotlib is not installed: no plot (pip install matplotlib)")
            path = None
    return {"models": models, "histories": histories, "x": x, "y": y,
            "accuracy": {k: accuracy(p, x, y) for k, p in models.items()}, "plot": path}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps (smoke test)")
    args = ap.parse_args()
    main(quick=args.quick or bool(os.environ.get("TRACEGRAD_EXAMPLES_QUICK")))
