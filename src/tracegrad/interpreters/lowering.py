"""Jaxpr -> StableHLO lowering with the MLIR Python bindings shipped in jaxlib.

How it works
------------
* One MLIR context for the whole process (`ir_context()`), made once: making
  one costs milliseconds and every type/attribute we build lives in it. All
  IR building happens under `lock` because an MLIR context is not safe to
  mutate from two threads.
* `lower_jaxpr(closed_jaxpr)` builds `func.func public @main`, walks the eqns
  and calls each primitive's rule::

      eqn.primitive.lower(ctx, *in_values, **eqn.params) -> list[ir.Value]

  `ctx` is a `LoweringContext` (avals_in/avals_out, the module, and
  `lower_sub_jaxpr` / `lower_region` / `call_sub_jaxpr` for higher-order
  primitives). A rule may return a single `ir.Value` for one output.
* Consts of the ClosedJaxpr with `size <= inline_const_max_size` (default 1,
  i.e. scalars) are embedded as `stablehlo.constant`; all other consts
  (arrays, whether numpy or on a device) become extra *leading* arguments of
  @main, in order; small ones read only by fusible ops share one flat argument
  per dtype, sliced apart in @main (`_const_plan`: each argument costs a call
  ~0.15 us). `hoisted_consts(closed_jaxpr)` returns exactly those arguments,
  so the caller runs ``execute(exe, hoisted_consts(cj) + args)``.
  Consts of sub-jaxprs (cond branches, loop bodies, ...) are always embedded.
* Literals in eqn inputs become `stablehlo.constant`.

Writing rules::

    sin_p.lower = lowering.elementwise(stablehlo.SineOp)

    def _cond_lower(ctx, pred, *ops, branches):       # if/else via regions
        op = stablehlo.IfOp([ir_type(a) for a in ctx.avals_out], pred)
        ctx.lower_region(op.true_branch, branches[1], captured=ops)
        ctx.lower_region(op.false_branch, branches[0], captured=ops)
        return list(op.results)

    def _reduce_sum_lower(ctx, x, *, axes):
        return [lowering.reduce(x, ctx.avals_in[0], ctx.avals_out[0], axes, "add")]
"""
from __future__ import annotations

import re
import threading

import numpy as np

from jaxlib.mlir import ir
from jaxlib.mlir._mlir_libs import _jax_mlir_ext
from jaxlib.mlir.dialects import chlo
from jaxlib.mlir.dialects import func as func_dialect
from jaxlib.mlir.dialects import stablehlo as hlo

try:
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None

__all__ = [
    "LoweringError", "LoweringContext", "ir_context", "new_ir_context", "lock", "lower_jaxpr",
    "hoisted_consts", "module_text", "verify", "ir_type", "ir_element_type",
    "constant", "broadcast_in_dim", "convert", "compare", "make_reducer_region",
    "reduce", "reduce_identity", "elementwise", "result", "mark_donated_args",
]

lock = threading.RLock()  # guards the shared context (build, print, compile)
_context = None


class LoweringError(Exception):
    """A lowering rule failed or the module did not verify."""


# ---------------------------------------------------------------- context

def ir_context() -> ir.Context:
    """The shared MLIR context, with func, stablehlo and chlo loaded.

    Quirk (jaxlib 0.10.2): a plain `ir.Context()` does *not* know the `func`
    dialect (verification fails with "created with unregistered dialect");
    the upstream dialects must be added from `_jax_mlir_ext.register_dialects`
    and stablehlo/chlo registered on the context explicitly.
    """
    global _context
    if _context is None:
        with lock:
            if _context is None:
                _context = new_ir_context()
    return _context


def new_ir_context() -> ir.Context:
    """A fresh MLIR context with our dialects (see ir_context), for a thread
    that must not share the process's one (xla's background compiles)."""
    ctx = ir.Context()
    registry = ir.DialectRegistry()
    _jax_mlir_ext.register_dialects(registry)  # func, arith, ...
    ctx.append_dialect_registry(registry)
    ctx.load_all_available_dialects()
    hlo.register_dialect(ctx)
    chlo.register_dialect(ctx)
    return ctx


# ---------------------------------------------------------------- types

def _element_type_table():
    i, u = ir.IntegerType.get_signless, ir.IntegerType.get_unsigned
    t = {
        np.dtype(np.bool_): lambda: i(1),
        np.dtype(np.int8): lambda: i(8), np.dtype(np.int16): lambda: i(16),
        np.dtype(np.int32): lambda: i(32), np.dtype(np.int64): lambda: i(64),
        # StableHLO integers are signless except unsigned ones, which must be
        # `ui32` etc. or XLA treats them as signed.
        np.dtype(np.uint8): lambda: u(8), np.dtype(np.uint16): lambda: u(16),
        np.dtype(np.uint32): lambda: u(32), np.dtype(np.uint64): lambda: u(64),
        np.dtype(np.float16): ir.F16Type.get,
        np.dtype(np.float32): ir.F32Type.get,
        np.dtype(np.float64): ir.F64Type.get,
        np.dtype(np.complex64): lambda: ir.ComplexType.get(ir.F32Type.get()),
        np.dtype(np.complex128): lambda: ir.ComplexType.get(ir.F64Type.get()),
        # float0 (tangent type of ints) is carried as bool zeros, like JAX.
        np.dtype([("float0", np.void, 0)]): lambda: i(1),
    }
    if ml_dtypes is not None:
        extra = {"bfloat16": "BF16Type", "float8_e4m3fn": "Float8E4M3FNType",
                 "float8_e5m2": "Float8E5M2Type", "float8_e4m3fnuz": "Float8E4M3FNUZType",
                 "float8_e5m2fnuz": "Float8E5M2FNUZType",
                 "float8_e4m3b11fnuz": "Float8E4M3B11FNUZType"}
        for name, cls in extra.items():
            if hasattr(ml_dtypes, name) and hasattr(ir, cls):
                t[np.dtype(getattr(ml_dtypes, name))] = getattr(ir, cls).get
        for name, bits, f in (("int4", 4, i), ("uint4", 4, u)):
            if hasattr(ml_dtypes, name):
                t[np.dtype(getattr(ml_dtypes, name))] = (lambda f=f, b=bits: f(b))
    return t


_ELEMENT_FACTORIES = _element_type_table()
_element_cache: dict = {}  # dtype -> ir.Type (valid: there is one context)
_FLOAT0 = np.dtype([("float0", np.void, 0)])


def _is_float0(dtype) -> bool:
    return dtype == _FLOAT0


def ir_element_type(dtype) -> ir.Type:
    dtype = np.dtype(dtype)
    t = _element_cache.get(dtype)
    if t is None:
        try:
            factory = _ELEMENT_FACTORIES[dtype]
        except KeyError:
            raise TypeError(f"no StableHLO element type for dtype {dtype}") from None
        with ir_context():
            t = _element_cache[dtype] = factory()
    return t


_tensor_cache: dict = {}  # (shape, dtype) -> ir.RankedTensorType


def ir_type(aval) -> ir.RankedTensorType:
    """tensor<...> type of an aval (anything with .shape and .dtype)."""
    key = (tuple(aval.shape), np.dtype(aval.dtype))
    t = _tensor_cache.get(key)
    if t is None:
        elt = ir_element_type(key[1])
        if len(_tensor_cache) > 100_000:  # many distinct shapes: start over
            _tensor_cache.clear()
        with ir_context(), ir.Location.unknown():  # get() wants a location
            t = _tensor_cache[key] = ir.RankedTensorType.get(list(key[0]), elt)
    return t


class _Aval:
    """Minimal aval used internally for intermediate values."""
    __slots__ = ("shape", "dtype", "weak_type")

    def __init__(self, shape, dtype, weak_type=False):
        self.shape, self.dtype, self.weak_type = tuple(shape), np.dtype(dtype), weak_type

    def __repr__(self):
        return f"_Aval({self.shape}, {self.dtype})"


# ---------------------------------------------------------------- helpers

def result(x) -> ir.Value:
    """The single result of an op builder (OpView) or the value itself."""
    return x if isinstance(x, ir.Value) else x.result


def constant(value, aval=None) -> ir.Value:
    """`stablehlo.constant` for a numpy scalar/array (cast/broadcast to aval).

    Arrays whose elements are all equal (np.zeros, np.full, ...) become a scalar constant plus a broadcast, to keep modules small.
    """
    dtype = None if aval is None else np.dtype(aval.dtype)
    if dtype is not None and _is_float0(dtype):
        arr = np.zeros(np.shape(value) if aval is None else aval.shape, np.bool_)
    else:
        arr = np.asarray(value, dtype=dtype)
        if _is_float0(arr.dtype):
            arr = np.zeros(arr.shape, np.bool_)
    if aval is not None and arr.shape != tuple(aval.shape):
        arr = np.broadcast_to(arr, tuple(aval.shape))
    if arr.size > 1:
        first = arr.reshape(-1)[0]
        if bool(np.all(arr == first)):
            scalar = constant(np.asarray(first, arr.dtype))
            return broadcast_in_dim(scalar, _Aval(arr.shape, arr.dtype), ())
    attr = ir.DenseElementsAttr.get(np.ascontiguousarray(arr),
                                    type=ir_element_type(arr.dtype), shape=list(arr.shape))
    return hlo.ConstantOp(attr).result


def broadcast_in_dim(value, aval_out, dims) -> ir.Value:
    """Operand dim i goes to output dim dims[i] (size 1 or equal)."""
    return hlo.BroadcastInDimOp(ir_type(aval_out), value, list(dims)).result


def _broadcast_to_shape(value, aval_in, shape) -> ir.Value:
    """Numpy-style broadcast (trailing dims aligned) of value to shape."""
    shape = tuple(shape)
    if tuple(aval_in.shape) == shape:
        return value
    offset = len(shape) - len(aval_in.shape)
    return broadcast_in_dim(value, _Aval(shape, aval_in.dtype),
                            range(offset, len(shape)))


def compare(a, b, direction: str, aval, comparison_type: str | None = None) -> ir.Value:
    """`stablehlo.compare`; aval is the *operand* aval (picks the comparison
    type: bool/unsigned -> UNSIGNED, signed -> SIGNED, floats/complex -> FLOAT;
    pass comparison_type="TOTALORDER" for sorting)."""
    if comparison_type is None:
        kind = np.dtype(aval.dtype).kind
        comparison_type = {"b": "UNSIGNED", "u": "UNSIGNED", "i": "SIGNED"}.get(kind, "FLOAT")
    return hlo.CompareOp(a, b, hlo.ComparisonDirectionAttr.get(direction),
                         compare_type=hlo.ComparisonTypeAttr.get(comparison_type)).result


def convert(value, aval_in, aval_out) -> ir.Value:
    """Element type conversion with numpy semantics for the awkward cases."""
    din, dout = np.dtype(aval_in.dtype), np.dtype(aval_out.dtype)
    if din == dout:
        return value
    if din.kind == "c" and dout.kind != "c":  # numpy drops the imaginary part
        value = hlo.RealOp(value).result
        aval_in = _Aval(aval_in.shape, np.finfo(din).dtype)
        din = aval_in.dtype
    if dout == np.bool_ and not _is_float0(dout):  # x != 0, not truncation
        zero = constant(np.zeros((), din), _Aval(aval_in.shape, din))
        return compare(value, zero, "NE", aval_in)
    return hlo.ConvertOp(ir_type(aval_out), value).result


_REDUCER_OPS = {"add": hlo.AddOp, "mul": hlo.MulOp, "max": hlo.MaxOp,
                "min": hlo.MinOp, "and": hlo.AndOp, "or": hlo.OrOp}


def make_reducer_region(op_kind, dtype, region) -> ir.Block:
    """Fill `region` (e.g. `reduce_op.body`) with a scalar reducer body:
    `^bb(%a: tensor<T>, %b: tensor<T>): return op(%a, %b)`.

    op_kind: "add" | "mul" | "max" | "min" | "and" | "or", or a callable
    (a, b) -> ir.Value for anything else. Works for reduce, reduce_window,
    scatter and select_and_scatter regions.
    """
    scalar = ir_type(_Aval((), dtype))
    block = region.blocks.append(scalar, scalar)
    with ir.InsertionPoint(block):
        a, b = block.arguments
        if callable(op_kind):
            out = op_kind(a, b)
        else:
            if np.dtype(dtype) == np.bool_ and op_kind in ("add", "mul"):
                op_kind = "or" if op_kind == "add" else "and"  # bool ring
            out = _REDUCER_OPS[op_kind](a, b)
        hlo.ReturnOp([result(out)])
    return block


def reduce_identity(op_kind, dtype):
    """Numpy scalar identity of a reducer (init value for reduce)."""
    dtype = np.dtype(dtype)
    if op_kind in ("add", "or"):
        return np.zeros((), dtype)
    if op_kind in ("mul", "and"):
        return np.ones((), dtype)
    if dtype == np.bool_:
        return np.array(op_kind == "min")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.array(info.min if op_kind == "max" else info.max, dtype)
    return np.array(-np.inf if op_kind == "max" else np.inf, dtype)


def reduce(value, aval_in, aval_out, axes, op_kind) -> ir.Value:
    """`stablehlo.reduce` of one operand over `axes` with a standard reducer."""
    init = constant(reduce_identity(op_kind, aval_in.dtype))
    op = hlo.ReduceOp([ir_type(aval_out)], [value], [init], list(axes))
    make_reducer_region(op_kind, aval_in.dtype, op.body)
    return op.result


def elementwise(op_builder, *, result_type: bool = False, broadcast: bool = True):
    """Lowering rule for an n-ary elementwise op: `elementwise(hlo.SineOp)`.

    op_builder(*operands) builds the op (an OpView class or any callable that
    returns an op/value). result_type=True passes the output tensor type as
    the first argument (for ops without type inference, e.g. ConvertOp-like).
    broadcast=True numpy-broadcasts operands whose shape differs from the
    output (e.g. rank-0 literals).
    """
    def rule(ctx, *args, **params):
        out = ctx.avals_out[0]
        if broadcast:
            args = [_broadcast_to_shape(x, a, out.shape) for x, a in zip(args, ctx.avals_in)]
        if result_type:
            return [result(op_builder(ir_type(out), *args))]
        return [result(op_builder(*args))]
    rule.__name__ = f"lower_{getattr(op_builder, '__name__', 'elementwise')}"
    return rule


# ---------------------------------------------------------------- lowering

def _unpack(closed):
    """(jaxpr, consts) from a ClosedJaxpr, or from a bare Jaxpr."""
    if hasattr(closed, "consts"):
        return closed.jaxpr, tuple(closed.consts)
    return closed, ()


def _is_literal(v) -> bool:
    return hasattr(v, "val")  # core.Literal has .val/.aval; Var has no .val


def _aval_of(x):
    aval = getattr(x, "aval", None)
    if aval is not None and hasattr(aval, "shape"):
        return aval
    a = np.asarray(x)
    return _Aval(a.shape, a.dtype)


def _inline_const(c, max_size) -> bool:
    # np.shape reads .shape without converting (no device->host copy).
    return int(np.prod(np.shape(c), dtype=np.int64)) <= max_size


# Each @main argument costs ~0.15 us per call in PjRt's execute (measured:
# a 7-table determinant ran 0.8 us slower than with its tables embedded).
# Small consts read only by ops XLA fuses with their operands are therefore
# packed, one flat argument per dtype, and sliced apart inside @main. XLA:CPU
# runs a program without thread hand-offs when every buffer is at most 512
# bytes; a pack must not be the buffer that breaks that.
_SEQUENTIAL_BYTES = 512
_PACK_BYTES = 32768


def _nbytes(aval) -> int:
    return int(np.prod(aval.shape, dtype=np.int64)) * np.dtype(aval.dtype).itemsize


def _packable_consts(jaxpr, consts, hoist):
    """Which hoisted consts may be packed, and the byte limit of one pack."""
    readers = {}
    for eqn in jaxpr.eqns:
        for v in eqn.invars:
            if not _is_literal(v):
                readers.setdefault(v, []).append(eqn)
    outs = set(v for v in jaxpr.outvars if not _is_literal(v))

    def read_fusibly(var):
        return var not in outs and all(
            e.primitive.fusible_reads is True or
            (e.primitive.fusible_reads == "through" and all(map(read_fusibly, e.outvars)))
            for e in readers.get(var, ()))
    avals = [v.aval for v in jaxpr.invars] + [v.aval for e in jaxpr.eqns for v in e.outvars]
    small = all(_nbytes(a) <= _SEQUENTIAL_BYTES for a in avals + [_aval_of(c) for c in consts])
    limit = _SEQUENTIAL_BYTES if small else _PACK_BYTES
    ok = []
    for var, c, h in zip(jaxpr.constvars, consts, hoist):
        aval = _aval_of(c)
        ok.append(h and _nbytes(aval) <= limit and np.dtype(aval.dtype).kind in "biufc"
                  and read_fusibly(var))
    return ok, limit


def _const_plan(jaxpr, consts, max_size):
    """How each const reaches @main -- ("inline",), ("arg", i), or ("part", i,
    start, size, shape) of packed argument i -- and @main's leading arguments."""
    hoist = [max_size is not None and not _inline_const(c, max_size) for c in consts]
    packable, limit = _packable_consts(jaxpr, consts, hoist)
    if sum(packable) < 2:
        packable = [False] * len(consts)
    plan, args, open_packs = [], [], {}
    for c, h, pack_it in zip(consts, hoist, packable):
        if not h:
            plan.append(("inline",))
        elif not pack_it:
            plan.append(("arg", len(args)))
            args.append(c)
        else:
            flat = _host(c).reshape(-1)
            pack = open_packs.get(flat.dtype)
            if pack is None or (pack[1] + flat.size) * flat.dtype.itemsize > limit:
                pack = open_packs[flat.dtype] = [len(args), 0]
                args.append([])
            i, start = pack
            args[i].append(flat)
            pack[1] += flat.size
            plan.append(("part", i, start, flat.size, np.shape(c)))
    args = [np.concatenate(a) if type(a) is list else a for a in args]
    return plan, args


def hoisted_consts(closed_jaxpr, inline_const_max_size: int = 1) -> list:
    """Consts that lower_jaxpr turns into leading @main arguments, in order."""
    jaxpr, consts = _unpack(closed_jaxpr)
    return _const_plan(jaxpr, consts, inline_const_max_size)[1]


_location_cache: dict = {}
_SOURCE_RE = re.compile(r"^(.*):(\d+)(?: \(.*\))?$")


def _location(prim_name, source_info):
    key = (prim_name, source_info)
    loc = _location_cache.get(key)
    if loc is None:
        m = _SOURCE_RE.match(str(source_info)) if source_info else None
        if m:  # "file:line (function)" -> loc("prim"("file":line:0))
            loc = ir.Location.name(prim_name, childLoc=ir.Location.file(m[1], int(m[2]), 0))
        elif source_info:
            loc = ir.Location.name(prim_name, childLoc=ir.Location.name(str(source_info)))
        else:
            loc = ir.Location.name(prim_name)
        if len(_location_cache) > 100_000:
            _location_cache.clear()
        _location_cache[key] = loc
    return loc


class _ModuleState:
    """Per-module lowering state shared by all LoweringContexts."""

    def __init__(self, module):
        self.module = module
        self.symbol_table = ir.SymbolTable(module.operation)
        self.funcs: dict = {}  # id(jaxpr) -> (func op, keepalive)


class LoweringContext:
    """What a primitive lowering rule receives as `ctx`."""
    __slots__ = ("state", "eqn", "avals_in", "avals_out")

    def __init__(self, state, eqn, avals_in, avals_out):
        self.state, self.eqn = state, eqn
        self.avals_in, self.avals_out = avals_in, avals_out

    @property
    def module(self) -> ir.Module:
        return self.state.module

    @property
    def symbol_table(self) -> ir.SymbolTable:
        return self.state.symbol_table

    @property
    def primitive(self):
        return self.eqn.primitive if self.eqn is not None else None

    def lower_sub_jaxpr(self, closed_jaxpr, *values) -> list:
        """Inline a (Closed)Jaxpr at the current insertion point; its consts are
        embedded as constants. values: one ir.Value per invar."""
        jaxpr, consts = _unpack(closed_jaxpr)
        const_vals = [constant(_host(c), _aval_of(c)) for c in consts]
        return _lower_eqns(self.state, jaxpr, const_vals, list(values))

    def lower_region(self, region, closed_jaxpr, captured=(), arg_avals=()) -> ir.Block:
        """Fill `region` with a block whose arguments have types `arg_avals`,
        lower the jaxpr on `captured + block.arguments` and return its outputs
        with `stablehlo.return`. For if/case branches (no block args, operands
        captured from the enclosing scope) and while cond/body (block args =
        loop carry, captured = the loop's consts)."""
        block = region.blocks.append(*[ir_type(a) for a in arg_avals])
        with ir.InsertionPoint(block):
            outs = self.lower_sub_jaxpr(closed_jaxpr, *captured, *block.arguments)
            hlo.ReturnOp(outs)
        return block

    def sub_jaxpr_func(self, closed_jaxpr, name: str = "fn") -> func_dialect.FuncOp:
        """A private `func.func` for the jaxpr, made once per jaxpr object per
        module (name uniqued by the symbol table)."""
        key = id(closed_jaxpr)
        hit = self.state.funcs.get(key)
        if hit is not None:
            return hit[0]
        jaxpr, _ = _unpack(closed_jaxpr)
        fn = _build_func(self.state, closed_jaxpr, name, [v.aval for v in jaxpr.invars],
                         public=False, inline_const_max_size=None)
        self.state.funcs[key] = (fn, closed_jaxpr)  # keep the jaxpr alive: id() key
        return fn

    def call_sub_jaxpr(self, closed_jaxpr, *values, name: str = "fn") -> list:
        """`func.call` a private function made from the jaxpr (not inlined)."""
        fn = self.sub_jaxpr_func(closed_jaxpr, name)
        call = func_dialect.CallOp(fn, list(values))
        return list(call.results)


def _host(c):
    """Host numpy value of a const (device buffers are read back)."""
    return c if isinstance(c, (np.ndarray, np.generic)) else np.asarray(c)


def _lower_eqns(state, jaxpr, const_vals, arg_vals) -> list:
    env = {}
    if len(const_vals) != len(jaxpr.constvars):
        raise LoweringError(f"jaxpr has {len(jaxpr.constvars)} constvars but "
                            f"{len(const_vals)} const values (pass a ClosedJaxpr)")
    for v, x in zip(jaxpr.constvars, const_vals):
        env[v] = x
    if len(arg_vals) != len(jaxpr.invars):
        raise LoweringError(f"jaxpr takes {len(jaxpr.invars)} inputs, got {len(arg_vals)}")
    for v, x in zip(jaxpr.invars, arg_vals):
        env[v] = x

    def read(v):
        if _is_literal(v):
            return constant(v.val, v.aval)
        return env[v]

    for eqn in jaxpr.eqns:
        prim = eqn.primitive
        src = getattr(eqn, "source_info", None)
        where = f" at {src}" if src else ""
        rule = getattr(prim, "lower", None)
        if rule is None:
            raise LoweringError(f"no lowering rule for primitive '{prim.name}'{where}")
        ctx = LoweringContext(state, eqn, [v.aval for v in eqn.invars],
                              [v.aval for v in eqn.outvars])
        try:
            with _location(prim.name, src):
                outs = rule(ctx, *[read(v) for v in eqn.invars], **eqn.params)
        except LoweringError as e:  # from a nested jaxpr: keep innermost message
            e.add_note(f"  inside '{prim.name}'{where}")
            raise
        except Exception as e:
            raise LoweringError(f"lowering rule for '{prim.name}'{where} failed: "
                                f"{type(e).__name__}: {e}") from e
        if isinstance(outs, ir.Value):
            outs = [outs]
        elif isinstance(outs, ir.OpView):
            outs = list(outs.results)
        else:
            outs = list(outs)
        if len(outs) != len(eqn.outvars):
            raise LoweringError(f"lowering rule for '{prim.name}'{where} returned "
                                f"{len(outs)} values, expected {len(eqn.outvars)}")
        for v, x in zip(eqn.outvars, outs):
            env[v] = x
    return [read(v) for v in jaxpr.outvars]


def _build_func(state, closed_jaxpr, name, in_avals, *, public, inline_const_max_size):
    """Make `func.func @name` in the module. With inline_const_max_size=None all
    consts are embedded; otherwise large ones are leading arguments (small ones
    packed, see _const_plan)."""
    jaxpr, consts = _unpack(closed_jaxpr)
    plan, hoisted = _const_plan(jaxpr, consts, inline_const_max_size)
    arg_avals = [_aval_of(c) for c in hoisted] + list(in_avals)
    out_avals = [v.aval for v in jaxpr.outvars]
    ftype = ir.FunctionType.get([ir_type(a) for a in arg_avals],
                                [ir_type(a) for a in out_avals])
    with ir.InsertionPoint.at_block_begin(state.module.body):
        fn = func_dialect.FuncOp(name, ftype)
    fn.attributes["sym_visibility"] = ir.StringAttr.get("public" if public else "private")
    state.symbol_table.insert(fn)  # renames on clash, e.g. fn_0
    block = fn.add_entry_block()
    with ir.InsertionPoint(block):
        args = list(block.arguments)
        const_vals = []
        for c, how in zip(consts, plan):
            if how[0] == "arg":
                const_vals.append(args[how[1]])
            elif how[0] == "part":
                _, i, start, size, shape = how
                part = hlo.SliceOp(args[i], [start], [start + size], [1]).result
                aval = _Aval(shape, hoisted[i].dtype)
                const_vals.append(result(hlo.ReshapeOp(ir_type(aval), part)))
            else:
                const_vals.append(constant(_host(c), _aval_of(c)))
        outs = _lower_eqns(state, jaxpr, const_vals, args[len(hoisted):])
        func_dialect.ReturnOp(outs)
    return fn


def lower_jaxpr(closed_jaxpr, name: str = "main", *, inline_const_max_size: int = 1,
                verify_module: bool = True) -> ir.Module:
    """Lower a ClosedJaxpr (or Jaxpr without constvars) to a StableHLO module.

    @main's arguments are `hoisted_consts(closed_jaxpr) + jaxpr.invars`; its
    results are jaxpr.outvars. The module's sym_name is `name`.
    """
    jaxpr, _ = _unpack(closed_jaxpr)
    with lock, ir_context(), ir.Location.unknown():
        module = ir.Module.create()
        module.operation.attributes["sym_name"] = ir.StringAttr.get(name)
        state = _ModuleState(module)
        _build_func(state, closed_jaxpr, "main", [v.aval for v in jaxpr.invars],
                    public=True, inline_const_max_size=inline_const_max_size)
        if verify_module:
            verify(module)
    return module


def mark_donated_args(module: ir.Module, donated, arg_avals, out_avals) -> None:
    """Mark @main arguments whose buffers the caller gives up (jit's
    donate_argnums). Each donated argument is aliased to the first output
    of the same shape and dtype not yet taken (`tf.aliasing_output`, so XLA
    writes the result into the argument's memory); the others only become
    `jax.buffer_donor`s. `donated`/`arg_avals` cover all @main arguments
    (hoisted consts first)."""
    with lock, ir_context():
        main = next(op for op in module.body.operations
                    if ir.StringAttr(op.attributes["sym_name"]).value == "main")
        i32 = ir.IntegerType.get_signless(32)
        taken, attrs = set(), []
        for d, a in zip(donated, arg_avals):
            entries = {}
            if d:
                j = next((j for j, o in enumerate(out_avals) if j not in taken
                          and tuple(o.shape) == tuple(a.shape)
                          and np.dtype(o.dtype) == np.dtype(a.dtype)), None)
                if j is None:
                    entries["jax.buffer_donor"] = ir.BoolAttr.get(True)
                else:
                    taken.add(j)
                    entries["tf.aliasing_output"] = ir.IntegerAttr.get(i32, j)
            attrs.append(ir.DictAttr.get(entries))
        main.attributes["arg_attrs"] = ir.ArrayAttr.get(attrs)


def verify(module: ir.Module) -> None:
    """Verify; raise LoweringError with MLIR's diagnostics. The diagnostics'
    locations name the primitive and its source line, e.g.
    `loc("sin"("model.py":12:0))`."""
    with lock:
        try:
            module.operation.verify()
        except ir.MLIRError as e:
            raise LoweringError(f"StableHLO module failed to verify:\n{e}") from None


def module_text(module: ir.Module, debug_info: bool = False) -> str:
    """Pretty StableHLO text (debug_info=True adds loc(...) annotations)."""
    with lock:
        return module.operation.get_asm(enable_debug_info=debug_info)
