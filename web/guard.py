"""What every response carries and which ``Host`` the daemon answers: hardening below the routes.

Read endpoints are open (the page, the API's GETs), so a daemon on loopback must not answer a request that a web
page in the operator's browser made through a name it controls and pointed at 127.0.0.1 (DNS rebinding): it
answers only the loopback names and the host of ``daemon.external_url``.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_NOSNIFF = (b"x-content-type-options", b"nosniff")


@lru_cache(maxsize=8)
def allowed_hosts(listen_host: str, external_url: str) -> frozenset[str] | None:
    """The host names a daemon listening on ``listen_host`` answers; ``None`` (any) unless that is loopback."""
    try:
        loopback = listen_host == "localhost" or ipaddress.ip_address(listen_host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return None  # on the network on purpose: a proxy may use any name
    external = urlsplit(external_url).hostname if external_url else None
    return LOOPBACK_NAMES | {listen_host} | ({external.lower()} if external else set())


def hardened(app: App, hosts: Callable[[], frozenset[str] | None]) -> App:
    """``app`` with ``X-Content-Type-Options: nosniff`` on every response, and a 421 JSON error for a ``Host``
    outside ``hosts()`` (asked for each request: a reload may change ``external_url``; ``None``: any)."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        allowed = hosts()
        if allowed is not None:
            host = _host(scope)
            if host and host not in allowed:  # (none at all: an HTTP/1.0 probe; a browser always sends one)
                await _refuse(send, host)
                return

        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), _NOSNIFF]
            await send(message)

        await app(scope, receive, send_hardened)

    return guarded


def _host(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"host":
            text: str = value.decode("latin-1").strip().lower()
            if text.startswith("["):  # [::1]:9464
                return text[1 : text.find("]")] if "]" in text else text
            return text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    return ""


async def _refuse(send: Send, host: str) -> None:
    body = json.dumps({"error": f"this daemon does not answer to the host {host[:100]!r}: use 127.0.0.1 or "
                       "localhost, or set daemon.external_url to the name a proxy uses"}).encode()  # fmt: skip
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), _NOSNIFF]
    await send({"type": "http.response.start", "status": 421, "headers": headers})
    await send({"type": "http.response.body", "body": body})
