"""Core: tracing, jaxprs, printing, eval_jaxpr, DCE, errors, the registry."""
import numpy as np
import pytest

import tracegrad as tg
import tracegrad.numpy as tnp
from tracegrad import core


def test_make_jaxpr_prints_like_jax():
    x = np.ones(3, np.float32)
    j = tg.make_jaxpr(lambda a, b: a * b)(x, x)
    assert str(j) == "{ lambda ; a:f32[3] b:f32[3]. let c:f32[3] = mul a b in (c,) }"


def test_closure_becomes_constvar():
    c = np.arange(3.0, dtype=np.float32)
    j = tg.make_jaxpr(lambda a: a * c)(np.ones(3, np.float32))
    assert str(j) == "{ lambda a:f32[3]; b:f32[3]. let c:f32[3] = mul b a in (c,) }"
    assert len(j.consts) == 1


def test_python_scalars_are_weak_literals():
    j = tg.make_jaxpr(lambda a: a * 2.0 + 1)(np.ones(3, np.float32))
    assert "mul a 2.0:f32[]" in str(j)
    assert j.out_avals[0].dtype == np.float32


def test_eval_jaxpr_roundtrip():
    f = lambda a, b: tnp.sum(tnp.sin(a * b) + 1.0)
    x = np.linspace(0, 1, 5)
    j = tg.make_jaxpr(f)(x, x)
    out = core.eval_jaxpr(j.jaxpr, j.consts, x, x)
    np.testing.assert_allclose(np.asarray(out[0]), np.sum(np.sin(x * x) + 1.0))


def test_pytrees_in_and_out():
    from collections import namedtuple
    P = namedtuple("P", "a b")
    f = lambda d, p, n: {"s": d["x"] + p.a, "t": (p.b, None)}
    j, shape = tg.make_jaxpr(f, return_shape=True)({"x": np.ones(2)}, P(np.ones(2), np.ones(1)), None)
    assert len(j.jaxpr.invars) == 3
    assert shape["s"].shape == (2,)


def test_dce_drops_unused():
    j = tg.make_jaxpr(lambda a: (tnp.sin(a), tnp.cos(a))[0])(np.ones(2))
    assert "cos" not in str(j)


def test_source_line_recorded():
    j = tg.make_jaxpr(lambda a: tnp.sin(a))(np.ones(2))
    assert "test_core.py" in j.jaxpr.eqns[0].source_info


def test_concretization_error_names_line():
    def f(x):
        if x > 0:
            return x
        return -x
    with pytest.raises(tg.ConcretizationError) as e:
        tg.make_jaxpr(f)(1.0)
    msg = str(e.value)
    assert "test_core.py" in msg and "lax.cond" in msg and "f at" in msg


def test_shape_error_names_primitive_and_line():
    from tracegrad.primitives import elementwise as ew
    with pytest.raises(tg.ShapeDtypeError) as e:
        tg.make_jaxpr(lambda a, b: ew.add_p.bind(a, b))(np.ones(2), np.ones(3))
    msg = str(e.value)
    assert "add" in msg and "f64[2]" in msg and "f64[3]" in msg and "test_core.py" in msg


def test_broadcast_error_is_clear():
    with pytest.raises(tg.ShapeDtypeError) as e:
        tnp.add(np.ones(2), np.ones(3))
    assert "(2,)" in str(e.value) and "test_core.py" in str(e.value)


def test_leaked_tracer():
    box = []
    tg.make_jaxpr(lambda a: box.append(a) or a)(np.ones(2))
    with pytest.raises(tg.LeakedTracerError):
        tnp.sin(box[0])


def test_bad_argument_names_path():
    with pytest.raises(TypeError) as e:
        tg.make_jaxpr(lambda d: d["x"])({"x": "hello"})
    assert "['x']" in str(e.value)


def test_registry_complete():
    """Every primitive has every rule it needs (transpose only if linear)."""
    table = tg.coverage(print_table=False)
    missing = [(name, r) for name, row in table.items() for r, ok in row.items() if ok is False]
    assert not missing, f"primitives missing rules: {missing}"
