"""``alphawatch silence add|list|expire``, ``alphawatch ack`` and ``alphawatch why``: talk to the running daemon."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any, TextIO
from urllib.parse import quote

from alphawatch.daemon.cli import (
    DEFAULT_CONFIG,
    CommandError,
    _client,
    config_path,
    daemon_url,
    epoch_or_text,
    non_empty,
    whole_number,
)
from alphawatch.daemon.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``silence``, ``ack`` and ``why`` commands to the ``alphawatch`` parser."""
    silence = subparsers.add_parser(
        "silence", help="create, list and expire silences", description="Silences of the running daemon."
    )

    def usage(args: argparse.Namespace) -> int:
        silence.print_help()
        return 2

    silence.set_defaults(func=usage)
    commands = silence.add_subparsers(title="subcommands", metavar="SUBCOMMAND")

    add = commands.add_parser(
        "add",
        help="silence alerts matching all the matchers",
        description="Create a silence: notifications of alerts matching every -m matcher are not sent from "
        "--start (default now) for --duration or until --end. An emergency alert is only silenced when a matcher "
        "names it (severity=emergency).",
    )
    _common(add)
    add.add_argument(
        "-m",
        "--matcher",
        action="append",
        required=True,
        metavar="MATCHER",
        help='e.g. model=alpha7, alertname=~"IC.*", severity!=info (repeatable; all must match)',
    )
    span = add.add_mutually_exclusive_group(required=True)
    span.add_argument("--duration", help="how long, e.g. 2h, 30m, 1d")
    span.add_argument("--end", type=epoch_or_text, help="when it ends: RFC 3339 with offset, or epoch seconds")
    add.add_argument(
        "--start", type=epoch_or_text, help="when it starts (default now): RFC 3339 with offset, or epoch seconds"
    )
    add.add_argument("--by", required=True, help="who creates it")
    add.add_argument("--comment", required=True, help="why")
    add.set_defaults(func=cmd_add)

    listing = commands.add_parser("list", help="list silences", description="Pending and active silences.")
    _common(listing)
    listing.add_argument("--all", action="store_true", help="expired ones too")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_list)

    expire = commands.add_parser("expire", help="end a silence now", description="Expire a silence now.")
    _common(expire)
    expire.add_argument("id", type=non_empty, help="the silence's id")
    expire.set_defaults(func=cmd_expire)

    ack = subparsers.add_parser(
        "ack",
        help="acknowledge a firing alert",
        description="Acknowledge a firing alert: no repeats or escalation until it resolves or fires again.",
    )
    _common(ack)
    ack.add_argument("fingerprint", type=non_empty, help="the alert's ID (fingerprint), or its first characters")
    ack.add_argument("--by", help="who (required unless --remove)")
    ack.add_argument("--comment", help="why (required unless --remove)")
    ack.add_argument("--remove", action="store_true", help="remove the acknowledgement instead")
    ack.set_defaults(func=cmd_ack)

    why = subparsers.add_parser(
        "why",
        help="why an alert's notifications were not sent",
        description="What suppresses the alert now, and every notification of it that was held back.",
    )
    _common(why)
    why.add_argument("fingerprint", type=non_empty, help="the alert's ID (fingerprint), or its first characters")
    why.add_argument("--limit", type=whole_number(1), default=50, help="at most this many records (default 50)")
    why.add_argument("--json", action="store_true", help="print JSON")
    why.set_defaults(func=cmd_why)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=config_path, default=DEFAULT_CONFIG, help="configuration file")
    parser.add_argument("--url", type=daemon_url, help="daemon URL (default: from the configuration's daemon.listen)")
    parser.add_argument(
        "--token", help="admin token (default: $ALPHAWATCH_TOKEN, the configuration's admin token, or its token file)"
    )


def _request(args: argparse.Namespace, method: str, path: str, body: Any = None, *, holding: str) -> tuple[int, Any]:
    """Send one request; returns ``(status, json object)``, or ``(0, message)`` when the daemon cannot be reached
    or what answered is not one (a success must hold the key ``holding``)."""
    import httpx

    try:
        url, headers = _client(args, write=method != "GET", admin=True)
    except (ConfigError, CommandError, OSError) as exc:
        return 0, str(exc)
    try:
        response = httpx.request(method, url + path, json=body, headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        return 0, f"cannot reach the daemon at {url}: {type(exc).__name__}"
    from alphawatch.daemon.client import answer_object, not_alphawatch

    answer = answer_object(response)
    if answer is None or (response.is_success and holding not in answer):
        return 0, f"{not_alphawatch(response)}; check --url"
    return response.status_code, answer


def _failed(command: str, status: int, answer: Any) -> int:
    if status == 0:
        _say(f"{command}: {answer}", file=sys.stderr)
        return 1
    message = answer.get("error", answer) if isinstance(answer, dict) else answer
    _say(f"{command}: refused ({status}): {message}", file=sys.stderr)
    for item in answer.get("fields", []) if isinstance(answer, dict) else []:
        _say(f"  {item['field'] or '(body)'}: {item['message']}", file=sys.stderr)
    return 1


def cmd_add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"matchers": args.matcher, "created_by": args.by, "comment": args.comment}
    if args.duration is not None:
        body["duration"] = args.duration
    if args.end is not None:
        body["ends_at"] = args.end
    if args.start is not None:
        body["starts_at"] = args.start
    status, answer = _request(args, "POST", "/api/v1/silences", body, holding="silence")
    if status != 201:
        return _failed("silence add", status, answer)
    silence = answer["silence"]
    _say(f"silence {silence['id']} {silence['state']} from {silence['starts']} to {silence['ends']}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    states = "pending,active,expired" if args.all else "pending,active"
    status, answer = _request(args, "GET", f"/api/v1/silences?state={states}", holding="silences")
    if status != 200:
        return _failed("silence list", status, answer)
    if args.json:
        print(json.dumps(answer["silences"], indent=2, ensure_ascii=False))
        return 0
    if not answer["silences"]:
        print("no silences")
        return 0
    for s in answer["silences"]:
        _say(f"{s['id']}  {s['state']:<8} {s['starts']} → {s['ends']}  {s['created_by']}")
        _say(f"    {' '.join(s['matchers'])}")
        _say(f"    {s['comment']}")
    return 0


def cmd_expire(args: argparse.Namespace) -> int:
    status, answer = _request(args, "DELETE", f"/api/v1/silences/{quote(args.id, safe='')}", holding="silence")
    if status != 200:
        return _failed("silence expire", status, answer)
    _say(f"silence {answer['silence']['id']} expired at {answer['silence']['ends']}")
    return 0


FINGERPRINT_LENGTH = 16
SHORTEST_PREFIX = 4


def _resolve(args: argparse.Namespace, command: str) -> int | None:
    """Make ``args.fingerprint`` whole when it is the start of one alert's ID (as the page shows it); ``None``
    when it is, else the exit status after saying what is wrong."""
    given = args.fingerprint.strip()
    if len(given) >= FINGERPRINT_LENGTH:
        return None
    if len(given) < SHORTEST_PREFIX:
        print(f"{command}: give at least {SHORTEST_PREFIX} characters of the alert's ID", file=sys.stderr)
        return 2
    status, answer = _request(args, "GET", "/api/v1/alerts?state=pending,firing,resolved&limit=10000",
                              holding="alerts")  # fmt: skip
    if status != 200:
        return _failed(command, status, answer)
    found = sorted({a["fingerprint"] for a in answer["alerts"] if a["fingerprint"].startswith(given)})
    if len(found) != 1:
        _say(f"{command}: {'no' if not found else 'more than one'} alert's ID starts with {given!r}"
             + (f": {', '.join(found[:10])}" if found else ""), file=sys.stderr)  # fmt: skip
        return 1
    args.fingerprint = found[0]
    return None


def cmd_ack(args: argparse.Namespace) -> int:
    if (failed := _resolve(args, "ack")) is not None:
        return failed
    path = f"/api/v1/alerts/{quote(args.fingerprint, safe='')}/ack"
    if args.remove:
        status, answer = _request(args, "DELETE", path, holding="removed")
        if status != 200:
            return _failed("ack", status, answer)
        _say(f"acknowledgement of {args.fingerprint} removed")
        return 0
    if not args.by or not args.comment:
        print("ack: give --by and --comment (or --remove)", file=sys.stderr)
        return 2
    status, answer = _request(args, "POST", path, {"by": args.by, "comment": args.comment}, holding="ack")
    if status != 201:
        return _failed("ack", status, answer)
    earlier = [e["by"] for e in answer["ack"].get("earlier", [])]
    _say(f"alert {args.fingerprint} acknowledged by {answer['ack']['by']}"
         + (f" (taking over from {', '.join(earlier)})" if earlier else ""))  # fmt: skip
    return 0


def cmd_why(args: argparse.Namespace) -> int:
    if (failed := _resolve(args, "why")) is not None:
        return failed
    path = f"/api/v1/alerts/{quote(args.fingerprint, safe='')}/suppressions?limit={args.limit}"
    status, answer = _request(args, "GET", path, holding="suppressions")
    if status != 200:
        return _failed("why", status, answer)
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 0
    from alphawatch.daemon.silences import rfc3339

    _say(f"alert {answer['fingerprint']}: {answer['state'] or 'gone'}")
    if answer["now"]:
        for reason in answer["now"]:
            _say(f"now {reason['kind']}: {reason['detail']}")
    else:
        print("now: nothing suppresses it (muted time windows show in the record below)")
    if not answer["suppressions"]:
        print("no notification of it was held back")
    for row in answer["suppressions"]:
        channel = row["channel"] or "all channels"
        _say(f"{rfc3339(row['at'])}  {row['kind']:<12} {channel}: {row['detail']}")
    return 0


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _say(text: str, file: TextIO | None = None) -> None:
    """Print a line holding what others wrote (comments, names, matchers) with control characters escaped: an
    escape sequence in a silence comment must not clear an operator's screen or retitle the terminal."""
    print(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text), file=file or sys.stdout)
