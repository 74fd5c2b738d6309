"""What keeps a notification from going out, and the record of each time it did.

:class:`Suppressions` holds the live silences and acknowledgements in memory (loaded from the store at start,
updated after every committed change) and the configured inhibition rules. The dispatcher asks it, for each
notification it is about to send:

- :meth:`Suppressions.reason`: a silence, then an inhibiting alert (silences and inhibition: see
  :mod:`alphawatch.daemon.silences` and :mod:`alphawatch.daemon.inhibition`);
- :meth:`Suppressions.acknowledged`: an ack of the alert's current firing episode (:mod:`alphawatch.daemon.acks`);

and records what it held back with :meth:`Suppressions.record`, so ``GET /api/v1/alerts/{fp}/suppressions``
answers "why did I not get this alert". Muted time windows are the routing's business; the dispatcher records
them here too, as kind ``muted_window``.

Everything that changes the answer sets the current :meth:`Suppressions.changed` event; :meth:`next_change` is
the next instant a silence starts or ends, for the dispatcher's timer.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import trio

from alphawatch.daemon import acks as ack_store
from alphawatch.daemon import silences as silence_store
from alphawatch.daemon.acks import Ack
from alphawatch.daemon.inhibition import InhibitRule, inhibitor, inhibitors
from alphawatch.daemon.silences import Silence, rfc3339
from alphawatch.daemon.store import Store

log = logging.getLogger("alphawatch.suppression")

Kind = Literal["silence", "inhibited", "muted_window", "acknowledged", "held"]
KINDS: tuple[Kind, ...] = ("silence", "inhibited", "muted_window", "acknowledged")
"""The kinds recorded in the suppression log (``held``, a route waiting for its ``hold_until`` window, is only
ever a reason now: the notification goes out when the window opens)."""


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a notification was held back.

    ``ref`` is the silence id (``silence``), the inhibiting alert's fingerprint (``inhibited``), the window's
    name (``muted_window``, ``held``) or the acknowledger (``acknowledged``); ``detail`` says it for a person.
    """

    kind: Kind
    ref: str
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"kind": self.kind, "ref": self.ref, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Suppressed:
    """One held-back notification, for :meth:`Suppressions.record_many`."""

    fingerprint: str
    rule: str
    at: float
    reason: Reason
    channel: str | None = None


def _silence_reason(silence: Silence) -> Reason:
    detail = f"silenced by {silence.created_by} until {rfc3339(silence.ends_at)}: {silence.comment}"
    return Reason("silence", silence.id, detail)


def _inhibition_reason(rule: InhibitRule, source: str) -> Reason:
    return Reason("inhibited", source, f"inhibited by firing alert {source} ({rule.describe()})")


class Suppressions:
    """The live silences, acks and inhibition rules. One per daemon; build it with :meth:`load`."""

    def __init__(self, store: Store, inhibit_rules: tuple[InhibitRule, ...] = ()) -> None:
        self.store = store
        self.inhibit_rules = inhibit_rules
        self._silences: dict[str, Silence] = {}
        self._acks: dict[str, Ack] = {}
        self._changed = trio.Event()

    @classmethod
    async def load(
        cls, store: Store, inhibit_rules: tuple[InhibitRule, ...], *, now: float | None = None
    ) -> Suppressions:
        """Read the silences that have not ended by ``now`` (default: the wall clock) and every ack into memory."""
        now = time.time() if now is None else now
        self = cls(store, inhibit_rules)

        def work(db: sqlite3.Connection) -> tuple[list[Silence], list[Ack]]:
            return silence_store.load(db, ending_after=now, limit=1_000_000), ack_store.load(db)

        silences, acks = await store.run(work)
        self._silences = {s.id: s for s in silences}
        self._acks = {a.fingerprint: a for a in acks}
        return self

    # --- the dispatcher's questions ------------------------------------------------------------------------
    def may_suppress(self) -> bool:
        """Whether :meth:`reason` can find anything: a silence (any, even ended) or an inhibition rule."""
        return bool(self._silences or self.inhibit_rules)

    def set_inhibit_rules(self, rules: tuple[InhibitRule, ...]) -> None:
        """Use new rules (on reload); the changed event fires when they differ."""
        if rules != self.inhibit_rules:
            self.inhibit_rules = rules
            self._notify()

    def reason(
        self,
        fingerprint: str,
        labels: Mapping[str, str],
        at: float,
        firing: Iterable[tuple[str, Mapping[str, str]]],
    ) -> Reason | None:
        """What suppresses the alert ``(fingerprint, labels)`` at ``at``: an active silence, else an inhibition.

        ``firing`` is every alert firing now, as ``(fingerprint, labels)``; the alert itself may be among them.
        Silences are tried oldest start first, so the answer is stable while several match.
        """
        silence = self.silencing(labels, at)
        if silence is not None:
            return _silence_reason(silence)
        found = inhibitor(self.inhibit_rules, fingerprint, labels, firing)
        return None if found is None else _inhibition_reason(*found)

    def current(
        self,
        alerts: Iterable[tuple[str, Mapping[str, str], float]],
        at: float,
        firing: Iterable[tuple[str, Mapping[str, str]]],
    ) -> dict[str, tuple[Reason | None, Ack | None]]:
        """For each alert ``(fingerprint, labels, active_at)``: what suppresses it at ``at`` (as :meth:`reason`)
        and the acknowledgement of its episode. Inhibition is worked out once for all of them."""
        alerts = list(alerts)
        silenced = {fp: silence for fp, labels, _ in alerts if (silence := self.silencing(labels, at)) is not None}
        unsilenced = [(fp, labels) for fp, labels, _ in alerts if fp not in silenced]
        inhibited = inhibitors(self.inhibit_rules, unsilenced, firing) if self.inhibit_rules else {}
        out: dict[str, tuple[Reason | None, Ack | None]] = {}
        for fp, _, active_at in alerts:
            reason = None
            if (silence := silenced.get(fp)) is not None:
                reason = _silence_reason(silence)
            elif (found := inhibited.get(fp)) is not None:
                reason = _inhibition_reason(*found)
            out[fp] = (reason, self.acknowledged(fp, active_at))
        return out

    def silencing(self, labels: Mapping[str, str], at: float) -> Silence | None:
        """The active silence that matches ``labels`` at ``at`` (the one that started first), or ``None``."""
        best: Silence | None = None
        for s in self._silences.values():
            if s.active(at) and s.matches(labels) and (best is None or (s.starts_at, s.id) < (best.starts_at, best.id)):
                best = s
        return best

    def acknowledged(self, fingerprint: str, active_at: float) -> Ack | None:
        """The ack of the firing episode that began at ``active_at``, or ``None`` (none, or of an earlier one)."""
        ack = self._acks.get(fingerprint)
        return ack if ack is not None and ack.active_at == active_at else None

    def ack_reason(self, ack: Ack) -> Reason:
        detail = f"acknowledged by {ack.by} at {rfc3339(ack.at)}: {ack.comment}"
        if ack.earlier:
            detail += " (taking over from " + ", ".join(f"{e.by} at {rfc3339(e.at)}" for e in ack.earlier) + ")"
        return Reason("acknowledged", ack.by, detail)

    def next_change(self, at: float) -> float | None:
        """The first instant after ``at`` when a silence starts or ends (``None``: none ahead).

        Also forgets silences that ended by ``at``: the store keeps them for the API until retention.
        """
        best: float | None = None
        for silence_id, s in list(self._silences.items()):
            if s.ends_at <= at:
                del self._silences[silence_id]
                continue
            edge = s.starts_at if s.starts_at > at else s.ends_at
            best = edge if best is None or edge < best else best
        return best

    def changed(self) -> trio.Event:
        """An event set at the next change (silence added or expired, ack added or removed, new rules).

        Take it *before* reading the state: ``event = s.changed(); …evaluate…; await event.wait()``.
        """
        return self._changed

    def silences(self) -> list[Silence]:
        """Silences held in memory (pending and active, and ended ones not yet forgotten)."""
        return sorted(self._silences.values(), key=lambda s: (s.starts_at, s.id))

    # --- changes (committed first, then visible) -----------------------------------------------------------
    async def add_silence(self, silence: Silence) -> None:
        await self.store.run(lambda db: silence_store.insert(db, silence))
        self._silences[silence.id] = silence
        log.info("silence created", extra={"silence": silence.id, "by": silence.created_by,
                                           "matchers": list(silence.texts), "ends_at": silence.ends_at})  # fmt: skip
        self._notify()

    async def expire_silence(self, silence_id: str, at: float) -> tuple[Silence | None, bool]:
        """End a silence now. Returns it (``None``: unknown) and whether it was still pending or active."""
        silence, live = await self.store.run(lambda db: silence_store.expire(db, silence_id, at))
        if silence is not None and live:
            self._silences[silence.id] = silence
            log.info("silence expired", extra={"silence": silence.id})
            self._notify()
        return silence, live

    async def acknowledge(self, fingerprint: str, by: str, comment: str, at: float) -> Ack:
        """Acknowledge the alert's current firing episode (raises ``UnknownAlert`` or ``NotFiring``)."""
        ack = await self.store.run(lambda db: ack_store.acknowledge(db, fingerprint, by, comment, at))
        self._acks[fingerprint] = ack
        log.info("alert acknowledged", extra={"fingerprint": fingerprint, "by": by})
        self._notify()
        return ack

    async def unacknowledge(self, fingerprint: str) -> bool:
        gone = await self.store.run(lambda db: ack_store.remove(db, fingerprint))
        if self._acks.pop(fingerprint, None) is not None or gone:
            log.info("acknowledgement removed", extra={"fingerprint": fingerprint})
            self._notify()
            return True
        return False

    def ack_of(self, fingerprint: str) -> Ack | None:
        """The stored ack of an alert, whatever its episode."""
        return self._acks.get(fingerprint)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # --- the record ----------------------------------------------------------------------------------------
    async def record(self, fingerprint: str, rule: str, at: float, reason: Reason, channel: str | None) -> None:
        """Record one held-back notification (``channel`` ``None``: all of the alert's channels)."""
        await self.record_many([Suppressed(fingerprint, rule, at, reason, channel)])

    async def record_many(self, items: Iterable[Suppressed]) -> None:
        """Record several held-back notifications in one transaction."""
        items = list(items)
        if items:

            def work(db: sqlite3.Connection) -> None:
                with db:
                    write_records(db, items)

            await self.store.run(work)

    async def purge_before(self, cutoff: float, batch: int = 5000) -> int:
        """:func:`purge_before`, and forget in memory the acks it deleted."""
        gone = await purge_before(self.store, cutoff, batch)
        kept = {a.fingerprint for a in await self.store.run(ack_store.load)}
        for fingerprint in [f for f in self._acks if f not in kept]:
            del self._acks[fingerprint]
        return gone


def write_records(db: sqlite3.Connection, items: Iterable[Suppressed]) -> None:
    """Insert suppression records with ``db`` inside the caller's transaction (e.g. with the outbox rows)."""
    db.executemany(
        "INSERT INTO suppressions (fingerprint, rule, at, channel, kind, ref, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(i.fingerprint, i.rule, i.at, i.channel, i.reason.kind, i.reason.ref, i.reason.detail) for i in items],
    )


async def purge_before(store: Store, cutoff: float, batch: int = 5000) -> int:
    """Delete suppression records, silences that ended and acks of episodes that are over, all before ``cutoff``.

    Like ``Store.purge_before``: a batch per call, returns how many rows went; loop until it returns 0. An ack
    goes once it is older than ``cutoff`` and its alert is no longer firing in the episode it acknowledged.
    """

    def work(db: sqlite3.Connection) -> int:
        with db:
            gone = db.execute(
                "DELETE FROM suppressions WHERE id IN (SELECT id FROM suppressions WHERE at < ? LIMIT ?)",
                (cutoff, batch),
            ).rowcount
            gone += db.execute(
                "DELETE FROM silences WHERE id IN (SELECT id FROM silences WHERE ends_at < ? LIMIT ?)",
                (cutoff, batch),
            ).rowcount
            gone += db.execute(
                "DELETE FROM acks WHERE at < ? AND NOT EXISTS (SELECT 1 FROM alerts WHERE alerts.fingerprint ="
                " acks.fingerprint AND alerts.state = 'firing' AND alerts.active_at = acks.active_at)",
                (cutoff,),
            ).rowcount
        return gone

    return await store.run(work)


async def suppression_log(
    store: Store,
    *,
    fingerprint: str | None = None,
    since: float | None = None,
    kind: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Recorded suppressions, newest first: of one alert or all, since ``since``, of one ``kind``."""
    where: list[str] = []
    params: list[Any] = []
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    if fingerprint is not None:
        where.append("fingerprint = ?")
        params.append(fingerprint)
    if since is not None:
        where.append("at >= ?")
        params.append(since)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return await store.query(
        f"SELECT fingerprint, rule, at, channel, kind, ref, detail FROM suppressions{clause}"
        " ORDER BY at DESC, id DESC LIMIT ?",
        [*params, limit],
    )
