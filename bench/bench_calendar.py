"""Calendar speed and memory: queries per second, load time, RSS growth. Prints a Markdown table.

    .venv/bin/python bench/bench_calendar.py [--queries 1000000]

Targets (issue 3): is_open / next-edge queries >= 1,000,000 per second; loading all calendars <= 20 ms; no
measurable RSS growth from the calendar (<= 2 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime

from alphawatch.daemon.calendar import TAIPEI, load_calendars
from alphawatch.daemon.windows import build_windows


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rate(fn: Callable[[float], object], stamps: list[float]) -> float:
    """Calls per second of ``fn`` over ``stamps`` in a plain for loop (the loop's own cost included), best of 3."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for ts in stamps:
            fn(ts)
        best = min(best, time.perf_counter() - start)
    return len(stamps) / best


def child(mode: str) -> None:
    """Run in a fresh interpreter: print JSON figures for the cold load or the memory check."""
    if mode == "load":
        start = time.perf_counter()
        load_calendars()
        print(json.dumps({"ms": (time.perf_counter() - start) * 1000}))
        return
    stamps = [random.uniform(1704038400.0, 1798732800.0) for _ in range(200_000)]
    before = rss_mib()
    cals = load_calendars()
    windows = build_windows({}, cals)
    windows["trading"].active(stamps[0])
    loaded = rss_mib()
    for _ in range(2):  # a reload holds the old and the new calendars for a moment: warm up to that level
        cals = load_calendars()
        windows = build_windows({}, cals)
        windows["trading"].active(stamps[0])
    warm = rss_mib()
    for _ in range(200):
        cals = load_calendars()
        windows = build_windows({}, cals)
        windows["trading"].active(stamps[0])
    cal = cals["twse"]
    for _ in range(5):
        for ts in stamps:
            cal.is_open(ts)
            cal.next_edge(ts)
    after = rss_mib()
    print(json.dumps({"load": loaded - before, "reload": warm - loaded, "growth": after - warm}))


def fresh(mode: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", mode], capture_output=True, text=True, check=True)
    figures: dict[str, float] = json.loads(out.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1_000_000)
    parser.add_argument("--child", choices=("load", "memory"))
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    random.seed(3)
    cals = load_calendars()
    twse, taifex = cals["twse"], cals["taifex"]
    lo = datetime(2024, 1, 1, tzinfo=TAIPEI).timestamp()
    hi = datetime(2027, 1, 1, tzinfo=TAIPEI).timestamp()
    stamps = [random.uniform(lo, hi) for _ in range(args.queries)]
    windows = build_windows({"after_close": {"from": "close", "to": "close+3h"}}, cals)
    trading, after_close = windows["trading"], windows["after_close"]

    rows = [
        ("twse `is_open(ts)`", rate(twse.is_open, stamps)),
        ("twse `phase_at(ts)`", rate(twse.phase_at, stamps)),
        ("twse `next_edge(ts)`", rate(twse.next_edge, stamps)),
        ("taifex `is_open(ts)` (night session)", rate(taifex.is_open, stamps)),
        ("window `trading.active(ts)`", rate(trading.active, stamps)),
        ("window `after_close.next_edge(ts)`", rate(after_close.next_edge, stamps)),
    ]
    cold = statistics.median(fresh("load")["ms"] for _ in range(5))
    warm = []
    for _ in range(30):
        start = time.perf_counter()
        load_calendars()
        warm.append((time.perf_counter() - start) * 1000)
    changed = []
    for day in range(1, 31):
        start = time.perf_counter()
        load_calendars({"extra_days": [{"date": f"2026-09-{day:02d}", "kind": "closure", "name": "bench"}]})
        changed.append((time.perf_counter() - start) * 1000)
    start = time.perf_counter()
    build_windows({}, cals)["after_close"].active(lo)
    window_ms = (time.perf_counter() - start) * 1000
    memory = fresh("memory")

    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.queries:,} random instants 2024-2026\n")
    print("| what | figure | target |")
    print("|---|---|---|")
    for name, per_second in rows:
        print(f"| {name} | {per_second / 1e6:.2f} M/s | ≥ 1 M/s |")
    print(f"| load all calendars, fresh process (median of 5) | {cold:.1f} ms | ≤ 20 ms |")
    print(f"| reload, nothing changed (median of 30) | {statistics.median(warm):.1f} ms | ≤ 20 ms |")
    rebuilt = statistics.median(changed)
    print(f"| reload with a new closure: all venues rebuilt (median of 30) | {rebuilt:.1f} ms | ≤ 20 ms |")
    print(f"| build windows + first window's edges | {window_ms:.1f} ms | |")
    print(f"| RSS added by loading the calendars and one window | {memory['load']:.1f} MiB | |")
    print(f"| RSS added by the first reloads (old and new copy alive at once) | {memory['reload']:.1f} MiB | |")
    print(f"| RSS growth over 200 more reloads + 2M queries | {memory['growth']:.1f} MiB | ≤ 2 MB |")


if __name__ == "__main__":
    main()
