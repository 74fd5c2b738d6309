"""The ``change_point`` rule: CUSUM and Page–Hinkley on a derived series (the daily IC)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from alphawatch.daemon.modeldata_store import close_ts
from tests.engine_harness import Harness, running_engine
from tests.test_rule_ic import RULES, START, trading_days


@pytest.fixture
def config(write_config: Callable[..., Path]) -> Callable[[str], Path]:
    return lambda rules: write_config(RULES + rules)


async def push(h: Harness, rule: str, days: list[str], values: np.ndarray) -> list[str | None]:
    states = []
    for day, value in zip(days, values, strict=True):
        await h.push("alphawatch_ic", float(value), ts=close_ts(day), model="a7", horizon="1d")
        states.append(await h.state(rule))
    return states


async def test_cusum_on_the_ic_detects_the_drop_and_not_before(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    days = trading_days(date(2025, 1, 2), 200)
    path = config(f"""
      - name: cp
        kind: change_point
        metric: alphawatch_ic
        method: cusum
        direction: down
        h: 6
        hold: 10
        baseline: {{start: {days[0]}, end: {days[99]}}}
    """)
    rng = np.random.default_rng(4)
    before = 0.06 + 0.05 * rng.standard_normal(160)
    after = 0.0 + 0.05 * rng.standard_normal(40)
    async with running_engine(path, start=START) as h:
        assert set(await push(h, "cp", days[:160], before)) == {None}
        states = await push(h, "cp", days[160:], after)
        first = states.index("firing")
        assert first < 20
        (alert,) = await h.alerts("cp")
        found = json.loads(alert["details"])
        assert found["method"] == "cusum"
        assert found["change"] == "down"
        assert found["baseline"] == f"{days[0]}..{days[99]}"
        assert found["baseline_mean"] == pytest.approx(before[:100].mean(), abs=1e-5)
        assert found["alarm_at"] in days[160:]


async def test_page_hinkley_and_hold(config: Callable[[str], Path], autojump_clock: object) -> None:
    days = trading_days(date(2026, 3, 2), 120)
    path = config("""
      - {name: cp, kind: change_point, metric: alphawatch_ic, method: page_hinkley, lambda: 0.5, hold: 5}
    """)
    rng = np.random.default_rng(8)
    values = np.concatenate((0.05 + 0.02 * rng.standard_normal(60), -0.05 + 0.02 * rng.standard_normal(30),
                             -0.05 + 0.02 * rng.standard_normal(30)))  # fmt: skip
    async with running_engine(path, start=START) as h:
        states = await push(h, "cp", days, values)
        assert set(states[:60]) == {None}
        assert "firing" in states[60:90]
        # once the new level is the norm, the alarm is held for `hold` values, then resolves
        assert states[-1] == "resolved"


async def test_cusum_without_a_baseline_yet_is_not_enough_data(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    days = trading_days(date(2025, 1, 2), 30)
    path = config("""
      - {name: cp, kind: change_point, metric: alphawatch_ic, baseline: {first: 60}}
    """)
    async with running_engine(path, start=START) as h:
        assert set(await push(h, "cp", days, np.linspace(0.1, -0.5, 30))) == {None}
