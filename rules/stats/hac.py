"""Newey–West (1987) heteroskedasticity- and autocorrelation-consistent variance of a sample mean."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from . import _special as special

__all__ = ["default_lag", "newey_west_long_run_variance", "student_t_pvalue"]


def default_lag(horizon: int) -> int:
    """The lag for an ``horizon``-day forward return: ``horizon - 1`` overlapping days, at least 0."""
    return max(int(horizon) - 1, 0)


def newey_west_long_run_variance(x: ArrayLike, lag: int) -> float:
    """Bartlett-kernel long-run variance ``S`` of a 1-D series; ``Var(mean) ≈ S / n``.

    ``S = γ0 + 2 Σ_{l=1..L} (1 − l/(L+1)) γl`` with ``γl = (1/n) Σ_{t>l} (x_t − x̄)(x_{t−l} − x̄)``.
    The lag is capped at ``n − 1``. NaN values must have been removed by the caller. ``S`` is clipped at 0
    (the Bartlett weights make it non-negative in exact arithmetic).
    """
    v = np.asarray(x, dtype=np.float64)
    n = v.size
    if n == 0:
        return float("nan")
    d = v - v.mean()
    lag = min(max(int(lag), 0), n - 1)
    s = float(d @ d) / n
    for ell in range(1, lag + 1):
        gamma = float(d[ell:] @ d[:-ell]) / n
        s += 2.0 * (1.0 - ell / (lag + 1.0)) * gamma
    return max(s, 0.0)


def student_t_pvalue(t: float, df: float, alternative: str) -> float:
    """p-value of a t statistic: ``"less"`` (lower tail), ``"greater"`` (upper) or ``"two-sided"``."""
    if alternative == "less":
        return special.stdtr(df, t)
    if alternative == "greater":
        return special.stdtr(df, -t)
    if alternative == "two-sided":
        return min(1.0, 2.0 * special.stdtr(df, -abs(t)))
    raise ValueError(f"alternative must be 'less', 'greater' or 'two-sided', not {alternative!r}")
