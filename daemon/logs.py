"""Structured JSON logs on stderr, one object per line (journald keeps them whole), secrets redacted."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from alphawatch.daemon.redact import Redactor

_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redact = Redactor(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        self.redact = Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = self.formatException(record.exc_info)
        try:
            text = json.dumps(entry, ensure_ascii=False, default=str, allow_nan=False)
        except ValueError:  # a NaN or an infinity: JSON has none, and `jq` would drop the whole line
            text = json.dumps(_finite(entry), ensure_ascii=False, default=str)
        return self.redact(text)


def setup_logging(level: str, secrets: Iterable[str] = ()) -> JsonFormatter:
    formatter = JsonFormatter(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger("alphawatch")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    logging.captureWarnings(True)  # a library's warning (numpy on odd data) is a JSON line too, not bare text
    for noisy in ("hypercorn.error", "hypercorn.access", "py.warnings"):
        logging.getLogger(noisy).handlers[:] = [handler]
        logging.getLogger(noisy).setLevel("WARNING")
        logging.getLogger(noisy).propagate = False
    return formatter


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class Quieter:
    """What fails once fails for everything (a channel down, a full disk): one log line per kind and key (a
    channel, say) every ``every`` seconds, the first at once, each saying how many like it were not logged."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._last: dict[tuple[str, str], float] = {}
        self._unlogged: Counter[tuple[str, str]] = Counter()

    def allow(self, kind: str, channel: str, now: float | None = None) -> int | None:
        """``None``: do not log this one; else log it, with the number not logged since the last."""
        now = time.monotonic() if now is None else now
        key = (kind, channel)
        if now - self._last.get(key, -math.inf) < self.every:
            self._unlogged[key] += 1
            return None
        self._last[key] = now
        return self._unlogged.pop(key, 0)

    def held_back(self) -> dict[str, int]:
        """Failures not logged yet, by channel (at a stop: no later line will count them); forgets them."""
        out: dict[str, int] = {}
        for (_, channel), count in self._unlogged.items():
            out[channel] = out.get(channel, 0) + count
        self._unlogged.clear()
        return out

    def done(self, channel: str) -> int:
        """The channel works again: how many of its failures were not logged (a failure soon after is still
        held back: a receiver failing now and then must not log two lines for each)."""
        return sum(self._unlogged.pop(key, 0) for key in list(self._unlogged) if key[1] == channel)
