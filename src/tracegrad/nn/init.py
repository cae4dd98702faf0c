"""Parameter initialisers with explicit PRNG keys (as jax.nn.initializers).

Each factory returns ``init(key, shape, dtype=float32) -> Array``::

    w = nn.init.glorot_uniform()(key, (64, 10))
    k = nn.init.he_normal(in_axis=1, out_axis=0)(key, (16, 3, 3, 3))   # OIHW

Fans: ``fan_in = shape[in_axis] * receptive field``, ``fan_out =
shape[out_axis] * receptive field``, where the receptive field is the product
of the other axes (the kernel's spatial size for convolutions). Defaults
(in_axis=-2, out_axis=-1) suit a Linear weight of shape (in, out).

``variance_scaling(scale, mode, distribution)`` draws with variance
``scale / fan`` (fan = fan_in, fan_out or their mean) from a
'truncated_normal' (cut at two standard deviations and rescaled so the
variance is still scale/fan), 'normal' or 'uniform' distribution:

    glorot (xavier) : scale 1, fan_avg      lecun : scale 1, fan_in
    he (kaiming)    : scale 2, fan_in

The *_normal variants use the truncated normal, as JAX does; PyTorch's
``xavier_normal_``/``kaiming_normal_`` use an untruncated normal of the same
variance (``variance_scaling(..., 'normal')``).
"""
from __future__ import annotations

import numpy as np

from .. import dtypes, random
from .. import numpy as tnp
from ..primitives import elementwise as ew

__all__ = [
    "variance_scaling", "glorot_uniform", "glorot_normal", "xavier_uniform", "xavier_normal",
    "he_uniform", "he_normal", "kaiming_uniform", "kaiming_normal", "lecun_uniform",
    "lecun_normal", "zeros", "ones", "constant", "normal", "uniform", "truncated_normal",
]

_DEFAULT_DTYPE = np.dtype(np.float32)

# standard deviation of a unit normal truncated to [-2, 2]; dividing by it
# restores unit variance after truncation
_TRUNC_STD = 0.87962566103423978


def _float_dtype(dtype, who):
    dt = dtypes.canonicalize(dtype)
    if not dtypes.is_float(dt) or dtypes.is_complex(dt):
        raise TypeError(f"nn.init.{who}: dtype must be a real floating type, got {dt}")
    return dt


def _shape(shape, who):
    try:
        return tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"nn.init.{who}: shape must be a tuple of ints, got {shape!r}") from None


def compute_fans(shape, in_axis=-2, out_axis=-1):
    """(fan_in, fan_out) of a weight shape."""
    if len(shape) < 2:
        raise ValueError(f"fans need a weight of rank >= 2, got shape {tuple(shape)}; "
                         f"use zeros/normal/uniform for biases")
    receptive = int(np.prod(shape)) // max(1, shape[in_axis] * shape[out_axis])
    return shape[in_axis] * receptive, shape[out_axis] * receptive


def truncated_normal(key, lower, upper, shape=(), dtype=float):
    """Normal draws conditioned on [lower, upper], by inverting the CDF of a
    uniform draw restricted to [Phi(lower), Phi(upper)]."""
    dt = _float_dtype(dtype, "truncated_normal")
    sqrt2 = np.asarray(np.sqrt(2.0), dt)[()]
    lo_p = np.asarray(lower, dt)[()]
    hi_p = np.asarray(upper, dt)[()]
    # erf(t / sqrt 2) = 2 Phi(t) - 1, so erf_inv of a uniform in [erf(lo), erf(hi)]
    # scaled by sqrt 2 is a normal truncated to [lo, hi]
    a = ew.erf_p.bind(tnp.asarray(lo_p / sqrt2))
    b = ew.erf_p.bind(tnp.asarray(hi_p / sqrt2))
    u = random.uniform(key, shape, dt, a, b)
    z = ew.erf_inv_p.bind(u) * sqrt2
    # rounding can put a draw a hair outside the interval: clip just inside it
    return tnp.clip(z, np.nextafter(lo_p, np.inf), np.nextafter(hi_p, -np.inf))


def variance_scaling(scale, mode, distribution, in_axis=-2, out_axis=-1, dtype=_DEFAULT_DTYPE):
    """Draws with variance ``scale / fan`` (see the module docstring)."""
    if mode not in ("fan_in", "fan_out", "fan_avg"):
        raise ValueError(f"variance_scaling: mode must be 'fan_in', 'fan_out' or 'fan_avg', "
                         f"got {mode!r}")
    if distribution not in ("truncated_normal", "normal", "uniform"):
        raise ValueError(f"variance_scaling: distribution must be 'truncated_normal', 'normal' "
                         f"or 'uniform', got {distribution!r}")

    def init(key, shape, dtype=dtype):
        shape = _shape(shape, "variance_scaling")
        dt = _float_dtype(dtype, "variance_scaling")
        fan_in, fan_out = compute_fans(shape, in_axis, out_axis)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        # the same order of float32 operations as jax.nn.initializers, so the
        # same key gives the same weights
        variance = np.asarray(scale / max(1.0, fan), dt)
        if distribution == "uniform":
            # U(-1, 1) has variance 1/3
            return (random.uniform(key, shape, dt, -1.0, 1.0)
                    * np.sqrt(np.asarray(3, dt) * variance)[()])
        if distribution == "normal":
            return random.normal(key, shape, dt) * np.sqrt(variance)[()]
        z = truncated_normal(key, -2.0, 2.0, shape, dt) * np.sqrt(variance)[()]
        return z / np.asarray(_TRUNC_STD, dt)[()]

    init.__name__ = f"variance_scaling_{mode}_{distribution}"
    return init


def glorot_uniform(in_axis=-2, out_axis=-1, dtype=_DEFAULT_DTYPE):
    return variance_scaling(1.0, "fan_avg", "uniform", in_axis, out_axis, dtype)


def glorot_normal(in_axis=-2, out_axis=-1, dtype=_DEFAULT_DTYPE):
    return variance_scaling(1.0, "fan_avg", "truncated_normal", in_axis, out_axis, dtype)


def he_uniform(in_axis=-2, out_axis=-1, dtype=_DEFAULT_DTYPE):
    return variance_scaling(2.0, "fan_in", "uniform", in_axis, out_axis, dtype)


def he_normal(in_axis=-2, out_axis=-1, dtype=_DEFAULT_DTYPE):
    return variance_scaling(2.0, "fan_in", "truncated_normal", in_axis, out_axis, dtype)


def lecun_uniform(in_axis=-2, out_axis=-1, dtype=_DEFAULT_DTYPE):
    return variance_scaling(1.0, "fan_in", "uniform", in_axis, out_axis, dtype)


def lecun_normal(in_axis=-2, out_axis=-1, dtype=_DEFAULT_DTYPE):
    return variance_scaling(1.0, "fan_in", "truncated_normal", in_axis, out_axis, dtype)


xavier_uniform, xavier_normal = glorot_uniform, glorot_normal
kaiming_uniform, kaiming_normal = he_uniform, he_normal


def zeros(key, shape, dtype=_DEFAULT_DTYPE):
    """All zeros (the key is ignored; it is there so every init looks alike)."""
    return tnp.zeros(_shape(shape, "zeros"), dtypes.canonicalize(dtype))


def ones(key, shape, dtype=_DEFAULT_DTYPE):
    return tnp.ones(_shape(shape, "ones"), dtypes.canonicalize(dtype))


def constant(value, dtype=_DEFAULT_DTYPE):
    def init(key, shape, dtype=dtype):
        return tnp.full(_shape(shape, "constant"), value, dtypes.canonicalize(dtype))
    return init


def normal(stddev=1e-2, dtype=_DEFAULT_DTYPE):
    def init(key, shape, dtype=dtype):
        dt = _float_dtype(dtype, "normal")
        return random.normal(key, _shape(shape, "normal"), dt) * np.asarray(stddev, dt)[()]
    return init


def uniform(scale=1e-2, dtype=_DEFAULT_DTYPE):
    """U[0, scale), as jax.nn.initializers.uniform."""
    def init(key, shape, dtype=dtype):
        dt = _float_dtype(dtype, "uniform")
        return random.uniform(key, _shape(shape, "uniform"), dt, 0.0, scale)
    return init
