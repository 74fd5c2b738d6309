"""A real HTTP receiver on 127.0.0.1 for channel and end-to-end tests.

It runs a stdlib server in a thread, so it serves trio tests and a daemon subprocess alike. Every request is
recorded; ``responses`` scripts the status codes (and optional delays) to answer with, one per request, the
last one repeating.
"""

from __future__ import annotations

import json
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records requests; answers with ``responses`` in turn: (status, delay seconds, body)."""

    responses: list[tuple[int, float, bytes]] = field(default_factory=lambda: [(200, 0.0, b"{}")])
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    choose: Callable[[bytes], int] | None = None
    """When set: the status for each request from its body (``responses`` then only give delay and reply)."""
    _server: ThreadingHTTPServer | None = None

    def answer(self, *statuses: int, delay: float = 0.0) -> None:
        with self.lock:
            self.responses = [(s, delay, b"{}") for s in statuses]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Request]:
        """Block until ``count`` requests arrived (a thread-blocking wait, for subprocess tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.01)
        raise AssertionError(f"expected {count} requests within {timeout}s, got {len(self.requests)}")

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request (kill -9): nothing was delivered
                    return
                with receiver.lock:
                    index = len(receiver.requests)
                    receiver.requests.append(
                        Request("POST", self.path, dict(self.headers.items()), body, time.monotonic())
                    )
                    status, delay, reply = receiver.responses[min(index, len(receiver.responses) - 1)]
                    if receiver.choose is not None:
                        status = receiver.choose(body)
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_PUT = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()


def quiet_disconnects(server: socketserver.BaseServer) -> None:
    """Print no traceback when a client hung up before its answer (the timeout tests do so on purpose)."""
    default = server.handle_error

    def handle_error(request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            default(request, client_address)

    setattr(server, "handle_error", handle_error)  # noqa: B010 - mypy refuses assigning to a method


@contextmanager
def module_receiver() -> Iterator[tuple[Receiver, Any]]:
    """One quiet receiver for a whole test module (stopping one takes half a second: the stdlib's poll interval),
    with its original request handler, for :func:`reset`."""
    with Receiver() as receiver:
        assert receiver._server is not None
        quiet_disconnects(receiver._server)
        yield receiver, receiver._server.RequestHandlerClass


@pytest.fixture(scope="module")
def shared_receiver() -> Iterator[tuple[Receiver, Any]]:
    with module_receiver() as shared:
        yield shared


@pytest.fixture(name="receiver")
def reused_receiver(shared_receiver: tuple[Receiver, Any]) -> Receiver:
    """``receiver`` for modules that import this (and ``shared_receiver``): the module's one, reset per test."""
    return reset(shared_receiver, 200)


def reset(shared: tuple[Receiver, Any], status: int = 200) -> Receiver:
    """The module's receiver made new for a test: no requests, answering ``status``, the original handler."""
    receiver, handler = shared
    assert receiver._server is not None
    receiver._server.RequestHandlerClass = handler
    with receiver.lock:
        receiver.requests.clear()
        receiver.responses = [(status, 0.0, b"{}")]
        receiver.choose = None
    return receiver


def add_retry_after(receiver: Receiver, seconds: str) -> None:
    """Make ``receiver`` send ``Retry-After`` with its 429 and 503 answers (it sends no headers of choice)."""
    assert receiver._server is not None
    handler: Any = receiver._server.RequestHandlerClass

    class RetryAfter(handler):  # type: ignore[misc]
        def send_response(self, code: int, message: str | None = None) -> None:
            super().send_response(code, message)
            if code in (429, 503):
                self.send_header("Retry-After", seconds)

    receiver._server.RequestHandlerClass = RetryAfter
