"""jit on the CPU: after the caller waited for a result (block_until_ready, a
host read), a call runs its program in the caller's thread, through a variant
of the executable compiled with a placeholder host callback in a background
thread (asked for by the first call after a wait, which, like every call until
the variant is ready, keeps PjRt's worker thread). Calls nobody waits for and
big programs keep the worker thread; programs under 1,000 flops PjRt runs
inline itself. Results are the same bits either way."""
import subprocess
import sys
import threading

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
    yield
    xla.wait_for_background_compiles()


def small(np_):
    def f(x, w):
        return np_.tanh(w @ x).sum() * x
    return f


def args(n=32, seed=0):  # (2k+ flops: over PjRt's own inline limit)
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


def runs_inline(exe):
    return exe.inline_status == "ready" and exe._inline.__self__ is not exe.loaded


def test_a_call_after_a_wait_runs_inline_and_agrees(monkeypatch):
    x, w = args()
    jf = tg.jit(small(tnp))
    xs, ws = tg.device_put(x), tg.device_put(w)
    core.WAITED[0] = False
    first = jf(xs, ws)                  # compiles; runs on the worker thread
    jf(xs, ws)                          # nobody waited: no inline variant asked for
    exe = executable(jf)
    assert exe.inline_status is None
    first.block_until_ready()           # the caller waits ...
    assert core.WAITED[0]
    fast_path_only(monkeypatch)
    jf(xs, ws)                          # ... so this call asks for the variant
    assert not core.WAITED[0]
    assert exe.inline_status in ("compiling", "ready")
    xla.wait_for_background_compiles()
    assert runs_inline(exe)
    first.block_until_ready()
    second = jf(xs, ws)                 # after a wait, with the variant ready:
    assert second._buf.is_ready()       # computed before the call returned
    ref = jax.jit(small(jnp))(x, w)
    for out in (first, second):
        assert np.asarray(out).tobytes() == np.asarray(ref).tobytes()


def test_the_call_that_asks_for_the_variant_does_not_wait_for_its_compile(monkeypatch):
    # compiled in the call, the variant made that call as slow as a first call
    release = threading.Event()
    original = xla.Executable._compile_inline

    def slow_compile(self, context):
        assert release.wait(60)
        original(self, context)
    monkeypatch.setattr(xla.Executable, "_compile_inline", slow_compile)
    x, w = args(seed=6)
    jf = tg.jit(small(tnp))
    jf(x, w).block_until_ready()
    fast_path_only(monkeypatch)
    outs = [jf(x, w) for _ in range(3)]          # the compile is held back ...
    for y in outs:
        y.block_until_ready()                    # (each a wait: asks again, no-op)
    exe = executable(jf)
    assert exe.inline_status == "compiling"      # ... yet every call returned
    release.set()
    xla.wait_for_background_compiles()
    assert runs_inline(exe)
    ref = np.asarray(jax.jit(small(jnp))(x, w))
    for y in outs + [jf(x, w)]:
        assert np.asarray(y).tobytes() == ref.tobytes()


def test_a_host_read_counts_as_waiting(monkeypatch):
    x, w = args(seed=1)
    jf = tg.jit(small(tnp))
    y = jf(x, w)
    core.WAITED[0] = False
    float(y[0])                         # reads the device result on the host
    assert core.WAITED[0]
    fast_path_only(monkeypatch)
    jf(x, w)
    xla.wait_for_background_compiles()
    assert runs_inline(executable(jf))


def test_big_programs_keep_the_worker_thread(monkeypatch):
    monkeypatch.setattr(xla, "_INLINE_MAX_FLOPS", 100.0)
    x, w = args(seed=2)
    jf = tg.jit(small(tnp))
    jf(x, w).block_until_ready()
    jf(x, w).block_until_ready()
    xla.wait_for_background_compiles()
    out = jf(x, w)
    exe = executable(jf)
    assert exe.inline_status == "unavailable"
    assert exe._inline.__self__ is exe.loaded   # the usual one, remembered
    np.testing.assert_array_equal(np.asarray(out), np.asarray(jax.jit(small(jnp))(x, w)))


def test_an_executable_that_does_not_compile_again_runs_as_usual(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("cannot compile it again here")
    x, w = args(seed=3)
    jf = tg.jit(small(tnp))
    jf(x, w).block_until_ready()
    monkeypatch.setattr(xla, "_compile_options", broken)
    jf(x, w).block_until_ready()
    xla.wait_for_background_compiles()
    out = jf(x, w)
    exe = executable(jf)
    assert exe.inline_status == "unavailable" and exe._inline.__self__ is exe.loaded
    np.testing.assert_array_equal(np.asarray(out), np.asarray(jax.jit(small(jnp))(x, w)))


def test_inline_calls_donate_and_alias_like_the_usual_ones(monkeypatch):
    def step(p, g):
        return p - 0.1 * g, (g * g).sum()
    jf = tg.jit(step, donate_argnums=0)
    p = tg.device_put(np.arange(600.0))   # (1,800 flops: over PjRt's own inline limit)
    g = tg.device_put(np.ones(600))
    p, s = jf(p, g)
    s.block_until_ready()
    p, s = jf(p, g)                     # asks for the variant
    xla.wait_for_background_compiles()
    fast_path_only(monkeypatch)
    for _ in range(3):                  # each call after a wait runs inline
        assert float(s) == 600.0
        old = p
        p, s = jf(p, g)
        assert old._buf.is_deleted()    # donated
    assert runs_inline(executable(jf))
    np.testing.assert_allclose(np.asarray(p), np.arange(600.0) - 0.5)


def test_loops_nobody_waits_in_stay_on_the_worker_thread():
    x, w = args(seed=4)
    jf = tg.jit(small(tnp))
    xs, ws = tg.device_put(x), tg.device_put(w)
    core.WAITED[0] = False
    for _ in range(5):
        y = jf(xs, ws)
    assert executable(jf).inline_status is None
    np.testing.assert_allclose(np.asarray(y), np.asarray(jax.jit(small(jnp))(x, w)),
                               rtol=1e-12)


def test_loops_run_inline_too(monkeypatch):
    # (XLA counts a loop body once: 600 elements x 2 flops)
    import tracegrad.lax as lax
    jf = tg.jit(lambda x: lax.fori_loop(0, 5, lambda i, c: c * 1.5 + 1.0, x))
    x = tg.device_put(np.ones(600))
    jf(x).block_until_ready()
    jf(x).block_until_ready()
    xla.wait_for_background_compiles()
    fast_path_only(monkeypatch)
    out = jf(x)
    assert runs_inline(executable(jf)) and out._buf.is_ready()
    ref = jax.jit(lambda x: jax.lax.fori_loop(0, 5, lambda i, c: c * 1.5 + 1.0, x))(np.ones(600))
    assert np.asarray(out).tobytes() == np.asarray(ref).tobytes()


def test_programs_pjrt_runs_inline_itself_get_no_copy():
    jf = tg.jit(lambda x: x * 2.0 + 1.0)       # 2 x 100 flops: under PjRt's 1,000
    x = tg.device_put(np.ones(100))
    jf(x).block_until_ready()
    jf(x).block_until_ready()
    xla.wait_for_background_compiles()
    exe = executable(jf)
    assert exe.inline_status == "pjrt" and exe._inline.__self__ is exe.loaded
    out = jf(x)
    assert out._buf.is_ready()                 # (PjRt ran it in this thread)
    np.testing.assert_array_equal(np.asarray(out), np.full(100, 3.0))


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
    jf(x, w).block_until_ready()
    xla.wait_for_background_compiles()
    assert runs_inline(executable(jf))
    out = jf(x, w)
    assert np.asarray(out).tobytes() == np.asarray(first).tobytes()


def test_a_process_that_exits_during_a_background_compile_exits_cleanly():
    code = """
import numpy as np, tracegrad as tg, tracegrad.numpy as tnp
from tracegrad.interpreters import xla
f = tg.jit(lambda x: tnp.tanh(x @ x.T).sum(0) * x[0])
x = np.ones((16, 16))
f(x).block_until_ready()
y = f(x)                      # asks for the inline variant, then exits at once
print(float(y[1]))
print(xla.Executable.__name__, "done")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={"TRACEGRAD_DISABLE_DISK_CACHE": "1",
                                            "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-2:] == ["Executable", "done"]
