"""Slack: a Block Kit message to an incoming webhook (severity, summary, key values, a link to the page)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from alphawatch.channels._base import Channel, Notification
from alphawatch.channels._templates import (
    LANGUAGE_SCHEMA,
    PHRASES,
    TEMPLATES_SCHEMA,
    build_context,
    check_overrides,
    render,
)
from alphawatch.channels.webhook import post

SEVERITY_EMOJI = {"info": "ℹ️", "warning": "⚠️", "error": "🟠", "critical": "🔴", "emergency": "🚨"}
RESOLVED_EMOJI = "✅"
# Block Kit's limits: header text 150 characters, section text 3000, a field 2000, at most 10 fields.
_HEADER_MAX, _SECTION_MAX, _FIELD_MAX, _FIELDS_MAX = 150, 3000, 2000, 10


class Slack(Channel):
    kind: ClassVar[str] = "slack"
    secret_fields: ClassVar[tuple[str, ...]] = ("url",)
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["url"],
        "properties": {
            "url": {"type": "string", "pattern": "^https?://"},
            "timeout": {"$ref": "#/$defs/duration"},
            "language": LANGUAGE_SCHEMA,
            "templates": TEMPLATES_SCHEMA,
        },
    }

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        super().__init__(name, settings)
        check_overrides(settings.get("templates"))

    async def send(self, notification: Notification, http: httpx.AsyncClient) -> None:
        message = build_message(
            notification.payload, self.settings.get("language", "en"), self.settings.get("templates"), self.name
        )
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "alphawatch"}
        await post(http, self.settings["url"], json.dumps(message).encode(), headers, self.timeout)


def build_message(
    payload: Mapping[str, Any], language: str = "en", overrides: Mapping[str, str] | None = None, channel: str = ""
) -> dict[str, Any]:
    """The Block Kit message for ``payload``: header, summary text, key-value fields, a button, a footer.

    The header is the ``subject`` template and the main text the ``slack`` template (Slack mrkdwn), so both
    follow the channel's language and template overrides. ``text`` repeats the subject for notifications.
    """
    context = build_context(payload, language)
    phrases = context["t"]
    subject = render("subject", payload, language, overrides, channel)
    emoji = RESOLVED_EMOJI if context["resolved"] else SEVERITY_EMOJI.get(context["severity"], "🔔")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(f"{emoji} {subject}", _HEADER_MAX)}},
    ]
    body = render("slack", payload, language, overrides, channel).strip()
    if body:
        text = _cut_lines(body, _SECTION_MAX, phrases["more_lines"])
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    fields = [
        {"type": "mrkdwn", "text": _cut(f"*{_escape(name)}*\n{_escape(value)}", _FIELD_MAX)}
        for name, value in _key_values(context)
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields[:_FIELDS_MAX]})
    link = str(context["link"])
    if link.startswith(("http://", "https://")):
        button = {"type": "button", "text": {"type": "plain_text", "text": phrases["open"]}, "url": link}
        blocks.append({"type": "actions", "elements": [button]})
    footer = " · ".join(str(part) for part in ("alphawatch", context["receiver"], context["group_key"]) if part)
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(_escape(footer), _FIELD_MAX)}]})
    return {"text": _escape(subject), "blocks": blocks}  # the push notification reads it as mrkdwn


def _key_values(context: Mapping[str, Any]) -> list[tuple[str, str]]:
    phrases = context["t"]
    alerts = context["alerts"]
    pairs = [(phrases["severity"], context["severity_name"])]
    if context["model"]:
        pairs.append((phrases["model"], context["model"]))
    if len(alerts) == 1:
        alert = alerts[0]
        pairs.append((phrases["rule"], alert["rule"]))
        if alert["resolved"]:
            pairs.append((phrases["recovery_value"], alert["value_text"]))
            pairs.append((phrases["fired_for"], alert["duration_text"]))
        else:
            pairs.append((phrases["value"], alert["value_text"]))
        pairs.append((phrases["since"], alert["starts_at_text"]))
    elif context["count"] > 1:
        pairs.append((phrases["status"], context["tally"]))
    return [(name, value) for name, value in pairs if value]


def _escape(text: object) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cut_lines(text: str, limit: int, more: str = PHRASES["en"]["more_lines"]) -> str:
    """``text`` within ``limit`` characters, cut between lines (an entity such as ``&amp;`` or a ``<url|link>``
    cut in half breaks the message), saying in ``more`` (a ``%d`` phrase) how many lines were left out."""
    if len(text) <= limit:
        return text
    lines = text.splitlines()
    kept: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        note = more % (len(lines) - index)
        if used + len(line) + 1 + len(note) > limit:
            return "\n".join([*kept, note]) if kept else _cut(text, limit)
        kept.append(line)
        used += len(line) + 1
    return "\n".join(kept)
