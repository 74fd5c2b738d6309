"""Market-hour windows: predefined and configured, their exact edges, and sleeping until an edge."""

from __future__ import annotations

from datetime import datetime

import jsonschema
import pytest
import trio

from alphawatch.daemon.calendar import TAIPEI, Calendars, load_calendars
from alphawatch.daemon.errors import ConfigError
from alphawatch.daemon.windows import WINDOWS_SCHEMA, Window, build_windows, parse_signed_duration, wait_edge

CONFIG = {
    "after_close": {"from": "close", "to": "close+3h"},
    "opening_hour": {"phases": ["continuous"], "to": "start+1h"},
    "late": {"phases": "continuous", "start_offset": "-10m", "end_offset": "+5m"},
    "quiet": {"not": "trading"},
    "edges": {"any_of": ["pre_open", "closing_auction"]},
    "quiet_trading_day": {"all_of": ["quiet", "trading_day"]},
    "futures_night": {"venue": "taifex", "phases": "night"},
    "holidays": {"days": "non_trading"},
}


@pytest.fixture(scope="module")
def cals() -> Calendars:
    return load_calendars()


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=TAIPEI).timestamp()


def on(window: Window, *parts: int) -> bool:
    return window.active(at(*parts))


def test_trading_window_edges_exactly_at_0900_and_1330(cals: Calendars) -> None:
    w = build_windows({}, cals)["trading"]
    nine, half_past_one = at(2025, 3, 5, 9), at(2025, 3, 5, 13, 30)
    assert not w.active(nine - 0.001)
    assert w.active(nine)
    assert w.active(half_past_one - 0.001)
    assert not w.active(half_past_one)
    assert w.next_edge(nine - 1) == nine
    assert w.next_edge(nine) == half_past_one
    assert w.next_edge(half_past_one) == at(2025, 3, 6, 9)
    assert w.intervals(at(2025, 3, 5), at(2025, 3, 6)) == [(nine, half_past_one)]


def test_predefined_windows(cals: Calendars) -> None:
    w = build_windows(None, cals)
    assert on(w["pre_open"], 2025, 3, 5, 8, 30)
    assert not on(w["pre_open"], 2025, 3, 5, 9)
    assert on(w["closing_auction"], 2025, 3, 5, 13, 25)
    assert not on(w["closing_auction"], 2025, 3, 5, 13, 24, 59)
    assert on(w["before_open"], 2025, 3, 5, 8, 30)
    assert not on(w["before_open"], 2025, 3, 5, 8, 29, 59)
    assert on(w["after_close"], 2025, 3, 5, 16, 29, 59)
    assert not on(w["after_close"], 2025, 3, 5, 16, 30)
    assert on(w["market_hours"], 2025, 3, 5, 13, 50)
    assert not on(w["market_hours"], 2025, 3, 5, 14, 30)
    assert on(w["non_trading_day"], 2025, 1, 23, 10)
    assert on(w["settlement_day"], 2025, 1, 23, 10)
    assert on(w["closed"], 2025, 1, 23, 10)
    assert not on(w["closed"], 2025, 1, 22, 10)
    assert on(w["taifex.trading"], 2025, 3, 6, 2)
    assert not on(w["twse.trading"], 2025, 3, 6, 2)
    assert on(w["taifex.after_close"], 2025, 3, 6, 14)
    assert on(w["tpex.odd_lot_after_hours"], 2025, 3, 6, 14)
    assert w["trading"].spec == w["twse.trading"].spec
    assert w["non_trading_day"].next_edge(at(2025, 1, 22, 10)) == at(2025, 1, 23)
    assert w["non_trading_day"].next_edge(at(2025, 1, 23, 10)) == at(2025, 2, 3)


def test_configured_windows(cals: Calendars) -> None:
    jsonschema.Draft202012Validator(WINDOWS_SCHEMA).validate(CONFIG)
    w = build_windows(CONFIG, cals)
    assert on(w["after_close"], 2025, 3, 5, 16, 29)
    assert not on(w["after_close"], 2025, 3, 5, 16, 31)
    assert w["opening_hour"].intervals(at(2025, 3, 5), at(2025, 3, 6)) == [(at(2025, 3, 5, 9), at(2025, 3, 5, 10))]
    assert w["late"].intervals(at(2025, 3, 5), at(2025, 3, 6)) == [(at(2025, 3, 5, 8, 50), at(2025, 3, 5, 13, 30))]
    assert on(w["quiet"], 2025, 3, 5, 13, 30)
    assert not on(w["quiet"], 2025, 3, 5, 13, 29)
    assert w["edges"].intervals(at(2025, 3, 5), at(2025, 3, 6)) == [
        (at(2025, 3, 5, 8, 30), at(2025, 3, 5, 9)),
        (at(2025, 3, 5, 13, 25), at(2025, 3, 5, 13, 30)),
    ]
    assert w["quiet_trading_day"].intervals(at(2025, 3, 5), at(2025, 3, 6)) == [
        (at(2025, 3, 5), at(2025, 3, 5, 9)),
        (at(2025, 3, 5, 13, 30), at(2025, 3, 6)),
    ]
    night = w["futures_night"]
    assert on(night, 2025, 1, 22, 23)
    assert not on(night, 2025, 1, 23, 23)
    assert night.next_edge(at(2025, 1, 23, 10)) == at(2025, 2, 3, 15)
    assert on(w["holidays"], 2025, 2, 8, 12)  # a make-up Saturday has no trading


def test_taifex_market_hours_are_not_on_over_a_weekend_or_lunar_new_year(cals: Calendars) -> None:
    hours = build_windows({}, cals)["taifex.market_hours"]
    assert on(hours, 2026, 3, 6, 20)  # Friday's night session (it belongs to Monday's trading date)
    assert not on(hours, 2026, 3, 8, 12)  # Sunday noon
    assert not on(hours, 2026, 2, 17, 12)  # the Lunar New Year holiday
    assert on(hours, 2026, 3, 7, 4)  # Saturday: Friday's night session until 05:00
    assert not on(hours, 2026, 3, 9, 6)  # Monday before the pre-open: the weekend gap parted the date
    assert on(hours, 2026, 3, 9, 8, 30)
    assert on(hours, 2026, 3, 10, 6)  # Tuesday: the night's end and the day session are one span, as before
    assert not on(hours, 2026, 3, 10, 14, 0)


def test_windows_follow_a_closure_added_by_reload(cals: Calendars) -> None:
    closed = load_calendars({"extra_days": [{"date": "2026-08-12", "kind": "closure", "name": "Typhoon (test)"}]})
    old, new = build_windows(CONFIG, cals), build_windows(CONFIG, closed)
    assert on(old["trading"], 2026, 8, 12, 10)
    assert not on(new["trading"], 2026, 8, 12, 10)
    assert on(new["holidays"], 2026, 8, 12, 10)
    assert old["trading"] != new["trading"]
    assert old["futures_night"] == build_windows(CONFIG, cals)["futures_night"]
    assert old == build_windows(CONFIG, cals)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"w": {"phases": "lunch"}}, "unknown phase 'lunch'"),
        ({"w": {"not": "nope"}}, "unknown window 'nope'"),
        ({"a": {"not": "b"}, "b": {"any_of": ["a"]}}, "refers to itself: a → b → a"),
        ({"w": {"from": "noon"}}, r"windows\.w\.from: not an anchor"),
        ({"w": {"end_offset": "999999d"}}, r"windows\.w\.end_offset: '999999d' is longer than a century"),
        ({"w": {"phases": "continuous", "days": "trading"}}, "exactly one of"),
        ({"w": {"venue": "nyse", "days": "trading"}}, "unknown venue 'nyse'"),
        ({"W-1": {"days": "trading"}}, "lower_case"),
    ],
)
def test_bad_window_definitions(cals: Calendars, config: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_windows(config, cals)


def test_signed_durations() -> None:
    assert parse_signed_duration("-30m") == -1800
    assert parse_signed_duration("+1h30m") == 5400
    with pytest.raises(ValueError, match="not a duration"):
        parse_signed_duration("-x")


async def test_wait_edge_sleeps_until_the_exact_instant(cals: Calendars, autojump_clock: trio.abc.Clock) -> None:
    window = build_windows({}, cals)["trading"]
    offset = at(2025, 3, 5, 8, 59, 30) - trio.current_time()

    def wall() -> float:
        return trio.current_time() + offset

    edge = await wait_edge(window, now=wall)
    assert edge == at(2025, 3, 5, 9)
    assert wall() >= edge
    assert window.active(wall())
    assert await wait_edge(window, now=wall) == at(2025, 3, 5, 13, 30)
    assert await wait_edge(window, now=lambda: at(2030, 1, 1)) is None
