"""Multiple-testing corrections across features: Bonferroni and Benjamini–Hochberg adjusted p-values.

NaN p-values (features without enough data) are left NaN and do not count towards the number of tests.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["Correction", "adjust_pvalues", "benjamini_hochberg", "bonferroni"]

Correction = Literal["none", "bonferroni", "bh"]


def bonferroni(pvalues: ArrayLike) -> NDArray[np.float64]:
    """``min(1, m·p)`` with ``m`` the number of finite p-values."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = int(np.isfinite(p).sum())
    return np.minimum(p * m, 1.0)


def benjamini_hochberg(pvalues: ArrayLike) -> NDArray[np.float64]:
    """Benjamini & Hochberg (1995) step-up adjusted p-values (``scipy.stats.false_discovery_control``).

    ``p_(i)·m/i`` made monotone from the largest p-value down, capped at 1; rejecting where the adjusted
    value is below ``q`` controls the false discovery rate at ``q`` for independent or positively dependent
    tests.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    fin = np.isfinite(p)
    vals = p[fin]
    m = vals.size
    if m == 0:
        return out
    order = np.argsort(vals)
    scaled = vals[order] * m / np.arange(1, m + 1)
    adj = np.minimum.accumulate(scaled[::-1])[::-1]
    res = np.empty(m)
    res[order] = np.minimum(adj, 1.0)
    out[fin] = res
    return out


def adjust_pvalues(pvalues: ArrayLike, method: Correction) -> NDArray[np.float64]:
    """Dispatch on ``method``: ``"none"``, ``"bonferroni"`` or ``"bh"``."""
    if method == "none":
        return np.asarray(pvalues, dtype=np.float64).copy()
    if method == "bonferroni":
        return bonferroni(pvalues)
    if method == "bh":
        return benjamini_hochberg(pvalues)
    raise ValueError(f"correction must be 'none', 'bonferroni' or 'bh', not {method!r}")
