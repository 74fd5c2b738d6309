"""Spearman rank information coefficient per date, its rolling summaries and its significance tests.

Input is a dates × assets matrix of model scores and one of forward returns, NaN where an asset is missing.
The daily IC of a date is the Pearson correlation of the average ranks of the assets present on both sides
(``scipy.stats.spearmanr`` per row). Tests on the IC series use Bartlett (Newey–West) long-run variances
priced for their small samples (``hac.bartlett_bias_and_df``): with a baseline, the variance of an n-day window
mean is estimated on the baseline at bandwidth n; without one, on the window itself at lag
``2·(horizon − 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray

from .hac import bartlett_bias_and_df, default_lag, newey_west_long_run_variance, student_t_pvalue, window_lag
from .ranks import average_ranks
from .result import INSUFFICIENT, OK, Status

__all__ = [
    "DailyIC",
    "ICDecline",
    "ICSignFlip",
    "ICTest",
    "RollingIC",
    "ic_decline",
    "ic_sign_flip",
    "ic_test",
    "rank_ic",
    "rolling_ic",
]

Alternative = Literal["less", "greater", "two-sided"]
DeclineMethod = Literal["baseline", "welch"]
_NAN = float("nan")


@dataclass(frozen=True, eq=False)
class DailyIC:
    """Per-date rank IC (NaN where fewer than ``min_assets`` pairs or one side constant) and pair counts."""

    ic: NDArray[np.float64]
    n_assets: NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class RollingIC:
    """Trailing-window summaries of an IC series, aligned with it (NaN until ``min_periods`` values)."""

    mean: NDArray[np.float64]
    std: NDArray[np.float64]
    ir: NDArray[np.float64]
    hit_rate: NDArray[np.float64]
    count: NDArray[np.int64]


@dataclass(frozen=True)
class ICTest:
    """One-sample test of the mean IC against ``floor`` with a Newey–West standard error.

    ``variance`` says where the long-run variance came from: ``"baseline"`` or ``"window"``.
    """

    status: Status
    reason: str
    n: int = 0
    mean: float = _NAN
    std: float = _NAN
    ir: float = _NAN
    hit_rate: float = _NAN
    lag: int = 0
    se: float = _NAN
    t_stat: float = _NAN
    p_value: float = _NAN
    df: float = _NAN
    variance: str = "window"


@dataclass(frozen=True)
class ICDecline:
    """Test that the current mean IC is below the baseline mean (see :func:`ic_decline`)."""

    status: Status
    reason: str
    current_mean: float = _NAN
    baseline_mean: float = _NAN
    difference: float = _NAN
    se: float = _NAN
    t_stat: float = _NAN
    df: float = _NAN
    p_value: float = _NAN
    lag: int = 0
    method: str = "baseline"


@dataclass(frozen=True)
class ICSignFlip:
    """Whether the current mean IC is significantly of the opposite sign to the baseline mean."""

    status: Status
    reason: str
    baseline_mean: float = _NAN
    current_mean: float = _NAN
    p_value: float = _NAN
    flipped: bool = False


def rank_ic(scores: ArrayLike, returns: ArrayLike, *, min_assets: int = 10) -> DailyIC:
    """Spearman rank IC of each row (date) of two equally shaped matrices; a 1-D pair is one date.

    Only assets finite on both sides count; ties get average ranks. A date with fewer than ``min_assets``
    (at least 3) such assets, or with a constant side, gets NaN.
    """
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    r = np.atleast_2d(np.asarray(returns, dtype=np.float64))
    if s.shape != r.shape:
        raise ValueError(f"scores {s.shape} and returns {r.shape} differ in shape")
    both = np.isfinite(s) & np.isfinite(r)
    rs = average_ranks(np.where(both, s, np.nan))
    rr = average_ranks(np.where(both, r, np.nan))
    n = both.sum(axis=1)
    centre = ((n + 1) / 2.0)[:, None]
    dx = np.where(both, rs - centre, 0.0)
    dy = np.where(both, rr - centre, 0.0)
    sxx = np.einsum("ij,ij->i", dx, dx)
    syy = np.einsum("ij,ij->i", dy, dy)
    sxy = np.einsum("ij,ij->i", dx, dy)
    valid = (n >= max(int(min_assets), 3)) & (sxx > 0) & (syy > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ic = np.where(valid, sxy / np.sqrt(sxx * syy), np.nan)
    return DailyIC(ic=np.clip(ic, -1.0, 1.0), n_assets=n.astype(np.int64))


def rolling_ic(ic: ArrayLike, window: int, *, min_periods: int | None = None) -> RollingIC:
    """Rolling mean, sample std (ddof 1), IR = mean/std and hit rate (share of IC > 0) over ``window`` dates.

    NaN dates are skipped inside a window; a window with fewer than ``min_periods`` (default ``window``)
    finite values yields NaN.
    """
    x = np.asarray(ic, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError("ic must be 1-D")
    window = int(window)
    if window < 2:
        raise ValueError("window must be at least 2")
    need = max(window if min_periods is None else int(min_periods), 2)
    size = x.size
    mean = np.full(size, np.nan)
    std = np.full(size, np.nan)
    hit = np.full(size, np.nan)
    count = np.zeros(size, dtype=np.int64)
    if size >= window:
        w = sliding_window_view(x, window)
        fin = np.isfinite(w)
        c = fin.sum(axis=1)
        z = np.where(fin, w, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = z.sum(axis=1) / c
            dev = np.where(fin, w - m[:, None], 0.0)
            v = np.einsum("ij,ij->i", dev, dev) / (c - 1)
            h = (np.where(fin, w, 0.0) > 0).sum(axis=1) / c
        ok = c >= need
        mean[window - 1 :] = np.where(ok, m, np.nan)
        std[window - 1 :] = np.where(ok, np.sqrt(v), np.nan)
        hit[window - 1 :] = np.where(ok, h, np.nan)
        count[window - 1 :] = c
    with np.errstate(invalid="ignore", divide="ignore"):
        ir = np.where(std > 0, mean / std, np.nan)
    return RollingIC(mean=mean, std=std, ir=ir, hit_rate=hit, count=count)


def _finite(x: ArrayLike) -> NDArray[np.float64]:
    v = np.asarray(x, dtype=np.float64).ravel()
    return v[np.isfinite(v)]


def ic_test(
    ic: ArrayLike,
    *,
    horizon: int = 1,
    lag: int | None = None,
    floor: float = 0.0,
    alternative: Alternative = "less",
    min_obs: int = 20,
    baseline: ArrayLike | None = None,
    small_sample: bool = True,
) -> ICTest:
    """Test the mean of an IC window against ``floor``: ``t = (mean − floor) / SE``.

    Without ``baseline``: ``SE² = S / (κ·n)`` with ``S`` the Bartlett long-run variance of the window at lag
    ``2·(horizon − 1)`` (:func:`~.hac.window_lag`), ``κ`` its bias factor and ``t`` referred to Student t
    with the Satterthwaite degrees of freedom ``ν`` (:func:`~.hac.bartlett_bias_and_df`). With a
    ``baseline`` of at least ``min_obs`` values (the same process when nothing has changed): ``S`` of the
    baseline at lag ``n − 1`` — the exact variance of an n-value mean is ``(1/n)·Σ_{|j|<n} (1 − |j|/n)·γ_j``,
    a Bartlett sum at bandwidth n — with the baseline's ``κ`` and ``ν``. ``small_sample=False`` gives the
    textbook ``SE² = S/n`` and ``t(n − 1)``.
    ``alternative="less"`` asks "is the mean IC significantly below the floor?". NaN dates are dropped.
    """
    x = _finite(ic)
    n = x.size
    need = max(int(min_obs), 3)
    b = _finite(baseline) if baseline is not None else None
    use_base = b is not None and b.size >= need
    lag = int(lag) if lag is not None else (n - 1 if use_base else window_lag(horizon))
    if n < need:
        return ICTest(INSUFFICIENT, f"{n} finite IC values, need {need}", n=n, lag=lag)
    mean = float(x.mean())
    std = float(x.std(ddof=1))
    hit = float((x > 0).mean())
    if std == 0.0:
        return ICTest(INSUFFICIENT, "IC series is constant", n=n, mean=mean, std=std, hit_rate=hit, lag=lag)
    sample = b if use_base and b is not None else x
    s = newey_west_long_run_variance(sample, lag)
    kappa, df = bartlett_bias_and_df(sample.size, lag) if small_sample else (1.0, float(n - 1))
    se = float(np.sqrt(s / kappa / n))
    if not se > 0.0:
        return ICTest(INSUFFICIENT, "zero Newey–West variance", n=n, mean=mean, std=std, hit_rate=hit, lag=lag)
    t = (mean - floor) / se
    p = student_t_pvalue(t, df, alternative)
    return ICTest(OK, "", n, mean, std, mean / std, hit, lag, se, t, p, df, "baseline" if use_base else "window")


def ic_decline(
    current: ArrayLike,
    baseline: ArrayLike,
    *,
    horizon: int = 1,
    lag: int | None = None,
    min_obs: int = 20,
    method: DeclineMethod = "baseline",
) -> ICDecline:
    """One-sided test that the current window's mean IC is below the baseline window's mean.

    ``method="baseline"`` (default): under no change both windows are the same process, so the variance of
    ``m_c − m_b`` is estimated on the (longer) baseline: ``V = S_b/κ_b · (1/n_c + 1/n_b)`` with ``S_b`` the
    Bartlett long-run variance of the baseline at lag ``n_c − 1`` (the exact variance of an ``n_c``-value
    mean, see :func:`ic_test`), ``κ_b`` its bias factor and Student t with its Satterthwaite df ``ν_b``
    (:func:`~.hac.bartlett_bias_and_df`). ``method="welch"``: ``V = S_c/n_c + S_b/n_b`` at lag
    ``horizon − 1`` on each side, Welch–Satterthwaite df ``(v_c + v_b)² / (v_c²/(n_c − 1) + v_b²/(n_b − 1))``
    — too liberal on short windows of a persistent IC (docs/statistics.md, "Statistical quality").
    """
    c, b = _finite(current), _finite(baseline)
    need = max(int(min_obs), 3)
    if method == "baseline":
        lag = int(lag) if lag is not None else c.size - 1
    elif method == "welch":
        lag = default_lag(horizon) if lag is None else int(lag)
    else:
        raise ValueError(f"method must be 'baseline' or 'welch', not {method!r}")
    if c.size < need or b.size < need:
        return ICDecline(
            INSUFFICIENT, f"{c.size} current and {b.size} baseline IC values, need {need} each", lag=lag, method=method
        )
    mc, mb = float(c.mean()), float(b.mean())
    if method == "baseline":
        kappa, df = bartlett_bias_and_df(b.size, lag)
        v = newey_west_long_run_variance(b, lag) / kappa * (1.0 / c.size + 1.0 / b.size)
        if not v > 0.0:
            return ICDecline(INSUFFICIENT, "baseline IC values are constant", mc, mb, mc - mb, lag=lag, method=method)
    else:
        vc, vb = newey_west_long_run_variance(c, lag) / c.size, newey_west_long_run_variance(b, lag) / b.size
        if not vc + vb > 0.0:
            return ICDecline(INSUFFICIENT, "both IC windows are constant", mc, mb, mc - mb, lag=lag, method=method)
        v = vc + vb
        df = v**2 / (vc**2 / (c.size - 1) + vb**2 / (b.size - 1))
    se = float(np.sqrt(v))
    t = (mc - mb) / se
    p = student_t_pvalue(t, float(df), "less")
    return ICDecline(OK, "", mc, mb, mc - mb, se, t, float(df), p, lag, method)


def ic_sign_flip(
    current: ArrayLike,
    baseline: ArrayLike,
    *,
    horizon: int = 1,
    lag: int | None = None,
    alpha: float = 0.05,
    min_obs: int = 20,
    baseline_variance: bool = True,
) -> ICSignFlip:
    """Flag a sign flip: the current mean IC is significantly (one-sided, :func:`ic_test`) of the sign
    opposite to the baseline mean, the window's variance estimated on the baseline unless
    ``baseline_variance=False``. A baseline mean of exactly 0 has no sign and yields ``insufficient_data``.
    """
    b = _finite(baseline)
    need = max(int(min_obs), 3)
    if b.size < need:
        return ICSignFlip(INSUFFICIENT, f"{b.size} baseline IC values, need {need}")
    mb = float(b.mean())
    if mb == 0.0:
        return ICSignFlip(INSUFFICIENT, "baseline mean IC is exactly 0", mb)
    res = ic_test(
        current,
        horizon=horizon,
        lag=lag,
        floor=0.0,
        alternative="less" if mb > 0 else "greater",
        min_obs=min_obs,
        baseline=b if baseline_variance else None,
    )
    if res.status != OK:
        return ICSignFlip(INSUFFICIENT, res.reason, mb, res.mean)
    return ICSignFlip(OK, "", mb, res.mean, res.p_value, bool(res.p_value < alpha))
