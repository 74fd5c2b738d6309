"""The daemon: the store, the rule engine, the outbox and the web server in one trio nursery.

Signals: SIGHUP reloads (a bad configuration keeps the old one running); SIGTERM and SIGINT shut down in order:
rules stop, live streams close, the web server stops, in-flight deliveries get a few seconds to finish (what
does not finish stays pending in the outbox for the next start), the store closes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import json
import logging
import math
import os
import secrets
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from alphawatch.channels import Channel
from alphawatch.channels._transport import http_client
from alphawatch.daemon.alerts import INACTIVE, Transition
from alphawatch.daemon.calendar import local_datetime
from alphawatch.daemon.clock import Clock
from alphawatch.daemon.config import Config, RuleConfig, load_config, token_file
from alphawatch.daemon.engine import Actor, Engine, keep_running
from alphawatch.daemon.errors import ConfigError, ListenError, StoreError
from alphawatch.daemon.ingest import Batch
from alphawatch.daemon.logs import JsonFormatter, setup_logging
from alphawatch.daemon.modeldata_store import purge_before as purge_model_data
from alphawatch.daemon.outbox import DEAD_LETTER, Outbox
from alphawatch.daemon.sdnotify import Notifier
from alphawatch.daemon.store import OUTBOX_STATES, Queued, Store, Withdrawal, open_store
from alphawatch.daemon.supervisor import RULE_STATUSES
from alphawatch.daemon.suppression import Suppressions
from alphawatch.daemon.suppression import purge_before as purge_suppressions
from alphawatch.web.app import create_app
from alphawatch.web.broadcast import Broadcaster
from alphawatch.web.guard import allowed_hosts, hardened

log = logging.getLogger("alphawatch.daemon")
SHUTDOWN_GRACE = 5.0
RETENTION_EVERY = 3600.0
LOG_EACH_UP_TO = 10  # alert transitions of one rule step logged one by one; more make one line with a count
DEAD_LETTER_DEGRADES = 86400.0  # a dead letter keeps /health "degraded" for a day
STORE_REFUSAL_DOWN = 60.0
"""Seconds ``/health`` says ``down`` after the state file last refused work (a write that works meanwhile, in a page
it had, says nothing of the next); then ``degraded`` until a write succeeds."""
TRIM_AFTER = 10_000  # samples ingested plus notifications delivered since the last trim
CHECKPOINT_EVERY = 5.0  # in a lull; at the latest every CHECKPOINT_AT_MOST
CHECKPOINT_AT_MOST = 15.0
LULL_CHECK_EVERY = 1.0  # how often to look whether a burst is over (to hand its memory back)
# Channels' own ``concurrency`` bounds what is in flight to each receiver; the pool must not be a tighter bound
# than those (httpx's default is 100 connections shared by every channel). Idle connections kept: few, as
# httpcore looks at every connection for each idle one it keeps.
HTTP_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=16)


def read_or_create_token(path: Path) -> str:
    """The token in ``path``; a new random one (logged as created, never shown) if the file is absent or empty."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if len(token) >= 16:
        return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an existing file keeps its mode on open: make it private in any case
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    log.info("API token generated", extra={"token_file": str(path)})
    return token


class Daemon:
    def __init__(
        self,
        path: Path,
        config: Config,
        store: Store,
        clock: Clock,
        notifier: Notifier,
        formatter: JsonFormatter | None,
    ) -> None:
        self.path = path
        self.config = config
        self.store = store
        self.clock = clock
        self.notifier = notifier
        self.formatter = formatter
        self.started_at = clock.now()
        self._started = trio.current_time()  # (uptime counts on the monotonic clock: a wall clock set back or on
        # by NTP does not change it)
        self.bound = config.daemon  # what the process was started with: listen and state need a restart
        self.broadcaster = Broadcaster()
        self.generated_token = self._token(config)
        self.channels: dict[str, Channel] = {c.name: c.build() for c in config.channels}
        self.engine = Engine(config, store, clock, self._committed, self._rule_status)
        self.outbox = Outbox(
            store, lambda: self.channels, lambda: self.config.daemon.delivery, clock, self._delivery, self._unwanted
        )
        self.reload_status: dict[str, Any] = {"ok": True, "at": self.started_at, "trigger": "start", "error": None,
                                              "digest": config.digest, "warnings": []}  # fmt: skip
        self.bound_url = ""
        self._loaded = config  # as load_config returned it (before the bound address is filled in)
        self.suppressions: Suppressions | None = None
        self.samples_ingested = 0
        self.batches_ingested = 0
        self._reload_lock = trio.Lock()
        self.reloads: Counter[str] = Counter()  # "ok" / "failed", since start

    def _token(self, config: Config) -> str | None:
        if config.daemon.ingest_token and config.daemon.admin_token:
            return None
        return read_or_create_token(token_file(self.bound))

    def with_bound_url(self, config: Config) -> Config:
        """``config`` with links in notifications to the address the daemon listens on, unless it names one."""
        if config.daemon.external_url or not self.bound_url:
            return config
        return replace(config, daemon=replace(config.daemon, external_url=self.bound_url))

    def use_config(self, config: Config) -> None:
        """Make ``config`` the running one (the engine applies rule changes itself; the channels are built by
        whoever brings the configuration: at start, and by a reload before the rules apply it)."""
        config = self.with_bound_url(config)
        self.config = config
        self.engine.config = config
        self.engine.dispatcher.config = config
        self.generated_token = self._token(config)
        if self.formatter is not None:
            self.formatter.set_secrets(config.secrets)
        logging.getLogger("alphawatch").setLevel(config.daemon.log_level.upper())

    @property
    def ingest_token(self) -> str | None:
        return self.config.daemon.ingest_token or self.generated_token

    @property
    def admin_token(self) -> str | None:
        return self.config.daemon.admin_token or self.generated_token

    # events -----------------------------------------------------------------------------------------------
    def _committed(self, rule: RuleConfig, transitions: list[Transition], queued: list[Queued]) -> None:
        if queued:
            self.outbox.submit(queued)
        told: dict[str, list[Transition]] = {}
        values = sum(t.from_state == t.to_state for t in transitions)
        if values:  # new values of live alerts: one event a step
            self.broadcaster.publish({"type": "value", "rule": rule.name, "alerts": values})
        for t in transitions:
            if t.from_state != t.to_state:
                self.broadcaster.publish(
                    {"type": "alert", "rule": rule.name, "fingerprint": t.alert.fingerprint, "state": t.to_state,
                     "value": _finite(t.value), "at": t.at}
                )  # fmt: skip
                if t.to_state != INACTIVE:
                    told.setdefault(t.to_state, []).append(t)
        for state, changes in told.items():
            if len(changes) <= LOG_EACH_UP_TO:
                for t in changes:
                    extra = {"rule": rule.name, "fingerprint": t.alert.fingerprint, "value": t.value}
                    log.info("alert %s", state, extra=extra)
            else:  # a burst: one line, not a flood of them in the journal
                log.info(
                    "%d alerts %s", len(changes), state,
                    extra={"rule": rule.name, "count": len(changes),
                           "fingerprints": [t.alert.fingerprint for t in changes[:LOG_EACH_UP_TO]]},
                )  # fmt: skip

    async def _rule_status(self, actor: Actor) -> None:
        self.broadcaster.publish({"type": "rule", "rule": actor.state.name, "status": actor.state.status})

    def _unwanted(self, queued: Queued, now: float) -> Withdrawal | None:
        """An escalation page (its fingerprint an alert's, not a group key or a dead-letter report's) is withdrawn
        once its alert resolved or was acknowledged."""
        if "|" in queued.fingerprint or queued.fingerprint.startswith(DEAD_LETTER):
            return None
        return self.engine.dispatcher.page_unwanted(queued, now)

    def _delivery(self, event: str, queued: Queued, error: str | None) -> None:
        self.broadcaster.publish({"type": "delivery", "event": event, "channel": queued.channel, "id": queued.id})

    # operations -------------------------------------------------------------------------------------------
    async def ingest(self, batch: Batch) -> None:
        """Commit a validated batch, then hand it to the rules. Returns only after the commit."""
        await self.store.insert_samples(batch.samples)
        self.samples_ingested += len(batch.samples)
        self.batches_ingested += 1
        self.engine.dispatch(batch.samples)

    async def reload(self, trigger: str) -> dict[str, Any]:
        """Load the configuration again and apply the difference; on any error keep the running one. A reload the
        state file refuses (a full disk) is a failed reload, not the daemon's end."""
        async with self._reload_lock:
            self.notifier.reloading()
            loaded, channels = self._loaded, self.channels
            try:
                return await self._reload(trigger)
            except (sqlite3.Error, StoreError) as exc:  # the routes could not be saved: the engine changed nothing
                self._loaded, self.channels = loaded, channels
                message = (f"the state file refused the reload ({type(exc).__name__}: {exc}); nothing changed: reload "
                           "again once it takes writes")  # fmt: skip
                return {**await self._reload_failed(trigger, message, record=False), "http_status": 503}
            finally:
                self.notifier.ready(self._status_line())

    async def _reload(self, trigger: str) -> dict[str, Any]:
        began = time.perf_counter()
        try:
            # abandoned at shutdown: loading has no side effect, and a file that blocks (a FIFO) must not
            new = await trio.to_thread.run_sync(load_config, self.path, abandon_on_cancel=True)
        except ConfigError as exc:
            return await self._reload_failed(trigger, str(exc))
        previous, self._loaded = self._loaded, new
        digest = new.digest  # of the files as loaded: the address bound at start is not part of them
        warnings = self._fixed_settings_changed(new) + [str(w) for w in new.warnings]
        new = self.with_bound_url(new)
        # channels first: rules applying the new configuration may already queue to a new channel. One whose
        # settings did not change is kept, with what it remembers (an SMS channel: the recipients served already)
        kept = set(previous.channels)
        self.channels = {c.name: self.channels[c.name] if c in kept else c.build() for c in new.channels}
        added, changed, removed = await self.engine.apply(new)
        if self.engine.cleanup_error is not None:  # tried again at the next reload
            warnings.append(f"the alerts of removed rules are not resolved yet: the state file refused the write "
                            f"({self.engine.cleanup_error}); reload again once it takes writes")  # fmt: skip
        self.use_config(new)
        if self.suppressions is not None:
            self.suppressions.set_inhibit_rules(new.inhibit_rules)
        elapsed_ms = round((time.perf_counter() - began) * 1000, 2)
        try:
            await self.store.record_reload(True, trigger, digest, (added, changed, removed), None)
        except (sqlite3.Error, StoreError) as exc:  # applied all the same: only its line in the audit is missing
            warnings.append(f"the reload is not in the state file's reloads table ({type(exc).__name__}: {exc})")
        self.reload_status = {"ok": True, "at": self.clock.now(), "trigger": trigger, "error": None,
                              "digest": digest, "warnings": warnings}  # fmt: skip
        log.info(
            "configuration reloaded",
            extra={"trigger": trigger, "added": added, "changed": changed, "removed": removed, "ms": elapsed_ms},
        )
        for warning in warnings:
            log.warning(warning)
        self.reloads["ok"] += 1
        self.broadcaster.publish({"type": "reload", "ok": True})
        self.outbox.wake()
        if new is not previous:  # a reload of unchanged files builds nothing, so there is nothing to hand back
            release_memory()
        return {"ok": True, "added": added, "changed": changed, "removed": removed, "warnings": warnings,
                "digest": digest, "ms": elapsed_ms}  # fmt: skip

    async def _reload_failed(self, trigger: str, message: str, record: bool = True) -> dict[str, Any]:
        self.reload_status = {"ok": False, "at": self.clock.now(), "trigger": trigger, "error": message,
                              "digest": self._loaded.digest, "warnings": []}  # fmt: skip
        if record:
            with contextlib.suppress(sqlite3.Error, StoreError):  # (a full disk: the log and /health say it)
                await self.store.record_reload(False, trigger, None, ([], [], []), message)
        log.error("reload failed; the previous configuration keeps running", extra={"error": message,
                                                                                   "trigger": trigger})  # fmt: skip
        self.reloads["failed"] += 1
        self.broadcaster.publish({"type": "reload", "ok": False})
        return {"ok": False, "error": message}

    def _fixed_settings_changed(self, new: Config) -> list[str]:
        old, fresh = self.bound, new.daemon
        out = []
        for name in ("state", "host", "port"):
            if getattr(old, name) != getattr(fresh, name):
                out.append(f"daemon.{'listen' if name != 'state' else 'state'} changed: restart the daemon to apply it")
        return sorted(set(out))

    def _status_line(self) -> str:
        failed = sum(1 for a in self.engine.actors.values() if a.state.status == "failed")
        firing = sum(a.firing for a in self.engine.actors.values())
        return f"{len(self.engine.actors)} rules, {firing} alerts firing, {failed} rules failed"

    # queries for the API ----------------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        components: dict[str, Any] = {}
        path = str(self.config.daemon.state)
        try:
            await self.store.query("SELECT 1")
            components["store"] = {"status": "ok", "path": path}
        except Exception as exc:
            components["store"] = {"status": "down", "path": path, "error": type(exc).__name__}
        refused = self.store.refused  # the file refused work (a full disk): down a while, then until a write works
        if refused is not None and components["store"]["status"] == "ok":
            lately = time.time() - refused[0] < STORE_REFUSAL_DOWN
            if lately or self.store.wrote_at < refused[0]:
                components["store"] = {"status": "down" if lately else "degraded", "path": path,
                                       "error": refused[1], "refused_at": refused[0]}  # fmt: skip
        failed = [a.state.name for a in self.engine.actors.values() if a.state.status == "failed"]
        components["rules"] = {"status": "degraded" if failed else "ok", "total": len(self.engine.actors),
                               "failed": failed}  # fmt: skip
        try:
            counts = await self.store.query(  # by the state index: the delivered rows of 400 days are not read
                "SELECT (SELECT count(*) FROM outbox WHERE state = 'pending') AS pending,"
                " (SELECT count(*) FROM outbox WHERE state = 'dead') AS dead,"
                " (SELECT count(*) FROM outbox WHERE state = 'dead' AND finished_at > ?) AS recent",
                [self.clock.now() - DEAD_LETTER_DEGRADES],
            )
            pending, dead, recent = (int(counts[0][k] or 0) for k in ("pending", "dead", "recent"))
            components["outbox"] = {"status": "degraded" if recent else "ok", "pending": pending, "dead": dead,
                                    "dead_last_24h": recent}  # fmt: skip
        except Exception as exc:
            components["outbox"] = {"status": "down", "error": type(exc).__name__}
        components["reload"] = {"status": "ok" if self.reload_status["ok"] else "degraded", **self.reload_status}
        statuses = [c["status"] for c in components.values()]
        overall = "down" if "down" in statuses else ("degraded" if "degraded" in statuses else "ok")
        return {"status": overall, "components": components, "uptime_s": round(trio.current_time() - self._started, 3)}

    async def alerts(self, states: tuple[str, ...], rule: str | None, limit: int) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(states))
        sql = f"SELECT * FROM alerts WHERE state IN ({marks})" + (" AND rule = ?" if rule else "")
        params: list[Any] = [*states, *([rule] if rule else [])]
        found = await self.store.query(sql + " ORDER BY updated_at DESC LIMIT ?", [*params, limit])
        return await self._with_suppression([_alert_row(r) for r in found])

    async def _with_suppression(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``rows`` with ``suppressed`` (what holds their notifications back now) and ``ack``."""
        live = [(r["fingerprint"], r["labels"], r["active_at"]) for r in rows if r["state"] != "resolved"]
        held: dict[str, Any] = {}
        if live and self.suppressions is not None:
            others = []
            if self.suppressions.inhibit_rules:  # (every firing alert may inhibit one listed)
                firing = await self.store.query("SELECT fingerprint, labels FROM alerts WHERE state = 'firing'")
                others = [(r["fingerprint"], json.loads(r["labels"])) for r in firing]
            held = self.suppressions.current(live, self.clock.now(), others)
        for row in rows:
            reason, ack = held.get(row["fingerprint"], (None, None))
            row["suppressed"] = None if reason is None else reason.as_json()
            row["ack"] = None if ack is None else ack.as_json()
        return rows

    async def alert(self, fingerprint: str) -> dict[str, Any] | None:
        rows = await self.store.query("SELECT * FROM alerts WHERE fingerprint = ?", [fingerprint])
        if not rows:
            return None
        history = await self.store.query(
            "SELECT at, from_state, to_state, value, note FROM alert_history WHERE fingerprint = ? ORDER BY id",
            [fingerprint],
        )
        (row,) = await self._with_suppression([_alert_row(rows[0])])
        return {**row, "history": history}

    async def rules(self) -> list[dict[str, Any]]:
        out = []
        for name, actor in sorted(self.engine.actors.items()):
            rule = actor.config
            out.append({
                "name": name, "kind": rule.kind, "origin": rule.origin, "severity": rule.severity,
                "labels": dict(rule.labels), "status": actor.state.status, "restarts": actor.state.restarts,
                "last_error": actor.state.last_error, "firing": actor.firing, "pending": actor.pending,
            })  # fmt: skip
        return out

    async def notifications(self, states: tuple[str, ...], limit: int) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(states))
        rows = await self.store.query(
            "SELECT id, channel, fingerprint, idempotency_key, created_at, next_attempt_at, attempts, state,"
            " last_error, finished_at, payload FROM outbox JOIN outbox_payloads USING (id)"
            f" WHERE state IN ({marks}) ORDER BY id DESC LIMIT ?",
            [*states, limit],
        )
        for row in rows:
            row["payload"] = json.loads(row["payload"])
            if not math.isfinite(row["next_attempt_at"]):  # written so by an earlier version (Retry-After: inf)
                row["next_attempt_at"] = None
        return rows

    async def status(self) -> dict[str, Any]:
        return {
            "version": _version(),
            "config": str(self.path),
            "digest": self._loaded.digest,
            "reload": self.reload_status,
            "uptime_s": round(trio.current_time() - self._started, 3),
            "rules": len(self.engine.actors),
            "firing": sum(a.firing for a in self.engine.actors.values()),
            "pending": sum(a.pending for a in self.engine.actors.values()),
            "outbox": self.outbox.statistics(),
            "samples_ingested": self.samples_ingested,
        }

    async def metrics(self) -> list[tuple[str, str, str, list[tuple[dict[str, str], float]]]]:
        actors = self.engine.actors.values()
        # every label value always, 0 included: a series that appears only once it is non-zero reads as "no data"
        by_status = dict.fromkeys(RULE_STATUSES, 0)
        for actor in actors:
            by_status[actor.state.status] += 1
        outbox = dict.fromkeys(OUTBOX_STATES, 0)
        for row in await self.store.query("SELECT state, count(*) AS n FROM outbox GROUP BY state"):
            outbox[row["state"]] = row["n"]
        firing = sum(a.firing for a in actors)
        pending = sum(a.pending for a in actors)
        ok = 1.0 if self.reload_status["ok"] else 0.0
        channels = sorted({c.name for c in self.config.channels} | set(self.outbox.delivered_by)
                          | set(self.outbox.failed_by) | set(self.outbox.dead_by)
                          | set(self.outbox.superseded_by))  # fmt: skip

        def per_channel(counts: Mapping[str, int]) -> list[tuple[dict[str, str], float]]:
            return [({"channel": name}, counts.get(name, 0)) for name in channels]

        restarts = self.engine.restarts_before
        return [
            ("alphawatch_up", "gauge", "1 while the daemon runs", [({}, 1.0)]),
            ("alphawatch_build_info", "gauge", "the running version", [({"version": _version()}, 1.0)]),
            ("process_start_time_seconds", "gauge", "when the daemon started, UTC epoch seconds",
             [({}, self.started_at)]),
            ("alphawatch_samples_ingested_total", "counter", "samples committed", [({}, self.samples_ingested)]),
            ("alphawatch_ingest_batches_total", "counter", "batches committed", [({}, self.batches_ingested)]),
            ("alphawatch_rules", "gauge", "rules by status", [({"status": s}, n) for s, n in by_status.items()]),
            ("alphawatch_rule_restarts_total", "counter", "rule restarts since start",
             [({"rule": a.state.name}, restarts[a.state.name] + a.state.restarts) for a in actors]),
            ("alphawatch_alerts", "gauge", "alerts held", [({"state": "firing"}, firing),
                                                           ({"state": "pending"}, pending)]),
            ("alphawatch_notifications", "gauge", "outbox rows", [({"state": s}, n) for s, n in outbox.items()]),
            ("alphawatch_delivery_failures_total", "counter", "failed delivery attempts since start",
             per_channel(self.outbox.failed_by)),
            ("alphawatch_notifications_delivered_total", "counter", "notifications delivered since start",
             per_channel(self.outbox.delivered_by)),
            ("alphawatch_notifications_dead_total", "counter", "notifications dead-lettered since start",
             per_channel(self.outbox.dead_by)),
            ("alphawatch_notifications_superseded_total", "counter", "notifications folded into newer ones",
             per_channel(self.outbox.superseded_by)),
            ("alphawatch_store_refusals_total", "counter", "work the state file refused since start (full disk, I/O)",
             [({}, self.store.failures)]),
            ("alphawatch_reloads_total", "counter", "reloads since start, by result",
             [({"result": r}, self.reloads[r]) for r in ("ok", "failed")]),
            ("alphawatch_config_last_reload_successful", "gauge", "1 if the last reload succeeded", [({}, ok)]),
            ("alphawatch_config_last_reload_timestamp_seconds", "gauge", "last reload",
             [({}, self.reload_status["at"])]),
            ("alphawatch_sse_subscribers", "gauge", "live page streams", [({}, len(self.broadcaster))]),
        ]  # fmt: skip

    async def run_checkpoints(self) -> None:
        trimmed_at = last = self._work_done()
        checkpointed = trio.current_time()
        while True:
            await trio.sleep(LULL_CHECK_EVERY)
            done = self._work_done()
            lull = done - last < TRIM_AFTER // 1000 and not self.outbox.statistics()["in_flight"]
            last = done
            since = trio.current_time() - checkpointed
            # in a lull: a checkpoint's copy and sync compete for the two cores with a burst's writes and flushes
            if since >= CHECKPOINT_AT_MOST or (since >= CHECKPOINT_EVERY and lull):
                await self.store.checkpoint()
                checkpointed = trio.current_time()
            if done - trimmed_at >= TRIM_AFTER and lull:
                # a burst is over: what its temporaries took (requests, payloads, transitions) goes back to the
                # system instead of staying in the process's high-water mark (off the loop: it walks the heap)
                trimmed_at = done
                await trio.to_thread.run_sync(trim_memory)

    def _work_done(self) -> int:
        return self.samples_ingested + self.outbox.delivered

    # retention --------------------------------------------------------------------------------------------
    async def run_retention(self) -> None:
        while True:
            await self.retention_pass()
            await self.clock.sleep_until(self.clock.now() + RETENTION_EVERY)

    async def retention_pass(self) -> None:
        """Delete what is older than ``daemon.retention``, a small batch at a time; the rules watching series it
        deleted start again from the store, so they let go of them too."""
        retention = self.config.daemon.retention
        if not retention:
            return
        cutoff = self.clock.now() - retention
        kept = [since for rule in self.config.rules if (since := rule.rule.keeps_samples_since()) is not None]
        samples = min([cutoff, *kept])  # a fixed baseline's samples stay, older than the retention or not
        while await self.store.purge_before(cutoff, samples_before=samples):  # noqa: ASYNC110 - small batches
            await trio.sleep(0.05)
        if forgotten := self.store.take_forgotten():
            self.engine.forget(forgotten)
        while await purge_suppressions(self.store, cutoff):  # noqa: ASYNC110
            await trio.sleep(0.05)
        day = local_datetime(cutoff).date().isoformat()
        while await self.store.run(partial(purge_model_data, cutoff=day)):  # noqa: ASYNC110
            await trio.sleep(0.05)


async def run_daemon(
    path: Path,
    *,
    clock: Clock | None = None,
    environ: dict[str, str] | None = None,
    on_ready: Callable[[Daemon, list[str]], Awaitable[None]] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT. Returns the process exit code."""
    formatter = setup_logging("info")
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("configuration error: %s", problem, extra={"file": problem.file, "line": problem.line,
                                                                  "key": problem.path})  # fmt: skip
        return 1
    formatter.set_secrets(config.secrets)
    logging.getLogger("alphawatch").setLevel(config.daemon.log_level.upper())
    for warning in config.warnings:
        log.warning("configuration warning: %s", warning, extra={"file": warning.file, "line": warning.line,
                                                                  "key": warning.path})  # fmt: skip
    code = 0
    try:
        await _run(path, config, clock or Clock(), Notifier(environ), formatter, on_ready)
    except* (StoreError, ListenError) as group:  # raised through nurseries, so in an exception group
        for failure in _leaves(group):
            log.error("cannot start: %s", failure)
        code = 1
    if not code:
        log.info("stopped")
    return code


def _leaves(group: BaseExceptionGroup[Exception]) -> list[BaseException]:
    return [leaf for exc in group.exceptions
            for leaf in (_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])]  # fmt: skip


async def _run(
    path: Path,
    config: Config,
    clock: Clock,
    notifier: Notifier,
    formatter: JsonFormatter,
    on_ready: Callable[[Daemon, list[str]], Awaitable[None]] | None,
) -> None:
    # the receiver stays open until the store is closed and a task drains it during shutdown: a second SIGTERM
    # is absorbed (trio re-raises signals still pending when the receiver closes)
    with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as outer:
            async with open_store(config.daemon.state) as store, http_client(HTTP_LIMITS) as http:
                daemon = Daemon(path, config, store, clock, notifier, formatter)
                daemon.suppressions = await Suppressions.load(store, config.inhibit_rules, now=clock.now())
                daemon.engine.suppressions = daemon.suppressions
                await store.record_reload(True, "start", config.digest, ([r.name for r in config.rules], [], []), None)
                async with trio.open_nursery() as nursery:
                    engine_scope = trio.CancelScope()
                    outbox_scope = trio.CancelScope()
                    web_stop = trio.Event()

                    async def run_engine(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                        with engine_scope:
                            await daemon.engine.run(task_status=task_status)

                    async def run_outbox(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                        with outbox_scope:
                            task_status.started()
                            while True:  # a crash (the disk, say) must not stop delivery for good
                                try:
                                    await daemon.outbox.run(http)
                                except Exception as exc:
                                    log.error("outbox crashed; restarting it", exc_info=exc)
                                    await trio.sleep(1.0)

                    binds: list[str] = await nursery.start(
                        _serve, daemon, config.daemon.host, config.daemon.port, web_stop.wait
                    )
                    daemon.bound_url = binds[0] if binds else ""
                    daemon.use_config(daemon.config)
                    await nursery.start(run_engine)
                    await nursery.start(run_outbox)
                    # a store error (a full disk, say) in either is logged and they start again (keep_running's backoff)
                    nursery.start_soon(keep_running, "retention", daemon.run_retention)
                    nursery.start_soon(keep_running, "checkpoints", daemon.run_checkpoints)
                    if notifier.watchdog_interval:
                        nursery.start_soon(_watchdog, notifier, notifier.watchdog_interval)
                    log.info("alphawatch ready", extra={"listen": binds, "rules": len(config.rules),
                                                        "state": str(config.daemon.state)})  # fmt: skip
                    release_memory(freeze=True)
                    notifier.ready(daemon._status_line())
                    if on_ready is not None:
                        await on_ready(daemon, binds)
                    async for signum in signals:
                        if signum == signal.SIGHUP:  # in a task: a slow reload must not hold a SIGTERM up
                            nursery.start_soon(daemon.reload, "SIGHUP")
                            continue
                        break
                    log.info("shutting down", extra={"signal": signal.Signals(signum).name})
                    outer.start_soon(_absorb, signals)
                    notifier.stopping()
                    engine_scope.cancel()
                    daemon.broadcaster.close()
                    web_stop.set()
                    with trio.move_on_after(SHUTDOWN_GRACE):
                        await daemon.outbox.wait_idle()
                    outbox_scope.cancel()
                    nursery.cancel_scope.cancel()
            outer.cancel_scope.cancel()


async def _serve(
    daemon: Daemon,
    host: str,
    port: int,
    shutdown: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 2.0
    # Hypercorn (0.17, 0.18) closes a connection the client closed only when this timer ends: its socket waits
    # that long in CLOSE-WAIT. Its default, 5 s, bounds those to 5 s of connections
    config.keep_alive_timeout = 5.0
    try:
        app = hardened(create_app(daemon), lambda: allowed_hosts(host, daemon.config.daemon.external_url))
        await serve(app, config, shutdown_trigger=shutdown, task_status=task_status)  # type: ignore[arg-type]
    except* OSError as group:
        exc = _leaves(group)[0]
        if not isinstance(exc, OSError) or exc.errno not in _BIND_ERRORS:
            raise
        raise ListenError(f"cannot listen on {config.bind[0]}: {exc.strerror}") from None


_BIND_ERRORS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)


M_ARENA_MAX = -8  # glibc's mallopt(3) parameter


def one_malloc_arena() -> None:
    """Have every thread allocate from glibc's main heap (``mallopt(M_ARENA_MAX, 1)``), before any thread starts.
    Each thread would otherwise get a heap of its own: the store's worker threads, which change over time, left
    freed memory in theirs that no other thread reuses (8 % more resident memory per firing alert,
    docs/performance.md). Threads hold the GIL for most of what they allocate, so one heap costs no waiting.
    ``MALLOC_ARENA_MAX`` or ``GLIBC_TUNABLES=glibc.malloc.arena_max=…`` in the environment wins."""
    if os.environ.get("MALLOC_ARENA_MAX") or "malloc.arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return
    _glibc("mallopt", M_ARENA_MAX, 1)


def trim_memory() -> None:
    """Return the C heap's free memory to the system (glibc ``malloc_trim``)."""
    _glibc("malloc_trim", 0)


def _glibc(function: str, *args: int) -> None:
    """Call a glibc function by name; elsewhere than glibc nothing is done."""
    with contextlib.suppress(OSError, AttributeError):
        getattr(ctypes.CDLL("libc.so.6"), function)(*args)


def release_memory(freeze: bool = False) -> None:
    """Hand memory freed by start-up or a reload (YAML trees, schema checks) back to the system. At start-up
    (``freeze``) also take what remains (modules, rules, calendars) out of the cyclic collector's reach, so its
    full passes stay short. Never at a reload: open connections, cycles the collector alone can free, would be
    frozen with the rest and never freed once closed."""
    gc.collect()
    if freeze:
        gc.freeze()
    trim_memory()


async def _absorb(signals: AsyncIterator[int]) -> None:
    async for signum in signals:
        log.info("already shutting down", extra={"signal": signal.Signals(signum).name})


async def _watchdog(notifier: Notifier, interval: float) -> None:
    while True:
        notifier.watchdog()
        await trio.sleep(interval)


def _alert_row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["labels"] = json.loads(row["labels"])
    out["series"] = json.loads(row["series"])
    out["details"] = json.loads(row["details"])
    out["value"] = _finite(row["value"])
    return out


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("alphawatch")
    except PackageNotFoundError:
        return "unknown"
