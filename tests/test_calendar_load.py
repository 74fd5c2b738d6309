"""Loading calendar data: the config's additions, reloads, and file:line errors for bad data."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import jsonschema
import pytest

from alphawatch.daemon.calendar import CALENDAR_SCHEMA, TAIPEI, DayKind, check_calendar_files, load_calendars
from alphawatch.daemon.errors import ConfigError, Problem
from alphawatch.daemon.yamlpos import load_located


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=TAIPEI).timestamp()


TYPHOON = {"date": "2026-08-12", "kind": "closure", "name": "Typhoon (test)", "name_zh": "颱風停止交易"}


def test_a_closure_added_by_reload_applies_to_every_venue() -> None:
    before = load_calendars()
    assert before["twse"].is_trading_day(date(2026, 8, 12))
    after = load_calendars({"extra_days": [TYPHOON]})
    assert after != before
    assert after["tpex"] == after["tpex"]
    for venue in ("twse", "tpex", "taifex"):
        cal = after[venue]
        assert not cal.is_trading_day(date(2026, 8, 12))
        assert not cal.is_open(at(2026, 8, 12, 10))
        assert cal.day(date(2026, 8, 12)).kind is DayKind.CLOSURE
        assert cal.day(date(2026, 8, 12)).origin == "config calendar.extra_days[0]"
    twse = after["twse"]
    assert twse.settlement_date(date(2026, 8, 10)) == date(2026, 8, 13)
    assert twse.settlement_date(date(2026, 8, 11)) == date(2026, 8, 13)
    assert twse.next_open(at(2026, 8, 11, 14)) == at(2026, 8, 13, 9)
    assert after["taifex"].trading_date_at(at(2026, 8, 11, 20)) == date(2026, 8, 13)


@pytest.mark.parametrize(
    ("day", "partial"), [("2026-08-15", None), ("2026-08-15", {"from": "00:00", "to": "05:00"}), ("2026-10-09", None)]
)
def test_a_closure_on_a_weekend_or_a_holiday_changes_nothing(day: str, partial: dict[str, str] | None) -> None:
    # a typhoon recorded on a Saturday, or over a holiday, must not open the day or count it for settlement
    extra = {**TYPHOON, "date": day, **({"partial": partial} if partial else {})}
    before, after = load_calendars(), load_calendars({"extra_days": [extra]})
    for venue in ("twse", "taifex"):
        assert not after[venue].is_trading_day(date.fromisoformat(day))
    twse = after["twse"]
    assert not twse.is_open(at(2026, 8, 15, 10))
    assert twse.settlement_date(date(2026, 8, 14)) == date(2026, 8, 18)
    assert twse.settlement_date(date(2026, 10, 8)) == date(2026, 10, 13)
    assert twse.settlement_date(date(2026, 10, 8)) == before["twse"].settlement_date(date(2026, 10, 8))


def test_a_partial_closure_of_a_whole_day_session_leaves_no_session_and_no_crash() -> None:
    extra = {**TYPHOON, "partial": {"from": "08:00", "to": "14:00"}, "venues": ["taifex"]}
    taifex = load_calendars({"extra_days": [extra]})["taifex"]
    assert taifex.session(date(2026, 8, 12)) is None  # was: min() arg is an empty sequence
    assert [s.date for s in taifex.sessions(date(2026, 8, 10), date(2026, 8, 14))] == [
        date(2026, 8, 10), date(2026, 8, 11), date(2026, 8, 13), date(2026, 8, 14)
    ]  # fmt: skip


def test_a_partial_closure_cuts_the_phases_it_covers() -> None:
    extra = {**TYPHOON, "partial": {"from": "13:30", "to": "23:59"}, "venues": ["twse", "taifex"]}
    cals = load_calendars({"extra_days": [extra]})
    twse = cals["twse"]
    assert twse.is_trading_day(date(2026, 8, 12))
    assert twse.is_settlement_day(date(2026, 8, 12))
    assert twse.is_open(at(2026, 8, 12, 13, 29))
    assert twse.phase_at(at(2026, 8, 12, 14, 10)) is None
    session = twse.session(date(2026, 8, 12))
    assert session is not None
    assert session.partial
    assert "after_hours" not in [p.phase for p in session.phases]
    taifex = cals["taifex"]
    assert taifex.phase_at(at(2026, 8, 12, 23, 30)) is None
    assert taifex.phase_at(at(2026, 8, 13, 0, 30)) == "night"
    assert cals["tpex"].phase_at(at(2026, 8, 12, 14, 10)) == "after_hours"


def test_config_can_reopen_a_day_extend_validity_and_change_the_default_venue() -> None:
    cals = load_calendars(
        {
            "extra_days": [{"date": date(2026, 12, 25), "kind": "trading", "name": "reopened", "venues": ["twse"]}],
            "valid_until": "2027-06-30",
            "warn_before": "7d",
            "default_venue": "taifex",
        }
    )
    assert cals["twse"].is_trading_day(date(2026, 12, 25))
    assert not cals["tpex"].is_trading_day(date(2026, 12, 25))
    assert cals.valid_until == date(2027, 6, 30)
    assert cals.default.venue.code == "taifex"
    assert cals.expiry_warnings(at(2027, 6, 20, 12)) == []
    assert len(cals.expiry_warnings(at(2027, 6, 25, 12))) == 3


def test_config_problems_are_all_reported_through_the_locator() -> None:
    def locate(path: tuple[str | int, ...], message: str) -> Problem:
        return Problem("alphawatch.yaml", 7, 3, ".".join(map(str, ("calendar", *path))), message)

    bad = {
        "extra_days": [
            {"date": "2026-02-30", "kind": "closure"},
            {"date": "2026-08-12", "kind": "storm"},
            {"date": "2026-08-13", "kind": "holiday", "partial": {"from": "09:00", "to": "10:00"}},
            {"date": "2026-08-14", "kind": "make_up_saturday"},
            {"date": "2026-08-17", "kind": "closure", "venues": ["nyse"]},
        ],
        "warn_before": "soon",
        "default_venue": "nyse",
    }
    with pytest.raises(ConfigError) as caught:
        load_calendars(bad, locate=locate)
    text = str(caught.value)
    assert len(caught.value.problems) == 7
    assert "alphawatch.yaml:7:3: calendar.extra_days.0.date: expected a date" in text
    expected = ["unknown kind 'storm'", "only a closure can be partial", "not a Saturday", "expected a list of venues"]
    for words in [*expected, "not a duration", "unknown venue 'nyse'"]:
        assert words in text


def test_bad_data_files_are_reported_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "days-2027.yaml"
    bad.write_text(
        "year: 2027\n"
        "days:\n"
        "  - {date: 2027-01-01, kind: holiday, name: New Year}\n"
        "  - {date: 2027-01-01, kind: holiday, name: again}\n"
        "  - {date: 2028-02-01, kind: holiday, name: wrong year}\n"
        "  - date: 2027-03-01\n"
        "    kind: closure\n"
        "    kind: holiday\n",
        encoding="utf-8",
    )
    problems = check_calendar_files([bad])
    assert [(p.line, p.path) for p in problems] == [(8, "days[3].kind")]  # duplicate keys stop the file first
    bad.write_text(
        bad.read_text(encoding="utf-8").replace("    kind: holiday\n", "    partial: {from: 9, to: '10:00'}\n")
    )
    where = [f"{Path(p.file).name}:{p.line}: {p.path}" for p in check_calendar_files([bad])]
    assert where == [
        "days-2027.yaml:4: days[1].date",
        "days-2027.yaml:5: days[2].date",
        "days-2027.yaml:8: days[3].partial",
    ]
    with pytest.raises(ConfigError, match=r"days-2027\.yaml:4:\d+: days\[1\]\.date: 2027-01-01 is listed twice"):
        load_calendars({"files": ["days-2027.yaml"]}, base_dir=tmp_path)


def test_a_data_file_from_the_config_extends_the_calendar(tmp_path: Path) -> None:
    (tmp_path / "days-2027.yaml").write_text(
        "year: 2027\ndays:\n"
        "  - {date: 2027-01-01, kind: holiday, name: Founding Day, name_zh: 開國紀念日, source: test}\n",
        encoding="utf-8",
    )
    cals = load_calendars({"files": [str(tmp_path / "days-2027.yaml")]})
    assert cals.valid_until == date(2027, 12, 31)
    assert cals["twse"].horizon == date(2028, 12, 31)
    assert not cals["twse"].is_trading_day(date(2027, 1, 1))
    with pytest.raises(ConfigError, match="cannot read"):
        load_calendars({"files": ["missing.yaml"]}, base_dir=tmp_path)


def test_the_shipped_files_check_clean() -> None:
    assert check_calendar_files() == []


def test_the_schema_accepts_the_documented_example_and_refuses_unquoted_times() -> None:
    doc, problems = load_located(
        "calendar:\n"
        "  warn_before: 45d\n"
        "  extra_days:\n"
        "    - date: 2026-08-12\n"
        "      kind: closure\n"
        "      name: Typhoon Example\n"
        "      name_zh: 颱風停止交易\n"
        "      venues: [twse, tpex, taifex]\n"
        "      partial: {from: '12:00', to: '23:59'}\n",
        "config.yaml",
    )
    assert problems == []
    jsonschema.Draft202012Validator(CALENDAR_SCHEMA).validate(doc.data["calendar"])
    load_calendars(doc.data["calendar"])
    unquoted, _ = load_located("partial: {from: 12:00, to: 13:30}\n", "x.yaml")
    extra = {**TYPHOON, **unquoted.data}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(CALENDAR_SCHEMA).validate({"extra_days": [extra]})
    with pytest.raises(ConfigError, match="quoted local times"):
        load_calendars({"extra_days": [extra]})
