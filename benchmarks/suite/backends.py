"""Backends: one small adapter per framework, giving the objectives
(objectives.py) a NumPy-like namespace and the framework's transformations.

    tracegrad  eager and jitted (tracegrad.jit); grad, jacfwd, jacrev, vmap,
               and the automatic mode chooser tracegrad.jacobian
    jax        jax.jit with float64 (x64) on; grad, jacfwd, jacrev, vmap
    autograd   HIPS autograd, eager; reverse mode only (grad, jacobian)
    torch      PyTorch eager with torch.func (grad, jacfwd, jacrev, vmap)
    numpy      plain NumPy: objectives only, for central finite differences

Peers that are not installed are skipped with a one-line note
(`load_backends` returns the notes).
"""
from __future__ import annotations

import numpy as np


def _py_scan(f, init, xs, length=None):
    """lax.scan's semantics with a Python loop (frameworks without a scan)."""
    carry = init
    if xs is None:
        steps = range(length)
        get = lambda i: None
    else:
        import jax.tree_util as jtu  # a pytree walker; jax is a core dependency
        leaves, tree = jtu.tree_flatten(xs)
        steps = range(leaves[0].shape[0] if length is None else length)
        get = lambda i: jtu.tree_unflatten(tree, [leaf[i] for leaf in leaves])
    ys = []
    for i in steps:
        carry, y = f(carry, get(i))
        ys.append(y)
    return carry, (None if all(y is None for y in ys) else ys)


class Backend:
    name = ""
    label = ""
    has_jit = False     # a compiled execution mode
    has_eager = True    # an eager execution mode
    has_fwd = False     # forward-mode Jacobians (jacfwd)
    has_rev = False     # reverse mode (grad, jacrev)
    has_vmap = False
    version = ""

    # -- the namespace the objectives use
    def asarray(self, x):
        return np.asarray(x, dtype=np.float64)

    def index(self, a):
        return np.asarray(a)

    def stack(self, xs, axis=0):
        return self.np.stack(xs, axis=axis)

    def concat(self, xs, axis=0):
        return self.np.concatenate(xs, axis=axis)

    def zeros(self, shape):
        return self.np.zeros(shape, dtype=np.float64)

    def scan(self, f, init, xs, length=None):
        return _py_scan(f, init, xs, length)

    # -- data movement
    def put(self, x, jit=False):
        """A NumPy input as this framework's array (outside the timed region)."""
        return x

    def block(self, y):
        return y

    def settle(self):
        """Wait for work the framework left running after a first call."""

    def to_numpy(self, y):
        return np.asarray(y)

    # transformations (grad, jacfwd, jacrev, vmap, jit) are attributes of the
    # backends that have them; the has_* flags say which

    def __repr__(self):
        return f"<backend {self.name} {self.version}>"


class NumpyBackend(Backend):
    name = "numpy"
    label = "NumPy FD"

    def __init__(self):
        import scipy.special
        self.np = np
        self.version = np.__version__
        self._lse = scipy.special.logsumexp

    def lse(self, x, axis=None):
        return self._lse(x, axis=axis)


class TracegradBackend(Backend):
    name = "tracegrad"
    label = "tracegrad"
    has_jit = has_fwd = has_rev = has_vmap = True

    def __init__(self):
        import tracegrad as tg
        import tracegrad.lax
        import tracegrad.numpy as tnp
        self.tg, self.np = tg, tnp
        self.version = tg.__version__
        self._scan = tracegrad.lax.scan
        self.grad, self.jacfwd, self.jacrev, self.vmap = tg.grad, tg.jacfwd, tg.jacrev, tg.vmap
        self.jacobian = getattr(tg, "jacobian", None)

    def lse(self, x, axis=None):
        return self.np.logsumexp(x, axis=axis)

    def scan(self, f, init, xs, length=None):
        return self._scan(f, init, xs, length=length)

    def put(self, x, jit=False):
        return self.tg.device_put(x) if jit else self.np.asarray(x)

    def block(self, y):
        return self.tg.block_until_ready(y)

    def settle(self):
        # the inline copies a jitted function's first waits ask for compile
        # in a background thread: done before the next framework's first
        # call and the timed rounds, which it would otherwise slow down
        from tracegrad.interpreters import xla
        xla.wait_for_background_compiles()

    def jit(self, f):
        return self.tg.jit(f)


class JaxBackend(Backend):
    name = "jax"
    label = "jax.jit"
    has_jit = has_fwd = has_rev = has_vmap = True
    has_eager = False   # jax eager (op-by-op) is not a target here

    def __init__(self):
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        import jax.scipy.special
        self.jax, self.np = jax, jnp
        self.version = jax.__version__
        self._lse = jax.scipy.special.logsumexp
        self.grad, self.jacfwd, self.jacrev, self.vmap = jax.grad, jax.jacfwd, jax.jacrev, jax.vmap

    def lse(self, x, axis=None):
        return self._lse(x, axis=axis)

    def scan(self, f, init, xs, length=None):
        return self.jax.lax.scan(f, init, xs, length=length)

    def put(self, x, jit=False):
        return self.jax.device_put(self.np.asarray(x))

    def block(self, y):
        return self.jax.block_until_ready(y)

    def jit(self, f):
        return self.jax.jit(f)


class AutogradBackend(Backend):
    name = "autograd"
    label = "autograd"
    has_rev = True

    def __init__(self):
        import autograd
        import autograd.numpy as anp
        import autograd.scipy.special
        self.np = anp
        self.version = getattr(autograd, "__version__", "") or _dist_version("autograd")
        self._lse = autograd.scipy.special.logsumexp
        self.grad = autograd.grad
        self.jacrev = autograd.jacobian
        self.make_vjp = autograd.make_vjp

    def lse(self, x, axis=None):
        return self._lse(x, axis=axis)


class TorchBackend(Backend):
    name = "torch"
    label = "torch.func"
    has_fwd = has_rev = has_vmap = True

    def __init__(self):
        import os

        import torch
        import torch.func
        # one intra-op thread (see suite/__init__.py), unless OMP_NUM_THREADS says otherwise
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
        self.torch = self.np = torch
        self.version = torch.__version__.split("+")[0]
        self.grad, self.jacfwd, self.jacrev = torch.func.grad, torch.func.jacfwd, torch.func.jacrev
        self.vmap = torch.func.vmap

    def asarray(self, x):
        return self.torch.as_tensor(np.asarray(x, dtype=np.float64))

    def index(self, a):
        return self.torch.as_tensor(np.asarray(a, dtype=np.int64))

    def zeros(self, shape):
        return self.torch.zeros(shape, dtype=self.torch.float64)

    def lse(self, x, axis=None):
        if axis is None:
            return self.torch.logsumexp(x.reshape(-1), 0)
        return self.torch.logsumexp(x, axis)

    def put(self, x, jit=False):
        return self.torch.as_tensor(np.ascontiguousarray(x))

    def to_numpy(self, y):
        return y.detach().numpy() if hasattr(y, "detach") else np.asarray(y)


def _dist_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001  (only used for display)
        return ""


PEERS = ("jax", "autograd", "torch", "numpy")
_CLASSES = {"tracegrad": TracegradBackend, "jax": JaxBackend, "autograd": AutogradBackend,
            "torch": TorchBackend, "numpy": NumpyBackend}


def load_backends(names):
    """{name: Backend} for the requested names that import, and one-line
    notes for those that do not (missing optional peers never crash the run)."""
    out, notes = {}, []
    for name in names:
        try:
            out[name] = _CLASSES[name]()
        except ImportError as e:
            notes.append(f"note: peer {name!r} skipped ({e.__class__.__name__}: {e}); "
                         f"install it to compare against it")
    return out, notes
