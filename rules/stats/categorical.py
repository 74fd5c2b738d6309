"""Chi-square drift test for a categorical feature against reference category counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from . import _special as special
from .result import INSUFFICIENT, OK, Status

__all__ = ["ChiSquareResult", "chi_square_drift"]


@dataclass(frozen=True)
class ChiSquareResult:
    """Pearson chi-square goodness of fit of current counts to the reference shares."""

    status: Status
    reason: str
    statistic: float = float("nan")
    dof: int = 0
    p_value: float = float("nan")
    unseen: tuple[str, ...] = ()


def chi_square_drift(
    reference_counts: Mapping[Hashable, int],
    current: Iterable[Hashable] | Mapping[Hashable, int],
    *,
    unseen_count: float = 0.5,
    min_obs: int = 30,
) -> ChiSquareResult:
    """``X² = Σ (O_i − E_i)² / E_i`` with ``E_i = n_cur · share_ref(i)``, ``k − 1`` degrees of freedom,
    p-value ``chdtrc(k − 1, X²)``.

    Categories are the union of both sides. A category the reference never saw gets a pseudo-count of
    ``unseen_count`` (so it has an expected count instead of dividing by zero) and is listed in ``unseen``.
    Categories expected fewer than :data:`MIN_EXPECTED` times are pooled into one (Cochran's rule: below that the
    chi-square law does not hold, and one row of a new category alone gave p ≈ 1e-21), and a pool still under it
    joins the category expected least. When every category was seen and is expected often enough this is
    ``scipy.stats.chisquare(O, E)``.
    """
    cur = Counter(current) if not isinstance(current, Mapping) else Counter(dict(current))
    ref = {k: v for k, v in reference_counts.items() if v > 0}
    n_ref, n_cur = sum(ref.values()), sum(cur.values())
    if n_ref < min_obs or n_cur < min_obs:
        return ChiSquareResult(INSUFFICIENT, f"{n_ref} reference and {n_cur} current values, need {min_obs} each")
    cats = list(ref) + [k for k in cur if k not in ref]
    if len(cats) < 2:
        return ChiSquareResult(INSUFFICIENT, "only one category on both sides")
    unseen = tuple(str(k) for k in cats if k not in ref)
    ref_counts = np.array([ref.get(k, unseen_count) for k in cats], dtype=np.float64)
    observed = np.array([cur.get(k, 0) for k in cats], dtype=np.float64)
    expected = n_cur * ref_counts / ref_counts.sum()
    observed, expected = _pool_rare(observed, expected)
    if len(expected) < 2:
        return ChiSquareResult(INSUFFICIENT, f"fewer than two categories expected {MIN_EXPECTED} times", unseen=unseen)
    stat = float(np.sum((observed - expected) ** 2 / expected))
    dof = len(expected) - 1
    return ChiSquareResult(OK, "", stat, dof, float(special.chdtrc(dof, stat)), unseen)


MIN_EXPECTED = 5.0


def _pool_rare(observed: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rare = expected < MIN_EXPECTED
    if not rare.any():
        return observed, expected
    pooled_o, pooled_e = observed[rare].sum(), expected[rare].sum()
    observed, expected = observed[~rare], expected[~rare]
    if pooled_e < MIN_EXPECTED and len(expected):  # still too rare: with the category expected least
        least = int(np.argmin(expected))
        observed, expected = observed.copy(), expected.copy()
        observed[least] += pooled_o
        expected[least] += pooled_e
        return observed, expected
    return np.append(observed, pooled_o), np.append(expected, pooled_e)
