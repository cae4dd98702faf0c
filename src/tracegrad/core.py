"""core: abstract values, primitives, traces and tracers, the jaxpr IR.

The current trace is a plain context value (`_ctx.trace`); `None` means eager
evaluation with NumPy. Each tracer knows its trace and each trace its parent
("stackless" tracing, as JAX since 2024): a trace handles only its own tracers
and treats every other value (including tracers of outer traces) as a
constant, which makes perturbation confusion impossible by construction.
"""
from __future__ import annotations

import itertools
import os
import sys
from typing import Any, Callable

import numpy as np

from . import dtypes

# --------------------------------------------------------------------------
# Abstract values


class ShapedArray:
    """What a traced value is known to be: shape, dtype and weak type."""

    __slots__ = ("shape", "dtype", "weak_type")

    def __init__(self, shape, dtype, weak_type=False):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.weak_type = weak_type

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: int(np.prod(self.shape, dtype=np.int64)))

    def update(self, shape=None, dtype=None, weak_type=None):
        return ShapedArray(self.shape if shape is None else shape,
                           self.dtype if dtype is None else dtype,
                           self.weak_type if weak_type is None else weak_type)

    def strip_weak(self):
        return self if not self.weak_type else ShapedArray(self.shape, self.dtype)

    def tangent_aval(self):
        return ShapedArray(self.shape, dtypes.tangent_dtype(self.dtype), self.weak_type)

    def __eq__(self, other):
        return (type(other) is ShapedArray and self.shape == other.shape
                and self.dtype == other.dtype and self.weak_type == other.weak_type)

    def __hash__(self):
        return hash((self.shape, self.dtype, self.weak_type))

    def str_short(self):
        return f"{dtypes.short_name(self.dtype)}[{','.join(map(str, self.shape))}]"

    def __repr__(self):
        w = ", weak_type=True" if self.weak_type else ""
        return f"ShapedArray({self.str_short()}{w})"


_SCALAR_TYPES = (bool, int, float, complex)


def get_aval(x) -> ShapedArray:
    """The abstract value of any array-like value or tracer."""
    t = type(x)
    if t is Array:
        v = x._v
        if v is None:  # device buffer (jit output): no device->host copy
            v = x._buf
        return ShapedArray(v.shape, v.dtype, x.weak)
    if isinstance(x, Tracer):
        return x.aval
    if t is np.ndarray or isinstance(x, np.generic):
        return ShapedArray(x.shape, x.dtype)
    if t in _SCALAR_TYPES or isinstance(x, _SCALAR_TYPES):
        return ShapedArray((), dtypes.python_scalar_dtype(x), True)
    raise TypeError(f"{type(x).__name__} is not a valid tracegrad value")


def is_array_like(x):
    return (type(x) in (Array, np.ndarray) or isinstance(x, (Tracer, np.generic, np.ndarray))
            or type(x) in _SCALAR_TYPES or isinstance(x, _SCALAR_TYPES))


# --------------------------------------------------------------------------
# Errors and source lines

_PKG_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_internal_file_cache: dict[str, bool] = {}


def _is_internal(filename):
    r = _internal_file_cache.get(filename)
    if r is None:
        r = _internal_file_cache[filename] = (
            os.path.abspath(filename).startswith(_PKG_DIR) or filename.startswith("<frozen")
            or os.sep + "contextlib.py" in filename)
    return r


def user_frame():
    """`file:line (function)` of the innermost frame outside tracegrad."""
    f = sys._getframe(1)
    while f is not None and _is_internal(f.f_code.co_filename):
        f = f.f_back
    if f is None:
        return "<unknown>"
    return f"{f.f_code.co_filename}:{f.f_lineno} ({f.f_code.co_name})"


class TracegradError(Exception):
    """Base class of tracegrad's user-facing errors."""


class ShapeDtypeError(TracegradError, TypeError):
    pass


class ConcretizationError(TracegradError, TypeError):
    pass


class LeakedTracerError(TracegradError):
    pass


def _fmt_operands(args):
    out = []
    for a in args:
        try:
            out.append(get_aval(a).str_short())
        except TypeError:
            out.append(type(a).__name__)
    return ", ".join(out)


def primitive_error(prim, args, err, params=None):
    """Re-raise an error from a primitive's rule in the user's terms."""
    shown = {k: v for k, v in (params or {}).items() if not _is_jaxpr_param(v)}
    p = f" with {_fmt_params(shown)}" if shown else ""
    msg = (f"{prim.name}: {err}\n  operands: ({_fmt_operands(args)}){p}\n"
           f"  at {user_frame()}")
    return ShapeDtypeError(msg)


# --------------------------------------------------------------------------
# Current-trace context


class _Context:
    __slots__ = ("trace",)

    def __init__(self):
        self.trace = None


_ctx = _Context()


def current_trace():
    return _ctx.trace


class set_trace:
    """Context manager: make `trace` (None = eager) the current trace."""

    __slots__ = ("trace", "prev")

    def __init__(self, trace):
        self.trace = trace

    def __enter__(self):
        self.prev = _ctx.trace
        _ctx.trace = self.trace

    def __exit__(self, *exc):
        _ctx.trace = self.prev


# --------------------------------------------------------------------------
# Primitives


class Primitive:
    """One primitive and ALL its rules, side by side.

    impl(*np_values, **params) -> np value (or list if multiple_results)
    abstract_eval(*avals, **params) -> aval (or list)
    jvp(primals, tangents, **params) -> (primal_out, tangent_out); tangents
        may be ad.Zero; tangent_out may be ad.Zero (lists if multiple_results)
    transpose(cts, *args, **params) -> list of cotangents, one per arg
        (None for non-linear args); linear args arrive as ad.UndefinedPrimal
    batch(args, dims, **params) -> (out, out_dim) (lists if multiple_results)
    lower(ctx, *ir_values, **params) -> list of ir values
    Higher-order primitives (carrying jaxprs) add `partial_eval` and `dce`.
    vjp(needs, out, *args, **params) -> pullback(ct) -> list of cotangents
        (None where not needed): optional, a direct reverse rule for eager
        reverse mode (interpreters/tape.py), derived from the rules above;
        the pullback keeps only what it needs. It may return None (zero
        derivative: out is a constant) or NotImplemented (linearize this
        application instead). Primitives without one are linearized.
    """

    # rules every primitive must have; `coverage()` reports them
    RULES = ("impl", "abstract_eval", "jvp", "transpose", "batch", "lower")

    def __init__(self, name, *, impl=None, abstract_eval=None, jvp=None, transpose=None,
                 batch=None, lower=None, multiple_results=False, keeps_weak=True,
                 linear=False, partial_eval=None, dce=None, not_linear_reason=None, vjp=None):
        self.name = name
        self.impl = impl
        self.abstract_eval = abstract_eval
        self.jvp = jvp
        self.transpose = transpose
        self.batch = batch
        self.lower = lower
        self.multiple_results = multiple_results
        self.keeps_weak = keeps_weak  # output is weak iff all inputs are weak
        self.linear = linear          # linear in its array operands: needs transpose
        self.partial_eval = partial_eval
        self.dce = dce
        self.not_linear_reason = not_linear_reason
        self.vjp = vjp
        # XLA fuses this op's reads of its operands into its own loop (elementwise
        # ops, gather, broadcast): a const read only by such ops can be a slice
        # of a packed argument at no cost (lowering._const_plan). "through":
        # a bitcast (reshape, squeeze), as good as the reads of its result.
        self.fusible_reads = False
        registry[name] = self

    def __repr__(self):
        return self.name

    def bind(self, *args, **params):
        trace = _ctx.trace
        if trace is None:
            return self.eager(args, params)
        return trace.process_primitive(self, args, params)

    def eager(self, args, params):
        vals = []
        weak = self.keeps_weak
        for a in args:
            t = type(a)
            if t is Array:
                v = a._v
                vals.append(v if v is not None else a.value)
                weak = weak and a.weak
            elif t is np.ndarray:
                vals.append(a)
                weak = False
            elif isinstance(a, np.generic):  # a typed constant of a rule (strong)
                vals.append(np.asarray(a))
                weak = False
            else:
                if isinstance(a, Tracer):
                    raise leaked_tracer_error(a, self)
                av = get_aval(a)
                vals.append(np.asarray(a, av.dtype))
                weak = weak and av.weak_type
        try:
            out = self.impl(*vals, **params)
        except Exception as e:  # explain numpy's failure in the primitive's terms
            self._explain_failure(args, params, e)
            raise
        if self.multiple_results:
            return [Array(o, weak) for o in out]
        return Array(out, weak)

    def _explain_failure(self, args, params, err):
        if isinstance(err, TracegradError) or self.abstract_eval is None:
            return
        try:
            self.abstract_eval(*map(get_aval, args), **params)
        except TracegradError:
            raise
        except Exception as e:
            raise primitive_error(self, args, e, params) from None
        raise primitive_error(self, args, f"{type(err).__name__}: {err}", params) from err

    def abstract(self, avals, params, args=None):
        """Checked abstract evaluation: always returns a list of avals."""
        try:
            out = self.abstract_eval(*avals, **params)
        except TracegradError:
            raise
        except (TypeError, ValueError, IndexError) as e:
            raise primitive_error(self, args if args is not None else avals, e, params) from None
        return out if self.multiple_results else [out]


registry: dict[str, Primitive] = {}


def leaked_tracer_error(t, prim=None):
    where = f" passed to {prim.name}" if prim is not None else ""
    return LeakedTracerError(
        f"Leaked tracer: a {type(t).__name__} with {t.aval.str_short()} escaped the "
        f"transformation that created it ({t._trace!r}, now finished) and was used{where} "
        f"at {user_frame()}.\n  A tracer is only valid inside the function being "
        f"transformed: return values from it instead of storing them in globals or closures.")


# --------------------------------------------------------------------------
# Eager arrays


# Set when the user waits for a device result (block_until_ready, a host
# read): the next jitted call then runs its program inline (xla.WAITED).
WAITED = [False]


def _buffer_to_numpy(buf):
    # imported on first use (interpreters import core); later calls go
    # straight to xla.to_numpy through the rebound global
    global _buffer_to_numpy
    from .interpreters.xla import to_numpy
    _buffer_to_numpy = to_numpy
    return to_numpy(buf)


class Array:
    """tracegrad's array: an immutable NumPy array (or device buffer after jit)
    with JAX's methods (`.at[]`, operators with JAX's dtype rules, ...).

    `np.asarray(x)` reads it without a copy. Operators and methods are
    installed by `tracegrad.numpy` (shared with Tracer).
    """

    __slots__ = ("_v", "_buf", "weak")
    __array_priority__ = 100

    def __init__(self, value, weak=False, buf=None):
        self._v = value
        self._buf = buf
        self.weak = weak

    @property
    def value(self):
        v = self._v
        if v is None:  # device buffer: read it to the host once (zero-copy on CPU)
            v = self._v = _buffer_to_numpy(self._buf)
        return v

    def __array__(self, dtype=None, copy=None):
        v = self.value
        if dtype is not None and v.dtype != dtype:
            return v.astype(dtype)
        if copy:
            return v.copy()
        return np.asarray(v)

    # metadata comes from the device buffer when the value is not on the host yet
    _meta = property(lambda self: self._v if self._v is not None else self._buf)
    shape = property(lambda self: self._meta.shape)
    dtype = property(lambda self: self._meta.dtype)
    ndim = property(lambda self: self._meta.ndim)
    size = property(lambda self: self._meta.size)
    aval = property(get_aval)

    def __repr__(self):
        v = np.asarray(self.value)
        body = np.array2string(v, separator=", ", prefix="Array(")
        w = ", weak_type=True" if self.weak else ""
        return f"Array({body}, dtype={v.dtype}{w})"

    __str__ = lambda self: str(np.asarray(self.value))
    __bool__ = lambda self: bool(self.value)
    __int__ = lambda self: int(self.value)
    __float__ = lambda self: float(self.value)
    __complex__ = lambda self: complex(self.value)
    __index__ = lambda self: self.value.__index__()
    item = lambda self, *a: self.value.item(*a)
    tolist = lambda self: self.value.tolist()
    __hash__ = None

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of unsized object (0-d array)")
        return self.shape[0]

    def block_until_ready(self):
        if self._buf is not None:
            WAITED[0] = True
            self._buf.block_until_ready()
        return self

    def __reduce__(self):
        return (Array, (np.asarray(self.value), self.weak))


# --------------------------------------------------------------------------
# Traces and tracers


class Trace:
    """Base of all traces. `parent` is the trace that was current when this
    one began; rules run with `parent` current. Each concrete trace defines
    process_primitive(prim, args, params)."""

    _ids = itertools.count()

    def __init__(self, parent):
        self.parent = parent
        self.active = True
        self.id = next(Trace._ids)
        self.fn_name = parent.fn_name if parent is not None else None

    def finish(self):
        self.active = False

    def __repr__(self):
        return f"{type(self).__name__}#{self.id}"


class Tracer:
    """A value seen by a transformation. Operators/methods are installed by
    tracegrad.numpy; `aval` gives shape/dtype."""

    __slots__ = ("_trace",)
    __array_priority__ = 100

    shape = property(lambda self: self.aval.shape)
    dtype = property(lambda self: self.aval.dtype)
    ndim = property(lambda self: self.aval.ndim)
    size = property(lambda self: self.aval.size)
    weak = property(lambda self: self.aval.weak_type)

    def to_concrete(self):
        """A concrete value, when the trace knows one (e.g. jvp primals)."""
        return None

    def _concrete_or_error(self, what):
        v = self.to_concrete()
        if v is None:
            raise concretization_error(self, what)
        return v

    def __bool__(self):
        return bool(self._concrete_or_error("bool()"))

    def __int__(self):
        return int(self._concrete_or_error("int()"))

    def __float__(self):
        return float(self._concrete_or_error("float()"))

    def __complex__(self):
        return complex(self._concrete_or_error("complex()"))

    def __index__(self):
        return operator_index(self._concrete_or_error("an index"))

    def item(self):
        return np.asarray(self._concrete_or_error(".item()")).item()

    def __array__(self, dtype=None, copy=None):
        raise ConcretizationError(
            f"A tracegrad tracer ({self.aval.str_short()}) was converted to a NumPy array "
            f"at {user_frame()}.\n  Inside a transformed function use tracegrad.numpy "
            f"(tnp) instead of numpy, and do not call np.asarray on traced values.")

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of unsized object (0-d array)")
        return self.shape[0]

    __hash__ = None

    def __repr__(self):
        return f"Traced<{self.aval.str_short()}>with<{self._trace!r}>"


def operator_index(v):
    return np.asarray(v).__index__() if not isinstance(v, Array) else v.__index__()


def concretization_error(tracer, what):
    fn = tracer._trace.fn_name
    fn_s = f" while tracing {fn}" if fn else ""
    return ConcretizationError(
        f"Abstract tracer value ({tracer.aval.str_short()}) used as {what}{fn_s}, "
        f"at {user_frame()}.\n  Python control flow cannot depend on traced values. "
        f"Use tracegrad.lax.cond / lax.switch / tnp.where for data-dependent branches, "
        f"lax.while_loop / lax.fori_loop for loops, or mark the argument static "
        f"(static_argnums=...) if it is a configuration value.")


def find_concrete(x):
    """The concrete value behind x if there is one (for error messages and
    concretization), else None."""
    if isinstance(x, Tracer):
        return x.to_concrete()
    return x


# --------------------------------------------------------------------------
# The IR


class Var:
    __slots__ = ("aval", "suffix")

    def __init__(self, aval, suffix=""):
        self.aval = aval
        self.suffix = suffix

    def __repr__(self):
        return f"Var({self.aval.str_short()})"


class Literal:
    """A scalar constant written inline in the jaxpr."""

    __slots__ = ("val", "aval")

    def __init__(self, val, aval):
        self.val = val
        self.aval = aval

    def __repr__(self):
        return f"Literal({self.val})"


class JaxprEqn:
    __slots__ = ("primitive", "invars", "outvars", "params", "source_info")

    def __init__(self, primitive, invars, outvars, params, source_info=None):
        self.primitive = primitive
        self.invars = invars
        self.outvars = outvars
        self.params = params
        self.source_info = source_info

    def replace(self, **kw):
        d = dict(primitive=self.primitive, invars=self.invars, outvars=self.outvars,
                 params=self.params, source_info=self.source_info)
        d.update(kw)
        return JaxprEqn(**d)


class Jaxpr:
    __slots__ = ("constvars", "invars", "outvars", "eqns")

    def __init__(self, constvars, invars, outvars, eqns):
        self.constvars = list(constvars)
        self.invars = list(invars)
        self.outvars = list(outvars)
        self.eqns = list(eqns)

    in_avals = property(lambda self: [v.aval for v in self.invars])
    out_avals = property(lambda self: [v.aval for v in self.outvars])

    def __str__(self):
        return pp_jaxpr(self)

    __repr__ = __str__


class ClosedJaxpr:
    """A jaxpr with the values of its constvars."""

    # (weakly referenceable: eager control flow caches a NumPy program per jaxpr)
    __slots__ = ("jaxpr", "consts", "__weakref__")

    def __init__(self, jaxpr, consts=()):
        self.jaxpr = jaxpr
        self.consts = list(consts)

    in_avals = property(lambda self: self.jaxpr.in_avals)
    out_avals = property(lambda self: self.jaxpr.out_avals)

    def __str__(self):
        return pp_jaxpr(self.jaxpr)

    __repr__ = __str__

    def __call__(self, *args):
        return eval_jaxpr(self.jaxpr, self.consts, *args)


def _is_jaxpr_param(v):
    return isinstance(v, (Jaxpr, ClosedJaxpr)) or (
        isinstance(v, (tuple, list)) and v and all(isinstance(x, (Jaxpr, ClosedJaxpr)) for x in v))


def eval_jaxpr(jaxpr: Jaxpr, consts, *args):
    """Evaluate a jaxpr by binding each equation's primitive at the current
    trace (eagerly, or inside whatever transformation is active)."""
    env = {}
    if len(args) != len(jaxpr.invars):
        raise TypeError(f"jaxpr takes {len(jaxpr.invars)} arguments, got {len(args)}")
    for v, x in zip(jaxpr.constvars, consts):
        env[v] = x
    for v, x in zip(jaxpr.invars, args):
        env[v] = x
    for eqn in jaxpr.eqns:
        invals = [_literal_value(x) if type(x) is Literal else env[x] for x in eqn.invars]
        outs = eqn.primitive.bind(*invals, **eqn.params)
        if eqn.primitive.multiple_results:
            for v, o in zip(eqn.outvars, outs):
                env[v] = o
        else:
            env[eqn.outvars[0]] = outs
    return [_literal_value(x) if type(x) is Literal else env[x] for x in jaxpr.outvars]


def _literal_value(lit):
    """A literal as a value: weak literals stay weak (a 0-d weak Array)."""
    if lit.aval.weak_type:
        return Array(np.asarray(lit.val), True)
    return lit.val


def jaxpr_as_fun(closed):
    return lambda *args: eval_jaxpr(closed.jaxpr, closed.consts, *args)


# ---- structural identity of traced bodies
#
# Eager code retraces a loop body on every call (lax.scan traces its `f`
# each time), and every transformation of the body (jvp, partial
# evaluation, transpose, the NumPy program that runs it) was rederived
# from scratch: a quarter of an eager grad through a short scan (RK4, 100
# steps of 4 states: 5.0 -> 3.8 ms). A body equal
# to one traced before -- same equations, params, literals, avals, wiring
# and source lines -- is replaced by that earlier object (`intern_jaxpr`),
# so transformations memoized by jaxpr identity (`memo_by_jaxpr`) and the
# NumPy programs cached per jaxpr are reused.


def _param_key(v):
    t = type(v)
    if t is float:          # 0.0 and -0.0 are == (and 1 == 1.0): key floats by their bits
        return (float, v.hex())
    if t is tuple or t is list:
        return (t, tuple(_param_key(x) for x in v))
    if isinstance(v, np.generic) or t is np.ndarray:
        return (t, v.dtype, np.shape(v), np.asarray(v).tobytes())
    hash(v)                 # unhashable params (none expected) make the jaxpr unkeyed
    return v                # jaxprs and functions compare by identity: kept alive by the owner


def jaxpr_structure(jaxpr: Jaxpr):
    """A hashable key equal for jaxprs that compute the same thing the same
    way (raises TypeError for a jaxpr with an unhashable param)."""
    ids = {}
    for v in jaxpr.constvars:
        ids[v] = len(ids)
    for v in jaxpr.invars:
        ids[v] = len(ids)

    def ref(x):
        if type(x) is Literal:
            return (x.aval, np.asarray(x.val).tobytes())
        return ids[x]

    key = [len(jaxpr.constvars), tuple(v.aval for v in jaxpr.constvars),
           tuple(v.aval for v in jaxpr.invars)]
    for e in jaxpr.eqns:
        ins = tuple([ref(x) for x in e.invars])
        for o in e.outvars:
            ids[o] = len(ids)
        key.append((e.primitive, ins, tuple([o.aval for o in e.outvars]),
                    tuple([(k, _param_key(v)) for k, v in e.params.items()]), e.source_info))
    key.append(tuple([ref(x) for x in jaxpr.outvars]))
    return tuple(key)


_interned: dict = {}


def intern_jaxpr(closed: ClosedJaxpr) -> ClosedJaxpr:
    """An earlier ClosedJaxpr equal in structure to `closed` (without
    consts), or `closed` itself, remembered for next time."""
    if closed.consts:
        return closed
    try:
        key = jaxpr_structure(closed.jaxpr)
    except TypeError:
        return closed
    hit = _interned.get(key)
    if hit is not None:
        return hit
    if len(_interned) >= 512:
        _interned.clear()
    _interned[key] = closed
    return closed


def memo_by_jaxpr(table, closed, extra, compute):
    """compute() cached by the identity of the jaxpr `closed` (or of each
    jaxpr in a tuple of them: cond's branches) and the hashable `extra`
    (the entry holds `closed`, so no id is reused while cached)."""
    k = (tuple(map(id, closed)) if type(closed) is tuple else id(closed), extra)
    hit = table.get(k)
    if hit is not None:
        return hit[1]
    val = compute()
    if len(table) >= 2048:
        table.clear()
    table[k] = (closed, val)
    return val


# ---- dead-code elimination


def dce_jaxpr(jaxpr: Jaxpr, used_outputs=None, prune_invars=False):
    """Drop equations whose results are unused. Returns (jaxpr, used_inputs)."""
    if used_outputs is None:
        used_outputs = [True] * len(jaxpr.outvars)
    outvars = [v for v, u in zip(jaxpr.outvars, used_outputs) if u]
    live = {v for v in outvars if type(v) is Var}
    new_eqns = []
    for eqn in reversed(jaxpr.eqns):
        used = [v in live for v in eqn.outvars]
        if not any(used):
            continue
        if eqn.primitive.dce is not None:
            eqn = eqn.primitive.dce(eqn, used)
        live.update(v for v in eqn.invars if type(v) is Var)
        new_eqns.append(eqn)
    new_eqns.reverse()
    used_inputs = [v in live for v in jaxpr.invars]
    invars = [v for v, u in zip(jaxpr.invars, used_inputs) if u] if prune_invars else jaxpr.invars
    constvars = [v for v in jaxpr.constvars if v in live]
    return Jaxpr(constvars, invars, outvars, new_eqns), used_inputs


def dce_closed(closed: ClosedJaxpr) -> ClosedJaxpr:
    """DCE keeping the signature; unused consts are dropped."""
    j, _ = dce_jaxpr(closed.jaxpr)
    keep = set(j.constvars)
    consts = [c for v, c in zip(closed.jaxpr.constvars, closed.consts) if v in keep]
    return ClosedJaxpr(j, consts)


# ---- pretty printing (JAX's format)


def _var_names():
    letters = "abcdefghijklmnopqrstuvwxyz"
    for n in itertools.count(1):
        for combo in itertools.product(letters, repeat=n):
            yield "".join(combo)


def _fmt_param(v, names, indent):
    if isinstance(v, ClosedJaxpr):
        v = v.jaxpr
    if isinstance(v, Jaxpr):
        return "\n" + pp_jaxpr(v, indent + 4)
    if isinstance(v, (tuple, list)) and v and all(isinstance(x, (Jaxpr, ClosedJaxpr)) for x in v):
        return "(" + ", ".join(_fmt_param(x, names, indent) for x in v) + ")"
    if isinstance(v, np.dtype):
        return dtypes.short_name(v) if v != dtypes.bool_ else "bool"
    if isinstance(v, Primitive):
        return v.name
    if callable(v) and hasattr(v, "__name__"):
        return v.__name__
    return repr(v) if isinstance(v, str) else str(v)


def _fmt_params(params, names=None, indent=0):
    return " ".join(f"{k}={_fmt_param(v, names, indent)}" for k, v in params.items())


def pp_jaxpr(jaxpr: Jaxpr, indent=0) -> str:
    gen = _var_names()
    names: dict = {}

    def name(v):
        if type(v) is Literal:
            val = v.val
            if isinstance(val, (bool, np.bool_)):
                return str(bool(val))
            s = str(val.item() if isinstance(val, (np.ndarray, np.generic)) else val)
            return s if v.aval.weak_type else f"{s}:{dtypes.short_name(v.aval.dtype)}[]"
        if v not in names:
            names[v] = next(gen)
        return names[v]

    def decl(v):
        return f"{name(v)}:{v.aval.str_short()}"

    pad = " " * indent
    cv = " ".join(decl(v) for v in jaxpr.constvars)
    iv = " ".join(decl(v) for v in jaxpr.invars)
    lines = []
    for eqn in jaxpr.eqns:
        lhs = " ".join(decl(v) for v in eqn.outvars) or "_"
        p = f"[{_fmt_params(eqn.params, names, indent + 4)}]" if eqn.params else ""
        args = " ".join(name(v) for v in eqn.invars)
        lines.append(f"{lhs} = {eqn.primitive.name}{p} {args}".rstrip())
    outs = ", ".join(name(v) for v in jaxpr.outvars)
    outs = f"({outs},)" if len(jaxpr.outvars) == 1 else f"({outs})"
    head = f"{{ lambda {cv}; {iv}. let"
    if len(lines) <= 1 and "\n" not in "".join(lines):
        return f"{pad}{head} {lines[0] + ' ' if lines else ''}in {outs} }}"
    body = "\n".join(f"{pad}    {ln}" for ln in lines)
    return f"{pad}{head}\n{body}\n{pad}  in {outs} }}"


# --------------------------------------------------------------------------
# Staging: the trace that builds jaxprs (make_jaxpr, jit, and partial
# evaluation for linearize)


class JaxprTracer(Tracer):
    # the jaxpr variable is `_var`: a `var` slot would hide the .var() method
    __slots__ = ("aval", "_var")

    def __init__(self, trace, aval, var):
        self._trace = trace
        self.aval = aval
        self._var = var


class JaxprTrace(Trace):
    """Records each primitive application as an equation.

    partial=False (make_jaxpr/jit): every operation is staged.
    partial=True (linearize): operations whose inputs are all *known* (not this
    trace's tracers) are evaluated right away at the parent trace; only those
    touching unknowns are staged. Known values used by staged equations become
    constvars (the residuals).
    """

    def __init__(self, parent, partial=False, fn_name=None, source=None):
        super().__init__(parent)
        self.partial = partial
        if fn_name is not None:
            self.fn_name = fn_name
        # a fixed source line for every equation: traces that transform an
        # existing jaxpr (jvp_jaxpr, transpose_jaxpr, partial_eval_jaxpr) run
        # no user code, so each equation's walk up the stack found the same
        # frame (and cost ~7 us: 7% of an eager grad through a scan)
        self.source = source
        self.eqns: list[JaxprEqn] = []
        self.invars: list[Var] = []
        self.const_vals: dict[int, tuple[Any, Var]] = {}

    def new_arg(self, aval):
        v = Var(aval)
        self.invars.append(v)
        return JaxprTracer(self, aval, v)

    def is_own(self, x):
        return isinstance(x, JaxprTracer) and x._trace is self

    def getvar(self, x):
        if isinstance(x, JaxprTracer) and x._trace is self:
            return x._var
        if isinstance(x, Tracer) and not x._trace.active:
            raise leaked_tracer_error(x)
        t = type(x)
        if t in _SCALAR_TYPES:
            return Literal(x, get_aval(x))
        if isinstance(x, np.generic):
            return Literal(x, get_aval(x))
        if t is Array and x._v is not None and x._v.shape == ():
            return Literal(x._v[()], get_aval(x))
        return self.const_var(x)

    def const_var(self, x):
        entry = self.const_vals.get(id(x))
        if entry is None:
            aval = get_aval(x)
            entry = self.const_vals[id(x)] = (x, Var(aval))
        return entry[1]

    def process_primitive(self, prim, args, params):
        if self.partial:
            if not any(isinstance(a, JaxprTracer) and a._trace is self for a in args):
                with set_trace(self.parent):
                    return prim.bind(*args, **params)
            if prim.partial_eval is not None:
                return prim.partial_eval(self, args, params)
        invars = [self.getvar(a) for a in args]
        out_avals = prim.abstract([v.aval for v in invars], params, args)
        return self.emit(prim, invars, out_avals, params)

    def emit(self, prim, invars, out_avals, params):
        outvars = [Var(a) for a in out_avals]
        src = self.source
        self.eqns.append(JaxprEqn(prim, invars, outvars, params, user_frame() if src is None else src))
        outs = [JaxprTracer(self, v.aval, v) for v in outvars]
        return outs if prim.multiple_results else outs[0]

    def to_jaxpr(self, outs, invars=None):
        """Finish: the jaxpr computing `outs` and its const values."""
        outvars = [self.getvar(o) for o in outs]
        consts, constvars = [], []
        for x, v in self.const_vals.values():
            consts.append(x)
            constvars.append(v)
        jaxpr = Jaxpr(constvars, self.invars if invars is None else invars, outvars, self.eqns)
        return jaxpr, consts


def new_jaxpr_trace(fn_name=None, partial=False):
    return JaxprTrace(_ctx.trace, partial=partial, fn_name=fn_name)


def trace_to_jaxpr(fun: Callable, in_avals, fn_name=None, instantiate=True, fixed_source=False):
    """Trace a flat function (list of tracers -> list of outputs) to a
    ClosedJaxpr. Consts may include tracers of enclosing traces.
    fixed_source: fun only transforms an existing jaxpr (no user code), so
    one source line serves every equation."""
    trace = new_jaxpr_trace(fn_name)
    if fixed_source:
        trace.source = user_frame()
    args = [trace.new_arg(a) for a in in_avals]
    try:
        with set_trace(trace):
            outs = fun(*args)
        jaxpr, consts = trace.to_jaxpr(outs)
    finally:
        trace.finish()
    return ClosedJaxpr(jaxpr, consts)


def coverage(print_table=True):
    """The primitive x rule table: which rules each primitive has."""
    rows = []
    for name in sorted(registry):
        p = registry[name]
        row = {r: getattr(p, r) is not None for r in Primitive.RULES}
        if not p.linear:  # only linear primitives need a transpose
            row["transpose"] = None
        rows.append((name, row))
    if print_table:
        print(f"{'primitive':28s} " + " ".join(f"{r:>13s}" for r in Primitive.RULES))
        for name, row in rows:
            cells = ["-" if row[r] is None else ("yes" if row[r] else "MISSING") for r in Primitive.RULES]
            print(f"{name:28s} " + " ".join(f"{c:>13s}" for c in cells))
    return dict(rows)
