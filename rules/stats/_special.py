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
    """Student t CDF with ``df`` degrees of freedom at ``t``: ``1 − ½·I_{df/(df+t²)}(df/2, ½)`` for ``t > 0``.

    In plain Python (the regularized incomplete beta by its continued fraction), so the rules that need a
    p-value do not load ``scipy.special`` (≈ 20 MiB); tests hold it to ``scipy.special.stdtr`` within 1e-12.
    """
    if math.isnan(t) or math.isnan(df) or df <= 0:
        return math.nan
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    if math.isinf(df):
        return ndtr(t)
    # x and 1 − x both computed directly: near t = 0 with a large df, 1 − x would lose every digit
    tail = 0.5 * _betai(0.5 * df, 0.5, df / (df + t * t), t * t / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def ndtr(x: float) -> float:
    """Standard normal CDF, ``½·erfc(−x/√2)`` (accurate in both tails)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def chdtrc(dof: float, x: float) -> float:
    """Chi-square survival function, the regularized upper incomplete gamma ``Q(dof/2, x/2)``."""
    if math.isnan(x) or dof <= 0:
        return math.nan
    if x <= 0:
        return 1.0
    return _gammq(0.5 * dof, 0.5 * x)


_EPS = 1e-16
_TINY = 1e-300
_MAX_TERMS = 100_000


def _betai(a: float, b: float, x: float, y: float) -> float:
    """Regularized incomplete beta ``I_x(a, b)``, with ``y = 1 − x`` given exactly (Numerical Recipes §6.4: the
    continued fraction on the side where it converges fast, the symmetry relation on the other)."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    front = math.exp(_lbeta_inverse(a, b) + a * math.log(x) + b * math.log(y))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, y) / b


def _lbeta_inverse(a: float, b: float) -> float:
    """``log Γ(a+b) − log Γ(a) − log Γ(b)``, without the cancellation of two huge ``lgamma`` values."""
    big, small = (a, b) if a >= b else (b, a)
    if big < 100.0:
        return math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    # Stirling for the ratio Γ(big+small)/Γ(big): (z−½)·log z − z + Σ c_k/z^(2k−1), differenced term by term
    z1, z0 = big + small, big
    ratio = (z0 - 0.5) * math.log1p(small / z0) + small * math.log(z1) - small
    for k, coefficient in enumerate((1 / 12, -1 / 360, 1 / 1260, -1 / 1680), start=1):
        power = 2 * k - 1
        ratio += coefficient * (z1**-power - z0**-power)
    return ratio - math.lgamma(small)


def _betacf(a: float, b: float, x: float) -> float:
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_TERMS):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            step = d * c
            h *= step
        if abs(step - 1.0) < _EPS:
            break
    return h


def _gammq(a: float, x: float) -> float:
    """Regularized upper incomplete gamma ``Q(a, x)``: the series for ``x < a + 1``, else Lentz's fraction."""
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(_MAX_TERMS):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * _EPS:
                break
        return 1.0 - total * math.exp(log_front)
    b = x + 1.0 - a
    c, d = 1.0 / _TINY, 1.0 / b
    h = d
    for i in range(1, _MAX_TERMS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = b + an / c
        c = c if abs(c) > _TINY else _TINY
        step = d * c
        h *= step
        if abs(step - 1.0) < _EPS:
            break
    return math.exp(log_front) * h


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
