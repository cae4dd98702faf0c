"""Timing helpers shared by the benchmark scripts: medians of repeated
batches (the machine is shared and noisy), and a ratio table."""
from __future__ import annotations

import time


def best_median(fn, number, repeat=7, warmup=3):
    """Median seconds per call over `repeat` batches of `number` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    times.sort()
    return times[len(times) // 2]


def fmt_us(s):
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.2f} µs"


def print_table(title, rows):
    """rows: (case, peer, peer_seconds, tracegrad_seconds)."""
    print(f"\n{title}")
    w = max(len(r[0]) for r in rows) + 2
    print(f"{'case':{w}s} {'peer':>12s} {'peer':>11s} {'tracegrad':>11s} {'ratio':>7s}")
    for case, peer, a, b in rows:
        print(f"{case:{w}s} {peer:>12s} {fmt_us(a):>11s} {fmt_us(b):>11s} {b / a:7.2f}x")
