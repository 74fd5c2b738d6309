"""The HTTP client every channel sends with: httpx over trio, acknowledging each response segment at once.

Many small receivers (anything built on Python's ``http.server``, for one) write the status line and headers,
then the body, as two segments with Nagle's algorithm on: the body waits until the headers are acknowledged,
and Linux delays that acknowledgement by up to 40 ms. Each notification then takes 40 ms to complete and holds
a connection (and a slot of the channel's ``concurrency``) that long. Re-arming ``TCP_QUICKACK`` before each
read acknowledges at once: the same exchange takes well under a millisecond on loopback.
"""

# ruff: noqa: ASYNC109 - the timeout parameters are httpcore's network interface, not ours to change

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import urllib.request
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

if TYPE_CHECKING:
    from httpcore._backends.base import SOCKET_OPTION

_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only; elsewhere nothing changes


def http_client(limits: httpx.Limits) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose connections acknowledge every segment they receive without delay.

    With a proxy in the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``) it is httpx's own client,
    which honours those and ``NO_PROXY``: a transport of ours would bypass them.
    """
    if any(scheme != "no" for scheme in urllib.request.getproxies()):
        return ChannelClient(limits)
    return ChannelClient(limits, QuickAckTransport(limits))


class ChannelClient(httpx.AsyncClient):
    """The channels' client. A notification needs none of what the client adds around an exchange (cookies,
    authentication, redirects, event hooks): :func:`exchange` hands it to the transport, a sixth less CPU per
    notification (``bench/bench_request_costs.py``)."""

    def __init__(self, limits: httpx.Limits, direct: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(limits=limits, transport=direct)
        self.direct = direct  # None: the client's own transports (proxies)


ANSWER_READ_AT_MOST = 64 * 1024
"""A notification's answer counts by its status and headers: a body announced longer than this is not read, and
its connection is closed instead (a huge answer costs no memory; one of unknown length is read, within the
channel's timeout)."""


async def exchange(http: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """Send ``request``; its answer's status and headers, with the body read (see :data:`ANSWER_READ_AT_MOST`) and
    the connection released."""
    direct = http.direct if isinstance(http, ChannelClient) else None
    if http.is_closed:
        raise RuntimeError("the channels' HTTP client is closed")
    if direct is None or request.url.userinfo:  # (credentials in the URL: the client turns them into Basic auth)
        response = await http.send(request, stream=True)
    else:
        response = await direct.handle_async_request(request)
    try:
        length = response.headers.get("content-length", "")
        if not length.isdigit() or int(length) <= ANSWER_READ_AT_MOST:
            await response.aread()
    finally:
        await response.aclose()
    return response


class QuickAckTransport(httpx.AsyncHTTPTransport):
    def __init__(self, limits: httpx.Limits) -> None:
        tls = LazyTrustContext(ssl.PROTOCOL_TLS_CLIENT)  # one for every connection, certificates loaded once
        super().__init__(limits=limits, verify=tls)
        # httpx takes no network backend: its pool is replaced by the same pool with ours (httpx keeps mapping
        # the pool's errors to its own, which channels rely on)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=QuickAckBackend(),
        )


class LazyTrustContext(ssl.SSLContext):
    """A client TLS context (certificates and host names verified) that loads the CA certificates when its first
    connection is made: 1.5 MiB that a daemon without an ``https`` channel never needs. The certificates are
    httpx's: ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when set, else certifi's bundle."""

    _trusting = False

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self._trust()
        return super().wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self._trust()
        return super().wrap_socket(*args, **kwargs)

    def _trust(self) -> None:
        if self._trusting:
            return
        if os.environ.get("SSL_CERT_FILE"):
            self.load_verify_locations(cafile=os.environ["SSL_CERT_FILE"])
        elif os.environ.get("SSL_CERT_DIR"):
            self.load_verify_locations(capath=os.environ["SSL_CERT_DIR"])
        else:
            import certifi

            self.load_verify_locations(cafile=certifi.where())
        self._trusting = True


class QuickAckBackend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.TrioBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return QuickAckStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class QuickAckStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket = inner.get_extra_info("socket") if _QUICKACK is not None else None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._socket is not None:
            with contextlib.suppress(OSError):  # the kernel clears it again by itself: re-armed before each read
                self._socket.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return QuickAckStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)
