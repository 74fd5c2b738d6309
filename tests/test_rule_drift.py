"""``drift`` and ``prediction_drift`` under trio's MockClock, on feature cross-sections in a real SQLite file."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alphawatch.daemon.calendar import load_calendars
from alphawatch.daemon.modeldata import parse_model_data
from alphawatch.daemon.modeldata_store import commit
from tests.engine_harness import Harness, running_engine, settle
from tests.test_rule_ic import RULES, START, trading_days

FEATURES = [f"f{i:02d}" for i in range(20)]
SECTORS = ["semis", "finance", "plastics", "shipping"]


@pytest.fixture
def config(write_config: Callable[..., Path]) -> Callable[[str], Path]:
    return lambda rules: write_config(RULES + rules)


async def send(h: Harness, kind: str, rows: list[dict[str, Any]]) -> None:
    """What the HTTP endpoint does: validate, commit with the derived values, hand the samples to the rules."""
    batch = parse_model_data(kind, json.dumps(rows).encode(), "application/json", load_calendars().default, time.time())
    derived = await h.store.run(partial(commit, batch=batch, now=h.clock.now()))
    await h.store.insert_samples(derived.samples)
    h.engine.dispatch(derived.samples)
    await settle()


def cross_section(
    rng: np.random.Generator, day: str, shift: dict[str, float], assets: int = 200
) -> list[dict[str, Any]]:
    rows = []
    for a in range(assets):
        values: dict[str, Any] = {f: float(rng.standard_normal() + shift.get(f, 0.0)) for f in FEATURES}
        values["sector"] = SECTORS[int(rng.integers(0, len(SECTORS)))]
        rows.append({"model": "a7", "date": day, "asset": f"{1101 + a}", "values": values})
    return rows


async def details(h: Harness, rule: str) -> dict[str, Any]:
    (alert,) = await h.alerts(rule)
    found: dict[str, Any] = json.loads(alert["details"])
    return found


async def test_drift_fires_on_a_half_sigma_shift_in_a_key_feature_and_not_before(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    days = trading_days(date(2026, 6, 1), 40)
    path = config(f"""
      - name: inputs
        kind: drift
        match: {{model: a7}}
        key_features: [f03, f07]
        reference: {{start: {days[0]}, end: {days[19]}}}
        window: 5
        method: ks
        correction: bh
    """)
    rng = np.random.default_rng(12)
    async with running_engine(path, start=START) as h:
        for day in days[:30]:
            await send(h, "features", cross_section(rng, day, {}))
            assert await h.state("inputs") is None
        rows = await h.store.query("SELECT key FROM md_references")
        assert len(rows) == 1, "the fixed reference is saved once the data moved past it"
        for day in days[30:]:
            await send(h, "features", cross_section(rng, day, {"f07": 0.5}))
        assert await h.state("inputs") == "firing"
        found = await details(h, "inputs")
        assert found["key_features_drifted"] == "f07"
        assert "f07" in found["drifted_features"]
        assert found["reference"] == f"{days[0]}..{days[19]}"
        assert found["window"] == f"{days[35]}..{days[39]} (5 dates)"
        assert found["f07.ks_p"] < 0.05
        assert found["f07.wasserstein"] > 0.3
        scores = await h.store.query(
            "SELECT feature, method FROM md_drift_scores WHERE date = ? AND feature IN ('f07', 'sector')",
            [days[39]],
        )
        methods = {(r["feature"], r["method"]) for r in scores}
        assert {("f07", "psi"), ("f07", "ks"), ("f07", "js"), ("f07", "wasserstein"), ("sector", "chi2")} <= methods


async def test_the_saved_reference_survives_a_restart_without_the_raw_rows(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    days = trading_days(date(2026, 6, 1), 30)
    path = config(f"""
      - name: inputs
        kind: drift
        max_share: 0.3
        reference: {{start: {days[0]}, end: {days[19]}}}
        window: 3
    """)
    rng = np.random.default_rng(5)
    async with running_engine(path, start=START) as h:
        for day in days[:25]:
            await send(h, "features", cross_section(rng, day, {}))
        await h.store.run(lambda db: db.execute("DELETE FROM md_features WHERE date <= ?", (days[19],)))
    async with running_engine(path, start=START + 86400) as h:
        shift = dict.fromkeys(FEATURES[:10], 0.6)  # half of the numeric features move
        for day in days[25:]:
            await send(h, "features", cross_section(rng, day, shift))
        assert await h.state("inputs") == "firing"
        found = await details(h, "inputs")
        assert found["share"] >= 0.3
        assert found["key_features_drifted"] == ""


async def test_features_pushed_one_after_the_other_all_go_into_a_fixed_reference(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    # a long CSV sorted by feature arrives feature by feature: the first one already spans the window
    days = trading_days(date(2026, 6, 1), 30)
    path = config(f"""
      - name: inputs
        kind: drift
        key_features: [size]
        reference: {{start: {days[0]}, end: {days[19]}}}
        window: 5
        method: ks
    """)
    rng = np.random.default_rng(8)
    async with running_engine(path, start=START) as h:
        for feature, shift in (("flag", 0.0), ("size", 0.6)):
            rows = [{"model": "a7", "date": day, "asset": f"{1101 + a}",
                     "values": {feature: float(rng.standard_normal() + (shift if day >= days[25] else 0.0))}}
                    for day in days for a in range(200)]  # fmt: skip
            await send(h, "features", rows)
        assert await h.state("inputs") == "firing"
        assert (await details(h, "inputs"))["key_features_drifted"] == "size"
        (saved,) = await h.store.query("SELECT summary FROM md_references")
        assert set(json.loads(saved["summary"])["numeric"]["names"]) == {"flag", "size"}


async def test_drift_with_too_few_rows_is_not_enough_data(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    days = trading_days(date(2026, 6, 1), 12)
    path = config(f"""
      - name: inputs
        kind: drift
        key_features: [f01]
        reference: {{start: {days[0]}, end: {days[9]}}}
        window: 1
        min_obs: 30
    """)
    rng = np.random.default_rng(1)
    async with running_engine(path, start=START) as h:
        for day in days[:10]:
            await send(h, "features", cross_section(rng, day, {}, assets=50))
        for day in days[10:]:
            await send(h, "features", cross_section(rng, day, {"f01": 5.0}, assets=20))  # huge shift, 20 rows
        assert await h.state("inputs") is None


async def test_prediction_drift_on_a_lagged_reference(config: Callable[[str], Path], autojump_clock: object) -> None:
    days = trading_days(date(2026, 6, 1), 30)
    path = config("""
      - {name: scores, kind: prediction_drift, reference: {lagged: 20}, window: 3, method: psi}
    """)
    rng = np.random.default_rng(9)
    async with running_engine(path, start=START) as h:
        for i, day in enumerate(days):
            shift = 0.0 if i < 27 else 0.8
            rows = [{"model": "a7", "date": day, "asset": f"{1101 + a}", "score": float(rng.standard_normal() + shift)}
                    for a in range(300)]  # fmt: skip
            await send(h, "predictions", rows)
            if i < 27:
                assert await h.state("scores") is None
        assert await h.state("scores") == "firing"
        found = await details(h, "scores")
        assert found["method"] == "psi"
        assert found["score.psi"] >= 0.2
        assert found["reference"].startswith("20 cross-sections before the window")


@pytest.mark.parametrize(("feature", "stray"), [("f05", "ERR"), ("sector", 3.0)])
async def test_a_feature_whose_values_change_kind_has_drifted(
    config: Callable[[str], Path], autojump_clock: object, feature: str, stray: Any
) -> None:
    """A feed writing ``ERR`` into a number column (or codes into a category column) in later batches: each batch
    is of one kind, so ingest takes it, and the drift rule says what changed."""
    days = trading_days(date(2026, 6, 1), 30)
    path = config(f"""
      - name: inputs
        kind: drift
        match: {{model: a7}}
        key_features: [{feature}]
        reference: {{start: {days[0]}, end: {days[19]}}}
        window: 5
        method: ks
    """)
    rng = np.random.default_rng(5)
    async with running_engine(path, start=START) as h:
        for day in days[:25]:
            await send(h, "features", cross_section(rng, day, {}, assets=100))
        assert await h.state("inputs") is None
        for day in days[25:]:
            rows = cross_section(rng, day, {}, assets=100)
            for row in rows[:10]:  # 10 % of the assets
                row["values"][feature] = stray
            await send(h, "features", rows[:10])
            await send(h, "features", rows[10:])
        assert await h.state("inputs") == "firing"
        found = await details(h, "inputs")
        assert found["key_features_drifted"] == feature
        kind = "numeric" if feature == "f05" else "categorical"
        assert found["kind_changed"].startswith(f"{feature}: {kind} in the reference, 50 of 500 values now")


async def test_persistent_features_do_not_drift_by_persisting(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    """Alpha features carry over from day to day (an asset's value today is close to yesterday's): the rule
    counts the independent values only, so it stays quiet until the distribution moves."""
    days = trading_days(date(2026, 6, 1), 45)
    path = config(f"""
      - name: inputs
        kind: drift
        match: {{model: a7}}
        max_share: 0.2
        reference: {{start: {days[0]}, end: {days[29]}}}
        window: 5
        method: ks
    """)
    rng = np.random.default_rng(7)
    phi, assets = 0.95, 200
    state = rng.standard_normal((assets, len(FEATURES)))
    fired_on: list[str] = []
    async with running_engine(path, start=START) as h:
        for k, day in enumerate(days):
            state = phi * state + np.sqrt(1 - phi**2) * rng.standard_normal(state.shape)
            shift = 0.5 if k >= 40 else 0.0
            rows = [{"model": "a7", "date": day, "asset": f"{1101 + a}",
                     "values": {f: float(state[a, i] + shift) for i, f in enumerate(FEATURES)}}
                    for a in range(assets)]  # fmt: skip
            await send(h, "features", rows)
            if await h.state("inputs") == "firing" and not fired_on:
                fired_on.append(day)
        assert fired_on, "a shift of half a standard deviation is found"
        assert days[40] <= fired_on[0] <= days[41]  # within a day of the shift, and never before it
        found = await details(h, "inputs")
        assert found["persistence"].count("=0.") == 3  # the most persistent features, with their estimates


def test_details_keep_six_significant_digits_of_a_tiny_p_value() -> None:
    from alphawatch.rules.drift import _f

    assert _f(2.4612345e-49) == 2.46123e-49  # not 0.0 beside a smallest_p_values of 2.46e-49
    assert _f(0.1234567) == 0.123457
    assert _f(float("nan")) is None
