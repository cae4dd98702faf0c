"""Primitive family: conv. `conv_general_dilated` with lax/XLA semantics:
strides, (lo, hi) padding (negative crops), lhs dilation (transposed conv),
rhs dilation (atrous conv), feature and batch groups, any layout given by
`ConvDimensionNumbers` (index tuples: lhs (batch, feature, spatial...), rhs
(out feature, in feature, spatial...), out (batch, feature, spatial...))."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo as hlo

from .. import dtypes
from ..core import Primitive, ShapedArray, get_aval
from ..interpreters import ad, lowering
from ..interpreters.ad import Zero, is_undefined
from . import elementwise as ew
from . import shapes
from .linalg import canonicalize_precision, precision_attr


class ConvDimensionNumbers(NamedTuple):
    lhs_spec: tuple
    rhs_spec: tuple
    out_spec: tuple


# ---------------------------------------------------------------- shapes


def _dilate(n, d):
    """Size of an axis of n elements with d-1 holes between neighbours."""
    return 0 if n == 0 else 1 + d * (n - 1)


def _conv_out_size(padded, window, stride):
    return max(0, (padded - window) // stride + 1)


def _half(dt):
    return dt in (dtypes.float16, dtypes.bfloat16)


def _check_preferred(in_dt, pref):
    if in_dt.kind in "iu" and pref.kind == "f":
        pass  # integer -> float accumulation is allowed (any signedness)
    else:
        for kinds in ("iu", "f", "c"):
            if in_dt.kind in kinds and pref.kind not in kinds and not (
                    kinds == "f" and pref == dtypes.bfloat16):
                raise TypeError(f"preferred_element_type {dtypes.short_name(pref)} is incompatible "
                                f"with input type {dtypes.short_name(in_dt)}")
        if in_dt.kind == "i" and pref.kind != "i":
            raise TypeError("preferred_element_type must have the input's signedness")
    if pref.itemsize < in_dt.itemsize:
        raise TypeError(f"preferred_element_type {dtypes.short_name(pref)} must not be narrower "
                        f"than the input type {dtypes.short_name(in_dt)}")


def _conv_abstract(lhs, rhs, *, window_strides, padding, lhs_dilation, rhs_dilation,
                   dimension_numbers, feature_group_count, batch_group_count,
                   precision=None, preferred_element_type=None):
    lspec, rspec, ospec = dimension_numbers
    if lhs.ndim != rhs.ndim:
        raise TypeError(f"lhs {lhs.str_short()} and rhs {rhs.str_short()} must have the same rank")
    nd = lhs.ndim
    if nd < 2 or not all(sorted(s) == list(range(nd)) for s in (lspec, rspec, ospec)):
        raise TypeError(f"dimension_numbers {tuple(dimension_numbers)} must be permutations of "
                        f"the {nd} axes")
    nsp = nd - 2
    for name, v in (("window_strides", window_strides), ("padding", padding),
                    ("lhs_dilation", lhs_dilation), ("rhs_dilation", rhs_dilation)):
        if len(v) != nsp:
            raise TypeError(f"{name} {tuple(v)} must have one entry per spatial axis ({nsp})")
    if any(s < 1 for s in window_strides) or any(d < 1 for d in lhs_dilation + rhs_dilation):
        raise TypeError("window strides and dilations must be positive")
    if lhs.dtype != rhs.dtype:
        raise TypeError(f"lhs and rhs must have the same dtype, got {dtypes.short_name(lhs.dtype)} "
                        f"and {dtypes.short_name(rhs.dtype)}")
    G, B = feature_group_count, batch_group_count
    if G < 1 or B < 1:
        raise TypeError("feature_group_count and batch_group_count must be positive")
    if G > 1 and B > 1:
        raise TypeError("at most one of feature_group_count and batch_group_count may be > 1")
    n, c = lhs.shape[lspec[0]], lhs.shape[lspec[1]]
    o, i = rhs.shape[rspec[0]], rhs.shape[rspec[1]]
    if c % G:
        raise TypeError(f"feature_group_count {G} must divide the lhs feature size {c}")
    if c // G != i:
        raise TypeError(f"lhs feature size {c} / feature_group_count {G} must equal the rhs input "
                        f"feature size {i} (lhs {lhs.str_short()}, rhs {rhs.str_short()})")
    if o % G:
        raise TypeError(f"rhs output feature size {o} must be a multiple of feature_group_count {G}")
    if n % B:
        raise TypeError(f"batch_group_count {B} must divide the lhs batch size {n}")
    if o % B:
        raise TypeError(f"rhs output feature size {o} must be a multiple of batch_group_count {B}")
    out = [n // B, o]
    for ax in range(nsp):
        size = _dilate(lhs.shape[lspec[2 + ax]], lhs_dilation[ax])
        lo, hi = padding[ax]
        padded = size + lo + hi
        if padded < 0:
            raise TypeError(f"padding {tuple(padding)} removes more than the lhs spatial size")
        window = _dilate(rhs.shape[rspec[2 + ax]], rhs_dilation[ax])
        out.append(_conv_out_size(padded, window, window_strides[ax]))
    shape = [0] * nd
    for k, ax in enumerate(ospec):
        shape[ax] = out[k]
    dt = lhs.dtype
    if preferred_element_type is not None:
        _check_preferred(dt, preferred_element_type)
        dt = preferred_element_type
    return ShapedArray(tuple(shape), dt, lhs.weak_type and rhs.weak_type)


# ---------------------------------------------------------------- eager impl


def _conv_impl(lhs, rhs, *, window_strides, padding, lhs_dilation, rhs_dilation,
               dimension_numbers, feature_group_count, batch_group_count,
               precision=None, preferred_element_type=None):
    lspec, rspec, ospec = dimension_numbers
    if lhs.dtype != rhs.dtype:  # (the abstract eval explains it)
        raise TypeError("conv_general_dilated operands must have the same dtype")
    out_dt = lhs.dtype if preferred_element_type is None else preferred_element_type
    calc = np.dtype(np.float32) if _half(out_dt) else out_dt
    x = np.transpose(lhs, lspec).astype(calc, copy=False)  # (N, C, spatial...)
    w = np.transpose(rhs, rspec).astype(calc, copy=False)  # (O, I, window...)
    nsp = x.ndim - 2
    if any(d != 1 for d in lhs_dilation):
        x = _dilate_array(x, lhs_dilation)
    x = _pad_spatial(x, padding)
    G, B = feature_group_count, batch_group_count
    N, C = x.shape[:2]
    O, I = w.shape[:2]
    ks = w.shape[2:]
    kd = tuple(_dilate(k, d) for k, d in zip(ks, rhs_dilation))
    outsp = tuple(_conv_out_size(p, k, s) for p, k, s in zip(x.shape[2:], kd, window_strides))
    canon_shape = (N // B, O) + outsp
    K = int(np.prod(ks, dtype=np.int64))
    if 0 in canon_shape or C == 0 or K == 0 or N == 0:
        return np.zeros(tuple(canon_shape[k] for k in np.argsort(ospec)), out_dt)
    # every window at once: a strided view (N, C, out..., k...), no copy
    st = x.strides
    win = np.lib.stride_tricks.as_strided(
        x, shape=(N, C) + outsp + ks,
        strides=st[:2] + tuple(st[2 + a] * window_strides[a] for a in range(nsp))
        + tuple(st[2 + a] * rhs_dilation[a] for a in range(nsp)), writeable=False)
    ng = G if G > 1 else B  # groups (at most one of G, B exceeds 1)
    if B > 1:  # batch groups split the lhs batch, group index major
        win = win.reshape((B, N // B, C) + outsp + ks)
    else:      # feature groups split the lhs features, group index major
        win = win.reshape((N, G, C // G) + outsp + ks).swapaxes(0, 1)
    n, c = win.shape[1], win.shape[2]
    P = int(np.prod(outsp, dtype=np.int64))
    sp_axes = tuple(range(3, 3 + nsp))
    k_axes = tuple(range(3 + nsp, 3 + 2 * nsp))
    # im2col: (groups, n * P, c * K), then one batched matmul with the kernel
    cols = win.transpose((0, 1) + sp_axes + (2,) + k_axes).reshape(ng, n * P, c * K)
    kern = w.reshape(ng, O // ng, I * K).transpose(0, 2, 1)
    res = np.matmul(cols, kern) if ng > 1 else (cols[0] @ kern[0])[None]
    res = res.reshape((ng, n) + outsp + (O // ng,))
    # (g, n, out..., o) -> (n, g, o, out...) -> (n, O, out...)
    res = res.transpose((1, 0, 2 + nsp) + tuple(range(2, 2 + nsp))).reshape(canon_shape)
    out = np.transpose(res, tuple(np.argsort(ospec)))
    return out.astype(out_dt, copy=False)


def _dilate_array(x, dil):
    shape = x.shape[:2] + tuple(_dilate(s, d) for s, d in zip(x.shape[2:], dil))
    out = np.zeros(shape, x.dtype)
    out[(slice(None), slice(None)) + tuple(slice(None, None, d) for d in dil)] = x
    return out


def _pad_spatial(x, padding):
    if not any(lo or hi for lo, hi in padding):
        return x
    # negative padding crops, positive padding adds zeros
    crop = tuple(slice(max(-lo, 0), s - max(-hi, 0)) for s, (lo, hi) in zip(x.shape[2:], padding))
    x = x[(slice(None), slice(None)) + crop]
    pads = ((0, 0), (0, 0)) + tuple((max(lo, 0), max(hi, 0)) for lo, hi in padding)
    return np.pad(x, pads) if any(p != (0, 0) for p in pads) else x


# ---------------------------------------------------------------- autodiff




def _spec_t(spec):
    """Swap the first two entries (batch <-> feature, out <-> in feature)."""
    return (spec[1], spec[0]) + tuple(spec[2:])


def reshape_axis_out_of(src, size1, x):
    """Split axis src into (size1, rest)."""
    shape = list(get_aval(x).shape)
    shape[src:src + 1] = [size1, shape[src] // size1]
    return shapes.reshape(x, tuple(shape))


def reshape_axis_into(src, dst, x):
    """Merge axis src into axis dst (numbered without src), src major."""
    shape = get_aval(x).shape
    perm = [i for i in range(len(shape)) if i != src]
    perm.insert(dst, src)
    if perm != list(range(len(shape))):
        x = shapes.transpose_p.bind(x, permutation=tuple(perm))
    new = [s for i, s in enumerate(shape) if i != src]
    new[dst] *= shape[src]
    return shapes.reshape(x, tuple(new))


def _vjp_lhs_padding(in_shape, window, strides, out_shape, padding, lhs_dil, rhs_dil):
    lhs_d = [_dilate(s, d) for s, d in zip(in_shape, lhs_dil)]
    rhs_d = [_dilate(s, d) for s, d in zip(window, rhs_dil)]
    out_d = [_dilate(s, d) for s, d in zip(out_shape, strides)]
    before = [r - lo - 1 for r, (lo, _) in zip(rhs_d, padding)]
    after = [l + r - 1 - o - b for l, r, o, b in zip(lhs_d, rhs_d, out_d, before)]
    return tuple(zip(before, after))


def _vjp_rhs_padding(in_shape, window, strides, out_shape, padding, lhs_dil, rhs_dil):
    if not in_shape:
        return ()
    lhs_d = [_dilate(s, d) for s, d in zip(in_shape, lhs_dil)]
    rhs_d = [_dilate(s, d) for s, d in zip(window, rhs_dil)]
    out_d = [_dilate(s, d) for s, d in zip(out_shape, strides)]
    lo = [p for p, _ in padding]
    hi = [o - l + r - p - 1 for o, l, r, p in zip(out_d, lhs_d, rhs_d, lo)]
    return tuple(zip(lo, hi))


def _convert_to(x, aval):
    return x if get_aval(x).dtype == aval.dtype else ew.convert(x, aval.dtype, aval.weak_type)


def _transpose_lhs(g, rhs, lhs_aval, *, window_strides, padding, lhs_dilation, rhs_dilation,
                   dimension_numbers, feature_group_count, batch_group_count, precision,
                   preferred_element_type):
    """ct of lhs: convolve g with the spatially flipped kernel, in/out features
    swapped; strides and lhs dilation trade places."""
    lspec, rspec, ospec = dimension_numbers
    rhs_shape = get_aval(rhs).shape
    G = feature_group_count
    if G > 1:  # move the group axis from kernel outputs to kernel inputs
        rhs = reshape_axis_out_of(rspec[0], G, rhs)
        rhs = reshape_axis_into(rspec[0], rspec[1], rhs)
    elif batch_group_count > 1:
        rhs = reshape_axis_out_of(rspec[0], batch_group_count, rhs)
        rhs = reshape_axis_into(rspec[0], rspec[1], rhs)
        G = batch_group_count
    trans_dn = ConvDimensionNumbers(tuple(ospec), _spec_t(rspec), tuple(lspec))
    pads = _vjp_lhs_padding([lhs_aval.shape[a] for a in lspec[2:]],
                            [rhs_shape[a] for a in rspec[2:]], window_strides,
                            [get_aval(g).shape[a] for a in ospec[2:]], padding,
                            lhs_dilation, rhs_dilation)
    revd = shapes.rev_p.bind(rhs, dimensions=tuple(rspec[2:])) if len(rspec) > 2 else rhs
    if get_aval(revd).dtype != get_aval(g).dtype:
        revd = ew.convert(revd, get_aval(g).dtype)
    out = conv_general_dilated_p.bind(
        g, revd, window_strides=tuple(lhs_dilation), padding=pads,
        lhs_dilation=tuple(window_strides), rhs_dilation=tuple(rhs_dilation),
        dimension_numbers=trans_dn, feature_group_count=G, batch_group_count=1,
        precision=precision, preferred_element_type=preferred_element_type)
    out = _convert_to(out, lhs_aval)
    if batch_group_count > 1:
        out = reshape_axis_out_of(lspec[1], batch_group_count, out)
        out = reshape_axis_into(lspec[1], lspec[0], out)
    return out


def _transpose_rhs(g, lhs, rhs_aval, *, window_strides, padding, lhs_dilation, rhs_dilation,
                   dimension_numbers, feature_group_count, batch_group_count, precision,
                   preferred_element_type):
    """ct of rhs: a conv of lhs (batch and features swapped) with g as the
    kernel; rhs dilation and strides trade places, groups become batch groups."""
    lspec, rspec, ospec = dimension_numbers
    G, B = feature_group_count, batch_group_count
    if B > 1:
        G, B = B, 1
    elif G > 1:
        G, B = 1, G
    trans_dn = ConvDimensionNumbers(_spec_t(lspec), _spec_t(ospec), _spec_t(rspec))
    lhs_shape = get_aval(lhs).shape
    pads = _vjp_rhs_padding([lhs_shape[a] for a in lspec[2:]],
                            [rhs_aval.shape[a] for a in rspec[2:]], window_strides,
                            [get_aval(g).shape[a] for a in ospec[2:]], padding,
                            lhs_dilation, rhs_dilation)
    if get_aval(lhs).dtype != get_aval(g).dtype:
        lhs = ew.convert(lhs, get_aval(g).dtype)
    out = conv_general_dilated_p.bind(
        lhs, g, window_strides=tuple(rhs_dilation), padding=pads,
        lhs_dilation=tuple(lhs_dilation), rhs_dilation=tuple(window_strides),
        dimension_numbers=trans_dn, feature_group_count=G, batch_group_count=B,
        precision=precision, preferred_element_type=preferred_element_type)
    return _convert_to(out, rhs_aval)


def _conv_transpose(ct, lhs, rhs, **params):
    if is_undefined(lhs) and is_undefined(rhs):
        raise TypeError("conv_general_dilated is not linear in both operands at once")
    if type(ct) is Zero:
        return [None, None]
    if is_undefined(lhs):
        return [_transpose_lhs(ct, rhs, lhs.aval, **params), None]
    if get_aval(ct).size == 0:
        return [None, None]  # a zero cotangent: avoids degenerate convolutions
    return [None, _transpose_rhs(ct, lhs, rhs.aval, **params)]


# ---------------------------------------------------------------- vmap


def _conv_batch(args, dims, **params):
    lhs, rhs = args
    lbd, rbd = dims
    lspec, rspec, ospec = params["dimension_numbers"]
    G, B = params["feature_group_count"], params["batch_group_count"]
    la, ra = get_aval(lhs), get_aval(rhs)
    size = la.shape[lbd] if lbd is not None else ra.shape[rbd]
    if size == 0:
        ul = la.update(shape=tuple(s for i, s in enumerate(la.shape) if i != lbd))
        ur = ra.update(shape=tuple(s for i, s in enumerate(ra.shape) if i != rbd))
        aval = _conv_abstract(ul, ur, **params)
        return shapes.full((0,) + aval.shape, 0, aval.dtype), 0
    bind = conv_general_dilated_p.bind
    if lbd is not None and rbd is not None:
        # each example its own group of features (or of batch)
        p = dict(params)
        if B > 1:
            new_lhs = reshape_axis_into(lbd, lspec[0], lhs)
            p["batch_group_count"] = B * size
        else:
            new_lhs = reshape_axis_into(lbd, lspec[1], lhs)
            p["feature_group_count"] = G * size
        new_rhs = reshape_axis_into(rbd, rspec[0], rhs)
        out = bind(new_lhs, new_rhs, **p)
        return reshape_axis_out_of(ospec[1], size, out), ospec[1]
    if lbd is not None:
        if B == 1:  # the vmapped axis joins the conv batch
            out = bind(reshape_axis_into(lbd, lspec[0], lhs), rhs, **params)
            return reshape_axis_out_of(ospec[0], size, out), ospec[0]
        # batch groups must stay outermost: fold the vmapped axis inside them
        new_lhs = reshape_axis_out_of(lspec[0] + int(lbd <= lspec[0]), B, lhs)
        new_lhs = reshape_axis_into(lbd + int(lspec[0] < lbd), lspec[0] + 1, new_lhs)
        new_lhs = reshape_axis_into(lspec[0], lspec[0], new_lhs)
        out = bind(new_lhs, rhs, **params)
        return reshape_axis_out_of(ospec[0], size, out), ospec[0]
    # rhs batched: the vmapped axis joins the kernel's output features
    if G == 1 and B == 1:
        out = bind(lhs, reshape_axis_into(rbd, rspec[0], rhs), **params)
        return reshape_axis_out_of(ospec[1], size, out), ospec[1]
    groups = G if G > 1 else B
    new_rhs = reshape_axis_out_of(rspec[0] + int(rbd <= rspec[0]), groups, rhs)
    new_rhs = reshape_axis_into(rbd + int(rspec[0] < rbd), rspec[0] + 1, new_rhs)
    new_rhs = reshape_axis_into(rspec[0], rspec[0], new_rhs)
    out = bind(lhs, new_rhs, **params)
    out = reshape_axis_out_of(ospec[1], groups, out)
    out = reshape_axis_out_of(ospec[1] + 1, size, out)
    return reshape_axis_into(ospec[1], ospec[1] + 1, out), ospec[1]


# ---------------------------------------------------------------- lowering


def _i64(v):
    return ir.IntegerAttr.get(ir.IntegerType.get_signless(64), int(v))


def _conv_lower(ctx, lhs, rhs, *, window_strides, padding, lhs_dilation, rhs_dilation,
                dimension_numbers, feature_group_count, batch_group_count,
                precision=None, preferred_element_type=None):
    lspec, rspec, ospec = dimension_numbers
    dnums = hlo.ConvDimensionNumbers.get(
        input_batch_dimension=lspec[0], input_feature_dimension=lspec[1],
        input_spatial_dimensions=list(lspec[2:]),
        kernel_output_feature_dimension=rspec[0], kernel_input_feature_dimension=rspec[1],
        kernel_spatial_dimensions=list(rspec[2:]),
        output_batch_dimension=ospec[0], output_feature_dimension=ospec[1],
        output_spatial_dimensions=list(ospec[2:]))
    nsp = len(lspec) - 2
    pads = np.asarray(padding, np.int64).reshape(nsp, 2)
    return [hlo.convolution(
        lowering.ir_type(ctx.avals_out[0]), lhs, rhs, dimension_numbers=dnums,
        feature_group_count=_i64(feature_group_count),
        batch_group_count=_i64(batch_group_count),
        window_strides=ir.DenseI64ArrayAttr.get([int(s) for s in window_strides]),
        padding=ir.DenseIntElementsAttr.get(pads),
        lhs_dilation=ir.DenseI64ArrayAttr.get([int(d) for d in lhs_dilation]),
        rhs_dilation=ir.DenseI64ArrayAttr.get([int(d) for d in rhs_dilation]),
        window_reversal=ir.DenseBoolArrayAttr.get([False] * nsp),
        precision_config=precision_attr(precision))]


conv_general_dilated_p = Primitive(
    "conv_general_dilated", impl=_conv_impl, abstract_eval=_conv_abstract,
    transpose=_conv_transpose, batch=_conv_batch, lower=_conv_lower, linear=True)
conv_general_dilated_p.jvp = ad.bilinear_jvp(conv_general_dilated_p)
conv_general_dilated_p.vjp = ad.transpose_vjp(conv_general_dilated_p, each=True)


# ---------------------------------------------------------------- lax-style API


def conv_general_permutations(dimension_numbers):
    """('NCHW', 'OIHW', 'NCHW')-style strings -> index specs. Spatial axes
    are matched by letter, in the order the kernel spec lists them."""
    lhs_s, rhs_s, out_s = dimension_numbers
    pairs = (("N", "C"), ("O", "I"), ("N", "C"))
    for i, (a, b) in enumerate(pairs):
        s = dimension_numbers[i]
        if not s.count(a) == s.count(b) == 1:
            raise TypeError(f"convolution dimension_numbers[{i}] must contain '{a}' and '{b}' "
                            f"exactly once, got {s!r}")
        if len(s) != len(set(s)):
            raise TypeError(f"convolution dimension_numbers[{i}] has duplicate letters: {s!r}")
    if not set(lhs_s) - {"N", "C"} == set(rhs_s) - {"O", "I"} == set(out_s) - {"N", "C"}:
        raise TypeError(f"convolution dimension_numbers must share their spatial letters, got "
                        f"{dimension_numbers}")

    def perm(spec, pair):
        spatial = [i for i, ch in enumerate(spec) if ch not in pair]
        if spec is not rhs_s:
            spatial.sort(key=lambda i: rhs_s.index(spec[i]))
        return (spec.index(pair[0]), spec.index(pair[1])) + tuple(spatial)

    return tuple(perm(s, p) for s, p in zip(dimension_numbers, pairs))


def conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers):
    """None (NCHW/OIHW/NCHW order), a triple of layout strings, or index
    specs -> ConvDimensionNumbers."""
    if len(lhs_shape) != len(rhs_shape):
        raise TypeError(f"convolution needs lhs and rhs of equal rank, got shapes "
                        f"{tuple(lhs_shape)} and {tuple(rhs_shape)}")
    if dimension_numbers is None:
        iota = tuple(range(len(lhs_shape)))
        return ConvDimensionNumbers(iota, iota, iota)
    if isinstance(dimension_numbers, (list, tuple)) and len(dimension_numbers) == 3:
        if all(isinstance(s, str) for s in dimension_numbers):
            for i, s in enumerate(dimension_numbers):
                if len(s) != len(lhs_shape):
                    raise TypeError(f"convolution dimension_numbers[{i}] {s!r} must have one "
                                    f"letter per axis of shapes {tuple(lhs_shape)}, "
                                    f"{tuple(rhs_shape)}")
            return ConvDimensionNumbers(*conv_general_permutations(tuple(dimension_numbers)))
        return ConvDimensionNumbers(*(tuple(int(i) for i in s) for s in dimension_numbers))
    raise TypeError(f"convolution dimension_numbers must be None, three layout strings or "
                    f"ConvDimensionNumbers, got {dimension_numbers!r}")


def padtype_to_pads(in_shape, window_shape, window_strides, padding):
    """'SAME' / 'SAME_LOWER' / 'VALID' -> [(lo, hi), ...]."""
    p = padding.upper()
    if p == "VALID":
        return [(0, 0)] * len(in_shape)
    if p in ("SAME", "SAME_LOWER"):
        out = []
        for n, w, s in zip(in_shape, window_shape, window_strides):
            total = max((-(-n // s) - 1) * s + w - n, 0)
            small, big = total // 2, total - total // 2
            out.append((small, big) if p == "SAME" else (big, small))
        return out
    raise ValueError(f"unknown padding {padding!r}: use 'SAME', 'SAME_LOWER', 'VALID' or "
                     f"(lo, hi) pairs")


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
    """lax.conv_general_dilated (operands of one dtype)."""
    la, ra = get_aval(lhs), get_aval(rhs)
    dn = conv_dimension_numbers(la.shape, ra.shape, dimension_numbers)
    nsp = la.ndim - 2
    lhs_dilation = (1,) * nsp if lhs_dilation is None else tuple(int(d) for d in lhs_dilation)
    rhs_dilation = (1,) * nsp if rhs_dilation is None else tuple(int(d) for d in rhs_dilation)
    window_strides = tuple(int(s) for s in window_strides)
    if isinstance(padding, str):
        if any(d != 1 for d in lhs_dilation):
            raise ValueError("string padding is not supported with lhs_dilation (transposed "
                             "convolution): give explicit (lo, hi) pairs")
        window = [_dilate(ra.shape[a], d) for a, d in zip(dn.rhs_spec[2:], rhs_dilation)]
        padding = padtype_to_pads([la.shape[a] for a in dn.lhs_spec[2:]], window,
                                  window_strides, padding)
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    pet = None if preferred_element_type is None else dtypes.canonicalize(preferred_element_type)
    return conv_general_dilated_p.bind(
        lhs, rhs, window_strides=window_strides, padding=padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dn,
        feature_group_count=int(feature_group_count), batch_group_count=int(batch_group_count),
        precision=canonicalize_precision(precision), preferred_element_type=pet)


def conv(lhs, rhs, window_strides, padding, precision=None, preferred_element_type=None):
    """lax.conv: NCHW input, OIHW kernel, 'SAME'/'VALID' or explicit padding."""
    return conv_general_dilated(lhs, rhs, window_strides, padding, precision=precision,
                                preferred_element_type=preferred_element_type)


def conv_with_general_padding(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                              precision=None, preferred_element_type=None):
    return conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                                rhs_dilation=rhs_dilation, precision=precision,
                                preferred_element_type=preferred_element_type)
