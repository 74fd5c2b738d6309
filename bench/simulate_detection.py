"""Size and power of the ``ic`` and ``drift`` kernels on synthetic data with a known truth.

IC panel: 300 assets, persistent scores ``s_t = φ·s_{t−1} + sqrt(1 − φ²)·η_t`` (φ = 0.95) and 5-day forward
returns ``R_t = c·s_t + Σ_{k=1..5} e_{t+k}`` (overlapping, e iid N(0, 1)), with ``c`` set so that the
Spearman IC is 0.05 (``ρ = 2·sin(π·0.05/6)``). A baseline of 250 days (the "training period") precedes the
monitored days. Rules, evaluated on a trailing window of W days:

- the ``ic`` rule with its defaults and a baseline: alarm when any of floor 0, decline, sign flip fires
  (``ic_test(window, floor=0, baseline=...)``, ``ic_decline(window, baseline)``, ``ic_sign_flip``), the
  variance of the window mean taken from the baseline (``method="baseline"``);
- decline alone, the same test;
- floor 0.05 (at the true IC: the worst case for size), variance from the baseline, and from the window
  alone (lag 2·(h − 1) = 8, small-sample t: the rule without a baseline, whose default window is 20);
- before: decline with Welch HAC variances at lag 4 (``method="welch"``), and at lag 0 (a plain t-test);
- CUSUM (k = 0.5, h = 5, downward) on the daily IC, standardised by the baseline mean and std.

Drift: 50 N(0, 1) features, 300 rows a day, a 250-day reference (75,000 rows), current window = last 5 days
(1,500 rows); rule = any feature with a BH-adjusted KS p-value < alpha. At the change, 5 features shift by
0.2 standard deviations. Persistent drift: the same with each asset's features an AR(1) from day to day
(φ = 0.9, as alpha features are), 20 features, a 120-day reference; KS counting every row, and as the rule
counts (``lag1_persistence`` of the window and the date before, ``effective_fraction`` of each side).

    .venv/bin/python bench/simulate_detection.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from alphawatch.rules.stats import (
    Cusum,
    ReferenceSummary,
    decide_drift,
    effective_fraction,
    feature_drift,
    ic_decline,
    ic_sign_flip,
    ic_test,
    lag1_persistence,
    rank_ic,
)

ASSETS, HORIZON, IC, PHI, BASE = 300, 5, 0.05, 0.95, 250


def ic_series(rng: np.random.Generator, days: int, change_at: int | None) -> NDArray[np.float64]:
    """Daily rank IC of a simulated panel; the signal vanishes from day ``change_at`` on."""
    rho = 2 * math.sin(math.pi * IC / 6)
    c = rho * math.sqrt(HORIZON / (1 - rho**2))
    s = np.empty((days, ASSETS))
    s[0] = rng.standard_normal(ASSETS)
    shocks = rng.standard_normal((days, ASSETS)) * math.sqrt(1 - PHI**2)
    for t in range(1, days):
        s[t] = PHI * s[t - 1] + shocks[t]
    e = rng.standard_normal((days + HORIZON, ASSETS))
    cs = np.cumsum(np.vstack([np.zeros((1, ASSETS)), e]), axis=0)
    noise = cs[HORIZON + 1 : days + HORIZON + 1] - cs[1 : days + 1]  # Σ_{k=1..5} e_{t+k}
    signal = np.full(days, c)
    if change_at is not None:
        signal[change_at:] = 0.0
    returns = signal[:, None] * s + noise
    return rank_ic(s, returns).ic


Rule = Callable[[NDArray[np.float64], NDArray[np.float64]], bool]


def rule_defaults(w: NDArray[np.float64], b: NDArray[np.float64], alpha: float) -> bool:
    """What the ``ic`` rule decides with a baseline and its default conditions (``rules/ic.py``)."""
    m = min(20, w.size)
    return bool(
        ic_test(w, horizon=HORIZON, floor=0.0, baseline=b, min_obs=m).p_value < alpha
        or ic_decline(w, b, horizon=HORIZON, min_obs=m).p_value < alpha
        or ic_sign_flip(w, b, horizon=HORIZON, alpha=alpha, min_obs=m).flipped
    )


def ic_rules(alpha: float) -> dict[str, Rule]:
    return {
        "**ic rule, defaults** (floor 0, decline, sign flip; baseline variance)": lambda w, b: rule_defaults(
            w, b, alpha
        ),
        "decline (baseline variance, lag W − 1)": lambda w, b: ic_decline(w, b, min_obs=10).p_value < alpha,
        "floor 0.05 (baseline variance)": lambda w, b: ic_test(w, floor=IC, baseline=b, min_obs=10).p_value < alpha,
        "floor 0.05 (no baseline: window only, lag 8, small-sample t)": lambda w, b: (
            ic_test(w, horizon=HORIZON, floor=IC, min_obs=10).p_value < alpha
        ),
        "before: decline (Welch HAC, lag 4)": lambda w, b: (
            ic_decline(w, b, horizon=HORIZON, min_obs=10, method="welch").p_value < alpha
        ),
        "before: decline (plain t, lag 0)": lambda w, b: (
            ic_decline(w, b, lag=0, min_obs=10, method="welch").p_value < alpha
        ),
    }


def simulate_ic(alpha: float, windows: tuple[int, ...], panels: int, reps: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    lines = []
    for w in windows:
        rules = ic_rules(alpha)
        alarms = dict.fromkeys(rules, 0)
        n_windows = 0
        cusum_alarm_days = 0
        monitored_days = 0
        per_panel = max(1000 // panels // 1, 1)
        for _ in range(panels):
            ic = ic_series(rng, BASE + w * per_panel, None)
            base = ic[:BASE]
            for k in range(per_panel):
                win = ic[BASE + k * w : BASE + (k + 1) * w]
                n_windows += 1
                for name, rule in rules.items():
                    alarms[name] += rule(win, base)
            det = Cusum.from_baseline(base, k=0.5, h=5.0, direction="down")
            cusum_alarm_days += sum(det.update(float(x)) for x in ic[BASE:])
            monitored_days += ic.size - BASE
        delays: dict[str, list[int]] = {name: [] for name in [*rules, "CUSUM k=0.5 h=5"]}
        pre, horizon_days = 60, 120
        for _ in range(reps):
            ic = ic_series(rng, BASE + pre + horizon_days, BASE + pre)
            base = ic[:BASE]
            for name, rule in rules.items():
                for d in range(1, horizon_days + 1):
                    end = BASE + pre + d
                    if rule(ic[end - w : end], base):
                        delays[name].append(d)
                        break
            det = Cusum.from_baseline(base, k=0.5, h=5.0, direction="down")
            for x in ic[BASE : BASE + pre]:
                det.update(float(x))
            det.s_up = det.s_down = 0.0  # measure the delay from a clean state at the change
            for d in range(1, horizon_days + 1):
                if det.update(float(ic[BASE + pre + d - 1])):
                    delays["CUSUM k=0.5 h=5"].append(d)
                    break
        for name in rules:
            fa = alarms[name] / n_windows
            got = delays[name]
            med = statistics.median(got) if got else float("nan")
            lines.append(
                f"| ic | {name} | W={w} | {n_windows} | {fa:.3f} ({fa / alpha:.2f}× α) | "
                f"{med:.0f} | {len(got)}/{reps} |"
            )
        got = delays["CUSUM k=0.5 h=5"]
        if w != windows[0]:
            continue  # CUSUM does not depend on W
        lines.append(
            f"| ic | CUSUM k=0.5 h=5 (daily) | – | {monitored_days} days | "
            f"{cusum_alarm_days / monitored_days * 250:.2f} alarms / 250 days | "
            f"{statistics.median(got) if got else float('nan'):.0f} | {len(got)}/{reps} |"
        )
    return lines


def simulate_drift(alpha: float, refs: int, per_ref: int, reps_per_ref: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    features, daily, window, shift, shifted = 50, 300, 5, 0.2, 5
    false_alarms = 0
    n_windows = 0
    delays: list[int] = []
    censored = 0
    for _ in range(refs):
        summary = ReferenceSummary.from_rows(rng.standard_normal((BASE * daily, features)))

        def alarm(rows: NDArray[np.float64], s: ReferenceSummary = summary) -> bool:
            rep = feature_drift(s, rows, correction="bh")
            return decide_drift(rep, method="ks", max_share=1e-9).drifted

        for _ in range(per_ref):
            n_windows += 1
            false_alarms += alarm(rng.standard_normal((window * daily, features)))
        for _ in range(reps_per_ref):
            days = rng.standard_normal((window - 1 + 30, daily, features))
            days[window - 1 :, :, :shifted] += shift
            for d in range(1, 31):
                rows = days[d - 1 : d - 1 + window].reshape(-1, features)
                if alarm(rows):
                    delays.append(d)
                    break
            else:
                censored += 1
    fa = false_alarms / n_windows
    med = statistics.median(delays) if delays else float("nan")
    return [
        f"| drift | KS + BH, any feature | 5 days × 300 rows | {n_windows} | {fa:.3f} ({fa / alpha:.2f}× α) | "
        f"{med:.0f} | {len(delays)}/{len(delays) + censored} |"
    ]


def simulate_persistent_drift(alpha: float, refs: int, per_ref: int, seed: int, phi: float = 0.9) -> list[str]:
    rng = np.random.default_rng(seed)
    features, daily, ref_days, window, shift = 20, 300, 120, 5, 0.2
    alarms = {"every row": 0, "as the rule counts": 0}
    detected = dict.fromkeys(alarms, 0)
    dates, assets = np.repeat(np.arange(window + 1), daily), np.tile(np.arange(daily), window + 1)

    def panel(days: int) -> NDArray[np.float64]:
        x = np.empty((days, daily, features))
        x[0] = rng.standard_normal((daily, features))
        for t in range(1, days):
            x[t] = phi * x[t - 1] + math.sqrt(1 - phi**2) * rng.standard_normal((daily, features))
        return x

    def alarm(summary: ReferenceSummary, days: NDArray[np.float64], counted: bool) -> bool:
        fractions = None
        if counted:  # the window and the date before it, as the rule reads them
            phis = [lag1_persistence(days[:, :, f].ravel(), dates, assets) or 0.0 for f in range(features)]
            fractions = ([effective_fraction(p, ref_days) for p in phis], [effective_fraction(p, window) for p in phis])
        rep = feature_drift(summary, days[1:].reshape(-1, features), correction="bh", ks_fractions=fractions)
        return decide_drift(rep, method="ks", max_share=1e-9).drifted

    for _ in range(refs):
        for _ in range(per_ref):
            x = panel(ref_days + window + 1)
            summary = ReferenceSummary.from_rows(x[:ref_days].reshape(-1, features), max_sample=1000)
            moved = x[ref_days:].copy()
            moved[1:, :, :5] += shift
            for way in alarms:
                alarms[way] += alarm(summary, x[ref_days:], way != "every row")
                detected[way] += alarm(summary, moved, way != "every row")
    n = refs * per_ref
    return [
        f"| drift | KS + BH, AR(1) 0.9 features, {way} | 5 days × 300 rows | {n} | {alarms[way] / n:.3f} "
        f"({alarms[way] / n / alpha:.2f}× α) | (5 days shifted) | {detected[way]}/{n} |"
        for way in alarms
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--quick", action="store_true", help="fewer replicates, for a smoke test")
    args = ap.parse_args()
    t0 = time.perf_counter()
    q = args.quick
    lines = simulate_ic(args.alpha, (10, 20, 40), panels=5 if q else 25, reps=20 if q else 200, seed=1)
    lines += simulate_drift(
        args.alpha, refs=2 if q else 20, per_ref=10 if q else 50, reps_per_ref=2 if q else 10, seed=2
    )
    lines += simulate_persistent_drift(args.alpha, refs=2 if q else 10, per_ref=10 if q else 30, seed=3)
    print(f"alpha = {args.alpha}; {time.perf_counter() - t0:.0f} s\n")
    print("| rule | test | window | windows under H0 | false-alarm rate | median delay (days) | detected |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
