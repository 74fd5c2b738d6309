"""Supervision: run a task, restart it when it crashes, park it when it crashes too often.

Each supervised task is independent: a crash of one never touches another. Restarts back off exponentially
(``initial_backoff`` doubling up to ``max_backoff``); more than ``max_restarts`` crashes within
``restart_window`` parks the task as failed until its configuration changes.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from alphawatch.daemon.clock import Clock
from alphawatch.daemon.config import SupervisorSettings
from alphawatch.daemon.store import is_refusal

log = logging.getLogger("alphawatch.supervisor")

STARTING, RUNNING, BACKOFF, FAILED, STOPPED = "starting", "running", "backoff", "failed", "stopped"
REFUSED_RETRY = 30.0  # seconds at most between two starts of a rule the state file refuses (a full disk)
RULE_STATUSES = (STARTING, RUNNING, BACKOFF, FAILED, STOPPED)


@dataclass
class Supervised:
    """What the API shows of a supervised task."""

    name: str
    status: str = STARTING
    restarts: int = 0
    last_error: str | None = None
    crashes: deque[float] = field(default_factory=deque)


async def supervise(
    state: Supervised,
    run: Callable[[Callable[[], None]], Awaitable[None]],
    settings: SupervisorSettings,
    clock: Clock,
    on_change: Callable[[Supervised], Awaitable[None]],
) -> None:
    """Run ``run(started)`` until it returns or is cancelled, restarting it on exceptions.

    ``run`` calls ``started()`` once it is healthy; ``on_change`` hears every status change.
    """
    backoff = settings.initial_backoff
    while True:
        began = clock.now()

        def started() -> None:
            state.status = RUNNING

        try:
            await run(started)
            state.status = STOPPED
            await on_change(state)
            return
        except Exception as exc:
            now = clock.now()
            state.last_error = f"{type(exc).__name__}: {exc}"
            state.restarts += 1
            if now - began > settings.max_backoff:
                backoff = settings.initial_backoff  # it ran healthily for a while: start the backoff over
            wait = backoff
            if _refused(exc):  # a full disk is not the rule's fault: it waits for the file, never parked for it
                wait = min(backoff, REFUSED_RETRY)
                log.warning(
                    "rule stopped: the state file refuses its writes; it starts again",
                    extra={"rule": state.name, "error": state.last_error, "retry_in": wait},
                )
            else:
                log.error(
                    "rule crashed",
                    extra={"rule": state.name, "error": state.last_error, "restarts": state.restarts},
                    exc_info=exc,
                )
                state.crashes.append(now)
                while state.crashes and state.crashes[0] < now - settings.restart_window:
                    state.crashes.popleft()
                if len(state.crashes) > settings.max_restarts:
                    state.status = FAILED
                    log.error("rule parked as failed", extra={"rule": state.name, "restarts": state.restarts})
                    await on_change(state)
                    await trio.sleep_forever()
            state.status = BACKOFF
            await on_change(state)
            await clock.sleep_until(now + wait)
            backoff = min(backoff * 2, settings.max_backoff)
            state.status = STARTING


def _refused(exc: BaseException) -> bool:
    """The state file refused the work (a full disk), also when it came through a nursery."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_refused(e) for e in exc.exceptions)
    return is_refusal(exc)
