"""Per-feature distribution drift of current rows against a :class:`ReferenceSummary`.

For every numeric feature, in one pass over the sorted current values:

- PSI over the reference-quantile bins, empty-bin shares replaced by ``eps``:
  ``Σ (c_i − r_i)·ln(c_i / r_i)``;
- two-sample KS statistic ``sup |F_ref − F_cur|`` and its p-value (``ks.ks_2samp_pvalue``), adjusted across
  features by Bonferroni or Benjamini–Hochberg;
- Jensen–Shannon distance (base 2, in [0, 1]) between the binned shares;
- Wasserstein-1 distance ``∫ |F_ref − F_cur| dx`` divided by the reference std (ddof 0).

The same functions serve ``prediction_drift`` (one column: the model scores).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _special as special
from .ks import KSMethod, ks_2samp_pvalue
from .multiple import Correction, adjust_pvalues
from .reference import ReferenceSummary, bin_counts, sorted_columns
from .result import INSUFFICIENT, OK, Status

__all__ = ["DriftDecision", "DriftMethod", "DriftReport", "DriftThresholds", "decide_drift", "feature_drift"]

DriftMethod = Literal["psi", "ks", "js", "wasserstein"]
_BLOCK = 8


@dataclass(frozen=True)
class DriftThresholds:
    """A feature drifts by a method when its score reaches the threshold (KS: adjusted p-value below)."""

    psi: float = 0.2
    ks_alpha: float = 0.05
    js: float = 0.1
    wasserstein: float = 0.1


@dataclass(frozen=True, eq=False)
class DriftReport:
    """Per-feature drift scores (arrays aligned with ``names``; NaN where the status is insufficient)."""

    names: tuple[str, ...]
    status: tuple[Status, ...]
    reasons: tuple[str, ...]
    n_reference: NDArray[np.int64]
    n_current: NDArray[np.int64]
    psi: NDArray[np.float64]
    ks_statistic: NDArray[np.float64]
    ks_pvalue: NDArray[np.float64]
    ks_pvalue_adjusted: NDArray[np.float64]
    ks_method: tuple[str, ...]
    js: NDArray[np.float64]
    wasserstein: NDArray[np.float64]
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)

    def drifted(self, method: DriftMethod) -> NDArray[np.bool_]:
        """Which features drift by ``method`` (never those without enough data)."""
        t = self.thresholds
        with np.errstate(invalid="ignore"):
            if method == "psi":
                flag = self.psi >= t.psi
            elif method == "ks":
                flag = self.ks_pvalue_adjusted < t.ks_alpha
            elif method == "js":
                flag = self.js >= t.js
            elif method == "wasserstein":
                flag = self.wasserstein >= t.wasserstein
            else:
                raise ValueError(f"unknown drift method {method!r}")
        return np.asarray(flag, dtype=bool)


@dataclass(frozen=True)
class DriftDecision:
    """Outcome of the drift conditions: a key feature drifted, or the share of drifted features is too high."""

    status: Status
    reason: str
    drifted: bool = False
    features: tuple[str, ...] = ()
    share: float = float("nan")


def _merge_stats(r: NDArray[np.float64], c: NDArray[np.float64]) -> tuple[float, float]:
    """KS statistic and Wasserstein-1 distance of two sorted finite samples, from their merged order."""
    nr, nc = r.size, c.size
    total = nr + nc
    pos_c = np.arange(nc) + np.searchsorted(r, c, side="right")
    is_c = np.zeros(total, dtype=bool)
    is_c[pos_c] = True
    merged = np.empty(total)
    merged[is_c] = c
    merged[~is_c] = r
    cc = np.cumsum(is_c)
    diff = (np.arange(1, total + 1) - cc) / nr - cc / nc
    gaps = np.diff(merged)
    last_of_tie = np.ones(total, dtype=bool)
    last_of_tie[:-1] = gaps != 0
    d = float(np.abs(diff[last_of_tie]).max())
    w = float(np.sum(np.abs(diff[:-1]) * gaps))
    return d, w


def _shares(counts: NDArray[np.int64], n: NDArray[np.int64]) -> NDArray[np.float64]:
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts / n[:, None]


def feature_drift(
    reference: ReferenceSummary,
    current: ArrayLike,
    *,
    thresholds: DriftThresholds | None = None,
    correction: Correction = "bh",
    ks_method: KSMethod = "auto",
    min_obs: int = 30,
    eps: float = 1e-4,
    workers: int = 1,
) -> DriftReport:
    """Compare current rows (rows × features, same column order as the reference) with the reference.

    A feature gets ``insufficient_data`` when either side has fewer than ``min_obs`` finite values or the
    reference is constant. ``workers > 1`` spreads the per-feature KS/Wasserstein pass over threads
    (numpy releases the GIL in sort and search).
    """
    thresholds = thresholds or DriftThresholds()
    rows = np.asarray(current, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows[:, None]
    features = len(reference.names)
    if rows.ndim != 2 or rows.shape[1] != features:
        raise ValueError(f"current has shape {rows.shape}, reference has {features} features")
    n_ref = reference.n
    n_cur = np.zeros(features, dtype=np.int64)
    cur_counts = np.zeros_like(reference.counts)
    ks_d = np.full(features, np.nan)
    ks_p = np.full(features, np.nan)
    wass = np.full(features, np.nan)
    methods = ["" for _ in range(features)]
    usable = (n_ref >= min_obs) & (reference.std > 0)

    def block(f0: int) -> None:
        # Sorting a few features at a time bounds the extra memory to a small slice of the current rows.
        f1 = min(f0 + _BLOCK, features)
        cols, n = sorted_columns(rows[:, f0:f1])
        n_cur[f0:f1] = n
        cur_counts[f0:f1] = bin_counts(cols, n, reference.edges[f0:f1])
        for i, f in enumerate(range(f0, f1)):
            if not (usable[f] and n[i] >= min_obs):
                continue
            d, w = _merge_stats(reference.sample[f, : reference.sample_n[f]], cols[i, : n[i]])
            d, p, used = ks_2samp_pvalue(d, int(n_ref[f]), int(n[i]), ks_method)
            ks_d[f], ks_p[f], methods[f] = d, p, used if reference.exact else f"{used} (sketch)"
            wass[f] = w / reference.std[f]

    starts = range(0, features, _BLOCK)
    if workers > 1 and features > _BLOCK:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(block, starts))
    else:
        for f0 in starts:
            block(f0)

    ok = usable & (n_cur >= min_obs)
    reasons = []
    for f in range(features):
        if n_ref[f] < min_obs or n_cur[f] < min_obs:
            reasons.append(f"{n_ref[f]} reference and {n_cur[f]} current values, need {min_obs} each")
        elif not reference.std[f] > 0:
            reasons.append("reference is constant")
        else:
            reasons.append("")
    ref_share = _shares(reference.counts, n_ref)
    cur_share = _shares(cur_counts, n_cur)
    pr, pc = np.where(ref_share > 0, ref_share, eps), np.where(cur_share > 0, cur_share, eps)
    with np.errstate(invalid="ignore", divide="ignore"):
        psi = np.where(ok, np.sum((pc - pr) * np.log(pc / pr), axis=1), np.nan)
        mid = (ref_share + cur_share) / 2.0
        jsd = (special.rel_entr(ref_share, mid).sum(axis=1) + special.rel_entr(cur_share, mid).sum(axis=1)) / 2.0
    js = np.where(ok, np.sqrt(np.maximum(jsd, 0.0) / np.log(2.0)), np.nan)
    status: tuple[Status, ...] = tuple(OK if o else INSUFFICIENT for o in ok)
    return DriftReport(
        names=reference.names,
        status=status,
        reasons=tuple(reasons),
        n_reference=n_ref.copy(),
        n_current=n_cur,
        psi=psi,
        ks_statistic=ks_d,
        ks_pvalue=ks_p,
        ks_pvalue_adjusted=adjust_pvalues(ks_p, correction),
        ks_method=tuple(methods),
        js=js,
        wasserstein=wass,
        thresholds=thresholds,
    )


def decide_drift(
    report: DriftReport,
    *,
    method: DriftMethod = "ks",
    key_features: Sequence[str] = (),
    max_share: float | None = 0.5,
) -> DriftDecision:
    """Drift when any of ``key_features`` drifts by ``method``, or when the share of drifted features among
    those with enough data reaches ``max_share`` (``None`` disables the share condition).
    """
    unknown = [k for k in key_features if k not in report.names]
    if unknown:
        raise ValueError(f"unknown key features: {', '.join(unknown)}")
    usable = np.array([s == OK for s in report.status], dtype=bool)
    if not usable.any():
        return DriftDecision(INSUFFICIENT, "no feature has enough data")
    flags = report.drifted(method) & usable
    names = tuple(n for n, f in zip(report.names, flags, strict=True) if f)
    share = float(flags.sum() / usable.sum())
    keys_hit = [k for k in key_features if k in names]
    missing_keys = [k for k in key_features if not usable[report.names.index(k)]]
    if keys_hit:
        return DriftDecision(OK, f"key feature drifted: {', '.join(keys_hit)}", True, names, share)
    if max_share is not None and share >= max_share and names:
        return DriftDecision(OK, f"{share:.0%} of features drifted", True, names, share)
    if missing_keys and (max_share is None or not names):
        return DriftDecision(INSUFFICIENT, f"not enough data for {', '.join(missing_keys)}", False, names, share)
    return DriftDecision(OK, "", False, names, share)
