"""Grouping and timing of notifications, with Alertmanager's semantics and state that survives restarts.

An alert that fires is routed through the tree (at that instant: muted routes fall through) into one
*aggregation group* per matching route and group-label set. A group sends one notification per channel with
every alert in it: first ``group_wait`` after it was created; then, when alerts join or resolve, at
``group_interval`` after its last flush (never later); and otherwise every ``repeat_interval`` while alerts still
fire. Resolved alerts go out once, carrying their recovery value, then leave the group.

The dispatcher is a state machine without I/O. :meth:`Dispatcher.route` runs in the rule actor's commit, so the
group changes are written in the same transaction as the alert transitions; :meth:`Dispatcher.flush_due` turns
due groups into outbox rows, again in one transaction. Everything is in the ``groups``, ``group_members`` and
``group_member_docs`` tables, so a restart or a reload neither resends, loses nor delays a group.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from alphawatch.daemon.alerts import FIRING, RESOLVED, Transition
from alphawatch.daemon.config import Config, RuleConfig
from alphawatch.daemon.escalation import Policy, policy_for
from alphawatch.daemon.notify import alert_document, notification_head
from alphawatch.daemon.routing import (
    EMERGENCY,
    RouteNode,
    Routing,
    group_key_text,
    group_pairs,
    hold_window,
    names_emergency,
    remembering_router,
    trace_routes,
)
from alphawatch.daemon.store import Outgoing, Queued, Withdrawal, dump_json
from alphawatch.daemon.suppression import Reason, Suppressed
from alphawatch.rules import Labels

Reasoner = Callable[[str, Mapping[str, str], float, Iterable[tuple[str, Mapping[str, str]]]], Any]
"""(fingerprint, labels, at, firing alerts) → a suppression reason or ``None`` (silences, inhibition)."""
AckCheck = Callable[[str, float], Any]
"""(fingerprint, active_at) → the acknowledgement of that firing episode or ``None``."""


@dataclass(slots=True)
class Member:
    """An alert in a group. Held for every firing alert, so it is small: the labels are the alert's own tuple, and
    the alert's document (notify.alert_document, as JSON) lives in the store (``group_member_docs``), which reads
    it back when it writes a notification. A document made in a step travels with the step's :class:`Writes`."""

    fingerprint: str
    rule: str
    status: str  # firing | resolved
    sent: str | None  # the status this group last told its channels, None if never
    active_at: float
    pairs: Labels

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.pairs)

    @classmethod
    def from_row(cls, row: Mapping[str, Any], status: str, sent: str | None) -> Member:
        pairs = tuple(sorted(json.loads(row["doc"])["labels"].items()))
        return cls(row["fingerprint"], row["rule"], status, sent, row["active_at"], pairs)


@dataclass(slots=True, eq=False)
class Group:
    """An aggregation group. Held for as long as an alert is in it, so it keeps no key text of its own: the
    dispatcher finds it by route and label pairs, and :attr:`key` is written out when the store needs it."""

    node: RouteNode
    pairs: Labels  # the group labels (routing.group_pairs)
    created_at: float
    last_flush_at: float | None = None
    next_flush_at: float | None = None
    flushes: int = 0
    # its members: the one Member, or by fingerprint when there are several (with group_by '...' every firing
    # alert has a group of its own: a dict each would be its biggest part)
    _members: Member | dict[str, Member] | None = None
    emergencies: int = 0  # members with severity=emergency (whom a hold_until may spare: see Dispatcher._release)

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.pairs)

    @property
    def key(self) -> str:
        """The group's identity in the store and in notifications: its route and its group labels."""
        return _group_key(self.node, self.pairs)

    @property
    def members(self) -> tuple[Member, ...]:
        held = self._members
        return () if held is None else tuple(held.values()) if isinstance(held, dict) else (held,)

    def get(self, fingerprint: str) -> Member | None:
        held = self._members
        if isinstance(held, dict):
            return held.get(fingerprint)
        return held if held is not None and held.fingerprint == fingerprint else None

    def member(self, fingerprint: str) -> Member:
        member = self.get(fingerprint)
        if member is None:
            raise KeyError(fingerprint)
        return member

    def put(self, member: Member) -> None:
        """Add ``member``, or replace the one with its fingerprint."""
        held = self._members
        if _EMERGENCY in member.pairs and self.get(member.fingerprint) is None:
            self.emergencies += 1
        if isinstance(held, dict):
            held[member.fingerprint] = member
        elif held is None or held.fingerprint == member.fingerprint:
            self._members = member
        else:
            self._members = {held.fingerprint: held, member.fingerprint: member}

    def remove(self, fingerprint: str) -> None:
        if _EMERGENCY in self.member(fingerprint).pairs:
            self.emergencies -= 1
        held = self._members
        if isinstance(held, dict):
            del held[fingerprint]
            if len(held) == 1:
                self._members = next(iter(held.values()))
        elif held is not None and held.fingerprint == fingerprint:
            self._members = None
        else:
            raise KeyError(fingerprint)


SUPPRESSED_ESCALATION_RECHECK = 30.0
"""Seconds between two looks at an escalation tier held back by a silence or an inhibition (a silence changed
through the API is looked at at once)."""


@dataclass(slots=True)
class Escalating:
    """A firing alert under an escalation policy; ``next_tier`` is the index of the tier still to come. ``fired_at``
    is when a route first told of it (infinity until then): the tiers count from there, so a notification held
    until the pre-open cannot let the second on-call be paged before the first heard anything."""

    fingerprint: str
    rule: str
    policy: str
    active_at: float
    fired_at: float
    next_tier: int
    doc: str  # the alert's document as JSON, read when a tier falls due
    not_before: float | None = None  # the tier fell due outside its windows: wait for this opening


# The rows a step writes: named tuples, made for every member of a step (a frozen dataclass took 4 µs each)
class GroupRow(NamedTuple):
    route: str
    route_ident: str
    channels: tuple[str, ...]  # its route's: told its untold resolutions if the route goes while it is stopped
    held: int  # 1: its last flush held news back for a silence or an inhibition (looked at again at the start);
    # 2: it holds a reminder back (for them, or for its hold_until window)
    labels: dict[str, str]
    created_at: float
    last_flush_at: float | None
    next_flush_at: float | None
    flushes: int


class MemberRow(NamedTuple):
    rule: str
    status: str
    sent: str | None
    active_at: float
    doc: str | None  # JSON; None: the row keeps the document it has (or takes the one of ``source``'s row)
    source: str | None


class EscalationRow(NamedTuple):
    rule: str
    policy: str
    active_at: float
    fired_at: float
    next_tier: int
    doc: str  # JSON


@dataclass
class Writes:
    """What one step changed, for the store to write in one transaction.

    While a step runs the maps hold the live objects; :meth:`freeze` turns them into rows of their values at the
    end of the step, so a write queued behind another can never store a later state than its own step saw (a
    member marked sent before the outbox row that tells it exists).
    """

    outgoing: list[Outgoing] = field(default_factory=list)
    groups: dict[str, Group | GroupRow | None] = field(default_factory=dict)  # key → to save, or None to delete
    members: dict[tuple[str, str], Member | MemberRow | None] = field(default_factory=dict)
    suppressed: list[Suppressed] = field(default_factory=list)
    escalations: dict[str, Escalating | EscalationRow | None] = field(default_factory=dict)
    sent: list[tuple[str, str, str]] = field(default_factory=list)  # group key, fingerprint, status told
    # (group key, fingerprint) → the member's document made in this step; or the key of the group whose row has
    # it, for a member moving there
    docs: dict[tuple[str, str], str] = field(default_factory=dict)
    sources: dict[tuple[str, str], str] = field(default_factory=dict)
    _keys: dict[Group, str] = field(default_factory=dict, repr=False)  # (see key)
    held: Collection[Group] = ()  # the dispatcher's held groups (see GroupRow.held)
    reminding: Collection[Group] = ()  # and those with a reminder held back

    def __bool__(self) -> bool:
        return bool(self.outgoing or self.groups or self.members or self.suppressed or self.escalations or self.sent)

    def key(self, group: Group) -> str:
        """``group.key``, made once in a step: a burst joins thousands of alerts to a few groups, and the step's
        rows share the one text."""
        key = self._keys.get(group)
        if key is None:
            key = self._keys[group] = group.key
        return key

    def freeze(self) -> Writes:
        for key, group in self.groups.items():
            if isinstance(group, Group):
                self.groups[key] = GroupRow(group.node.path, group.node.ident, group.node.channels,
                                            (group in self.held) | (group in self.reminding) << 1,
                                            group.labels, group.created_at,
                                            group.last_flush_at, group.next_flush_at, group.flushes)  # fmt: skip
        for pair, member in self.members.items():
            if isinstance(member, Member):
                self.members[pair] = MemberRow(member.rule, member.status, member.sent, member.active_at,
                                               self.docs.get(pair), self.sources.get(pair))  # fmt: skip
        for fingerprint, escalating in self.escalations.items():
            if isinstance(escalating, Escalating):
                self.escalations[fingerprint] = EscalationRow(escalating.rule, escalating.policy,
                                                              escalating.active_at, escalating.fired_at,
                                                              escalating.next_tier, escalating.doc)  # fmt: skip
        self._keys.clear()
        return self


class Dispatcher:
    def __init__(self, config: Config) -> None:
        self.config = config
        # route ident → group label pairs → group (the pairs are the group's own: no key object per group)
        self._groups: dict[str, dict[Labels, Group]] = {}
        # fingerprint → the group it is in, or the groups when it is in several (held per firing alert)
        self._by_alert: dict[str, Group | tuple[Group, ...]] = {}
        self.escalating: dict[str, Escalating] = {}
        self.held: set[Group] = set()  # groups whose last flush held news back for a silence or an inhibition
        self.reminding: set[Group] = set()  # groups whose last flush held a reminder back (it goes at the next)
        # (group key, fingerprint) → the news held back and why, as last recorded: recorded again only when it
        # changes (a group is looked at again whenever an alert resolves or a silence changes)
        self._recorded: dict[tuple[str, str], tuple[str, float, str, str]] = {}
        # fingerprint → what holds its tier that fell due (silenced, inhibited, acknowledged): (kind, ref), as recorded
        self.held_escalations: dict[str, tuple[str, str]] = {}
        # loaded groups whose route is gone: key → its row and its members' rows, until adopt()
        self._stale: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        self._rewritten: list[tuple[str, Group]] = []  # loaded groups to write again (their route moved), until adopt()
        self._ended: list[str] = []  # loaded escalations whose policy is gone, until adopt()
        self.reason: Reasoner = lambda *_: None
        self.may_suppress: Callable[[], bool] = lambda: True
        """Whether ``reason`` can find anything now (a silence or an inhibition rule): else it is not asked."""
        self.acknowledged: AckCheck = lambda *_: None
        self.ack_reason: Callable[[Any], Reason] = lambda ack: Reason("acknowledged", str(ack), f"acknowledged: {ack}")
        self._router: tuple[RouteNode | None, Callable[[Labels], Routing] | None] = (None, None)
        self._instants: dict[float, float] = {}  # (see _instant; emptied at every flush step)

    def groups(self) -> Iterator[Group]:
        for by_pairs in self._groups.values():
            yield from by_pairs.values()

    def _group(self, node: RouteNode, pairs: Labels) -> Group | None:
        """The group of ``node`` with these group label pairs, if there is one."""
        return self._groups.get(node.ident, _NO_GROUPS).get(pairs)

    # configuration ----------------------------------------------------------------------------------------
    def nodes(self) -> dict[str, RouteNode]:
        return {node.path: node for node in self.config.route.walk()} if self.config.route else {}

    def apply(self, config: Config, now: float) -> Writes:
        """A new configuration: groups keep their timers where their route still exists (with its new
        settings); members of vanished routes are routed again."""
        windows_changed = config.windows != self.config.windows  # (a calendar edit moves a window's edges)
        self.config = config
        nodes = self.nodes()
        writes = Writes(held=self.held, reminding=self.reminding)
        policies = {p.name for p in config.escalations}
        for escalating in self.escalating.values():  # a tier waiting for a window looks at the new windows
            escalating.not_before = None
        for fingerprint, escalating in list(self.escalating.items()):
            if escalating.policy not in policies:  # the policy is gone: its pending tiers with it
                del self.escalating[fingerprint]
                self.held_escalations.pop(fingerprint, None)
                writes.escalations[fingerprint] = None
        orphans: list[tuple[Member, str]] = []  # and the key of the group whose row has its document
        by_ident = {node.ident: node for node in nodes.values()}
        for group in list(self.groups()):
            node = by_ident.get(group.node.ident)
            if node is None:  # its route is gone, or is another route now (matchers, group_by or channels)
                key = writes.key(group)
                untold = [m for m in group.members if m.status == RESOLVED and m.sent == FIRING]
                self._farewell(key, group.node.channels, group.labels, group.flushes, group.created_at, untold, writes)
                orphans += [(member, key) for member in group.members if member.status == FIRING]
                self._drop(group, writes)
                continue
            old, group.node = group.node, node  # (at its place, or moved in the tree: a sibling inserted before it)
            if _timing(node) != _timing(old) or (windows_changed and node.hold_until is not None):
                self._retime(group, now, writes)
            if node.path != old.path:
                writes.groups[writes.key(group)] = group
        for member, source in orphans:
            self._join(member, now, writes, source=source)
        return writes.freeze()

    def load(
        self,
        groups: Iterable[dict[str, Any]],
        members: Iterable[dict[str, Any]],
        escalations: Iterable[dict[str, Any]] = (),
    ) -> None:
        """Rebuild from the store at start."""
        policies = {p.name for p in self.config.escalations}
        for row in escalations:
            if row["policy"] not in policies:  # removed while the daemon was stopped: no further tiers
                self._ended.append(row["fingerprint"])
                continue
            self.escalating[row["fingerprint"]] = Escalating(
                row["fingerprint"], row["rule"], row["policy"], row["active_at"], row["fired_at"], row["next_tier"],
                row["doc"],
            )  # fmt: skip
        nodes = self.nodes()
        by_ident = {node.ident: node for node in nodes.values()}
        stale: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        loaded: dict[str, Group] = {}  # (while loading only: key → group)
        held = {row["key"]: row["held"] for row in groups if row["held"] is not None}
        for row in groups:
            labels = json.loads(row["labels"])
            if row["route_ident"] is not None:
                node = by_ident.get(row["route_ident"])
            else:  # written before routes had an ident (schema 11): its route is the one at its place, if alike
                node = nodes.get(row["route"])
                alike = node is not None and row["key"] == f"{node.path}|{group_key_text(node, labels)}"
                node = node if alike else None
            pairs = () if node is None else group_pairs(node, tuple(sorted(labels.items())))
            if node is None or self._group(node, pairs) is not None:
                stale[row["key"]] = (row, [])  # its route is gone or is another route now: its alerts are routed again
                continue
            loaded[row["key"]] = self._groups.setdefault(node.ident, {})[pairs] = Group(
                node, pairs, row["created_at"], row["last_flush_at"], row["next_flush_at"], row["flushes"]
            )
            if row["key"] != _group_key(node, labels) or row["route"] != node.path:
                self._rewritten.append((row["key"], loaded[row["key"]]))  # (its route moved, or an older key)
        for row in members:
            group = loaded.get(row["group_key"])
            if group is None:
                if row["group_key"] in stale:
                    stale[row["group_key"]][1].append(row)
                continue
            member = Member.from_row(row, row["status"], row["sent"])
            group.put(member)
            self._enter(member.fingerprint, group)
            flags = held.get(row["group_key"], int(member.sent != member.status and group.last_flush_at is not None))
            if flags & 1:  # (rows from before schema 14 say nothing: news it may hold back)
                self.held.add(group)
            if flags & 2:
                self.reminding.add(group)
        self._stale = stale

    def adopt(self, now: float) -> Writes:
        """After :meth:`load`: write again the groups whose route moved in the tree while the daemon was stopped
        (their new place) and those written before routes had an ident (a new key: what each member was told and
        their documents come along); route the firing alerts of groups whose route no longer exists, and forget
        those groups."""
        writes = Writes(held=self.held, reminding=self.reminding)
        for key, (_, rows) in self._stale.items():  # every row that leaves a place first: another may come to it
            writes.groups[key] = None
            writes.members.update(((key, row["fingerprint"]), None) for row in rows)
        for source, group in self._rewritten:
            if writes.key(group) != source:
                writes.groups[source] = None
                writes.members.update(((source, member.fingerprint), None) for member in group.members)
        for source, group in self._rewritten:
            key = writes.key(group)
            if key != source:
                for member in group.members:
                    writes.members[(key, member.fingerprint)] = member
                    writes.sources[(key, member.fingerprint)] = source
            writes.groups[key] = group
        for group in list(self.groups()):  # timed under the configuration as it reads now: it may have changed
            self._retime(group, now, writes, stopped=True)
        for key, (group_row, rows) in self._stale.items():
            if group_row["channels"] is not None:
                untold = [Member.from_row(r, RESOLVED, FIRING) for r in rows if (r["status"], r["sent"]) == _UNTOLD]
                channels = tuple(json.loads(group_row["channels"]))
                self._farewell(key, channels, json.loads(group_row["labels"]), group_row["flushes"],
                               group_row["created_at"], untold, writes)  # fmt: skip
            for row in rows:
                if row["status"] == FIRING:
                    self._join(Member.from_row(row, FIRING, None), now, writes, doc=row["doc"])
        writes.escalations.update((fingerprint, None) for fingerprint in self._ended)
        self._stale, self._rewritten, self._ended = {}, [], []
        return writes.freeze()

    # alerts in ---------------------------------------------------------------------------------------------
    def route(
        self, rule: RuleConfig, transitions: Iterable[Transition], now: float, before: float = math.inf
    ) -> Writes:
        """Put alerts that fired into their groups and mark resolved ones; flush what is due right away (groups due
        before ``before``: see :meth:`flush_due`).

        An alert joins as of its transition (a rule that fell behind evaluates batches as of their arrival):
        a group's ``group_wait`` counts from the arrival of the data that fired its first alert."""
        writes = Writes(held=self.held, reminding=self.reminding)
        resolved = False
        for t in transitions:
            alert = t.alert
            if t.to_state == FIRING and (t.from_state != FIRING or t.note == "unmuted"):
                if not t.notify:
                    continue  # fired while its rule is muted: told when the mute ends ("unmuted")
                doc = alert_document(rule, t, self.config.daemon.external_url)
                text = dump_json(doc)
                member = Member(alert.fingerprint, rule.name, FIRING, None, alert.active_at, alert.labels)
                fired_at = min(t.at, now)
                self._join(member, fired_at, writes, doc=text)
                policy = policy_for(self.config.escalations, doc["labels"]) if self.config.escalations else None
                if policy is not None and alert.fingerprint not in self.escalating:
                    escalating = Escalating(  # its clock starts when a route tells of it (see _flush)
                        alert.fingerprint, rule.name, policy.name, alert.active_at, math.inf, 0, text
                    )
                    self.escalating[alert.fingerprint] = escalating
                    writes.escalations[alert.fingerprint] = escalating
            elif t.to_state == FIRING:
                groups = self.groups_of(alert.fingerprint)
                text = dump_json(alert_document(rule, t, self.config.daemon.external_url)) if groups else ""
                for group in groups:  # a new value: keep the documents current
                    member = group.member(alert.fingerprint)
                    pair = (writes.key(group), member.fingerprint)
                    writes.members[pair], writes.docs[pair] = member, text
            elif t.to_state == RESOLVED:
                self.held_escalations.pop(alert.fingerprint, None)
                if self.escalating.pop(alert.fingerprint, None) is not None:
                    writes.escalations[alert.fingerprint] = None
                text = dump_json(alert_document(rule, t, self.config.daemon.external_url))
                for group in self.groups_of(alert.fingerprint):
                    member = group.member(alert.fingerprint)
                    if not t.notify:  # resolved while muted: leave quietly
                        self._leave(group, member, writes)
                        continue
                    member.status = RESOLVED
                    pair = (writes.key(group), member.fingerprint)
                    writes.members[pair], writes.docs[pair] = member, text
                    self._changed(group, now, writes)
                resolved = True
        if resolved and self.config.inhibit_rules:  # one may have inhibited others: what they held back goes now
            self.reconsider(now)
        self._flush_due(now, before, writes)
        return writes.freeze()

    def _join(
        self, member: Member, now: float, writes: Writes, doc: str | None = None, source: str | None = None
    ) -> None:
        route = self.config.route
        if route is None:
            return
        tree, router = self._router
        if tree is not route:
            tree, router = self._router = (route, remembering_router(route))
        if router is not None:
            routing = router(member.pairs)
        else:
            routing = trace_routes(route, member.labels, at=now, window_active=self._window_active)
        for node in routing.routes:
            if not node.channels:
                continue
            pairs = group_pairs(node, member.pairs)
            group = self._group(node, pairs)
            if group is None:
                group = self._groups.setdefault(node.ident, {})[pairs] = Group(node, pairs, now)
            key = writes.key(group)
            previous = group.get(member.fingerprint)
            joined = Member(member.fingerprint, member.rule, FIRING, previous.sent if previous else None,
                            member.active_at, member.pairs)  # fmt: skip
            group.put(joined)
            self._enter(member.fingerprint, group)
            pair = (key, member.fingerprint)
            writes.members[pair] = joined
            if doc is not None:
                writes.docs[pair] = doc
            elif source is not None:
                writes.sources[pair] = source
            if group.last_flush_at is not None:
                self._changed(group, now, writes)
            elif group.next_flush_at is None or node.hold_until is not None:
                # its first flush, group_wait after its creation (an alert a hold spares may bring it forward)
                due = self._instant(self._release(group, group.created_at + node.group_wait))
                if group.next_flush_at is None or due < group.next_flush_at:
                    group.next_flush_at = due
                    writes.groups[key] = group
        for node in routing.muted:
            window = next(iter(node.muted_during or node.active_during), "")
            detail = f"route {node.path} is muted now ({'muted_during' if node.muted_during else 'active_during'})"
            reason = Reason("muted_window", window, detail)
            writes.suppressed.append(Suppressed(member.fingerprint, member.rule, now, reason, ",".join(node.channels)))

    def _retime(self, group: Group, now: float, writes: Writes, stopped: bool = False) -> None:
        """The group's next flush under its route's timing as it reads now (a reload, a start: it may have
        changed): group_wait from its creation until it has flushed; then group_interval after the last flush for
        news not yet told, else repeat_interval; and hold_until, if any, as it reads now."""
        node = group.node
        if group.last_flush_at is None:
            due = group.created_at + node.group_wait
        elif any(m.sent != m.status for m in group.members):
            due = group.last_flush_at + node.group_interval
        else:
            due = group.last_flush_at + node.repeat_interval
        # at a start, released from when it was due: a hold window that opened while the daemon was stopped lets
        # it go at once
        due = self._instant(self._release(group, due) if stopped else self._release(group, max(due, now)))
        if due != group.next_flush_at:
            group.next_flush_at = due
            writes.groups[writes.key(group)] = group

    def _changed(self, group: Group, now: float, writes: Writes) -> None:
        """Something to tell: at ``group_interval`` after the last flush (or the pending first flush)."""
        due = now if group.last_flush_at is None else max(now, group.last_flush_at + group.node.group_interval)
        if group.last_flush_at is None and group.next_flush_at is not None:
            due = group.next_flush_at  # still in group_wait
        due = self._release(group, due)
        if group.next_flush_at is None or due < group.next_flush_at:
            group.next_flush_at = due
            writes.groups[writes.key(group)] = group

    def reconsider(self, now: float) -> None:
        """Silences or inhibitions changed: groups that held news back look again now (their own timers, such
        as group_wait and hold_until, still apply)."""
        for group in list(self.held):
            due = self._release(group, now)
            if group.next_flush_at is None or due < group.next_flush_at:
                group.next_flush_at = due
        for fingerprint in self.held_escalations:
            escalating = self.escalating.get(fingerprint)
            if escalating is not None:
                escalating.not_before = now

    # flushing ----------------------------------------------------------------------------------------------
    def next_due(self, before: float = math.inf) -> tuple[float | None, float | None]:
        """When something next falls due, and when the first group due at or after ``before`` does (it waits for
        ``before`` to move past it: see :meth:`flush_due`)."""
        due = math.inf
        held = math.inf
        for group in self.groups():
            at = group.next_flush_at
            if at is None:
                continue
            if at < before:
                due = min(due, at)
            else:
                held = min(held, at)
        for escalating in self.escalating.values():
            at = self._escalation_due(escalating)
            if at is not None:
                if before == -math.inf:  # nothing goes out (the daemon's start, until every rule has looked)
                    held = min(held, at)
                else:
                    due = min(due, at)
        return (None if due == math.inf else due), (None if held == math.inf else held)

    def flush_due(self, now: float, before: float = math.inf) -> Writes:
        """Flush the groups due at ``now``, except those due at or after ``before``: the arrival of the oldest
        samples some rule has not routed yet (a rule that fell behind). Alerts that arrived before a group's flush
        instant are in it, as they would be had every rule kept up. ``before`` at minus infinity holds escalation
        tiers back too (the daemon's start, until every rule has looked at its alerts)."""
        writes = Writes(held=self.held, reminding=self.reminding)
        self._flush_due(now, before, writes)
        return writes.freeze()

    def _flush_due(self, now: float, before: float, writes: Writes) -> None:
        self._instants.clear()
        cut = min(now, math.nextafter(before, -math.inf))
        due = [g for g in self.groups() if g.next_flush_at is not None and g.next_flush_at <= cut]
        due.sort(key=_created_at)  # oldest group first, whatever its route
        escalations = [e for e in self.escalating.values() if (at := self._escalation_due(e)) is not None and at <= now]
        if before == -math.inf:  # (see next_due)
            escalations = []
        # the firing alerts are what inhibition looks at; collected once per step, and only if a rule may inhibit
        firing: list[tuple[str, Mapping[str, str]]] = []
        if (due or escalations) and self.config.inhibit_rules:
            firing = [(m.fingerprint, m.labels) for g in self.groups() for m in g.members if m.status == FIRING]
        for group in due:
            self._flush(group, now, writes, firing)
        for escalating in escalations:
            self._escalate(escalating, now, writes, firing)

    # escalation --------------------------------------------------------------------------------------------
    def _policy(self, escalating: Escalating) -> Policy | None:
        return next((p for p in self.config.escalations if p.name == escalating.policy), None)

    def _escalation_due(self, escalating: Escalating) -> float | None:
        policy = self._policy(escalating)
        if policy is None or escalating.next_tier >= len(policy.tiers):
            return None
        if escalating.fired_at == math.inf:  # no route has told of it yet (held until the pre-open, say)
            return None
        due = escalating.fired_at + policy.tiers[escalating.next_tier].after
        if escalating.not_before is not None:
            due = max(due, escalating.not_before)
        return due

    def _escalate(
        self, escalating: Escalating, now: float, writes: Writes, firing_all: list[tuple[str, Mapping[str, str]]]
    ) -> None:
        policy = self._policy(escalating)
        fingerprint = escalating.fingerprint
        if policy is None:
            self.escalating.pop(fingerprint, None)
            self.held_escalations.pop(fingerprint, None)
            writes.escalations[fingerprint] = None
            return
        ack = self.acknowledged(fingerprint, escalating.active_at)
        if ack is not None:  # the tier waits for as long as the ack holds (removed, it goes), recorded once
            acked = self.ack_reason(ack)
            if self.held_escalations.get(fingerprint) != (acked.kind, acked.ref):
                self.held_escalations[fingerprint] = (acked.kind, acked.ref)
                channels = ",".join(policy.tiers[escalating.next_tier].channels)
                writes.suppressed.append(Suppressed(fingerprint, escalating.rule, now, acked, channels))
            escalating.not_before = math.inf  # (until acks or silences change: see reconsider)
            return
        if policy.active_during and not any(self.config.windows[name].active(now) for name in policy.active_during):
            opening = self._any_open(policy.active_during, now)
            if opening is None:  # the windows never open again within the calendar's data: stop here
                self.escalating.pop(fingerprint, None)
                self.held_escalations.pop(fingerprint, None)
                writes.escalations[fingerprint] = None
            else:
                escalating.not_before = opening
            return
        tier = policy.tiers[escalating.next_tier]
        doc = json.loads(escalating.doc)
        labels = dict(doc["labels"])
        reason = self.reason(fingerprint, labels, now, firing_all) if self.may_suppress() else None
        if reason is not None:  # silenced or inhibited: the tier waits, looked at again when that may have ended
            if self.held_escalations.get(fingerprint) != (reason.kind, reason.ref):
                self.held_escalations[fingerprint] = (reason.kind, reason.ref)
                writes.suppressed.append(Suppressed(fingerprint, escalating.rule, now, reason, ",".join(tier.channels)))
            escalating.not_before = now + SUPPRESSED_ESCALATION_RECHECK
            return
        self.held_escalations.pop(fingerprint, None)
        if tier.severity:
            labels["severity"] = doc["severity"] = tier.severity
        doc["labels"] = labels
        doc["escalation"] = {"policy": policy.name, "tier": escalating.next_tier + 1, "after_s": tier.after}
        for channel in tier.channels:
            payload = {
                "version": "4", "groupKey": f"{{}}:{{escalation={_quote(policy.name)}}}", "truncatedAlerts": 0,
                "status": "firing", "receiver": channel, "groupLabels": {"alertname": labels.get("alertname", "")},
                "commonLabels": labels, "commonAnnotations": doc["annotations"],
                "externalURL": self.config.daemon.external_url, "alerts": [doc],
            }  # fmt: skip
            key = page_key(channel, fingerprint, escalating.active_at, escalating.next_tier)
            writes.outgoing.append(Outgoing(channel, fingerprint, key, dump_json(payload)))
        escalating.next_tier += 1
        if escalating.next_tier >= len(policy.tiers):
            self.escalating.pop(fingerprint, None)
            writes.escalations[fingerprint] = None
        else:
            writes.escalations[fingerprint] = escalating

    def _flush(self, group: Group, now: float, writes: Writes, firing_all: list[tuple[str, Mapping[str, str]]]) -> None:
        self.held.discard(group)
        key = writes.key(group)
        node = group.node
        # a reminder is due, or one was held back (by a silence, an inhibition, the hold_until window) and may go now
        repeat = group in self.reminding or (
            group.last_flush_at is not None and now >= group.last_flush_at + node.repeat_interval
        )
        self.reminding.discard(group)
        reminder_held = False
        visible = list(group.members)
        if self.may_suppress():  # (else nothing to ask, member by member)
            visible = []
            for member in group.members:
                reason = self.reason(member.fingerprint, member.labels, now, firing_all)
                pair = (key, member.fingerprint)
                if reason is not None:
                    # it holds back news, or a reminder: recorded (once, not on every repeat), and looked at again
                    # when silences or inhibitions change
                    if member.sent != member.status or (repeat and member.status == FIRING):
                        self.held.add(group)  # (a reminder it holds goes at its end: see reminding)
                        reminder_held |= member.sent == member.status
                        news = (member.status, member.active_at, reason.kind, reason.ref)  # (an episode's)
                        if self._recorded.get(pair) != news:
                            self._recorded[pair] = news
                            channels = ",".join(group.node.channels)
                            writes.suppressed.append(Suppressed(member.fingerprint, member.rule, now, reason, channels))
                    continue
                self._recorded.pop(pair, None)
                visible.append(member)
        # held for the route's hold_until window: off now, and not on since the flush fell due (a daemon stopped
        # across the opening lets the news go at its start); not held past the calendar's data
        waiting: list[Member] = []
        window_reminder = False
        hold = node.hold_until
        scheduled = now if group.next_flush_at is None else min(group.next_flush_at, now)
        if hold is not None and self._opening(hold, scheduled) > now:
            spared: list[Member] = []
            for member in visible:
                (spared if hold_window(node, member.labels) is None else waiting).append(member)
            visible = spared
            window_reminder = repeat and any(m.status == FIRING and m.sent == FIRING for m in waiting)
            reminder_held |= window_reminder
        firing = [m for m in visible if m.status == FIRING]
        resolved = [m for m in visible if m.status == RESOLVED and m.sent == FIRING]
        changed = bool(resolved) or any(m.sent != FIRING for m in firing)
        if not changed:  # a repeat reminds of what nobody acknowledged, and only of that
            unacknowledged = []
            for member in firing:
                ack = self.acknowledged(member.fingerprint, member.active_at)
                if ack is None:
                    unacknowledged.append(member)
                elif repeat:  # the repeat it holds back is recorded, so `why` can say so
                    reason, channels = self.ack_reason(ack), ",".join(group.node.channels)
                    writes.suppressed.append(Suppressed(member.fingerprint, member.rule, now, reason, channels))
            firing = unacknowledged
        if changed or (repeat and firing):
            group.flushes += 1
            group.last_flush_at = now
            # (a notification is "firing" while an alert of its group is, one the window holds back included)
            still = any(m.status == FIRING for m in waiting)
            self._notify(group, firing + resolved, now, writes, still)
            for member in firing:  # its escalation counts from now: someone has been told
                escalating = self.escalating.get(member.fingerprint)
                if escalating is not None and escalating.fired_at == math.inf:
                    escalating.fired_at = now
                    writes.escalations[member.fingerprint] = escalating
            for member in firing + resolved:
                member.sent = member.status
                if (key, member.fingerprint) not in writes.members:  # else written whole in this step
                    writes.sent.append((key, member.fingerprint, member.status))
        if group.last_flush_at is None:  # group_wait is over even if nothing could be told: later news waits
            group.last_flush_at = now  # group_interval
        # a resolution held back (silenced, inhibited) stays until it is told: its receivers were told "firing"
        for member in [m for m in group.members if m.status == RESOLVED and m.sent != FIRING]:
            self._leave(group, member, writes)
        if not group.members:
            self._drop(group, writes)
            return
        anchor = group.last_flush_at
        if anchor + node.repeat_interval <= now:  # nothing worth telling at a repeat: look a full interval later
            anchor = now
        due = self._release(group, anchor + node.repeat_interval)
        if hold is not None and (window_reminder or any(m.sent != m.status for m in waiting)):
            due = min(due, self._opening(hold, now))  # what the window holds goes when it opens
        if reminder_held:
            self.reminding.add(group)
        group.next_flush_at = self._instant(due)
        writes.groups[key] = group

    def _notify(self, group: Group, members: list[Member], now: float, writes: Writes, firing: bool = False) -> None:
        """One Alertmanager v4 document per channel; the store adds the members' documents (``alerts``) and what
        their annotations have in common as it writes the notification. ``firing``: the group has a firing alert
        not in ``members``."""
        self._queue(writes.key(group), group.node.channels, group.labels, group.flushes, group.created_at, members,
                    writes, firing)  # fmt: skip

    def _farewell(
        self,
        key: str,
        channels: tuple[str, ...],
        labels: dict[str, str],
        flushes: int,
        created_at: float,
        untold: list[Member],
        writes: Writes,
    ) -> None:
        """A group whose route is gone (or is another route now) tells the resolutions it has not told yet, once,
        to those of its channels that still exist: they heard "firing" and must not be left with it."""
        configured = {c.name for c in self.config.channels}
        channels = tuple(c for c in channels if c in configured)
        if untold and channels:
            self._queue(key, channels, labels, flushes + 1, created_at, untold, writes)

    def _queue(
        self,
        group_key: str,
        channels: tuple[str, ...],
        labels: dict[str, str],
        flushes: int,
        created_at: float,
        members: list[Member],
        writes: Writes,
        firing: bool = False,
    ) -> None:
        common_labels = (
            dict(sorted(set(members[0].pairs).intersection(*(m.pairs for m in members[1:])))) if members else {}
        )
        status = "firing" if firing or any(m.status == FIRING for m in members) else "resolved"
        # a document made in this step is handed over as it is (its row may go away in this step: resolved)
        alerts = tuple((m.fingerprint, writes.docs.get((group_key, m.fingerprint))) for m in members)
        for channel in channels:
            text = f"{channel}|{group_key}|{flushes}|{created_at!r}"
            head = notification_head(group_key.split("|", 1)[1], status, channel, labels, common_labels,
                                     self.config.daemon.external_url)  # fmt: skip
            key = hashlib.sha256(text.encode()).hexdigest()[:32]
            writes.outgoing.append(Outgoing(channel, group_key, key, dump_json(head), alerts))

    def _leave(self, group: Group, member: Member, writes: Writes) -> None:
        group.remove(member.fingerprint)
        self._recorded.pop((writes.key(group), member.fingerprint), None)
        others = tuple(g for g in self.groups_of(member.fingerprint) if g is not group)
        if others:
            self._by_alert[member.fingerprint] = others[0] if len(others) == 1 else others
        else:
            self._by_alert.pop(member.fingerprint, None)
        writes.members[(writes.key(group), member.fingerprint)] = None

    def _enter(self, fingerprint: str, group: Group) -> None:
        groups = self.groups_of(fingerprint)
        if not groups:
            self._by_alert[fingerprint] = group
        elif all(g is not group for g in groups):
            self._by_alert[fingerprint] = (*groups, group)

    def holding(self, fingerprint: str, now: float) -> list[Reason]:
        """The routes that hold news of the alert back until a window opens (``hold_until``), for "why"."""
        from alphawatch.daemon.silences import rfc3339

        out = []
        for group in self.groups_of(fingerprint):
            member = group.get(fingerprint)
            window = hold_window(group.node, member.labels) if member is not None else None
            if member is None or window is None or member.sent == member.status:
                continue
            # (while the window is on, a later flush is the group's own timing: group_wait, group_interval)
            if (opening := self._opening(window, now)) > now:
                channels = ", ".join(group.node.channels)
                out.append(Reason("held", window, f"route {group.node.path} ({channels}) holds it until {window} "
                                                  f"opens at {rfc3339(opening)}"))  # fmt: skip
        return out

    def page_unwanted(self, page: Queued, now: float) -> Withdrawal | None:
        """Why an escalation page queued and not yet out is to go no more (its alert's firing episode ended, or
        was acknowledged: recorded as a suppression, which ``why`` shows), or ``None``."""
        alerts = page.payload.get("alerts")
        escalation = alerts[0].get("escalation") if isinstance(alerts, list) and len(alerts) == 1 else None
        if not isinstance(escalation, dict) or not isinstance(tier := escalation.get("tier"), int):
            return None  # (not a page)
        fingerprint = page.fingerprint
        members = [group.get(fingerprint) for group in self.groups_of(fingerprint)]
        firing = [m for m in members if m is not None and m.status == FIRING]
        if not firing:
            return Withdrawal("the alert resolved before the page got out")
        active_at = firing[0].active_at
        if page.idempotency_key != page_key(page.channel, fingerprint, active_at, tier - 1):
            return Withdrawal("the page's firing episode ended before it got out (the alert fires again since)")
        ack = self.acknowledged(fingerprint, active_at)
        if ack is None:
            return None
        reason = self.ack_reason(ack)
        why = f"{reason.detail}, before the page got out"
        withdrawn = replace(reason, detail=f"{reason.detail}: its escalation page (tier {tier}) was withdrawn")
        return Withdrawal(why, Suppressed(fingerprint, firing[0].rule, now, withdrawn, page.channel))

    def groups_of(self, fingerprint: str) -> tuple[Group, ...]:
        """The groups the alert is in."""
        groups = self._by_alert.get(fingerprint, ())
        return groups if isinstance(groups, tuple) else (groups,)

    def _drop(self, group: Group, writes: Writes) -> None:
        for member in group.members:
            self._leave(group, member, writes)
        by_pairs = self._groups.get(group.node.ident, _NO_GROUPS)
        if by_pairs.get(group.pairs) is group:
            del by_pairs[group.pairs]
            if not by_pairs:
                del self._groups[group.node.ident]
        self.held.discard(group)
        self.reminding.discard(group)
        writes.groups[writes.key(group)] = None

    def _any_open(self, names: tuple[str, ...], after: float) -> float | None:
        """The first instant after ``after`` at which one of the windows in ``names`` is on, or ``None``."""
        windows = [self.config.windows[name] for name in names]
        at = after
        for _ in range(1000):
            if any(w.active(at) for w in windows):
                return at
            edges = [e for w in windows if (e := w.next_edge(at)) is not None]
            if not edges:
                return None
            at = min(edges)
        return None

    # windows -----------------------------------------------------------------------------------------------
    def _instant(self, at: float) -> float:
        """``at``, as the one float object of that value in this step: groups created or flushed together share
        their next flush instant instead of holding a float each."""
        return self._instants.setdefault(at, at)

    def _window_active(self, name: str, at: float) -> bool:
        return self.config.windows[name].active(at)

    def _release(self, group: Group, at: float) -> float:
        """When the group may flush news made at ``at``: then, or when its route's ``hold_until`` window opens.
        A member the hold spares (an emergency whose severity the route does not name) lets it flush then: the
        flush tells that member's news and leaves the others for the window (:meth:`_flush`)."""
        node = group.node
        if node.hold_until is None or (group.emergencies and not names_emergency(node.matchers)):
            return at
        return self._opening(node.hold_until, at)

    def _opening(self, window: str, at: float) -> float:
        """``at`` if ``window`` is on then, else its next opening (``at`` past the calendar's horizon)."""
        if self._window_active(window, at):
            return at
        edge = self.config.windows[window].next_edge(at)
        return at if edge is None else edge


def _timing(node: RouteNode) -> tuple[float, float, float, str | None]:
    """What a route's groups' next flush depends on."""
    return node.group_wait, node.group_interval, node.repeat_interval, node.hold_until


def page_key(channel: str, fingerprint: str, active_at: float, tier: int) -> str:
    """The idempotency key of an escalation page: its channel, its alert, the firing episode, the tier (from 0)."""
    return hashlib.sha256(f"{channel}|{fingerprint}|{active_at!r}|escalation|{tier}".encode()).hexdigest()[:32]


def _group_key(node: RouteNode, labels: Mapping[str, str] | Labels) -> str:
    """A group's identity: its route's ident (wherever the route sits in the tree) and its group-label set (as
    Alertmanager's groupKey writes it)."""
    return f"{node.ident}|{group_key_text(node, labels)}"


_NO_GROUPS: dict[Labels, Group] = {}
_UNTOLD = (RESOLVED, FIRING)  # (status, sent) of a member whose resolution its group has not told
_EMERGENCY = ("severity", EMERGENCY)


def _created_at(group: Group) -> float:
    return group.created_at


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
