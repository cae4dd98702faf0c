"""Differentiating maximum and minimum, and PyTorch's `backward()` side by
side with tracegrad's `grad` and `vjp`.

* `tnp.max(x, axis)` / `tnp.min(x, axis)` reduce along an axis. Their
  derivative sends each output's cotangent to the element(s) that were the
  extreme. With ties, the cotangent is split evenly among the tied elements
  (each gets 1/count): the average of the one-sided derivatives, the same
  convention as JAX and as PyTorch's `amax`/`amin`.
* `tnp.maximum(a, b)` / `tnp.minimum(a, b)` compare elementwise; where a == b
  each operand gets half of the cotangent (PyTorch's `torch.maximum` does the
  same).
* If you want the whole gradient on one element (as PyTorch's
  `x.max(dim).values`, which routes it through the returned index), index
  with argmax: `take_along_axis(x, argmax(x)[..., None])` sends it to the
  first maximum.
* A smooth maximum, `t * logsumexp(x / t)`, has gradient softmax(x / t):
  it tends to the tie-splitting subgradient as the temperature t -> 0.

PyTorch computes gradients by mutating `.grad` after `y.backward(v)`;
tracegrad (like JAX) returns them from functions:

    y.backward()      on a scalar y = f(x)   <->   tg.grad(f)(x)
    y.backward(v)     on a tensor y = f(x)   <->   y, pullback = tg.vjp(f, x); pullback(v)
    x.grad accumulates over calls            <->   add the returned gradients yourself

    python examples/maximum_minimum.py [--quick]
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import tracegrad as tg
import tracegrad.numpy as tnp

try:
    import torch
except ImportError:  # the PyTorch column is optional
    torch = None


def show(title, ours, theirs=None):
    print(f"\n{title}")
    ours = np.asarray(ours)
    print("  tracegrad:", np.array2string(ours, precision=3, prefix="  tracegrad: "))
    if theirs is not None:
        theirs = np.asarray(theirs)
        print("  torch:    ", np.array2string(theirs, precision=3, prefix="  torch:     "))
        print("  same:", np.allclose(ours, theirs))


def torch_grad(f, *xs, v=None):
    """Gradients with PyTorch's backward(): of f(*xs) (scalar) or of
    f(*xs) . v (vector-Jacobian product)."""
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    y = f(*ts)
    if v is None:
        y.backward()
    else:
        y.backward(torch.tensor(v))
    grads = [t.grad.numpy() for t in ts]
    return grads[0] if len(grads) == 1 else grads


def main(quick=False, verbose=True):
    x = np.array([[1.0, 3.0, 3.0],
                  [2.0, 0.0, 2.0]])
    a = np.array([1.0, 2.0, 3.0])
    b = np.array([1.0, 0.0, 3.0])
    v = np.array([1.0, 10.0])
    res = {}
    have_torch = torch is not None
    if verbose:
        print("x =\n", x)
        if not have_torch:
            print("(PyTorch is not installed: showing tracegrad only)")

    # reductions along an axis: ties split the gradient
    res["max_axis1"] = tg.grad(lambda x: tnp.sum(tnp.max(x, axis=1)))(x)
    res["min_axis0"] = tg.grad(lambda x: tnp.sum(tnp.min(x, axis=0)))(x)
    res["max_all"] = tg.grad(lambda x: tnp.max(x))(x)
    # non-scalar output: a vector-Jacobian product with cotangent v
    y, pullback = tg.vjp(lambda x: tnp.max(x, axis=1), x)
    (res["max_axis1_vjp"],) = pullback(v)
    # elementwise: ties give half to each operand
    res["maximum"] = tg.grad(lambda a, b: tnp.sum(tnp.maximum(a, b)), argnums=(0, 1))(a, b)
    res["minimum"] = tg.grad(lambda a, b: tnp.sum(tnp.minimum(a, b)), argnums=(0, 1))(a, b)
    # all of it on the first maximum, through argmax
    res["first_max"] = tg.grad(lambda x: tnp.sum(tnp.take_along_axis(
        x, tnp.argmax(x, axis=1)[:, None], axis=1)))(x)

    ref = {}
    if have_torch:
        ref["max_axis1"] = torch_grad(lambda t: t.amax(dim=1).sum(), x)
        ref["min_axis0"] = torch_grad(lambda t: t.amin(dim=0).sum(), x)
        ref["max_all"] = torch_grad(lambda t: t.max(), x)
        ref["max_axis1_vjp"] = torch_grad(lambda t: t.amax(dim=1), x, v=v)
        ref["maximum"] = torch_grad(lambda p, q: torch.maximum(p, q).sum(), a, b)
        ref["minimum"] = torch_grad(lambda p, q: torch.minimum(p, q).sum(), a, b)
        ref["first_max"] = torch_grad(lambda t: t.max(dim=1).values.sum(), x)

    if verbose:
        show("grad of sum(max(x, axis=1))   [torch: x.amax(dim=1).sum().backward()]\n"
             "  row 0 has a tie (3, 3): each gets 1/2; row 1 too (2, 2)",
             res["max_axis1"], ref.get("max_axis1"))
        show("grad of sum(min(x, axis=0))   [torch: x.amin(dim=0).sum().backward()]",
             res["min_axis0"], ref.get("min_axis0"))
        show("grad of max(x) over all elements   [torch: x.max().backward()]",
             res["max_all"], ref.get("max_all"))
        show(f"vjp of max(x, axis=1) = {np.asarray(y)} with cotangent v = {v}   "
             f"[torch: x.amax(dim=1).backward(v)]\n  = v[i] / (number of ties) on each "
             f"row's maxima", res["max_axis1_vjp"], ref.get("max_axis1_vjp"))
        show(f"grad of sum(maximum(a, b)) for a = {a}, b = {b}: (d/da, d/db); ties at 0 and 2",
             np.stack(res["maximum"]), None if not have_torch else np.stack(ref["maximum"]))
        show("grad of sum(minimum(a, b)): (d/da, d/db)",
             np.stack(res["minimum"]), None if not have_torch else np.stack(ref["minimum"]))
        show("grad through take_along_axis(x, argmax(x)): all on the first maximum\n"
             "  [torch: x.max(dim=1).values.sum().backward(), which uses the index]",
             res["first_max"], ref.get("first_max"))

    # a smooth maximum: its gradient softmax(x / t) tends to the subgradient
    temps = [1.0, 0.3, 0.1, 0.01] if not quick else [1.0, 0.01]
    row = x[0]
    soft = {t: np.asarray(tg.grad(lambda r: t * tnp.logsumexp(r / t))(row)) for t in temps}
    res["soft"] = soft
    if verbose:
        print(f"\nsmooth maximum t * logsumexp(x / t) of {row}: gradient = softmax(x / t)")
        for t in temps:
            print(f"  t = {t:<5}  value {float(t * tnp.logsumexp(row / t)):.4f}  gradient "
                  f"{np.array2string(soft[t], precision=3)}")
        print("  -> as t -> 0 it approaches max = 3 and the tie-splitting gradient [0, .5, .5]")
    res["torch"] = ref
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer temperatures (smoke test)")
    args = ap.parse_args()
    main(quick=args.quick or bool(os.environ.get("TRACEGRAD_EXAMPLES_QUICK")))
