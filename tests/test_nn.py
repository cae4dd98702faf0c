"""tracegrad.nn: layers, activations, losses and initialisers against JAX
(jax.lax.conv_general_dilated, jax.lax.reduce_window, jax.nn.*,
jax.nn.initializers), modules as pytrees under grad/jit/vmap, Dropout, and
the error messages."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import tracegrad as tg
import tracegrad.numpy as tnp
from tracegrad import nn, random
from tracegrad.tree_util import tree_leaves, tree_map, tree_structure

from oracle import assert_close, check_all

F32 = dict(rtol=2e-5, atol=2e-6)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _keys(n, seed=0):
    return random.split(random.key(seed), n)


def _vjp_check(tg_fn, jax_fn, args, rng=None, **tol):
    """Values and full vector-Jacobian products (every argument) vs JAX."""
    rng = rng or _rng(7)
    out, pull = tg.vjp(tg_fn, *args)
    ref, rpull = jax.vjp(jax_fn, *[jnp.asarray(a) for a in args])
    assert_close(out, ref, **tol, what="value")
    ct = rng.standard_normal(np.shape(ref)).astype(np.asarray(ref).dtype)
    assert_close(pull(ct), rpull(jnp.asarray(ct)), **tol, what="vjp")


# --------------------------------------------------------------------------
# activations


ACTIVATIONS = [
    ("relu", nn.relu, jax.nn.relu),
    ("sigmoid", nn.sigmoid, jax.nn.sigmoid),
    ("tanh", nn.tanh, jnp.tanh),
    ("softplus", nn.softplus, jax.nn.softplus),
    ("log_sigmoid", nn.log_sigmoid, jax.nn.log_sigmoid),
    ("silu", nn.silu, jax.nn.silu),
    ("gelu_tanh", lambda x: nn.gelu(x, approximate=True), lambda x: jax.nn.gelu(x, approximate=True)),
    ("gelu_exact", lambda x: nn.gelu(x, approximate=False), lambda x: jax.nn.gelu(x, approximate=False)),
    ("elu", nn.elu, jax.nn.elu),
    ("leaky_relu", nn.leaky_relu, jax.nn.leaky_relu),
    ("relu6", nn.relu6, jax.nn.relu6),
    ("softmax", nn.softmax, jax.nn.softmax),
    ("log_softmax", nn.log_softmax, jax.nn.log_softmax),
    ("softmax_axis0", lambda x: nn.softmax(x, axis=0), lambda x: jax.nn.softmax(x, axis=0)),
]


@pytest.mark.parametrize("name,ours,ref", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_matches_jax(name, ours, ref):
    """float64: values, jvp, vjp, vmap and jit against jax.nn."""
    x = _rng(1).standard_normal((3, 5)) * 3
    x[0, :3] = [0.0, 0.0, 1e-3]  # kinks and ties
    check_all(ours, ref, (x,))


@settings(max_examples=10)
@given(st.lists(st.floats(-30, 30, width=32, allow_subnormal=False), min_size=6, max_size=6))
def test_activation_hypothesis_float32(vals):
    """float32 values (dtype kept) and gradients; one shape, so JAX compiles once."""
    x = np.asarray(vals, np.float32)
    for name, ours, ref in ACTIVATIONS:
        if name == "softmax_axis0":
            continue
        assert_close(ours(x), ref(jnp.asarray(x)), rtol=1e-5, atol=1e-6, what=name)
        g = tg.grad(lambda v: tnp.sum(ours(v) * tnp.arange(v.shape[0])))(x)
        rg = jax.grad(lambda v: jnp.sum(ref(v) * jnp.arange(v.shape[0])))(jnp.asarray(x))
        assert_close(g, rg, rtol=1e-4, atol=1e-5, what=f"grad {name}")


def test_activation_derivatives_at_kinks():
    zero = np.float32(0.0)
    assert float(tg.grad(nn.relu)(zero)) == 0.0  # as jax.nn.relu
    assert float(tg.grad(nn.softplus)(zero)) == pytest.approx(0.5)
    assert float(tg.grad(nn.log_sigmoid)(zero)) == pytest.approx(0.5)
    assert np.isnan(float(nn.relu(np.float32(np.nan))))


def test_activations_are_numerically_stable():
    big = np.array([1000.0, -1000.0, 0.0], np.float32)
    for f in (nn.softplus, nn.log_sigmoid, nn.sigmoid, nn.softmax, nn.log_softmax, nn.elu,
              nn.silu, nn.gelu):
        v = np.asarray(f(big))
        assert np.all(np.isfinite(v)), f
        g = np.asarray(tg.grad(lambda x: tnp.sum(f(x)))(big))
        assert np.all(np.isfinite(g)), f
    np.testing.assert_allclose(np.asarray(nn.softplus(big)), [1000.0, 0.0, np.log(2)], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(nn.log_softmax(big)), [0.0, -2000.0, -1000.0])


def test_activation_modules():
    x = _rng(2).standard_normal((4, 6)).astype(np.float32)
    pairs = [(nn.ReLU(), nn.relu), (nn.Sigmoid(), nn.sigmoid), (nn.Tanh(), nn.tanh),
             (nn.Softplus(), nn.softplus), (nn.SiLU(), nn.silu),
             (nn.GELU(approximate=False), lambda v: nn.gelu(v, False)),
             (nn.LeakyReLU(0.2), lambda v: nn.leaky_relu(v, 0.2)), (nn.ELU(0.5), lambda v: nn.elu(v, 0.5)),
             (nn.Softmax(axis=0), lambda v: nn.softmax(v, 0)), (nn.LogSoftmax(), nn.log_softmax)]
    for mod, fn in pairs:
        np.testing.assert_array_equal(np.asarray(mod(x)), np.asarray(fn(x)))
        assert tree_leaves(mod) == []


# --------------------------------------------------------------------------
# Linear


@pytest.mark.parametrize("lead", [(), (5,), (2, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_jax(lead, bias):
    layer = nn.Linear(4, 3, key=random.key(0), bias=bias,
                      bias_init=nn.init.normal(1.0) if bias else None)
    x = _rng(3).standard_normal(lead + (4,)).astype(np.float32)
    w = np.asarray(layer.weight)
    b = np.asarray(layer.bias) if bias else np.zeros(3, np.float32)
    assert w.shape == (4, 3) and w.dtype == np.float32
    _vjp_check(lambda x, w, b: nn.Linear.__call__(layer.replace(weight=w, bias=b if bias else None), x),
               lambda x, w, b: x @ w + (b if bias else 0.0), (x, w, b), **F32)


def test_linear_gradient_has_model_structure():
    layer = nn.Dense(5, 2, key=random.key(1))
    x = _rng(4).standard_normal((7, 5)).astype(np.float32)
    g = tg.grad(lambda m: tnp.sum(m(x) ** 2))(layer)
    assert isinstance(g, nn.Linear)
    assert tree_structure(g) == tree_structure(layer)
    rg = jax.grad(lambda w, b: jnp.sum((x @ w + b) ** 2), argnums=(0, 1))(
        jnp.asarray(layer.weight), jnp.asarray(layer.bias))
    assert_close((g.weight, g.bias), rg, **F32)
    assert g.in_features == 5 and g.out_features == 2


# --------------------------------------------------------------------------
# Conv2d and pooling


def _jax_conv(x, w, b, stride, padding, dilation):
    if isinstance(padding, int):
        padding = ((padding, padding), (padding, padding))
    elif not isinstance(padding, str) and isinstance(padding[0], int):
        padding = tuple((p, p) for p in padding)
    y = jax.lax.conv_general_dilated(x, w, stride, padding, rhs_dilation=dilation,
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y + b.reshape(-1, 1, 1)


CONV_CASES = [
    dict(kernel=3, stride=1, padding="SAME", dilation=1),
    dict(kernel=3, stride=1, padding="VALID", dilation=1),
    dict(kernel=(2, 3), stride=2, padding="SAME", dilation=1),
    dict(kernel=3, stride=(1, 2), padding=1, dilation=1),
    dict(kernel=2, stride=1, padding=(1, 0), dilation=2),
    dict(kernel=3, stride=1, padding=((2, 0), (0, 1)), dilation=1),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[str(i) for i in range(len(CONV_CASES))])
def test_conv2d_matches_jax(case):
    conv = nn.Conv2d(3, 4, case["kernel"], case["stride"], case["padding"], case["dilation"],
                     key=random.key(2), bias_init=nn.init.normal(0.5))
    x = _rng(5).standard_normal((2, 3, 7, 6)).astype(np.float32)
    w, b = np.asarray(conv.weight), np.asarray(conv.bias)
    kh, kw = conv.kernel_size
    assert w.shape == (4, 3, kh, kw)

    def ours(x, w, b):
        return conv.replace(weight=w, bias=b)(x)

    def ref(x, w, b):
        return _jax_conv(x, w, b, conv.stride, case["padding"], conv.dilation)

    _vjp_check(ours, ref, (x, w, b), rtol=1e-4, atol=1e-5)
    # unbatched CHW input, and jit
    assert_close(conv(x[0]), ref(x, w, b)[0], rtol=1e-4, atol=1e-5)
    assert_close(tg.jit(lambda m, x: m(x))(conv, x), ref(x, w, b), rtol=1e-4, atol=1e-5)


def _jax_pool(x, kind, k, s, padding):
    lead = (1,) * (x.ndim - 2)
    if not isinstance(padding, str):
        padding = ((0, 0),) * (x.ndim - 2) + tuple(padding)
    if kind == "max":
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, lead + k, lead + s, padding)
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, lead + k, lead + s, padding) / (k[0] * k[1])


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("k,s,padding", [(2, None, 0), (3, 1, 1), ((2, 3), (2, 1), "SAME"),
                                         (3, 2, "VALID")])
@pytest.mark.parametrize("batched", [True, False])
def test_pooling_matches_jax(kind, k, s, padding, batched):
    cls = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
    pool = cls(k, s, padding)
    shape = (2, 3, 6, 7) if batched else (3, 6, 7)
    x = _rng(6).standard_normal(shape).astype(np.float32)
    x.reshape(-1)[::5] = 1.5  # ties inside windows
    pads = padding if isinstance(padding, str) else (
        ((padding, padding),) * 2 if isinstance(padding, int) else padding)
    ref = lambda x: _jax_pool(x, kind, pool.kernel_size, pool.stride, pads)  # noqa: E731
    _vjp_check(pool, ref, (x,), **F32)


@settings(max_examples=8)
@given(st.integers(0, 3), st.integers(3, 7), st.integers(3, 6), st.integers(1, 3),
       st.integers(1, 2), st.sampled_from(["SAME", "VALID", 1]), st.integers(1, 3))
def test_conv_and_pool_hypothesis(n, h, w, k, stride, padding, cout):
    """Random shapes (including an empty batch) for Conv2d -> MaxPool2d."""
    conv = nn.Conv2d(2, cout, k, stride, padding, key=random.key(n + h * w))
    pool = nn.MaxPool2d(2, 1)
    pad = {"SAME": None, "VALID": 0}.get(padding, padding)
    out = [-(-d // stride) if pad is None else (d + 2 * pad - k) // stride + 1 for d in (h, w)]
    assume(min(out) >= 2)  # else the pool's window does not fit (an error, tested below)
    x = _rng(h * w).standard_normal((n, 2, h, w)).astype(np.float32)
    wgt, b = np.asarray(conv.weight), np.asarray(conv.bias)
    pads = padding if isinstance(padding, str) else ((1, 1), (1, 1))

    def ours(x, wgt):
        return pool(conv.replace(weight=wgt)(x))

    def ref(x, wgt):
        y = _jax_conv(x, wgt, b, conv.stride, pads, (1, 1))
        return _jax_pool(y, "max", (2, 2), (1, 1), "VALID")

    _vjp_check(ours, ref, (x, wgt), rtol=1e-4, atol=1e-5)


def test_maxpool_gradient_goes_to_the_maximum():
    x = np.array([[[[1.0, 5.0], [2.0, 3.0]]]], np.float32)
    g = tg.grad(lambda x: tnp.sum(nn.MaxPool2d(2)(x)))(x)
    np.testing.assert_array_equal(np.asarray(g), [[[[0.0, 1.0], [0.0, 0.0]]]])


def test_flatten():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(start_dim=2)(x).shape == (2, 3, 20)
    assert nn.Flatten(0, 1)(x).shape == (6, 4, 5)
    np.testing.assert_array_equal(np.asarray(nn.Flatten()(x)), x.reshape(2, 60))


# --------------------------------------------------------------------------
# losses


def test_mse():
    a = _rng(8).standard_normal((4, 3))
    b = _rng(9).standard_normal((4, 3))
    assert float(nn.mse_loss(a, b)) == pytest.approx(np.mean((a - b) ** 2))
    assert float(nn.mse(a, b, reduction="sum")) == pytest.approx(np.sum((a - b) ** 2))
    np.testing.assert_allclose(np.asarray(nn.mse_loss(a, b, reduction="none")), (a - b) ** 2)
    np.testing.assert_allclose(np.asarray(tg.grad(nn.mse_loss)(a, b)), 2 * (a - b) / a.size)


def _ref_bce_logits(x, t):
    return jnp.mean(jnp.maximum(x, 0) - x * t + jnp.log1p(jnp.exp(-jnp.abs(x))))


def test_binary_cross_entropy():
    rng = _rng(10)
    x = rng.standard_normal(20) * 4
    t = (rng.random(20) > 0.5).astype(np.float64)
    t[:3] = [0.3, 0.5, 0.9]  # soft targets too
    p = 1 / (1 + np.exp(-x))
    expected = np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)))
    assert float(nn.binary_cross_entropy(p, t)) == pytest.approx(expected, rel=1e-12)
    assert float(nn.binary_cross_entropy_with_logits(x, t)) == pytest.approx(expected, rel=1e-12)
    check_all(nn.binary_cross_entropy_with_logits, _ref_bce_logits, (x, t), batch=False)
    # gradient w.r.t. the logits is (sigmoid(x) - t) / n
    g = tg.grad(nn.binary_cross_entropy_with_logits)(x, t)
    np.testing.assert_allclose(np.asarray(g), (p - t) / len(x), rtol=1e-12)
    g0 = tg.grad(nn.binary_cross_entropy_with_logits)(np.zeros(2), np.array([0.0, 1.0]))
    np.testing.assert_allclose(np.asarray(g0), [0.25, -0.25])


def test_binary_cross_entropy_extremes_are_finite():
    big = np.array([100.0, -100.0, 1000.0], np.float32)
    t = np.array([0.0, 1.0, 0.0], np.float32)
    v = float(nn.binary_cross_entropy_with_logits(big, t))
    np.testing.assert_allclose(v, (100 + 100 + 1000) / 3, rtol=1e-5)
    v = float(nn.binary_cross_entropy(np.array([0.0, 1.0], np.float32), np.array([1.0, 0.0], np.float32)))
    assert v == pytest.approx(100.0)  # logs clamped at -100, as PyTorch
    g = np.asarray(tg.grad(nn.binary_cross_entropy_with_logits)(big, t))
    assert np.all(np.isfinite(g))


def _ref_ce(logits, labels):
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[..., None], axis=-1))


@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 4), (4,)])
def test_softmax_cross_entropy_integer_labels(shape):
    rng = _rng(11)
    logits = rng.standard_normal(shape) * 3
    labels = rng.integers(0, shape[-1], shape[:-1])
    check_all(lambda l: nn.softmax_cross_entropy(l, labels),
              lambda l: _ref_ce(l, jnp.asarray(labels)), (logits,), batch=False)
    onehot = np.eye(shape[-1])[labels]
    assert float(nn.cross_entropy(logits, onehot)) == pytest.approx(
        float(nn.softmax_cross_entropy(logits, labels)), rel=1e-12)
    g = tg.grad(nn.softmax_cross_entropy)(logits, labels)
    p = np.asarray(nn.softmax(logits))
    n = int(np.prod(shape[:-1]))
    np.testing.assert_allclose(np.asarray(g), (p - onehot) / n, rtol=1e-10, atol=1e-14)


def test_softmax_cross_entropy_soft_targets_and_reductions():
    rng = _rng(12)
    logits = rng.standard_normal((5, 4))
    targets = rng.random((5, 4))
    targets /= targets.sum(1, keepdims=True)
    ref = -np.sum(targets * np.asarray(jax.nn.log_softmax(logits)), axis=1)
    np.testing.assert_allclose(np.asarray(nn.softmax_cross_entropy(logits, targets, "none")), ref)
    assert float(nn.softmax_cross_entropy(logits, targets, "sum")) == pytest.approx(ref.sum())
    # class axis other than the last
    np.testing.assert_allclose(
        np.asarray(nn.softmax_cross_entropy(logits.T, targets.T, "none", axis=0)), ref)
    labels = rng.integers(0, 4, 5)
    np.testing.assert_allclose(
        float(nn.softmax_cross_entropy(logits.T, labels, axis=0)),
        float(nn.softmax_cross_entropy(logits, labels)))
    big = np.array([[1000.0, 0.0, -1000.0]], np.float32)
    assert float(nn.softmax_cross_entropy(big, np.array([2]))) == pytest.approx(2000.0)


def test_accuracy_and_one_hot():
    logits = np.array([[0.1, 0.9], [2.0, 1.0], [0.0, 3.0]])
    assert float(nn.accuracy(logits, np.array([1, 0, 0]))) == pytest.approx(2 / 3)
    oh = nn.one_hot(np.array([1, 0, 2]), 3)
    np.testing.assert_array_equal(np.asarray(oh), np.eye(3)[[1, 0, 2]])
    assert oh.dtype == np.float32
    assert float(nn.accuracy(logits, np.eye(2)[[1, 0, 0]])) == pytest.approx(2 / 3)


# --------------------------------------------------------------------------
# initialisers


@pytest.mark.parametrize("name", ["glorot_uniform", "he_uniform", "lecun_uniform"])
def test_uniform_initialisers_match_jax_bits(name):
    ours = np.asarray(getattr(nn.init, name)()(random.key(3), (64, 32)))
    ref = np.asarray(getattr(jax.nn.initializers, name)()(jax.random.PRNGKey(3), (64, 32),
                                                          jnp.float32))
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("name", ["glorot_normal", "he_normal", "lecun_normal"])
def test_normal_initialisers_match_jax(name):
    ours = np.asarray(getattr(nn.init, name)(in_axis=1, out_axis=0)(random.key(4), (16, 3, 3, 3)))
    ref = np.asarray(getattr(jax.nn.initializers, name)(in_axis=1, out_axis=0)(
        jax.random.PRNGKey(4), (16, 3, 3, 3), jnp.float32))
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)  # erf_inv's last ulp


@pytest.mark.parametrize("name,var,dist", [
    ("glorot_uniform", 2 / (400 + 300), "uniform"), ("xavier_uniform", 2 / 700, "uniform"),
    ("glorot_normal", 2 / 700, "trunc"), ("xavier_normal", 2 / 700, "trunc"),
    ("he_uniform", 2 / 400, "uniform"), ("kaiming_uniform", 2 / 400, "uniform"),
    ("he_normal", 2 / 400, "trunc"), ("kaiming_normal", 2 / 400, "trunc"),
    ("lecun_normal", 1 / 400, "trunc")])
def test_initialiser_statistics(name, var, dist):
    w = np.asarray(getattr(nn.init, name)()(random.key(5), (400, 300)), np.float64)
    assert w.shape == (400, 300) and w.dtype == np.float64
    assert abs(w.mean()) < 4 * np.sqrt(var / w.size)
    assert w.var() == pytest.approx(var, rel=0.02)
    if dist == "uniform":
        lim = np.sqrt(3 * var)
        assert np.abs(w).max() <= lim and np.abs(w).max() > 0.99 * lim
    else:  # truncated at two standard deviations of the underlying normal
        assert np.abs(w).max() <= 2 * np.sqrt(var) / 0.87962566103423978 + 1e-6


def test_initialiser_misc():
    assert nn.init.compute_fans((3, 5, 2, 2), in_axis=1, out_axis=0) == (20, 12)
    z = nn.init.zeros(random.key(0), (3, 2))
    assert z.dtype == np.float32 and not np.asarray(z).any()
    assert np.asarray(nn.init.constant(0.5)(None, (2,))).tolist() == [0.5, 0.5]
    w = np.asarray(nn.init.normal(2.0, np.float64)(random.key(1), (200000,)))
    assert w.dtype == np.float64 and w.std() == pytest.approx(2.0, rel=0.01)
    w = np.asarray(nn.init.variance_scaling(3.0, "fan_out", "normal")(random.key(2), (50, 400)))
    assert w.var() == pytest.approx(3.0 / 400, rel=0.03)
    # the same key gives the same weights; different keys differ
    a = nn.Linear(8, 8, key=random.key(7))
    b = nn.Linear(8, 8, key=random.key(7))
    c = nn.Linear(8, 8, key=random.key(8))
    np.testing.assert_array_equal(np.asarray(a.weight), np.asarray(b.weight))
    assert not np.array_equal(np.asarray(a.weight), np.asarray(c.weight))
    with pytest.raises(ValueError, match="rank >= 2"):
        nn.init.glorot_uniform()(random.key(0), (5,))
    with pytest.raises(ValueError, match="mode"):
        nn.init.variance_scaling(1.0, "fan_sideways", "normal")
    with pytest.raises(TypeError, match="real floating"):
        nn.init.glorot_uniform()(random.key(0), (2, 2), np.int32)


# --------------------------------------------------------------------------
# Dropout


def test_dropout_is_deterministic_given_the_key():
    d = nn.Dropout(0.5)
    x = np.ones((50, 40), np.float32)
    k1, k2 = _keys(2)
    a, b, c = np.asarray(d(x, key=k1)), np.asarray(d(x, key=k1)), np.asarray(d(x, key=k2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.unique(a)) == {0.0, 2.0}  # kept values are scaled by 1 / (1 - rate)
    assert 0.45 < (a == 0).mean() < 0.55
    assert a.mean() == pytest.approx(1.0, abs=0.06)
    # the same draws eagerly and under jit
    np.testing.assert_array_equal(np.asarray(tg.jit(lambda x, k: d(x, key=k))(x, k1)), a)
    # gradient: the mask times the scale
    g = np.asarray(tg.grad(lambda x: tnp.sum(d(x, key=k1)))(x))
    np.testing.assert_array_equal(g, a)


def test_dropout_inference_modes():
    x = _rng(13).standard_normal((4, 4)).astype(np.float32)
    k = random.key(0)
    np.testing.assert_array_equal(np.asarray(nn.Dropout(0.3, deterministic=True)(x)), x)
    np.testing.assert_array_equal(np.asarray(nn.Dropout(0.3)(x, deterministic=True)), x)
    np.testing.assert_array_equal(np.asarray(nn.Dropout(0.0)(x)), x)
    assert not np.asarray(nn.Dropout(1.0)(x, key=k)).any()
    model = nn.Sequential(nn.Linear(4, 4, key=k), nn.Dropout(0.5), nn.relu)
    ev = nn.inference_mode(model)
    assert ev.layers[1].deterministic and not model.layers[1].deterministic
    np.testing.assert_array_equal(np.asarray(ev(x)), np.asarray(nn.relu(model.layers[0](x))))
    back = nn.inference_mode(ev, False)
    assert not back.layers[1].deterministic
    with pytest.raises(ValueError, match="needs a PRNG key"):
        model(x)
    with pytest.raises(ValueError, match="rate"):
        nn.Dropout(1.5)


def test_sequential_splits_keys_among_dropouts():
    x = np.ones((1, 1000), np.float32)
    model = nn.Sequential(nn.Dropout(0.5), nn.Dropout(0.5))
    k = random.key(1)
    k0, k1 = random.split(k)
    expected = nn.Dropout(0.5)(nn.Dropout(0.5)(x, key=k0), key=k1)
    np.testing.assert_array_equal(np.asarray(model(x, key=k)), np.asarray(expected))


# --------------------------------------------------------------------------
# modules as pytrees


def _mlp(seed=0):
    k = _keys(2, seed)
    return nn.Sequential(nn.Linear(3, 8, key=k[0]), nn.relu, nn.Linear(8, 2, key=k[1]))


def test_module_pytree_structure():
    m = _mlp()
    leaves = tree_leaves(m)
    assert [l.shape for l in leaves] == [(3, 8), (8,), (8, 2), (2,)]
    m2 = tree_map(lambda p: p * 2, m)
    assert isinstance(m2, nn.Sequential) and m2.layers[0].in_features == 3
    np.testing.assert_array_equal(np.asarray(m2.layers[2].bias), 2 * np.asarray(m.layers[2].bias))
    # structure survives a map to non-arrays and back
    s = tree_map(lambda p: None if p is None else "x", m)
    assert tree_structure(s) == tree_structure(m)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(m)[0]]
    assert paths == [".layers[0].weight", ".layers[0].bias", ".layers[2].weight",
                     ".layers[2].bias"]
    assert nn.count_params(m) == 3 * 8 + 8 + 8 * 2 + 2
    assert nn.Chain is nn.Sequential and nn.Dense is nn.Linear
    assert len(m) == 3 and isinstance(m[0], nn.Linear) and isinstance(m[:2], nn.Sequential)
    no_bias = nn.Linear(2, 2, key=random.key(0), bias=False)
    assert len(tree_leaves(no_bias)) == 1


def test_grad_jit_vmap_on_models():
    m = _mlp()
    x = _rng(14).standard_normal((5, 3)).astype(np.float32)
    y = np.array([0, 1, 1, 0, 1])

    def loss(m, x, y):
        return nn.softmax_cross_entropy(m(x), y)

    g = tg.grad(loss)(m, x, y)
    assert tree_structure(g) == tree_structure(m)
    gj = tg.jit(tg.grad(loss))(m, x, y)
    for a, b in zip(tree_leaves(g), tree_leaves(gj)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)

    # JAX reference with the same weights
    w1, b1, w2, b2 = map(jnp.asarray, tree_leaves(m))

    def jloss(p):
        w1, b1, w2, b2 = p
        return _ref_ce(jax.nn.relu(x @ w1 + b1) @ w2 + b2, jnp.asarray(y))

    assert_close(tree_leaves(g), list(jax.grad(jloss)((w1, b1, w2, b2))), **F32)

    # an ensemble: vmap over a stack of models
    models = [_mlp(s) for s in range(3)]
    stacked = tree_map(lambda *ls: tnp.stack(ls), *models)
    outs = tg.vmap(lambda m, x: m(x), in_axes=(0, None))(stacked, x)
    assert outs.shape == (3, 5, 2)
    for i, mi in enumerate(models):
        np.testing.assert_allclose(np.asarray(outs[i]), np.asarray(mi(x)), rtol=1e-5, atol=1e-6)

    # jit caches by structure and static config: the same model shape reuses the trace
    f = tg.jit(lambda m, x: m(x))
    f(models[0], x)
    f(models[1], x)
    assert f._trace_count == 1


def test_module_replace_and_repr():
    lin = nn.Linear(2, 3, key=random.key(0))
    w = np.zeros((2, 3), np.float32)
    lin2 = lin.replace(weight=w)
    assert np.asarray(lin2.weight).sum() == 0 and np.asarray(lin.weight).sum() != 0
    with pytest.raises(AttributeError):
        lin.replace(nope=1)
    assert "Linear(" in repr(lin) and "in_features=2" in repr(lin)
    assert "(0): Linear" in repr(_mlp())


def test_custom_module_subclass():
    class Affine(nn.Module):
        def __init__(self, n, key):
            self.scale = random.normal(key, (n,), np.float32)
            self.shift = tnp.zeros(n, np.float32)
            self.n = n          # static: an int
            self.name = "aff"   # static: a string

        def __call__(self, x):
            return x * self.scale + self.shift

    a = Affine(3, random.key(0))
    assert len(tree_leaves(a)) == 2
    g = tg.grad(lambda m: tnp.sum(m(np.ones(3, np.float32))))(a)
    assert isinstance(g, Affine) and g.n == 3 and g.name == "aff"
    np.testing.assert_array_equal(np.asarray(g.scale), np.ones(3))
    # a new attribute set later is picked up
    a.extra = tnp.ones(2)
    assert len(tree_leaves(a)) == 3


def test_forced_child_and_static_fields():
    class Scaled(nn.Module):
        _child_fields = ("gain",)       # a Python float, trained like a parameter
        _static_fields = ("shape",)

        def __init__(self):
            self.gain = 2.0
            self.shape = (3,)

        def __call__(self, x):
            return x * self.gain

    m = Scaled()
    assert tree_leaves(m) == [2.0]
    g = tg.grad(lambda m: tnp.sum(m(np.arange(3.0))))(m)
    assert float(g.gain) == pytest.approx(3.0) and g.shape == (3,)

    class Bad(nn.Module):
        def __init__(self):
            self.table = {"a": [1, 2]}   # static, but not hashable

    with pytest.raises(TypeError, match=r"Bad.table.*must be hashable"):
        tree_leaves(Bad())


# --------------------------------------------------------------------------
# errors


def test_error_messages():
    lin = nn.Linear(64, 10, key=random.key(0))
    with pytest.raises(tg.ShapeDtypeError, match=r"Linear\(in_features=64, out_features=10\).*"
                       r"\(\.\.\., 64\).*\(32, 63\)"):
        lin(np.zeros((32, 63), np.float32))
    conv = nn.Conv2d(3, 8, 3, key=random.key(0))
    with pytest.raises(tg.ShapeDtypeError, match=r"Conv2d\(3, 8.*expected 3 input channels.*"
                       r"\(2, 1, 8, 8\)"):
        conv(np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(tg.ShapeDtypeError, match=r"Conv2d.*\(N, 3, H, W\).*\(8, 8\)"):
        conv(np.zeros((8, 8), np.float32))
    with pytest.raises(tg.ShapeDtypeError, match=r"Conv2d.*\(2, 2\) is too small"):
        conv(np.zeros((1, 3, 2, 2), np.float32))
    with pytest.raises(tg.ShapeDtypeError, match=r"MaxPool2d.*smaller than the window"):
        nn.MaxPool2d(3)(np.zeros((1, 1, 2, 2), np.float32))
    model = nn.Sequential(nn.Linear(4, 5, key=random.key(0)), nn.relu,
                          nn.Linear(6, 2, key=random.key(1)))
    with pytest.raises(tg.ShapeDtypeError, match=r"Sequential layer 2: Linear\(in_features=6.*"
                       r"got shape \(3, 5\)"):
        model(np.zeros((3, 4), np.float32))
    # the same checks run while tracing
    with pytest.raises(tg.ShapeDtypeError, match=r"Linear\(in_features=64"):
        tg.jit(lambda x: lin(x))(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\).*e\.g\. 10"):
        nn.softmax_cross_entropy(np.zeros((3, 10)), np.array([1, 2, 10]))
    with pytest.raises(ValueError, match=r"out of range.*-1"):
        tg.grad(nn.softmax_cross_entropy)(np.zeros((2, 3)), np.array([-1, 0]))
    with pytest.raises(tg.ShapeDtypeError, match=r"integer labels must have the shape.*\(3,\)"):
        nn.softmax_cross_entropy(np.zeros((3, 10)), np.array([[1], [2], [3]]))
    with pytest.raises(tg.ShapeDtypeError, match=r"targets must have the shape of logits"):
        nn.softmax_cross_entropy(np.zeros((3, 10)), np.zeros((3, 9)))
    with pytest.raises(tg.ShapeDtypeError, match=r"mse_loss.*\(3,\).*\(4,\)"):
        nn.mse_loss(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="reduction"):
        nn.mse_loss(np.zeros(3), np.zeros(3), reduction="avg")
    with pytest.raises(TypeError, match=r"Linear\(2, 3\) needs a PRNG key"):
        nn.Linear(2, 3)
    with pytest.raises(TypeError, match="uint32"):
        nn.Linear(2, 3, key=np.zeros(3))
    with pytest.raises(ValueError, match="padding"):
        nn.Conv2d(1, 1, 3, padding="FULL", key=random.key(0))
