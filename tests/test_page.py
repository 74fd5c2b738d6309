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
