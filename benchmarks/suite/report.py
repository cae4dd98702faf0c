"""The terminal table, the goal summary and the JSON results."""
from __future__ import annotations

import json
import math
import platform
from collections import defaultdict

GOAL_JIT_VS_JAX = 1.05     # jitted tracegrad within 1.05x of jax.jit
GOAL_REV_OVER_OBJ = 4.0    # reverse-mode gradient <= 4x the objective (GMM, LSTM)
GOAL_CHOOSER = 0.90        # the mode chooser picks the faster mode (or within 10%) in 90% of cases

COLUMNS = [("tracegrad", "eager", "tg eager"), ("tracegrad", "jit", "tg jit"),
           ("jax", "jit", "jax.jit"), ("autograd", "eager", "autograd"),
           ("torch", "eager", "torch"), ("numpy", "eager", "numpy")]


def fmt_t(s):
    if s is None:
        return "-"
    if s >= 100:
        return f"{s:.0f} s"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def fmt_ratio(a, b):
    if a is None or b is None or b <= 0:
        return "-"
    return f"{a / b:.2f}x"


def _index(records):
    idx = {}
    for r in records:
        idx[(r.problem, r.size, r.framework, r.exec, r.mode)] = r
    return idx


def _cases(records):
    seen, out = set(), []
    for r in records:
        key = (r.problem, r.size)
        if key not in seen:
            seen.add(key)
            out.append((r.problem, r.size, r.n, r.m))
    return out


def table(records):
    """Rows per (problem, size, mode): times per framework, the ratios
    tracegrad-jit / jax.jit and tracegrad-eager / autograd, max error, status."""
    idx = _index(records)
    head = (["problem", "size", "n->m", "mode"] + [c[2] for c in COLUMNS] +
            ["compile tg", "compile jax", "jit/jax", "eager/ag", "max err", "status"])
    rows = []
    for prob, size, n, m in _cases(records):
        first = True
        for mode in ("objective", "rev", "fwd", "fd"):
            recs = [r for r in records if r.problem == prob and r.size == size and r.mode == mode]
            if not recs:
                continue
            get = lambda fw, ex: idx.get((prob, size, fw, ex, mode))  # noqa: E731
            cells = []
            for fw, ex, _ in COLUMNS:
                r = get(fw, ex)
                if r is None:
                    cells.append("-")
                elif r.time_s is None:
                    cells.append("ERROR")
                else:
                    cells.append(fmt_t(r.time_s) + ("*" if "estimated" in r.note else ""))
            tj, jx = get("tracegrad", "jit"), get("jax", "jit")
            te, ag = get("tracegrad", "eager"), get("autograd", "eager")
            comp = fmt_t(tj.compile_s) if tj is not None and tj.compile_s is not None else "-"
            compj = fmt_t(jx.compile_s) if jx is not None and jx.compile_s is not None else "-"
            errs = [r.err for r in recs if r.err is not None]
            bad = [r for r in recs if not r.ok]
            status = "ok" if not bad else "FAIL " + ",".join(
                f"{r.framework}-{r.exec}" for r in bad)
            mode_name = "FD" if mode == "fd" else mode
            rows.append([prob if first else "", size if first else "",
                         f"{n}->{m}" if first else "", mode_name] + cells + [
                comp, compj, fmt_ratio(tj and tj.time_s, jx and jx.time_s),
                fmt_ratio(te and te.time_s, ag and ag.time_s),
                f"{max(errs):.1e}" if errs else "-", status])
            first = False
    return _render(head, rows)


def _render(head, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)] if rows else [len(h) for h in head]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(head), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def chooser_table(choices):
    head = ["problem", "size", "exec", "n->m", "chose", "faster", "fwd", "rev", "est fwd", "est rev", "ok"]
    rows = []
    for c in choices:
        if "choice" not in c:
            rows.append([c["problem"], c["size"], c["exec"], "", "ERROR", "", "", "", "", "", "FAIL"])
            continue
        rows.append([c["problem"], c["size"], c["exec"], f"{c['n']}->{c['m']}", c["choice"], c["best"],
                     fmt_t(c["fwd_s"]), fmt_t(c["rev_s"]), fmt_t(c["est_fwd_s"]),
                     fmt_t(c["est_rev_s"]), "ok" if c["ok"] else "MISS"])
    return _render(head, rows)


def summarize(records, choices, references):
    """The goals, as numbers (also written to the JSON)."""
    idx = _index(records)
    s = {}
    # jitted tracegrad vs jax.jit, per problem and mode
    jit_ratios = []
    for prob, size, _, _ in _cases(records):
        for mode in ("objective", "rev", "fwd"):
            tj, jx = idx.get((prob, size, "tracegrad", "jit", mode)), idx.get((prob, size, "jax", "jit", mode))
            if tj and jx and tj.time_s and jx.time_s:
                jit_ratios.append(dict(problem=prob, size=size, mode=mode, ratio=tj.time_s / jx.time_s))
    s["jit_vs_jax"] = dict(goal=GOAL_JIT_VS_JAX, cases=jit_ratios,
                           met=sum(r["ratio"] <= GOAL_JIT_VS_JAX for r in jit_ratios),
                           total=len(jit_ratios),
                           geomean=_geomean([r["ratio"] for r in jit_ratios]))
    # reverse-mode gradient over objective (GMM and LSTM), eager and jit
    rev_obj = []
    for prob, size, _, _ in _cases(records):
        if prob not in ("gmm", "lstm"):
            continue
        for ex in ("eager", "jit"):
            o, r = idx.get((prob, size, "tracegrad", ex, "objective")), idx.get((prob, size, "tracegrad", ex, "rev"))
            if o and r and o.time_s and r.time_s:
                rev_obj.append(dict(problem=prob, size=size, exec=ex, ratio=r.time_s / o.time_s))
    s["rev_over_objective"] = dict(goal=GOAL_REV_OVER_OBJ, cases=rev_obj,
                                   met=sum(r["ratio"] <= GOAL_REV_OVER_OBJ for r in rev_obj),
                                   total=len(rev_obj))
    # eager tracegrad vs autograd (objective and reverse mode)
    eager = []
    for prob, size, _, _ in _cases(records):
        for mode in ("objective", "rev"):
            te, ag = idx.get((prob, size, "tracegrad", "eager", mode)), idx.get((prob, size, "autograd", "eager", mode))
            if te and ag and te.time_s and ag.time_s:
                eager.append(dict(problem=prob, size=size, mode=mode, ratio=te.time_s / ag.time_s))
    s["eager_vs_autograd"] = dict(goal=1.0, cases=eager, met=sum(r["ratio"] < 1.0 for r in eager),
                                  total=len(eager), geomean=_geomean([r["ratio"] for r in eager]))
    # the mode chooser
    scored = [c for c in choices if "choice" in c]
    by_exec = defaultdict(list)
    for c in choices:
        by_exec[c["exec"]].append(bool(c.get("ok")))
    s["chooser"] = dict(goal=GOAL_CHOOSER, correct=sum(c["ok"] for c in scored), total=len(choices),
                        rate=(sum(c["ok"] for c in scored) / len(choices)) if choices else None,
                        by_exec={k: dict(correct=sum(v), total=len(v)) for k, v in by_exec.items()},
                        misses=[c for c in choices if not c.get("ok")])
    s["references"] = dict(ok=sum(r["ok"] for r in references), total=len(references))
    bad = [r for r in records if not r.ok]
    s["agreement"] = dict(failures=len([r for r in bad if r.framework in ("tracegrad", "numpy")]),
                          peer_failures=len([r for r in bad if r.framework not in ("tracegrad", "numpy")]),
                          checked=sum(r.err is not None for r in records))
    return s


def _geomean(xs):
    xs = [x for x in xs if x and x > 0 and math.isfinite(x)]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def summary_text(s, records, references):
    lines = []
    j = s["jit_vs_jax"]
    if j["total"]:
        worst = sorted(j["cases"], key=lambda r: -r["ratio"])[:5]
        lines.append(f"jitted tracegrad vs jax.jit: within {j['goal']}x in {j['met']}/{j['total']} "
                     f"cases (geomean ratio {j['geomean']:.2f}x); worst: " +
                     ", ".join(f"{r['problem']} {r['size']} {r['mode']} {r['ratio']:.2f}x" for r in worst))
    r = s["rev_over_objective"]
    if r["total"]:
        lines.append(f"reverse-mode gradient / objective (GMM, LSTM; goal <= {r['goal']}x): "
                     f"{r['met']}/{r['total']} met: " +
                     ", ".join(f"{c['problem']} {c['size']} {c['exec']} {c['ratio']:.2f}x" for c in r["cases"]))
    e = s["eager_vs_autograd"]
    if e["total"]:
        lines.append(f"eager tracegrad vs autograd (goal < 1x): faster in {e['met']}/{e['total']} cases "
                     f"(geomean ratio {e['geomean']:.2f}x)")
    c = s["chooser"]
    if c["total"]:
        per = ", ".join(f"{k} {v['correct']}/{v['total']}" for k, v in sorted(c["by_exec"].items()))
        lines.append(f"mode chooser (tracegrad.jacobian): picked the faster mode or one within 10% in "
                     f"{c['correct']}/{c['total']} = {100 * c['rate']:.0f}% of cases ({per}); "
                     f"goal >= {100 * c['goal']:.0f}%")
    ref = s["references"]
    lines.append(f"ADBench reference values reproduced: {ref['ok']}/{ref['total']}")
    for rr in references:
        if not rr["ok"]:
            lines.append(f"  FAIL {rr['name']}: got {rr.get('value')}, expected {rr.get('expected')} "
                         f"{rr.get('note', '')}")
    a = s["agreement"]
    lines.append(f"agreement checks: {a['checked']} compared, {a['failures']} tracegrad failures, "
                 f"{a['peer_failures']} peer failures")
    for rec in records:
        if not rec.ok:
            lines.append(f"  FAIL {rec.problem} {rec.size} {rec.framework} {rec.exec} {rec.mode}: {rec.note}")
    return "\n".join(lines)


def environment(backends):
    import os
    env = dict(python=platform.python_version(), machine=platform.machine(),
               processor=platform.processor(), cpus=os.cpu_count(), system=platform.platform())
    env["versions"] = {name: b.version for name, b in backends.items()}
    return env


def write_json(path, payload):
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=1, default=_json_default)


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    return str(o)
