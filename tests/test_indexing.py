"""Indexing: x[idx], x.at[idx].op(v), take/take_along_axis/put_along_axis,
nonzero & co., and the primitives behind them (gather, the scatter family,
dynamic_slice, dynamic_update_slice) against jax.numpy / jax.lax (x64)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st
from jax import lax

import tracegrad as tg
import tracegrad.numpy as tnp
from tracegrad import core
from tracegrad.primitives import indexing as I
from oracle import assert_close, check_jvp, check_lowering, check_vjp, check_vmap

A = np.array
RNG = np.random.default_rng(0)


def rand(*shape, dtype=np.float64):
    return RNG.standard_normal(shape).astype(dtype)


def _jx(a):
    return jnp.asarray(a) if isinstance(a, np.ndarray) else a


def _tg(a):
    return tnp.asarray(a) if isinstance(a, np.ndarray) else a


# --------------------------------------------------------------------------
# x[idx]: fixed expressions covering every kind of index

X = np.arange(60.0).reshape(3, 4, 5)
GETITEM_CASES = [
    0, -1, 5, -7, (1, 2), (slice(None), 1), slice(1, None, 2), slice(None, None, -1),
    slice(None, None, -2), (slice(None), slice(4, 0, -3)), (Ellipsis, 1), (None, 0),
    (0, None, Ellipsis, None), (), Ellipsis, None, np.int64(2), (slice(3, 1), 0),
    (np.int64(1), slice(-3, None)),
    A([0, 2]), A([[0, 1], [2, 2]]), (A([0, 2]), A([1, 3])), (slice(None), A([0, 3])),
    (A([0, 2]), slice(None), A([1, 3])), (A([0, 2]), 1), (1, slice(None), A([0, 4])),
    (slice(None, None, 2), A([1, 3])), (A([0, 5, -1]),), (A([[1]]), slice(None), A([0, 1, 2])),
    (slice(None), None, A([0, 1])), (A([0, 1]), slice(None, None, -1), A([2, 3])),
    (Ellipsis, A([1, 0])), (A([0, -2], np.int8), A([255, 3], np.uint8)), (A([], np.int64),),
    (A(1), A(2)), (A(-1), slice(1, 3)), (slice(None, None, -3), A(2)), (A(7), A(-9)),
    True, False, (0, True), (Ellipsis, False), (slice(None), 0, slice(None), True),
    X[..., 0] > 20, (slice(None), X[0, :, 0] > 7), (X[:, :, 1] > 30,), A([True, False, True]),
]


@pytest.mark.parametrize("idx", GETITEM_CASES, ids=[repr(c)[:40] for c in GETITEM_CASES])
def test_getitem_matches_jax(idx):
    ref = jnp.asarray(X)[idx]
    out = tnp.asarray(X)[idx]
    assert_close(out, ref)
    closed = tg.make_jaxpr(lambda a: a[idx])(X)
    assert_close(tg.eval_jaxpr(closed.jaxpr, closed.consts, X)[0], ref, what="eval_jaxpr")


@pytest.mark.parametrize("idx", [(1, slice(None, None, -2)), (A([0, 2]), slice(1, None)),
                                 (A([[0, 1]]), None, A([4, -1])), (slice(None), A([3, 0])),
                                 A([-1, 9]), (Ellipsis, A(3))])
def test_getitem_lowering(idx):
    check_lowering(lambda a: tnp.asarray(a)[idx], (X,))


def test_getitem_primitives_chosen():
    """Static indices lower to slice/squeeze, scalar traced ints to
    dynamic_slice, arrays to gather (as JAX)."""
    s = str(tg.make_jaxpr(lambda a: a[::2, 1])(X))
    assert "slice[" in s and "squeeze" in s and "gather" not in s
    s = str(tg.make_jaxpr(lambda a, i: a[i, 1:3])(X, 1))
    assert "dynamic_slice" in s and "gather" not in s
    s = str(tg.make_jaxpr(lambda a: a[A([0, 1]), 1:])(X))
    assert "gather" in s
    s = str(tg.make_jaxpr(lambda a: a[::-1, ..., None])(X))
    assert "rev" in s and "gather" not in s


def test_getitem_dtypes_and_weak_type():
    for dt in [np.int32, np.uint8, np.bool_, np.float32, np.complex64]:
        x = (np.arange(12) % 3).astype(dt).reshape(3, 4)
        for idx in [1, (A([0, 2]), 1), (slice(None, None, 2), A([1, 3]))]:
            assert_close(tnp.asarray(x)[idx], jnp.asarray(x)[idx])
    w = tnp.asarray(2.0) * tnp.ones(3)  # strong
    assert not w[0].weak
    weak = tnp.asarray(1.5)  # a Python scalar: weakly typed
    assert weak.weak and weak[()].weak and weak[None].weak
    assert tnp.asarray(np.ones(3))[A([0, 0])].dtype == np.float64


def test_traced_scalar_index_jit_and_grad():
    f = lambda x, i: x[i, 2] * 2.0
    g = lambda x, i: x[i, 2] * 2.0
    for i in [0, 2, -1, 7, -9]:
        assert_close(f(tnp.asarray(X), i), g(jnp.asarray(X), i))
        closed = tg.make_jaxpr(f)(X, np.int32(i))
        assert_close(tg.eval_jaxpr(closed.jaxpr, closed.consts, X, np.int32(i))[0],
                     g(jnp.asarray(X), i))
    gx = tg.grad(lambda x, i: tnp.sum(x[i] ** 2))(X, np.int64(1))
    assert_close(gx, jax.grad(lambda x, i: jnp.sum(x[i] ** 2))(X, 1))
    check_lowering(lambda x, i: tnp.asarray(x)[i, 1:3], (X, np.int32(-1)))


def test_jit():
    """Indexing under tracegrad.jit (lowered through StableHLO) == eager."""
    from oracle import check_jit

    def f(x, i, j):
        x = tnp.asarray(x)
        return (x[i, 1:3], x[A([0, 2]), :, j], x[::-1, None, 2], x.at[i].add(1.0),
                x.at[A([0, 0]), j].max(7.0), x.at[1:, A([3, 3])].set(-1.0),
                tnp.take(x, A([1, 9]), axis=2), tnp.take_along_axis(x, A([[[1, 0]]]), axis=2),
                tnp.nonzero(x[0] > 30, size=3))
    check_jit(f, (X, np.int32(-1), np.int64(3)))
    g = lambda x, i: tnp.sum(x[i] ** 2) + tnp.sum(tnp.asarray(x).at[A([0, 0])].multiply(2.0))
    h = lambda x, i: jnp.sum(x[i] ** 2) + jnp.sum(x.at[A([0, 0])].multiply(2.0))
    assert_close(tg.jit(tg.grad(g))(X, 1), jax.grad(h)(X, 1))
    assert_close(tg.jit(tg.vmap(lambda x, i: x[i]))(X, A([0, 3, -1])),
                 jax.vmap(lambda x, i: x[i])(X, A([0, 3, -1])))


# ---- hypothesis: random shapes and random index expressions

@st.composite
def index_problems(draw):
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim)))
    idx, consumed = [], 0
    used_ellipsis = False
    adv_shape = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    n_items = draw(st.integers(0, ndim + 2))
    for _ in range(n_items):
        kinds = ["none"]
        if consumed < ndim:
            kinds += ["int", "slice", "array"]
        if not used_ellipsis:
            kinds.append("ellipsis")
        kind = draw(st.sampled_from(kinds))
        if kind == "none":
            idx.append(None)
            continue
        if kind == "ellipsis":
            idx.append(Ellipsis)
            used_ellipsis = True
            continue
        n = shape[consumed] if not used_ellipsis else None
        consumed += 1
        if kind == "int":
            if n == 0:
                idx.append(slice(None))
            else:
                idx.append(draw(st.integers(-6, 6)))
        elif kind == "slice":
            part = st.one_of(st.none(), st.integers(-6, 6))
            step = draw(st.one_of(st.none(), st.sampled_from([1, 2, 3, -1, -2, -3])))
            idx.append(slice(draw(part), draw(part), step))
        else:
            # a broadcastable integer array (possibly out of bounds)
            shp = tuple(s if draw(st.booleans()) else 1 for s in adv_shape)
            vals = draw(st.lists(st.integers(-6, 6), min_size=int(np.prod(shp)),
                                 max_size=int(np.prod(shp))))
            idx.append(A(vals, dtype=np.int64).reshape(shp))
    # NumPy/JAX need every integer index in range for an empty axis
    return shape, tuple(idx)


def _indexable(shape, idx):
    """Resolve which axis each entry hits to reject ints/arrays on empty axes."""
    n_consumed = sum(1 for i in idx if i is not None and i is not Ellipsis)
    ax = 0
    for i in idx:
        if i is None:
            continue
        if i is Ellipsis:
            ax += len(shape) - n_consumed
            continue
        if not isinstance(i, slice) and shape[ax] == 0:
            return False
        ax += 1
    return True


@given(index_problems())
def test_getitem_hypothesis(problem):
    shape, idx = problem
    if not _indexable(shape, idx):
        return
    x = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) + 1
    ref = jnp.asarray(x)[idx]
    out = tnp.asarray(x)[idx]
    assert_close(out, ref, what=repr(idx))
    closed = tg.make_jaxpr(lambda a: a[idx])(x)
    assert_close(tg.eval_jaxpr(closed.jaxpr, closed.consts, x)[0], ref, what="jaxpr " + repr(idx))
    # and the same expression as an update
    ref_u = jnp.asarray(x).at[idx].add(1.0)
    assert_close(tnp.asarray(x).at[idx].add(1.0), ref_u, what="at.add " + repr(idx))


@given(index_problems(), st.sampled_from([np.int64, np.int32, np.int8, np.uint8]))
def test_getitem_cached_plans_match_general_path(problem, dt):
    """x[idx] takes cached plans for static and concrete-integer-array
    indices; they must give what the general path (_take) gives: values,
    dtype, weak type, and the same traced program."""
    from tracegrad.numpy import indexing as tix
    shape, idx = problem
    if not _indexable(shape, idx):
        return
    if dt == np.uint8:  # (non-negative values only)
        idx = tuple(np.abs(i) if isinstance(i, np.ndarray) else i for i in idx)
    idx = tuple(i.astype(dt) if isinstance(i, np.ndarray) else i for i in idx)
    x0 = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    for x in (tnp.asarray(x0), tnp.asarray(2) * tnp.ones(shape, dtype=np.int32),
              tnp.broadcast_to(tnp.asarray(1.5), shape)):  # (weak-typed)
        fast, slow = x[idx], tix._take(x, idx)
        np.testing.assert_array_equal(np.asarray(fast), np.asarray(slow))
        assert core.get_aval(fast) == core.get_aval(slow), (idx, core.get_aval(fast))
        assert str(tg.make_jaxpr(lambda a: a[idx])(x)) == \
            str(tg.make_jaxpr(lambda a: tix._take(a, idx))(x))
    assert_close(tnp.asarray(x0)[idx], jnp.asarray(x0)[idx], what=repr(idx))


# --------------------------------------------------------------------------
# x.at[idx]

AT_IDX = {
    "dup": A([0, 2, 0, 3, 2]),
    "unique": A([3, 1, 0]),
    "oob": A([0, 7, -9, 2]),
    "slice": slice(1, None, 2),
    "mixed": (A([1, 1, 2]), slice(None, 3)),
    "scalar": -1,
}


def _at(x, idx, op, y, **kw):
    ref = x.at[idx]
    return ref.get(**kw) if op == "get" else getattr(ref, op)(y, **kw)


def _upd_shape(idx):
    return jnp.zeros((4, 5))[idx].shape


@pytest.mark.parametrize("op", ["set", "add", "subtract", "multiply", "mul", "divide",
                                "power", "min", "max", "get"])
@pytest.mark.parametrize("which", list(AT_IDX))
def test_at_values(op, which):
    idx = AT_IDX[which]
    if op == "set" and which == "dup":
        return  # which repeated update wins is up to the backend: see test_at_set_duplicates
    x = np.abs(rand(4, 5)) + 0.5
    if which in ("dup", "scalar", "slice"):
        # broadcast scalar update: a weakly typed scalar keeps x's dtype
        x, y = x.astype(np.float32), 2.0
    else:
        y = rand(*_upd_shape(idx))
    assert_close(_at(tnp.asarray(x), idx, op, y), _at(jnp.asarray(x), idx, op, _jx(y)))


def test_at_int_and_bool_dtypes():
    xi = np.arange(10, dtype=np.int32)
    for op in ["set", "add", "multiply", "min", "max", "divide", "power"]:
        for y in [3, 2.7, A([1, 2], np.int64)]:
            assert_close(_at(tnp.asarray(xi), A([1, 4]), op, y),
                         _at(jnp.asarray(xi), A([1, 4]), op, _jx(y)), what=op)
    xu = np.arange(5, dtype=np.uint32)
    assert_close(tnp.asarray(xu).at[A([0, 3])].subtract(2), jnp.asarray(xu).at[A([0, 3])].subtract(2))
    xb = np.zeros(4, bool)
    with pytest.raises(TypeError, match="bool"):
        tnp.asarray(xb).at[A([0, 0, 2])].add(True)
    assert_close(tnp.asarray(xb).at[A([0, 0, 2])].max(True), jnp.asarray(xb).at[A([0, 0, 2])].max(True))
    assert_close(tnp.asarray(xb).at[1].set(True), jnp.asarray(xb).at[1].set(True))


@pytest.mark.parametrize("mode", [None, "clip", "drop", "fill", "promise_in_bounds"])
def test_at_modes_out_of_bounds(mode):
    x = rand(6)
    idx = A([0, 7, -9, 5, -1])
    y = rand(5)
    for op in ["set", "add", "multiply", "min", "max"]:
        if op == "set" and mode == "clip":
            idx_ = A([0, 7, 3])  # clip maps 7 -> 5: keep the targets distinct
            y_ = y[:3]
        else:
            idx_, y_ = idx, y
        assert_close(_at(tnp.asarray(x), idx_, op, y_, mode=mode),
                     _at(jnp.asarray(x), idx_, op, jnp.asarray(y_), mode=mode), what=op)
    kw = dict(mode=mode) if mode != "drop" else dict(mode="fill")
    assert_close(tnp.asarray(x).at[idx].get(**kw), jnp.asarray(x).at[idx].get(**kw))
    assert_close(tnp.asarray(x).at[7].get(**kw), jnp.asarray(x).at[7].get(**kw))
    assert_close(tnp.asarray(x).at[A([1, 9])].get(mode="fill", fill_value=-3.0),
                 jnp.asarray(x).at[A([1, 9])].get(mode="fill", fill_value=-3.0))
    assert_close(tnp.asarray(x).at[-1].set(9.0, wrap_negative_indices=False, mode="drop"), x)


def test_at_add_duplicates_accumulate():
    x = np.zeros(4)
    out = tnp.asarray(x).at[A([1, 1, 1, 3])].add(A([1.0, 2.0, 3.0, 4.0]))
    assert_close(out, np.array([0.0, 6.0, 0.0, 4.0]))
    out = tnp.asarray(np.ones(3)).at[A([0, 0, 2])].multiply(A([2.0, 3.0, 5.0]))
    assert_close(out, np.array([6.0, 1.0, 5.0]))


def test_at_set_duplicates_consistent_jvp():
    """With repeated targets one update wins; value and tangent agree on it."""
    x = rand(4)
    idx = A([1, 1, 2, 1])
    y = rand(4)
    f = lambda x, y: tnp.asarray(x).at[idx].set(y)
    out, tan = tg.jvp(f, (x, y), (np.zeros(4), np.arange(4.0)))
    out = np.asarray(out)
    winner = [j for j in range(4) if idx[j] == 1 and y[j] == out[1]]
    assert len(winner) == 1
    assert_close(tan, np.array([0.0, winner[0], 2.0, 0.0]))
    assert_close(out[[0, 3]], x[[0, 3]])
    out2, f_vjp = tg.vjp(f, x, y)
    ct_x, ct_y = f_vjp(np.ones(4))
    assert_close(ct_x, np.array([1.0, 0.0, 0.0, 1.0]))
    assert_close(ct_y, np.eye(4)[winner[0]] + np.eye(4)[2])


def _at_fn(op, idx, unique):
    kw = dict(unique_indices=True) if unique else {}

    def tf(x, y):
        return _at(tnp.asarray(x), idx, op, y if op != "get" else None, **kw)

    def jf(x, y):
        return _at(jnp.asarray(x), idx, op, y if op != "get" else None, **kw)
    return tf, jf


AT_DERIV_CASES = [("set", "unique"), ("add", "dup"), ("add", "mixed"), ("subtract", "slice"),
                  ("multiply", "unique"), ("divide", "unique"), ("power", "slice"), ("min", "dup"),
                  ("max", "mixed"), ("max", "slice"), ("get", "mixed"), ("get", "dup")]


@pytest.mark.parametrize("op,which", AT_DERIV_CASES)
def test_at_derivatives(op, which):
    """(Repeated targets for set/multiply/divide/power have no JAX reference:
    see test_at_set_duplicates_consistent_jvp and the sequential reference.)"""
    idx = AT_IDX[which]
    unique = which == "unique"
    tf, jf = _at_fn(op, idx, unique)
    x = np.abs(rand(4, 5)) + 0.5
    y = rand(*_upd_shape(idx))
    if op in ("min", "max"):  # ties between operand and updates, as JAX averages them
        y = np.asarray(jnp.asarray(x)[idx]) if which != "dup" else y
        y = y.copy()
        y.flat[::2] = rand(y.size)[::2]
    check_jvp(tf, jf, (x, y))
    check_vjp(tf, jf, (x, y))


def _seq_multiply(x, idx, y):
    """Reference for repeated targets: one unique-index update at a time."""
    for j in range(len(idx)):
        x = x.at[idx[j]].multiply(y[j], unique_indices=True)
    return x


def test_at_multiply_divide_power_repeated_derivatives():
    idx = A([0, 2, 0, 3, 0])
    x = np.abs(rand(5)) + 0.5
    for y in [rand(5), A([2.0, 0.0, 3.0, 1.5, -1.0]), A([0.0, 1.0, 0.0, 2.0, 4.0])]:
        tf = lambda x, y: tnp.asarray(x).at[idx].multiply(y)
        jf = lambda x, y: _seq_multiply(x, idx, y)
        check_jvp(tf, jf, (x, y))
        check_vjp(tf, jf, (x, y))
        ones = jnp.ones(5)
        check_vjp(lambda x, y: tnp.asarray(x).at[idx].divide(y + 3.0),
                  lambda x, y: x / _seq_multiply(ones, idx, y + 3.0), (x, y))
        check_jvp(lambda x, y: tnp.asarray(x).at[idx].power(y),
                  lambda x, y: x ** _seq_multiply(ones, idx, y), (x, y))


def test_at_min_max_ties_share_gradient():
    x = A([1.0, 5.0, 2.0])
    y = A([5.0, 5.0, 0.5, 3.0])
    idx = A([1, 1, 0, 2])
    for op in ["max", "min"]:
        tf = lambda x, y: getattr(tnp.asarray(x).at[idx], op)(y)
        jf = lambda x, y: getattr(jnp.asarray(x).at[idx], op)(y)
        check_jvp(tf, jf, (x, y))
        check_vjp(tf, jf, (x, y))


def test_getitem_derivatives():
    x = rand(3, 4, 5)
    for idx in [(slice(None), A([0, 3, 3])), (A([[0, 1]]), slice(None, None, -2), A([4, -1])),
                (slice(1, None), 0, slice(None, None, -2))]:
        check_jvp(lambda a: tnp.asarray(a)[idx], lambda a: jnp.asarray(a)[idx], (x,))
        check_vjp(lambda a: tnp.asarray(a)[idx], lambda a: jnp.asarray(a)[idx], (x,))
    # second order: the transpose of gather (a scatter-add) is differentiable too
    f = lambda a: tnp.sum(tnp.asarray(a)[A([0, 0, 2])] ** 3)
    g = lambda a: jnp.sum(jnp.asarray(a)[A([0, 0, 2])] ** 3)
    assert_close(tg.hessian(f)(x[:, 0, 0]), jax.hessian(g)(x[:, 0, 0]))


# --------------------------------------------------------------------------
# vmap: batched operand, batched indices, both, unmapped


@pytest.mark.parametrize("in_axes", [(0, None), (None, 0), (0, 0), (1, 0), (2, 1), (None, 1)])
def test_vmap_getitem(in_axes):
    x = rand(2, 3, 4) if in_axes[0] is not None else rand(3, 4)
    if in_axes[0] == 1:
        x = rand(3, 2, 4)
    if in_axes[0] == 2:
        x = rand(3, 4, 2)
    i = A([[0, 2, 1], [2, 2, 0]]) if in_axes[1] is not None else A([2, 0])
    if in_axes[1] == 1:
        i = i.T.copy()
    tf = lambda x, i: tnp.asarray(x)[i, 1:]
    jf = lambda x, i: x[i, 1:]
    check_vmap(tf, jf, (x, i), in_axes=in_axes)
    # traced scalar indices (dynamic_slice) batched
    s = A([0, 2]) if in_axes[1] is not None else np.int64(1)
    check_vmap(lambda x, s: tnp.asarray(x)[s], lambda x, s: x[s], (x, s),
               in_axes=(in_axes[0], 0 if in_axes[1] is not None else None))


@pytest.mark.parametrize("op", ["set", "add", "multiply", "min", "max"])
@pytest.mark.parametrize("in_axes", [(0, None, None), (None, 0, None), (None, None, 0),
                                     (0, 0, 0), (1, None, 0), (None, 0, 1)])
def test_vmap_scatter(op, in_axes):
    bx, bi, by = in_axes
    x = rand(4, 5)
    x = np.stack([x, x + 1.0], bx) if bx is not None else x
    i = A([[3, 1], [0, 3]]) if bi is not None else A([3, 1])
    y = rand(2, 5)
    y = np.stack([y, y * 2], by) if by is not None else y

    def f(xp):
        return lambda x, i, y: getattr(xp.asarray(x).at[i], op)(y)
    check_vmap(f(tnp), f(jnp), (x, i, y), in_axes=in_axes)


def test_vmap_of_grad_and_grad_of_vmap():
    x = rand(3, 4)
    i = A([[0, 2], [1, 1], [3, 0]])
    tf = lambda x, i: tnp.sum(tnp.asarray(x)[i] ** 2)
    jf = lambda x, i: jnp.sum(x[i] ** 2)
    out = tg.vmap(tg.grad(tf), (0, 0))(x, i)
    assert_close(out, jax.vmap(jax.grad(jf), (0, 0))(x, i))
    out = tg.grad(lambda x: tnp.sum(tg.vmap(tf, (0, 0))(x, i)))(x)
    assert_close(out, jax.grad(lambda x: jnp.sum(jax.vmap(jf, (0, 0))(x, i)))(x))
    tf2 = lambda x, i, y: tnp.sum(tnp.asarray(x).at[i].set(y) ** 2)
    jf2 = lambda x, i, y: jnp.sum(x.at[i].set(y) ** 2)
    y = rand(3, 2)
    out = tg.vmap(tg.grad(tf2, argnums=(0, 2)), (0, 0, 0))(x, A([[0, 2], [1, 3], [3, 0]]), y)
    ref = jax.vmap(jax.grad(jf2, argnums=(0, 2)), (0, 0, 0))(x, A([[0, 2], [1, 3], [3, 0]]), y)
    assert_close(out, ref)


# --------------------------------------------------------------------------
# The primitives directly (lax level)

GDN = I.GatherDimensionNumbers
SDN = I.ScatterDimensionNumbers


def _lax_gdn(dn):
    return lax.GatherDimensionNumbers(*dn)


def _lax_sdn(dn):
    return lax.ScatterDimensionNumbers(*dn)


GATHER_CASES = [
    # operand shape, indices, dnums, slice sizes
    ((5, 4), A([[1], [4], [9], [-2]]), GDN((1,), (0,), (0,)), (1, 4)),
    ((5, 4), A([[1, 1], [3, 2]]), GDN((1, 2), (), (0, 1)), (2, 2)),
    ((5, 4), A([[[0, 1]], [[4, 3]]]), GDN((), (0, 1), (1, 0)), (1, 1)),
    ((3, 5), A([[1], [0], [4]]), GDN((), (1,), (1,), (0,), (0,)), (1, 1)),
    ((2, 3, 4), A([[[0], [2]], [[1], [1]], [[4], [-1]]]), GDN((2,), (1,), (1,), (0,), (1,)),
     (1, 1, 4)),
    ((), np.zeros((3, 0), np.int32), GDN((), (), ()), ()),
]


MODES = ["clip", "fill", "promise_in_bounds"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", range(len(GATHER_CASES)))
def test_gather_primitive(case, mode):
    shape, idx, dn, sizes = GATHER_CASES[case]
    x = rand(*shape)
    tf = lambda x: I.gather(x, idx, dn, sizes, mode=mode)
    jf = lambda x: lax.gather(x, idx, _lax_gdn(dn), sizes, mode=mode)
    assert_close(tf(x), jf(x))
    check_lowering(tf, (x,))
    if mode != MODES[case % 3]:
        return  # (derivatives and vmap: one mode per case, to keep this file fast)
    check_jvp(tf, jf, (x,))
    if shape:
        check_vjp(tf, jf, (x,))
    else:  # (XLA fails to compile JAX's transpose for a scalar operand)
        assert_close(tg.grad(lambda x: tnp.sum(tf(x)))(x), np.float64(idx.shape[0]))
    # batched operand, batched indices, both
    bx = np.stack([x, x * 2 + 1])
    bi = np.stack([idx, idx[::-1] if idx.ndim else idx])
    check_vmap(lambda x, i: I.gather(x, i, dn, sizes, mode=mode),
               lambda x, i: lax.gather(x, i, _lax_gdn(dn), sizes, mode=mode),
               (bx, idx), in_axes=(0, None))
    check_vmap(lambda x, i: I.gather(x, i, dn, sizes, mode=mode),
               lambda x, i: lax.gather(x, i, _lax_gdn(dn), sizes, mode=mode),
               (x, bi), in_axes=(None, 0))
    check_vmap(lambda x, i: I.gather(x, i, dn, sizes, mode=mode),
               lambda x, i: lax.gather(x, i, _lax_gdn(dn), sizes, mode=mode),
               (bx, bi), in_axes=(0, 0))
    # the batched forms (batching dims) lower too
    check_lowering(tg.vmap(lambda x, i: I.gather(x, i, dn, sizes, mode=mode)), (bx, bi))


SCATTER_CASES = [
    # operand shape, indices, updates shape, dnums
    ((5, 4), A([[1], [4], [1], [-2], [7]]), (5, 4), SDN((1,), (0,), (0,))),
    ((5, 4), A([[1, 1], [3, 2], [1, 1]]), (3, 2, 2), SDN((1, 2), (), (0, 1))),
    ((5, 4), A([[0, 1], [4, 3], [0, 1]]), (3,), SDN((), (0, 1), (1, 0))),
    ((3, 5), A([[1], [0], [4]]), (3,), SDN((), (1,), (1,), (0,), (0,))),
    ((), np.zeros((3, 0), np.int32), (3,), SDN((), (), ())),
]
SCATTERS = [("scatter_add", lax.scatter_add), ("scatter_mul", lax.scatter_mul),
            ("scatter_min", lax.scatter_min), ("scatter_max", lax.scatter_max),
            ("scatter", lax.scatter)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", range(len(SCATTER_CASES)))
def test_scatter_primitives(case, mode):
    shape, idx, ushape, dn = SCATTER_CASES[case]
    x = rand(*shape)
    u = rand(*ushape)
    win = I._scatter_window_sizes(len(shape), dn, ushape)
    upper = A([shape[d] - win[d] for d in dn.scatter_dims_to_operand_dims], np.int64)
    jidx_clipped = np.clip(idx, 0, upper)
    # JAX's min/max jvp mixes clipped and dropped indices in clip mode: pre-clip
    jidx = jidx_clipped if mode == "clip" else idx
    for name, jop in SCATTERS:
        op = getattr(I, name)
        unique = case == 3  # (the others have repeated targets)
        if name == "scatter" and not unique:
            continue  # repeated targets: the winner is backend-defined
        tf = lambda x, u: op(x, idx, u, dn, mode=mode, unique_indices=unique)
        jf = lambda x, u: jop(x, jidx, u, _lax_sdn(dn), mode=mode, unique_indices=unique)
        check_lowering(tf, (x, u))
        if not shape:  # XLA cannot compile JAX's scatter into a scalar: NumPy reference
            ref = {"scatter_add": x + u.sum(), "scatter_mul": x * u.prod(),
                   "scatter_min": min(x, u.min()), "scatter_max": max(x, u.max())}[name]
            assert_close(tf(x, u), np.float64(ref))
            assert_close(tg.grad(lambda x, u: tf(x, u), (0, 1))(x, u),
                         jax.grad(lambda x, u: {"scatter_add": x + u.sum(),
                                                "scatter_mul": x * u.prod(),
                                                "scatter_min": jnp.minimum(x, u.min()),
                                                "scatter_max": jnp.maximum(x, u.max())}[name],
                                  (0, 1))(x, u))
            continue
        assert_close(tf(x, u), jf(x, u), what=name)
        if mode != MODES[case % 3]:
            continue  # (derivatives and vmap: one mode per case, to keep this file fast)
        # promise_in_bounds with out-of-bounds indices: derivatives are unspecified
        promised = mode != "promise_in_bounds" or np.array_equal(idx, jidx_clipped)
        if promised and (name != "scatter_mul" or unique):  # (JAX: only unique)
            check_jvp(tf, jf, (x, u))
            check_vjp(tf, jf, (x, u))
        bx, bu = np.stack([x, x - 1]), np.stack([u, u * 3])
        bi = np.stack([idx, idx[::-1]])
        configs = [((bx, idx, u), (0, None, None)), ((x, bi, u), (None, 0, None)),
                   ((x, idx, bu), (None, None, 0)), ((bx, bi, bu), (0, 0, 0))]
        k = [n for n, _ in SCATTERS].index(name) + case
        for args, axes in (configs if name == "scatter_add" else configs[k % 4:k % 4 + 1]):
            check_vmap(lambda x, i, u: op(x, i, u, dn, mode=mode, unique_indices=unique),
                       lambda x, i, u: jop(x, i, u, _lax_sdn(dn), mode=mode,
                                           unique_indices=unique), args, in_axes=axes)
        check_lowering(tg.vmap(lambda x, i, u: op(x, i, u, dn, mode=mode, unique_indices=unique)),
                       (bx, bi, bu))


# ---- the eager NumPy fast path (plain integer-array indexing) against JAX
# and against the general window-grid path it short-cuts

@st.composite
def numpy_like_gathers(draw):
    """Operand, indices and dnums of a gather that is NumPy integer-array
    indexing: some axes (any order) indexed with windows of 1 and collapsed,
    the others whole; indices out of range, negative, of several dtypes."""
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim)))
    k = draw(st.integers(1, ndim))
    imap = tuple(draw(st.permutations(range(ndim)))[:k])
    # (an indexed axis needs an element; the others may be empty)
    shape = tuple(max(n, 1) if d in imap else n for d, n in enumerate(shape))
    bshape = tuple(draw(st.lists(st.integers(0, 3), min_size=0, max_size=2)))
    dt = draw(st.sampled_from([np.int64, np.int32, np.int8, np.uint8]))
    lo = 0 if dt == np.uint8 else -6
    vals = draw(st.lists(st.integers(lo, 6), min_size=int(np.prod(bshape)) * k,
                         max_size=int(np.prod(bshape)) * k))
    idx = A(vals, dtype=dt).reshape(bshape + (k,))
    nb = len(bshape)
    out_rank = nb + ndim - k
    offset = tuple(sorted(draw(st.permutations(range(out_rank)))[:ndim - k]))
    dn = GDN(offset, tuple(sorted(imap)), imap)
    sizes = tuple(1 if d in imap else shape[d] for d in range(ndim))
    return shape, idx, dn, sizes


@given(numpy_like_gathers(), st.sampled_from(MODES))
def test_gather_scatter_numpy_fast_path(problem, mode):
    shape, idx, dn, sizes = problem
    x = rand(*shape)
    assert I._numpy_take_layout(shape, dn.start_index_map, dn.collapsed_slice_dims, (),
                                sizes, dn.offset_dims, idx.ndim - 1) is not None
    params = dict(dimension_numbers=dn, slice_sizes=sizes, mode=I.canonical_mode(mode, None),
                  fill_value=None, indices_are_sorted=False, unique_indices=False)
    fast = I._gather_impl(x, idx, **params)
    slow_fn, I._gather_numpy = I._gather_numpy, lambda *a: None
    try:
        slow = I._gather_impl(x, idx, **params)
    finally:
        I._gather_numpy = slow_fn
    np.testing.assert_array_equal(fast, slow)
    assert fast.dtype == slow.dtype and fast.shape == slow.shape
    assert_close(I.gather(x, idx, dn, sizes, mode=mode),
                 lax.gather(x, idx, _lax_gdn(dn), sizes, mode=mode))
    # the transposed scatters, through the same fast path
    sdn = I._as_scatter_dnums(dn)
    u = rand(*fast.shape)
    for name, jop in SCATTERS:
        if name == "scatter" and len(np.unique(idx.reshape(-1, idx.shape[-1]), axis=0)) < \
                int(np.prod(idx.shape[:-1])):
            continue  # repeated targets: the winner is backend-defined
        op = getattr(I, name)
        sparams = dict(dimension_numbers=sdn, mode=I.canonical_mode(mode, None),
                       indices_are_sorted=False, unique_indices=False)
        impl = getattr(I, name + "_p").impl
        fast = impl(x, idx, u, **sparams)
        slow_fn, I._scatter_numpy = I._scatter_numpy, lambda *a: None
        try:
            slow = impl(x, idx, u, **sparams)
        finally:
            I._scatter_numpy = slow_fn
        np.testing.assert_allclose(fast, slow, rtol=1e-14, atol=0, err_msg=name)
        if name != "scatter_add":
            continue  # (JAX agreement of the general path: test_scatter_primitives)
        win = I._scatter_window_sizes(len(shape), sdn, u.shape)
        upper = A([shape[d] - win[d] for d in sdn.scatter_dims_to_operand_dims], np.int64)
        jidx = np.clip(idx.astype(np.int64), 0, upper) if mode == "clip" else idx
        assert_close(op(x, idx, u, sdn, mode=mode), jop(x, jidx, u, _lax_sdn(sdn), mode=mode),
                     what=name)


def test_dynamic_slice_primitive():
    x = rand(4, 5, 3)
    for starts in [(1, 2, 0), (-1, 7, 2), (3, 0, -5)]:
        tf = lambda x: I.dynamic_slice(x, starts, (2, 3, 3))
        jf = lambda x: lax.dynamic_slice(x, starts, (2, 3, 3))
        assert_close(tf(x), jf(x))
        check_jvp(tf, jf, (x,))
        check_vjp(tf, jf, (x,))
    tf = lambda x, i, j: I.dynamic_slice(x, (i, j, np.int32(0)), (2, 3, 1))
    jf = lambda x, i, j: lax.dynamic_slice(x, (i, j, np.int32(0)), (2, 3, 1))
    check_lowering(tf, (x, np.int32(3), np.int32(-1)))
    i, j = A([0, 3, 9], np.int32), A([2, -7, 1], np.int32)
    bx = np.stack([x, x + 1, x * 2])
    for args, axes in [((bx, np.int32(1), np.int32(2)), (0, None, None)),
                       ((x, i, np.int32(2)), (None, 0, None)),
                       ((bx, i, j), (0, 0, 0)), ((np.moveaxis(bx, 0, 2), i, j), (2, 0, 0))]:
        check_vmap(tf, jf, args, in_axes=axes)
        check_lowering(tg.vmap(tf, axes), args)
    assert "gather" in str(tg.make_jaxpr(tg.vmap(tf, (0, 0, 0)))(bx, i, j))
    assert "gather" not in str(tg.make_jaxpr(tg.vmap(tf, (0, None, None)))(bx, np.int32(1),
                                                                            np.int32(2)))


def test_dynamic_update_slice_primitive():
    x = rand(4, 5)
    u = rand(2, 3)
    for starts in [(1, 2), (-1, 7), (3, -9)]:
        tf = lambda x, u: I.dynamic_update_slice(x, u, starts)
        jf = lambda x, u: lax.dynamic_update_slice(x, u, starts)
        assert_close(tf(x, u), jf(x, u))
        check_jvp(tf, jf, (x, u))
        check_vjp(tf, jf, (x, u))
    tf = lambda x, u, i: I.dynamic_update_slice(x, u, (i, np.int32(1)))
    jf = lambda x, u, i: lax.dynamic_update_slice(x, u, (i, np.int32(1)))
    check_lowering(tf, (x, u, np.int32(3)))
    i = A([0, 3, -2], np.int32)
    bx, bu = np.stack([x, x + 1, x * 2]), np.stack([u, u - 1, u * 3])
    for args, axes in [((bx, u, np.int32(1)), (0, None, None)),
                       ((x, bu, np.int32(1)), (None, 0, None)),
                       ((bx, np.moveaxis(bu, 0, 1), np.int32(1)), (0, 1, None)),
                       ((x, u, i), (None, None, 0)), ((bx, bu, i), (0, 0, 0))]:
        check_vmap(tf, jf, args, in_axes=axes)
        check_lowering(tg.vmap(tf, axes), args)
    # jvp/vjp of the batched (scatter) form
    f = tg.vmap(tf, (0, 0, 0))
    g = jax.vmap(jf, (0, 0, 0))
    check_vjp(lambda x, u: f(x, u, i), lambda x, u: g(x, u, i), (bx, bu))


def test_lax_wrappers():
    from tracegrad import lax as L
    x = rand(3, 4)
    u = rand(3)
    for tf, jf in [(lambda x: L.dynamic_slice_in_dim(x, -3, 2, axis=1),
                    lambda x: lax.dynamic_slice_in_dim(x, -3, 2, axis=1)),
                   (lambda x: L.dynamic_index_in_dim(x, 2, 1, keepdims=False),
                    lambda x: lax.dynamic_index_in_dim(x, 2, 1, keepdims=False)),
                   (lambda x: L.dynamic_update_index_in_dim(x, u, 5, 1),
                    lambda x: lax.dynamic_update_index_in_dim(x, u, 5, 1)),
                   (lambda x: L.dynamic_update_slice_in_dim(x, x[:2] * 2, -1, 0),
                    lambda x: lax.dynamic_update_slice_in_dim(x, x[:2] * 2, -1, 0))]:
        assert_close(tf(x), jf(x))
        assert_close(tg.jit(tf)(x), jf(x))
        check_vjp(tf, jf, (x,))


def test_primitive_rules_complete_and_errors():
    table = core.coverage(print_table=False)
    for name in ["gather", "dynamic_slice", "dynamic_update_slice", "scatter", "scatter_add",
                 "scatter_mul", "scatter_min", "scatter_max"]:
        assert all(v is not False for v in table[name].values()), (name, table[name])
    with pytest.raises(TypeError, match="integer dtype"):
        I.gather(X, A([[0.5]]), GDN((1, 2), (0,), (0,)), (1, 4, 5))
    with pytest.raises(TypeError, match="slice size"):
        I.gather(X, A([[0]]), GDN((1, 2), (0,), (0,)), (1, 9, 5))
    with pytest.raises(TypeError, match="updates"):
        I.scatter_add(X, A([[0]]), np.ones((1, 4, 5), np.float32), SDN((1, 2), (0,), (0,)))
    with pytest.raises(TypeError, match="start indices"):
        I.dynamic_slice(X, (0, 1), (1, 1, 1))
    with pytest.raises(ValueError, match="mode"):
        I.gather(X, A([[0]]), GDN((1, 2), (0,), (0,)), (1, 4, 5), mode="bogus")


# --------------------------------------------------------------------------
# take / take_along_axis / put_along_axis / nonzero & co.


@pytest.mark.parametrize("mode", [None, "fill", "clip", "wrap"])
def test_take(mode):
    x = rand(3, 4, 5)
    for idx, axis in [(A([0, 2, -1, 7]), 1), (A([[1, 0], [2, -4]]), 0), (A(2), 2),
                      (A([5, 59, 61, -3]), None), (A([], np.int64), 1)]:
        tf = lambda a: tnp.take(a, idx, axis=axis, mode=mode)
        jf = lambda a: jnp.take(a, idx, axis=axis, mode=mode)
        assert_close(tf(tnp.asarray(x)), jf(jnp.asarray(x)))
        assert_close(tnp.asarray(x).take(idx, axis=axis, mode=mode), jf(jnp.asarray(x)))
        if mode == "clip" and axis != 2:
            check_vjp(tf, jf, (x,))
    check_lowering(lambda a, i: tnp.take(a, i, axis=1), (x, A([0, 9, -1])))
    check_vmap(lambda a, i: tnp.take(a, i, axis=0), lambda a, i: jnp.take(a, i, axis=0),
               (x, A([[0, 1], [2, 2], [1, 0]])), in_axes=(0, 0))


@pytest.mark.parametrize("mode", [None, "clip", "promise_in_bounds"])
def test_take_along_axis(mode):
    x = rand(3, 4, 5)
    cases = [(np.argsort(x, axis=1), 1), (A([[[0], [3]]]), 1), (A([[[1, 0, 4, 4, -1]]]), 2),
             (RNG.integers(-4, 4, (3, 2, 1)), 1), (A([3, 0, 59]), None)]
    for idx, axis in cases:
        if mode == "promise_in_bounds" and (idx.min() < 0 or idx.max() >= 4):
            continue
        tf = lambda a: tnp.take_along_axis(a, idx, axis=axis, mode=mode)
        jf = lambda a: jnp.take_along_axis(a, idx, axis=axis, mode=mode)
        assert_close(tf(tnp.asarray(x)), jf(jnp.asarray(x)))
        if mode is None:
            check_vjp(tf, jf, (x,))
    xs = x[:1]  # a size-1 axis of arr broadcasts against the indices
    idx = A([[[0, 1, 2, 3, 4]], [[4, 3, 2, 1, 0]]])
    assert_close(tnp.take_along_axis(tnp.asarray(xs), idx, axis=2),
                 jnp.take_along_axis(jnp.asarray(xs), idx, axis=2))
    check_lowering(lambda a, i: tnp.take_along_axis(a, i, axis=1), (x, np.argsort(x, axis=1)))
    check_vmap(lambda a, i: tnp.take_along_axis(a, i, axis=0),
               lambda a, i: jnp.take_along_axis(a, i, axis=0), (x, np.argsort(x, axis=1)),
               in_axes=(0, 0))


def test_put_along_axis():
    x = rand(3, 4)
    idx = A([[1], [3], [0]])
    out = tnp.put_along_axis(tnp.asarray(x), idx, 9.0, axis=1, inplace=False)
    assert_close(out, jnp.put_along_axis(jnp.asarray(x), idx, 9.0, axis=1, inplace=False))
    out = tnp.put_along_axis(tnp.asarray(x), A([0, 5]), A([1.0, 2.0]), axis=None, inplace=False)
    assert_close(out, jnp.put_along_axis(jnp.asarray(x), A([0, 5]), A([1.0, 2.0]), axis=None,
                                         inplace=False))
    with pytest.raises(ValueError, match="in place"):
        tnp.put_along_axis(tnp.asarray(x), idx, 1.0, axis=1)


def _np_nonzero(x, size=None, fill_value=0):
    """NumPy's nonzero, padded/truncated to `size` (JAX's extension)."""
    out = np.nonzero(x)
    if size is not None:
        out = tuple(np.concatenate([r[:size], np.full(max(size - len(r), 0), fill_value)])
                    for r in out)
    return tuple(r.astype(np.int64) for r in out)


def test_nonzero_argwhere_flatnonzero():
    x = A([[0, 1, 2], [3, 0, 0]])
    for got, ref in [(tnp.nonzero(x), _np_nonzero(x)), (tnp.asarray(x).nonzero(), _np_nonzero(x)),
                     (tnp.where(x), _np_nonzero(x)),
                     (tnp.argwhere(x), np.argwhere(x)),
                     (tnp.flatnonzero(x), np.flatnonzero(x)),
                     (tnp.nonzero(x, size=5, fill_value=-1), _np_nonzero(x, 5, -1)),
                     (tnp.nonzero(x, size=2), _np_nonzero(x, 2)),
                     (tnp.argwhere(x > 1, size=3), np.stack(_np_nonzero(x > 1, 3), 1))]:
        assert_close(got, ref)
    # with a static size it also works traced
    f = lambda a: tnp.nonzero(a, size=4, fill_value=7)
    closed = tg.make_jaxpr(f)(x)
    assert_close(tg.eval_jaxpr(closed.jaxpr, closed.consts, x), list(_np_nonzero(x, 4, 7)))
    check_lowering(f, (x,))
    check_lowering(lambda a: tnp.argwhere(a, size=6, fill_value=-1), (x,))
    assert_close(tg.vmap(lambda a: tnp.flatnonzero(a, size=2))(x),
                 np.stack([_np_nonzero(r, 2)[0] for r in x]))
    with pytest.raises(ValueError, match="0d"):
        tnp.nonzero(np.float64(1.0))


# --------------------------------------------------------------------------
# errors


def test_errors():
    x = tnp.asarray(X)
    with pytest.raises(IndexError, match="Too many indices"):
        x[0, 0, 0, 0]
    with pytest.raises(IndexError, match="single ellipsis"):
        x[..., 0, ...]
    with pytest.raises(TypeError, match="integer or boolean"):
        x[A([0.0, 1.0])]
    with pytest.raises(TypeError, match="integer or boolean"):
        x[1.0]
    with pytest.raises(TypeError, match="non-tuple sequence"):
        x[[0, 1]]
    with pytest.raises(IndexError, match="shape mismatch"):
        x[A([0, 1]), A([0, 1, 2])]
    with pytest.raises(IndexError, match="boolean index did not match"):
        x[A([True, False])]
    with pytest.raises(ValueError, match="broadcast"):
        x.at[0].set(np.ones(3))
    with pytest.raises(TypeError, match="integer type"):
        tnp.take(x, A([0.5]))
    with pytest.raises(tg.ConcretizationError, match="tnp.where"):
        tg.make_jaxpr(lambda a: a[a > 3])(X)
    with pytest.raises(tg.ConcretizationError, match="tnp.where"):
        tg.vmap(lambda a: a.at[a > 3].set(0.0))(X)
    with pytest.raises(tg.ConcretizationError, match="size="):
        tg.make_jaxpr(lambda a: tnp.nonzero(a))(X)
    with pytest.raises(IndexError, match="static"):
        tg.make_jaxpr(lambda a, i: a[i:])(X, 1)
    # concrete boolean masks work under jvp (the primal is known)
    out, tan = tg.jvp(lambda a: a[a > 50], (X,), (np.ones_like(X),))
    assert_close(out, X[X > 50])
