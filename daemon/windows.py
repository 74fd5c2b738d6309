"""Market-hour windows: named spans of time built from calendar phases, day kinds and other windows.

A window is a sorted list of edges (the instants its state flips), so :meth:`Window.active` and
:meth:`Window.next_edge` are one bisection each, and the daemon sleeps until the exact next edge instead of polling.

    windows:
      after_close: {from: close, to: close+3h}          # per merged run of open phases, twse by default
      before_open: {from: open-30m, to: open}
      futures_night: {venue: taifex, phases: night}
      quiet: {not: trading}
      holidays: {days: non_trading}
      either: {any_of: [pre_open, after_close]}
"""

from __future__ import annotations

import re
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import trio

from alphawatch.daemon.calendar import Calendar, Calendars, Locate, to_epoch
from alphawatch.daemon.calendar_model import _EPOCH, DAY, UTC_OFFSET
from alphawatch.daemon.durations import parse_duration
from alphawatch.daemon.errors import ConfigError, Problem
from alphawatch.daemon.yamlpos import format_path

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
DURATION = r"([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w))+"
SIGNED_DURATION_PATTERN = rf"^[+-]?{DURATION}$"
ANCHOR_PATTERN = rf"^(open|close|start|end)\s*([+-]\s*{DURATION})?$"
DAY_SETS = ("trading", "non_trading", "settlement", "non_settlement")
_ANCHOR = re.compile(ANCHOR_PATTERN)

_NAMES = {"type": "array", "items": {"type": "string"}, "minItems": 1}
WINDOW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "venue": {"type": "string"},
        "phases": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
        "from": {"type": "string", "pattern": ANCHOR_PATTERN, "description": "open|close|start|end, +/- a duration"},
        "to": {"type": "string", "pattern": ANCHOR_PATTERN},
        "start_offset": {"type": "string", "pattern": SIGNED_DURATION_PATTERN},
        "end_offset": {"type": "string", "pattern": SIGNED_DURATION_PATTERN},
        "span": {"type": "boolean", "description": "one interval per trading date, first phase start to last end"},
        "days": {"enum": [*DAY_SETS]},
        "not": {"type": "string"},
        "any_of": _NAMES,
        "all_of": _NAMES,
        "description": {"type": "string"},
    },
}
WINDOWS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "propertyNames": {"pattern": NAME_PATTERN},
    "additionalProperties": WINDOW_SCHEMA,
    "description": "Named market-hour windows, for rules' active_during / muted_during.",
}
"""JSON Schema of the config's ``windows:`` section."""
WINDOW_REF_SCHEMA: dict[str, Any] = {"type": "string", "pattern": r"^([a-z]+\.)?[a-z][a-z0-9_]*$"}
"""JSON Schema of a reference to a window (``trading``, ``taifex.night``), for ``active_during``/``muted_during``."""


def parse_signed_duration(text: str) -> float:
    """``-30m`` → -1800.0; ``3h`` and ``+3h`` → 10800.0. Raise ``ValueError`` on anything else."""
    text = text.replace(" ", "")
    sign = -1.0 if text.startswith("-") else 1.0
    return sign * float(parse_duration(text.lstrip("+-")))


def _anchor(text: str) -> tuple[str, float]:
    found = _ANCHOR.match(text.strip())
    if found is None:
        raise ValueError(f"not an anchor: {text!r} (write e.g. open, close+3h, open-30m)")
    where = {"open": "start", "close": "end"}.get(found[1], found[1])
    return where, parse_signed_duration(found[2]) if found[2] else 0.0


@dataclass(frozen=True)
class WindowSpec:
    """A window's definition, checked, with names resolved to a venue."""

    kind: str  # phases | days | not | any_of | all_of
    venue: str = ""
    phases: tuple[str, ...] = ()
    start: tuple[str, float] = ("start", 0.0)
    end: tuple[str, float] = ("end", 0.0)
    span: bool = False
    days: str = ""
    refs: tuple[str, ...] = ()


Edges = tuple[bool, list[float]]


@dataclass(frozen=True)
class Window:
    """A named window. Equal windows (same spec, same calendar data) need no restart on reload."""

    name: str
    spec: WindowSpec
    calendar: Calendar | None = None
    parts: tuple[Window, ...] = ()

    @cached_property
    def _edges(self) -> Edges:
        return _compile(self)

    def active(self, ts: float | datetime) -> bool:
        """Whether the window is on at ``ts`` (on ``[start, end)``: on at the exact start, off at the end)."""
        x = ts if type(ts) is float else to_epoch(ts)
        initial, edges = self._edges
        return initial ^ (bisect_right(edges, x) & 1 == 1)

    def next_edge(self, ts: float | datetime) -> float | None:
        """The first instant after ``ts`` at which :meth:`active` changes, or ``None`` past the calendar's end."""
        x = ts if type(ts) is float else to_epoch(ts)
        edges = self._edges[1]
        i = bisect_right(edges, x)
        return edges[i] if i < len(edges) else None

    def intervals(self, start: float | datetime, end: float | datetime) -> list[tuple[float, float]]:
        """The ``[on, off)`` intervals that overlap ``[start, end)``, clipped to it."""
        lo, hi = to_epoch(start), to_epoch(end)
        out: list[tuple[float, float]] = []
        cursor = lo
        while cursor < hi:
            nxt = self.next_edge(cursor)
            stop = hi if nxt is None else min(nxt, hi)
            if self.active(cursor):
                out.append((cursor, stop))
            cursor = stop
        return out


async def wait_edge(window: Window, *, now: Callable[[], float] = time.time) -> float | None:
    """Sleep until the window's next edge by the wall clock ``now`` and return it (``None``: no edge ahead)."""
    edge = window.next_edge(now())
    if edge is None:
        return None
    while (left := edge - now()) > 0:  # noqa: ASYNC110 (the wall clock can lag trio's; sleep again)
        await trio.sleep(left)
    return edge


def _merge(intervals: list[tuple[float, float]]) -> list[float]:
    out: list[float] = []
    for s, e in sorted(intervals):
        if e <= s:
            continue
        if out and s <= out[-1]:
            out[-1] = max(out[-1], e)
        else:
            out += [s, e]
    return out


def _compile(w: Window) -> Edges:
    spec = w.spec
    if spec.kind == "not":
        initial, edges = w.parts[0]._edges
        return not initial, edges
    if spec.kind in ("any_of", "all_of"):
        pick = any if spec.kind == "any_of" else all
        times = sorted({x for p in w.parts for x in p._edges[1]})
        state = pick(p._edges[0] for p in w.parts)
        initial, out = state, []
        for x in times:
            now = pick(p.active(x) for p in w.parts)
            if now != state:
                out.append(x)
                state = now
        return initial, out
    cal = w.calendar
    assert cal is not None
    if spec.kind == "days":
        ords = cal._settle if spec.days.endswith("settlement") else cal._trading
        runs = _merge(
            [(float((o - _EPOCH) * DAY - UTC_OFFSET), float((o + 1 - _EPOCH) * DAY - UTC_OFFSET)) for o in ords]
        )
        return spec.days.startswith("non_"), runs
    return False, _merge(_phase_pieces(cal, spec))


def _phase_pieces(cal: Calendar, spec: WindowSpec) -> list[tuple[float, float]]:
    wanted = {i for i, p in enumerate(cal.venue.phases) if p.name in spec.phases}
    spans: list[tuple[float, float, int]] = []
    for t, p in cal._tracks.values():
        spans += [(t[k], t[k + 1], p[k]) for k in range(len(p) - 1) if p[k] in wanted]
    if spec.span:
        groups: dict[int, list[tuple[float, float]]] = {}
        for s, e, i in spans:
            o = int((s + UTC_OFFSET) // DAY) + _EPOCH
            if cal.venue.phases[i].next_day:
                o = cal._trading[bisect_right(cal._trading, o)] if o < cal._trading[-1] else o + 1
            groups.setdefault(o, []).append((s, e))
        runs = sorted(run for pieces in groups.values() for run in _spanned(pieces))
    else:
        merged = _merge([(s, e) for s, e, _ in spans])
        runs = list(zip(merged[::2], merged[1::2], strict=True))
    (a_where, a_off), (b_where, b_off) = spec.start, spec.end
    return [((s if a_where == "start" else e) + a_off, (s if b_where == "start" else e) + b_off) for s, e in runs]


SPAN_GAP_AT_MOST = 12 * 3600.0
"""A trading date's phases, first to last, are one span unless a longer gap parts them: a Friday's night session
belongs to Monday's date, and the weekend between is not market hours."""


def _spanned(pieces: list[tuple[float, float]]) -> list[tuple[float, float]]:
    runs: list[tuple[float, float]] = []
    for start, end in sorted(pieces):
        if runs and start - runs[-1][1] <= SPAN_GAP_AT_MOST:
            runs[-1] = (runs[-1][0], max(runs[-1][1], end))
        else:
            runs.append((start, end))
    return runs


def predefined(calendars: Calendars) -> dict[str, WindowSpec]:
    """The windows every config has: per venue ``<venue>.<name>``, and unprefixed for the default venue."""
    out: dict[str, WindowSpec] = {}
    for cal in calendars.calendars:
        v = cal.venue
        day_open = tuple(p.name for p in v.phases if p.open and not p.next_day and p.track == "main")
        specs = {p.name: WindowSpec("phases", v.code, (p.name,)) for p in v.phases}
        specs |= {
            "trading": WindowSpec("phases", v.code, tuple(p.name for p in v.phases if p.open and p.track == "main")),
            "day_session": WindowSpec("phases", v.code, day_open, span=True),
            "market_hours": WindowSpec("phases", v.code, tuple(p.name for p in v.phases), span=True),
            "before_open": WindowSpec("phases", v.code, day_open, ("start", -1800.0), ("start", 0.0), span=True),
            "after_close": WindowSpec("phases", v.code, day_open, ("end", 0.0), ("end", 10800.0), span=True),
        }
        specs |= {f"{name}_day": WindowSpec("days", v.code, days=name) for name in DAY_SETS}
        specs["closed"] = WindowSpec("not", v.code, refs=(f"{v.code}.trading",))
        out |= {f"{v.code}.{name}": spec for name, spec in specs.items()}
        if v.code == calendars.default_venue:
            out |= {name: spec for name, spec in specs.items() if spec.kind != "not"}
            out["closed"] = specs["closed"]
    return out


class Windows(Mapping[str, Window]):
    """Every window by name: the predefined ones and the config's. Built lazily, compared by content."""

    def __init__(self, specs: Mapping[str, WindowSpec], calendars: Calendars) -> None:
        self._specs = dict(specs)
        self._calendars = calendars
        self._built: dict[str, Window] = {}

    def __getitem__(self, name: str) -> Window:
        found = self._built.get(name)
        if found is None:
            spec = self._specs[name]
            parts = tuple(self[ref] for ref in spec.refs)
            cal = self._calendars[spec.venue] if spec.kind in ("phases", "days") else None
            found = self._built[name] = Window(name, spec, cal, parts)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Windows) and self._specs == other._specs and self._calendars == other._calendars

    __hash__ = None  # type: ignore[assignment]


def _config_locator(path: tuple[str | int, ...], message: str) -> Problem:
    return Problem("config", 0, 0, format_path(("windows", *path)), message)


def build_windows(config: Mapping[str, Any] | None, calendars: Calendars, *, locate: Locate | None = None) -> Windows:
    """The windows of the config's ``windows:`` section (see :data:`WINDOWS_SCHEMA`) plus the predefined ones.

    Raises:
        ConfigError: unknown venue, phase or window; a bad anchor or offset; a definition referring to itself.
    """
    where = locate or _config_locator
    problems: list[Problem] = []
    specs = predefined(calendars)
    raw_all = dict(config or {})
    for name, raw in raw_all.items():

        def bad(key: tuple[str, ...], message: str, name: str = str(name)) -> None:
            problems.append(where((name, *key), message))

        spec = _spec(str(name), raw, calendars, bad)
        if spec is not None:
            specs[str(name)] = spec
    for name, spec in specs.items():
        for ref in spec.refs:
            if ref not in specs:
                problems.append(where((name,), f"unknown window {ref!r}"))
    if not problems:
        problems += [where((name,), message) for name, message in _cycles(specs)]
    if problems:
        raise ConfigError(problems)
    return Windows(specs, calendars)


def _spec(name: str, raw: Any, calendars: Calendars, bad: Callable[[tuple[str, ...], str], None]) -> WindowSpec | None:
    if not re.match(NAME_PATTERN, name):
        bad((), "a window name is lower_case letters, digits and _")
        return None
    if not isinstance(raw, dict) or not raw:
        bad((), "expected a mapping such as {phases: continuous} or {not: trading}")
        return None
    kinds = [k for k in ("not", "any_of", "all_of", "days") if k in raw]
    shaped = [k for k in ("phases", "from", "to", "start_offset", "end_offset", "span") if k in raw]
    if len(kinds) + bool(shaped) != 1:
        bad((), "give exactly one of: phases/from/to, days, not, any_of, all_of")
        return None
    venue = raw.get("venue", calendars.default_venue)
    if venue not in calendars:
        bad(("venue",), f"unknown venue {venue!r} (known: {', '.join(calendars.venues)})")
        return None
    if kinds and kinds[0] == "not":
        if not isinstance(raw["not"], str):
            bad(("not",), "expected a window name")
            return None
        return WindowSpec("not", venue, refs=(raw["not"],))
    if kinds and kinds[0] in ("any_of", "all_of"):
        refs = raw[kinds[0]]
        if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
            bad((kinds[0],), "expected a list of window names")
            return None
        return WindowSpec(kinds[0], venue, refs=tuple(refs))
    if kinds:
        if raw["days"] not in DAY_SETS:
            bad(("days",), f"expected one of {', '.join(DAY_SETS)}")
            return None
        return WindowSpec("days", venue, days=raw["days"])
    venue_phases = calendars[venue].venue.phases
    phases = raw.get("phases", [p.name for p in venue_phases if p.open and p.track == "main"])
    phases = [phases] if isinstance(phases, str) else phases
    unknown = [p for p in phases if all(p != q.name for q in venue_phases)]
    if unknown:
        bad(("phases",), f"unknown phase {unknown[0]!r} of {venue} (known: {', '.join(q.name for q in venue_phases)})")
        return None
    parsed: dict[str, Any] = {}
    for key, parse, default in (("from", _anchor, "start"), ("to", _anchor, "end"),
                                ("start_offset", parse_signed_duration, "0s"),
                                ("end_offset", parse_signed_duration, "0s")):  # fmt: skip
        try:
            parsed[key] = parse(raw.get(key, default))
        except (ValueError, TypeError, AttributeError) as exc:
            bad((key,) if key in raw else (), str(exc))
            return None
    start = (parsed["from"][0], parsed["from"][1] + parsed["start_offset"])
    end = (parsed["to"][0], parsed["to"][1] + parsed["end_offset"])
    return WindowSpec("phases", venue, tuple(phases), start, end, bool(raw.get("span", False)))


def _cycles(specs: Mapping[str, WindowSpec]) -> list[tuple[str, str]]:
    state: dict[str, int] = {}
    found: list[tuple[str, str]] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            found.append((name, "refers to itself: " + " → ".join((*trail[trail.index(name) :], name))))
            return
        state[name] = 1
        for ref in specs[name].refs:
            visit(ref, (*trail, name))
        state[name] = 2

    for name in specs:
        visit(name, ())
    return found
