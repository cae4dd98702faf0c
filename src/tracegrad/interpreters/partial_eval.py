"""partial_eval: split a jaxpr into the part computable from known inputs and
the part that needs the unknown ones (for linearize, and for primitives that
carry jaxprs: jit's call, cond, scan ...).

It is built from the same trace-level partial evaluator linearize uses: the
known part is staged by an outer JaxprTrace, the unknown part by a partial
JaxprTrace nested in it; known values the unknown part needs (residuals) are
the outer trace's tracers captured as constants.
"""
from __future__ import annotations

from .. import core
from ..core import ClosedJaxpr, JaxprTrace, set_trace


def partial_eval_jaxpr(closed: ClosedJaxpr, unknowns, instantiate=False):
    """Returns (known, unknown, out_unknowns, num_res).

    known:   (known inputs...) -> (known outputs..., residuals...)
    unknown: (residuals..., unknown inputs...) -> (unknown outputs...)
    instantiate (bool or list): outputs forced to be unknown.
    """
    n_out = len(closed.out_avals)
    inst = instantiate if isinstance(instantiate, (list, tuple)) else [instantiate] * n_out
    src = core.user_frame()  # (no user code runs here: one line for all equations)
    outer = JaxprTrace(core.current_trace(), partial=False, source=src)
    known_in = [outer.new_arg(a) for a, u in zip(closed.in_avals, unknowns) if not u]
    pe = JaxprTrace(outer, partial=True, source=src)
    unknown_in = [pe.new_arg(a) for a, u in zip(closed.in_avals, unknowns) if u]
    kit, uit = iter(known_in), iter(unknown_in)
    args = [next(uit) if u else next(kit) for u in unknowns]
    try:
        with set_trace(pe):
            outs = core.eval_jaxpr(closed.jaxpr, closed.consts, *args)
        out_unknowns = [pe.is_own(o) or i for o, i in zip(outs, inst)]
        unknown_jaxpr, pe_consts = pe.to_jaxpr([o for o, u in zip(outs, out_unknowns) if u])
        # constants of the unknown part that the outer trace computed are residuals
        res_pos = [i for i, c in enumerate(pe_consts) if isinstance(c, core.JaxprTracer) and c._trace is outer]
        res_vals = [pe_consts[i] for i in res_pos]
        res_set = set(res_pos)
        cvars = unknown_jaxpr.constvars
        unknown_jaxpr = core.Jaxpr([v for i, v in enumerate(cvars) if i not in res_set],
                                   [cvars[i] for i in res_pos] + unknown_jaxpr.invars,
                                   unknown_jaxpr.outvars, unknown_jaxpr.eqns)
        unknown_consts = [c for i, c in enumerate(pe_consts) if i not in res_set]
        known_outs = [o for o, u in zip(outs, out_unknowns) if not u]
        with set_trace(outer):
            known_jaxpr, known_consts = outer.to_jaxpr(known_outs + res_vals)
    finally:
        pe.finish()
        outer.finish()
    return (ClosedJaxpr(known_jaxpr, known_consts), ClosedJaxpr(unknown_jaxpr, unknown_consts),
            out_unknowns, len(res_vals))


def partial_eval_call(trace: JaxprTrace, prim, args, params, jaxpr_key="jaxpr",
                      update_params=None, partial_eval_fn=None):
    """Trace-level partial-eval rule for call-like primitives whose params
    hold one closed jaxpr taking exactly `args`: run the known part now at
    the parent trace, stage only the unknown part. partial_eval_fn: a
    (memoized) stand-in for partial_eval_jaxpr(closed, unknowns)."""
    closed = params[jaxpr_key]
    unknowns = [trace.is_own(a) for a in args]
    known_j, unknown_j, out_unk, num_res = (partial_eval_fn or partial_eval_jaxpr)(closed, unknowns)
    upd = update_params or (lambda p, j, which: {**p, jaxpr_key: j})
    known_args = [a for a, u in zip(args, unknowns) if not u]
    with set_trace(trace.parent):
        kouts = prim.bind(*known_args, **upd(params, known_j, "known"))
    kouts = list(kouts)
    res = kouts[len(kouts) - num_res:]
    known_outs = kouts[:len(kouts) - num_res]
    unknown_args = res + [a for a, u in zip(args, unknowns) if u]
    invars = [trace.getvar(a) for a in unknown_args]
    uouts = trace.emit(prim, invars, unknown_j.out_avals, upd(params, unknown_j, "unknown"))
    ki, ui = iter(known_outs), iter(uouts)
    return [next(ui) if u else next(ki) for u in out_unk]
