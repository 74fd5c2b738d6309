"""The rule engine: one supervised actor per configured rule, samples routed only to the actors that want them.

An actor owns its rule's evaluator and alert tracker. It wakes for a batch of samples or at the exact instant
its rule or its alerts next need the clock (``for``, ``keep_firing_for``, a window edge, a repeat), never on a
polling tick. A rule that fell behind a burst of ingest requests lets the burst end, then evaluates each waiting
batch as of its arrival: the requests are answered sooner, and the alerts carry the times they would have had
(a notification group's ``group_wait`` counts from there).

:meth:`Engine.apply` diffs two configurations by equality: unchanged rules keep their actor, their timers and
their alerts; changed rules restart; removed rules stop and resolve their alerts.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import trio

from alphawatch.daemon.alerts import Tracker, Transition
from alphawatch.daemon.calendar import local_datetime
from alphawatch.daemon.clock import Clock
from alphawatch.daemon.config import Config, RuleConfig
from alphawatch.daemon.dispatch import Dispatcher
from alphawatch.daemon.errors import StoreError
from alphawatch.daemon.store import Queued, Store
from alphawatch.daemon.supervisor import FAILED, Supervised, supervise
from alphawatch.daemon.suppression import Suppressions
from alphawatch.rules import Condition, Evaluator, RuleKind, Sample, Selector

log = logging.getLogger("alphawatch.engine")

INBOX_SIZE = 4096
LULL = 0.005
"""A rule behind a burst of ingest requests waits until none has run for this long (the client's turnaround
between two requests is well under it) …"""
BULK = 50
"""A batch of this many samples for one rule waits for a lull even when it comes first: its client is likely
sending more, and the rule evaluating it at once holds the next requests up (a lone sample is evaluated at once)."""
LULL_AT_MOST = 0.5
"""… but evaluates the oldest waiting batch no later than this after its arrival, whatever the ingest load."""
COMMIT_CHUNK = 250
"""A backlog is written once this many transitions are waiting (after a whole batch): group flushes in between."""
RESTART_PAUSE = 1.0  # a background task's first restart after a crash (keep_running), then doubling
RESTART_PAUSE_AT_MOST = 60.0
HOLD_AT_MOST = 10.0
"""Seconds a rule's unrouted samples may hold group flushes back at most (a safety net: a rule routes its
backlog within ``LULL_AT_MOST`` plus the time to evaluate it)."""


class _Internal(RuleKind):
    """The kind of the daemon's own alerts (and of those of a removed rule): raised by the engine, not by samples."""

    kind = "internal"
    schema: ClassVar[dict[str, Any]] = {}

    def selectors(self) -> tuple[Selector, ...]:
        return ()


RULE_FAILED = RuleConfig(
    name="AlphawatchRuleFailed",
    kind="internal",
    rule=_Internal({}),
    severity="error",
    labels=(("component", "alphawatch"),),
    annotations=(("summary", "rule {{ labels.rule }} crashed too often and is parked as failed"),),
)

CALENDAR_EXPIRING = RuleConfig(
    name="AlphawatchCalendarExpiring",
    kind="internal",
    rule=_Internal({}),
    severity="warning",
    labels=(("component", "alphawatch"),),
    annotations=(("summary", "{{ details.message }}"),),
)
CALENDAR_CHECK_EVERY = 6 * 3600.0
REMOVED_RULE = RuleConfig(
    name="",
    kind="removed",
    rule=_Internal({}),
    annotations=(("summary", "resolved: its rule was removed from the configuration"),),
)


Arrival = tuple[float, list[Sample]]
"""A batch of samples for one actor, with the instant it was handed over."""


@dataclass
class Actor:
    config: RuleConfig
    state: Supervised
    send: trio.MemorySendChannel[Arrival]
    receive: trio.MemoryReceiveChannel[Arrival]
    cancel: trio.CancelScope = field(default_factory=trio.CancelScope)
    resync: bool = False
    behind: bool = False
    """An ingest request was running when the actor finished its last step, or its next batch holds ``BULK``
    samples or more: that batch waits for a lull."""
    done: trio.Event = field(default_factory=trio.Event)
    """Set once the actor's task has ended (after a cancel: its last write is in the store)."""
    firing: int = 0
    pending: int = 0
    held: deque[float] = field(default_factory=deque)
    """The arrival instants of the batches sent to the actor and not routed yet, oldest first."""
    running: bool = False


class Engine:
    def __init__(
        self,
        config: Config,
        store: Store,
        clock: Clock,
        on_committed: Callable[[RuleConfig, list[Transition], list[Queued]], None] = lambda *_: None,
        on_status: Callable[[Actor], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.actors: dict[str, Actor] = {}
        self._index: dict[str, list[tuple[Selector, Actor]]] = defaultdict(list)
        self._on_committed = on_committed
        self._on_status = on_status
        self._nursery: trio.Nursery | None = None
        self._self_alerts = Tracker(RULE_FAILED)
        self._calendar_alerts = Tracker(CALENDAR_EXPIRING)
        self._calendar_changed = trio.Event()
        self.dispatcher = Dispatcher(config)
        self._dispatch_lock = trio.Lock()
        """Held from a dispatcher step to the end of its write, and while the dispatcher is rebuilt from the store:
        a rebuild never misses a step written meanwhile."""
        self._dispatch_changed = trio.Event()
        self._held_due: float | None = None  # the first group due that waits for a rule's unrouted batches
        self.suppressions: Suppressions | None = None
        """Silences, inhibition and acknowledgements; the dispatcher asks them before every notification."""
        self._hold_until = -math.inf
        self._first_steps: set[str] = set()
        """Rules not evaluated yet since the daemon started: until they are, no group flushes (an overdue repeat
        would tell of an alert the rule is about to resolve), for ``HOLD_AT_MOST`` at most."""
        self.cleanup_error: str | None = None
        """Why the alerts of removed rules could not be resolved in the store at the last apply (tried again)."""
        self.restarts_before: Counter[str] = Counter()  # rule → restarts of its actors replaced by a reload
        self._ingesting = 0
        self._ingest_ended_at = -math.inf
        self._ingest_ended = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the actors of the current configuration until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            # nothing goes out before every rule has looked at its alerts (set first: what follows commits)
            self._first_steps = {rule.name for rule in self.config.rules}
            self._hold_until = self.clock.now() + HOLD_AT_MOST
            self._self_alerts = Tracker(RULE_FAILED, await self.store.load_alerts(RULE_FAILED.name))
            self._calendar_alerts = Tracker(CALENDAR_EXPIRING, await self.store.load_alerts(CALENDAR_EXPIRING.name))
            await self._reload_dispatch()
            await self._resolve_unconfigured()
            for rule in self.config.rules:
                self._start(rule)
            nursery.start_soon(keep_running, "calendar watch", self._watch_calendar)
            nursery.start_soon(keep_running, "dispatcher", self._run_dispatch, self._reload_dispatch)
            task_status.started()
            await trio.sleep_forever()

    async def _watch_calendar(self) -> None:
        """Raise a warning while a calendar's data runs out within ``calendar.warn_before``; repeat daily."""
        while True:
            now = self.clock.now()
            warnings = self.config.calendars.expiry_warnings(now)
            details = (("message", "; ".join(warnings)),) if warnings else ()
            days_left = (self.config.calendars.valid_until - local_datetime(now).date()).days
            condition = Condition((("calendar", "valid_until"),), bool(warnings), float(days_left), details)
            transitions, deadline = self._calendar_alerts.update([condition], now)
            await self._commit(CALENDAR_EXPIRING, _with_changes(self._calendar_alerts, transitions, now))
            next_at = _earliest(deadline, now + CALENDAR_CHECK_EVERY)
            with trio.move_on_at(self.clock.trio_deadline(next_at)):
                await self._calendar_changed.wait()
                self._calendar_changed = trio.Event()

    # configuration ----------------------------------------------------------------------------------------
    async def apply(self, new: Config) -> tuple[list[str], list[str], list[str]]:
        """Switch to ``new``; return the names of the rules added, changed and removed.

        Compared with the rules that run, so a reload the state file refused part-way is completed by the next:
        if the routes cannot be saved nothing changes (the error is raised); once the rules run the new
        configuration, the alerts of removed rules resolve in the store, and a refusal there is kept in
        :attr:`cleanup_error` (not raised) and tried again at the next apply."""
        running = {name: actor.config for name, actor in self.actors.items()}
        new_rules = {r.name: r for r in new.rules}
        added = [n for n in new_rules if n not in running]
        removed = [n for n in running if n not in new_rules]
        changed = [n for n in new_rules if n in running and new_rules[n] != running[n]]
        calendar_changed = new.calendars != self.config.calendars
        with trio.CancelScope(shield=True):
            async with self._dispatch_written():
                writes = self.dispatcher.apply(new, self.clock.now())
                self._on_committed(RULE_FAILED, [], await self.store.save_dispatch(writes))
        self.config = new
        self.poke()
        if calendar_changed:
            self._calendar_changed.set()
        for name in removed:
            self._stepped(name)
        stopped = [self.actors.pop(name) for name in removed + changed]
        for actor in stopped:
            actor.cancel.cancel()
            self.restarts_before[actor.config.name] += actor.state.restarts  # (a counter goes on from there)
        for actor in stopped:
            await actor.done.wait()  # a write under way or queued ends first: what follows reads the store after it
        for name in changed + added:
            self._start(new_rules[name])
        for name in new_rules:
            if name not in changed and name not in added:
                self.actors[name].config = new_rules[name]  # same settings; `origin` may have moved
        self._reindex()
        if removed or self.cleanup_error is not None:
            try:  # the alerts of rules no longer configured resolve, their parked-rule alert and watch go
                for actor in stopped:
                    if actor.config.name in removed:
                        await self._resolve_removed(actor.config)  # told with the rule's own labels
                await self._resolve_unconfigured()  # the rest, and what a refusal left at an earlier apply
                self.cleanup_error = None
            except (sqlite3.Error, StoreError) as exc:
                self.cleanup_error = f"{type(exc).__name__}: {exc}"
                # the daemon's alerts in memory may be ahead of the file (a parked rule's alert let go): the next
                # try starts from what the file has
                with contextlib.suppress(sqlite3.Error, StoreError):
                    self._self_alerts = Tracker(RULE_FAILED, await self.store.load_alerts(RULE_FAILED.name))
        return added, changed, removed

    def _start(self, rule: RuleConfig) -> None:
        assert self._nursery is not None
        send, receive = trio.open_memory_channel[Arrival](INBOX_SIZE)
        actor = Actor(rule, Supervised(rule.name), send, receive)
        self.actors[rule.name] = actor
        self._reindex()
        self._nursery.start_soon(self._supervise, actor)

    def _reindex(self) -> None:
        self._index = defaultdict(list)
        for actor in self.actors.values():
            for selector in actor.config.rule.selectors():
                self._index[selector.metric].append((selector, actor))

    # samples ----------------------------------------------------------------------------------------------
    def dispatch(self, samples: Iterable[Sample]) -> None:
        """Hand committed samples to the actors whose selectors match. Never blocks: an actor whose inbox is
        full is told to rebuild its state from the store instead."""
        batches: dict[int, tuple[Actor, list[Sample]]] = {}
        index = self._index
        for sample in samples:
            for selector, actor in index.get(sample.metric, ()):
                if selector.matches(sample):
                    batches.setdefault(id(actor), (actor, []))[1].append(sample)
        now = self.clock.now()
        for actor, batch in batches.values():
            if actor.state.status == FAILED:  # parked: a new configuration starts it afresh, from the store
                continue
            try:
                actor.send.send_nowait((now, batch))
                actor.held.append(now)
            except trio.WouldBlock:
                if not actor.resync:  # once, not for every batch until it catches up
                    log.warning(
                        "rule inbox full; it will reload its samples from the store", extra={"rule": actor.config.name}
                    )
                actor.resync = True

    def forget(self, metrics: Collection[str]) -> None:
        """Series of ``metrics`` left the store (silent for longer than the retention): the rules that watch them
        start again from the store, as at a restart, so what they held of those series (a threshold rule's last
        value, say) goes too. An empty batch wakes each one to do it."""
        now = self.clock.now()
        watching = {id(actor): actor for metric in metrics for _, actor in self._index.get(metric, ())}
        for actor in watching.values():
            if actor.state.status == FAILED:  # parked: a new configuration starts it from the store anyway
                continue
            actor.resync = True
            with contextlib.suppress(trio.WouldBlock):  # (a full inbox: it resyncs at its next batch)
                actor.send.send_nowait((now, []))
                actor.held.append(now)

    @contextmanager
    def ingesting(self) -> Iterator[None]:
        """Around an ingest request, from its body to its answer: rules that fell behind wait for a lull."""
        self._ingesting += 1
        try:
            yield
        finally:
            self._ingesting -= 1
            self._ingest_ended_at = self.clock.now()
            self._ingest_ended.set()
            self._ingest_ended = trio.Event()

    async def _lull(self, until: float) -> None:
        """Return once no ingest request has run for :data:`LULL`, or at ``until``."""
        while (now := self.clock.now()) < until:
            if self._ingesting:
                wake = until
            else:
                wake = self._ingest_ended_at + LULL
                if now >= wake:
                    return
            ended = self._ingest_ended
            with trio.move_on_at(self.clock.trio_deadline(min(wake, until))):
                await ended.wait()

    # actors -----------------------------------------------------------------------------------------------
    async def _supervise(self, actor: Actor) -> None:
        try:
            with actor.cancel:

                async def run(started: Callable[[], None]) -> None:
                    await self._run_actor(actor, started)

                await supervise(
                    actor.state, run, self.config.daemon.supervisor, self.clock, self._status_changed(actor)
                )
        finally:
            actor.done.set()

    def _status_changed(self, actor: Actor) -> Callable[[Supervised], Awaitable[None]]:
        async def changed(state: Supervised) -> None:
            try:
                await self.store.set_rule_state(state.name, state.status, state.restarts, state.last_error)
            except sqlite3.Error as exc:  # the store refuses writes: supervision goes on (the page shows the state)
                log.warning("cannot record the rule's state", extra={"rule": state.name,
                            "error": f"{type(exc).__name__}: {exc}"})  # fmt: skip
            if state.status == FAILED:
                self._stepped(state.name)
                try:
                    await self._set_failed(actor.config.name, True, float(state.restarts))
                except sqlite3.Error:  # (a full disk) the rule stays parked, and the page and /health say so
                    log.exception("cannot raise the alert of a parked rule", extra={"rule": state.name})
            if self._on_status is not None:
                await self._on_status(actor)

        return changed

    async def _run_actor(self, actor: Actor, started: Callable[[], None]) -> None:
        rule = actor.config
        evaluator, tracker = await self._restore(rule)
        # the batches a crashed run had taken are gone (the store has their samples): it holds what waits
        while len(actor.held) > actor.receive.statistics().current_buffer_used:
            actor.held.popleft()
        actor.running = True
        try:
            await self._actor_loop(actor, evaluator, tracker, started)
        finally:
            actor.running = False
            if actor.held:  # what it held back need not wait for it
                self.poke()

    async def _actor_loop(
        self, actor: Actor, evaluator: Evaluator, tracker: Tracker, started: Callable[[], None]
    ) -> None:
        rule = actor.config
        started()
        await self._clear_failed(rule.name)  # it runs again (after a restart of the daemon, say)
        await self.store.set_rule_state(rule.name, actor.state.status, actor.state.restarts, actor.state.last_error)
        if self._on_status is not None:
            await self._on_status(actor)
        now = self.clock.now()
        earlier: list[Transition] = []
        taken = 0  # batches taken from the inbox and not routed yet
        while True:
            if actor.resync:
                actor.resync = False
                evaluator, tracker = await self._restore(rule)
                earlier = []  # derived again from the stored samples
            if evaluator.reads_store:
                await evaluator.refresh(self.store, now)
            transitions, next_at = _step(rule, evaluator, tracker, now)
            await trio.lowlevel.checkpoint_if_cancelled()  # a rule removed or changed meanwhile writes no more
            await self._commit(rule, earlier + transitions, self._watermark(actor, taken))
            self._routed(actor, taken)
            if rule.name in self._first_steps:
                self._stepped(rule.name)
            earlier, taken = [], 0
            actor.firing = tracker.firing_count
            actor.pending = len(tracker.alerts) - actor.firing
            actor.behind = self._ingesting > 0
            arrivals: list[Arrival] = []
            with trio.move_on_at(self.clock.trio_deadline(next_at)):
                arrivals.append(await actor.receive.receive())
            if arrivals and len(arrivals[0][1]) >= BULK:  # a bulk client's first batch: more are likely coming
                actor.behind = True
            if arrivals and actor.behind:
                await self._lull(min(arrivals[0][0] + LULL_AT_MOST, math.inf if next_at is None else next_at))
            while True:  # take everything already queued before evaluating
                try:
                    arrivals.append(actor.receive.receive_nowait())
                except trio.WouldBlock:
                    break
            taken = len(arrivals)
            if actor.behind and not evaluator.reads_store:  # (a rule reading the store: once, refreshed)
                earlier, routed = await self._replay(actor, evaluator, tracker, arrivals, now, next_at)
                taken -= routed
            else:
                for _, batch in arrivals:
                    for sample in batch:
                        evaluator.observe(sample)
            del arrivals  # (observed: the memory of its samples serves what evaluating them makes)
            now = self.clock.now()

    async def _replay(
        self,
        actor: Actor,
        evaluator: Evaluator,
        tracker: Tracker,
        arrivals: list[Arrival],
        at: float,
        due: float | None,
    ) -> tuple[list[Transition], int]:
        """Evaluate the batches a rule let pass each as of its arrival (batches of one instant together), and a
        timer of the rule that fell due between two at its own instant, as if the rule had kept up. Writes the
        transitions, oldest first, whenever ``COMMIT_CHUNK`` wait; returns those left to write, and how many
        batches are routed."""
        rule = actor.config
        earlier: list[Transition] = []
        routed = 0
        for index, (arrived, batch) in enumerate(arrivals):
            while due is not None and at < due < arrived:  # a timer due before this batch came
                at = due
                more, due = _step(rule, evaluator, tracker, at)
                earlier += more
            for sample in batch:
                evaluator.observe(sample)
            batch.clear()  # (observed: its memory serves what evaluating the backlog makes)
            if index + 1 < len(arrivals) and arrivals[index + 1][0] == arrived:
                continue
            at = max(at, arrived)
            more, due = _step(rule, evaluator, tracker, at)
            earlier += more
            if len(earlier) >= COMMIT_CHUNK:
                await trio.lowlevel.checkpoint_if_cancelled()  # a rule removed or changed meanwhile writes no more
                await self._commit(rule, earlier, self._watermark(actor, index + 1 - routed))
                self._routed(actor, index + 1 - routed)
                earlier, routed = [], index + 1
            else:
                await trio.lowlevel.checkpoint()  # requests meanwhile are answered between batches
        return earlier, routed

    def _watermark(self, actor: Actor | None = None, routing: int = 0) -> float:
        """The arrival of the oldest batch some rule has not routed: a group due at or after it waits, so that
        the alerts that arrived before its flush are in it (a rule that fell behind routes its batches late, each
        as of its arrival). ``actor`` is about to route its first ``routing`` held batches."""
        if self._holding_start():
            return -math.inf
        mark = math.inf
        for other in self.actors.values():
            held = other.held
            skip = routing if other is actor else 0
            if other.running and len(held) > skip:
                mark = min(mark, held[skip])
        return max(mark, self.clock.now() - HOLD_AT_MOST)

    def _holding_start(self) -> bool:
        """Nothing goes out yet: some rule has not looked at its alerts since the start (``HOLD_AT_MOST`` at most)."""
        return bool(self._first_steps) and self.clock.now() < self._hold_until

    def _stepped(self, name: str) -> None:
        """The rule has evaluated once since the start (or will not: parked, removed)."""
        self._first_steps.discard(name)
        if not self._first_steps:
            self.poke()

    def _routed(self, actor: Actor, count: int) -> None:
        """The actor's ``count`` oldest held batches are routed: a group they held back may flush now."""
        for _ in range(count):
            actor.held.popleft()
        if count and self._held_due is not None and self._watermark() > self._held_due:
            self.poke()

    async def _restore(self, rule: RuleConfig) -> tuple[Evaluator, Tracker]:
        now = self.clock.now()
        evaluator = rule.rule.new_evaluator(
            await self.store.watching_since(rule.name, repr(rule.rule.selectors()), now)
        )
        since = now - rule.rule.history()
        for selector in rule.rule.selectors():
            for sample in await self.store.load_samples(selector, since, latest_only=rule.rule.latest_only):
                evaluator.observe(sample)
        alerts = await self.store.load_alerts(rule.name)
        # the rule's labels or severity changed (a reload): alerts with the old labels resolve, and the evaluation
        # that follows makes them again with the new ones (a new identity, as in Prometheus)
        current = [alert for alert in alerts if alert.labels == rule.alert_labels(alert.series)]
        if len(current) < len(alerts):
            kept = {alert.fingerprint for alert in current}
            stale = Tracker(rule, [alert for alert in alerts if alert.fingerprint not in kept])
            await self._commit(rule, stale.resolve_all(now))
            alerts = current
        return evaluator, Tracker(rule, alerts)

    async def _commit(self, rule: RuleConfig, transitions: list[Transition], before: float | None = None) -> None:
        """Route and write ``transitions`` as one unit: the steps they come from are never split, so a group never
        flushes between alerts of one instant. Groups due at or after ``before`` (default: the watermark) wait."""
        if not transitions:
            return
        with trio.CancelScope(shield=True):
            async with self._dispatch_written():
                mark = self._watermark() if before is None else before
                writes = self.dispatcher.route(rule, transitions, self.clock.now(), mark)
                queued = await self.store.apply(transitions, writes)
        self._on_committed(rule, transitions, queued)
        self.poke()

    # groups ------------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def _dispatch_written(self) -> AsyncIterator[None]:
        """Around a dispatcher step and its write (shielded by the caller: once the groups in memory changed, the
        write must follow). If the write fails, the groups in memory are ahead of the store and the alert
        documents of the step are nowhere else: the dispatcher is rebuilt from the store, and the failing actor,
        restarted, routes its alerts again."""
        async with self._dispatch_lock:
            try:
                yield
            except Exception:
                with contextlib.suppress(Exception):  # the store may be down for good: the original error says so
                    await self._load_dispatch()
                raise

    async def _reload_dispatch(self) -> None:
        """The groups as the store has them (at start, and after the dispatcher's own task failed)."""
        async with self._dispatch_lock:
            await self._load_dispatch()

    async def _load_dispatch(self) -> None:
        """Rebuild the dispatcher from the store, routing again the alerts of groups whose route is gone."""
        dispatcher = Dispatcher(self.config)
        dispatcher.load(*await self.store.load_dispatch())
        dispatcher.reason, dispatcher.acknowledged = self.dispatcher.reason, self.dispatcher.acknowledged
        dispatcher.may_suppress, dispatcher.ack_reason = self.dispatcher.may_suppress, self.dispatcher.ack_reason
        self.dispatcher = dispatcher
        self._on_committed(RULE_FAILED, [], await self.store.save_dispatch(dispatcher.adopt(self.clock.now())))

    def poke(self) -> None:
        """Group timers may have moved: let the dispatcher look again."""
        self._dispatch_changed.set()

    async def _run_dispatch(self) -> None:
        reconsider_at: float | None = None
        looked = False  # at the start, held news is looked at once: a silence may have ended while stopped
        while True:
            self._dispatch_changed = trio.Event()
            now = self.clock.now()
            suppressions = self.suppressions
            if suppressions is not None:
                self.dispatcher.reason = suppressions.reason
                self.dispatcher.may_suppress = suppressions.may_suppress
                self.dispatcher.acknowledged = suppressions.acknowledged
                self.dispatcher.ack_reason = suppressions.ack_reason
                changed = suppressions.changed()
                if not looked or (reconsider_at is not None and now >= reconsider_at):
                    self.dispatcher.reconsider(now)
                    looked = True
                reconsider_at = suppressions.next_change(now)
            mark = self._watermark()
            due, _ = self.dispatcher.next_due(mark)
            if due is not None and due <= now:  # the lock only when there is something to flush
                with trio.CancelScope(shield=True):
                    async with self._dispatch_written():
                        writes = self.dispatcher.flush_due(now, mark)
                        queued = await self.store.save_dispatch(writes) if writes else []
                self._on_committed(RULE_FAILED, [], queued)
            # a group due now that waits for a rule's unrouted batches: that rule pokes when it has routed them
            # (or, at the latest, the safety net lets it go); one due later is looked at when it falls due
            now = self.clock.now()
            due, held = self.dispatcher.next_due(self._watermark())  # (no await since: _routed sees this)
            if held is not None and held <= now:
                self._held_due = held
                release = held + HOLD_AT_MOST + LULL
                if self._holding_start():  # (the last first step pokes)
                    release = self._hold_until
                due = _earliest(due, release)
            else:
                self._held_due = None
                due = _earliest(due, held)
            next_at = _earliest(due, reconsider_at)
            async with trio.open_nursery() as waiting:
                waiting.cancel_scope.deadline = self.clock.trio_deadline(next_at)
                waiting.start_soon(_set_then_cancel, self._dispatch_changed, waiting.cancel_scope)
                if suppressions is not None:
                    waiting.start_soon(_changed_then_cancel, changed, waiting.cancel_scope, self)

    # the daemon's own alerts ------------------------------------------------------------------------------
    async def _set_failed(self, rule_name: str, failed: bool, value: float | None) -> None:
        now = self.clock.now()
        condition = Condition((("rule", rule_name),), failed, value)
        transitions, _ = self._self_alerts.update([condition], now)
        transitions = _with_changes(self._self_alerts, transitions, now)
        await self._commit(RULE_FAILED, transitions)

    async def _clear_failed(self, rule_name: str) -> None:
        if (("rule", rule_name),) in self._self_alerts.alerts:
            await self._set_failed(rule_name, False, None)

    async def _resolve_removed(self, rule: RuleConfig) -> None:
        tracker = Tracker(rule, await self.store.load_alerts(rule.name))
        await self._commit(rule, tracker.resolve_all(self.clock.now()))

    async def _resolve_unconfigured(self) -> None:
        """At start: the alerts of rules removed from the configuration while the daemon was stopped resolve, as
        a reload that removes a rule resolves them (else they would fire, and repeat, for ever)."""
        configured = {rule.name for rule in self.config.rules} | {RULE_FAILED.name, CALENDAR_EXPIRING.name}
        rows = await self.store.query("SELECT DISTINCT rule FROM alerts WHERE state IN ('pending', 'firing')")
        for name in sorted({row["rule"] for row in rows} - configured):
            log.info("resolving the alerts of a rule no longer configured", extra={"rule": name})
            await self._resolve_removed(replace(REMOVED_RULE, name=name))
        for series in list(self._self_alerts.alerts):  # and the daemon's alert that such a rule was parked
            name = dict(series).get("rule", "")
            if name not in configured:
                await self._set_failed(name, False, None)
        watched = await self.store.query("SELECT rule FROM rule_watch")
        await self.store.forget_watch(sorted({row["rule"] for row in watched} - configured))


async def keep_running(
    name: str, run: Callable[[], Awaitable[None]], recover: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Run a background task (of the engine or the daemon) for ever: a crash is logged and the task starts again
    (after ``recover``), instead of taking every rule down with it. It waits a second after a crash, twice as long
    after each one that follows at once (a full disk that stays full), up to a minute."""
    pause = RESTART_PAUSE
    while True:
        began = trio.current_time()
        try:
            await run()
        except Exception as exc:
            if trio.current_time() - began > RESTART_PAUSE_AT_MOST:  # it had been running well: a fresh failure
                pause = RESTART_PAUSE
            log.error("%s crashed; restarting it in %gs", name, pause, exc_info=exc)
            await trio.sleep(pause)
            pause = min(pause * 2, RESTART_PAUSE_AT_MOST)
            if recover is not None:
                with contextlib.suppress(Exception):
                    await recover()


async def _set_then_cancel(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _changed_then_cancel(event: trio.Event, scope: trio.CancelScope, engine: Engine) -> None:
    await event.wait()
    engine.dispatcher.reconsider(engine.clock.now())
    scope.cancel()


def _step(
    rule: RuleConfig, evaluator: Evaluator, tracker: Tracker, now: float
) -> tuple[list[Transition], float | None]:
    """Evaluate the rule at ``now``: its transitions (with quiet ones to save) and when it next needs the clock."""
    if rule.active_during or rule.muted_during:
        evaluator.report_all()  # a window edge changes the answer of every series
    conditions, wake = evaluator.evaluate(now, tracker.firing())
    if rule.context is not None and (rule.active_during or rule.muted_during):
        windows = rule.context.windows
        if rule.active_during and not any(windows[name].active(now) for name in rule.active_during):
            conditions = [Condition(c.labels, False, c.value, c.details) for c in conditions]
        tracker.muted = any(windows[name].active(now) for name in rule.muted_during)
        for name in (*rule.active_during, *rule.muted_during):
            wake = _earliest(wake, windows[name].next_edge(now))
    transitions, deadline = tracker.update(conditions, now)
    return _with_changes(tracker, transitions, now), _earliest(wake, deadline)


def _with_changes(tracker: Tracker, transitions: list[Transition], now: float) -> list[Transition]:
    """The transitions, plus a quiet one for each alert that changed without one (a new value), to be saved."""
    moved = {t.alert.series for t in transitions}
    quiet = [
        Transition(alert, alert.state, alert.state, now, alert.value, False)
        for series in tracker.dirty - moved
        if (alert := tracker.alerts.get(series)) is not None
    ]
    tracker.dirty.clear()
    return transitions + quiet


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
