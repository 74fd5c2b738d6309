"""The channels' HTTP client: a receiver that answers in two segments is not held up by delayed ACKs."""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from alphawatch.channels._base import DeliveryError
from alphawatch.channels._transport import exchange, http_client
from alphawatch.channels.webhook import post
from tests.http_receiver import Receiver
from tests.tls import server_context


async def test_a_receiver_answering_headers_then_body_answers_without_the_40_ms_stall(receiver: Receiver) -> None:
    # the receiver writes the headers, then the body, with Nagle's algorithm on (Python's http.server does):
    # unless each segment is acknowledged at once, every exchange waits for Linux's delayed ACK (about 40 ms)
    async with http_client(httpx.Limits()) as http:
        assert (await http.post(f"{receiver.url}/warm", content=b"{}")).status_code == 200
        began = time.monotonic()
        for _ in range(10):
            assert (await http.post(f"{receiver.url}/hook", content=b"{}")).status_code == 200
        elapsed = time.monotonic() - began
    assert elapsed < 0.25, f"10 exchanges took {elapsed:.3f} s"
    assert len(receiver.requests) == 11


async def test_a_proxy_in_the_environment_is_used(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", receiver.url)
    monkeypatch.setenv("NO_PROXY", "")
    async with http_client(httpx.Limits()) as http:
        assert (await http.post("http://hooks.example.invalid/alert", content=b"{}")).status_code == 200
    (request,) = receiver.requests
    assert request.path == "http://hooks.example.invalid/alert"  # the absolute form a proxy is sent


async def test_a_notification_goes_to_the_transport_unless_a_proxy_is_set(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with http_client(httpx.Limits()) as http:
        response = await exchange(http, httpx.Request("POST", f"{receiver.url}/hook", content=b'{"a": 1}'))
        assert response.status_code == 200
        assert response.is_closed  # the answer is read whole: the connection is free for the next one
    monkeypatch.setenv("HTTP_PROXY", receiver.url)
    monkeypatch.setenv("NO_PROXY", "")
    async with http_client(httpx.Limits()) as http:
        request = httpx.Request("POST", "http://hooks.example.invalid/alert", content=b"{}")
        assert (await exchange(http, request)).status_code == 200
    first, through_proxy = receiver.requests
    assert (first.path, first.body) == ("/hook", b'{"a": 1}')
    assert through_proxy.path == "http://hooks.example.invalid/alert"


async def test_credentials_in_a_url_are_sent_as_basic_auth(receiver: Receiver) -> None:
    url = receiver.url.replace("http://", "http://desk:s3cret@") + "/hook"
    async with http_client(httpx.Limits()) as http:
        assert (await exchange(http, httpx.Request("POST", url, content=b"{}"))).status_code == 200
    (request,) = receiver.requests
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"desk:s3cret").decode()


@contextmanager
def https_receiver(certificate: Path) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def handle(self) -> None:
            with contextlib.suppress(OSError):  # a client that refused our certificate hangs up in the handshake
                super().handle()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = server_context(certificate).wrap_socket(server.socket, server_side=True)
    server.handle_error = lambda *_: None  # type: ignore[method-assign]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_tls_is_verified_against_the_certificates_loaded_at_the_first_connection(
    certificate: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with https_receiver(certificate) as url:
        async with http_client(httpx.Limits()) as http:  # certifi's bundle does not trust a self-signed certificate
            with pytest.raises(httpx.ConnectError) as refused:
                await http.post(f"{url}/hook", content=b"{}")
            causes: list[BaseException] = []
            error: BaseException | None = refused.value
            while error is not None:
                causes.append(error)
                error = error.__cause__ or error.__context__
            assert any("CERTIFICATE_VERIFY_FAILED" in repr(c) for c in causes), causes
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate))  # read when the first connection is made
        async with http_client(httpx.Limits()) as http:
            assert (await http.post(f"{url}/hook", content=b"{}")).status_code == 200


@contextmanager
def raw_receiver(answer: Callable[[socket.socket], None]) -> Iterator[tuple[str, list[str]]]:
    """A receiver that reads a request's head and body, then lets ``answer`` write to the socket as it likes."""
    listener = socket.create_server(("127.0.0.1", 0))
    outcomes: list[str] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(
                    next(
                        v
                        for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
                        if k.lower() == b"content-length"
                    )
                )
                while len(body) < length:
                    body += conn.recv(65536)
                try:
                    answer(conn)
                    outcomes.append("answered")
                except OSError:
                    outcomes.append("client hung up")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook", outcomes
    finally:
        listener.close()
        thread.join(10)


async def test_an_answer_trickling_in_is_cut_off_at_the_channel_timeout() -> None:
    def trickle(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(100):  # 10 s of one byte every 0.1 s: each read is quick, the whole answer is not
            conn.sendall(b"x")
            time.sleep(0.1)

    with raw_receiver(trickle) as (url, outcomes):
        async with http_client(httpx.Limits()) as http:
            began = time.monotonic()
            with pytest.raises(DeliveryError, match=r"timed out after 0\.5s"):
                await post(http, url, b"{}", {"Content-Type": "application/json"}, 0.5)
            assert time.monotonic() - began < 2
    assert outcomes == ["client hung up"]


async def test_a_huge_answer_is_not_read_to_its_end() -> None:
    def huge(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")
        chunk = b"x" * 65536
        for _ in range(16384):  # 1 GiB, unless the client hangs up first
            conn.sendall(chunk)

    with raw_receiver(huge) as (url, outcomes):
        async with http_client(httpx.Limits()) as http:
            began = time.monotonic()
            await post(http, url, b"{}", {"Content-Type": "application/json"}, 10)  # delivered: a 200
            assert time.monotonic() - began < 5
    assert outcomes == ["client hung up"]
