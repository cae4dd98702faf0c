"""batching: vmap as a trace of (value, batch axis) pairs.

Rule convention: batch(args, dims, **params) -> (out, out_dim), where each
dim is an int or None (not mapped); lists for multiple results. Rules move
batch axes instead of copying where they can; unbatched operands stay
unbatched (only values with a batch axis become BatchTracers).
"""
from __future__ import annotations

from .. import core
from ..core import Tracer, get_aval, set_trace

not_mapped = None


class BatchTracer(Tracer):
    __slots__ = ("val", "bdim")

    def __init__(self, trace, val, bdim):
        self._trace = trace
        self.val = val
        self.bdim = bdim

    @property
    def aval(self):
        a = get_aval(self.val)
        shape = a.shape[:self.bdim] + a.shape[self.bdim + 1:]
        return core.ShapedArray(shape, a.dtype, a.weak_type)


class BatchTrace(core.Trace):
    def __init__(self, parent, axis_size):
        super().__init__(parent)
        self.axis_size = axis_size

    def unpack(self, x):
        if isinstance(x, BatchTracer) and x._trace is self:
            return x.val, x.bdim
        if isinstance(x, Tracer) and not x._trace.active:
            raise core.leaked_tracer_error(x)
        return x, None

    def process_primitive(self, prim, args, params):
        vals, dims = [], []
        for a in args:
            v, d = self.unpack(a)
            vals.append(v)
            dims.append(d)
        if all(d is None for d in dims):
            with set_trace(self.parent):
                return prim.bind(*vals, **params)
        if prim.batch is None:
            raise core.primitive_error(prim, vals, "no batching (vmap) rule", params)
        with set_trace(self.parent):
            out, out_dim = prim.batch(vals, dims, **params)
        if prim.multiple_results:
            return [self.wrap(o, d) for o, d in zip(out, out_dim)]
        return self.wrap(out, out_dim)

    def wrap(self, val, bdim):
        return val if bdim is None else BatchTracer(self, val, bdim)


# ---- helpers for rules (they run at the parent trace)


def moveaxis(x, src, dst):
    """Move axis src of x to dst (no-op when equal)."""
    if src == dst and src >= 0:  # the usual case: no aval needed
        return x
    from ..primitives import shapes
    nd = get_aval(x).ndim
    src, dst = src % nd, dst % nd
    if src == dst:
        return x
    perm = [i for i in range(nd) if i != src]
    perm.insert(dst, src)
    return shapes.transpose_p.bind(x, permutation=tuple(perm))


def broadcast(x, size, axis):
    """Add a new axis of length `size` at `axis` (a broadcast, no copy eagerly)."""
    from ..primitives import shapes
    a = get_aval(x)
    shape = list(a.shape)
    shape.insert(axis, size)
    dims = tuple(i if i < axis else i + 1 for i in range(a.ndim))
    return shapes.broadcast_in_dim_p.bind(x, shape=tuple(shape), broadcast_dimensions=dims)


def bdim_at_front(x, d, size):
    """x with its batch axis at 0, broadcasting unbatched values."""
    if d is None:
        return broadcast(x, size, 0)
    return moveaxis(x, d, 0)


def axis_size_of(vals, dims):
    for v, d in zip(vals, dims):
        if d is not None:
            return get_aval(v).shape[d]
    raise ValueError("no batched operand")


def move_all_to_front(vals, dims, broadcast_unbatched=True):
    """All batched operands with batch axis 0; unbatched ones broadcast (or kept)."""
    size = axis_size_of(vals, dims)
    out = []
    for v, d in zip(vals, dims):
        if d is None and not broadcast_unbatched:
            out.append(v)
        else:
            out.append(bdim_at_front(v, d, size))
    return out, size


def vmap_flat(fun, args, in_dims, out_dims, axis_size, fn_name=None, out_name=None):
    """Map `fun` over axis `in_dims[i]` of each arg (None = broadcast).

    out_dims: a list of ints/None, or a callable returning it once `fun` has
    run (api.vmap resolves out_axes against the output structure).
    out_name(i) names output i in error messages."""
    trace = BatchTrace(core.current_trace(), axis_size)
    if fn_name is not None:
        trace.fn_name = fn_name
    ins = [a if d is None else BatchTracer(trace, a, d) for a, d in zip(args, in_dims)]
    try:
        with set_trace(trace):
            outs = fun(*ins)
        if callable(out_dims):
            out_dims = out_dims()
        res = []
        for i, (o, od) in enumerate(zip(outs, out_dims)):
            v, d = trace.unpack(o)
            with set_trace(trace.parent):
                if od is None:
                    if d is not None:
                        what = out_name(i) if out_name is not None else f"output {i}"
                        raise ValueError(
                            f"vmap has out_axes=None for {what}, which is batched (it depends "
                            f"on the mapped axis, at axis {d}); only outputs that do not depend "
                            f"on the mapped inputs can have out_axes None")
                    res.append(v)
                    continue
                nd = get_aval(v).ndim + (1 if d is None else 0)  # batched output rank
                if not -nd <= od < nd:
                    what = out_name(i) if out_name is not None else f"output {i}"
                    raise ValueError(f"vmap out_axes {od} is out of range for {what}, whose "
                                     f"batched rank is {nd} (out_axes must be in [{-nd}, {nd}))")
                if d is None:
                    res.append(broadcast(v, axis_size, od % nd))
                else:
                    res.append(moveaxis(v, d, od))
    finally:
        trace.finish()
    return res


_batched: dict = {}


def batch_jaxpr(closed, size, in_batched, instantiate):
    """Batched version of a closed jaxpr: batched inputs/outputs carry the
    batch axis first. Outputs are batched where the computation makes them so
    or `instantiate` asks (so outputs that do not depend on a batched input
    can stay unbatched: jacfwd's primal outputs). Returns (closed, out_batched).
    (The primitives that carry jaxprs, jit/cond/while/scan, batch them here;
    memoized per jaxpr: eager vmap of a loop meets the same interned body
    on every call.)"""
    bj, out_batched = core.memo_by_jaxpr(
        _batched, closed, (size, tuple(in_batched), tuple(instantiate)),
        lambda: _batch_jaxpr(closed, size, in_batched, instantiate))
    return bj, list(out_batched)


def _batch_jaxpr(closed, size, in_batched, instantiate):
    in_avals = [a.update(shape=(size,) + tuple(a.shape)) if b else a
                for a, b in zip(closed.in_avals, in_batched)]
    box = []

    def fun(*args):
        trace = BatchTrace(core.current_trace(), size)
        ins = [BatchTracer(trace, a, 0) if b else a for a, b in zip(args, in_batched)]
        try:
            with set_trace(trace):
                outs = core.eval_jaxpr(closed.jaxpr, closed.consts, *ins)
            res, flags = [], []
            for o, inst in zip(outs, instantiate):
                v, d = trace.unpack(o)
                with set_trace(trace.parent):
                    if d is None:
                        if inst:
                            v = broadcast(v, size, 0)
                    else:
                        v = moveaxis(v, d, 0)
                res.append(v)
                flags.append(d is not None or bool(inst))
        finally:
            trace.finish()
        box[:] = flags
        return res

    return core.trace_to_jaxpr(fun, in_avals), tuple(box)


def vmap_jaxpr(closed: core.ClosedJaxpr, axis_size, in_dims, out_dims_at_front=True):
    """Closed jaxpr -> batched closed jaxpr; batched inputs/outputs carry their
    batch axis at 0 (outputs: all batched, unbatched ones broadcast)."""
    in_avals = []
    for a, d in zip(closed.in_avals, in_dims):
        in_avals.append(a if d is None else a.update(shape=(axis_size,) + a.shape))

    def fun(*args):
        dims = [None if d is None else 0 for d in in_dims]
        return vmap_flat(lambda *xs: core.eval_jaxpr(closed.jaxpr, closed.consts, *xs),
                         args, dims, [0] * len(closed.out_avals), axis_size)

    return core.trace_to_jaxpr(fun, in_avals)
