"""Typed access to the few ``scipy.special`` functions the kernels use (scipy ships no type stubs).

Keeping the untyped import in one place keeps every other module under ``mypy --strict``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.special as _sp  # type: ignore[import-untyped]
from numpy.typing import ArrayLike, NDArray

__all__ = ["chdtrc", "gamma", "gammaln", "ndtr", "rel_entr", "smirnov", "stdtr"]


def _f(v: Any) -> float:
    return float(v)


def stdtr(df: float, t: float) -> float:
    """Student t CDF with ``df`` degrees of freedom at ``t``."""
    return _f(_sp.stdtr(df, t))


def ndtr(x: float) -> float:
    """Standard normal CDF."""
    return _f(_sp.ndtr(x))


def chdtrc(dof: float, x: float) -> float:
    """Chi-square survival function."""
    return _f(_sp.chdtrc(dof, x))


def smirnov(n: int, d: float) -> float:
    """One-sided one-sample KS survival function ``P(D⁺_n ≥ d)``."""
    return _f(_sp.smirnov(n, d))


def gammaln(x: float) -> float:
    """``log |Γ(x)|``."""
    return _f(_sp.gammaln(x))


def gamma(x: ArrayLike) -> NDArray[np.float64]:
    """``Γ(x)`` elementwise."""
    return np.asarray(_sp.gamma(x), dtype=np.float64)


def rel_entr(p: ArrayLike, q: ArrayLike) -> NDArray[np.float64]:
    """``p·log(p/q)`` elementwise with the conventions ``0·log(0/q) = 0`` and ``p·log(p/0) = ∞``."""
    return np.asarray(_sp.rel_entr(p, q), dtype=np.float64)
