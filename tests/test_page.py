"""The live status page in a real headless Chromium: it lists rules and alerts, updates over Server-Sent Events
without a reload, shows Traditional Chinese, and never interprets a label value as HTML."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.chromium import Browser, chromium_path
from tests.daemon_harness import TOKEN, DaemonProcess, daemon_process

CONFIG = f"""
daemon:
  state: state.db
  listen: 127.0.0.1:0
  tokens: {{ingest: {TOKEN}, admin: {TOKEN}}}
rules:
  - {{name: exposure, kind: threshold, metric: gross, op: above, value: 1.5, severity: critical}}
  - {{name: feed, kind: absence, metric: heartbeat, absent_for: 1h}}
"""

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="Chromium is not installed: scripts/install --test")


@pytest.fixture
def browser() -> Iterator[Browser]:
    running = Browser()
    try:
        yield running
    finally:
        running.close()


def push(daemon: DaemonProcess, value: float, **labels: str) -> None:
    sample = {"metric": "gross", "labels": labels, "ts": time.time(), "value": value}
    assert daemon.post("/api/v1/samples", [sample]).status_code == 200


def test_the_page_updates_live_and_escapes_labels(
    write_config: Callable[..., Path], browser: Browser, tmp_path: Path
) -> None:
    with daemon_process(write_config(CONFIG)) as daemon:
        browser.open(daemon.url + "/")
        browser.wait_for("document.querySelector('#conn').className === 'live'")
        rules = browser.wait_for("[...document.querySelectorAll('#rules tbody tr')].map(r => r.dataset.rule)")
        assert rules == ["exposure", "feed"]
        assert browser.evaluate("document.querySelector('#no-alerts').hidden") is False

        hostile = '<img src=x onerror="document.title=1">'
        push(daemon, 1.9, model=hostile)
        row = browser.wait_for("document.querySelector('#alerts tbody tr')?.innerText")
        assert "exposure" in row
        assert browser.evaluate("document.querySelector('#alerts tbody td').textContent") == "critical"
        assert f"model={hostile}" in row  # shown as text
        assert browser.evaluate("document.querySelectorAll('#alerts img').length") == 0
        assert browser.evaluate("document.title") == "alphawatch"

        push(daemon, 1.0, model=hostile)  # resolves: the row goes away, again without a reload
        browser.wait_for("document.querySelectorAll('#alerts tbody tr').length === 0")
        assert browser.evaluate("performance.getEntriesByType('navigation').length") == 1
        browser.screenshot(str(tmp_path / "page.png"))


def test_the_page_speaks_traditional_chinese(write_config: Callable[..., Path], browser: Browser) -> None:
    with daemon_process(write_config(CONFIG)) as daemon:
        push(daemon, 1.9, model="a7")
        browser.open(daemon.url + "/?lang=zh-TW")
        row = browser.wait_for("document.querySelector('#alerts tbody tr')?.innerText")
        assert "嚴重" in row
        assert "觸發中" in row
        assert browser.evaluate("document.querySelector('#h-rules').textContent") == "規則"
        assert browser.evaluate("document.documentElement.lang") == "zh-Hant-TW"
        assert browser.evaluate("document.querySelector('#rules tbody tr td:nth-child(3)').textContent") == "執行中"
        browser.open(daemon.url + "/?lang=zh_tw")  # any spelling of the tag
        assert browser.wait_for("document.querySelector('#h-rules').textContent") == "規則"


def test_the_page_shows_values_as_sent_follows_them_and_says_what_holds_an_alert(
    write_config: Callable[..., Path], browser: Browser
) -> None:
    with daemon_process(write_config(CONFIG)) as daemon:
        push(daemon, 150000, model="a7")
        browser.open(daemon.url + "/#rule=exposure")
        value = "document.querySelector('#alerts tbody td.num')?.textContent"
        assert browser.wait_for(value) == "150000"  # (was "15": the zeros of the integer were cut)
        assert browser.evaluate("document.querySelector('#alerts tbody tr').classList.contains('target')")
        other = "document.querySelector('#rules tr[data-rule=feed]').classList.contains('target')"
        assert browser.evaluate(other) is False

        push(daemon, 2.25, model="a7")  # still firing, a new value: shown without a state change
        browser.wait_for(f"{value} === '2.25'")
        (alert,) = daemon.get("/api/v1/alerts")["alerts"]
        shown = browser.evaluate("document.querySelector('#alerts tbody td.id').textContent")
        assert shown == alert["fingerprint"]  # the ID `alphawatch ack` and `why` take
        acked = daemon.post(f"/api/v1/alerts/{alert['fingerprint']}/ack", {"by": "mei", "comment": "on it"})
        assert acked.status_code == 201
        state = "document.querySelector('#alerts tbody td:nth-child(3)').innerText"
        assert "acknowledged by mei" in browser.wait_for(f"{state}.includes('mei') && {state}")
        taken = daemon.post(f"/api/v1/alerts/{alert['fingerprint']}/ack", {"by": "jun", "comment": "handover"})
        assert taken.status_code == 201
        assert "acknowledged by jun, mei" in browser.wait_for(f"{state}.includes('jun') && {state}")
        silence = {"matchers": ["model=a7"], "ends_at": time.time() + 3600, "created_by": "mei", "comment": "deploy"}
        assert daemon.post("/api/v1/silences", silence).status_code == 201
        assert "silenced" in browser.wait_for(f"{state}.includes('silenced') && {state}")
        row = daemon.get("/api/v1/alerts")["alerts"][0]
        assert (row["ack"]["by"], [e["by"] for e in row["ack"]["earlier"]]) == ("jun", ["mei"])
        assert row["suppressed"]["kind"] == "silence"


def test_the_page_reconnects_after_a_proxy_answered_502_while_the_daemon_restarted(
    write_config: Callable[..., Path], browser: Browser
) -> None:
    """A browser gives up on an event stream answered with anything but a stream: the page starts it again."""
    import socket
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Event, Thread

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stream_refused = Event()
    path = write_config(CONFIG.replace("127.0.0.1:0", f"127.0.0.1:{port}"))

    class BadGateway(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.endswith("/api/v1/events"):
                stream_refused.set()
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with daemon_process(path) as daemon:
        browser.open(daemon.url + "/")
        browser.wait_for("document.querySelector('#conn').className === 'live'")
        daemon.stop()
        proxy = ThreadingHTTPServer(("127.0.0.1", port), BadGateway)
        Thread(target=proxy.serve_forever, daemon=True).start()
        try:
            assert stream_refused.wait(15), "the browser's own retry (2 s) meets the 502, and closes the stream"
        finally:
            proxy.shutdown()
            proxy.server_close()
        daemon.start()
        push(daemon, 1.9, model="back")
        row = browser.wait_for("document.querySelector('#alerts tbody tr')?.innerText", timeout=15)
        assert "model=back" in row
