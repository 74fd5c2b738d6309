"""Fan-out of live events to Server-Sent Events subscribers, one bounded channel each.

A subscriber that cannot keep up is dropped (its browser reconnects), so a slow page never holds the daemon
back. :meth:`Broadcaster.close` ends every stream, which shutdown calls before stopping the web server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

QUEUE = 256


class Broadcaster:
    def __init__(self) -> None:
        self._subscribers: set[trio.MemorySendChannel[dict[str, Any]]] = set()
        self._closed = False

    def publish(self, event: dict[str, Any]) -> None:
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(channel)
                channel.close()

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[trio.MemoryReceiveChannel[dict[str, Any]]]:
        send, receive = trio.open_memory_channel[dict[str, Any]](QUEUE)
        if self._closed:
            send.close()
        else:
            self._subscribers.add(send)
        try:
            yield receive
        finally:
            self._subscribers.discard(send)
            send.close()
            receive.close()

    def close(self) -> None:
        self._closed = True
        for channel in self._subscribers:
            channel.close()
        self._subscribers.clear()

    def __len__(self) -> int:
        """How many streams are subscribed."""
        return len(self._subscribers)
