"""PNG plots (matplotlib, Agg): the forward/reverse crossover on the sweep
and per-problem bars against the peers. Skipped with a note if matplotlib
is not installed."""
from __future__ import annotations

import os
import re


def _mpl():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        return None


def _sweep_points(records, exec_, framework="tracegrad"):
    """{(n, m): {mode: seconds}} from the sweep records."""
    pts = {}
    for r in records:
        if r.problem != "sweep" or r.framework != framework or r.exec != exec_:
            continue
        if r.mode not in ("fwd", "rev") or r.time_s is None:
            continue
        mt = re.match(r"n=(\d+),m=(\d+)", r.size)
        pts.setdefault((int(mt.group(1)), int(mt.group(2))), {})[r.mode] = r.time_s
    return pts


def plot_sweep(records, choices, path):
    plt = _mpl()
    if plt is None:
        return "note: matplotlib not installed; plots skipped"
    execs = [e for e in ("jit", "eager") if _sweep_points(records, e)]
    if not execs:
        return None
    fig, axes = plt.subplots(len(execs), 2, figsize=(11, 4.2 * len(execs)), squeeze=False)
    for row, ex in enumerate(execs):
        pts = _sweep_points(records, ex)
        ns = sorted({n for n, _ in pts})
        ms = sorted({m for _, m in pts})
        picks = {(c["n"], c["m"]): c["choice"] for c in choices
                 if c.get("problem") == "sweep" and c.get("exec") == ex and "choice" in c}
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for col, (fixed_vals, var_name) in enumerate(((ms, "n"), (ns, "m"))):
            ax = axes[row][col]
            for i, fv in enumerate(fixed_vals):
                keys = [(v, fv) if var_name == "n" else (fv, v) for v in (ns if var_name == "n" else ms)]
                keys = [k for k in keys if k in pts]
                xs = [k[0] if var_name == "n" else k[1] for k in keys]
                c = colors[i % len(colors)]
                other = "m" if var_name == "n" else "n"
                for mode, style in (("fwd", "-o"), ("rev", "--s")):
                    ys = [pts[k].get(mode) for k in keys]
                    ax.plot(xs, ys, style, color=c, label=f"{mode}, {other}={fv}", ms=4)
                for x, k in zip(xs, keys):   # the chooser's pick, ringed
                    if k in picks and picks[k] in pts[k]:
                        ax.plot([x], [pts[k][picks[k]]], "o", mfc="none", mec="k", ms=10)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(f"{var_name} ({'inputs' if var_name == 'n' else 'outputs'})")
            ax.set_ylabel("Jacobian time (s)")
            ax.set_title(f"tracegrad {ex}: jacfwd (solid) vs jacrev (dashed) against {var_name}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7, ncol=2)
    fig.suptitle("Jacobian of a tanh network R^n -> R^m: forward/reverse crossover "
                 "(black rings: tracegrad.jacobian's choice)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


BAR_SERIES = [("tracegrad", "eager", "tracegrad eager"), ("tracegrad", "jit", "tracegrad jit"),
              ("jax", "jit", "jax.jit"), ("autograd", "eager", "autograd"),
              ("torch", "eager", "torch.func"), ("numpy", "eager", "NumPy (obj) / FD")]


def plot_problem(records, problem, path):
    plt = _mpl()
    if plt is None:
        return "note: matplotlib not installed; plots skipped"
    sizes = []
    for r in records:
        if r.problem == problem and r.size not in sizes:
            sizes.append(r.size)
    if not sizes:
        return None
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.2 * len(sizes), 4), squeeze=False)
    modes = ("objective", "rev", "fwd")
    for ax, size in zip(axes[0], sizes):
        recs = {(r.framework, r.exec, r.mode): r for r in records if r.problem == problem and r.size == size}
        width = 0.8 / len(BAR_SERIES)
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, (fw, ex, label) in enumerate(BAR_SERIES):
            ys, hatches = [], []
            for mode in modes:
                key_mode = "fd" if (fw == "numpy" and mode == "rev") else mode
                r = recs.get((fw, ex, key_mode))
                ys.append(r.time_s if r is not None and r.time_s else 0.0)
                hatches.append("//" if r is not None and "estimated" in r.note else "")
            xs = [j + (i - len(BAR_SERIES) / 2 + 0.5) * width for j in range(len(modes))]
            bars = ax.bar(xs, ys, width, label=label, color=colors[i % len(colors)])
            for b, h in zip(bars, hatches):
                b.set_hatch(h)
        ax.set_xticks(range(len(modes)))
        ax.set_xticklabels(["objective", "gradient / Jacobian\n(reverse; FD for NumPy)", "forward mode"],
                           fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("time (s)")
        ax.set_title(f"{problem} {size}" + (" (hatched: estimated)" if any(
            "estimated" in r.note for r in recs.values()) else ""), fontsize=9)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sweep_ratio(records, choices, path):
    """Heat map of log2(jacfwd time / jacrev time) over (n, m), one panel per
    execution mode, with the chooser's pick written in each cell."""
    plt = _mpl()
    if plt is None:
        return None
    import numpy as np
    execs = [e for e in ("jit", "eager") if _sweep_points(records, e)]
    if not execs:
        return None
    fig, axes = plt.subplots(1, len(execs), figsize=(5.2 * len(execs), 4.4), squeeze=False)
    for ax, ex in zip(axes[0], execs):
        pts = _sweep_points(records, ex)
        ns = sorted({n for n, _ in pts})
        ms = sorted({m for _, m in pts})
        picks = {(c["n"], c["m"]): (c["choice"], c["ok"]) for c in choices
                 if c.get("problem") == "sweep" and c.get("exec") == ex and "choice" in c}
        grid = np.full((len(ms), len(ns)), np.nan)
        for (n, m), t in pts.items():
            if "fwd" in t and "rev" in t:
                grid[ms.index(m), ns.index(n)] = np.log2(t["fwd"] / t["rev"])
        lim = max(1.0, float(np.nanmax(np.abs(grid)))) if np.isfinite(grid).any() else 1.0
        im = ax.imshow(grid, origin="lower", cmap="coolwarm", vmin=-lim, vmax=lim)
        for (n, m), (pick, ok) in picks.items():
            if n in ns and m in ms:
                ax.text(ns.index(n), ms.index(m), pick + ("" if ok else "\n(miss)"),
                        ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(ns)))
        ax.set_xticklabels(ns)
        ax.set_yticks(range(len(ms)))
        ax.set_yticklabels(ms)
        ax.set_xlabel("n (inputs)")
        ax.set_ylabel("m (outputs)")
        ax.set_title(f"tracegrad {ex}: log2(jacfwd / jacrev time)", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8, label="blue: forward faster, red: reverse faster")
    fig.suptitle("Where forward mode wins (blue) and reverse mode wins (red); text: tracegrad.jacobian's pick",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(records, choices, out_dir, suffix=""):
    """Writes sweep.png, sweep_ratio.png and bars_<problem>.png (names end
    in `suffix`, e.g. "_quick"); returns (paths, notes)."""
    paths, notes = [], []
    if _mpl() is None:
        return [], ["note: matplotlib not installed; plots skipped"]
    for fn, name in ((plot_sweep, f"sweep{suffix}.png"), (plot_sweep_ratio, f"sweep_ratio{suffix}.png")):
        p = fn(records, choices, os.path.join(out_dir, name))
        if p:
            paths.append(p)
    for problem in dict.fromkeys(r.problem for r in records):
        if problem == "sweep":
            continue
        p = plot_problem(records, problem, os.path.join(out_dir, f"bars_{problem}{suffix}.png"))
        if p:
            paths.append(p)
    return paths, notes
