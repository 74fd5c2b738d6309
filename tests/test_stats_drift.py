from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from alphawatch.rules.stats import (
    ReferenceSummary,
    chi_square_drift,
    decide_drift,
    feature_drift,
    kolmogorov_sf,
    ks_2samp_pvalue,
)


def _scipy_ks(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ks_2samp(a, b)
    return float(res.statistic), float(res.pvalue)


@pytest.mark.parametrize(
    ("n1", "n2", "shift"),
    [
        (2, 1, 0.0),
        (3, 4, 1.0),
        (5, 7, 0.3),
        (10, 10, 0.5),
        (40, 3, 0.0),
        (250, 180, 0.2),
        (999, 1000, 0.1),
        (3000, 2000, 0.05),
        (20_000, 300, 0.1),
        (15_000, 12_000, 0.03),
        (50, 20_000, 0.4),
        (141, 12_000, 0.2),
    ],
)
def test_ks_statistic_and_pvalue_match_scipy_auto(n1: int, n2: int, shift: float) -> None:
    rng = np.random.default_rng(n1 * 7 + n2)
    a, b = rng.standard_normal(n1), rng.standard_normal(n2) + shift
    ref = ReferenceSummary.from_rows(a[:, None])
    rep = feature_drift(ref, b[:, None], min_obs=1)
    d, p = _scipy_ks(a, b)
    assert rep.ks_statistic[0] == pytest.approx(d, abs=1e-12)
    assert rep.ks_pvalue[0] == pytest.approx(p, abs=1e-9)
    assert rep.ks_method[0] == ("exact" if max(n1, n2) <= 10_000 else "asymp")


def test_ks_with_heavy_ties() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 6, 400).astype(float)
    b = rng.integers(0, 7, 350).astype(float)
    rep = feature_drift(ReferenceSummary.from_rows(a[:, None]), b[:, None])
    d, p = _scipy_ks(a, b)
    assert rep.ks_statistic[0] == pytest.approx(d, abs=1e-12)
    assert rep.ks_pvalue[0] == pytest.approx(p, abs=1e-9)
    assert rep.wasserstein[0] * a.std() == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9)


@pytest.mark.parametrize("n", [1, 2, 7, 60, 140, 141, 1_000, 30_000, 200_000])
def test_kolmogorov_sf_matches_kstwo(n: int) -> None:
    for x in np.linspace(0.0004, 0.999, 75):
        assert kolmogorov_sf(n, float(x)) == pytest.approx(stats.kstwo.sf(x, n), abs=1e-10)


def test_forced_methods() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal(300), rng.standard_normal(200) + 0.2
    d = float(stats.ks_2samp(a, b).statistic)
    assert ks_2samp_pvalue(d, 300, 200, "asymp")[1] == pytest.approx(
        stats.ks_2samp(a, b, method="asymp").pvalue, abs=1e-10
    )
    assert ks_2samp_pvalue(d, 300, 200, "exact")[2] == "exact"


def test_psi_js_wasserstein_against_direct_formulas_and_scipy() -> None:
    rng = np.random.default_rng(5)
    ref_rows = rng.standard_normal((5000, 3)) * [1, 2, 0.5]
    cur_rows = rng.standard_normal((4000, 3)) * [1, 2, 0.5] + [0.0, 0.5, 0.3]
    ref_rows[rng.random(ref_rows.shape) < 0.05] = np.nan
    summary = ReferenceSummary.from_rows(ref_rows, ["a", "b", "c"], bins=10)
    rep = feature_drift(summary, cur_rows)
    for f in range(3):
        r = ref_rows[:, f][np.isfinite(ref_rows[:, f])]
        c = cur_rows[:, f]
        edges = np.quantile(r, np.arange(1, 10) / 10)
        pr = np.bincount(np.searchsorted(edges, r, side="right"), minlength=10) / r.size
        pc = np.bincount(np.searchsorted(edges, c, side="right"), minlength=10) / c.size
        pr_s, pc_s = np.where(pr > 0, pr, 1e-4), np.where(pc > 0, pc, 1e-4)
        assert rep.psi[f] == pytest.approx(np.sum((pc_s - pr_s) * np.log(pc_s / pr_s)), rel=1e-9)
        assert rep.js[f] == pytest.approx(jensenshannon(pr, pc, base=2), rel=1e-9)
        assert rep.wasserstein[f] == pytest.approx(stats.wasserstein_distance(r, c) / r.std(), rel=1e-9)
        d, p = _scipy_ks(r, c)
        assert rep.ks_statistic[f] == pytest.approx(d, abs=1e-12)
        assert rep.ks_pvalue[f] == pytest.approx(p, abs=1e-9)
    assert rep.drifted("ks").tolist() == [False, True, True]


def test_degenerate_features_are_insufficient_not_alarms() -> None:
    rng = np.random.default_rng(6)
    ref = rng.standard_normal((500, 4))
    ref[:, 1] = 3.0  # constant
    ref[:, 2] = np.nan  # all missing
    cur = rng.standard_normal((20, 4)) + 5
    cur = np.vstack([cur, rng.standard_normal((200, 4)) + 5])
    cur[20:, 3] = np.nan  # 20 current values only
    rep = feature_drift(ReferenceSummary.from_rows(ref), cur, min_obs=30)
    assert rep.status == ("ok", "insufficient_data", "insufficient_data", "insufficient_data")
    assert "constant" in rep.reasons[1]
    assert np.isnan(rep.psi[1:]).all()
    assert rep.drifted("psi").tolist() == [True, False, False, False]
    only_bad = feature_drift(ReferenceSummary.from_rows(ref[:, 1:3]), cur[:, 1:3])
    assert decide_drift(only_bad).status == "insufficient_data"


def test_decision_on_key_feature_and_share() -> None:
    rng = np.random.default_rng(7)
    ref = rng.standard_normal((3000, 10))
    cur = rng.standard_normal((3000, 10))
    cur[:, 0] += 0.5
    rep = feature_drift(ReferenceSummary.from_rows(ref, [f"x{i}" for i in range(10)]), cur, correction="bonferroni")
    assert decide_drift(rep, key_features=["x0"]).drifted
    no_key = decide_drift(rep, key_features=["x5"], max_share=0.3)
    assert not no_key.drifted
    assert no_key.features == ("x0",)
    assert decide_drift(rep, max_share=0.1).drifted
    with pytest.raises(ValueError, match="unknown key"):
        decide_drift(rep, key_features=["nope"])


def test_reference_summary_json_round_trip_and_sketch() -> None:
    rng = np.random.default_rng(8)
    ref = rng.standard_normal((20_000, 2))
    ref[:10, 1] = np.nan
    s = ReferenceSummary.from_rows(ref, ["a", "b"])
    back = ReferenceSummary.from_dict(json.loads(json.dumps(s.to_dict())))
    cur = rng.standard_normal((5000, 2)) + 0.05
    r1, r2 = feature_drift(s, cur), feature_drift(back, cur)
    np.testing.assert_array_equal(r1.ks_pvalue, r2.ks_pvalue)
    np.testing.assert_array_equal(r1.psi, r2.psi)
    sketch = ReferenceSummary.from_rows(ref, ["a", "b"], max_sample=2000)
    assert sketch.sample.shape == (2, 2000)
    r3 = feature_drift(sketch, cur)
    np.testing.assert_allclose(r3.ks_statistic, r1.ks_statistic, atol=2e-3)
    np.testing.assert_array_equal(r3.psi, r1.psi)
    assert r3.ks_method[0].endswith("(sketch)")


def test_workers_give_identical_results() -> None:
    rng = np.random.default_rng(9)
    s = ReferenceSummary.from_rows(rng.standard_normal((2000, 6)))
    cur = rng.standard_normal((1500, 6))
    a, b = feature_drift(s, cur), feature_drift(s, cur, workers=2)
    np.testing.assert_array_equal(a.ks_pvalue, b.ks_pvalue)
    np.testing.assert_array_equal(a.wasserstein, b.wasserstein)


def test_chi_square_matches_scipy() -> None:
    rng = np.random.default_rng(10)
    ref = {"a": 500, "b": 300, "c": 200}
    cur_values = rng.choice(["a", "b", "c"], size=700, p=[0.45, 0.3, 0.25]).tolist()
    res = chi_square_drift(ref, cur_values)
    obs = np.array([cur_values.count(k) for k in "abc"], dtype=float)
    exp = 700 * np.array([0.5, 0.3, 0.2])
    sc = stats.chisquare(obs, exp)
    assert res.statistic == pytest.approx(sc.statistic, rel=1e-12)
    assert res.p_value == pytest.approx(sc.pvalue, abs=1e-12)
    assert res.dof == 2
    new = chi_square_drift(ref, {"a": 50, "d": 10})
    assert new.unseen == ("d",)
    assert new.p_value < 1e-6
    assert chi_square_drift(ref, {"a": 5}).status == "insufficient_data"


def test_one_row_of_a_new_category_is_not_a_drift_and_many_are() -> None:
    reference = {"semis": 20906, "fin": 15920, "bio": 10502, "ship": 5472}
    total = sum(reference.values())
    same = {k: round(999 * v / total) for k, v in reference.items()}
    one = chi_square_drift(reference, {**same, "newcat": 1})  # a mislabelled row: p was 1.6e-21
    assert one.unseen == ("newcat",)
    assert one.p_value > 0.5
    many = chi_square_drift(reference, {k: round(v * 0.94) for k, v in same.items()} | {"newcat": 60})
    assert many.p_value < 1e-3  # 6 % of the rows in a category never seen: that is a change
    # pooled categories still follow the chi-square law: under no drift the p-values are about uniform
    rng = np.random.default_rng(3)
    shares = np.array([0.6, 0.3, 0.07, 0.02, 0.01])
    pvalues = [chi_square_drift(dict(zip("abcde", (shares * 50_000).astype(int), strict=True)),
                                rng.choice(list("abcde"), size=200, p=shares).tolist()).p_value
               for _ in range(400)]  # fmt: skip
    assert 0.03 < float(np.mean(np.array(pvalues) < 0.05)) < 0.08


def test_single_observations() -> None:
    assert ks_2samp_pvalue(1.0, 1, 1) == pytest.approx((1.0, stats.ks_2samp([0.0], [1.0]).pvalue, "exact"))


@pytest.mark.parametrize(
    "case", ["ties within current", "ties within reference", "ties across", "unequal sizes", "equal sizes"]
)
def test_ks_and_wasserstein_match_scipy_with_each_kind_of_tie(case: str) -> None:
    rng = np.random.default_rng(21)
    a, b = rng.standard_normal(700), rng.standard_normal(450) + 0.1
    if case == "ties within current":
        b = np.round(b, 1) + 0.025
    elif case == "ties within reference":
        a = np.round(a, 1) + 0.025
    elif case == "ties across":
        a, b = np.round(a, 1), np.round(b, 1)
    elif case == "unequal sizes":
        b = b[:333]
    else:
        b = rng.standard_normal(700) + 0.1
    rep = feature_drift(ReferenceSummary.from_rows(a[:, None]), b[:, None])
    d, p = _scipy_ks(a, b)
    assert rep.ks_statistic[0] == pytest.approx(d, abs=1e-12)
    assert rep.ks_pvalue[0] == pytest.approx(p, abs=1e-9)
    assert rep.wasserstein[0] * a.std() == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9)


def test_bounded_ks_search_is_exact_on_random_ties_and_sizes() -> None:
    """The segment-bounded search (current samples of 256 values and more) against scipy's full evaluation."""
    rng = np.random.default_rng(22)
    for _ in range(150):
        nr, nc = (int(v) for v in rng.integers(10, 3000, 2))
        nc = max(nc, 256)
        levels = int(rng.choice([3, 20, 500, 10**9]))
        a = rng.integers(0, levels, nr) / levels + rng.normal(0, 0.05) * (levels > 10**6)
        b = rng.integers(0, levels, nc) / levels + rng.choice([0.0, 0.01, 0.2])
        rep = feature_drift(ReferenceSummary.from_rows(a[:, None]), b[:, None], min_obs=1, ks_method="asymp")
        assert rep.ks_statistic[0] == pytest.approx(_scipy_ks(a, b)[0], abs=1e-12)


@pytest.mark.parametrize("n", [141, 5_000, 50_000])
def test_kolmogorov_sf_upper_tail_matches_kstwo(n: int) -> None:
    """2.2 ≤ n·x² < 18: Smirnov's exact sum, vectorised (scipy's is an O(n) scalar loop)."""
    for nx2 in np.linspace(2.2, 17.9, 12):
        x = float(np.sqrt(nx2 / n))
        assert kolmogorov_sf(n, x) == pytest.approx(stats.kstwo.sf(x, n), abs=1e-10, rel=1e-8)


def _ar1_panel(rng: np.random.Generator, phi: float, days: int, assets: int, features: int) -> np.ndarray:
    x = np.empty((days, assets, features))
    x[0] = rng.standard_normal((assets, features))
    for t in range(1, days):
        x[t] = phi * x[t - 1] + np.sqrt(1 - phi**2) * rng.standard_normal((assets, features))
    return x


def test_persistence_is_the_lag1_correlation_of_an_assets_side_of_the_mean() -> None:
    from alphawatch.rules.stats import lag1_persistence

    rng = np.random.default_rng(4)
    panel = _ar1_panel(rng, 0.9, 6, 2000, 1)[:, :, 0]
    dates = np.repeat(np.arange(6), 2000)
    assets = np.tile(np.arange(2000), 6)
    phi = lag1_persistence(panel.ravel(), dates, assets)
    assert phi is not None
    assert abs(phi - 2 / np.pi * np.arcsin(0.9)) < 0.03  # the sign's correlation for a Gaussian AR(1)
    shifted = panel + np.arange(6)[:, None] * 5.0  # a whole date moving is drift, not persistence
    assert abs(lag1_persistence(shifted.ravel(), dates, assets) - phi) < 1e-12  # type: ignore[operator]
    fresh = rng.standard_normal(12000)
    assert lag1_persistence(fresh, dates, assets) < 0.05  # type: ignore[operator]
    assert lag1_persistence(fresh[:20], dates[:20], assets[:20]) is None  # one date: no pairs


def test_effective_fraction_of_an_ar1() -> None:
    from alphawatch.rules.stats import effective_fraction

    assert effective_fraction(0.0, 50) == 1.0
    assert effective_fraction(0.7, 1) == 1.0
    assert effective_fraction(0.5, 2) == pytest.approx(1 / 1.5)
    assert effective_fraction(0.9, 1000) == pytest.approx((1 - 0.9) / (1 + 0.9), rel=0.02)  # the long-run limit


def test_ks_on_persistent_rows_keeps_its_level_when_told_how_much_counts() -> None:
    """300 assets whose values persist (AR(1), 0.9) from day to day, no drift: counting every row, KS rejects
    several times as often as its level; counting what is independent, about at its level."""
    from alphawatch.rules.stats import effective_fraction, lag1_persistence

    rng = np.random.default_rng(3)
    naive = counted = tests = 0
    for _ in range(5):
        panel = _ar1_panel(rng, 0.9, 125, 300, 20)
        summary = ReferenceSummary.from_rows(panel[:120].reshape(-1, 20), max_sample=1000)
        window = panel[120:].reshape(-1, 20)
        dates, assets = np.repeat(np.arange(5), 300), np.tile(np.arange(300), 5)
        phis = [lag1_persistence(panel[120:, :, f].ravel(), dates, assets) or 0.0 for f in range(20)]
        fractions = ([effective_fraction(p, 120) for p in phis], [effective_fraction(p, 5) for p in phis])
        naive += int((feature_drift(summary, window, correction="none").ks_pvalue < 0.05).sum())
        report = feature_drift(summary, window, correction="none", ks_fractions=fractions)
        counted += int((report.ks_pvalue < 0.05).sum())
        tests += 20
        assert all("effective n" in m for m in report.ks_method)
    assert naive / tests > 0.2
    assert counted / tests <= 0.1
    shifted = panel[120:] + 0.5  # and half a standard deviation is still found in every feature
    assert (feature_drift(summary, shifted.reshape(-1, 20), correction="none", ks_fractions=fractions).ks_pvalue
            < 0.05).all()  # fmt: skip


def test_counting_fewer_values_never_makes_a_difference_more_significant() -> None:
    """A persistence barely above 0 must not turn an exact p-value of 0.07 into an asymptotic 0.049."""
    rng = np.random.default_rng(11)
    for _ in range(50):
        ref = rng.standard_normal((30, 1))
        cur = rng.standard_normal((30, 1)) + 0.5
        summary = ReferenceSummary.from_rows(ref)
        plain = feature_drift(summary, cur, correction="none").ks_pvalue[0]
        counted = feature_drift(summary, cur, correction="none", ks_fractions=([0.97], [0.97])).ks_pvalue[0]
        assert counted >= plain
