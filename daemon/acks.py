"""Acknowledgements: a person says "I have this one": repeats and escalation stop until the alert changes.

An ack names who and why, and belongs to one *firing episode* of an alert: it is stored with the alert's
``active_at``. When the alert resolves, or resolves and fires again (a new ``active_at``), the ack no longer
holds and notifications resume. A second ack of the same episode (a hand-over, say) is the one in force; the
earlier ones of the episode stay with it, oldest first. Only a firing alert can be acknowledged. Acks apply to
every severity, ``emergency`` included: they are a person's explicit decision about that very alert.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any, NamedTuple

MAX_TEXT = {"by": 200, "comment": 2000}
MAX_EARLIER = 50
"""Earlier acks of an episode kept with the one in force: the newest this many."""


@dataclass(frozen=True, slots=True)
class Ack:
    fingerprint: str
    active_at: float
    by: str
    comment: str
    at: float
    earlier: tuple[Earlier, ...] = ()
    """The episode's earlier acks, oldest first."""

    def as_json(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "active_at": self.active_at, "by": self.by,
                "comment": self.comment, "at": self.at,
                "earlier": [e._asdict() for e in self.earlier]}  # fmt: skip


class Earlier(NamedTuple):
    """An ack of the episode that a later one took over from."""

    by: str
    comment: str
    at: float


class NotFiring(Exception):
    """The alert exists but is not firing (pending or resolved): there is nothing to acknowledge."""

    def __init__(self, state: str) -> None:
        self.state = state
        super().__init__(f"the alert is {state}, not firing: only a firing alert can be acknowledged")


class UnknownAlert(Exception):
    """No alert has this fingerprint."""


def check_ack(body: Any) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The ``by`` and ``comment`` of a request body, and every bad field as ``{"field", "message"}``."""
    if not isinstance(body, dict):
        return {}, [{"field": "", "message": "the body must be a JSON object"}]
    errors = [{"field": k, "message": "unknown field"} for k in body if k not in MAX_TEXT]
    out: dict[str, str] = {}
    for key, limit in MAX_TEXT.items():
        value = body.get(key)
        if not isinstance(value, str) or not value.strip():
            errors.append({"field": key, "message": "required: a non-empty string"})
        elif len(value) > limit:
            errors.append({"field": key, "message": f"at most {limit} characters"})
        else:
            out[key] = value.strip()
    return out, errors


# --- storage (run inside Store.run) --------------------------------------------------------------------------


def acknowledge(db: sqlite3.Connection, fingerprint: str, by: str, comment: str, at: float) -> Ack:
    """Acknowledge the current firing episode of an alert, in one transaction with the state check.

    Raises:
        UnknownAlert: no such alert.
        NotFiring: the alert is pending or resolved.
    """
    with db:
        row = db.execute("SELECT state, active_at FROM alerts WHERE fingerprint = ?", (fingerprint,)).fetchone()
        if row is None:
            raise UnknownAlert(fingerprint)
        if row[0] != "firing":
            raise NotFiring(row[0])
        earlier: tuple[Earlier, ...] = ()
        held = db.execute(f"{_SELECT} WHERE fingerprint = ?", (fingerprint,)).fetchone()
        if held is not None and (before := _ack(held)).active_at == row[1]:  # the same episode: a hand-over
            earlier = (*before.earlier, Earlier(before.by, before.comment, before.at))[-MAX_EARLIER:]
        ack = Ack(fingerprint, row[1], by, comment, at, earlier)
        db.execute(
            "INSERT OR REPLACE INTO acks (fingerprint, active_at, by, comment, at, earlier) VALUES (?, ?, ?, ?, ?, ?)",
            (ack.fingerprint, ack.active_at, ack.by, ack.comment, ack.at, json.dumps([list(e) for e in earlier])),
        )
    return ack


def remove(db: sqlite3.Connection, fingerprint: str) -> bool:
    with db:
        return db.execute("DELETE FROM acks WHERE fingerprint = ?", (fingerprint,)).rowcount > 0


def load(db: sqlite3.Connection) -> list[Ack]:
    return [_ack(row) for row in db.execute(_SELECT)]


_SELECT = "SELECT fingerprint, active_at, by, comment, at, earlier FROM acks"


def _ack(row: tuple[Any, ...]) -> Ack:
    fingerprint, active_at, by, comment, at, earlier = row
    return Ack(fingerprint, active_at, by, comment, at, tuple(Earlier(*e) for e in json.loads(earlier)))
