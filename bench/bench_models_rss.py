"""Daemon memory with many models: 20 models × (ic + sharpe + drift over 50 features), fed over HTTP.

    .venv/bin/python bench/bench_models_rss.py [--models 20] [--features 50] [--assets 300] [--days 30]

Starts ``alphawatch run`` on 127.0.0.1:0 with a fresh state file, pushes for every model a prediction
cross-section, 1-day returns, a portfolio return and the feature cross-section of each date (the first
two thirds of the dates are the drift reference), waits until the rules have evaluated everything, and prints
the daemon's RSS (``VmRSS``) and peak (``VmHWM``) at start, after the load, and idle afterwards. Target ≤ 100 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np

from alphawatch.daemon.calendar import load_calendars
from alphawatch.daemon.client import AlphawatchClient

TOKEN = "bench-token-0123456789"


def status_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def config(models: int, features: int, ref: list[str], state: Path) -> str:
    rules = []
    keys = ", ".join(f"f{i:02d}" for i in range(3))
    for m in range(models):
        rules += [
            f"  - {{name: ic-m{m}, kind: ic, match: {{model: m{m}}}, window: 20, min_obs: 10,"
            " baseline: {lagged: 10}}",
            f"  - {{name: sharpe-m{m}, kind: sharpe, match: {{model: m{m}}}, window: 20, min_obs: 10}}",
            f"  - {{name: drift-m{m}, kind: drift, match: {{model: m{m}}}, key_features: [{keys}], window: 5,"
            f" reference: {{start: {ref[0]}, end: {ref[-1]}}}}}",
        ]
    return (
        f"daemon:\n  state: {state}\n  listen: 127.0.0.1:0\n  tokens: {{ingest: {TOKEN}, admin: {TOKEN}}}\n"
        f"  max_body: 64000000\nrules:\n" + "\n".join(rules) + "\n"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--features", type=int, default=50)
    ap.add_argument("--assets", type=int, default=300)
    ap.add_argument("--days", type=int, default=30)
    args = ap.parse_args()
    cal = load_calendars().default
    today = date.today()
    last = cal.add_trading_days(today, -3)
    days = [d.isoformat() for d in cal.trading_days(cal.add_trading_days(last, -(args.days - 1)), last)]
    ref = days[: args.days * 2 // 3]
    work = Path(tempfile.mkdtemp(prefix="aw_rss_"))
    path = work / "monitor.yaml"
    path.write_text(config(args.models, args.features, ref, work / "state.db"))
    process = subprocess.Popen(
        [sys.executable, "-m", "alphawatch.daemon.cli", "run", "-c", str(path)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env={**os.environ},
    )  # fmt: skip
    assert process.stderr is not None
    url = ""
    for line in process.stderr:
        entry = json.loads(line)
        if entry.get("msg") == "alphawatch ready":
            url = entry["listen"][0]
            break
    threading.Thread(target=lambda: [None for _ in process.stderr or ()], daemon=True).start()
    at_start = status_kb(process.pid)
    rng = np.random.default_rng(0)
    names = [f"f{i:02d}" for i in range(args.features)]
    began = time.perf_counter()
    values = 0
    try:
        with AlphawatchClient(url, TOKEN, timeout=300) as client:
            for day_index, day in enumerate(days):
                shift = 0.5 if day_index >= len(days) - 3 else 0.0
                returns = [{"asset": f"{1101 + a}", "date": day, "horizon": 1, "return": float(r)}
                           for a, r in enumerate(0.01 * rng.standard_normal(args.assets))]  # fmt: skip
                client.push_returns(returns)
                for m in range(args.models):
                    scores = rng.standard_normal(args.assets)
                    client.push_predictions([{"model": f"m{m}", "date": day, "asset": f"{1101 + a}",
                                              "score": float(s)} for a, s in enumerate(scores)])  # fmt: skip
                    client.push_portfolio([{"model": f"m{m}", "date": day, "return": float(rng.normal(5e-4, 0.01))}])
                    block = rng.standard_normal((args.assets, args.features))
                    block[:, 0] += shift
                    client.push_features([{"model": f"m{m}", "date": day, "asset": f"{1101 + a}",
                                           "values": dict(zip(names, map(float, row), strict=True))}
                                          for a, row in enumerate(block)])  # fmt: skip
                    values += block.size
        loaded = time.perf_counter() - began
        after_load = status_kb(process.pid)
        time.sleep(5)
        idle = status_kb(process.pid)
        alerts = json.loads(subprocess.run(["curl", "-s", url + "/api/v1/alerts"], capture_output=True).stdout or b"{}")
        rules = json.loads(subprocess.run(["curl", "-s", url + "/api/v1/rules"], capture_output=True).stdout or b"{}")
    finally:
        process.terminate()
        process.wait(30)
    failed = [r["name"] for r in rules.get("rules", []) if r["status"] == "failed"]
    print(f"{args.models} models × (ic + sharpe + drift over {args.features} features), {args.assets} assets, "
          f"{len(days)} dates ({len(ref)} reference); {values:,} feature values in {loaded:.1f} s\n")  # fmt: skip
    print("| moment | RSS MiB | peak RSS MiB |")
    print("|---|---|---|")
    for label, s in (("after start", at_start), ("after the load", after_load), ("idle 5 s later", idle)):
        print(f"| {label} | {s['VmRSS'] / 1024:.1f} | {s['VmHWM'] / 1024:.1f} |")
    firing = [a["rule"] for a in alerts.get("alerts", []) if a["state"] == "firing"]
    print(f"\nrules: {len(rules.get('rules', []))}, failed: {failed or 'none'}; "
          f"firing: {len(firing)} ({sum(1 for f in firing if f.startswith('drift'))} drift)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
