"""Shape primitives (slice, pad, concatenate, rev, iota, and the older
broadcast_in_dim/reshape/transpose/squeeze) and the tnp shape functions vs
jax.lax / jax.numpy (x64): values, shapes, dtypes, weak types, jvp, vjp,
vmap (various in_axes, unbatched operands) and the StableHLO lowering, over
fixed cases and hypothesis-generated shapes (0-d and empty axes included)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from jax import lax

import oracle
import tracegrad as tg
import tracegrad.numpy as tnp
from tracegrad.primitives import shapes as S

RNG = np.random.default_rng(0)


def _x(*shape, dtype=np.float64, seed=None):
    rng = np.random.default_rng(seed) if seed is not None else RNG
    return rng.standard_normal(shape).astype(dtype)


def _batched(args, in_axes, size=2):
    """Per-arg: None -> the arg itself (unbatched); d -> `size` variants
    stacked along axis d."""
    out = []
    for i, (a, d) in enumerate(zip(args, in_axes)):
        a = np.asarray(a)
        if d is None:
            out.append(a)
        else:
            vs = [(a * (k + 1) + 0.5 * k).astype(a.dtype) for k in range(size)]
            out.append(np.stack(vs, axis=d))
    return out


def full_check(tg_fn, jax_fn, args, in_axes=None, diff=True, lower=True):
    """eval (values/shapes/dtypes) + jvp + vjp + vmap over each in_axes spec + lowering."""
    jax_fn = jax.jit(jax_fn)  # one XLA compile per check instead of one per op
    oracle.check_eval(tg_fn, jax_fn, *args)
    if diff:
        oracle.check_jvp(tg_fn, jax_fn, args)
        oracle.check_vjp(tg_fn, jax_fn, args)
    for spec in (in_axes if in_axes is not None else [(0,) * len(args)]):
        bargs = _batched(args, spec)
        oracle.check_vmap(tg_fn, jax_fn, bargs, in_axes=tuple(spec))
    if lower:
        oracle.check_lowering(tg_fn, args)


# --------------------------------------------------------------------------
# primitives, bound directly, vs lax


@pytest.mark.parametrize("shape,start,limit,strides", [
    ((7,), (1,), (6,), None),
    ((7,), (1,), (7,), (3,)),
    ((4, 5), (0, 1), (4, 5), (2, 2)),
    ((4, 5), (2, 5), (2, 5), (1, 3)),      # empty result
    ((3, 0, 2), (1, 0, 0), (3, 0, 2), (1, 1, 2)),
    ((), (), (), None),
])
def test_slice_primitive(shape, start, limit, strides):
    x = _x(*shape)
    f = lambda x: S.slice_p.bind(x, start_indices=start, limit_indices=limit, strides=strides)
    g = lambda x: lax.slice(x, start, limit, strides)
    axes = [(0,)] + ([(len(shape),)] if shape else [])
    full_check(f, g, [x], in_axes=axes)


@pytest.mark.parametrize("shape,config", [
    ((5,), ((1, 2, 0),)),
    ((5,), ((-2, 3, 1),)),                 # crop low, pad high, interior
    ((5,), ((-3, -4, 2),)),                # crop both sides into interior padding
    ((3, 4), ((0, 0, 1), (-1, 2, 0))),
    ((0, 3), ((2, 1, 3), (1, -1, 0))),     # empty axis, interior on it
    ((1,), ((-1, 0, 5),)),                 # everything cropped
    ((), ()),
])
def test_pad_primitive(shape, config):
    x = _x(*shape)
    pv = np.asarray(0.75)
    f = lambda x, p: S.pad_p.bind(x, p, padding_config=config)
    g = lambda x, p: lax.pad(x, p, config)
    # operand batched / padding value batched / both
    full_check(f, g, [x, pv], in_axes=[(0, None), (None, 0), (0, 0)]
               + ([(len(shape), 0)] if shape else []))


def test_pad_primitive_int_and_weak():
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    cfg = ((1, -1, 1), (0, 2, 0))
    out = S.pad_p.bind(x, np.int32(-7), padding_config=cfg)
    oracle.assert_close(out, lax.pad(x, np.int32(-7), cfg))
    # weak only if both operand and padding value are weak
    w = tnp.asarray(2.0)
    assert S.pad_p.bind(w, np.float64(1.0), padding_config=()).weak is False
    assert S.pad_p.bind(w, w, padding_config=()).weak is True


@pytest.mark.parametrize("shapes,dim", [
    ([(2, 3), (4, 3)], 0),
    ([(2, 3), (2, 0), (2, 1)], 1),
    ([(3,)], 0),
    ([(1, 2, 2), (1, 2, 3)], 2),
])
def test_concatenate_primitive(shapes, dim):
    args = [_x(*s) for s in shapes]
    f = lambda *xs: S.concatenate_p.bind(*xs, dimension=dim)
    g = lambda *xs: lax.concatenate(xs, dim)
    n = len(args)
    specs = [(0,) * n, (None,) * (n - 1) + (0,), (1,) + (None,) * (n - 1)]
    full_check(f, g, args, in_axes=specs)


@pytest.mark.parametrize("shapes,dim", [
    ([(1,), (1,), (1,)], 0),
    ([(2, 1, 3), (2, 1, 3)], 1),
    ([(2, 3, 1), (2, 3, 1), (2, 3, 1)], 2),
    ([(1, 0), (1, 0)], 0),
])
def test_concatenate_batch_stack_pattern(shapes, dim):
    """Operands of extent 1 along `dimension` (a stack), all batched at the
    same axis: the batch rule joins them along an axis before the batch axis
    (as JAX's stack_p) instead of moving the batch axis to the front; values,
    jvp/vjp through vmap and mixed (unbatched) operands still match JAX."""
    args = [_x(*s) for s in shapes]
    n = len(args)
    f = lambda *xs: S.concatenate_p.bind(*xs, dimension=dim)
    g = lambda *xs: lax.concatenate(xs, dim)
    nd = len(shapes[0])
    specs = [(b,) * n for b in range(nd + 1)] + [(None,) + (0,) * (n - 1)]
    full_check(f, g, args, in_axes=specs, lower=False)
    for b in range(nd + 1):
        bargs = _batched(args, (b,) * n, size=3)
        vf = lambda *xs: tg.vmap(f, in_axes=b)(*xs) ** 2
        vg = lambda *xs: jax.vmap(g, in_axes=b)(*xs) ** 2
        oracle.check_jvp(vf, vg, bargs)
        oracle.check_vjp(vf, vg, bargs)
        oracle.check_lowering(tg.vmap(f, in_axes=b), bargs)
        # the join is along dim itself when dim <= b (no transpose), else dim + 1
        jx = tg.make_jaxpr(tg.vmap(f, in_axes=b))(*bargs)
        cat = [e for e in jx.jaxpr.eqns if e.primitive is S.concatenate_p]
        assert len(cat) == 1 and cat[0].params["dimension"] == (dim if dim <= b else dim + 1)


def test_stack_scalars_under_nested_vmap_joins_major_axis():
    """tnp.stack of per-example scalars (the BA cross product) under two vmaps
    concatenates whole rows along the leading axis, as jax.jit programs do,
    and matches jax.vmap (values and jacfwd) exactly."""
    def cross(B, a, b):
        a0, a1, a2 = a[0], a[1], a[2]
        b0, b1, b2 = b[0], b[1], b[2]
        return B.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)
    a, b = _x(5, 3, seed=1), _x(5, 3, seed=2)
    out = tg.vmap(lambda a, b: cross(tnp, a, b))(a, b)
    ref = jax.vmap(lambda a, b: cross(jnp, a, b))(a, b)
    oracle.assert_close(out, ref, rtol=0, atol=0)
    jt = tg.vmap(tg.jacfwd(lambda a, b: cross(tnp, a, b)))(a, b)
    jj = jax.vmap(jax.jacfwd(lambda a, b: cross(jnp, a, b)))(a, b)
    oracle.assert_close(jt, jj, rtol=0, atol=0)
    oracle.check_jit(tg.vmap(tg.jacfwd(lambda a, b: cross(tnp, a, b))), [a, b])
    jx = tg.make_jaxpr(tg.vmap(lambda a, b: cross(tnp, a, b)))(a, b)
    cat = [e for e in jx.jaxpr.eqns if e.primitive is S.concatenate_p]
    assert [e.params["dimension"] for e in cat] == [0]
    assert cat[0].outvars[0].aval.shape == (3, 5)


@pytest.mark.parametrize("shape,dims", [((4,), (0,)), ((2, 3, 4), (0, 2)), ((2, 0), (1,)),
                                        ((3, 2), ()), ((), ())])
def test_rev_primitive(shape, dims):
    x = _x(*shape)
    f = lambda x: S.rev_p.bind(x, dimensions=dims)
    g = lambda x: lax.rev(x, dims)
    full_check(f, g, [x], in_axes=[(0,)] + ([(len(shape),)] if shape else []))


@pytest.mark.parametrize("dtype,shape,dim", [(np.int32, (5,), 0), (np.float64, (2, 3), 1),
                                             (np.int64, (3, 0, 2), 2), (np.complex64, (2, 2), 0),
                                             (np.uint8, (4, 2), 0)])
def test_iota_primitive(dtype, shape, dim):
    out = S.iota(dtype, shape, dim)
    oracle.assert_close(out, lax.broadcasted_iota(dtype, shape, dim))
    assert out.weak is False
    closed = tg.make_jaxpr(lambda: S.iota(dtype, shape, dim))()
    assert "iota" in str(closed)
    oracle.check_lowering(lambda: S.iota(dtype, shape, dim), [])


def test_iota_inside_transformations():
    # iota mixes with batched / differentiated values (its own rules are trivial)
    def f(x):
        return x * S.iota(np.float64, (3,), 0)

    def g(x):
        return x * lax.iota(np.float64, 3)

    full_check(f, g, [_x(3)], in_axes=[(0,), (1,)])
    assert S.iota_p.batch([], [], dtype=np.dtype(np.int32), shape=(2,), dimension=0)[1] is None


def test_old_primitives_still_work():
    x = _x(2, 1, 3)
    full_check(lambda x: S.squeeze_p.bind(x, dimensions=(1,)), lambda x: lax.squeeze(x, (1,)),
               [x], in_axes=[(0,), (2,)])
    full_check(lambda x: S.transpose_p.bind(x, permutation=(2, 0, 1)),
               lambda x: lax.transpose(x, (2, 0, 1)), [x], in_axes=[(1,)])
    full_check(lambda x: S.broadcast_in_dim_p.bind(x, shape=(2, 4, 3), broadcast_dimensions=(0, 1, 2)),
               lambda x: lax.broadcast_in_dim(x, (2, 4, 3), (0, 1, 2)), [x])
    full_check(lambda x: S.reshape(x, (3, 2)), lambda x: x.reshape(3, 2), [x], in_axes=[(2,)])
    y = S.full((2, 2), 3, np.int32)
    assert np.asarray(y).dtype == np.int32 and np.all(np.asarray(y) == 3)
    oracle.assert_close(S.moveaxis_bind(x, 0, 2), jnp.moveaxis(x, 0, 2))
    oracle.assert_close(S.broadcast_to(_x(3, seed=1), (2, 3)),
                        jnp.broadcast_to(_x(3, seed=1), (2, 3)))


def test_slice_transpose_is_pad_with_interior():
    closed = tg.make_jaxpr(tg.grad(lambda x: tnp.sum(S.static_slice(x, (1,), (8,), (3,)))))(_x(10))
    text = str(closed)
    assert "pad[padding_config=((1, 2, 2),)]" in text, text


def test_higher_order_derivatives():
    # transposes are written with primitives, so they differentiate again
    def f(x):
        y = S.pad(S.static_slice(x, (1,), (6,), (2,)), 0.5, [(-1, 2, 1)])
        z = tnp.concatenate([y, S.rev(x, (0,))])
        return tnp.sum(z * z * z)

    def g(x):
        y = lax.pad(lax.slice(x, (1,), (6,), (2,)), 0.5, [(-1, 2, 1)])
        z = jnp.concatenate([y, lax.rev(x, (0,))])
        return jnp.sum(z * z * z)

    x = _x(7)
    g = jax.jit(g)
    oracle.assert_close(tg.hessian(f)(x), jax.hessian(g)(x))
    xs = _x(3, 7, seed=5)
    oracle.assert_close(tg.vmap(tg.grad(f))(xs), jax.vmap(jax.grad(g))(xs))


# --------------------------------------------------------------------------
# tnp functions, fixed cases

A23 = _x(2, 3, seed=11)
A234 = _x(2, 3, 4, seed=12)
A3 = _x(3, seed=13)

UNARY_CASES = {
    "reshape_-1": (lambda m: m.reshape(A234, (3, -1)), (A234,)),
    "reshape_F": (lambda m: m.reshape(A234, (4, 6), order="F"), (A234,)),
    "reshape_0d": (lambda m: m.reshape(np.asarray(2.5), (1, 1)), ()),
    "ravel": (lambda m: m.ravel(A234), ()),
    "ravel_F": (lambda m: m.ravel(A23, order="F"), ()),
    "transpose": (lambda m: m.transpose(A234, (1, -1, 0)), (A234,)),
    "transpose_default": (lambda m: m.transpose(A234), (A234,)),
    "swapaxes": (lambda m: m.swapaxes(A234, 0, -1), (A234,)),
    "moveaxis": (lambda m: m.moveaxis(A234, (0, 1), (-1, 0)), (A234,)),
    "squeeze_all": (lambda m: m.squeeze(_x(1, 3, 1, seed=1)), ()),
    "squeeze_tuple": (lambda m: m.squeeze(np.ones((1, 3, 1)), (0, -1)), ()),
    "expand_dims": (lambda m: m.expand_dims(A23, (0, -1, 2)), (A23,)),
    "expand_dims_0d": (lambda m: m.expand_dims(np.asarray(1.5), -1), ()),
    "broadcast_to": (lambda m: m.broadcast_to(A3, (4, 2, 3)), (A3,)),
    "broadcast_arrays": (lambda m: m.broadcast_arrays(A3, _x(2, 1, seed=2)), (A3,)),
    "concat_axis1": (lambda m: m.concatenate([A23, _x(2, 2, seed=3)], axis=1), (A23,)),
    "concat_axis_none": (lambda m: m.concatenate([A23, A3], axis=None), (A23,)),
    "concat_neg": (lambda m: m.concatenate([A234, A234], axis=-2), (A234,)),
    "stack": (lambda m: m.stack([A23, A23 * 2], axis=-1), (A23,)),
    "stack_0": (lambda m: m.stack([A3, A3, A3]), (A3,)),
    "hstack_1d": (lambda m: m.hstack([A3, A3]), (A3,)),
    "hstack_2d": (lambda m: m.hstack([A23, A23]), (A23,)),
    "vstack": (lambda m: m.vstack([A3, A23]), (A3,)),
    "dstack": (lambda m: m.dstack([A23, A23]), (A23,)),
    "column_stack": (lambda m: m.column_stack([A3, _x(3, 2, seed=4)]), (A3,)),
    "split_int": (lambda m: m.split(_x(6, 2, seed=5), 3), ()),
    "split_list": (lambda m: m.split(_x(2, 7, seed=6), [2, 5, 5, 7], axis=1), ()),
    "array_split": (lambda m: m.array_split(_x(7, seed=7), 3), ()),
    "array_split_more": (lambda m: m.array_split(_x(2, seed=7), 4), ()),
    "tile": (lambda m: m.tile(A23, (2, 1, 3)), (A23,)),
    "tile_int": (lambda m: m.tile(A3, 2), (A3,)),
    "tile_zero": (lambda m: m.tile(A23, (0, 2)), (A23,)),
    "repeat_int": (lambda m: m.repeat(A23, 2, axis=1), (A23,)),
    "repeat_none": (lambda m: m.repeat(A23, 3), (A23,)),
    "repeat_list": (lambda m: m.repeat(A23, np.array([2, 0, 3]), axis=-1), (A23,)),
    "repeat_list1": (lambda m: m.repeat(A23, np.array([3]), axis=0), (A23,)),
    "repeat_total": (lambda m: m.repeat(A3, np.array([1, 2, 1]), total_repeat_length=6), (A3,)),
    "repeat_total_short": (lambda m: m.repeat(A3, 2, total_repeat_length=4), (A3,)),
    "repeat_0d": (lambda m: m.repeat(np.asarray(1.5), 3), ()),
    "flip_none": (lambda m: m.flip(A234), (A234,)),
    "flip_tuple": (lambda m: m.flip(A234, (0, -1)), (A234,)),
    "fliplr": (lambda m: m.fliplr(A23), (A23,)),
    "flipud": (lambda m: m.flipud(A3), (A3,)),
    "roll_int": (lambda m: m.roll(A234, 2, axis=1), (A234,)),
    "roll_none": (lambda m: m.roll(A234, -5), (A234,)),
    "roll_tuple": (lambda m: m.roll(A234, (1, 7, -2), axis=(0, 2, 0)), (A234,)),
    "rot90": (lambda m: m.rot90(A234), (A234,)),
    "rot90_k2": (lambda m: m.rot90(A234, 2, axes=(1, 2)), (A234,)),
    "rot90_k3": (lambda m: m.rot90(A234, -1, axes=(2, 0)), (A234,)),
    "atleast_1d": (lambda m: m.atleast_1d(np.asarray(2.0)), ()),
    "atleast_2d": (lambda m: m.atleast_2d(A3, np.asarray(1.0), A234), ()),
    "atleast_3d": (lambda m: m.atleast_3d(np.asarray(1.0), A3, A23, A234), ()),
    "meshgrid_xy": (lambda m: m.meshgrid(A3, _x(2, seed=8), _x(4, seed=9)), ()),
    "meshgrid_ij": (lambda m: m.meshgrid(A3, _x(2, seed=8), indexing="ij"), ()),
    "meshgrid_sparse": (lambda m: m.meshgrid(A3, _x(2, seed=8), sparse=True), ()),
    "pad_constant": (lambda m: m.pad(A23, ((1, 2), (0, 3)), constant_values=((1.5, 2.0), (3.0, -1.0))), ()),
    "pad_int_width": (lambda m: m.pad(A23, 2), ()),
    "pad_pair_width": (lambda m: m.pad(A234, (1, 2), constant_values=4), ()),
    "pad_edge": (lambda m: m.pad(A23, ((2, 1), (3, 0)), mode="edge"), ()),
    "pad_reflect": (lambda m: m.pad(A23, ((2, 5), (3, 1)), mode="reflect"), ()),
    "pad_symmetric": (lambda m: m.pad(A23, ((3, 5), (1, 4)), mode="symmetric"), ()),
    "pad_wrap": (lambda m: m.pad(A23, ((3, 5), (7, 1)), mode="wrap"), ()),
    "pad_reflect_odd": (lambda m: m.pad(A23, ((2, 5), (3, 1)), mode="reflect", reflect_type="odd"), ()),
    "pad_symmetric_odd": (lambda m: m.pad(A23, ((3, 4), (1, 5)), mode="symmetric", reflect_type="odd"), ()),
    "pad_reflect_len1": (lambda m: m.pad(_x(1, 2, seed=3), ((2, 3), (1, 1)), mode="reflect"), ()),
    "pad_empty_mode": (lambda m: m.pad(A3, 0, mode="empty"), ()),
}


@pytest.mark.parametrize("name", sorted(UNARY_CASES))
def test_tnp_eval(name):
    fn, _ = UNARY_CASES[name]
    out = fn(tnp)
    ref = fn(jnp)
    oracle.assert_close(out, ref, what=name)
    # weak types follow jnp as well
    for o, r in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(ref)):
        assert o.weak == getattr(r, "weak_type", False), name


# the same functions as functions of their array inputs: derivatives, vmap, lowering
DIFF_CASES = {
    "reshape": (lambda m, x: m.reshape(x, (3, -1)), [A234], [(0,), (2,)]),
    "reshape_F": (lambda m, x: m.reshape(x, (6, 4), order="F"), [A234], [(1,)]),
    "transpose": (lambda m, x: m.transpose(x, (2, 0, 1)), [A234], [(1,)]),
    "moveaxis": (lambda m, x: m.moveaxis(x, 0, -1), [A234], [(3,)]),
    "squeeze": (lambda m, x: m.squeeze(x, 1), [_x(2, 1, 3)], [(1,)]),
    "expand_dims": (lambda m, x: m.expand_dims(x, (0, 2)), [A23], [(1,)]),
    "broadcast_to": (lambda m, x: m.broadcast_to(x, (2, 4, 3)), [_x(4, 1)], [(0,), (1,)]),
    "broadcast_arrays": (lambda m, x, y: m.broadcast_arrays(x, y), [A3, _x(2, 1)],
                         [(0, None), (None, 1)]),
    "concatenate": (lambda m, x, y: m.concatenate([x, y], axis=1), [A23, _x(2, 4)],
                    [(0, None), (None, 1), (1, 0), (0, 0)]),
    "concatenate_none": (lambda m, x, y: m.concatenate([x, y], axis=None), [A23, A3],
                         [(None, 0), (1, None)]),
    "stack": (lambda m, x, y: m.stack([x, y], axis=1), [A23, A23 * 2], [(0, None), (2, 1)]),
    "hstack": (lambda m, x, y: m.hstack([x, y]), [A3, A3], [(None, 0)]),
    "vstack": (lambda m, x, y: m.vstack([x, y]), [A3, A23], [(0, None)]),
    "dstack": (lambda m, x, y: m.dstack([x, y]), [A23, A23], [(1, 0)]),
    "column_stack": (lambda m, x, y: m.column_stack([x, y]), [A3, _x(3, 2)], [(0, None)]),
    "split": (lambda m, x: m.split(x, [1, 3], axis=1), [A234], [(0,), (2,)]),
    "array_split": (lambda m, x: m.array_split(x, 3, axis=-1), [A234], [(1,)]),
    "tile": (lambda m, x: m.tile(x, (2, 1, 3)), [A23], [(0,), (2,)]),
    "repeat_int": (lambda m, x: m.repeat(x, 2, axis=0), [A23], [(1,)]),
    "repeat_list": (lambda m, x: m.repeat(x, np.array([1, 0, 2]), axis=1), [A23], [(0,), (2,)]),
    "repeat_none": (lambda m, x: m.repeat(x, 2), [A23], [(1,)]),
    "flip": (lambda m, x: m.flip(x, 1), [A234], [(1,)]),
    "roll": (lambda m, x: m.roll(x, (1, -1), (0, 2)), [A234], [(0,), (3,)]),
    "roll_none": (lambda m, x: m.roll(x, 4), [A234], [(2,)]),
    "rot90": (lambda m, x: m.rot90(x, 3), [A23], [(0,), (2,)]),
    "meshgrid": (lambda m, x, y: m.meshgrid(x, y), [A3, _x(2)], [(0, None), (None, 0)]),
    "pad_constant": (lambda m, x: m.pad(x, ((1, 2), (0, 1)), constant_values=((1.0, 2.0), (3.0, 4.0))),
                     [A23], [(0,), (2,)]),
    "pad_traced_value": (lambda m, x, c: m.pad(x, 2, constant_values=c), [A23, np.asarray(0.5)],
                         [(None, 0), (1, 0), (0, None)]),
    "pad_edge": (lambda m, x: m.pad(x, ((2, 1), (1, 0)), mode="edge"), [A23], [(1,)]),
    "pad_reflect": (lambda m, x: m.pad(x, ((3, 4), (2, 2)), mode="reflect"), [A23], [(0,)]),
    "pad_symmetric": (lambda m, x: m.pad(x, ((3, 4), (2, 2)), mode="symmetric"), [A23], [(2,)]),
    "pad_wrap": (lambda m, x: m.pad(x, ((3, 4), (2, 5)), mode="wrap"), [A23], [(1,)]),
    "pad_reflect_odd": (lambda m, x: m.pad(x, ((3, 2), (4, 1)), mode="reflect", reflect_type="odd"),
                        [A23], [(0,)]),
    "atleast_3d": (lambda m, x, y: m.atleast_3d(x, y), [A3, A23], [(0, 1)]),
}


@pytest.mark.parametrize("name", sorted(DIFF_CASES))
def test_tnp_transforms(name):
    fn, args, in_axes = DIFF_CASES[name]
    full_check(lambda *a: fn(tnp, *a), lambda *a: fn(jnp, *a), args, in_axes=in_axes)


def test_roll_traced_shift():
    # a traced shift (jnp supports it): a dynamic slice of the doubled axis
    x = _x(3, 4)
    for shift, axis in [(5, 1), (-2, 0), (np.array([1, -3]), (0, 1)), (np.array([1, 2]), 1)]:
        closed = tg.make_jaxpr(lambda v, s: tnp.roll(v, s, axis))(x, shift)
        assert "dynamic_slice" in str(closed)
        oracle.assert_close(tg.eval_jaxpr(closed.jaxpr, closed.consts, x, shift)[0],
                            jnp.roll(x, shift, axis))
    w = _x(3, 4, seed=3)
    f = lambda m: lambda v, s: m.sum(m.roll(v, s, 1) * w)
    shifts = np.array([0, 1, 2, -7])
    oracle.assert_close(tg.vmap(lambda s: tnp.roll(x, s, 1))(shifts),
                        jax.vmap(lambda s: jnp.roll(x, s, 1))(shifts))
    oracle.assert_close(tg.vmap(tg.grad(f(tnp)), (None, 0))(x, shifts),
                        jax.vmap(jax.grad(f(jnp)), (None, 0))(x, shifts))
    oracle.check_lowering(lambda v, s: tnp.roll(v, s, 0), [x, 2])


def test_jit():
    x = _x(3, 4)
    f = lambda v, p: (tnp.pad(v, ((1, 2), (3, 1)), mode="reflect"),
                      S.pad_p.bind(v, p, padding_config=((-1, 2, 1), (0, -2, 2))),
                      tnp.roll(v, 2), tnp.repeat(v, np.array([1, 0, 2]), axis=0),
                      tnp.concatenate([v, v.T.reshape(3, 4)]), S.iota(np.int32, (2, 3), 1),
                      tnp.flip(v), tnp.split(v, [1, 3], axis=1), S.static_slice(v, (0, 1), (3, 4), (2, 2)))
    oracle.check_jit(f, [x, np.float64(0.5)])
    oracle.check_jit(lambda v, s: tnp.roll(v, s, 1), [x, 3])


# --------------------------------------------------------------------------
# dtypes and weak types


@pytest.mark.parametrize("dts", [(np.int32, np.float32), (np.int8, np.uint8), (np.bool_, np.int16),
                                 (np.float16, np.float32), (np.float32, np.complex64)])
def test_concatenate_stack_promotion(dts):
    xs = [np.ones((2, 2), dt) for dt in dts]
    for name in ("concatenate", "stack", "hstack", "vstack", "dstack", "column_stack"):
        oracle.assert_close(getattr(tnp, name)(xs), getattr(jnp, name)(xs), what=name)
    dt = np.complex128 if np.complex64 in dts else np.float64
    oracle.assert_close(tnp.concatenate(xs, dtype=dt), jnp.concatenate(xs, dtype=dt))
    oracle.assert_close(tnp.stack(xs, dtype=np.complex128), jnp.stack(xs, dtype=np.complex128))


def test_weak_types_propagate():
    w = tnp.asarray(2.0)      # weak f64 scalar, as jnp.asarray(2.0)
    jw = jnp.asarray(2.0)
    pairs = [
        (tnp.expand_dims(w, 0), jnp.expand_dims(jw, 0)),
        (tnp.atleast_2d(w), jnp.atleast_2d(jw)),
        (tnp.concatenate([tnp.atleast_1d(w), tnp.atleast_1d(w)]),
         jnp.concatenate([jnp.atleast_1d(jw), jnp.atleast_1d(jw)])),
        (tnp.concatenate([tnp.atleast_1d(w), np.ones(2, np.float32)]),
         jnp.concatenate([jnp.atleast_1d(jw), np.ones(2, np.float32)])),
        (tnp.stack([w, w]), jnp.stack([jw, jw])),
        (tnp.tile(w, 3), jnp.tile(jw, 3)),
        (tnp.pad(tnp.atleast_1d(w), 1), jnp.pad(jnp.atleast_1d(jw), 1)),
        (tnp.broadcast_to(w, (2,)), jnp.broadcast_to(jw, (2,))),
    ]
    for i, (a, b) in enumerate(pairs):
        oracle.assert_close(a, b, what=str(i))
        assert a.weak == b.weak_type, i
    # traced: abstract evals agree with the eager weak types
    jx = tg.make_jaxpr(lambda x: tnp.concatenate([tnp.atleast_1d(x), tnp.atleast_1d(x)]))(w)
    assert jx.out_avals[0].weak_type


def test_int_and_bool_arrays():
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    b = x % 3 == 0
    for fn in (lambda m, v: m.roll(v, 2, 1), lambda m, v: m.pad(v, 1, mode="wrap"),
               lambda m, v: m.pad(v, ((1, 0), (2, 1)), constant_values=True if v.dtype == bool else 9),
               lambda m, v: m.repeat(v, np.array([1, 2, 0]), axis=0), lambda m, v: m.rot90(v),
               lambda m, v: m.split(v, 2, axis=1), lambda m, v: m.tile(v, (1, 2))):
        for v in (x, b):
            oracle.assert_close(fn(tnp, v), fn(jnp, v))
    # integer inputs get float0 cotangents; grads of mixed functions still work
    out, vjp = tg.vjp(lambda f, i: tnp.concatenate([f, i.astype(np.float64)]), A3, np.arange(2))
    ct_f, ct_i = vjp(np.ones(5))
    oracle.assert_close(ct_f, np.ones(3))


# --------------------------------------------------------------------------
# methods


def test_methods():
    x = tnp.asarray(A234)
    j = jnp.asarray(A234)
    oracle.assert_close(x.reshape(4, 6), j.reshape(4, 6))
    oracle.assert_close(x.reshape((4, 6)), j.reshape((4, 6)))
    oracle.assert_close(x.reshape(-1), j.reshape(-1))
    oracle.assert_close(x.reshape(shape=(6, 4)), j.reshape(6, 4))
    oracle.assert_close(x.reshape((4, 6), order="F"), j.reshape((4, 6), order="F"))
    oracle.assert_close(x.ravel(), j.ravel())
    oracle.assert_close(x.flatten(), j.flatten())
    oracle.assert_close(x.transpose(), j.transpose())
    oracle.assert_close(x.transpose(1, 0, 2), j.transpose(1, 0, 2))
    oracle.assert_close(x.transpose((2, 0, 1)), j.transpose((2, 0, 1)))
    oracle.assert_close(x.swapaxes(0, 2), j.swapaxes(0, 2))
    oracle.assert_close(x.T, j.T)
    oracle.assert_close(x.mT, j.mT)
    oracle.assert_close(x.repeat(2, axis=1), j.repeat(2, axis=1))
    oracle.assert_close(tnp.ones((1, 3)).squeeze(), jnp.ones((1, 3)).squeeze())
    oracle.assert_close(tnp.ones((1, 3, 1)).squeeze(-1), jnp.ones((1, 3, 1)).squeeze(-1))
    oracle.assert_close(list(x), list(j))
    # the same methods on tracers
    f = lambda m: lambda v: [v.reshape(6, 4), v.T, v.mT, v.ravel(), v.flatten(), v.transpose(2, 1, 0),
                             v.swapaxes(1, 2), v.repeat(2), m.expand_dims(v, 0).squeeze(0), *list(v)]
    full_check(f(tnp), f(jnp), [A234], in_axes=[(0,), (3,)])
    with pytest.raises(TypeError, match="0-d"):
        iter(tnp.asarray(1.0))
    with pytest.raises(TypeError, match="0-d"):
        tg.make_jaxpr(lambda v: list(v))(1.0)
    with pytest.raises(ValueError):
        tnp.asarray(A3).mT


def test_queries():
    assert tnp.ndim(A234) == 3 and tnp.ndim(3.0) == 0 and tnp.ndim([[1, 2]]) == 2
    assert tnp.shape(tnp.asarray(A234)) == (2, 3, 4) and tnp.shape([1, 2]) == (2,)
    assert tnp.size(A234) == 24 and tnp.size(A234, -1) == 4 and tnp.size(np.ones((0, 3))) == 0
    assert tnp.broadcast_shapes((2, 1), (3,), ()) == (2, 3)
    assert tnp.broadcast_shapes(4, (1,)) == jnp.broadcast_shapes(4, (1,))
    out = tg.make_jaxpr(lambda v: tnp.zeros(tnp.shape(v)) + tnp.size(v) + tnp.ndim(v))(A23)
    assert out.out_avals[0].shape == (2, 3)


# --------------------------------------------------------------------------
# errors


def test_errors():
    x = tnp.asarray(A23)
    with pytest.raises(TypeError, match=r"\(2, 3\).*\(4,\)"):
        tnp.reshape(x, (4,))
    with pytest.raises(TypeError, match=r"\(2, 3\).*\(4, -1\)"):
        tnp.reshape(x, (4, -1))
    with pytest.raises(ValueError, match="one unknown"):
        tnp.reshape(x, (-1, -1))
    with pytest.raises(TypeError, match="reshape"):
        tg.make_jaxpr(lambda v: S.reshape_p.bind(v, new_sizes=(5,)))(x)
    with pytest.raises(ValueError, match=r"size not equal to one.*\(2, 3\)"):
        tnp.squeeze(x, 0)
    with pytest.raises(ValueError, match="concatenat"):
        tnp.concatenate([x, np.ones((3, 3))], axis=1)
    with pytest.raises(ValueError, match="Zero-dimensional|zero-dimensional"):
        tnp.concatenate([1.0, 2.0])
    with pytest.raises(TypeError, match=r"concatenate.*f64\[2,3\].*f32\[2,3\]"):
        S.concatenate_p.bind(x, np.ones((2, 3), np.float32), dimension=0)
    with pytest.raises(TypeError, match=r"concatenate.*shapes"):
        tg.make_jaxpr(lambda v: S.concatenate_p.bind(v, np.ones((3, 3)), dimension=1))(x)
    with pytest.raises(ValueError, match="same shape"):
        tnp.stack([x, np.ones(3)])
    with pytest.raises(ValueError, match="equal division"):
        tnp.split(x, 2, axis=1)
    with pytest.raises(TypeError, match=r"slice.*axis 1 \(size 3\)"):
        S.slice_p.bind(x, start_indices=(0, 1), limit_indices=(2, 4), strides=None)
    with pytest.raises(TypeError, match="strides"):
        S.slice_p.bind(x, start_indices=(0, 0), limit_indices=(2, 3), strides=(1, 0))
    with pytest.raises(TypeError, match="negative size"):
        S.pad_p.bind(x, 0.0, padding_config=((-2, -1, 0), (0, 0, 0)))
    with pytest.raises(TypeError, match="interior"):
        S.pad_p.bind(x, 0.0, padding_config=((0, 0, -1), (0, 0, 0)))
    with pytest.raises(TypeError, match="dtype"):
        S.pad_p.bind(x, np.float32(0), padding_config=((0, 0, 0), (0, 0, 0)))
    with pytest.raises(TypeError, match="rev"):
        S.rev_p.bind(x, dimensions=(2,))
    with pytest.raises(TypeError, match="iota"):
        S.iota(np.bool_, (3,), 0)
    with pytest.raises(ValueError, match="empty axis"):
        tnp.pad(np.ones((0, 2)), 1, mode="edge")
    with pytest.raises(ValueError, match="negative"):
        tnp.pad(x, -1)
    with pytest.raises(ValueError, match="mode"):
        tnp.pad(x, 1, mode="bogus")
    with pytest.raises(ValueError, match=r"broadcasting.*\(2, 3\).*\(3, 2\)"):
        tnp.broadcast_to(x, (3, 2))
    with pytest.raises(ValueError):
        tnp.broadcast_arrays(x, np.ones(4))
    with pytest.raises(ValueError, match="axes"):
        tnp.transpose(x, (0,))
    with pytest.raises(ValueError, match="repeated"):
        tnp.transpose(x, (0, 0))
    with pytest.raises(ValueError, match="out of bounds"):
        tnp.swapaxes(x, 0, 2)
    with pytest.raises(ValueError, match="out of bounds"):
        tnp.squeeze(tnp.asarray(1.0), 0)
    with pytest.raises(ValueError, match="repeat"):
        tnp.repeat(x, [1, 2], axis=1)
    with pytest.raises(ValueError, match="fliplr"):
        tnp.fliplr(A3)
    with pytest.raises(ValueError, match="1-D"):
        tnp.meshgrid(A23, A3)
    with pytest.raises(tg.ConcretizationError):
        tg.make_jaxpr(lambda v, r: tnp.repeat(v, r))(A3, 2)


# --------------------------------------------------------------------------
# hypothesis: shapes with 0-d and empty axes. Eager JAX compiles every op for
# every new shape (seconds per example), so here values are checked against
# NumPy (same semantics as jnp for float64) or a single lax op, and the
# transformations against exact identities of linear maps: jvp(f)(x, t) =
# (f(x), f(t)); <f(t), ct> = <t, vjp(ct)>; vmap(f) = f on each example.

SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
HYP = settings(max_examples=12)


def _arr(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def _leaves(x):
    return [np.asarray(v) for v in jax.tree_util.tree_leaves(x)]


def linear_check(f, args, ref, in_axes):
    """f is linear in all its (float64) args; ref = expected f(*args)."""
    rng = np.random.default_rng(7)
    out = f(*args)
    oracle.assert_close(out, ref, what="eval")
    closed = tg.make_jaxpr(f)(*args)
    oracle.assert_close(tg.eval_jaxpr(closed.jaxpr, closed.consts, *args), _leaves(out),
                        what="eval_jaxpr")
    ts = [rng.standard_normal(np.shape(a)) for a in args]
    p, t = tg.jvp(f, tuple(args), tuple(ts))
    oracle.assert_close(p, out, what="jvp primal")
    oracle.assert_close(t, f(*ts), what="jvp tangent")
    _, vjp = tg.vjp(f, *args)
    cts = jax.tree_util.tree_map(lambda o: rng.standard_normal(np.shape(o)), out)
    in_cts = vjp(cts)
    lhs = sum(np.vdot(a, b) for a, b in zip(_leaves(f(*ts)), _leaves(cts)))
    rhs = sum(np.vdot(a, b) for a, b in zip(ts, _leaves(in_cts)))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-10, err_msg="vjp dot test")
    for spec in in_axes:
        bargs = _batched(args, spec)
        outs = _leaves(tg.vmap(f, tuple(spec))(*bargs))
        for k in range(2):
            ex = f(*[b if d is None else np.take(b, k, axis=d) for b, d in zip(bargs, spec)])
            oracle.assert_close([o[k] for o in outs], _leaves(ex), what=f"vmap{spec}[{k}]")
    oracle.check_lowering(f, args)


@HYP
@given(shape=SHAPES, data=st.data())
def test_hyp_slice_pad(shape, data):
    nd = len(shape)
    start, limit, strides, cfg = [], [], [], []
    for n in shape:
        a = data.draw(st.integers(0, n))
        b = data.draw(st.integers(a, n))
        start.append(a)
        limit.append(b)
        strides.append(data.draw(st.integers(1, 3)))
        it = data.draw(st.integers(0, 2))
        inner = n + max(n - 1, 0) * it
        lo = data.draw(st.integers(-inner, 3))
        hi = data.draw(st.integers(-(inner + lo), 3))   # keeps the size >= 0
        cfg.append((lo, hi, it))
    start, limit, strides, cfg = tuple(start), tuple(limit), tuple(strides), tuple(cfg)
    x = _arr(shape, data.draw(st.integers(0, 99)))
    ax = data.draw(st.integers(0, nd))
    ref = x[tuple(slice(a, b, c) for a, b, c in zip(start, limit, strides))]
    linear_check(lambda v: S.static_slice(v, start, limit, strides), [x], ref, [(ax,)])
    pv = np.asarray(-1.25)
    ref = jax.jit(lambda v, p: lax.pad(v, p, cfg))(x, pv)
    linear_check(lambda v, p: S.pad_p.bind(v, p, padding_config=cfg), [x, pv], ref,
                 [(ax, data.draw(st.sampled_from([None, 0])))])


@HYP
@given(shape=SHAPES, data=st.data())
def test_hyp_reshape_transpose(shape, data):
    nd = len(shape)
    perm = tuple(data.draw(st.permutations(range(nd))))
    x = _arr(shape, 1)
    new = shape[::-1]
    ex_axis = data.draw(st.integers(-nd - 1, nd))

    def f(m):
        return lambda v: (m.reshape(m.transpose(v, perm), new), m.ravel(v),
                          m.expand_dims(v, ex_axis), m.squeeze(m.expand_dims(v, 0)),
                          m.moveaxis(v, list(range(nd)), perm) if nd else v)

    linear_check(f(tnp), [x], f(np)(x), [(data.draw(st.integers(0, nd)),)])


@HYP
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=3), data=st.data())
def test_hyp_concatenate_stack(shape, data):
    nd = len(shape)
    axis = data.draw(st.integers(-nd, nd - 1))
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    args = []
    for k, s in enumerate(sizes):
        sh = list(shape)
        sh[axis] = s
        args.append(_arr(tuple(sh), k))
    in_axes = tuple(data.draw(st.sampled_from([None, 0, nd])) for _ in args)
    if all(d is None for d in in_axes):
        in_axes = (0,) + in_axes[1:]

    def f(m):
        return lambda *xs: (m.concatenate(xs, axis=axis), m.stack([xs[0], xs[0]], axis=axis))

    linear_check(f(tnp), args, f(np)(*args), [in_axes])


@HYP
@given(shape=SHAPES, data=st.data())
def test_hyp_flip_roll_tile_repeat(shape, data):
    nd = len(shape)
    axes = data.draw(st.lists(st.integers(0, nd - 1), unique=True, max_size=nd)) if nd else []
    shift = data.draw(st.integers(-6, 6))
    reps = tuple(data.draw(st.lists(st.integers(0, 2), max_size=3)))
    r = data.draw(st.integers(0, 3))
    x = _arr(shape, 2)
    axis = data.draw(st.integers(0, nd - 1)) if nd else None
    rlist = data.draw(st.lists(st.integers(0, 2), min_size=shape[axis], max_size=shape[axis])) \
        if nd else [r]

    def f(m):
        return lambda v: (m.flip(v, tuple(axes)), m.roll(v, shift), m.roll(v, shift, axis=axis)
                          if nd else v, m.tile(v, reps), m.repeat(v, r, axis=axis),
                          m.repeat(v, np.array(rlist, dtype=int), axis=axis))

    linear_check(f(tnp), [x], f(np)(x), [(data.draw(st.integers(0, nd)),)])


@HYP
@given(shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=4), data=st.data())
def test_hyp_pad_modes(shape, data):
    mode = data.draw(st.sampled_from(["constant", "edge", "reflect", "symmetric", "wrap"]))
    widths = tuple((data.draw(st.integers(0, 5)), data.draw(st.integers(0, 5))) for _ in shape) \
        or data.draw(st.integers(0, 3))  # a 0-d array takes any int (and ignores it)
    # numpy refuses to extend empty axes except with 'constant'
    if mode != "constant" and shape:
        widths = tuple((0, 0) if n == 0 else w for n, w in zip(shape, widths))
    kw = {}
    if mode in ("reflect", "symmetric"):
        kw["reflect_type"] = data.draw(st.sampled_from(["even", "odd"]))
    x = _arr(shape, 3)
    f = lambda m: lambda v: m.pad(v, widths, mode=mode, **kw)
    linear_check(f(tnp), [x], f(np)(x), [(data.draw(st.integers(0, len(shape))),)])
    if mode == "constant":  # affine in the value: check eval only
        cv = data.draw(st.sampled_from([2.5, ((1.0, 2.0),) * len(shape) or 1.0]))
        oracle.assert_close(tnp.pad(x, widths, constant_values=cv),
                            np.pad(x, widths, constant_values=cv))


@HYP
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5), data=st.data())
def test_hyp_split(shape, data):
    nd = len(shape)
    axis = data.draw(st.integers(-nd, nd - 1))
    n = shape[axis]
    secs = data.draw(st.integers(1, 4))
    # numpy semantics: any split points (decreasing/out of range give empties)
    idx = data.draw(st.lists(st.integers(-n - 1, n + 1), max_size=3))
    x = _arr(shape, 4)

    def f(m):
        return lambda v: (m.array_split(v, secs, axis=axis), m.split(v, idx, axis=axis))

    linear_check(f(tnp), [x], f(np)(x), [(data.draw(st.integers(0, nd)),)])
