"""The ``ic`` rule under trio's MockClock: silent while the IC holds, fires when it decays, never on thin data."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from alphawatch.daemon.calendar import load_calendars
from alphawatch.daemon.modeldata_store import close_ts
from tests.engine_harness import Harness, running_engine

START = 1_795_132_800.0  # 2026-11-20T00:00:00Z: every date below is in the past
RULES = """
channels:
  - {name: hook, kind: webhook, url: "http://127.0.0.1:9/unused"}
route:
  channels: [hook]
  group_wait: 0s
  group_interval: 1s
  group_by: ["..."]
rules:
"""


def trading_days(start: date, n: int) -> list[str]:
    cal = load_calendars().default
    days = cal.trading_days(start, date(2026, 12, 31))
    return [d.isoformat() for d in days[:n]]


@pytest.fixture
def config(write_config: Callable[..., Path]) -> Callable[[str], Path]:
    return lambda rules: write_config(RULES + rules)


async def push_ics(h: Harness, days: list[str], values: np.ndarray, model: str = "a7") -> list[str | None]:
    """Push one IC a day; the rule's state after each."""
    states = []
    for day, value in zip(days, values, strict=True):
        await h.push("alphawatch_ic", float(value), ts=close_ts(day), model=model, horizon="1d")
        states.append(await h.state("decay"))
    return states


async def details(h: Harness, rule: str) -> dict[str, object]:
    (alert,) = await h.alerts(rule)
    found: dict[str, object] = json.loads(alert["details"])
    return found


async def test_ic_rule_is_silent_while_the_ic_holds_and_fires_after_it_drops_to_zero(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    days = trading_days(date(2025, 1, 2), 220)
    path = config(f"""
      - name: decay
        kind: ic
        match: {{model: a7}}
        window: 20
        alpha: 0.01
        baseline: {{start: {days[0]}, end: {days[119]}}}
    """)
    rng = np.random.default_rng(7)
    healthy = 0.08 + 0.05 * rng.standard_normal(180)
    dead = 0.0 + 0.05 * rng.standard_normal(40)
    async with running_engine(path, start=START) as h:
        before = await push_ics(h, days[:180], healthy)
        assert set(before) == {None}, "no alert while the IC holds at its baseline level"
        after = await push_ics(h, days[180:], dead)
        first = after.index("firing")
        assert first < 20, f"fired only {first + 1} days after the IC dropped"
        found = await details(h, "decay")
        assert "decline" in str(found["triggered"])
        assert found["baseline"] == f"{days[0]}..{days[119]}"
        assert float(found["decline_p_value"]) < 0.01  # type: ignore[arg-type]
        assert found["horizon"] == "1d"
        assert found["lag"] == 19  # the baseline's variance at the window's bandwidth
        assert found["variance_from"] == "baseline"
        assert float(found["baseline_mean_ic"]) == pytest.approx(healthy[:120].mean(), abs=1e-6)  # type: ignore[arg-type]
        assert str(found["window"]).startswith("last 20 of 20 values")


async def test_not_enough_data_never_fires(config: Callable[[str], Path], autojump_clock: object) -> None:
    days = trading_days(date(2025, 3, 3), 30)
    path = config("""
      - {name: decay, kind: ic, window: 60, min_obs: 20, floor: 0.02}
    """)
    async with running_engine(path, start=START) as h:
        states = await push_ics(h, days[:19], np.full(19, -0.4) + np.linspace(0, 0.01, 19))
        assert set(states) == {None}, "19 values of a dreadful IC are still too few"
        # a constant series has no variance: insufficient, not an alert
        constant = await push_ics(h, days[19:], np.full(11, -0.4), model="b2")
        assert set(constant) == {None}
        cond = h.engine.actors["decay"]
        assert cond.firing == 0


async def test_floor_uses_newey_west_with_twice_the_horizons_overlap(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    days = trading_days(date(2025, 3, 3), 30)
    path = config("""
      - {name: floor, kind: ic, window: 30, floor: 0.05, alpha: 0.05}
    """)
    rng = np.random.default_rng(3)
    async with running_engine(path, start=START) as h:
        for day, value in zip(days, -0.02 + 0.05 * rng.standard_normal(30), strict=True):
            await h.push("alphawatch_ic", float(value), ts=close_ts(day), model="a7", horizon="5d")
        assert await h.state("floor") == "firing"
        found = await details(h, "floor")
        assert found["lag"] == 8  # horizon 5d → twice the overlap
        assert found["variance_from"] == "window"
        assert 1 < float(found["df"]) < 29  # type: ignore[arg-type]
        assert found["triggered"] == "floor"
        assert float(found["t_stat"]) < 0  # type: ignore[arg-type]


async def test_sign_flip_against_a_lagged_baseline(config: Callable[[str], Path], autojump_clock: object) -> None:
    days = trading_days(date(2025, 3, 3), 80)
    path = config("""
      - {name: flip, kind: ic, window: 30, baseline: {lagged: 50}, conditions: [sign_flip]}
    """)
    rng = np.random.default_rng(11)
    values = np.concatenate((0.06 + 0.05 * rng.standard_normal(50), -0.06 + 0.05 * rng.standard_normal(30)))
    async with running_engine(path, start=START) as h:
        for day, value in zip(days, values, strict=True):
            await h.push("alphawatch_ic", float(value), ts=close_ts(day), model="a7", horizon="1d")
        assert await h.state("flip") == "firing"
        found = await details(h, "flip")
        assert found["triggered"] == "sign_flip"
        assert float(found["sign_flip_p_value"]) < 0.05  # type: ignore[arg-type]
        assert str(found["baseline"]).startswith("the 50 values before the window")


async def test_a_lagged_baseline_is_the_same_after_a_restart(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    cal = load_calendars().default
    # a year of 5-day ICs: the last one is for the date 5 trading days before now (its returns are known by now)
    days = [d.isoformat() for d in cal.trading_days(date(2025, 6, 2), date(2026, 11, 12))][-262:]
    path = config("""
      - {name: decay, kind: ic, match: {model: a7}, window: 10, horizon: 5, baseline: {lagged: 250}, floor: 0.2,
         conditions: [floor]}
    """)
    values = 0.08 + 0.05 * np.random.default_rng(5).standard_normal(len(days))
    async with running_engine(path, start=START) as h:
        for day, value in zip(days, values, strict=True):
            await h.push("alphawatch_ic", float(value), ts=close_ts(day), model="a7", horizon="5d")
        assert await h.state("decay") == "firing"
        before = await details(h, "decay")
    async with running_engine(path, start=START + 3600) as h:  # the rule loads its history from the store
        await h.advance(1)
        after = await details(h, "decay")
    assert str(before["baseline"]).startswith("the 250 values before the window")
    assert after["baseline"] == before["baseline"]


async def test_a_late_correction_replaces_the_days_value(config: Callable[[str], Path], autojump_clock: object) -> None:
    days = trading_days(date(2025, 3, 3), 25)
    path = config("""
      - {name: floor, kind: ic, window: 20, floor: 0.0, alpha: 0.05}
    """)
    rng = np.random.default_rng(5)
    async with running_engine(path, start=START) as h:
        bad = -0.1 + 0.03 * rng.standard_normal(25)
        for day, value in zip(days, bad, strict=True):
            await h.push("alphawatch_ic", float(value), ts=close_ts(day), model="a7")
        assert await h.state("floor") == "firing"
        for day in days[-20:]:  # late returns recompute every day's IC: the same instants, new values
            await h.push("alphawatch_ic", 0.05 + 0.01 * float(rng.standard_normal()), ts=close_ts(day), model="a7")
        assert await h.state("floor") == "resolved"
