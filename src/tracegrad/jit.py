"""jit: trace a function to a jaxpr once per input signature, lower it to
StableHLO (interpreters/lowering.py) and run it compiled by XLA through
jaxlib (interpreters/xla.py).

    @tracegrad.jit
    def f(x, y):
        return tnp.sin(x * y) + 1

    f(x, y)                     # traces, lowers, compiles, runs: an Array on the device
    f(x, y)                     # cached: ~0.2-0.7 us above the executable's own dispatch
    f.lower(x, y).as_text()     # the StableHLO module
    f.lower(x, y).compile().cost_analysis()

Caching
-------
Traced jaxprs are cached per (pytree structure of the arguments, shape,
dtype and weak type of each leaf, static arguments by value); executables per
traced jaxpr and device (and XLA executables once more per module text, in
memory and on disk: see xla.py). `f._cache_size()` is the number of traced
signatures, `f._trace_count` / `f._compile_count` count traces and compiles,
and `f._last_retrace_reason` says why the last retrace happened.
`TRACEGRAD_LOG_COMPILES=1` (or `tracegrad.config.log_compiles = True`) logs
every trace, retrace reason and compile on the "tracegrad.jit" logger.

Arguments: arrays (tracegrad Arrays, NumPy arrays and scalars) and Python
scalars (weak-typed, as in JAX: `f(x, 2.0)` and `f(x, 3.0)` share one trace),
in any pytree, positional or keyword. Configuration values go in
`static_argnums` / `static_argnames` (hashable; compared by value).
`donate_argnums` lets XLA reuse the memory of those arguments for outputs;
donated Arrays must not be used afterwards.

Results are tracegrad `Array`s over device buffers: `np.asarray(result)` reads
them without a copy on the CPU, and they go straight back into jitted
functions (no host round trip). Eager tracegrad operations read them through
`Array.value`, materialised once and cached.

Inside another transformation (grad, vmap, make_jaxpr, an outer jit, ...),
calling a jitted function binds the `jit` call primitive (`jit_p`), which
carries the traced jaxpr and has rules for every transformation: jvp and
transpose transform the inner jaxpr (ad.jvp_jaxpr / ad.transpose_jaxpr),
vmap batches it (batching.vmap_jaxpr), partial evaluation splits it so that
`grad(jit(f))` runs the primal half compiled and stages only the linear
half, DCE prunes unused outputs, and lowering emits a nested `func.func`.
`make_jaxpr(jit(f))` shows a `jit` equation with the inner jaxpr.

Devices and GPUs
----------------
Computations run on the CPU by default. `jit(f, device=d)` picks a device
(`tracegrad.devices()`, `tracegrad.devices("gpu")`); otherwise a call runs
where its committed arguments live (results of jitted calls and
`tracegrad.device_put(x, device)`), and on the default device when none is
committed. Arguments committed to different devices are an error.

To use an NVIDIA GPU install the CUDA PJRT plugin next to jaxlib::

    pip install "jax[cuda12]"        # or "jax[cuda13]"

With the plugin installed the default backend (and so jit's default device)
is the GPU; `JAX_PLATFORMS=cpu` forces the CPU.
"""
from __future__ import annotations

import functools
import inspect
import logging
import re
import time
import weakref

import numpy as np

from . import core
from .api import ShapeDtypeStruct as _ShapeDtype
from .config import config
from .core import Array, ClosedJaxpr, Jaxpr, Tracer, TracegradError, _ctx, get_aval
from .core import memo_by_jaxpr as _memo
from .core import WAITED as _WAITED
from .interpreters import ad, batching, lowering, xla
from .interpreters import partial_eval as pe
from .interpreters.ad import Zero
from .tree_util import keystr, tree_flatten, tree_flatten_with_path, tree_map

__all__ = ["jit", "jit_p", "devices", "device_put", "JitCompileError", "JitRuntimeError"]

_log = logging.getLogger("tracegrad.jit")

_SCALAR_DTYPES = {bool: np.dtype(np.bool_), int: np.dtype(np.int64),
                  float: np.dtype(np.float64), complex: np.dtype(np.complex128)}


class JitCompileError(TracegradError, RuntimeError):
    """Lowering a traced function to StableHLO, or compiling it, failed."""


class JitRuntimeError(TracegradError, RuntimeError):
    """XLA failed while running a compiled function."""


# --------------------------------------------------------------------------
# small helpers


def _short(f):
    f = getattr(f, "__wrapped__", f)
    return getattr(f, "__name__", None) or type(f).__name__


def _defined_at(f):
    code = getattr(getattr(f, "__wrapped__", f), "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else "<unknown>"


def _symbol(name):
    """An MLIR symbol name from a Python name (`<lambda>` -> `lambda`)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "fn"


def _aval_str(a):
    return a.str_short() + (" (weak)" if a.weak_type else "")


def _resolve_device(device):
    if device is None or not isinstance(device, str):
        return device
    return xla.devices(device)[0]


def _clip(msg, limit=2000):
    msg = str(msg)
    return msg if len(msg) <= limit else msg[:limit] + f"\n  ... ({len(msg) - limit} more characters)"


def _to_device(x, aval, dev):
    """One argument -> a buffer on `dev` (moving buffers, putting host values)."""
    if type(x) is Array:
        b = x._buf
        if b is not None:
            return b if xla.device_of(b) == dev else xla.device_put(b, dev)
        v = x._v
    elif isinstance(x, Tracer):
        raise core.leaked_tracer_error(x)
    else:
        v = x
    if type(v) is not np.ndarray or v.dtype != aval.dtype:
        v = np.asarray(v, aval.dtype)
    return xla.device_put(v, dev)


# --------------------------------------------------------------------------
# compiled executables


class _Runner:
    """An executable for one jaxpr on one device, with its consts there."""

    __slots__ = ("exe", "consts", "out_weak", "device", "name")

    def __init__(self, exe, consts, out_weak, device, name):
        self.exe, self.consts, self.out_weak = exe, consts, out_weak
        self.device, self.name = device, name

    def execute(self, ins):
        try:
            return xla.execute(self.exe, self.consts + ins if self.consts else ins)
        except Exception as e:
            raise JitRuntimeError(
                f"jit({self.name}) failed while running on {self.device}, called at "
                f"{core.user_frame()}:\n  {type(e).__name__}: {_clip(e)}") from e

    def fast_record(self, out_tree):
        """What the cached-call path needs, in one tuple (one unpack per call)."""
        single = None
        if out_tree.num_nodes == 1 and out_tree.num_leaves == 1:
            single = self.out_weak[0]
        return (self.exe.loaded.execute_sharded, self.exe._handlers,
                self.consts or None, self.out_weak, out_tree, single, self.exe)


def _lower(closed, name, donated=None, where=""):
    """ClosedJaxpr -> ir.Module, with errors in the user's terms."""
    try:
        module = lowering.lower_jaxpr(closed, name=f"jit_{_symbol(name)}")
        if donated is not None and any(donated):
            hoisted = lowering.hoisted_consts(closed)
            arg_avals = [lowering._aval_of(c) for c in hoisted] + list(closed.in_avals)
            lowering.mark_donated_args(module, [False] * len(hoisted) + list(donated),
                                       arg_avals, closed.out_avals)
    except lowering.LoweringError as e:
        raise JitCompileError(f"jit({name}){where}, called at {core.user_frame()}: lowering "
                              f"to StableHLO failed:\n  {e}") from e
    return module


def _compile(module, closed, name, device, where=""):
    t0 = time.perf_counter()
    try:
        exe = xla.compile(module, device)
    except Exception as e:
        raise JitCompileError(
            f"jit({name}){where}, called at {core.user_frame()}: XLA failed to compile it "
            f"for {device}:\n  "
            f"{type(e).__name__}: {_clip(e)}\n  (the StableHLO module: "
            f"{name}.lower(*args).as_text())") from e
    t1 = time.perf_counter()
    consts = [xla.device_put(c, device) for c in lowering.hoisted_consts(closed)]
    if config.log_compiles:
        src = " (from the disk cache)" if exe.from_cache else ""
        _log.warning("jit(%s): compiled for %s in %.1f ms%s", name, device, (t1 - t0) * 1e3, src)
    return _Runner(exe, consts, tuple(a.weak_type for a in closed.out_avals), device, name)


_runners_by_jaxpr: dict = {}


def _jaxpr_runner(closed, name, device):
    """Runner for a jit_p equation's jaxpr, cached by jaxpr identity."""
    hit = _runners_by_jaxpr.get(id(closed))
    if hit is None:
        if len(_runners_by_jaxpr) >= 1024:
            _runners_by_jaxpr.clear()
        hit = _runners_by_jaxpr[id(closed)] = (closed, {}, [])
    r = hit[1].get(device)
    if r is None:
        modules = hit[2]
        if not modules:
            modules.append(_lower(closed, name))
        r = hit[1][device] = _compile(modules[0], closed, name, device)
    return r


# --------------------------------------------------------------------------
# the call primitive


class _CallPrimitive(core.Primitive):
    """jit_p: its eager path keeps arguments and results on the device."""

    def eager(self, args, params):
        closed = params["jaxpr"]
        dev = params.get("device")
        if dev is None:
            for a in args:
                b = a._buf if type(a) is Array else None
                if b is not None and xla.is_committed(b):
                    dev = xla.device_of(b)
                    break
            else:
                dev = xla.default_device()
        runner = _jaxpr_runner(closed, params["name"], dev)
        ins = [_to_device(a, aval, dev) for a, aval in zip(args, closed.in_avals)]
        outs = runner.execute(ins)
        return [Array(None, w, o) for w, o in zip(runner.out_weak, outs)]


def _jit_impl(*vals, jaxpr, name, device=None):
    params = dict(jaxpr=jaxpr, name=name) if device is None else dict(jaxpr=jaxpr, name=name, device=device)
    return [np.asarray(o) for o in jit_p.eager(vals, params)]


def _jit_abstract(*avals, jaxpr, name, device=None):
    want = jaxpr.in_avals
    if len(avals) != len(want) or any(a.shape != b.shape or a.dtype != b.dtype
                                      for a, b in zip(avals, want)):
        raise TypeError(f"jit({name}) was traced for ({', '.join(a.str_short() for a in want)}) "
                        f"but is applied to ({', '.join(a.str_short() for a in avals)})")
    return list(jaxpr.out_avals)


_jvp_cache: dict = {}
_transpose_cache: dict = {}
_vmap_cache: dict = {}
_pe_cache: dict = {}
_dce_cache: dict = {}


def _jvp_jaxpr(closed, nonzeros):
    j, out_nz = ad.jvp_jaxpr(closed, list(nonzeros), instantiate_out=False)
    return j, tuple(out_nz)


def _jit_jvp(primals, tangents, *, jaxpr, name, **rest):
    nonzeros = tuple(type(t) is not Zero for t in tangents)
    jvp_closed, out_nz = _memo(_jvp_cache, jaxpr, nonzeros, lambda: _jvp_jaxpr(jaxpr, nonzeros))
    outs = jit_p.bind(*primals, *[t for t in tangents if type(t) is not Zero],
                      jaxpr=jvp_closed, name=f"jvp({name})", **rest)
    n = len(jaxpr.out_avals)
    t_it = iter(outs[n:])
    t_out = [next(t_it) if nz else Zero(a.tangent_aval()) for a, nz in zip(jaxpr.out_avals, out_nz)]
    return list(outs[:n]), t_out


def _jit_transpose(cts, *args, jaxpr, name, **rest):
    linear = tuple(ad.is_undefined(a) for a in args)
    if all(type(c) is Zero for c in cts):
        return [Zero(a.aval.tangent_aval()) if l else None for a, l in zip(args, linear)]
    t_closed = _memo(_transpose_cache, jaxpr, linear, lambda: ad.transpose_jaxpr(jaxpr, linear))
    nonlin = [a for a, l in zip(args, linear) if not l]
    outs = jit_p.bind(*nonlin, *[ad.instantiate(c) for c in cts], jaxpr=t_closed,
                      name=f"transpose({name})", **rest)
    it = iter(outs)
    return [next(it) if l else None for l in linear]


def _batch_no_instantiate(closed, size, mapped):
    """Outputs that do not depend on a mapped input stay unbatched (jacfwd
    needs its primal outputs unbatched)."""
    b_closed, out_batched = batching.batch_jaxpr(closed, size, list(mapped),
                                                 [False] * len(closed.out_avals))
    return b_closed, tuple(out_batched)


def _jit_batch(args, dims, *, jaxpr, name, **rest):
    size = batching.axis_size_of(args, dims)
    mapped = tuple(d is not None for d in dims)
    moved = [a if d is None else batching.moveaxis(a, d, 0) for a, d in zip(args, dims)]
    b_closed, out_batched = _memo(_vmap_cache, jaxpr, (size, mapped),
                                  lambda: _batch_no_instantiate(jaxpr, size, mapped))
    outs = jit_p.bind(*moved, jaxpr=b_closed, name=name, **rest)
    return outs, [0 if b else None for b in out_batched]


def _pe_jaxpr(closed, unknowns):
    return _memo(_pe_cache, closed, tuple(unknowns),
                 lambda: pe.partial_eval_jaxpr(closed, list(unknowns)))


def _jit_partial_eval(trace, args, params):
    return pe.partial_eval_call(trace, jit_p, args, params, partial_eval_fn=_pe_jaxpr)


def _dce_closed(closed, used_outputs):
    j, used_inputs = core.dce_jaxpr(closed.jaxpr, list(used_outputs), prune_invars=True)
    if all(used_inputs) and all(used_outputs) and len(j.eqns) == len(closed.jaxpr.eqns):
        return closed, tuple(used_inputs)  # nothing to prune: keep identity (caches)
    keep = set(j.constvars)
    consts = [c for v, c in zip(closed.jaxpr.constvars, closed.consts) if v in keep]
    return ClosedJaxpr(j, consts), tuple(used_inputs)


def _jit_dce(eqn, used_outputs):
    closed = eqn.params["jaxpr"]
    used_outputs = tuple(used_outputs)
    new, used_inputs = _memo(_dce_cache, closed, used_outputs,
                             lambda: _dce_closed(closed, used_outputs))
    if new is closed:
        return eqn
    return eqn.replace(invars=[v for v, u in zip(eqn.invars, used_inputs) if u],
                       outvars=[v for v, u in zip(eqn.outvars, used_outputs) if u],
                       params={**eqn.params, "jaxpr": new})


def _jit_lower(ctx, *args, jaxpr, name, device=None):
    return ctx.call_sub_jaxpr(jaxpr, *args, name=_symbol(name))


jit_p = _CallPrimitive(
    "jit", impl=_jit_impl, abstract_eval=_jit_abstract, jvp=_jit_jvp,
    transpose=_jit_transpose, batch=_jit_batch, lower=_jit_lower, multiple_results=True,
    linear=True, partial_eval=_jit_partial_eval, dce=_jit_dce)


# --------------------------------------------------------------------------
# trace cache entries


class _Entry:
    """One traced signature: the jaxpr, output structure, lowered module and
    a runner per device."""

    __slots__ = ("closed", "out_tree", "donated", "name", "module", "runners",
                 "tracer_consts", "bind_closed")

    def __init__(self, closed, out_tree, donated, name):
        self.closed, self.out_tree, self.donated, self.name = closed, out_tree, donated, name
        self.module = None
        self.runners = {}
        # closure conversion: consts that are tracers of enclosing
        # transformations become leading arguments of the jit_p equation
        tr = [isinstance(c, Tracer) for c in closed.consts]
        if any(tr):
            j = closed.jaxpr
            tvars = [v for v, t in zip(j.constvars, tr) if t]
            self.bind_closed = ClosedJaxpr(
                Jaxpr([v for v, t in zip(j.constvars, tr) if not t], tvars + j.invars,
                      j.outvars, j.eqns),
                [c for c, t in zip(closed.consts, tr) if not t])
            self.tracer_consts = [c for c, t in zip(closed.consts, tr) if t]
        else:
            self.bind_closed = closed
            self.tracer_consts = []

    def lowered(self, where=""):
        if self.module is None:
            t0 = time.perf_counter()
            self.module = _lower(self.closed, self.name, self.donated, where)
            if config.log_compiles:
                _log.warning("jit(%s): lowered to StableHLO in %.1f ms (%d equations)", self.name,
                             (time.perf_counter() - t0) * 1e3, len(self.closed.jaxpr.eqns))
        return self.module

    def runner(self, device, where=""):
        r = self.runners.get(device)
        if r is None:
            r = self.runners[device] = _compile(self.lowered(where), self.closed, self.name,
                                                device, where)
        return r


# --------------------------------------------------------------------------
# the jitted function


class _CacheState:
    __slots__ = ("fast", "traces", "trace_count", "compile_count", "last_retrace_reason")

    def __init__(self):
        self.fast, self.traces = {}, {}
        self.trace_count = self.compile_count = 0
        self.last_retrace_reason = None


_states = weakref.WeakKeyDictionary()  # fun -> {settings: _CacheState}


def _shared_state(fun, settings):
    try:
        per_fun = _states.get(fun)
        if per_fun is None:
            per_fun = _states[fun] = {}
    except TypeError:  # not hashable or not weak-referenceable: a private cache
        return _CacheState()
    st = per_fun.get(settings)
    if st is None:
        st = per_fun[settings] = _CacheState()
    return st


def _orig_index(i, statics):
    """Position in the call of the i-th dynamic positional argument."""
    static_pos = {s[0] for s in statics[0]}
    orig = -1
    while i >= 0:
        orig += 1
        if orig not in static_pos:
            i -= 1
    return orig


class Jitted:
    """What `jit(f)` returns: call it like f."""

    def __init__(self, fun, static_argnums=(), static_argnames=(), donate_argnums=(),
                 device=None):
        if not callable(fun):
            raise TypeError(f"jit expects a callable, got {type(fun).__name__}")
        functools.update_wrapper(self, fun)
        self._fun = fun
        self._name = _short(fun)
        self._where = f" (defined at {_defined_at(fun)})"
        self._fn_name = f"{self._name} at {_defined_at(fun)}"
        nums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
        names = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
        donate = (donate_argnums,) if isinstance(donate_argnums, int) else tuple(donate_argnums)
        self._params, varargs = self._positional_names(fun)
        # a static argument may be passed by position or by keyword: map
        # argnums <-> argnames through the signature (negative argnums are
        # resolved here, or per call when f takes *args)
        nums_set, names_set = set(nums), set(names)
        if self._params is not None:
            pos = self._params
            for n in nums:
                if -len(pos) <= n < len(pos):
                    names_set.add(pos[n])
                    if n < 0 and not varargs:
                        nums_set.discard(n)
                        nums_set.add(n % len(pos))
            for nm in names:
                if nm in pos:
                    nums_set.add(pos.index(nm))
        self._static_nums = frozenset(n for n in nums_set if n >= 0)
        self._static_neg = tuple(n for n in nums_set if n < 0)
        self._static_names = frozenset(names_set)
        self._donate_nums = frozenset(donate)
        self._donate_names = frozenset(self._params[n] for n in donate
                                       if self._params is not None
                                       and -len(self._params) <= n < len(self._params))
        self._plain = not (self._static_nums or self._static_neg or self._static_names)
        self._device = _resolve_device(device)
        self._put_dev = None      # device for host arguments on the cached path
        self._put_sharding = None
        # caches shared by every jit(f) of the same f and settings (so
        # `jit(f)(x)` in a loop does not retrace), as in JAX
        self._state = _shared_state(fun, (tuple(sorted(nums_set)), tuple(sorted(names_set)),
                                          tuple(sorted(donate)), self._device))
        self._fast = self._state.fast      # raw per-call key -> fast record
        self._last = None  # (avals, weaks, fast record) of the last all-Array call
        self._traces = self._state.traces  # (in_tree, statics, avals) -> _Entry

    @staticmethod
    def _positional_names(fun):
        """(names of the positional parameters, whether f takes *args)."""
        try:
            sig = inspect.signature(fun)
        except (TypeError, ValueError):
            return None, True
        P = inspect.Parameter
        ps = sig.parameters.values()
        return ([p.name for p in ps if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)],
                any(p.kind is P.VAR_POSITIONAL for p in ps))

    def __repr__(self):
        return f"<jit({self._name})>"

    def __get__(self, obj, objtype=None):  # decorating methods
        if obj is None:
            return self
        return functools.partial(self, obj)

    # ---- introspection

    def _cache_size(self):
        """Number of traced signatures held."""
        return len(self._traces)

    _trace_count = property(lambda self: self._state.trace_count,
                            doc="How many times f was traced (cache misses).")
    _compile_count = property(lambda self: self._state.compile_count,
                              doc="How many executables were compiled for f.")
    _last_retrace_reason = property(lambda self: self._state.last_retrace_reason,
                                    doc="Why f was last retraced (None if never).")

    def _clear_cache(self):
        self._last = None
        self._fast.clear()
        self._traces.clear()

    # ---- argument handling

    def _split(self, args, kwargs):
        """-> ((dynamic args, dynamic kwargs), statics key)."""
        nums = self._static_nums
        if self._static_neg:
            n = len(args)
            nums = nums | {i % n for i in self._static_neg if -n <= i}
        static_pos = ()
        if nums:
            dyn, st = [], []
            for i, a in enumerate(args):
                if i in nums:
                    st.append((i, type(a), a))
                else:
                    dyn.append(a)
            args, static_pos = tuple(dyn), tuple(st)
        static_kw = ()
        names = self._static_names
        if names and kwargs:
            st = tuple((k, type(kwargs[k]), kwargs[k]) for k in sorted(kwargs) if k in names)
            if st:
                kwargs = {k: v for k, v in kwargs.items() if k not in names}
                static_kw = st
        statics = (static_pos, static_kw)
        if static_pos or static_kw:
            self._check_hashable(statics)
        return (args, kwargs), statics

    def _check_hashable(self, statics):
        for key, _, v in statics[0] + statics[1]:
            try:
                hash(v)
            except TypeError as e:
                if isinstance(key, int):
                    nm = self._params[key] if self._params and key < len(self._params) else None
                    what = f"static argument {key}" + (f" ({nm})" if nm else "")
                else:
                    what = f"static argument {key!r}"
                raise ValueError(
                    f"jit({self._name}): {what} has unhashable type {type(v).__name__} "
                    f"({e}); static arguments must be hashable, as the compiled function is "
                    f"cached by their value. Use a tuple instead of a list, or pass arrays as "
                    f"non-static arguments.") from None

    def _leaf_name(self, path, statics):
        """A readable name for a flat argument: `x`, `params['w']`, `args[2][0]`."""
        if not path:
            return "(root)"
        if path[0].idx == 1:  # keyword arguments
            return f"{path[1].key}{keystr(path[2:])}"
        orig = _orig_index(path[1].idx, statics)
        nm = self._params[orig] if self._params and orig < len(self._params) else f"args[{orig}]"
        return f"{nm}{keystr(path[2:])}"

    def _signature(self, args, kwargs):
        """Everything a trace depends on, plus leaf paths (slow path only)."""
        dyn, statics = self._split(args, kwargs)
        with_path, in_tree = tree_flatten_with_path(dyn)
        leaves = [x for _, x in with_path]
        avals = []
        for path, x in with_path:
            try:
                avals.append(get_aval(x) if type(x) is not _ShapeDtype else
                             core.ShapedArray(x.shape, x.dtype))
            except TypeError:
                raise TypeError(
                    f"jit({self._name}): argument {self._leaf_name(path, statics)} is of type "
                    f"{type(x).__name__}, which is not a valid array type (pass arrays or Python "
                    f"scalars, or mark it static with static_argnums/static_argnames)") from None
        return in_tree, statics, tuple(avals), leaves, [p for p, _ in with_path]

    def _donated_mask(self, paths, statics):
        if not (self._donate_nums or self._donate_names):
            return None
        mask = []
        for path in paths:
            if path[0].idx == 1:
                mask.append(path[1].key in self._donate_names)
                continue
            orig = _orig_index(path[1].idx, statics)
            n = len(self._params) if self._params is not None else None
            mask.append(orig in self._donate_nums or
                        (n is not None and orig - n in self._donate_nums))
        return tuple(mask)

    # ---- tracing

    def _entry(self, in_tree, statics, avals, paths):
        sig = (in_tree, statics, avals)
        entry = self._traces.get(sig)
        if entry is not None:
            return entry
        reason = self._explain(sig, paths) if self._traces else None
        self._state.trace_count += 1
        if reason is not None:
            self._state.last_retrace_reason = reason
        if config.log_compiles:
            args_s = ", ".join(_aval_str(a) for a in avals)
            if reason is None:
                _log.warning("jit(%s)%s: tracing for (%s)", self._name, self._where, args_s)
            else:
                _log.warning("jit(%s)%s: retracing (trace #%d) because %s", self._name,
                             self._where, self._state.trace_count, reason)
        t0 = time.perf_counter()
        f, box = self._fun, []

        def flat_fun(*flat):
            dyn_args, dyn_kw = in_tree.unflatten(flat)
            full = list(dyn_args)
            for i, _, v in statics[0]:
                full.insert(i, v)
            kw = dict(dyn_kw)
            kw.update((k, v) for k, _, v in statics[1])
            out = f(*full, **kw)
            out_with_path, out_tree = tree_flatten_with_path(out)
            for path, o in out_with_path:
                if not core.is_array_like(o):
                    raise TypeError(f"jit({self._name}): output {keystr(path) or '(root)'} is of "
                                    f"type {type(o).__name__}, not an array; jitted functions "
                                    f"must return arrays (or pytrees of arrays)")
            box.append(out_tree)
            return [o for _, o in out_with_path]

        closed = core.trace_to_jaxpr(flat_fun, avals, fn_name=self._fn_name)
        closed = core.dce_closed(closed)
        entry = _Entry(closed, box[0], self._donated_mask(paths, statics), self._name)
        if config.log_compiles:
            _log.warning("jit(%s): traced in %.1f ms (%d equations)", self._name,
                         (time.perf_counter() - t0) * 1e3, len(closed.jaxpr.eqns))
        if not entry.tracer_consts:  # closures over outer tracers are per call
            if len(self._traces) >= 4096:
                self._traces.clear()
                self._fast.clear()
            self._traces[sig] = entry
        return entry

    def _explain(self, sig, paths):
        """Why `sig` missed the cache, relative to the closest cached signature."""
        in_tree, statics, avals = sig
        same = [s for s in self._traces if s[0] == in_tree]
        if not same:
            prev = next(reversed(self._traces))
            return (f"the structure of the arguments changed from {prev[0]} to {in_tree}")

        def diffs(s):
            out = []
            for old, new in zip(s[1][0] + s[1][1], statics[0] + statics[1]):
                if old != new:
                    what = (f"static argument {new[0]}" if isinstance(new[0], int)
                            else f"static argument {new[0]!r}")
                    out.append(f"{what} changed from {old[2]!r} to {new[2]!r}")
            if len(s[1][0]) != len(statics[0]) or len(s[1][1]) != len(statics[1]):
                out.append("the set of static arguments passed changed")
            for p, a, b in zip(paths, s[2], avals):
                if a != b:
                    out.append(f"argument {self._leaf_name(p, statics)} changed from "
                               f"{_aval_str(a)} to {_aval_str(b)}")
            return out

        best = min((diffs(s) for s in same), key=len)
        more = f" (and {len(best) - 3} more differences)" if len(best) > 3 else ""
        return "; ".join(best[:3]) + more

    # ---- calling

    def __call__(self, *args, **kwargs):
        if _ctx.trace is not None:
            return self._call_traced(args, kwargs)
        last = self._last
        if last is not None and not kwargs:
            # the same signature as the last call (a training loop): device
            # arrays whose avals are the very objects seen then (XLA's result
            # handlers share them) need no key at all
            avals, weaks, rec = last
            if len(args) == len(avals):
                bufs = []
                i = 0
                for x in args:  # (indexing beats zip here)
                    if type(x) is not Array:
                        break
                    b = x._buf
                    if b is None or x.weak is not weaks[i] or b.aval is not avals[i]:
                        break
                    bufs.append(b)
                    i += 1
                else:
                    return self._run_fast(rec, bufs, args, kwargs)
        if self._plain and not kwargs:
            # all-Array positional arguments (the common case) need no pytree
            # flattening: their key starts with their count instead of a treedef
            for x in args:
                if type(x) is not Array or x._buf is None:
                    leaves, treedef = tree_flatten(args)
                    key = [treedef]
                    break
            else:
                key = [len(args)]
                for x in args:
                    key += (x._buf.aval, x.weak)
                key = tuple(key)
                rec = self._fast.get(key)
                if rec is not None:
                    self._last = (key[1::2], key[2::2], rec)
                    return self._run_fast(rec, [x._buf for x in args], args, kwargs)
                # not cached yet: the loop below makes the same key again
                leaves, key = args, [len(args)]
        else:
            dyn, statics = self._split(args, kwargs)
            leaves, treedef = tree_flatten(dyn)
            key = [treedef, statics]
        # Cached path: a raw key from what each leaf is (cheap to read), host
        # values put on the device as we go. Anything unusual -> slow path.
        dev, sh = self._put_dev, self._put_sharding
        if dev is None:
            dev, sh = self._init_put_device()
        ins = []
        append, kappend = ins.append, key.append
        try:
            for x in leaves:
                t = type(x)
                if t is Array:
                    b = x._buf
                    if b is None:
                        v = x._v
                        kappend(v.shape)
                        kappend(v.dtype)
                        kappend(x.weak)
                        b = xla.put_array(v, dev, sh)
                    else:
                        kappend(b.aval)
                        kappend(x.weak)
                elif t is np.ndarray:
                    kappend(x.shape)
                    kappend(x.dtype)
                    b = xla.put_array(x, dev, sh)
                elif t in _SCALAR_DTYPES:
                    kappend(t)
                    b = xla.put_array(np.asarray(x, _SCALAR_DTYPES[t]), dev, sh)
                else:
                    return self._call_slow(args, kwargs, None)
                append(b)
            key = tuple(key)
            rec = self._fast.get(key)
        except Exception:  # odd dtypes, unhashable statics, ...: explained there
            return self._call_slow(args, kwargs, None)
        if rec is None:
            return self._call_slow(args, kwargs, key)
        return self._run_fast(rec, ins, args, kwargs)

    def _run_fast(self, rec, ins, args, kwargs):
        run, handlers, consts, out_weak, out_tree, single, exe = rec
        if _WAITED[0]:  # the caller waits for results: run in its thread (xla.WAITED)
            _WAITED[0] = False
            run = exe.inline_run()
        try:
            outs = run(consts + ins if consts else ins).consume_with_handlers(handlers)
        except Exception:  # wrong device, deleted buffer, ...: explained there
            return self._call_slow(args, kwargs, None)
        if single is not None:
            return Array(None, single, outs[0])
        return out_tree.unflatten([Array(None, w, o) for w, o in zip(out_weak, outs)])

    def _call_slow(self, args, kwargs, fast_key):
        in_tree, statics, avals, leaves, paths = self._signature(args, kwargs)
        for x in leaves:
            if isinstance(x, Tracer):
                raise core.leaked_tracer_error(x)
        entry = self._entry(in_tree, statics, avals, paths)
        dev = self._place(leaves, paths, statics)
        n_before = len(entry.runners)
        runner = entry.runner(dev, self._where)
        if len(entry.runners) != n_before:
            self._state.compile_count += 1
        ins = [_to_device(x, a, dev) for x, a in zip(leaves, avals)]
        outs = runner.execute(ins)
        if self._put_dev is None:
            self._init_put_device()
        if fast_key is not None and dev == self._put_dev and entry.out_tree is not None:
            self._fast[fast_key] = runner.fast_record(entry.out_tree)
        return entry.out_tree.unflatten([Array(None, w, o) for w, o in zip(runner.out_weak, outs)])

    def _init_put_device(self):
        self._put_dev = self._device if self._device is not None else xla.default_device()
        self._put_sharding = xla.sharding_of(self._put_dev)
        return self._put_dev, self._put_sharding

    def _place(self, leaves, paths, statics):
        """The device this call runs on (see the module docstring)."""
        committed = []
        for p, x in zip(paths, leaves):
            b = x._buf if type(x) is Array else None
            if b is None:
                continue
            if b.is_deleted():
                raise ValueError(
                    f"jit({self._name}): argument {self._leaf_name(p, statics)} has been deleted "
                    f"(it was donated to an earlier call with donate_argnums, or deleted); "
                    f"a donated array cannot be used again")
            if self._device is None and xla.is_committed(b):
                committed.append((self._leaf_name(p, statics), xla.device_of(b)))
        if self._device is not None:
            return self._device
        devs = {d for _, d in committed}
        if len(devs) > 1:
            lines = "\n".join(f"    {n}: {d}" for n, d in committed)
            raise ValueError(
                f"jit({self._name}): arguments are committed to different devices:\n{lines}\n"
                f"  Move them to one device with tracegrad.device_put(x, device), or pass "
                f"device= to jit.")
        return devs.pop() if devs else xla.default_device()

    def _call_traced(self, args, kwargs):
        """Inside a transformation: bind jit_p with the traced jaxpr."""
        in_tree, statics, avals, leaves, paths = self._signature(args, kwargs)
        entry = self._entry(in_tree, statics, avals, paths)
        params = dict(jaxpr=entry.bind_closed, name=self._name)
        if self._device is not None:
            params["device"] = self._device
        outs = jit_p.bind(*entry.tracer_consts, *leaves, **params)
        return entry.out_tree.unflatten(outs)

    # ---- ahead-of-time

    def lower(self, *args, **kwargs):
        """Trace and lower for these arguments (arrays, or ShapeDtypeStructs)."""
        in_tree, statics, avals, leaves, paths = self._signature(args, kwargs)
        entry = self._entry(in_tree, statics, avals, paths)
        if entry.tracer_consts:
            raise TypeError(f"jit({self._name}).lower: the function closes over traced values "
                            f"of an enclosing transformation; lower it outside")
        entry.lowered(self._where)
        return Lowered(self, entry, in_tree, avals)


class Lowered:
    """`jit(f).lower(*args)`: the traced jaxpr and its StableHLO module."""

    def __init__(self, jitted, entry, in_tree, avals):
        self._jitted, self._entry, self.in_tree, self.in_avals = jitted, entry, in_tree, avals

    @property
    def jaxpr(self) -> ClosedJaxpr:
        return self._entry.closed

    def as_text(self, debug_info=False) -> str:
        """StableHLO text (debug_info=True adds loc(...) source locations)."""
        return lowering.module_text(self._entry.module, debug_info=debug_info)

    def compile(self, device=None):
        dev = _resolve_device(device) or self._jitted._device or xla.default_device()
        return Compiled(self, self._entry.runner(dev, self._jitted._where))


class Compiled:
    """`jit(f).lower(*args).compile()`: call it with the dynamic arguments
    (static ones left out), same structure, shapes and dtypes."""

    def __init__(self, lowered, runner):
        self._lowered, self._runner = lowered, runner

    def cost_analysis(self) -> dict:
        """XLA's estimates: 'flops', 'transcendentals', 'bytes accessed', ..."""
        return xla.cost_analysis(self._runner.exe)

    def as_text(self) -> str:
        """XLA's optimized HLO."""
        return self._runner.exe.hlo_text()

    def __call__(self, *args, **kwargs):
        low = self._lowered
        leaves, tree = tree_flatten((args, kwargs))
        if tree != low.in_tree:
            raise TypeError(f"compiled jit({low._jitted._name}) takes arguments of structure "
                            f"{low.in_tree} (static arguments left out), got {tree}")
        avals = [get_aval(x) for x in leaves]
        for i, (a, b) in enumerate(zip(avals, low.in_avals)):
            if a.shape != b.shape or a.dtype != b.dtype:
                raise TypeError(f"compiled jit({low._jitted._name}): argument leaf {i} is "
                                f"{a.str_short()}, but it was compiled for {b.str_short()}")
        r = self._runner
        outs = r.execute([_to_device(x, a, r.device) for x, a in zip(leaves, low.in_avals)])
        return low._entry.out_tree.unflatten([Array(None, w, o) for w, o in zip(r.out_weak, outs)])


# --------------------------------------------------------------------------
# public functions


def jit(fun=None, *, static_argnums=(), static_argnames=(), donate_argnums=(), device=None):
    """Compile `fun` with XLA, as jax.jit (see the module docstring).

    static_argnums / static_argnames: arguments that are configuration
        values (hashable, compared by value; a new value retraces).
    donate_argnums: positional arguments whose buffers XLA may reuse.
    device: a device (or platform name, "cpu"/"gpu") to run on.

    Usable as `@jit`, `jit(f, ...)`, `@partial(jit, static_argnums=1)` or
    `@jit(static_argnums=1)`.
    """
    if fun is None:
        return functools.partial(jit, static_argnums=static_argnums,
                                 static_argnames=static_argnames,
                                 donate_argnums=donate_argnums, device=device)
    return Jitted(fun, static_argnums, static_argnames, donate_argnums, device)


def devices(platform: str | None = None) -> list:
    """The devices of a platform ("cpu", "gpu", ...; None: the default backend)."""
    return xla.devices(platform)


def block_until_ready(x):
    """Wait until every Array in the pytree x is computed; returns x (as
    jax.block_until_ready; leaves without a block_until_ready are skipped).
    A wait: the next jitted call runs in this thread (xla.WAITED)."""
    t = type(x)
    if t is Array:
        return x.block_until_ready()
    if t is tuple or t is list:  # (the common results, without a tree walk)
        for leaf in x:
            block_until_ready(leaf)
        return x
    for leaf in tree_flatten(x)[0]:
        wait = getattr(leaf, "block_until_ready", None)
        if wait is not None:
            wait()
    return x


def device_put(x, device=None):
    """Put arrays (any pytree of them) on a device: tracegrad Arrays over
    device buffers. With a device they are *committed*: jitted functions
    run where they are."""
    dev = _resolve_device(device)

    def put(v):
        if type(v) is Array:
            b = v._buf if v._buf is not None else v._v
            return Array(None, v.weak, xla.device_put(b, dev))
        if isinstance(v, Tracer):
            raise TypeError("device_put cannot be applied to traced values")
        aval = get_aval(v)
        return Array(None, aval.weak_type, xla.device_put(np.asarray(v, aval.dtype), dev))

    return tree_map(put, x)
