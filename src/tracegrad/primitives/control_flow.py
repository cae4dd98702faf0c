"""Structured control flow: cond_p, while_p and scan_p.

Each primitive carries closed jaxprs in its params. The user-facing
functions (tracegrad.lax) turn every constant a traced function closed over
(including tracers of enclosing transformations) into an explicit operand, so
the jaxprs in params only ever hold concrete constants and every
transformation sees everything the bodies depend on.

Operands and params:
  cond_p(index, *ops, branches)                 index int32 scalar, in range;
      each branch: ops -> outs
  while_p(*cond_consts, *body_consts, *init, body_jaxpr, body_nconsts,
          cond_jaxpr, cond_nconsts)
      cond_jaxpr: (cond_consts, carry) -> bool[]; body_jaxpr: (body_consts, carry) -> carry
  scan_p(*consts, *init, *xs, jaxpr, length, num_carry, num_consts, reverse, unroll)
      jaxpr: (consts, carry, x) -> (carry, y); xs/ys carry the scan axis first

Transformations rewrite the carried jaxprs (ad.jvp_jaxpr, partial_eval_jaxpr,
backward_pass, a batch trace) and bind the same primitive again; reverse mode
works through cond and scan (scan saves per-iteration residuals as stacked
outputs of the known scan); through while_loop it is an error, as in JAX.
"""
from __future__ import annotations

import numpy as np
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo as hlo

from .. import core, dtypes
from ..core import Array, ClosedJaxpr, Jaxpr, Primitive, ShapedArray, Tracer, Var, get_aval, set_trace
from ..interpreters import ad, batching, lowering, numpy_program
from ..interpreters import partial_eval as pe
from ..interpreters.ad import UndefinedPrimal, Zero, is_undefined
from ..interpreters.numpy_program import conform

# --------------------------------------------------------------------------
# jaxpr helpers


def _split(xs, *sizes):
    """Consecutive chunks of xs of the given sizes, plus the rest."""
    out, i = [], 0
    for s in sizes:
        out.append(list(xs[i:i + s]))
        i += s
    out.append(list(xs[i:]))
    return out


def _same_type(a, b):
    """Shape and dtype agree (weak_type is ignored, as JAX's typematch)."""
    return tuple(a.shape) == tuple(b.shape) and np.dtype(a.dtype) == np.dtype(b.dtype)


def _eval(closed, args):
    return core.eval_jaxpr(closed.jaxpr, closed.consts, *args)


def _run(closed, args):
    """Evaluate a closed jaxpr on NumPy values (cond's eager impl): from its
    second run on as a NumPy program."""
    prog = numpy_program.program(closed, once=True)
    if prog is None:
        return _eval(closed, args)
    with numpy_program.errstate(prog):
        return prog.run(*args)


def _with_vars(closed, invars=None, outvars=None):
    j = closed.jaxpr
    return ClosedJaxpr(Jaxpr(j.constvars, j.invars if invars is None else invars,
                             j.outvars if outvars is None else outvars, j.eqns), closed.consts)


def _permute_invars(closed, order):
    return _with_vars(closed, invars=[closed.jaxpr.invars[k] for k in order])


def _permute_outvars(closed, order):
    return _with_vars(closed, outvars=[closed.jaxpr.outvars[k] for k in order])


def _interleave(psizes, tsizes):
    """Order turning (p1, p2, ..., t1, t2, ...) into (p1, t1, p2, t2, ...)."""
    order, p, t = [], 0, sum(psizes)
    for ps, ts in zip(psizes, tsizes):
        order += range(p, p + ps)
        order += range(t, t + ts)
        p, t = p + ps, t + ts
    return order


def _dce(closed, used_outputs, keep_inputs=None):
    """Drop unused outputs and dead equations. Inputs kept: exactly
    `keep_inputs` if given (a superset of the used ones), else the used ones.
    Returns (closed, used_inputs)."""
    j, used_in = core.dce_jaxpr(closed.jaxpr, list(used_outputs))
    keep = used_in if keep_inputs is None else [bool(k) for k in keep_inputs]
    live = set(j.constvars)
    consts = [c for v, c in zip(closed.jaxpr.constvars, closed.consts) if v in live]
    invars = [v for v, k in zip(j.invars, keep) if k]
    return ClosedJaxpr(Jaxpr(j.constvars, invars, j.outvars, j.eqns), consts), used_in


def _is_float(aval):
    return dtypes.is_float(np.dtype(aval.dtype))


def _nonzero(t, x):
    """A tangent worth carrying: not a symbolic zero, of a float operand."""
    return type(t) is not Zero and _is_float(get_aval(x))


def _np_value(v, dtype):
    dtype = np.dtype(dtype)
    if dtype == dtypes.float0:
        return np.zeros(np.shape(v), dtypes.float0)
    if type(v) is Array:
        v = v.value
    return np.asarray(v, dtype)


def _stage(trace, prim, args, params):
    """Stage the whole equation (all outputs unknown) in a partial trace."""
    invars = [trace.getvar(a) for a in args]
    out_avals = prim.abstract([v.aval for v in invars], params, args)
    return trace.emit(prim, invars, out_avals, params)


def _transpose_closed(closed, linear, ct_nonzero, want):
    """Jaxpr (non-linear inputs..., nonzero output cts...) -> cts of the
    inputs flagged in `want` (zeros instantiated)."""
    in_avals, out_avals = closed.in_avals, closed.out_avals
    nonlin_avals = [a for a, l in zip(in_avals, linear) if not l]
    ct_avals = [a.tangent_aval() for a, nz in zip(out_avals, ct_nonzero) if nz]
    n = len(nonlin_avals)

    def fun(*args):
        nl, cts = iter(args[:n]), iter(args[n:])
        full = [UndefinedPrimal(a) if l else next(nl) for a, l in zip(in_avals, linear)]
        full_cts = [next(cts) if nz else Zero(a.tangent_aval()) for a, nz in zip(out_avals, ct_nonzero)]
        res = _backward(closed, full, full_cts)
        return [_instantiate_ct(c, a) for c, a, w in zip(res, in_avals, want) if w]

    return core.trace_to_jaxpr(fun, nonlin_avals + ct_avals)


def _backward(closed, args, cts):
    """Cotangents of all args (None for the defined ones): backward_pass_with_args
    returns them for the UndefinedPrimal args only."""
    lin = iter(ad.backward_pass_with_args(closed, args, cts))
    return [next(lin) if is_undefined(a) else None for a in args]


def _instantiate_ct(c, aval):
    if type(c) is Zero:
        return ad.zeros(aval.tangent_aval())
    return c


def _arg_value(a, prim):
    t = type(a)
    if t is Array:
        return a.value
    if t is np.ndarray:
        return a
    if isinstance(a, Tracer):
        raise core.leaked_tracer_error(a, prim)
    return np.asarray(a, get_aval(a).dtype)


def _install_eager(prim, out_avals):
    """Eager evaluation whose results get the weak types of the abstract
    outputs (the default eager rule derives one weak flag from the inputs)."""
    def eager(args, params):
        vals = [_arg_value(a, prim) for a in args]
        outs = prim.impl(*vals, **params)
        return [Array(o, a.weak_type) for o, a in zip(outs, out_avals(params))]
    prim.eager = eager


def _fmt(avals):
    return ", ".join(a.str_short() for a in avals)


# --------------------------------------------------------------------------
# cond


def _cond_out_avals(params):
    outs = [list(b.out_avals) for b in params["branches"]]
    return [a.update(weak_type=all(o[i].weak_type for o in outs)) for i, a in enumerate(outs[0])]


def _cond_impl(index, *ops, branches):
    i = min(max(int(index), 0), len(branches) - 1)
    br = branches[i]
    return [conform(o, a.dtype) for o, a in zip(_run(br, ops), br.out_avals)]


def _cond_abstract(index, *ops, branches):
    if not branches:
        raise TypeError("cond needs at least one branch")
    if index.shape != () or not dtypes.is_int(np.dtype(index.dtype)):
        raise TypeError(f"the branch index must be an integer scalar, got {index.str_short()}")
    outs0 = branches[0].out_avals
    for k, b in enumerate(branches):
        ins = b.in_avals
        if len(ins) != len(ops) or not all(map(_same_type, ins, ops)):
            raise TypeError(f"branch {k} takes ({_fmt(ins)}) but the operands are ({_fmt(ops)})")
        outs = b.out_avals
        if len(outs) != len(outs0) or not all(map(_same_type, outs, outs0)):
            raise TypeError(f"branch {k} returns ({_fmt(outs)}) but branch 0 returns ({_fmt(outs0)})")
    return _cond_out_avals(dict(branches=branches))


_cond_jvps: dict = {}


def _jvp_branches(branches, nz):
    """The branches' jvps with one set of nonzero output tangents."""
    nout = len(branches[0].out_avals)
    first = [ad.jvp_jaxpr(b, nz, instantiate_out=False) for b in branches]
    out_nz = [any(f[1][i] for f in first) for i in range(nout)]
    jbranches = tuple(j if list(onz) == out_nz else ad.jvp_jaxpr(b, nz, instantiate_out=out_nz)[0]
                      for b, (j, onz) in zip(branches, first))
    return jbranches, out_nz


def _cond_jvp(primals, tangents, branches):
    index, *ops = primals
    tops = tangents[1:]
    nz = [_nonzero(t, x) for t, x in zip(tops, ops)]
    nout = len(branches[0].out_avals)
    jbranches, out_nz = core.memo_by_jaxpr(_cond_jvps, branches, tuple(nz),
                                           lambda: _jvp_branches(branches, nz))
    tins = [t for t, n in zip(tops, nz) if n]
    outs = cond_p.bind(index, *ops, *tins, branches=jbranches)
    pouts, touts = outs[:nout], iter(outs[nout:])
    return pouts, [next(touts) if n else Zero(get_aval(p).tangent_aval()) for n, p in zip(out_nz, pouts)]


class _CondPePlan:
    """What _cond_partial_eval derives from the branches and which operands
    are unknown, independent of their values (memoized per branches)."""

    __slots__ = ("out_uk", "n_known", "known_only", "kbranches", "ubranches", "fwd_ops",
                 "n_res")


_cond_pe_plans: dict = {}


def _cond_pe_plan(branches, uk, known_in):
    def compute():
        p = _CondPePlan()
        nout = len(branches[0].out_avals)
        first = [pe.partial_eval_jaxpr(b, uk) for b in branches]
        out_uk = [any(f[2][i] for f in first) for i in range(nout)]
        splits = [f if list(f[2]) == out_uk else pe.partial_eval_jaxpr(b, uk, instantiate=out_uk)
                  for b, f in zip(branches, first)]
        p.out_uk, p.n_known = out_uk, nout - sum(out_uk)
        p.known_only = None
        if not any(out_uk):  # unknowns feed no output: run the known halves, no residuals
            p.known_only = tuple(_dce(kj, [True] * p.n_known + [False] * nres,
                                      [True] * len(known_in))[0] for kj, _, _, nres in splits)
            return p
        # per branch: which residuals are known operands (forwarded), which are computed
        fwd = []
        for kj, _, _, nres in splits:
            pos = {v: i for i, v in enumerate(kj.jaxpr.invars)}
            outs = kj.jaxpr.outvars[len(kj.jaxpr.outvars) - nres:]
            fwd.append([pos.get(v) if type(v) is Var else None for v in outs])
        fwd_ops = sorted({k for f in fwd for k in f if k is not None})
        res_avals = [[a for a, k in zip(uj.in_avals[:nres], f) if k is None]
                     for (_, uj, _, nres), f in zip(splits, fwd)]

        kbranches, ubranches = [], []
        for b, ((kj, uj, _, nres), f) in enumerate(zip(splits, fwd)):
            def known_fun(*ka, kj=kj, nres=nres, f=f, b=b):
                outs = _eval(kj, ka)
                kouts, res = outs[:len(outs) - nres], outs[len(outs) - nres:]
                slots = []
                for b2, avals in enumerate(res_avals):
                    slots += ([r for r, k in zip(res, f) if k is None] if b2 == b
                              else [ad.zeros(a) for a in avals])
                return kouts + slots
            kbranches.append(core.trace_to_jaxpr(known_fun, list(known_in)))
            res_in, rest = uj.jaxpr.invars[:nres], uj.jaxpr.invars[nres:]
            own_fwd = {k: v for v, k in zip(res_in, f) if k is not None}
            new_invars = [own_fwd[k] if k in own_fwd else Var(known_in[k]) for k in fwd_ops]
            for b2, avals in enumerate(res_avals):
                new_invars += ([v for v, k in zip(res_in, f) if k is None] if b2 == b
                               else [Var(a) for a in avals])
            ubranches.append(_with_vars(uj, invars=new_invars + rest))
        p.kbranches, p.ubranches = tuple(kbranches), tuple(ubranches)
        p.fwd_ops, p.n_res = fwd_ops, sum(map(len, res_avals))
        return p
    return core.memo_by_jaxpr(_cond_pe_plans, branches, (tuple(uk), tuple(known_in)), compute)


def _cond_partial_eval(trace, args, params):
    """Known operands and index: the known halves of the branches run now,
    each also returning its residuals (zeros in the other branches' residual
    slots); the unknown halves are staged as a second cond. Residuals that
    are known operands themselves are passed straight to the staged cond."""
    branches = params["branches"]
    index, *ops = args
    if trace.is_own(index):
        return _stage(trace, cond_p, args, params)
    uk = [trace.is_own(a) for a in ops]
    kargs = [a for a, u in zip(ops, uk) if not u]
    plan = _cond_pe_plan(branches, uk, [get_aval(a) for a in kargs])
    n_known = plan.n_known
    if plan.known_only is not None:
        with set_trace(trace.parent):
            return cond_p.bind(index, *kargs, branches=plan.known_only) if n_known else []
    kouts = []
    if n_known or plan.n_res:
        with set_trace(trace.parent):
            kouts = cond_p.bind(index, *kargs, branches=plan.kbranches)
    known_outs, res = kouts[:n_known], kouts[n_known:]
    uparams = dict(params, branches=plan.ubranches)
    uargs = ([index] + [kargs[k] for k in plan.fwd_ops] + list(res)
             + [a for a, u in zip(ops, uk) if u])
    uouts = trace.emit(cond_p, [trace.getvar(a) for a in uargs], _cond_out_avals(uparams), uparams)
    ki, ui = iter(known_outs), iter(uouts)
    return [next(ui) if u else next(ki) for u in plan.out_uk]


_cond_transposes: dict = {}


def _cond_transpose(cts, index, *ops, branches):
    if is_undefined(index):
        raise TypeError("cond is not linear in its branch index")
    cts = list(cts)
    ct_nz = [type(c) is not Zero for c in cts]
    lin = [is_undefined(x) for x in ops]
    want = [l and _is_float(x.aval) for x, l in zip(ops, lin)]
    if not any(ct_nz) or not any(want):
        return [None] * (1 + len(ops))
    tbranches = core.memo_by_jaxpr(
        _cond_transposes, branches, (tuple(lin), tuple(ct_nz), tuple(want)),
        lambda: tuple(_transpose_closed(b, lin, ct_nz, want) for b in branches))
    nonlin = [x for x, l in zip(ops, lin) if not l]
    outs = iter(cond_p.bind(index, *nonlin, *[c for c in cts if type(c) is not Zero],
                            branches=tbranches))
    return [None] + [next(outs) if w else None for w in want]


def _cond_batch(args, dims, branches):
    index, *ops = args
    idim, *odims = dims
    size = batching.axis_size_of(args, dims)
    ops0 = [x if d is None else batching.moveaxis(x, d, 0) for x, d in zip(ops, odims)]
    in_b = [d is not None for d in odims]
    nout = len(branches[0].out_avals)
    if idim is not None:
        # a batched index: every branch runs on all lanes, then each lane
        # selects its branch's result (as JAX, cond becomes select_n)
        from .elementwise import convert, select_n_p
        from .shapes import broadcast_in_dim_p
        idx = convert(batching.moveaxis(index, idim, 0), dtypes.int32)
        dims0 = [0 if b else None for b in in_b]
        bouts = [batching.vmap_flat(lambda *xs, b=b: _eval(b, xs), ops0, dims0, [0] * nout, size)
                 for b in branches]
        outs = []
        for j in range(nout):
            cases = [bo[j] for bo in bouts]
            shape = get_aval(cases[0]).shape
            pred = idx if shape == (size,) else broadcast_in_dim_p.bind(
                idx, shape=shape, broadcast_dimensions=(0,))
            outs.append(select_n_p.bind(pred, *cases))
        return outs, [0] * nout
    first = [batching.batch_jaxpr(b, size, in_b, [False] * nout) for b in branches]
    out_b = [any(f[1][j] for f in first) for j in range(nout)]
    bbranches = tuple(f[0] if f[1] == out_b else batching.batch_jaxpr(b, size, in_b, out_b)[0]
                      for b, f in zip(branches, first))
    outs = cond_p.bind(index, *ops0, branches=bbranches)
    return outs, [0 if b else None for b in out_b]


def _cond_lower(ctx, index, *ops, branches):
    if len(branches) == 1:
        return ctx.lower_sub_jaxpr(branches[0], *ops)
    ia = ctx.avals_in[0]
    if np.dtype(ia.dtype) != np.int32:
        index = lowering.convert(index, ia, ShapedArray((), np.dtype(np.int32)))
    op = hlo.CaseOp([lowering.ir_type(a) for a in ctx.avals_out], index, len(branches))
    for region, b in zip(op.branches, branches):
        ctx.lower_region(region, b, captured=ops)
    return list(op.results)


_cond_dces: dict = {}


def _cond_dce(eqn, used_outputs):
    branches = eqn.params["branches"]
    index, ops = eqn.invars[0], eqn.invars[1:]

    def compute():
        used_in = [False] * len(ops)
        for b in branches:
            _, u = _dce(b, used_outputs)
            used_in = [a or c for a, c in zip(used_in, u)]
        return tuple(_dce(b, used_outputs, keep_inputs=used_in)[0] for b in branches), used_in
    new, used_in = core.memo_by_jaxpr(_cond_dces, branches, tuple(used_outputs), compute)
    return eqn.replace(invars=[index] + [v for v, u in zip(ops, used_in) if u],
                       outvars=[v for v, u in zip(eqn.outvars, used_outputs) if u],
                       params=dict(eqn.params, branches=new))


cond_p = Primitive("cond", impl=_cond_impl, abstract_eval=_cond_abstract, jvp=_cond_jvp,
                   transpose=_cond_transpose, batch=_cond_batch, lower=_cond_lower,
                   multiple_results=True, linear=True, partial_eval=_cond_partial_eval,
                   dce=_cond_dce)
_install_eager(cond_p, _cond_out_avals)


def _cond_step(eqn):
    """cond inside a NumPy program: its branches' programs, found once.
    (Their results have the branch dtypes: each checks its own first run.)"""
    progs = [numpy_program.program(b) for b in eqn.params["branches"]]
    if any(p is None for p in progs):
        return None
    runs, last = [p.run for p in progs], len(progs) - 1

    def cond(index, *ops):
        return runs[min(max(int(index), 0), last)](*ops)
    return cond, {}, any(p.quiet for p in progs)


numpy_program.SPECIAL["cond"] = _cond_step


# --------------------------------------------------------------------------
# while


def _while_out_avals(params):
    return list(params["body_jaxpr"].out_avals)


def _while_split(args, params):
    return _split(args, params["cond_nconsts"], params["body_nconsts"])


def _while_impl(*args, body_jaxpr, body_nconsts, cond_jaxpr, cond_nconsts):
    cc, bc, carry = _split(args, cond_nconsts, body_nconsts)
    out_avals = body_jaxpr.out_avals
    cprog, bprog = numpy_program.program(cond_jaxpr), numpy_program.program(body_jaxpr)
    if cprog is None or bprog is None:  # (an equation without a NumPy impl)
        while bool(_np_value(_eval(cond_jaxpr, cc + carry)[0], np.bool_)):
            carry = [_np_value(o, a.dtype) for o, a in zip(_eval(body_jaxpr, bc + carry), out_avals)]
    else:  # the programs' results already have the body's dtypes
        with numpy_program.errstate(cprog), numpy_program.errstate(bprog):
            # the first iteration checks the programs; the rest is one
            # generated loop once that pays (or was compiled before)
            n = 0
            while cprog.run(*cc, *carry)[0]:
                carry = bprog.run(*bc, *carry)
                n += 1
                loop = bprog.while_loop(cprog, new=n >= numpy_program.COMPILE_AFTER)
                if loop is not None:
                    carry = loop(*cc, *bc, *carry)
                    break
    return [conform(c, a.dtype) for c, a in zip(carry, out_avals)]


def _while_abstract(*avals, body_jaxpr, body_nconsts, cond_jaxpr, cond_nconsts):
    cc, bc, carry = _split(avals, cond_nconsts, body_nconsts)
    cin = cond_jaxpr.in_avals
    if len(cin) != len(cc) + len(carry) or not all(map(_same_type, cin, cc + carry)):
        raise TypeError(f"cond_jaxpr takes ({_fmt(cin)}) but gets ({_fmt(cc + carry)})")
    cout = cond_jaxpr.out_avals
    if len(cout) != 1 or cout[0].shape != () or np.dtype(cout[0].dtype) != np.bool_:
        raise TypeError(f"cond_fun must return a boolean scalar, got ({_fmt(cout)})")
    bin_ = body_jaxpr.in_avals
    if len(bin_) != len(bc) + len(carry) or not all(map(_same_type, bin_, bc + carry)):
        raise TypeError(f"body_jaxpr takes ({_fmt(bin_)}) but gets ({_fmt(bc + carry)})")
    bout = body_jaxpr.out_avals
    if len(bout) != len(carry) or not all(map(_same_type, bout, carry)):
        raise TypeError(f"body_fun returns ({_fmt(bout)}) but the carry is ({_fmt(carry)})")
    return list(bout)


def _add_unused_invars(closed, avals):
    return _with_vars(closed, invars=list(closed.jaxpr.invars) + [Var(a) for a in avals])


_while_jvps: dict = {}


def _while_jvp_jaxprs(body_jaxpr, cond_jaxpr, bc_nz, carry_nz, kt_avals):
    """(body jvp, cond taking the carry tangents too, carry_nz at the fixed
    point: a carry has a nonzero tangent if it starts with one or the body
    gives it one)."""
    carry_nz = list(carry_nz)
    while True:
        jb, out_nz = ad.jvp_jaxpr(body_jaxpr, list(bc_nz) + carry_nz, instantiate_out=carry_nz)
        new = [a or b for a, b in zip(carry_nz, out_nz)]
        if new == carry_nz:
            break
        carry_nz = new
    nb, nk = len(bc_nz), len(carry_nz)
    # jvp jaxpr: (bc, carry, bct, carryt) -> (carry, carryt); while wants consts first
    jb = _permute_invars(jb, _interleave([nb, nk], [sum(bc_nz), sum(carry_nz)]))
    cj = _add_unused_invars(cond_jaxpr, [a for a, n in zip(kt_avals, carry_nz) if n])
    return jb, cj, tuple(carry_nz)


def _while_jvp(primals, tangents, body_jaxpr, body_nconsts, cond_jaxpr, cond_nconsts):
    cc, bc, init = _split(primals, cond_nconsts, body_nconsts)
    _, bct, initt = _split(tangents, cond_nconsts, body_nconsts)
    bc_nz = [_nonzero(t, x) for t, x in zip(bct, bc)]
    carry_nz = [_nonzero(t, x) for t, x in zip(initt, init)]
    if not any(bc_nz) and not any(carry_nz):
        outs = while_p.bind(*primals, body_jaxpr=body_jaxpr, body_nconsts=body_nconsts,
                            cond_jaxpr=cond_jaxpr, cond_nconsts=cond_nconsts)
        return outs, [Zero(get_aval(o).tangent_aval()) for o in outs]
    kt_avals = tuple(get_aval(x).tangent_aval() for x in init)
    jb, cj, carry_nz = core.memo_by_jaxpr(
        _while_jvps, (body_jaxpr, cond_jaxpr), (tuple(bc_nz), tuple(carry_nz), kt_avals),
        lambda: _while_jvp_jaxprs(body_jaxpr, cond_jaxpr, bc_nz, carry_nz, kt_avals))
    nb, nk = len(bc), len(init)
    nbt = sum(bc_nz)
    tinit = [ad.zeros(get_aval(x).tangent_aval()) if type(t) is Zero else t
             for t, x, n in zip(initt, init, carry_nz) if n]
    outs = while_p.bind(*cc, *bc, *[t for t, n in zip(bct, bc_nz) if n], *init, *tinit,
                        body_jaxpr=jb, body_nconsts=nb + nbt, cond_jaxpr=cj,
                        cond_nconsts=cond_nconsts)
    pouts, touts = outs[:nk], iter(outs[nk:])
    return pouts, [next(touts) if n else Zero(get_aval(p).tangent_aval())
                   for n, p in zip(carry_nz, pouts)]


def _while_partial_eval(trace, args, params):
    """Carries that depend only on known values run now in a known loop; the
    whole loop is staged again for the unknown carries (it recomputes the
    known ones, as JAX). Its transpose is an error (see _while_transpose)."""
    cj, bj = params["cond_jaxpr"], params["body_jaxpr"]
    cc, bc, init = _while_split(args, params)
    cc_uk = [trace.is_own(a) for a in cc]
    bc_uk = [trace.is_own(a) for a in bc]
    carry_uk = [trace.is_own(a) for a in init]
    while True:
        _, _, out_uk, _ = pe.partial_eval_jaxpr(bj, bc_uk + carry_uk)
        new = [a or b for a, b in zip(carry_uk, out_uk)]
        if new == carry_uk:
            break
        carry_uk = new
    ck, _, pred_uk, _ = pe.partial_eval_jaxpr(cj, cc_uk + carry_uk)
    if pred_uk[0] or all(carry_uk):
        return _stage(trace, while_p, args, params)
    ck, _ = _dce(ck, [True] + [False] * (len(ck.out_avals) - 1), [True] * len(ck.in_avals))
    bk = pe.partial_eval_jaxpr(bj, bc_uk + carry_uk, instantiate=carry_uk)[0]
    nk_known = len(carry_uk) - sum(carry_uk)
    bk, _ = _dce(bk, [True] * nk_known + [False] * (len(bk.out_avals) - nk_known),
                 [True] * len(bk.in_avals))
    kcc = [a for a, u in zip(cc, cc_uk) if not u]
    kbc = [a for a, u in zip(bc, bc_uk) if not u]
    kinit = [a for a, u in zip(init, carry_uk) if not u]
    with set_trace(trace.parent):
        kouts = while_p.bind(*kcc, *kbc, *kinit, body_jaxpr=bk, body_nconsts=len(kbc),
                             cond_jaxpr=ck, cond_nconsts=len(kcc))
    if not any(carry_uk):
        return kouts
    uouts = _stage(trace, while_p, args, params)
    ki = iter(kouts)
    return [uo if u else next(ki) for uo, u in zip(uouts, carry_uk)]


def _while_transpose(cts, *args, **params):
    raise core.TracegradError(
        "Reverse-mode differentiation does not work for lax.while_loop or lax.fori_loop "
        "with dynamic start/stop values (the number of iterations is not known when the "
        "program is traced, so the residuals of each iteration cannot be saved).\n"
        "  Try lax.scan, or lax.fori_loop with static (Python int) start/stop values; "
        "forward mode (jvp, jacfwd) does work through while_loop.\n"
        f"  at {core.user_frame()}")


def _while_batch(args, dims, body_jaxpr, body_nconsts, cond_jaxpr, cond_nconsts):
    size = batching.axis_size_of(args, dims)
    cc, bc, init = _split(args, cond_nconsts, body_nconsts)
    ccd, bcd, initd = _split(dims, cond_nconsts, body_nconsts)
    cc_b = [d is not None for d in ccd]
    bc_b = [d is not None for d in bcd]
    carry_b = [d is not None for d in initd]
    n = len(init)
    while True:
        _, out_b = batching.batch_jaxpr(body_jaxpr, size, bc_b + carry_b, [False] * n)
        new = [a or b for a, b in zip(carry_b, out_b)]
        if new == carry_b:
            break
        carry_b = new
    pred_b = batching.batch_jaxpr(cond_jaxpr, size, cc_b + carry_b, [False])[1][0]
    to0 = lambda x, d: x if d is None else batching.moveaxis(x, d, 0)
    cc0 = [to0(x, d) for x, d in zip(cc, ccd)]
    bc0 = [to0(x, d) for x, d in zip(bc, bcd)]
    if pred_b:
        carry_b = [True] * n  # lanes finish at different times: all carries per lane
    init0 = [batching.bdim_at_front(x, d, size) if b else x for x, d, b in zip(init, initd, carry_b)]
    cjb, _ = batching.batch_jaxpr(cond_jaxpr, size, cc_b + carry_b, [pred_b])
    bjb, _ = batching.batch_jaxpr(body_jaxpr, size, bc_b + carry_b, carry_b)
    if not pred_b:
        outs = while_p.bind(*cc0, *bc0, *init0, body_jaxpr=bjb, body_nconsts=len(bc0),
                            cond_jaxpr=cjb, cond_nconsts=len(cc0))
        return outs, [0 if b else None for b in carry_b]
    # batched predicate: loop while any lane runs; finished lanes keep their carry
    ncc, nbc = len(cc0), len(bc0)
    cc_avals = [get_aval(x) for x in cc0]
    bc_avals = [get_aval(x) for x in bc0]
    carry_avals = [get_aval(x) for x in init0]

    def new_cond(*a):
        return [_any(_eval(cjb, a)[0])]

    def new_body(*a):
        ccv, bcv, carry = _split(a, ncc, nbc)
        pred = _eval(cjb, ccv + carry)[0]
        new = _eval(bjb, bcv + carry)
        return [_select_lanes(pred, nw, old) for nw, old in zip(new, carry)]

    cj2 = core.trace_to_jaxpr(new_cond, cc_avals + carry_avals)
    bj2 = core.trace_to_jaxpr(new_body, cc_avals + bc_avals + carry_avals)
    outs = while_p.bind(*cc0, *cc0, *bc0, *init0, body_jaxpr=bj2, body_nconsts=ncc + nbc,
                        cond_jaxpr=cj2, cond_nconsts=ncc)
    return outs, [0] * n


def _any(pred):
    """any() of a boolean vector, from primitives we have."""
    from .elementwise import convert, gt_p
    from .reductions import reduce_sum_p
    s = reduce_sum_p.bind(convert(pred, dtypes.int32), axes=(0,))
    return gt_p.bind(s, np.int32(0))


def _select_lanes(pred, new, old):
    from .elementwise import select_n_p
    from .shapes import broadcast_in_dim_p
    shape = get_aval(new).shape
    if shape != get_aval(pred).shape:
        pred = broadcast_in_dim_p.bind(pred, shape=shape, broadcast_dimensions=(0,))
    return select_n_p.bind(pred, old, new)


def _while_lower(ctx, *args, body_jaxpr, body_nconsts, cond_jaxpr, cond_nconsts):
    cc, bc, init = _split(args, cond_nconsts, body_nconsts)
    carry_avals = ctx.avals_in[cond_nconsts + body_nconsts:]
    op = hlo.WhileOp([lowering.ir_type(a) for a in carry_avals], list(init))
    ctx.lower_region(op.cond, cond_jaxpr, captured=cc, arg_avals=carry_avals)
    ctx.lower_region(op.body, body_jaxpr, captured=bc, arg_avals=carry_avals)
    return list(op.results)


def _while_dce(eqn, used_outputs):
    p = eqn.params
    cj, bj, ncc, nbc = p["cond_jaxpr"], p["body_jaxpr"], p["cond_nconsts"], p["body_nconsts"]
    cc, bc, init = _split(eqn.invars, ncc, nbc)
    _, cond_used = _dce(cj, [True])
    cc_used, cond_carry_used = cond_used[:ncc], cond_used[ncc:]
    used = [a or b for a, b in zip(used_outputs, cond_carry_used)]
    while True:
        _, body_used = _dce(bj, used)
        new = [a or b for a, b in zip(used, body_used[nbc:])]
        if new == used:
            break
        used = new
    bc_used = body_used[:nbc]
    new_bj, _ = _dce(bj, used, keep_inputs=bc_used + used)
    new_cj, _ = _dce(cj, [True], keep_inputs=cc_used + used)
    invars = ([v for v, u in zip(cc, cc_used) if u] + [v for v, u in zip(bc, bc_used) if u]
              + [v for v, u in zip(init, used) if u])
    params = dict(p, body_jaxpr=new_bj, body_nconsts=sum(bc_used), cond_jaxpr=new_cj,
                  cond_nconsts=sum(cc_used))
    return eqn.replace(invars=invars, outvars=[v for v, u in zip(eqn.outvars, used) if u],
                       params=params)


while_p = Primitive("while", impl=_while_impl, abstract_eval=_while_abstract, jvp=_while_jvp,
                    transpose=_while_transpose, batch=_while_batch, lower=_while_lower,
                    multiple_results=True, partial_eval=_while_partial_eval, dce=_while_dce,
                    not_linear_reason="reverse-mode differentiation of a loop with a dynamic "
                                      "trip count; use lax.scan or fori_loop with static bounds")
_install_eager(while_p, _while_out_avals)


# --------------------------------------------------------------------------
# scan


def _scan_out_avals(params):
    j, nk, length = params["jaxpr"], params["num_carry"], params["length"]
    outs = j.out_avals
    return list(outs[:nk]) + [a.update(shape=(length,) + tuple(a.shape)) for a in outs[nk:]]


def _scan_impl(*args, jaxpr, length, num_carry, num_consts, reverse, unroll):
    consts, carry, xs = _split(args, num_consts, num_carry)
    out_avals = jaxpr.out_avals
    carry_avals, y_avals = out_avals[:num_carry], out_avals[num_carry:]
    ys = [np.zeros((length,) + tuple(a.shape), a.dtype) for a in y_avals]
    prog = numpy_program.program(jaxpr)
    if prog is None:  # (an equation without a NumPy impl)
        for k in range(length):
            i = length - 1 - k if reverse else k
            outs = _eval(jaxpr, consts + carry + [x[i] for x in xs])
            carry = [_np_value(o, a.dtype) for o, a in zip(outs[:num_carry], carry_avals)]
            for y, o, a in zip(ys, outs[num_carry:], y_avals):
                if np.dtype(a.dtype) != dtypes.float0:
                    y[i] = _np_value(o, a.dtype)
    else:
        # the program's results already have the body's dtypes (0-d ones
        # may be NumPy scalars); float0 ys stay zeros
        live = [j for j, a in enumerate(y_avals) if np.dtype(a.dtype) != dtypes.float0]
        order = range(length - 1, -1, -1) if reverse else range(length)
        many = numpy_program.COMPILE_AFTER
        with numpy_program.errstate(prog):
            if order and not prog.checked:  # the first run checks the impls' dtypes
                # (with generated code if this body's loop was compiled before)
                seen = prog.scan_loop(num_consts, num_carry, live, new=False) is not None
                i = order[0]
                outs = prog.check_run([*consts, *carry, *[x[i] for x in xs]], seen)
                carry = outs[:num_carry]
                for j in live:
                    ys[j][i] = outs[num_carry + j]
                order = order[1:]
            if order:  # the loop as generated code, where that pays
                loop = prog.scan_loop(num_consts, num_carry, live,
                                      new=len(order) >= many or prog.runs >= many)
                if loop is not None:
                    carry = loop(*consts, *carry, *xs, *[ys[j] for j in live], order)
                else:
                    for i in order:
                        outs = prog.run(*consts, *carry, *[x[i] for x in xs])
                        carry = outs[:num_carry]
                        for j in live:
                            ys[j][i] = outs[num_carry + j]
    return [conform(c, a.dtype) for c, a in zip(carry, carry_avals)] + ys


def _scan_abstract(*avals, jaxpr, length, num_carry, num_consts, reverse, unroll):
    consts, carry, xs = _split(avals, num_consts, num_carry)
    for x in xs:
        if x.ndim == 0 or x.shape[0] != length:
            raise TypeError(f"scanned-over operand {x.str_short()} must have leading axis of "
                            f"length {length}")
    x_avals = [x.update(shape=tuple(x.shape[1:])) for x in xs]
    ins = jaxpr.in_avals
    expect = consts + carry + x_avals
    if len(ins) != len(expect) or not all(map(_same_type, ins, expect)):
        raise TypeError(f"the body takes ({_fmt(ins)}) but gets ({_fmt(expect)})")
    couts = jaxpr.out_avals[:num_carry]
    if len(couts) != len(carry) or not all(map(_same_type, couts, carry)):
        raise TypeError(f"the body returns carry ({_fmt(couts)}) but the carry is ({_fmt(carry)})")
    return _scan_out_avals(dict(jaxpr=jaxpr, num_carry=num_carry, length=length))


_jvp_bodies: dict = {}


def _jvp_body(jaxpr, nk, const_nz, carry_nz, xs_nz):
    """The body's jvp to the fixpoint of nonzero carry tangents, with inputs
    (consts, ct, carry, kt, xs, xt) and outputs (carry, kt, ys, yt):
    (jvp jaxpr, carry_nz, ys_nz), memoized per body (bodies are interned)."""
    def compute():
        cnz = list(carry_nz)
        ny = len(jaxpr.out_avals) - nk
        while True:
            jj, out_nz = ad.jvp_jaxpr(jaxpr, list(const_nz) + cnz + list(xs_nz),
                                      instantiate_out=cnz + [False] * ny)
            new = [a or b for a, b in zip(cnz, out_nz[:nk])]
            if new == cnz:
                break
            cnz = new
        ys_nz = list(out_nz[nk:])
        jj = _permute_invars(jj, _interleave([len(const_nz), nk, len(xs_nz)],
                                             [sum(const_nz), sum(cnz), sum(xs_nz)]))
        jj = _permute_outvars(jj, _interleave([nk, ny], [sum(cnz), sum(ys_nz)]))
        return jj, tuple(cnz), tuple(ys_nz)
    return core.memo_by_jaxpr(_jvp_bodies, jaxpr,
                              (nk, tuple(const_nz), tuple(carry_nz), tuple(xs_nz)), compute)


def _scan_jvp(primals, tangents, jaxpr, length, num_carry, num_consts, reverse, unroll):
    params = dict(jaxpr=jaxpr, length=length, num_carry=num_carry, num_consts=num_consts,
                  reverse=reverse, unroll=unroll)
    consts, init, xs = _split(primals, num_consts, num_carry)
    ct, it, xt = _split(tangents, num_consts, num_carry)
    const_nz = [_nonzero(t, x) for t, x in zip(ct, consts)]
    carry_nz = [_nonzero(t, x) for t, x in zip(it, init)]
    xs_nz = [_nonzero(t, x) for t, x in zip(xt, xs)]
    ny = len(jaxpr.out_avals) - num_carry
    if not any(const_nz + carry_nz + xs_nz):
        outs = scan_p.bind(*primals, **params)
        return outs, [Zero(get_aval(o).tangent_aval()) for o in outs]
    jj, carry_nz, ys_nz = _jvp_body(jaxpr, num_carry, const_nz, carry_nz, xs_nz)
    nc, nk = len(consts), len(init)
    nct, nkt = sum(const_nz), sum(carry_nz)
    tinit = [ad.zeros(get_aval(x).tangent_aval()) if type(t) is Zero else t
             for t, x, n in zip(it, init, carry_nz) if n]
    outs = scan_p.bind(*consts, *[t for t, n in zip(ct, const_nz) if n],
                       *init, *tinit, *xs, *[t for t, n in zip(xt, xs_nz) if n],
                       **dict(params, jaxpr=jj, num_carry=nk + nkt, num_consts=nc + nct))
    carry, carry_t, ys, ys_t = _split(outs, nk, nkt, ny)
    kt, yt = iter(carry_t), iter(ys_t)
    tout = ([next(kt) if n else Zero(get_aval(p).tangent_aval()) for n, p in zip(carry_nz, carry)]
            + [next(yt) if n else Zero(get_aval(p).tangent_aval()) for n, p in zip(ys_nz, ys)])
    return carry + ys, tout


def _variant_vars(jaxpr, variant_invars):
    """Vars of a jaxpr that depend on the given invars (per-iteration values)."""
    var = set(v for v, f in zip(jaxpr.invars, variant_invars) if f)
    for eqn in jaxpr.eqns:
        if any(type(v) is Var and v in var for v in eqn.invars):
            var.update(eqn.outvars)
    return var


def _split_body(jaxpr, const_uk, carry_uk, xs_uk, nk):
    """partial_eval_jaxpr of a scan body, to the fixpoint of unknown carries."""
    ny = len(jaxpr.out_avals) - nk
    while True:
        split = pe.partial_eval_jaxpr(jaxpr, const_uk + carry_uk + xs_uk,
                                      instantiate=carry_uk + [False] * ny)
        new = [a or b for a, b in zip(carry_uk, split[2][:nk])]
        if new == carry_uk:
            return split, carry_uk
        carry_uk = new


# ops whose recomputation costs more than storing their results
_COSTLY_TO_RECOMPUTE = frozenset({"dot_general", "conv_general_dilated", "scan", "while",
                                  "checkpoint", "custom_vjp_call", "sort"})


def _remat_pays(jaxpr, split, nc, const_uk, carry_uk):
    """Compiled reverse mode of a scan whose body is cheap elementwise work
    but leaves many per-iteration residuals (an LSTM cell: ~30 vectors per
    step) is bound by writing and re-reading those stacked residuals, not by
    arithmetic (jit(grad) of ADBench's LSTM: 7-21x its objective, in JAX
    too). Recomputing such a body in the backward loop from its known
    carries (what checkpoint does) is then 2-3x faster. Only when the body
    has no expensive ops, and the stacked residuals outweigh the carries
    that remat stacks instead by 4x or more."""
    if _has_costly_ops(jaxpr.jaxpr):
        return False
    known_j, _, _, num_res = split
    kj = known_j.jaxpr
    nkc = sum(1 for u in const_uk if not u)
    nkk = sum(1 for u in carry_uk if not u)
    variant = _variant_vars(kj, [False] * nkc + [True] * (len(kj.invars) - nkc))
    xs_in = set(kj.invars[nkc + nkk:])
    stacked = [r.aval for r in kj.outvars[len(kj.outvars) - num_res:]
               if type(r) is Var and r in variant and r not in xs_in]
    carries = [a for a, u in zip(jaxpr.in_avals[nc:nc + len(carry_uk)], carry_uk) if not u]
    nbytes = lambda avals: sum(a.size * np.dtype(a.dtype).itemsize for a in avals)  # noqa: E731
    return nbytes(stacked) >= 4 * max(nbytes(carries), 1)


def _inner_jaxprs(eqn):
    """The jaxprs an equation's params carry (bodies, branches)."""
    for v in eqn.params.values():
        for sub in (v if isinstance(v, (tuple, list)) else (v,)):
            inner = getattr(sub, "jaxpr", None)
            if isinstance(inner, Jaxpr):
                yield inner


def _has_costly_ops(jaxpr, costly=_COSTLY_TO_RECOMPUTE):
    """Whether the jaxpr (nested ones included) binds any of `costly`."""
    return any(e.primitive.name in costly or any(_has_costly_ops(j, costly)
                                                 for j in _inner_jaxprs(e))
               for e in jaxpr.eqns)


def _checkpointed(jaxpr):
    """The body as one checkpoint equation (its residuals: the body's inputs)."""
    from ..checkpoint import _bind_closed
    return core.trace_to_jaxpr(
        lambda *a: _bind_closed(jaxpr, list(a), prevent_cse=False, differentiated=False, policy=None),
        list(jaxpr.in_avals))


class _PePlan:
    """What _scan_partial_eval derives from the body and which operands are
    unknown, independent of their values (memoized per interned body)."""

    __slots__ = ("carry_uk", "out_uk", "known_only", "kinds", "inv_j", "body_k", "nkc",
                 "nkk", "n_kout", "body_u", "n_res_c")


_pe_plans: dict = {}


def _pe_plan(jaxpr, nc, nk, const_uk, carry_uk, xs_uk, staged):
    def compute():
        p = _PePlan()
        body = jaxpr
        split, cuk = _split_body(body, list(const_uk), list(carry_uk), list(xs_uk), nk)
        if staged and _remat_pays(body, split, nc, const_uk, cuk):
            body = _checkpointed(body)
            split, cuk = _split_body(body, list(const_uk), list(carry_uk), list(xs_uk), nk)
        known_j, unknown_j, out_uk, num_res = split
        p.carry_uk, p.out_uk = tuple(cuk), tuple(out_uk)
        p.known_only = None
        if not any(out_uk):  # unknowns feed no output: the known scan is all there is
            p.known_only, _ = _dce(known_j, [True] * (len(known_j.out_avals) - num_res)
                                   + [False] * num_res, [True] * len(known_j.in_avals))
            return p
        kj = known_j.jaxpr
        p.nkc = nkc = sum(1 for u in const_uk if not u)
        p.nkk = nkk = sum(1 for u in cuk if not u)
        p.n_kout = n_kout = len(kj.outvars) - num_res
        res_vars = kj.outvars[n_kout:]
        variant = _variant_vars(kj, [False] * nkc + [True] * (len(kj.invars) - nkc))
        const_pos = {v: i for i, v in enumerate(kj.invars[:nkc])}
        xs_pos = {v: i for i, v in enumerate(kj.invars[nkc + nkk:])}
        # residual kinds: ("const", i) known const operand; ("xs", i) known xs
        # operand; ("inv", None) loop-invariant, computed once; ("stack", None)
        kinds = []
        for r in res_vars:
            if type(r) is Var and r in const_pos:
                kinds.append(("const", const_pos[r]))
            elif type(r) is Var and r in xs_pos:
                kinds.append(("xs", xs_pos[r]))
            elif type(r) is not Var or r not in variant:
                kinds.append(("inv", None))
            else:
                kinds.append(("stack", None))
        p.kinds = kinds
        p.inv_j = None
        inv_outs = [r for r, (k, _) in zip(res_vars, kinds) if k == "inv"]
        if inv_outs:
            inv_j = _with_vars(known_j, outvars=inv_outs)
            p.inv_j, _ = _dce(inv_j, [True] * len(inv_outs),
                              [True] * nkc + [False] * (len(kj.invars) - nkc))
        stack_outs = [r for r, (k, _) in zip(res_vars, kinds) if k == "stack"]
        body_k = _with_vars(known_j, outvars=list(kj.outvars[:n_kout]) + stack_outs)
        p.body_k, _ = _dce(body_k, [True] * len(body_k.jaxpr.outvars), [True] * len(kj.invars))
        # the unknown body: invars (res..., uk consts, uk carry, uk xs) ->
        # consts (invariant res..., uk consts), carry, xs (stacked res..., uk xs)
        uinv = unknown_j.jaxpr.invars
        res_in, uk_in = uinv[:num_res], uinv[num_res:]
        uc_in, uk_carry_in, ux_in = _split(uk_in, sum(const_uk), sum(cuk))
        res_c_vars = [v for v, (k, _) in zip(res_in, kinds) if k in ("const", "inv")]
        res_x_vars = [v for v, (k, _) in zip(res_in, kinds) if k in ("xs", "stack")]
        p.body_u = _with_vars(unknown_j, invars=res_c_vars + uc_in + uk_carry_in + res_x_vars + ux_in)
        p.n_res_c = len(res_c_vars)
        return p
    return core.memo_by_jaxpr(_pe_plans, jaxpr, (nc, nk, tuple(const_uk), tuple(carry_uk),
                                                 tuple(xs_uk), staged), compute)


def _scan_partial_eval(trace, args, params):
    """The known part of the body runs now as a scan that also returns the
    residuals the unknown part needs: per-iteration ones stacked as extra ys;
    loop-invariant ones (consts, values computed from consts only) once,
    outside the loop; known xs forwarded. The unknown part is staged as a
    scan reading those residuals."""
    jaxpr, nc, nk = params["jaxpr"], params["num_consts"], params["num_carry"]
    consts, init, xs = _split(args, nc, nk)
    const_uk = [trace.is_own(a) for a in consts]
    carry_uk = [trace.is_own(a) for a in init]
    xs_uk = [trace.is_own(a) for a in xs]
    if all(const_uk + carry_uk + xs_uk):
        return _stage(trace, scan_p, args, params)
    plan = _pe_plan(jaxpr, nc, nk, const_uk, carry_uk, xs_uk,
                    isinstance(trace.parent, core.JaxprTrace))
    carry_uk = plan.carry_uk
    if all(const_uk) and all(carry_uk) and all(xs_uk):
        return _stage(trace, scan_p, args, params)
    if plan.known_only is not None:
        kargs = ([a for a, u in zip(consts, const_uk) if not u] + list(init)
                 + [a for a, u in zip(xs, xs_uk) if not u])
        with set_trace(trace.parent):
            return scan_p.bind(*kargs, **dict(params, jaxpr=plan.known_only,
                                              num_consts=nc - sum(const_uk)))
    ys_uk = plan.out_uk[nk:]
    kc = [a for a, u in zip(consts, const_uk) if not u]
    kinit = [a for a, u in zip(init, carry_uk) if not u]
    kxs = [a for a, u in zip(xs, xs_uk) if not u]
    inv_vals = []
    if plan.inv_j is not None:
        with set_trace(trace.parent):
            inv_vals = list(_eval(plan.inv_j, kc))
    kparams = dict(params, jaxpr=plan.body_k, num_consts=plan.nkc, num_carry=plan.nkk)
    with set_trace(trace.parent):
        kouts = scan_p.bind(*kc, *kinit, *kxs, **kparams)
    kcarry, kys, stacked = _split(kouts, plan.nkk, plan.n_kout - plan.nkk)

    res_c_vals, res_x_vals = [], []
    inv_it, stack_it = iter(inv_vals), iter(stacked)
    for k, i in plan.kinds:
        if k == "const":
            res_c_vals.append(kc[i])
        elif k == "inv":
            res_c_vals.append(next(inv_it))
        elif k == "xs":
            res_x_vals.append(kxs[i])
        else:
            res_x_vals.append(next(stack_it))
    uc = [a for a, u in zip(consts, const_uk) if u]
    uinit = [a for a, u in zip(init, carry_uk) if u]
    ux = [a for a, u in zip(xs, xs_uk) if u]
    nuk = sum(carry_uk)
    uparams = dict(params, jaxpr=plan.body_u, num_consts=plan.n_res_c + len(uc), num_carry=nuk)
    uargs = res_c_vals + uc + uinit + res_x_vals + ux
    uouts = trace.emit(scan_p, [trace.getvar(a) for a in uargs], _scan_out_avals(uparams), uparams)
    ucarry, uys = uouts[:nuk], uouts[nuk:]
    kci, uci, kyi, uyi = iter(kcarry), iter(ucarry), iter(kys), iter(uys)
    return ([next(uci) if u else next(kci) for u in carry_uk]
            + [next(uyi) if u else next(kyi) for u in ys_uk])


_transposed_bodies: dict = {}


def _transpose_body(jaxpr, num_consts, num_carry, c_lin, x_lin, y_nz, in_avals):
    """The backward scan's body: (residual consts, const cotangent
    accumulators, carry cotangents, residual xs, ys cotangents) ->
    (accumulators, carry cotangents, xs cotangents); memoized per body."""
    def compute():
        c_avals, k_avals, x_avals = _split(jaxpr.in_avals, num_consts, num_carry)
        out_avals = jaxpr.out_avals
        c_want = [l and _is_float(a) for l, a in zip(c_lin, c_avals)]
        x_want = [l and _is_float(a) for l, a in zip(x_lin, x_avals)]
        nrc = sum(1 for l in c_lin if not l)
        nacc, nkt = sum(c_want), len(k_avals)
        nrx = sum(1 for l in x_lin if not l)

        def body_t(*a):
            rc, acc, ctk, rx, cty = _split(a, nrc, nacc, nkt, nrx)
            rci, rxi = iter(rc), iter(rx)
            full = ([next(rci) if not l else UndefinedPrimal(av) for l, av in zip(c_lin, c_avals)]
                    + [UndefinedPrimal(av) for av in k_avals]
                    + [next(rxi) if not l else UndefinedPrimal(av)
                       for l, av in zip(x_lin, x_avals)])
            ctyi = iter(cty)
            full_cts = list(ctk) + [next(ctyi) if nz else Zero(av.tangent_aval())
                                    for nz, av in zip(y_nz, out_avals[num_carry:])]
            res = _backward(jaxpr, full, full_cts)
            rc_ct, rk_ct, rx_ct = _split(res, num_consts, num_carry)
            acci = iter(acc)
            new_acc = [ad.add_tangents(next(acci), _instantiate_ct(c, av) if type(c) is Zero else c)
                       for c, av, w in zip(rc_ct, c_avals, c_want) if w]
            new_k = [_instantiate_ct(c, av) for c, av in zip(rk_ct, k_avals)]
            new_x = [_instantiate_ct(c, av) for c, av, w in zip(rx_ct, x_avals, x_want) if w]
            return new_acc + new_k + new_x
        return core.trace_to_jaxpr(body_t, list(in_avals))
    key = (num_consts, num_carry, tuple(c_lin), tuple(x_lin), tuple(y_nz), tuple(in_avals))
    return core.memo_by_jaxpr(_transposed_bodies, jaxpr, key, compute)


def _scan_transpose(cts, *args, jaxpr, length, num_carry, num_consts, reverse, unroll):
    """A scan in the opposite direction over the transposed body: carries the
    cotangents of the carry and accumulates those of the linear consts; the
    cotangents of linear xs come out as its ys."""
    params = dict(jaxpr=jaxpr, length=length, num_carry=num_carry, num_consts=num_consts,
                  reverse=reverse, unroll=unroll)
    consts, init, xs = _split(args, num_consts, num_carry)
    ct_carry, ct_ys = _split(list(cts), num_carry)
    c_lin = [is_undefined(c) for c in consts]
    x_lin = [is_undefined(x) for x in xs]
    in_avals = jaxpr.in_avals
    c_avals, k_avals, x_avals = _split(in_avals, num_consts, num_carry)
    # all carries are linear: a known init feeding a linear carry is a zero
    c_want = [l and _is_float(a) for l, a in zip(c_lin, c_avals)]
    x_want = [l and _is_float(a) for l, a in zip(x_lin, x_avals)]
    y_nz = [type(c) is not Zero for c in ct_ys]
    if not any(y_nz) and all(type(c) is Zero for c in ct_carry):
        return [None] * len(args)
    res_c = [c for c, l in zip(consts, c_lin) if not l]
    res_x = [x for x, l in zip(xs, x_lin) if not l]
    acc_avals = [a.tangent_aval() for a, w in zip(c_avals, c_want) if w]
    kt_avals = [a.tangent_aval() for a in k_avals]
    out_avals = jaxpr.out_avals
    yt_avals = [a.tangent_aval() for a, nz in zip(out_avals[num_carry:], y_nz) if nz]
    nrc, nacc, nkt = len(res_c), len(acc_avals), len(kt_avals)
    res_c_avals = [get_aval(c) for c in res_c]
    res_x_avals = [get_aval(x).update(shape=tuple(get_aval(x).shape[1:])) for x in res_x]
    jt = _transpose_body(jaxpr, num_consts, num_carry, c_lin, x_lin, y_nz,
                         res_c_avals + acc_avals + kt_avals + res_x_avals + yt_avals)
    acc0 = [ad.zeros(a) for a in acc_avals]
    ctk0 = [ad.zeros(a.tangent_aval()) if type(c) is Zero else c for c, a in zip(ct_carry, k_avals)]
    outs = scan_p.bind(*res_c, *acc0, *ctk0, *res_x, *[c for c in ct_ys if type(c) is not Zero],
                       **dict(params, jaxpr=jt, num_consts=nrc, num_carry=nacc + nkt,
                              reverse=not reverse))
    acc_out, k_out, x_out = _split(outs, nacc, nkt)
    ai, xi = iter(acc_out), iter(x_out)
    return ([next(ai) if w else None for w in c_want]
            + [k if is_undefined(i) else None for k, i in zip(k_out, init)]
            + [next(xi) if w else None for w in x_want])


def _scan_batch(args, dims, jaxpr, length, num_carry, num_consts, reverse, unroll):
    params = dict(jaxpr=jaxpr, length=length, num_carry=num_carry, num_consts=num_consts,
                  reverse=reverse, unroll=unroll)
    size = batching.axis_size_of(args, dims)
    consts, init, xs = _split(args, num_consts, num_carry)
    cd, kd, xd = _split(dims, num_consts, num_carry)
    c_b = [d is not None for d in cd]
    carry_b = [d is not None for d in kd]
    x_b = [d is not None for d in xd]
    ny = len(jaxpr.out_avals) - num_carry
    while True:
        bj, out_b = batching.batch_jaxpr(jaxpr, size, c_b + carry_b + x_b, carry_b + [False] * ny)
        new = [a or b for a, b in zip(carry_b, out_b[:num_carry])]
        if new == carry_b:
            break
        carry_b = new
    consts0 = [x if d is None else batching.moveaxis(x, d, 0) for x, d in zip(consts, cd)]
    init0 = [batching.bdim_at_front(x, d, size) if b else x for x, d, b in zip(init, kd, carry_b)]
    # the scan axis stays first: batched xs carry their batch axis second
    xs1 = [x if d is None else batching.moveaxis(x, d, 1) for x, d in zip(xs, xd)]
    outs = scan_p.bind(*consts0, *init0, *xs1, **dict(params, jaxpr=bj))
    return outs, [0 if b else None for b in carry_b] + [1 if b else None for b in out_b[num_carry:]]


# ---- lowering: a while loop over the iteration index, slicing xs and
# updating stacked ys in place


def _i32(v):
    return lowering.constant(np.asarray(v, np.int32))


def _index_in_dim(x, aval, idx, zero):
    """x[idx] along the leading axis (idx, zero: i32 scalar values)."""
    sizes = [1] + list(aval.shape[1:])
    sl = hlo.DynamicSliceOp(x, [idx] + [zero] * (len(aval.shape) - 1), sizes).result
    return hlo.ReshapeOp(lowering.ir_type(aval.update(shape=tuple(aval.shape[1:]))), sl).result


def _update_in_dim(buf, aval, y, idx, zero):
    """buf[idx] = y along the leading axis."""
    y1 = hlo.ReshapeOp(lowering.ir_type(aval.update(shape=(1,) + tuple(aval.shape[1:]))), y).result
    return hlo.DynamicUpdateSliceOp(buf, y1, [idx] + [zero] * (len(aval.shape) - 1)).result


# Compiled loops that run backwards (reverse=True: the transposed loops of
# gradients) and that the user did not give an unroll factor run this many
# steps per XLA while iteration when their body is small elementwise work:
# XLA:CPU pays a fixed cost per iteration, which such a body does not hide.
# Measured (2-core CPU, ~1000-step loops, wall clock): unroll 4 made jit(grad)
# of the ADBench LSTMs 19-23% faster; 8 was slower than 4 and compiled
# several times longer; bodies of big arrays (the LSTM's jacfwd: 550k
# elements per step) got 2.3x slower. Bodies with a matmul stay rolled: a
# float32 tanh RNN (64x64 matvecs) ran 40% slower unrolled, though float64
# ones (the RK4 ODE) gained 10-28%. Bodies over either budget below stay
# rolled too (compile time grows with the unrolled size). Forward loops stay
# rolled (seventh session, on another host of the same VM kind): unrolled,
# no objective got faster and several slower (LSTM l=4,c=1024,b=64: 4.1 vs
# 3.2 ms, JAX's rolled loop 3.2-3.4 ms; l=4,b=14: 1.1-2.1x), while
# unrolling only the backward loop kept the gradients' gain (ADBench LSTM
# l2_c1024: 4.5 ms, rolled 5.4, both unrolled 4.4).
_AUTO_UNROLL = 4
_MATMULS = frozenset({"dot_general", "conv_general_dilated"})
_AUTO_UNROLL_MAX_EQNS = 2000       # equations of the unrolled body
_AUTO_UNROLL_MAX_ELEMENTS = 65536  # elements the body's equations produce per step


def _body_size(jaxpr):
    """(equations, elements of their results), nested jaxprs included."""
    n = elems = 0
    for e in jaxpr.eqns:
        n += 1
        elems += sum(v.aval.size for v in e.outvars)
        for inner in _inner_jaxprs(e):
            n2, e2 = _body_size(inner)
            n, elems = n + n2, elems + e2
    return n, elems


def _unroll_factor(unroll, jaxpr, length, reverse):
    """Steps per while iteration: the user's unroll, or (None) automatic."""
    if unroll is None:
        if not reverse or length < 2 * _AUTO_UNROLL:
            return 1
        if _has_costly_ops(jaxpr.jaxpr, _MATMULS):
            return 1
        n, elems = _body_size(jaxpr.jaxpr)
        small = (n * _AUTO_UNROLL <= _AUTO_UNROLL_MAX_EQNS
                 and elems <= _AUTO_UNROLL_MAX_ELEMENTS)
        return _AUTO_UNROLL if small else 1
    if isinstance(unroll, bool):
        return length if unroll else 1
    return max(1, min(int(unroll), length))


def _scan_lower(ctx, *args, jaxpr, length, num_carry, num_consts, reverse, unroll):
    consts, init, xs = _split(args, num_consts, num_carry)
    x_avals = ctx.avals_in[num_consts + num_carry:]
    carry_avals = ctx.avals_out[:num_carry]
    y_avals = ctx.avals_out[num_carry:]
    ys0 = [lowering.constant(np.zeros((), a.dtype) if np.dtype(a.dtype) != dtypes.float0
                             else np.zeros((), np.bool_), a) for a in y_avals]
    if length == 0:
        return list(init) + ys0
    u = _unroll_factor(unroll, jaxpr, length, reverse)
    # ys that are a step's incoming carry (a gradient's saved inputs) are
    # stored by the step before, as its outgoing carry, in a buffer one row
    # longer: the init goes in the row where the loop starts, the extra row
    # is sliced off after. Stored in the step itself, the old carry is read
    # after the new one is made, and XLA copied each such carry every
    # iteration (LSTM l=4 gradient: 9 copies per step).
    shifted = _carry_ys(jaxpr, num_consts, num_carry, y_avals)
    buf_avals = [a.update(shape=(length + 1,) + tuple(a.shape[1:])) if j in shifted else a
                 for j, a in enumerate(y_avals)]
    zero0 = _i32(0)
    for j, c in shifted.items():
        ys0[j] = _update_in_dim(lowering.constant(np.zeros((), y_avals[j].dtype), buf_avals[j]),
                                buf_avals[j], init[c], _i32(length if reverse else 0), zero0)

    def step(i, carry, ys):
        """One iteration at step counter i (an i32 scalar value)."""
        idx = hlo.SubtractOp(_i32(length - 1), i).result if reverse else i
        zero = _i32(0)  # the start of every other axis: one constant per step
        xsl = [_index_in_dim(x, a, idx, zero) for x, a in zip(xs, x_avals)]
        outs = ctx.lower_sub_jaxpr(jaxpr, *consts, *carry, *xsl)
        carry, y = outs[:num_carry], outs[num_carry:]
        # (a shifted y's step idx is the next step's input: buffer row idx+1
        # forwards; backwards row idx, the buffer counted from row 1)
        nxt = idx if reverse else hlo.AddOp(idx, _i32(1)).result
        ys = [_update_in_dim(b, a, carry[shifted[j]], nxt, zero) if j in shifted
              else _update_in_dim(b, a, v, idx, zero)
              for j, (b, a, v) in enumerate(zip(ys, buf_avals, y))]
        return carry, ys

    def loop(start, stop, u, carry, ys):
        """A while op running steps start..stop-1, u of them per iteration."""
        i32 = ShapedArray((), np.dtype(np.int32))
        types = [lowering.ir_type(a) for a in [i32] + list(carry_avals) + list(buf_avals)]
        op = hlo.WhileOp(types, [_i32(start)] + list(carry) + list(ys))
        cblock = op.cond.blocks.append(*types)
        with ir.InsertionPoint(cblock):
            hlo.ReturnOp([lowering.compare(cblock.arguments[0], _i32(stop), "LT", i32)])
        bblock = op.body.blocks.append(*types)
        with ir.InsertionPoint(bblock):
            i, c, y = _split(list(bblock.arguments), 1, num_carry)
            i = i[0]
            for k in range(u):
                c, y = step(i if k == 0 else hlo.AddOp(i, _i32(k)).result, c, y)
            hlo.ReturnOp([hlo.AddOp(i, _i32(u)).result] + list(c) + list(y))
        _, carry, ys = _split(list(op.results), 1, num_carry)
        return carry, ys

    n_loop = (length // u) * u  # steps run inside the rolled loop
    carry, ys, start = list(init), ys0, 0
    if n_loop // u > 1:
        carry, ys = loop(0, n_loop, u, carry, ys)
        start = n_loop
        if unroll is None and length - n_loop > 1:
            # the automatic factor's remainder: a one-step loop, not more copies
            carry, ys = loop(n_loop, length, 1, carry, ys)
            start = length
    for k in range(start, length):  # unrolled steps (full unroll or the remainder)
        carry, ys = step(_i32(k), carry, ys)
    lo = 1 if reverse else 0
    for j in shifted:
        a = y_avals[j]
        ys[j] = hlo.SliceOp(ys[j], [lo] + [0] * (len(a.shape) - 1),
                            [lo + length] + list(a.shape[1:]), [1] * len(a.shape)).result
    return list(carry) + list(ys)


def _carry_ys(jaxpr, num_consts, num_carry, y_avals):
    """{y position: carry position} for the body's ys that are its incoming
    carry unchanged (see _scan_lower)."""
    body = jaxpr.jaxpr
    carry_in = {id(v): c for c, v in enumerate(body.invars[num_consts:num_consts + num_carry])}
    out = {}
    for j, v in enumerate(body.outvars[num_carry:]):
        c = carry_in.get(id(v))
        if c is not None and np.dtype(y_avals[j].dtype) != dtypes.float0:
            out[j] = c
    return out


_dce_bodies: dict = {}


def _scan_dce(eqn, used_outputs):
    p = eqn.params
    j, nc, nk = p["jaxpr"], p["num_consts"], p["num_carry"]
    consts, init, xs = _split(eqn.invars, nc, nk)

    def compute():
        used_carry, used_ys = list(used_outputs[:nk]), list(used_outputs[nk:])
        while True:
            _, used_in = _dce(j, used_carry + used_ys)
            new = [a or b for a, b in zip(used_carry, used_in[nc:nc + nk])]
            if new == used_carry:
                break
            used_carry = new
        c_used, _, x_used = _split(used_in, nc, nk)
        new_j, _ = _dce(j, used_carry + used_ys, keep_inputs=c_used + used_carry + x_used)
        return new_j, c_used, used_carry, x_used, used_ys
    # (memoized: a body and its derived bodies keep one identity across calls)
    new_j, c_used, used_carry, x_used, used_ys = core.memo_by_jaxpr(
        _dce_bodies, j, (nc, nk, tuple(used_outputs)), compute)
    invars = ([v for v, u in zip(consts, c_used) if u] + [v for v, u in zip(init, used_carry) if u]
              + [v for v, u in zip(xs, x_used) if u])
    outvars = [v for v, u in zip(eqn.outvars, used_carry + used_ys) if u]
    return eqn.replace(invars=invars, outvars=outvars,
                       params=dict(p, jaxpr=new_j, num_consts=sum(c_used), num_carry=sum(used_carry)))


scan_p = Primitive("scan", impl=_scan_impl, abstract_eval=_scan_abstract, jvp=_scan_jvp,
                   transpose=_scan_transpose, batch=_scan_batch, lower=_scan_lower,
                   multiple_results=True, linear=True, partial_eval=_scan_partial_eval,
                   dce=_scan_dce)
_install_eager(scan_p, _scan_out_avals)
