"""Durations as people write them in YAML: ``30s``, ``5m``, ``4h``, ``2d``, ``1h30m``, ``250ms``."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")
PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w))+$"
"""The JSON Schema pattern of a duration string."""
_DURATION = re.compile(PATTERN[1:-1])
LONGEST = 100 * 365.25 * 86400.0
"""A century: longer is a typo (and 400 digits would be infinite)."""


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise ``ValueError`` on anything that is not a duration."""
    if not _DURATION.fullmatch(text):
        raise ValueError(f"not a duration: {text[:40]!r} (write e.g. 30s, 5m, 4h, 2d, 1h30m)")
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    if seconds > LONGEST:
        raise ValueError(f"{text[:40]!r} is longer than a century")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest readable form of ``seconds``: ``90`` → ``1m30s``."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    rest = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"
