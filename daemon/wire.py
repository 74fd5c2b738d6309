"""Values as clients write them, read strictly: finite numbers, ASCII numerals, RFC 3339 instants.

Python's own readers are laxer than what a client means: ``float`` takes "١٢" and "1_000", an integer of 400
digits overflows ``float()``, ``datetime.fromisoformat`` takes a naive time, an offset with seconds, week dates.
"""

from __future__ import annotations

import math
import re
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

    ``datetime.fromisoformat`` is laxer than RFC 3339 (a naive time, an offset with seconds, week dates, basic
    forms) and stricter (a lowercase ``t`` or ``z``): the text is matched against the RFC's grammar first.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        if _NAIVE.fullmatch(text):
            raise ValueError("has no UTC offset; add Z or +08:00 (naive times are never guessed)")
        if _OFFSET_SECONDS.search(text):
            raise ValueError(f"the UTC offset of {text[:40]!r} has seconds; RFC 3339 offsets are ±HH:MM")
        raise ValueError(f"not an RFC 3339 timestamp: {text[:40]!r}")
    date, clock, offset = match.groups()
    try:
        return datetime.fromisoformat(f"{date}T{clock}{'+00:00' if offset in 'Zz' else offset}").timestamp()
    except ValueError:  # (Feb 30, hour 25)
        raise ValueError(f"not an RFC 3339 timestamp: {text[:40]!r}") from None


# RFC 3339 section 5.6 (T or a space between date and time, as its note allows; T and Z in either case)
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d(?:\.\d+)?)([Zz]|[+-]\d\d:\d\d)", re.ASCII)
_OFFSET_SECONDS = re.compile(r"\d\d:\d\d(?:\.\d+)?[+-]\d\d:\d\d:\d\d(?:\.\d+)?$", re.ASCII)
_NAIVE = re.compile(r"\d{4}-\d\d-\d\d(?:[Tt ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?)?", re.ASCII)
