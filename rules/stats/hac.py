"""Newey–West (1987) heteroskedasticity- and autocorrelation-consistent variance of a sample mean."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from . import _special as special

__all__ = ["bartlett_bias_and_df", "default_lag", "newey_west_long_run_variance", "student_t_pvalue", "window_lag"]


def default_lag(horizon: int) -> int:
    """The lag for an ``horizon``-day forward return: ``horizon - 1`` overlapping days, at least 0."""
    return max(int(horizon) - 1, 0)


def window_lag(horizon: int) -> int:
    """The lag for a test on a short window alone: twice the overlap, ``2·(horizon − 1)``.

    A bandwidth that is a sizeable share of the window, priced by :func:`bartlett_bias_and_df`, is what
    keeps the size (Kiefer & Vogelsang 2005): at lag ``horizon − 1`` the Bartlett weights discount the
    overlap's own autocorrelation, which persistent scores make large (docs/statistics.md).
    """
    return 2 * default_lag(horizon)


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


def bartlett_bias_and_df(n: int, lag: int) -> tuple[float, float]:
    """Bias factor ``κ`` and Satterthwaite degrees of freedom ``ν`` of the Bartlett estimator ``S`` on ``n``
    values with lag ``L``, under a white-noise working model: ``E[S] = κ·σ²`` and ``S/(κσ²) ≈ χ²_ν/ν``.

    ``S = x'MKMx/n`` (``M`` centres, ``K_st = (1 − |s−t|/(L+1))₊``), so for i.i.d. Gaussian values
    ``κ = tr(MKM)/n = 1 − 1'K1/n²`` and ``ν = tr(MKM)²/tr((MKM)²)`` with
    ``tr((MKM)²) = tr(K²) − 2·|K1|²/n + (1'K1)²/n²`` (Satterthwaite 1946). With ``L`` a fixed share of ``n``
    this is the two-moment approximation of the fixed-b limit of Kiefer & Vogelsang (2005): it prices both
    the downward bias of ``S`` (the mean is estimated) and its sampling noise, which the normal or
    ``t(n − 1)`` reference ignores.
    """
    n = int(n)
    lag = min(max(int(lag), 0), n - 1)
    k = 1.0 - np.arange(lag + 1) / (lag + 1.0)  # k[0] = 1
    j = np.arange(lag + 1)
    ones_k_ones = n + 2.0 * float(np.sum((n - j[1:]) * k[1:]))
    tr_k2 = n + 2.0 * float(np.sum((n - j[1:]) * k[1:] ** 2))
    row_sums = np.convolve(np.ones(n), np.concatenate((k[:0:-1], k)))[lag : lag + n]
    tr_mkm = n - ones_k_ones / n
    tr_mkm2 = tr_k2 - 2.0 * float(row_sums @ row_sums) / n + (ones_k_ones / n) ** 2
    return tr_mkm / n, tr_mkm**2 / tr_mkm2 if tr_mkm2 > 0 else float("inf")


def student_t_pvalue(t: float, df: float, alternative: str) -> float:
    """p-value of a t statistic: ``"less"`` (lower tail), ``"greater"`` (upper) or ``"two-sided"``."""
    if alternative == "less":
        return special.stdtr(df, t)
    if alternative == "greater":
        return special.stdtr(df, -t)
    if alternative == "two-sided":
        return min(1.0, 2.0 * special.stdtr(df, -abs(t)))
    raise ValueError(f"alternative must be 'less', 'greater' or 'two-sided', not {alternative!r}")
