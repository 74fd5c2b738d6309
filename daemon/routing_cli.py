"""``alphawatch routes test``: which routes and channels an alert with given labels reaches at an instant."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from typing import Any

from alphawatch.daemon.calendar import local_datetime
from alphawatch.daemon.cli import DEFAULT_CONFIG, config_path
from alphawatch.daemon.durations import format_duration
from alphawatch.daemon.errors import ConfigError, Problem
from alphawatch.daemon.routing import (
    GROUP_ALL,
    RouteNode,
    WindowActive,
    group_labels,
    hold_window,
    release_at,
    trace_routes,
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``routes`` command and its ``test`` subcommand to the ``alphawatch`` parser."""
    parser = subparsers.add_parser("routes", help="the routing tree", description="Inspect the routing tree.")

    def usage(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=usage)
    commands = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND")
    test = commands.add_parser(
        "test",
        help="which routes and channels an alert reaches",
        description="Walk the routing tree for an alert with these labels, at --at (default now), and print the "
        "routes and channels it reaches, the routes skipped for their windows, and held notifications.",
    )
    test.add_argument("-c", "--config", type=config_path, default=DEFAULT_CONFIG, help="configuration file")
    test.add_argument("--labels", nargs="+", required=True, metavar="K=V", type=_label, help="the alert's labels")
    test.add_argument("--at", type=_instant, default=None, help="ISO time with offset, or epoch seconds; default now")
    test.add_argument("--json", action="store_true", help="print JSON for scripts")
    test.set_defaults(func=cmd_test)


def _label(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"not a label: {text!r} (write name=value)")
    return name, value.strip('"')


def _instant(text: str) -> float:
    try:
        ts = float(text)
    except ValueError:
        ts = _iso_instant(text)
    try:
        local_datetime(ts)
    except (OverflowError, OSError, ValueError):  # NaN, infinite, or past year 9999
        raise argparse.ArgumentTypeError(f"out of range: {text!r}") from None
    return ts


def _iso_instant(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the offset, e.g. {text}+08:00")
    return moment.timestamp()


def cmd_test(args: argparse.Namespace) -> int:
    from alphawatch.daemon.config import load_config

    try:
        config = load_config(args.config)
        if config.route is None:
            raise ConfigError([Problem(str(args.config), 0, 0, "route", "no route: section")])
        tree, windows = config.route, config.windows
        at = time.time() if args.at is None else args.at
        labels = dict(args.labels)

        def active(name: str, ts: float) -> bool:
            return windows[name].active(ts)

        def next_edge(name: str, ts: float) -> float | None:
            return windows[name].next_edge(ts)

        routing = trace_routes(tree, labels, at=at, window_active=active)
        out = _report(routing.routes, routing.muted, labels, at, active, next_edge)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (KeyError, ValueError, OverflowError, OSError) as exc:
        print(f"alphawatch routes: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, ensure_ascii=False, indent=2) if args.json else _text(out))
    return 0


def _report(
    routes: tuple[RouteNode, ...],
    muted: tuple[RouteNode, ...],
    labels: dict[str, str],
    at: float,
    active: WindowActive | None,
    next_edge: Any,
) -> dict[str, Any]:
    rows = []
    for node in routes:
        row: dict[str, Any] = {
            "route": node.path,
            "matchers": [f"{m.name}{m.op}{json.dumps(m.value)}" for m in node.matchers],
            "channels": list(node.channels),
            "group_by": "..." if node.group_by is GROUP_ALL else list(node.group_by),
            "group_labels": group_labels(node, labels),
            "group_wait": format_duration(node.group_wait),
            "group_interval": format_duration(node.group_interval),
            "repeat_interval": format_duration(node.repeat_interval),
        }
        hold = hold_window(node, labels)
        if hold is not None and active is not None:
            release = release_at(node, labels, at, window_active=active, next_edge=next_edge)
            row["held_until"] = {"window": hold, "at": _iso(release)} if release > at else None
        rows.append(row)
    return {
        "at": _iso(at),
        "labels": labels,
        "routes": rows,
        "channels": list(dict.fromkeys(c for r in routes for c in r.channels)),
        "skipped_for_windows": [
            {"route": n.path, "active_during": list(n.active_during), "muted_during": list(n.muted_during)}
            for n in muted
        ],
    }


def _iso(ts: float) -> str:
    return local_datetime(ts).isoformat()


def _text(out: dict[str, Any]) -> str:
    lines = [f"at {out['at']}"]
    for row in out["routes"]:
        matchers = ", ".join(row["matchers"]) or "(root)"
        group = "..." if row["group_by"] == "..." else ", ".join(row["group_by"]) or "(none)"
        lines.append(f"route {row['route']}  {matchers}  → {', '.join(row['channels'])}")
        lines.append(
            f"    group_by {group}; wait {row['group_wait']}, interval {row['group_interval']}, "
            f"repeat {row['repeat_interval']}"
        )
        if row.get("held_until"):
            lines.append(f"    held until {row['held_until']['window']} opens at {row['held_until']['at']}")
    for skipped in out["skipped_for_windows"]:
        why = [f"active_during {', '.join(skipped['active_during'])}"] if skipped["active_during"] else []
        why += [f"muted_during {', '.join(skipped['muted_during'])}"] if skipped["muted_during"] else []
        lines.append(f"skipped route {skipped['route']} ({'; '.join(why)})")
    lines.append(f"channels: {', '.join(out['channels'])}")
    return "\n".join(lines)
