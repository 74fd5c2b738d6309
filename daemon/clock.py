"""Wall-clock time the daemon can sleep until, real or driven by trio's ``MockClock`` in tests.

Stored timestamps are UTC epoch seconds (``time.time()``); trio's own clock has a random offset and is only used
to sleep. :class:`TrioClock` maps trio time to wall time from one anchor, so a test's ``autojump_clock`` moves
the daemon's wall clock too.
"""

from __future__ import annotations

import math
import time

import trio


class Clock:
    """The real clock: ``now()`` is ``time.time()``; sleeping re-checks the wall clock when it wakes."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, wall: float | None) -> None:
        """Sleep until the wall clock reads ``wall`` (forever when ``None``)."""
        if wall is None:
            await trio.sleep_forever()
        while (left := wall - self.now()) > 0:  # noqa: ASYNC110 - the wall clock can lag the monotonic one
            await trio.sleep(left)

    def trio_deadline(self, wall: float | None) -> float:
        """The trio deadline of a wall instant, for ``move_on_at``."""
        if wall is None:
            return math.inf
        return trio.current_time() + max(0.0, wall - self.now())


class TrioClock(Clock):
    """Wall time that advances with trio's clock (for tests under ``MockClock``)."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._wall0 = start
        self._trio0 = trio.current_time()

    def now(self) -> float:
        return self._wall0 + (trio.current_time() - self._trio0)

    async def sleep_until(self, wall: float | None) -> None:
        if wall is None:
            await trio.sleep_forever()
        await trio.sleep_until(self.trio_deadline(wall))
