"""Command line of the suite:

    python benchmarks/run_suite.py --quick            # every problem, small sizes (~2 min)
    python benchmarks/run_suite.py                    # the full run (sizes in README)
    python benchmarks/run_suite.py --problems gmm,lstm --size gmm:d=20,K=25,n=10000
    python benchmarks/run_suite.py --problems sweep --sweep-sizes 1,10,100,1000
    python benchmarks/run_suite.py --list             # problems and their sizes

Exit status: 0 when every agreement check and reference value passes, 1 when
any fails (the table's status column says which), 2 on usage errors.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "benchmarks", "results")


def build_parser():
    from .backends import PEERS
    from .problems import PROBLEMS
    p = argparse.ArgumentParser(
        prog="run_suite.py",
        description="Forward- vs reverse-mode differentiation on AD benchmark problems "
                    "(ADBench GMM, BA, LSTM; log-sum-exp, RK4 ODE, determinant by minors, "
                    "Jacobian shape sweep), tracegrad against JAX, autograd, PyTorch and "
                    "NumPy finite differences.",
        epilog="Problems: " + "; ".join(f"{k}: {v.help}" for k, v in PROBLEMS.items()))
    p.add_argument("--quick", action="store_true",
                   help="small sizes and short timing budgets (the whole suite in ~2 minutes)")
    p.add_argument("--problems", default=",".join(PROBLEMS),
                   help=f"comma-separated subset of: {', '.join(PROBLEMS)} (default: all)")
    p.add_argument("--size", action="append", default=[], metavar="PROBLEM:SIZE",
                   help="replace a problem's sizes (repeatable), e.g. gmm:d10_K5, "
                        "gmm:d=20,K=25,n=10000, lstm:l=2,c=1024,b=14, ba:n=10,m=100,p=1000, "
                        "det:n=7, ode:d=8,steps=200, logsumexp:n=100000, sweep:n=10,m=1000")
    p.add_argument("--sweep-sizes", metavar="V1,V2,...",
                   help="the sweep's n and m values (all pairs; default 1,10,100,1000)")
    p.add_argument("--peers", default=",".join(PEERS),
                   help=f"comma-separated peers to compare against (default: {','.join(PEERS)}); "
                        "missing ones are skipped with a note")
    p.add_argument("--no-peers", action="store_true", help="tracegrad only (plus NumPy FD)")
    p.add_argument("--budget", type=_positive_float, metavar="SECONDS",
                   help="timing budget per measurement (default 0.3, quick 0.05)")
    p.add_argument("--out", default=DEFAULT_OUT, help="directory for the JSON and PNG files "
                   "(default benchmarks/results/)")
    p.add_argument("--json", metavar="PATH", help="results JSON path (default OUT/suite[_quick].json)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--list", action="store_true", help="list problems and sizes, then exit")
    return p


def _positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return v


def parse_args(argv=None):
    """Parsed arguments plus the validated plan: [(problem, [size spec...])]."""
    from .backends import PEERS
    from .problems import PROBLEMS, SizeError, expand_sweep_values
    parser = build_parser()
    args = parser.parse_args(argv)
    names = [s.strip() for s in args.problems.split(",") if s.strip()]
    unknown = [n for n in names if n not in PROBLEMS]
    if unknown or not names:
        parser.error(f"unknown problem(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                     f"choose from {', '.join(PROBLEMS)}")
    peers = [] if args.no_peers else [s.strip() for s in args.peers.split(",") if s.strip()]
    bad = [p for p in peers if p not in PEERS]
    if bad:
        parser.error(f"unknown peer(s) {', '.join(map(repr, bad))}; choose from {', '.join(PEERS)}")
    if "numpy" not in peers:
        peers.append("numpy")   # finite differences are part of every run
    custom = {}
    for item in args.size:
        if ":" not in item:
            parser.error(f"--size {item!r}: expected PROBLEM:SIZE, e.g. gmm:d=2,K=5,n=1000")
        prob, spec = item.split(":", 1)
        if prob not in PROBLEMS:
            parser.error(f"--size {item!r}: unknown problem {prob!r}; choose from {', '.join(PROBLEMS)}")
        if prob not in names:
            parser.error(f"--size {item!r}: problem {prob!r} is not selected by --problems")
        custom.setdefault(prob, []).append(spec)
    plan = []
    try:
        for name in names:
            prob = PROBLEMS[name]
            texts = custom.get(name)
            if texts is None and name == "sweep" and args.sweep_sizes:
                texts = expand_sweep_values(args.sweep_sizes)
            if texts is None:
                texts = list(prob.quick if args.quick else prob.full)
            plan.append((prob, [prob.parse_size(t) | {"_text": t} for t in texts]))
    except SizeError as e:
        parser.error(str(e))
    return args, peers, plan


class Progress:
    """tqdm when installed, otherwise a one-line bar on stderr."""

    def __init__(self, total, enabled=True):
        self.total, self.done, self.enabled = total, 0, enabled
        self.bar = None
        self.t0 = time.perf_counter()
        self.tty = sys.stderr.isatty()
        if not enabled or not self.tty:
            return   # not a terminal: one line per finished case (see step)
        try:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="case", dynamic_ncols=True, file=sys.stderr,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}] {postfix}")
        except ImportError:
            self.bar = None

    def status(self, text):
        self.last = text
        if not self.enabled or not self.tty:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(text[:70], refresh=True)
        else:
            frac = self.done / max(self.total, 1)
            fill = int(30 * frac)
            sys.stderr.write(f"\r[{'#' * fill}{'.' * (30 - fill)}] {self.done}/{self.total} "
                             f"{time.perf_counter() - self.t0:5.0f}s {text[:60]:60s}")
            sys.stderr.flush()

    def step(self):
        self.done += 1
        if not self.enabled:
            return
        if not self.tty:
            head = getattr(self, "last", "").split(":")[0]
            sys.stderr.write(f"[{self.done}/{self.total}] {time.perf_counter() - self.t0:5.0f}s {head}\n")
            sys.stderr.flush()
        elif self.bar is not None:
            self.bar.update(1)
        else:
            self.status("")

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.tty:
            sys.stderr.write("\n")


def list_problems(plan_quick, plan_full):
    lines = []
    for (prob, quick), (_, full) in zip(plan_quick, plan_full):
        lines.append(f"{prob.name}: {prob.help}")
        if prob.presets:
            lines.append(f"  presets (ADBench files): {', '.join(prob.presets)}")
        lines.append(f"  --quick sizes: {'; '.join(s['_text'] for s in quick)}")
        lines.append(f"  full sizes:    {'; '.join(s['_text'] for s in full)}")
    return "\n".join(lines)


def main(argv=None):
    os.environ.setdefault("TRACEGRAD_DISABLE_DISK_CACHE", "1")  # compile times are real compiles
    args, peers, plan = parse_args(argv)
    if args.list:
        from .problems import PROBLEMS
        quick = [(p, [p.parse_size(t) | {"_text": t} for t in p.quick]) for p in PROBLEMS.values()]
        full = [(p, [p.parse_size(t) | {"_text": t} for t in p.full]) for p in PROBLEMS.values()]
        print(list_problems(quick, full))
        return 0

    from . import plots, report
    from .backends import load_backends
    from .runner import Runner, Settings, records_as_dicts

    backends, notes = load_backends(["tracegrad"] + peers)
    if "tracegrad" not in backends:
        print("error: tracegrad itself could not be imported: " + "; ".join(notes), file=sys.stderr)
        return 1
    settings = Settings(budget_s=args.budget or (0.05 if args.quick else 0.3),
                        min_reps=2 if args.quick else 3,
                        batch_s=0.005 if args.quick else 0.02,
                        slow_reps_eager=0 if args.quick else 1,
                        slow_reps_jit=1 if args.quick else 2,
                        fd_budget_s=2.0 if args.quick else 20.0)
    env = report.environment(backends)
    print(f"tracegrad AD suite ({'quick' if args.quick else 'full'}): python {env['python']}, "
          f"{env['cpus']} CPUs; " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    for note in notes:
        print(note)
    total = 1 + sum(len(sizes) for _, sizes in plan)
    progress = Progress(total, enabled=not args.no_progress)
    runner = Runner(backends, settings, progress=progress.status)
    t_start = time.perf_counter()
    progress.status("reference values")
    runner.check_references()
    progress.step()
    for prob, sizes in plan:
        for spec in sizes:
            progress.status(f"{prob.name} {spec['_text']}: preparing inputs")
            inst = prob.instance(spec)
            runner.run_instance(prob, inst)
            progress.step()
    progress.close()
    elapsed = time.perf_counter() - t_start

    print()
    print(report.table(runner.records))
    print("\ntimes per call: the best of several batches of calls (first calls excluded); "
          "'*' = estimated (2n objective evaluations);\ncompile = first jitted call minus a later one "
          "(trace + lower + XLA compile); jit/jax = tracegrad.jit / jax.jit; "
          "eager/ag = tracegrad eager / autograd;\nmax err = largest relative error against "
          "tracegrad's reverse mode (derivatives) or NumPy (objective)")
    limits = [f"{p.name} {p.fwd_limit}" for p, _ in plan if p.fwd_limit < 10**9]
    if limits:
        print("forward mode (n basis tangents) is measured up to n inputs of: " + ", ".join(limits))
    if runner.choices:
        print("\nmode chooser (tracegrad.jacobian, measured tracegrad fwd/rev times):")
        print(report.chooser_table(runner.choices))
    summary = report.summarize(runner.records, runner.choices, runner.references)
    print("\n" + report.summary_text(summary, runner.records, runner.references))
    print(f"\nsuite time: {elapsed:.0f} s")

    os.makedirs(args.out, exist_ok=True)
    json_path = args.json or os.path.join(args.out, "suite_quick.json" if args.quick else "suite.json")
    report.write_json(json_path, dict(
        mode="quick" if args.quick else "full", environment=env, notes=notes,
        settings=vars(settings), elapsed_s=elapsed, records=records_as_dicts(runner.records),
        chooser=runner.choices, references=runner.references, summary=summary))
    print(f"results: {json_path}")
    if not args.no_plots:
        paths, pnotes = plots.write_plots(runner.records, runner.choices, args.out,
                                          "_quick" if args.quick else "")
        for n in pnotes:
            print(n)
        if paths:
            print("plots: " + ", ".join(paths))
    failed = (summary["agreement"]["failures"] > 0 or summary["references"]["ok"] < summary["references"]["total"]
              or any(not c.get("ok") and "choice" not in c for c in runner.choices))
    if failed:
        print("FAIL: some agreement checks or reference values failed (see above)")
    return 1 if failed else 0
