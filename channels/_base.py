"""The shape every channel kind has.

A channel kind is one module in ``alphawatch.channels`` defining a subclass of :class:`Channel` with a unique
``kind``. The registry finds it by itself: adding a kind touches no other file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from alphawatch.daemon.durations import parse_duration
from alphawatch.daemon.errors import DeliveryError

__all__ = ["Channel", "DeliveryError", "Notification"]


@dataclass(frozen=True)
class Notification:
    """One message waiting in the durable outbox for one channel.

    ``payload`` is the Alertmanager webhook v4 document (``version``, ``groupKey``, ``status``, ``receiver``,
    ``groupLabels``, ``commonLabels``, ``commonAnnotations``, ``externalURL``, ``alerts``) with alphawatch's
    additions on each alert (``value``, ``severity``, ``rule``). ``idempotency_key`` is the same on every
    attempt, so receivers can drop repeats.
    """

    id: int
    channel: str
    idempotency_key: str
    payload: Mapping[str, Any]
    created_at: float
    attempts: int


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
