"""Reading calendar data: the YAML files shipped in ``calendars/``, extra files, and the config's ``calendar:`` section.

Checks are plain Python rather than JSON Schema (importing jsonschema alone costs more than the 20 ms budget of a
load); every problem is reported as ``file:line:col: path: message``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from alphawatch.daemon import yamlpos
from alphawatch.daemon.calendar_model import DayInfo, DayKind, Phase, Venue
from alphawatch.daemon.durations import PATTERN as DURATION_PATTERN
from alphawatch.daemon.errors import Problem
from alphawatch.daemon.yamlpos import Located

SHIPPED = Path(__file__).with_name("calendars")
"""The folder of the shipped data files."""
KeyPath = tuple[str | int, ...]
Locate = Callable[[KeyPath, str], Problem]
"""Turns a path inside the ``calendar:`` section and a message into a located :class:`Problem`."""

VENUES = ("twse", "tpex", "taifex")
KINDS = tuple(k.value for k in DayKind if k is not DayKind.WEEKEND)
STATUSES = ("confirmed", "derived", "unverified")
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
TIME_PATTERN = r"^([01][0-9]|2[0-9]|3[0-5]):[0-5][0-9]$"
_TIME = re.compile(TIME_PATTERN)
_DATE_VALUE = {"pattern": DATE_PATTERN, "not": {"type": ["array", "object", "number", "boolean", "null"]}}

EXTRA_DAY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["date", "kind"],
    "properties": {
        "date": {**_DATE_VALUE, "description": "YYYY-MM-DD (Asia/Taipei)"},
        "kind": {"enum": [*KINDS]},
        "name": {"type": "string"},
        "name_zh": {"type": "string"},
        "venues": {"type": "array", "items": {"enum": [*VENUES]}, "minItems": 1, "uniqueItems": True},
        "partial": {
            "type": "object",
            "additionalProperties": False,
            "required": ["from", "to"],
            "properties": {
                "from": {"type": "string", "pattern": TIME_PATTERN},
                "to": {"type": "string", "pattern": TIME_PATTERN},
            },
        },
        "source": {"type": "string"},
        "status": {"enum": [*STATUSES]},
        "note": {"type": "string"},
    },
}

CALENDAR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "Market calendars: additions to the shipped data, applied on reload.",
    "properties": {
        "extra_days": {"type": "array", "items": EXTRA_DAY_SCHEMA},
        "files": {
            "type": "array",
            "items": {"type": "string"},
            "description": "extra data files (days-YYYY.yaml format)",
        },
        "valid_until": {**_DATE_VALUE, "description": "extend the data's validity (after adding next year's days)"},
        "warn_before": {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "warn this long before valid_until",
        },
        "default_venue": {"enum": [*VENUES]},
    },
}
"""JSON Schema of the config's ``calendar:`` section."""


@dataclass(frozen=True)
class DaysFile:
    """One parsed ``days-YYYY.yaml``: the days of ``year`` (for ``venues``) and how far the data is valid."""

    year: int
    valid_until: date
    days: tuple[tuple[DayInfo, tuple[str, ...]], ...]  # each day with the venues it applies to


def shipped_files() -> list[tuple[str, str]]:
    """``(path, text)`` of every shipped data file, in name order."""
    return [(str(path), path.read_text(encoding="utf-8")) for path in sorted(SHIPPED.glob("*.yaml"))]


def parse_time(value: Any) -> int | None:
    """Local seconds after midnight of ``"HH:MM"`` (up to ``35:59`` for phases past midnight), else ``None``."""
    if not isinstance(value, str) or not _TIME.match(value):
        return None
    return int(value[:2]) * 3600 + int(value[3:]) * 60


def parse_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.match(DATE_PATTERN, value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


class _Checker:
    """Collects problems for one document, each located by its key path."""

    def __init__(self, locate: Locate) -> None:
        self.locate = locate
        self.problems: list[Problem] = []

    def bad(self, path: KeyPath, message: str) -> None:
        self.problems.append(self.locate(path, message))

    def mapping(self, value: Any, path: KeyPath, required: tuple[str, ...], allowed: tuple[str, ...]) -> bool:
        if not isinstance(value, dict):
            self.bad(path, "expected a mapping")
            return False
        for key in required:
            if key not in value:
                self.bad(path, f"missing required key {key!r}")
        for key in value:
            if key not in allowed:
                self.bad((*path, key), f"unknown key {key!r} (expected one of {', '.join(allowed)})")
        return all(key in value for key in required)

    def text(self, value: Any, path: KeyPath, *, required: bool = False) -> str:
        if value is None and not required:
            return ""
        if not isinstance(value, str) or (required and not value):
            self.bad(path, "expected a string")
            return ""
        return value


def parse_venues(doc: Located) -> tuple[list[Venue], list[Problem]]:
    """The venues of a ``venues.yaml`` document."""
    check = _Checker(doc.problem)
    out: list[Venue] = []
    if not check.mapping(doc.data, (), ("venues",), ("timezone", "utc_offset", "venues", "sources", "note")):
        return out, check.problems
    if doc.data.get("utc_offset", "+08:00") != "+08:00" or doc.data.get("timezone", "Asia/Taipei") != "Asia/Taipei":
        check.bad(("timezone",), "only Asia/Taipei (+08:00, no daylight saving) is supported")
    venues = doc.data["venues"]
    if not isinstance(venues, dict):
        check.bad(("venues",), "expected a mapping of venue code to venue")
        return out, check.problems
    for code, raw in venues.items():
        path: KeyPath = ("venues", code)
        keys = ("name", "name_zh", "mic", "phases", "settlement_days", "source", "note")
        if not check.mapping(raw, path, ("name", "phases"), keys):
            continue
        days = raw.get("settlement_days", 2)
        if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= 10:
            check.bad((*path, "settlement_days"), "expected a whole number of days from 0 to 10")
            days = 2
        phases = _phases(check, raw["phases"], (*path, "phases"))
        out.append(
            Venue(
                str(code),
                check.text(raw["name"], (*path, "name"), required=True),
                check.text(raw.get("name_zh"), (*path, "name_zh")),
                check.text(raw.get("mic"), (*path, "mic")),
                phases,
                days,
                check.text(raw.get("source"), (*path, "source")),
            )
        )
    return out, check.problems


def _phases(check: _Checker, raw: Any, path: KeyPath) -> tuple[Phase, ...]:
    if not isinstance(raw, list) or not raw:
        check.bad(path, "expected a non-empty list of phases")
        return ()
    phases: list[tuple[Phase, KeyPath]] = []
    for i, item in enumerate(raw):
        here = (*path, i)
        keys = ("name", "name_zh", "start", "end", "open", "track", "belongs_to", "note")
        if not check.mapping(item, here, ("name", "start", "end"), keys):
            continue
        start, end = parse_time(item["start"]), parse_time(item["end"])
        for key, value in (("start", start), ("end", end)):
            if value is None or value >= 86400:
                check.bad((*here, key), f'expected a quoted local time "HH:MM", got {item[key]!r}')
        belongs = item.get("belongs_to", "same_day")
        if belongs not in ("same_day", "next_trading_day"):
            check.bad((*here, "belongs_to"), "expected same_day or next_trading_day")
        if not isinstance(item.get("open", False), bool):
            check.bad((*here, "open"), "expected true or false")
        if start is None or end is None or start >= 86400 or end >= 86400:
            continue
        end = end if end > start else end + 86400
        name = check.text(item["name"], (*here, "name"), required=True)
        phase = Phase(
            name,
            start,
            end,
            bool(item.get("open", False)),
            str(item.get("track", "main")),
            belongs == "next_trading_day",
            check.text(item.get("name_zh"), (*here, "name_zh")),
        )
        phases.append((phase, here))
    names = [p.name for p, _ in phases]
    for (_, here), name in zip(phases, names, strict=True):
        if names.count(name) > 1:
            check.bad((*here, "name"), f"duplicate phase name {name!r}")
    for track in {p.track for p, _ in phases}:
        on = sorted(((p, h) for p, h in phases if p.track == track), key=lambda x: x[0].start)
        for (a, _), (b, here) in itertools.pairwise(on):
            if b.start < a.end:
                check.bad(here, f"phase {b.name!r} overlaps {a.name!r} on track {track!r}")
        if on and on[-1][0].end - 86400 >= on[0][0].start:
            check.bad(on[-1][1], f"phase {on[-1][0].name!r} runs into the next day's {on[0][0].name!r}")
    if not any(p.open for p, _ in phases if p.track == "main"):
        check.bad(path, "at least one main-track phase must be open: true")
    return tuple(p for p, _ in phases)


def parse_days(doc: Located, venues: tuple[str, ...]) -> tuple[DaysFile | None, list[Problem]]:
    """The days of a ``days-YYYY.yaml`` document."""
    check = _Checker(doc.problem)
    keys = ("year", "valid_until", "sources", "days", "note", "closures_checked_until")
    if not check.mapping(doc.data, (), ("year", "days"), keys):
        return None, check.problems
    year = doc.data["year"]
    if not isinstance(year, int) or isinstance(year, bool) or not 2000 <= year <= 2200:
        check.bad(("year",), "expected a year such as 2026")
        return None, check.problems
    sources = doc.data.get("sources") or {}
    if not isinstance(sources, dict):
        check.bad(("sources",), "expected a mapping of short name to URL or citation")
        sources = {}
    valid = parse_date(doc.data.get("valid_until", date(year, 12, 31)))
    if valid is None:
        check.bad(("valid_until",), "expected a date YYYY-MM-DD")
        valid = date(year, 12, 31)
    if not isinstance(doc.data["days"], list):
        check.bad(("days",), "expected a list of days")
        return None, check.problems
    out = extra_days(doc.data["days"], check, ("days",), venues, sources, origin=doc.file, year=year)
    return DaysFile(year, valid, tuple(out)), check.problems


def extra_days(
    items: list[Any],
    check: _Checker,
    path: KeyPath,
    venues: tuple[str, ...],
    sources: Mapping[str, Any],
    *,
    origin: str,
    year: int | None = None,
) -> list[tuple[DayInfo, tuple[str, ...]]]:
    """Parse a list of day entries (a data file's ``days:`` or the config's ``extra_days:``)."""
    out: list[tuple[DayInfo, tuple[str, ...]]] = []
    seen: dict[tuple[date, str], int] = {}
    keys = ("date", "kind", "name", "name_zh", "venues", "partial", "source", "status", "note")
    for i, item in enumerate(items):
        here = (*path, i)
        if not check.mapping(item, here, ("date", "kind"), keys):
            continue
        when = parse_date(item["date"])
        if when is None:
            check.bad((*here, "date"), f"expected a date YYYY-MM-DD, got {item['date']!r}")
            continue
        if year is not None and when.year != year:
            check.bad((*here, "date"), f"{when} is not in {year}, the year of this file")
        kind = item["kind"]
        if kind not in KINDS:
            check.bad((*here, "kind"), f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
            continue
        targets = item.get("venues", list(venues))
        if not isinstance(targets, list) or not targets or any(v not in venues for v in targets):
            check.bad((*here, "venues"), f"expected a list of venues from {', '.join(venues)}")
            continue
        partial = _partial(check, item.get("partial"), (*here, "partial"), kind)
        if kind == "make_up_saturday" and when.weekday() != 5:
            check.bad((*here, "date"), f"{when} is a {when:%A}, not a Saturday")
        status = item.get("status", "confirmed")
        if status not in STATUSES:
            check.bad((*here, "status"), f"expected one of {', '.join(STATUSES)}")
        source = check.text(item.get("source"), (*here, "source"))
        source = str(sources.get(source, source))
        twice = [v for v in targets if (when, v) in seen]
        if twice:
            first = seen[when, twice[0]]
            check.bad((*here, "date"), f"{when} is listed twice for {', '.join(twice)} (first at entry {first})")
        seen.update(((when, v), i) for v in targets)
        info = DayInfo(
            when,
            DayKind(kind),
            check.text(item.get("name"), (*here, "name")),
            check.text(item.get("name_zh"), (*here, "name_zh")),
            source,
            str(status),
            partial,
            check.text(item.get("note"), (*here, "note")),
            f"{origin} {yamlpos.format_path(here)}" if origin != "config" else f"config calendar.extra_days[{i}]",
        )
        out.append((info, tuple(targets)))
    return out


def _partial(check: _Checker, raw: Any, path: KeyPath, kind: str) -> tuple[int, int] | None:
    if raw is None:
        return None
    if kind != "closure":
        check.bad(path, "only a closure can be partial")
        return None
    if not check.mapping(raw, path, ("from", "to"), ("from", "to")):
        return None
    start, end = parse_time(raw["from"]), parse_time(raw["to"])
    if start is None or end is None or start >= end:
        check.bad(path, f'expected quoted local times "HH:MM" with from before to, got {raw["from"]!r}–{raw["to"]!r}')
        return None
    return start, end
