"""The ``alphawatch`` command: ``run``, ``check``, ``push``, ``status``, ``schema`` and the tool commands."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from alphawatch.daemon.errors import AlphawatchError, ConfigError

if TYPE_CHECKING:
    import httpx

# httpx imports its own command line (click, pygments: ≈ 2.3 MiB) whenever click is installed, which sqlite-utils
# brings. The daemon never runs httpx's command line: mark it absent, and httpx imports without it.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

DEFAULT_CONFIG = os.environ.get("ALPHAWATCH_CONFIG") or "monitor.yaml"

# Commands of other modules: (the commands it adds, module, function that adds them). A module is imported only
# when its command is asked for (or for the full --help), so `alphawatch run` does not pay for numpy.
PLUGGED_COMMANDS = (
    (("calendar",), "alphawatch.daemon.calendar_cli", "add_parser"),
    (("routes",), "alphawatch.daemon.routing_cli", "add_parser"),
    (("silence", "ack", "why"), "alphawatch.daemon.suppression_cli", "add_parser"),
    (("push-data",), "alphawatch.daemon.modeldata_cli", "add_parser"),
    (("stats",), "alphawatch.rules.stats.cli", "add_parser"),
    (("template",), "alphawatch.channels._templates", "add_template_parser"),
)
OWN_COMMANDS = frozenset({"run", "check", "push", "status", "schema"})


class CommandError(AlphawatchError):
    """A command cannot do what it was asked: :func:`main` prints the message, not a traceback, and exits 1."""


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code: int = args.func(args)
    except CommandError as exc:
        print(f"alphawatch {command}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `alphawatch calendar show | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (no second error when Python flushes)
        return 0
    except OSError as exc:  # a file named on the command line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"alphawatch {command}: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    return code


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line. With ``command`` one of ours, no plugged-in module is imported; with a plugged-in one,
    only its module; with none (or an unknown one: the help lists them all), every module."""
    parser = argparse.ArgumentParser(
        prog="alphawatch", description="Operational monitor for machine-learning alpha models (Taiwan equities)."
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon", description="Run the daemon in the foreground.")
    _config_arg(run)
    run.set_defaults(func=cmd_run)

    check = commands.add_parser(
        "check", help="validate a configuration", description="Validate the configuration; exit 0 if valid, 1 if not."
    )
    _config_arg(check)
    check.set_defaults(func=cmd_check)

    push = commands.add_parser(
        "push",
        help="send samples to the daemon",
        description="Send one sample from arguments, or JSON lines from stdin with '-'. "
        'Each line is {"metric": ..., "labels": {...}, "ts": ..., "value": ...}.',
    )
    _config_arg(push)
    _client_args(push)
    push.add_argument("metric", help="metric name, or '-' to read JSON lines from stdin")
    push.add_argument("value", nargs="?", type=finite_float, help="the value (with a metric name)")
    push.add_argument("-l", "--label", action="append", default=[], metavar="K=V", help="a label (repeatable)")
    push.add_argument(
        "--ts", type=epoch_or_text, help="timestamp (RFC 3339 with offset, or epoch seconds); default now"
    )
    push.add_argument("--batch", type=whole_number(1), default=1000, help="samples per request when reading stdin")
    push.set_defaults(func=cmd_push)

    status = commands.add_parser(
        "status", help="ask the running daemon", description="Show the running daemon's state."
    )
    _config_arg(status)
    _client_args(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=cmd_status)

    schema = commands.add_parser(
        "schema", help="print the configuration's JSON Schema", description="Print the complete JSON Schema."
    )
    schema.set_defaults(func=cmd_schema)

    plugged = [] if command in OWN_COMMANDS else [p for p in PLUGGED_COMMANDS if command in p[0]] or PLUGGED_COMMANDS
    for _names, module_name, function in plugged:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        getattr(module, function)(commands)
    return parser


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=config_path,
        default=DEFAULT_CONFIG,
        help=f"configuration file (default: $ALPHAWATCH_CONFIG or {DEFAULT_CONFIG})",
    )


def _client_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", type=daemon_url, help="daemon URL (default: from the configuration's daemon.listen)")
    parser.add_argument("--token", help="API token (default: $ALPHAWATCH_TOKEN, the configuration, or its token file)")


# Argument types: argparse turns their ArgumentTypeError into "argument --x: message" and exit status 2.


def config_path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the configuration path is empty")
    return text


def daemon_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {text!r} (write e.g. http://127.0.0.1:9464)")
    return text


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def whole_number(minimum: int) -> Callable[[str], int]:
    """The type of an integer argument of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


def epoch_or_text(text: str) -> float | str:
    """Epoch seconds (finite), or the text as it is: the daemon reads RFC 3339 and says what is wrong with it."""
    try:
        value = float(text)
    except ValueError:
        return text
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (write RFC 3339 with offset, or epoch seconds)")
    return value


def non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty")
    return text


def daemon_answer(response: httpx.Response, key: str) -> dict[str, Any]:
    """The JSON object of a 200 answer holding ``key``, else a :class:`CommandError` that says what came back."""
    from alphawatch.daemon.client import answer_object, not_alphawatch

    answer = answer_object(response)
    if response.status_code == 200 and answer is not None and key in answer:
        return answer
    if response.status_code != 404 and answer is not None and isinstance(answer.get("error"), str):
        items = answer.get("items")
        items = items if isinstance(items, list) else []
        shown = "".join(
            f"\n  item {i.get('index')}: {i.get('field') or '-'}: {i.get('message')}"
            for i in items[:20]
            if isinstance(i, dict)
        )
        raise CommandError(f"refused ({response.status_code}): {answer['error']}{shown}")
    raise CommandError(f"{not_alphawatch(response)}; check --url")


def cmd_run(args: argparse.Namespace) -> int:
    import trio

    from alphawatch.daemon.main import one_malloc_arena, run_daemon

    one_malloc_arena()
    code = trio.run(run_daemon, Path(args.config))
    # shut down already: a late SIGTERM must not turn a clean exit into "killed by signal"
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return code


def cmd_check(args: argparse.Namespace) -> int:
    from alphawatch.daemon.config import load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"FAILED: {len(exc.problems)} problem(s)", file=sys.stderr)
        return 1
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"SUCCESS: {args.config} is valid: {len(config.rules)} rules, {len(config.channels)} channels, "
        f"{sum(1 for _ in config.route.walk()) if config.route else 0} routes ({len(config.files)} file(s))"
    )
    return 0


def _client(args: argparse.Namespace, write: bool, admin: bool = False) -> tuple[str, dict[str, str]]:
    """The daemon's URL and the headers for a request: ``--token``, ``$ALPHAWATCH_TOKEN``, the configuration's
    ingest (or, with ``admin``, admin) token, or the generated token file."""
    url = args.url
    token = args.token or os.environ.get("ALPHAWATCH_TOKEN")
    if url is None or (write and token is None):
        from alphawatch.daemon.config import load_daemon_settings, token_file

        # a problem in a rule or an include is the daemon's business; so is a token this command does not send
        roles = ("admin" if admin else "ingest",) if write and token is None else ()
        settings = load_daemon_settings(args.config, roles=roles)
        if url is None:
            host = settings.host
            url = f"http://{'[' + host + ']' if ':' in host else host}:{settings.port}"
        if token is None and write:  # (reads need no token)
            token = (settings.admin_token if admin else settings.ingest_token) or _generated_token(token_file(settings))
    if token and not all("!" <= c <= "~" for c in token):
        raise CommandError("the API token has characters an HTTP header cannot carry (printable ASCII only)")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return url.rstrip("/"), headers


def _generated_token(path: Path) -> str:
    """The token the daemon generated, from its file beside the state file."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise CommandError(
            f"no API token: pass --token or set $ALPHAWATCH_TOKEN; the daemon's generated token is not at {path}"
            " (under systemd it is in the state directory: run as STATE_DIRECTORY=/var/lib/alphawatch alphawatch …)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise CommandError(f"cannot read the API token file {path}: {reason}") from None


def cmd_push(args: argparse.Namespace) -> int:
    import httpx

    try:
        url, headers = _client(args, write=True)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.metric == "-":
        items = _stdin_samples()
        if not items:  # a pipeline with nothing to report this time: not a failure, but said
            print("push: stdin held no samples: nothing was sent", file=sys.stderr)
            return 0
    else:
        if args.value is None:
            print("push: give a value after the metric name (or '-' to read JSON lines)", file=sys.stderr)
            return 2
        labels = {}
        for pair in args.label:
            key, sep, value = pair.partition("=")
            if not sep:
                print(f"push: label {pair!r} is not K=V", file=sys.stderr)
                return 2
            labels[key] = value
        ts = args.ts if args.ts is not None else time.time()
        items = [{"metric": args.metric, "labels": labels, "ts": ts, "value": args.value}]
    accepted = 0

    def stored() -> str:  # (of several requests, what the earlier ones stored)
        return "" if len(items) <= args.batch else f" ({accepted} of {len(items)} sample(s) were stored)"

    with httpx.Client(timeout=30.0) as http:
        for start in range(0, len(items), args.batch):
            chunk = items[start : start + args.batch]
            try:
                response = http.post(f"{url}/api/v1/samples", json=chunk, headers=headers)
            except httpx.HTTPError as exc:
                print(f"push: cannot reach the daemon at {url}: {type(exc).__name__}{stored()}", file=sys.stderr)
                return 1
            try:
                accepted += int(daemon_answer(response, "accepted")["accepted"])
            except CommandError as exc:
                raise CommandError(f"{exc}{stored()}") from None
    print(f"accepted {accepted} sample(s)")
    return 0


def _stdin_samples() -> list[Any]:
    """The JSON lines of stdin. Numbers must be finite: JSON has no NaN, and the daemon would refuse them."""

    def finite(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"{text[:20]} is too large for a number")
        return value

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not a number JSON allows")

    items = []
    try:
        for number, line in enumerate(sys.stdin, 1):
            if line.strip():
                try:
                    items.append(json.loads(line, parse_float=finite, parse_constant=refuse))
                except ValueError as exc:
                    raise CommandError(f"stdin line {number}: not a JSON sample: {exc}") from None
    except UnicodeDecodeError as exc:
        raise CommandError(f"stdin is not UTF-8 text: {exc.reason}") from None
    return items


def cmd_status(args: argparse.Namespace) -> int:
    import httpx

    try:
        url, headers = _client(args, write=False)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        with httpx.Client(timeout=10.0) as http:
            status = daemon_answer(http.get(f"{url}/api/v1/status", headers=headers), "reload")
            rules = daemon_answer(http.get(f"{url}/api/v1/rules", headers=headers), "rules")["rules"]
    except httpx.HTTPError as exc:
        print(f"status: cannot reach the daemon at {url}: {type(exc).__name__}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"status": status, "rules": rules}, indent=2, ensure_ascii=False))
        return 0
    reload = status["reload"]
    print(f"alphawatch {status['version']} at {url}, up {status['uptime_s']:.0f}s, config {status['digest']}")
    print(f"last reload: {'ok' if reload['ok'] else 'FAILED'} ({reload['trigger']})" + (
        f": {reload['error']}" if reload.get("error") else ""))  # fmt: skip
    print(f"{status['rules']} rules, {status['firing']} alerts firing, {status['pending']} pending")
    sent = status["outbox"]
    print(f"notifications since start: {sent['delivered']} delivered, {sent['in_flight']} in flight, "
          f"{sent['failed_attempts']} failed attempts, {sent['dead']} dead letters")  # fmt: skip
    for rule in rules:
        error = f"  last error: {rule['last_error']}" if rule["last_error"] else ""
        print(f"  {rule['name']:<32} {rule['kind']:<10} {rule['status']:<8} firing={rule['firing']}{error}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from alphawatch.daemon.config import full_schema

    print(json.dumps(full_schema(), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
