"""Smoke tests of examples/*.py at reduced size (`main(quick=True)`), each
checking something real: losses fall, manual backprop matches grad, vmap
matches a loop, the plots are written. Two examples also run as scripts
with --quick. The full-size accuracy thresholds are asserted by the examples
themselves (python examples/mlp_digits.py)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}",
                                                  os.path.join(EXAMPLES, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _png(path):
    assert path is not None and os.path.exists(path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > 10_000


def test_mlp_digits_quick_with_plain_prints(capsys):
    mod = load("mlp_digits")
    mod.tqdm = None  # the fallback when tqdm is not installed
    r = mod.main(quick=True, verbose=True)
    out = capsys.readouterr().out
    assert "epoch" in out and "test accuracy" in out
    losses = r["losses"]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]
    assert r["test_accuracy"] > 0.8  # 3 epochs already learn most of it


def test_lenet_digits_quick():
    r = load("lenet_digits").main(quick=True, verbose=False)
    assert r["losses"][-1] < r["losses"][0]
    assert r["test_accuracy"] > 0.25  # well above chance (0.1) after 16 steps
    assert not r["model"].layers[9].deterministic  # trained with dropout on


def test_logistic_regression_quick(tmp_path):
    r = load("logistic_regression").main(quick=True, verbose=False, out_dir=str(tmp_path))
    hist = r["histories"]["logistic regression"]
    assert hist[0] == pytest.approx(np.log(2), rel=1e-5) and hist[-1] < 0.5 * hist[0]
    assert r["accuracy"]["logistic regression"] > 0.9
    assert r["accuracy"]["perceptron"] > 0.85
    _png(r["plot"])


def test_four_ways_quick(tmp_path):
    r = load("four_ways_to_differentiate").main(quick=True, verbose=False, out_dir=str(tmp_path))
    p = r["point"]
    assert p["forward"] == pytest.approx(p["reverse"], rel=1e-12)
    if p["symbolic"] is not None:
        assert p["symbolic"] == pytest.approx(p["reverse"], rel=1e-12)
    # the error curve has its minimum in the middle: truncation then rounding
    err = p["central_difference_error"]
    best = int(np.argmin(err))
    assert 0 < best < len(err) - 1 and err[best] < 1e-6 and err[0] > 1e3 * err[best]
    # AD's derivative grows linearly with depth
    ad = [row["ad_eqns"] for row in r["swell"]]
    assert len(set(np.diff(ad))) == 1
    if "sympy_ops" in r["swell"][0]:
        assert r["swell"][-1]["sympy_ops"] > 4 * r["swell"][-1]["ad_eqns"]
    assert len(r["many_in"]) == len(r["many_out"]) == 3
    _png(r["plot"])


def test_maximum_minimum_quick():
    r = load("maximum_minimum").main(quick=True, verbose=False)
    np.testing.assert_array_equal(np.asarray(r["max_axis1"]), [[0, 0.5, 0.5], [0.5, 0, 0.5]])
    np.testing.assert_array_equal(np.asarray(r["max_axis1_vjp"]), [[0, 0.5, 0.5], [5, 0, 5]])
    np.testing.assert_array_equal(np.asarray(r["first_max"]), [[0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(np.stack(r["maximum"]), [[0.5, 1, 0.5], [0.5, 0, 0.5]])
    np.testing.assert_allclose(r["soft"][0.01], [0, 0.5, 0.5], atol=1e-12)
    for k, v in r["torch"].items():  # empty when torch is not installed
        ours = np.stack(r[k]) if isinstance(r[k], tuple) else np.asarray(r[k])
        np.testing.assert_allclose(ours, np.stack(v) if isinstance(v, list) else v, err_msg=k)


def test_manual_backprop_quick():
    r = load("manual_backprop").main(quick=True, verbose=False)
    assert max(r["max_grad_error"].values()) < 1e-6
    assert r["loss_manual"] == pytest.approx(r["loss_tg"], rel=1e-12)
    assert r["history_manual"][-1] < r["history_manual"][0]
    np.testing.assert_allclose(r["history_manual"], r["history_tg"], rtol=1e-10)
    assert r["weight_drift"] < 1e-8


def test_per_example_grads_quick():
    r = load("per_example_grads").main(quick=True, verbose=False)
    assert r["max_diff"] < 1e-5 and r["mean_vs_batch"] < 1e-5
    assert r["shapes"] == [(32, 64, 32), (32, 32), (32, 32, 10), (32, 10)]
    assert r["loss_after"] < r["loss_before"]
    assert set(r["times"]) == {"loop", "vmap", "jit_vmap"}  # timings vary: not compared here


@pytest.mark.parametrize("name,expect", [("logistic_regression", "training accuracy"),
                                         ("mlp_digits", "test accuracy")])
def test_examples_run_as_scripts(name, expect, tmp_path):
    env = dict(os.environ, TRACEGRAD_EXAMPLES_OUT=str(tmp_path))
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, f"{name}.py"), "--quick"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert expect in proc.stdout
