"""Generic webhook: POSTs the Alertmanager webhook v4 JSON document, so existing receivers work unchanged."""

from __future__ import annotations

import json
import math
import time
from typing import Any, ClassVar

import httpx
import trio

from alphawatch.channels._base import Channel, DeliveryError, Notification
from alphawatch.channels._transport import exchange

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class Webhook(Channel):
    kind: ClassVar[str] = "webhook"
    secret_fields: ClassVar[tuple[str, ...]] = ("url", "headers")
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["url"],
        "properties": {
            "url": {"type": "string", "pattern": "^https?://"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "timeout": {"$ref": "#/$defs/duration"},
            "max_alerts": {"type": "integer", "minimum": 0},
        },
    }

    async def send(self, notification: Notification, http: httpx.AsyncClient) -> None:
        body = notification.body
        max_alerts = int(self.settings.get("max_alerts", 0))
        if max_alerts and len(notification.payload["alerts"]) > max_alerts:
            payload = dict(notification.payload)
            payload["truncatedAlerts"] = len(payload["alerts"]) - max_alerts
            payload["alerts"] = payload["alerts"][:max_alerts]
            body = json.dumps(payload, ensure_ascii=False)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": notification.idempotency_key,
            "User-Agent": "alphawatch",
            **self.settings.get("headers", {}),
        }
        await post(http, self.settings["url"], body.encode(), headers, self.timeout)


async def post(
    http: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], seconds: float, method: str = "POST"
) -> None:
    """Send once (POST unless told otherwise); map every failure to :class:`DeliveryError` without the URL (it may
    hold a secret)."""
    request = httpx.Request(
        method, url, content=body, headers=headers, extensions={"timeout": httpx.Timeout(seconds).as_dict()}
    )
    try:
        with trio.fail_after(seconds):  # the whole attempt, not each read: an answer trickling in is cut off too
            response = await exchange(http, request)
    except (httpx.TimeoutException, trio.TooSlowError):
        raise DeliveryError(f"timed out after {seconds:g}s") from None
    except httpx.HTTPError as exc:
        raise DeliveryError(f"connection failed: {type(exc).__name__}") from None
    if response.is_success:
        return
    retry_after = _retry_after(response.headers.get("Retry-After"))
    retryable = response.status_code in RETRYABLE_STATUS or response.status_code >= 500
    throttled = response.status_code == 429
    raise DeliveryError(
        f"HTTP {response.status_code}", retryable=retryable, retry_after=retry_after, throttled=throttled
    )


def _retry_after(value: str | None) -> float | None:
    """Seconds from ``Retry-After``: a number of seconds or an HTTP date (RFC 9110); ``None`` if neither."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "inf" or "1e300" would hold the notification for ever: ignored, the backoff decides
        return max(0.0, seconds) if math.isfinite(seconds) else None
    from email.utils import parsedate_to_datetime  # rare: not worth a module at start

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None
