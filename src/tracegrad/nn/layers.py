"""Layers: Linear, Conv2d, pooling, Dropout and activation modules.

Layouts: Linear weights are (in_features, out_features) and compute
``x @ W + b`` over the last axis of x (any leading axes). Convolutions and
pooling take NCHW inputs (or an unbatched CHW input, handy under vmap); conv
kernels are OIHW. Parameters are float32 unless ``dtype=`` says otherwise.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes, random
from .. import numpy as tnp
from ..core import get_aval
from ..numpy._util import promote
from ..primitives.conv import conv_general_dilated
from ..primitives.windowed import reduce_window
from . import functional as F
from . import init as initializers
from .module import Module

__all__ = ["Linear", "Dense", "Conv2d", "MaxPool2d", "AvgPool2d", "Dropout", "ReLU", "Sigmoid",
           "Tanh", "Softplus", "GELU", "SiLU", "LeakyReLU", "ELU", "Softmax", "LogSoftmax"]


def _need_key(key, who):
    if key is None:
        raise TypeError(f"{who} needs a PRNG key for its initial parameters: pass "
                        f"key=tracegrad.random.key(seed) (split it for each layer)")
    a = get_aval(key)
    if a.shape != (2,) or a.dtype != dtypes.uint32:
        raise TypeError(f"{who}: key must be a tracegrad.random key (uint32[2]), got "
                        f"{a.str_short()}")
    return key


def _pair(v, what, who):
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    t = tuple(int(e) for e in v)
    if len(t) != 2:
        raise ValueError(f"{who}: {what} must be an int or a pair of ints, got {v!r}")
    return t


def _spatial_padding(padding, who):
    """'SAME'/'VALID', int, (ph, pw) or ((lo, hi), (lo, hi)) -> str or pairs."""
    if isinstance(padding, str):
        p = padding.upper()
        if p not in ("SAME", "VALID"):
            raise ValueError(f"{who}: padding must be 'SAME', 'VALID', an int or pairs, got "
                             f"{padding!r}")
        return p
    if isinstance(padding, (int, np.integer)):
        return ((int(padding),) * 2,) * 2
    padding = tuple(padding)
    if len(padding) == 2 and all(isinstance(p, (int, np.integer)) for p in padding):
        return tuple((int(p), int(p)) for p in padding)
    if len(padding) == 2 and all(len(tuple(p)) == 2 for p in padding):
        return tuple((int(lo), int(hi)) for lo, hi in padding)
    raise ValueError(f"{who}: padding must be 'SAME', 'VALID', an int, (ph, pw) or "
                     f"((top, bottom), (left, right)), got {padding!r}")


def _out_size(n, k, s, pad, d=1):
    """Output length of a window op along one axis (0 when it does not fit)."""
    eff = (k - 1) * d + 1
    if pad == "SAME":
        return -(-n // s)
    lo, hi = (0, 0) if pad == "VALID" else pad
    return max(0, (n + lo + hi - eff) // s + 1)


def _check_image(layer, x, channels=None):
    """x must be NCHW (or CHW); returns its aval."""
    a = get_aval(x)
    if a.ndim not in (3, 4):
        want = "(N, C, H, W) or (C, H, W)" if channels is None else \
            f"(N, {channels}, H, W) or ({channels}, H, W)"
        raise layer._error(f"expected an input of shape {want}, got shape {a.shape}")
    if channels is not None and a.shape[-3] != channels:
        raise layer._error(f"expected {channels} input channels (axis {a.ndim - 3} of an "
                           f"{'NCHW' if a.ndim == 4 else 'CHW'} input), got shape {a.shape} "
                           f"with {a.shape[-3]}")
    return a


class Linear(Module):
    """y = x @ weight + bias, weight (in_features, out_features)."""

    def __init__(self, in_features, out_features, *, key=None, bias=True, dtype=np.float32,
                 weight_init=None, bias_init=None):
        who = f"Linear({in_features}, {out_features})"
        key = _need_key(key, who)
        wkey, bkey = random.split(key)
        weight_init = weight_init or initializers.glorot_uniform()
        bias_init = bias_init or initializers.zeros
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = weight_init(wkey, (self.in_features, self.out_features), dtype)
        self.bias = bias_init(bkey, (self.out_features,), dtype) if bias else None

    def _describe(self):
        return f"Linear(in_features={self.in_features}, out_features={self.out_features})"

    def __call__(self, x):
        a = get_aval(x)
        if a.ndim == 0 or a.shape[-1] != self.in_features:
            raise self._error(f"expected an input of shape (..., {self.in_features}), got shape "
                              f"{a.shape}")
        y = tnp.matmul(x, self.weight)
        return y if self.bias is None else y + self.bias


Dense = Linear


class Conv2d(Module):
    """2-D convolution over NCHW (or CHW) inputs with an OIHW kernel.

    padding: 'VALID' (default), 'SAME', an int, (ph, pw) or
    ((top, bottom), (left, right)); stride and dilation: int or pair.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding="VALID",
                 dilation=1, *, key=None, bias=True, dtype=np.float32, weight_init=None,
                 bias_init=None):
        who = f"Conv2d({in_channels}, {out_channels}, kernel_size={kernel_size})"
        key = _need_key(key, who)
        wkey, bkey = random.split(key)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size", who)
        self.stride = _pair(stride, "stride", who)
        self.dilation = _pair(dilation, "dilation", who)
        self.padding = _spatial_padding(padding, who)
        weight_init = weight_init or initializers.glorot_uniform(in_axis=1, out_axis=0)
        bias_init = bias_init or initializers.zeros
        self.weight = weight_init(wkey, (self.out_channels, self.in_channels) + self.kernel_size,
                                  dtype)
        self.bias = bias_init(bkey, (self.out_channels,), dtype) if bias else None

    def _describe(self):
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding!r})")

    def __call__(self, x):
        a = _check_image(self, x, self.in_channels)
        h, w = a.shape[-2:]
        pads = (self.padding,) * 2 if isinstance(self.padding, str) else self.padding
        oh, ow = (_out_size(n, k, s, p, d) for n, k, s, p, d in
                  zip((h, w), self.kernel_size, self.stride, pads, self.dilation))
        if oh == 0 or ow == 0:
            raise self._error(f"input of spatial size {(h, w)} is too small for the kernel "
                              f"{self.kernel_size} with padding {self.padding!r}, got input "
                              f"shape {a.shape}")
        unbatched = a.ndim == 3
        if unbatched:
            x = x[None]
        x, wgt = promote(x, self.weight)
        y = conv_general_dilated(x, wgt, self.stride, self.padding, rhs_dilation=self.dilation)
        if self.bias is not None:
            y = y + self.bias.reshape(self.out_channels, 1, 1)
        return y[0] if unbatched else y


class _Pool(Module):
    _kind = None

    def __init__(self, kernel_size, stride=None, padding=0):
        who = f"{type(self).__name__}({kernel_size})"
        self.kernel_size = _pair(kernel_size, "kernel_size", who)
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", who)
        self.padding = _spatial_padding(padding, who)

    def _describe(self):
        return (f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding!r})")

    def _pool(self, x):
        a = _check_image(self, x)
        h, w = a.shape[-2:]
        pads = (self.padding,) * 2 if isinstance(self.padding, str) else self.padding
        if any(_out_size(n, k, s, p) == 0 for n, k, s, p in
               zip((h, w), self.kernel_size, self.stride, pads)):
            raise self._error(f"input of spatial size {(h, w)} is smaller than the window "
                              f"{self.kernel_size}, got input shape {a.shape}")
        lead = (1,) * (a.ndim - 2)
        if isinstance(self.padding, str):
            padding = self.padding
        else:
            padding = ((0, 0),) * (a.ndim - 2) + self.padding
        return reduce_window(x, self._kind, lead + self.kernel_size, lead + self.stride, padding)


class MaxPool2d(_Pool):
    """Max over kh x kw windows of NCHW (or CHW) inputs; stride defaults to
    the window size. Padding positions never win (they are -inf)."""
    _kind = "max"

    def __call__(self, x):
        return self._pool(x)


class AvgPool2d(_Pool):
    """Mean over kh x kw windows (padding counts as zeros in the mean, as
    PyTorch's count_include_pad=True)."""
    _kind = "add"

    def __call__(self, x):
        a = get_aval(x)
        if not dtypes.is_float(a.dtype):
            x = x.astype(np.float32)
        s = self._pool(x)
        return s / np.asarray(self.kernel_size[0] * self.kernel_size[1], get_aval(s).dtype)[()]


class Dropout(Module):
    """Zeroes each element with probability `rate` and scales the rest by
    1 / (1 - rate), so the expected value is unchanged. Needs an explicit
    PRNG key: ``layer(x, key=k)``; identity when deterministic (set at
    construction, by ``nn.inference_mode(model)``, or per call)."""

    _stochastic = True

    def __init__(self, rate=0.5, deterministic=False):
        rate = float(rate)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"Dropout: rate must be in [0, 1], got {rate}")
        self.rate, self.deterministic = rate, bool(deterministic)

    def _describe(self):
        return f"Dropout(rate={self.rate})"

    def __call__(self, x, *, key=None, deterministic=None):
        det = self.deterministic if deterministic is None else deterministic
        if det or self.rate == 0.0:
            return x
        if key is None:
            raise ValueError(f"{self._describe()} needs a PRNG key in training mode: call "
                             f"model(x, key=k), or use nn.inference_mode(model) (or "
                             f"deterministic=True) for evaluation")
        x = tnp.asarray(x)
        if self.rate == 1.0:
            return tnp.zeros_like(x)
        dt = get_aval(x).dtype
        dt = dt if dtypes.is_float(dt) else np.dtype(np.float32)
        keep = random.uniform(key, get_aval(x).shape, dt) >= np.asarray(self.rate, dt)[()]
        return tnp.where(keep, x / np.asarray(1.0 - self.rate, dt)[()], tnp.zeros_like(x))


# --------------------------------------------------------------------------
# activations as layers


class ReLU(Module):
    def __call__(self, x):
        return F.relu(x)


class Sigmoid(Module):
    def __call__(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def __call__(self, x):
        return F.tanh(x)


class Softplus(Module):
    def __call__(self, x):
        return F.softplus(x)


class SiLU(Module):
    def __call__(self, x):
        return F.silu(x)


class GELU(Module):
    def __init__(self, approximate=True):
        self.approximate = bool(approximate)

    def __call__(self, x):
        return F.gelu(x, self.approximate)


class LeakyReLU(Module):
    def __init__(self, negative_slope=0.01):
        self.negative_slope = float(negative_slope)

    def __call__(self, x):
        return F.leaky_relu(x, self.negative_slope)


class ELU(Module):
    def __init__(self, alpha=1.0):
        self.alpha = float(alpha)

    def __call__(self, x):
        return F.elu(x, self.alpha)


class Softmax(Module):
    def __init__(self, axis=-1):
        self.axis = int(axis)

    def __call__(self, x):
        return F.softmax(x, self.axis)


class LogSoftmax(Module):
    def __init__(self, axis=-1):
        self.axis = int(axis)

    def __call__(self, x):
        return F.log_softmax(x, self.axis)
