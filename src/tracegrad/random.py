"""tracegrad.random: a small counter-based PRNG (Threefry-2x32, as JAX).

Keys are plain uint32[2] arrays; every draw is a pure function of (key,
shape, dtype) written in tracegrad primitives, so it is reproducible and
gives identical bits eagerly, under jit and under vmap. The bit layout
follows JAX's default ("partitionable") threefry, so float32 draws match
jax.random for the same key.
"""
from __future__ import annotations

import numpy as np

from . import core, dtypes
from . import numpy as tnp
from .primitives import elementwise as ew

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _u32(v):
    return np.asarray(v, np.uint32)[()]


def _rotl(x, r):
    return tnp.bitwise_or(tnp.left_shift(x, _u32(r)), ew.shift_right_logical_p.bind(x, _u32(32 - r)))


def threefry_2x32(k1, k2, x1, x2):
    """The Threefry-2x32 block cipher (20 rounds) on counter words x1, x2."""
    ks = (k1, k2, tnp.bitwise_xor(tnp.bitwise_xor(k1, k2), _u32(0x1BD11BDA)))
    x1 = tnp.add(x1, ks[0])
    x2 = tnp.add(x2, ks[1])
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x1 = tnp.add(x1, x2)
            x2 = tnp.bitwise_xor(_rotl(x2, r), x1)
        x1 = tnp.add(x1, ks[(i + 1) % 3])
        x2 = tnp.add(tnp.add(x2, ks[(i + 2) % 3]), _u32(i + 1))
    return x1, x2


def _check_key(key, fn):
    a = core.get_aval(key)
    if a.dtype != dtypes.uint32 or a.shape[-1:] != (2,):
        raise TypeError(f"random.{fn}: expected a key made by tracegrad.random.key "
                        f"(uint32[2]), got {a.str_short()}")
    if a.ndim != 1:
        raise TypeError(f"random.{fn}: expected a single key of shape (2,), got {a.str_short()}; "
                        f"use vmap to draw with a batch of keys")


def key(seed):
    """A key from an integer seed (64-bit seeds use both words)."""
    if isinstance(seed, (int, np.integer)):
        s = int(seed) & 0xFFFFFFFFFFFFFFFF
        return tnp.asarray(np.array([s >> 32, s & 0xFFFFFFFF], np.uint32))
    seed = tnp.asarray(seed)
    if not dtypes.is_int(seed.dtype) or seed.ndim:
        raise TypeError(f"random.key: seed must be an integer scalar, got {core.get_aval(seed).str_short()}")
    s64 = seed.astype(np.uint64)
    hi = ew.shift_right_logical_p.bind(s64, np.asarray(32, np.uint64)[()]).astype(np.uint32)
    lo = tnp.bitwise_and(s64, np.asarray(0xFFFFFFFF, np.uint64)[()]).astype(np.uint32)
    return tnp.stack([hi, lo])


PRNGKey = key


def _counters(shape):
    """Row-major 64-bit counters of `shape` as (high, low) uint32 words."""
    n = int(np.prod(shape, dtype=np.int64))
    if n >= 2 ** 32:
        raise ValueError("random: more than 2**32 draws in one call are not supported")
    lo = tnp.reshape(tnp.arange(n, dtype=np.uint32), shape)
    return tnp.zeros(shape, np.uint32), lo


def _bits(key, shape):
    k1, k2 = key[0], key[1]
    c1, c2 = _counters(shape)
    return threefry_2x32(k1, k2, c1, c2)


def split(key, num=2):
    """`num` new independent keys, shape (num, 2)."""
    _check_key(key, "split")
    shape = (num,) if isinstance(num, int) else tuple(num)
    b1, b2 = _bits(key, shape)
    return tnp.stack([b1, b2], axis=-1)


def fold_in(key, data):
    """A new key deterministically derived from key and an integer."""
    _check_key(key, "fold_in")
    # JAX hashes the counter pair (0, data) with the key
    d = tnp.asarray(data).astype(np.uint32)
    b1, b2 = threefry_2x32(key[0], key[1], tnp.zeros((), np.uint32), d)
    return tnp.stack([b1, b2])


def bits(key, shape=(), width=32):
    _check_key(key, "bits")
    b1, b2 = _bits(key, tuple(shape))
    if width == 32:
        return tnp.bitwise_xor(b1, b2)
    hi = b1.astype(np.uint64)
    return tnp.bitwise_or(tnp.left_shift(hi, np.asarray(32, np.uint64)[()]), b2.astype(np.uint64))


def uniform(key, shape=(), dtype=float, minval=0.0, maxval=1.0):
    """Uniform floats in [minval, maxval)."""
    _check_key(key, "uniform")
    dt = dtypes.canonicalize(dtype)
    if not dtypes.is_float(dt) or dtypes.is_complex(dt):
        raise TypeError(f"random.uniform: dtype must be a real float, got {dt}")
    shape = tuple(shape)
    if dt == dtypes.float64:
        b = bits(key, shape, 64)
        mant = ew.shift_right_logical_p.bind(b, np.asarray(12, np.uint64)[()])
        u = mant.astype(np.float64) * np.float64(2.0 ** -52)
    else:
        b = bits(key, shape, 32)
        mant = ew.shift_right_logical_p.bind(b, _u32(9))
        u = (mant.astype(np.float32) * np.float32(2.0 ** -23)).astype(dt)
    lo = tnp.asarray(minval, dt)
    hi = tnp.asarray(maxval, dt)
    return tnp.maximum(lo, u * (hi - lo) + lo)


def normal(key, shape=(), dtype=float):
    """Standard normal draws (inverse-CDF of a uniform, as JAX)."""
    dt = dtypes.canonicalize(dtype)
    lo = np.nextafter(np.asarray(-1.0, dt), np.asarray(0.0, dt))
    u = uniform(key, shape, dt, lo, 1.0)
    return ew.erf_inv_p.bind(u) * np.asarray(np.sqrt(2.0), dt)[()]


def bernoulli(key, p=0.5, shape=None):
    """Boolean draws that are True with probability p."""
    p = tnp.asarray(p)
    if shape is None:
        shape = p.shape
    dt = p.dtype if dtypes.is_float(p.dtype) else np.float32
    return uniform(key, shape, dt) < p


def randint(key, shape, minval, maxval, dtype=np.int64):
    """Integers in [minval, maxval) (by scaling a uniform; fine for small ranges)."""
    u = uniform(key, shape, np.float64)
    lo, hi = tnp.asarray(minval), tnp.asarray(maxval)
    return tnp.clip(tnp.floor(u * (hi - lo) + lo), lo, hi - 1).astype(dtype)


def permutation(key, n):
    """A random permutation of arange(n) (argsort of uniform draws)."""
    return tnp.argsort(uniform(key, (n,)))
