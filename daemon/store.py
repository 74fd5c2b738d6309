"""State in one SQLite file: samples, alerts and their history, the notification outbox, rule state, reloads.

One connection; every call runs in a worker thread, one at a time (``Store.run``), so a slow query or a lock
wait never freezes the event loop. ``inline=True`` runs calls on the loop's thread instead: tests under trio's
``autojump_clock`` use it, because the mock clock races ahead while a worker thread runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import orjson
import outcome
import trio

from alphawatch.daemon.alerts import INACTIVE, Alert, Transition

if TYPE_CHECKING:
    from alphawatch.daemon.dispatch import Writes
    from alphawatch.daemon.suppression import Suppressed
from alphawatch.daemon.errors import StoreError
from alphawatch.rules import Labels, Sample, Selector

T = TypeVar("T")
log = logging.getLogger("alphawatch.store")

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        metric TEXT NOT NULL,
        labels TEXT NOT NULL,
        UNIQUE (metric, labels)
    ) STRICT;
    CREATE TABLE samples (
        series_id INTEGER NOT NULL REFERENCES series (id),
        ts REAL NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (series_id, ts)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE alerts (
        fingerprint TEXT PRIMARY KEY,
        rule TEXT NOT NULL,
        series TEXT NOT NULL,
        labels TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
        active_at REAL NOT NULL,
        value REAL,
        fired_at REAL,
        resolved_at REAL,
        false_since REAL,
        last_notified_at REAL,
        notify_seq INTEGER NOT NULL DEFAULT 0,
        details TEXT NOT NULL DEFAULT '{}',
        updated_at REAL NOT NULL
    ) STRICT;
    CREATE INDEX alerts_rule ON alerts (rule, state);
    CREATE TABLE alert_history (
        id INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        rule TEXT NOT NULL,
        at REAL NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        value REAL,
        note TEXT
    ) STRICT;
    CREATE INDEX alert_history_fp ON alert_history (fingerprint, at);
    CREATE INDEX alert_history_at ON alert_history (at);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL,
        next_attempt_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
        last_error TEXT,
        finished_at REAL
    ) STRICT;
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
    CREATE TABLE rule_state (
        rule TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        restarts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        updated_at REAL NOT NULL
    ) STRICT;
    CREATE TABLE reloads (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        ok INTEGER NOT NULL,
        trigger TEXT NOT NULL,
        config_digest TEXT,
        added TEXT NOT NULL DEFAULT '[]',
        changed TEXT NOT NULL DEFAULT '[]',
        removed TEXT NOT NULL DEFAULT '[]',
        error TEXT
    ) STRICT;
    """,
    """
    CREATE TABLE md_predictions (
        model TEXT NOT NULL,
        date TEXT NOT NULL,
        asset TEXT NOT NULL,
        score REAL NOT NULL,
        PRIMARY KEY (model, date, asset)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE md_returns (
        date TEXT NOT NULL,
        horizon INTEGER NOT NULL,
        asset TEXT NOT NULL,
        ret REAL NOT NULL,
        PRIMARY KEY (date, horizon, asset)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE md_cross_sections (
        kind TEXT NOT NULL,
        model TEXT NOT NULL,
        date TEXT NOT NULL,
        n INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (kind, model, date)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE md_portfolio (
        model TEXT NOT NULL,
        date TEXT NOT NULL,
        ret REAL NOT NULL,
        PRIMARY KEY (model, date)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE md_positions (
        model TEXT NOT NULL,
        date TEXT NOT NULL,
        asset TEXT NOT NULL,
        weight REAL NOT NULL,
        PRIMARY KEY (model, date, asset)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE md_features (
        model TEXT NOT NULL,
        date TEXT NOT NULL,
        feature TEXT NOT NULL,
        asset TEXT NOT NULL,
        num REAL,
        cat TEXT,
        PRIMARY KEY (model, date, feature, asset)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE md_ic (
        model TEXT NOT NULL,
        horizon INTEGER NOT NULL,
        date TEXT NOT NULL,
        ic REAL,
        assets INTEGER NOT NULL,
        computed_at REAL NOT NULL,
        PRIMARY KEY (model, horizon, date)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE md_references (
        key TEXT PRIMARY KEY,
        summary TEXT NOT NULL,
        created_at REAL NOT NULL
    ) STRICT;
    CREATE TABLE md_drift_scores (
        source TEXT NOT NULL,
        model TEXT NOT NULL,
        date TEXT NOT NULL,
        feature TEXT NOT NULL,
        method TEXT NOT NULL,
        score REAL,
        p_value REAL,
        PRIMARY KEY (source, model, date, feature, method)
    ) STRICT, WITHOUT ROWID;
    """,
    """
    CREATE TABLE silences (
        id TEXT PRIMARY KEY,
        matchers TEXT NOT NULL,
        starts_at REAL NOT NULL,
        ends_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        comment TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    ) STRICT;
    CREATE INDEX silences_ends ON silences (ends_at);
    CREATE TABLE acks (
        fingerprint TEXT PRIMARY KEY,
        active_at REAL NOT NULL,
        by TEXT NOT NULL,
        comment TEXT NOT NULL,
        at REAL NOT NULL
    ) STRICT;
    CREATE TABLE suppressions (
        id INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        rule TEXT NOT NULL,
        at REAL NOT NULL,
        channel TEXT,
        kind TEXT NOT NULL CHECK (kind IN ('silence', 'inhibited', 'muted_window', 'acknowledged')),
        ref TEXT NOT NULL,
        detail TEXT NOT NULL
    ) STRICT;
    CREATE INDEX suppressions_fp ON suppressions (fingerprint, at);
    CREATE INDEX suppressions_at ON suppressions (at);
    """,
    # 4: notification groups and escalations (the dispatcher)
    """
    CREATE TABLE groups (
        key TEXT PRIMARY KEY,
        route TEXT NOT NULL,
        labels TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_flush_at REAL,
        next_flush_at REAL,
        flushes INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE TABLE group_members (
        group_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        rule TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
        sent TEXT,
        active_at REAL NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (group_key, fingerprint)
    ) STRICT;
    CREATE TABLE escalations (
        fingerprint TEXT PRIMARY KEY,
        rule TEXT NOT NULL,
        policy TEXT NOT NULL,
        active_at REAL NOT NULL,
        fired_at REAL NOT NULL,
        next_tier INTEGER NOT NULL,
        doc TEXT NOT NULL
    ) STRICT;
    """,
    # 5: samples keyed by time first, so a batch over many series appends instead of touching one page per
    # series (6x less write-ahead log); each series keeps its last sample for rules that start after it
    """
    ALTER TABLE series ADD COLUMN last_ts REAL;
    ALTER TABLE series ADD COLUMN last_value REAL;
    UPDATE series SET (last_ts, last_value) =
        (SELECT ts, value FROM samples WHERE series_id = series.id ORDER BY ts DESC LIMIT 1);
    CREATE TABLE samples_by_time (
        ts REAL NOT NULL,
        series_id INTEGER NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (ts, series_id)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO samples_by_time (ts, series_id, value) SELECT ts, series_id, value FROM samples;
    DROP TABLE samples;
    ALTER TABLE samples_by_time RENAME TO samples;
    """,
    # 6: due notifications read channel by channel (a channel whose queue is full is left out)
    """
    CREATE INDEX outbox_channel_due ON outbox (state, channel, next_attempt_at);
    """,
    # 7: a series' last sample is written to its row every few seconds, not at every batch; the series whose row
    # may be behind are listed here, in the batch's own transaction, so a crash loses none of it
    """
    CREATE TABLE series_behind (series_id INTEGER PRIMARY KEY) STRICT;
    """,
    # 8: a notification's document in a table of its own: SQLite rewrites a whole row, overflow pages and all, to
    # change one column, and a group's document is tens of KB while each attempt changes a few bytes (45x faster)
    """
    CREATE TABLE outbox_payloads (
        id INTEGER PRIMARY KEY REFERENCES outbox (id) ON DELETE CASCADE,
        payload TEXT NOT NULL
    ) STRICT;
    INSERT INTO outbox_payloads (id, payload) SELECT id, payload FROM outbox;
    ALTER TABLE outbox DROP COLUMN payload;
    """,
    # 9: since when each rule has watched what it watches: a restart or a reload must not start an absence rule's
    # clock again while no sample has come at all
    """
    CREATE TABLE rule_watch (rule TEXT PRIMARY KEY, selectors TEXT NOT NULL, since REAL NOT NULL) STRICT;
    """,
    # 10: a group member's document apart from its state, as the outbox's (8): a flush marks every member sent,
    # and rewrote each one's document with it (4x the write-ahead log of the state alone)
    """
    CREATE TABLE group_member_docs (
        group_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (group_key, fingerprint)
    ) STRICT;
    INSERT INTO group_member_docs (group_key, fingerprint, doc) SELECT group_key, fingerprint, doc FROM group_members;
    ALTER TABLE group_members DROP COLUMN doc;
    """,
    # 11: two more ends for a notification: ``superseded`` (folded into a newer one of its group and channel, which
    # went in its place) and ``withdrawn`` (an escalation page whose alert resolved or was acknowledged before it
    # got out). SQLite changes a CHECK constraint only by rebuilding the table (``migrate`` turns foreign keys off
    # around it, so the payloads that reference the rows stay)
    """
    CREATE TABLE outbox_11 (
        id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        next_attempt_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead', 'superseded', 'withdrawn')),
        last_error TEXT,
        finished_at REAL
    ) STRICT;
    INSERT INTO outbox_11 (id, channel, fingerprint, idempotency_key, created_at, next_attempt_at, attempts, state,
                           last_error, finished_at)
        SELECT id, channel, fingerprint, idempotency_key, created_at, next_attempt_at, attempts, state, last_error,
               finished_at FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_11 RENAME TO outbox;
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
    CREATE INDEX outbox_channel_due ON outbox (state, channel, next_attempt_at);
    """,
    # 12: what a group knows its route by wherever the route sits in the tree (``RouteNode.ident``): a route moved
    # while the daemon was stopped keeps its groups at the next start. Rows written before have none: their route
    # is the one at their place, as before
    """
    ALTER TABLE groups ADD COLUMN route_ident TEXT;
    """,
    # 13: a second acknowledgement of an episode keeps the earlier ones with it (JSON: [[by, comment, at], ...])
    """
    ALTER TABLE acks ADD COLUMN earlier TEXT NOT NULL DEFAULT '[]';
    """,
    # 14: a group's route's channels (its untold resolutions go there if the route is gone at the next start) and
    # whether its last flush held news back (looked at again at the start: the silence may have ended meanwhile)
    """
    ALTER TABLE groups ADD COLUMN channels TEXT;
    ALTER TABLE groups ADD COLUMN held INTEGER;
    """,
)


@dataclass(frozen=True)
class Outgoing:
    """A notification to enqueue with the transition that caused it."""

    channel: str
    fingerprint: str
    idempotency_key: str
    payload: str  # the JSON document
    alerts: tuple[tuple[str, str | None], ...] | None = None
    """A group's notification: ``payload`` is the document without ``alerts`` and ``commonAnnotations``, which the
    store adds as it queues it. Each alert is (fingerprint, its document or ``None``: the one in its member's row;
    ``fingerprint`` is then the group key)."""


class Withdrawal(NamedTuple):
    """Why a pending notification is to go no more (an escalation page no longer wanted), and the record of the
    suppression that withdrawing it is, if it is one (an acknowledgement's)."""

    why: str
    suppressed: Suppressed | None = None


@dataclass(frozen=True)
class Queued:
    """A notification in the outbox. ``body`` is its JSON text, parsed only when something reads ``payload``."""

    id: int
    channel: str
    fingerprint: str
    idempotency_key: str
    body: str
    created_at: float
    attempts: int
    last_error: str | None = None

    @cached_property
    def payload(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document


_DUE = (
    "SELECT next_attempt_at, id FROM outbox WHERE state = 'pending' AND next_attempt_at <= ? AND channel = ?"
    " ORDER BY next_attempt_at, id LIMIT ?"
)
# the channels with pending notifications, one index seek each (not a walk through every pending row)
_PENDING_CHANNELS = """
    WITH RECURSIVE channels (name) AS (
        SELECT min(channel) FROM outbox WHERE state = 'pending'
        UNION ALL
        SELECT (SELECT min(channel) FROM outbox WHERE state = 'pending' AND channel > name) FROM channels
        WHERE name IS NOT NULL
    )
    SELECT name FROM channels WHERE name IS NOT NULL
"""
OUTBOX_STATES = ("pending", "delivered", "dead", "superseded", "withdrawn")
_NONE: dict[Labels, int] = {}
_ROWS_PER_STATEMENT = (256, 64, 16, 4, 1)


def insert_rows(
    db: sqlite3.Connection, head: str, rows: Sequence[tuple[Any, ...]], tail: str = ""
) -> list[tuple[Any, ...]]:
    """``db.executemany(head + " VALUES (?, …) " + tail, rows)`` in a few multi-row statements: 100 rows are 2 to 3
    times faster so, and much faster still while the event loop holds the GIL (``executemany`` takes it back for
    each row). Statements of 256, 64, 16, 4 and 1 rows: five shapes per ``head`` stay in the statement cache (one
    per row count would fill it, each prepared statement up to 100 KB). Returns what ``tail``'s RETURNING gives."""
    if not rows:
        return []
    out: list[tuple[Any, ...]] = []
    start, count = 0, len(rows)
    width = len(rows[0])
    for size in _ROWS_PER_STATEMENT:
        while count - start >= size:
            params = [x for row in rows[start : start + size] for x in row]
            out += db.execute(_values(head, size, width, tail), params).fetchall()
            start += size
    return out


@lru_cache(maxsize=64)
def _values(head: str, size: int, width: int, tail: str) -> str:
    return f"{head} VALUES {','.join(['(' + ','.join('?' * width) + ')'] * size)} {tail}"


_SERIES_UPSERT = (
    "ON CONFLICT (metric, labels) DO UPDATE SET"
    " last_ts = iif(coalesce(last_ts <= excluded.last_ts, 1), excluded.last_ts, last_ts),"
    " last_value = iif(coalesce(last_ts <= excluded.last_ts, 1), excluded.last_value, last_value)"
    " RETURNING id, metric, labels"
)


def _add_series(
    db: sqlite3.Connection, latest: dict[tuple[str, Labels], tuple[float, float]]
) -> dict[tuple[str, Labels], int]:
    """Insert the series of ``latest`` (series key → its last sample in the batch) with that last sample; a series
    already stored keeps the later of the two. Returns each one's id."""
    key_of: dict[tuple[str, str], tuple[str, Labels]] = {}  # (metric, label text) → the series key
    last_of: dict[tuple[str, str], tuple[float, float]] = {}
    alike: list[tuple[tuple[str, str], tuple[str, Labels]]] = []  # label sets of one text are one series (rare)
    for key, last in latest.items():
        text_key = (key[0], dump_labels(key[1]))
        if text_key in key_of:
            alike.append((text_key, key))
            last_of[text_key] = max(last_of[text_key], last)
        else:
            key_of[text_key] = key
            last_of[text_key] = last
    head = "INSERT INTO series (metric, labels, last_ts, last_value)"
    rows = [(metric, text, ts, value) for (metric, text), (ts, value) in last_of.items()]
    ids: dict[tuple[str, Labels], int] = {}
    for series_id, metric, text in insert_rows(db, head, rows, _SERIES_UPSERT):
        ids[key_of[(metric, text)]] = series_id
    for text_key, key in alike:
        ids[key] = ids[key_of[text_key]]
    return ids


def dump_json(document: Any) -> str:
    """Compact JSON text, non-ASCII as is: documents written to the outbox and the group members. orjson takes a
    fifth of the standard encoder's time, and writes a NaN or an infinity (a statistic's detail) as null, which
    receivers can parse; a document it cannot write (a lone surrogate) gets the standard encoder's text."""
    try:
        return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY).decode()  # a statistic's numpy floats
    except TypeError:
        return _ENCODER.encode(document)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # json.dumps would build one per call


def dump_labels(labels: Labels | dict[str, str]) -> str:
    """The canonical text of a label set (sorted keys, compact, non-ASCII as is): what identifies a series in the
    store. The same text as ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)``, for every character.
    Made afresh each time: 0.4 µs, less than an ``lru_cache`` miss (1.1 µs), which every new series is."""
    return dump_json(dict(sorted(labels.items() if isinstance(labels, dict) else labels)))


def _write_dispatch(db: sqlite3.Connection, writes: Writes, now: float) -> list[Queued]:
    """Write a dispatcher step; return the notifications it queued (for delivery without a second look).

    Members are written first (one moving to another group takes its document from the row it leaves), then the
    notifications (which read their alerts' documents from those rows), then what goes away.
    """
    from alphawatch.daemon.dispatch import EscalationRow, GroupRow, MemberRow

    gone, states, docs, moved, changed = [], [], [], [], []
    for (key, fingerprint), member in writes.members.items():
        if member is None:
            gone.append((key, fingerprint))
        elif writes.groups.get(key, True) is not None:
            assert isinstance(member, MemberRow), "Writes.freeze() first"
            values = (key, fingerprint, member.rule, member.status, member.sent, member.active_at)
            if member.doc is not None:
                states.append(values)
                docs.append((key, fingerprint, member.doc))
            elif member.source is not None:  # it moved from another group: its document comes along
                states.append(values)
                moved.append((key, fingerprint, member.source, fingerprint))
            else:
                changed.append((*values[2:], key, fingerprint))
    insert_rows(db, "INSERT OR REPLACE INTO group_members (group_key, fingerprint, rule, status, sent, active_at)",
                states)  # fmt: skip
    insert_rows(db, "INSERT OR REPLACE INTO group_member_docs (group_key, fingerprint, doc)", docs)
    db.executemany(
        "INSERT OR REPLACE INTO group_member_docs (group_key, fingerprint, doc) SELECT ?, ?, doc"
        " FROM group_member_docs WHERE group_key = ? AND fingerprint = ?",
        moved,
    )
    db.executemany(
        "UPDATE group_members SET rule = ?, status = ?, sent = ?, active_at = ?"
        " WHERE group_key = ? AND fingerprint = ?",
        changed,
    )
    told: dict[tuple[str, str], list[str]] = {}  # a flush tells a group's members at once: one statement each
    for key, fingerprint, status in writes.sent:
        told.setdefault((key, status), []).append(fingerprint)
    db.executemany(
        "UPDATE group_members SET sent = ?1 WHERE group_key = ?2 AND fingerprint IN (SELECT value FROM json_each(?3))",
        [(status, key, json.dumps(fingerprints)) for (key, status), fingerprints in told.items()],
    )
    queued = []
    for o in writes.outgoing:
        payload = o.payload if o.alerts is None else _with_alerts(db, o.payload, o.fingerprint, o.alerts)
        outbox_id = _queue(db, o, payload, now, now)
        if outbox_id is not None:
            queued.append(Queued(outbox_id, o.channel, o.fingerprint, o.idempotency_key, payload, now, 0))
    db.executemany("DELETE FROM group_members WHERE group_key = ? AND fingerprint = ?", gone)
    db.executemany("DELETE FROM group_member_docs WHERE group_key = ? AND fingerprint = ?", gone)
    for key, group in writes.groups.items():
        if group is None:
            db.execute("DELETE FROM groups WHERE key = ?", (key,))
            db.execute("DELETE FROM group_members WHERE group_key = ?", (key,))
            db.execute("DELETE FROM group_member_docs WHERE group_key = ?", (key,))
        else:
            assert isinstance(group, GroupRow), "Writes.freeze() first"
            db.execute(
                "INSERT OR REPLACE INTO groups (key, route, route_ident, channels, held, labels, created_at,"
                " last_flush_at, next_flush_at, flushes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, group.route, group.route_ident, json.dumps(group.channels), group.held,
                 dump_labels(group.labels), group.created_at, group.last_flush_at,
                 group.next_flush_at, group.flushes),
            )  # fmt: skip
    for fingerprint, escalating in writes.escalations.items():
        if escalating is None:
            db.execute("DELETE FROM escalations WHERE fingerprint = ?", (fingerprint,))
        else:
            assert isinstance(escalating, EscalationRow), "Writes.freeze() first"
            db.execute(
                "INSERT OR REPLACE INTO escalations (fingerprint, rule, policy, active_at, fired_at, next_tier, doc)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (fingerprint, escalating.rule, escalating.policy, escalating.active_at, escalating.fired_at,
                 escalating.next_tier, escalating.doc),
            )  # fmt: skip
    if writes.suppressed:
        from alphawatch.daemon.suppression import write_records

        write_records(db, writes.suppressed)
    return queued


_FINISH = "UPDATE outbox SET state = ?2, last_error = ?3, finished_at = ?4, attempts = attempts + 1 WHERE id = ?1"
"""A notification's last attempt: (id, ``delivered`` or ``dead``, error, at)."""


def _queue(db: sqlite3.Connection, o: Outgoing, payload: str, now: float, at: float) -> int | None:
    """Put a notification in the outbox, due at ``at``: its id, or ``None`` when the same one (its idempotency
    key) was queued before."""
    row = db.execute(
        "INSERT OR IGNORE INTO outbox (channel, fingerprint, idempotency_key, created_at, next_attempt_at, state)"
        " VALUES (?, ?, ?, ?, ?, 'pending') RETURNING id",
        (o.channel, o.fingerprint, o.idempotency_key, now, at),
    ).fetchone()
    if row is None:
        return None
    db.execute("INSERT INTO outbox_payloads (id, payload) VALUES (?, ?)", (row[0], payload))
    return int(row[0])


def _with_alerts(db: sqlite3.Connection, head: str, group_key: str, alerts: tuple[tuple[str, str | None], ...]) -> str:
    """A group notification's document: ``head`` plus its members' documents and their common annotations."""
    found = _member_docs(db, group_key)
    members = [
        (doc, _annotations(doc)) if doc is not None else found[fingerprint]
        for fingerprint, doc in alerts
        if doc is not None or fingerprint in found
    ]
    texts = {annotations for _, annotations in members}
    if len(texts) == 1:
        common = texts.pop() or "{}"
    else:  # annotations differ (e.g. they show each alert's value): what every alert has, key by key
        first, *rest = [json.loads(annotations or "{}") for _, annotations in members] or [{}]
        common = dump_json({k: v for k, v in first.items() if all(m.get(k) == v for m in rest)})
    documents = ",".join(doc for doc, _ in members)
    return f'{head[:-1]},"commonAnnotations":{common},"alerts":[{documents}]}}'


def _member_docs(db: sqlite3.Connection, group_key: str) -> dict[str, tuple[str, str | None]]:
    """A group's member documents and their annotations' text, by fingerprint. SQLite joins them into one row:
    read row by row, every row gave the GIL up while SQLite ran and waited for it again, up to the 5 ms switch
    interval while the event loop was busy (``bench/bench_store.py --measures groupread``: 100 rows took 0.4-0.5 s
    against a busy thread, one row 12 ms). JSON text holds no raw control character: \x1e and \x1f part it."""
    try:
        (text,) = db.execute(
            "SELECT group_concat(fingerprint || char(31) || doc || char(31)"
            " || json_quote(json_extract(doc, '$.annotations')), char(30))"  # (JSON text, whatever its type)
            " FROM group_member_docs WHERE group_key = ?",
            (group_key,),
        ).fetchone()
    except (sqlite3.OperationalError, sqlite3.DataError):
        # a document written before 2026-11-26 with NaN, which SQLite's JSON refuses; or the documents together
        # longer than SQLite's limit on one value (1 GB unless lowered): a row each
        return _member_docs_by_row(db, group_key)
    found: dict[str, tuple[str, str | None]] = {}
    for item in text.split("\x1e") if text else ():
        fingerprint, doc, annotations = item.split("\x1f")
        found[fingerprint] = (doc, None if annotations == "null" else annotations)
    return found


def _member_docs_by_row(db: sqlite3.Connection, group_key: str) -> dict[str, tuple[str, str | None]]:
    return {
        fingerprint: (doc, _annotations(doc))
        for fingerprint, doc in db.execute(
            "SELECT fingerprint, doc FROM group_member_docs WHERE group_key = ?", (group_key,)
        )
    }


def _annotations(doc: str) -> str:
    return dump_json(json.loads(doc)["annotations"])


def _dump_details(details: tuple[tuple[str, Any], ...]) -> str:
    return json.dumps(dict(details), separators=(",", ":"), ensure_ascii=False, default=str) if details else "{}"


_REFUSALS = frozenset({
    sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_NOTADB,
})  # fmt: skip


def is_refusal(exc: BaseException) -> bool:
    """Whether the state file refused work (a full disk, an I/O error, a lock held too long, a damaged file), as
    opposed to a mistake in a query."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.DatabaseError) and code is not None and code & 0xFF in _REFUSALS


def _load_labels(text: str) -> Labels:
    return tuple(sorted(json.loads(text).items()))


@dataclass(eq=False)
class _Job(Generic[T]):
    """A call of :meth:`Store.run` waiting its turn: its work, and how its result reaches the waiting task."""

    work: Callable[[sqlite3.Connection], T]
    deliver: Callable[[outcome.Outcome[T]], None]


def _ignore(_: object) -> None:
    pass


class Store:
    def __init__(self, connection: sqlite3.Connection, inline: bool, path: Path | str | None = None) -> None:
        self._db = connection
        self._inline = inline
        self._queue: deque[_Job[Any]] = deque()  # calls waiting their turn (see run)
        self._queue_lock = threading.Lock()
        self._draining = False  # a worker thread is running the queued calls
        self._series: dict[str, dict[Labels, int]] = {}  # metric → label set → series id (held per series)
        self._behind: dict[int, tuple[float, float]] = {}  # series id → its last sample, not yet in its row
        self._path = None if path is None or str(path) == ":memory:" else path
        self._checkpointer: sqlite3.Connection | None = None
        self.refused: tuple[float, str] | None = None
        """When the file last refused work (a full disk, an I/O error, a lock held too long) and why: what
        ``/health`` reports (a read answered from the cache says nothing of writes)."""
        self.wrote_at = -math.inf  # when a write last succeeded
        self.failures = 0  # work the file refused, since start
        self._forgotten_metrics: set[str] = set()  # of series the retention deleted, not yet told (take_forgotten)

    def _tracked(self, work: Callable[[sqlite3.Connection], T], db: sqlite3.Connection) -> T:
        changes = db.total_changes
        try:
            result = work(db)
        except sqlite3.Error as exc:
            self._note_refusal(exc)
            raise
        with contextlib.suppress(sqlite3.ProgrammingError):  # (the work closed the connection: nothing to say)
            if db.total_changes != changes:
                self.wrote_at = time.time()
        return result

    def _note_refusal(self, exc: sqlite3.Error) -> None:
        if is_refusal(exc):
            self.refused = (time.time(), f"{type(exc).__name__}: {exc}")
            self.failures += 1

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work(connection)`` off the event loop, one call at a time, in the order asked. A call waiting its
        turn can be cancelled; once started it finishes first.

        The calls wait in a queue that one thread empties: a call asked while another runs starts in the same
        thread as soon as that one ends, without a hop back to the event loop and out again (a hop costs 20 µs
        on a workstation and 150 µs on a small VM, more than most calls' own work)."""
        if self._inline:
            return self._tracked(work, self._db)
        await trio.lowlevel.checkpoint_if_cancelled()  # (a call asked in a cancelled scope is not queued at all)
        task = trio.lowlevel.current_task()
        token = trio.lowlevel.current_trio_token()

        def deliver(result: outcome.Outcome[T]) -> None:
            token.run_sync_soon(trio.lowlevel.reschedule, task, result)

        job = _Job(work, deliver)
        with self._queue_lock:
            self._queue.append(job)
            start, self._draining = not self._draining, True
        if start:
            try:
                trio.lowlevel.start_thread_soon(self._drain, _ignore)
            except BaseException:  # no thread to be had (a limit on tasks, no memory): this call fails alone
                with self._queue_lock:
                    self._queue.remove(job)
                    self._draining = False
                raise

        def abort(_: Any) -> trio.lowlevel.Abort:
            with self._queue_lock:
                if job in self._queue:  # not started: it never will
                    self._queue.remove(job)
                    return trio.lowlevel.Abort.SUCCEEDED
            return trio.lowlevel.Abort.FAILED

        done: T = await trio.lowlevel.wait_task_rescheduled(abort)
        return done

    def _drain(self) -> None:
        """In a worker thread: run the queued calls until none is left."""
        while True:
            with self._queue_lock:
                if not self._queue:
                    self._draining = False
                    return
                job = self._queue.popleft()
            job.deliver(outcome.capture(self._tracked, job.work, self._db))

    # samples ----------------------------------------------------------------------------------------------
    async def insert_samples(self, samples: Sequence[Sample]) -> None:
        """Store ``samples`` in one transaction; a repeated (series, ts) overwrites."""

        def work(db: sqlite3.Connection) -> None:
            cache = self._series
            rows: list[tuple[float, Any, float]] = []  # (ts, series id, value); a new series' key until it has one
            latest: dict[int, tuple[float, float]] = {}  # known series id → its last sample in the batch
            fresh: dict[tuple[str, Labels], tuple[float, float]] = {}  # new series → its last sample in the batch
            ids, ids_of = _NONE, None
            for metric, labels, ts, value in samples:
                if metric is not ids_of:  # (a batch is mostly of one metric)
                    ids, ids_of = cache.get(metric, _NONE), metric
                series_id = ids.get(labels)
                if series_id is None:
                    key = (metric, labels)
                    last = fresh.get(key)
                    if last is None or ts >= last[0]:
                        fresh[key] = (ts, value)
                    rows.append((ts, key, value))
                else:
                    last = latest.get(series_id)
                    if last is None or ts >= last[0]:
                        latest[series_id] = (ts, value)
                    rows.append((ts, series_id, value))
            behind = self._behind
            with db:
                # a new series is written with its last sample; a known series' row is brought up to date later
                # (settle): writing it here dirtied a page per series in every commit, a third of a small batch's cost
                new_ids = _add_series(db, fresh) if fresh else {}
                if new_ids:
                    rows = [(ts, new_ids[s] if type(s) is tuple else s, value) for ts, s, value in rows]
                insert_rows(db, "INSERT OR REPLACE INTO samples (ts, series_id, value)", rows)
                insert_rows(
                    db, "INSERT OR IGNORE INTO series_behind (series_id)", [(i,) for i in latest if i not in behind]
                )
            # only after the commit: a rolled-back id or sample must not be remembered
            for (metric, labels), series_id in new_ids.items():
                cache.setdefault(metric, {})[labels] = series_id
            for series_id, last in latest.items():
                known = behind.get(series_id)
                if known is None or last[0] >= known[0]:
                    behind[series_id] = last

        await self.run(work)

    def _settle(self, db: sqlite3.Connection) -> None:
        """Write the last samples held in memory to their series rows (a late sample never replaces a newer one)."""
        if not self._behind:
            return
        with db:
            db.executemany(
                "UPDATE series SET last_ts = ?1, last_value = ?2 WHERE id = ?3 AND coalesce(last_ts <= ?1, 1)",
                [(ts, value, series_id) for series_id, (ts, value) in self._behind.items()],
            )
            db.execute("DELETE FROM series_behind")
        self._behind.clear()

    def take_forgotten(self) -> set[str]:
        """The metrics of series the retention deleted since the last call (their rules let go of them too)."""
        metrics, self._forgotten_metrics = self._forgotten_metrics, set()
        return metrics

    async def settle(self) -> None:
        """Bring every series row's last sample up to date (the daemon calls this every few seconds)."""
        await self.run(self._settle)

    async def load_samples(self, selector: Selector, since: float, latest_only: bool = False) -> list[Sample]:
        """Samples of every series ``selector`` matches: those at or after ``since``, and each series' last one.

        The samples are kept in time order, so this reads every metric's samples since ``since``; with
        ``latest_only`` it reads just each series' last sample, whatever its age (kept per series until the
        retention forgets it): an absence rule must see the series that fell silent before it started.
        """

        def work(db: sqlite3.Connection) -> list[Sample]:
            self._settle(db)
            wanted: dict[int, tuple[Labels, float | None, float | None]] = {}
            for series_id, labels_text, last_ts, last_value in db.execute(
                "SELECT id, labels, last_ts, last_value FROM series WHERE metric = ?", (selector.metric,)
            ):
                labels = _load_labels(labels_text)
                if selector.matches(Sample(selector.metric, labels, 0.0, 0.0)):
                    wanted[series_id] = (labels, last_ts, last_value)
            if latest_only:
                return [
                    Sample(selector.metric, labels, last_ts, last_value)
                    for labels, last_ts, last_value in wanted.values()
                    if last_ts is not None and last_value is not None
                ]
            recent: list[Sample] = []
            seen: set[int] = set()
            if wanted:
                for ts, series_id, value in db.execute(
                    "SELECT ts, series_id, value FROM samples WHERE ts >= ?"
                    " AND series_id IN (SELECT id FROM series WHERE metric = ?) ORDER BY ts",
                    (since, selector.metric),
                ):
                    if series_id in wanted:
                        recent.append(Sample(selector.metric, wanted[series_id][0], ts, value))
                        seen.add(series_id)
            # a series with nothing since ``since`` still has its last sample (older ones come first)
            out = [
                Sample(selector.metric, labels, last_ts, last_value)
                for series_id, (labels, last_ts, last_value) in wanted.items()
                if series_id not in seen and last_ts is not None and last_value is not None
            ]
            out += recent
            return out

        return await self.run(work)

    async def purge_before(self, cutoff: float, batch: int = 5000, samples_before: float | None = None) -> int:
        """Delete samples (those before ``samples_before``, by default ``cutoff``), finished notifications,
        history, alerts resolved and reloads recorded before ``cutoff``, a small batch of each per call.

        Returns how many rows went; the caller loops (yielding between calls) until it returns 0. Once no sample
        before the cutoff is left, the series silent since before it go too (rows and the store's memory of them):
        labels that keep changing (a run id) must not grow the daemon for ever.
        """
        samples = cutoff if samples_before is None else samples_before

        def work(db: sqlite3.Connection) -> int:
            self._settle(db)  # a series' last sample decides whether it is forgotten
            forgotten: list[tuple[int, str, str]] = []
            with db:
                gone = db.execute(
                    "DELETE FROM samples WHERE (ts, series_id) IN"
                    " (SELECT ts, series_id FROM samples WHERE ts < ? LIMIT ?)",
                    (samples, batch),
                ).rowcount
                if not gone:  # no sample before the cutoff is left: a series silent since then is forgotten
                    db.execute("UPDATE series SET last_ts = NULL, last_value = NULL WHERE last_ts < ?", (samples,))
                    forgotten = db.execute(
                        "DELETE FROM series WHERE id IN (SELECT id FROM series WHERE last_ts IS NULL LIMIT ?)"
                        " RETURNING id, metric, labels",
                        (batch,),
                    ).fetchall()
                    gone += len(forgotten)
                gone += db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state != 'pending' "
                    "AND finished_at < ? LIMIT ?)",
                    (cutoff, batch),
                ).rowcount
                gone += db.execute(
                    "DELETE FROM alert_history WHERE id IN (SELECT id FROM alert_history WHERE at < ? LIMIT ?)",
                    (cutoff, batch),
                ).rowcount
                gone += db.execute(
                    "DELETE FROM alerts WHERE fingerprint IN (SELECT fingerprint FROM alerts"
                    " WHERE state = 'resolved' AND resolved_at < ? LIMIT ?)",
                    (cutoff, batch),
                ).rowcount
                gone += db.execute(
                    "DELETE FROM reloads WHERE id IN (SELECT id FROM reloads WHERE at < ? LIMIT ?)", (cutoff, batch)
                ).rowcount
            for series_id, metric, text in forgotten:  # only after the commit
                self._forgotten_metrics.add(metric)
                known = self._series.get(metric)
                if known is not None and known.get(labels := _load_labels(text)) == series_id:
                    del known[labels]
                    if not known:
                        del self._series[metric]
                self._behind.pop(series_id, None)
            return gone

        return await self.run(work)

    # alerts -----------------------------------------------------------------------------------------------
    async def load_alerts(self, rule: str) -> list[Alert]:
        def work(db: sqlite3.Connection) -> list[Alert]:
            rows = db.execute(
                "SELECT fingerprint, rule, series, labels, state, active_at, value, fired_at, resolved_at, false_since,"
                " last_notified_at, notify_seq, details FROM alerts WHERE rule = ? AND state != 'resolved'",
                (rule,),
            ).fetchall()
            return [
                Alert(
                    fingerprint=r[0],
                    rule=r[1],
                    series=_load_labels(r[2]),
                    labels=_load_labels(r[3]),
                    state=r[4],
                    active_at=r[5],
                    value=r[6],
                    fired_at=r[7],
                    resolved_at=r[8],
                    false_since=r[9],
                    last_notified_at=r[10],
                    notify_seq=r[11],
                    details=tuple(json.loads(r[12]).items()),
                )
                for r in rows
            ]

        return await self.run(work)

    async def apply(self, transitions: Iterable[Transition], writes: Writes | None = None) -> list[Queued]:
        """Persist alert transitions and what they change in the dispatcher (groups, notifications), at once.
        Returns the notifications queued."""
        transitions = list(transitions)
        if not transitions and not writes:
            return []
        now = time.time()

        # one row per alert (its last state in this step) and one history row per change, each in one statement
        latest: dict[str, Transition] = {}
        history = []
        for t in transitions:
            latest[t.alert.fingerprint] = t
            if t.from_state != t.to_state or t.notify:
                a = t.alert
                history.append((a.fingerprint, a.rule, t.at, t.from_state, t.to_state, t.value, t.note))
        gone = [(fp,) for fp, t in latest.items() if t.to_state == INACTIVE]
        rows = [
            (a.fingerprint, a.rule, dump_labels(a.series), dump_labels(a.labels), a.state, a.active_at, a.value,
             a.fired_at, a.resolved_at, a.false_since, a.last_notified_at, a.notify_seq, _dump_details(a.details), now)
            for t in latest.values() if t.to_state != INACTIVE for a in (t.alert,)
        ]  # fmt: skip

        def work(db: sqlite3.Connection) -> list[Queued]:
            with db:
                db.executemany("DELETE FROM alerts WHERE fingerprint = ? AND state = 'pending'", gone)
                insert_rows(
                    db,
                    "INSERT OR REPLACE INTO alerts (fingerprint, rule, series, labels, state, active_at, value,"
                    " fired_at, resolved_at, false_since, last_notified_at, notify_seq, details, updated_at)",
                    rows,
                )
                insert_rows(
                    db, "INSERT INTO alert_history (fingerprint, rule, at, from_state, to_state, value, note)", history
                )
                return _write_dispatch(db, writes, now) if writes else []

        return await self.run(work)

    async def save_dispatch(self, writes: Writes) -> list[Queued]:
        """Persist a dispatcher step (flushes) in one transaction; returns the notifications queued."""
        if not writes:
            return []
        now = time.time()

        def work(db: sqlite3.Connection) -> list[Queued]:
            with db:
                return _write_dispatch(db, writes, now)

        return await self.run(work)

    async def load_dispatch(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        groups = await self.query("SELECT * FROM groups")
        members = await self.query("SELECT * FROM group_members JOIN group_member_docs USING (group_key, fingerprint)")
        escalations = await self.query("SELECT * FROM escalations")
        return groups, members, escalations

    # outbox -----------------------------------------------------------------------------------------------
    async def due(
        self, now: float, limit: int, exclude: set[int], room: Mapping[str, int] | None = None, default_room: int = 0
    ) -> tuple[list[Queued], float | None, set[str], bool]:
        """Up to ``limit`` pending notifications due at ``now``; when the next one not yet due falls due; the
        channels that have more due than this read takes (behind); and whether the limit left a channel with room
        out (to be read again at once). A channel's rows are taken oldest first, at
        most what its queue has room for (``room``, else ``default_room``, else ``limit``), and the channels share
        ``limit`` in turn: one channel's backlog crowds no other channel out of a read. Those in ``exclude`` are
        being sent already."""
        room = room or {}

        def work(db: sqlite3.Connection) -> tuple[list[Queued], float | None, set[str], bool]:
            # which ones, from an index alone, channel by channel (a channel with no room is not walked through);
            # then the rows of those (payloads can be large)
            per_channel: list[tuple[str, list[tuple[float, int]]]] = []
            behind: set[str] = set()
            for (channel,) in db.execute(_PENDING_CHANNELS).fetchall():
                fits = min(limit, room.get(channel, default_room or limit))
                if fits <= 0:
                    behind.add(channel)
                    continue
                found = db.execute(_DUE, (now, channel, fits + len(exclude) + 1)).fetchall()
                found = [key for key in found if key[1] not in exclude]
                if len(found) > fits:
                    behind.add(channel)
                if found:
                    per_channel.append((channel, found[:fits]))
            keys: list[tuple[float, int]] = []
            turn, cut = 0, False
            while len(keys) < limit:  # in turn: each channel's next, until the limit
                next_ones = [(channel, found[turn]) for channel, found in per_channel if turn < len(found)]
                if not next_ones:
                    break
                for channel, key in next_ones:
                    if len(keys) < limit:
                        keys.append(key)
                    else:
                        behind.add(channel)
                        cut = True
                turn += 1
            behind.update(channel for channel, found in per_channel if len(found) > turn)
            keys.sort()
            ids = [outbox_id for _, outbox_id in keys]
            found_rows = {
                row[0]: Queued(*row)
                for row in db.execute(
                    "SELECT id, channel, fingerprint, idempotency_key, payload, created_at, attempts, last_error"
                    " FROM outbox JOIN outbox_payloads USING (id) WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps(ids),),
                )
            }
            due = [found_rows[outbox_id] for outbox_id in ids]
            later = db.execute(
                "SELECT min(next_attempt_at) FROM outbox WHERE state = 'pending' AND next_attempt_at > ?", (now,)
            ).fetchone()[0]
            return due, later, behind, cut

        return await self.run(work)

    async def enqueue(self, outgoing: list[Outgoing]) -> None:
        """Put notifications in the outbox (one transaction)."""
        from alphawatch.daemon.dispatch import Writes

        await self.save_dispatch(Writes(outgoing=outgoing))  # the outbox's loop picks them up

    async def dead_letter(
        self, outbox_id: int, error: str, now: float, joining: tuple[int, str] | None, alone: Outgoing, due: float
    ) -> tuple[bool, int | None]:
        """Mark a notification dead and queue what tells of it, in one transaction: ``joining`` (a report's id and
        its document with this one added) replaces that report's document when nothing can have read it for
        sending yet (pending, never attempted, not due at ``now``); else ``alone`` goes, due at ``due`` and created
        then (it cannot go before: its ``max_age`` counts from then). Returns whether it joined, and the id of the
        report queued alone."""

        def work(db: sqlite3.Connection) -> tuple[bool, int | None]:
            with db:
                db.execute(_FINISH, (outbox_id, "dead", error, now))
                if (
                    joining is not None
                    and db.execute(
                        "UPDATE outbox_payloads SET payload = ?2 WHERE id = ?1 AND EXISTS (SELECT 1 FROM outbox WHERE"
                        " id = ?1 AND state = 'pending' AND attempts = 0 AND next_attempt_at > ?3)",
                        (*joining, now),
                    ).rowcount
                ):
                    return True, None
                return False, _queue(db, alone, alone.payload, due, due)

        return await self.run(work)

    async def fold(self, into: int, older: Sequence[int], now: float) -> tuple[str, list[int]] | None:
        """Fold the pending notifications ``older`` into the pending ``into``, the newest of their group and channel
        (see :mod:`~alphawatch.daemon.folding`), in one transaction: its document, and which of ``older`` it took
        in (those still pending). ``None`` when ``into`` is pending no longer."""
        from alphawatch.daemon.folding import fold

        def work(db: sqlite3.Connection) -> tuple[str, list[int]] | None:
            with db:
                found = dict(
                    db.execute(
                        "SELECT id, payload FROM outbox JOIN outbox_payloads USING (id) WHERE state = 'pending'"
                        " AND id IN (SELECT value FROM json_each(?))",
                        (json.dumps([into, *older]),),
                    ).fetchall()
                )
                newer = found.pop(into, None)
                if newer is None:
                    return None
                taken = sorted(found, reverse=True)
                document = fold(newer, [found[i] for i in taken])
                if document is not newer:
                    db.execute("UPDATE outbox_payloads SET payload = ? WHERE id = ?", (document, into))
                db.executemany(
                    "UPDATE outbox SET state = 'superseded', last_error = ?, finished_at = ? WHERE id = ?",
                    [(f"folded into notification {into}", now, i) for i in taken],
                )
                return document, taken

        return await self.run(work)

    async def withdraw(self, outbox_id: int, withdrawal: Withdrawal, now: float) -> bool:
        """End a pending notification unsent (an escalation page no longer wanted), recording the suppression it
        is with it; whether it was pending."""

        def work(db: sqlite3.Connection) -> bool:
            with db:
                withdrawn = db.execute(
                    "UPDATE outbox SET state = 'withdrawn', last_error = ?, finished_at = ? WHERE id = ?"
                    " AND state = 'pending'",
                    (withdrawal.why, now, outbox_id),
                ).rowcount
                if withdrawn and withdrawal.suppressed is not None:
                    from alphawatch.daemon.suppression import write_records

                    write_records(db, [withdrawal.suppressed])
                return bool(withdrawn)

        return await self.run(work)

    async def dead_letter_reports(self, since: float) -> list[dict[str, Any]]:
        """The dead-letter reports made (or due) after ``since``: id, channel, state, attempts, created_at (for a
        report queued to wait its time, when it was due), next_attempt_at, payload."""
        return await self.query(
            "SELECT id, channel, state, attempts, created_at, next_attempt_at, payload FROM outbox JOIN outbox_payloads"
            " USING (id) WHERE fingerprint LIKE 'dead-letter-%' AND created_at > ? ORDER BY id",
            (since,),
        )

    async def waiting_retry(self) -> list[tuple[int, str, str]]:
        """The pending notifications that failed before (id, channel, fingerprint): waiting for their retry."""
        rows = await self.query("SELECT id, channel, fingerprint FROM outbox WHERE state = 'pending' AND attempts > 0")
        return [(row["id"], row["channel"], row["fingerprint"]) for row in rows]

    async def readdress(self, outbox_id: int, channel: str) -> None:
        """Send a pending notification to another channel (a dead-letter report whose fallback a reload changed)."""

        def work(db: sqlite3.Connection) -> None:
            with db:
                db.execute("UPDATE outbox SET channel = ? WHERE id = ? AND state = 'pending'", (channel, outbox_id))

        await self.run(work)

    async def finish(self, outbox_id: int, state: str, error: str | None, now: float) -> None:
        await self.finish_many([(outbox_id, state, error, now)])

    async def finish_many(self, finished: Sequence[tuple[int, str, str | None, float]]) -> None:
        """Mark notifications (id, state, error, at) delivered or dead, in one transaction."""

        def work(db: sqlite3.Connection) -> None:
            with db:
                db.executemany(_FINISH, finished)

        await self.run(work)

    async def retry_channel_now(self, channel: str, now: float) -> int:
        """Make every pending notification of ``channel`` due now (its receiver answers again)."""

        def work(db: sqlite3.Connection) -> int:
            with db:
                return db.execute(
                    "UPDATE outbox SET next_attempt_at = ? WHERE channel = ? AND state = 'pending'"
                    " AND next_attempt_at > ?",
                    (now, channel, now),
                ).rowcount

        return await self.run(work)

    async def retry_first_by(self, channel: str, at: float) -> bool:
        """Make the next pending notification of ``channel`` due at ``at`` at the latest; whether there was one."""

        def work(db: sqlite3.Connection) -> bool:
            with db:
                return (
                    db.execute(
                        "UPDATE outbox SET next_attempt_at = min(next_attempt_at, ?1) WHERE id = (SELECT id FROM"
                        " outbox WHERE channel = ?2 AND state = 'pending' ORDER BY next_attempt_at, id LIMIT 1)",
                        (at, channel),
                    ).rowcount
                    > 0
                )

        return await self.run(work)

    async def retry_later(self, outbox_id: int, at: float, error: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            with db:
                db.execute(
                    "UPDATE outbox SET next_attempt_at = ?, last_error = ?, attempts = attempts + 1 WHERE id = ?",
                    (at, error, outbox_id),
                )

        await self.run(work)

    # rules, reloads, queries ------------------------------------------------------------------------------
    async def watching_since(self, rule: str, selectors: str, now: float) -> float:
        """Since when ``rule`` has watched ``selectors`` (their text): ``now`` the first time, and again once they
        change; the same instant across restarts and reloads that leave them as they are."""

        def work(db: sqlite3.Connection) -> float:
            with db:
                row = db.execute("SELECT selectors, since FROM rule_watch WHERE rule = ?", (rule,)).fetchone()
                if row is not None and row[0] == selectors:
                    return float(row[1])
                db.execute("INSERT OR REPLACE INTO rule_watch VALUES (?, ?, ?)", (rule, selectors, now))
                return now

        return await self.run(work)

    async def forget_watch(self, rules: Iterable[str]) -> None:
        """The rules are gone: one configured again later starts watching afresh."""

        def work(db: sqlite3.Connection) -> None:
            with db:
                db.executemany("DELETE FROM rule_watch WHERE rule = ?", [(name,) for name in rules])

        await self.run(work)

    async def set_rule_state(self, rule: str, status: str, restarts: int, error: str | None) -> None:
        def work(db: sqlite3.Connection) -> None:
            with db:
                db.execute(
                    "INSERT OR REPLACE INTO rule_state (rule, status, restarts, last_error, updated_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (rule, status, restarts, error, time.time()),
                )

        await self.run(work)

    async def record_reload(
        self, ok: bool, trigger: str, digest: str | None, diff: tuple[list[str], list[str], list[str]],
        error: str | None,
    ) -> None:  # fmt: skip
        def work(db: sqlite3.Connection) -> None:
            with db:
                db.execute(
                    "INSERT INTO reloads (at, ok, trigger, config_digest, added, changed, removed, error)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (time.time(), int(ok), trigger, digest, *(json.dumps(d) for d in diff), error),
                )

        await self.run(work)

    async def checkpoint(self) -> list[tuple[int, int, int]]:
        """Copy the write-ahead log into the database file without waiting for readers or writers (``PASSIVE``),
        on a connection of its own, outside the queue of the store's calls: the copy and its sync (≈ 40 ms for a
        15 MB log, after a burst) hold no write back. Returns SQLite's (busy, log frames, frames copied).

        Series rows are settled first (their last samples written), so the file the checkpoint leaves is current."""
        await self.settle()
        pragma = "PRAGMA wal_checkpoint(PASSIVE)"
        if self._inline or self._path is None:
            return await self.run(lambda db: db.execute(pragma).fetchall())
        path = self._path

        def work() -> list[tuple[int, int, int]]:
            try:
                if self._checkpointer is None:
                    self._checkpointer = _connect(path)
                rows: list[tuple[int, int, int]] = self._checkpointer.execute(pragma).fetchall()
            except sqlite3.Error as exc:  # (the file refused it: as any other work, for /health and the counter)
                self._note_refusal(exc)
                raise
            return rows

        return await trio.to_thread.run_sync(work)

    def _close(self, connection: sqlite3.Connection) -> None:
        self._settle(connection)
        if self._checkpointer is not None:
            self._checkpointer.close()
        connection.close()

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Read-only rows as dicts, for the API."""

        def work(db: sqlite3.Connection) -> list[dict[str, Any]]:
            cursor = db.execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        return await self.run(work)


def _connect(path: Path | str) -> sqlite3.Connection:
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level="DEFERRED", timeout=5.0)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA busy_timeout = 5000")
    # checkpoints run from a background task (Store.checkpoint), not inside a commit on the alert path; writes
    # during one keep the log from starting over, so it may grow to twice what comes between two: once it starts
    # over, its file is cut back to 64 MiB
    db.execute("PRAGMA wal_autocheckpoint = 20000")
    db.execute("PRAGMA journal_size_limit = 67108864")
    return db


def migrate(db: sqlite3.Connection) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise StoreError(
            f"the state file is from a newer alphawatch (schema {version}, this one knows {len(MIGRATIONS)})"
        )
    if 0 < version < len(MIGRATIONS):  # a new file is created in an instant; an old one may hold much to rewrite
        log.info("upgrading the state file", extra={"from_schema": version, "to_schema": len(MIGRATIONS)})
    if version < len(MIGRATIONS):
        db.execute("PRAGMA foreign_keys = OFF")  # (a table rebuilt drops its old self: no cascade to what refers to it)
        try:
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
            broken = db.execute("PRAGMA foreign_key_check").fetchall()  # (a scan of the tables: only after a change)
            if broken:
                raise StoreError(f"the upgraded state file has {len(broken)} rows whose reference is gone")
        finally:
            db.execute("PRAGMA foreign_keys = ON")
    _settle_after_crash(db)


def _settle_after_crash(db: sqlite3.Connection) -> None:
    """Series listed as behind were not settled before the process ended: read their last samples back from
    ``samples``, in one scan of the time range that can hold them (from the oldest last sample among them)."""
    with db:
        db.execute(
            "UPDATE series SET last_ts = latest.ts, last_value = latest.value FROM"
            " (SELECT series_id, max(ts) AS ts, value FROM samples"  # (value: of the row with the max)
            "  WHERE ts >= (SELECT min(coalesce(last_ts, -1e308)) FROM series"
            "               WHERE id IN (SELECT series_id FROM series_behind))"
            "    AND series_id IN (SELECT series_id FROM series_behind)"
            "  GROUP BY series_id) AS latest"
            " WHERE series.id = latest.series_id AND coalesce(series.last_ts <= latest.ts, 1)"
        )
        db.execute("DELETE FROM series_behind")


@asynccontextmanager
async def open_store(path: Path | str, *, inline: bool = False) -> AsyncIterator[Store]:
    """Open (creating and migrating as needed) the state file at ``path``."""
    try:
        db = _connect(path)
        migrate(db)
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"cannot open the state file {path}: {exc}") from None
    store = Store(db, inline, path)
    try:
        yield store
    finally:
        with trio.CancelScope(shield=True):
            await store.run(store._close)
