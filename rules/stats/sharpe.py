"""Annualised Sharpe ratio, its standard error under non-normal returns, PSR, degradation and drawdown.

Per-period Sharpe ``SR = mean / std`` (std with ddof 1), annualised by ``sqrt(periods_per_year)``.
Skewness ``γ3`` and kurtosis ``γ4`` (not excess) are the population moment estimators
(``scipy.stats.skew`` / ``kurtosis(fisher=False)`` with ``bias=True``).

- Lo (2002) / Mertens (2002): ``Var(SR) = (1 + SR²/2 − γ3·SR + (γ4 − 3)/4·SR²) / n`` (per period).
- Bailey & López de Prado (2012): ``PSR(SR*) = Φ((SR − SR*)·sqrt(n − 1) / sqrt(1 − γ3·SR + (γ4 − 1)/4·SR²))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray

from . import _special as special
from .result import INSUFFICIENT, OK, Status

__all__ = [
    "SharpeDegradation",
    "SharpeStats",
    "max_drawdown",
    "rolling_sharpe",
    "sharpe_degradation",
    "sharpe_stats",
]

_NAN = float("nan")


@dataclass(frozen=True)
class SharpeStats:
    """Sharpe summary of one window; ``sharpe``, ``se`` and ``benchmark`` are annualised."""

    status: Status
    reason: str
    n: int = 0
    sharpe: float = _NAN
    se: float = _NAN
    skew: float = _NAN
    kurtosis: float = _NAN
    benchmark: float = 0.0
    psr: float = _NAN
    max_drawdown: float = _NAN


@dataclass(frozen=True)
class SharpeDegradation:
    """One-sided z-test that the current Sharpe is below the baseline Sharpe (independent windows)."""

    status: Status
    reason: str
    current: float = _NAN
    baseline: float = _NAN
    difference: float = _NAN
    se: float = _NAN
    z: float = _NAN
    p_value: float = _NAN


def _finite(x: ArrayLike) -> NDArray[np.float64]:
    v = np.asarray(x, dtype=np.float64).ravel()
    return v[np.isfinite(v)]


def max_drawdown(returns: ArrayLike, *, compounded: bool = True) -> float:
    """Largest peak-to-trough loss of the equity curve, as a positive number (0 when it never falls).

    ``compounded=True`` builds equity as ``Π(1 + r)`` and returns the loss as a fraction of the peak;
    ``False`` treats returns as additive (log returns, P&L) and returns the fall of the cumulative sum.
    NaN returns are skipped.
    """
    r = _finite(returns)
    if r.size == 0:
        return _NAN
    if compounded:
        equity = np.concatenate(([1.0], np.cumprod(1.0 + r)))
        peak = np.maximum.accumulate(equity)
        with np.errstate(invalid="ignore", divide="ignore"):
            dd = np.where(peak > 0, 1.0 - equity / peak, 1.0)
        return float(dd.max())
    level = np.concatenate(([0.0], np.cumsum(r)))
    return float((np.maximum.accumulate(level) - level).max())


def _moments(r: NDArray[np.float64]) -> tuple[float, float, float, float, float]:
    mean = float(r.mean())
    d = r - mean
    m2 = float(d @ d) / r.size
    m3 = float((d**2) @ d) / r.size
    m4 = float((d**2) @ (d**2)) / r.size
    std = math.sqrt(m2 * r.size / (r.size - 1))
    if m2 <= (1e-12 * float(np.abs(r).max())) ** 2:
        return mean, std, _NAN, _NAN, 0.0  # constant up to rounding
    return mean, std, m3 / m2**1.5, m4 / m2**2, m2


def sharpe_stats(
    returns: ArrayLike,
    *,
    periods_per_year: float = 252.0,
    benchmark: float = 0.0,
    min_obs: int = 20,
    compounded: bool = True,
) -> SharpeStats:
    """Annualised Sharpe, its Mertens standard error, PSR against the annualised ``benchmark`` and max
    drawdown of one window of per-period returns. NaN periods are dropped.
    """
    r = _finite(returns)
    n = r.size
    need = max(int(min_obs), 4)
    if n < need:
        return SharpeStats(INSUFFICIENT, f"{n} finite returns, need {need}", n=n, benchmark=benchmark)
    mean, std, skew, kurt, m2 = _moments(r)
    if not m2 > 0.0:
        return SharpeStats(INSUFFICIENT, "returns are constant", n=n, benchmark=benchmark)
    sr = mean / std
    root = math.sqrt(periods_per_year)
    var = (1.0 + sr**2 / 2.0 - skew * sr + (kurt - 3.0) / 4.0 * sr**2) / n
    se = math.sqrt(max(var, 0.0)) * root
    sr_star = benchmark / root
    denom = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2
    psr = float(special.ndtr((sr - sr_star) * math.sqrt(n - 1) / math.sqrt(denom))) if denom > 0 else _NAN
    mdd = max_drawdown(r, compounded=compounded)
    return SharpeStats(OK, "", n, sr * root, se, skew, kurt, benchmark, psr, mdd)


def sharpe_degradation(
    current: ArrayLike,
    baseline: ArrayLike,
    *,
    periods_per_year: float = 252.0,
    min_obs: int = 20,
) -> SharpeDegradation:
    """``z = (SR_c − SR_b) / sqrt(se_c² + se_b²)`` with Mertens standard errors; p = Φ(z) (lower tail)."""
    c = sharpe_stats(current, periods_per_year=periods_per_year, min_obs=min_obs)
    b = sharpe_stats(baseline, periods_per_year=periods_per_year, min_obs=min_obs)
    if c.status != OK or b.status != OK:
        why = "; ".join(f"{side}: {s.reason}" for side, s in (("current", c), ("baseline", b)) if s.status != OK)
        return SharpeDegradation(INSUFFICIENT, why, c.sharpe, b.sharpe)
    se = math.sqrt(c.se**2 + b.se**2)
    diff = c.sharpe - b.sharpe
    if not se > 0.0:
        return SharpeDegradation(INSUFFICIENT, "zero standard error", c.sharpe, b.sharpe, diff)
    z = diff / se
    return SharpeDegradation(OK, "", c.sharpe, b.sharpe, diff, se, z, float(special.ndtr(z)))


def rolling_sharpe(
    returns: ArrayLike, window: int, *, periods_per_year: float = 252.0, min_periods: int | None = None
) -> NDArray[np.float64]:
    """Annualised Sharpe over each trailing ``window`` (NaN periods skipped; NaN until ``min_periods``)."""
    x = np.asarray(returns, dtype=np.float64)
    window = int(window)
    if x.ndim != 1 or window < 2:
        raise ValueError("returns must be 1-D and window at least 2")
    need = max(window if min_periods is None else int(min_periods), 2)
    out = np.full(x.size, np.nan)
    if x.size < window:
        return out
    w = sliding_window_view(x, window)
    fin = np.isfinite(w)
    c = fin.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(fin, w, 0.0).sum(axis=1) / c
        dev = np.where(fin, w - m[:, None], 0.0)
        sd = np.sqrt(np.einsum("ij,ij->i", dev, dev) / (c - 1))
        sr = np.where((c >= need) & (sd > 0), m / sd * math.sqrt(periods_per_year), np.nan)
    out[window - 1 :] = sr
    return out
