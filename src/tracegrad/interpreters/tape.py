"""tape: eager reverse mode by recording a tape of direct reverse rules.

Why a second path: outside any transformation, `grad`/`vjp` through
linearize pay for staging every tangent operation into a jaxpr (a tracer, an
abstract evaluation and an equation per operation) and then interpreting the
transposed jaxpr. For small arrays that bookkeeping, not the arithmetic, was
the cost of a gradient (10x the function on a 200-op chain). Here the
forward pass runs eagerly and appends one tape entry per primitive; the
backward pass walks the tape once, calling each primitive's `vjp` rule.

One source of truth still holds: those `vjp` rules are derived from the
existing ones (a linear primitive's transpose rule; a unary op's derivative
`deriv(x, y)` that its jvp uses too), and a primitive without one falls back
to linearizing that single application (jvp + partial eval) and transposing
it, so every primitive, including jit, cond, scan, custom_vjp and
checkpoint, keeps its exact semantics. tests/test_tape.py checks the tape
against linearize+transpose and JAX for every primitive with a `vjp` rule.

The tape is used only when the current trace is eager (`vjp_flat`); under
any other trace (jit, vmap, an outer grad...) reverse mode is linearize +
transpose, whose jaxpr make_jaxpr shows. The backward pass binds primitives
at whatever trace is current when the pullback is called, so the pullback
still works under vmap, jit or another grad.
"""
from __future__ import annotations

import numpy as np

from .. import core, dtypes
from ..config import config
from ..core import Tracer, _ctx, get_aval, set_trace
from . import ad
from .ad import Zero


class TapeTracer(Tracer):
    """A value recorded on a tape: its concrete value and its tape slot."""

    __slots__ = ("value", "slot", "_aval")

    def __init__(self, trace, value, slot):
        self._trace = trace
        self.value = value
        self.slot = slot
        self._aval = None

    @property
    def aval(self):  # made on first use: most tape tracers are never asked
        a = self._aval
        if a is None:
            a = self._aval = get_aval(self.value)
        return a

    def to_concrete(self):
        return self.value


class TapeTrace(core.Trace):
    """Forward pass of eager reverse mode. Every float value derived from the
    inputs gets a slot; each tape entry is (out_slot, n_out, pullback,
    in_slots): pullback(ct) -> cotangents of the inputs, from the primitive's
    `vjp` rule or (the fallback) from linearizing that single application."""

    def __init__(self, fn_name=None):
        super().__init__(None)
        self.fn_name = fn_name
        self.entries: list = []
        self.n_slots = 0

    def new_slot(self, n=1):
        s = self.n_slots
        self.n_slots += n
        return s

    def process_primitive(self, prim, args, params):
        # one pass over the operands: their values (a tape tracer holds an
        # eager Array), their slots, and which ones the rule must differentiate
        vals, slots, needs = [], [], []
        tracked = False
        for a in args:
            if type(a) is TapeTracer and a._trace is self:
                vals.append(a.value)
                slots.append(a.slot)
                needs.append(True)
                tracked = True
            else:
                if isinstance(a, Tracer) and not a._trace.active:
                    raise core.leaked_tracer_error(a, prim)
                vals.append(a)
                slots.append(None)
                needs.append(False)
        if not tracked:
            return prim.eager(vals, params)
        vjp = prim.vjp
        if vjp is None or prim.multiple_results:  # (direct rules are single-output)
            return self._linearized(prim, vals, slots, params)
        out = prim.eager(vals, params)
        v = out._v  # (an impl's result is on the host; a device result has a buffer)
        dt = (v if v is not None else out._buf).dtype
        if dt.kind not in "fc" and not dtypes.is_float(dt):
            return out
        # the rule runs eagerly (at the parent), without a set_trace object
        _ctx.trace = None
        try:
            pullback = vjp(needs, out, *vals, **params)
        finally:
            _ctx.trace = self
        if pullback is None:  # zero derivative
            return out
        if pullback is NotImplemented:
            return self._linearized(prim, vals, slots, params)
        slot = self.n_slots
        self.n_slots = slot + 1
        self.entries.append((slot, 1, pullback, slots))
        return TapeTracer(self, out, slot)

    def _linearized(self, prim, vals, slots, params):
        """Fallback: linearize this one application (at the eager parent)."""
        pos = [i for i, s in enumerate(slots) if s is not None]

        def apply(*xs):
            a = list(vals)
            for i, x in zip(pos, xs):
                a[i] = x
            out = prim.bind(*a, **params)
            return out if prim.multiple_results else [out]

        with set_trace(None):
            outs, lin = ad.linearize_flat(apply, [vals[i] for i in pos], fn_name=self.fn_name)
        if not any(lin.out_nonzero):
            return outs if prim.multiple_results else outs[0]
        base = self.new_slot(len(outs))
        single = len(outs) == 1

        def pullback(ct):  # ct: a value for one output, else a list (None: no ct)
            cts = [ct] if single else ct
            return lin.transpose([Zero(a) if c is None else c for c, a in zip(cts, lin.out_avals)])
        self.entries.append((base, len(outs), pullback, [slots[i] for i in pos]))
        wrapped = [TapeTracer(self, o, base + k) if nz else o
                   for k, (o, nz) in enumerate(zip(outs, lin.out_nonzero))]
        return wrapped if prim.multiple_results else wrapped[0]

    def backward(self, seeds):
        """seeds: (slot, cotangent) pairs -> list of cotangents by slot."""
        cts = [None] * self.n_slots
        for s, c in seeds:
            _accumulate(cts, s, c)
        # (cts never holds a Zero, so sums need no Zero checks: add_any directly)
        add = core.registry["add_any"].bind
        for out_slot, n_out, pullback, in_slots in reversed(self.entries):
            if n_out == 1:
                ct = cts[out_slot]
                if ct is None:
                    continue
                cts[out_slot] = None
            else:
                ct = cts[out_slot:out_slot + n_out]
                if all(c is None for c in ct):
                    continue
                cts[out_slot:out_slot + n_out] = [None] * n_out
            # (_accumulate inlined: this loop runs once per operand of the tape)
            for s, c in zip(in_slots, pullback(ct)):
                if s is not None and c is not None and type(c) is not Zero:
                    prev = cts[s]
                    cts[s] = c if prev is None else add(prev, c)
        return cts


def _accumulate(cts, slot, ct):
    if ct is None or type(ct) is Zero:
        return
    prev = cts[slot]
    cts[slot] = ct if prev is None else ad.add_tangents(prev, ct)


class TapeFunction:
    """The pullback of a taped forward pass: `transpose(cts)` has
    LinearFunction's interface (output cotangents -> input cotangents)."""

    def __init__(self, tape, in_slots, in_avals, out_slots):
        self.tape = tape
        self.in_slots = in_slots
        self.in_avals = in_avals
        self.out_slots = out_slots

    def transpose(self, cts):
        seeds = [(s, c) for s, c in zip(self.out_slots, cts) if s is not None]
        by_slot = self.tape.backward(seeds)
        return [Zero(a) if s is None or by_slot[s] is None else by_slot[s]
                for s, a in zip(self.in_slots, self.in_avals)]


def _as_array(x, aval):
    """Tape tracers hold eager Arrays (the ufuncs' shortcuts read them)."""
    if type(x) is core.Array:
        return x
    return core.Array(np.asarray(x, aval.dtype), aval.weak_type)


def vjp_flat(fun, primals, fn_name=None):
    """Reverse mode for a flat function: (primals_out, pullback) where
    pullback.transpose(output cotangents) -> input cotangents (Zero where
    none). Eagerly this records a tape; under another trace it linearizes."""
    if core.current_trace() is not None or not config.eager_tape:
        return ad.linearize_flat(fun, primals, fn_name=fn_name)
    tape = TapeTrace(fn_name)
    in_avals = [get_aval(p).tangent_aval() for p in primals]
    in_slots = [tape.new_slot() if dtypes.is_float(a.dtype) else None for a in in_avals]
    ins = [p if s is None else TapeTracer(tape, _as_array(p, a), s)
           for p, s, a in zip(primals, in_slots, in_avals)]
    try:
        with set_trace(tape):
            outs = fun(*ins)
    finally:
        tape.finish()
    pouts, out_slots = [], []
    for o in outs:
        if type(o) is TapeTracer and o._trace is tape:
            pouts.append(o.value)
            out_slots.append(o.slot)
        else:
            pouts.append(o)
            out_slots.append(None)
    return pouts, TapeFunction(tape, in_slots, in_avals, out_slots)
