"""Messages from templates: sandboxed Jinja2, English and Traditional Chinese, overridable per channel.

Every channel renders its text through :func:`render` with one of :data:`KINDS`. The built-in templates live in
``channels/templates/<kind>.j2`` and take their words from a phrase table (:data:`PHRASES`), so one template
serves both languages. A channel's ``templates`` setting replaces any of them; :func:`check_template` finds
mistakes in such a replacement when the configuration is loaded, and a replacement that still fails at send time
falls back to the built-in template (with a warning) rather than lose the alert.

Templates run in :class:`jinja2.sandbox.SandboxedEnvironment`: configuration authors are trusted less than code.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta, timezone
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    from alphawatch.daemon.config import Config, RuleConfig

__all__ = [
    "KINDS",
    "LANGUAGES",
    "LANGUAGE_SCHEMA",
    "PHRASES",
    "SEVERITY_NAMES",
    "TEMPLATES_SCHEMA",
    "add_template_parser",
    "build_context",
    "check_overrides",
    "check_template",
    "error_message",
    "format_duration",
    "format_value",
    "render",
    "render_string",
    "sample_payload",
]

logger = logging.getLogger(__name__)

KINDS = ("subject", "text", "html", "slack", "sms")
"""What a template renders: the mail subject, plain text body and HTML body, Slack's mrkdwn text, an SMS."""

LANGUAGES = ("en", "zh-TW")
SEVERITIES = ("info", "warning", "error", "critical", "emergency")
SEVERITY_NAMES: dict[str, dict[str, str]] = {
    "en": {"info": "INFO", "warning": "WARNING", "error": "ERROR", "critical": "CRITICAL", "emergency": "EMERGENCY"},
    "zh-TW": {"info": "資訊", "warning": "警告", "error": "錯誤", "critical": "嚴重", "emergency": "緊急"},
}
PHRASES: dict[str, dict[str, str]] = {
    "en": {
        "firing": "FIRING", "resolved": "RESOLVED", "sep": ": ", "alerts": "alerts", "severity": "Severity",
        "value": "Value", "recovery_value": "Recovery value", "fired_for": "Fired for", "since": "Since",
        "resolved_at": "Resolved at", "rule": "Rule", "model": "Model", "details": "Details",
        "open": "Open in alphawatch", "more": "… and %d more alerts not shown", "n_firing": "%d firing",
        "n_resolved": "%d resolved", "comma": ", ", "more_lines": "… +%d more lines",
    },
    "zh-TW": {
        "firing": "觸發", "resolved": "已恢復", "sep": "：", "alerts": "則警報", "severity": "嚴重程度",
        "value": "數值", "recovery_value": "恢復值", "fired_for": "持續", "since": "開始於",
        "resolved_at": "恢復於", "rule": "規則", "model": "模型", "details": "詳情",
        "open": "在 alphawatch 開啟", "more": "…另有 %d 則警報未列出", "n_firing": "%d 則觸發",
        "n_resolved": "%d 則已恢復", "comma": "，", "more_lines": "…另有 %d 行未列出",
    },
}  # fmt: skip
_UNITS = {
    "en": ("d", "h", "m", "s"),
    "zh-TW": (" 天", " 小時", " 分", " 秒"),
}

TAIPEI = timezone(timedelta(hours=8), "Asia/Taipei")
TEMPLATES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {kind: {"type": "string"} for kind in KINDS},
    "additionalProperties": False,
}
LANGUAGE_SCHEMA: dict[str, Any] = {"enum": list(LANGUAGES)}
_TEMPLATE_DIR = Path(__file__).with_name("templates")


def language_of(value: object) -> str:
    """``zh-TW`` for any spelling of it (``zh_tw``, ``zh-Hant-TW``), ``en`` otherwise."""
    text = str(value or "").lower().replace("_", "-")
    return "zh-TW" if text.startswith("zh") else "en"


def format_value(value: object) -> str:
    """A metric value for people: about four significant digits, thousands separated, ``—`` when missing."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude < -4 or magnitude >= 9:
        return f"{value:.3e}"
    text = f"{value:,.{max(0, 3 - magnitude)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_duration(seconds: object, language: str = "en") -> str:
    """``5400`` → ``1h30m`` (en) or ``1 小時 30 分`` (zh-TW): the two largest units, ``—`` when missing."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or math.isnan(seconds):
        return "—"
    rest = max(0, round(seconds))
    parts: list[str] = []
    for unit, size in zip(_UNITS[language_of(language)], (86400, 3600, 60, 1), strict=True):
        if rest >= size or (size == 1 and not parts):
            parts.append(f"{rest // size}{unit}")
            rest %= size
    separator = " " if language_of(language) == "zh-TW" else ""
    return separator.join(parts[:2])


def format_time(value: object) -> str:
    """An RFC 3339 timestamp in Taipei time (``2026-11-26 09:02:03 +08:00``); empty for Go's zero time."""
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(TAIPEI).strftime("%Y-%m-%d %H:%M:%S +08:00")


def _severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


def _alert_context(alert: Mapping[str, Any], language: str, fallback_url: str) -> dict[str, Any]:
    labels = dict(alert.get("labels") or {})
    annotations = dict(alert.get("annotations") or {})
    severity = str(alert.get("severity") or labels.get("severity") or "warning")
    resolved = alert.get("status") == "resolved"
    value = alert.get("value")
    if resolved and alert.get("resolvedValue") is not None:
        value = alert["resolvedValue"]
    return {
        "status": alert.get("status", "firing"),
        "resolved": resolved,
        "severity": severity,
        "severity_name": SEVERITY_NAMES[language].get(severity, severity.upper()),
        "rule": alert.get("rule") or labels.get("rule") or labels.get("alertname", ""),
        "alertname": labels.get("alertname", ""),
        "model": labels.get("model", ""),
        "labels": labels,
        "annotations": annotations,
        "details": dict(alert.get("details") or {}),
        "summary": annotations.get("summary", ""),
        "description": annotations.get("description", ""),
        "value": value,
        "value_text": format_value(value),
        "starts_at": alert.get("startsAt", ""),
        "starts_at_text": format_time(alert.get("startsAt")),
        "ends_at": alert.get("endsAt", ""),
        "ends_at_text": format_time(alert.get("endsAt")),
        "duration_seconds": alert.get("durationSeconds"),
        "duration_text": format_duration(alert.get("durationSeconds"), language),
        "url": alert.get("generatorURL") or fallback_url,
        "fingerprint": alert.get("fingerprint", ""),
    }


def build_context(payload: Mapping[str, Any], language: str = "en") -> dict[str, Any]:
    """The variables templates see (documented in ``docs/channels.md``), from a webhook v4 payload."""
    language = language_of(language)
    external_url = str(payload.get("externalURL") or "")
    alerts = [_alert_context(a, language, external_url) for a in payload.get("alerts") or ()]
    common = dict(payload.get("commonLabels") or {})
    group = dict(payload.get("groupLabels") or {})
    annotations = dict(payload.get("commonAnnotations") or {})
    status = str(payload.get("status") or "firing")
    truncated = int(payload.get("truncatedAlerts") or 0)
    phrases = dict(PHRASES[language], status=PHRASES[language]["resolved" if status == "resolved" else "firing"])
    resolved_count = sum(a["resolved"] for a in alerts)
    firing_count = len(alerts) + truncated - resolved_count  # (the alerts left out are counted as firing)
    # a firing group is as severe as what still fires: an alert resolved inside it neither raises the severity
    # nor counts as firing
    ranked = [a for a in alerts if not a["resolved"]] if status != "resolved" else alerts
    default = common.get("severity", "warning")
    severity = max((a["severity"] for a in ranked or alerts), key=_severity_rank, default=default)
    if status != "resolved" and resolved_count:
        tally = phrases["n_firing"] % firing_count + phrases["comma"] + phrases["n_resolved"] % resolved_count
    else:
        tally = f"{len(alerts) + truncated} {phrases['alerts']}"
    return {
        "lang": language,
        "t": phrases,
        "status": status,
        "resolved": status == "resolved",
        "firing": status != "resolved",
        "severity": severity,
        "severity_name": SEVERITY_NAMES[language].get(severity, str(severity).upper()),
        "alertname": group.get("alertname") or common.get("alertname") or (alerts[0]["alertname"] if alerts else ""),
        "model": common.get("model", ""),
        "summary": annotations.get("summary") or (alerts[0]["summary"] if alerts else ""),
        "description": annotations.get("description", ""),
        "alerts": alerts,
        "count": len(alerts) + truncated,
        "firing_count": firing_count,
        "resolved_count": resolved_count,
        "tally": tally,
        "truncated": truncated,
        "link": alerts[0]["url"] if len(alerts) == 1 else external_url,
        "external_url": external_url,
        "receiver": payload.get("receiver", ""),
        "group_key": payload.get("groupKey", ""),
        "group_labels": group,
        "common_labels": common,
        "common_annotations": annotations,
    }


def _duration_filter(context: jinja2.runtime.Context, seconds: object) -> str:
    return format_duration(seconds, str(context.get("lang", "en")))


def _severity_filter(context: jinja2.runtime.Context, severity: object) -> str:
    return SEVERITY_NAMES[language_of(context.get("lang"))].get(str(severity), str(severity).upper())


def _blank_none(value: object) -> object:
    import jinja2

    return "" if value is None or isinstance(value, jinja2.Undefined) else value


def _slack_escape(value: object) -> str:
    # Slack's mrkdwn treats these three as control characters; literal template text is left alone so that
    # authors can still write <url|label> links.
    text = str(_blank_none(value))
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


LOOP_BUDGET = 10_000
"""Items all ``range()`` calls of one rendering may make together: a template looping over a label's value, or
loops nested in loops, stop with an error (the built-in template is used) instead of holding the daemon up."""
LARGEST_REPEAT = 100_000
"""Longest text or list ``*`` may make in a template, and ``**`` takes exponents up to 64 only. The same bound
holds for the other ways a short template makes long text: a width (``center``, ``indent``, ``ljust``, a ``%`` or
``format`` width) and what ``replace`` would make. (``lipsum`` is not there.)"""
_WIDTHS = re.compile(r"%[-#0 +]*(\d+|\*)|\{[^{}]*:[^{}]*?(\d+)[^{}]*\}|\{[^{}]*:[^{}]*(\{)")
"""Widths: printf's (written, or ``*``: an argument), str.format's (written, or a nested field: an argument)."""
_budget: ContextVar[list[int]] = ContextVar("template_loop_budget")


@contextmanager
def _budgeted() -> Iterator[None]:
    token = _budget.set([LOOP_BUDGET])
    try:
        yield
    finally:
        _budget.reset(token)


def _budgeted_range(*args: int) -> range:
    from jinja2.exceptions import SecurityError

    items = range(*args)
    left = _budget.get([LOOP_BUDGET])
    left[0] -= len(items)
    if left[0] < 0:
        raise SecurityError(f"the template loops more than {LOOP_BUDGET} times (range)")
    return items


def _no_wider(width: object, what: str) -> None:
    """Refuse a width that would make text longer than :data:`LARGEST_REPEAT` characters."""
    from jinja2.exceptions import SecurityError

    if isinstance(width, int) and width > LARGEST_REPEAT:
        raise SecurityError(f"{what} would make more than {LARGEST_REPEAT} characters")


def _no_wide_format(text: object, args: tuple[Any, ...] = ()) -> None:
    """Refuse a ``%`` or ``str.format`` format whose widths (written, or ``*`` from ``args``) are too large."""
    if isinstance(text, str):
        for found in _WIDTHS.finditer(text):
            width = found.group(1) or found.group(2) or found.group(3)
            if width in ("*", "{"):
                for arg in args:
                    _no_wider(arg, "a width")
            else:
                _no_wider(int(width), "a width")


_PADDING = frozenset({"center", "ljust", "rjust", "zfill"})


def _sandbox_class() -> type[SandboxedEnvironment]:
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import SandboxedEnvironment

    class Sandbox(SandboxedEnvironment):
        intercepted_binops = frozenset(["*", "**", "%"])

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
                raise SecurityError("exponents above 64 are not allowed in templates")
            if operator == "*":
                for sequence, times in ((left, right), (right, left)):
                    sized = isinstance(sequence, str | list | tuple) and isinstance(times, int)
                    if sized and len(sequence) * times > LARGEST_REPEAT:
                        raise SecurityError(f"'*' would make more than {LARGEST_REPEAT} items")
            if operator == "%":
                _no_wide_format(left, right if isinstance(right, tuple) else (right,))
            return super().call_binop(context, operator, left, right)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # (jinja's signature)
            method = getattr(__obj, "__wrapped__", __obj)  # (the sandbox wraps str.format)
            owner = getattr(method, "__self__", None)
            if isinstance(owner, str):
                name = getattr(method, "__name__", "")
                if name in _PADDING:
                    _no_wider(args[0] if args else kwargs.get("width"), f"{name}()")
                elif name == "expandtabs":
                    _no_wider(owner.count("\t") * (args[0] if args and isinstance(args[0], int) else 8), name)
                elif name in ("format", "format_map"):
                    values = (*args, *kwargs.values(), *(v for a in args if isinstance(a, dict) for v in a.values()))
                    _no_wide_format(owner, values)
            return super().call(__context, __obj, *args, **kwargs)

    return Sandbox


def _center(value: object, width: int = 80) -> str:
    _no_wider(width, "center")
    return str(value).center(width)


def _indent(value: object, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    from jinja2.filters import do_indent

    text = str(value)
    size = len(width) if isinstance(width, str) else width
    _no_wider(len(text) + size * (text.count("\n") + 1), "indent")
    return do_indent(text, width, first, blank)


def _format(value: object, *args: Any, **kwargs: Any) -> str:
    from jinja2.filters import do_format

    _no_wide_format(value, args)
    return do_format(value, *args, **kwargs)  # type: ignore[arg-type]


def _replace(eval_ctx: Any, value: object, old: str, new: str, count: int | None = None) -> str:
    from jinja2.filters import do_replace

    text, old, new = str(value), str(old), str(new)
    times = text.count(old) if old else len(text) + 1
    if count is not None:
        times = min(times, count)
    if len(new) > len(old):
        _no_wider(len(text) + times * (len(new) - len(old)), "replace")
    return do_replace(eval_ctx, value, old, new, count)  # type: ignore[arg-type]


@cache
def _environment(kind: str) -> SandboxedEnvironment:
    # jinja2 is imported on first use: a daemon that only sends webhooks never loads it
    import jinja2

    env = _sandbox_class()(
        loader=jinja2.FileSystemLoader(_TEMPLATE_DIR),
        autoescape=kind == "html",
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_slack_escape if kind == "slack" else _blank_none,
    )
    env.filters.update(
        value=format_value,
        duration=jinja2.pass_context(_duration_filter),
        time=format_time,
        severity=jinja2.pass_context(_severity_filter),
    )
    env.filters.update(  # the built-in ones, bounded (LARGEST_REPEAT)
        center=_center, indent=_indent, format=_format, replace=jinja2.pass_eval_context(_replace)
    )
    env.globals["range"] = _budgeted_range
    env.globals.pop("lipsum", None)  # (paragraphs of Latin on demand: seconds of work for a small template)
    return env


@lru_cache(maxsize=256)
def _compile(kind: str, source: str) -> jinja2.Template:
    return _environment(kind).from_string(source)


def _tidy(kind: str, text: str) -> str:
    if kind in ("subject", "sms"):
        return " ".join(text.split())
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


def render(
    kind: str,
    payload: Mapping[str, Any],
    language: str = "en",
    overrides: Mapping[str, str] | None = None,
    channel: str = "",
) -> str:
    """Render one of :data:`KINDS` for ``payload`` in ``language``, using ``overrides[kind]`` if given.

    Subjects and SMS come out on one line with runs of whitespace collapsed; bodies without trailing spaces or
    runs of blank lines. An override that fails here falls back to the built-in template, logged as a warning.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown template kind {kind!r}; expected one of {', '.join(KINDS)}")
    context = build_context(payload, language)
    source = (overrides or {}).get(kind)
    if source is not None:
        try:
            with _budgeted():
                return _tidy(kind, _compile(kind, source).render(context))
        except Exception as exc:
            logger.warning(
                "channel %r: custom %s template failed, using the built-in one: %s", channel, kind, error_message(exc)
            )
    return _tidy(kind, _environment(kind).get_template(f"{kind}.j2").render(context))


def render_string(source: str, variables: Mapping[str, Any]) -> str:
    """Render a one-off template (e.g. an HTTP gateway's body field) in the sandbox, without escaping.

    Errors propagate: the caller has no built-in template to fall back to.
    """
    with _budgeted():
        return _compile("sms", source).render(variables)


def error_message(exc: Exception) -> str:
    """A template error in one line, without the template's source (it may hold a secret)."""
    line = getattr(exc, "lineno", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"line {line}: {message}" if line else message


def check_template(source: str, kind: str = "text", extra: Mapping[str, Any] | None = None) -> str | None:
    """Return why ``source`` cannot serve as a ``kind`` template, or ``None`` when it renders.

    Syntax errors, unknown filters and sandbox violations are found by compiling it and rendering it for sample
    alerts, firing and resolved, in both languages, with ``extra`` variables besides the usual ones.
    """
    try:
        template = _compile(kind if kind in KINDS else "text", source)
        for status in ("firing", "resolved"):
            for language in LANGUAGES:
                context = build_context(sample_payload(status=status, language=language), language)
                with _budgeted():
                    template.render({**context, **(extra or {})})
    except Exception as exc:
        return error_message(exc)
    return None


def check_overrides(overrides: Mapping[str, Any] | None) -> None:
    """Raise ``ValueError`` naming every bad entry of a channel's ``templates`` setting.

    Channels call this when they are built, which the config loader does while checking a configuration, so a
    broken override is reported at load time as a problem of that channel.
    """
    problems = []
    for kind, source in (overrides or {}).items():
        problem = f"unknown template {kind!r}" if kind not in KINDS else check_template(str(source), kind)
        if problem:
            problems.append(f"templates.{kind}: {problem}")
    if problems:
        raise ValueError("; ".join(problems))


def sample_payload(status: str = "firing", severity: str = "critical", language: str = "en") -> dict[str, Any]:
    """A webhook v4 payload with one IC-decay alert on ``alpha7``, for previews and template checks."""
    resolved = status == "resolved"
    summary = "alpha7 的 IC 低於 0.01" if language_of(language) == "zh-TW" else "IC of alpha7 fell below 0.01"
    labels = {"alertname": "ICDecay", "severity": severity, "model": "alpha7", "rule": "ic-alpha7"}
    annotations = {"summary": summary, "description": "20-day rank IC, threshold 0.01"}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="ICDecay"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "preview",
        "groupLabels": {"alertname": "ICDecay"},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "http://127.0.0.1:9464",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": "2026-11-26T01:02:03.000Z",
                "endsAt": "2026-11-26T03:17:03.000Z" if resolved else "0001-01-01T00:00:00Z",
                "generatorURL": "http://127.0.0.1:9464/#rule=ic-alpha7",
                "fingerprint": "3f2a9c0d1e5b7a64",
                "value": 0.0153 if resolved else 0.0042,
                "severity": severity,
                "rule": "ic-alpha7",
                "resolvedValue": 0.0153 if resolved else None,
                "durationSeconds": 8100.0 if resolved else None,
            }
        ],
    }


def add_template_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``template render``: print a message for a sample alert (or ``--payload FILE``) as a channel would."""
    from alphawatch.daemon.cli import finite_float  # (the CLI calls this: loaded already)

    template = subparsers.add_parser("template", help="preview notification messages")
    actions = template.add_subparsers(dest="template_command", required=True)
    parser = actions.add_parser("render", help="print a message rendered for a sample alert")
    parser.add_argument("--kind", choices=("email", "slack", "sms", "text"), help="default text")
    parser.add_argument("--lang", choices=LANGUAGES, help="default: daemon.language of -c, else en")
    parser.add_argument("--status", choices=("firing", "resolved"), default="firing")
    parser.add_argument("--severity", choices=SEVERITIES, help="of the sample alert (default critical)")
    parser.add_argument("--payload", type=Path, help="a webhook v4 JSON document to render instead of the sample")
    parser.add_argument("--rule", help="render an alert of this configured rule: its labels, its annotations "
                        "filled, its group as the routing tree forms it")  # fmt: skip
    parser.add_argument("--value", type=finite_float, help="with --rule: the value the alert reports")
    parser.add_argument("--label", action="append", default=[], metavar="K=V", type=_label,
                        help="with --rule: a sample label (repeat; default: the rule's match with =)")  # fmt: skip
    parser.add_argument("--detail", action="append", default=[], metavar="K=V", type=_detail,
                        help="with --rule: a detail for {{ details.K }} (repeat; numbers stay numbers)")  # fmt: skip
    parser.add_argument("--html", action="store_true", help="with --kind email, print the HTML part as well")
    parser.add_argument("--channel", help="render as this configured channel sends: its kind, language, templates "
                        "and SMS max_segments; a webhook's JSON document")  # fmt: skip
    parser.add_argument("-c", "--config", type=Path, help="the configuration of --channel and --rule (default: "
                        "$ALPHAWATCH_CONFIG, else monitor.yaml)")  # fmt: skip
    parser.set_defaults(func=_render_command)


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"not K=V: {text!r}")
    return name, value


def _label(text: str) -> tuple[str, str]:
    name, value = _pair(text)
    from alphawatch.daemon.ingest import LABEL

    if not LABEL.fullmatch(name):
        raise argparse.ArgumentTypeError(f"not a label name: {name!r} (letters, digits and _, not first a digit)")
    return name, value


_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _detail(text: str) -> tuple[str, int | float | str]:
    """A ``K=V`` detail: a number written as one (ASCII digits; ``10`` stays 10, not 10.0), else text."""
    name, value = _pair(text)
    if _NUMBER.fullmatch(value) is None:
        return name, value
    if value.lstrip("-").isdigit():  # (ASCII digits only: the pattern matched)
        return name, int(value)
    number = float(value)
    return name, number if math.isfinite(number) else value


class _HasName(Protocol):
    @property
    def name(self) -> str: ...


_Named = TypeVar("_Named", bound=_HasName)


class RenderRefused(Exception):
    """What ``template render`` cannot do: the message says why; ``code`` 2 for arguments that cannot be right,
    1 for a configuration that cannot be used."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _render_command(args: argparse.Namespace) -> int:
    try:
        output = _render(args)
    except RenderRefused as exc:
        print(f"alphawatch template render: {exc}", file=sys.stderr)
        return exc.code
    sys.stdout.write(output)
    return 0


def _render(args: argparse.Namespace) -> str:
    _refuse_misuse(args)
    config = _configuration(args) if args.channel is not None or args.rule is not None else None
    kind, language, overrides, channel = args.kind or "text", args.lang or "en", None, None
    if config is not None and args.lang is None:
        language = config.daemon.language
    if args.channel is not None:
        assert config is not None
        channel = _named(config.channels, args.channel, "channel", args.config).build()
        kind = channel.kind
        language, overrides = channel.settings.get("language", "en"), channel.settings.get("templates")
    if args.rule is not None:
        assert config is not None
        payload = _rule_payload(config, _named(config.rules, args.rule, "rule", args.config), args)
    elif args.payload is not None:
        payload = _read_payload(args.payload)
    else:
        payload = sample_payload(args.status, args.severity or "critical", language)
    if kind == "webhook":
        return json.dumps(payload, ensure_ascii=False, indent=2) + "\n"
    if kind == "slack":
        from alphawatch.channels.slack import build_message

        return json.dumps(build_message(payload, language, overrides), ensure_ascii=False, indent=2) + "\n"
    if kind == "sms":
        from alphawatch.channels.sms import Sms, sms_segments

        text = channel.message(payload) if isinstance(channel, Sms) else render("sms", payload, language)
        encoding, segments = sms_segments(text)
        return f"{text}\n\n({len(text)} characters, {encoding}, {segments} segment{'s' * (segments != 1)})\n"
    if kind == "email":
        subject, text = render("subject", payload, language, overrides), render("text", payload, language, overrides)
        html = "\n" + render("html", payload, language, overrides) if args.html else ""
        return f"Subject: {subject}\n\n{text}{html}"
    return render("text", payload, language, overrides)


def _refuse_misuse(args: argparse.Namespace) -> None:
    """Raise :class:`RenderRefused` for options that do not go together, or one missing for another."""
    if args.channel is not None:
        told = [f"--{name}" for name in ("kind", "lang") if getattr(args, name) is not None]
        if told:
            raise RenderRefused(
                f"--channel renders in the channel's own kind and language: leave out {' and '.join(told)}"
            )
    if args.rule is None:
        used = [f"--{name}" for name in ("value", "label", "detail") if getattr(args, name) not in (None, [])]
        if used:
            raise RenderRefused(f"{', '.join(used)} need{'s' * (len(used) == 1)} --rule NAME")
        return
    if args.payload is not None:
        raise RenderRefused("--rule and --payload each give the alert: use one")
    if args.severity is not None:
        raise RenderRefused("--rule renders with the rule's own severity (its severity: key); leave out --severity")
    names = [name for name, _ in args.label]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise RenderRefused(f"--label {', '.join(twice)} given more than once")


def _read_payload(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RenderRefused(f"cannot read {path}: {exc}") from None
    problem = _payload_problem(payload)
    if problem:
        raise RenderRefused(f"{path} is not a webhook v4 payload: {problem}")
    result: dict[str, Any] = payload
    return result


def _configuration(args: argparse.Namespace) -> Config:
    """The configuration ``-c`` names (default as the other commands have it), loaded."""
    from alphawatch.daemon.cli import DEFAULT_CONFIG
    from alphawatch.daemon.config import load_config
    from alphawatch.daemon.errors import ConfigError

    if args.config is None:
        args.config = Path(DEFAULT_CONFIG)
    try:
        return load_config(args.config)
    except ConfigError as exc:
        problem = exc.problems[0]
        raise RenderRefused(f"{args.config} has problems (alphawatch check -c lists them): {problem}", 1) from None


def _named(items: Iterable[_Named], name: str, what: str, config: Path) -> _Named:
    """The channel or rule called ``name`` in the configuration."""
    items = list(items)
    for item in items:
        if item.name == name:
            return item
    raise RenderRefused(f"no {what} named {name!r} in {config} (it has: {', '.join(i.name for i in items) or 'none'})")


def _rule_payload(config: Config, rule: RuleConfig, args: argparse.Namespace) -> dict[str, Any]:
    """The notification of ``rule``'s alert as the daemon would build it. Placeholders the annotations use that the
    alert has nothing for are listed on stderr; so are the routes and channels it is sent to."""
    from alphawatch.daemon.preview import default_labels, preview

    sample_labels = tuple(sorted(args.label)) if args.label else default_labels(rule)
    shown = preview(config, rule, sample_labels, args.value, dict(args.detail), args.status, args.channel)
    if shown.unfilled:
        names = ", ".join("{{ " + u + " }}" for u in shown.unfilled)
        print(f"note: nothing for {names} in this alert: rendered empty (give --value or --label; a detail only if "
              "the rule's kind reports it)", file=sys.stderr)  # fmt: skip
    if not shown.watched:
        print(f"note: {rule.name}'s match does not take a sample with these labels: it would never alert on it",
              file=sys.stderr)  # fmt: skip
    routed = "; ".join(f"{', '.join(channels)} (route {path})" for path, channels in shown.routes) or "no channel"
    if args.channel is None:
        print(f"note: sent to {routed}; render as one of them sends with --channel NAME", file=sys.stderr)
    elif args.channel not in shown.channels:
        print(f"note: the routing tree sends this alert to {routed}, not to {args.channel}", file=sys.stderr)
    elif len(shown.routes) > 1:
        print(f"note: sent to {routed}; shown: the first group with {args.channel}", file=sys.stderr)
    return shown.payload


def _payload_problem(payload: object) -> str | None:
    """What in a ``--payload`` document :func:`build_context` cannot read, or None."""
    if not isinstance(payload, dict):
        return f"expected a JSON object, not {type(payload).__name__}"
    alerts = payload.get("alerts") or []
    if not isinstance(alerts, list):
        return '"alerts" must be a list of objects'
    for key in ("commonLabels", "groupLabels", "commonAnnotations"):
        if payload.get(key) and not isinstance(payload[key], dict):
            return f'"{key}" must be an object'
    truncated = payload.get("truncatedAlerts")
    if truncated and (not isinstance(truncated, int) or isinstance(truncated, bool)):
        return '"truncatedAlerts" must be a whole number'
    for number, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            return f"alerts[{number}] must be an object, not {type(alert).__name__}"
        for key in ("labels", "annotations", "details"):
            if alert.get(key) and not isinstance(alert[key], dict):
                return f'alerts[{number}]."{key}" must be an object'
    return None
