"""The daemon in-process (store, engine, outbox and the ASGI app), or as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from alphawatch.channels._transport import http_client
from alphawatch.daemon.clock import Clock
from alphawatch.daemon.config import load_config
from alphawatch.daemon.main import HTTP_LIMITS, Daemon
from alphawatch.daemon.sdnotify import Notifier
from alphawatch.daemon.store import open_store
from alphawatch.daemon.suppression import Suppressions
from alphawatch.web.app import create_app

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@asynccontextmanager
async def in_process(path: Path, clock: Clock | None = None) -> AsyncIterator[tuple[Daemon, httpx.AsyncClient]]:
    """A daemon without its web server: requests go straight to the ASGI app."""
    config = load_config(path)
    async with open_store(config.daemon.state) as store, http_client(HTTP_LIMITS) as http:
        daemon = Daemon(path, config, store, clock or Clock(), Notifier({}), None)
        daemon.suppressions = daemon.engine.suppressions = await Suppressions.load(store, config.inhibit_rules)
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.engine.run)
            await nursery.start(daemon.outbox.run, http)
            transport = httpx.ASGITransport(app=create_app(daemon))
            async with httpx.AsyncClient(transport=transport, base_url="http://alphawatch") as client:
                yield daemon, client
            nursery.cancel_scope.cancel()


@dataclass
class DaemonProcess:
    """``alphawatch run`` as a subprocess; its JSON log lines are collected as they arrive."""

    config: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[str] | None = None
    url: str = ""
    logs: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _reader: threading.Thread = field(default_factory=threading.Thread)

    def start(self, timeout: float = 20.0) -> DaemonProcess:
        self.logs.clear()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "alphawatch.daemon.cli", "run", "-c", str(self.config)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **self.env},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        ready = self.wait_log("alphawatch ready", timeout=timeout)
        self.url = ready["listen"][0]
        return self

    def _read(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"msg": line.rstrip(), "raw": True}
            with self._lock:
                self.logs.append(entry)

    def wait_log(self, message: str, timeout: float = 10.0, after: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for entry in self.logs[after:]:
                    if message in entry.get("msg", ""):
                        return entry
            if self.process is not None and self.process.poll() is not None and not self._pending(message, after):
                raise AssertionError(f"daemon exited ({self.process.returncode}) before {message!r}: {self.logs}")
            time.sleep(0.01)
        raise AssertionError(f"no log line {message!r} within {timeout}s: {self.logs[-10:]}")

    def _pending(self, message: str, after: int) -> bool:
        time.sleep(0.1)  # the reader thread may still hold lines the process wrote before exiting
        with self._lock:
            return any(message in entry.get("msg", "") for entry in self.logs[after:])

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._finish()
        return code

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
        self._finish()

    def _finish(self) -> None:
        """The process has exited: collect its last log lines and close the pipe."""
        assert self.process is not None
        self._reader.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def post(self, path: str, body: Any, token: str = TOKEN) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    def get(self, path: str) -> Any:
        response = httpx.get(self.url + path, timeout=10)
        response.raise_for_status()
        return response.json()


@contextmanager
def daemon_process(config: Path, env: dict[str, str] | None = None) -> Iterator[DaemonProcess]:
    running = DaemonProcess(config, env or {}).start()
    try:
        yield running
    finally:
        if running.process is not None:
            if running.process.poll() is None:
                running.process.kill()
                running.process.wait(10)
            running._finish()
