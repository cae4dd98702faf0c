"""Trace a NumPy-style function to a jaxpr, evaluate it, differentiate it."""
import numpy as np

import tracegrad as tg
import tracegrad.numpy as tnp


def f(x, y):
    return tnp.sum(tnp.sin(x * y) + 1.0)


x = np.linspace(0.0, 1.0, 4, dtype=np.float32)
print("f(x, x) =", f(x, x))
print("make_jaxpr(f):")
print(tg.make_jaxpr(f)(x, x))
print("grad(f)(x, x) =", tg.grad(f)(x, x))
print("make_jaxpr(grad(f)):")
print(tg.make_jaxpr(tg.grad(f))(x, x))
