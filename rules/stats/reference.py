"""The reference a drift test compares against, kept as a summary rather than the raw rows.

Per numeric feature it holds the finite count, mean and std, the reference-quantile bin edges and the bin
counts (enough for PSI and Jensen–Shannon), and the sorted values needed by the KS statistic and the
Wasserstein distance. With ``max_sample`` the sorted values are thinned to that many evenly spaced order
statistics (a quantile sketch): KS and Wasserstein then become approximations with an error of the order of
``1/max_sample`` in the CDF; PSI and JS stay exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["ReferenceSummary", "sort_into"]

_BLOCK = 8  # features sorted at a time: bounds the temporaries to a small slice of the rows


def sort_into(block: NDArray[np.float64], out: NDArray[np.float64]) -> NDArray[np.int64]:
    """Copy a rows × k block into ``out`` (k × rows), each feature sorted with non-finite values moved to
    the end as NaN; return the finite count per feature."""
    out[...] = block.T
    counts = np.empty(out.shape[0], dtype=np.int64)
    for i, row in enumerate(out):  # a row at a time: the mask stays small
        finite = np.isfinite(row)
        counts[i] = np.count_nonzero(finite)
        if counts[i] < row.size:
            row[~finite] = np.nan  # ±inf would sort as values; treat as missing
    out.sort(axis=1)
    return counts


def _quantiles(sorted_cols: NDArray[np.float64], n: NDArray[np.int64], q: NDArray[np.float64]) -> NDArray[np.float64]:
    """Linear-interpolation quantiles (numpy's default) of each row's first ``n`` values."""
    pos = q[None, :] * np.maximum(n - 1, 0)[:, None]
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0)[:, None])
    frac = pos - lo
    rows = np.arange(sorted_cols.shape[0])[:, None]
    a, b = sorted_cols[rows, lo], sorted_cols[rows, hi]
    out: NDArray[np.float64] = a + (b - a) * frac
    out[n == 0] = np.nan
    return out


def bin_counts(sorted_cols: NDArray[np.float64], n: NDArray[np.int64], edges: NDArray[np.float64]) -> NDArray[np.int64]:
    """Counts per bin ``[e_{i−1}, e_i)`` (outer bins open-ended) of each feature's sorted finite values."""
    features, inner = edges.shape
    below = np.empty((features, inner), dtype=np.int64)
    for f in range(features):
        below[f] = np.searchsorted(sorted_cols[f, : n[f]], edges[f], side="left")
    full = np.concatenate((np.zeros((features, 1), np.int64), below, n[:, None]), axis=1)
    return np.diff(full, axis=1)


@dataclass(frozen=True, eq=False)
class ReferenceSummary:
    """Summary of reference rows for each numeric feature; build it with :meth:`from_rows`."""

    names: tuple[str, ...]
    n: NDArray[np.int64]
    mean: NDArray[np.float64]
    std: NDArray[np.float64]
    edges: NDArray[np.float64]
    counts: NDArray[np.int64]
    sample: NDArray[np.float64]
    sample_n: NDArray[np.int64]
    exact: bool

    @classmethod
    def from_rows(
        cls,
        rows: ArrayLike,
        names: Sequence[str] | None = None,
        *,
        bins: int = 10,
        max_sample: int | None = None,
    ) -> ReferenceSummary:
        """Summarise reference rows (rows × features; NaN = missing) into ``bins`` quantile bins per feature."""
        if bins < 2:
            raise ValueError("bins must be at least 2")
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2:
            raise ValueError(f"expected rows × features, got shape {x.shape}")
        length, features = x.shape
        labels = tuple(names) if names is not None else tuple(f"f{i}" for i in range(features))
        if len(labels) != features:
            raise ValueError(f"{len(labels)} names for {features} features")
        exact = max_sample is None or length <= max_sample
        k = length if exact else int(max_sample)  # type: ignore[arg-type]
        n = np.zeros(features, dtype=np.int64)
        mean = np.full(features, np.nan)
        std = np.full(features, np.nan)
        edges = np.full((features, bins - 1), np.nan)
        counts = np.zeros((features, bins), dtype=np.int64)
        # Exact: the sorted columns are the sample, sorted in place a block of features at a time, so the only
        # memory beyond the input is the summary itself. Sketch: one block-sized buffer, reused.
        sample = np.empty((features, k)) if exact else np.full((features, k), np.nan)
        buffer = None if exact else np.empty((min(_BLOCK, features), length))
        for f0 in range(0, features, _BLOCK):
            f1 = min(f0 + _BLOCK, features)
            cols = sample[f0:f1] if buffer is None else buffer[: f1 - f0]
            nb = sort_into(x[:, f0:f1], cols)
            n[f0:f1] = nb
            for i, f in enumerate(range(f0, f1)):
                if nb[i]:
                    v = cols[i, : nb[i]]
                    mean[f] = v.mean()
                    std[f] = v.std()
            edges[f0:f1] = _quantiles(cols, nb, np.arange(1, bins) / bins)
            counts[f0:f1] = bin_counts(cols, nb, edges[f0:f1])
            if buffer is not None:
                sample[f0:f1] = _quantiles(cols, nb, np.linspace(0.0, 1.0, k))
        if exact:
            width = int(n.max()) if features else 0
            sample = sample[:, :width]  # a view: no copy of the data
            sample_n = n.copy()
        else:
            sample_n = np.where(n > 0, np.minimum(n, k), 0).astype(np.int64)
            sample[n == 0] = np.nan
        return cls(labels, n, mean, std, edges, counts, sample, sample_n, exact)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN written as null)."""

        def clean(a: NDArray[Any]) -> Any:
            return np.where(np.isfinite(a), a, np.nan).astype(object).tolist() if a.dtype.kind == "f" else a.tolist()

        out = {
            "names": list(self.names),
            "n": self.n.tolist(),
            "mean": clean(self.mean),
            "std": clean(self.std),
            "edges": clean(self.edges),
            "counts": self.counts.tolist(),
            "sample": [row[:k].tolist() for row, k in zip(self.sample, self.sample_n, strict=True)],
            "exact": self.exact,
        }
        cleaned: dict[str, Any] = _nan_to_none(out)
        return cleaned

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceSummary:
        """Inverse of :meth:`to_dict`."""

        def arr(v: Any) -> NDArray[np.float64]:
            return np.array(
                [[np.nan if x is None else x for x in row] for row in v]
                if v and isinstance(v[0], list)
                else [np.nan if x is None else x for x in v],
                dtype=np.float64,
            )

        rows = data["sample"]
        sample_n = np.array([len(r) for r in rows], dtype=np.int64)
        width = int(sample_n.max()) if sample_n.size else 0
        sample = np.full((len(rows), width), np.nan)
        for i, r in enumerate(rows):
            sample[i, : len(r)] = r
        edges = arr(data["edges"]).reshape(len(rows), -1)
        return cls(
            tuple(data["names"]),
            np.array(data["n"], dtype=np.int64),
            arr(data["mean"]),
            arr(data["std"]),
            edges,
            np.array(data["counts"], dtype=np.int64).reshape(len(rows), -1),
            sample,
            sample_n,
            bool(data["exact"]),
        )


def _nan_to_none(v: Any) -> Any:
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, list):
        return [_nan_to_none(x) for x in v]
    if isinstance(v, dict):
        return {k: _nan_to_none(x) for k, x in v.items()}
    return v
