"""Rank IC speed: 2,000 assets × 1,000 dates from scratch, and one new date's update.

    .venv/bin/python bench/bench_ic.py [--assets 2000] [--dates 1000]

Prints a Markdown table (best and median of repeated runs).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np

from alphawatch.rules.stats import ic_test, rank_ic, rolling_ic


def timed(fn: object, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--assets", type=int, default=2000)
    ap.add_argument("--dates", type=int, default=1000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((args.dates, args.assets))
    returns = 0.05 * scores + rng.standard_normal((args.dates, args.assets))
    scores[rng.random(scores.shape) < 0.05] = np.nan  # missing assets
    returns = np.round(returns, 3)  # ties, as with quoted prices
    full = timed(lambda: rank_ic(scores, returns), 5)
    one = timed(lambda: rank_ic(scores[-1], returns[-1]), 200)
    ic = rank_ic(scores, returns).ic
    summ = timed(lambda: (rolling_ic(ic, 60), ic_test(ic[-60:], horizon=5)), 50)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{args.assets:,} assets × {args.dates:,} dates, 5 % missing, returns rounded (ties); peak RSS {rss:.0f} MiB\n"
    )
    print("| operation | best | median | target |")
    print("|---|---|---|---|")
    print(f"| daily rank IC, all dates from scratch | {min(full):.3f} s | {statistics.median(full):.3f} s | ≤ 1 s |")
    print(f"| one new date's IC | {min(one) * 1e3:.2f} ms | {statistics.median(one) * 1e3:.2f} ms | ≤ 5 ms |")
    print(
        f"| rolling IC (60) over all dates + one HAC test | {min(summ) * 1e3:.2f} ms | "
        f"{statistics.median(summ) * 1e3:.2f} ms | |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
