"""The backend room: the one place that talks to jaxlib to compile and run.

Buffers are jaxlib's `ArrayImpl` objects (single-device arrays, the same type
as `jax.Array`). Everything else in tracegrad treats them as opaque handles
and goes through this module: `device_put`, `compile`, `execute`, `to_numpy`.

Using a GPU
-----------
Install the CUDA plugin next to jaxlib, e.g. ``pip install "jax[cuda12]"``
(or ``"jax[cuda13]"``). PJRT plugins are discovered when the backend is first
created, then::

    xla.devices("gpu")                       # [CudaDevice(id=0), ...]
    x = xla.device_put(np_array, xla.devices("gpu")[0])
    exe = xla.compile(module, device=xla.devices("gpu")[0])

With a plugin installed the default backend (`backend()`, `default_device()`)
is the GPU; set ``JAX_PLATFORMS=cpu`` to force the CPU.

Executable cache on disk
------------------------
`compile` keeps executables in memory keyed by the module text and device,
and on disk under ``$TRACEGRAD_CACHE_DIR`` (default ``~/.cache/tracegrad``),
keyed by a hash of module text + platform + platform version + device kind +
jaxlib version. ``TRACEGRAD_DISABLE_DISK_CACHE=1`` turns the disk cache off.
Loading a cached executable takes ~1 ms instead of ~20-40 ms of compiling.
"""
from __future__ import annotations

import collections
import functools
import hashlib
import os
import tempfile
import threading

import numpy as np

import jaxlib
from jax._src import core as _jax_core  # the aval class jaxlib arrays carry
from jax.extend import backend as _jax_backend
from jaxlib import _jax

from .. import core as _core
from . import lowering

__all__ = [
    "Buffer", "Executable", "backend", "devices", "default_device",
    "device_put", "compile", "execute", "to_numpy", "cost_analysis",
    "is_buffer", "block_until_ready", "put_array", "sharding_of", "device_of", "is_committed",
]

Buffer = _jax.ArrayImpl  # device array type returned by device_put/execute
_IMMUTABLE = _jax.HostBufferSemantics.IMMUTABLE_ONLY_DURING_CALL
_FLOAT0 = np.dtype([("float0", np.void, 0)])
_CACHE_FORMAT = "1"  # bump to invalidate old disk-cache entries


# ---------------------------------------------------------------- devices

@functools.cache
def backend(platform: str | None = None):
    """PJRT client for a platform ("cpu", "gpu", "cuda", "tpu"; None: default)."""
    return _jax_backend.get_backend(platform)


def devices(platform: str | None = None) -> list:
    return list(backend(platform).local_devices())


@functools.cache
def default_device():
    return backend().local_devices()[0]


@functools.cache
def _sharding(device):
    return _jax.SingleDeviceSharding(device)


@functools.lru_cache(maxsize=4096)
def _jax_aval(shape, dtype):
    # jaxlib arrays carry a jax ShapedArray; jax's own methods (repr, .shape)
    # read it, so give them the real thing.
    return _jax_core.ShapedArray(shape, dtype)


def is_buffer(x) -> bool:
    return type(x) is Buffer


def _device_of(buf):
    return next(iter(buf.devices()))


# ---------------------------------------------------------------- transfers

def device_put(x, device=None) -> Buffer:
    """Host value (numpy array/scalar, Python scalar) or buffer -> buffer.

    Uses jaxlib's `batched_device_put` (~3 us vs ~20 us for jax.device_put).
    IMMUTABLE_ONLY_DURING_CALL: the host data is copied (or finished with)
    before we return, so mutating the numpy array later never changes the
    device value. enable_x64=True: 64-bit dtypes are kept, never truncated.
    A buffer already on `device` (or device=None) is returned as is.
    """
    if type(x) is Buffer:
        if device is None or _device_of(x) == device:
            return x
        return _jax.batched_device_put(x.aval, _sharding(device), [x], [device],
                                       True, False, _IMMUTABLE, True)
    buf = getattr(x, "_buf", None)  # tracegrad core.Array backed by a buffer
    if type(buf) is Buffer:
        return device_put(buf, device)
    arr = np.asarray(x)
    if arr.dtype == _FLOAT0:  # tangent of ints: stored as bool zeros
        arr = np.zeros(arr.shape, np.bool_)
    elif arr.dtype.kind in "OUSM" or arr.dtype.fields is not None:  # bf16 is kind V
        raise TypeError(f"cannot put a value of dtype {arr.dtype} on a device: {x!r}")
    dev = default_device() if device is None else device
    return _jax.batched_device_put(_jax_aval(arr.shape, arr.dtype), _sharding(dev), [arr],
                                   [dev], device is not None, False, _IMMUTABLE, True)


def put_array(arr: np.ndarray, device, sharding=None) -> Buffer:
    """Lean `device_put` for a plain numpy array (jit's cached-call path, ~2 us).
    No conversions or dtype checks: callers fall back to `device_put` when
    this raises. `sharding` may be passed precomputed (`sharding_of(device)`)."""
    return _jax.batched_device_put(_jax_aval(arr.shape, arr.dtype),
                                   sharding or _sharding(device), [arr], [device],
                                   True, False, _IMMUTABLE, True)


def sharding_of(device):
    return _sharding(device)


def device_of(buf):
    """The device a buffer lives on."""
    return _device_of(buf)


def is_committed(buf) -> bool:
    """True for buffers placed on a device on purpose (device_put with a
    device, or computed there): jit runs where committed arguments live."""
    return buf._committed


def to_numpy(x) -> np.ndarray:
    """Buffer -> numpy. Zero-copy on CPU; the result is read-only."""
    WAITED[0] = True
    return np.asarray(x)


def block_until_ready(xs):
    WAITED[0] = True
    for x in xs:
        if type(x) is Buffer:
            x.block_until_ready()
    return xs


# ---------------------------------------------------------------- compile

# Running a program in the caller's thread ("inline") or on PjRt's worker
# thread. PjRt's CPU client runs a program inline only under 1,000 flops; any
# other call hands it to a worker thread, which on this 2-core machine costs
# 5-40 us when the caller then waits for the result (a jacrev of a small tanh
# network: 72 -> 23 us per blocking call inline; det n=4 jacfwd 13 -> 7 us;
# GMM d10 gradient 324 -> 297 us). A caller that does not wait (a training
# loop) gains from the worker thread instead: its Python work overlaps the
# program (MLP training step 68 us async, 93 us inline). So a program runs
# inline when the caller waited for a result since the previous jitted call
# (`WAITED`, set by block_until_ready and host reads), on the CPU, from 1,000
# flops (below, PjRt runs it inline itself) up to _INLINE_MAX_FLOPS (a
# 1.3e8-flop jacfwd ran 733 us async, 866 us inline on the sixth session's
# host; on the seventh's, big programs ran alike either way). XLA counts a
# loop body once, so a loop's size is not bounded; measured, loops gain or
# stay level inline (a 1000-step float32 RNN 572 -> 483 us, RK4 ODE d=4
# jacfwd 375 -> 346 us; ms-long LSTM and ODE loops and a loop of 4e6-flop
# matmuls within noise). jaxlib runs an executable that has host callbacks
# inline (they may re-enter Python), so the inline variant is the same module
# compiled again with a placeholder callback that the program never calls.
# It is compiled in a background thread, asked for by the first call after a
# wait, which (like every call until it is ready) runs on the worker thread
# as before: compiled in the call instead, it made that call as slow as a
# first call. (Compiled again from the text: an executable from the disk
# cache, serialized and loaded once more, had lost its kernels: "Function
# ...fusion.2 not found".)
WAITED = _core.WAITED
_INLINE_MAX_FLOPS = 1e7
_PJRT_INLINE_FLOPS = 1000  # PjRt's CPU client runs programs under this inline


def _never_called():  # pragma: no cover
    raise AssertionError("a tracegrad program called its placeholder host callback")


class Executable:
    """A compiled module bound to one device. Call with buffers."""
    __slots__ = ("loaded", "device", "text", "name", "from_cache", "_handlers", "_inline",
                 "inline_status")

    def __init__(self, loaded, device, text, name, from_cache):
        self.loaded = loaded      # jaxlib LoadedExecutable
        self.device = device
        self.text = text          # StableHLO text it was compiled from
        self.name = name
        self.from_cache = from_cache  # "disk" if loaded from the disk cache, else None
        self._handlers = None     # output result handlers, set on first call
        self._inline = None       # the execute_sharded inline_run returns
        # None (not asked for yet), "compiling", "ready", "pjrt" (PjRt runs it
        # inline itself) or "unavailable"
        self.inline_status = None

    def inline_run(self):
        """`execute_sharded` that runs the program in the caller's thread once
        its inline variant is ready (the usual one until then, and where that
        does not apply: not the CPU, a program PjRt runs inline anyway, a big
        one, or a module that does not compile again)."""
        run = self._inline
        if run is None:
            run = self._inline = self.loaded.execute_sharded
            if self.device.platform == "cpu":
                self.inline_status = "compiling"
                _background.submit(self)
            else:
                self.inline_status = "unavailable"
        return run

    def _compile_inline(self, context):
        """(background thread) Compile the inline variant and switch to it."""
        try:
            flops = self.loaded.cost_analysis().get("flops", np.inf)
            if flops < _PJRT_INLINE_FLOPS:
                self.inline_status = "pjrt"
                return
            if flops > _INLINE_MAX_FLOPS:
                self.inline_status = "unavailable"
                return
            with context:
                module = lowering.ir.Module.parse(self.text)
                again = self.device.client.compile_and_load(
                    module, _jax.DeviceList((self.device,)), _compile_options(self.device),
                    host_callbacks=[_never_called])
        except Exception:  # (best effort: the usual executable still runs it)
            self.inline_status = "unavailable"
            return
        self._inline = again.execute_sharded
        self.inline_status = "ready"

    def __call__(self, *buffers):
        return execute(self, buffers)

    def cost_analysis(self) -> dict:
        return self.loaded.cost_analysis()

    def hlo_text(self) -> str:
        """XLA's optimized HLO (after compilation)."""
        return self.loaded.get_hlo_text()

    def __repr__(self):
        return f"<Executable {self.name} on {self.device}>"


class _BackgroundCompiler:
    """One thread at a time compiles queued inline variants, in an MLIR
    context of its own (the shared one is guarded by lowering.lock, which a
    compile must not hold while the user's thread lowers). The thread ends
    when the queue is empty or the main thread has ended, so at exit Python
    waits for one compile at most; XLA releases the GIL while compiling."""

    def __init__(self):
        self._queue = collections.deque()
        self._lock = threading.Lock()
        self._thread = None
        self._context = None

    def submit(self, exe):
        with self._lock:
            self._queue.append(exe)
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain, daemon=False,
                                                name="tracegrad-inline-compile")
                self._thread.start()

    def _drain(self):
        if self._context is None:
            self._context = lowering.new_ir_context()
        while True:
            with self._lock:
                if not self._queue or not threading.main_thread().is_alive():
                    self._queue.clear()
                    self._thread = None
                    return
                exe = self._queue.popleft()
            exe._compile_inline(self._context)

    def wait(self, timeout=None):
        """Block until the queued compiles are done (tests, benchmarks)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)


_background = _BackgroundCompiler()
wait_for_background_compiles = _background.wait


def cost_analysis(exe: Executable) -> dict:
    """XLA's estimates: 'flops', 'transcendentals', 'bytes accessed', ..."""
    return exe.loaded.cost_analysis()


def _compile_options(device):
    # The DeviceList given to compile_and_load is not enough: without an
    # explicit 1x1 device assignment XLA pins replica 0 to device 0.
    opts = _jax.CompileOptions()
    opts.device_assignment = _jax.DeviceAssignment.create(np.array([[device.id]], np.int32))
    return opts


def _disk_cache_dir():
    if os.environ.get("TRACEGRAD_DISABLE_DISK_CACHE", "") not in ("", "0"):
        return None
    return (os.environ.get("TRACEGRAD_CACHE_DIR")
            or os.path.join(os.path.expanduser("~"), ".cache", "tracegrad"))


def _disk_key(text, device):
    client = device.client
    h = hashlib.sha256()
    for part in (_CACHE_FORMAT, jaxlib.__version__, client.platform,
                 client.platform_version, device.device_kind, text):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _disk_load(path, device, opts):
    try:
        with open(path, "rb") as f:
            data = f.read()
        return device.client.deserialize_executable(data, _jax.DeviceList((device,)), opts)
    except Exception:  # missing, truncated, or from an incompatible build
        return None


def _disk_store(path, loaded, device):
    try:
        data = device.client.serialize_executable(loaded)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # atomic: readers never see half a file
    except Exception:
        pass  # the cache is best effort; some backends cannot serialize


_memory_cache: dict = {}
_MEMORY_CACHE_MAX = 1024


def compile(module, device=None, *, use_cache: bool = True) -> Executable:
    """Compile an `ir.Module` (or StableHLO text) for one device.

    The module object itself is handed to `client.compile_and_load` (jaxlib
    accepts an ir.Module, bytecode or text), so source locations reach XLA's
    op metadata.
    """
    dev = default_device() if device is None else device
    if isinstance(module, str):
        text = module
    else:
        text = lowering.module_text(module)
    mem_key = (text, dev)
    if use_cache:
        hit = _memory_cache.get(mem_key)
        if hit is not None:
            return hit
    name = _module_name(module, text)
    opts = _compile_options(dev)
    cache_dir = _disk_cache_dir() if use_cache else None
    path = os.path.join(cache_dir, _disk_key(text, dev) + ".xla") if cache_dir else None
    loaded = _disk_load(path, dev, opts) if path and os.path.exists(path) else None
    from_cache = "disk" if loaded is not None else None
    if loaded is None:
        devs = _jax.DeviceList((dev,))
        if isinstance(module, str):
            loaded = dev.client.compile_and_load(module, devs, opts)
        else:
            with lowering.lock:  # module lives in the shared MLIR context
                loaded = dev.client.compile_and_load(module, devs, opts)
        if path:
            _disk_store(path, loaded, dev)
    exe = Executable(loaded, dev, text, name, from_cache)
    if use_cache:
        if len(_memory_cache) >= _MEMORY_CACHE_MAX:
            _memory_cache.clear()
        _memory_cache[mem_key] = exe
    return exe


def _module_name(module, text):
    if not isinstance(module, str):
        with lowering.lock:
            attr = module.operation.attributes
            if "sym_name" in attr:
                return lowering.ir.StringAttr(attr["sym_name"]).value
    return "main"


# ---------------------------------------------------------------- execute

def execute(exe: Executable, buffers) -> list:
    """Run on a sequence of buffers (on exe.device); returns output buffers.

    Fast path (~3 us on CPU for f32[8]+f32[8]): `execute_sharded` +
    `consume_with_handlers` with result handlers cached on the executable.
    Non-buffer arguments (numpy, scalars) or buffers on another device are
    transferred first (slow path).
    """
    handlers = exe._handlers
    if handlers is not None:
        try:
            return exe.loaded.execute_sharded(buffers).consume_with_handlers(handlers)
        except (TypeError, _jax.JaxRuntimeError) as e:
            return _execute_slow(exe, buffers, e)
    return _execute_slow(exe, buffers, None)


def _execute_slow(exe, buffers, err):
    dev = exe.device
    moved = [device_put(x, dev) if type(x) is not Buffer or _device_of(x) != dev else x
             for x in buffers]
    if err is not None and all(a is b for a, b in zip(moved, buffers)):
        raise err  # nothing to fix: a real error (shape/dtype/count mismatch)
    outs = [o[0] for o in exe.loaded.execute_sharded(moved).disassemble_into_single_device_arrays()]
    if exe._handlers is None:
        # First call: learn the output avals and build C++ result handlers so
        # later calls skip the per-output Python work (~1.5 us saved).
        sh = _sharding(dev)
        exe._handlers = [_jax.array_result_handler(o.aval, sh, committed=True, _skip_checks=True)
                         for o in outs]
    return outs
