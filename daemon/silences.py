"""Silences: matchers over an alert's labels and a time span during which its notifications are not sent.

A silence is data a person creates through the API or the CLI (``alphawatch silence add``), stored in the
``silences`` table and held in memory by :class:`~alphawatch.daemon.suppression.Suppressions` from the moment
its row is committed. It is *pending* before ``starts_at``, *active* from ``starts_at`` (inclusive) to
``ends_at`` (exclusive), then *expired*; expiring one early sets ``ends_at`` to now.

An alert with ``severity=emergency`` is only silenced by a silence whose matchers name that severity
(:func:`~alphawatch.daemon.routing.names_emergency`), like ``severity="emergency"`` or
``severity=~"critical|emergency"``.

:func:`parse_silence` checks a request body completely (every bad field is reported, nothing is half-read);
the store functions take a connection so callers batch them in one ``Store.run``.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from alphawatch.daemon.durations import parse_duration
from alphawatch.daemon.routing import EMERGENCY, names_emergency
from alphawatch.daemon.wire import as_float, parse_rfc3339
from alphawatch.rules._base import Matcher, parse_matcher

log = logging.getLogger("alphawatch.silences")

PENDING, ACTIVE, EXPIRED = "pending", "active", "expired"
MAX_MATCHERS = 32
MAX_MATCHER_CHARS = 1024
MAX_TEXT = {"created_by": 200, "comment": 2000}
EARLIEST = 946_684_800.0  # 2000-01-01T00:00:00Z
LATEST = 4_102_444_800.0  # 2100-01-01T00:00:00Z
FIELDS = ("matchers", "starts_at", "ends_at", "duration", "created_by", "comment")


@dataclass(frozen=True, slots=True)
class Silence:
    """One silence. ``matchers`` keep their text as written (``texts``) for display and storage."""

    id: str
    matchers: tuple[Matcher, ...]
    texts: tuple[str, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float

    def state(self, at: float) -> str:
        if at < self.starts_at:
            return PENDING
        return ACTIVE if at < self.ends_at else EXPIRED

    def active(self, at: float) -> bool:
        return self.starts_at <= at < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the matchers all match ``labels``; an emergency only when the matchers name it."""
        if not all(m.matches(labels) for m in self.matchers):
            return False
        return labels.get("severity") != EMERGENCY or names_emergency(self.matchers)

    def as_json(self, at: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": list(self.texts),
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "starts": rfc3339(self.starts_at),
            "ends": rfc3339(self.ends_at),
            "created_by": self.created_by,
            "comment": self.comment,
            "created_at": self.created_at,
            "state": self.state(at),
        }


@dataclass(frozen=True)
class FieldError:
    """One bad field of a request body."""

    field: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class SilenceError(ValueError):
    """A silence request was refused; ``fields`` lists every bad field."""

    def __init__(self, fields: list[FieldError]) -> None:
        self.fields = fields
        super().__init__("; ".join(f"{f.field}: {f.message}" if f.field else f.message for f in fields))


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def parse_instant(raw: Any) -> float:
    """An RFC 3339 timestamp with an offset, or UTC epoch seconds; ``ValueError`` otherwise (naive included)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError("must be an RFC 3339 timestamp with an offset, or UTC epoch seconds")
    ts = parse_rfc3339(raw) if isinstance(raw, str) else as_float(raw)
    if not EARLIEST <= ts < LATEST:
        raise ValueError("must be between 2000-01-01 and 2100-01-01")
    return ts


def check_matchers(raw: Any, errors: list[FieldError], key: str = "matchers") -> tuple[tuple[Matcher, ...], bool]:
    """Parse a list of matcher strings into ``errors``; the flag says whether they were all good."""
    if not isinstance(raw, list) or not raw:
        errors.append(FieldError(key, "required: a non-empty list of matchers like 'model=alpha7'"))
        return (), False
    if len(raw) > MAX_MATCHERS:
        errors.append(FieldError(key, f"at most {MAX_MATCHERS} matchers"))
        return (), False
    out: list[Matcher] = []
    ok = True
    for i, text in enumerate(raw):
        if not isinstance(text, str):
            errors.append(FieldError(f"{key}[{i}]", "must be a string like 'model=alpha7'"))
            ok = False
            continue
        if len(text) > MAX_MATCHER_CHARS:
            errors.append(FieldError(f"{key}[{i}]", f"at most {MAX_MATCHER_CHARS} characters ({len(text)} given)"))
            ok = False
            continue
        try:
            out.append(parse_matcher(text))
        except ValueError as exc:
            errors.append(FieldError(f"{key}[{i}]", str(exc)))
            ok = False
    if ok and all(m.matches({}) for m in out):
        # Alertmanager's rule: a silence must need *some* label to be present, or it silences every alert
        errors.append(
            FieldError(
                key,
                "these matchers also match an alert without any labels, so they would silence everything: "
                'add at least one matcher that needs a label, like model=alpha7 or alertname=~"IC.*"',
            )
        )
        ok = False
    return tuple(out), ok


def parse_silence(body: Any, now: float) -> Silence:
    """Check a create request and build the silence (a new uuid4 id, ``created_at=now``).

    ``starts_at`` defaults to now, and a start in the past is moved to now; exactly one of ``ends_at`` and
    ``duration`` (``2h``, ``30m`` or seconds) is required, and the end must come after both the start and now.

    Raises:
        SilenceError: with every bad field.
    """
    if not isinstance(body, dict):
        raise SilenceError([FieldError("", "the body must be a JSON object")])
    errors = [FieldError(k, "unknown field") for k in body if k not in FIELDS]
    matchers, _ = check_matchers(body.get("matchers"), errors)
    texts = tuple(str(t).strip() for t in body.get("matchers") or ()) if matchers else ()
    texts_fine = {}
    for key, limit in MAX_TEXT.items():
        value = body.get(key)
        if not isinstance(value, str) or not value.strip():
            errors.append(FieldError(key, "required: a non-empty string"))
        elif len(value) > limit:
            errors.append(FieldError(key, f"at most {limit} characters"))
        else:
            texts_fine[key] = value.strip()
    starts_at = now
    if body.get("starts_at") is not None:
        try:
            starts_at = max(now, parse_instant(body["starts_at"]))
        except ValueError as exc:
            errors.append(FieldError("starts_at", str(exc)))
    ends_at: float | None = None
    has_end, has_duration = body.get("ends_at") is not None, body.get("duration") is not None
    if has_end == has_duration:
        errors.append(FieldError("ends_at", "give exactly one of ends_at and duration"))
    elif has_end:
        try:
            ends_at = parse_instant(body["ends_at"])
        except ValueError as exc:
            errors.append(FieldError("ends_at", str(exc)))
    else:
        duration = _duration(body["duration"], errors)
        if duration is not None and starts_at + duration >= LATEST:
            errors.append(FieldError("duration", "the silence would end on or after 2100-01-01; it must end before"))
        elif duration is not None:
            ends_at = starts_at + duration
    if ends_at is not None and ends_at <= max(starts_at, now):
        errors.append(FieldError("ends_at", "must be after starts_at and after now"))
    if errors or ends_at is None:
        raise SilenceError(errors)
    return Silence(
        id=str(uuid.uuid4()),
        matchers=matchers,
        texts=texts,
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=texts_fine["created_by"],
        comment=texts_fine["comment"],
        created_at=now,
    )


def _duration(raw: Any, errors: list[FieldError]) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        errors.append(FieldError("duration", "write a duration like 2h or 30m, or seconds"))
        return None
    try:
        seconds = parse_duration(raw) if isinstance(raw, str) else as_float(raw)
    except ValueError as exc:
        errors.append(FieldError("duration", str(exc)))
        return None
    if math.isnan(seconds) or seconds <= 0:
        errors.append(FieldError("duration", "must be positive"))
        return None
    if seconds > LATEST - EARLIEST:  # infinity too
        errors.append(FieldError("duration", "longer than a century"))
        return None
    return seconds


# --- storage (run inside Store.run) --------------------------------------------------------------------------

_COLUMNS = "id, matchers, starts_at, ends_at, created_by, comment, created_at"


def insert(db: sqlite3.Connection, silence: Silence) -> None:
    with db:
        db.execute(
            f"INSERT INTO silences ({_COLUMNS}, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (silence.id, json.dumps(list(silence.texts), ensure_ascii=False), silence.starts_at, silence.ends_at,
             silence.created_by, silence.comment, silence.created_at, silence.created_at),
        )  # fmt: skip


def expire(db: sqlite3.Connection, silence_id: str, at: float) -> tuple[Silence | None, bool]:
    """End a silence at ``at`` (a pending one never starts). Returns it and whether it was still live."""
    with db:
        found = get(db, silence_id)
        if found is None or found.ends_at <= at:
            return found, False
        db.execute(
            "UPDATE silences SET ends_at = ?, starts_at = min(starts_at, ?), updated_at = ? WHERE id = ?",
            (at, at, at, silence_id),
        )
    return get(db, silence_id), True


def get(db: sqlite3.Connection, silence_id: str) -> Silence | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM silences WHERE id = ?", (silence_id,)).fetchone()
    return None if row is None else _silence(row)


def load(db: sqlite3.Connection, *, ending_after: float | None = None, limit: int = 10_000) -> list[Silence]:
    """Silences, newest first; only those ending after ``ending_after`` when given."""
    where, params = ("WHERE ends_at > ?", (ending_after,)) if ending_after is not None else ("", ())
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM silences {where} ORDER BY created_at DESC, id LIMIT ?", (*params, limit)
    ).fetchall()
    return [_silence(r) for r in rows]


def _silence(row: tuple[Any, ...]) -> Silence:
    texts = tuple(json.loads(row[1]))
    return Silence(row[0], tuple(_stored_matcher(row[0], t) for t in texts), texts, *row[2:7])


def _stored_matcher(silence_id: str, text: str) -> Matcher:
    """A stored matcher; one an earlier version accepted and this one refuses (a regex that can backtrack for ever)
    matches nothing, so its silence silences nothing, and the daemon still starts."""
    try:
        return parse_matcher(text)
    except ValueError as exc:
        log.error("a stored silence has a matcher this version refuses; the silence silences nothing: expire it "
                  "and create it again", extra={"silence": silence_id, "error": str(exc)})  # fmt: skip
        return Matcher("!refused", "=", text)  # no label has that name: never true
