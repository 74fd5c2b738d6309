"""The ``sharpe`` rule under trio's MockClock: PSR against a benchmark, degradation, drawdown, thin data."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from alphawatch.daemon.modeldata_store import close_ts
from alphawatch.rules.stats import sharpe_stats
from tests.engine_harness import Harness, running_engine
from tests.test_rule_ic import RULES, START, trading_days


@pytest.fixture
def config(write_config: Callable[..., Path]) -> Callable[[str], Path]:
    return lambda rules: write_config(RULES + rules)


async def push_returns(
    h: Harness, rule: str, days: list[str], values: np.ndarray, model: str = "a7"
) -> list[str | None]:
    states = []
    for day, value in zip(days, values, strict=True):
        await h.push("alphawatch_portfolio_return", float(value), ts=close_ts(day), model=model)
        states.append(await h.state(rule))
    return states


async def details(h: Harness, rule: str) -> dict[str, object]:
    (alert,) = await h.alerts(rule)
    found: dict[str, object] = json.loads(alert["details"])
    return found


async def test_psr_fires_when_the_sharpe_is_confidently_below_the_benchmark(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    days = trading_days(date(2025, 1, 2), 120)
    path = config("""
      - {name: sr, kind: sharpe, window: 60, benchmark: 1.0, alpha: 0.05}
    """)
    rng = np.random.default_rng(1)
    good = 0.002 + 0.01 * rng.standard_normal(60)  # annualised Sharpe ≈ 3
    bad = -0.003 + 0.01 * rng.standard_normal(60)
    async with running_engine(path, start=START) as h:
        assert set(await push_returns(h, "sr", days[:60], good)) == {None}
        states = await push_returns(h, "sr", days[60:], bad)
        assert "firing" in states
        found = await details(h, "sr")
        assert found["triggered"] == "psr"
        assert float(found["psr"]) < 0.05  # type: ignore[arg-type]
        assert found["benchmark"] == 1.0
        expected = sharpe_stats(bad, benchmark=1.0)
        assert float(found["sharpe"]) == pytest.approx(expected.sharpe, abs=1e-5)  # type: ignore[arg-type]
        assert float(found["se"]) == pytest.approx(expected.se, abs=1e-5)  # type: ignore[arg-type]


async def test_degradation_against_the_training_period_and_drawdown(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    days = trading_days(date(2025, 1, 2), 200)
    path = config(f"""
      - name: sr
        kind: sharpe
        window: 60
        benchmark: -10
        max_drawdown: 0.08
        baseline: {{start: {days[0]}, end: {days[139]}}}
    """)
    rng = np.random.default_rng(2)
    baseline = 0.0025 + 0.01 * rng.standard_normal(140)
    live = -0.002 + 0.01 * rng.standard_normal(60)
    async with running_engine(path, start=START) as h:
        await push_returns(h, "sr", days[:140], baseline)
        await push_returns(h, "sr", days[140:], live)
        assert await h.state("sr") == "firing"
        found = await details(h, "sr")
        assert set(str(found["triggered"]).split(",")) == {"degradation", "drawdown"}
        assert float(found["degradation_p_value"]) < 0.05  # type: ignore[arg-type]
        assert float(found["max_drawdown"]) > 0.08  # type: ignore[arg-type]
        assert found["baseline"] == f"{days[0]}..{days[139]}"


async def test_too_few_or_constant_returns_are_not_enough_data(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    days = trading_days(date(2025, 1, 2), 40)
    path = config("""
      - {name: sr, kind: sharpe, window: 60, min_obs: 20, benchmark: 2.0, max_drawdown: 0.01}
    """)
    async with running_engine(path, start=START) as h:
        assert set(await push_returns(h, "sr", days[:19], np.full(19, -0.05))) == {None}
        assert set(await push_returns(h, "sr", days, np.full(40, -0.01), model="flat")) == {None}
