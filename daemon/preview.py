"""The notification a configured rule's alert would send, built by the daemon's own code (``template render
--rule``): its labels as the rule makes them, its annotations filled, its group as the routing tree forms it."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alphawatch.daemon.alerts import FIRING, PENDING, RESOLVED, Alert, Transition, fingerprint
from alphawatch.daemon.config import ANNOTATION_PLACEHOLDER, Config, RuleConfig
from alphawatch.daemon.notify import alert_document, notification_head
from alphawatch.daemon.routing import group_key_text, group_labels, trace_routes
from alphawatch.rules import Labels, Sample

RESOLVED_AFTER = 8100.0  # a resolved preview fired this long before (2 h 15 min)


@dataclass(frozen=True)
class Preview:
    payload: dict[str, Any]  # the webhook v4 document
    routes: tuple[tuple[str, tuple[str, ...]], ...]  # (route key, its channels) the tree sends it to, windows aside
    unfilled: tuple[str, ...]  # placeholders the annotations use that this alert has nothing for
    watched: bool  # whether the rule watches a series with these labels (its match takes them)

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for _, channels in self.routes for c in channels))


def default_labels(rule: RuleConfig) -> Labels:
    """The labels the rule's ``match`` pins with ``=``: a series it watches, when the user names none."""
    pinned = {m.name: m.value for s in rule.rule.selectors() for m in s.matchers if m.op == "="}
    return tuple(sorted(pinned.items()))


def preview(
    config: Config,
    rule: RuleConfig,
    sample_labels: Labels,
    value: float | None,
    details: Mapping[str, Any],
    status: str = FIRING,
    channel: str | None = None,
    now: float | None = None,
) -> Preview:
    """The notification of ``rule``'s alert for a sample with ``sample_labels`` (the alert keeps what the kind
    keeps of them: an ``absence`` rule its ``by`` labels) reporting ``value``, as the group's first flush sends
    it to ``channel`` (default: the first channel the tree routes it to)."""
    now = time.time() if now is None else now
    series = rule.rule.alert_series(tuple(sorted(sample_labels)))
    labels = rule.alert_labels(series)
    resolved = status == RESOLVED
    fired_at = now - RESOLVED_AFTER if resolved else now
    alert = Alert(
        fingerprint=fingerprint(rule.name, labels),
        rule=rule.name,
        series=series,
        labels=labels,
        state=status,
        active_at=fired_at,
        value=value,
        fired_at=fired_at,
        resolved_at=now if resolved else None,
        details=tuple(sorted(details.items())),
    )
    transition = Transition(alert, FIRING if resolved else PENDING, status, now, value, notify=True)
    settings = config.daemon
    # as the daemon links to the page: the configured address, else the one it listens on (IPv6 in brackets)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    external_url = settings.external_url or f"http://{host}:{settings.port}"
    document = alert_document(rule, transition, external_url)
    label_map = dict(labels)
    nodes = [] if config.route is None else [n for n in trace_routes(config.route, label_map).routes if n.channels]
    node = next((n for n in nodes if channel is None or channel in n.channels), None)
    head = notification_head(
        group_key_text(node, labels) if node else f"{{}}:{{alertname={json.dumps(rule.name)}}}",
        document["status"],
        channel or (node.channels[0] if node else "preview"),
        group_labels(node, label_map) if node else {"alertname": rule.name},
        label_map,
        external_url,
    )
    payload = {**head, "commonAnnotations": document["annotations"], "alerts": [document]}  # (as the store adds them)
    watched = any(s.matches(Sample(s.metric, sample_labels, now, 0.0)) for s in rule.rule.selectors())
    routes = tuple((n.key, n.channels) for n in nodes)
    return Preview(payload, routes, _unfilled(rule, label_map, value, details), watched)


def _unfilled(
    rule: RuleConfig, labels: Mapping[str, str], value: float | None, details: Mapping[str, Any]
) -> tuple[str, ...]:
    missing: dict[str, None] = {}
    for _, text in rule.annotations:
        for found in ANNOTATION_PLACEHOLDER.finditer(text):
            whole, kind, name = found.groups()
            if (
                (whole == "value" and value is None)
                or (kind == "labels" and not labels.get(name))
                or (kind == "details" and name not in details)
            ):
                missing[whole] = None
    return tuple(missing)
