"""The shape every channel kind has.

A channel kind is one module in ``alphawatch.channels`` defining a subclass of :class:`Channel` with a unique
``kind``. The registry finds it by itself: adding a kind touches no other file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from alphawatch.daemon.durations import parse_duration
from alphawatch.daemon.errors import DeliveryError

__all__ = ["Channel", "DeliveryError", "Notification"]


class Notification:
    """One message waiting in the durable outbox for one channel.

    ``payload`` is the Alertmanager webhook v4 document (``version``, ``groupKey``, ``status``, ``receiver``,
    ``groupLabels``, ``commonLabels``, ``commonAnnotations``, ``externalURL``, ``alerts``) with alphawatch's
    additions on each alert (``value``, ``severity``, ``rule``); ``body`` is the same document as JSON text.
    Either may be given: the other is made when first read (a webhook sends the outbox's text as it is).
    ``idempotency_key`` is the same on every attempt, so receivers can drop repeats.
    """

    __slots__ = ("_body", "_payload", "attempts", "channel", "created_at", "id", "idempotency_key")

    def __init__(
        self,
        id: int,
        channel: str,
        idempotency_key: str,
        payload: Mapping[str, Any] | str,
        created_at: float,
        attempts: int,
    ) -> None:
        self.id, self.channel, self.idempotency_key = id, channel, idempotency_key
        self.created_at, self.attempts = created_at, attempts
        self._body = payload if isinstance(payload, str) else None
        self._payload = None if isinstance(payload, str) else payload

    @property
    def payload(self) -> Mapping[str, Any]:
        if self._payload is None:
            self._payload = json.loads(self._body or "{}")
        return self._payload

    @property
    def body(self) -> str:
        if self._body is None:
            self._body = json.dumps(self._payload, ensure_ascii=False)
        return self._body


class Channel:
    """Base of channel kinds. Subclasses set ``kind`` and ``schema`` and implement :meth:`send`.

    ``schema`` is the JSON Schema of the kind's own settings (every key besides ``name`` and ``kind``).
    ``secret_fields`` names settings whose values must never be logged or shown.
    """

    kind: ClassVar[str]
    schema: ClassVar[dict[str, Any]]
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        self.name = name
        self.settings = settings

    @property
    def timeout(self) -> float:
        """Seconds one attempt may take."""
        value = self.settings.get("timeout", 10.0)
        return parse_duration(value) if isinstance(value, str) else float(value)

    async def send(self, notification: Notification, http: httpx.AsyncClient) -> None:
        """Deliver once. Return on success; raise :class:`DeliveryError` otherwise."""
        raise NotImplementedError

    @property
    def concurrency(self) -> int | None:
        """Deliveries in flight at once on this channel (``None``: the daemon's ``delivery.concurrency``)."""
        value = self.settings.get("concurrency")
        return int(value) if value is not None else None

    @property
    def rate_limit(self) -> tuple[int, float] | None:
        """``(count, seconds)``: at most ``count`` notifications per ``seconds``, or ``None`` for no limit."""
        value = self.settings.get("rate_limit")
        if not value:
            return None
        count, _, unit = str(value).partition("/")
        return int(count), {"s": 1.0, "m": 60.0, "h": 3600.0}[unit]

    def describe(self) -> dict[str, Any]:
        """Settings safe to show in the API and on the page: secrets replaced by ``"<secret>"``."""
        return {k: ("<secret>" if k in self.secret_fields else v) for k, v in self.settings.items()}
