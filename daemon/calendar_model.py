"""The calendar objects: venues, their phases and days, and one venue's :class:`Calendar` with its queries.

Everything is precomputed at build time into sorted lists, so each query is one or two bisections. Internally a
time is a float of UTC epoch seconds; local times are Asia/Taipei (UTC+8, no daylight saving).
"""

from __future__ import annotations

import enum
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

TAIPEI = timezone(timedelta(hours=8), "Asia/Taipei")
UTC_OFFSET = 8 * 3600
_EPOCH = date(1970, 1, 1).toordinal()
DAY = 86400


class DayKind(enum.StrEnum):
    """What happens on a calendar day."""

    TRADING = "trading"  # trading and settlement (the default for a weekday)
    WEEKEND = "weekend"  # the default for Saturday and Sunday
    HOLIDAY = "holiday"  # no trading, no settlement
    SETTLEMENT_ONLY = "settlement_only"  # no trading, settlement happens (the weekdays before Lunar New Year)
    MAKE_UP_SATURDAY = "make_up_saturday"  # a working Saturday with neither trading nor settlement
    CLOSURE = "closure"  # ad hoc (a typhoon): full, or partial with ``partial`` set


class CalendarRangeError(ValueError):
    """A query falls outside the days the calendar was computed for."""


@dataclass(frozen=True, slots=True)
class DayInfo:
    """One day that is not a plain weekday or weekend day, as the data files or the config describe it."""

    date: date
    kind: DayKind
    name: str = ""
    name_zh: str = ""
    source: str = ""
    status: str = "confirmed"  # confirmed | derived | unverified
    partial: tuple[int, int] | None = None  # for a partial closure: local seconds after midnight [from, to)
    note: str = ""
    origin: str = ""  # file:line (or "config") it came from

    def label(self, lang: str = "en") -> str:
        """The day's name in ``lang`` (``en`` or ``zh-TW``), falling back to the other language or the kind."""
        first, second = (self.name_zh, self.name) if lang.startswith("zh") else (self.name, self.name_zh)
        return first or second or self.kind.value


@dataclass(frozen=True, slots=True)
class Phase:
    """A phase of a venue's trading day, in local seconds after midnight of the day it starts on."""

    name: str
    start: int
    end: int  # past 86400 when the phase crosses midnight
    open: bool = False  # counts as "the market is open"
    track: str = "main"  # phases of one track never overlap; odd-lot trading runs on its own track
    next_day: bool = False  # belongs to the next trading day (TAIFEX's night session)
    name_zh: str = ""


@dataclass(frozen=True, slots=True)
class Venue:
    """A trading venue and the template of its trading day."""

    code: str
    name: str
    name_zh: str
    mic: str
    phases: tuple[Phase, ...]
    settlement_days: int = 2
    source: str = ""

    def phase(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)


@dataclass(frozen=True, slots=True)
class PhaseSpan:
    """One occurrence of a phase: ``[start, end)`` in UTC epoch seconds."""

    phase: str
    start: float
    end: float
    open: bool
    track: str


@dataclass(frozen=True, slots=True)
class Session:
    """Everything that belongs to one trading date. ``open``/``close`` bound the open phases of the day itself."""

    venue: str
    date: date
    phases: tuple[PhaseSpan, ...]
    open: float
    close: float
    partial: bool = False


def to_epoch(t: float | datetime) -> float:
    """UTC epoch seconds of ``t``. A naive datetime is an error: its zone is never guessed."""
    if isinstance(t, datetime):
        if t.tzinfo is None or t.utcoffset() is None:
            raise ValueError(f"naive datetime {t.isoformat()}: give a timezone (e.g. +08:00 or UTC)")
        return t.timestamp()
    return float(t)


def local_datetime(ts: float) -> datetime:
    """``ts`` as an Asia/Taipei datetime."""
    return datetime.fromtimestamp(ts, TAIPEI)


def day_start(d: date) -> float:
    """The UTC epoch of local midnight starting ``d``."""
    return float((d.toordinal() - _EPOCH) * DAY - UTC_OFFSET)


def _clip(start: int, end: int, cut: tuple[int, int] | None) -> list[tuple[int, int]]:
    if cut is None or end <= cut[0] or start >= cut[1]:
        return [(start, end)]
    return [piece for piece in ((start, cut[0]), (cut[1], end)) if piece[0] < piece[1] and piece[0] >= start]


NO_BUSINESS = (DayKind.HOLIDAY, DayKind.MAKE_UP_SATURDAY, DayKind.WEEKEND)
_WEEKEND_BUSINESS = (DayKind.TRADING, DayKind.SETTLEMENT_ONLY)  # the only kinds that open a Saturday or Sunday


def _template(venue: Venue, cut: tuple[int, int] | None) -> dict[str, tuple[list[float], list[int]]] | None:
    """The edges of one trading day per track, as (offsets, phase indexes); ``None`` if nothing open is left."""
    out: dict[str, tuple[list[float], list[int]]] = {p.track: ([], []) for p in venue.phases}
    pieces = sorted((s, e, i) for i, p in enumerate(venue.phases) for s, e in _clip(p.start, p.end, cut))
    if not any(venue.phases[i].open for _, _, i in pieces):
        return None
    for s, e, i in pieces:
        offs, vals = out[venue.phases[i].track]
        if offs and offs[-1] == s:
            vals[-1] = i
        else:
            offs.append(float(s))
            vals.append(i)
        offs.append(float(e))
        vals.append(-1)
    return out


@dataclass(frozen=True)
class Calendar:
    """One venue's calendar. Build with :meth:`build`; compare by data (venue, days, range), not by the indexes."""

    venue: Venue
    days: tuple[DayInfo, ...]
    first_day: date
    valid_until: date
    horizon: date  # last day computed; days past ``valid_until`` follow the plain weekly pattern
    _info: dict[int, DayInfo] = field(compare=False, repr=False)
    _trading: list[int] = field(compare=False, repr=False)
    _business: list[int] = field(compare=False, repr=False)
    _settle: list[int] = field(compare=False, repr=False)
    _tracks: dict[str, tuple[list[float], list[int]]] = field(compare=False, repr=False)
    _t: list[float] = field(compare=False, repr=False)
    _p: list[int] = field(compare=False, repr=False)
    _open: list[bool] = field(compare=False, repr=False)
    _opens: list[float] = field(compare=False, repr=False)
    _closes: list[float] = field(compare=False, repr=False)
    _lo: float = field(compare=False, repr=False)
    _hi: float = field(compare=False, repr=False)

    @classmethod
    def build(
        cls, venue: Venue, days: tuple[DayInfo, ...], first_day: date, valid_until: date, horizon: date
    ) -> Calendar:
        info = {d.date.toordinal(): d for d in days}
        a, b = first_day.toordinal(), horizon.toordinal()
        off = {o for o, d in info.items() if d.kind in NO_BUSINESS}
        extra = {o for o, d in info.items() if d.kind in _WEEKEND_BUSINESS and (o - 1) % 7 >= 5}
        business = sorted({o for o in range(a, b + 1) if (o - 1) % 7 < 5} - off | extra)
        closed = {o for o, d in info.items() if d.kind is DayKind.CLOSURE and d.partial is None}
        settle = [o for o in business if o not in closed]
        plain = _template(venue, None)
        layouts: list[tuple[float, dict[str, tuple[list[float], list[int]]]]] = []
        trading: list[int] = []
        for o in settle:
            day = info.get(o)
            if day is not None and day.kind is DayKind.SETTLEMENT_ONLY:
                continue
            layout = plain if day is None or day.partial is None else _template(venue, day.partial)
            if layout is not None:
                trading.append(o)
                layouts.append((float((o - _EPOCH) * DAY - UTC_OFFSET), layout))
        lo = day_start(first_day)
        tracks: dict[str, tuple[list[float], list[int]]] = {}
        for track in dict.fromkeys(p.track for p in venue.phases):
            times = [lo] + [base + x for base, lay in layouts for x in lay[track][0]]
            values = [-1] + [v for _, lay in layouts for v in lay[track][1]]
            tracks[track] = (times, values)
        t, p = tracks.get("main", ([lo], [-1]))
        flags = [i >= 0 and venue.phases[i].open for i in p]
        opens = [t[k] for k in range(1, len(t)) if flags[k] and not flags[k - 1]]
        closes = [t[k] for k in range(1, len(t)) if flags[k - 1] and not flags[k]]
        return cls(
            venue,
            days,
            first_day,
            valid_until,
            horizon,
            info,
            trading,
            business,
            settle,
            tracks,
            t,
            p,
            flags,
            opens,
            closes,
            lo,
            day_start(horizon + timedelta(days=1)),
        )

    # -- instants ---------------------------------------------------------------------------------------------

    def _index(self, ts: float | datetime) -> int:
        x = ts if type(ts) is float else to_epoch(ts)
        if not self._lo <= x < self._hi:
            raise CalendarRangeError(
                f"{local_datetime(x).isoformat()} is outside the {self.venue.code} calendar "
                f"({self.first_day} to {self.horizon}; data valid until {self.valid_until})"
            )
        return bisect_right(self._t, x) - 1

    def is_open(self, ts: float | datetime) -> bool:
        """Whether an open phase (e.g. continuous trading or the closing auction) is running at ``ts``."""
        return self._open[self._index(ts)]

    def phase_at(self, ts: float | datetime) -> str | None:
        """The main-track phase at ``ts`` (``pre_open``, ``continuous``...), or ``None`` when nothing runs."""
        i = self._p[self._index(ts)]
        return self.venue.phases[i].name if i >= 0 else None

    def phases_at(self, ts: float | datetime) -> tuple[str, ...]:
        """Every phase running at ``ts``, on all tracks (e.g. ``continuous`` and ``odd_lot``)."""
        x = ts if type(ts) is float else to_epoch(ts)
        self._index(x)
        out = []
        for t, p in self._tracks.values():
            i = p[bisect_right(t, x) - 1]
            if i >= 0:
                out.append(self.venue.phases[i].name)
        return tuple(out)

    def next_edge(self, ts: float | datetime) -> float | None:
        """The next instant after ``ts`` at which the main-track phase changes; ``None`` past the horizon."""
        i = self._index(ts) + 1
        return self._t[i] if i < len(self._t) else None

    def next_open(self, ts: float | datetime) -> float | None:
        """The next instant after ``ts`` at which the market opens."""
        x = ts if type(ts) is float else to_epoch(ts)
        self._index(x)
        i = bisect_right(self._opens, x)
        return self._opens[i] if i < len(self._opens) else None

    def next_close(self, ts: float | datetime) -> float | None:
        """The next instant after ``ts`` at which the market closes."""
        x = ts if type(ts) is float else to_epoch(ts)
        self._index(x)
        i = bisect_right(self._closes, x)
        return self._closes[i] if i < len(self._closes) else None

    # -- dates ------------------------------------------------------------------------------------------------

    def _ordinal(self, d: date) -> int:
        if isinstance(d, datetime) or not isinstance(d, date):
            raise TypeError(f"expected a datetime.date, got {type(d).__name__}")
        if not self.first_day <= d <= self.horizon:
            raise CalendarRangeError(
                f"{d} is outside the {self.venue.code} calendar ({self.first_day} to {self.horizon})"
            )
        return d.toordinal()

    def day(self, d: date) -> DayInfo:
        """What ``d`` is: the data's entry, or a plain trading day or weekend day."""
        o = self._ordinal(d)
        found = self._info.get(o)
        if found is not None:
            return found
        return DayInfo(d, DayKind.WEEKEND if d.weekday() >= 5 else DayKind.TRADING)

    def is_trading_day(self, d: date) -> bool:
        o = self._ordinal(d)
        i = bisect_left(self._trading, o)
        return i < len(self._trading) and self._trading[i] == o

    def is_settlement_day(self, d: date) -> bool:
        """Whether settlement happens on ``d``: trading days, settlement-only days and partial closures."""
        o = self._ordinal(d)
        i = bisect_left(self._settle, o)
        return i < len(self._settle) and self._settle[i] == o

    def is_extrapolated(self, d: date) -> bool:
        """Whether ``d`` lies past ``valid_until``, where the calendar only assumes the weekly pattern."""
        return d > self.valid_until

    def _pick(self, days: list[int], i: int) -> date:
        if not 0 <= i < len(days):
            raise CalendarRangeError(f"the answer falls outside the {self.venue.code} calendar")
        return date.fromordinal(days[i])

    def next_trading_day(self, d: date) -> date:
        """The first trading day strictly after ``d``."""
        return self._pick(self._trading, bisect_right(self._trading, self._ordinal(d)))

    def previous_trading_day(self, d: date) -> date:
        """The last trading day strictly before ``d``."""
        return self._pick(self._trading, bisect_left(self._trading, self._ordinal(d)) - 1)

    def trading_days(self, start: date, end: date) -> tuple[date, ...]:
        """Trading days from ``start`` to ``end``, both included."""
        i, j = bisect_left(self._trading, self._ordinal(start)), bisect_right(self._trading, self._ordinal(end))
        return tuple(date.fromordinal(o) for o in self._trading[i:j])

    def count_trading_days(self, start: date, end: date) -> int:
        """How many trading days from ``start`` to ``end``, both included."""
        return max(
            0, bisect_right(self._trading, self._ordinal(end)) - bisect_left(self._trading, self._ordinal(start))
        )

    def add_trading_days(self, d: date, n: int) -> date:
        """The ``n``-th trading day after ``d`` (before it when ``n`` < 0); ``n`` = 0 requires a trading day."""
        o = self._ordinal(d)
        if n > 0:
            return self._pick(self._trading, bisect_right(self._trading, o) + n - 1)
        if n < 0:
            return self._pick(self._trading, bisect_left(self._trading, o) + n)
        if not self.is_trading_day(d):
            raise ValueError(f"{d} is not a {self.venue.code} trading day")
        return d

    def settlement_date(self, trade_date: date, days: int | None = None) -> date:
        """When a trade of ``trade_date`` settles: T+N counted in settlement days, not trading days.

        The count runs over the scheduled business days (trading and settlement-only days; holidays and make-up
        Saturdays never count). An ad hoc closure was scheduled as a business day, so it counts, and settlement due
        on it moves to the next day that settles, as the exchange's natural-disaster rules say.
        """
        n = self.venue.settlement_days if days is None else days
        if n < 0:
            raise ValueError("settlement days must be 0 or more")
        if not self.is_trading_day(trade_date):
            raise ValueError(f"{trade_date} is not a {self.venue.code} trading day")
        o = trade_date.toordinal()
        due = o if n == 0 else self._pick(self._business, bisect_right(self._business, o) + n - 1).toordinal()
        return self._pick(self._settle, bisect_left(self._settle, due))

    def non_trading_days(self, start: date, end: date) -> tuple[DayInfo, ...]:
        """Every day from ``start`` to ``end`` that is not a trading day, except plain weekends."""
        out = []
        for o in range(self._ordinal(start), self._ordinal(end) + 1):
            info = self._info.get(o)
            if info is not None and (info.kind is not DayKind.TRADING) and not self.is_trading_day(info.date):
                out.append(info)
            elif info is None and (o - 1) % 7 < 5 and not self.is_trading_day(date.fromordinal(o)):
                out.append(DayInfo(date.fromordinal(o), DayKind.HOLIDAY))
        return tuple(out)

    def session(self, d: date) -> Session | None:
        """The session of trading date ``d`` (with a night session of the evening before), or ``None``."""
        if not self.is_trading_day(d):
            return None
        spans = self._spans(d, day_part=True)
        if any(p.next_day for p in self.venue.phases) and d > self.first_day:
            try:
                before = self.previous_trading_day(d)
            except CalendarRangeError:
                pass
            else:
                spans = self._spans(before, day_part=False) + spans
        opens = [s for s in spans if s.open and s.start >= day_start(d)]
        if not opens:  # a partial closure took the whole day session (what is left belongs to the next date)
            return None
        info = self._info.get(d.toordinal())
        return Session(
            self.venue.code,
            d,
            tuple(sorted(spans, key=lambda s: (s.start, s.track))),
            min(s.start for s in opens),
            max(s.end for s in opens),
            partial=info is not None and info.partial is not None,
        )

    def _spans(self, d: date, *, day_part: bool) -> tuple[PhaseSpan, ...]:
        info = self._info.get(d.toordinal())
        cut = info.partial if info else None
        base = day_start(d)
        return tuple(
            PhaseSpan(p.name, base + s, base + e, p.open, p.track)
            for p in self.venue.phases
            if p.next_day != day_part
            for s, e in _clip(p.start, p.end, cut)
        )

    def sessions(self, start: date, end: date) -> tuple[Session, ...]:
        """The sessions of the trading days from ``start`` to ``end``, both included."""
        return tuple(s for d in self.trading_days(start, end) if (s := self.session(d)) is not None)

    def trading_date_at(self, ts: float | datetime) -> date | None:
        """The trading date the phase running at ``ts`` belongs to (a night session belongs to the next one)."""
        i = self._p[self._index(ts)]
        if i < 0:
            return None
        local = local_datetime(to_epoch(ts))
        phase = self.venue.phases[i]
        started = local.date() if local.hour * 3600 + local.minute * 60 >= phase.start else local.date() - timedelta(1)
        return self.next_trading_day(started) if phase.next_day else started
