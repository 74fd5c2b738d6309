"""``alphawatch stats ic|sharpe|drift|change-point``: the daemon's kernels over CSV files.

CSV layouts: *long* (``date``, ``asset`` and a value column, one row per date and asset) or *wide* (a ``date``
column and one column per asset or per feature), either with the daemon's ``model`` or ``horizon`` column when it
holds one value (``push-data`` files as they are; ``drift`` reads features files, a row per date and asset, wide
or long). Empty cells, ``nan`` and ``NA`` are missing values; any other
cell that is not a number is an error (exit 2) with its line and column. Results print as a
small table, or as JSON with ``--json`` (NaN as null). Exit status: 0, or 1 when ``drift`` or ``change-point``
alarms, or 2 when the input cannot be used (a file cannot be read, an argument is out of range).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from alphawatch.daemon.cli import finite_float, whole_number

__all__ = ["add_parser"]

Command = Callable[[argparse.Namespace], int]


MISSING = frozenset({"", "nan", "NaN", "NA", "N/A", "#N/A", "NULL", "null", "None"})
"""Cells that mean a missing value (as the daemon's CSV ingest reads them, and ``nan``)."""
ONE_VALUE_COLUMNS = ("model", "horizon", "kind")
"""Columns of the daemon's CSV layouts that name what a file is about: dropped when they hold one value."""


def _float(cell: str, where: str) -> float:
    text = cell.strip()
    if text in MISSING:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: not a number: {cell[:40]!r}") from None


def _read_table(path: Path) -> tuple[list[str], list[tuple[int, list[str]]], list[int]]:
    """(header, numbered rows, the columns kept) of a CSV file: the daemon's one-value columns dropped."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise ValueError(f"{path}: not CSV: {exc}") from None
    if not rows or not rows[0]:
        raise ValueError(f"{path}: no header line")
    header = [h.strip() for h in rows[0]]
    body = [(line, r) for line, r in enumerate(rows[1:], 2) if r]
    short = next((line for line, r in body if len(r) < len(header)), None)
    if short is not None:
        raise ValueError(f"{path}: line {short} has fewer cells than the header's {len(header)}")
    lower = [h.lower() for h in header]
    keep = list(range(len(header)))
    for name in ONE_VALUE_COLUMNS:
        if name in lower:
            at = lower.index(name)
            values = sorted({r[at].strip() for _, r in body})
            if len(values) > 1:
                shown = ", ".join(values[:5]) + (", …" if len(values) > 5 else "")
                raise ValueError(f"{path}: the {name} column holds several values ({shown}): keep one per file")
            keep.remove(at)
    return header, body, keep


def _pivot(
    path: Path, header: list[str], body: list[tuple[int, list[str]]], rows: list[int], column: int, value: int
) -> tuple[list[str], list[str], NDArray[np.float64]]:
    """A long table pivoted: a row per distinct key of the ``rows`` columns, a column per value of ``column``."""
    keys = sorted({tuple(r[i] for i in rows) for _, r in body})
    names = sorted({r[column] for _, r in body})
    ki, ni = {k: i for i, k in enumerate(keys)}, {n: i for i, n in enumerate(names)}
    m = np.full((len(keys), len(names)), np.nan)
    for line, r in body:
        m[ki[tuple(r[i] for i in rows)], ni[r[column]]] = _float(
            r[value], f"{path}: line {line}, column {header[value]}"
        )
    return [" ".join(k) for k in keys], names, m


def _wide(
    path: Path, header: list[str], body: list[tuple[int, list[str]]], labelled_by: list[int], cols: list[int]
) -> tuple[list[str], list[str], NDArray[np.float64]]:
    labels = (
        [" ".join(r[i] for i in labelled_by) for _, r in body] if labelled_by else [str(i) for i in range(len(body))]
    )
    m = np.array(
        [[_float(r[i], f"{path}: line {line}, column {header[i]}") for i in cols] for line, r in body],
        dtype=np.float64,
    )
    return labels, [header[i] for i in cols], m.reshape(len(body), len(cols))


def read_matrix(path: Path) -> tuple[list[str], list[str], NDArray[np.float64]]:
    """(row labels, column labels, values) of a long or wide CSV; long files are pivoted to dates × assets.

    Long: the columns ``date``, ``asset`` and one of values, in any order. Wide: a ``date`` column (anywhere;
    without one, rows are numbered), the other columns values. Either may carry the daemon's ``model`` or
    ``horizon`` column when it holds a single value (push-data files as they are). A cell that is not a number
    nor a missing value is refused with its line and column, never read as missing.
    """
    return _matrix(path, *_read_table(path))


def _matrix(
    path: Path, header: list[str], body: list[tuple[int, list[str]]], keep: list[int]
) -> tuple[list[str], list[str], NDArray[np.float64]]:
    names = [header[i].lower() for i in keep]
    if len(keep) == 3 and "date" in names and "asset" in names:
        date, asset = keep[names.index("date")], keep[names.index("asset")]
        (value,) = [i for i in keep if i not in (date, asset)]
        return _pivot(path, header, body, [date], asset, value)
    dated = [keep[names.index("date")]] if "date" in names else []
    return _wide(path, header, body, dated, [i for i in keep if i not in dated])


def read_observations(path: Path) -> tuple[list[str], NDArray[np.float64]]:
    """(feature names, observations × features) of a features CSV: ``push-data features`` files as they are,
    a row per date and asset (wide: a column per feature; long: ``feature`` and ``value`` columns), or a plain
    wide file (a row per observation, a column per feature, an optional ``date`` column)."""
    header, body, keep = _read_table(path)
    names = [header[i].lower() for i in keep]
    keys = [keep[names.index(n)] for n in ("date", "asset") if n in names]
    if "asset" not in names:
        _, features, m = _matrix(path, header, body, keep)
        return features, m
    if {"feature", "value"} <= set(names) and len(keep) == len(keys) + 2:
        _, features, m = _pivot(path, header, body, keys, keep[names.index("feature")], keep[names.index("value")])
        return features, m
    _, features, m = _wide(path, header, body, keys, [i for i in keep if i not in keys])
    return features, m


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.ndarray):
        return _clean(v.tolist())
    if isinstance(v, np.generic):
        return _clean(v.item())
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    return v


def _emit(args: argparse.Namespace, sections: dict[str, Any]) -> None:
    if args.json:
        json.dump(_clean(sections), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    for title, body in sections.items():
        print(f"== {title}")
        if isinstance(body, list):
            if body:
                keys = list(body[0])
                print("  ".join(f"{k:>12}" for k in keys))
                for row in body:
                    print("  ".join(f"{_fmt(row[k]):>12}" for k in keys))
        else:
            for k, v in body.items():
                print(f"  {k:<22} {_fmt(v)}")


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return f"{v:.6g}"
    return str(v)


def _asdict(obj: Any) -> dict[str, Any]:
    return dict(dataclasses.asdict(obj))


def _split(labels: Sequence[str], baseline_end: str | None) -> NDArray[np.bool_]:
    return np.array([baseline_end is not None and lab <= baseline_end for lab in labels], dtype=bool)


def cmd_ic(args: argparse.Namespace) -> int:
    from .ic import ic_decline, ic_sign_flip, ic_test, rank_ic, rolling_ic

    d1, a1, scores = read_matrix(args.scores)
    d2, a2, rets = read_matrix(args.returns)
    dates = sorted(set(d1) & set(d2))
    assets = sorted(set(a1) & set(a2))
    if not dates or not assets:
        print("no common dates and assets", file=sys.stderr)
        return 2

    def pick(m: NDArray[np.float64], ds: list[str], as_: list[str]) -> NDArray[np.float64]:
        return m[np.ix_([ds.index(d) for d in dates], [as_.index(a) for a in assets])]

    daily = rank_ic(pick(scores, d1, a1), pick(rets, d2, a2), min_assets=args.min_assets).ic
    base = _split(dates, args.baseline_end)
    cur = daily[~base][-args.window :]
    ref = daily[base] if base.any() else None
    min_obs = min(args.min_obs, args.window)  # as the rule does: a 10-day window is judged on its 10 values
    test = ic_test(cur, horizon=args.horizon, floor=args.floor, alternative="less", baseline=ref, min_obs=min_obs)
    out: dict[str, Any] = {"window": _asdict(test)}
    if base.any():
        out["decline_vs_baseline"] = _asdict(ic_decline(cur, daily[base], horizon=args.horizon, min_obs=min_obs))
        out["sign_flip"] = _asdict(
            ic_sign_flip(cur, daily[base], horizon=args.horizon, alpha=args.alpha, min_obs=min_obs)
        )
    if args.daily:
        roll = rolling_ic(daily, args.window, min_periods=max(2, args.window // 2))
        out["daily"] = [
            {
                "date": d,
                "ic": float(daily[i]),
                "mean": float(roll.mean[i]),
                "ir": float(roll.ir[i]),
                "hit_rate": float(roll.hit_rate[i]),
            }
            for i, d in enumerate(dates)
        ]
    _emit(args, out)
    return 0


def cmd_sharpe(args: argparse.Namespace) -> int:
    from .sharpe import sharpe_degradation, sharpe_stats

    labels, _, m = read_matrix(args.returns)
    r = m[:, -1]
    base = _split(labels, args.baseline_end)
    cur = r[~base][-args.window :] if args.window else r[~base]
    out: dict[str, Any] = {
        "window": _asdict(sharpe_stats(cur, periods_per_year=args.periods_per_year, benchmark=args.benchmark))
    }
    if base.any():
        out["degradation_vs_baseline"] = _asdict(
            sharpe_degradation(cur, r[base], periods_per_year=args.periods_per_year)
        )
    _emit(args, out)
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    from .drift import DriftThresholds, decide_drift, feature_drift
    from .reference import ReferenceSummary

    names, ref = read_observations(args.reference)
    cnames, cur = read_observations(args.current)
    if cnames != names:
        print("reference and current have different columns", file=sys.stderr)
        return 2
    summary = ReferenceSummary.from_rows(ref, names, bins=args.bins)
    th = DriftThresholds(psi=args.psi, ks_alpha=args.alpha, js=args.js, wasserstein=args.wasserstein)
    rep = feature_drift(summary, cur, thresholds=th, correction=args.correction)
    table = [
        {
            "feature": n,
            "status": rep.status[i],
            "psi": float(rep.psi[i]),
            "ks": float(rep.ks_statistic[i]),
            "ks_p_adj": float(rep.ks_pvalue_adjusted[i]),
            "js": float(rep.js[i]),
            "wasserstein": float(rep.wasserstein[i]),
            "drifted": bool(rep.drifted(args.method)[i]),
        }
        for i, n in enumerate(names)
    ]
    dec = decide_drift(rep, method=args.method, key_features=args.key_feature, max_share=args.max_share)
    _emit(args, {"features": table, "decision": _asdict(dec)})
    return 1 if dec.drifted else 0


def cmd_change_point(args: argparse.Namespace) -> int:
    from .changepoint import Cusum, PageHinkley

    labels, cols, m = read_matrix(args.series)
    if args.column and args.column not in cols:
        raise ValueError(f"{args.series}: no column {args.column!r} (it has {', '.join(cols)})")
    col = cols.index(args.column) if args.column else len(cols) - 1
    x = m[:, col]
    det: Cusum | PageHinkley
    first = 0
    if args.method == "cusum":  # fitted on the baseline, it watches what follows (as the rule does)
        det = Cusum.from_baseline(x[: args.baseline], k=args.k, h=args.h, direction=args.direction)
        first = args.baseline
    else:
        det = PageHinkley(delta=args.delta, lam=args.lam, direction=args.direction, min_obs=args.baseline)
    alarms = [{"index": i, "date": labels[i], "value": float(x[i])}
              for i in range(first, len(x)) if det.update(float(x[i]))]  # fmt: skip
    _emit(args, {"alarms": alarms, "state": json.loads(det.to_json())})
    return 1 if alarms else 0


def _reporting(command: Command) -> Command:
    """``command`` with its ValueErrors (unreadable files, parameters the kernels refuse) as a message, exit 2."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ValueError as exc:
            print(f"alphawatch stats {args.stats_command}: {exc}", file=sys.stderr)
            return 2

    return run


def _positive(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def _probability(text: str) -> float:
    value = finite_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``stats`` with its ``ic``, ``sharpe``, ``drift`` and ``change-point`` subcommands."""
    p = subparsers.add_parser(
        "stats",
        help="run the monitoring statistics over CSV files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="stats_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")

    ic = sub.add_parser("ic", parents=[common], help="daily rank IC and its tests")
    ic.add_argument("--scores", type=Path, required=True)
    ic.add_argument("--returns", type=Path, required=True, help="forward returns aligned on the score date")
    ic.add_argument("--horizon", type=whole_number(1), default=5)
    ic.add_argument("--window", type=whole_number(2), default=60)
    ic.add_argument("--floor", type=finite_float, default=0.0)
    ic.add_argument("--alpha", type=_probability, default=0.05)
    ic.add_argument("--min-assets", type=whole_number(2), default=10)
    ic.add_argument("--min-obs", type=whole_number(3), default=20, help="IC values a test needs (at most --window)")
    ic.add_argument("--baseline-end", help="dates up to this one (inclusive) form the baseline")
    ic.add_argument("--daily", action="store_true", help="also list the daily IC and rolling summaries")
    ic.set_defaults(func=_reporting(cmd_ic))

    sh = sub.add_parser("sharpe", parents=[common], help="Sharpe, its standard error, PSR, drawdown")
    sh.add_argument("--returns", type=Path, required=True, help="per-period returns, last column")
    sh.add_argument("--periods-per-year", type=_positive, default=252.0)
    sh.add_argument("--window", type=whole_number(0), default=0, help="last N periods (0: all after the baseline)")
    sh.add_argument("--benchmark", type=finite_float, default=0.0, help="annualised benchmark Sharpe for PSR")
    sh.add_argument("--baseline-end")
    sh.set_defaults(func=_reporting(cmd_sharpe))

    dr = sub.add_parser("drift", parents=[common], help="per-feature drift, one column per feature")
    dr.add_argument("--reference", type=Path, required=True)
    dr.add_argument("--current", type=Path, required=True)
    dr.add_argument("--bins", type=whole_number(2), default=10)
    dr.add_argument("--method", choices=["psi", "ks", "js", "wasserstein"], default="ks")
    dr.add_argument("--correction", choices=["none", "bonferroni", "bh"], default="bh")
    dr.add_argument("--alpha", type=_probability, default=0.05)
    dr.add_argument("--psi", type=finite_float, default=0.2)
    dr.add_argument("--js", type=finite_float, default=0.1)
    dr.add_argument("--wasserstein", type=finite_float, default=0.1)
    dr.add_argument("--key-feature", action="append", default=[])
    dr.add_argument("--max-share", type=finite_float, default=0.5)
    dr.set_defaults(func=_reporting(cmd_drift))

    cp = sub.add_parser("change-point", parents=[common], help="CUSUM or Page–Hinkley over a series")
    cp.add_argument("--series", type=Path, required=True)
    cp.add_argument("--column", help="column to read (default: the last)")
    cp.add_argument("--method", choices=["cusum", "page-hinkley"], default="cusum")
    cp.add_argument(
        "--baseline", type=whole_number(0), default=60, help="CUSUM: values estimating mean and std; PH: warm-up"
    )
    cp.add_argument("--direction", choices=["up", "down", "both"], default="both")
    cp.add_argument("--k", type=finite_float, default=0.5)
    cp.add_argument("--h", type=finite_float, default=5.0)
    cp.add_argument("--delta", type=finite_float, default=0.005)
    cp.add_argument("--lam", type=finite_float, default=0.5)
    cp.set_defaults(func=_reporting(cmd_change_point))
