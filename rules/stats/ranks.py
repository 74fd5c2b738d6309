"""Average ranks along the last axis, vectorised over rows, with NaN for missing values."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["average_ranks"]


def average_ranks(x: ArrayLike) -> NDArray[np.float64]:
    """Rank each row of ``x`` (1-based), giving tied values the average of their ranks.

    Works on a 1-D vector or on a 2-D matrix (one ranking per row). NaN entries are not ranked: they keep
    NaN in the output and do not count towards the ranks of the other entries, so each row is ranked among
    its own finite values only. This is ``scipy.stats.rankdata(method="average")`` applied row by row.
    """
    a = np.asarray(x, dtype=np.float64)
    one_d = a.ndim == 1
    m = np.atleast_2d(a)
    if m.ndim != 2:
        raise ValueError(f"expected a 1-D or 2-D array, got shape {a.shape}")
    rows, cols = m.shape
    out = np.full(m.shape, np.nan)
    if m.size == 0:
        return out[0] if one_d else out
    # NaN sorts last, so the finite values of each row occupy its first positions after sorting.
    order = np.argsort(m, axis=1, kind="stable")
    s = np.take_along_axis(m, order, axis=1)
    new_group = np.ones(s.shape, dtype=bool)
    new_group[:, 1:] = s[:, 1:] != s[:, :-1]  # NaN != NaN: every NaN is its own group, discarded below
    flat = new_group.ravel()
    starts = np.flatnonzero(flat)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:] - 1
    ends[-1] = flat.size - 1
    # A group never crosses a row boundary (each row starts a group), so positions modulo cols are in-row.
    mean_rank = ((starts % cols) + (ends % cols)) / 2.0 + 1.0
    group_of = np.cumsum(flat) - 1
    np.put_along_axis(out, order, mean_rank[group_of].reshape(rows, cols), axis=1)
    out[np.isnan(m)] = np.nan
    return out[0] if one_d else out
