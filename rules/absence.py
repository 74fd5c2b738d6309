"""``absence``: a dead-man switch, plain or market-aware.

Three ways to say what is expected (one of them):

- ``absent_for: 5m``: a matching sample at least every 5 minutes, at any time;
- ``absent_for: 1m`` with ``during: trading``: the same, counted only while the window is on (the clock starts
  again at each opening, and the alert resolves when the window closes);
- ``deadline: "08:45"``: a matching sample by 08:45 Asia/Taipei on every trading day of ``venue`` (default: the
  calendar's default venue). A sample counts for trading day D when it arrives after the close of the trading
  day before D. Weekends, holidays, make-up Saturdays and closures have no deadline, so they never fire.

With ``by: [label, …]`` each group of those labels seen so far is watched on its own; without it, any matching
sample keeps the one switch alive. The clock starts at the last sample in the store, or when there is none at the
instant the rule first watched its selector (kept by the engine across restarts and reloads), so a restart neither
resets nor trips the switch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Any, ClassVar

from alphawatch.daemon.calendar import TAIPEI, CalendarRangeError
from alphawatch.daemon.durations import parse_duration
from alphawatch.rules._base import (
    Condition,
    Evaluator,
    Labels,
    RuleKind,
    Sample,
    Selector,
    SettingError,
    selector_from,
)

_DEADLINE = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
LOOKBACK = 30 * 86400.0  # how far back a window's current opening or a previous trading day is looked for


class Absence(RuleKind):
    kind: ClassVar[str] = "absence"
    latest_only: ClassVar[bool] = True
    required: ClassVar[tuple[str, ...]] = ("metric",)
    schema: ClassVar[dict[str, Any]] = {
        "metric": {"type": "string", "minLength": 1},
        "match": {"$ref": "#/$defs/match"},
        "absent_for": {"$ref": "#/$defs/duration"},
        "during": {"type": "string", "description": "count the silence only while this window is on"},
        "deadline": {"type": "string", "pattern": _DEADLINE, "description": "HH:MM Asia/Taipei on each trading day"},
        "venue": {"type": "string", "description": "the calendar of `deadline` (default: the default venue)"},
        "by": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
    }

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.selector = selector_from(settings)
        absent_for = settings.get("absent_for")
        self.absent_for = parse_duration(absent_for) if absent_for else None
        self.during: str | None = settings.get("during")
        self.deadline: time | None = None
        if settings.get("deadline"):
            hours, minutes = settings["deadline"].split(":")
            self.deadline = time(int(hours), int(minutes))
        self.venue: str | None = settings.get("venue")
        self.by = tuple(settings.get("by", ()))
        if (self.absent_for is None) == (self.deadline is None):
            raise ValueError("an absence rule takes exactly one of absent_for and deadline")
        if self.during and self.deadline:
            raise SettingError(("during",), "`during` goes with absent_for, not with deadline")
        if self.venue and not self.deadline:
            raise SettingError(("venue",), "`venue` goes with deadline")
        if self.venue is not None and not re.match(r"^[a-z]+$", self.venue):
            raise SettingError(("venue",), f"not a venue: {self.venue!r}")

    def uses_calendar(self) -> bool:
        return self.deadline is not None or self.during is not None

    def window_names(self) -> tuple[str, ...]:
        return (self.during,) if self.during else ()

    def selectors(self) -> tuple[Selector, ...]:
        return (self.selector,)

    detail_names: ClassVar[frozenset[str] | None] = frozenset({"absent_for_s", "last_seen", "trading_day", "deadline"})
    instant_details: ClassVar[frozenset[str]] = frozenset({"last_seen", "deadline"})

    def alert_series(self, labels: Labels) -> Labels:
        """Its ``by`` labels (empty when the sample lacks one), or none: one switch for the whole selector."""
        if not self.by:
            return ()
        values = dict(labels)
        return tuple((name, values.get(name, "")) for name in self.by)

    def history(self) -> float:
        return self.absent_for if self.absent_for is not None and not self.during else LOOKBACK

    def new_evaluator(self, started_at: float) -> Evaluator:
        return _AbsenceEvaluator(self, started_at)


class _AbsenceEvaluator(Evaluator):
    def __init__(self, rule: Absence, started_at: float) -> None:
        self.rule = rule
        self.last_seen: dict[Labels, float] = {} if rule.by else {(): started_at}
        self.last_value: dict[Labels, float] = {}
        if rule.deadline is not None or rule.during is not None:
            if rule.context is None:
                raise ValueError("a market-aware absence rule needs the calendars")
            if rule.deadline is not None:
                calendars = rule.context.calendars
                self.calendar = calendars[rule.venue] if rule.venue else calendars.default

    def observe(self, sample: Sample) -> None:
        key = self.rule.alert_series(sample.labels)
        # the first sample replaces the start of the rule, which stood in while none was known: one restored from
        # the store after a restart is older than that start, and a restart must not reset the switch
        if key not in self.last_value or sample.ts >= self.last_seen[key]:
            self.last_seen[key] = sample.ts
            self.last_value[key] = sample.value

    def evaluate(self, now: float, is_firing: Mapping[Labels, bool]) -> tuple[list[Condition], float | None]:
        if self.rule.deadline is not None:
            return self._by_deadline(now)
        assert self.rule.absent_for is not None
        absent_for = self.rule.absent_for
        opened: float | None = None
        edge: float | None = None
        if self.rule.during is not None:
            assert self.rule.context is not None
            window = self.rule.context.windows[self.rule.during]
            edge = window.next_edge(now)
            if not window.active(now):
                return [Condition(k, False, self.last_value.get(k)) for k in self.last_seen], edge
            intervals = window.intervals(now - LOOKBACK, now + 1e-6)
            opened = intervals[-1][0] if intervals else now
        out: list[Condition] = []
        wake = edge
        for key, seen in self.last_seen.items():
            since = seen if opened is None else max(seen, opened)
            due = since + absent_for
            details = (("absent_for_s", absent_for), ("last_seen", seen))
            if now >= due:
                out.append(Condition(key, True, now - seen, details))
            else:
                out.append(Condition(key, False, self.last_value.get(key), details))
                wake = due if wake is None else min(wake, due)
        return out, wake

    def _by_deadline(self, now: float) -> tuple[list[Condition], float | None]:
        current = self._last_deadline(now)
        upcoming = self._next_deadline(now)
        out: list[Condition] = []
        for key, seen in self.last_seen.items():
            if current is None:
                out.append(Condition(key, False, self.last_value.get(key)))
                continue
            trading_day, due, window_start = current
            details = (("trading_day", trading_day.isoformat()), ("deadline", due), ("last_seen", seen))
            missing = seen <= window_start
            out.append(Condition(key, missing, (now - seen) if missing else self.last_value.get(key), details))
        return out, upcoming

    def _deadline_on(self, day: date) -> float:
        assert self.rule.deadline is not None
        return datetime.combine(day, self.rule.deadline, tzinfo=TAIPEI).timestamp()

    def _last_deadline(self, now: float) -> tuple[date, float, float] | None:
        """The latest trading day D whose deadline has passed, that deadline, and when D's expectation opened:
        the close of the trading day before D (a sample published that evening counts for D; a late one for the
        day before does not), or that day's own deadline when it falls later (with a deadline after the close,
        17:00 for an end-of-day report, the report of the day before is not D's)."""
        today = datetime.fromtimestamp(now, TAIPEI).date()
        try:
            day = today if self.calendar.is_trading_day(today) else self.calendar.previous_trading_day(today)
            if self._deadline_on(day) > now:
                day = self.calendar.previous_trading_day(day)
            previous = self.calendar.previous_trading_day(day)
        except CalendarRangeError:
            return None
        session, deadline = self.calendar.session(previous), self._deadline_on(previous)
        opens = max(session.close, deadline) if session is not None else deadline
        return day, self._deadline_on(day), opens

    def _next_deadline(self, now: float) -> float | None:
        day = datetime.fromtimestamp(now, TAIPEI).date() - timedelta(days=1)
        try:
            for _ in range(40):
                day = self.calendar.next_trading_day(day)
                due = self._deadline_on(day)
                if due > now:
                    return due
        except CalendarRangeError:
            return None
        return None
