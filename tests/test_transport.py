"""The channels' HTTP client: a receiver that answers in two segments is not held up by delayed ACKs."""

from __future__ import annotations

import time

import httpx
import pytest

from alphawatch.channels._transport import http_client
from tests.http_receiver import Receiver


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
