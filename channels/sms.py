"""SMS through an HTTP gateway: Twilio's REST API, or any gateway through a templated HTTP request.

A message is cut to ``max_segments`` SMS segments. GSM-7 text takes 160 characters in one segment, 153 per part
when concatenated (the extension characters ``^{}[]~|€\\`` and form feed take two); anything else, Chinese
included, goes as UCS-2 with 70 UTF-16 units in one segment, 67 per part.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from alphawatch.channels._base import Channel, DeliveryError, Notification
from alphawatch.channels._templates import (
    LANGUAGE_SCHEMA,
    TEMPLATES_SCHEMA,
    check_overrides,
    check_template,
    error_message,
    render,
    render_string,
)
from alphawatch.channels.webhook import post

GSM7 = "GSM-7"
UCS2 = "UCS-2"
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
SINGLE = {GSM7: 160, UCS2: 70}
"""Units (septets or UTF-16 code units) in a message sent as one segment."""
PART = {GSM7: 153, UCS2: 67}
"""Units per segment of a concatenated message: the concatenation header takes the rest."""
TWILIO_URL = "https://api.twilio.com"
DEFAULT_BODY = {"to": "{{ to }}", "message": "{{ message }}"}
_REMEMBERED = 1024


def _units(char: str, encoding: str) -> int:
    if encoding == GSM7:
        return 2 if char in GSM7_EXTENSION else 1
    return len(char.encode("utf-16-le")) // 2


def sms_encoding(text: str) -> str:
    """``GSM-7`` when every character is in the GSM 03.38 alphabet or its extension table, else ``UCS-2``."""
    return GSM7 if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text) else UCS2


def sms_segments(text: str) -> tuple[str, int]:
    """The encoding of ``text`` and the number of segments it takes (at least one).

    A two-unit character (a GSM-7 escape pair, a UTF-16 surrogate pair) is never split between segments.
    """
    encoding = sms_encoding(text)
    costs = [_units(c, encoding) for c in text]
    if sum(costs) <= SINGLE[encoding]:
        return encoding, 1
    count, used = 1, 0
    for cost in costs:
        if used + cost > PART[encoding]:
            count, used = count + 1, 0
        used += cost
    return encoding, count


def fit_segments(text: str, max_segments: int) -> str:
    """``text`` cut to at most ``max_segments`` segments, ending in ``…`` (UCS-2) or ``...`` (GSM-7) when cut.

    GSM-7 text is marked with three dots because ``…`` is not in the GSM alphabet: adding it would turn the
    whole message into UCS-2 and fit less than half as much.
    """
    encoding, count = sms_segments(text)
    if count <= max_segments:
        return text
    if encoding == GSM7:
        return _cut(text, GSM7, max_segments)
    # the character that makes the text UCS-2 may lie in the part that is cut: then GSM-7 keeps twice as much
    return max(_cut(text, GSM7, max_segments), _cut(text, UCS2, max_segments), key=len)


def _with_shorter_summary(payload: Mapping[str, Any], language: str, cap: int) -> str | None:
    """The built-in message with the longest start of its summary that fits in ``cap`` segments, or ``None``."""
    annotations = dict(payload.get("commonAnnotations") or {})
    alerts = list(payload.get("alerts") or ())
    summary = str(annotations.get("summary") or (alerts and (alerts[0].get("annotations") or {}).get("summary")) or "")

    def with_summary(short: str) -> str:
        each = [{**a, "annotations": {**(a.get("annotations") or {}), "summary": short}} for a in alerts]
        return render("sms", {**payload, "commonAnnotations": {**annotations, "summary": short}, "alerts": each},
                      language)  # fmt: skip

    # the marker of the message's encoding: a Chinese template makes it UCS-2 whatever the summary is
    marker = "..." if sms_encoding(summary) == GSM7 and sms_encoding(with_summary("")) == GSM7 else "…"
    best, low, high = None, 0, len(summary) - 1
    while low <= high:  # a shorter summary never makes a longer message: halve the range
        keep = (low + high) // 2
        text = with_summary(summary[:keep].rstrip() + marker)
        if sms_segments(text)[1] <= cap:
            best, low = text, keep + 1
        else:
            high = keep - 1
    return best


def _cut(text: str, encoding: str, max_segments: int) -> str:
    """The longest start of ``text`` that, with the marker, takes ``max_segments`` at most in ``encoding``."""
    marker = "…" if encoding == UCS2 else "..."
    limit = SINGLE[encoding] if max_segments == 1 else PART[encoding] * max_segments
    budget = limit - sum(_units(c, encoding) for c in marker)
    keep = used = 0
    for char in text:
        if encoding == GSM7 and char not in GSM7_BASIC and char not in GSM7_EXTENSION:
            break
        used += _units(char, encoding)
        if used > budget:
            break
        keep += 1
    while keep > 0:
        candidate = text[:keep].rstrip() + marker
        found, count = sms_segments(candidate)
        if found == encoding and count <= max_segments:
            return candidate
        keep -= 1
    return marker


class Sms(Channel):
    kind: ClassVar[str] = "sms"
    secret_fields: ClassVar[tuple[str, ...]] = ("auth_token", "url", "headers", "body")
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["provider", "to"],
        "properties": {
            "provider": {"enum": ["twilio", "http"]},
            "to": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
            "max_segments": {"type": "integer", "minimum": 1, "maximum": 10},
            "timeout": {"$ref": "#/$defs/duration"},
            "language": LANGUAGE_SCHEMA,
            "templates": TEMPLATES_SCHEMA,
            "account_sid": {"type": "string", "minLength": 1},
            "auth_token": {"type": "string", "minLength": 1},
            "from": {"type": "string", "minLength": 1},
            "base_url": {"type": "string", "pattern": "^https?://"},
            "url": {"type": "string", "pattern": "^https?://"},
            "method": {"enum": ["POST", "PUT"]},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "format": {"enum": ["json", "form"]},
            "body": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
        },
    }
    needs: ClassVar[dict[str, tuple[str, ...]]] = {"twilio": ("account_sid", "auth_token", "from"), "http": ("url",)}
    """The settings each provider requires (checked when the channel is built: the schema holds only keys)."""

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        super().__init__(name, settings)
        missing = [key for key in self.needs.get(settings.get("provider", ""), ()) if key not in settings]
        if missing:
            raise ValueError(f"provider {settings['provider']} needs {', '.join(missing)}")
        check_overrides(settings.get("templates"))
        sample = self._body_variables(
            Notification(0, name, "sample", {"status": "firing"}, 0.0, 0), "+886900000000", "Hi"
        )
        for key, value in dict(settings.get("body") or {}).items():
            problem = check_template(value, "sms", sample) if isinstance(value, str) else None
            if problem:
                raise ValueError(f"body.{key}: {problem}")
        # Recipients already served per notification, so that a retry after a partial failure does not text
        # the others twice. Memory only: a restart between attempts may repeat a message, never lose one.
        self._delivered: OrderedDict[str, set[str]] = OrderedDict()

    def message(self, payload: Mapping[str, Any]) -> str:
        """The text to send for ``payload``, within ``max_segments``: the built-in template shortens the summary
        so that the value, the recovery value and the duration (at the end) stay; anything else is cut."""
        language, overrides = self.settings.get("language", "en"), self.settings.get("templates")
        cap = int(self.settings.get("max_segments", 3))
        text = render("sms", payload, language, overrides, self.name)
        # the built-in template's message (also when a replacement failed and it stood in) shortens its summary
        if sms_segments(text)[1] > cap and (
            not (overrides or {}).get("sms") or text == render("sms", payload, language)
        ):
            text = _with_shorter_summary(payload, language, cap) or text
        return fit_segments(text, cap)

    async def send(self, notification: Notification, http: httpx.AsyncClient) -> None:
        text = self.message(notification.payload)
        done = self._delivered.setdefault(notification.idempotency_key, set())
        self._delivered.move_to_end(notification.idempotency_key)
        while len(self._delivered) > _REMEMBERED:
            self._delivered.popitem(last=False)
        recipients = list(self.settings["to"])
        for index, to in enumerate(recipients, 1):
            if to in done:
                continue
            try:
                if self.settings["provider"] == "twilio":
                    await self._send_twilio(http, to, text)
                else:
                    await self._send_http(http, notification, to, text)
            except DeliveryError as exc:
                where = f"recipient {index} of {len(recipients)}"
                raise DeliveryError(
                    f"{where}: {exc}", retryable=exc.retryable, retry_after=exc.retry_after, throttled=exc.throttled
                ) from None
            done.add(to)
        self._delivered.pop(notification.idempotency_key, None)

    async def _send_twilio(self, http: httpx.AsyncClient, to: str, text: str) -> None:
        sid = self.settings["account_sid"]
        base = str(self.settings.get("base_url", TWILIO_URL)).rstrip("/")
        url = f"{base}/2010-04-01/Accounts/{urllib.parse.quote(sid, safe='')}/Messages.json"
        token = base64.b64encode(f"{sid}:{self.settings['auth_token']}".encode()).decode()
        headers = {
            "Authorization": f"Basic {token}",
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "alphawatch",
        }
        body = urllib.parse.urlencode({"To": to, "From": self.settings["from"], "Body": text}).encode()
        await post(http, url, body, headers, self.timeout)

    def _body_variables(self, notification: Notification, to: str, text: str) -> dict[str, Any]:
        encoding, segments = sms_segments(text)
        return {
            "to": to,
            "recipients": list(self.settings.get("to", ())),
            "message": text,
            "encoding": encoding,
            "segments": segments,
            "idempotency_key": notification.idempotency_key,
            "channel": self.name,
            "status": notification.payload.get("status", ""),
        }

    async def _send_http(self, http: httpx.AsyncClient, notification: Notification, to: str, text: str) -> None:
        variables = self._body_variables(notification, to, text)
        fields: dict[str, Any] = {}
        for key, value in dict(self.settings.get("body", DEFAULT_BODY)).items():
            try:
                fields[key] = render_string(value, variables) if isinstance(value, str) else value
            except Exception as exc:
                raise DeliveryError(f"body field {key!r}: {error_message(exc)}", retryable=False) from None
        if self.settings.get("format", "json") == "form":
            body = urllib.parse.urlencode({k: _form_value(v) for k, v in fields.items()}).encode()
            content_type = "application/x-www-form-urlencoded"
        else:
            body = json.dumps(fields, ensure_ascii=False).encode()
            content_type = "application/json; charset=utf-8"
        headers = {
            "Content-Type": content_type,
            "Idempotency-Key": f"{notification.idempotency_key}:{to}",
            "User-Agent": "alphawatch",
            **self.settings.get("headers", {}),
        }
        method = str(self.settings.get("method", "POST"))
        await post(http, self.settings["url"], body, headers, self.timeout, method)


def _form_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
