"""tracegrad.optim: every optimiser step against a hand computation in
NumPy (always) and against optax (when it is installed, in the same tests),
on pytrees of different shapes, eagerly, under jit and under vmap."""
from __future__ import annotations

import numpy as np
import pytest

import tracegrad as tg
from tracegrad import nn, optim, random
from tracegrad.tree_util import tree_leaves, tree_map

try:
    import optax
    import jax.numpy as jnp
except ImportError:  # the optax comparison is skipped inside the tests, never the tests
    optax = None


def _params(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return {"w": rng.standard_normal((3, 2)).astype(dtype),
            "b": rng.standard_normal(2).astype(dtype),
            "nested": [rng.standard_normal(4).astype(dtype)]}


def _grads(step, dtype=np.float64):
    rng = np.random.default_rng(100 + step)
    return {"w": rng.standard_normal((3, 2)).astype(dtype),
            "b": rng.standard_normal(2).astype(dtype),
            "nested": [rng.standard_normal(4).astype(dtype)]}


def _run(opt, params, steps, jit=False):
    state = opt.init(params)

    def step(params, state, g):
        updates, state = opt.update(g, state, params)
        return optim.apply_updates(params, updates), state

    if jit:
        step = tg.jit(step)
    for i in range(steps):
        params, state = step(params, state, _grads(i))
    return params, state


def _run_optax(opt, params, steps):
    p = tree_map(jnp.asarray, params)
    state = opt.init(p)
    for i in range(steps):
        updates, state = opt.update(tree_map(jnp.asarray, _grads(i)), state, p)
        p = optax.apply_updates(p, updates)
    return p


def _hand(params, steps, rule):
    """Apply `rule(p, g, slots, t) -> new p` leaf by leaf with per-leaf state."""
    leaves, treedef = tg.tree_util.tree_flatten(params)
    leaves = [np.array(l, np.float64) for l in leaves]
    slots = [dict() for _ in leaves]
    for t in range(1, steps + 1):
        gs = tg.tree_util.tree_leaves(_grads(t - 1))
        leaves = [rule(p, g, s, t) for p, g, s in zip(leaves, gs, slots)]
    return tg.tree_util.tree_unflatten(treedef, leaves)


def _close(a, b, rtol=1e-12, atol=1e-12):
    la, lb = tree_leaves(a), tree_leaves(b)
    assert len(la) == len(lb), f"{len(la)} leaves != {len(lb)}"
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


# --------------------------------------------------------------------------
# hand-written references


def sgd_rule(lr, momentum=0.0, nesterov=False, wd=0.0):
    def rule(p, g, s, t):
        g = g + wd * p
        if momentum:
            buf = s.get("buf", np.zeros_like(p))
            buf = momentum * buf + g           # PyTorch's SGD, dampening 0
            s["buf"] = buf
            g = g + momentum * buf if nesterov else buf
        return p - lr * g
    return rule


def adam_rule(lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, decay=True):
    def rule(p, g, s, t):
        m = b1 * s.get("m", 0.0) + (1 - b1) * g
        v = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        s["m"], s["v"] = m, v
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        u = m_hat / (np.sqrt(v_hat) + eps)
        if decay:
            u = u + wd * p                   # decoupled: not through the moments
        return p - lr * u
    return rule


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.1, momentum=0.5, weight_decay=0.01),
    dict(lr=0.1, weight_decay=0.1),
]


@pytest.mark.parametrize("case", SGD_CASES, ids=[str(c) for c in SGD_CASES])
@pytest.mark.parametrize("jit", [False, True])
def test_sgd(case, jit):
    params = _params()
    kw = {k: v for k, v in case.items() if k != "lr"}
    out, _ = _run(optim.sgd(case["lr"], **kw), params, 5, jit=jit)
    ref = _hand(params, 5, sgd_rule(case["lr"], case.get("momentum", 0.0),
                                    case.get("nesterov", False), case.get("weight_decay", 0.0)))
    _close(out, ref)
    if optax is not None:
        ox = optax.chain(optax.add_decayed_weights(case.get("weight_decay", 0.0)),
                         optax.sgd(case["lr"], case.get("momentum") or None,
                                   case.get("nesterov", False)))
        _close(out, _run_optax(ox, params, 5))


def test_sgd_matches_torch_when_installed():
    params = _params()
    out, _ = _run(optim.sgd(0.05, momentum=0.9, nesterov=True, weight_decay=0.01), params, 5)
    ref = _hand(params, 5, sgd_rule(0.05, 0.9, True, 0.01))
    _close(out, ref)
    try:
        import torch
    except ImportError:
        return
    ts = [torch.tensor(l, requires_grad=True) for l in tree_leaves(params)]
    topt = torch.optim.SGD(ts, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)
    for i in range(5):
        for t, g in zip(ts, tree_leaves(_grads(i))):
            t.grad = torch.tensor(g)
        topt.step()
    for a, t in zip(tree_leaves(out), ts):
        np.testing.assert_allclose(np.asarray(a), t.detach().numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(), dict(b1=0.8, b2=0.99, eps=1e-6)])
@pytest.mark.parametrize("jit", [False, True])
def test_adam(kw, jit):
    params = _params(1)
    out, state = _run(optim.adam(0.01, **kw), params, 6, jit=jit)
    ref = _hand(params, 6, adam_rule(0.01, **kw, decay=False))
    _close(out, ref, rtol=1e-10, atol=1e-12)
    assert int(state[0].count) == 6
    if optax is not None:
        _close(out, _run_optax(optax.adam(0.01, **kw), params, 6), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("jit", [False, True])
def test_adamw(jit):
    params = _params(2)
    out, _ = _run(optim.adamw(0.01, weight_decay=0.05), params, 6, jit=jit)
    ref = _hand(params, 6, adam_rule(0.01, wd=0.05))
    _close(out, ref, rtol=1e-10, atol=1e-12)
    if optax is not None:
        _close(out, _run_optax(optax.adamw(0.01, weight_decay=0.05), params, 6), rtol=1e-10,
               atol=1e-12)


def test_adamw_mask_skips_decay():
    params = _params(3)
    mask = lambda p: {"w": True, "b": False, "nested": [False]}  # noqa: E731
    out, _ = _run(optim.adamw(0.01, weight_decay=0.5, mask=mask), params, 3)
    with_decay = _hand(params, 3, adam_rule(0.01, wd=0.5))
    without = _hand(params, 3, adam_rule(0.01, wd=0.0))
    _close(out["w"], with_decay["w"], rtol=1e-10)
    _close(out["b"], without["b"], rtol=1e-10)
    _close(out["nested"], without["nested"], rtol=1e-10)
    if optax is not None:
        ref = _run_optax(optax.adamw(0.01, weight_decay=0.5, mask=mask(None)), params, 3)
        _close(out, ref, rtol=1e-10, atol=1e-12)


def test_first_adam_step_by_hand():
    """After one step Adam's update is lr * g / (|g| + eps) (bias correction)."""
    p = {"x": np.array([1.0, -2.0, 3.0])}
    g = {"x": np.array([0.5, -4.0, 0.0])}
    opt = optim.adam(0.1)
    u, _ = opt.update(g, opt.init(p), p)
    np.testing.assert_allclose(np.asarray(u["x"]), -0.1 * g["x"] / (np.abs(g["x"]) + 1e-8),
                               rtol=1e-12)


def test_schedules_and_clipping():
    params = _params(4)
    sched = optim.exponential_decay(0.1, transition_steps=2, decay_rate=0.5)
    out, _ = _run(optim.sgd(sched), params, 4)
    lrs = [0.1 * 0.5 ** (t / 2) for t in range(4)]
    leaves = [np.array(l) for l in tree_leaves(params)]
    for t, lr in enumerate(lrs):
        leaves = [p - lr * g for p, g in zip(leaves, tree_leaves(_grads(t)))]
    _close(tree_leaves(out), leaves)
    cos = optim.cosine_decay_schedule(1.0, 10, alpha=0.1)
    assert float(cos(0)) == pytest.approx(1.0)
    assert float(cos(5)) == pytest.approx(0.1 + 0.9 * 0.5)
    assert float(cos(20)) == pytest.approx(0.1)
    assert optim.constant_schedule(0.3)(7) == 0.3

    g = {"a": np.array([3.0, 4.0]), "b": np.array([12.0])}   # global norm 13
    clip = optim.clip_by_global_norm(6.5)
    u, _ = clip.update(g, clip.init(g))
    np.testing.assert_allclose(np.asarray(u["a"]), [1.5, 2.0])
    np.testing.assert_allclose(np.asarray(u["b"]), [6.0])
    u, _ = optim.clip_by_global_norm(100.0).update(g, None)
    np.testing.assert_allclose(np.asarray(u["a"]), [3.0, 4.0])
    assert float(optim.global_norm(g)) == pytest.approx(13.0)
    if optax is not None:
        ou, _ = optax.clip_by_global_norm(6.5).update(tree_map(jnp.asarray, g), None)
        _close(clip.update(g, None)[0], ou)


def test_modules_float32_and_jit():
    k1, k2 = random.split(random.key(0))
    model = nn.Sequential(nn.Linear(4, 8, key=k1), nn.tanh, nn.Linear(8, 1, key=k2))
    x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0], np.float32))[:, None]
    opt = optim.adamw(1e-2)
    state = opt.init(model)
    # moments: one flat buffer per parameter leaf
    assert [m.shape for m in state[0].mu] == [l.shape for l in tree_leaves(model)]

    @tg.jit
    def step(model, state):
        loss, g = tg.value_and_grad(lambda m: nn.mse_loss(m(x), y))(model)
        updates, state = opt.update(g, state, model)
        return optim.apply_updates(model, updates), state, loss

    losses = []
    for _ in range(150):
        model, state, loss = step(model, state)
        losses.append(float(loss))
    assert losses[-1] < 0.1 * losses[0]
    assert isinstance(model, nn.Sequential)
    assert all(l.dtype == np.float32 for l in tree_leaves(model))
    assert all(l.dtype == np.float32 for l in tree_leaves(state[0].mu))
    assert state[0].count.dtype == np.int32 and int(state[0].count) == 150
    assert step._trace_count == 1


def test_vmap_over_independent_problems():
    """A batch of 3 independent parameter vectors stepped by one vmapped update."""
    opt = optim.adam(0.1)
    p = np.random.default_rng(1).standard_normal((3, 5))
    g = np.random.default_rng(2).standard_normal((3, 5))

    def one(p, g):
        u, s = opt.update(g, opt.init(p), p)
        return optim.apply_updates(p, u)

    out = tg.vmap(one)(p, g)
    for i in range(3):
        np.testing.assert_allclose(np.asarray(out[i]), np.asarray(one(p[i], g[i])), rtol=1e-12)


def test_minimises_rosenbrock():
    def f(p):
        x, y = p["x"], p["y"]
        return (1 - x) ** 2 + 100 * (y - x * x) ** 2

    opt = optim.adam(0.02)
    p = {"x": np.float64(-1.0), "y": np.float64(1.5)}
    state = opt.init(p)

    @tg.jit
    def step(p, state):
        g = tg.grad(f)(p)
        u, state = opt.update(g, state, p)
        return optim.apply_updates(p, u), state

    for _ in range(3000):
        p, state = step(p, state)
    assert float(p["x"]) == pytest.approx(1.0, abs=2e-2)
    assert float(p["y"]) == pytest.approx(1.0, abs=4e-2)


def test_apply_updates_and_errors():
    p = {"a": np.ones(2, np.float32), "b": None}
    out = optim.apply_updates(p, {"a": np.ones(2), "b": None})
    assert out["b"] is None and out["a"].dtype == np.float32
    np.testing.assert_array_equal(np.asarray(out["a"]), [2.0, 2.0])
    out = optim.apply_updates({"a": np.ones(2)}, {"a": None})
    np.testing.assert_array_equal(np.asarray(out["a"]), [1.0, 1.0])
    opt = optim.adam(0.1)
    state = opt.init({"a": np.ones(2)})
    with pytest.raises(ValueError, match=r"do not match the Adam moments.*\[\(3,\)\].*"
                       r"\[\(2,\)\]"):
        opt.update({"b": np.ones(3)}, state)
    with pytest.raises(ValueError, match="different structures"):
        o = optim.adamw(0.1)
        o.update({"a": np.ones(2)}, o.init({"a": np.ones(2)}), {"a": np.ones(2), "c": 1.0})
    with pytest.raises(ValueError, match="nesterov"):
        optim.sgd(0.1, nesterov=True)
    with pytest.raises(ValueError, match="needs the parameters"):
        o = optim.adamw(0.1)
        o.update({"a": np.ones(2)}, o.init({"a": np.ones(2)}))
    ident = optim.identity()
    u, _ = ident.update({"a": 1.0}, ident.init(None))
    assert u == {"a": 1.0}
    # chain composes: scale then scale
    c = optim.chain(optim.scale(2.0), optim.scale(-0.5))
    u, s = c.update({"a": np.array([3.0])}, c.init(None))
    np.testing.assert_allclose(np.asarray(u["a"]), [-3.0])
    assert len(s) == 2
    # momentum is sgd with momentum
    _close(_run(optim.momentum(0.1, 0.9), _params(), 3)[0],
           _run(optim.sgd(0.1, momentum=0.9), _params(), 3)[0])
