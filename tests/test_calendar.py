"""The shipped calendars: every non-trading weekday of 2024-2026, sessions, phases, edges and settlement."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from alphawatch.daemon.calendar import TAIPEI, CalendarRangeError, Calendars, DayKind, load_calendars

# Every weekday without trading, written out from the sources cited in daemon/calendars/days-*.yaml (not read
# from the data files), with its kind: h = holiday, s = settlement only, c = ad hoc closure.
NON_TRADING_WEEKDAYS = {
    2024: "01-01h 02-06s 02-07s 02-08h 02-09h 02-12h 02-13h 02-14h 02-28h 04-04h 04-05h 05-01h 06-10h "
    "07-24c 07-25c 09-17h 10-02c 10-03c 10-10h 10-31c",
    2025: "01-01h 01-23s 01-24s 01-27h 01-28h 01-29h 01-30h 01-31h 02-28h 04-03h 04-04h 05-01h 05-30h "
    "09-29h 10-06h 10-10h 10-24h 12-25h",
    2026: "01-01h 02-12s 02-13s 02-16h 02-17h 02-18h 02-19h 02-20h 02-27h 04-03h 04-06h 05-01h 06-19h "
    "09-25h 09-28h 10-09h 10-26h 12-25h",
}
KINDS = {"h": DayKind.HOLIDAY, "s": DayKind.SETTLEMENT_ONLY, "c": DayKind.CLOSURE}
EXPECTED = {
    date.fromisoformat(f"{year}-{item[:5]}"): KINDS[item[5]]
    for year, text in NON_TRADING_WEEKDAYS.items()
    for item in text.split()
}
MAKE_UP_SATURDAYS = [date(2024, 2, 17), date(2025, 2, 8)]


@pytest.fixture(scope="module")
def cals() -> Calendars:
    return load_calendars()


def at(*parts: int) -> float:
    """Epoch seconds of an Asia/Taipei wall time."""
    return datetime(*parts, tzinfo=TAIPEI).timestamp()


def weekdays(start: date, end: date) -> list[date]:
    return [start + timedelta(n) for n in range((end - start).days + 1) if (start + timedelta(n)).weekday() < 5]


@pytest.mark.parametrize("venue", ["twse", "tpex", "taifex"])
def test_every_non_trading_weekday_of_2024_to_2026(cals: Calendars, venue: str) -> None:
    cal = cals[venue]
    found = {d: cal.day(d).kind for d in weekdays(date(2024, 1, 1), date(2026, 12, 31)) if not cal.is_trading_day(d)}
    assert found == EXPECTED


@pytest.mark.parametrize("day", sorted(EXPECTED), ids=str)
def test_trading_days_around_each_non_trading_weekday(cals: Calendars, day: date) -> None:
    cal = cals["twse"]
    if day == cal.first_day:  # 2023 is not in the data: the calendar says so rather than guess
        with pytest.raises(CalendarRangeError):
            cal.previous_trading_day(day)
        assert cal.next_trading_day(day) == date(2024, 1, 2)
        return
    before, after = cal.previous_trading_day(day), cal.next_trading_day(day)
    assert cal.is_trading_day(before)
    assert cal.is_trading_day(after)
    between = [before + timedelta(n) for n in range(1, (after - before).days)]
    assert day in between
    assert all(d in EXPECTED or d.weekday() >= 5 for d in between)
    assert cal.day(day).name
    assert cal.day(day).name_zh
    assert cal.day(day).source


def test_every_entry_names_itself_in_both_languages_with_a_source(cals: Calendars) -> None:
    for cal in cals.calendars:
        for info in cal.days:
            assert info.name, info
            assert info.name_zh, info
            assert info.source, info
            assert info.status in ("confirmed", "derived", "unverified")
            assert info.label("zh-TW") == info.name_zh
            assert info.label("en") == info.name


def test_lunar_new_year_2025_settlement_only_days_and_t_plus_2(cals: Calendars) -> None:
    cal = cals["twse"]
    assert cal.trading_days(date(2025, 1, 20), date(2025, 2, 5)) == (
        date(2025, 1, 20), date(2025, 1, 21), date(2025, 1, 22), date(2025, 2, 3), date(2025, 2, 4), date(2025, 2, 5),
    )  # fmt: skip
    for d in (date(2025, 1, 23), date(2025, 1, 24)):
        assert not cal.is_trading_day(d)
        assert cal.is_settlement_day(d)
    assert cal.settlement_date(date(2025, 1, 20)) == date(2025, 1, 22)
    assert cal.settlement_date(date(2025, 1, 21)) == date(2025, 1, 23)
    assert cal.settlement_date(date(2025, 1, 22)) == date(2025, 1, 24)
    assert cal.settlement_date(date(2025, 2, 3)) == date(2025, 2, 5)
    assert cal.add_trading_days(date(2025, 1, 22), 2) == date(2025, 2, 4)  # trading days are not settlement days
    assert not cal.is_settlement_day(date(2025, 1, 27))


def test_lunar_new_year_2024_and_2026(cals: Calendars) -> None:
    cal = cals["twse"]
    assert cal.previous_trading_day(date(2024, 2, 15)) == date(2024, 2, 5)
    assert cal.settlement_date(date(2024, 2, 5)) == date(2024, 2, 7)
    assert cal.settlement_date(date(2024, 2, 2)) == date(2024, 2, 6)
    assert cal.next_trading_day(date(2026, 2, 11)) == date(2026, 2, 23)
    assert cal.settlement_date(date(2026, 2, 11)) == date(2026, 2, 13)
    assert cal.settlement_date(date(2026, 2, 11), days=3) == date(2026, 2, 23)


@pytest.mark.parametrize("saturday", MAKE_UP_SATURDAYS, ids=str)
def test_make_up_saturdays_have_neither_trading_nor_settlement(cals: Calendars, saturday: date) -> None:
    cal = cals["twse"]
    assert cal.day(saturday).kind is DayKind.MAKE_UP_SATURDAY
    assert not cal.is_trading_day(saturday)
    assert not cal.is_settlement_day(saturday)
    assert cal.is_open(at(saturday.year, saturday.month, saturday.day, 10)) is False
    friday = saturday - timedelta(1)
    assert cal.settlement_date(friday) == cal.add_trading_days(friday, 2)


def test_typhoon_closure_moves_settlement_to_the_next_business_day(cals: Calendars) -> None:
    cal = cals["twse"]  # Gaemi closed 2024-07-24 and 07-25; settlement due then moved to 07-26
    assert cal.settlement_date(date(2024, 7, 22)) == date(2024, 7, 26)
    assert cal.settlement_date(date(2024, 7, 23)) == date(2024, 7, 26)
    assert cal.settlement_date(date(2024, 7, 26)) == date(2024, 7, 30)
    assert not cal.is_settlement_day(date(2024, 7, 24))
    assert cal.settlement_date(date(2024, 9, 30)) == date(2024, 10, 4)  # Krathon 10-02 and 10-03
    with pytest.raises(ValueError, match="not a twse trading day"):
        cal.settlement_date(date(2024, 7, 24))


def test_phases_and_edges_exactly_at_0900_and_1330(cals: Calendars) -> None:
    cal = cals["twse"]
    nine, half_past_one = at(2025, 3, 5, 9), at(2025, 3, 5, 13, 30)
    assert cal.phase_at(nine - 1) == "pre_open"
    assert not cal.is_open(nine - 1)
    assert cal.phase_at(nine) == "continuous"
    assert cal.is_open(nine)
    assert cal.next_edge(nine - 0.001) == nine
    assert cal.next_edge(nine) == at(2025, 3, 5, 13, 25)
    assert cal.phase_at(half_past_one - 1) == "closing_auction"
    assert cal.is_open(half_past_one - 1)
    assert cal.phase_at(half_past_one) is None
    assert not cal.is_open(half_past_one)
    assert cal.next_edge(half_past_one) == at(2025, 3, 5, 14)
    assert cal.phase_at(at(2025, 3, 5, 14, 10)) == "after_hours"
    assert cal.phases_at(at(2025, 3, 5, 13, 27)) == ("closing_auction", "odd_lot")
    assert cal.phases_at(at(2025, 3, 5, 13, 45)) == ("odd_lot_after_hours",)
    assert cal.next_open(half_past_one) == at(2025, 3, 6, 9)
    assert cal.next_close(nine) == half_past_one


def test_datetimes_in_any_zone_and_naive_ones_refused(cals: Calendars) -> None:
    cal = cals["twse"]
    assert cal.is_open(datetime(2025, 3, 5, 1, 0, tzinfo=UTC))  # 09:00 in Taipei
    with pytest.raises(ValueError, match="naive"):
        cal.is_open(datetime(2025, 3, 5, 9, 0))
    with pytest.raises(CalendarRangeError):
        cal.is_open(at(2035, 1, 2, 10))
    with pytest.raises(CalendarRangeError):
        cal.next_trading_day(date(2023, 6, 1))


def test_next_open_across_lunar_new_year_and_a_weekend(cals: Calendars) -> None:
    cal = cals["twse"]
    assert cal.next_open(at(2025, 1, 22, 14)) == at(2025, 2, 3, 9)
    assert cal.next_edge(at(2025, 1, 22, 15)) == at(2025, 2, 3, 8, 30)
    assert cal.next_close(at(2025, 3, 7, 14)) == at(2025, 3, 10, 13, 30)


def test_taifex_night_session_crosses_midnight_into_the_next_trading_day(cals: Calendars) -> None:
    cal = cals["taifex"]
    assert cal.phase_at(at(2025, 3, 5, 23, 59, 59)) == "night"
    assert cal.is_open(at(2025, 3, 6, 0, 0))
    assert cal.trading_date_at(at(2025, 3, 6, 2)) == date(2025, 3, 6)
    assert cal.trading_date_at(at(2025, 3, 7, 16)) == date(2025, 3, 10)  # Friday night belongs to Monday
    assert cal.is_open(at(2025, 3, 8, 4, 59, 59))
    assert not cal.is_open(at(2025, 3, 8, 5))
    assert cal.next_edge(at(2025, 3, 6, 4)) == at(2025, 3, 6, 5)
    session = cal.session(date(2025, 3, 6))
    assert session is not None
    assert [p.phase for p in session.phases] == ["night_pre_open", "night", "pre_open", "regular"]
    assert session.phases[1].start == at(2025, 3, 5, 15)
    assert session.phases[1].end == at(2025, 3, 6, 5)
    assert (session.open, session.close) == (at(2025, 3, 6, 8, 45), at(2025, 3, 6, 13, 45))


def test_taifex_night_session_across_a_holiday(cals: Calendars) -> None:
    cal = cals["taifex"]
    # 2025-02-27 is the last day before Peace Memorial Day (02-28, Friday): its night runs, belonging to 03-03.
    assert cal.is_open(at(2025, 2, 28, 1))
    assert cal.trading_date_at(at(2025, 2, 28, 1)) == date(2025, 3, 3)
    assert not cal.is_open(at(2025, 2, 28, 16))  # no night session on the evening of a holiday
    assert cal.next_open(at(2025, 2, 28, 5)) == at(2025, 3, 3, 8, 45)
    # The last night before Lunar New Year runs too (FSC, 2024), belonging to the first day after it.
    assert cal.trading_date_at(at(2025, 1, 23, 3)) == date(2025, 2, 3)
    assert not cal.is_open(at(2025, 1, 23, 16))
    # A typhoon closure cancels that day's regular and night sessions.
    assert not cal.is_open(at(2024, 7, 24, 10))
    assert not cal.is_open(at(2024, 7, 24, 20))
    assert cal.trading_date_at(at(2024, 7, 24, 1)) == date(2024, 7, 26)


def test_sessions_of_a_stock_venue(cals: Calendars) -> None:
    cal = cals["tpex"]
    session = cal.session(date(2026, 3, 2))
    assert session is not None
    assert session.open == at(2026, 3, 2, 9)
    assert session.close == at(2026, 3, 2, 13, 30)
    assert cal.session(date(2026, 2, 27)) is None
    assert len(cal.sessions(date(2026, 3, 1), date(2026, 3, 31))) == 22


def test_trading_day_arithmetic(cals: Calendars) -> None:
    cal = cals["twse"]
    assert cal.count_trading_days(date(2025, 1, 1), date(2025, 12, 31)) == 261 - 18
    assert cal.add_trading_days(date(2025, 1, 22), 1) == date(2025, 2, 3)
    assert cal.add_trading_days(date(2025, 2, 3), -1) == date(2025, 1, 22)
    assert cal.add_trading_days(date(2025, 1, 25), -1) == date(2025, 1, 22)  # from a non-trading day
    assert cal.add_trading_days(date(2025, 2, 3), 0) == date(2025, 2, 3)
    with pytest.raises(ValueError, match="not a twse trading day"):
        cal.add_trading_days(date(2025, 1, 25), 0)
    assert cal.non_trading_days(date(2025, 2, 1), date(2025, 2, 28))[0].kind is DayKind.MAKE_UP_SATURDAY


def test_validity_and_extrapolation(cals: Calendars) -> None:
    cal = cals["twse"]
    assert cal.valid_until == date(2026, 12, 31)
    assert cal.horizon == date(2027, 12, 31)
    assert cal.is_extrapolated(date(2027, 1, 4))
    assert cal.is_trading_day(date(2027, 1, 4))
    assert cals.expiry_warnings(at(2026, 11, 26, 12)) == []
    assert len(cals.expiry_warnings(at(2026, 12, 15, 12))) == 3
    assert "ran out" in cals.expiry_warnings(at(2027, 1, 5, 12))[0]


def test_calendars_compare_by_data(cals: Calendars) -> None:
    again = load_calendars()
    assert again == cals
    assert hash(again["twse"]) == hash(cals["twse"])
    assert "twse" in cals
    assert cals.default.venue.code == "twse"
    assert cals.venues == ("twse", "tpex", "taifex")
