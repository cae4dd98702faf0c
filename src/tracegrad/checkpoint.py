"""checkpoint (alias remat): trade memory for compute in reverse mode.

`checkpoint(f)` stages f into the primitive `checkpoint`, which carries f's
jaxpr. Its partial-evaluation rule (what linearize, and so grad/vjp, run)
saves NO intermediate values as residuals: the linear part that is staged for
the backward pass is the whole JVP of f, fed with f's *inputs*, so the
forward computation is redone when the backward pass runs (visible in
`make_jaxpr(value_and_grad(checkpoint(f)))`: the primal ops appear once in
the forward part and again inside the transposed `checkpoint`).

policy(prim, *avals_in, **params) -> bool may allow saving the outputs of
some primal operations instead (see `checkpoint_policies`). With
prevent_cse=True the recomputation is lowered behind an
optimization_barrier so XLA cannot merge it with the forward pass.
"""
from __future__ import annotations

import functools

from jaxlib.mlir.dialects import stablehlo as hlo

from . import core
from .core import ClosedJaxpr, Jaxpr, Literal, Primitive
from .custom_derivatives import batch_closed, closure_convert, eval_closed_eager, impl_from_eager, trace_flat
from .interpreters import ad, batching, lowering
from .interpreters import partial_eval as pe
from .interpreters.ad import Zero
from .tree_util import tree_flatten, tree_unflatten

__all__ = ["checkpoint", "remat", "checkpoint_policies"]


def checkpoint(fun=None, *, prevent_cse=True, policy=None, static_argnums=()):
    """Rematerialize f's intermediates in the backward pass instead of saving them.

    Usable as `checkpoint(f)`, `checkpoint(f, policy=...)` or as a decorator
    `@checkpoint` / `@checkpoint(prevent_cse=False)`. static_argnums: positions
    of non-array (configuration) arguments."""
    if fun is None:
        return lambda f: checkpoint(f, prevent_cse=prevent_cse, policy=policy,
                                    static_argnums=static_argnums)
    static = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)

    @functools.wraps(fun)
    def remat_f(*args, **kwargs):
        if core._ctx.trace is None:  # eager: nothing is being differentiated
            return fun(*args, **kwargs)
        n = len(args)
        nums = {i % n for i in static} if n else set()
        dyn = tuple(a for i, a in enumerate(args) if i not in nums)
        leaves, in_tree = tree_flatten((dyn, kwargs))
        for i, x in enumerate(leaves):
            if not core.is_array_like(x):
                raise TypeError(f"checkpoint({_name(fun)}): argument leaf {i} has type "
                                f"{type(x).__name__}, which is not an array; mark it with "
                                f"static_argnums")
        box = []

        def flat_fun(*flat):
            d, kw = tree_unflatten(in_tree, flat)
            it = iter(d)
            full = [args[i] if i in nums else next(it) for i in range(n)]
            out = fun(*full, **kw)
            out_leaves, out_tree = tree_flatten(out)
            box.append(out_tree)
            return out_leaves

        closed, consts = trace_flat(flat_fun, leaves, fn_name=_name(fun))
        outs = checkpoint_p.bind(*consts, *leaves, jaxpr=closed, prevent_cse=prevent_cse,
                                 differentiated=False, policy=policy)
        return tree_unflatten(box[0], outs)

    return remat_f


remat = checkpoint


def _name(f):
    return getattr(f, "__name__", None) or type(f).__name__


# ---- policies: policy(prim, *avals_in, **params) -> may this output be saved?

class checkpoint_policies:
    """Which primal intermediates a checkpoint may save (as jax.checkpoint_policies)."""

    @staticmethod
    def nothing_saveable(prim, *avals, **params):
        return False

    @staticmethod
    def everything_saveable(prim, *avals, **params):
        return True

    @staticmethod
    def dots_saveable(prim, *avals, **params):
        return prim.name in ("dot_general", "conv_general_dilated")

    checkpoint_dots = dots_saveable

    @staticmethod
    def dots_with_no_batch_dims_saveable(prim, *avals, **params):
        if prim.name != "dot_general":
            return False
        dn = params.get("dimension_numbers")
        try:
            (_, _), (lb, rb) = dn
        except (TypeError, ValueError):
            return False
        return not lb and not rb


# ---- rules


def _bind_closed(closed, args, **params):
    """Bind checkpoint with `closed`, moving any tracer consts to operands."""
    closed, consts = closure_convert(closed)
    return checkpoint_p.bind(*consts, *args, jaxpr=closed, **params)


def _abstract(*avals, jaxpr, prevent_cse, differentiated, policy):
    return list(jaxpr.out_avals)


def _jvp(primals, tangents, *, jaxpr, prevent_cse, differentiated, policy):
    nonzeros = [type(t) is not Zero for t in tangents]
    jvp_closed, out_nz = ad.jvp_jaxpr(jaxpr, nonzeros, instantiate_out=False)
    outs = _bind_closed(jvp_closed, list(primals) + [t for t in tangents if type(t) is not Zero],
                        prevent_cse=prevent_cse, differentiated=differentiated, policy=policy)
    n = len(jaxpr.out_avals)
    pouts, touts = outs[:n], iter(outs[n:])
    return pouts, [next(touts) if nz else Zero(a.tangent_aval())
                   for nz, a in zip(out_nz, jaxpr.out_avals)]


def _saveable_vars(jaxpr: Jaxpr, unknowns, policy):
    """Outputs of top-level equations whose inputs are all known and that the
    policy allows to save."""
    if policy is None:
        return []
    known = {v for v, u in zip(jaxpr.invars, unknowns) if not u} | set(jaxpr.constvars)
    saved = []
    for eqn in jaxpr.eqns:
        if all(type(x) is Literal or x in known for x in eqn.invars):
            known.update(eqn.outvars)
            if policy(eqn.primitive, *[x.aval for x in eqn.invars], **eqn.params):
                saved += eqn.outvars
    return saved


def _staged_jaxpr(closed: ClosedJaxpr, saved, out_unknowns):
    """The recomputing part: the whole jaxpr (minus saved equations, whose
    outputs become inputs), restricted to the unknown outputs. Returns
    (closed jaxpr with pruned inputs, used flags for invars + saved)."""
    j = closed.jaxpr
    saved_set = set(saved)
    eqns = [e for e in j.eqns if not any(v in saved_set for v in e.outvars)]
    outvars = [v for v, u in zip(j.outvars, out_unknowns) if u]
    full = Jaxpr(j.constvars, list(j.invars) + list(saved), outvars, eqns)
    dj, used = core.dce_jaxpr(full, prune_invars=True)
    keep = set(dj.constvars)
    consts = [c for v, c in zip(j.constvars, closed.consts) if v in keep]
    return ClosedJaxpr(dj, consts), used


def _partial_eval(trace, args, params):
    """Known inputs -> known outputs now (at the parent trace); the unknown
    outputs are staged as a checkpoint of the whole computation, whose only
    residuals are the known *inputs* (plus what the policy saves)."""
    closed, policy = params["jaxpr"], params["policy"]
    j = closed.jaxpr
    n_in, n_out = len(args), len(j.outvars)
    unknowns = [trace.is_own(a) for a in args]
    saved = _saveable_vars(j, unknowns, policy)
    # partial_eval_jaxpr tells which outputs are known (nested rules included);
    # saved candidates ride along as extra (known) outputs
    aug = ClosedJaxpr(Jaxpr(j.constvars, j.invars, list(j.outvars) + saved, j.eqns), closed.consts)
    known_j, _, out_unk, num_res = pe.partial_eval_jaxpr(aug, unknowns)
    out_unk = out_unk[:n_out]
    staged, used = _staged_jaxpr(closed, saved, out_unk)
    used_saved = used[n_in:]
    # known part: known outputs and the saved values the staged part uses (no residuals)
    n_known = sum(1 for u in out_unk if not u)
    kj, _ = core.dce_jaxpr(known_j.jaxpr, [True] * n_known + list(used_saved) + [False] * num_res)
    keep = set(kj.constvars)
    kconsts = [c for v, c in zip(known_j.jaxpr.constvars, known_j.consts) if v in keep]
    known_args = [a for a, u in zip(args, unknowns) if not u]
    with core.set_trace(trace.parent):
        kouts = _bind_closed(ClosedJaxpr(kj, kconsts), known_args, prevent_cse=params["prevent_cse"],
                             differentiated=params["differentiated"], policy=policy) \
            if kj.outvars else []
    known_outs, saved_vals = iter(kouts[:n_known]), list(kouts[n_known:])
    # staged part: the used inputs (known ones become residuals) and saved values
    if not any(out_unk):
        return list(known_outs)
    staged_args = [a for a, u in zip(list(args), used[:n_in]) if u] + saved_vals
    staged, extra = closure_convert(staged)
    invars = [trace.getvar(a) for a in list(extra) + staged_args]
    uouts = iter(trace.emit(checkpoint_p, invars, staged.out_avals,
                            {**params, "jaxpr": staged, "differentiated": True}))
    return [next(uouts) if u else next(known_outs) for u in out_unk]


def _transpose(cts, *args, jaxpr, prevent_cse, differentiated, policy):
    linear = [ad.is_undefined(a) for a in args]
    if all(type(c) is Zero for c in cts):
        return [None] * len(args)
    cts = [ad.zeros(c.aval) if type(c) is Zero else c for c in cts]
    t_closed = ad.transpose_jaxpr(jaxpr, linear)
    nonlin = [a for a, l in zip(args, linear) if not l]
    outs = iter(_bind_closed(t_closed, nonlin + cts, prevent_cse=prevent_cse,
                             differentiated=True, policy=policy))
    return [next(outs) if l else None for l in linear]


def _batch(args, dims, *, jaxpr, prevent_cse, differentiated, policy):
    size = batching.axis_size_of(args, dims)
    args = [a if d is None else batching.moveaxis(a, d, 0) for a, d in zip(args, dims)]
    # outputs that do not depend on batched inputs stay unbatched (jacfwd
    # relies on primal outputs staying unbatched under its tangent vmap)
    bj, out_b = batch_closed(jaxpr, size, [None if d is None else 0 for d in dims])
    outs = _bind_closed(bj, args, prevent_cse=prevent_cse, differentiated=differentiated,
                        policy=policy)
    return outs, [0 if b else None for b in out_b]


def _dce(eqn, used_outputs):
    closed = eqn.params["jaxpr"]
    if all(used_outputs):
        j, used_in = core.dce_jaxpr(closed.jaxpr, prune_invars=True)
    else:
        j, used_in = core.dce_jaxpr(closed.jaxpr, list(used_outputs), prune_invars=True)
    keep = set(j.constvars)
    consts = [c for v, c in zip(closed.jaxpr.constvars, closed.consts) if v in keep]
    return eqn.replace(invars=[x for x, u in zip(eqn.invars, used_in) if u],
                       outvars=[v for v, u in zip(eqn.outvars, used_outputs) if u],
                       params={**eqn.params, "jaxpr": ClosedJaxpr(j, consts)})


def _lower(ctx, *args, jaxpr, prevent_cse, differentiated, policy):
    if prevent_cse and differentiated and args:
        # keep XLA from merging the recomputation with the forward pass
        args = list(hlo.OptimizationBarrierOp(list(args)).results)
    return ctx.lower_sub_jaxpr(jaxpr, *args)


checkpoint_p = Primitive("checkpoint", multiple_results=True, abstract_eval=_abstract, jvp=_jvp,
                         transpose=_transpose, batch=_batch, lower=_lower, linear=False,
                         partial_eval=_partial_eval, dce=_dce)
checkpoint_p.eager = lambda args, params: eval_closed_eager(args, params, "jaxpr")
checkpoint_p.impl = impl_from_eager(checkpoint_p)
