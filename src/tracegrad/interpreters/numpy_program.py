"""numpy_program: run a closed jaxpr straight on NumPy values.

Why: eager lax.scan / while_loop / fori_loop / cond run their bodies once
per iteration. Evaluating a body with eval_jaxpr binds every equation
(Primitive.bind -> eager -> an Array per result, weak-type bookkeeping),
which costs several times the NumPy work for the small arrays loop bodies
usually hold. Inside a body every value is a NumPy value of the dtype the
jaxpr states, and weak types do not matter there (the control-flow
primitive gives its results the weak types of its abstract outputs), so
an equation is just `impl(*values, **params)`.

`program(closed)` turns a ClosedJaxpr into a Program once (cached on the
jaxpr object): constvars and literals become NumPy values; each equation
an impl call over value slots, or a cheaper exact equivalent set up from
its avals (SPECIAL: dot_general, slice, pad, ...; broadcasts that only
feed ufuncs become reshapes the ufunc broadcasts; an add_any tree over
zero pads of disjoint boxes, the transpose of slicing a value into parts,
one concatenate or fill); nested calls (checkpoint, custom_jvp/vjp, cond
branches) programs of their own.

The first run checks the dtype each step returns against its equation's
(a NumPy scalar for a 0-d result is fine, as in eager mode; another dtype
is cast from then on). Runs then call Python functions generated from the
steps, one line per equation (`run`, and whole scan / while loops), so an
iteration costs the impl calls and little else. The generated text holds
no values (impls, params and constants are globals of the function), so
it is compiled once per distinct text and reused by later traces of the
same body; new text is compiled when the runs it serves will pay for it,
else the steps are interpreted.

Floating-point warnings: div, log, sqrt and integer_pow ignore division
by zero, invalid values and overflow (as their impls do); a program with
such steps holds that errstate around all its runs (see `errstate`), so
in such a body other operations do not warn about those either.

Errors: a failing impl is explained as Primitive.eager does (primitive,
operand shapes/dtypes, params, the user's line); a failure inside
generated code is explained by interpreting that run again, which knows
the equation. Program outputs may be NumPy scalars: callers convert them
with `conform` where they need arrays.
"""
from __future__ import annotations

import contextlib
import functools
import keyword
import math
import operator
import os
import weakref

import numpy as np

from .. import core, dtypes
from ..core import Array, Literal, Tracer, Var, get_aval

# the generated code's file name: inside the package, so that user_frame()
# skips its frames and errors point at the user's code
_FILENAME = os.path.join(os.path.dirname(os.path.abspath(__file__)), "<numpy program>")


def conform(v, dtype):
    """v as an ndarray of exactly `dtype` (float0 values are all zeros)."""
    if type(v) is np.ndarray and v.dtype == dtype:
        return v
    if dtype == dtypes.float0:
        return np.zeros(np.shape(v), dtypes.float0)
    return np.asarray(v, dtype)


def np_operand(x):
    """An operand value as Primitive.eager hands it to an impl."""
    t = type(x)
    if t is np.ndarray:
        return x
    if t is Array:
        return x.value
    if isinstance(x, np.generic):
        return np.asarray(x)
    if isinstance(x, Tracer):
        raise core.leaked_tracer_error(x)
    return np.asarray(x, get_aval(x).dtype)


def _literal(lit):
    # as core._literal_value: a weak literal is a 0-d array of its value
    return np.asarray(lit.val) if lit.aval.weak_type else np_operand(lit.val)


# --------------------------------------------------------------------------
# exact, cheaper equivalents of some impls, chosen from an equation's avals


_BLAS_DTYPES = frozenset(np.dtype(t) for t in (np.float32, np.float64, np.complex64, np.complex128))


def _dot_general(eqn):
    # _dot_impl without its per-call work, when no operand needs a cast and
    # there are no batch axes: the same NumPy/BLAS calls, set up once
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    la, ra = eqn.invars[0].aval, eqn.invars[1].aval
    dt = eqn.outvars[0].aval.dtype
    if lb or rb or not la.dtype == ra.dtype == dt or dt not in _BLAS_DTYPES:
        return None
    if len(lc) == 1 and 0 < la.ndim <= 2 and 0 < ra.ndim <= 2:
        # matrix/vector products: np.dot gives the bits of _dot_impl's a @ b
        # (the same BLAS calls) with less overhead (~0.45 instead of ~0.75 us
        # for small operands)
        tl, tr = lc[0] != la.ndim - 1, rc[0] != 0
        if not tl and not tr:
            return np.dot, {}, False
        return (lambda a, b: np.dot(a.T if tl else a, b.T if tr else b)), {}, False
    # _dot_generic's reshapes into one matrix product (an outer product
    # when nothing is contracted)
    lf = [i for i in range(la.ndim) if i not in lc]
    rf = [i for i in range(ra.ndim) if i not in rc]
    pa, pb = tuple(lf) + tuple(lc), tuple(rc) + tuple(rf)
    M = math.prod(la.shape[i] for i in lf)
    N = math.prod(ra.shape[i] for i in rf)
    K = math.prod(la.shape[i] for i in lc)
    out = tuple(eqn.outvars[0].aval.shape)
    mm = np.dot if M == 1 or N == 1 or K == 1 else np.matmul

    def dot(a, b):
        return mm(a.transpose(pa).reshape(M, K), b.transpose(pb).reshape(K, N)).reshape(out)
    return dot, {}, False


def _slice(eqn):
    # lax.slice of an operand of rank >= 1 is basic NumPy slicing (a view);
    # the bounds were checked when the equation was traced
    p = eqn.params
    nd = eqn.invars[0].aval.ndim
    if nd == 0:
        return None
    strides = p["strides"] or (1,) * nd
    idx = tuple(slice(a, b, s) for a, b, s in zip(p["start_indices"], p["limit_indices"], strides))
    return operator.itemgetter(idx), {}, False


def _convert_element_type(eqn):
    # a conversion that only changes the weak type (a value the jaxpr
    # strengthens, e.g. a weakly typed carry) keeps the value itself
    if np.dtype(eqn.invars[0].aval.dtype) == np.dtype(eqn.params["new_dtype"]):
        return _same, {}, False
    return None


def _concatenate(eqn):
    # (operand shapes were checked when the equation was traced)
    axis = eqn.params["dimension"]
    return (lambda *xs: np.concatenate(xs, axis=axis)), {}, False


def _pad(eqn):
    # _pad_impl with the layout worked out once: fill, place x, crop
    x = eqn.invars[0].aval
    cfg = eqn.params["padding_config"]
    if not cfg:
        return None
    dt = np.dtype(x.dtype)
    if dt == dtypes.float0:
        return None
    big, place = [], []
    for n, (lo, hi, it) in zip(x.shape, cfg):
        inner = n + max(n - 1, 0) * it
        big.append(max(lo, 0) + inner + max(hi, 0))
        place.append(slice(max(lo, 0), max(lo, 0) + inner, it + 1))
    big, place = tuple(big), tuple(place)
    crop = tuple(slice(max(-lo, 0), b - max(-hi, 0)) for b, (lo, hi, _) in zip(big, cfg))
    needs_crop = any(lo < 0 or hi < 0 for lo, hi, _ in cfg)

    def pad(x, value):
        out = np.empty(big, dt)
        out[...] = value
        out[place] = x
        return out[crop] if needs_crop else out
    return pad, {}, False


# impls that only wrap a NumPy function in np.errstate(...="ignore"): for
# inexact operands, the bare function, with the program's caller holding
# that errstate around all its runs (see Program.quiet)
_QUIET = {"div": np.true_divide, "log": np.log, "sqrt": np.sqrt}


def _quiet(eqn):
    f = _QUIET[eqn.primitive.name]
    dt = np.dtype(eqn.outvars[0].aval.dtype)
    if dt.kind not in "fc" or any(np.dtype(v.aval.dtype) != dt for v in eqn.invars):
        return None
    return f, {}, True


def _square(x):
    return x * x


def _inverse_square(x):
    return 1 / (x * x)


def _integer_pow(eqn):
    """x**2 and x**-2 (a quotient's derivative) as their products, other
    powers by the impl's product chain: for inexact x, without its
    errstate (a `with` costs ~1.5 us a call)."""
    from ..primitives.elementwise import integer_pow_values
    dt = np.dtype(eqn.outvars[0].aval.dtype)
    if dt.kind not in "fc" or np.dtype(eqn.invars[0].aval.dtype) != dt:
        return None
    special = {2: _square, -2: _inverse_square}.get(eqn.params["y"])
    if special is not None:
        return special, {}, True
    return integer_pow_values, eqn.params, True


# primitive name -> f(eqn) -> (callable, params, quiet) or None (use the
# impl): exact equivalents of impls, chosen from an equation's avals and
# params; quiet: the callable relies on the caller's errstate (see _QUIET).
# (control_flow.py adds cond.)
SPECIAL = {"dot_general": _dot_general, "slice": _slice, "concatenate": _concatenate,
            "convert_element_type": _convert_element_type,
            "pad": _pad, "div": _quiet, "log": _quiet, "sqrt": _quiet,
            "integer_pow": _integer_pow}

# call-like primitives whose eager rule evaluates the jaxpr in this param
# on all operands
_CALL_PARAM = {"checkpoint": "jaxpr", "custom_jvp_call": "call_jaxpr",
               "custom_vjp_call": "call_jaxpr"}


class _NoProgram(Exception):
    """An equation without a NumPy impl: program() falls back to eval_jaxpr."""


def _step_fn(eqn):
    """(callable, params, quiet) that evaluate one equation on NumPy values;
    quiet: the callable relies on the caller's errstate (see _QUIET)."""
    name = eqn.primitive.name
    key = _CALL_PARAM.get(name)
    if key is not None:
        sub = program(eqn.params[key])
        if sub is None:
            raise _NoProgram(name)
        return sub.run, {}, sub.quiet
    special = SPECIAL.get(name)
    if special is not None:
        r = special(eqn)
        if r is not None:
            return r
    impl = eqn.primitive.impl
    if impl is None:
        raise _NoProgram(f"{name} has no impl")
    return impl, eqn.params, False


# binary ufuncs whose results are exact per element, whatever the memory
# layout of their operands (NumPy may pick another inner loop for a
# broadcast operand: for these the values cannot differ)
_EXACT_UFUNCS = frozenset([np.add, np.subtract, np.multiply, np.true_divide, np.maximum,
                           np.minimum, np.equal, np.not_equal, np.less, np.less_equal,
                           np.greater, np.greater_equal, np.logical_and, np.logical_or,
                           np.logical_xor, np.bitwise_and, np.bitwise_or, np.bitwise_xor])


def _is_exact_ufunc(step_fn):
    fn, params, _ = step_fn
    return fn in _EXACT_UFUNCS and not params


def _lazy_broadcasts(jaxpr, fns):
    """broadcast_in_dim equations whose result only feeds binary NumPy
    ufuncs (_EXACT_UFUNCS), each of which still gets its full result shape
    from its other operands: they can hand on the operand reshaped with 1s
    in the new axes (a view) and let the ufunc broadcast it, the values
    being the same. (Batched bodies, under vmap, are full of such
    broadcasts.) {eqn index: step function}"""
    eqns = jaxpr.eqns
    lazy, made_by = {}, {}  # eqn index -> reshaped operand shape; var -> eqn index
    for k, e in enumerate(eqns):
        if e.primitive.name == "broadcast_in_dim":
            x = e.invars[0].aval
            inter = [1] * len(e.params["shape"])
            for i, d in enumerate(e.params["broadcast_dimensions"]):
                inter[d] = x.shape[i]
            lazy[k] = tuple(inter)
            made_by[e.outvars[0]] = k
    if not lazy:
        return {}

    def lazy_in(v):
        k = made_by.get(v) if type(v) is Var else None
        return k if k in lazy else None

    for v in jaxpr.outvars:
        lazy.pop(lazy_in(v), None)
    users = []
    for e, f in zip(eqns, fns):
        ks = [k for k in map(lazy_in, e.invars) if k is not None]
        if ks and _is_exact_ufunc(f):
            users.append(e)
        else:
            for k in ks:
                lazy.pop(k, None)
    changed = True
    while changed and lazy:
        changed = False
        for e in users:
            ks = [lazy_in(v) for v in e.invars]
            shapes = [lazy[k] if k is not None else tuple(v.aval.shape)
                      for k, v in zip(ks, e.invars)]
            # (the shapes broadcast: the operand shapes of the jaxpr do)
            if np.broadcast_shapes(*shapes) != tuple(e.outvars[0].aval.shape):
                # its operands must be broadcast for real
                for k in ks:
                    if k is not None:
                        lazy.pop(k, None)
                        changed = True
    return {k: (_same if inter == tuple(eqns[k].invars[0].aval.shape)
                else operator.methodcaller("reshape", inter)) for k, inter in lazy.items()}


def _same(x):
    return x


def _zero_pad_box(e):
    """The box a pad with a literal +0 value places its operand in (one
    (lo, size) per dimension), or None for any other pad."""
    x, v = e.invars
    cfg = e.params["padding_config"]
    if type(v) is not Literal or not cfg or x.aval.ndim == 0:
        return None
    val = np.asarray(v.val)
    if val != 0 or np.signbit(val.real):
        return None
    if any(lo < 0 or hi < 0 or it != 0 for lo, hi, it in cfg):
        return None
    return tuple((lo, n) for (lo, _, _), n in zip(cfg, x.aval.shape))


def _tiling_axis(shape, boxes):
    """(axis, operand order) when disjoint boxes, full in every other
    dimension, cover the whole shape along one axis; else None."""
    for axis in range(len(shape)):
        if all(lo == 0 and n == shape[d] for box in boxes
               for d, (lo, n) in enumerate(box) if d != axis):
            order = sorted(range(len(boxes)), key=lambda i: boxes[i][axis][0])
            end = 0
            for i in order:
                lo, n = boxes[i][axis]
                if lo != end:
                    return None
                end += n
            return (axis, order) if end == shape[axis] else None
    return None


def _disjoint(a, b):
    return any(la + na <= lb or lb + nb <= la for (la, na), (lb, nb) in zip(a, b))


def _pad_sums(jaxpr):
    """add_any trees over zero pads that place their operands in disjoint
    boxes of one result: the transpose of slicing a value into parts (an
    LSTM cell's gates: four pads and three adds per step). Each tree is one
    step writing its operands into one zero array: {root eqn index:
    (fn, operand vars)}, and the indices of the equations folded into it.
    Same bits: each element is +0 plus at most one operand value, as in the
    sum of the pads (which also turns a -0 into +0)."""
    eqns = jaxpr.eqns
    made_by, uses = {}, {}
    for k, e in enumerate(eqns):
        for v in e.invars:
            if type(v) is Var:
                uses[v] = uses.get(v, 0) + 1
        if len(e.outvars) == 1 and e.primitive.name in ("pad", "add_any"):
            made_by[e.outvars[0]] = k
    for v in jaxpr.outvars:
        if type(v) is Var:
            uses[v] = uses.get(v, 0) + 1

    def tree(k):  # -> ([(box, operand var)], [eqn indices]) or None
        e = eqns[k]
        if e.primitive.name == "pad":
            box = _zero_pad_box(e)
            return None if box is None else ([(box, e.invars[0])], [k])
        parts = []
        for v in e.invars:
            j = made_by.get(v) if type(v) is Var else None
            if j is None or uses[v] != 1:
                return None
            t = tree(j)
            if t is None:
                return None
            parts.append(t)
        return parts[0][0] + parts[1][0], parts[0][1] + parts[1][1] + [k]

    fused, folded = {}, set()
    for k in range(len(eqns) - 1, -1, -1):
        e = eqns[k]
        if e.primitive.name != "add_any" or k in folded:
            continue
        t = tree(k)
        if t is None:
            continue
        leaves, members = t
        boxes = [b for b, _ in leaves]
        if any(not _disjoint(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]):
            continue
        out = e.outvars[0].aval
        fused[k] = (_fill_boxes(tuple(out.shape), np.dtype(out.dtype), boxes),
                    [x for _, x in leaves])
        folded.update(m for m in members if m != k)
    return fused, folded


def _fill_boxes(shape, dt, boxes):
    tiled = _tiling_axis(shape, boxes)
    if tiled is not None:
        # the operands, in order, are the whole result: one concatenate
        # (then + 0 in place: the sum turns a -0 into +0)
        axis, order = tiled

        def concat(*xs):
            out = np.concatenate([xs[i] for i in order], axis=axis)
            out += 0
            return out
        return concat
    places = [tuple(slice(lo, lo + n) for lo, n in box) for box in boxes]

    def fill(*xs):
        out = np.zeros(shape, dt)
        for p, x in zip(places, xs):
            out[p] += x
        return out
    return fill


# --------------------------------------------------------------------------
# programs


class _Plan:
    """A closed jaxpr's equations as impl calls over NumPy value slots: the
    inputs, then constants and literals, then each equation's results.
    (Generated code refers to this, not to its Program: no reference cycle
    keeps a dead jaxpr's program alive.)"""

    __slots__ = ("n_in", "env0", "steps", "out_slots", "out_dtypes", "quiet")

    def __init__(self, closed):
        j = closed.jaxpr
        n_in = len(j.invars)
        env0 = [None] * n_in  # initial slot values: constants and literals
        slot = {}
        for v, c in zip(j.constvars, closed.consts):
            slot[v] = len(env0)
            env0.append(np_operand(c))
        for i, v in enumerate(j.invars):  # (a repeated invar: its last position, as eval_jaxpr)
            slot[v] = i

        def ref(x):
            if type(x) is Literal:
                env0.append(_literal(x))
                return len(env0) - 1
            return slot[x]

        fns = [_step_fn(eqn) for eqn in j.eqns]
        for k, fn in _lazy_broadcasts(j, fns).items():
            fns[k] = fn, {}, False
        fused, folded = _pad_sums(j)
        steps = []
        quiet = False
        for k, (eqn, (fn, params, q)) in enumerate(zip(j.eqns, fns)):
            if k in folded:
                continue
            invars = eqn.invars
            if k in fused:
                fn, invars = fused[k]
                params = {}
            quiet = quiet or q
            ins = [ref(x) for x in invars]
            outs = []
            for v in eqn.outvars:
                slot[v] = len(env0)
                outs.append(len(env0))
                env0.append(None)
            dts = [np.dtype(v.aval.dtype) for v in eqn.outvars]
            # [fn, in slots, out slots, params, out dtypes, multiple results,
            #  eqn, which outputs need a cast (known after the first run)]
            steps.append([fn, ins, outs, params, dts, eqn.primitive.multiple_results, eqn, ()])
        self.n_in = n_in
        self.env0 = env0
        self.steps = steps
        self.out_slots = [ref(x) for x in j.outvars]
        self.out_dtypes = [dt for step in steps for dt in step[4]]
        self.quiet = quiet

    def interpret(self, args, check):
        """Run the steps one by one; with `check`, find the results whose
        dtype differs from the equation's (cast from then on)."""
        env = list(self.env0)
        env[:self.n_in] = args
        for step in self.steps:
            fn, ins, outs, params, dts, multi, eqn, fix = step
            vals = [env[i] for i in ins]
            try:
                r = fn(*vals, **params)
            except Exception as e:
                eqn.primitive._explain_failure(vals, eqn.params, e)
                raise
            rs = r if multi else (r,)
            if check:
                step[7] = fix = tuple(k for k, (x, dt) in enumerate(zip(rs, dts))
                                      if not (isinstance(x, (np.ndarray, np.generic))
                                              and x.dtype == dt))
            if fix:
                rs = list(rs)
                for k in fix:
                    rs[k] = conform(rs[k], dts[k])
            for s, x in zip(outs, rs):
                env[s] = x
        return [env[s] for s in self.out_slots]

    def fail(self, err, args):
        """An error in generated code: interpret that run again to say
        which equation failed, on which operands."""
        if isinstance(err, core.TracegradError):  # (explained by a nested program)
            raise err
        self.interpret(args, False)
        raise err

    def generated(self, prefix=""):
        """(globals, slot names, body lines) for generated code: one line per
        step; everything but slot names is a global. Names start with
        `prefix` (to put two programs in one function)."""
        g = {"_conform": conform, "_fail": self.fail}
        names = []
        for s, v in enumerate(self.env0):
            if s < self.n_in:
                names.append(f"{prefix}a{s}")
            elif v is not None:
                names.append(f"{prefix}k{s}")
                g[names[-1]] = v
            else:
                names.append(f"{prefix}v{s}")
        body = []
        for k, (fn, ins, outs, params, dts, multi, _, fix) in enumerate(self.steps):
            f = f"{prefix}f{k}"
            g[f] = fn
            args = [names[i] for i in ins]
            if params:
                if all(p.isidentifier() and not keyword.iskeyword(p) for p in params):
                    for j, (p, v) in enumerate(params.items()):
                        g[f"{f}_{j}"] = v
                        args.append(f"{p}={f}_{j}")
                else:
                    g[f"{f}_p"] = params
                    args.append(f"**{f}_p")
            lhs = ", ".join([names[s] for s in outs])
            if multi:
                lhs = f"{lhs}, = " if outs else ""
            else:
                lhs = f"{lhs} = "
            body.append(f"{lhs}{f}({', '.join(args)})")
            for j in fix:
                g[f"{f}_t{j}"] = dts[j]
                body.append(f"{names[outs[j]]} = _conform({names[outs[j]]}, {f}_t{j})")
        return g, names, body


# Per equation, compiling generated code costs ~5 us, interpreting a step
# ~0.8 us (~1.3 with the dtype checks), running generated code ~0.3 us
# (eval_jaxpr: ~1.6 us). Text compiled before (the same body traced again)
# is used right away; new text is compiled once it will pay for itself.
COMPILE_AFTER = 8  # runs (of run()) or loop iterations still to go


class Program:
    """A closed jaxpr to run on NumPy values: `run(*args)` -> outputs, inside
    `errstate(program)`. The first run checks the dtype of every result
    (`check_run`); `scan_loop` and `while_loop` give whole loops of a
    checked program as one generated function."""

    __slots__ = ("plan", "checked", "runs", "_fn", "_gen", "_code", "__weakref__")

    def __init__(self, closed):
        self.plan = _Plan(closed)
        self.checked = False
        self.runs = 0
        self._fn = None    # the generated run(), once there is one
        self._gen = None   # plan.generated(), once needed
        self._code = {}    # key -> generated function, or (source, globals, name)

    quiet = property(lambda self: self.plan.quiet)

    def run(self, *args):
        fn = self._fn
        if fn is not None:
            return fn(*args)
        if not self.checked:
            return self.check_run(args)
        self.runs += 1
        fn = self._function("run", self._run_source, self.runs >= COMPILE_AFTER)
        if fn is None:
            return self.plan.interpret(args, False)
        self._fn = fn
        return fn(*args)

    def check_run(self, args, use_code=False):
        """The first run; it checks the dtypes of all results (a result that
        needs a cast gets one from then on): by generated code that also
        returns all results if that was compiled before, or if `use_code`
        (the body was seen before: its code will serve again), else by
        interpreting the steps."""
        plan = self.plan
        fn = self._function("check", self._check_source, use_code)
        if fn is None:
            outs = plan.interpret(args, True)
        else:
            try:
                outs, vals = fn(*args)
            except Exception:  # (an error to explain, or one a cast avoids)
                outs = plan.interpret(args, True)
            else:
                if any([not ((type(x) is np.ndarray or isinstance(x, np.generic)) and x.dtype == dt)
                        for x, dt in zip(vals, plan.out_dtypes)]):
                    outs = plan.interpret(args, True)
        if any(step[7] for step in plan.steps):  # generate again, with the casts
            self._gen = None
            self._code.clear()
        self.checked = True
        return outs

    def scan_loop(self, num_consts, num_carry, live_ys, new=True):
        """loop(*consts, *carry, *xs, *ys, order) -> final carry: a scan's
        iterations over the row indices `order` as one generated function
        (for a checked program); live_ys: which ys (body outputs after the
        carry) to write. None if not compiled before and not `new`."""
        return self._function(("scan", num_consts, num_carry, tuple(live_ys)),
                              lambda: self._scan_source(num_consts, num_carry, live_ys), new)

    def while_loop(self, cond, new=True):
        """loop(*cond_consts, *body_consts, *carry) -> final carry: a while
        loop with this program as body and `cond` (a Program) as condition,
        as one generated function (both checked). None if not compiled
        before and not `new`."""
        return self._function(("while", cond), lambda: self._while_source(cond), new)

    # ---- generated code

    def _function(self, key, source, new):
        """The generated function `key`: source() -> (text, globals, name)
        is made once; compiled if its text was compiled before or `new`."""
        hit = self._code.get(key)
        if hit is None:
            hit = self._code[key] = source()
        elif type(hit) is not tuple:
            return hit
        text, g, name = hit
        code = _code_cache.get(text)
        if code is None:
            if not new:
                return None
            if len(_code_cache) >= 1024:
                _code_cache.clear()
            code = _code_cache[text] = compile(text, _FILENAME, "exec")
        exec(code, g)
        fn = self._code[key] = g[name]
        return fn

    def _generated(self):
        if self._gen is None:
            self._gen = self.plan.generated()
        return self._gen

    def _run_source(self):
        g, names, body = self._generated()
        ins = names[:self.plan.n_in]
        lines = [f"def run({', '.join(ins)}):", " try:"]
        lines += ["  " + b for b in body]
        lines.append(f"  return [{', '.join([names[s] for s in self.plan.out_slots])}]")
        lines += [" except Exception as e:", f"  _fail(e, ({''.join(n + ', ' for n in ins)}))"]
        return "\n".join(lines), g, "run"

    def _check_source(self):
        g, names, body = self._generated()
        plan = self.plan
        every = ", ".join([names[s] for step in plan.steps for s in step[2]])
        lines = [f"def check({', '.join(names[:plan.n_in])}):"] + [" " + b for b in body]
        lines.append(f" return [{', '.join([names[s] for s in plan.out_slots])}], [{every}]")
        return "\n".join(lines), g, "check"

    def _scan_source(self, num_consts, num_carry, live_ys):
        g, names, body = self._generated()
        ins = names[:self.plan.n_in]
        nck = num_consts + num_carry
        carry = ins[num_consts:nck]
        xs = [f"X{i}" for i in range(self.plan.n_in - nck)]
        ys = [f"Y{j}" for j in live_ys]
        outs = [names[s] for s in self.plan.out_slots]
        lines = [f"def loop({', '.join(ins[:nck] + xs + ys + ['order'])}):", " try:",
                 "  for i in order:"]
        lines += [f"   {a} = {x}[i]" for a, x in zip(ins[nck:], xs)]
        lines += ["   " + b for b in body]
        lines += [f"   {y}[i] = {outs[num_carry + j]}" for y, j in zip(ys, live_ys)]
        if carry:  # (a tuple assignment: the new carry may permute the old)
            lines.append(f"   {', '.join(carry)}, = {', '.join(outs[:num_carry])},")
        lines.append(f"  return [{', '.join(carry)}]")
        lines += [" except Exception as e:", f"  _fail(e, ({''.join(n + ', ' for n in ins)}))"]
        return "\n".join(lines), g, "loop"

    def _while_source(self, cond):
        gc, nc, bc = cond.plan.generated("c")
        gb, nb, bb = self.plan.generated("b")
        n_carry = len(self.plan.out_slots)
        ncc, nbc = cond.plan.n_in - n_carry, self.plan.n_in - n_carry
        c_in, b_in = nc[:cond.plan.n_in], nb[:self.plan.n_in]
        carry = b_in[nbc:]
        lines = [f"def loop({', '.join(c_in[:ncc] + b_in)}):", " try:", "  while True:"]
        if carry:
            lines.append(f"   {', '.join(c_in[ncc:])}, = {', '.join(carry)},")
        lines += ["   " + b for b in bc]
        lines.append(f"   if not {nc[cond.plan.out_slots[0]]}:")
        lines.append("    break")
        lines += ["   " + b for b in bb]
        if carry:
            lines.append(f"   {', '.join(carry)}, = "
                         f"{', '.join([nb[s] for s in self.plan.out_slots])},")
        lines.append(f"  return [{', '.join(carry)}]")
        c_args, b_args = "".join(n + ", " for n in c_in), "".join(n + ", " for n in b_in)
        lines += [" except Exception as e:", f"  _fail(e, ({c_args}), ({b_args}))"]
        g = {**gc, **gb, "_fail": functools.partial(_while_fail, cond.plan, self.plan)}
        return "\n".join(lines), g, "loop"


def _while_fail(cond_plan, body_plan, err, cond_args, body_args):
    """An error in a generated while loop: from the condition or the body."""
    if isinstance(err, core.TracegradError):
        raise err
    cond_plan.interpret(cond_args, False)
    body_plan.interpret(body_args, False)
    raise err


_NO_ERRSTATE = contextlib.nullcontext()


def errstate(prog):
    """The NumPy error state runs of `prog` need: its quiet steps ignore
    division by zero, invalid operations and overflow, as the impls they
    replace."""
    if prog.quiet:
        return np.errstate(divide="ignore", invalid="ignore", over="ignore")
    return _NO_ERRSTATE


_programs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


_SEEN = object()        # a jaxpr run once without a program
_NO_PROGRAM = object()  # a jaxpr with an equation that has no NumPy impl


def program(closed, once=False):
    """The Program of a ClosedJaxpr (built once per jaxpr object), or None if
    some equation has no NumPy impl (callers then use eval_jaxpr).
    once: None the first time (for a jaxpr that may well run only once, as
    a cond traced for one call: eval_jaxpr costs less than building)."""
    p = _programs.get(closed)
    if type(p) is Program:
        return p
    if p is _NO_PROGRAM or (once and p is None):
        if p is None:
            _programs[closed] = _SEEN
        return None
    try:
        p = Program(closed)
    except _NoProgram:
        _programs[closed] = _NO_PROGRAM
        return None
    _programs[closed] = p
    return p


# --------------------------------------------------------------------------
# compiled code, by source text (the text holds no values: impls, params
# and constants are globals of the generated functions)

_code_cache: dict = {}
