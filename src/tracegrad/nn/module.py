"""Modules as pytrees.

A `Module` is a plain Python object whose attributes are either *children*
(arrays, which are the parameters, other modules, and lists/tuples/dicts
holding them) or *static* configuration (ints, strings, tuples of ints,
functions, ...). Every subclass is registered with the pytree registry when
it is defined, so a model can go anywhere a pytree can::

    model = nn.Sequential(nn.Linear(64, 32, key=k1), nn.relu, nn.Linear(32, 10, key=k2))
    grads = tracegrad.grad(loss)(model, x, y)       # a Sequential of gradients
    step = tracegrad.jit(train_step)                 # models in, models out
    tracegrad.tree_util.tree_leaves(model)           # [w0, b0, w1, b1]

Which attributes are children is decided from their values the first time
the module is flattened (or whenever an attribute is set) and then travels
with the pytree structure, so `tree_map(f, model)` keeps the same split even
when f returns something that is not an array. A subclass can force the
decision with the class attributes ``_static_fields`` / ``_child_fields``.
Static values must be hashable (jit caches on them); lists are stored as
tuples.
"""
from __future__ import annotations

import numpy as np
from jax import tree_util as _jtu  # the registry tracegrad.tree_util wraps

from ..core import Array, ShapeDtypeError, Tracer
from ..tree_util import tree_leaves, tree_map

__all__ = ["Module", "Sequential", "Chain", "Lambda", "Flatten", "Identity", "inference_mode",
           "count_params"]

_AUX = "_tg_aux"  # cached pytree aux data: (child names, ((static name, value), ...))


def _is_child_value(v):
    if isinstance(v, (Array, Tracer, np.ndarray, np.generic, Module)):
        return True
    if isinstance(v, (list, tuple)):
        return any(_is_child_value(e) for e in v)
    if isinstance(v, dict):
        return any(_is_child_value(e) for e in v.values())
    return False


def _hashable(name, v, owner):
    if isinstance(v, list):
        v = tuple(v)
    try:
        hash(v)
    except TypeError:
        raise TypeError(f"{type(owner).__name__}.{name} = {v!r} is static configuration (not an "
                        f"array or module) and must be hashable") from None
    return v


def _aux(m):
    """The module's aux data, computed from its attribute values once and
    cached in the instance (setting an attribute clears the cache)."""
    d = m.__dict__
    aux = d.get(_AUX)
    if aux is None:
        cls = type(m)
        children, static = [], []
        for name, v in d.items():
            if name in cls._child_fields or (name not in cls._static_fields and
                                              _is_child_value(v)):
                children.append(name)
            else:
                static.append((name, _hashable(name, v, m)))
        aux = d[_AUX] = (tuple(children), tuple(static))
    return aux


def _fields(m):
    """(child names, static names)."""
    children, static = _aux(m)
    return children, tuple(n for n, _ in static)


def _flatten(m):
    # the hot path of every jit call on a model: a dict lookup per child
    aux = m.__dict__.get(_AUX) or _aux(m)
    d = m.__dict__
    return [d[n] for n in aux[0]], aux


def _flatten_with_keys(m):
    leaves, aux = _flatten(m)
    return [(_jtu.GetAttrKey(n), v) for n, v in zip(aux[0], leaves)], aux


def _make_unflatten(cls):
    new = object.__new__

    def unflatten(aux, leaves):
        m = new(cls)
        d = m.__dict__
        d.update(aux[1])
        d.update(zip(aux[0], leaves))
        d[_AUX] = aux  # the same split: flattening the result again is free
        return m
    return unflatten


class Module:
    """Base class of layers and models: a pytree of its parameters (see the
    module docstring). Subclasses set attributes in ``__init__`` and define
    ``__call__``. Modules are meant to be immutable: training returns new
    modules (`optim.apply_updates`, `replace`)."""

    _static_fields: tuple = ()
    _child_fields: tuple = ()
    # layers that draw random numbers (Dropout) take key= and deterministic=
    _stochastic = False

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        _jtu.register_pytree_with_keys(cls, _flatten_with_keys, _make_unflatten(cls),
                                       flatten_func=_flatten)

    def __setattr__(self, name, value):
        d = self.__dict__
        d.pop(_AUX, None)  # the child/static split is recomputed
        d[name] = value

    def replace(self, **changes):
        """A copy with some attributes replaced."""
        new = object.__new__(type(self))
        d = {k: v for k, v in self.__dict__.items() if k != _AUX}
        for k in changes:
            if k not in d:
                raise AttributeError(f"{type(self).__name__} has no attribute {k!r}")
        d.update(changes)
        new.__dict__.update(d)
        return new

    def _describe(self):
        """Short constructor-like description used in error messages."""
        return type(self).__name__

    def _error(self, msg):
        return ShapeDtypeError(f"{self._describe()}: {msg}")

    def __repr__(self):
        children, static = _fields(self)
        parts = [f"{n}={getattr(self, n)!r}" for n in static if not n.startswith("_")]
        for n in children:
            v = getattr(self, n)
            if isinstance(v, (Array, Tracer, np.ndarray)):
                parts.append(f"{n}={type(v).__name__}{_shape_str(v)}")
            else:
                parts.append(f"{n}={v!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


def _shape_str(v):
    try:
        return f"({', '.join(map(str, v.shape))}; {np.dtype(v.dtype).name})"
    except Exception:  # noqa: BLE001  (only for display)
        return ""


def _shape_of(x):
    return tuple(np.shape(x)) if not isinstance(x, (Array, Tracer)) else tuple(x.shape)


class Lambda(Module):
    """Wraps a plain function (e.g. an activation) as a parameterless layer."""

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"Lambda needs a callable, got {type(fn).__name__}")
        self.fn = fn

    def __call__(self, x):
        return self.fn(x)

    def __repr__(self):
        return getattr(self.fn, "__name__", repr(self.fn))


class Identity(Module):
    def __call__(self, x):
        return x


class Flatten(Module):
    """Merges axes start_dim..end_dim (default: all but the batch axis)."""

    def __init__(self, start_dim=1, end_dim=-1):
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def _describe(self):
        return f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim})"

    def __call__(self, x):
        shape = _shape_of(x)
        nd = len(shape)
        s = self.start_dim + nd if self.start_dim < 0 else self.start_dim
        e = self.end_dim + nd if self.end_dim < 0 else self.end_dim
        if not 0 <= s <= e < nd:
            raise self._error(f"cannot flatten axes {self.start_dim}..{self.end_dim} of an input "
                              f"of shape {shape}")
        n = int(np.prod(shape[s:e + 1], dtype=np.int64))
        return x.reshape(shape[:s] + (n,) + shape[e + 1:])


class Sequential(Module):
    """Layers applied in order: modules and plain functions (e.g. nn.relu).

    ``model[i]`` is layer i. Modules sit in the pytree child ``layers`` (a
    tuple with None where a plain function is); the functions are static
    configuration (``fns``), so they cost nothing when a model is flattened
    on every jit call.

    ``model(x, key=k)`` splits k among the stochastic layers (Dropout);
    ``deterministic=True`` switches those off for this call.
    """

    def __init__(self, *layers):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        mods, fns = [], []
        for i, l in enumerate(layers):
            if isinstance(l, Module):
                mods.append(l)
                fns.append(None)
            elif callable(l):
                mods.append(None)
                fns.append(l)
            else:
                raise TypeError(f"Sequential: layer {i} is a {type(l).__name__}, not a module or "
                                f"function")
        self.layers = tuple(mods)
        self.fns = tuple(fns)

    def _all(self):
        return [f if m is None else m for m, f in zip(self.layers, self.fns)]

    @property
    def _stochastic(self):
        return any(getattr(l, "_stochastic", False) for l in self.layers)

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Sequential(*self._all()[i])
        return self._all()[i]

    def __iter__(self):
        return iter(self._all())

    def __call__(self, x, *, key=None, deterministic=None):
        stochastic = [i for i, l in enumerate(self.layers) if getattr(l, "_stochastic", False)]
        keys = {}
        if key is not None and stochastic:
            from .. import random
            ks = random.split(key, len(stochastic))
            keys = {i: ks[j] for j, i in enumerate(stochastic)}
        for i, (layer, fn) in enumerate(zip(self.layers, self.fns)):
            try:
                if fn is not None:
                    x = fn(x)
                elif i in stochastic:
                    x = layer(x, key=keys.get(i), deterministic=deterministic)
                else:
                    x = layer(x)
            except ShapeDtypeError as e:
                raise ShapeDtypeError(f"in Sequential layer {i}: {e}") from None
        return x

    def __repr__(self):
        def name(l):
            return repr(l) if isinstance(l, Module) else getattr(l, "__name__", repr(l))
        inner = ",\n".join(f"  ({i}): " + name(l).replace("\n", "\n  ")
                           for i, l in enumerate(self._all()))
        return f"Sequential(\n{inner}\n)"


Chain = Sequential


def inference_mode(model, value=True):
    """A copy of `model` whose stochastic layers (Dropout) are deterministic
    (value=True) or active again (value=False)."""
    def flip(m):
        if isinstance(m, Module) and "deterministic" in m.__dict__:
            return m.replace(deterministic=bool(value))
        return m
    return tree_map(flip, model, is_leaf=lambda m: isinstance(m, Module) and
                    "deterministic" in m.__dict__)


def count_params(model):
    """Number of scalar parameters in a pytree."""
    return int(sum(np.prod(np.shape(l), dtype=np.int64) for l in tree_leaves(model)))
