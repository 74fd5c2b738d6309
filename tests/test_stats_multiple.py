from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from alphawatch.rules.stats import adjust_pvalues, benjamini_hochberg, bonferroni


def test_bh_matches_scipy_false_discovery_control() -> None:
    p = np.random.default_rng(0).random(50) ** 3
    np.testing.assert_allclose(benjamini_hochberg(p), stats.false_discovery_control(p), rtol=0, atol=1e-12)


def test_nan_pvalues_are_not_counted() -> None:
    p = np.array([0.01, np.nan, 0.04, 0.03])
    np.testing.assert_allclose(bonferroni(p), [0.03, np.nan, 0.12, 0.09])
    bh = benjamini_hochberg(p)
    np.testing.assert_allclose(bh[[0, 2, 3]], stats.false_discovery_control([0.01, 0.04, 0.03]))
    assert np.isnan(bh[1])
    assert np.isnan(benjamini_hochberg([np.nan])).all()
    with pytest.raises(ValueError, match="correction"):
        adjust_pvalues(p, "holm")  # type: ignore[arg-type]
