"""Inputs: readers for the ADBench files in benchmarks/data/adbench/ (formats
as ADBench's own readers: see that folder's README) and generators with fixed
seeds for the other sizes."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "data", "adbench")


def adbench_path(*parts):
    return os.path.join(DATA_DIR, *parts)


def _floats(line):
    return [float(v) for v in line.split()]


# --------------------------------------------------------------------------
# GMM


@dataclass
class GMMInput:
    d: int
    K: int
    alphas: np.ndarray   # (K,)
    means: np.ndarray    # (K, d)
    icf: np.ndarray      # (K, d(d+1)/2)
    x: np.ndarray        # (n, d)
    gamma: float
    m: int

    @property
    def n(self):
        return self.x.shape[0]

    def theta(self):
        return np.concatenate([self.alphas.ravel(), self.means.ravel(), self.icf.ravel()])


def read_gmm(path, replicate_point=False):
    """`d K n`, K alphas, K means, K icf rows, n points (or one point
    replicated n times), `gamma m`."""
    with open(path) as fh:
        lines = [ln for ln in fh.read().splitlines() if ln.strip()]
    d, K, n = (int(v) for v in lines[0].split())
    pos = 1
    alphas = np.array([float(lines[pos + i]) for i in range(K)])
    pos += K
    means = np.array([_floats(lines[pos + i]) for i in range(K)])
    pos += K
    icf = np.array([_floats(lines[pos + i]) for i in range(K)])
    pos += K
    if replicate_point:
        x = np.tile(np.array(_floats(lines[pos])), (n, 1))
        pos += 1
    else:
        x = np.array([_floats(lines[pos + i]) for i in range(n)])
        pos += n
    gamma, m = lines[pos].split()
    return GMMInput(d, K, alphas, means, icf, x, float(gamma), int(m))


def gen_gmm(d, K, n, seed=0):
    """Random GMM instance in ADBench's style (uniform parameters, Wishart
    gamma = 1, m = 0)."""
    rng = np.random.default_rng(seed)
    icf_sz = d * (d + 1) // 2
    return GMMInput(d, K, rng.standard_normal(K), rng.uniform(size=(K, d)),
                    rng.uniform(size=(K, icf_sz)) * 0.5, rng.standard_normal((n, d)), 1.0, 0)


# --------------------------------------------------------------------------
# Bundle adjustment


@dataclass
class BAInput:
    cams: np.ndarray     # (n, 11)
    X: np.ndarray        # (m, 3)
    w: np.ndarray        # (p,)
    obs: np.ndarray      # (p, 2) int: camera index, point index
    feats: np.ndarray    # (p, 2)

    @property
    def sizes(self):
        return self.cams.shape[0], self.X.shape[0], self.w.shape[0]

    def params(self):
        """(p, 15): each observation's camera, point and weight, side by side."""
        return np.concatenate([self.cams[self.obs[:, 0]], self.X[self.obs[:, 1]],
                               self.w[:, None]], axis=1)


def read_ba(path):
    """`n m p`, then one camera, one point, one weight and one feature that
    ADBench replicates; observation i uses camera i mod n and point i mod m."""
    with open(path) as fh:
        lines = [ln for ln in fh.read().splitlines() if ln.strip()]
    n, m, p = (int(v) for v in lines[0].split())
    cam = np.array(_floats(lines[1]))
    X = np.array(_floats(lines[2]))
    w = float(lines[3])
    feat = np.array(_floats(lines[4]))
    obs = np.stack([np.arange(p) % n, np.arange(p) % m], axis=1)
    return BAInput(np.tile(cam, (n, 1)), np.tile(X, (m, 1)), np.full(p, w), obs,
                   np.tile(feat, (p, 1)))


def gen_ba(n, m, p, seed=0):
    """Random cameras looking at points in front of them (positive depth),
    features near the projections; every camera and point observed."""
    rng = np.random.default_rng(seed)
    cams = np.zeros((n, 11))
    cams[:, 0:3] = rng.normal(scale=0.1, size=(n, 3))       # small rotations
    cams[:, 3:6] = rng.normal(scale=0.5, size=(n, 3))       # centres near the origin
    cams[:, 3:5] *= 0.2
    cams[:, 5] = -10.0 + cams[:, 5]                          # behind the points along z
    cams[:, 6] = rng.uniform(400, 600, size=n)               # focal length
    cams[:, 7:9] = rng.normal(scale=5.0, size=(n, 2))        # principal point
    cams[:, 9:11] = rng.normal(scale=0.01, size=(n, 2))      # radial distortion
    X = rng.normal(size=(m, 3))
    w = rng.uniform(0.5, 1.5, size=p)
    obs = np.stack([np.arange(p) % n, rng.permutation(np.arange(p) % m)], axis=1)
    feats = rng.normal(scale=50.0, size=(p, 2))
    return BAInput(cams, X, w, obs, feats)


# --------------------------------------------------------------------------
# LSTM


@dataclass
class LSTMInput:
    l: int
    b: int
    main: np.ndarray     # (2l, 4b)
    extra: np.ndarray    # (3, b)
    state: np.ndarray    # (2l, b)
    seq: np.ndarray      # (c, b)

    @property
    def c(self):
        return self.seq.shape[0]

    def theta(self):
        return np.concatenate([self.main.ravel(), self.extra.ravel()])


def read_lstm(path):
    """`l c b`; then (each block after a blank line) 2l rows of 4b main
    parameters, 3 rows of b extra parameters, 2l rows of b state, c rows of
    b sequence values."""
    with open(path) as fh:
        lines = [ln for ln in fh.read().splitlines() if ln.strip()]
    l, c, b = (int(v) for v in lines[0].split())
    rows = [np.array(_floats(ln)) for ln in lines[1:]]
    main = np.stack(rows[:2 * l])
    extra = np.stack(rows[2 * l:2 * l + 3])
    state = np.stack(rows[2 * l + 3:4 * l + 3])
    seq = np.stack(rows[4 * l + 3:4 * l + 3 + c])
    assert main.shape == (2 * l, 4 * b) and seq.shape == (c, b), "malformed LSTM file"
    return LSTMInput(l, b, main, extra, state, seq)


def gen_lstm(l, c, b, seed=0):
    """Uniform parameters and state; a one-hot text (as ADBench's generator)."""
    rng = np.random.default_rng(seed)
    seq = np.zeros((c, b))
    seq[np.arange(c), rng.integers(0, b, size=c)] = 1.0
    return LSTMInput(l, b, rng.uniform(size=(2 * l, 4 * b)), rng.uniform(size=(3, b)),
                     rng.uniform(size=(2 * l, b)), seq)


# --------------------------------------------------------------------------
# the smaller problems


def gen_vector(n, seed=0):
    return np.random.default_rng(seed).standard_normal(n)


def gen_ode(d, seed=0):
    """theta = [y0, W, v] with a contracting-ish W (scaled by 1/sqrt(d))."""
    rng = np.random.default_rng(seed)
    y0 = rng.standard_normal(d)
    W = rng.standard_normal((d, d)) / np.sqrt(d)
    v = 0.1 * rng.standard_normal(d)
    return np.concatenate([y0, W.ravel(), v])


def gen_matrix(n, seed=0):
    """A well-conditioned n x n matrix (identity plus noise), flattened."""
    rng = np.random.default_rng(seed)
    return (np.eye(n) + 0.3 * rng.standard_normal((n, n))).ravel()


def gen_mlp(n, m, H, seed=0):
    """Weights of the sweep's tanh network R^n -> R^m (width H) and an input."""
    rng = np.random.default_rng(seed)
    W1 = rng.standard_normal((H, n)) / np.sqrt(n)
    W2 = rng.standard_normal((H, H)) / np.sqrt(H)
    W3 = rng.standard_normal((m, H)) / np.sqrt(H)
    weights = (W1, 0.1 * rng.standard_normal(H), W2, 0.1 * rng.standard_normal(H), W3,
               0.1 * rng.standard_normal(m))
    return rng.standard_normal(n), weights
