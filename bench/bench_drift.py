"""Drift on 50 numeric features × 100k reference × 100k current rows: ours vs per-column scipy vs Evidently.

Each contender runs in its own subprocess (so peak RSS is its own); the data are regenerated from the same
seed in each one and their generation is not timed. Evidently lives in a separate virtualenv that this script
creates (``--venv``, default ``~/.cache/alphawatch-bench/evidently-venv``) with ``evidently`` and
``pandas<3``. Prints a Markdown table.

    .venv/bin/python bench/bench_drift.py                 # full run
    .venv/bin/python bench/bench_drift.py --rows 20000    # quicker
    .venv/bin/python bench/bench_drift.py --skip-evidently
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import venv
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

HERE = Path(__file__).resolve()
DEFAULT_VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "alphawatch-bench" / "evidently-venv"


SEED = 20260101


def make_reference(rng: np.random.Generator, rows: int, features: int) -> NDArray[np.float64]:
    return rng.standard_normal((rows, features))


def make_current(rng: np.random.Generator, rows: int, features: int) -> NDArray[np.float64]:
    cur = rng.standard_normal((rows, features))
    cur[:, :5] += 0.2  # five drifted features
    return cur


def make_data(rows: int, features: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    rng = np.random.default_rng(SEED)
    ref = make_reference(rng, rows, features)
    return ref, make_current(rng, rows, features)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(mode: str, rows: int, features: int) -> dict[str, Any]:
    base_rss = rss_mib()
    if mode.startswith("ours"):
        from alphawatch.rules.stats import ReferenceSummary, feature_drift

        workers = 2 if mode == "ours-2threads" else 1
        max_sample = 1000 if mode == "ours-sketch" else None
        if mode == "ours-flow":
            # As the daemon does it: the reference rows are summarised, then dropped; current rows come later.
            rng = np.random.default_rng(SEED)
            ref = make_reference(rng, rows, features)
            data_rss = rss_mib()
            t0 = time.perf_counter()
            summary = ReferenceSummary.from_rows(ref, max_sample=max_sample)
            t1 = time.perf_counter()
            del ref
            cur = make_current(rng, rows, features)
        else:
            ref, cur = make_data(rows, features)
            data_rss = rss_mib()
            t0 = time.perf_counter()
            summary = ReferenceSummary.from_rows(ref, max_sample=max_sample)
            t1 = time.perf_counter()
        t_cur = time.perf_counter()
        rep = feature_drift(summary, cur, workers=workers)
        t2 = time.perf_counter()
        drifted = int(rep.drifted("ks").sum())
        return {
            "wall": (t1 - t0) + (t2 - t_cur),
            "compare": t2 - t_cur,
            "summary": t1 - t0,
            "drifted": drifted,
            "rss": rss_mib(),
            "data_rss": data_rss,
            "base_rss": base_rss,
        }
    if mode == "scipy":
        from scipy import stats

        ref, cur = make_data(rows, features)
        data_rss = rss_mib()
        t0 = time.perf_counter()
        p = [stats.ks_2samp(ref[:, f], cur[:, f]).pvalue for f in range(features)]
        wall = time.perf_counter() - t0
        return {
            "wall": wall,
            "drifted": int((np.array(p) < 0.05 / features).sum()),
            "rss": rss_mib(),
            "data_rss": data_rss,
            "base_rss": base_rss,
        }
    if mode == "evidently":
        import pandas as pd
        from evidently import Report
        from evidently.presets import DataDriftPreset

        ref, cur = make_data(rows, features)
        cols = [f"f{i}" for i in range(features)]
        rdf, cdf = pd.DataFrame(ref, columns=cols), pd.DataFrame(cur, columns=cols)
        data_rss = rss_mib()
        t0 = time.perf_counter()
        snap = Report([DataDriftPreset()]).run(current_data=cdf, reference_data=rdf)
        result = snap.dict()
        wall = time.perf_counter() - t0
        drifted = -1
        for m in result.get("metrics", []):
            v = m.get("value")
            name = str(m.get("metric_name", m.get("metric_id", "")))
            if isinstance(v, dict) and "count" in v and "DriftedColumnsCount" in name:
                drifted = int(v["count"])
        import evidently

        return {
            "wall": wall,
            "drifted": drifted,
            "rss": rss_mib(),
            "data_rss": data_rss,
            "base_rss": base_rss,
            "version": evidently.__version__,
        }
    raise SystemExit(f"unknown mode {mode}")


def ensure_evidently(venv_dir: Path) -> Path:
    py = venv_dir / "bin" / "python"
    if (
        py.exists()
        and subprocess.run([py, "-c", "import evidently, pandas, numpy"], capture_output=True).returncode == 0
    ):
        return py
    venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
    cmd = [str(py), "-m", "pip", "install", "-q", "evidently", "pandas<3"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"installing Evidently failed ({' '.join(cmd)}):\n{done.stderr[-3000:]}")
    return py


def run_child(python: Path | str, mode: str, rows: int, features: int, extra_path: str | None) -> dict[str, Any]:
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = extra_path
    out = subprocess.run(
        [str(python), str(HERE), "--child", mode, "--rows", str(rows), "--features", str(features)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--features", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3, help="runs per contender; the best wall time is kept")
    ap.add_argument("--skip-evidently", action="store_true")
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.features)))
        return 0
    contenders: list[tuple[str, Path | str, str | None]] = [
        ("alphawatch, exact (1 thread)", sys.executable, "ours"),
        ("alphawatch, exact (2 threads)", sys.executable, "ours-2threads"),
        ("alphawatch, exact, reference rows dropped once summarised", sys.executable, "ours-flow"),
        ("alphawatch, rule default: 1,000-point sketch", sys.executable, "ours-sketch"),
        ("scipy.stats.ks_2samp per column", sys.executable, "scipy"),
    ]
    if not args.skip_evidently:
        try:
            contenders.append(("Evidently DataDriftPreset", ensure_evidently(args.venv), "evidently"))
        except RuntimeError as exc:
            print(f"Evidently not run: {exc}", file=sys.stderr)
    results: dict[str, dict[str, Any]] = {}
    for label, py, mode in contenders:
        runs = [
            run_child(py, mode, args.rows, args.features, None)
            for _ in range(1 if mode == "evidently" else args.repeat)
        ]
        ok = [r for r in runs if "error" not in r]
        results[label] = min(ok, key=lambda r: r["wall"]) if ok else runs[0]
        print(f"{label}: {results[label]}", file=sys.stderr)
    scipy_wall = results.get("scipy.stats.ks_2samp per column", {}).get("wall", float("nan"))
    ev_wall = results.get("Evidently DataDriftPreset", {}).get("wall", float("nan"))
    ev_rss = results.get("Evidently DataDriftPreset", {}).get("rss", float("nan"))
    print(
        f"\n{args.features} features × {args.rows:,} reference × {args.rows:,} current rows, "
        f"all methods for alphawatch (PSI, KS + p-value, JS, Wasserstein); best of {args.repeat}; "
        f"{time.strftime('%Y-%m-%d')}.\n"
    )
    print(
        "| contender | per check s | with building the summary s | peak RSS MiB | RSS after data MiB | "
        "drifted (of 5 shifted) | scipy ÷ ours (per check / with summary) | Evidently ÷ ours | "
        "peak RSS ÷ Evidently's |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, r in results.items():
        if "error" in r:
            print(f"| {label} | failed: {r['error']} | | | | | | | |")
            continue
        if "compare" in r:
            per, total = r["compare"], r["wall"]
            vs_scipy = f"{scipy_wall / per:.1f}× / {scipy_wall / total:.1f}×"
            vs_ev = f"{ev_wall / per:.0f}× / {ev_wall / total:.0f}×"
            times = f"{per:.2f} | {total:.2f} (summary {r['summary']:.2f})"
        else:
            vs_scipy = vs_ev = ""
            times = f"{r['wall']:.2f} | {r['wall']:.2f}"
        print(
            f"| {label} | {times} | {r['rss']:.0f} | {r['data_rss']:.0f} | {r['drifted']} | {vs_scipy} | "
            f"{vs_ev} | {r['rss'] / ev_rss:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
