"""tracegrad.nn: neural-network layers, activations, losses and initialisers.

Modules are pytrees of their parameters, so the transformations apply to
whole models::

    import tracegrad as tg
    from tracegrad import nn, optim, random

    k1, k2 = random.split(random.key(0))
    model = nn.Sequential(nn.Linear(64, 128, key=k1), nn.relu, nn.Linear(128, 10, key=k2))

    def loss(model, x, y):
        return nn.softmax_cross_entropy(model(x), y)

    opt = optim.adam(1e-3)
    state = opt.init(model)

    @tg.jit
    def step(model, state, x, y):
        l, g = tg.value_and_grad(loss)(model, x, y)   # g: a Sequential of gradients
        updates, state = opt.update(g, state, model)
        return optim.apply_updates(model, updates), state, l

See module.py for how modules become pytrees, layers.py for the layers,
functional.py for activations and losses, init.py for initialisers.
"""
from __future__ import annotations

from . import init  # noqa: F401
from .functional import *  # noqa: F401,F403
from .functional import __all__ as _f_all
from .layers import *  # noqa: F401,F403
from .layers import __all__ as _l_all
from .module import *  # noqa: F401,F403
from .module import __all__ as _m_all

__all__ = ["init"] + list(_f_all) + list(_l_all) + list(_m_all)
