"""``alphawatch calendar show | next | settle | check``: the market calendars from the command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from alphawatch.daemon.calendar import (
    Calendar,
    CalendarRangeError,
    Calendars,
    DayInfo,
    PhaseSpan,
    check_calendar_files,
    load_calendars,
    local_datetime,
    to_epoch,
)
from alphawatch.daemon.cli import config_path
from alphawatch.daemon.errors import ConfigError, Problem
from alphawatch.daemon.yamlpos import load_located

KIND_ZH = {
    "trading": "交易日",
    "weekend": "週末",
    "holiday": "休市",
    "settlement_only": "市場無交易，僅辦理結算交割",
    "make_up_saturday": "補行上班日（不交易亦不交割）",
    "closure": "臨時休市",
}
WEEKDAY_ZH = "一二三四五六日"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``calendar`` command and its subcommands to the ``alphawatch`` parser."""
    parser = subparsers.add_parser(
        "calendar", help="market calendars: sessions, holidays, settlement", description="Taiwan market calendars."
    )

    def usage(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=usage)
    commands = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--venue", default=None, help="twse (default), tpex or taifex")
        p.add_argument("--lang", choices=("en", "zh-TW"), default="en", help="language of names (default en)")
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
        p.add_argument("--config", type=config_path, help="apply this configuration's calendar: section")

    show = commands.add_parser(
        "show", help="sessions and non-trading days", description="List days from --from to --to."
    )
    common(show)
    show.add_argument("--from", dest="start", type=_date, default=None, help="first day (default today)")
    show.add_argument("--to", dest="end", type=_date, default=None, help="last day (default 13 days after --from)")
    show.add_argument("--all", action="store_true", help="list weekends too")
    show.set_defaults(func=cmd_show)

    nxt = commands.add_parser("next", help="is it open, which phase, next edge", description="The state at a time.")
    common(nxt)
    nxt.add_argument("--at", type=_instant, default=None, help="ISO time with offset, e.g. 2025-01-22T09:00+08:00")
    nxt.set_defaults(func=cmd_next)

    settle = commands.add_parser("settle", help="settlement date of a trade date", description="T+N settlement.")
    common(settle)
    settle.add_argument("trade_date", type=_date, help="YYYY-MM-DD")
    settle.add_argument("--days", type=int, default=None, help="N of T+N (default: the venue's, 2 for stocks)")
    settle.set_defaults(func=cmd_settle)

    check = commands.add_parser("check", help="validate calendar data files", description="Check data files.")
    check.add_argument("files", nargs="*", help="extra days-YYYY.yaml files (the shipped ones are always checked)")
    check.set_defaults(func=cmd_check)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (write YYYY-MM-DD)") from None


def _instant(text: str) -> float:
    try:
        return to_epoch(datetime.fromisoformat(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}" if "naive" in str(exc) else f"not an ISO time: {text!r}") from None


def _load(args: argparse.Namespace) -> Calendars:
    if args.config is None:
        return load_calendars()
    path = Path(args.config)
    doc, problems = load_located(path.read_text(encoding="utf-8"), str(path))
    if problems:
        raise ConfigError(problems)
    section = doc.data.get("calendar") if isinstance(doc.data, dict) else None

    def locate(p: tuple[str | int, ...], message: str) -> Problem:
        return doc.problem(("calendar", *p), message)

    return load_calendars(section, locate=locate, base_dir=path.parent)


def _run(args: argparse.Namespace, body: Any) -> int:
    try:
        cals = _load(args)
        cal = cals[args.venue] if args.venue else cals.default
        out = body(cal, args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (KeyError, ValueError, OverflowError, OSError) as exc:
        print(f"alphawatch calendar: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, ensure_ascii=False, indent=2) if args.json else out)
    return 0


def _iso(ts: float | None) -> str | None:
    return None if ts is None else local_datetime(ts).isoformat()


def _hm(ts: float, day: date) -> str:
    local = local_datetime(ts)
    return f"{local:%H:%M}" if local.date() == day else f"{local:%m-%d %H:%M}"


def _span_text(span: PhaseSpan, day: date) -> str:
    return f"{_hm(span.start, day)}–{_hm(span.end, local_datetime(span.start).date())}"


def _span_json(span: PhaseSpan) -> dict[str, Any]:
    return {
        "phase": span.phase,
        "start": _iso(span.start),
        "end": _iso(span.end),
        "open": span.open,
        "track": span.track,
    }


def _phase_name(cal: Calendar, name: str | None, lang: str) -> str:
    phase = cal.venue.phase(name) if name else None
    if phase is None:
        return "closed" if lang == "en" else "休市"
    return phase.name_zh if lang == "zh-TW" and phase.name_zh else phase.name


def _kind(info: DayInfo, lang: str) -> str:
    return KIND_ZH[info.kind.value] if lang == "zh-TW" else info.kind.value


def cmd_show(args: argparse.Namespace) -> int:
    def body(cal: Calendar, args: argparse.Namespace) -> Any:
        start = args.start or local_datetime(time.time()).date()
        end = args.end or min(start, date.max - timedelta(days=13)) + timedelta(days=13)
        if end < start:
            raise ValueError(f"--to {end} is before --from {start}")
        days = [start + timedelta(n) for n in range((end - start).days + 1)]
        rows: list[dict[str, Any]] = []
        lines = [f"{cal.venue.name_zh if args.lang == 'zh-TW' else cal.venue.name} ({cal.venue.code}) {start} – {end}"]
        for d in days:
            info, session = cal.day(d), cal.session(d)
            if info.kind.value == "weekend" and not args.all:
                continue
            label = info.label(args.lang) if info.name or info.name_zh else ""
            week = f"週{WEEKDAY_ZH[d.weekday()]}" if args.lang == "zh-TW" else f"{d:%a}"
            row: dict[str, Any] = {
                "date": d.isoformat(),
                "weekday": f"{d:%a}",
                "kind": info.kind.value,
                "name": label,
                "trading": session is not None,
                "settlement": cal.is_settlement_day(d),
                "extrapolated": cal.is_extrapolated(d),
            }
            text = f"{d} {week}  {_kind(info, args.lang):<16}"
            if info.source:
                row["source"] = info.source
            if session is not None:
                row["session"] = {
                    "open": _iso(session.open),
                    "close": _iso(session.close),
                    "phases": [_span_json(s) for s in session.phases],
                }
                text += f" {_hm(session.open, d)}–{_hm(session.close, d)}  " + ", ".join(
                    f"{_phase_name(cal, s.phase, args.lang)} {_span_text(s, d)}" for s in session.phases
                )
            if label and label != _kind(info, args.lang):
                text += f"  {label}"
            text += _assumed(cal, d, args.lang)
            rows.append(row)
            lines.append(text.rstrip())
        if args.json:
            return {
                "venue": cal.venue.code,
                "from": start.isoformat(),
                "to": end.isoformat(),
                "valid_until": cal.valid_until.isoformat(),
                "days": rows,
            }
        return "\n".join(lines)

    return _run(args, body)


def cmd_next(args: argparse.Namespace) -> int:
    def body(cal: Calendar, args: argparse.Namespace) -> Any:
        ts = args.at if args.at is not None else time.time()
        phase, edge = cal.phase_at(ts), cal.next_edge(ts)
        try:
            after = cal.phase_at(edge) if edge is not None else None
        except CalendarRangeError:
            after = None
        trading_date = cal.trading_date_at(ts)
        out: dict[str, Any] = {
            "venue": cal.venue.code,
            "at": _iso(ts),
            "open": cal.is_open(ts),
            "phase": phase,
            "phases": list(cal.phases_at(ts)),
            "trading_date": trading_date and trading_date.isoformat(),
            "next_edge": {"at": _iso(edge), "phase": after},
            "next_open": _iso(cal.next_open(ts)),
            "next_close": _iso(cal.next_close(ts)),
        }
        if args.json:
            return out
        state = ("open" if out["open"] else "closed") if args.lang == "en" else ("開市" if out["open"] else "休市")
        assumed = _assumed(cal, local_datetime(ts).date(), args.lang)
        return "\n".join(
            [
                f"{cal.venue.code} {out['at']}: {state}, {_phase_name(cal, phase, args.lang)}{assumed}",
                f"next edge  {out['next_edge']['at']} → {_phase_name(cal, after, args.lang)}",
                f"next open  {out['next_open']}",
                f"next close {out['next_close']}",
            ]
        )

    return _run(args, body)


def cmd_settle(args: argparse.Namespace) -> int:
    def body(cal: Calendar, args: argparse.Namespace) -> Any:
        n = cal.venue.settlement_days if args.days is None else args.days
        settles = cal.settlement_date(args.trade_date, n)
        if args.json:
            return {
                "venue": cal.venue.code,
                "trade_date": args.trade_date.isoformat(),
                "days": n,
                "settlement_date": settles.isoformat(),
                "extrapolated": cal.is_extrapolated(settles),
            }
        return f"{cal.venue.code} T+{n}: {args.trade_date} → {settles}{_assumed(cal, settles, args.lang)}"

    return _run(args, body)


def _assumed(cal: Calendar, day: date, lang: str) -> str:
    """A note on an answer about a day past the calendar's data (plain weekdays are assumed there)."""
    if not cal.is_extrapolated(day):
        return ""
    return "  (past the data: assumed)" if lang == "en" else "  （超出資料範圍：推定）"


def cmd_check(args: argparse.Namespace) -> int:
    problems = check_calendar_files(list(args.files))
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print("calendar data OK")
    return 1 if problems else 0
