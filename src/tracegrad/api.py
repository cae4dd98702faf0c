"""User-facing transformations: make_jaxpr, jvp, linearize, vjp, grad,
value_and_grad, jacfwd, jacrev, hessian, vmap. Pytree plumbing, argnums,
has_aux, in_axes/out_axes, and error messages live here."""
from __future__ import annotations

import functools

import numpy as np

from . import core, dtypes
from .core import get_aval, is_array_like
from .interpreters import ad, batching, tape
from .tree_util import keystr, tree_flatten, tree_flatten_with_path, tree_map, tree_unflatten

# --------------------------------------------------------------------------
# argument checking and flattening


def fun_name(f):
    f = getattr(f, "__wrapped__", f)
    name = getattr(f, "__qualname__", None) or getattr(f, "__name__", None) or repr(f)
    code = getattr(f, "__code__", None)
    where = f" at {code.co_filename}:{code.co_firstlineno}" if code is not None else ""
    return f"{name}{where}"


def _short_name(f):
    f = getattr(f, "__wrapped__", f)
    return getattr(f, "__name__", None) or type(f).__name__


def check_leaves(leaves_with_path, fn, what="argument"):
    for path, x in leaves_with_path:
        if not is_array_like(x):
            raise TypeError(
                f"{_short_name(fn)}: {what} {keystr(path) or '(root)'} is of type "
                f"{type(x).__name__}, which is not a valid array type (use arrays, "
                f"Python scalars, or mark it static with static_argnums).")


def flatten_args(args, fn, what="argument"):
    with_path, tree = tree_flatten_with_path(args)
    check_leaves(with_path, fn, what)
    return [x for _, x in with_path], tree


def _static_split(args, static_argnums):
    nums = {n % len(args) if args else n for n in static_argnums}
    return nums


def _argnums_tuple(argnums):
    return (argnums,) if isinstance(argnums, int) else tuple(argnums)


def _dyn_args(f, args, kwargs, argnums):
    """Split args into differentiated pytree (by argnums) and a function of
    its flat leaves that calls f with everything else fixed."""
    nums = _argnums_tuple(argnums)
    for n in nums:
        if not -len(args) <= n < len(args):
            raise TypeError(f"{_short_name(f)}: argnums {argnums} out of range for "
                            f"{len(args)} positional arguments")
    dyn = tuple(args[n] for n in nums)
    leaves, tree = flatten_args(dyn, f)

    def call(*flat):
        new_args = list(args)
        for n, v in zip(nums, tree_unflatten(tree, flat)):
            new_args[n] = v
        return f(*new_args, **kwargs)

    return leaves, tree, call, nums


def _unflatten_dyn(tree, flat, argnums):
    out = tree_unflatten(tree, flat)
    return out[0] if isinstance(argnums, int) else out


# --------------------------------------------------------------------------
# make_jaxpr


def make_jaxpr(f, static_argnums=(), return_shape=False):
    """Trace f to a ClosedJaxpr (printed in JAX's format)."""
    static = _argnums_tuple(static_argnums)

    @functools.wraps(f)
    def jaxpr_maker(*args, **kwargs):
        nums = {n % len(args) for n in static} if args else set()
        dyn = [a for i, a in enumerate(args) if i not in nums]
        leaves, in_tree = flatten_args(tuple(dyn), f)
        out_tree_box = []

        def flat_fun(*flat):
            it = iter(tree_unflatten(in_tree, flat))
            full = [args[i] if i in nums else next(it) for i in range(len(args))]
            out = f(*full, **kwargs)
            out_leaves, out_tree = tree_flatten(out)
            out_tree_box.append((out_tree, out_leaves))
            return out_leaves

        closed = core.trace_to_jaxpr(flat_fun, [get_aval(x) for x in leaves], fn_name=fun_name(f))
        closed = core.dce_closed(closed)
        if return_shape:
            out_tree, out_leaves = out_tree_box[0]
            shapes = [ShapeDtypeStruct(a.shape, a.dtype) for a in closed.out_avals]
            return closed, tree_unflatten(out_tree, shapes)
        return closed

    return jaxpr_maker


class ShapeDtypeStruct:
    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)

    def __repr__(self):
        return f"ShapeDtypeStruct(shape={self.shape}, dtype={self.dtype})"

    def __eq__(self, o):
        return isinstance(o, ShapeDtypeStruct) and (self.shape, self.dtype) == (o.shape, o.dtype)

    __hash__ = lambda self: hash((self.shape, self.dtype))


# --------------------------------------------------------------------------
# forward mode


def _check_tangent(p, t, path):
    pa, ta = get_aval(p), get_aval(t)
    want = dtypes.tangent_dtype(pa.dtype)
    if pa.shape != ta.shape or (ta.dtype != want and not (want == dtypes.float0 and ta.dtype == dtypes.float0)):
        raise TypeError(f"jvp: primal and tangent at {path or '(root)'} must have matching "
                        f"shape and dtype: primal {pa.str_short()}, tangent {ta.str_short()} "
                        f"(expected {dtypes.short_name(want)}[{','.join(map(str, pa.shape))}])")


def split_aux(f, out, has_aux):
    """(output, aux) of a function transformed with has_aux (aux None otherwise)."""
    if not has_aux:
        return out, None
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(f"{_short_name(f)} was transformed with has_aux=True, so it must "
                        f"return a pair (output, aux); got {type(out).__name__}")
    return out


def flat_fun_with_aux(f, in_tree, has_aux, box):
    """f on flat leaves -> output leaves + aux leaves; records
    (out_tree, number of output leaves, aux_tree) in `box`."""
    def flat_fun(*flat):
        out, aux = split_aux(f, f(*tree_unflatten(in_tree, flat)), has_aux)
        out_leaves, out_tree = tree_flatten(out)
        aux_leaves, aux_tree = tree_flatten(aux)
        box.append((out_tree, len(out_leaves), aux_tree))
        return out_leaves + aux_leaves
    return flat_fun


def jvp(f, primals, tangents, has_aux=False):
    """(f(*primals), df(primals) . tangents), as jax.jvp."""
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("jvp: primals and tangents must be tuples or lists, "
                        f"got {type(primals).__name__} and {type(tangents).__name__}")
    p_leaves, p_tree = flatten_args(tuple(primals), f, "primal")
    t_with_path, t_tree = tree_flatten_with_path(tuple(tangents))
    if p_tree != t_tree:
        raise TypeError(f"jvp: primal and tangent arguments must have the same tree structure; "
                        f"got {p_tree} and {t_tree}")
    t_leaves = []
    for p, (path, t) in zip(p_leaves, t_with_path):
        _check_tangent(p, t, keystr(path))
        t_leaves.append(ad.Zero(get_aval(p).tangent_aval()) if not dtypes.is_float(get_aval(p).dtype) else t)
    box = []
    flat_fun = flat_fun_with_aux(f, p_tree, has_aux, box)
    pouts, touts = ad.jvp_flat(flat_fun, p_leaves, t_leaves)
    out_tree, n, aux_tree = box[0]
    touts = [_materialize(t) for t in touts[:n]]
    res = (tree_unflatten(out_tree, pouts[:n]), tree_unflatten(out_tree, touts))
    if has_aux:
        return res + (tree_unflatten(aux_tree, pouts[n:]),)
    return res


def _like_input(c, x):
    """An eager cotangent carries its input's weak type (as JAX's grad of a
    Python float is weakly typed)."""
    if type(c) is core.Array and is_array_like(x):
        w = get_aval(x).weak_type
        if c.weak != w:
            return core.Array(c._v, w, c._buf)
    return c


def _materialize(t):
    if type(t) is ad.Zero:
        return ad.zeros(t.aval)
    if isinstance(t, (np.ndarray, np.generic)):  # e.g. a cotangent that passed straight through
        return core.Array(np.asarray(t))
    return t


def linearize(f, *primals, has_aux=False):
    """(f(*primals), f_jvp[, aux]) where f_jvp(*tangents) evaluates the staged
    linear map (its jaxpr is `f_jvp.jaxpr`; the residuals are its consts)."""
    leaves, tree = flatten_args(primals, f)
    box = []
    flat_fun = flat_fun_with_aux(f, tree, has_aux, box)
    pouts, lin = ad.linearize_flat(flat_fun, leaves, fn_name=fun_name(f))
    out_tree, n, aux_tree = box[0]

    def f_jvp(*tangents):
        t_with_path, t_tree = tree_flatten_with_path(tangents)
        if t_tree != tree:
            raise TypeError(f"linearize: tangents must have the primals' structure {tree}, got {t_tree}")
        for p, (path, t) in zip(leaves, t_with_path):
            _check_tangent(p, t, keystr(path))
        return tree_unflatten(out_tree, [_materialize(t) for t in lin(*[t for _, t in t_with_path])[:n]])

    f_jvp.jaxpr = lin.closed_jaxpr
    out = tree_unflatten(out_tree, pouts[:n])
    if has_aux:
        return out, f_jvp, tree_unflatten(aux_tree, pouts[n:])
    return out, f_jvp


# --------------------------------------------------------------------------
# reverse mode


def vjp(f, *primals, has_aux=False):
    """(f(*primals), vjp_fun[, aux]); vjp_fun(ct) returns one cotangent per primal.

    PyTorch mapping: `y.backward(v)` then reading `x.grad` is `vjp(f, x)[1](v)[0]`."""
    leaves, tree = flatten_args(primals, f)
    box = []
    flat_fun = flat_fun_with_aux(f, tree, has_aux, box)
    pouts, lin = tape.vjp_flat(flat_fun, leaves, fn_name=fun_name(f))
    out_tree, n, aux_tree = box[0]
    out_avals = [get_aval(p) for p in pouts[:n]]

    def vjp_fun(ct):
        ct_with_path, ct_tree = tree_flatten_with_path(ct)
        if ct_tree != out_tree:
            raise TypeError(f"vjp: the cotangent must have the output's structure {out_tree}, "
                            f"got {ct_tree}")
        cts = []
        for (path, c), a in zip(ct_with_path, out_avals):
            ca = get_aval(c)
            if ca.shape != a.shape:
                raise TypeError(f"vjp: cotangent {keystr(path) or '(root)'} has shape {ca.shape}, "
                                f"but the output has shape {a.shape}")
            if dtypes.is_float(a.dtype) and ca.dtype != a.dtype:
                if not (ca.weak_type and is_array_like(c) and not isinstance(c, core.Tracer)
                        and ca.shape == ()):
                    raise ValueError(
                        f"vjp: cotangent {keystr(path) or '(root)'} has type {ca.str_short()}, but "
                        f"the corresponding output of {_short_name(f)} is {a.str_short()}; the "
                        f"cotangent must have the output's shape and dtype")
                from .primitives.elementwise import convert
                c = convert(c, a.dtype)  # a Python scalar takes the output's dtype
            if not dtypes.is_float(a.dtype):
                c = ad.Zero(a.tangent_aval())  # integer outputs: float0 (or ignored) cotangents
            cts.append(c)
        cts += [ad.Zero(get_aval(p).tangent_aval()) if is_array_like(p) else None for p in pouts[n:]]
        in_cts = lin.transpose(cts)
        in_cts = [_like_input(_materialize(c), x) for c, x in zip(in_cts, leaves)]
        return tree_unflatten(tree, in_cts)

    out = tree_unflatten(out_tree, pouts[:n])
    if has_aux:
        return out, vjp_fun, tree_unflatten(aux_tree, pouts[n:])
    return out, vjp_fun


def _check_grad_inputs(f, leaves, tree, argnums, who="grad", allow_int=False, holomorphic=False):
    """Differentiated inputs must be inexact (complex only when holomorphic,
    for jacfwd); the error names the argument position and the leaf path."""
    for i, x in enumerate(leaves):
        a = get_aval(x)
        ok = dtypes.is_float(a.dtype) or allow_int
        hint = ("Convert it with .astype(float), leave it out of argnums, or pass allow_int=True "
                "to get float0 zero gradients (vjp also accepts integer inputs).")
        if holomorphic and not dtypes.is_complex(a.dtype):
            what = "complex-valued inputs (input dtype that is a sub-dtype of np.complexfloating)"
            ok, hint = False, "Convert it with .astype(complex)."
        elif who == "jacfwd" and dtypes.is_complex(a.dtype) and not holomorphic:
            what = "real-valued inputs (input dtype that is a sub-dtype of np.floating)"
            ok, hint = False, "For holomorphic differentiation, pass holomorphic=True."
        else:
            what = "real- or complex-valued inputs (input dtype that is a sub-dtype of np.inexact)"
        if not ok:
            raise TypeError(f"{who}({_short_name(f)}) requires {what}, but "
                            f"{_leaf_name(tree, i, argnums)} has type {a.str_short()}. {hint}")


def _leaf_name(tree, i, argnums):
    """'argument 1 (argnums=(0, 1)) at [\'w\']' for leaf i of the differentiated args."""
    dyn = tree_unflatten(tree, list(range(tree.num_leaves)))
    nums = _argnums_tuple(argnums)
    for n, arg in zip(nums, dyn):
        for path, leaf in tree_flatten_with_path(arg)[0]:
            if leaf == i:
                where = f" at {keystr(path)}" if path else ""
                return f"argument {n} (argnums={argnums}){where}"
    return f"input leaf {i} (argnums={argnums})"


def _check_grad_output(f, out, who, holomorphic):
    """A scalar real output (complex when holomorphic), with JAX's messages."""
    if not is_array_like(out) or get_aval(out).shape != ():
        desc = get_aval(out).str_short() if is_array_like(out) else type(out).__name__
        raise TypeError(
            f"{who}({_short_name(f)}) requires a scalar (shape ()) output, got {desc}. "
            f"For vector outputs use tracegrad.jacrev, or tracegrad.vjp with a cotangent "
            f"(the PyTorch y.backward(v) equivalent).")
    _check_output_dtype(f, get_aval(out), who, holomorphic)


def _check_output_dtype(f, a, who, holomorphic):
    if holomorphic:
        if not dtypes.is_complex(a.dtype):
            raise TypeError(f"{who}({_short_name(f)}) with holomorphic=True requires complex-valued "
                            f"outputs, but got {a.str_short()}")
        return
    if dtypes.is_complex(a.dtype):
        raise TypeError(f"{who}({_short_name(f)}) requires real-valued outputs (output dtype that "
                        f"is a sub-dtype of np.floating), but got {a.str_short()}. For holomorphic "
                        f"differentiation, pass holomorphic=True. For differentiation of "
                        f"non-holomorphic functions involving complex outputs, use tracegrad.vjp "
                        f"directly.")
    if not dtypes.is_float(a.dtype):
        raise TypeError(f"{who}({_short_name(f)}) requires real-valued outputs (output dtype that "
                        f"is a sub-dtype of np.floating), but got {a.str_short()}. For "
                        f"differentiation of functions with integer outputs, use tracegrad.vjp "
                        f"directly.")


def value_and_grad(f, argnums=0, has_aux=False, holomorphic=False, allow_int=False):
    """(f(*args), grad f(*args)), as jax.value_and_grad. PyTorch mapping:
    `loss = f(x); loss.backward(); x.grad` is `value_and_grad(f)(x)`."""
    @functools.wraps(f)
    def value_and_grad_f(*args, **kwargs):
        leaves, tree, call, nums = _dyn_args(f, args, kwargs, argnums)
        _check_grad_inputs(f, leaves, tree, argnums, "grad", allow_int, holomorphic)
        box = []

        def flat_fun(*flat):
            out, aux = split_aux(f, call(*flat), has_aux)
            _check_grad_output(f, out, "grad", holomorphic)
            aux_leaves, aux_tree = tree_flatten(aux)
            box.append(aux_tree)
            return [out] + aux_leaves

        pouts, lin = tape.vjp_flat(flat_fun, leaves, fn_name=fun_name(f))
        out = pouts[0]
        one = np.ones((), get_aval(out).dtype)[()]  # (1+0j when holomorphic)
        cts = [one] + [ad.Zero(get_aval(p).tangent_aval()) if is_array_like(p) else None
                       for p in pouts[1:]]
        g = [_like_input(_materialize(c), x) for c, x in zip(lin.transpose(cts), leaves)]
        grads = _unflatten_dyn(tree, g, argnums)
        if has_aux:
            return (out, tree_unflatten(box[0], pouts[1:])), grads
        return out, grads

    return value_and_grad_f


def grad(f, argnums=0, has_aux=False, holomorphic=False, allow_int=False):
    """Gradient of a scalar function, as jax.grad (argnums: an int or a tuple;
    has_aux: f returns (output, aux) and grad returns (gradient, aux))."""
    vg = value_and_grad(f, argnums, has_aux, holomorphic, allow_int)

    @functools.wraps(f)
    def grad_f(*args, **kwargs):
        (val, g) = vg(*args, **kwargs)
        if has_aux:
            return g, val[1]
        return g

    return grad_f


# --------------------------------------------------------------------------
# vmap


def _check_axes_spec(spec, what):
    """Leaves of an in_axes/out_axes spec must be ints or None (as JAX)."""
    for leaf in tree_flatten(spec, is_leaf=lambda x: x is None)[0]:
        if leaf is not None and (isinstance(leaf, bool) or not isinstance(leaf, (int, np.integer))):
            raise TypeError(f"vmap {what} must be an int, None, or a (nested) tuple/list/dict "
                            f"of those, but got {spec!r} (leaf {leaf!r})")


def _broadcast_prefix(prefix, tree, what):
    """Per-leaf values of `prefix` (a pytree prefix of `tree`; None is a leaf)."""
    out = []

    def f(ax, sub):
        out.append((ax, len(tree_flatten(sub)[0])))
        return ax
    try:
        tree_map(f, prefix, tree, is_leaf=lambda x: x is None)
    except ValueError as e:
        raise ValueError(f"vmap {what} specification {prefix!r} must be a tree prefix of the "
                         f"corresponding value {tree_flatten(tree)[1]}: {e}") from None
    res = []
    for ax, n in out:
        res += [None if ax is None else int(ax)] * n
    return res


def _arg_namer(f, args):
    """path -> 'argument x[...]' using f's parameter names where possible (as JAX)."""
    import inspect
    try:
        names = [p.name for p in inspect.signature(f).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        names = []

    def name(path):
        # path[0] indexes (args, kwargs); path[1] the argument or keyword
        if path[0].idx == 1:
            return f"keyword argument {path[1].key!r}{keystr(path[2:])}"
        i = path[1].idx
        head = f"argument {names[i]}" if i < len(names) else f"args[{i}]"
        return head + keystr(path[2:])
    return name


def vmap(f, in_axes=0, out_axes=0, axis_size=None):
    """Vectorise f over an axis of its inputs, as jax.vmap.

    in_axes: an int, None, or a tuple (one entry per positional argument) of
    pytree prefixes of ints/None; keyword arguments are always mapped over
    axis 0 (as JAX). out_axes: int, None, or a pytree prefix of the output;
    None is allowed only for outputs that do not depend on the mapped axis.
    axis_size: needed when no argument is mapped."""
    if isinstance(in_axes, list):
        in_axes = tuple(in_axes)  # as JAX: a list is read as the per-argument tuple
    if not (in_axes is None or isinstance(in_axes, (int, np.integer, tuple))) or isinstance(in_axes, bool):
        raise TypeError("vmap in_axes must be an int, None, or a tuple of entries corresponding "
                        f"to the positional arguments passed to the function, but got {in_axes!r}")
    _check_axes_spec(in_axes, "in_axes")
    _check_axes_spec(out_axes, "out_axes")
    if axis_size is not None and (isinstance(axis_size, bool) or not isinstance(axis_size, (int, np.integer))
                                  or axis_size < 0):
        raise TypeError(f"vmap axis_size must be a non-negative int, got {axis_size!r}")

    @functools.wraps(f)
    def vmapped(*args, **kwargs):
        if isinstance(in_axes, tuple) and len(in_axes) != len(args):
            raise ValueError(f"vmap({_short_name(f)}): in_axes has {len(in_axes)} entries but the "
                             f"function was called with {len(args)} positional arguments "
                             f"(in_axes must be an int, None, or a tuple with one entry per "
                             f"positional argument)")
        with_path, in_tree = tree_flatten_with_path((args, kwargs))
        check_leaves([(p[1:], x) for p, x in with_path], f)
        leaves = [x for _, x in with_path]
        dims = _broadcast_prefix((in_axes, 0), (args, kwargs), "in_axes")
        name = _arg_namer(f, args)
        norm, mapped = [], []
        for (path, x), d in zip(with_path, dims):
            if d is None:
                norm.append(None)
                continue
            a = get_aval(x)
            if not -a.ndim <= d < a.ndim:
                raise ValueError(
                    f"vmap({_short_name(f)}) was requested to map {name(path)} along axis {d}, "
                    f"which implies that its rank should be at least {d + 1 if d >= 0 else -d}, "
                    f"but it is {a.str_short()} (rank {a.ndim})")
            d = d % a.ndim
            norm.append(d)
            mapped.append((name(path), a, d, a.shape[d]))
        distinct = {s for _, _, _, s in mapped}
        if axis_size is not None:
            distinct.add(int(axis_size))
        if len(distinct) > 1:
            lines = [f"  * {n} of type {a.str_short()}: axis {d} has size {s}" for n, a, d, s in mapped]
            if axis_size is not None:
                lines.append(f"  * the axis_size argument was {axis_size}")
            raise ValueError(f"vmap({_short_name(f)}) got inconsistent sizes for array axes to be "
                             f"mapped:\n" + "\n".join(lines))
        if not distinct:
            raise ValueError(f"vmap({_short_name(f)}) must have at least one non-None value in "
                             f"in_axes, or axis_size must be specified")
        size = distinct.pop()
        box = []

        def flat_fun(*flat):
            a, kw = tree_unflatten(in_tree, flat)
            out = f(*a, **kw)
            out_with_path, out_tree = tree_flatten_with_path(out)
            check_leaves(out_with_path, f, "output")
            box.append((out, out_tree, [p for p, _ in out_with_path]))
            return [x for _, x in out_with_path]

        def out_dims():
            out, _, _ = box[0]
            return _broadcast_prefix(out_axes, out, "out_axes")

        def out_name(i):
            return f"output {keystr(box[0][2][i]) or '(root)'}"

        res = batching.vmap_flat(flat_fun, leaves, norm, out_dims, size,
                                 fn_name=fun_name(f), out_name=out_name)
        return tree_unflatten(box[0][1], res)

    return vmapped


# --------------------------------------------------------------------------
# Jacobians
#
# One vmap per differentiated leaf (jacfwd: per input leaf, the other leaves'
# tangents are symbolic zeros; jacrev: per output leaf, over one
# linearization). The batched work is the same as with one concatenated
# basis, but nothing has to be sliced apart afterwards and zero blocks are
# never computed.


# up to this many basis vectors, a traced basis is computed in the program
_IOTA_BASIS_MAX = 64


def _eye_basis(x):
    """The standard basis of x's tangent space: (size, *shape), x's dtype.

    Traced (under jit), a small basis is built in the program from iotas, as
    JAX does: XLA then turns gathers and dots of it into compares instead of
    reading an n x n argument (jitted det n=7 jacfwd: 17% faster, GMM d2
    up to 11%). A large one stays a constant: building its n^2 entries on
    every call cost the sweep's n = 100/1000 forward Jacobians 7-24%."""
    a = get_aval(x)
    dt = dtypes.tangent_dtype(a.dtype)
    n = a.size
    if (core._ctx.trace is None or not 1 < n <= _IOTA_BASIS_MAX
            or np.dtype(dt).kind not in "fc"):
        return np.eye(n, dtype=dt).reshape((n,) + a.shape), n
    from .primitives import elementwise, shapes
    eye = elementwise.eq_p.bind(shapes.iota(np.int32, (n, n), 0),
                                shapes.iota(np.int32, (n, n), 1))
    return shapes.reshape(elementwise.convert(eye, dt), (n,) + a.shape), n


def _map_basis(fn, basis, out_dims, n):
    """vmap of fn over the basis vectors; a basis of one vector is just one
    call (no batch trace: eager jacrev of a scalar function costs a grad).
    Callers reshape the results, so the missing size-1 axis does not matter."""
    if n == 1:
        return fn(basis[0])
    return batching.vmap_flat(fn, [basis], [0], out_dims, n)


def jacfwd(f, argnums=0, has_aux=False, holomorphic=False, allow_int=False):
    """Jacobian by forward mode: vmap of jvp over the input basis.
    Result: for each output leaf, the argnums structure of (*out, *in) arrays."""
    @functools.wraps(f)
    def jacfun(*args, **kwargs):
        from .primitives import shapes
        leaves, tree, call, nums = _dyn_args(f, args, kwargs, argnums)
        _check_grad_inputs(f, leaves, tree, argnums, "jacfwd", allow_int, holomorphic)
        box = []

        def flat_fun(*flat):
            out, aux = split_aux(f, call(*flat), has_aux)
            ol, ot = tree_flatten(out)
            al, at = tree_flatten(aux)
            box[:] = [(ot, len(ol), len(al), at)]
            return ol + al

        pouts, per_leaf = None, []
        for j, x in enumerate(leaves):
            basis, n = _eye_basis(x)

            def push(t, j=j):
                ts = [t if i == j else ad.Zero(get_aval(l).tangent_aval()) for i, l in enumerate(leaves)]
                po, to = ad.jvp_flat(flat_fun, leaves, ts)
                # integer outputs: zeros of the output's dtype (as JAX), not float0
                return po + [_materialize(t) if dtypes.is_float(get_aval(p).dtype) else
                             ad.zeros(get_aval(p).strip_weak()) for t, p in zip(to[:box[0][1]], po)]

            def out_dims():
                # primal outputs and aux do not depend on the tangents (unbatched);
                # the basis axis of the output tangents goes last
                _, n_out, n_aux, _ = box[0]
                return [None] * (n_out + n_aux) + [-1] * n_out

            res = _map_basis(push, basis, out_dims, n)
            n_out = box[0][1]
            pouts, touts = res[:len(res) - n_out], res[len(res) - n_out:]
            per_leaf.append([shapes.reshape(t, get_aval(p).shape + get_aval(x).shape)
                             for t, p in zip(touts, pouts)])
        if not leaves:  # nothing to differentiate: still run f for the structure
            pouts = flat_fun()
        out_tree, n_out, _, aux_tree = box[0]
        jac_leaves = [_unflatten_dyn(tree, [per_leaf[j][i] for j in range(len(leaves))], argnums)
                      for i in range(n_out)]
        jac = tree_unflatten(out_tree, jac_leaves)
        if has_aux:
            return jac, tree_unflatten(aux_tree, pouts[n_out:])
        return jac

    return jacfun


def jacrev(f, argnums=0, has_aux=False, holomorphic=False, allow_int=False):
    """Jacobian by reverse mode: one reverse pass (linearize, or eagerly a
    tape), then vmap of its pullback over each output leaf's basis. Same
    result structure as jacfwd."""
    @functools.wraps(f)
    def jacfun(*args, **kwargs):
        from .primitives import shapes
        leaves, tree, call, nums = _dyn_args(f, args, kwargs, argnums)
        _check_grad_inputs(f, leaves, tree, argnums, "jacrev", allow_int, holomorphic)
        box = []

        def flat_fun(*flat):
            out, aux = split_aux(f, call(*flat), has_aux)
            ol, ot = tree_flatten(out)
            al, at = tree_flatten(aux)
            box.append((ot, len(ol), at))
            return ol + al

        pouts, lin = tape.vjp_flat(flat_fun, leaves, fn_name=fun_name(f))
        out_tree, n_out, aux_tree = box[0]
        outs = pouts[:n_out]
        for o in outs:
            _check_output_dtype(f, get_aval(o), "jacrev", holomorphic)
        zero_cts = [ad.Zero(get_aval(p).tangent_aval()) if is_array_like(p) else None for p in pouts]
        per_out = []
        for i, o in enumerate(outs):
            basis, m = _eye_basis(o)

            def pull(ct, i=i):
                cts = list(zero_cts)
                cts[i] = ct
                return [_materialize(c) for c in lin.transpose(cts)]

            cts_in = _map_basis(pull, basis, [0] * len(leaves), m)
            # cts_in[j]: (m, *in_j) -> (*out_i, *in_j)
            per_in = [shapes.reshape(c, get_aval(o).shape + get_aval(x).shape)
                      for c, x in zip(cts_in, leaves)]
            per_out.append(_unflatten_dyn(tree, per_in, argnums))
        jac = tree_unflatten(out_tree, per_out)
        if has_aux:
            return jac, tree_unflatten(aux_tree, pouts[n_out:])
        return jac

    return jacfun


def hessian(f, argnums=0, has_aux=False, holomorphic=False):
    """Second derivatives: jacfwd(jacrev(f)), as jax.hessian."""
    return jacfwd(jacrev(f, argnums, has_aux, holomorphic), argnums, has_aux, holomorphic)
