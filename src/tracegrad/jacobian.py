"""tracegrad.jacobian: a Jacobian by forward or reverse mode, chosen from a
cost estimate made on the traced programs.

    J = tracegrad.jacobian(f)(x)                  # mode="auto"
    tracegrad.jacobian(f, explain=True)(x)        # also prints why
    tracegrad.jacobian_explain(f)(x)              # only the estimate (a JacobianChoice)

For f: R^n -> R^m (n, m: total sizes of the differentiated inputs and of the
outputs), jacfwd pushes the n basis tangents through the jvp program (the
primal part runs once, the tangent part once per basis vector, all batched
by vmap) and jacrev pulls the m basis cotangents back through the transposed
linearization (linearize once, transpose once per basis vector):

    fwd ~ cost(primal part of jvp)          + n * cost(tangent part of jvp)
    rev ~ cost(linearize: primal+residuals) + m * cost(transpose)

Both programs are traced to jaxprs (at the input shapes, nothing is run) and
split into the equations that depend on the tangent / cotangent input and
those that do not (through scan, while, cond, jit and custom-rule bodies, with
a fixpoint over loop carries). Each equation gets a small time model from its
abstract values (see `_eqn_seconds`): elementwise ops cost per element
(transcendentals more), dot_general per multiply-add (operands that do not
depend on the basis are read once), reductions per input element, data
movement per element, loops their body times the trip count. When running
eagerly each equation also costs a dispatch overhead, paid once because the
basis is batched by vmap, and larger for jacrev's program than for jacfwd's
(see the constants below); under jit (or any staging trace, including
make_jaxpr) it is dropped. Inside vmap the work is multiplied by the batch
size. The cheaper estimate wins; ties go to reverse mode when m == 1 and
forward mode otherwise. Estimates are cached per input signature.

On the benchmark suite (benchmarks/run_suite.py) the choice is scored against
the measured jacfwd/jacrev times: see benchmarks/README.md.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from . import core, dtypes
from .api import _dyn_args, jacfwd, jacrev
from .core import get_aval
from .interpreters import ad
from .tree_util import tree_flatten

__all__ = ["jacobian", "jacobian_explain", "JacobianChoice"]

# ---- the time model (seconds; measured on a 2-core x86 VM with single-threaded
# NumPy/OpenBLAS and XLA CPU). Eager transformations cost more per primitive
# than plain eager calls: jacfwd runs each one through a batch and a JVP
# trace, jacrev records it on the eager tape and then runs its pullback
# under a batch trace (the tape halved eager jacrev's cost per primitive).
_EAGER_EQN_FWD = 12e-6   # one primitive of the jvp program, eager jacfwd
_EAGER_EQN_REV = 8.5e-6  # one primitive of the vjp program, eager jacrev
# some primitives cost several times that eagerly (measured per equation):
# gathers run NumPy's fancy indexing on batched indices, dots may copy
_EAGER_WEIGHT_FWD = {"gather": 7.0, "dot_general": 1.9}
_EAGER_WEIGHT_REV = {"gather": 3.4, "scatter_add": 3.4, "dot_general": 2.2}
_EAGER_FIXED_FWD = 40e-6  # basis, flattening, vmap set-up per eager jacfwd call
# a one-vector basis is one plain jvp / taped vjp: no batch trace around it
_EAGER_SINGLE_FWD = 0.6   # x dispatch overhead when n == 1
_EAGER_SINGLE_REV = 0.67  # x dispatch overhead when m == 1
_EAGER_FIXED_REV = 30e-6
# inside an eager scan/while the (already transformed) body is evaluated
# primitive by primitive without tracing: the jvp body of jacfwd on batched
# tangents, jacrev's forward body unbatched and its transposed body
_EAGER_LOOP_EQN_FWD = 3e-6
_EAGER_LOOP_EQN_REV = 2.2e-6
_STAGED_EQN = 2e-9       # a compiled op (fused; keeps ties deterministic)
_JIT_CALL = 8e-6         # one compiled call from eager code
_LOOP_ITER_EAGER = 2e-6  # eager scan/while bookkeeping per iteration
_LOOP_ITER_STAGED = 5e-8
_ELEM = 0.3e-9           # per output element: add, mul, select, compare, ...
_TRANSC = 1.5e-9         # per output element: exp, log, tanh, sin, ...
_MOVE = 0.3e-9           # per element moved: slice, broadcast, transpose, gather, ...
_REDUCE = 0.3e-9         # per input element
_FMA = 5e-11             # per multiply-add in dot_general / conv

_TRANSCENDENTAL = frozenset(
    "exp exp2 expm1 log log1p tanh logistic sin cos tan asin acos atan atan2 sinh cosh "
    "asinh acosh atanh pow sqrt rsqrt cbrt erf erf_inv lgamma digamma".split())
_FREE = frozenset("reshape squeeze convert_element_type stop_gradient".split())
_MOVES = frozenset("broadcast_in_dim transpose slice concatenate pad rev gather dynamic_slice "
                   "dynamic_update_slice iota copy select_and_gather_add".split())
_REDUCES = frozenset("reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or argmax "
                     "argmin cumsum cumprod cummax cummin reduce_window".split())


@dataclass
class _Cost:
    once: float = 0.0       # seconds of work that does not depend on the basis vector
    per: float = 0.0        # seconds of work per basis vector
    overhead: float = 0.0   # dispatch overhead (paid once: the basis is batched)
    eqns_once: int = 0
    eqns_per: int = 0

    def add(self, o, times=1):
        self.once += o.once * times
        self.per += o.per * times
        self.overhead += o.overhead * times
        self.eqns_once += o.eqns_once
        self.eqns_per += o.eqns_per


def _size(aval):
    return int(np.prod(aval.shape, dtype=np.int64)) if aval.shape else 1


def _out_size(eqn):
    return sum(_size(v.aval) for v in eqn.outvars if hasattr(v.aval, "shape"))


def _in_size(eqn):
    return sum(_size(v.aval) for v in eqn.invars if hasattr(v.aval, "shape"))


def _eqn_seconds(eqn, ins):
    """(once, per) seconds of one equation (without dispatch overhead), from
    its avals; ins[i] says whether operand i depends on the basis vector.
    Work on operands that do not (a weight matrix in a batched matmul) is
    paid once, not per basis vector."""
    name = eqn.primitive.name
    out = _out_size(eqn)
    dep = any(ins)

    def split(work):
        return (0.0, work) if dep else (work, 0.0)

    if name in _FREE:
        return 0.0, 0.0
    if name == "dot_general":
        (lc, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval
        k = int(np.prod([lhs.shape[d] for d in lc], dtype=np.int64)) if lc else 1
        reads = [_size(v.aval) * _MOVE for v in eqn.invars]
        if not dep:
            return out * k * _FMA + out * _MOVE + sum(reads), 0.0
        once = sum(r for r, d in zip(reads, ins) if not d)
        return once, out * k * _FMA + out * _MOVE + sum(r for r, d in zip(reads, ins) if d)
    if name == "conv_general_dilated":
        rhs = eqn.invars[1].aval
        out_feat = max(max(rhs.shape) if rhs.shape else 1, 1)
        return split(out * (_size(rhs) / out_feat) * _FMA)
    if name in _TRANSCENDENTAL:
        return split(out * _TRANSC)
    if name in _MOVES:
        return split(out * _MOVE)
    if name in _REDUCES:
        return split(_in_size(eqn) * _REDUCE)
    if name.startswith("scatter") or name == "select_and_scatter_add":
        upd = _size(eqn.invars[-1].aval)
        return split(upd * 2 * _ELEM + out * _MOVE)
    if name == "sort":
        n = max(_in_size(eqn), 2)
        return split(n * np.log2(n) * _ELEM)
    return split(out * _ELEM)


def _closed_params(eqn):
    return [(k, v) for k, v in eqn.params.items() if isinstance(v, core.ClosedJaxpr)]


class _Model:
    def __init__(self, eager_eqn, loop_eqn, weights=None):
        self.eager_eqn = eager_eqn
        self.loop_eqn = loop_eqn
        self.weights = weights or {}

    def eqn_overhead(self, staged, name=None):
        if staged:
            return _STAGED_EQN
        return self.eager_eqn * self.weights.get(name, 1.0)

    def jaxpr(self, jaxpr, dep_in, staged):
        """(cost, dep_out) of a Jaxpr whose invars depend on the basis vector
        where dep_in is True."""
        dep = {v for v, d in zip(jaxpr.invars, dep_in) if d}
        cost = _Cost()
        for eqn in jaxpr.eqns:
            ins = [type(v) is core.Var and v in dep for v in eqn.invars]
            c, outs = self.eqn(eqn, ins, staged)
            cost.add(c)
            dep.update(v for v, d in zip(eqn.outvars, outs) if d)
        return cost, [type(v) is core.Var and v in dep for v in jaxpr.outvars]

    def eqn(self, eqn, ins, staged):
        name = eqn.primitive.name
        if name == "scan":
            return self.scan(eqn, ins, staged)
        if name == "while":
            return self.while_(eqn, ins, staged)
        if name == "cond":
            return self.cond(eqn, ins, staged)
        subs = _closed_params(eqn)
        if len(subs) == 1 and len(subs[0][1].jaxpr.invars) == len(eqn.invars):
            # a call-like primitive (jit, checkpoint, custom_jvp/vjp calls)
            inner_staged = staged or name == "jit"
            cost, outs = self.jaxpr(subs[0][1].jaxpr, ins, inner_staged)
            if name == "jit" and not staged:
                cost.overhead = _JIT_CALL
            return cost, outs[:len(eqn.outvars)] + [any(ins)] * (len(eqn.outvars) - len(outs))
        once, per = _eqn_seconds(eqn, ins)
        d = any(ins)
        for _, sub in subs:  # anything else that carries a jaxpr: count its body once
            c, _ = self.jaxpr(sub.jaxpr, [d] * len(sub.jaxpr.invars), True)
            once, per = once + c.once, per + c.per
        c = _Cost(once=once, per=per, overhead=self.eqn_overhead(staged, eqn.primitive.name),
                  eqns_once=0 if d else 1, eqns_per=1 if d else 0)
        return c, [d] * len(eqn.outvars)

    def _loop(self, body, fixed, carry, rest, staged, n_carry_out):
        """Fixpoint over carries: a carry depends on the basis vector if its
        initial value does or if the body makes it so."""
        carry = list(carry)
        inner = _Model(self.loop_eqn, self.loop_eqn)
        while True:
            cost, outs = inner.jaxpr(body.jaxpr, fixed + carry + rest, staged)
            new = [a or b for a, b in zip(carry, outs[:n_carry_out])]
            if new == carry:
                return cost, outs
            carry = new

    def scan(self, eqn, ins, staged):
        p = eqn.params
        nc, nk, length = p["num_consts"], p["num_carry"], p["length"]
        cost, outs = self._loop(p["jaxpr"], ins[:nc], ins[nc:nc + nk], ins[nc + nk:], staged, nk)
        total = _Cost()
        total.add(cost, times=length)
        total.eqns_once, total.eqns_per = cost.eqns_once, cost.eqns_per
        if staged:
            total.overhead = _STAGED_EQN + length * _LOOP_ITER_STAGED
        else:  # eager scan: every body equation is dispatched every iteration
            total.overhead += length * _LOOP_ITER_EAGER
        return total, outs

    def while_(self, eqn, ins, staged):
        # the trip count is unknown when tracing: one iteration is counted
        p = eqn.params
        cn, bn = p["cond_nconsts"], p["body_nconsts"]
        nk = len(ins) - cn - bn
        cost, outs = self._loop(p["body_jaxpr"], ins[cn:cn + bn], ins[cn + bn:], [], staged, nk)
        return cost, outs[:nk]

    def cond(self, eqn, ins, staged):
        best, outs = None, [False] * len(eqn.outvars)
        for br in eqn.params["branches"]:
            c, o = self.jaxpr(br.jaxpr, ins[1:], staged)
            outs = [a or b for a, b in zip(outs, o)]
            if best is None or c.once + c.per > best.once + best.per:
                best = c
        best.overhead += self.eqn_overhead(staged)
        return best, [d or ins[0] for d in outs]


@dataclass
class JacobianChoice:
    """The estimate behind a mode choice (seconds, from the cost model)."""
    mode: str
    n: int
    m: int
    fwd_seconds: float
    rev_seconds: float
    staged: bool
    batch: int = 1
    detail: dict = field(default_factory=dict)

    def __str__(self):
        f, r = self.detail["fwd"], self.detail["rev"]
        ctx = "staged (jit)" if self.staged else "eager"
        if self.batch > 1:
            ctx += f", inside vmap of size {self.batch}"
        return (
            f"tracegrad.jacobian: n = {self.n} inputs, m = {self.m} outputs, {ctx}\n"
            f"  fwd (jacfwd): {_fmt(f['once'])} primal + {self.n} x {_fmt(f['per'])} tangent"
            f" + {_fmt(f['overhead'])} dispatch ({f['eqns_once']}+{f['eqns_per']} eqns)"
            f" = {_fmt(self.fwd_seconds)}\n"
            f"  rev (jacrev): {_fmt(r['once'])} linearize + {self.m} x {_fmt(r['per'])} transpose"
            f" + {_fmt(r['overhead'])} dispatch ({r['eqns_once']}+{r['eqns_per']} eqns)"
            f" = {_fmt(self.rev_seconds)}\n"
            f"  -> {self.mode} ({'forward' if self.mode == 'fwd' else 'reverse'} mode)")

    def as_dict(self):
        return {"mode": self.mode, "n": self.n, "m": self.m, "fwd_seconds": self.fwd_seconds,
                "rev_seconds": self.rev_seconds, "staged": self.staged, "batch": self.batch,
                **{k: dict(v) for k, v in self.detail.items()}}


def _fmt(s):
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"


def _context():
    """(staged, batch): whether any enclosing trace stages a program (jit,
    make_jaxpr, ...), and the product of enclosing vmap sizes."""
    staged, batch = False, 1
    t = core.current_trace()
    while t is not None:
        if isinstance(t, core.JaxprTrace):
            staged = True
        size = getattr(t, "axis_size", None)
        if isinstance(size, (int, np.integer)):
            batch *= int(size)
        t = getattr(t, "parent", None)
    return staged, batch


def _estimate(f, argnums, has_aux, args, kwargs, staged, batch):
    leaves, _, call, _ = _dyn_args(f, args, kwargs, argnums)
    in_avals = [get_aval(x).strip_weak() for x in leaves]
    for i, a in enumerate(in_avals):
        if not dtypes.is_float(a.dtype):
            raise TypeError(f"jacobian: differentiated input leaf {i} has type {a.str_short()}; "
                            f"it must be floating point")
    k = len(in_avals)

    def outs_of(*flat):
        out = call(*flat)
        if has_aux:
            out = out[0]
        return tree_flatten(out)[0]

    def jvp_prog(*xt):
        po, to = ad.jvp_flat(outs_of, list(xt[:k]), list(xt[k:]))
        return list(po) + [ad.instantiate(t) for t in to]

    t_avals = [a.tangent_aval() for a in in_avals]
    fwd = core.trace_to_jaxpr(jvp_prog, in_avals + t_avals)
    n_out = len(fwd.jaxpr.outvars) // 2
    out_avals = [v.aval for v in fwd.jaxpr.outvars[:n_out]]

    def vjp_prog(*xc):
        po, lin = ad.linearize_flat(outs_of, list(xc[:k]))
        cts = lin.transpose(list(xc[k:]))
        return list(po) + [ad.instantiate(c) for c in cts]

    ct_avals = [a.tangent_aval() for a in out_avals]
    rev = core.trace_to_jaxpr(vjp_prog, in_avals + ct_avals)
    fwd_j, _ = core.dce_jaxpr(fwd.jaxpr)
    rev_j, _ = core.dce_jaxpr(rev.jaxpr)

    fwd_model = _Model(_EAGER_EQN_FWD, _EAGER_LOOP_EQN_FWD, _EAGER_WEIGHT_FWD)
    rev_model = _Model(_EAGER_EQN_REV, _EAGER_LOOP_EQN_REV, _EAGER_WEIGHT_REV)
    fc, _ = fwd_model.jaxpr(fwd_j, [False] * k + [True] * k, staged)
    rc, _ = rev_model.jaxpr(rev_j, [False] * k + [True] * len(ct_avals), staged)
    if not staged:
        fc.overhead += _EAGER_FIXED_FWD
        rc.overhead += _EAGER_FIXED_REV
    n = sum(_size(a) for a in in_avals)
    m = sum(_size(a) for a in out_avals if dtypes.is_float(a.dtype))
    # assembling the result: jacfwd moves the basis axis of each output last
    fc.once += n * m * _MOVE
    if not staged:
        fc.overhead *= _EAGER_SINGLE_FWD if n == 1 else 1.0
        rc.overhead *= _EAGER_SINGLE_REV if m == 1 else 1.0
    fwd_s = batch * (fc.once + n * fc.per) + fc.overhead
    rev_s = batch * (rc.once + m * rc.per) + rc.overhead
    if fwd_s < rev_s or (fwd_s == rev_s and m > 1):
        mode = "fwd"
    else:
        mode = "rev"
    detail = {"fwd": vars(fc), "rev": vars(rc)}
    return JacobianChoice(mode, n, m, fwd_s, rev_s, staged, batch, detail)


def _signature(args, kwargs):
    leaves, tree = tree_flatten((args, kwargs))
    sig = []
    for x in leaves:
        if core.is_array_like(x):
            a = get_aval(x)
            sig.append((a.shape, a.dtype, a.weak_type))
        else:
            sig.append(("static", repr(x)))
    return tree, tuple(sig)


def _chooser(f, argnums, has_aux):
    cache = {}

    def choose(args, kwargs):
        staged, batch = _context()
        key = (_signature(args, kwargs), staged, batch)
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = _estimate(f, argnums, has_aux, args, kwargs, staged, batch)
        return hit
    return choose


def jacobian(f, argnums=0, mode="auto", explain=False, has_aux=False):
    """The Jacobian of f (same result structure as jacfwd/jacrev).

    mode: "auto" (estimate both modes on the traced program, pick the
    cheaper), "fwd" (jacfwd) or "rev" (jacrev). explain=True prints the
    estimate on every call that makes a choice; the last choice is also kept
    on the returned function as `.last_choice` (a JacobianChoice)."""
    if mode not in ("auto", "fwd", "rev"):
        raise ValueError(f"jacobian: mode must be 'auto', 'fwd' or 'rev', got {mode!r}")
    choose = _chooser(f, argnums, has_aux)
    fwd_fn = jacfwd(f, argnums, has_aux=has_aux)
    rev_fn = jacrev(f, argnums, has_aux=has_aux)

    @functools.wraps(f)
    def jacfun(*args, **kwargs):
        chosen = mode
        if mode == "auto":
            choice = choose(args, kwargs)
            jacfun.last_choice = choice
            if explain:
                print(choice)
            chosen = choice.mode
        return (fwd_fn if chosen == "fwd" else rev_fn)(*args, **kwargs)

    jacfun.last_choice = None
    return jacfun


def jacobian_explain(f, argnums=0, has_aux=False, staged=None, batch=None):
    """A function of f's arguments returning the JacobianChoice that
    `jacobian(f)` would make there (nothing is run; f is only traced).
    staged: None reads the context (True under jit/make_jaxpr); pass True or
    False to ask about compiled or eager execution explicitly. batch: the
    size of an enclosing vmap, to ask about vmap(jacobian(f)) from outside
    (None reads the context)."""
    def explain_fn(*args, **kwargs):
        ctx_staged, ctx_batch = _context()
        st = ctx_staged if staged is None else bool(staged)
        b = ctx_batch if batch is None else int(batch)
        return _estimate(f, argnums, has_aux, args, kwargs, st, b)
    return explain_fn
