"""Per-feature distribution drift of current rows against a :class:`ReferenceSummary`.

For every numeric feature, in one pass over the sorted current values:

- PSI over the reference-quantile bins, empty-bin shares replaced by ``eps``:
  ``Σ (c_i − r_i)·ln(c_i / r_i)``;
- two-sample KS statistic ``sup |F_ref − F_cur|`` and its p-value (``ks.ks_2samp_pvalue``), adjusted across
  features by Bonferroni or Benjamini–Hochberg; with ``ks_fractions`` each side counts only that share of its
  values (rows that repeat an asset's value of the date before: ``persistence.effective_fraction``);
- Jensen–Shannon distance (base 2, in [0, 1]) between the binned shares;
- Wasserstein-1 distance ``∫ |F_ref − F_cur| dx`` divided by the reference std (ddof 0).

The same functions serve ``prediction_drift`` (one column: the model scores).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _special as special
from .ks import KSMethod, ks_2samp_pvalue
from .multiple import Correction, adjust_pvalues
from .reference import ReferenceSummary, bin_counts, sort_into
from .result import INSUFFICIENT, OK, Status

__all__ = ["DriftDecision", "DriftMethod", "DriftReport", "DriftThresholds", "decide_drift", "feature_drift"]

DriftMethod = Literal["psi", "ks", "js", "wasserstein"]
_BLOCK = 4  # features sorted at a time: bounds the temporaries to a small slice of the current rows


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


class _Workspace:
    """Buffers and index grids reused across features. Fresh arrays of this size come from ``mmap`` and
    page-fault on first touch, which costs as much as the arithmetic itself; the quantile grid of the
    Wasserstein distance depends only on the two sample sizes."""

    def __init__(self) -> None:
        self.size = 0
        self.floats = np.empty((2, 0))
        self.sorted = np.empty((0, 0))
        self.grids: dict[tuple[int, int], tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]] = {}

    def block(self, features: int, length: int) -> NDArray[np.float64]:
        """A features × length buffer for one block of sorted current columns, kept across blocks."""
        if self.sorted.shape[0] < features or self.sorted.shape[1] != length:
            self.sorted = np.empty((features, length))
        return self.sorted[:features]

    def buffers(self, size: int) -> NDArray[np.float64]:
        if size > self.size:
            self.size, self.floats = size, np.empty((2, size))
        return self.floats

    def grid(self, nr: int, nc: int) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
        """The union of the quantile breakpoints ``i/nr`` and ``j/nc`` as exact integers over ``nr·nc``: per
        interval, the order statistic of each sample and the interval's width."""
        if (nr, nc) not in self.grids:
            u = np.union1d(np.arange(1, nr + 1, dtype=np.int64) * nc, np.arange(1, nc + 1, dtype=np.int64) * nr)
            ir = (u + nc - 1) // nc - 1
            ic = (u + nr - 1) // nr - 1
            width = np.diff(u, prepend=0) / (nr * nc)
            self.grids[(nr, nc)] = (ir.astype(np.intp), ic.astype(np.intp), width)
        return self.grids[(nr, nc)]


_SEGMENT = 32  # current values per segment of the bounded KS search


def _ks_statistic(r: NDArray[np.float64], c: NDArray[np.float64]) -> float:
    """Two-sample KS statistic of two sorted finite samples, exact, searching only where the maximum can be.

    At any x, ``nr·nc·|F_ref(x) − F_cur(x)| = |R(x)·nc − C(x)·nr|`` with ``R``, ``C`` the counts ``≤ x`` (two
    right-side binary searches: exact with ties anywhere). Every ``_SEGMENT``-th current value ``p_m`` is
    evaluated; on ``[p_m, p_{m+1})`` both counts lie between their values at ``p_m`` and the counts below
    ``p_{m+1}``, which bounds the difference there. Only segments whose bound beats the best value found are
    searched value by value (their current and reference values), so the result is the exact supremum for a
    fraction of the searches.
    """
    nr, nc = r.size, c.size

    def at(x: NDArray[np.float64]) -> int:
        return int(np.abs(np.searchsorted(r, x, "right") * nc - np.searchsorted(c, x, "right") * nr).max(initial=0))

    if nc < 8 * _SEGMENT:
        return max(at(r), at(c)) / (nr * nc)
    p = c[::_SEGMENT]
    rr, rl = np.searchsorted(r, p, "right"), np.searchsorted(r, p, "left")
    cr, cl = np.searchsorted(c, p, "right"), np.searchsorted(c, p, "left")
    best = max(int(np.abs(rr * nc - cr * nr).max()), int(rl[0]) * nc)  # below c_0: F_cur = 0
    rl_next, cl_next = np.append(rl[1:], nr), np.append(cl[1:], nc)
    bound = np.maximum(rl_next * nc - cr * nr, cl_next * nr - rr * nc)
    (seg,) = np.nonzero(bound > best)
    if seg.size:
        ci = (seg * _SEGMENT)[:, None] + np.arange(_SEGMENT)
        ci = ci[ci < nc]
        lengths = rl_next[seg] - rl[seg]
        ri = np.repeat(rl[seg] - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
        best = max(best, at(np.concatenate((c[ci], r[ri]))))
    return best / (nr * nc)


def _merge_stats(r: NDArray[np.float64], c: NDArray[np.float64], ws: _Workspace | None = None) -> tuple[float, float]:
    """KS statistic and Wasserstein-1 distance of two sorted finite samples.

    KS: :func:`_ks_statistic`. Wasserstein-1 from the quantile functions, ``∫₀¹ |Q_ref(u) − Q_cur(u)| du``,
    summed exactly over the union of the two step grids.
    """
    ws = ws or _Workspace()
    nr, nc = r.size, c.size
    d = _ks_statistic(r, c)
    if nr == nc:  # the two step grids coincide: W1 = mean |r_i − c_i|
        q = np.subtract(r, c, out=ws.buffers(nr)[0, :nr])
        np.abs(q, out=q)
        return d, float(q.sum()) / nr
    buf = ws.buffers(max(nr + nc, 1))
    ir, ic, width = ws.grid(nr, nc)
    q = np.take(r, ir, out=buf[0, : ir.size])
    q -= np.take(c, ic, out=buf[1, : ic.size])
    np.abs(q, out=q)
    return d, float(q @ width)


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
    ks_fractions: tuple[ArrayLike, ArrayLike] | None = None,
) -> DriftReport:
    """Compare current rows (rows × features, same column order as the reference) with the reference.

    A feature gets ``insufficient_data`` when either side has fewer than ``min_obs`` finite values or the
    reference is constant. ``workers > 1`` spreads the per-feature KS/Wasserstein pass over threads
    (numpy releases the GIL in sort and search). ``ks_fractions``: per feature, the share of the reference's and of
    the current values that counts as independent, for the KS p-value (asymptotic, on those effective sizes).
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
    ref_counted, cur_counted = (
        (np.ones(features), np.ones(features))
        if ks_fractions is None
        else (np.asarray(ks_fractions[0], dtype=np.float64), np.asarray(ks_fractions[1], dtype=np.float64))
    )

    spaces: dict[int, _Workspace] = {}  # one per thread

    def block(f0: int) -> None:
        # Sorting a few features at a time bounds the extra memory to a small slice of the current rows.
        f1 = min(f0 + _BLOCK, features)
        ws = spaces.setdefault(threading.get_ident(), _Workspace())
        cols = ws.block(f1 - f0, rows.shape[0])
        n = sort_into(rows[:, f0:f1], cols)
        n_cur[f0:f1] = n
        cur_counts[f0:f1] = bin_counts(cols, n, reference.edges[f0:f1])
        for i, f in enumerate(range(f0, f1)):
            if not (usable[f] and n[i] >= min_obs):
                continue
            d, w = _merge_stats(reference.sample[f, : reference.sample_n[f]], cols[i, : n[i]], ws)
            statistic, p, used = ks_2samp_pvalue(d, int(n_ref[f]), int(n[i]), ks_method)
            if ref_counted[f] < 1.0 or cur_counted[f] < 1.0:  # persistent rows: fewer independent values
                n1 = max(1, round(int(n_ref[f]) * ref_counted[f]))
                n2 = max(1, round(int(n[i]) * cur_counted[f]))
                _, p_counted, way = ks_2samp_pvalue(d, n1, n2, ks_method)
                if p_counted > p:  # (counting fewer values never makes a difference more significant)
                    p, used = p_counted, f"{way}, effective n {n1}/{n2}"
            ks_d[f], ks_p[f], methods[f] = statistic, p, used if reference.exact else f"{used} (sketch)"
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
