"""jit on the CPU: after the caller waited for a result (block_until_ready, a
host read), the next call runs its program in the caller's thread (the
executable loaded again with a placeholder host callback); calls nobody waits
for, and big programs, keep PjRt's worker thread. Results are the same bits
either way."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tracegrad as tg
import tracegrad.numpy as tnp
from tracegrad import core
from tracegrad.interpreters import xla


@pytest.fixture(autouse=True)
def _fresh_executables(monkeypatch):
    # each test compiles its own: executables are cached by module text
    monkeypatch.setenv("TRACEGRAD_DISABLE_DISK_CACHE", "1")
    monkeypatch.setattr(xla, "_memory_cache", {})


def small(np_):
    def f(x, w):
        return np_.tanh(w @ x).sum() * x
    return f


def args(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n), rng.standard_normal((n, n))


def executable(jf):
    """The Executable behind a jitted function's cached fast path."""
    (rec,) = jf._fast.values()
    return rec[-1]


def fast_path_only(monkeypatch):
    """Fail instead of falling back to the slow path (which would also give
    the right answer, hiding a broken inline executable)."""
    def slow(self, *a):
        raise AssertionError("the cached call fell back to the slow path")
    monkeypatch.setattr(type(tg.jit(abs)), "_call_slow", slow)


def test_a_call_after_a_wait_runs_inline_and_agrees(monkeypatch):
    x, w = args()
    jf = tg.jit(small(tnp))
    xs, ws = tg.device_put(x), tg.device_put(w)
    core.WAITED[0] = False
    first = jf(xs, ws)                  # compiles; runs on the worker thread
    jf(xs, ws)                          # nobody waited: still no inline variant
    exe = executable(jf)
    assert exe._inline is None
    first.block_until_ready()           # the caller waits ...
    assert core.WAITED[0]
    fast_path_only(monkeypatch)
    second = jf(xs, ws)                 # ... so this call runs inline:
    assert second._buf.is_ready()       # computed before the call returned
    assert not core.WAITED[0]
    assert exe._inline is not None and exe._inline.__self__ is not exe.loaded
    ref = jax.jit(small(jnp))(x, w)
    for out in (first, second):
        assert np.asarray(out).tobytes() == np.asarray(ref).tobytes()


def test_a_host_read_counts_as_waiting(monkeypatch):
    x, w = args(seed=1)
    jf = tg.jit(small(tnp))
    y = jf(x, w)
    core.WAITED[0] = False
    float(y[0])                         # reads the device result on the host
    assert core.WAITED[0]
    fast_path_only(monkeypatch)
    jf(x, w)
    assert executable(jf)._inline is not None


def test_big_programs_keep_the_worker_thread(monkeypatch):
    monkeypatch.setattr(xla, "_INLINE_MAX_FLOPS", 100.0)
    x, w = args(seed=2)
    jf = tg.jit(small(tnp))
    jf(x, w).block_until_ready()
    out = jf(x, w)
    exe = executable(jf)
    assert exe._inline.__self__ is exe.loaded   # the usual one, remembered
    np.testing.assert_array_equal(np.asarray(out), np.asarray(jax.jit(small(jnp))(x, w)))


def test_an_executable_that_cannot_be_reloaded_runs_as_usual(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("cannot load it again here")
    x, w = args(seed=3)
    jf = tg.jit(small(tnp))
    jf(x, w).block_until_ready()
    monkeypatch.setattr(xla, "_compile_options", broken)
    out = jf(x, w)
    exe = executable(jf)
    assert exe._inline.__self__ is exe.loaded
    np.testing.assert_array_equal(np.asarray(out), np.asarray(jax.jit(small(jnp))(x, w)))


def test_inline_calls_donate_and_alias_like_the_usual_ones(monkeypatch):
    def step(p, g):
        return p - 0.1 * g, (g * g).sum()
    jf = tg.jit(step, donate_argnums=0)
    p = tg.device_put(np.arange(6.0))
    g = tg.device_put(np.ones(6))
    p, s = jf(p, g)
    s.block_until_ready()
    fast_path_only(monkeypatch)
    for _ in range(3):                  # each call after a wait runs inline
        p, s = jf(p, g)
        assert float(s) == 6.0
    np.testing.assert_allclose(np.asarray(p), np.arange(6.0) - 0.4)
    assert executable(jf)._inline is not None


def test_loops_nobody_waits_in_stay_on_the_worker_thread():
    x, w = args(seed=4)
    jf = tg.jit(small(tnp))
    xs, ws = tg.device_put(x), tg.device_put(w)
    core.WAITED[0] = False
    for _ in range(5):
        y = jf(xs, ws)
    assert executable(jf)._inline is None
    np.testing.assert_allclose(np.asarray(y), np.asarray(jax.jit(small(jnp))(x, w)),
                               rtol=1e-12)


def test_programs_with_loops_keep_the_worker_thread():
    import tracegrad.lax as lax
    jf = tg.jit(lambda x: lax.fori_loop(0, 5, lambda i, c: c * 1.5, x))
    x = np.ones(3)
    jf(x).block_until_ready()
    out = jf(x)
    exe = executable(jf)
    assert exe._inline.__self__ is exe.loaded
    np.testing.assert_array_equal(np.asarray(out), np.full(3, 1.5 ** 5))


def test_an_executable_from_the_disk_cache_runs_inline(monkeypatch, tmp_path):
    # serialized again, an executable that came from the disk cache lost its
    # kernels ("Function bitcast_gather_fusion.2 not found"): the inline
    # variant is compiled from the module text instead
    monkeypatch.setenv("TRACEGRAD_DISABLE_DISK_CACHE", "0")
    monkeypatch.setenv("TRACEGRAD_CACHE_DIR", str(tmp_path))
    x, w = args(seed=5)
    tg.jit(small(tnp))(x, w)                        # compiled, stored on disk
    monkeypatch.setattr(xla, "_memory_cache", {})
    jf = tg.jit(small(tnp))
    first = jf(x, w)                                 # loaded from the disk
    assert executable(jf).from_cache == "disk"
    first.block_until_ready()
    fast_path_only(monkeypatch)
    out = jf(x, w)
    assert executable(jf)._inline.__self__ is not executable(jf).loaded
    assert np.asarray(out).tobytes() == np.asarray(first).tobytes()
