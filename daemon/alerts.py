"""The alert lifecycle, the same for every rule kind: inactive → pending → firing → resolved.

A :class:`Tracker` belongs to one rule actor. It turns the rule's conditions into transitions, applying
``for`` (pending duration), ``keep_firing_for`` and the rule's mutes, and says when it next needs the clock.
It does no I/O: the actor persists what it returns. Repeats belong to the notification groups (dispatch.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from alphawatch.daemon.config import RuleConfig
from alphawatch.daemon.routing import EMERGENCY
from alphawatch.rules import Condition, Labels

PENDING, FIRING, RESOLVED, INACTIVE = "pending", "firing", "resolved", "inactive"


def fingerprint(rule: str, labels: Labels) -> str:
    """Stable identity of an alert: its rule and its labels."""
    text = rule + "\0" + "\0".join(f"{k}={v}" for k, v in labels)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert's persisted state. ``series`` are the labels the rule kind reported; ``labels`` the full set."""

    fingerprint: str
    rule: str
    series: Labels
    labels: Labels
    state: str
    active_at: float
    value: float | None
    fired_at: float | None = None
    resolved_at: float | None = None
    false_since: float | None = None
    last_notified_at: float | None = None
    notify_seq: int = 0
    details: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Transition:
    """A change worth persisting. ``notify`` is true when channels must hear of it (firing, unmuted, resolved)."""

    alert: Alert
    from_state: str
    to_state: str
    at: float
    value: float | None
    notify: bool
    note: str | None = None


class Tracker:
    def __init__(self, rule: RuleConfig, alerts: Iterable[Alert] = ()) -> None:
        self.rule = rule
        self.alerts: dict[Labels, Alert] = {}
        self.firing_count = 0
        self._timed: set[Labels] = set()
        """Series whose alert the clock alone can change (pending, keeping on firing, not told yet): only these
        are looked at by :meth:`tick`, so an evaluation costs what changed, not every alert held."""
        for alert in alerts:
            if alert.state in (PENDING, FIRING):
                self._put(alert.series, alert)
        self.dirty: set[Labels] = set()
        """Series whose alert changed without a transition (a new value, ``false_since``): to be saved."""
        self.muted = False
        """While muted, alerts still change state (and the history records it) but no channel hears of it; when
        the mute ends, alerts that fired meanwhile and still fire are notified then. An ``emergency`` alert is
        muted only when the rule itself names that severity (its ``severity`` or its ``labels``)."""
        self._mutes_emergencies = dict(rule.labels).get("severity", rule.severity) == EMERGENCY

    def firing(self) -> Mapping[Labels, bool]:
        """Series whose alert is firing, for hysteresis (a live view, not a copy)."""
        return _FiringView(self.alerts)

    def update(self, conditions: Iterable[Condition], now: float) -> tuple[list[Transition], float | None]:
        """Apply the rule's conditions at ``now``; return transitions and the next instant to call again."""
        out: list[Transition] = []
        for condition in conditions:
            alert = self.alerts.get(condition.labels)
            if condition.active:
                if alert is None:
                    alert = self._new(condition, now)
                    if alert.state == FIRING:
                        told = alert.notify_seq > 0
                        note = None if told else "muted"
                        out.append(Transition(alert, INACTIVE, FIRING, now, condition.value, told, note))
                    else:
                        out.append(Transition(alert, INACTIVE, PENDING, now, condition.value, False))
                    self._put(condition.labels, alert)
                elif (alert.value, alert.false_since, alert.details) != (condition.value, None, condition.details):
                    self._put(
                        condition.labels,
                        replace(alert, value=condition.value, false_since=None, details=condition.details),
                    )
                    self.dirty.add(condition.labels)
            elif alert is not None:
                if alert.state == PENDING:
                    self._drop(condition.labels)
                    out.append(Transition(alert, PENDING, INACTIVE, now, condition.value, False))
                    continue
                updated = alert
                if updated.false_since is None:
                    updated = replace(updated, false_since=now)
                if condition.value is not None and condition.value != updated.value:
                    updated = replace(updated, value=condition.value, details=condition.details or updated.details)
                if updated is not alert:
                    self._put(condition.labels, updated)
                    self.dirty.add(condition.labels)
        out += self.tick(now)
        return out, self.next_deadline()

    def tick(self, now: float) -> list[Transition]:
        """Transitions due by the clock alone: pending → firing, keep_firing_for over, an ended mute."""
        out: list[Transition] = []
        for series in list(self._timed):
            alert = self.alerts[series]
            muted = self._muted(alert.labels)
            note = "muted" if muted else None
            if alert.state == PENDING and now >= alert.active_at + self.rule.pending_for:
                if muted:
                    fired = replace(alert, state=FIRING, fired_at=now, last_notified_at=None, notify_seq=0)
                else:
                    fired = replace(alert, state=FIRING, fired_at=now, last_notified_at=now, notify_seq=1)
                self._put(series, fired)
                out.append(Transition(fired, PENDING, FIRING, now, alert.value, not muted, note))
            elif alert.state == FIRING and alert.false_since is not None:
                if now >= alert.false_since + self.rule.keep_firing_for:
                    resolved = replace(alert, state=RESOLVED, resolved_at=now, notify_seq=alert.notify_seq + 1)
                    self._drop(series)
                    # told if and only if its firing was told: a mute never leaves a receiver with a stale alert
                    heard = alert.last_notified_at is not None
                    out.append(Transition(resolved, FIRING, RESOLVED, now, alert.value, heard, note))
            elif alert.state == FIRING and not muted and alert.last_notified_at is None:
                told = replace(alert, last_notified_at=now, notify_seq=alert.notify_seq + 1)
                self._put(series, told)
                out.append(Transition(told, FIRING, FIRING, now, alert.value, True, "unmuted"))
        return out

    def resolve_all(self, now: float) -> list[Transition]:
        """The rule is gone: resolve what fires, drop what is pending."""
        out = []
        for alert in self.alerts.values():
            if alert.state == FIRING:
                resolved = replace(alert, state=RESOLVED, resolved_at=now, notify_seq=alert.notify_seq + 1)
                out.append(Transition(resolved, FIRING, RESOLVED, now, alert.value, True))
            else:
                out.append(Transition(alert, PENDING, INACTIVE, now, alert.value, False))
        self.alerts.clear()
        self._timed.clear()
        self.firing_count = 0
        return out

    def next_deadline(self) -> float | None:
        best: float | None = None
        for series in self._timed:
            alert = self.alerts[series]
            if alert.state == PENDING:
                due = alert.active_at + self.rule.pending_for
            elif alert.false_since is not None:
                due = alert.false_since + self.rule.keep_firing_for
            elif self._muted(alert.labels):
                continue
            elif alert.last_notified_at is None:
                due = alert.active_at  # fired while muted and the mute is over: notify now
            else:
                continue
            best = due if best is None or due < best else best
        return best

    def _muted(self, labels: Labels) -> bool:
        return self.muted and (self._mutes_emergencies or ("severity", EMERGENCY) not in labels)

    def _put(self, series: Labels, alert: Alert) -> None:
        old = self.alerts.get(series)
        if old is not None and old.state == FIRING:
            self.firing_count -= 1
        if alert.state == FIRING:
            self.firing_count += 1
        self.alerts[series] = alert
        if alert.state == PENDING or alert.false_since is not None or alert.last_notified_at is None:
            self._timed.add(series)
        else:
            self._timed.discard(series)

    def _drop(self, series: Labels) -> None:
        if self.alerts.pop(series).state == FIRING:
            self.firing_count -= 1
        self._timed.discard(series)

    def _new(self, condition: Condition, now: float) -> Alert:
        """A new alert: pending, or without a ``for`` firing at once (as in Prometheus: no pending step)."""
        labels = self.rule.alert_labels(condition.labels)
        firing = self.rule.pending_for <= 0
        told = firing and not self._muted(labels)
        return Alert(
            fingerprint=fingerprint(self.rule.name, labels),
            rule=self.rule.name,
            series=condition.labels,
            labels=labels,
            state=FIRING if firing else PENDING,
            active_at=now,
            value=condition.value,
            fired_at=now if firing else None,
            last_notified_at=now if told else None,
            notify_seq=int(told),
            details=condition.details,
        )


class _FiringView(Mapping[Labels, bool]):
    __slots__ = ("_alerts",)

    def __init__(self, alerts: dict[Labels, Alert]) -> None:
        self._alerts = alerts

    def __getitem__(self, series: Labels) -> bool:
        return self._alerts[series].state == FIRING

    def get(self, series: Labels, default: Any = None) -> Any:
        alert = self._alerts.get(series)
        return default if alert is None else alert.state == FIRING

    def __iter__(self) -> Iterator[Labels]:
        return iter(self._alerts)

    def __len__(self) -> int:
        return len(self._alerts)
