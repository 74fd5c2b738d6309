"""Values as clients write them, read strictly: finite numbers, ASCII numerals, RFC 3339 instants.

Python's own readers are laxer than what a client means: ``float`` takes "١٢" and "1_000", an integer of 400
digits overflows ``float()``, ``datetime.fromisoformat`` takes a naive time and an offset with seconds.
"""

from __future__ import annotations

import math
from datetime import datetime


def as_float(number: float) -> float:
    """``float(number)``, except that an integer beyond the float range (400 digits, which the standard JSON
    parser reads) is ±inf, refused as not finite, instead of an ``OverflowError``."""
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def ascii_float(text: str) -> float:
    """``float(text)`` for ASCII text without ``_``: ``float`` also reads "١٢" and "1_000", which no client means."""
    if not text.isascii() or "_" in text:
        raise ValueError(f"not a number: {text[:40]!r}")
    return float(text)


def parse_rfc3339(text: str) -> float:
    """Epoch seconds of an RFC 3339 timestamp; ``ValueError`` with a message for the client otherwise.

    ``datetime.fromisoformat`` is laxer than RFC 3339: it also takes a naive time and an offset with seconds.
    """
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:40]!r}") from None
    offset = parsed.utcoffset()
    if offset is None:
        raise ValueError("has no UTC offset; add Z or +08:00 (naive times are never guessed)")
    if offset.seconds % 60 or offset.microseconds:
        raise ValueError(f"the UTC offset of {text[:40]!r} has seconds; RFC 3339 offsets are ±HH:MM")
    return parsed.timestamp()
