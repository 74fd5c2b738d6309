"""Taiwan market calendars (TWSE, TPEx, TAIFEX) as editable, reloadable data.

    calendars = load_calendars(config.get("calendar"))
    twse = calendars["twse"]
    twse.is_open(time.time()); twse.next_edge(ts); twse.settlement_date(date(2025, 1, 22))

The data lives in ``calendars/*.yaml`` next to this module (``venues.yaml`` for sessions and phases,
``days-YYYY.yaml`` for each year's non-trading days). The config's ``calendar:`` section adds days (a typhoon
closure announced tonight) and files; a reload rebuilds everything. See docs/calendar.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from alphawatch.daemon.calendar_load import (
    CALENDAR_SCHEMA,
    VENUES,
    DaysFile,
    KeyPath,
    Locate,
    _Checker,
    extra_days,
    parse_date,
    parse_days,
    parse_venues,
    shipped_files,
)
from alphawatch.daemon.calendar_model import (
    NO_BUSINESS,
    TAIPEI,
    Calendar,
    CalendarRangeError,
    DayInfo,
    DayKind,
    Phase,
    PhaseSpan,
    Session,
    Venue,
    local_datetime,
    to_epoch,
)
from alphawatch.daemon.durations import parse_duration
from alphawatch.daemon.errors import ConfigError, Problem
from alphawatch.daemon.yamlpos import Located, format_path, load_located

__all__ = [
    "CALENDAR_SCHEMA",
    "TAIPEI",
    "VENUES",
    "Calendar",
    "CalendarRangeError",
    "Calendars",
    "DayInfo",
    "DayKind",
    "Locate",
    "Phase",
    "PhaseSpan",
    "Session",
    "Venue",
    "check_calendar_files",
    "load_calendars",
    "local_datetime",
    "to_epoch",
]

DEFAULT_WARN_BEFORE = 30 * 86400.0


@dataclass(frozen=True)
class Calendars:
    """Every venue's calendar, plus the settings of the config's ``calendar:`` section."""

    calendars: tuple[Calendar, ...]
    default_venue: str = "twse"
    warn_before: float = DEFAULT_WARN_BEFORE

    def __getitem__(self, venue: str) -> Calendar:
        for calendar in self.calendars:
            if calendar.venue.code == venue:
                return calendar
        raise KeyError(f"no calendar for venue {venue!r} (known: {', '.join(self.venues)})")

    def __contains__(self, venue: object) -> bool:
        return any(c.venue.code == venue for c in self.calendars)

    @property
    def venues(self) -> tuple[str, ...]:
        return tuple(c.venue.code for c in self.calendars)

    @property
    def default(self) -> Calendar:
        return self[self.default_venue]

    @property
    def valid_until(self) -> date:
        """The earliest ``valid_until`` of all venues: past it some calendar only guesses."""
        return min(c.valid_until for c in self.calendars)

    def expiry_warnings(self, now: float | datetime) -> list[str]:
        """Messages for the alert that a calendar needs its next year; empty while all are valid long enough."""
        today = local_datetime(to_epoch(now)).date()
        soon = today + timedelta(seconds=self.warn_before)
        out = []
        for c in self.calendars:
            if c.valid_until < today:
                out.append(f"the {c.venue.code} calendar ran out on {c.valid_until}: add the next year's days")
            elif c.valid_until <= soon:  # warn_before 30d: from 1 December for a year ending 31 December
                out.append(f"the {c.venue.code} calendar runs out on {c.valid_until}: add the next year's days")
        return out


class _FastLoader(yaml.CSafeLoader):
    """libyaml without positions; refuses duplicate keys so that the positioned parser can report them."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
        if len(keys) != len(set(keys)):
            raise yaml.YAMLError("duplicate key")
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


@lru_cache(maxsize=64)
def _parse(name: str, text: str, *, located: bool = False) -> tuple[Located, tuple[Problem, ...]]:
    """The document, fast (no positions) unless ``located``: problems are then found again with positions."""
    if not located:
        try:
            return Located(yaml.load(text, Loader=_FastLoader), name, {}), ()
        except yaml.YAMLError:
            pass
    doc, problems = load_located(text, name)
    return doc, tuple(problems)


@lru_cache(maxsize=6)
def _build(venue: Venue, days: tuple[DayInfo, ...], first: date, valid_until: date, horizon: date) -> Calendar:
    """Built calendars by content: a reload that changes nothing for a venue costs no rebuild (two generations)."""
    return Calendar.build(venue, days, first, valid_until, horizon)


def _documents(files: list[tuple[str, str]], problems: list[Problem]) -> tuple[list[Venue], list[DaysFile]]:
    """Parse every file fast; on any problem, parse again with positions so each problem says file:line:col."""
    found: list[Problem] = []
    out = _parse_all(files, found, located=False)
    if not found:
        return out
    return _parse_all(files, problems, located=True)


def _parse_all(
    files: list[tuple[str, str]], problems: list[Problem], *, located: bool
) -> tuple[list[Venue], list[DaysFile]]:
    venues: list[Venue] = []
    days: list[DaysFile] = []
    docs = [(name, *_parse(name, text, located=located)) for name, text in files]
    for name, doc, found in docs:
        problems.extend(found)
        if not found and Path(name).name == "venues.yaml":
            parsed, found_v = parse_venues(doc)
            venues += parsed
            problems.extend(found_v)
    known: tuple[str, ...] = tuple(v.code for v in venues) or VENUES
    for name, doc, found in docs:
        if not found and Path(name).name != "venues.yaml":
            parsed_days, found_d = parse_days(doc, known)
            problems.extend(found_d)
            if parsed_days is not None:
                days.append(parsed_days)
    return venues, days


def check_calendar_files(paths: list[str | Path] | None = None) -> list[Problem]:
    """Every problem in the given data files (with the shipped ones), for ``alphawatch check``."""
    problems: list[Problem] = []
    _documents(_read(paths or [], problems, None) + shipped_files(), problems)
    return problems


def _read(paths: list[str | Path], problems: list[Problem], locate: Locate | None) -> list[tuple[str, str]]:
    out = []
    for i, path in enumerate(paths):
        try:
            out.append((str(path), Path(path).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            message = f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
            problems.append(locate(("files", i), message) if locate else Problem(str(path), 0, 0, "", message))
    return out


def _config_locator(path: KeyPath, message: str) -> Problem:
    return Problem("config", 0, 0, format_path(("calendar", *path)), message)


def load_calendars(
    extra: Mapping[str, Any] | None = None,
    *,
    locate: Locate | None = None,
    base_dir: str | Path | None = None,
) -> Calendars:
    """The shipped calendars plus the config's ``calendar:`` section ``extra``.

    Args:
        extra: the parsed ``calendar:`` mapping (see :data:`CALENDAR_SCHEMA`), or ``None``.
        locate: turns a path inside ``calendar:`` and a message into a located :class:`Problem`
            (e.g. ``lambda p, m: doc.problem(("calendar", *p), m)``); by default problems say ``config``.
        base_dir: where relative ``files:`` are found (the config file's folder).

    Raises:
        ConfigError: with every problem, each at ``file:line:col`` for the data files.
    """
    conf = dict(extra or {})
    problems: list[Problem] = []
    check = _Checker(locate or _config_locator)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    files = conf.get("files") or []
    user_files = _read([p if Path(p).is_absolute() else base / p for p in files], problems, check.locate)
    venues, days_files = _documents(shipped_files() + user_files, problems)
    codes = tuple(v.code for v in venues)
    user_days = extra_days(conf.get("extra_days") or [], check, ("extra_days",), codes, {}, origin="config")
    valid_override = None
    if "valid_until" in conf and (valid_override := parse_date(conf["valid_until"])) is None:
        check.bad(("valid_until",), "expected a date YYYY-MM-DD")
    warn_before = DEFAULT_WARN_BEFORE
    if "warn_before" in conf:
        try:
            warn_before = parse_duration(str(conf["warn_before"]))
        except ValueError as exc:
            check.bad(("warn_before",), str(exc))
    default_venue = conf.get("default_venue", "twse")
    if default_venue not in codes:
        check.bad(("default_venue",), f"unknown venue {default_venue!r}")
    problems += check.problems
    if not days_files and not problems:
        problems.append(Problem("calendars", 0, 0, "", "no days-YYYY.yaml data file found"))
    if problems:
        raise ConfigError(problems)

    years = sorted(days_files, key=lambda f: f.year)
    first = date(years[0].year, 1, 1)
    valid_until = years[0].valid_until
    for f in years[1:]:
        if f.year == valid_until.year + 1 and valid_until == date(f.year - 1, 12, 31):
            valid_until = f.valid_until
    if valid_override is not None:
        valid_until = valid_override
    horizon = date(max(valid_until.year, years[-1].year) + 1, 12, 31)
    calendars = []
    for venue in venues:
        by_date: dict[date, DayInfo] = {}
        for d, targets in [*(day for f in years for day in f.days), *user_days]:
            if venue.code in targets and not _closes_a_closed_day(d, by_date.get(d.date)):
                by_date[d.date] = d
        days = tuple(sorted((d for d in by_date.values() if first <= d.date <= horizon), key=lambda d: d.date))
        calendars.append(_build(venue, days, first, valid_until, horizon))
    return Calendars(tuple(calendars), default_venue, warn_before)


def _closes_a_closed_day(day: DayInfo, known: DayInfo | None) -> bool:
    """A closure (a typhoon) on a weekend or a holiday changes nothing: it must not make the day a business day."""
    if day.kind is not DayKind.CLOSURE:
        return False
    return known.kind in NO_BUSINESS if known is not None else day.date.weekday() >= 5
