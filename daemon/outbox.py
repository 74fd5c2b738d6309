"""Delivery from the durable outbox: at least once, retried with backoff and jitter, dead-lettered when too old.

A notification is written to the ``outbox`` table in the same transaction as the alert transition that caused
it, so nothing committed is lost: a crash or ``kill -9`` leaves it ``pending`` and the next start delivers it.
Receivers can drop repeats by the ``Idempotency-Key`` header.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import httpx
import trio
import trio.lowlevel

from alphawatch.channels import Channel, Notification
from alphawatch.daemon.clock import Clock
from alphawatch.daemon.config import DeliverySettings
from alphawatch.daemon.errors import DeliveryError, StoreError
from alphawatch.daemon.logs import Quieter
from alphawatch.daemon.store import Outgoing, Queued, Store, Withdrawal

PROBE_SHARE = 30.0
RELEASE_AT_MOST_EVERY = 60.0
log = logging.getLogger("alphawatch.outbox")
BATCH = 256
QUEUED_PER_SENDER = 4
QUIET_FOR = 60.0  # seconds between two log lines of a channel's failures (see logs.Quieter)
DEAD_LETTER = "dead-letter-"  # the fingerprint of a dead-letter report begins so
REPORT_EVERY = 60.0  # seconds between two dead-letter reports of a channel to the fallback channel


class Outbox:
    def __init__(
        self,
        store: Store,
        channels: Callable[[], Mapping[str, Channel]],
        settings: Callable[[], DeliverySettings],
        clock: Clock,
        on_event: Callable[[str, Queued, str | None], None] = lambda *_: None,
        unwanted: Callable[[Queued, float], Withdrawal | None] = lambda *_: None,
    ) -> None:
        """``unwanted``: why a notification about to be sent is to go no more (an escalation page whose alert
        resolved), or ``None``."""
        self._store = store
        self._channels = channels
        self._settings = settings
        self._clock = clock
        self._on_event = on_event
        self._unwanted = unwanted
        self._wakeup = trio.Event()
        self._in_flight: set[int] = set()
        self._idle = trio.Event()
        # channels whose due rows were left in the table: looked at again when their queue runs low
        self._behind: set[str] = set()
        self._finished: set[int] = set()  # finished since the loop last looked at the table
        self._looking = False  # the loop is reading the due rows
        self._outages: dict[str, _Outage] = {}  # channels whose attempts fail, none having got through since
        self._released: dict[str, float] = {}  # channel → when its waiting notifications were last made due
        self._finishing = _FinishBatch()
        self._quiet = Quieter(QUIET_FOR)
        self._reports: dict[str, _DeadReport] = {}  # failed channel → its last dead-letter report
        self._last_tries: set[int] = set()  # retries put off to max_age, their last: made however late the timer
        self._finish_wanted = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._http: httpx.AsyncClient | None = None
        # per channel: notifications waiting for one of its senders (at most ``concurrency`` tasks, each taking
        # the next in turn: a burst waits as rows already read, not as thousands of parked tasks)
        self._waiting: dict[str, deque[Queued]] = {}
        self._senders: dict[str, int] = {}
        self._sent: dict[str, deque[float]] = {}
        # a group's notifications to a channel go one at a time, oldest first (see folding): per (channel, group),
        # those waiting for a retry, the one being sent, those that came meanwhile
        self._pending_of: dict[tuple[str, str], set[int]] = {}
        self._sending: set[tuple[str, str]] = set()
        self._parked: dict[tuple[str, str], list[Queued]] = {}
        self._rewritten: dict[int, str] = {}  # a document a fold changed, for a copy of its row read before
        self._superseded: set[int] = set()  # taken in by a newer one: a copy read before is not to be sent
        # since start, by channel (the totals are their sums)
        self.delivered_by: Counter[str] = Counter()
        self.failed_by: Counter[str] = Counter()
        self.dead_by: Counter[str] = Counter()
        self.superseded_by: Counter[str] = Counter()
        self.withdrawn_by: Counter[str] = Counter()

    @property
    def delivered(self) -> int:
        return self.delivered_by.total()

    @property
    def failed_attempts(self) -> int:
        return self.failed_by.total()

    @property
    def dead(self) -> int:
        return self.dead_by.total()

    def submit(self, queued: list[Queued]) -> None:
        """Deliver notifications just committed, without looking them up again. Those of a channel with rows left
        in the table (its queue was full), or all while the loop reads the table, are left to the loop: it reads
        them in the order they were made, so none overtakes an older one of its group."""
        nursery = self._nursery
        if nursery is None or self._http is None or self._looking:
            self.wake()
            return
        going = [q for q in queued if q.channel not in self._behind]
        self._send_all(nursery, self._http, going)
        if len(going) < len(queued):
            self.wake()

    def wake(self) -> None:
        """New work was committed: look at the outbox now."""
        self._wakeup.set()

    async def wait_idle(self) -> None:
        """Return once no delivery is in flight."""
        while self._in_flight:
            self._idle = trio.Event()
            await self._idle.wait()

    def statistics(self) -> dict[str, int]:
        return {
            "in_flight": len(self._in_flight),
            "delivered": self.delivered,
            "failed_attempts": self.failed_attempts,
            "dead": self.dead,
            "superseded": self.superseded_by.total(),
            "withdrawn": self.withdrawn_by.total(),
        }

    async def run(
        self, http: httpx.AsyncClient, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                for outbox_id, channel, fingerprint in await self._store.waiting_retry():  # (before submit sends)
                    if (group := _group(channel, fingerprint)) is not None:
                        self._pending_of.setdefault(group, set()).add(outbox_id)
                now = self._clock.now()
                for row in await self._store.dead_letter_reports(since=now - REPORT_EVERY):
                    self._recall_report(row, now)
                self._nursery, self._http = nursery, http
                nursery.start_soon(self._write_finished)
                task_status.started()
                while True:
                    self._wakeup = trio.Event()
                    self._finished.clear()
                    now = self._clock.now()
                    # each channel's rows up to what its queue has room for: a backlog hides no other channel's
                    names = {*self._channels(), *self._waiting}  # (a channel a reload removed has rows left)
                    room = {name: self._room(name) - len(self._waiting.get(name, ())) for name in names}
                    self._looking = True
                    try:
                        batch, next_at, self._behind, cut = await self._store.due(
                            now, BATCH, self._in_flight, room, QUEUED_PER_SENDER * self._settings().concurrency
                        )
                    finally:
                        self._looking = False
                    self._send_all(nursery, http, batch)
                    if cut:  # channels with room got nothing from this read (more than BATCH channels due)
                        self._wakeup.set()
                    del batch  # while it waits, the loop holds no payload of its own
                    with trio.move_on_at(self._clock.trio_deadline(next_at)):
                        await self._wakeup.wait()
        finally:
            # deliveries that were in flight stay pending in the table: a restarted loop finds them again
            for channel, unlogged in self._quiet.held_back().items():  # (their next line would have told them)
                log.warning("delivery failures not logged before the stop",
                            extra={"channel": channel, "failures_unlogged": unlogged})  # fmt: skip
            self._nursery = None
            self._in_flight.clear()
            self._waiting.clear()
            self._senders.clear()
            self._pending_of.clear()
            self._sending.clear()
            self._parked.clear()
            self._rewritten.clear()
            self._superseded.clear()
            self._last_tries.clear()
            self._finishing, self._finish_wanted = _FinishBatch(), trio.Event()  # (their deliveries are gone)

    def _send_all(self, nursery: trio.Nursery, http: httpx.AsyncClient, batch: list[Queued]) -> None:
        for queued in batch:
            # (a row read before it was submitted, or submitted twice, may be in flight or done already)
            if queued.id not in self._in_flight and queued.id not in self._finished:
                self._send(nursery, http, queued)

    def _send(self, nursery: trio.Nursery, http: httpx.AsyncClient, queued: Queued) -> None:
        """Queue a notification behind its channel's others; start a sender if the channel has a free one. A
        channel's queue holds a few rounds of its senders: the rest stay in the table until it runs low."""
        name = queued.channel
        waiting = self._waiting.setdefault(name, deque())
        if len(waiting) >= self._room(name):
            self._behind.add(name)
            return
        self._in_flight.add(queued.id)
        waiting.append(queued)
        if self._senders.get(name, 0) < self._concurrency(name):
            self._senders[name] = self._senders.get(name, 0) + 1
            nursery.start_soon(self._sender, http, name)

    def _concurrency(self, name: str) -> int:
        channel = self._channels().get(name)
        return (channel.concurrency if channel else None) or self._settings().concurrency

    def _room(self, name: str) -> int:
        """How many notifications a channel's queue holds: a few rounds of its senders."""
        return QUEUED_PER_SENDER * self._concurrency(name)

    async def _sender(self, http: httpx.AsyncClient, name: str) -> None:
        try:
            # (a sender beyond the channel's concurrency, lowered by a reload, stops)
            while (waiting := self._waiting.get(name)) and self._senders[name] <= self._concurrency(name):
                queued = waiting.popleft()
                if name in self._behind and len(waiting) <= self._senders[name]:
                    self._wakeup.set()  # (the read that follows says again which channels are behind)
                await self._deliver(http, queued)
        finally:
            self._senders[name] -= 1
            if not self._senders[name]:
                del self._senders[name]
                if not self._waiting.get(name, True):
                    del self._waiting[name]

    async def _deliver(self, http: httpx.AsyncClient, queued: Queued) -> None:
        group = _group(queued.channel, queued.fingerprint)
        if group is not None:
            if group in self._sending:  # its group's older one goes first
                self._parked.setdefault(group, []).append(queued)
                return
            self._sending.add(group)
        retrying = True  # (until told otherwise: a failure of ours leaves the row pending, for the loop to find)
        try:
            if queued.id in self._superseded:
                self._superseded.discard(queued.id)
                retrying = False
            else:
                going = queued if group is None else await self._newest(queued, group)
                retrying = going is not None and await self._attempt(http, going)
        finally:
            if group is not None:
                self._sending.discard(group)
                parked = self._parked.pop(group, None)
                if parked:  # (they go next, in the order they came)
                    self._waiting.setdefault(queued.channel, deque()).extendleft(reversed(parked))
            self._in_flight.discard(queued.id)
            self._finished.add(queued.id)
            if retrying:  # a retry time to schedule
                self._wakeup.set()
            if not self._in_flight:
                self._idle.set()
                self._shrink()

    async def _newest(self, queued: Queued, group: tuple[str, str]) -> Queued | None:
        """What goes for ``queued``: itself with the older ones of its group folded in; or nothing, when a newer
        one is pending too (``queued`` is folded into that one, which goes in its turn)."""
        while True:
            pending = {*self._pending_of.get(group, ()), queued.id}
            into = max(pending)
            older = [outbox_id for outbox_id in pending if outbox_id < into]
            if not older:
                body = self._rewritten.pop(queued.id, None)
                return queued if body is None else replace(queued, body=body)
            folded = await self._store.fold(into, older, self._clock.now())
            if folded is None:  # pending no longer (an escalation page withdrawn, say): the next newest, if any
                self._forget(group, into)
                self._rewritten.pop(into, None)
                if into == queued.id:
                    return None
                continue
            document, taken = folded
            for outbox_id in older:
                self._forget(group, outbox_id)  # (taken in, or ended another way)
                self._rewritten.pop(outbox_id, None)
                self._last_tries.discard(outbox_id)
                if outbox_id in taken and outbox_id != queued.id and (outbox_id in self._in_flight or self._looking):
                    self._superseded.add(outbox_id)  # a copy read, or being read: skipped when its turn comes
            self.superseded_by[group[0]] += len(taken)
            if into == queued.id:
                return replace(queued, body=document)
            if into in self._in_flight or self._looking:  # (for a copy read, or being read)
                self._rewritten[into] = document
            if queued.id in taken:
                self._on_event("superseded", queued, None)
            return None

    def _forget(self, group: tuple[str, str], outbox_id: int) -> None:
        """``outbox_id`` of ``group`` is pending no longer."""
        pending = self._pending_of.get(group)
        if pending is not None:
            pending.discard(outbox_id)
            if not pending:
                del self._pending_of[group]

    def _shrink(self) -> None:
        """Nothing in flight: let go of what a burst grew (a set keeps its table when emptied one by one).
        ``_finished`` only matters to a look at the table under way."""
        self._in_flight.clear()
        if not self._looking:  # (and no copy of a row is held: what a fold noted for one is moot)
            self._finished.clear()
            self._superseded.clear()
            self._rewritten.clear()

    async def _attempt(self, http: httpx.AsyncClient, queued: Queued) -> bool:
        """One delivery attempt; whether the notification waits for a retry (else it ended: delivered, dead,
        withdrawn)."""
        settings = self._settings()
        now = self._clock.now()
        channels = self._channels()
        channel = channels.get(queued.channel)
        fallback = settings.fallback_channel
        last_try = queued.id in self._last_tries
        self._last_tries.discard(queued.id)
        withdrawal = self._unwanted(queued, now)
        if withdrawal is not None:
            self._forget((queued.channel, queued.fingerprint), queued.id)
            if await self._store.withdraw(queued.id, withdrawal, now):
                self.withdrawn_by[queued.channel] += 1
                self._on_event("withdrawn", queued, withdrawal.why)
            return False
        if (
            channel is None
            and queued.fingerprint.startswith(DEAD_LETTER)
            and fallback is not None
            and fallback in channels
        ):
            # a dead-letter report whose fallback channel a reload replaced: it goes to the one in force
            await self._store.readdress(queued.id, fallback)
            queued, channel = replace(queued, channel=fallback), channels[fallback]
        if channel is None:
            await self._dead(queued, f"no channel named {queued.channel!r} in the configuration")
            return False
        if now - queued.created_at > settings.max_age and not last_try:
            await self._dead(queued, _too_old(settings, queued.last_error))
            return False
        notification = Notification(
            queued.id, queued.channel, queued.idempotency_key, queued.body, queued.created_at, queued.attempts
        )
        try:
            await self._pace(channel)
            await channel.send(notification, http)
        except DeliveryError as exc:
            paced = exc.retry_after is not None or exc.throttled
            return await self._failed(queued, str(exc), exc.retryable, exc.retry_after, paced, settings)
        except Exception as exc:
            return await self._failed(queued, f"{type(exc).__name__}", True, None, False, settings)
        self.delivered_by[queued.channel] += 1
        self._forget((queued.channel, queued.fingerprint), queued.id)
        now = self._clock.now()
        await self._finish(queued.id, "delivered", None, now)
        outage = self._outages.get(queued.channel)
        # (an outage that began after this answer, while its row was written, goes on: the channel fails now)
        if outage is not None and outage.since <= now:
            del self._outages[queued.channel]
            unlogged = self._quiet.done(queued.channel)
            if unlogged or now - outage.since >= QUIET_FOR:  # (one failure, logged, needs no line of its own)
                log.info("delivery to the channel works again", extra={"channel": queued.channel,
                         "failing_for_s": round(now - outage.since, 3), "failures_unlogged": unlogged})  # fmt: skip
            # the receiver is back (one that had failed got through, or others had failed before this one): what
            # waits for it need not sit out its backoff. One refused notification among others that get through
            # is its own matter, and keeps its backoff; at most one release a minute, whatever the receiver does
            back = queued.attempts > 0 or len(outage.refused) > 1
            if back and now - self._released.get(queued.channel, -math.inf) >= RELEASE_AT_MOST_EVERY:
                self._released[queued.channel] = now
                if await self._store.retry_channel_now(queued.channel, now):
                    self.wake()
        self._on_event("delivered", queued, None)
        return False

    async def _finish(self, outbox_id: int, state: str, error: str | None, now: float) -> None:
        """Mark a notification finished. The writer takes every row that ended while its last write ran in one
        transaction (a burst of deliveries would otherwise queue one each behind the group flushes); this returns
        once the row is written."""
        batch = self._finishing
        batch.rows.append((outbox_id, state, error, now))
        self._finish_wanted.set()
        await batch.written.wait()
        if batch.error is not None:
            raise StoreError(f"cannot mark notification {outbox_id} {state}") from batch.error

    async def _write_finished(self) -> None:
        """The one writer of finished notifications, for the life of the outbox loop."""
        while True:
            await self._finish_wanted.wait()
            self._finish_wanted = trio.Event()
            batch, self._finishing = self._finishing, _FinishBatch()
            try:
                await self._store.finish_many(batch.rows)
            except Exception as exc:
                batch.error = exc
            except BaseException:  # cancelled with the loop: not written, and not to be taken as written
                batch.error = StoreError("the outbox stopped")
                raise
            finally:
                batch.written.set()

    async def _pace(self, channel: Channel) -> None:
        """Wait for the channel's rate limit: a sliding window of its last sends."""
        limit = channel.rate_limit
        if limit is None:
            return
        count, seconds = limit
        sent = self._sent.setdefault(channel.name, deque())
        while True:
            now = self._clock.now()
            while sent and sent[0] <= now - seconds:
                sent.popleft()
            if len(sent) < count:
                sent.append(now)
                return
            await self._clock.sleep_until(sent[0] + seconds)

    async def _failed(
        self,
        queued: Queued,
        error: str,
        retryable: bool,
        retry_after: float | None,
        paced: bool,
        settings: DeliverySettings,
    ) -> bool:
        """Dead-letter the notification, or schedule its retry (``True``). ``paced``: the receiver asked for a
        pause (``Retry-After``, 429): it is up, so it is neither probed nor hurried when a sibling gets through."""
        self.failed_by[queued.channel] += 1
        if not retryable:
            await self._dead(queued, error)
            return False
        now = self._clock.now()
        left = queued.created_at + settings.max_age - now
        if left <= 0:  # that was its last attempt
            await self._dead(queued, _too_old(settings, error))
            return False
        backoff = min(settings.max_backoff, settings.initial_backoff * 2 ** min(queued.attempts, 30))
        delay = max(retry_after or 0.0, backoff * random.uniform(0.5, 1.0))  # full jitter's gentler cousin
        # a long Retry-After (a date next year, say) waits no later than max_age: then the last try, or dead-letter
        delay = min(delay, left)
        outage = None if paced else self._outages.get(queued.channel)
        if not paced and outage is None:
            self._outages[queued.channel] = _Outage(now, refused={queued.id})
        elif outage is not None:  # failing already, nothing through since: one notification at a time probes it
            outage.refused.add(queued.id)
            every = self._probe_every(outage.since, now, settings)
            if outage.probe_at is None or outage.probe_at <= now or outage.probe_at > now + every:
                delay = min(delay, every * random.uniform(0.5, 1.0))
                outage.probe_at = now + delay
        if delay >= left:
            self._last_tries.add(queued.id)
        held = self._quiet.allow("retry", queued.channel, now)
        if held is not None:
            log.warning(
                "delivery failed; will retry",
                extra={"channel": queued.channel, "notification": queued.id, "error": error,
                       "retry_in": round(delay, 3), "attempt": queued.attempts + 1, "like_it_unlogged": held},
            )  # fmt: skip
        await self._store.retry_later(queued.id, now + delay, error)
        if (group := _group(queued.channel, queued.fingerprint)) is not None:
            self._pending_of.setdefault(group, set()).add(queued.id)
        self._on_event("retry", queued, error)
        return True

    @staticmethod
    def _probe_every(since: float, now: float, settings: DeliverySettings) -> float:
        """How often a channel failing since ``since`` is probed: a thirtieth of that time (a receiver back after a
        minute waits about two seconds, after an hour two minutes), from ``probe_interval`` to ``max_backoff``."""
        return min(settings.max_backoff, max(settings.probe_interval, (now - since) / PROBE_SHARE))

    async def _dead(self, queued: Queued, error: str) -> None:
        self.dead_by[queued.channel] += 1
        self._forget((queued.channel, queued.fingerprint), queued.id)
        now = self._clock.now()
        held = self._quiet.allow("dead", queued.channel, now)
        if held is not None:
            log.error(
                "notification dead-lettered",
                extra={"channel": queued.channel, "notification": queued.id, "error": error, "like_it_unlogged": held},
            )
        fallback = self._settings().fallback_channel
        if fallback is not None and fallback != queued.channel:
            await self._report_dead(queued, error, fallback)  # (dead and reported in one transaction)
        else:
            await self._store.finish(queued.id, "dead", error, now)
        outage = self._outages.get(queued.channel)
        if outage is not None:  # it may have been the probe: the next notification waiting takes over
            at = now + self._probe_every(outage.since, now, self._settings()) * random.uniform(0.5, 1.0)
            if await self._store.retry_first_by(queued.channel, at):
                outage.probe_at = at
                self.wake()
        self._on_event("dead", queued, error)

    async def _report_dead(self, queued: Queued, error: str, fallback: str) -> None:
        """Mark ``queued`` dead and tell ``fallback`` of it, in one transaction: at once, or, when it was told of
        this channel's less than ``REPORT_EVERY`` ago, with the others of that time in one report (a channel down
        dead-letters a whole burst: ten thousand SMS of "not delivered" help nobody). A report waiting its time
        is in the outbox already, due then: a stop or a crash loses no dead letter's report."""
        report = self._reports.setdefault(queued.channel, _DeadReport())
        alerts = queued.payload.get("alerts", [])  # (what the report says of it: not the notification itself)
        names = {str(a.get("labels", {}).get("alertname", "")) for a in alerts}
        while report.starting is not None:  # the report this one may join is being written
            await report.starting.wait()
        now = self._clock.now()
        alone = DeadLetters(queued.channel, error).add(queued.id, len(alerts), names)
        due = max(now, report.due + REPORT_EVERY)  # a report of its own: at once, or REPORT_EVERY after the last
        joining, told, starting = None, report.told, None
        waiting = self._unread(report, now)
        if told is not None and waiting is not None and report.channel == fallback:
            # (no lock: the store runs calls in the order asked, so the last document written tells them all)
            told.add(queued.id, len(alerts), names)
            joining = (waiting, dead_letter_report(told, fallback, report.since).payload)
        else:
            starting = report.starting = trio.Event()
        try:
            joined, waiting = await self._store.dead_letter(
                queued.id, error, now, joining, dead_letter_report(alone, fallback, now), due
            )
        finally:
            if starting is not None:
                starting.set()
                report.starting = None
        if not joined:  # (a report the loop read meanwhile goes as it was read: this one starts the next)
            report.told, report.channel, report.waiting = alone, fallback, waiting
            report.since, report.due = now, due
            self.wake()  # (due now, or later: the loop's next look must be by then)

    def _recall_report(self, row: Mapping[str, Any], now: float) -> None:
        """A dead-letter report of the last minute, read back at a start: the next dead letter of its channel
        waits for its time, or joins it if it still waits for its own (else a restart sent one more)."""
        from alphawatch.daemon.wire import parse_rfc3339

        try:
            alert = json.loads(row["payload"])["alerts"][0]
            failed, details = alert["labels"]["channel"], alert.get("details") or {}
            since = parse_rfc3339(alert["startsAt"])
            if not isinstance(failed, str) or not isinstance(details, dict):
                raise TypeError(failed)
        except (ValueError, KeyError, IndexError, TypeError):  # (not a report this version wrote)
            return
        report = self._reports.setdefault(failed, _DeadReport())
        due = row["created_at"]  # (when it was due to go: a retry moves next_attempt_at on, not this)
        if due < report.due:
            return  # (an older one)
        report.channel, report.since, report.due = row["channel"], since, due
        told = DeadLetters.recalled(failed, details)
        unread = row["state"] == "pending" and row["attempts"] == 0 and row["next_attempt_at"] > now
        report.told, report.waiting = (told, row["id"]) if unread and told is not None else (None, None)

    def _unread(self, report: _DeadReport, now: float) -> int | None:
        """The report waiting its time, if the loop cannot have read it: not due at ``now`` and never in flight
        (the store checks again in the same transaction: pending, never attempted, not due; the second look covers
        a wall clock set back after the loop read it)."""
        waiting = report.waiting
        if waiting is None or now >= report.due or waiting in self._in_flight:
            return None
        return None if waiting in self._finished else waiting


@dataclass
class DeadLetters:
    """What a dead-letter report tells of the notifications to one channel that were not delivered: kept in
    totals, so a report that takes in a burst of ten thousand costs no more than one of ten."""

    channel: str  # the channel that failed
    error: str  # the first one's
    count: int = 0
    alerts: int = 0
    names: set[str] = field(default_factory=set)  # their alerts' names
    ids: list[int] = field(default_factory=list)  # the first ``SHOWN`` outbox ids

    SHOWN: ClassVar[int] = 20

    @property
    def first(self) -> int:
        """The first one's outbox id."""
        return self.ids[0]

    @classmethod
    def recalled(cls, channel: str, details: Mapping[str, Any]) -> DeadLetters | None:
        """The totals a report's ``details`` carry (``None`` from a report written before they did)."""
        try:
            told = cls(channel, str(details["error"]), int(details["notifications"]), int(details["alerts"]))
            told.names, told.ids = {str(n) for n in details["alert_names"]}, [int(i) for i in details["outbox_ids"]]
        except (KeyError, TypeError, ValueError):
            return None
        return told

    def add(self, outbox_id: int, alerts: int, names: Iterable[str]) -> DeadLetters:
        self.count += 1
        self.alerts += alerts
        self.names.update(names)
        if len(self.ids) <= self.SHOWN:  # (one more than shown: the description says there are more)
            self.ids.append(outbox_id)
        return self


@dataclass
class _DeadReport:
    """A channel's last dead-letter report: the outbox row of the one waiting its time, if any."""

    told: DeadLetters | None = None
    channel: str = ""  # the fallback channel it goes to
    since: float = -math.inf  # when its first dead letter came
    due: float = -math.inf  # when it goes (or went)
    waiting: int | None = None
    starting: trio.Event | None = None  # set once a report being written has its row


@dataclass
class _Outage:
    """A channel whose attempts fail, since ``since``: when its probe is due, and what failed meanwhile."""

    since: float
    probe_at: float | None = None
    refused: set[int] = field(default_factory=set)


@dataclass
class _FinishBatch:
    rows: list[tuple[int, str, str | None, float]] = field(default_factory=list)
    written: trio.Event = field(default_factory=trio.Event)
    error: Exception | None = None


def _group(channel: str, fingerprint: str) -> tuple[str, str] | None:
    """What a notification goes in order with: its group (or page's alert) and channel; a dead-letter report
    with nothing."""
    return None if fingerprint.startswith(DEAD_LETTER) else (channel, fingerprint)


def _too_old(settings: DeliverySettings, last_error: str | None) -> str:
    last = f"; the last attempt: {last_error}" if last_error else ""  # the why, kept
    return f"not delivered within max_age ({settings.max_age:g}s){last}"


def dead_letter_report(dead: DeadLetters, channel: str, now: float) -> Outgoing:
    """The notification telling ``channel`` that notifications (all to one channel) could not be delivered
    (Alertmanager v4 shape)."""
    from alphawatch.daemon.notify import ZERO_TIME, rfc3339

    shown = DeadLetters.SHOWN
    names = sorted(dead.names)
    ids = [str(i) for i in dead.ids]
    labels = {"alertname": "AlphawatchNotificationFailed", "severity": "error", "channel": dead.channel}
    what = "a notification" if dead.count == 1 else f"{dead.count} notifications"
    annotations = {
        "summary": f"{what} to {dead.channel} {'was' if dead.count == 1 else 'were'} not delivered: {dead.error}",
        "description": f"{dead.alerts} alert(s): {', '.join(names[:shown])}{' …' * (len(names) > shown)}; "
        f"outbox id{'s' * (len(ids) > 1)} {', '.join(ids[:shown])}{' …' * (len(ids) > shown)}",
    }
    alert = {
        "status": "firing", "labels": labels, "annotations": annotations, "startsAt": rfc3339(now),
        "endsAt": ZERO_TIME, "generatorURL": "", "fingerprint": f"{DEAD_LETTER}{dead.first}", "value": None,
        "severity": "error", "rule": "AlphawatchNotificationFailed", "durationSeconds": None,
        "details": {"notifications": dead.count, "alerts": dead.alerts, "alert_names": names,
                    "outbox_ids": dead.ids, "error": dead.error},
    }  # fmt: skip
    payload = {
        "version": "4", "groupKey": '{}:{alertname="AlphawatchNotificationFailed"}', "truncatedAlerts": 0,
        "status": "firing", "receiver": channel, "groupLabels": {"alertname": labels["alertname"]},
        "commonLabels": labels, "commonAnnotations": annotations, "externalURL": "", "alerts": [alert],
    }  # fmt: skip
    key = hashlib.sha256(f"dead-letter|{dead.first}|{channel}".encode()).hexdigest()[:32]
    return Outgoing(channel, f"{DEAD_LETTER}{dead.first}", key, json.dumps(payload, ensure_ascii=False))
