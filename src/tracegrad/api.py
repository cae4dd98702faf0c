"""User-facing transformations: make_jaxpr, jvp, linearize, vjp, grad,
value_and_grad, jacfwd, jacrev, hessian, vmap. Pytree plumbing, argnums,
has_aux, in_axes/out_axes, and error messages live here."""
from __future__ import annotations

import functools

import numpy as np

from . import core, dtypes
from .core import get_aval, is_array_like
from .interpreters import ad, batching
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

    def flat_fun(*flat):
        out = f(*tree_unflatten(p_tree, flat))
        aux = None
        if has_aux:
            out, aux = out
        leaves, tree = tree_flatten(out)
        aux_leaves, aux_tree = tree_flatten(aux)
        box.append((tree, len(leaves), aux_tree))
        return leaves + aux_leaves

    pouts, touts = ad.jvp_flat(flat_fun, p_leaves, t_leaves)
    out_tree, n, aux_tree = box[0]
    touts = [_materialize(t) for t in touts[:n]]
    res = (tree_unflatten(out_tree, pouts[:n]), tree_unflatten(out_tree, touts))
    if has_aux:
        return res + (tree_unflatten(aux_tree, pouts[n:]),)
    return res


def _materialize(t):
    if type(t) is ad.Zero:
        return ad.zeros(t.aval)
    return t


def linearize(f, *primals):
    """(f(*primals), f_jvp) where f_jvp evaluates the staged linear map."""
    leaves, tree = flatten_args(primals, f)
    box = []

    def flat_fun(*flat):
        out = f(*tree_unflatten(tree, flat))
        out_leaves, out_tree = tree_flatten(out)
        box.append(out_tree)
        return out_leaves

    pouts, lin = ad.linearize_flat(flat_fun, leaves, fn_name=fun_name(f))
    out_tree = box[0]

    def f_jvp(*tangents):
        t_leaves, t_tree = tree_flatten(tangents)
        if t_tree != tree:
            raise TypeError(f"linearize: tangents must have the primals' structure {tree}, got {t_tree}")
        return tree_unflatten(out_tree, lin(*t_leaves))

    f_jvp.jaxpr = lin.closed_jaxpr
    return tree_unflatten(out_tree, pouts), f_jvp


# --------------------------------------------------------------------------
# reverse mode


def vjp(f, *primals, has_aux=False):
    """(f(*primals), vjp_fun[, aux]); vjp_fun(ct) returns one cotangent per primal.

    PyTorch mapping: `y.backward(v)` then reading `x.grad` is `vjp(f, x)[1](v)[0]`."""
    leaves, tree = flatten_args(primals, f)
    box = []

    def flat_fun(*flat):
        out = f(*tree_unflatten(tree, flat))
        aux = None
        if has_aux:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError(f"{_short_name(f)} was transformed with has_aux=True, so it must "
                                f"return a pair (output, aux); got {type(out).__name__}")
            out, aux = out
        out_leaves, out_tree = tree_flatten(out)
        aux_leaves, aux_tree = tree_flatten(aux)
        box.append((out_tree, len(out_leaves), aux_tree))
        return out_leaves + aux_leaves

    pouts, lin = ad.linearize_flat(flat_fun, leaves, fn_name=fun_name(f))
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
                from .primitives.elementwise import convert
                c = convert(c, a.dtype)
            cts.append(c)
        cts += [ad.Zero(get_aval(p).tangent_aval()) if is_array_like(p) else None for p in pouts[n:]]
        in_cts = lin.transpose(cts)
        in_cts = [_materialize(c) for c in in_cts]
        return tree_unflatten(tree, in_cts)

    out = tree_unflatten(out_tree, pouts[:n])
    if has_aux:
        return out, vjp_fun, tree_unflatten(aux_tree, pouts[n:])
    return out, vjp_fun


def _check_grad_inputs(f, leaves, tree, argnums):
    for i, x in enumerate(leaves):
        a = get_aval(x)
        if not dtypes.is_float(a.dtype):
            raise TypeError(
                f"grad({_short_name(f)}): differentiated argument (argnums={argnums}) must have "
                f"a float dtype, but input leaf {i} has dtype {a.dtype} ({a.str_short()}). "
                f"Convert it with .astype(float) or leave it out of argnums.")


def value_and_grad(f, argnums=0, has_aux=False):
    @functools.wraps(f)
    def value_and_grad_f(*args, **kwargs):
        leaves, tree, call, nums = _dyn_args(f, args, kwargs, argnums)
        _check_grad_inputs(f, leaves, tree, argnums)
        box = []

        def flat_fun(*flat):
            out = call(*flat)
            aux = None
            if has_aux:
                if not (isinstance(out, tuple) and len(out) == 2):
                    raise TypeError(f"{_short_name(f)} was transformed with has_aux=True, so it "
                                    f"must return a pair (output, aux)")
                out, aux = out
            if not is_array_like(out) or get_aval(out).shape != ():
                desc = get_aval(out).str_short() if is_array_like(out) else type(out).__name__
                raise TypeError(
                    f"grad({_short_name(f)}) requires a scalar (shape ()) output, got {desc}. "
                    f"For vector outputs use tracegrad.jacrev, or tracegrad.vjp with a cotangent "
                    f"(the PyTorch y.backward(v) equivalent).")
            if not dtypes.is_float(get_aval(out).dtype):
                raise TypeError(f"grad({_short_name(f)}) requires a float output, got "
                                f"{get_aval(out).str_short()}")
            aux_leaves, aux_tree = tree_flatten(aux)
            box.append(aux_tree)
            return [out] + aux_leaves

        pouts, lin = ad.linearize_flat(flat_fun, leaves, fn_name=fun_name(f))
        out = pouts[0]
        one = np.ones((), get_aval(out).dtype)[()]
        cts = [one] + [ad.Zero(get_aval(p).tangent_aval()) if is_array_like(p) else None
                       for p in pouts[1:]]
        g = [_materialize(c) for c in lin.transpose(cts)]
        grads = _unflatten_dyn(tree, g, argnums)
        if has_aux:
            return (out, tree_unflatten(box[0], pouts[1:])), grads
        return out, grads

    return value_and_grad_f


def grad(f, argnums=0, has_aux=False):
    """Gradient of a scalar function, as jax.grad."""
    vg = value_and_grad(f, argnums, has_aux)

    @functools.wraps(f)
    def grad_f(*args, **kwargs):
        (val, g) = vg(*args, **kwargs)
        if has_aux:
            return g, val[1]
        return g

    return grad_f


# --------------------------------------------------------------------------
# vmap


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
                         f"corresponding value: {e}") from None
    res = []
    for ax, n in out:
        if ax is not None and not isinstance(ax, (int, np.integer)):
            raise TypeError(f"vmap {what} must be ints or None, got {ax!r}")
        res += [ax] * n
    return res


def vmap(f, in_axes=0, out_axes=0, axis_size=None):
    """Vectorise f over an axis of its inputs, as jax.vmap."""
    if isinstance(in_axes, list):
        in_axes = tuple(in_axes)

    @functools.wraps(f)
    def vmapped(*args, **kwargs):
        with_path, in_tree = tree_flatten_with_path(args)
        check_leaves(with_path, f)
        leaves = [x for _, x in with_path]
        axes_prefix = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
        if isinstance(in_axes, tuple) and len(in_axes) != len(args):
            raise ValueError(f"vmap({_short_name(f)}): in_axes has {len(in_axes)} entries but the "
                             f"function was called with {len(args)} positional arguments")
        dims = _broadcast_prefix(tuple(axes_prefix), args, "in_axes")
        norm = []
        sizes = []
        for (path, x), d in zip(with_path, dims):
            if d is None:
                norm.append(None)
                continue
            nd = get_aval(x).ndim
            if not -nd <= d < nd:
                raise ValueError(f"vmap({_short_name(f)}): in_axes {d} is out of range for argument "
                                 f"{keystr(path)} of shape {get_aval(x).shape}")
            d = d % nd
            norm.append(d)
            sizes.append((keystr(path), d, get_aval(x).shape[d]))
        size = axis_size
        if sizes:
            distinct = {s for _, _, s in sizes}
            if len(distinct) > 1 or (axis_size is not None and axis_size not in distinct):
                lines = "\n".join(f"  argument {p or '(root)'}: axis {d} has size {s}" for p, d, s in sizes)
                raise ValueError(f"vmap({_short_name(f)}) got inconsistent sizes for the mapped "
                                 f"axis:\n{lines}")
            size = sizes[0][2]
        elif size is None:
            raise ValueError(f"vmap({_short_name(f)}) needs axis_size when no argument is mapped "
                             f"(all in_axes are None)")
        box = []

        def flat_fun(*flat):
            out = f(*tree_unflatten(in_tree, flat), **kwargs)
            out_leaves, out_tree = tree_flatten(out)
            box.append((out, out_tree))
            return out_leaves

        # out_axes are resolved once the output structure is known
        res = batching.vmap_flat(flat_fun, leaves, norm, _LazyOutDims(box, out_axes), size,
                                 fn_name=fun_name(f))
        out, out_tree = box[0]
        return tree_unflatten(out_tree, res)

    return vmapped


class _LazyOutDims:
    """out_axes resolved against the output structure once it is known."""

    def __init__(self, box, out_axes):
        self.box, self.out_axes = box, out_axes

    def __iter__(self):
        out, _ = self.box[0]
        return iter(_broadcast_prefix(self.out_axes, out, "out_axes"))


# --------------------------------------------------------------------------
# Jacobians


def _std_basis(leaves):
    """Identity basis over all input elements: one (N, *shape) array per leaf."""
    sizes = [int(np.prod(get_aval(x).shape, dtype=np.int64)) for x in leaves]
    n = sum(sizes)
    outs, start = [], 0
    for x, s in zip(leaves, sizes):
        a = get_aval(x)
        eye = np.zeros((n, s), dtype=a.dtype)
        eye[np.arange(start, start + s), np.arange(s)] = 1
        outs.append(eye.reshape((n,) + a.shape))
        start += s
    return outs, sizes, n


def _split_jac(flat_out, out_aval_shape, in_leaves, sizes, axis_first):
    """(N, *out) or (*out, N) -> per-input (*out, *in)."""
    from . import numpy as tnp
    res, start = [], 0
    for x, s in zip(in_leaves, sizes):
        if axis_first:
            piece = flat_out[start:start + s]
            piece = tnp.moveaxis(piece, 0, -1)
        else:
            piece = flat_out[..., start:start + s]
        res.append(tnp.reshape(piece, tuple(out_aval_shape) + get_aval(x).shape))
        start += s
    return res


def jacfwd(f, argnums=0, has_aux=False):
    """Jacobian by forward mode: vmap of jvp over the input basis."""
    @functools.wraps(f)
    def jacfun(*args, **kwargs):
        leaves, tree, call, nums = _dyn_args(f, args, kwargs, argnums)
        _check_grad_inputs(f, leaves, tree, argnums)
        box = []

        def flat_fun(*flat):
            out = call(*flat)
            aux = None
            if has_aux:
                out, aux = out
            ol, ot = tree_flatten(out)
            box.append((ot, len(ol), tree_flatten(aux)))
            return ol + tree_flatten(aux)[0]

        basis, sizes, n = _std_basis(leaves)

        def push(*ts):
            pouts, touts = ad.jvp_flat(flat_fun, leaves, list(ts))
            return pouts + [_materialize(t) for t in touts]

        res = batching.vmap_flat(push, basis, [0] * len(basis), _OutDimsJacfwd(box), n)
        out_tree, n_out, (aux_leaves, aux_tree) = box[0]
        k = len(res) // 2
        pouts, touts = res[:k], res[k:]
        jac_leaves = [_unflatten_dyn(tree, _split_jac(t, get_aval(p).shape, leaves, sizes, False), argnums)
                      for p, t in zip(pouts[:n_out], touts[:n_out])]
        jac = tree_unflatten(out_tree, jac_leaves)
        if has_aux:
            return jac, tree_unflatten(aux_tree, pouts[n_out:])
        return jac

    return jacfun


class _OutDimsJacfwd:
    def __init__(self, box):
        self.box = box

    def __iter__(self):
        _, n_out, (aux_leaves, _) = self.box[0]
        k = n_out + len(aux_leaves)
        # primal outputs are unbatched (None); tangents carry the basis axis last
        return iter([None] * k + [-1] * k)


def jacrev(f, argnums=0, has_aux=False):
    """Jacobian by reverse mode: linearize once, vmap the transpose over the
    output basis."""
    @functools.wraps(f)
    def jacfun(*args, **kwargs):
        leaves, tree, call, nums = _dyn_args(f, args, kwargs, argnums)
        _check_grad_inputs(f, leaves, tree, argnums)
        box = []

        def flat_fun(*flat):
            out = call(*flat)
            aux = None
            if has_aux:
                out, aux = out
            ol, ot = tree_flatten(out)
            al, at = tree_flatten(aux)
            box.append((ot, len(ol), at))
            return ol + al

        pouts, lin = ad.linearize_flat(flat_fun, leaves, fn_name=fun_name(f))
        out_tree, n_out, aux_tree = box[0]
        outs = pouts[:n_out]
        basis, sizes, m = _std_basis(outs)
        extra = [ad.Zero(get_aval(p).tangent_aval()) if is_array_like(p) else None for p in pouts[n_out:]]

        def pull(*cts):
            return [_materialize(c) for c in lin.transpose(list(cts) + extra)]

        cts_in = batching.vmap_flat(pull, basis, [0] * len(basis), [0] * len(leaves), m)
        # cts_in[j]: (M, *in_j); split M over outputs
        from . import numpy as tnp
        per_out = []
        start = 0
        for o, s in zip(outs, sizes):
            oshape = get_aval(o).shape
            per_in = [tnp.reshape(c[start:start + s], oshape + get_aval(x).shape)
                      for c, x in zip(cts_in, leaves)]
            per_out.append(_unflatten_dyn(tree, per_in, argnums))
            start += s
        jac = tree_unflatten(out_tree, per_out)
        if has_aux:
            return jac, tree_unflatten(aux_tree, pouts[n_out:])
        return jac

    return jacfun


def hessian(f, argnums=0, has_aux=False):
    return jacfwd(jacrev(f, argnums, has_aux), argnums, has_aux)
