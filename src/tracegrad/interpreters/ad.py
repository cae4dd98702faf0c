"""ad: forward mode (JVPTrace), linearize (jvp + partial evaluation) and
transposition. Reverse mode = linearize, then transpose the linear jaxpr.

Rule conventions (see core.Primitive):
  jvp(primals, tangents, **params) -> (primal_out, tangent_out)
  transpose(ct, *args, **params) -> list with one cotangent (or None) per arg;
      linear args arrive as UndefinedPrimal(aval), the others as values.
Symbolic zeros (`Zero(aval)`) flow through both instead of zero arrays.
"""
from __future__ import annotations

import numpy as np

from .. import core, dtypes
from ..core import JaxprTrace, Tracer, get_aval, set_trace


class Zero:
    """A symbolic zero tangent/cotangent of abstract value `aval`."""

    __slots__ = ("aval",)

    def __init__(self, aval):
        self.aval = aval

    def __repr__(self):
        return f"Zero({self.aval.str_short()})"

    @staticmethod
    def like(x):
        return Zero(get_aval(x).tangent_aval())


class UndefinedPrimal:
    """Marks a linear input in a transpose rule: only its aval is known."""

    __slots__ = ("aval",)

    def __init__(self, aval):
        self.aval = aval

    def __repr__(self):
        return f"UndefinedPrimal({self.aval.str_short()})"


def is_undefined(x):
    return type(x) is UndefinedPrimal


def zeros(aval):
    """A materialised zero array at the current trace."""
    from ..primitives import shapes
    dt = aval.dtype
    if dt == dtypes.float0:
        return core.Array(np.zeros(aval.shape, dtypes.float0))
    return shapes.full(aval.shape, 0, dt)


def instantiate(t):
    return zeros(t.aval) if type(t) is Zero else t


def add_tangents(a, b):
    if type(a) is Zero:
        return b
    if type(b) is Zero:
        return a
    # (the primitives import this module: look add_any up by name)
    return core.registry["add_any"].bind(a, b)


def linear_jvp(prim):
    """jvp of a primitive linear in all operands: apply it to the tangents."""
    def jvp(primals, tangents, **params):
        out = prim.bind(*primals, **params)
        if all(type(t) is Zero for t in tangents):
            return out, _zero_out(prim, out)
        return out, prim.bind(*map(instantiate, tangents), **params)
    return jvp


def _zero_out(prim, out):
    if prim.multiple_results:
        return [Zero.like(o) for o in out]
    return Zero.like(out)


def bilinear_jvp(prim, finish=None):
    """jvp of a primitive bilinear in its two operands (dot_general, conv):
    d(a*b) = da*b + a*db, skipping symbolic-zero terms. `finish` post-processes
    the tangent (e.g. to match the output dtype)."""
    def jvp(primals, tangents, **params):
        lhs, rhs = primals
        tl, tr = tangents
        out = prim.bind(lhs, rhs, **params)
        if type(tl) is Zero and type(tr) is Zero:
            return out, Zero.like(out)
        t = None
        if type(tl) is not Zero:
            t = prim.bind(tl, rhs, **params)
        if type(tr) is not Zero:
            t2 = prim.bind(lhs, tr, **params)
            if t is None:
                t = t2
            else:
                from ..primitives import elementwise
                t = elementwise.add_p.bind(t, t2)
        return out, t if finish is None else finish(t, out)
    return jvp


def transpose_vjp(prim, each=False):
    """A direct reverse rule (for the eager tape) read off a linear
    primitive's transpose rule: the needed operands become UndefinedPrimal,
    the others stay known values. each=True for primitives linear in each
    operand separately but not jointly (mul, dot_general, conv): one
    transpose per needed operand. The UndefinedPrimals are made when the
    pullback runs, not when the tape records it: forward recording is the
    per-operation hot path, and an entry the backward pass never reaches
    needs none."""
    def vjp(needs, out, *args, **params):
        if not each:
            def pullback(ct):
                a = list(args)
                for i, n in enumerate(needs):
                    if n:
                        a[i] = UndefinedPrimal(get_aval(a[i]))
                return prim.transpose(ct, *a, **params)
            return pullback

        def pullback_each(ct):
            cts = [None] * len(args)
            for i, n in enumerate(needs):
                if n:
                    a = list(args)
                    a[i] = UndefinedPrimal(get_aval(a[i]))
                    cts[i] = prim.transpose(ct, *a, **params)[i]
            return cts
        return pullback_each
    return vjp


def zero_jvp(prim):
    """jvp of a primitive with zero derivative (comparisons, floor, argmax...);
    sets the matching reverse rule for the eager tape too."""
    def jvp(primals, tangents, **params):
        out = prim.bind(*primals, **params)
        return out, _zero_out(prim, out)
    prim.vjp = zero_vjp
    return jvp


def zero_vjp(needs, out, *args, **params):
    """Reverse rule of a primitive with zero derivative: None tells the eager
    tape that the output is a constant."""
    return None


# --------------------------------------------------------------------------
# Forward mode


class JVPTracer(Tracer):
    __slots__ = ("primal", "tangent")

    def __init__(self, trace, primal, tangent):
        self._trace = trace
        self.primal = primal
        self.tangent = tangent

    @property
    def aval(self):
        return get_aval(self.primal)

    def to_concrete(self):
        return core.find_concrete(self.primal)


class JVPTrace(core.Trace):
    def unpack(self, x):
        if isinstance(x, JVPTracer) and x._trace is self:
            return x.primal, x.tangent
        if isinstance(x, Tracer) and not x._trace.active:
            raise core.leaked_tracer_error(x)
        return x, None

    def process_primitive(self, prim, args, params):
        primals, tangents = [], []
        nonzero = False
        for a in args:
            p, t = self.unpack(a)
            primals.append(p)
            if t is None or type(t) is Zero:
                tangents.append(t)
            else:
                tangents.append(t)
                nonzero = True
        if not nonzero:
            with set_trace(self.parent):
                return prim.bind(*primals, **params)
        tangents = [Zero.like(p) if t is None else t for p, t in zip(primals, tangents)]
        with set_trace(self.parent):
            if prim.jvp is None:
                raise core.primitive_error(prim, primals, "no differentiation (jvp) rule", params)
            out, tan = prim.jvp(primals, tangents, **params)
        if prim.multiple_results:
            return [self.wrap(o, t) for o, t in zip(out, tan)]
        return self.wrap(out, tan)

    def wrap(self, primal, tangent):
        if type(tangent) is Zero:
            return primal
        return JVPTracer(self, primal, tangent)


def jvp_flat(fun, primals, tangents):
    """Push tangents forward through `fun` (flat lists in and out).
    Returns (primals_out, tangents_out); tangents_out entries may be Zero."""
    trace = JVPTrace(core.current_trace())
    ins = [JVPTracer(trace, p, t) if type(t) is not Zero else p for p, t in zip(primals, tangents)]
    try:
        with set_trace(trace):
            outs = fun(*ins)
        pouts, touts = [], []
        for o in outs:
            p, t = trace.unpack(o)
            pouts.append(p)
            touts.append(Zero.like(p) if t is None else t)
    finally:
        trace.finish()
    return pouts, touts


# --------------------------------------------------------------------------
# Linearize: jvp whose tangent half is staged into a jaxpr by a partial-eval
# trace, while the primal half runs right away at the parent trace (so
# Python control flow on primal values works under grad, as in JAX).


class LinearFunction:
    """The linear map produced by linearize: tangents_in -> tangents_out."""

    def __init__(self, jaxpr, consts, in_avals, out_avals, out_nonzero):
        self.jaxpr = jaxpr            # invars: one per input tangent
        self.consts = consts          # the residuals
        self.in_avals = in_avals
        self.out_avals = out_avals    # tangent avals of all outputs
        self.out_nonzero = out_nonzero

    def __call__(self, *tangents):
        outs = iter(core.eval_jaxpr(self.jaxpr, self.consts, *map(instantiate, tangents)))
        return [next(outs) if nz else zeros(a) for nz, a in zip(self.out_nonzero, self.out_avals)]

    def transpose(self, cts):
        """Cotangents of the outputs -> cotangents of the inputs (Zero where none)."""
        cts = [c for c, nz in zip(cts, self.out_nonzero) if nz]
        return backward_pass(self.jaxpr, self.consts, cts)

    @property
    def closed_jaxpr(self):
        return core.ClosedJaxpr(self.jaxpr, self.consts)


class _LinearizeTrace(JaxprTrace):
    """linearize's partial-evaluation trace. Its staged equations (the
    tangent computation) are evaluated or transposed rather than shown, so it
    does not record source lines: walking the stack for every equation was a
    fifth of the cost of an eager grad."""

    def emit(self, prim, invars, out_avals, params):
        outvars = [core.Var(a) for a in out_avals]
        self.eqns.append(core.JaxprEqn(prim, invars, outvars, params, None))
        outs = [core.JaxprTracer(self, v.aval, v) for v in outvars]
        return outs if prim.multiple_results else outs[0]


def linearize_flat(fun, primals, fn_name=None):
    """Returns (primals_out, LinearFunction)."""
    pe = _LinearizeTrace(core.current_trace(), partial=True, fn_name=fn_name)
    in_avals = [get_aval(p).tangent_aval() for p in primals]
    tangent_ins = [pe.new_arg(a) for a in in_avals]
    jt = JVPTrace(pe)
    # integer/bool inputs have float0 tangents: symbolically zero
    ins = [JVPTracer(jt, p, t) if dtypes.is_float(a.dtype) else p
           for p, t, a in zip(primals, tangent_ins, in_avals)]
    try:
        with set_trace(jt):
            outs = fun(*ins)
        pouts, touts = [], []
        for o in outs:
            p, t = jt.unpack(o)
            pouts.append(p)
            touts.append(Zero.like(p) if t is None else t)
        jt.finish()
        nonzero = [type(t) is not Zero for t in touts]
        jaxpr, consts = pe.to_jaxpr([t for t in touts if type(t) is not Zero])
    finally:
        jt.finish()
        pe.finish()
    jaxpr, _ = core.dce_jaxpr(jaxpr)
    consts = _live_consts(jaxpr, pe)
    out_avals = [get_aval(p).tangent_aval() for p in pouts]
    return pouts, LinearFunction(jaxpr, consts, in_avals, out_avals, nonzero)


def _live_consts(jaxpr, pe):
    by_var = {v: x for x, v in pe.const_vals.values()}
    return [by_var[v] for v in jaxpr.constvars]


# --------------------------------------------------------------------------
# Transposition


def backward_pass(jaxpr: core.Jaxpr, consts, cts_out):
    """Evaluate the transpose of a linear jaxpr (invars linear, constvars
    known) at the current trace. Returns cotangents of the invars."""
    known = dict(zip(jaxpr.constvars, consts))
    ct_env: dict = {}
    slice_cts: dict = {}  # var -> [(slice params, ct)]: joined when the var is reached

    def add_ct(v, ct):
        if type(v) is core.Var and v not in known and ct is not None and type(ct) is not Zero:
            ct_env[v] = add_tangents(ct_env[v], ct) if v in ct_env else ct

    def take(v):
        ct = ct_env.pop(v, None)
        pieces = slice_cts.pop(v, None)
        if pieces is not None:
            ct = _sum_slice_cts(v.aval, pieces) if ct is None else \
                add_tangents(ct, _sum_slice_cts(v.aval, pieces))
        return ct

    for v, ct in zip(jaxpr.outvars, cts_out):
        add_ct(v, ct)
    for eqn in reversed(jaxpr.eqns):
        cts = [take(v) for v in eqn.outvars]
        if all(c is None for c in cts):
            continue
        cts = [Zero(v.aval.tangent_aval()) if c is None else c for v, c in zip(eqn.outvars, cts)]
        prim = eqn.primitive
        x0 = eqn.invars[0]
        if (prim.name == "slice" and type(x0) is core.Var and x0 not in known
                and type(cts[0]) is not Zero and _unit_strides(eqn.params["strides"])):
            slice_cts.setdefault(x0, []).append((eqn.params, cts[0]))
            continue
        args = []
        for x in eqn.invars:
            if type(x) is core.Literal:
                args.append(x.val)
            elif x in known:
                args.append(known[x])
            else:
                args.append(UndefinedPrimal(x.aval))
        if prim.transpose is None:
            raise core.primitive_error(prim, [a.aval if is_undefined(a) else a for a in args],
                                       "is not linear: it has no transpose rule "
                                       "(reverse-mode differentiation through it is not defined)",
                                       eqn.params)
        cts_in = prim.transpose(cts if prim.multiple_results else cts[0], *args, **eqn.params)
        for x, a, ct in zip(eqn.invars, args, cts_in):
            if is_undefined(a):
                add_ct(x, ct)
    outs = [take(v) for v in jaxpr.invars]
    return [Zero(v.aval) if ct is None else ct for v, ct in zip(jaxpr.invars, outs)]


def _unit_strides(strides):
    return strides is None or all(s == 1 for s in strides)


def _sum_slice_cts(aval, pieces):
    """The cotangent of x from those of slices of x. Slices that differ on
    one axis only, without overlapping, join in one concatenate (zeros in
    the gaps, one pad around it): an LSTM's gate slices then give one XLA
    kernel per step, where a sum of zero-padded copies gave one each.
    Otherwise each piece is padded back (slice's transpose) and summed."""
    from ..primitives import shapes  # (the primitives import this module)
    slice_p = core.registry["slice"]
    ranges = [tuple(zip(p["start_indices"], p["limit_indices"])) for p, _ in pieces]
    differ = {i for r in ranges for i, ab in enumerate(r) if ab != ranges[0][i]}
    if len(pieces) > 1 and len(differ) == 1:
        (axis,) = differ
        order = sorted(range(len(pieces)), key=lambda k: ranges[k][axis])
        parts, at = [], ranges[order[0]][axis][0]
        for k in order:
            a, b = ranges[k][axis]
            if a < at:  # overlap: no single concatenate
                break
            if a > at:
                shape = list(get_aval(pieces[k][1]).shape)
                shape[axis] = a - at
                parts.append(shapes.full(tuple(shape), 0, aval.tangent_aval().dtype))
            parts.append(pieces[k][1])
            at = b
        else:
            lo_hi = [list(r) for r in ranges[0]]
            lo_hi[axis] = [ranges[order[0]][axis][0], at]
            joined = shapes.concatenate(parts, axis)
            config = tuple((a, d - b, 0) for (a, b), d in zip(lo_hi, aval.shape))
            if any(lo or hi for lo, hi, _ in config):
                joined = shapes.pad(joined, 0, config)
            return joined
    total = None
    for params, ct in pieces:
        (padded,) = slice_p.transpose(ct, UndefinedPrimal(aval), **params)
        total = padded if total is None else add_tangents(total, padded)
    return total


# --------------------------------------------------------------------------
# jaxpr -> jaxpr forms (used by primitives that carry jaxprs)


def jvp_jaxpr(closed: core.ClosedJaxpr, nonzeros, instantiate_out=True):
    """Closed jaxpr (primals..., nonzero tangents...) -> (primals_out..., tangents_out...).
    Returns (jvp_closed, out_nonzeros)."""
    n = len(closed.in_avals)
    t_avals = [a.tangent_aval() for a, nz in zip(closed.in_avals, nonzeros) if nz]
    out_nz_box = []

    def fun(*args):
        primals, tans = list(args[:n]), iter(args[n:])
        tangents = [next(tans) if nz else Zero(a.tangent_aval())
                    for a, nz in zip(closed.in_avals, nonzeros)]
        pouts, touts = jvp_flat(lambda *xs: core.eval_jaxpr(closed.jaxpr, closed.consts, *xs),
                                primals, tangents)
        inst = instantiate_out if isinstance(instantiate_out, (list, tuple)) else [instantiate_out] * len(touts)
        touts = [instantiate(t) if i else t for t, i in zip(touts, inst)]
        out_nz_box[:] = [type(t) is not Zero for t in touts]
        return pouts + [t for t in touts if type(t) is not Zero]

    out = core.trace_to_jaxpr(fun, list(closed.in_avals) + t_avals, fixed_source=True)
    return out, out_nz_box


def transpose_jaxpr(closed: core.ClosedJaxpr, linear):
    """Closed linear-in-`linear`-args jaxpr -> jaxpr (nonlinear args..., cts_out...)
    -> (cts of the linear args...), with zeros instantiated."""
    in_avals = closed.in_avals
    nonlin_avals = [a for a, l in zip(in_avals, linear) if not l]
    ct_avals = [a.tangent_aval() for a in closed.out_avals]

    def fun(*args):
        nl, cts = iter(args[:len(nonlin_avals)]), list(args[len(nonlin_avals):])
        full_args = [UndefinedPrimal(a) if l else next(nl) for a, l in zip(in_avals, linear)]
        # backward_pass_with_args returns cts of the linear (undefined) args only
        cts_in = backward_pass_with_args(closed, full_args, cts)
        return [instantiate(c) if type(c) is Zero else c for c in cts_in]

    return core.trace_to_jaxpr(fun, nonlin_avals + ct_avals, fixed_source=True)


def backward_pass_with_args(closed: core.ClosedJaxpr, args, cts_out):
    """backward_pass for a jaxpr whose non-linear inputs are known values:
    first evaluate the non-linear part forward, then transpose the rest."""
    from . import partial_eval as pe
    unknowns = [is_undefined(a) for a in args]
    known_j, unknown_j, out_unk, num_res = pe.partial_eval_jaxpr(closed, unknowns, instantiate=True)
    known_vals = [a for a in args if not is_undefined(a)]
    res = core.eval_jaxpr(known_j.jaxpr, known_j.consts, *known_vals)[-num_res:] if num_res else []
    lin = unknown_j.jaxpr
    # unknown jaxpr: invars = residuals + linear args; treat residuals as known consts
    res_vars, lin_vars = lin.invars[:num_res], lin.invars[num_res:]
    j = core.Jaxpr(list(lin.constvars) + res_vars, lin_vars, lin.outvars, lin.eqns)
    return backward_pass(j, list(unknown_j.consts) + list(res), cts_out)
