"""tracegrad.lax: lax-level functions and structured control flow.

cond, switch, while_loop, fori_loop, scan and map have JAX's signatures and
semantics. Operands and loop carries are pytrees. The user's functions are
traced once to jaxprs; every constant they close over (arrays, and tracers of
enclosing transformations) becomes an explicit operand of the primitive, so
grad/vmap/jit see everything the bodies depend on.

Add further lax-level helpers at the end of this file (and to __all__).
"""
from __future__ import annotations

import numpy as np

from . import core, dtypes
from .core import ClosedJaxpr, Jaxpr, ShapeDtypeError, Var, get_aval, is_array_like
from .primitives import elementwise as _ew
from .primitives.control_flow import cond_p, scan_p, while_p
from .tree_util import keystr, tree_flatten_with_path, tree_structure, tree_unflatten

__all__ = [
    "cond", "switch", "while_loop", "fori_loop", "scan", "map",
    "convert_element_type", "clamp", "select", "select_n", "stop_gradient",
]

_NO_OPERAND = object()


# --------------------------------------------------------------------------
# tracing user functions


def _fun_name(f):
    from .api import fun_name
    return fun_name(f)


def _flatten(tree, api, what):
    with_path, treedef = tree_flatten_with_path(tree)
    for path, x in with_path:
        if not is_array_like(x):
            raise TypeError(f"{api}: {what}{keystr(path)} is of type {type(x).__name__}, which "
                            f"is not a valid array type (use arrays or Python scalars)")
    return [x for _, x in with_path], [p for p, _ in with_path], treedef


def _trace(f, make_args, in_avals, api, what, split_out=None, intern=True):
    """Trace f(*make_args(flat inputs)) to a closed jaxpr whose constants are
    its leading inputs. split_out(out) -> list of pytrees to flatten one after
    another (default: the whole output). Returns (closed, consts, info) where
    info = [(treedef, paths, n_leaves)] per piece."""
    box = []

    def flat(*args):
        out = f(*make_args(args))
        pieces = [out] if split_out is None else split_out(out)
        leaves, info = [], []
        for piece in pieces:
            with_path, treedef = tree_flatten_with_path(piece)
            for path, x in with_path:
                if not is_array_like(x):
                    raise TypeError(
                        f"{api}: {what} output{keystr(path)} is of type {type(x).__name__}, "
                        f"which is not a valid array type\n  {what} is {_fun_name(f)}")
            leaves += [x for _, x in with_path]
            info.append((treedef, [p for p, _ in with_path], len(with_path)))
        box[:] = info
        return leaves

    closed = core.trace_to_jaxpr(flat, list(in_avals), fn_name=_fun_name(f))
    j = closed.jaxpr
    # constants -> leading inputs: transformations of the primitive see them
    jaxpr = Jaxpr([], list(j.constvars) + list(j.invars), j.outvars, j.eqns)
    # (a body traced before, equal in structure, is reused with everything
    # derived from it: see core.intern_jaxpr; intern=False for a caller that
    # rebuilds the jaxpr and interns that instead)
    closed_body = ClosedJaxpr(jaxpr, [])
    if intern:
        closed_body = core.intern_jaxpr(closed_body)
    return closed_body, list(closed.consts), list(box)


def _same_type(a, b):
    return tuple(a.shape) == tuple(b.shape) and np.dtype(a.dtype) == np.dtype(b.dtype)


def _describe(a):
    return f"shape {tuple(a.shape)} and dtype {np.dtype(a.dtype).name} ({a.str_short()})"


def _check_carry(api, f, what, paths, in_tree, in_avals, out_tree, out_avals):
    """The carry output of a loop body must match its input exactly."""
    if in_tree != out_tree:
        raise ShapeDtypeError(
            f"{api}: the {what} output of the body function must have the same pytree "
            f"structure as the {what} input, but they differ:\n"
            f"  input  structure: {in_tree}\n  output structure: {out_tree}\n"
            f"  body function is {_fun_name(f)}\n  at {core.user_frame()}")
    diffs = [f"  * {what}{keystr(p)}: input has {_describe(a)}, output has {_describe(b)}"
             for p, a, b in zip(paths, in_avals, out_avals) if not _same_type(a, b)]
    if diffs:
        raise ShapeDtypeError(
            f"{api}: the {what} output of the body function must have the same shapes and "
            f"dtypes as the {what} input, but they differ:\n" + "\n".join(diffs)
            + f"\n  body function is {_fun_name(f)}\n  at {core.user_frame()}")


def _promote_weak(leaves, in_avals, out_avals):
    """As JAX: a weakly typed initial carry (e.g. a Python scalar) takes the
    dtype the body produces for it. Returns (leaves, changed)."""
    new, changed = [], False
    for x, a, b in zip(leaves, in_avals, out_avals):
        if a.weak_type and not _same_type(a, b):
            dt, _ = dtypes.promote((np.dtype(a.dtype), True), (np.dtype(b.dtype), b.weak_type))
            if dt != np.dtype(a.dtype):
                x = _ew.convert(_as_array(x), dt)
                changed = True
        new.append(x)
    return new, changed


def _as_array(x):
    """A value primitives accept: tracers/Arrays as they are, others as a
    NumPy value of their JAX dtype (Python scalars stay weak literals)."""
    if isinstance(x, (core.Tracer, core.Array)):
        return x
    a = get_aval(x)
    if type(x) in (bool, int, float, complex):
        return x
    return np.asarray(x, a.dtype)


# --------------------------------------------------------------------------
# cond / switch


def cond(pred, true_fun, false_fun, *operands, operand=_NO_OPERAND):
    """true_fun(*operands) if pred else false_fun(*operands); both branches
    are traced and must return the same structure, shapes and dtypes. Under
    vmap with a batched pred both run and the results are selected."""
    if not (callable(true_fun) and callable(false_fun)):
        raise TypeError("lax.cond: true_fun and false_fun arguments should be callable.")
    operands = _operands(operands, operand)
    if pred is None:
        raise TypeError("cond predicate is None")
    if isinstance(pred, (list, tuple)) or not is_array_like(pred):
        raise TypeError(f"Pred must be a scalar, got {pred!r} of type {type(pred).__name__}")
    a = get_aval(pred)
    if a.shape != ():
        raise TypeError(f"Pred must be a scalar, got {a.str_short()} of shape {a.shape}.")
    dt = np.dtype(a.dtype)
    pred = _as_array(pred)
    if dt != np.bool_:
        if dt.kind not in "iuf":
            raise TypeError(f"Pred type must be either boolean or number, got {dt}.")
        pred = _ew.ne_p.bind(_ew.convert(pred, dt), np.zeros((), dt)[()])
    index = _ew.convert(pred, np.dtype(np.int32))
    return _switch(index, (false_fun, true_fun), operands, "cond", ("false_fun", "true_fun"))


def switch(index, branches, *operands, operand=_NO_OPERAND):
    """branches[clamp(index, 0, len(branches) - 1)](*operands)."""
    branches = tuple(branches)
    if not all(callable(b) for b in branches):
        raise TypeError("lax.switch: branches argument should be a sequence of callables.")
    operands = _operands(operands, operand)
    if not is_array_like(index):
        raise TypeError(f"Index type must be an integer, got {index!r}.")
    a = get_aval(index)
    if a.shape != ():
        raise TypeError(f"Branch index must be scalar, got {a.str_short()} of shape {a.shape}.")
    if np.dtype(a.dtype).kind not in "iu":
        raise TypeError(f"Index type must be an integer, got {a.str_short()}.")
    if not branches:
        raise ValueError("Empty branch sequence")
    if len(branches) == 1:
        return branches[0](*operands)
    i32 = np.dtype(np.int32)
    index = _ew.convert(_as_array(index), i32)
    index = _ew.clamp_p.bind(np.int32(0), index, np.int32(len(branches) - 1))
    return _switch(index, branches, operands, "switch",
                   tuple(f"branch {k}" for k in range(len(branches))))


def _operands(operands, operand):
    if operand is _NO_OPERAND:
        return operands
    if operands:
        raise TypeError("if 'operand' keyword is passed then no positional operands can be passed")
    return (operand,)


def _switch(index, branches, operands, api, names):
    leaves, _, in_tree = _flatten(operands, api, "operand")
    in_avals = [get_aval(x) for x in leaves]
    make_args = lambda flat: tree_unflatten(in_tree, flat)
    # (the branches are interned after their consts are joined, below)
    traced = [_trace(b, make_args, in_avals, api, n, intern=False)
              for b, n in zip(branches, names)]
    # the reference branch for messages: true_fun for cond, branch 0 for switch
    ref = len(branches) - 1 if api == "cond" else 0
    ref_tree, ref_paths, _ = traced[ref][2][0]
    ref_avals = traced[ref][0].out_avals
    for k, (closed, _, info) in enumerate(traced):
        if k == ref:
            continue
        tree, _, _ = info[0]
        if tree != ref_tree:
            raise ShapeDtypeError(
                f"{api}: the branches must return the same pytree structure, but "
                f"{names[ref]} returns {ref_tree} and {names[k]} returns {tree}.\n"
                f"  {names[ref]} is {_fun_name(branches[ref])}\n"
                f"  {names[k]} is {_fun_name(branches[k])}\n  at {core.user_frame()}")
        diffs = [f"  * output{keystr(p)}: {names[ref]} returns {_describe(a)} but {names[k]} "
                 f"returns {_describe(b)}"
                 for p, a, b in zip(ref_paths, ref_avals, closed.out_avals) if not _same_type(a, b)]
        if diffs:
            raise ShapeDtypeError(
                f"{api}: the branches must return the same shapes and dtypes, but they differ:\n"
                + "\n".join(diffs) + f"\n  {names[ref]} is {_fun_name(branches[ref])}\n"
                f"  {names[k]} is {_fun_name(branches[k])}\n  at {core.user_frame()}")
    # one operand slot per distinct constant; each branch ignores the others'
    slots, consts = {}, []
    for _, cs, _ in traced:
        for c in cs:
            if id(c) not in slots:
                slots[id(c)] = len(consts)
                consts.append(c)
    jaxprs = []
    for closed, cs, _ in traced:
        j = closed.jaxpr
        own = dict(zip((slots[id(c)] for c in cs), j.invars[:len(cs)]))
        cvars = [own[s] if s in own else Var(get_aval(c)) for s, c in enumerate(consts)]
        jaxprs.append(core.intern_jaxpr(
            ClosedJaxpr(Jaxpr([], cvars + list(j.invars[len(cs):]), j.outvars, j.eqns))))
    outs = cond_p.bind(index, *consts, *leaves, branches=tuple(jaxprs))
    return tree_unflatten(ref_tree, outs)


# --------------------------------------------------------------------------
# while_loop / fori_loop


def while_loop(cond_fun, body_fun, init_val):
    """Loop `val = body_fun(val)` while `cond_fun(val)`; the carry keeps its
    structure, shapes and dtypes. Forward-mode differentiable; reverse mode
    needs a static trip count (scan / fori_loop with Python int bounds)."""
    if not callable(cond_fun) or not callable(body_fun):
        raise TypeError("lax.while_loop: cond_fun and body_fun arguments should be callable.")
    leaves, paths, tree = _flatten(init_val, "while_loop", "init_val")
    make_args = lambda flat: (tree_unflatten(tree, flat),)

    def trace(leaves):
        avals = [get_aval(x) for x in leaves]
        cj, cc, cinfo = _trace(cond_fun, make_args, avals, "while_loop", "cond_fun")
        outs = cj.out_avals
        if len(outs) != 1 or outs[0].shape != () or np.dtype(outs[0].dtype) != np.bool_:
            raise ShapeDtypeError(
                f"while_loop: cond_fun must return a boolean scalar, but got output type(s) "
                f"({', '.join(a.str_short() for a in outs)})\n  cond_fun is "
                f"{_fun_name(cond_fun)}\n  at {core.user_frame()}")
        bj, bc, binfo = _trace(body_fun, make_args, avals, "while_loop", "body_fun")
        return avals, cj, cc, bj, bc, binfo[0][0]

    avals, cj, cc, bj, bc, out_tree = trace(leaves)
    if out_tree == tree:
        leaves, changed = _promote_weak(leaves, avals, bj.out_avals)
        if changed:
            avals, cj, cc, bj, bc, out_tree = trace(leaves)
    _check_carry("while_loop", body_fun, "carry", paths, tree, avals, out_tree, bj.out_avals)
    outs = while_p.bind(*cc, *bc, *leaves, body_jaxpr=bj, body_nconsts=len(bc),
                        cond_jaxpr=cj, cond_nconsts=len(cc))
    return tree_unflatten(tree, outs)


def fori_loop(lower, upper, body_fun, init_val, *, unroll=None):
    """`for i in range(lower, upper): val = body_fun(i, val)`. With concrete
    bounds (Python ints, concrete arrays) it is a scan, so reverse-mode
    differentiable; otherwise a while_loop."""
    if not callable(body_fun):
        raise TypeError("lax.fori_loop: body_fun argument should be callable.")
    la, ua = get_aval(lower), get_aval(upper)
    ld, ud = np.dtype(la.dtype), np.dtype(ua.dtype)
    if ld.kind not in "iu" or ud.kind not in "iu":
        raise TypeError(f"lower and upper arguments to fori_loop must be integers, got "
                        f"{la.str_short()} and {ua.str_short()}")
    dtype = ld
    if ld != ud:
        # as JAX: a weakly typed bound (a Python int) takes the other's dtype
        if la.weak_type and not ua.weak_type:
            dtype = ud
        elif ua.weak_type and not la.weak_type:
            dtype = ld
        else:
            raise TypeError(f"lower and upper arguments to fori_loop must have equal types, "
                            f"got {ld.name} and {ud.name}")
    try:
        lo, hi = int(lower), int(upper)
    except TypeError:  # traced bounds (ConcretizationError is a TypeError)
        use_scan = False
    else:
        use_scan = True
    if use_scan:
        length = max(hi - lo, 0)

        def scan_body(carry, _):
            i, x = carry
            return (i + 1, body_fun(i, x)), None

        (_, result), _ = scan(scan_body, (lo, init_val), None, length=length, unroll=unroll)
        return result
    if unroll is not None and unroll is not False and unroll != 1:
        raise ValueError("Can only use `unroll` in `fori_loop` if the loop bounds are "
                         "statically known.")
    lower = _as_array(lower) if ld == dtype else _ew.convert(_as_array(lower), dtype)
    upper = _as_array(upper) if ud == dtype else _ew.convert(_as_array(upper), dtype)
    _, _, result = while_loop(lambda c: c[0] < c[1],
                              lambda c: (c[0] + 1, c[1], body_fun(c[0], c[2])),
                              (lower, upper, init_val))
    return result


# --------------------------------------------------------------------------
# scan / map


def _scan_length(leaves, paths, length):
    lengths = []
    for p, x in zip(paths, leaves):
        a = get_aval(x)
        if a.ndim == 0:
            raise ValueError(f"scan got value with no leading axis to scan over: "
                             f"xs{keystr(p)} of type {a.str_short()}")
        lengths.append(a.shape[0])
    if length is not None:
        try:
            length = int(length)
        except TypeError:
            raise core.ConcretizationError(
                "The `length` argument to `scan` expects a concrete `int` value. For scan-like "
                "iteration with a dynamic length, use `while_loop` or `fori_loop`.") from None
        if any(n != length for n in lengths):
            raise ValueError(f"scan got `length` argument of {length} which disagrees with "
                             f"leading axis sizes {lengths}.")
        return length
    if len(set(lengths)) > 1:
        detail = ", ".join(f"xs{keystr(p)}: {n}" for p, n in zip(paths, lengths))
        raise ValueError(f"scan got values with different leading axis sizes: {detail}.")
    if not lengths:
        raise ValueError("scan got no values to scan over and `length` not provided.")
    return lengths[0]


def scan(f, init, xs=None, length=None, reverse=False, unroll=None):
    """`carry, y = f(carry, x)` over the leading axis of xs; returns the final
    carry and the stacked ys (as jax.lax.scan).

    unroll: steps per iteration of the compiled loop (an int, or True for
    all). Unlike JAX (default 1), None lets tracegrad choose: compiled
    reverse loops (gradients' backward loops) over small bodies run 4 steps
    per XLA iteration (results are the same; see control_flow._AUTO_UNROLL)."""
    if not callable(f):
        raise TypeError("lax.scan: f argument should be a callable.")
    init_leaves, init_paths, init_tree = _flatten(init, "scan", "init")
    xs_leaves, xs_paths, xs_tree = _flatten(xs, "scan", "xs")
    length = _scan_length(xs_leaves, xs_paths, length)
    if isinstance(unroll, (bool, np.bool_)):
        unroll = max(length, 1) if unroll else 1
    if unroll is not None:
        unroll = int(unroll)
        if unroll < 0:
            raise ValueError("`unroll` must be a `bool` or a non-negative `int`.")
        unroll = max(unroll, 1)
    x_avals = [get_aval(x).update(shape=tuple(get_aval(x).shape[1:])) for x in xs_leaves]
    nk = len(init_leaves)

    def split_out(out):
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError(f"scan body output must be a pair (carry, y), got "
                            f"{type(out).__name__}\n  body function is {_fun_name(f)}\n"
                            f"  at {core.user_frame()}")
        return list(out)

    def trace(init_leaves):
        avals = [get_aval(x) for x in init_leaves]
        in_tree = tree_structure((tree_unflatten(init_tree, [0] * nk),
                                  tree_unflatten(xs_tree, [0] * len(xs_leaves))))
        make_args = lambda flat: tree_unflatten(in_tree, flat)
        closed, consts, info = _trace(f, make_args, avals + x_avals, "scan", "body", split_out)
        return avals, closed, consts, info

    avals, closed, consts, info = trace(init_leaves)
    (carry_tree, _, n_carry), (y_tree, _, _) = info
    if carry_tree == init_tree:
        init_leaves, changed = _promote_weak(init_leaves, avals, closed.out_avals[:n_carry])
        if changed:
            avals, closed, consts, info = trace(init_leaves)
            (carry_tree, _, n_carry), (y_tree, _, _) = info
    _check_carry("scan", f, "carry", init_paths, init_tree, avals, carry_tree,
                 closed.out_avals[:n_carry])
    outs = scan_p.bind(*consts, *init_leaves, *xs_leaves, jaxpr=closed, length=length,
                       num_carry=nk, num_consts=len(consts), reverse=bool(reverse),
                       unroll=unroll)
    return tree_unflatten(init_tree, outs[:nk]), tree_unflatten(y_tree, outs[nk:])


def map(f, xs):
    """f over the leading axis of xs, stacking the results (a scan without
    a carry; as jax.lax.map)."""
    _, ys = scan(lambda _, x: ((), f(x)), (), xs)
    return ys


# --------------------------------------------------------------------------
# lax-level helpers


def convert_element_type(operand, new_dtype):
    return _ew.convert(_as_array(operand), np.dtype(new_dtype))


def clamp(min, x, max):  # noqa: A002  (JAX's parameter names)
    return _ew.clamp_p.bind(_as_array(min), _as_array(x), _as_array(max))


def select_n(which, *cases):
    return _ew.select_n_p.bind(_as_array(which), *[_as_array(c) for c in cases])


def select(pred, on_true, on_false):
    return _ew.select_n_p.bind(_as_array(pred), _as_array(on_false), _as_array(on_true))


# stop_gradient lives with the other autodiff primitives (custom_derivatives.py)
from .custom_derivatives import stop_gradient  # noqa: E402,F401

# dot_general and convolutions (primitives/linalg.py, primitives/conv.py)
from .primitives.linalg import dot_general  # noqa: E402,F401
from .primitives.conv import (  # noqa: E402,F401
    ConvDimensionNumbers, conv, conv_dimension_numbers, conv_general_dilated,
    conv_with_general_padding, padtype_to_pads)

__all__ += ["dot_general", "ConvDimensionNumbers", "conv", "conv_dimension_numbers",
            "conv_general_dilated", "conv_with_general_padding", "padtype_to_pads"]

# gather/scatter and dynamic slices (primitives/indexing.py)
from .primitives.indexing import (  # noqa: E402,F401
    GatherDimensionNumbers, ScatterDimensionNumbers, dynamic_index_in_dim, dynamic_slice,
    dynamic_slice_in_dim, dynamic_update_index_in_dim, dynamic_update_slice,
    dynamic_update_slice_in_dim, gather, scatter, scatter_add, scatter_max, scatter_min,
    scatter_mul)

__all__ += ["GatherDimensionNumbers", "ScatterDimensionNumbers", "dynamic_index_in_dim",
            "dynamic_slice", "dynamic_slice_in_dim", "dynamic_update_index_in_dim",
            "dynamic_update_slice", "dynamic_update_slice_in_dim", "gather", "scatter",
            "scatter_add", "scatter_max", "scatter_min", "scatter_mul"]
