"""Elementwise functions under their NumPy names, with JAX's promotion."""
from __future__ import annotations

import numpy as np

from .. import core, dtypes
from ..core import Array
from ..primitives import elementwise as ew
from ..interpreters.tape import TapeTracer
from ._util import asarray_value, broadcast_arrays, dtype_weak, promote, promote_inexact, tape_operands


def _fast_unary(prim, inexact):
    """Unary op; eager Arrays of float dtype skip the generic path."""
    impl = prim.impl
    ctx = core._ctx  # bound once: this is the hottest path of eager mode

    def f(x):
        if ctx.trace is None:
            t = type(x)
            if t is Array:
                v = x._v
                if v is None:  # a jit result: read its device buffer once (cached)
                    v = x.value
                if v.dtype.kind == "f":
                    return Array(impl(v), x.weak)
            elif t is np.ndarray and x.dtype.kind == "f":
                return Array(impl(x))
        elif type(x) is TapeTracer and x.value._meta.dtype.kind == "f":
            return prim.bind(x)  # eager grad: a float operand needs no promotion
        x = asarray_value(x)
        if inexact:
            (x,) = promote_inexact(x)
        return prim.bind(x)
    return f


def _eager_with_scalar(impl, x, y, inexact=False, scalar_arrays=False):
    """Eager strong float Array (f32/f64) with a Python float/int: the scalar
    is weak and takes the array's dtype, which is how NumPy treats a Python
    scalar next to a float array too, so NumPy computes it directly. None
    for anything else (the general path)."""
    if type(x) is Array:
        a, s = x, y
    elif type(y) is Array:
        a, s = y, x
    else:
        return None
    v = a._v
    if v is None or (type(s) is not float and type(s) is not int) or a.weak \
            or v.dtype.kind != "f" or v.dtype.itemsize < 4:
        return None
    if scalar_arrays:  # (an impl that reads its operands' dtypes: the scalar as promoted)
        s = np.asarray(s, v.dtype)
    return Array(impl(v, s) if a is x else impl(s, v))


# the dtypes JAX's lattice and NumPy's promotion share
_STANDARD = frozenset(np.dtype(t) for t in (
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
    np.uint64, np.float16, np.float32, np.float64, np.complex64, np.complex128))


def _widened(x, y, dx, dy):
    """The dtype of x op y when JAX and NumPy promote it alike, to the wider
    operand's: strong operands of one kind (two floats, two signed or two
    unsigned ints, two complex) or a bool with a number. NumPy computes in
    that dtype, as the general path after converting. Else None (weak
    operands adapt in JAX, and i32 with f32 is f32 in JAX, f64 in NumPy)."""
    if (type(x) is Array and x.weak) or (type(y) is Array and y.weak) \
            or dx not in _STANDARD or dy not in _STANDARD:
        return None
    kx, ky = dx.kind, dy.kind
    if kx == ky:
        return dx if dx.itemsize > dy.itemsize else dy
    if kx == "b":
        return dy
    if ky == "b":
        return dx
    return None


def _binary(prim, inexact=False, scalar_arrays=False):
    impl = prim.impl
    ctx = core._ctx

    def f(x, y):
        if ctx.trace is None:
            # eager Arrays, or an Array and a NumPy array (a strong constant),
            # of one dtype (or dtypes both promote alike: _widened): NumPy
            # computes it directly, and broadcasts as we do (shapes that do
            # not broadcast take the general path for our error). The checks
            # are inline: this is the hottest path of eager mode.
            tx, ty = type(x), type(y)
            if tx is Array:
                vx = x._v
                if vx is None:  # a jit result: read its device buffer once (cached)
                    vx = x.value
                if ty is Array:
                    vy = y._v
                    if vy is None:
                        vy = y.value
                    weak = x.weak and y.weak
                elif ty is np.ndarray:
                    vy, weak = y, False
                else:
                    vy = None
            elif ty is Array and tx is np.ndarray:
                vx, vy, weak = x, y._v, False
                if vy is None:
                    vy = y.value
            else:
                vy = None
            if vy is not None:
                dt = vx.dtype
                # `is` first: builtin dtypes are singletons, and == costs ~100 ns
                if dt is not vy.dtype and dt != vy.dtype:
                    # (an impl that reads its operands' dtypes needs them promoted)
                    dt = None if scalar_arrays else _widened(x, y, dt, vy.dtype)
                if dt is not None and (not inexact or dt.kind == "f"):
                    try:
                        return Array(impl(vx, vy), weak)
                    except (ValueError, TypeError):  # (the general path's error)
                        pass
            else:
                out = _eager_with_scalar(impl, x, y, inexact, scalar_arrays)
                if out is not None:
                    return out
        elif type(x) is TapeTracer or type(y) is TapeTracer:
            args = tape_operands(x, y, inexact)
            if args is not None:
                return prim.bind(*args)
        args = promote_inexact(x, y) if inexact else promote(x, y)
        return prim.bind(*broadcast_arrays(*args))
    return f


sin = _fast_unary(ew.sin_p, True)
cos = _fast_unary(ew.cos_p, True)
tan = _fast_unary(ew.tan_p, True)
arcsin = _fast_unary(ew.asin_p, True)
arccos = _fast_unary(ew.acos_p, True)
arctan = _fast_unary(ew.atan_p, True)
sinh = _fast_unary(ew.sinh_p, True)
cosh = _fast_unary(ew.cosh_p, True)
tanh = _fast_unary(ew.tanh_p, True)
arcsinh = _fast_unary(ew.asinh_p, True)
arccosh = _fast_unary(ew.acosh_p, True)
arctanh = _fast_unary(ew.atanh_p, True)
exp = _fast_unary(ew.exp_p, True)
exp2 = _fast_unary(ew.exp2_p, True)
expm1 = _fast_unary(ew.expm1_p, True)
log = _fast_unary(ew.log_p, True)
log1p = _fast_unary(ew.log1p_p, True)
sqrt = _fast_unary(ew.sqrt_p, True)
cbrt = _fast_unary(ew.cbrt_p, True)
asin, acos, atan, asinh, acosh, atanh = arcsin, arccos, arctan, arcsinh, arccosh, arctanh

add = _binary(ew.add_p)
subtract = _binary(ew.sub_p)
multiply = _binary(ew.mul_p)
maximum = _binary(ew.max_p)
minimum = _binary(ew.min_p)
arctan2 = _binary(ew.atan2_p, True)
atan2 = arctan2
nextafter = _binary(ew.nextafter_p, True)
equal = _binary(ew.eq_p)
not_equal = _binary(ew.ne_p)
less = _binary(ew.lt_p)
less_equal = _binary(ew.le_p)
greater = _binary(ew.gt_p)
greater_equal = _binary(ew.ge_p)


def _bool_or_int(name, prim):
    def f(x, y):
        x, y = promote(x, y)
        dt, _ = dtype_weak(x)
        if dtypes.is_float(dt):
            raise TypeError(f"{name} is only defined for integer and boolean inputs, got {dt}")
        return prim.bind(*broadcast_arrays(x, y))
    f.__name__ = name
    return f


bitwise_and = _bool_or_int("bitwise_and", ew.and_p)
bitwise_or = _bool_or_int("bitwise_or", ew.or_p)
bitwise_xor = _bool_or_int("bitwise_xor", ew.xor_p)
left_shift = _bool_or_int("left_shift", ew.shift_left_p)


def right_shift(x, y):
    x, y = promote(x, y)
    dt, _ = dtype_weak(x)
    x, y = broadcast_arrays(x, y)
    if dt.kind == "u":
        return ew.shift_right_logical_p.bind(x, y)
    # arithmetic shift for signed ints: floor division by 2**y
    return floor_divide(x, left_shift(_one(x), y))


def _one(x):
    dt, _ = dtype_weak(x)
    return np.asarray(1, dt)[()]


def _as_bool(x):
    x = asarray_value(x)
    if dtype_weak(x)[0] != dtypes.bool_:
        return not_equal(x, 0)
    return x


def logical_and(x, y):
    return ew.and_p.bind(*broadcast_arrays(_as_bool(x), _as_bool(y)))


def logical_or(x, y):
    return ew.or_p.bind(*broadcast_arrays(_as_bool(x), _as_bool(y)))


def logical_xor(x, y):
    return ew.xor_p.bind(*broadcast_arrays(_as_bool(x), _as_bool(y)))


def logical_not(x):
    return ew.not_p.bind(_as_bool(x))


def invert(x):
    x = asarray_value(x)
    if dtypes.is_float(dtype_weak(x)[0]):
        raise TypeError("invert (~) is only defined for integer and boolean inputs")
    return ew.not_p.bind(x)


bitwise_not = invert


def negative(x):
    x = asarray_value(x)
    if dtype_weak(x)[0] == dtypes.bool_:
        raise TypeError("negative (-) is not defined for boolean arrays; use ~ or logical_not")
    return ew.neg_p.bind(x)


def positive(x):
    return asarray_value(x)


# promote_inexact + broadcast + div, with _binary's eager/tape shortcuts
true_divide = _binary(ew.div_p, True, scalar_arrays=True)


divide = true_divide


def floor_divide(x, y):
    x, y = promote(x, y)
    dt, _ = dtype_weak(x)
    x, y = broadcast_arrays(x, y)
    if dtypes.is_float(dt):
        return floor(ew.div_p.bind(x, y))
    if dt == dtypes.bool_:
        raise TypeError("floor_divide is not defined for booleans")
    # C division rounds toward zero; fix the sign to floor
    q = ew.div_p.bind(x, y)
    r = ew.rem_p.bind(x, y)
    zero = np.asarray(0, dt)[()]
    fix = logical_and(ew.ne_p.bind(r, zero), not_equal(less(r, 0), less(y, 0)))
    return where(fix, subtract(q, _one(q)), q)


def remainder(x, y):
    """Python/NumPy modulo: result has the sign of the divisor."""
    x, y = promote(x, y)
    x, y = broadcast_arrays(x, y)
    r = ew.rem_p.bind(x, y)
    dt, _ = dtype_weak(r)
    zero = np.asarray(0, dt)[()]
    fix = logical_and(ew.ne_p.bind(r, zero), not_equal(less(r, 0), less(y, 0)))
    return where(fix, add(r, y), r)


mod = remainder


def fmod(x, y):
    x, y = promote(x, y)
    return ew.rem_p.bind(*broadcast_arrays(x, y))


def divmod(x, y):
    return floor_divide(x, y), remainder(x, y)


def power(x, y):
    if isinstance(y, (int, np.integer)) and not isinstance(y, bool) and type(x) is not int:
        x = asarray_value(x)
        dt, w = dtype_weak(x)
        if dt.kind in "iu" and y < 0:
            raise ValueError("Integers to negative integer powers are not allowed.")
        return ew.integer_pow_p.bind(x, y=int(y))
    x, y = promote(x, y)
    dt, _ = dtype_weak(x)
    x, y = broadcast_arrays(x, y)
    if dt.kind in "iu" or dt == dtypes.bool_:
        return _int_power(x, y)
    return ew.pow_p.bind(x, y)


def _int_power(x, y):
    # exponentiation by squaring with traced integer exponents (as jnp)
    dt, _ = dtype_weak(x)
    acc = ones_like_(x)
    base = x
    for _ in range(dt.itemsize * 8):
        acc = where(ew.ne_p.bind(bitwise_and(y, _one(y)), np.asarray(0, dt)[()]), multiply(acc, base), acc)
        base = multiply(base, base)
        y = right_shift(y, _one(y))
    return acc


def ones_like_(x):
    from ..primitives.shapes import full
    a = core.get_aval(x)
    return full(a.shape, 1, a.dtype)


def float_power(x, y):
    x, y = promote(x, y)
    return power(ew.convert(asarray_value(x), dtypes.float64), ew.convert(asarray_value(y), dtypes.float64))


def square(x):
    return ew.integer_pow_p.bind(asarray_value(x), y=2)


def reciprocal(x):
    (x,) = promote_inexact(x)
    return ew.integer_pow_p.bind(asarray_value(x), y=-1)


def rsqrt(x):
    (x,) = promote_inexact(x)
    return ew.rsqrt_p.bind(asarray_value(x))


def absolute(x):
    x = asarray_value(x)
    dt, _ = dtype_weak(x)
    if dt.kind == "u" or dt == dtypes.bool_:
        return x
    if dtypes.is_complex(dt):
        re, im = ew.real_p.bind(x), ew.imag_p.bind(x)
        return hypot(re, im)
    return ew.abs_p.bind(x)


abs = absolute
fabs = absolute


def sign(x):
    x = asarray_value(x)
    dt, _ = dtype_weak(x)
    if dt == dtypes.bool_:
        return x
    if dt.kind == "u":
        return ew.convert(not_equal(x, 0), dt)
    return ew.sign_p.bind(x)


def _rounding(prim):
    def f(x):
        x = asarray_value(x)
        if not dtypes.is_float(dtype_weak(x)[0]):
            return x
        return prim.bind(x)
    return f


floor = _rounding(ew.floor_p)
ceil = _rounding(ew.ceil_p)


def trunc(x):
    x = asarray_value(x)
    if not dtypes.is_float(dtype_weak(x)[0]):
        return x
    return where(less(x, 0), ceil(x), floor(x))


fix = trunc


def round(x, decimals=0):
    x = asarray_value(x)
    dt, _ = dtype_weak(x)
    if not dtypes.is_float(dt):
        return x
    if decimals == 0:
        return ew.round_p.bind(x, rounding_method=1)
    f = np.asarray(10.0 ** decimals, dt)[()]
    return true_divide(ew.round_p.bind(multiply(x, f), rounding_method=1), f)


around = round
rint = lambda x: round(x)


def log2(x):
    (x,) = promote_inexact(x)
    dt, _ = dtype_weak(x)
    return ew.div_p.bind(ew.log_p.bind(x), np.asarray(np.log(2), dt)[()])


def log10(x):
    (x,) = promote_inexact(x)
    dt, _ = dtype_weak(x)
    return ew.div_p.bind(ew.log_p.bind(x), np.asarray(np.log(10), dt)[()])


def logaddexp(x, y):
    x, y = promote_inexact(x, y)
    x, y = broadcast_arrays(x, y)
    amax = maximum(x, y)
    delta = subtract(x, y)
    # where both are -inf/inf, delta is nan: return amax then (as jnp)
    from ..primitives.common import const_like
    isnan = not_equal(delta, delta)
    # min - max (not -|x - y|): its derivative is 0 at ties, so the gradient
    # there is max's 1/2 each, as jnp.logaddexp's custom jvp gives
    gap = where(isnan, const_like(delta, 0), subtract(minimum(x, y), amax))
    out = add(amax, log1p(exp(gap)))
    return where(isnan, add(x, y), out)


def logaddexp2(x, y):
    x, y = promote_inexact(x, y)
    dt, _ = dtype_weak(x)
    ln2 = np.asarray(np.log(2), dt)[()]
    return true_divide(logaddexp(multiply(x, ln2), multiply(y, ln2)), ln2)


def sinc(x):
    (x,) = promote_inexact(x)
    dt, _ = dtype_weak(x)
    pix = multiply(x, np.asarray(np.pi, dt)[()])
    eq0 = equal(x, 0)
    safe = where(eq0, np.asarray(1, dt)[()], pix)
    return where(eq0, np.asarray(1, dt)[()], true_divide(sin(safe), safe))


def deg2rad(x):
    (x,) = promote_inexact(x)
    return multiply(x, np.asarray(np.pi / 180, dtype_weak(x)[0])[()])


def rad2deg(x):
    (x,) = promote_inexact(x)
    return multiply(x, np.asarray(180 / np.pi, dtype_weak(x)[0])[()])


radians, degrees = deg2rad, rad2deg


def hypot(x, y):
    x, y = promote_inexact(x, y)
    return sqrt(add(multiply(x, x), multiply(y, y)))


def isfinite(x):
    x = asarray_value(x)
    if not dtypes.is_float(dtype_weak(x)[0]):
        return ones_like_bool(x)
    return ew.is_finite_p.bind(x)


def ones_like_bool(x):
    from ..primitives.shapes import full
    return full(core.get_aval(x).shape, True, dtypes.bool_)


def isnan(x):
    x = asarray_value(x)
    if not dtypes.is_float(dtype_weak(x)[0]):
        return logical_not(ones_like_bool(x))
    return not_equal(x, x)


def isinf(x):
    x = asarray_value(x)
    if not dtypes.is_float(dtype_weak(x)[0]):
        return logical_not(ones_like_bool(x))
    return logical_and(logical_not(isfinite(x)), equal(x, x))


def isposinf(x):
    return logical_and(isinf(x), greater(x, 0))


def isneginf(x):
    return logical_and(isinf(x), less(x, 0))


def signbit(x):
    x = asarray_value(x)
    if not dtypes.is_float(dtype_weak(x)[0]):
        return less(x, 0)
    # -0.0 has its sign bit set: 1/-0.0 is -inf
    with_zero = logical_and(equal(x, 0), less(true_divide(1, x), 0))
    return logical_or(less(x, 0), with_zero)


def copysign(x, y):
    x, y = promote_inexact(x, y)
    return where(signbit(y), negative(absolute(x)), absolute(x))


def heaviside(x, h0):
    x, h0 = promote(x, h0)
    dt, _ = dtype_weak(x)
    return where(less(x, 0), np.asarray(0, dt)[()], where(greater(x, 0), np.asarray(1, dt)[()], h0))


def where(condition, x=None, y=None):
    """select: x where condition else y, with broadcasting and promotion."""
    if x is None and y is None:
        from .indexing import nonzero
        return nonzero(condition)
    if x is None or y is None:
        raise ValueError("where takes either 1 or 3 arguments")
    cond = _as_bool(condition)
    x, y = promote(x, y)
    cond, x, y = broadcast_arrays(asarray_value(cond), x, y)
    return ew.select_n_p.bind(cond, y, x)


def clip(a, a_min=None, a_max=None, *, min=None, max=None):
    lo = a_min if a_min is not None else min
    hi = a_max if a_max is not None else max
    a = asarray_value(a)
    if lo is not None:
        a = maximum(a, lo)
    if hi is not None:
        a = minimum(a, hi)
    return a


def conjugate(x):
    x = asarray_value(x)
    return ew.conj_p.bind(x) if dtypes.is_complex(dtype_weak(x)[0]) else x


conj = conjugate


def real(x):
    x = asarray_value(x)
    return ew.real_p.bind(x) if dtypes.is_complex(dtype_weak(x)[0]) else x


def imag(x):
    x = asarray_value(x)
    if dtypes.is_complex(dtype_weak(x)[0]):
        return ew.imag_p.bind(x)
    from .creation import zeros_like
    return zeros_like(x)


def iscomplexobj(x):
    return dtypes.is_complex(dtype_weak(asarray_value(x))[0])
