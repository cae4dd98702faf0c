"""tracegrad.optim: gradient-based optimisers as pure functions on pytrees
(the optax style)::

    opt = optim.adam(1e-3)
    state = opt.init(params)                        # any pytree (a Module, a dict, ...)
    updates, state = opt.update(grads, state, params)
    params = optim.apply_updates(params, updates)   # params + updates

Everything is written with tracegrad.numpy, so `update` works eagerly, under
jit (the whole train step compiles into one executable), and under vmap.
An optimiser is a `GradientTransformation(init, update)`; `chain` composes
the building blocks (`scale_by_adam`, `trace`, `add_decayed_weights`,
`clip_by_global_norm`, `scale_by_learning_rate`, ...), exactly as the ready
made ones below are built:

    sgd(lr, momentum, nesterov, weight_decay)
        = chain(add_decayed_weights(wd), trace(momentum, nesterov), -lr)
        PyTorch's SGD: weight decay is added to the gradient before momentum.
    adam(lr, b1, b2, eps) = chain(scale_by_adam(b1, b2, eps), -lr)
    adamw(lr, ..., weight_decay) = chain(scale_by_adam(...), add_decayed_weights(wd), -lr)
        decoupled weight decay (Loshchilov & Hutter): p -= lr (adam + wd p).

A learning rate may be a number or a schedule: a function of the step count
(0 for the first update) returning the rate.

Optimiser state (momentum buffers, Adam's moments) is kept as flat lists of
arrays, one per parameter leaf in `tree_leaves(params)` order, not as copies
of the parameter tree: a jitted train step takes and returns the state on
every call, and a flat list crosses the jit boundary without running any
Python code per module (a model-shaped state would cost ~1 us per module, per
call, each way). `updates` have the structure of the gradients.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from .. import numpy as tnp
from ..core import get_aval
from ..tree_util import tree_flatten, tree_leaves, tree_map, tree_structure

__all__ = [
    "GradientTransformation", "EmptyState", "ScaleByAdamState", "TraceState",
    "ScaleByScheduleState", "chain", "identity", "scale", "scale_by_learning_rate",
    "scale_by_schedule", "trace", "scale_by_adam", "add_decayed_weights",
    "clip_by_global_norm", "sgd", "momentum", "adam", "adamw", "apply_updates", "global_norm",
    "constant_schedule", "exponential_decay", "cosine_decay_schedule",
]


class GradientTransformation(NamedTuple):
    """init(params) -> state; update(grads, state, params=None) -> (updates, state)."""
    init: Callable
    update: Callable


class EmptyState(NamedTuple):
    pass


class TraceState(NamedTuple):
    trace: Any


class ScaleByAdamState(NamedTuple):
    count: Any
    mu: Any
    nu: Any


class ScaleByScheduleState(NamedTuple):
    count: Any


# --------------------------------------------------------------------------
# helpers


def _zeros_like_leaves(tree):
    """A flat list of zeros, one per leaf of `tree` (see the module docstring)."""
    return [tnp.zeros(get_aval(p).shape, get_aval(p).dtype) for p in tree_leaves(tree)]


def _count0():
    return tnp.zeros((), np.int32)


_INT32_MAX = np.iinfo(np.int32).max


def _increment(count):
    # stop at the largest int32 rather than wrapping to a negative count
    return tnp.where(count < _INT32_MAX, count + 1, _INT32_MAX).astype(np.int32)


def _cast(v, like):
    """v (a scalar, maybe float64) as the dtype of the array `like`."""
    return tnp.asarray(v).astype(get_aval(like).dtype)


def _check_trees(grads, other, what):
    if tree_structure(grads) != tree_structure(other):
        raise ValueError(f"optimizer update: the gradients and the {what} have different "
                         f"structures:\n  gradients: {tree_structure(grads)}\n  {what}: "
                         f"{tree_structure(other)}")


def _check_leaves(g_leaves, buffers, what):
    """The gradient leaves must match the state's buffers (made by init from
    the parameters) in number and shape."""
    shapes = [tuple(get_aval(g).shape) for g in g_leaves]
    want = [tuple(get_aval(b).shape) for b in buffers]
    if shapes != want:
        raise ValueError(f"optimizer update: the gradients do not match the {what} that init "
                         f"made from the parameters: gradient leaf shapes {shapes}, "
                         f"{what} {want} (was the state initialised for other parameters?)")


# --------------------------------------------------------------------------
# building blocks


def identity():
    return GradientTransformation(lambda params: EmptyState(),
                                  lambda updates, state, params=None: (updates, state))


def chain(*transforms):
    """Apply the transformations one after another; the state is a tuple of
    their states."""
    transforms = tuple(transforms)

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None):
        if len(state) != len(transforms):
            raise ValueError(f"chain: expected a state of {len(transforms)} parts, got "
                             f"{len(state)}")
        new_state = []
        for t, s in zip(transforms, state):
            updates, s = t.update(updates, s, params)
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init, update)


def scale(step_size):
    """updates * step_size."""
    def update(updates, state, params=None):
        return tree_map(lambda u: u * _cast(step_size, u), updates), state
    return GradientTransformation(lambda params: EmptyState(), update)


def scale_by_schedule(schedule):
    """updates * schedule(count), count = number of earlier updates."""
    def init(params):
        return ScaleByScheduleState(_count0())

    def update(updates, state, params=None):
        s = schedule(state.count)
        return (tree_map(lambda u: u * _cast(s, u), updates),
                ScaleByScheduleState(_increment(state.count)))
    return GradientTransformation(init, update)


def scale_by_learning_rate(learning_rate, flip_sign=True):
    """updates * -learning_rate (a number or a schedule)."""
    sign = -1.0 if flip_sign else 1.0
    if callable(learning_rate):
        return scale_by_schedule(lambda count: sign * learning_rate(count))
    return scale(sign * learning_rate)


def trace(decay, nesterov=False):
    """Momentum: t = g + decay * t; the update is t (or g + decay * t with
    Nesterov). The same recurrence as PyTorch's SGD (dampening 0)."""
    def init(params):
        return TraceState(_zeros_like_leaves(params))

    def update(updates, state, params=None):
        gs, tree = tree_flatten(updates)
        _check_leaves(gs, state.trace, "momentum buffers")
        new_t = [g + _cast(decay, t) * t for g, t in zip(gs, state.trace)]
        if nesterov:
            out = [g + _cast(decay, t) * t for g, t in zip(gs, new_t)]
        else:
            out = new_t
        return tree.unflatten(out), TraceState(new_t)
    return GradientTransformation(init, update)


def scale_by_adam(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0):
    """Adam's direction: bias-corrected first moment over the square root of
    the bias-corrected second moment (plus eps)."""
    def init(params):
        return ScaleByAdamState(_count0(), _zeros_like_leaves(params),
                                _zeros_like_leaves(params))

    def update(updates, state, params=None):
        gs, tree = tree_flatten(updates)
        _check_leaves(gs, state.mu, "Adam moments")
        mu = [_cast(b1, m) * m + _cast(1 - b1, m) * g for g, m in zip(gs, state.mu)]
        nu = [_cast(b2, v) * v + _cast(1 - b2, v) * (g * g) for g, v in zip(gs, state.nu)]
        count = _increment(state.count)
        # 1 - b**t in float64, then cast: accurate even for b2 close to 1
        c = count.astype(np.float64)
        bc1 = 1.0 - tnp.power(np.float64(b1), c)
        bc2 = 1.0 - tnp.power(np.float64(b2), c)

        def direction(m, v):
            m_hat = m / _cast(bc1, m)
            v_hat = v / _cast(bc2, v)
            return m_hat / (tnp.sqrt(v_hat + _cast(eps_root, v)) + _cast(eps, v))

        return (tree.unflatten([direction(m, v) for m, v in zip(mu, nu)]),
                ScaleByAdamState(count, mu, nu))
    return GradientTransformation(init, update)


def add_decayed_weights(weight_decay=0.0, mask=None):
    """updates + weight_decay * params, only where `mask` (a pytree of bools
    like params, or a function params -> such a pytree) is True."""
    def update(updates, state, params=None):
        if weight_decay == 0.0:
            return updates, state
        if params is None:
            raise ValueError("add_decayed_weights needs the parameters: call "
                             "opt.update(grads, state, params)")
        _check_trees(updates, params, "parameters")
        m = mask(params) if callable(mask) else mask
        if m is None:
            out = tree_map(lambda u, p: u + _cast(weight_decay, p) * p, updates, params)
        else:
            out = tree_map(lambda u, p, keep: u + _cast(weight_decay, p) * p if keep else u,
                           updates, params, m)
        return out, state
    return GradientTransformation(lambda params: EmptyState(), update)


def global_norm(tree):
    """sqrt of the sum of squares of every leaf."""
    leaves = tree_leaves(tree)
    if not leaves:
        return tnp.zeros((), np.float32)
    return tnp.sqrt(sum(tnp.sum(tnp.square(l.astype(np.float32) if get_aval(l).dtype.itemsize < 4
                                           else l)) for l in leaves))


def clip_by_global_norm(max_norm):
    """Scale all updates by min(1, max_norm / global_norm(updates))."""
    def update(updates, state, params=None):
        n = global_norm(updates)
        factor = tnp.where(n > max_norm, max_norm / tnp.maximum(n, 1e-30), 1.0)
        return tree_map(lambda u: u * _cast(factor, u), updates), state
    return GradientTransformation(lambda params: EmptyState(), update)


# --------------------------------------------------------------------------
# optimisers


def sgd(learning_rate, momentum=0.0, nesterov=False, weight_decay=0.0):
    """Stochastic gradient descent, with optional (Nesterov) momentum and L2
    weight decay added to the gradient (PyTorch's SGD)."""
    if nesterov and not momentum:
        raise ValueError("sgd: nesterov=True needs momentum > 0")
    parts = []
    if weight_decay:
        parts.append(add_decayed_weights(weight_decay))
    if momentum:
        parts.append(trace(momentum, nesterov))
    parts.append(scale_by_learning_rate(learning_rate))
    return chain(*parts)


def momentum(learning_rate, beta=0.9, nesterov=False):
    return sgd(learning_rate, beta, nesterov)


def adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0):
    """Adam (Kingma & Ba)."""
    return chain(scale_by_adam(b1, b2, eps, eps_root), scale_by_learning_rate(learning_rate))


def adamw(learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, weight_decay=1e-4,
          mask=None):
    """Adam with decoupled weight decay (optax's default weight_decay=1e-4;
    PyTorch's AdamW uses 1e-2)."""
    return chain(scale_by_adam(b1, b2, eps, eps_root), add_decayed_weights(weight_decay, mask),
                 scale_by_learning_rate(learning_rate))


def apply_updates(params, updates):
    """params + updates, leaf by leaf, keeping each parameter's dtype (None
    updates leave the parameter as it is)."""
    def add(p, u):
        if u is None:
            return p
        return (p + u).astype(get_aval(p).dtype)
    return tree_map(add, params, updates, is_leaf=lambda x: x is None)


# --------------------------------------------------------------------------
# schedules


def constant_schedule(value):
    return lambda count: value


def exponential_decay(init_value, transition_steps, decay_rate):
    """init_value * decay_rate ** (count / transition_steps)."""
    return lambda count: init_value * tnp.power(
        np.float64(decay_rate), tnp.asarray(count).astype(np.float64) / transition_steps)


def cosine_decay_schedule(init_value, decay_steps, alpha=0.0):
    """Cosine decay from init_value to alpha * init_value over decay_steps."""
    def schedule(count):
        t = tnp.minimum(tnp.asarray(count).astype(np.float64), decay_steps) / decay_steps
        cos = 0.5 * (1.0 + tnp.cos(np.pi * t))
        return init_value * ((1.0 - alpha) * cos + alpha)
    return schedule
