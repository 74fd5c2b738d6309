from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from alphawatch.rules.stats import (
    average_ranks,
    bartlett_bias_and_df,
    ic_decline,
    ic_sign_flip,
    ic_test,
    newey_west_long_run_variance,
    rank_ic,
    rolling_ic,
)


def _reference_newey_west(x: np.ndarray, lag: int) -> float:
    """Textbook Bartlett long-run variance, written as a double loop."""
    n = len(x)
    m = sum(x) / n
    total = 0.0
    for j in range(-lag, lag + 1):
        weight = 1 - abs(j) / (lag + 1)
        acc = 0.0
        for t in range(abs(j), n):
            acc += (x[t] - m) * (x[t - abs(j)] - m)
        total += weight * acc / n
    return total


def test_average_ranks_match_scipy_with_ties_and_nan() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=(40, 23)).astype(float)
    x[rng.random(x.shape) < 0.2] = np.nan
    got = average_ranks(x)
    for row, out in zip(x, got, strict=True):
        fin = np.isfinite(row)
        np.testing.assert_allclose(out[fin], stats.rankdata(row[fin]), rtol=0, atol=1e-12)
        assert np.isnan(out[~fin]).all()


def test_rank_ic_matches_spearmanr_with_ties_missing_and_tiny_rows() -> None:
    rng = np.random.default_rng(1)
    s = np.round(rng.standard_normal((60, 50)), 1)
    r = np.round(0.3 * s + rng.standard_normal((60, 50)), 1)
    s[rng.random(s.shape) < 0.1] = np.nan
    r[rng.random(r.shape) < 0.1] = np.nan
    s[5, 3:] = np.nan  # three assets left
    daily = rank_ic(s, r, min_assets=3)
    for i in range(60):
        both = np.isfinite(s[i]) & np.isfinite(r[i])
        expected = stats.spearmanr(s[i, both], r[i, both]).statistic
        assert daily.ic[i] == pytest.approx(expected, abs=1e-9)
        assert daily.n_assets[i] == both.sum()


def test_rank_ic_degenerate_rows_are_nan() -> None:
    s = np.array([[1.0, 2, 3, 4, 5], [1, 1, 1, 1, 1], [np.nan] * 5, [1, 2, np.nan, np.nan, np.nan]])
    r = np.array([[5.0, 4, 3, 2, 1], [1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [1, 2, 3, 4, 5]])
    daily = rank_ic(s, r, min_assets=3)
    assert daily.ic[0] == pytest.approx(-1.0)
    assert np.isnan(daily.ic[1:]).all()


def test_rank_ic_one_date_vector() -> None:
    rng = np.random.default_rng(2)
    s, r = rng.standard_normal(300), rng.standard_normal(300)
    assert rank_ic(s, r).ic[0] == pytest.approx(stats.spearmanr(s, r).statistic, abs=1e-12)


def test_rolling_ic_against_direct_window_computation() -> None:
    rng = np.random.default_rng(3)
    ic = rng.normal(0.03, 0.1, 80)
    ic[[10, 11, 40]] = np.nan
    roll = rolling_ic(ic, 20, min_periods=15)
    for end in range(19, 80):
        w = ic[end - 19 : end + 1]
        w = w[np.isfinite(w)]
        assert roll.mean[end] == pytest.approx(w.mean(), abs=1e-12)
        assert roll.std[end] == pytest.approx(w.std(ddof=1), abs=1e-12)
        assert roll.ir[end] == pytest.approx(w.mean() / w.std(ddof=1), abs=1e-9)
        assert roll.hit_rate[end] == pytest.approx((w > 0).mean())
    assert np.isnan(roll.mean[:19]).all()


@pytest.mark.parametrize("lag", [0, 1, 4, 9])
def test_newey_west_matches_direct_formula(lag: int) -> None:
    x = np.random.default_rng(lag).standard_normal(37).cumsum() * 0.01
    assert newey_west_long_run_variance(x, lag) == pytest.approx(_reference_newey_west(x, lag), rel=1e-12)


def _reference_bias_and_df(n: int, lag: int) -> tuple[float, float]:
    """κ = tr(MKM)/n and ν = tr(MKM)²/tr((MKM)²) from the matrices themselves."""
    k = np.array([[max(0.0, 1 - abs(s - t) / (lag + 1)) for t in range(n)] for s in range(n)])
    m = np.eye(n) - 1.0 / n
    a = m @ k @ m
    return float(np.trace(a)) / n, float(np.trace(a) ** 2 / np.trace(a @ a))


@pytest.mark.parametrize(("n", "lag"), [(3, 1), (5, 0), (10, 9), (20, 4), (37, 36), (60, 80), (250, 19)])
def test_bartlett_bias_and_df_match_the_matrix_formulas(n: int, lag: int) -> None:
    kappa, df = bartlett_bias_and_df(n, lag)
    ref_kappa, ref_df = _reference_bias_and_df(n, min(lag, n - 1))
    assert kappa == pytest.approx(ref_kappa, rel=1e-12)
    assert df == pytest.approx(ref_df, rel=1e-10)


def test_bartlett_bias_and_df_by_simulation() -> None:
    """E[S] = κσ² and Var(S) = 2(κσ²)²/ν for white noise."""
    x = np.random.default_rng(12).standard_normal((20_000, 20))
    s = np.array([newey_west_long_run_variance(row, 4) for row in x])
    kappa, df = bartlett_bias_and_df(20, 4)
    assert s.mean() == pytest.approx(kappa, rel=0.01)
    assert s.var() == pytest.approx(2 * kappa**2 / df, rel=0.04)


def test_ic_test_t_stat_and_pvalue() -> None:
    rng = np.random.default_rng(4)
    ic = rng.normal(0.02, 0.08, 120)
    res = ic_test(ic, horizon=5, floor=0.05, alternative="less")
    kappa, df = _reference_bias_and_df(120, 8)
    se = np.sqrt(_reference_newey_west(ic, 8) / kappa / ic.size)
    t = (ic.mean() - 0.05) / se
    assert res.status == "ok"
    assert (res.lag, res.variance) == (8, "window")  # twice the overlap of 5-day returns
    assert res.t_stat == pytest.approx(t, rel=1e-10)
    assert res.df == pytest.approx(df, rel=1e-10)
    assert res.p_value == pytest.approx(stats.t.cdf(t, df), abs=1e-12)
    two = ic_test(ic, horizon=5, floor=0.05, alternative="two-sided")
    assert two.p_value == pytest.approx(2 * stats.t.sf(abs(t), df), abs=1e-12)


def test_ic_test_textbook_reference() -> None:
    rng = np.random.default_rng(4)
    ic = rng.normal(0.02, 0.08, 120)
    res = ic_test(ic, lag=4, floor=0.05, small_sample=False)
    t = (ic.mean() - 0.05) / np.sqrt(_reference_newey_west(ic, 4) / ic.size)
    assert res.t_stat == pytest.approx(t, rel=1e-10)
    assert res.p_value == pytest.approx(stats.t.cdf(t, ic.size - 1), abs=1e-12)


def test_ic_test_lag_zero_is_the_plain_t_test() -> None:
    ic = np.random.default_rng(5).normal(0.01, 0.1, 50)
    plain = stats.ttest_1samp(ic, 0.0)
    res = ic_test(ic, lag=0, alternative="two-sided")
    assert res.t_stat == pytest.approx(plain.statistic, rel=1e-12)
    assert res.p_value == pytest.approx(plain.pvalue, abs=1e-12)
    textbook = ic_test(ic, lag=0, alternative="two-sided", small_sample=False)
    assert textbook.t_stat == pytest.approx(plain.statistic * np.sqrt(50 / 49), rel=1e-12)


def test_ic_test_with_a_baseline_takes_the_variance_from_it() -> None:
    rng = np.random.default_rng(8)
    base, cur = rng.normal(0.05, 0.1, 250), rng.normal(0.0, 0.3, 15)
    res = ic_test(cur, floor=0.05, baseline=base, min_obs=10)
    kappa, df = _reference_bias_and_df(250, 14)
    t = (cur.mean() - 0.05) / np.sqrt(_reference_newey_west(base, 14) / kappa / 15)
    assert (res.variance, res.lag) == ("baseline", 14)
    assert res.t_stat == pytest.approx(t, rel=1e-10)
    assert res.p_value == pytest.approx(stats.t.cdf(t, df), abs=1e-12)
    assert ic_test(cur, baseline=base[:5], min_obs=10).variance == "window"  # too short a baseline: not used


def test_ic_test_insufficient_and_constant() -> None:
    assert ic_test([0.1] * 5).status == "insufficient_data"
    assert ic_test([np.nan] * 40).status == "insufficient_data"
    res = ic_test([0.05] * 40)
    assert res.status == "insufficient_data"
    assert "constant" in res.reason


def test_ic_decline_welch_with_hac_variances() -> None:
    rng = np.random.default_rng(6)
    base, cur = rng.normal(0.05, 0.1, 250), rng.normal(0.0, 0.1, 40)
    res = ic_decline(cur, base, horizon=5, method="welch")
    vc = _reference_newey_west(cur, 4) / cur.size
    vb = _reference_newey_west(base, 4) / base.size
    t = (cur.mean() - base.mean()) / np.sqrt(vc + vb)
    df = (vc + vb) ** 2 / (vc**2 / 39 + vb**2 / 249)
    assert res.t_stat == pytest.approx(t, rel=1e-10)
    assert res.df == pytest.approx(df, rel=1e-10)
    assert res.p_value == pytest.approx(stats.t.cdf(t, df), abs=1e-12)
    assert ic_decline(cur[:5], base).status == "insufficient_data"


def test_ic_decline_with_the_baseline_variance() -> None:
    rng = np.random.default_rng(6)
    base, cur = rng.normal(0.05, 0.1, 250), rng.normal(0.0, 0.1, 20)
    res = ic_decline(cur, base, horizon=5)
    kappa, df = _reference_bias_and_df(250, 19)
    v = _reference_newey_west(base, 19) / kappa * (1 / 20 + 1 / 250)
    t = (cur.mean() - base.mean()) / np.sqrt(v)
    assert (res.method, res.lag) == ("baseline", 19)
    assert res.t_stat == pytest.approx(t, rel=1e-10)
    assert res.df == pytest.approx(df, rel=1e-10)
    assert res.p_value == pytest.approx(stats.t.cdf(t, df), abs=1e-12)
    assert ic_decline(cur, np.full(250, 0.05)).status == "insufficient_data"
    with pytest.raises(ValueError, match="method"):
        ic_decline(cur, base, method="z")  # type: ignore[arg-type]


def test_sign_flip() -> None:
    rng = np.random.default_rng(7)
    base = rng.normal(0.05, 0.05, 100)
    assert ic_sign_flip(rng.normal(-0.05, 0.05, 60), base).flipped
    assert not ic_sign_flip(rng.normal(0.05, 0.05, 60), base).flipped
    assert ic_sign_flip(rng.normal(0, 1, 60), np.zeros(100)).status == "insufficient_data"
