"""The problems of the suite: sizes (named presets and generated ones), the
functions each framework runs (objective, reverse-mode and forward-mode
derivatives), finite differences, and ADBench's published reference values.

A size is given as a preset name (`d2_K5`) or as generated parameters
(`d=20,K=25,n=10000`); `parse_size` validates both.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import data as D
from . import objectives as O


def _same(f):
    return f


class SizeError(ValueError):
    """A size specification that cannot be used (reported as a usage error)."""


@dataclass
class Instance:
    problem: str
    label: str              # e.g. "d2_K5 (ADBench)" or "d=20,K=25,n=10000"
    theta: np.ndarray       # the differentiated parameters, flat
    data: tuple = ()        # non-differentiated arrays (positional, after theta)
    static: dict = field(default_factory=dict)
    n: int = 0              # number of inputs (len(theta), or per observation for BA)
    m: int = 1              # number of outputs
    batch: int = 1          # BA: observations (the Jacobian is per observation)
    info: str = ""


def _parse_kv(text, keys, problem):
    out = {}
    for part in text.split(","):
        if "=" not in part:
            raise SizeError(f"{problem}: size {text!r}: expected key=value pairs "
                            f"({', '.join(keys)}) or a preset name")
        k, v = (s.strip() for s in part.split("=", 1))
        if k not in keys:
            raise SizeError(f"{problem}: unknown size parameter {k!r} (known: {', '.join(keys)})")
        try:
            val = int(float(v)) if "e" in v.lower() else int(v)  # 1e5 is fine
        except ValueError:
            raise SizeError(f"{problem}: size parameter {k}={v!r} is not a number") from None
        if val <= 0:
            raise SizeError(f"{problem}: size parameter {k}={v} must be positive")
        out[k] = val
    missing = [k for k in keys if k not in out]
    if missing:
        raise SizeError(f"{problem}: size {text!r} misses {', '.join(missing)}")
    return out


class Problem:
    name = ""
    help = ""
    keys: tuple = ()
    presets: dict = {}
    quick: tuple = ()
    full: tuple = ()
    fwd_limit = 10**9      # forward mode (n basis tangents) only up to this many inputs
    scalar = True
    modes = ("objective", "rev", "fwd")   # what the runner measures

    def parse_size(self, text):
        text = text.strip()
        if text in self.presets:
            return dict(self.presets[text], _preset=text)
        return _parse_kv(text, self.keys, self.name)

    # Each problem defines instance(spec) -> Instance and
    # objective(B, theta, *data, **static).

    def functions(self, B, inst):
        """{mode: f(theta, *data)} for this backend: 'objective', 'rev',
        'fwd' (forward mode), 'auto' (tracegrad.jacobian)."""
        f = functools.partial(self.objective, B, **inst.static)
        out = {"objective": f}
        if B.has_rev:
            out["rev"] = B.grad(f) if self.scalar else B.jacrev(f)
        if B.has_fwd and inst.n <= self.fwd_limit:
            out["fwd"] = B.jacfwd(f)
        if getattr(B, "jacobian", None) is not None:
            out["auto"] = B.jacobian(f)
        return out

    def numpy_objective(self, B, inst):
        return lambda th: np.asarray(self.objective(B, th, *inst.data, **inst.static))

    def flatten(self, out, mode):
        """One flat NumPy vector of a result (for agreement checks)."""
        leaves = out if isinstance(out, (tuple, list)) else (out,)
        return np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in leaves])

    def explain_fn(self, B, inst):
        """(function, args) to hand to tracegrad.jacobian_explain."""
        return functools.partial(self.objective, B, **inst.static), (inst.theta,) + tuple(inst.data)

    def reference_checks(self, B, wrap=None):
        """[(name, computed, expected, rel_tol)] on published values; `wrap`
        (e.g. tracegrad.jit) is applied to each objective before calling it."""
        return []


# --------------------------------------------------------------------------


class GMM(Problem):
    name = "gmm"
    help = "Gaussian mixture objective with Wishart prior (ADBench); sizes d, K, n"
    keys = ("d", "K", "n")
    presets = {"test": {"file": "test.txt"}, "d2_K5": {"file": "gmm_d2_K5.txt"},
               "d10_K5": {"file": "gmm_d10_K5.txt"}}
    quick = ("d2_K5",)
    full = ("d2_K5", "d10_K5", "d=20,K=25,n=10000")
    fwd_limit = 400

    def instance(self, spec):
        if "file" in spec:
            g = D.read_gmm(D.adbench_path("gmm", spec["file"]))
            label = f"{spec['_preset']} (ADBench, n={g.n})"
        else:
            g = D.gen_gmm(spec["d"], spec["K"], spec["n"], seed=0)
            label = f"d={g.d},K={g.K},n={g.n}"
        theta = g.theta()
        return Instance(self.name, label, theta, (g.x,),
                        dict(d=g.d, K=g.K, gamma=g.gamma, m=g.m), n=theta.size, m=1)

    def objective(self, B, theta, x, **static):
        return O.gmm_objective(B, theta, x, **static)

    def reference_checks(self, B, wrap=None):
        g = D.read_gmm(D.adbench_path("gmm", "test.txt"))
        f = lambda th, x: O.gmm_objective(B, th, x, d=g.d, K=g.K, gamma=g.gamma, m=g.m)  # noqa: E731
        v = (wrap or _same)(f)(B.put(g.theta()), B.put(g.x))
        return [("gmm test.txt objective", float(B.to_numpy(v)), 8.07380408004975791, 1e-12)]


class BA(Problem):
    name = "ba"
    help = ("bundle adjustment residuals (ADBench); per-observation 2x15 Jacobians by "
            "vmap of jacfwd / jacrev; sizes n (cameras), m (points), p (observations)")
    keys = ("n", "m", "p")
    presets = {"test": {"file": "test.txt"}, "ba1": {"file": "ba1_n49_m7776_p31843.txt"}}
    quick = ("n=10,m=1000,p=5000",)
    full = ("ba1", "n=100,m=20000,p=100000")
    scalar = False

    def instance(self, spec):
        if "file" in spec:
            b = D.read_ba(D.adbench_path("ba", spec["file"]))
            label = f"{spec['_preset']} (ADBench, p={b.sizes[2]})"
        else:
            b = D.gen_ba(spec["n"], spec["m"], spec["p"], seed=0)
            label = "n={},m={},p={}".format(*b.sizes)
        P = b.params()
        return Instance(self.name, label, P, (b.feats,), {}, n=O.BA_NPARAM, m=3,
                        batch=P.shape[0], info="per observation: 15 inputs -> 2+1 residuals")

    def objective(self, B, P, feats):
        return O.ba_residuals(B, P, feats)

    def functions(self, B, inst):
        reproj = functools.partial(O.ba_reproj, B)
        werr = lambda params: O.ba_werr(B, params[14])  # noqa: E731
        out = {"objective": functools.partial(self.objective, B)}
        if B.has_vmap:
            def make(jac):
                jr = B.vmap(jac(reproj))
                jw = B.vmap(jac(werr))
                return lambda P, F: (jr(P, F), jw(P))
            if B.has_rev:
                out["rev"] = make(B.jacrev)
            if B.has_fwd:
                out["fwd"] = make(B.jacfwd)
            if getattr(B, "jacobian", None) is not None:
                out["auto"] = make(B.jacobian)
        elif B.has_rev:
            # no vmap (autograd): the observations are independent, so each
            # row of every 2x15 block is one vjp of the batched residuals
            def rev(P, F):
                r_vjp, _ = B.make_vjp(lambda Q: O.ba_reproj(B, Q, F))(P)
                w_vjp, _ = B.make_vjp(lambda Q: O.ba_werr(B, Q[:, 14]))(P)
                e = np.zeros((P.shape[0], 2))
                rows = []
                for i in range(2):
                    e[:] = 0.0
                    e[:, i] = 1.0
                    rows.append(r_vjp(e))
                return np.stack(rows, axis=1), w_vjp(np.ones(P.shape[0]))[:, 14]
            out["rev"] = rev
        return out

    def explain_fn(self, B, inst):
        return functools.partial(O.ba_reproj, B), (inst.theta[0], inst.data[0][0])

    def flatten(self, out, mode):
        """Derivatives: (J (p,2,15), dw (p,) or (p,15)) -> one flat vector."""
        if mode == "objective":
            return super().flatten(out, mode)
        J, w = (np.asarray(o, dtype=np.float64) for o in out)
        if w.ndim == 2:       # full gradient rows of the weight error: keep the w column
            w = w[:, 14]
        return np.concatenate([J.ravel(), w.ravel()])

    def finite_differences(self, Bnp, inst):
        """Central differences, one parameter column at a time for all
        observations at once (their residuals are independent)."""
        P, F = inst.theta, inst.data[0]
        eps = np.finfo(np.float64).eps ** (1 / 3)
        J = np.zeros((P.shape[0], 2, O.BA_NPARAM))
        for j in range(O.BA_NPARAM):
            h = eps * np.maximum(1.0, np.abs(P[:, j]))
            Pp, Pm = P.copy(), P.copy()
            Pp[:, j] += h
            Pm[:, j] -= h
            J[:, :, j] = (O.ba_reproj(Bnp, Pp, F) - O.ba_reproj(Bnp, Pm, F)) / (2 * h[:, None])
        w = P[:, 14]
        hw = eps * np.maximum(1.0, np.abs(w))
        dw = (O.ba_werr(Bnp, w + hw) - O.ba_werr(Bnp, w - hw)) / (2 * hw)
        return J, dw

    def reference_checks(self, B, wrap=None):
        b = D.read_ba(D.adbench_path("ba", "test.txt"))
        f = lambda P, F: O.ba_residuals(B, P, F)  # noqa: E731
        r, w = (wrap or _same)(f)(B.put(b.params()), B.put(b.feats))
        r, w = B.to_numpy(r), B.to_numpy(w)
        return [("ba test.txt reprojection residual x", float(r[0, 0]), -0.269048849235189402, 1e-7),
                ("ba test.txt reprojection residual y", float(r[0, 1]), 0.259944792677901881, 1e-7),
                ("ba test.txt weight error", float(w[0]), 0.826092651515999976, 1e-12)]


class LSTM(Problem):
    name = "lstm"
    help = "LSTM text objective (ADBench) with lax.scan over the text; sizes l (layers), c (chars), b (hidden)"
    keys = ("l", "c", "b")
    presets = {"l2_c1024": {"file": "lstm_l2_c1024.txt"}}
    quick = ("l=2,c=128,b=14",)
    full = ("l2_c1024", "l=4,c=1024,b=64")
    fwd_limit = 300

    def instance(self, spec):
        if "file" in spec:
            s = D.read_lstm(D.adbench_path("lstm", spec["file"]))
            label = f"{spec['_preset']} (ADBench)"
        else:
            if spec["c"] < 2:
                raise SizeError("lstm: c (characters) must be at least 2")
            s = D.gen_lstm(spec["l"], spec["c"], spec["b"], seed=0)
            label = f"l={s.l},c={s.c},b={s.b}"
        theta = s.theta()
        return Instance(self.name, label, theta, (s.state, s.seq), dict(l=s.l, b=s.b),
                        n=theta.size, m=1)

    def objective(self, B, theta, state, seq, **static):
        return O.lstm_objective(B, theta, state, seq, **static)

    def reference_checks(self, B, wrap=None):
        s = D.read_lstm(D.adbench_path("lstm", "lstm_l2_c1024.txt"))
        f = lambda th, st, sq: O.lstm_objective(B, th, st, sq, l=s.l, b=s.b)  # noqa: E731
        v = (wrap or _same)(f)(B.put(s.theta()), B.put(s.state), B.put(s.seq))
        # published to 8 significant digits
        return [("lstm l2_c1024 objective", float(B.to_numpy(v)), 0.66666518, 1e-7)]


class LogSumExp(Problem):
    name = "logsumexp"
    help = "log-sum-exp of a vector (each framework's own implementation); size n"
    keys = ("n",)
    quick = ("n=1000",)
    full = ("n=1000", "n=100000", "n=1000000")
    fwd_limit = 2000

    def instance(self, spec):
        x = D.gen_vector(spec["n"], seed=0)
        return Instance(self.name, f"n={x.size}", x, (), {}, n=x.size, m=1)

    def objective(self, B, theta):
        return O.logsumexp_objective(B, theta)


class ODE(Problem):
    name = "ode"
    help = ("RK4 integration of y' = tanh(W y + v) with scan; gradient of |y(T)|^2/2 w.r.t. "
            "y0, W, v; sizes d (state), steps")
    keys = ("d", "steps")
    quick = ("d=4,steps=100",)
    full = ("d=4,steps=100", "d=16,steps=1000", "d=64,steps=1000")
    fwd_limit = 400

    def instance(self, spec):
        d, steps = spec["d"], spec["steps"]
        theta = D.gen_ode(d, seed=0)
        return Instance(self.name, f"d={d},steps={steps}", theta, (),
                        dict(d=d, steps=steps, h=1.0 / steps), n=theta.size, m=1)

    def objective(self, B, theta, **static):
        return O.ode_objective(B, theta, **static)


class Det(Problem):
    name = "det"
    help = "determinant by cofactor (Laplace) expansion, n! terms; size n (at most 9)"
    keys = ("n",)
    quick = ("n=4", "n=6")
    full = ("n=4", "n=5", "n=6", "n=7", "n=8")

    def parse_size(self, text):
        spec = super().parse_size(text)
        if spec["n"] > 9:
            raise SizeError(f"det: n={spec['n']} is too large for an n!-term expansion (at most 9)")
        return spec

    def instance(self, spec):
        A = D.gen_matrix(spec["n"], seed=0)
        return Instance(self.name, f"n={spec['n']}", A, (), dict(n=spec["n"]),
                        n=A.size, m=1, info=f"{math.factorial(spec['n'])} terms")

    def objective(self, B, theta, **static):
        return O.det_objective(B, theta, **static)

    def reference_checks(self, B, wrap=None):
        out = []
        for n in (4, 5):
            A = D.gen_matrix(n, seed=1)
            v = (wrap or _same)(lambda a, n=n: O.det_objective(B, a, n=n))(B.put(A))
            out.append((f"det n={n} vs numpy.linalg.det", float(B.to_numpy(v)),
                        float(np.linalg.det(A.reshape(n, n))), 1e-12))
        return out


class Sweep(Problem):
    """Not in the ADBench set: the shape sweep for the forward/reverse crossover."""
    name = "sweep"
    help = ("Jacobian shape sweep of a tanh network R^n -> R^m (width H=32); size 'n=..,m=..' "
            "(--sweep-sizes 1,10,100,1000 gives every pair)")
    keys = ("n", "m")
    H = 32
    quick = tuple(f"n={n},m={m}" for n in (1, 10, 100, 1000) for m in (1, 10, 100, 1000))
    full = quick
    scalar = False
    modes = ("rev", "fwd")   # the objective itself is not what the sweep is about

    def instance(self, spec):
        n, m = spec["n"], spec["m"]
        x, weights = D.gen_mlp(n, m, self.H, seed=0)
        return Instance(self.name, f"n={n},m={m}", x, weights, {}, n=n, m=m)

    def objective(self, B, theta, *weights):
        return O.mlp_objective(B, theta, *weights)


PROBLEMS = {p.name: p for p in (GMM(), BA(), LSTM(), LogSumExp(), ODE(), Det(), Sweep())}


def expand_sweep_values(text):
    """'1,10,100' -> all n=..,m=.. pairs (the sweep's shorthand)."""
    vals = []
    for v in text.split(","):
        try:
            iv = int(v)
        except ValueError:
            raise SizeError(f"sweep: {v!r} is not an integer") from None
        if iv <= 0:
            raise SizeError(f"sweep: sizes must be positive, got {iv}")
        vals.append(iv)
    return [f"n={n},m={m}" for n in vals for m in vals]


# --------------------------------------------------------------------------
# finite differences (plain NumPy)


def central_fd(f, x, budget_s):
    """Central differences of f: R^n -> R^m (or scalar) at x, one input at a
    time with step eps^(1/3) max(1, |x_i|). If the estimated cost exceeds
    budget_s, returns None (the caller checks directions instead)."""
    t0 = time.perf_counter()
    f0 = np.asarray(f(x))
    t_eval = time.perf_counter() - t0
    if 2 * x.size * t_eval > budget_s:
        return None, t_eval
    eps = np.finfo(np.float64).eps ** (1 / 3)
    J = np.zeros(f0.shape + (x.size,))
    xp = x.copy()
    for i in range(x.size):
        h = eps * max(1.0, abs(x[i]))
        xp[i] = x[i] + h
        fp = np.asarray(f(xp))
        xp[i] = x[i] - h
        fm = np.asarray(f(xp))
        xp[i] = x[i]
        J[..., i] = (fp - fm) / (2 * h)
    return J, t_eval


def directional_fd(f, x, J, k=3, seed=0):
    """Relative error of J v against central differences along k random unit
    directions (for inputs too large for a full finite-difference Jacobian).
    The scale is the largest row norm of J, the size of J v for the worst
    unit v (a random v in many dimensions makes J v itself tiny)."""
    rng = np.random.default_rng(seed)
    J = np.asarray(J).reshape(-1, x.size)
    scale = max(float(np.max(np.linalg.norm(J, axis=1))), 1e-300)
    err = 0.0
    for _ in range(k):
        v = rng.standard_normal(x.size)
        v /= np.linalg.norm(v)
        h = np.finfo(np.float64).eps ** (1 / 3) * max(1.0, np.abs(x).max())
        fd = (np.asarray(f(x + h * v)) - np.asarray(f(x - h * v))).ravel() / (2 * h)
        err = max(err, float(np.max(np.abs(fd - J @ v))) / scale)
    return err
