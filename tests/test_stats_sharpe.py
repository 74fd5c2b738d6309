from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from alphawatch.rules.stats import max_drawdown, rolling_sharpe, sharpe_degradation, sharpe_stats


def test_sharpe_moments_se_and_psr_match_published_formulas() -> None:
    r = np.random.default_rng(0).standard_t(4, 500) * 0.01 + 0.0008
    res = sharpe_stats(r, periods_per_year=252, benchmark=0.5)
    sr = r.mean() / r.std(ddof=1)
    g3 = stats.skew(r)
    g4 = stats.kurtosis(r, fisher=False)
    assert res.status == "ok"
    assert res.sharpe == pytest.approx(sr * math.sqrt(252), rel=1e-12)
    assert res.skew == pytest.approx(g3, rel=1e-9)
    assert res.kurtosis == pytest.approx(g4, rel=1e-9)
    se = math.sqrt((1 + sr**2 / 2 - g3 * sr + (g4 - 3) / 4 * sr**2) / r.size) * math.sqrt(252)
    assert res.se == pytest.approx(se, rel=1e-9)
    z = (sr - 0.5 / math.sqrt(252)) * math.sqrt(r.size - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
    assert res.psr == pytest.approx(stats.norm.cdf(z), abs=1e-12)


def test_normal_returns_reduce_to_lo_iid_standard_error() -> None:
    # With skew 0 and kurtosis 3 the Mertens formula is Lo's (1 + SR²/2)/n.
    r = np.random.default_rng(1).standard_normal(100_000) * 0.01 + 0.001
    res = sharpe_stats(r, periods_per_year=1)
    assert res.se == pytest.approx(math.sqrt((1 + res.sharpe**2 / 2) / r.size), rel=2e-2)


def test_max_drawdown() -> None:
    assert max_drawdown([0.1, -0.5, 0.2, -0.5]) == pytest.approx(1 - 1.1 * 0.5 * 1.2 * 0.5 / 1.1)
    assert max_drawdown([0.01, 0.02]) == 0.0
    assert max_drawdown([1.0, -2.0, 0.5], compounded=False) == pytest.approx(2.0)
    assert math.isnan(max_drawdown([np.nan]))


def test_rolling_sharpe_and_degradation() -> None:
    rng = np.random.default_rng(2)
    r = rng.normal(0.001, 0.01, 300)
    roll = rolling_sharpe(r, 60, periods_per_year=252)
    w = r[100:160]
    assert roll[159] == pytest.approx(w.mean() / w.std(ddof=1) * math.sqrt(252), rel=1e-12)
    base, cur = rng.normal(0.002, 0.01, 500), rng.normal(-0.002, 0.01, 120)
    deg = sharpe_degradation(cur, base)
    b, c = sharpe_stats(base), sharpe_stats(cur)
    z = (c.sharpe - b.sharpe) / math.sqrt(c.se**2 + b.se**2)
    assert deg.z == pytest.approx(z)
    assert deg.p_value == pytest.approx(stats.norm.cdf(z), abs=1e-12)
    assert deg.p_value < 0.01


def test_degenerate_returns() -> None:
    assert sharpe_stats([0.01] * 3).status == "insufficient_data"
    res = sharpe_stats([0.01] * 50)
    assert res.status == "insufficient_data"
    assert "constant" in res.reason
    assert sharpe_stats([np.nan] * 50).status == "insufficient_data"
    assert sharpe_degradation([0.01] * 50, np.random.default_rng(0).normal(0, 0.01, 50)).status == "insufficient_data"
