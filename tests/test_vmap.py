"""vmap: every primitive's batching rule vs jax.vmap (x64), the in_axes /
out_axes / axis_size / kwargs semantics of api.vmap, its errors, nested vmap,
and vmap composed with grad, jvp, vjp, closures, jacfwd/jacrev/hessian and
custom derivatives.

The primitive table (CASES) has one entry per registered primitive. Each entry
draws per-example operands (shape + value maker) and params; the harness then
draws a batch size (0..3), an in_axes entry per operand (None, positive or
negative) and an out_axes entry per output, and compares
  * tracegrad.vmap with jax.vmap of the lax reference, and
  * tracegrad.vmap with the eager per-example results stacked (so a batching
    bug is told apart from an evaluation difference with JAX).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from jax import lax

import oracle
import tracegrad as tg
import tracegrad.numpy as tnp
from tracegrad import core

P = core.registry  # primitives by name


# --------------------------------------------------------------------------
# value makers: (rng, shape) -> np.ndarray


def normal(dtype=np.float64, scale=1.0):
    return lambda rng, s: (rng.standard_normal(s) * scale).astype(dtype)


def uniform(lo, hi, dtype=np.float64):
    return lambda rng, s: rng.uniform(lo, hi, s).astype(dtype)


def ints(lo, hi, dtype=np.int32):
    return lambda rng, s: rng.integers(lo, hi, s).astype(dtype)


def bools():
    return lambda rng, s: rng.random(s) < 0.5


def nonzero_ints(lo, hi, dtype=np.int32):
    def make(rng, s):
        v = rng.integers(lo, hi, s).astype(dtype)
        return np.where(v == 0, 1, v).astype(dtype)
    return make


def with_specials(dtype=np.float64):
    """Normal values with some inf/-inf/nan mixed in (for is_finite & co)."""
    def make(rng, s):
        v = rng.standard_normal(s).astype(dtype)
        special = np.array([np.inf, -np.inf, np.nan], dtype)
        mask = rng.random(s) < 0.3
        return np.where(mask, special[rng.integers(0, 3, s)], v).astype(dtype)
    return make


@dataclass
class Opnd:
    """One per-example operand: its shape and how to make values."""
    shape: tuple
    make: Callable
    can_batch: bool = True  # False for operands that must stay unbatched


@dataclass
class Case:
    """gen(draw) -> (operands, params); tg(*args, **params) and
    ref(*args, **params) compute one example (lists/tuples for several results)."""
    gen: Callable
    tg: Callable
    ref: Callable
    tol: dict = field(default_factory=dict)


def shapes_st(min_dims=0, max_dims=3, max_side=3):
    return st.lists(st.integers(0, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


def bind(name):
    """One example: bind the primitive directly (so its batch rule is what runs)."""
    def f(*args, **params):
        out = P[name].bind(*args, **params)
        return tuple(out) if P[name].multiple_results else out
    return f


def bcast_ref(fn):
    """lax binary ops want equal shapes; our primitives let rank-0 operands
    broadcast: broadcast them explicitly in the reference."""
    def f(*args, **params):
        shape = np.broadcast_shapes(*[np.shape(a) for a in args])
        return fn(*[jnp.broadcast_to(a, shape) for a in args], **params)
    return f


CASES: dict[str, Case] = {}


def case(name, gen, ref, tg_fn=None, **tol):
    CASES[name] = Case(gen, tg_fn or bind(name), ref, tol)


# ---- elementwise: unary ---------------------------------------------------

UNARY = {  # name: (lax reference, value maker)
    "neg": (lax.neg, normal()), "sin": (lax.sin, normal()), "cos": (lax.cos, normal()),
    "tan": (lax.tan, uniform(-1.2, 1.2)), "asin": (lax.asin, uniform(-0.9, 0.9)),
    "acos": (lax.acos, uniform(-0.9, 0.9)), "atan": (lax.atan, normal()),
    "sinh": (lax.sinh, normal()), "cosh": (lax.cosh, normal()), "tanh": (lax.tanh, normal()),
    "asinh": (lax.asinh, normal()), "acosh": (lax.acosh, uniform(1.1, 4)),
    "atanh": (lax.atanh, uniform(-0.9, 0.9)), "exp": (lax.exp, normal()),
    "exp2": (lax.exp2, normal()), "expm1": (lax.expm1, normal()),
    "log": (lax.log, uniform(0.1, 4)), "log1p": (lax.log1p, uniform(-0.5, 4)),
    "sqrt": (lax.sqrt, uniform(0.1, 4)), "rsqrt": (lax.rsqrt, uniform(0.1, 4)),
    "cbrt": (lax.cbrt, normal()), "logistic": (lax.logistic, normal()),
    "erf": (lax.erf, normal()), "erf_inv": (lax.erf_inv, uniform(-0.9, 0.9)),
    "lgamma": (lax.lgamma, uniform(0.2, 5)), "digamma": (lax.digamma, uniform(0.2, 5)),
    "abs": (lax.abs, normal()), "sign": (lax.sign, normal()), "floor": (lax.floor, normal(scale=3)),
    "ceil": (lax.ceil, normal(scale=3)), "is_finite": (lax.is_finite, with_specials()),
    "not": (lax.bitwise_not, ints(-50, 50)),
}


def unary_gen(make):
    def gen(draw):
        dt = draw(st.sampled_from([np.float64, np.float32]))

        def m(rng, s):  # float values in the drawn float dtype
            v = make(rng, s)
            return v.astype(dt) if v.dtype.kind == "f" else v
        return [Opnd(draw(shapes_st()), m)], {}
    return gen


for _name, (_ref, _make) in UNARY.items():
    case(_name, unary_gen(_make), _ref)

case("round", lambda draw: ([Opnd(draw(shapes_st()), normal(scale=3))],
                            {"rounding_method": draw(st.sampled_from([0, 1]))}),
     lambda x, rounding_method: lax.round(x, rounding_method))
case("integer_pow", lambda draw: ([Opnd(draw(shapes_st()), uniform(0.5, 2))],
                                  {"y": draw(st.integers(-3, 4))}),
     lambda x, y: lax.integer_pow(x, y))
case("convert_element_type",
     lambda draw: ([Opnd(draw(shapes_st()), draw(st.sampled_from(
         [normal(scale=3), ints(-5, 5), bools(), normal(np.float32)])))],
                   {"new_dtype": np.dtype(draw(st.sampled_from([np.float64, np.float32, np.int32, np.bool_]))),
                    "weak_type": False}),
     lambda x, new_dtype, weak_type: lax.convert_element_type(x, new_dtype))


# ---- elementwise: binary (each operand the example shape or rank 0) --------


def nary_gen(*makes, dtypes_=None):
    def gen(draw):
        shape = draw(shapes_st())
        ops = []
        for m in makes:
            s = draw(st.sampled_from([shape, shape, ()]))
            ops.append(Opnd(s, m))
        return ops, {}
    return gen


BINARY = {
    "add": (lax.add, normal(), normal()), "sub": (lax.sub, normal(), normal()),
    "mul": (lax.mul, normal(), normal()), "div": (lax.div, normal(), uniform(0.5, 2)),
    "add_any": (lax.add, normal(), normal()),
    "max": (lax.max, normal(), normal()), "min": (lax.min, normal(), normal()),
    "pow": (lax.pow, uniform(0.2, 3), normal()), "atan2": (lax.atan2, normal(), normal()),
    "nextafter": (lax.nextafter, normal(), normal()),
    "rem": (lax.rem, normal(scale=3), uniform(0.5, 2)),
    "eq": (lax.eq, ints(-2, 2), ints(-2, 2)), "ne": (lax.ne, ints(-2, 2), ints(-2, 2)),
    "lt": (lax.lt, normal(), normal()), "le": (lax.le, ints(-2, 2), ints(-2, 2)),
    "gt": (lax.gt, normal(), normal()), "ge": (lax.ge, normal(), normal()),
    "and": (lax.bitwise_and, ints(-50, 50), ints(-50, 50)),
    "or": (lax.bitwise_or, bools(), bools()),
    "xor": (lax.bitwise_xor, ints(-50, 50), ints(-50, 50)),
    "shift_left": (lax.shift_left, ints(-50, 50), ints(0, 40)),
    "shift_right_logical": (lax.shift_right_logical, ints(-50, 50), ints(0, 40)),
}
for _name, (_ref, _m1, _m2) in BINARY.items():
    case(_name, nary_gen(_m1, _m2), bcast_ref(_ref))



def cplx(dtype=np.complex128):
    return lambda rng, s: (rng.standard_normal(s) + 1j * rng.standard_normal(s)).astype(dtype)


case("complex", nary_gen(normal(), normal()), bcast_ref(lax.complex))
case("real", unary_gen(cplx()), lax.real)
case("imag", unary_gen(cplx()), lax.imag)
# jnp.conjugate: lax.conj of a real operand would return complex; ours keeps it real
case("conj", lambda draw: ([Opnd(draw(shapes_st()), draw(st.sampled_from([cplx(), cplx(np.complex64),
                                                                          normal()])))], {}),
     jnp.conjugate)

def _select_gen(draw):
    shape = draw(shapes_st())
    n = draw(st.sampled_from([2, 2, 3]))
    cases = [Opnd(draw(st.sampled_from([shape, shape, ()])), normal()) for _ in range(n)]
    pshape = () if all(c.shape == () for c in cases) else draw(st.sampled_from([shape, shape, ()]))
    pred = Opnd(pshape, bools() if n == 2 else ints(0, n))
    return [pred] + cases, {}


def _select_ref(pred, *cases):
    shape = np.broadcast_shapes(*[np.shape(c) for c in cases])
    return lax.select_n(pred, *[jnp.broadcast_to(c, shape) for c in cases])


case("select_n", _select_gen, _select_ref)


def _clamp_gen(draw):
    shape = draw(shapes_st())
    lo = Opnd(draw(st.sampled_from([shape, ()])), uniform(-2, -0.2))
    hi = Opnd(draw(st.sampled_from([shape, ()])), uniform(0.2, 2))
    return [lo, Opnd(shape, normal(scale=2)), hi], {}


# (jax.vmap of lax.clamp fails when only a bound is batched and x is rank 0,
# so the reference spells clamp out)
case("clamp", _clamp_gen, lambda lo, x, hi: jnp.minimum(jnp.maximum(x, lo), hi))


# ---- shapes ---------------------------------------------------------------


def _bid_gen(draw):
    s = draw(shapes_st(max_dims=2))
    nd_out = len(s) + draw(st.integers(0, 2))
    dims = tuple(sorted(draw(st.permutations(range(nd_out)))[:len(s)]))
    out = [draw(st.integers(0, 3)) for _ in range(nd_out)]
    for i, d in enumerate(dims):
        out[d] = s[i] if s[i] != 1 else draw(st.sampled_from([1, 2, 3]))
    return [Opnd(s, normal())], {"shape": tuple(out), "broadcast_dimensions": dims}


case("broadcast_in_dim", _bid_gen,
     lambda x, shape, broadcast_dimensions: lax.broadcast_in_dim(x, shape, broadcast_dimensions))


def _reshape_gen(draw):
    s = draw(shapes_st())
    kind = draw(st.sampled_from(["flat", "perm", "ones"]))
    if kind == "flat":
        new = (int(np.prod(s, dtype=np.int64)),)
    else:
        new = list(draw(st.permutations(s)))
        if kind == "ones":
            new.insert(draw(st.integers(0, len(new))), 1)
        new = tuple(new)
    return [Opnd(s, normal())], {"new_sizes": new}


case("reshape", _reshape_gen, lambda x, new_sizes: lax.reshape(x, new_sizes))
case("transpose", lambda draw: (lambda s: ([Opnd(s, normal())],
                                           {"permutation": tuple(draw(st.permutations(range(len(s)))))}))(
                                               draw(shapes_st())),
     lambda x, permutation: lax.transpose(x, permutation))


def _squeeze_gen(draw):
    s = list(draw(shapes_st(max_dims=2)))
    for _ in range(draw(st.integers(0, 2))):
        s.insert(draw(st.integers(0, len(s))), 1)
    ones = [i for i, d in enumerate(s) if d == 1]
    dims = tuple(sorted(draw(st.sets(st.sampled_from(ones))) if ones else ()))
    return [Opnd(tuple(s), normal())], {"dimensions": dims}


case("squeeze", _squeeze_gen, lambda x, dimensions: lax.squeeze(x, dimensions))


def _axes_subset(draw, nd):
    return tuple(sorted(draw(st.sets(st.integers(0, nd - 1))))) if nd else ()


def _reduce_gen(make=normal()):
    def gen(draw):
        s = draw(shapes_st())
        return [Opnd(s, make)], {"axes": _axes_subset(draw, len(s))}
    return gen


case("reduce_sum", _reduce_gen(), lambda x, axes: lax.reduce(x, np.zeros((), x.dtype), lax.add, axes))


_REDUCERS = {
    "reduce_max": (lambda x, axes: lax.reduce(x, np.array(-np.inf, x.dtype), lax.max, axes), normal()),
    "reduce_min": (lambda x, axes: lax.reduce(x, np.array(np.inf, x.dtype), lax.min, axes), normal()),
    "reduce_prod": (lambda x, axes: lax.reduce(x, np.ones((), x.dtype), lax.mul, axes), uniform(0.5, 1.5)),
    "reduce_and": (lambda x, axes: lax.reduce(x, np.True_, lax.bitwise_and, axes), bools()),
    "reduce_or": (lambda x, axes: lax.reduce(x, np.False_, lax.bitwise_or, axes), bools()),
}
for _name, (_ref, _make) in _REDUCERS.items():
    case(_name, _reduce_gen(_make), _ref)


def _arg_gen(draw):
    s = draw(shapes_st(min_dims=1))
    axis = draw(st.integers(0, len(s) - 1))
    s = s[:axis] + (max(s[axis], 1),) + s[axis + 1:]  # arg-reductions need a non-empty axis
    make = draw(st.sampled_from([normal(), ints(-2, 3)]))  # small ints: ties, first one wins
    return [Opnd(s, make)], {"axes": (axis,),
                             "index_dtype": np.dtype(draw(st.sampled_from([np.int32, np.int64])))}


case("argmax", _arg_gen, lambda x, axes, index_dtype: lax.argmax(x, axes[0], index_dtype))
case("argmin", _arg_gen, lambda x, axes, index_dtype: lax.argmin(x, axes[0], index_dtype))


def _cum_gen(draw):
    s = draw(shapes_st(min_dims=1))
    return [Opnd(s, uniform(0.5, 1.5))], {"axis": draw(st.integers(0, len(s) - 1)),
                                         "reverse": draw(st.booleans())}


for _name, _ref in {"cumsum": lax.cumsum, "cumprod": lax.cumprod, "cummax": lax.cummax,
                    "cummin": lax.cummin}.items():
    case(_name, _cum_gen, lambda x, axis, reverse, _ref=_ref: _ref(x, axis, reverse), rtol=1e-9)


def _slice_gen(draw):
    s = draw(shapes_st(min_dims=1))
    start, limit, strides = [], [], []
    for d in s:
        a = draw(st.integers(0, d))
        b = draw(st.integers(a, d))
        start.append(a)
        limit.append(b)
        strides.append(draw(st.integers(1, 2)))
    strides = tuple(strides) if draw(st.booleans()) else None
    return [Opnd(s, normal())], {"start_indices": tuple(start), "limit_indices": tuple(limit),
                                 "strides": strides}


case("slice", _slice_gen, lambda x, start_indices, limit_indices, strides:
     lax.slice(x, start_indices, limit_indices, strides))


def _pad_gen(draw):
    s = draw(shapes_st())
    cfg = tuple((draw(st.integers(-1, 2)) if d else draw(st.integers(0, 2)),
                 draw(st.integers(0, 2)), draw(st.integers(0, 1))) for d in s)
    # negative low padding must not cut more than the (dilated) axis holds
    cfg = tuple((max(lo, -d), hi, it) for (lo, hi, it), d in zip(cfg, s))
    return [Opnd(s, normal()), Opnd((), normal())], {"padding_config": cfg}


case("pad", _pad_gen, lambda x, v, padding_config: lax.pad(x, v, padding_config))


def _concat_gen(draw):
    s = draw(shapes_st(min_dims=1))
    dim = draw(st.integers(0, len(s) - 1))
    ops = []
    for _ in range(draw(st.integers(1, 3))):
        si = list(s)
        si[dim] = draw(st.integers(0, 3))
        ops.append(Opnd(tuple(si), normal()))
    return ops, {"dimension": dim}


case("concatenate", _concat_gen, lambda *xs, dimension: lax.concatenate(xs, dimension))
case("rev", lambda draw: (lambda s: ([Opnd(s, normal())], {"dimensions": _axes_subset(draw, len(s))}))(
    draw(shapes_st())), lambda x, dimensions: lax.rev(x, dimensions))


def _iota_gen(draw):
    s = draw(shapes_st(min_dims=1))
    return [Opnd(s, normal())], {"dimension": draw(st.integers(0, len(s) - 1))}


# iota has no operands, so vmap never batches it: the entry checks that a
# batched computation using it comes out right (x + iota)
case("iota", _iota_gen,
     lambda x, dimension: x + lax.broadcasted_iota(np.float64, x.shape, dimension),
     tg_fn=lambda x, dimension: P["add"].bind(x, P["iota"].bind(
         dtype=np.dtype(np.float64), shape=tuple(x.shape), dimension=dimension)))


# ---- linalg ---------------------------------------------------------------


def _dot_gen(draw):
    nb, nc = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    nfl, nfr = draw(st.integers(0, 1)), draw(st.integers(0, 1))
    bs = [draw(st.integers(0, 3)) for _ in range(nb)]
    cs = [draw(st.integers(0, 3)) for _ in range(nc)]

    def layout(nf):
        free = [draw(st.integers(0, 3)) for _ in range(nf)]
        kinds = [("b", i) for i in range(nb)] + [("c", i) for i in range(nc)] + [("f", i) for i in range(nf)]
        kinds = draw(st.permutations(kinds))
        shape = tuple(bs[i] if k == "b" else cs[i] if k == "c" else free[i] for k, i in kinds)
        pos = {kv: p for p, kv in enumerate(kinds)}
        return shape, tuple(pos[("b", i)] for i in range(nb)), tuple(pos[("c", i)] for i in range(nc))

    ls, lb, lc = layout(nfl)
    rs, rb, rc = layout(nfr)
    dt = draw(st.sampled_from([np.float64, np.float32]))
    return [Opnd(ls, normal(dt)), Opnd(rs, normal(dt))], {"dimension_numbers": ((lc, rc), (lb, rb))}


case("dot_general", _dot_gen,
     lambda a, b, dimension_numbers, **kw: lax.dot_general(a, b, dimension_numbers,
                                                          precision=lax.Precision.HIGHEST),
     rtol=1e-5, atol=1e-5)


def _conv_gen(draw):
    nsp = draw(st.integers(1, 2))  # spatial dims
    nd = nsp + 2
    groups = draw(st.sampled_from([(1, 1), (1, 1), (2, 1), (1, 2)]))  # (feature, batch) groups
    fg, bg = groups
    n = bg * draw(st.integers(0 if bg == 1 else 1, 2))
    c = fg * draw(st.integers(1, 2))
    o = fg * bg * draw(st.integers(1, 2))
    window = [draw(st.integers(1, 3)) for _ in range(nsp)]
    strides = tuple(draw(st.integers(1, 2)) for _ in range(nsp))
    lhs_dil = tuple(draw(st.integers(1, 2)) for _ in range(nsp))
    rhs_dil = tuple(draw(st.integers(1, 2)) for _ in range(nsp))
    spatial, padding = [], []
    for i in range(nsp):
        size = draw(st.integers(1, 4))
        lo, hi = draw(st.integers(0, 1)), draw(st.integers(0, 1))
        need = (window[i] - 1) * rhs_dil[i] + 1 - ((size - 1) * lhs_dil[i] + 1 + lo + hi)
        hi += max(0, need)  # keep at least one output position
        spatial.append(size)
        padding.append((lo, hi))
    lhs_spec = tuple(draw(st.permutations(range(nd))))
    rhs_spec = tuple(draw(st.permutations(range(nd))))
    out_spec = tuple(draw(st.permutations(range(nd))))

    def place(spec, dims):
        shape = [0] * nd
        for k, ax in enumerate(spec):
            shape[ax] = dims[k]
        return tuple(shape)

    lhs = place(lhs_spec, [n, c] + spatial)
    rhs = place(rhs_spec, [o, c // fg] + window)
    from tracegrad.primitives.conv import ConvDimensionNumbers
    params = dict(window_strides=strides, padding=tuple(padding), lhs_dilation=lhs_dil,
                  rhs_dilation=rhs_dil,
                  dimension_numbers=ConvDimensionNumbers(lhs_spec, rhs_spec, out_spec),
                  feature_group_count=fg, batch_group_count=bg, precision=None,
                  preferred_element_type=None)
    return [Opnd(lhs, normal()), Opnd(rhs, normal())], params


def _conv_ref(lhs, rhs, *, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
              feature_group_count, batch_group_count, precision, preferred_element_type):
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
        lax.ConvDimensionNumbers(*dimension_numbers), feature_group_count, batch_group_count,
        precision=lax.Precision.HIGHEST)


case("conv_general_dilated", _conv_gen, _conv_ref, rtol=1e-9, atol=1e-9)


# ---- indexing -------------------------------------------------------------

from tracegrad.primitives import indexing as _ix  # noqa: E402


def _starts_gen(draw, shape, sizes):
    return [Opnd((), ints(-d - 2, d + 2)) for d in shape]


def _ds_gen(draw):
    s = draw(shapes_st(min_dims=1))
    sizes = tuple(draw(st.integers(0, d)) for d in s)
    return [Opnd(s, normal())] + _starts_gen(draw, s, sizes), {"slice_sizes": sizes}


# through the lax-style wrapper: negative starts wrap (as lax.dynamic_slice),
# then the primitive clamps
case("dynamic_slice", _ds_gen,
     lambda x, *starts, slice_sizes: lax.dynamic_slice(x, starts, slice_sizes),
     tg_fn=lambda x, *starts, slice_sizes: _ix.dynamic_slice(x, starts, slice_sizes))


def _dus_gen(draw):
    s = draw(shapes_st(min_dims=1))
    us = tuple(draw(st.integers(0, d)) for d in s)
    return [Opnd(s, normal()), Opnd(us, normal())] + _starts_gen(draw, s, us), {}


case("dynamic_update_slice", _dus_gen,
     lambda x, u, *starts: lax.dynamic_update_slice(x, u, starts),
     tg_fn=lambda x, u, *starts: _ix.dynamic_update_slice(x, u, starts))

_JAX_MODES = {"clip": lax.GatherScatterMode.CLIP, "fill_or_drop": lax.GatherScatterMode.FILL_OR_DROP,
              "promise_in_bounds": lax.GatherScatterMode.PROMISE_IN_BOUNDS}


def _index_maker(shape, sim, mode, sizes=None):
    """Index vectors (last axis) for operand dims `sim`: in range for
    promise_in_bounds, else reaching a little outside."""
    def make(rng, s):
        cols = []
        for d in sim:
            hi = shape[d] - (sizes[d] if sizes is not None else 1) + 1
            if mode == "promise_in_bounds":
                cols.append(rng.integers(0, max(hi, 1), s[:-1]))
            else:
                cols.append(rng.integers(-2, shape[d] + 2, s[:-1]))
        return np.stack(cols, -1).astype(np.int32) if cols else np.zeros(s, np.int32)
    return make


def _gather_gen(draw):
    shape = draw(shapes_st(min_dims=1, max_dims=3))
    r = len(shape)
    sim = tuple(draw(st.permutations(range(r)))[:draw(st.integers(1, r))])
    mode = draw(st.sampled_from(["clip", "fill_or_drop", "promise_in_bounds"]))
    sizes = [draw(st.integers(0, d)) for d in shape]
    collapsed = tuple(sorted(d for d in sim if draw(st.booleans())))
    for d in collapsed:
        sizes[d] = 1
    shape = tuple(max(x, 1) if d in collapsed else x for d, x in enumerate(shape))
    bshape = draw(shapes_st(max_dims=2))
    out_rank = len(bshape) + r - len(collapsed)
    offset = tuple(sorted(draw(st.permutations(range(out_rank)))[:r - len(collapsed)]))
    dn = _ix.GatherDimensionNumbers(offset, collapsed, sim)
    ops = [Opnd(shape, normal()), Opnd(bshape + (len(sim),), _index_maker(shape, sim, mode, sizes))]
    fill = None if mode != "fill_or_drop" else draw(st.sampled_from([None, 7.5]))
    return ops, {"dimension_numbers": dn, "slice_sizes": tuple(sizes), "mode": mode,
                 "fill_value": fill, "indices_are_sorted": False, "unique_indices": False}


def _gather_ref(x, idx, dimension_numbers, slice_sizes, mode, fill_value, **kw):
    dn = dimension_numbers
    return lax.gather(x, idx, lax.GatherDimensionNumbers(dn.offset_dims, dn.collapsed_slice_dims,
                                                         dn.start_index_map),
                      slice_sizes, mode=_JAX_MODES[mode], fill_value=fill_value)


case("gather", _gather_gen, _gather_ref)


def _scatter_gen(name):
    def gen(draw):
        shape = draw(shapes_st(min_dims=1, max_dims=3))
        r = len(shape)
        sdims = tuple(draw(st.permutations(range(r)))[:draw(st.integers(1, r))])
        mode = draw(st.sampled_from(["clip", "fill_or_drop", "promise_in_bounds"]))
        if name == "scatter":
            # plain overwrite: collisions have no defined winner, so windows of
            # size 1 at distinct in-range positions
            inserted = tuple(sorted(sdims))
            shape = tuple(max(x, 2) if d in sdims else x for d, x in enumerate(shape))
            mode = "fill_or_drop"
        else:
            inserted = tuple(sorted(d for d in sdims if draw(st.booleans())))
            shape = tuple(max(x, 1) if d in inserted else x for d, x in enumerate(shape))
        sizes = [1 if d in inserted else draw(st.integers(0, shape[d])) for d in range(r)]
        bshape = draw(shapes_st(max_dims=2, max_side=2))
        win = [sizes[d] for d in range(r) if d not in inserted]
        u_rank = len(bshape) + len(win)
        uwd = tuple(sorted(draw(st.permutations(range(u_rank)))[:len(win)]))
        ushape, bi, wi = [], iter(bshape), iter(win)
        for a in range(u_rank):
            ushape.append(next(wi) if a in uwd else next(bi))
        dn = _ix.ScatterDimensionNumbers(uwd, inserted, sdims)
        if name == "scatter":
            def make_idx(rng, s, shape=shape, sdims=sdims):
                n = int(np.prod(s[:-1], dtype=np.int64))
                cells = list(itertools.product(*[range(shape[d]) for d in sdims]))
                pick = rng.permutation(len(cells))[:n] if n <= len(cells) else \
                    np.concatenate([rng.permutation(len(cells)), -np.ones(n - len(cells), int)])
                out = np.array([cells[i] if i >= 0 else [-5] * len(sdims) for i in pick]).reshape(s)
                return out.astype(np.int32)
            idx = Opnd(tuple(bshape) + (len(sdims),), make_idx)
        else:
            idx = Opnd(tuple(bshape) + (len(sdims),), _index_maker(shape, sdims, mode, sizes))
        vals = uniform(0.5, 1.5) if name == "scatter_mul" else normal()
        return [Opnd(shape, vals), idx, Opnd(tuple(ushape), vals)], {
            "dimension_numbers": dn, "mode": mode, "indices_are_sorted": False,
            "unique_indices": False}
    return gen


def _scatter_ref(jfn):
    def ref(x, idx, u, dimension_numbers, mode, **kw):
        dn = dimension_numbers
        return jfn(x, idx, u, lax.ScatterDimensionNumbers(dn.update_window_dims, dn.inserted_window_dims,
                                                          dn.scatter_dims_to_operand_dims),
                   mode=_JAX_MODES[mode])
    return ref


for _name, _jfn in {"scatter": lax.scatter, "scatter_add": lax.scatter_add, "scatter_mul": lax.scatter_mul,
                    "scatter_min": lax.scatter_min, "scatter_max": lax.scatter_max}.items():
    case(_name, _scatter_gen(_name), _scatter_ref(_jfn), rtol=1e-9, atol=1e-9)


# ---- sort and windowed reductions -----------------------------------------


def _sort_gen(draw):
    s = draw(shapes_st(min_dims=1))
    n = draw(st.integers(1, 3))
    # small integers as floats: ties, resolved by the next key / stability
    ops = [Opnd(s, lambda rng, sh: rng.integers(-2, 3, sh).astype(np.float64)) for _ in range(n)]
    return ops, {"dimension": draw(st.integers(0, len(s) - 1)), "is_stable": True,
                 "num_keys": draw(st.integers(1, n))}


case("sort", _sort_gen, lambda *xs, dimension, is_stable, num_keys:
     tuple(lax.sort(xs, dimension=dimension, is_stable=is_stable, num_keys=num_keys)))


def _window_params(draw, shape, dilations=True):
    r = len(shape)
    wd = tuple(draw(st.integers(1, 3)) for _ in range(r))
    ws = tuple(draw(st.integers(1, 2)) for _ in range(r))
    bd = tuple(draw(st.integers(1, 2)) if dilations else 1 for _ in range(r))
    wdl = tuple(draw(st.integers(1, 2)) if dilations else 1 for _ in range(r))
    pad = tuple((draw(st.integers(0, 1)), draw(st.integers(0, 1))) for _ in range(r))
    return {"window_dimensions": wd, "window_strides": ws, "padding": pad,
            "base_dilation": bd, "window_dilation": wdl}


def _rw_gen(draw):
    s = draw(shapes_st(min_dims=1))
    params = _window_params(draw, s)
    params["computation"] = draw(st.sampled_from(["add", "max", "min"]))
    return [Opnd(s, normal())], params


def _rw_ref(x, computation, **w):
    init, op = {"add": (0.0, lax.add), "max": (-np.inf, lax.max), "min": (np.inf, lax.min)}[computation]
    return lax.reduce_window(x, np.asarray(init, x.dtype), op, w["window_dimensions"], w["window_strides"],
                             w["padding"], w["base_dilation"], w["window_dilation"])


case("reduce_window", _rw_gen, _rw_ref, rtol=1e-9)

from jax._src.lax import windowed_reductions as _jwr  # noqa: E402  (JAX's internal ops as reference)


def _sg_gen(draw):
    s = draw(shapes_st(min_dims=1, max_side=4))
    params = _window_params(draw, s)
    params["select"] = draw(st.sampled_from(["max", "min"]))
    return [Opnd(s, normal()), Opnd(s, normal())], params


case("select_and_gather_add", _sg_gen,
     lambda t, x, select, **w: _jwr._select_and_gather_add(
         t, x, lax.ge_p if select == "max" else lax.le_p, w["window_dimensions"], w["window_strides"],
         w["padding"], w["base_dilation"], w["window_dilation"]))


def _ss_gen(draw):
    s = draw(shapes_st(min_dims=1, max_side=4))
    params = _window_params(draw, s, dilations=False)  # JAX's op has no dilations
    params["select"] = draw(st.sampled_from(["max", "min"]))
    out = _wshape(s, params)
    return [Opnd(out, normal()), Opnd(s, normal())], params


def _wshape(s, p):
    from tracegrad.primitives.windowed import window_shape
    return tuple(window_shape(s, p["window_dimensions"], p["window_strides"], p["padding"],
                              p["base_dilation"], p["window_dilation"]))


case("select_and_scatter_add", _ss_gen,
     lambda src, x, select, **w: _jwr._select_and_scatter_add(
         src, x, lax.ge_p if select == "max" else lax.le_p, w["window_dimensions"],
         w["window_strides"], w["padding"]), rtol=1e-9)


# ---- higher-order primitives (they carry jaxprs): entries go through the
# user-level API that binds them

def _x_gen(n_extra=1, int_first=None):
    def gen(draw):
        s = draw(shapes_st())
        ops = [] if int_first is None else [Opnd((), int_first)]
        ops += [Opnd(s, normal()) for _ in range(n_extra)]
        return ops, {}
    return gen


case("cond", _x_gen(2, bools()),
     lambda p, x, y: lax.cond(p, lambda a, b: jnp.sin(a) * b, lambda a, b: a - b, x, y),
     tg_fn=lambda p, x, y: tg.lax.cond(p, lambda a, b: tnp.sin(a) * b, lambda a, b: a - b, x, y))


def _switch_ref(i, x, y):
    return lax.switch(i, [lambda a, b: jnp.sin(a) * b, lambda a, b: a - b, lambda a, b: a * 2.0], x, y)


def _switch_tg(i, x, y):
    return tg.lax.switch(i, [lambda a, b: tnp.sin(a) * b, lambda a, b: a - b, lambda a, b: a * 2.0], x, y)


# switch binds cond with three branches: filed as a second cond entry
case("cond[switch]", _x_gen(2, ints(-1, 4)), _switch_ref, tg_fn=_switch_tg)


def _while_body(np_):
    return lambda c: (c[0] + 1, np_.sin(c[1]) * 1.5 + 0.1)


case("while", _x_gen(1, ints(0, 5)),
     lambda n, x: lax.while_loop(lambda c: c[0] < n, _while_body(jnp), (0, x)),
     tg_fn=lambda n, x: tg.lax.while_loop(lambda c: c[0] < n, _while_body(tnp), (0, x)))


def _scan_gen(draw):
    s = draw(shapes_st(max_dims=2))
    length = draw(st.integers(0, 3))
    return [Opnd(s, normal()), Opnd((length,) + s, normal())], {"reverse": draw(st.booleans())}


def _scan_body(np_):
    return lambda c, x: (np_.tanh(c * 0.9 + x), c * x)


case("scan", _scan_gen,
     lambda c, xs, reverse: lax.scan(_scan_body(jnp), c, xs, reverse=reverse),
     tg_fn=lambda c, xs, reverse: tg.lax.scan(_scan_body(tnp), c, xs, reverse=reverse))
case("jit", _x_gen(2), lambda x, y: jnp.sin(x) * y + 1.0,
     tg_fn=lambda x, y: tg.jit(lambda a, b: tnp.sin(a) * b + 1.0)(x, y))
case("checkpoint", _x_gen(2), lambda x, y: jnp.sin(x) * y + 1.0,
     tg_fn=lambda x, y: tg.checkpoint(lambda a, b: tnp.sin(a) * b + 1.0)(x, y))
case("stop_gradient", _x_gen(1), lambda x: lax.stop_gradient(x) * 2.0,
     tg_fn=lambda x: tg.stop_gradient(x) * 2.0)


@tg.custom_jvp
def _tg_softplus(x):
    return tnp.log1p(tnp.exp(x))


@_tg_softplus.defjvp
def _tg_softplus_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return _tg_softplus(x), t / (1.0 + tnp.exp(-x))


case("custom_jvp_call", _x_gen(2), lambda x, y: jnp.log1p(jnp.exp(x * y)),
     tg_fn=lambda x, y: _tg_softplus(x * y))


@tg.custom_vjp
def _tg_scaled_sin(x, y):
    return tnp.sin(x) * y


_tg_scaled_sin.defvjp(lambda x, y: (_tg_scaled_sin(x, y), (x, y)),
                      lambda r, g: (tnp.cos(r[0]) * r[1] * g, tnp.sin(r[0]) * g))
case("custom_vjp_call", _x_gen(2), lambda x, y: jnp.sin(x) * y,
     tg_fn=lambda x, y: _tg_scaled_sin(x, y))


# --------------------------------------------------------------------------
# the harness


def _leaves(x):
    return x if isinstance(x, (tuple, list)) else (x,)


def run_case(name, data, n_configs=3, max_batch=3):
    """One drawn example of a table entry, mapped in `n_configs` drawn ways
    (batch size, in_axes, out_axes); the first is compared with jax.vmap,
    all with the eager per-example results."""
    c = CASES[name]
    ops, params = c.gen(data.draw)
    fn = lambda *a: c.tg(*a, **params)  # noqa: E731
    ref = lambda *a: c.ref(*a, **params)  # noqa: E731
    for k in range(n_configs):
        B = data.draw(st.integers(0, max_batch), label="batch size")
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
        axes, args = [], []
        for op in ops:
            nd = len(op.shape)
            ax = data.draw(st.one_of(st.none(), st.integers(-(nd + 1), nd)), label="in_axis") \
                if op.can_batch else None
            axes.append(ax)
            if ax is None:
                args.append(op.make(rng, op.shape))
            else:
                args.append(np.moveaxis(op.make(rng, (B,) + op.shape), 0, ax))
        axis_size = B if all(a is None for a in axes) else None

        # out_axes: one per output, in range for its batched rank
        first = tg.vmap(fn, tuple(axes), 0, axis_size=axis_size)(*args)
        out_axes = []
        for o in _leaves(first):
            r = np.ndim(o)
            choices = st.integers(-r, r - 1)
            if axis_size is not None:  # nothing mapped: None keeps outputs unbatched
                choices = st.one_of(st.none(), choices)
            out_axes.append(data.draw(choices, label="out_axis"))
        oa = tuple(out_axes) if isinstance(first, (tuple, list)) else out_axes[0]
        out = tg.vmap(fn, tuple(axes), oa, axis_size=axis_size)(*args)
        what = f"{name} vmap in_axes={tuple(axes)} out_axes={oa} batch={B}"

        if k == 0:
            # jitted: one XLA compile per example instead of one per batched lax op
            expected = jax.jit(jax.vmap(ref, tuple(axes), oa, axis_size=axis_size))(
                *[jnp.asarray(a) for a in args])
            oracle.assert_close(out, expected, what=what, **c.tol)

        # the same numbers as running each example eagerly (batching-only check)
        per = []
        for i in range(B):
            ex = [a if ax is None else np.take(a, i, axis=ax) for a, ax in zip(args, axes)]
            per.append([np.asarray(o) for o in _leaves(fn(*ex))])
        for j, (o, od) in enumerate(zip(_leaves(out), _leaves(oa))):
            o = np.asarray(o)
            if od is None:
                assert B == 0 or o.shape == per[0][j].shape, what
                continue
            assert o.shape[od] == B, what
            for i in range(B):
                e = per[i][j]
                assert np.take(o, i, axis=od).dtype == e.dtype, what
                np.testing.assert_allclose(np.take(o, i, axis=od), e, rtol=1e-6, atol=1e-12,
                                           equal_nan=True, err_msg=f"{what}: example {i} of output {j}")


# slow-to-compile references get fewer examples; the rest use this many
N_EXAMPLES = 8


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=N_EXAMPLES)
@given(data=st.data())
def test_batch_rule(name, data):
    run_case(name, data)


# primitives whose batching rule is exercised outside the table: name -> test
COVERED_ELSEWHERE: dict[str, str] = {
    # only ever transposed, and bound at a BatchTrace only when a linearized
    # custom_vjp function is itself vmapped (see that test)
    "custom_vjp_lin": "tests/test_vmap.py::test_custom_vjp_lin_batch_rule",
}


def test_every_primitive_has_a_batch_rule_entry():
    filed = {n.split("[")[0] for n in CASES}  # "cond[switch]" is a second cond entry
    missing = sorted(set(P) - filed - set(COVERED_ELSEWHERE))
    assert not missing, f"primitives without a vmap table entry in tests/test_vmap.py: {missing}"
    no_rule = sorted(n for n, p in P.items() if p.batch is None)
    assert not no_rule, f"primitives without a batching rule: {no_rule}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_table_entry_exercises_its_primitive(name):
    """Each entry's function really binds the primitive it is filed under."""
    c = CASES[name]
    rng = np.random.default_rng(0)

    @settings(max_examples=3)
    @given(data=st.data())
    def check(data):
        ops, params = c.gen(data.draw)
        args = [op.make(rng, op.shape) for op in ops]
        j = tg.make_jaxpr(lambda *a: c.tg(*a, **params))(*args)
        names = set()
        stack = [j.jaxpr]
        while stack:
            jx = stack.pop()
            for e in jx.eqns:
                names.add(e.primitive.name)
                for v in e.params.values():
                    for sub in (v if isinstance(v, (tuple, list)) else [v]):
                        if isinstance(sub, core.ClosedJaxpr):
                            stack.append(sub.jaxpr)
                        elif isinstance(sub, core.Jaxpr):
                            stack.append(sub)
        prim = name.split("[")[0]
        assert prim in names, f"entry {name} does not bind {prim}: {sorted(names)}"
    check()


# --------------------------------------------------------------------------
# api.vmap semantics: in_axes / out_axes / axis_size / kwargs


def _r(*shape, seed=0):
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape)


def both(tg_f, jax_f, *args, in_axes=0, out_axes=0, axis_size=None, kwargs=None, **tol):
    """tracegrad.vmap(tg_f) vs jax.vmap(jax_f) on the same arguments."""
    kwargs = kwargs or {}
    out = tg.vmap(tg_f, in_axes, out_axes, axis_size=axis_size)(*args, **kwargs)
    jargs = jax.tree_util.tree_map(jnp.asarray, args)
    jkw = jax.tree_util.tree_map(jnp.asarray, kwargs)
    ref = jax.jit(jax.vmap(jax_f, in_axes, out_axes, axis_size=axis_size))(*jargs, **jkw)
    oracle.assert_close(out, ref, **tol)
    return out


def f_tree(np_):
    def f(d, t):
        a, (b, c) = t
        return {"x": np_.sin(d["u"]) * a, "y": (np_.sum(d["v"] * b), c * 2.0)}
    return f


def test_in_axes_pytree_prefixes():
    d = {"u": _r(3, 4), "v": _r(5, 3)}
    t = (_r(3, 4), (_r(5), _r(2, 3)))
    # per-leaf axes as a dict / nested tuple, None for unmapped leaves, negative axes
    both(f_tree(tnp), f_tree(jnp), d, t, in_axes=({"u": 0, "v": 1}, (None, (None, -1))))
    both(f_tree(tnp), f_tree(jnp), d, (_r(4), (_r(5), _r(3, 2))),
         in_axes=({"u": 0, "v": -1}, (None, (None, 0))))
    # a list is read as the per-argument tuple (as JAX)
    both(f_tree(tnp), f_tree(jnp), d, t, in_axes=[{"u": 0, "v": 1}, (None, (None, 1))])
    # a single int maps every leaf
    dd = {"u": _r(2, 4), "v": _r(2, 3)}
    both(f_tree(tnp), f_tree(jnp), dd, (_r(2, 4), (_r(2, 3), _r(2, 3))), in_axes=0)
    both(f_tree(tnp), f_tree(jnp), dd, (_r(4, 2), (_r(3, 2), _r(3, 2))), in_axes=({"u": 0, "v": 0}, -1))


def test_out_axes_pytree_prefixes_and_none():
    def f(np_):
        return lambda x, y: {"a": np_.sin(x), "b": (x * y, y * 2.0)}
    x, y = _r(3, 4), _r(4)
    both(f(tnp), f(jnp), x, y, in_axes=(0, None), out_axes={"a": 1, "b": (-1, None)})
    both(f(tnp), f(jnp), x.T, y, in_axes=(1, None), out_axes={"a": 0, "b": 1})
    both(f(tnp), f(jnp), x, y, in_axes=(0, None), out_axes=-1)
    # an unbatched output with an int out_axes is broadcast along the mapped axis
    both(f(tnp), f(jnp), x, y, in_axes=(0, None), out_axes={"a": 0, "b": (0, 0)})
    both(f(tnp), f(jnp), x, y, in_axes=(0, None), out_axes={"a": 0, "b": (0, -1)})


def test_out_axes_none_on_batched_output_is_an_error():
    with pytest.raises(ValueError, match=r"out_axes=None.*\['b'\]\[0\].*batched"):
        tg.vmap(lambda x, y: {"a": x, "b": (x * y, y)}, (0, None), {"a": 0, "b": (None, None)})(
            _r(3, 4), _r(4))


def test_unmapped_arguments_and_axis_size():
    # all arguments unmapped: axis_size gives the batch; outputs broadcast
    both(lambda x, y: x * y, lambda x, y: x * y, _r(3), _r(3), in_axes=None, axis_size=4)
    both(lambda x, y: x * y, lambda x, y: x * y, _r(3), _r(3), in_axes=(None, None),
         out_axes=1, axis_size=2)
    out = tg.vmap(lambda x: x + 1.0, None, None, axis_size=5)(_r(3))
    np.testing.assert_allclose(np.asarray(out), _r(3) + 1.0)
    # no arguments at all
    out = tg.vmap(lambda: tnp.ones(2), axis_size=3)()
    assert np.asarray(out).shape == (3, 2)
    # axis_size agreeing with the mapped arguments is fine
    both(tnp.sin, jnp.sin, _r(3, 2), axis_size=3)
    with pytest.raises(ValueError, match="axis_size"):
        tg.vmap(lambda x, y: x * y, None)(_r(3), _r(3))


def test_kwargs_are_mapped_over_axis_0():
    def f(np_):
        return lambda x, *, scale, shift=0.0: np_.sin(x) * scale + shift
    both(f(tnp), f(jnp), _r(3, 2), in_axes=1, kwargs={"scale": _r(2, 3), "shift": _r(2)})
    both(f(tnp), f(jnp), _r(3, 2), in_axes=None, kwargs={"scale": _r(4, 3, 2)})
    with pytest.raises(ValueError, match=r"keyword argument 'scale'.*axis 0 has size 3"):
        tg.vmap(f(tnp))(_r(2, 4), scale=_r(3, 4))


def test_negative_axes_everywhere():
    x = _r(2, 3, 4)
    both(lambda a: tnp.cos(a) * 2.0, lambda a: jnp.cos(a) * 2.0, x, in_axes=-2, out_axes=-1)
    both(lambda a: tnp.cos(a) * 2.0, lambda a: jnp.cos(a) * 2.0, x, in_axes=-1, out_axes=-3)
    # every (in_axis, out_axis) pair: mapping moves in_axis to the front, and
    # the result's batch axis to out_axis (NumPy spells out the semantics)
    for ia in range(-3, 3):
        for oa in range(-3, 3):
            out = tg.vmap(lambda a: tnp.cos(a) * a[0], ia, oa)(x)
            xa = np.moveaxis(x, ia, 0)
            ref = np.moveaxis(np.cos(xa) * xa[:, :1], 0, oa)
            np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-12, err_msg=f"{ia} {oa}")


def test_size_zero_and_one_batches():
    def f(np_):
        return lambda x, y: np_.sum(np_.sin(x) * y, axis=0)
    for n in (0, 1):
        both(f(tnp), f(jnp), _r(n, 3, 2), _r(2), in_axes=(0, None))
        both(f(tnp), f(jnp), _r(3, n, 2), _r(2, n), in_axes=(1, 1), out_axes=-1)
        both(f(tnp), f(jnp), _r(3, 2), _r(2), in_axes=None, axis_size=n)
    both(lambda x: tnp.matmul(x, x.T), lambda x: jnp.matmul(x, x.T), _r(0, 3, 2))
    out = tg.vmap(tg.grad(lambda w: tnp.sum(w * w)))(np.zeros((0, 3)))
    assert np.asarray(out).shape == (0, 3)


def test_python_scalars_and_constant_outputs():
    both(lambda x: (x * 2, 3.0), lambda x: (x * 2, 3.0), _r(4))
    both(lambda x: x + 1, lambda x: x + 1, np.arange(4, dtype=np.int32))
    # a weak Python scalar argument can be unmapped
    both(lambda x, s: x * s, lambda x, s: x * s, _r(4, 2), 2.5, in_axes=(0, None))


def test_mismatched_sizes_error_lists_every_argument():
    def f(x, y, z):
        return x + y["a"] + z
    with pytest.raises(ValueError) as e:
        tg.vmap(f, (0, {"a": 1}, None))(_r(3, 2), {"a": _r(2, 4)}, _r(2))
    msg = str(e.value)
    assert "inconsistent sizes" in msg
    assert "argument x of type f64[3,2]: axis 0 has size 3" in msg
    assert "argument y['a'] of type f64[2,4]: axis 1 has size 4" in msg
    assert "argument z" not in msg  # unmapped arguments have no size
    with pytest.raises(ValueError, match=r"(?s)axis 0 has size 3.*axis_size argument was 2"):
        tg.vmap(lambda x: x, axis_size=2)(_r(3))


def test_spec_errors():
    with pytest.raises(ValueError, match="in_axes has 1 entries but .* 2 positional"):
        tg.vmap(lambda a, b: a, in_axes=(0,))(_r(2), _r(2))
    with pytest.raises(ValueError, match=r"along axis 2.*f64\[3,2\]"):
        tg.vmap(lambda a: a, in_axes=2)(_r(3, 2))
    with pytest.raises(ValueError, match=r"along axis -3"):
        tg.vmap(lambda a: a, in_axes=-3)(_r(3, 2))
    with pytest.raises(ValueError, match="rank"):
        tg.vmap(lambda a: a)(1.0)
    with pytest.raises(TypeError, match="in_axes"):
        tg.vmap(lambda a: a, in_axes="0")
    with pytest.raises(TypeError, match="in_axes"):
        tg.vmap(lambda a: a, in_axes={"a": 0})  # the top level must be a tuple
    with pytest.raises(TypeError, match="out_axes"):
        tg.vmap(lambda a: a, out_axes=1.0)
    with pytest.raises(ValueError, match="tree prefix"):
        tg.vmap(lambda d: d["a"], in_axes=({"b": 0},))({"a": _r(2)})
    with pytest.raises(ValueError, match="tree prefix"):
        tg.vmap(lambda x: (x, x), out_axes=(0, 0, 0))(_r(2))
    with pytest.raises(ValueError, match=r"out_axes 2 is out of range"):
        tg.vmap(lambda x: x, out_axes=2)(_r(3))


def test_vmap_keeps_dtypes_and_weak_types():
    out = tg.vmap(lambda x: x * 2)(np.arange(3, dtype=np.int32))
    assert np.asarray(out).dtype == np.int32
    out = tg.vmap(lambda x: x * 2.0)(np.ones(3, np.float32))
    assert np.asarray(out).dtype == np.float32
    j = tg.make_jaxpr(tg.vmap(lambda x, s: x * s, (0, None)))(np.ones((3, 2), np.float32), 2.0)
    assert j.out_avals[0].dtype == np.float32


# --------------------------------------------------------------------------
# nesting and composition


def test_nested_vmap_different_axes():
    x, y = _r(3, 4, 5), _r(5, 4)

    def f(np_):
        return lambda a, b: np_.sum(np_.sin(a) * b)
    inner = lambda v: tg.vmap(f(tnp), (0, 1), 0)  # noqa: E731
    jinner = lambda v: jax.vmap(f(jnp), (0, 1), 0)  # noqa: E731
    # outer maps axis 0 of x and nothing of y; inner maps x's axis 1 (now 0) and y's axis 1
    out = tg.vmap(inner(None), (0, None), 1)(x, y)
    ref = jax.jit(jax.vmap(jinner(None), (0, None), 1))(x, y)
    oracle.assert_close(out, ref)
    # both mapped, at different positions
    x2, y2 = _r(4, 3, 5), _r(5, 3, 4)
    out = tg.vmap(tg.vmap(f(tnp), (1, -2), -1), (0, 2), 0)(x2, y2)
    ref = jax.jit(jax.vmap(jax.vmap(f(jnp), (1, -2), -1), (0, 2), 0))(x2, y2)
    oracle.assert_close(out, ref)
    # three levels: an outer product of batches
    out = tg.vmap(tg.vmap(tg.vmap(lambda a, b: a * b, (None, 0)), (0, None)), (None, None),
                  axis_size=2)(_r(3), _r(4))
    ref = jax.jit(jax.vmap(jax.vmap(jax.vmap(lambda a, b: a * b, (None, 0)), (0, None)), (None, None),
                           axis_size=2))(_r(3), _r(4))
    oracle.assert_close(out, ref)


def test_vmap_closure_over_outer_batch_tracer():
    xs, ys = _r(3, 2), _r(4, 2)
    out = tg.vmap(lambda x: tg.vmap(lambda y: tnp.sum(x * y))(ys))(xs)
    ref = jax.jit(jax.vmap(lambda x: jax.vmap(lambda y: jnp.sum(x * y))(ys)))(xs)
    oracle.assert_close(out, ref)
    # the inner function closes over the outer tracer AND maps the same data
    out = tg.vmap(lambda x: tg.vmap(lambda a: a * x)(x))(xs)
    ref = jax.jit(jax.vmap(lambda x: jax.vmap(lambda a: a * x)(x)))(xs)
    oracle.assert_close(out, ref)


def test_vmap_closure_capturing_arrays():
    w = _r(4, 3)
    b = _r(3)
    out = tg.vmap(lambda x: tnp.tanh(tnp.matmul(x, w) + b))(_r(5, 4))
    ref = jax.vmap(lambda x: jnp.tanh(jnp.matmul(x, w) + b))(_r(5, 4))
    oracle.assert_close(out, ref)


def _loss(np_):
    def loss(w, x, y):
        h = np_.tanh(np_.matmul(x, w["W1"]) + w["b1"])
        p = np_.matmul(h, w["W2"])
        return np_.sum((p - y) ** 2)
    return loss


def _params():
    return {"W1": _r(4, 5), "b1": _r(5), "W2": _r(5, 2)}


def test_per_example_gradients_vmap_of_grad():
    w, xs, ys = _params(), _r(6, 4), _r(6, 2)
    out = tg.vmap(tg.grad(_loss(tnp)), (None, 0, 0))(w, xs, ys)
    ref = jax.jit(jax.vmap(jax.grad(_loss(jnp)), (None, 0, 0)))(w, xs, ys)
    oracle.assert_close(out, ref)
    # w batched too (an ensemble), on a non-leading axis for one leaf
    wb = {"W1": _r(4, 3, 5), "b1": _r(3, 5), "W2": _r(3, 5, 2)}
    out = tg.vmap(tg.grad(_loss(tnp)), ({"W1": 1, "b1": 0, "W2": 0}, None, None))(wb, xs, ys)
    ref = jax.jit(jax.vmap(jax.grad(_loss(jnp)), ({"W1": 1, "b1": 0, "W2": 0}, None, None)))(wb, xs, ys)
    oracle.assert_close(out, ref)


def test_grad_of_vmap_sums():
    w, xs, ys = _params(), _r(6, 4), _r(6, 2)

    def total(np_, vm):
        return lambda w: np_.sum(vm(_loss(np_), (None, 0, 0))(w, xs, ys))
    oracle.assert_close(tg.grad(total(tnp, tg.vmap))(w), jax.jit(jax.grad(total(jnp, jax.vmap)))(w))
    # and it equals the sum of the per-example gradients
    per = tg.vmap(tg.grad(_loss(tnp)), (None, 0, 0))(w, xs, ys)
    g = tg.grad(total(tnp, tg.vmap))(w)
    for k in w:
        np.testing.assert_allclose(np.asarray(g[k]), np.asarray(per[k]).sum(0), rtol=1e-10)


def test_jvp_of_vmap_and_vmap_of_jvp():
    xs, ts = _r(5, 3), _r(5, 3)

    def f(np_):
        return lambda x: np_.sin(x) * np_.sum(x ** 2)
    out = tg.jvp(tg.vmap(f(tnp)), (xs,), (ts,))
    ref = jax.jit(lambda a, b: jax.jvp(jax.vmap(f(jnp)), (a,), (b,)))(xs, ts)
    oracle.assert_close(out, ref)
    out = tg.vmap(lambda x, t: tg.jvp(f(tnp), (x,), (t,)))(xs, ts)
    ref = jax.jit(jax.vmap(lambda x, t: jax.jvp(f(jnp), (x,), (t,))))(xs, ts)
    oracle.assert_close(out, ref)
    # tangents batched, primal shared (a Jacobian-vector product per direction)
    out = tg.vmap(lambda t: tg.jvp(f(tnp), (xs[0],), (t,))[1])(ts)
    ref = jax.jit(jax.vmap(lambda t: jax.jvp(f(jnp), (xs[0],), (t,))[1]))(ts)
    oracle.assert_close(out, ref)


def test_vjp_of_vmap_and_vmap_of_vjp():
    xs, cts = _r(5, 3), _r(5, 3)

    def f(np_):
        return lambda x: np_.exp(x) * np_.sum(np_.cos(x))
    out, pull = tg.vjp(tg.vmap(f(tnp)), xs)
    rout, rpull = jax.vjp(jax.vmap(f(jnp)), xs)
    oracle.assert_close(out, rout)
    oracle.assert_close(pull(cts), rpull(cts))
    out = tg.vmap(lambda x, c: tg.vjp(f(tnp), x)[1](c))(xs, cts)
    ref = jax.jit(jax.vmap(lambda x, c: jax.vjp(f(jnp), x)[1](c)))(xs, cts)
    oracle.assert_close(out, ref)


def test_vmap_closure_over_outer_jvp_and_grad_tracers():
    xs = _r(4, 3)

    def g(np_, vm):
        # the mapped function closes over w, a tracer of the enclosing grad
        return lambda w: np_.sum(vm(lambda x: np_.tanh(x * w))(xs))
    oracle.assert_close(tg.grad(g(tnp, tg.vmap))(_r(3)), jax.jit(jax.grad(g(jnp, jax.vmap)))(_r(3)))
    oracle.assert_close(tg.jvp(g(tnp, tg.vmap), (_r(3),), (_r(3, seed=1),)),
                        jax.jit(lambda a, b: jax.jvp(g(jnp, jax.vmap), (a,), (b,)))(_r(3), _r(3, seed=1)))
    # second order through vmap
    oracle.assert_close(tg.grad(tg.grad(lambda s: g(tnp, tg.vmap)(s * np.ones(3))))(0.3),
                        jax.jit(jax.grad(jax.grad(lambda s: g(jnp, jax.vmap)(s * jnp.ones(3)))))(0.3))


def test_vmap_of_hessian_vector_products():
    def f(np_):
        return lambda x: np_.sum(np_.sin(x) ** 2 * x)
    x, vs = _r(4), _r(3, 4)
    hvp = lambda v: tg.jvp(tg.grad(f(tnp)), (x,), (v,))[1]  # noqa: E731
    jhvp = lambda v: jax.jvp(jax.grad(f(jnp)), (x,), (v,))[1]  # noqa: E731
    oracle.assert_close(tg.vmap(hvp)(vs), jax.jit(jax.vmap(jhvp))(vs))


def test_vmap_of_jit_and_jit_of_vmap():
    def f(np_):
        return lambda x, y: np_.tanh(np_.matmul(x, y)) + 1.0
    x, y = _r(5, 3, 4), _r(4, 2)
    oracle.assert_close(tg.vmap(tg.jit(f(tnp)), (0, None))(x, y), jax.vmap(f(jnp), (0, None))(x, y))
    oracle.assert_close(tg.jit(tg.vmap(f(tnp), (0, None)))(x, y), jax.vmap(f(jnp), (0, None))(x, y))
    oracle.assert_close(tg.vmap(tg.grad(lambda a: tnp.sum(tg.jit(f(tnp))(a, y))))(x),
                        jax.jit(jax.vmap(jax.grad(lambda a: jnp.sum(f(jnp)(a, y)))))(x))


# --------------------------------------------------------------------------
# custom derivatives under vmap


def _softplus_cjvp():
    @tg.custom_jvp
    def softplus(x):
        return tnp.log1p(tnp.exp(x))

    @softplus.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        return softplus(x), t * (1.0 / (1.0 + tnp.exp(-x)))
    return softplus


def _clip_grad_cvjp():
    @tg.custom_vjp
    def f(x, y):
        return tnp.sin(x) * y

    def fwd(x, y):
        return f(x, y), (tnp.cos(x), tnp.sin(x), y)

    def bwd(res, g):
        c, s, y = res
        return (tnp.clip(c * y * g, -0.5, 0.5), s * g)
    f.defvjp(fwd, bwd)
    return f


def test_vmap_of_custom_jvp():
    sp = _softplus_cjvp()
    xs = _r(5, 3)
    ref_sp = lambda x: jnp.log1p(jnp.exp(x))  # noqa: E731
    oracle.assert_close(tg.vmap(sp)(xs), jax.jit(jax.vmap(ref_sp))(xs))
    oracle.assert_close(tg.vmap(sp, 1, 1)(xs), jax.jit(jax.vmap(ref_sp, 1, 1))(xs))
    oracle.assert_close(tg.vmap(tg.grad(lambda x: tnp.sum(sp(x))))(xs),
                        jax.jit(jax.vmap(jax.grad(lambda x: jnp.sum(ref_sp(x)))))(xs))
    oracle.assert_close(tg.grad(lambda x: tnp.sum(tg.vmap(sp)(x)))(xs),
                        jax.jit(jax.grad(lambda x: jnp.sum(jax.vmap(ref_sp)(x))))(xs))
    oracle.assert_close(tg.jvp(tg.vmap(sp), (xs,), (xs * 0.5,)),
                        jax.jit(lambda a: jax.jvp(jax.vmap(ref_sp), (a,), (a * 0.5,)))(xs))
    # closing over an outer batch tracer
    ys = _r(4)
    oracle.assert_close(tg.vmap(lambda y: tg.vmap(lambda x: sp(x * y))(xs))(ys),
                        jax.jit(jax.vmap(lambda y: jax.vmap(lambda x: ref_sp(x * y))(xs)))(ys))


def test_vmap_of_custom_vjp():
    f = _clip_grad_cvjp()

    @jax.custom_vjp
    def jf(x, y):
        return jnp.sin(x) * y
    jf.defvjp(lambda x, y: (jf(x, y), (jnp.cos(x), jnp.sin(x), y)),
              lambda r, g: (jnp.clip(r[0] * r[2] * g, -0.5, 0.5), r[1] * g))
    xs, ys = _r(5, 3), _r(3)
    oracle.assert_close(tg.vmap(f, (0, None))(xs, ys), jax.jit(jax.vmap(jf, (0, None)))(xs, ys))
    g = tg.vmap(tg.grad(lambda x, y: tnp.sum(f(x, y)), (0, 1)), (0, None))(xs, ys)
    jg = jax.jit(jax.vmap(jax.grad(lambda x, y: jnp.sum(jf(x, y)), (0, 1)), (0, None)))(xs, ys)
    oracle.assert_close(g, jg)
    g = tg.grad(lambda x, y: tnp.sum(tg.vmap(f, (0, None))(x, y)), (0, 1))(xs, ys)
    jg = jax.jit(jax.grad(lambda x, y: jnp.sum(jax.vmap(jf, (0, None))(x, y)), (0, 1)))(xs, ys)
    oracle.assert_close(g, jg)


# --------------------------------------------------------------------------
# Jacobians: jacfwd = vmap of jvp, jacrev = vmap of the transposed linearization


def _jf(np_):
    def f(a, b):
        return {"u": np_.sin(a) * 2.0, "v": (np_.sum(a) * b, np_.exp(b[:2]))}
    return f


@pytest.mark.parametrize("which", ["jacfwd", "jacrev"])
@pytest.mark.parametrize("argnums", [0, 1, (0, 1), (1, 0), (1,)])
def test_jacobians_pytrees_and_argnums(which, argnums):
    a, b = _r(3, 2), _r(4)
    out = getattr(tg, which)(_jf(tnp), argnums)(a, b)
    ref = jax.jit(getattr(jax, which)(_jf(jnp), argnums))(a, b)
    oracle.assert_close(out, ref)


@pytest.mark.parametrize("which", ["jacfwd", "jacrev"])
def test_jacobians_shapes_aux_and_dtypes(which):
    tgj = getattr(tg, which)
    jj = lambda *a, **k: jax.jit(getattr(jax, which)(*a, **k))  # noqa: E731
    # non-square, scalar in, scalar out
    oracle.assert_close(tgj(lambda x: tnp.tanh(tnp.outer(x, x[:2])))(_r(5)),
                        jj(lambda x: jnp.tanh(jnp.outer(x, x[:2])))(_r(5)))
    oracle.assert_close(tgj(lambda s: tnp.sin(s * np.arange(3.0)))(0.7),
                        jj(lambda s: jnp.sin(s * np.arange(3.0)))(0.7))
    oracle.assert_close(tgj(lambda x: tnp.sum(x ** 3))(_r(2, 3)), jj(lambda x: jnp.sum(x ** 3))(_r(2, 3)))
    # has_aux
    out = tgj(lambda x: (tnp.sin(x), {"n": tnp.sum(x)}), has_aux=True)(_r(3))
    ref = jj(lambda x: (jnp.sin(x), {"n": jnp.sum(x)}), has_aux=True)(_r(3))
    oracle.assert_close(out, ref)
    # float32 stays float32; a pytree input
    oracle.assert_close(tgj(tnp.sin)(_r(3).astype(np.float32)), jj(jnp.sin)(_r(3).astype(np.float32)))
    d = {"a": _r(2), "b": _r(3)}
    oracle.assert_close(tgj(lambda d: d["a"][:, None] * d["b"])(d), jj(lambda d: d["a"][:, None] * d["b"])(d))
    # empty input
    oracle.assert_close(tgj(lambda x: x * 2.0)(np.zeros(0)), jj(lambda x: x * 2.0)(np.zeros(0)))
    with pytest.raises(TypeError, match="float"):
        tgj(lambda x: x * 2)(np.arange(3))


def test_jacobians_under_vmap_and_hessian():
    def f(np_):
        return lambda x, y: np_.sum(np_.sin(x) * np_.cos(y) * x[::-1])
    x, y = _r(4), _r(4, seed=1)
    h_ref = jax.jit(jax.hessian(f(jnp)))(x, y)
    oracle.assert_close(tg.hessian(f(tnp))(x, y), h_ref)
    oracle.assert_close(tg.hessian(f(tnp), (0, 1))(x, y), jax.jit(jax.hessian(f(jnp), (0, 1)))(x, y))
    # hessian == jacfwd(jacrev)
    oracle.assert_close(tg.hessian(f(tnp))(x, y), tg.jacfwd(tg.jacrev(f(tnp)))(x, y))
    oracle.assert_close(tg.jacrev(tg.jacfwd(f(tnp)))(x, y), h_ref)
    # per-example Jacobians
    xs = _r(3, 4)
    oracle.assert_close(tg.vmap(tg.jacrev(lambda v: tnp.tanh(v) * v[0]))(xs),
                        jax.jit(jax.vmap(jax.jacrev(lambda v: jnp.tanh(v) * v[0])))(xs))
    oracle.assert_close(tg.vmap(tg.jacfwd(lambda v: tnp.tanh(v) * v[0]), 1)(xs.T),
                        jax.jit(jax.vmap(jax.jacfwd(lambda v: jnp.tanh(v) * v[0]), 1))(xs.T))


def test_custom_vjp_lin_batch_rule():
    """custom_vjp_lin (the linear half of a custom_vjp function) is bound at a
    BatchTrace when a linearized custom_vjp function is vmapped while being
    staged; the staged, batched linear map must transpose to the mapped bwd."""
    from tracegrad.interpreters import ad
    x, y = _r(3), _r(3, seed=1)
    _, f_jvp = tg.linearize(lambda a: _tg_scaled_sin(a, y), x)
    assert "custom_vjp_lin" in str(f_jvp.jaxpr)
    ts, cts = _r(4, 3, seed=2), _r(4, 3, seed=3)
    for in_axis in (0, 1):
        t_in = ts if in_axis == 0 else ts.T
        staged = tg.make_jaxpr(tg.vmap(f_jvp, in_axis))(t_in)
        eqn = [e for e in staged.jaxpr.eqns if e.primitive.name == "custom_vjp_lin"]
        assert eqn and eqn[0].outvars[0].aval.shape == (4, 3)  # batched by _lin_batch
        # transpose it (the non-linear part, e.g. broadcast residuals, runs forward first)
        (ct_in,) = ad.backward_pass_with_args(staged, [ad.UndefinedPrimal(staged.in_avals[0])], [cts])
        ref = jax.vmap(jax.vjp(lambda a: jnp.sin(a) * y, x)[1])(cts)[0]
        oracle.assert_close(np.moveaxis(np.asarray(ct_in), in_axis, 0), ref)
    # evaluating it forward is the documented forward-mode error, batched or not
    with pytest.raises(TypeError, match="forward-mode"):
        tg.vmap(f_jvp)(ts)
