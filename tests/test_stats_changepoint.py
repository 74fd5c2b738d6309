from __future__ import annotations

import numpy as np
import pytest

from alphawatch.rules.stats import Cusum, PageHinkley, run_detector


def test_cusum_recursion_and_alarm_on_a_drop() -> None:
    det = Cusum(mean=0.05, std=0.1, k=0.5, h=4.0, direction="down")
    s = 0.0
    for x in [0.0, -0.1, 0.2]:
        z = (x - 0.05) / 0.1
        s = max(0.0, s - z - 0.5)
        det.update(x)
        assert det.s_down == pytest.approx(s)
    rng = np.random.default_rng(0)
    series = np.concatenate([rng.normal(0.05, 0.1, 200), rng.normal(-0.1, 0.1, 50)])
    alarms = run_detector(Cusum(mean=0.05, std=0.1, h=5.0, direction="down"), series)
    assert alarms
    assert 200 <= alarms[0] < 215


def test_cusum_from_baseline_and_json_round_trip() -> None:
    det = Cusum.from_baseline([0.1, 0.2, 0.3, np.nan], k=0.25, h=3.0)
    assert det.mean == pytest.approx(0.2)
    det.update(0.0)
    back = Cusum.from_json(det.to_json())
    assert back == det
    assert not back.update(float("nan"))
    with pytest.raises(ValueError, match="distinct"):
        Cusum.from_baseline([1.0, 1.0])
    with pytest.raises(ValueError, match="not a CUSUM"):
        Cusum.from_json(PageHinkley().to_json())


def test_page_hinkley_detects_a_drop_and_restarts() -> None:
    rng = np.random.default_rng(1)
    series = np.concatenate([rng.normal(0.05, 0.02, 100), rng.normal(-0.05, 0.02, 40)])
    det = PageHinkley(delta=0.005, lam=0.5, direction="down")
    alarms = run_detector(det, series)
    assert alarms
    assert 100 <= alarms[0] < 115
    assert PageHinkley.from_json(det.to_json()) == det
    quiet = run_detector(PageHinkley(delta=0.005, lam=0.5), rng.normal(0.05, 0.02, 500))
    assert quiet == []
