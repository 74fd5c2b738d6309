"""Cross-check against the ``exchange_calendars`` package (XTAI), a test-only dependency.

Every date where the two disagree must be listed here with the reason; a new disagreement (after an upgrade of
exchange_calendars, or an edit of our data) fails the test and prints itself.
"""

from __future__ import annotations

from datetime import date, time

import pytest

from alphawatch.daemon.calendar import Calendars, load_calendars

# exchange_calendars 4.13 on pandas 3.1 trips a pandas deprecation inside its own code.
pytestmark = pytest.mark.filterwarnings("ignore:Series.values returning an ndarray")
START, END = date(2024, 1, 1), date(2026, 12, 31)

# date → why the two disagree, and who is right
EXPLAINED = {
    date(2024, 10, 31): (
        "Typhoon Kong-rey: Taipei suspended work all day (announced 2024-10-30 20:00), which closes TWSE under its "
        "natural-disaster rule 1. exchange_calendars 4.13.2 has 2024-07-24/25 and 2024-10-02/03 but not this day."
    ),
}


@pytest.fixture(scope="module")
def xtai_sessions() -> set[date]:
    xcals = pytest.importorskip("exchange_calendars")
    calendar = xcals.get_calendar("XTAI", start=START.isoformat(), end=END.isoformat())
    assert calendar.open_times[0][1] == time(9, 0)
    assert calendar.close_times[0][1] == time(13, 30)
    return {ts.date() for ts in calendar.sessions}


def test_every_disagreement_with_exchange_calendars_is_explained(xtai_sessions: set[date]) -> None:
    cal = load_calendars()["twse"]
    ours = set(cal.trading_days(START, END))
    disagreements = {
        d: ("we trade, XTAI does not" if d in ours else "XTAI trades, we do not") for d in sorted(ours ^ xtai_sessions)
    }
    unexplained = {d: why for d, why in disagreements.items() if d not in EXPLAINED}
    stale = sorted(set(EXPLAINED) - set(disagreements))
    assert not unexplained, "new disagreements with exchange_calendars:\n" + "\n".join(
        f"{d} {d:%a}: {why}; ours: {cal.day(d).kind.value} {cal.day(d).name}" for d, why in unexplained.items()
    )
    assert not stale, f"no longer disagreeing, drop from EXPLAINED: {stale}"


def test_settlement_only_days_are_no_sessions_in_either(xtai_sessions: set[date]) -> None:
    cals: Calendars = load_calendars()
    settlement_only = [d.date for d in cals["twse"].days if d.kind.value == "settlement_only"]
    assert len(settlement_only) == 6
    assert not set(settlement_only) & xtai_sessions
