"""tracegrad's AD benchmark suite: forward- vs reverse-mode differentiation
on ADBench's GMM, bundle adjustment and LSTM objectives, log-sum-exp, an RK4
ODE, a determinant by cofactor expansion and a Jacobian shape sweep, against
JAX, autograd, PyTorch and NumPy finite differences. Run it with
`python benchmarks/run_suite.py --quick` (see cli.py and benchmarks/README.md)."""

import os as _os

# The reference machine has 2 cores shared with other work: multi-threaded
# BLAS/OpenMP pools slow down 10-400x under contention and make the peers'
# times meaningless, so NumPy (tracegrad eager, autograd, FD) and PyTorch run
# single-threaded unless these are set by the caller. This only takes effect
# when the suite is imported before NumPy (run_suite.py, python -m).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")
