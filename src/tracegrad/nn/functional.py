"""Activation functions and losses (plain functions of arrays).

Numerically stable forms: softplus/log_sigmoid via logaddexp, softmax and
log_softmax shift by the (gradient-stopped) maximum, binary cross-entropy
from logits never forms sigmoid(x) explicitly. Derivatives at kinks follow
jax.nn: relu'(0) = 0.

Losses take ``reduction='mean' | 'sum' | 'none'``.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from .. import numpy as tnp
from ..core import ShapeDtypeError, Tracer, get_aval
from ..custom_derivatives import stop_gradient
from ..numpy._util import promote_inexact
from ..primitives import elementwise as ew

__all__ = [
    "relu", "relu6", "leaky_relu", "elu", "sigmoid", "log_sigmoid", "tanh", "softplus", "silu",
    "swish", "gelu", "softmax", "log_softmax", "one_hot",
    "mse_loss", "mse", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "softmax_cross_entropy", "cross_entropy", "accuracy",
]


def _float(x):
    return promote_inexact(tnp.asarray(x))[0]


def _c(x, v):
    """A scalar constant of x's dtype (keeps float32 models float32)."""
    return np.asarray(v, get_aval(x).dtype)[()]


# --------------------------------------------------------------------------
# activations


def relu(x):
    """max(x, 0), with derivative 0 at 0 (as jax.nn.relu); NaN stays NaN."""
    x = tnp.asarray(x)
    # select, not maximum: maximum's derivative at a tie is 1/2
    return tnp.where(x <= 0, tnp.zeros_like(x), x)


def relu6(x):
    """min(max(x, 0), 6) with derivative 0 at both kinks (as jax.nn.relu6)."""
    x = tnp.asarray(x)
    # selects, not minimum: minimum's derivative at the tie x == 6 is 1/2
    six = tnp.full_like(x, 6)
    return tnp.where(x >= 6, six, relu(x))


def leaky_relu(x, negative_slope=0.01):
    x = _float(x)
    return tnp.where(x >= 0, x, x * _c(x, negative_slope))


def elu(x, alpha=1.0):
    x = _float(x)
    # expm1 of the clamped value: no overflow (and no inf * 0 in the
    # derivative) for large positive x on the branch not taken
    neg = tnp.expm1(tnp.where(x > 0, tnp.zeros_like(x), x)) * _c(x, alpha)
    return tnp.where(x > 0, x, neg)


def sigmoid(x):
    return ew.logistic_p.bind(_float(x))


def log_sigmoid(x):
    """log(sigmoid(x)) = -softplus(-x), finite for large |x|."""
    return -softplus(-_float(x))


def tanh(x):
    return tnp.tanh(x)


def softplus(x):
    """log(1 + exp(x)), stably: logaddexp(x, 0)."""
    x = _float(x)
    return tnp.logaddexp(x, tnp.zeros_like(x))


def silu(x):
    x = _float(x)
    return x * sigmoid(x)


swish = silu


def gelu(x, approximate=True):
    """Gaussian error linear unit: x * Phi(x); approximate=True uses the tanh
    formula (jax.nn.gelu's default), False the exact erf form."""
    x = _float(x)
    if approximate:
        inner = _c(x, np.sqrt(2.0 / np.pi)) * (x + _c(x, 0.044715) * (x * x * x))
        return x * (_c(x, 0.5) * (_c(x, 1.0) + tnp.tanh(inner)))
    return x * (ew.erf_p.bind(x * _c(x, 1.0 / np.sqrt(2.0))) + _c(x, 1.0)) * _c(x, 0.5)


def _shifted(x, axis):
    # subtracting the max keeps exp() from overflowing; its gradient would
    # cancel out anyway, so stop it (fewer operations to differentiate)
    return x - stop_gradient(tnp.max(x, axis=axis, keepdims=True))


def softmax(x, axis=-1):
    x = _float(x)
    e = tnp.exp(_shifted(x, axis))
    return e / tnp.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    x = _float(x)
    s = _shifted(x, axis)
    return s - tnp.log(tnp.sum(tnp.exp(s), axis=axis, keepdims=True))


def one_hot(labels, num_classes, dtype=np.float32):
    """labels[..., None] == arange(num_classes), as `dtype`."""
    labels = tnp.asarray(labels)
    return (labels[..., None] == tnp.arange(int(num_classes), dtype=labels.dtype)).astype(dtype)


# --------------------------------------------------------------------------
# losses


def _reduce(loss, reduction, who):
    if reduction == "mean":
        return tnp.mean(loss)
    if reduction == "sum":
        return tnp.sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{who}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _same_shape(a, b, who, an, bn):
    sa, sb = get_aval(a).shape, get_aval(b).shape
    if sa != sb:
        raise ShapeDtypeError(f"{who}: {an} and {bn} must have the same shape, got {an} {sa} "
                              f"and {bn} {sb}")


def mse_loss(pred, target, reduction="mean"):
    """Mean squared error."""
    pred, target = tnp.asarray(pred), tnp.asarray(target)
    _same_shape(pred, target, "mse_loss", "pred", "target")
    d = pred - target
    return _reduce(d * d, reduction, "mse_loss")


mse = mse_loss


def binary_cross_entropy(probs, targets, reduction="mean"):
    """-(t log p + (1 - t) log(1 - p)) from probabilities p in [0, 1]; the logs
    are clamped at -100 (as PyTorch) so p = 0 or 1 gives a finite loss. Prefer
    binary_cross_entropy_with_logits when you have logits."""
    p, t = promote_inexact(tnp.asarray(probs), tnp.asarray(targets))
    _same_shape(p, t, "binary_cross_entropy", "probs", "targets")
    lo = _c(p, -100.0)
    log_p = tnp.maximum(tnp.log(p), lo)
    log_1mp = tnp.maximum(tnp.log1p(-p), lo)
    one = _c(p, 1.0)
    return _reduce(-(t * log_p + (one - t) * log_1mp), reduction, "binary_cross_entropy")


def binary_cross_entropy_with_logits(logits, targets, reduction="mean"):
    """Binary cross-entropy of sigmoid(logits), computed stably:
    t softplus(-x) + (1 - t) softplus(x)."""
    x, t = promote_inexact(tnp.asarray(logits), tnp.asarray(targets))
    _same_shape(x, t, "binary_cross_entropy_with_logits", "logits", "targets")
    one = _c(x, 1.0)
    loss = t * softplus(-x) + (one - t) * softplus(x)
    return _reduce(loss, reduction, "binary_cross_entropy_with_logits")


def _concrete(x):
    if isinstance(x, Tracer):
        return x.to_concrete()
    return x


def _check_labels(labels, num_classes, who):
    v = _concrete(labels)
    if v is None:
        return  # traced (under jit/vmap): cannot be checked here
    v = np.asarray(v)
    if v.size and (v.min() < 0 or v.max() >= num_classes):
        bad = v[(v < 0) | (v >= num_classes)]
        raise ValueError(f"{who}: integer labels must be in [0, {num_classes}) for logits with "
                         f"{num_classes} classes, got {bad.size} label(s) out of range "
                         f"(e.g. {bad.flat[0]})")


def softmax_cross_entropy(logits, labels, reduction="mean", axis=-1):
    """Cross-entropy of softmax(logits) against integer class labels (shape
    logits.shape without the class axis) or against one-hot / probability
    targets (same shape as logits)."""
    who = "softmax_cross_entropy"
    logits = _float(logits)
    labels = tnp.asarray(labels)
    la, ta = get_aval(logits), get_aval(labels)
    if la.ndim == 0:
        raise ShapeDtypeError(f"{who}: logits need a class axis, got a scalar")
    axis = axis % la.ndim
    if axis != la.ndim - 1:
        logits = tnp.moveaxis(logits, axis, -1)
        if ta.shape == la.shape:
            labels = tnp.moveaxis(labels, axis, -1)
        la, ta = get_aval(logits), get_aval(labels)
    n = la.shape[-1]
    logp = log_softmax(logits, axis=-1)
    if dtypes.is_int(ta.dtype) and ta.dtype != dtypes.bool_:
        if ta.shape != la.shape[:-1]:
            raise ShapeDtypeError(
                f"{who}: integer labels must have the shape of logits without the class axis, "
                f"{la.shape[:-1]}, got labels of shape {ta.shape} (logits {la.shape}); for "
                f"one-hot targets pass floats of the logits' shape")
        _check_labels(labels, n, who)
        targets = one_hot(labels, n, la.dtype)
    else:
        if ta.shape != la.shape:
            raise ShapeDtypeError(f"{who}: one-hot/probability targets must have the shape of "
                                  f"logits {la.shape}, got {ta.shape}")
        targets = labels.astype(la.dtype)
    loss = -tnp.sum(targets * logp, axis=-1)
    return _reduce(loss, reduction, who)


cross_entropy = softmax_cross_entropy


def accuracy(logits, labels):
    """Fraction of rows whose argmax equals the integer label (or the argmax
    of one-hot targets)."""
    logits, labels = tnp.asarray(logits), tnp.asarray(labels)
    if get_aval(labels).shape == get_aval(logits).shape:
        labels = tnp.argmax(labels, axis=-1)
    return tnp.mean((tnp.argmax(logits, axis=-1) == labels).astype(np.float32))
