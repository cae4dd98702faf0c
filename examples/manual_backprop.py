"""Backpropagation by hand, layer by layer, checked against tracegrad.grad.

Each layer below has a `forward` that caches what its derivative needs and a
`backward` that takes dL/d(output) and returns dL/d(input), storing the
gradients of its own parameters: the "modular" view of backprop used by
Torch7, Caffe and the cs231n assignments. For a two-layer network

    logits = relu(x W1 + b1) W2 + b2,    L = mean softmax cross-entropy

the chain rule, applied from the loss backwards, is:

    dlogits = (softmax(logits) - onehot(y)) / N
    dW2 = h^T dlogits,   db2 = sum_rows(dlogits),   dh = dlogits W2^T
    dz  = dh * (z > 0)                                   (relu)
    dW1 = x^T dz,        db1 = sum_rows(dz),         dx = dz W1^T

The same network built from tracegrad.nn modules and differentiated with
`tg.grad` gives the same numbers (to ~1e-15 in float64): reverse-mode AD is
this procedure, automated. Finally both train the network side by side for a
few steps on the digits data and stay in lockstep.

    python examples/manual_backprop.py [--quick]
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import tracegrad as tg
from tracegrad import nn, random


class Linear:
    def __init__(self, w, b):
        self.w, self.b = np.array(w, np.float64), np.array(b, np.float64)

    def forward(self, x):
        self.x = x                      # needed for dW
        return x @ self.w + self.b

    def backward(self, dy):
        self.dw = self.x.T @ dy         # dL/dW = x^T dL/dy
        self.db = dy.sum(axis=0)        # the bias is broadcast over rows
        return dy @ self.w.T            # dL/dx


class ReLU:
    def forward(self, z):
        self.mask = z > 0               # relu'(z) is 1 where z > 0, else 0
        return np.where(self.mask, z, 0.0)

    def backward(self, dy):
        return dy * self.mask


class SoftmaxCrossEntropy:
    def forward(self, logits, labels):
        shifted = logits - logits.max(axis=1, keepdims=True)   # stable softmax
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.p = np.exp(logp)
        self.labels = labels
        return -logp[np.arange(len(labels)), labels].mean()

    def backward(self):
        d = self.p.copy()
        d[np.arange(len(self.labels)), self.labels] -= 1.0      # softmax - onehot
        return d / len(self.labels)                            # the mean's 1/N


class ManualNet:
    """The two-layer network as a list of hand-differentiated layers."""

    def __init__(self, w1, b1, w2, b2):
        self.layers = [Linear(w1, b1), ReLU(), Linear(w2, b2)]
        self.loss = SoftmaxCrossEntropy()

    def loss_and_grads(self, x, y):
        h = x
        for layer in self.layers:
            h = layer.forward(h)
        loss = self.loss.forward(h, y)
        d = self.loss.backward()
        for layer in reversed(self.layers):
            d = layer.backward(d)
        l1, l2 = self.layers[0], self.layers[2]
        return loss, {"w1": l1.dw, "b1": l1.db, "w2": l2.dw, "b2": l2.db}

    def sgd_step(self, grads, lr):
        l1, l2 = self.layers[0], self.layers[2]
        l1.w -= lr * grads["w1"]
        l1.b -= lr * grads["b1"]
        l2.w -= lr * grads["w2"]
        l2.b -= lr * grads["b2"]


def make_model(key, n_in, n_hidden, n_out):
    k1, k2 = random.split(key)
    return nn.Sequential(nn.Linear(n_in, n_hidden, key=k1, dtype=np.float64,
                                   bias_init=nn.init.normal(0.1, np.float64)),
                         nn.relu,
                         nn.Linear(n_hidden, n_out, key=k2, dtype=np.float64,
                                   bias_init=nn.init.normal(0.1, np.float64)))


def loss_fn(model, x, y):
    return nn.softmax_cross_entropy(model(x), y)


def as_dict(grads):
    """The nn.Sequential gradient pytree in the manual network's names."""
    l1, l2 = grads.layers[0], grads.layers[2]
    return {"w1": np.asarray(l1.weight), "b1": np.asarray(l1.bias),
            "w2": np.asarray(l2.weight), "b2": np.asarray(l2.bias)}


def load_data(n):
    try:
        from sklearn.datasets import load_digits
        d = load_digits()
        return d.data[:n] / 16.0, d.target[:n].astype(np.int64), "digits"
    except ImportError:  # without scikit-learn: random data of the same shape
        rng = np.random.default_rng(0)
        return rng.random((n, 64)), rng.integers(0, 10, n), "random"


def main(quick=False, verbose=True):
    n = 128 if quick else 512
    x, y, name = load_data(n)
    model = make_model(random.key(0), 64, 32, 10)
    p = as_dict(model)  # same initial weights for the manual network
    manual = ManualNet(p["w1"], p["b1"], p["w2"], p["b2"])

    loss_m, g_manual = manual.loss_and_grads(x, y)
    loss_t, g_tg = tg.value_and_grad(loss_fn)(model, x, y)
    g_tg = as_dict(g_tg)
    max_err = {k: float(np.max(np.abs(g_manual[k] - g_tg[k]))) for k in g_manual}
    if verbose:
        print(f"two-layer network 64-32-10 on {n} {name} samples (float64)")
        print(f"loss: manual {loss_m:.12f}, tracegrad {float(loss_t):.12f}")
        print("max |manual - tg.grad| per parameter:")
        for k, e in max_err.items():
            print(f"  {k}: {e:.2e}   (shape {g_manual[k].shape})")

    # train both with plain SGD; they should follow the same trajectory
    steps = 10 if quick else 100
    lr = 0.5
    step = tg.jit(lambda m, x, y: tg.value_and_grad(loss_fn)(m, x, y))
    hist_m, hist_t, drift = [], [], 0.0
    for _ in range(steps):
        lm, gm = manual.loss_and_grads(x, y)
        manual.sgd_step(gm, lr)
        lt, gt = step(model, x, y)
        model = tg.tree_util.tree_map(lambda w, g: w - lr * g, model, gt)
        hist_m.append(float(lm))
        hist_t.append(float(lt))
    final = as_dict(model)
    drift = max(float(np.max(np.abs(final["w1"] - manual.layers[0].w))),
                float(np.max(np.abs(final["w2"] - manual.layers[2].w))))
    if verbose:
        print(f"\n{steps} SGD steps (lr {lr}): loss manual {hist_m[0]:.4f} -> {hist_m[-1]:.4f}, "
              f"tracegrad {hist_t[0]:.4f} -> {hist_t[-1]:.4f}")
        print(f"largest weight difference after training: {drift:.2e}")
    return {"max_grad_error": max_err, "loss_manual": float(loss_m), "loss_tg": float(loss_t),
            "history_manual": hist_m, "history_tg": hist_t, "weight_drift": drift}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples and steps (smoke test)")
    args = ap.parse_args()
    main(quick=args.quick or bool(os.environ.get("TRACEGRAD_EXAMPLES_QUICK")))
