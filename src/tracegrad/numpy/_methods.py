"""Operators and methods shared by eager Arrays and Tracers, so one function
behaves the same eagerly and under every transformation."""
from __future__ import annotations

from ..core import Array, Tracer
from . import ufuncs


def _swap(f):
    return lambda self, other: f(other, self)


def _install(cls):
    from . import creation, reductions
    ops = {
        "__add__": ufuncs.add, "__radd__": _swap(ufuncs.add),
        "__sub__": ufuncs.subtract, "__rsub__": _swap(ufuncs.subtract),
        "__mul__": ufuncs.multiply, "__rmul__": _swap(ufuncs.multiply),
        "__truediv__": ufuncs.true_divide, "__rtruediv__": _swap(ufuncs.true_divide),
        "__floordiv__": ufuncs.floor_divide, "__rfloordiv__": _swap(ufuncs.floor_divide),
        "__mod__": ufuncs.remainder, "__rmod__": _swap(ufuncs.remainder),
        "__divmod__": ufuncs.divmod, "__rdivmod__": _swap(ufuncs.divmod),
        "__pow__": ufuncs.power, "__rpow__": _swap(ufuncs.power),
        "__and__": ufuncs.bitwise_and, "__rand__": _swap(ufuncs.bitwise_and),
        "__or__": ufuncs.bitwise_or, "__ror__": _swap(ufuncs.bitwise_or),
        "__xor__": ufuncs.bitwise_xor, "__rxor__": _swap(ufuncs.bitwise_xor),
        "__lshift__": ufuncs.left_shift, "__rlshift__": _swap(ufuncs.left_shift),
        "__rshift__": ufuncs.right_shift, "__rrshift__": _swap(ufuncs.right_shift),
        "__lt__": ufuncs.less, "__le__": ufuncs.less_equal,
        "__gt__": ufuncs.greater, "__ge__": ufuncs.greater_equal,
        "__eq__": ufuncs.equal, "__ne__": ufuncs.not_equal,
        "__neg__": ufuncs.negative, "__pos__": ufuncs.positive,
        "__abs__": ufuncs.absolute, "__invert__": ufuncs.invert,
        "sum": reductions.sum, "mean": reductions.mean,
        "astype": lambda self, dtype: creation.asarray(self, dtype=dtype),
        "conj": ufuncs.conjugate, "conjugate": ufuncs.conjugate,
        "clip": ufuncs.clip, "round": ufuncs.round,
    }
    # each tnp module may add its own methods in a METHODS dict
    import sys
    from . import indexing, linalg
    shape = sys.modules[__package__ + ".shape"]  # the module: tnp.shape is the function
    for mod in (creation, reductions, ufuncs, shape, indexing, linalg):
        ops.update(getattr(mod, "METHODS", {}))
    for name, f in ops.items():
        setattr(cls, name, f)


for _cls in (Array, Tracer):
    _install(_cls)
