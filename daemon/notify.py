"""What a notification says of an alert: its document (which channels hear of it is routing.py's job).

The payload is the Alertmanager webhook v4 document, so receivers written for Alertmanager work unchanged;
each alert also carries ``value`` (for a resolved alert: the value it recovered to, not the stale firing
value), ``severity``, ``rule`` and ``durationSeconds``.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from alphawatch.daemon.alerts import RESOLVED, Transition
from alphawatch.daemon.calendar_model import local_datetime
from alphawatch.daemon.config import ANNOTATION_PLACEHOLDER, RuleConfig

ZERO_TIME = "0001-01-01T00:00:00Z"
_PLACEHOLDER = ANNOTATION_PLACEHOLDER


@lru_cache(maxsize=1024)
def rfc3339(ts: float) -> str:
    # alerts that fire together share their instants: a burst formats a few, not one per alert
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render_annotation(
    text: str,
    labels: dict[str, str],
    value: float | None,
    details: Mapping[str, Any] | None = None,
    instants: Collection[str] = (),
) -> str:
    """Fill ``{{ value }}``, ``{{ labels.NAME }}`` and ``{{ details.NAME }}`` in an annotation; a detail named in
    ``instants`` (epoch seconds) as Taipei time."""

    def fill(found: re.Match[str]) -> str:
        if found.group(1) == "value":
            return _number(value)
        if found.group(2) == "labels":
            return labels.get(found.group(3), "")
        name = found.group(3)
        detail = (details or {}).get(name)
        if isinstance(detail, int | float) and name in instants and math.isfinite(detail):
            with contextlib.suppress(OverflowError, OSError, ValueError):  # (past year 9999: the number)
                return local_datetime(detail).strftime("%Y-%m-%d %H:%M:%S +08:00")
        return _number(detail) if isinstance(detail, int | float) else ("" if detail is None else str(detail))

    return _PLACEHOLDER.sub(fill, text)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def notification_head(
    group_key: str,
    status: str,
    receiver: str,
    group_labels: dict[str, str],
    common_labels: dict[str, str],
    external_url: str,
) -> dict[str, Any]:
    """A group's notification without its ``commonAnnotations`` and ``alerts`` (the store adds those, from the
    members' documents, as it writes it). ``group_key``: Alertmanager's ``groupKey`` text."""
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "externalURL": external_url,
    }


def alert_document(rule: RuleConfig, transition: Transition, external_url: str) -> dict[str, Any]:
    alert = transition.alert
    labels = dict(alert.labels)
    resolved = transition.to_state == RESOLVED
    value = transition.value
    fired_at = alert.fired_at or alert.active_at
    details = dict(alert.details)
    return {
        "status": "resolved" if resolved else "firing",
        "labels": labels,
        "annotations": {
            k: render_annotation(v, labels, value, details, rule.rule.instant_details) for k, v in rule.annotations
        },
        "startsAt": rfc3339(fired_at),
        "endsAt": rfc3339(alert.resolved_at) if resolved and alert.resolved_at else ZERO_TIME,
        "generatorURL": f"{external_url}/#rule={rule.name}",
        "fingerprint": alert.fingerprint,
        "value": value,
        "severity": labels.get("severity", rule.severity),
        "rule": rule.name,
        "durationSeconds": round(alert.resolved_at - fired_at, 3) if resolved and alert.resolved_at else None,
        "details": details,
    }
