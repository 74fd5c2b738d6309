"""Typed access to the few ``scipy.special`` functions the kernels use (scipy ships no type stubs).

Keeping the untyped import in one place keeps every other module under ``mypy --strict``. ``scipy.special``
(≈ 20 MiB of RSS) is imported on the first call that needs it: the numeric drift path (``gammaln``,
``factorial``, ``rel_entr`` here in numpy or ``math``) never does.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["chdtrc", "factorial", "gammaln", "gammaln_array", "ndtr", "rel_entr", "smirnov", "stdtr"]


def _sp() -> Any:
    import scipy.special  # type: ignore[import-untyped]

    return scipy.special


def _f(v: Any) -> float:
    return float(v)


def stdtr(df: float, t: float) -> float:
    """Student t CDF with ``df`` degrees of freedom at ``t``."""
    return _f(_sp().stdtr(df, t))


def ndtr(x: float) -> float:
    """Standard normal CDF."""
    return _f(_sp().ndtr(x))


def chdtrc(dof: float, x: float) -> float:
    """Chi-square survival function."""
    return _f(_sp().chdtrc(dof, x))


def smirnov(n: int, d: float) -> float:
    """One-sided one-sample KS survival function ``P(D⁺_n ≥ d)``."""
    return _f(_sp().smirnov(n, d))


def gammaln(x: float) -> float:
    """``log |Γ(x)|``."""
    return math.lgamma(x)


# Stirling's series for log Γ(x), x ≥ 10: (x − ½)·log x − x + ½·log 2π + Σ B_2k / (2k(2k − 1)·x^(2k − 1)).
_STIRLING = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360)


def gammaln_array(x: ArrayLike) -> NDArray[np.float64]:
    """``log Γ(x)`` elementwise for ``x > 0``: Stirling's series from 10 up (error below 1e-16 relative),
    ``math.lgamma`` below."""
    v = np.asarray(x, dtype=np.float64)
    out = np.empty_like(v)
    big = v >= 10.0
    xb = v[big]
    inv2 = 1.0 / (xb * xb)
    series = np.zeros_like(xb)
    for c in reversed(_STIRLING):
        series = series * inv2 + c
    out[big] = (xb - 0.5) * np.log(xb) - xb + 0.5 * math.log(2.0 * math.pi) + series / xb
    out[~big] = [math.lgamma(float(t)) for t in v[~big]]
    return out


def factorial(k: ArrayLike) -> NDArray[np.float64]:
    """``k!`` elementwise for integers ``k ≥ 0`` as floats (``inf`` from 171 on, as ``Γ(k + 1)``)."""
    ks = np.asarray(k, dtype=np.int64)
    top = int(ks.max(initial=0))
    with np.errstate(over="ignore"):
        table = np.concatenate(([1.0], np.cumprod(np.arange(1, top + 1, dtype=np.float64))))
    out: NDArray[np.float64] = table[ks]
    return out


def rel_entr(p: ArrayLike, q: ArrayLike) -> NDArray[np.float64]:
    """``p·log(p/q)`` elementwise with the conventions ``0·log(0/q) = 0`` and ``p·log(p/0) = ∞``."""
    pa, qa = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(pa > 0, pa * np.log(pa / qa), np.where(pa == 0, 0.0, np.inf))
    return np.where(np.isnan(pa) | np.isnan(qa), np.nan, out)
