"""User-defined derivatives: custom_jvp, custom_vjp, and stop_gradient.

custom_jvp(f) with f.defjvp(rule)
    Eagerly, calling f just runs f. Under any transformation, f is traced to a
    jaxpr and bound as the primitive `custom_jvp_call`, which carries that
    jaxpr (what jit lowers and vmap batches) and the user's rule as a flat
    Python callable. The rule is only run when the call is differentiated:
    the JVP trace calls it at its parent trace, so linearize/grad see the
    rule's tangent computation (which must be linear in the tangents) and
    transpose it like any other code.

custom_vjp(f) with f.defvjp(fwd, bwd)
    `custom_vjp_call` carries the primal jaxpr plus fwd and bwd. Its JVP rule
    runs fwd for the outputs and residuals and returns as tangent the linear
    primitive `custom_vjp_lin(residuals..., tangents...)`, whose transpose
    calls bwd. Forward mode (evaluating custom_vjp_lin on concrete tangents)
    is an error, as in JAX.

Closures: values that f closes over (including tracers of enclosing
transformations) become explicit operands of the call, so every
transformation sees them. The rules themselves (jvp, fwd, bwd) must not
close over values that are being differentiated: pass those as arguments
(a clear error says so when it happens).
"""
from __future__ import annotations

import functools
import inspect

import numpy as np

from . import core, dtypes
from .core import ClosedJaxpr, Jaxpr, Primitive, get_aval, is_array_like
from .interpreters import ad, batching
from .interpreters.ad import Zero
from .tree_util import tree_flatten, tree_map, tree_structure, tree_unflatten

__all__ = ["custom_jvp", "custom_vjp", "stop_gradient", "SymbolicZero"]

SymbolicZero = Zero  # what a symbolic_zeros=True rule receives for a zero tangent


# --------------------------------------------------------------------------
# helpers shared with checkpoint.py


def closure_convert(closed: ClosedJaxpr):
    """Tracer consts (values closed over from enclosing transformations)
    become leading inputs, so the transformations see them as operands.
    Returns (closed jaxpr, tracer consts)."""
    j = closed.jaxpr
    kv, kc, tv, tc = [], [], [], []
    for v, c in zip(j.constvars, closed.consts):
        if isinstance(c, core.Tracer):
            tv.append(v)
            tc.append(c)
        else:
            kv.append(v)
            kc.append(c)
    if not tv:
        return closed, []
    return ClosedJaxpr(Jaxpr(kv, tv + list(j.invars), j.outvars, j.eqns), kc), tc


def trace_flat(flat_fun, leaves, fn_name=None):
    """Trace flat_fun on the avals of `leaves`; returns (closed, tracer consts)."""
    closed = core.trace_to_jaxpr(flat_fun, [get_aval(x) for x in leaves], fn_name=fn_name)
    return closure_convert(core.dce_closed(closed))


def eval_closed_eager(args, params, key):
    closed = params[key]
    return core.eval_jaxpr(closed.jaxpr, closed.consts, *args)


def impl_from_eager(prim):
    """A NumPy-in/NumPy-out impl for call-like primitives whose eager rule
    evaluates a jaxpr."""
    def impl(*vals, **params):
        outs = prim.eager([core.Array(np.asarray(v)) for v in vals], params)
        return [o.value for o in outs]
    return impl


def resolve_kwargs(fun, args, kwargs):
    """Keyword arguments -> positional ones (custom rules take positional args)."""
    if not kwargs:
        return tuple(args)
    try:
        ba = inspect.signature(fun).bind(*args, **kwargs)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{_name(fun)}: cannot bind keyword arguments: {e}") from None
    ba.apply_defaults()
    if ba.kwargs:
        raise TypeError(f"{_name(fun)}: keyword-only arguments {sorted(ba.kwargs)} are not "
                        f"supported by custom derivative functions; pass them positionally")
    return ba.args


def _name(f):
    f = getattr(f, "__wrapped__", f)
    return getattr(f, "__name__", None) or type(f).__name__


def _split_args(args, nondiff_argnums, who):
    n = len(args)
    nums = sorted({i % n if n else i for i in nondiff_argnums})
    for i in nondiff_argnums:
        if not -n <= i < n:
            raise TypeError(f"{who}: nondiff_argnums {tuple(nondiff_argnums)} out of range for "
                            f"{n} positional arguments")
    nondiff = tuple(args[i] for i in nums)
    diff = tuple(a for i, a in enumerate(args) if i not in nums)
    return nums, nondiff, diff


def _merge_args(nums, nondiff, diff):
    out, nd, d = [], iter(nondiff), iter(diff)
    for i in range(len(nondiff) + len(diff)):
        out.append(next(nd) if i in nums else next(d))
    return out


def _flatten_diff(diff, who):
    leaves, tree = tree_flatten(diff)
    for i, x in enumerate(leaves):
        if not is_array_like(x):
            raise TypeError(f"{who}: argument leaf {i} has type {type(x).__name__}, which is not "
                            f"an array; mark non-array arguments with nondiff_argnums")
    return leaves, tree


def _same_type(got, want):
    """got's shape/dtype equal want's (weak types may differ)."""
    return got.shape == want.shape and got.dtype == want.dtype


def _fix_dtype(x, want_dtype):
    """Python scalars (weak) take the expected dtype, as JAX allows."""
    a = get_aval(x)
    if a.dtype != want_dtype and a.weak_type and a.shape == ():
        from .primitives.elementwise import convert
        return convert(x, want_dtype)
    return x


def _float(aval):
    return dtypes.is_float(aval.dtype)


def _as_arrays(xs):
    """NumPy values (e.g. jaxpr literals) -> tracegrad Arrays, so user rules
    always see tracegrad values."""
    out = []
    for x in xs:
        if isinstance(x, (np.ndarray, np.generic)):
            x = core.Array(np.asarray(x))
        elif type(x) in (bool, int, float, complex):
            x = core.Array(np.asarray(x, dtypes.python_scalar_dtype(x)), weak=True)
        out.append(x)
    return out


def _closure_tangent_error(kind, name, aval):
    return TypeError(
        f"{kind} function {name} closes over a value ({aval.str_short()}) that is being "
        f"differentiated. Closed-over values are treated as constants by the custom rule, which "
        f"would silently drop their derivative: pass the value as an explicit argument of the "
        f"function instead (and give the rule its derivative).")


# --------------------------------------------------------------------------
# custom_jvp



def _flat_primal(fun, nums, nondiff, in_tree, box, what):
    """The primal function on flat differentiable leaves; checks that every
    output leaf is an array and records the output tree in `box`."""
    def flat_fun(*flat):
        out = fun(*_merge_args(nums, nondiff, tree_unflatten(in_tree, flat)))
        out_leaves, out_tree = tree_flatten(out)
        for i, o in enumerate(out_leaves):
            if not is_array_like(o):
                raise TypeError(f"{what}: output leaf {i} has type "
                                f"{type(o).__name__}, which is not an array")
        box.append(out_tree)
        return out_leaves
    return flat_fun

class custom_jvp:
    """A function with a user-defined JVP rule, as jax.custom_jvp.

        @custom_jvp
        def f(x, y): ...
        @f.defjvp
        def f_jvp(primals, tangents):
            x, y = primals; tx, ty = tangents
            return f(x, y), <tangent of the output, linear in tx, ty>

    nondiff_argnums: positions of arguments that are not differentiated
    (e.g. callables or configuration); the rule receives them first:
    rule(*nondiff_args, primals, tangents). grad/vjp work through the rule
    because it is linear in the tangents.
    """

    def __init__(self, fun, nondiff_argnums=()):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.nondiff_argnums = tuple(nondiff_argnums)
        self.jvp = None
        self.symbolic_zeros = False

    def __get__(self, obj, objtype=None):  # usable as a method
        if obj is None:
            return self
        return functools.partial(self, obj)

    def defjvp(self, jvp, symbolic_zeros=False):
        """Set the rule jvp(*nondiff_args, primals, tangents) -> (primal_out, tangent_out).
        With symbolic_zeros=True, zero tangents arrive as SymbolicZero objects
        (and the rule may return them)."""
        self.jvp = jvp
        self.symbolic_zeros = symbolic_zeros
        return jvp

    def defjvps(self, *jvps):
        """One rule per differentiable argument: jvp_i(tangent_i, primal_out, *primals)
        -> that argument's contribution to the output tangent (None: no dependence)."""
        if self.nondiff_argnums:
            raise TypeError("defjvps is not supported together with nondiff_argnums; use defjvp")

        def rule(primals, tangents):
            out = self(*primals)
            acc = None
            for j, p, t in zip(jvps, primals, tangents):
                if j is None:
                    continue
                term = j(t, out, *primals)
                acc = term if acc is None else tree_map(lambda a, b: a + b, acc, term)
            if acc is None:
                acc = tree_map(lambda o: ad.zeros(get_aval(o).tangent_aval()), out)
            return out, acc

        self.defjvp(rule)

    def __call__(self, *args, **kwargs):
        name = _name(self.fun)
        if self.jvp is None:
            raise AttributeError(f"No JVP defined for custom_jvp function {name} using defjvp.")
        args = resolve_kwargs(self.fun, args, kwargs)
        if core._ctx.trace is None:  # eager: nothing transforms the call
            return self.fun(*args)
        nums, nondiff, diff = _split_args(args, self.nondiff_argnums, f"custom_jvp {name}")
        leaves, in_tree = _flatten_diff(diff, f"custom_jvp {name}")
        box = []
        flat_fun = _flat_primal(self.fun, nums, nondiff, in_tree, box, f"custom_jvp {name}")
        closed, consts = trace_flat(flat_fun, leaves, fn_name=name)
        rule = _FlatJvp(self, name, nondiff, in_tree, box[0], closed.out_avals)
        outs = custom_jvp_call_p.bind(*consts, *leaves, call_jaxpr=closed, jvp=rule,
                                      num_consts=len(consts), symbolic_zeros=self.symbolic_zeros)
        return tree_unflatten(box[0], outs)


class _FlatJvp:
    """The user's jvp rule on flat lists: (primals, tangents) -> (primals_out,
    tangents_out). Tangents may be Zero when symbolic_zeros is on; returned
    tangents of integer outputs are Zero."""

    def __init__(self, cj, name, nondiff, in_tree, out_tree, out_avals):
        self.cj, self.name, self.nondiff = cj, name, nondiff
        self.in_tree, self.out_tree, self.out_avals = in_tree, out_tree, list(out_avals)
        self.__name__ = _name(cj.jvp)
        self.bind_trace = core.current_trace()

    def __call__(self, primals, tangents):
        ps = tree_unflatten(self.in_tree, _as_arrays(primals))
        ts = tree_unflatten(self.in_tree, _as_arrays(tangents))
        res = self.cj.jvp(*self.nondiff, ps, ts)
        if not (isinstance(res, (tuple, list)) and len(res) == 2):
            raise TypeError(f"custom_jvp rule {self.__name__} of {self.name} must return a pair "
                            f"(primal_out, tangent_out), got {type(res).__name__}")
        p_out, t_out = res
        p_leaves, p_tree = tree_flatten(p_out)
        if p_tree != self.out_tree:
            raise TypeError(f"custom_jvp rule {self.__name__} of {self.name}: the primal output "
                            f"structure {p_tree} differs from the function's output {self.out_tree}")
        t_leaves, t_tree = tree_flatten(t_out, is_leaf=lambda x: type(x) is Zero)
        if t_tree != p_tree:
            raise TypeError(f"custom_jvp rule {self.__name__} of {self.name} must produce primal "
                            f"and tangent outputs with equal pytree structures, got {p_tree} "
                            f"and {t_tree}")
        pouts, touts = [], []
        for i, (p, t, want) in enumerate(zip(p_leaves, t_leaves, self.out_avals)):
            p = _fix_dtype(p, want.dtype)
            pa = get_aval(p)
            if not _same_type(pa, want):
                raise TypeError(f"custom_jvp rule {self.__name__} of {self.name}: primal output "
                                f"{i} is {pa.str_short()}, but the function returns "
                                f"{want.str_short()}")
            pouts.append(p)
            ta_want = want.tangent_aval()
            if not _float(want) or type(t) is Zero:
                touts.append(Zero(ta_want))
                continue
            t = _fix_dtype(t, ta_want.dtype)
            ta = get_aval(t)
            if not _same_type(ta, ta_want):
                raise TypeError(f"custom_jvp rule {self.__name__} of {self.name} must produce "
                                f"primal and tangent outputs with corresponding shapes and dtypes: "
                                f"output {i} has primal {pa.str_short()} but tangent "
                                f"{ta.str_short()} (expected {ta_want.str_short()})")
            touts.append(t)
        return pouts, touts


class _BatchedJvp:
    """A flat jvp rule mapped over a batch axis (at 0 where batched)."""

    def __init__(self, rule, size, dims, out_avals, alias):
        self.rule, self.size, self.dims = rule, size, list(dims)
        self.out_avals = list(out_avals)  # batched (axis 0) primal out avals
        self.__name__ = getattr(rule, "__name__", "jvp")
        self.name, self.bind_trace, self.alias = rule.name, rule.bind_trace, alias

    def __call__(self, primals, tangents):
        size = self.size
        nz = [type(t) is not Zero for t in tangents]
        # zero tangents stay symbolic, per example
        zeros = [None if n else Zero(_unbatch(t.aval) if d is not None else t.aval)
                 for t, n, d in zip(tangents, nz, self.dims)]
        n_p = len(primals)
        float_out = [_float(a) for a in self.out_avals]

        def inner(*xs):
            ps, ts = list(xs[:n_p]), iter(xs[n_p:])
            tans = [next(ts) if n else z for n, z in zip(nz, zeros)]
            po, to = self.rule(ps, tans)
            return list(po) + [ad.instantiate(t) for t, f in zip(to, float_out) if f]

        ins = list(primals) + [t for t, n in zip(tangents, nz) if n]
        in_dims = self.dims + [d for d, n in zip(self.dims, nz) if n]
        res = _vmap(inner, ins, in_dims, size, self.alias)
        pouts, touts = res[:len(self.out_avals)], iter(res[len(self.out_avals):])
        return pouts, [next(touts) if f else Zero(a.tangent_aval())
                       for f, a in zip(float_out, self.out_avals)]


def _unbatch(aval):
    return aval.update(shape=aval.shape[1:])


class _AliasBatchTrace(batching.BatchTrace):
    """A batch trace that also reads the tracers of `alias`, the vmap trace
    a custom function was called under: the user's rules may close over
    that vmap's batched values, and run later, under this trace."""

    def __init__(self, parent, axis_size, alias):
        super().__init__(parent, axis_size)
        self.alias = alias

    def unpack(self, x):
        if self.alias is not None and isinstance(x, batching.BatchTracer) and x._trace is self.alias:
            return x.val, x.bdim
        return super().unpack(x)


def _find_alias(bind_trace):
    """The vmap trace (between the call site and here) whose batching rule is
    running now: the one whose parent is the current trace."""
    cur, t = core.current_trace(), bind_trace
    while t is not None and t.parent is not cur:
        t = t.parent
    return t if isinstance(t, batching.BatchTrace) else None


def _vmap(fun, args, in_dims, size, alias=None, force=True):
    """Map fun (flat list -> flat list) over in_dims. Batched outputs come
    back with the axis at 0; unbatched ones are broadcast (force=True) or
    left as they are. Returns (outputs, batched flags) when force is False."""
    trace = _AliasBatchTrace(core.current_trace(), size, alias)
    ins = [a if d is None else batching.BatchTracer(trace, a, d) for a, d in zip(args, in_dims)]
    try:
        with core.set_trace(trace):
            outs = fun(*ins)
        res, flags = [], []
        for o in outs:
            v, d = trace.unpack(o)
            with core.set_trace(trace.parent):
                if d is None:
                    res.append(batching.broadcast(v, size, 0) if force else v)
                else:
                    res.append(batching.moveaxis(v, d, 0))
            flags.append(d is not None or force)
    finally:
        trace.finish()
    return res if force else (res, flags)


def batch_closed(closed: ClosedJaxpr, size, in_dims):
    """Batch a closed jaxpr whose batched inputs carry the axis at 0 (in_dims:
    0 or None). Outputs that do not depend on batched inputs stay unbatched.
    Returns (batched closed jaxpr, out_batched flags)."""
    in_avals = [a if d is None else a.update(shape=(size,) + a.shape)
                for a, d in zip(closed.in_avals, in_dims)]
    box = []

    def fun(*args):
        outs, flags = _vmap(lambda *xs: core.eval_jaxpr(closed.jaxpr, closed.consts, *xs),
                            args, in_dims, size, force=False)
        box.append(flags)
        return outs

    out = core.trace_to_jaxpr(fun, in_avals)
    return out, box[0]


def _check_closure_tangents(kind, rule, primals, tangents, num_consts):
    """The leading num_consts operands are closed-over values: a custom rule
    cannot see their tangents, so a nonzero one is an error, not a silent drop."""
    for c, t in zip(primals[:num_consts], tangents[:num_consts]):
        if type(t) is not Zero:
            raise _closure_tangent_error(kind, getattr(rule, "name", "?"), get_aval(c))


def _cjvp_abstract(*avals, call_jaxpr, jvp, num_consts, symbolic_zeros):
    return list(call_jaxpr.out_avals)


def _cjvp_jvp(primals, tangents, *, call_jaxpr, jvp, num_consts, symbolic_zeros):
    _check_closure_tangents("custom_jvp", jvp, primals, tangents, num_consts)
    args, targs = primals[num_consts:], tangents[num_consts:]
    if not symbolic_zeros:
        targs = [ad.instantiate(t) for t in targs]
    return jvp(list(args), list(targs))


def _cjvp_batch(args, dims, *, call_jaxpr, jvp, num_consts, symbolic_zeros):
    size = batching.axis_size_of(args, dims)
    args = [a if d is None else batching.moveaxis(a, d, 0) for a, d in zip(args, dims)]
    in_dims = [None if d is None else 0 for d in dims]
    bj = batching.vmap_jaxpr(call_jaxpr, size, in_dims)
    bjvp = _BatchedJvp(jvp, size, in_dims[num_consts:], bj.out_avals, _find_alias(jvp.bind_trace))
    outs = custom_jvp_call_p.bind(*args, call_jaxpr=bj, jvp=bjvp, num_consts=num_consts,
                                  symbolic_zeros=symbolic_zeros)
    return outs, [0] * len(outs)


def _call_lower(key):
    def lower(ctx, *args, **params):
        return ctx.lower_sub_jaxpr(params[key], *args)
    return lower


custom_jvp_call_p = Primitive("custom_jvp_call", multiple_results=True,
                              abstract_eval=_cjvp_abstract, jvp=_cjvp_jvp, batch=_cjvp_batch,
                              lower=_call_lower("call_jaxpr"))
custom_jvp_call_p.eager = lambda args, params: eval_closed_eager(args, params, "call_jaxpr")
custom_jvp_call_p.impl = impl_from_eager(custom_jvp_call_p)


# --------------------------------------------------------------------------
# custom_vjp


class custom_vjp:
    """A function with a user-defined VJP, as jax.custom_vjp.

        @custom_vjp
        def f(x, y): ...
        def f_fwd(x, y): return f(x, y), residuals
        def f_bwd(residuals, g): return (ct_x, ct_y)   # one entry per argument
        f.defvjp(f_fwd, f_bwd)

    With nondiff_argnums, bwd receives those arguments first:
    bwd(*nondiff_args, residuals, g), and returns cotangents for the other
    arguments only. A None cotangent means zero. Forward-mode differentiation
    (jvp, jacfwd) of a custom_vjp function raises an error.
    """

    def __init__(self, fun, nondiff_argnums=()):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.nondiff_argnums = tuple(nondiff_argnums)
        self.fwd = None
        self.bwd = None
        self.symbolic_zeros = False

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return functools.partial(self, obj)

    def defvjp(self, fwd, bwd, symbolic_zeros=False):
        self.fwd, self.bwd = fwd, bwd
        self.symbolic_zeros = symbolic_zeros

    def __call__(self, *args, **kwargs):
        name = _name(self.fun)
        if self.fwd is None:
            raise AttributeError(f"No VJP defined for custom_vjp function {name} using defvjp.")
        args = resolve_kwargs(self.fun, args, kwargs)
        if core._ctx.trace is None:
            return self.fun(*args)
        nums, nondiff, diff = _split_args(args, self.nondiff_argnums, f"custom_vjp {name}")
        leaves, in_tree = _flatten_diff(diff, f"custom_vjp {name}")
        box = []
        flat_fun = _flat_primal(self.fun, nums, nondiff, in_tree, box, f"custom_vjp {name}")
        closed, consts = trace_flat(flat_fun, leaves, fn_name=name)
        fwd = _FlatFwd(self, name, nums, nondiff, in_tree, box[0], closed.out_avals,
                       [get_aval(x) for x in leaves], [tree_structure(a) for a in diff])
        outs = custom_vjp_call_p.bind(*consts, *leaves, call_jaxpr=closed, fwd=fwd,
                                      num_consts=len(consts), symbolic_zeros=self.symbolic_zeros)
        return tree_unflatten(box[0], outs)


class _FlatFwd:
    """fwd on flat lists: args -> (outs, residuals, bwd) where bwd is a
    _FlatBwd that knows how to rebuild the residual pytree."""

    def __init__(self, cv, name, nums, nondiff, in_tree, out_tree, out_avals, in_avals, arg_trees):
        self.cv, self.name, self.nums, self.nondiff = cv, name, nums, nondiff
        self.arg_trees = arg_trees  # one per differentiable argument
        self.bind_trace = core.current_trace()
        self.in_tree, self.out_tree = in_tree, out_tree
        self.out_avals, self.in_avals = list(out_avals), list(in_avals)
        self.__name__ = _name(cv.fwd)

    def __call__(self, args):
        full = _merge_args(self.nums, self.nondiff, tree_unflatten(self.in_tree, _as_arrays(args)))
        res = self.cv.fwd(*full)
        if not (isinstance(res, (tuple, list)) and len(res) == 2):
            raise TypeError(f"custom_vjp fwd rule {self.__name__} of {self.name} must return a "
                            f"pair (primal_out, residuals), got {type(res).__name__}")
        out, residuals = res
        o_leaves, o_tree = tree_flatten(out)
        if o_tree != self.out_tree:
            raise TypeError(f"custom_vjp fwd rule {self.__name__} of {self.name}: the primal "
                            f"output structure {o_tree} differs from the function's output "
                            f"{self.out_tree}")
        outs = []
        for i, (o, want) in enumerate(zip(o_leaves, self.out_avals)):
            o = _fix_dtype(o, want.dtype)
            if not _same_type(get_aval(o), want):
                raise TypeError(f"custom_vjp fwd rule {self.__name__} of {self.name}: primal output "
                                f"{i} is {get_aval(o).str_short()}, but the function returns "
                                f"{want.str_short()}")
            outs.append(o)
        r_leaves, r_tree = tree_flatten(residuals)
        # array residuals travel as operands; anything else stays in the rule
        is_arr = [is_array_like(r) for r in r_leaves]
        static = [None if a else r for r, a in zip(r_leaves, is_arr)]
        res_ops = [r for r, a in zip(r_leaves, is_arr) if a]
        bwd = _FlatBwd(self, r_tree, is_arr, static)
        return outs, res_ops, bwd


class _FlatBwd:
    """bwd on flat lists: (residuals, output cotangents) -> input cotangents
    (one per differentiable leaf; Zero for integer inputs or None answers)."""

    def __init__(self, fwd, r_tree, is_arr, static):
        self.fwd, self.r_tree, self.is_arr, self.static = fwd, r_tree, is_arr, static
        self.__name__ = _name(fwd.cv.bwd)
        self.name, self.bind_trace = fwd.name, fwd.bind_trace

    def __call__(self, res_ops, cts):
        fw = self.fwd
        it = iter(_as_arrays(res_ops))
        r_leaves = [next(it) if a else s for a, s in zip(self.is_arr, self.static)]
        residuals = tree_unflatten(self.r_tree, r_leaves)
        if not fw.cv.symbolic_zeros:
            cts = [ad.instantiate(c) for c in cts]
        cts = _as_arrays(cts)
        g = tree_unflatten(fw.out_tree, list(cts))
        out = fw.cv.bwd(*fw.nondiff, residuals, g)
        n_diff = len(fw.arg_trees)
        if not isinstance(out, (tuple, list)) or len(out) != n_diff:
            got = f"a {type(out).__name__} of length {len(out)}" if isinstance(out, (tuple, list)) \
                else f"a {type(out).__name__}"
            raise TypeError(f"custom_vjp bwd rule {self.__name__} of {self.name} must return a "
                            f"tuple with one cotangent per differentiable argument ({n_diff}), "
                            f"got {got}")
        flat = []
        for k, (o, tr) in enumerate(zip(out, fw.arg_trees)):
            if o is None:
                flat += [None] * tr.num_leaves
                continue
            try:
                flat += tr.flatten_up_to(o)
            except (ValueError, TypeError) as e:
                raise TypeError(f"custom_vjp bwd rule {self.__name__} of {self.name}: cotangent "
                                f"for argument {k} has structure {tree_structure(o)}, expected "
                                f"{tr}: {e}") from None
        res = []
        for i, (c, a) in enumerate(zip(flat, fw.in_avals)):
            ta = a.tangent_aval()
            if c is None or type(c) is Zero or not _float(a):
                res.append(Zero(ta))
                continue
            ca = get_aval(c)
            if ca.shape != ta.shape:
                raise TypeError(f"custom_vjp bwd rule {self.__name__} of {self.name}: cotangent "
                                f"{i} has shape {ca.shape}, but the argument is {a.str_short()}")
            if ca.dtype != ta.dtype:
                from .primitives.elementwise import convert
                c = convert(c, ta.dtype, ta.weak_type)
            res.append(c)
        return res


class _BatchedFwd:
    """fwd mapped over axis 0 of every argument (outputs, residuals at 0)."""

    def __init__(self, fwd, size, n_out, alias):
        self.fwd, self.size, self.n_out, self.alias = fwd, size, n_out, alias
        self.__name__ = getattr(fwd, "__name__", "fwd")
        self.name, self.bind_trace = fwd.name, fwd.bind_trace

    def __call__(self, args):
        box = []

        def inner(*xs):
            outs, res, bwd = self.fwd(list(xs))
            box.append((bwd, len(res), [get_aval(r) for r in res]))
            return list(outs) + list(res)

        r = _vmap(inner, list(args), [0] * len(args), self.size, self.alias)
        bwd, n_res, _ = box[0]
        return r[:self.n_out], r[self.n_out:], _BatchedBwd(bwd, self.size, self.alias)


class _BatchedBwd:
    """bwd mapped over axis 0 of the residuals and cotangents."""

    def __init__(self, bwd, size, alias):
        self.bwd, self.size, self.alias = bwd, size, alias
        self.__name__ = getattr(bwd, "__name__", "bwd")
        self.name, self.bind_trace = bwd.name, bwd.bind_trace

    def __call__(self, res, cts):
        nz = [type(c) is not Zero for c in cts]
        zeros = [None if n else Zero(_unbatch(c.aval)) for c, n in zip(cts, nz)]
        n_r = len(res)
        box = []

        def inner(*xs):
            rs, cs = list(xs[:n_r]), iter(xs[n_r:])
            out = self.bwd(rs, [next(cs) if n else z for n, z in zip(nz, zeros)])
            box.append([type(o) is Zero for o in out])
            box.append([o.aval for o in out if type(o) is Zero])
            return [o for o in out if type(o) is not Zero]

        ins = list(res) + [c for c, n in zip(cts, nz) if n]
        r = iter(_vmap(inner, ins, [0] * len(ins), self.size, self.alias))
        is_zero, zavals = box[0], iter(box[1])
        out = []
        for z in is_zero:
            if z:
                a = next(zavals)
                out.append(Zero(a.update(shape=(self.size,) + a.shape)))
            else:
                out.append(next(r))
        return out


def _cvjp_abstract(*avals, call_jaxpr, fwd, num_consts, symbolic_zeros):
    return list(call_jaxpr.out_avals)


def _cvjp_jvp(primals, tangents, *, call_jaxpr, fwd, num_consts, symbolic_zeros):
    _check_closure_tangents("custom_vjp", fwd, primals, tangents, num_consts)
    args, targs = primals[num_consts:], tangents[num_consts:]
    outs, res, bwd = fwd(list(args))
    in_avals = [get_aval(a) for a in args]
    out_avals = tuple(get_aval(o) for o in outs)
    float_in = tuple(_float(a) for a in in_avals)
    tan_ops = [ad.instantiate(t) for t, f in zip(targs, float_in) if f]
    lin_outs = iter(custom_vjp_lin_p.bind(*res, *tan_ops, bwd=bwd, num_res=len(res),
                                          out_avals=out_avals, float_in=float_in))
    touts = [next(lin_outs) if _float(a) else Zero(a.tangent_aval()) for a in out_avals]
    return outs, touts


def _cvjp_batch(args, dims, *, call_jaxpr, fwd, num_consts, symbolic_zeros):
    # every operand is broadcast to batched: then the mapped bwd's cotangents
    # all carry the batch axis, matching the (batched) operands
    args, size = batching.move_all_to_front(args, dims)
    bj = batching.vmap_jaxpr(call_jaxpr, size, [0] * len(args))
    bfwd = _BatchedFwd(fwd, size, len(bj.out_avals), _find_alias(fwd.bind_trace))
    outs = custom_vjp_call_p.bind(*args, call_jaxpr=bj, fwd=bfwd, num_consts=num_consts,
                                  symbolic_zeros=symbolic_zeros)
    return outs, [0] * len(outs)


custom_vjp_call_p = Primitive("custom_vjp_call", multiple_results=True,
                              abstract_eval=_cvjp_abstract, jvp=_cvjp_jvp, batch=_cvjp_batch,
                              lower=_call_lower("call_jaxpr"))
custom_vjp_call_p.eager = lambda args, params: eval_closed_eager(args, params, "call_jaxpr")
custom_vjp_call_p.impl = impl_from_eager(custom_vjp_call_p)


# ---- custom_vjp_lin(residuals..., tangents...): linear in the tangents;
# only ever transposed (reverse mode), never evaluated.


def _forward_mode_error(bwd):
    name = getattr(bwd, "name", "?")
    return TypeError(
        f"can't apply forward-mode autodiff (jvp, jacfwd, linearize's f_jvp) to a custom_vjp "
        f"function ({name}): it only defines reverse mode. Use grad/vjp/jacrev, or define the "
        f"derivative with custom_jvp instead (which supports both modes).")


def _lin_abstract(*avals, bwd, num_res, out_avals, float_in):
    return [a.tangent_aval() for a in out_avals if _float(a)]


def _lin_eager(args, params):
    raise _forward_mode_error(params["bwd"])


def _lin_transpose(cts, *args, bwd, num_res, out_avals, float_in):
    res = list(args[:num_res])
    if any(ad.is_undefined(r) for r in res):
        raise TypeError("custom_vjp residuals cannot depend on the linear (tangent) inputs")
    cts = list(cts)
    if all(type(c) is Zero for c in cts):
        return [None] * len(args)
    it = iter(cts)
    full = [next(it) if _float(a) else Zero(a.tangent_aval()) for a in out_avals]
    arg_cts = bwd(res, full)
    return [None] * num_res + [c for c, f in zip(arg_cts, float_in) if f]


def _lin_batch(args, dims, *, bwd, num_res, out_avals, float_in):
    args, size = batching.move_all_to_front(args, dims)
    b_out = tuple(a.update(shape=(size,) + a.shape) for a in out_avals)
    outs = custom_vjp_lin_p.bind(*args, bwd=_BatchedBwd(bwd, size, _find_alias(bwd.bind_trace)),
                                 num_res=num_res,
                                 out_avals=b_out, float_in=float_in)
    return outs, [0] * len(outs)


def _lin_lower(ctx, *args, bwd, **params):
    raise _forward_mode_error(bwd)


custom_vjp_lin_p = Primitive("custom_vjp_lin", multiple_results=True, linear=True,
                             abstract_eval=_lin_abstract, transpose=_lin_transpose,
                             batch=_lin_batch, lower=_lin_lower)
custom_vjp_lin_p.jvp = ad.linear_jvp(custom_vjp_lin_p)
custom_vjp_lin_p.eager = _lin_eager
custom_vjp_lin_p.impl = lambda *vals, bwd, **params: _lin_eager(vals, {"bwd": bwd})


# --------------------------------------------------------------------------
# stop_gradient


def _sg_jvp(primals, tangents):
    (x,) = primals
    out = stop_gradient_p.bind(x)
    return out, Zero.like(out)


stop_gradient_p = Primitive(
    "stop_gradient", impl=lambda x: x, abstract_eval=lambda x: x, jvp=_sg_jvp,
    batch=lambda args, dims: (stop_gradient_p.bind(args[0]), dims[0]),
    lower=lambda ctx, x: [x])
stop_gradient_p.vjp = ad.zero_vjp


def stop_gradient(x):
    """The identity on values, with zero derivative (applies to every leaf of
    a pytree), as jax.lax.stop_gradient."""
    def one(v):
        if not is_array_like(v):
            raise TypeError(f"stop_gradient: {type(v).__name__} is not an array")
        return stop_gradient_p.bind(v)
    return tree_map(one, x)
