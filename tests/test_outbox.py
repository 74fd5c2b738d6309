"""Delivery from the durable outbox to a real HTTP receiver: retries with backoff, dead letters, idempotency."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio

from alphawatch.daemon.store import Outgoing
from tests.daemon_harness import AUTH, TOKEN, in_process
from tests.http_receiver import Receiver, add_retry_after


def config_text(receiver: Receiver, delivery: str) -> str:
    return f"""
daemon:
  state: state.db
  tokens: {{ingest: {TOKEN}, admin: {TOKEN}}}
  delivery: {delivery}
channels:
  - {{name: hook, kind: webhook, url: "{receiver.url}/hook", timeout: 1s}}
route: {{channels: [hook], group_wait: 0s, group_interval: 1s, group_by: ['...']}}
rules:
  - {{name: exposure, kind: threshold, metric: gross, op: above, value: 1.5}}
"""


async def fire(client: Any) -> None:
    sample = {"metric": "gross", "labels": {}, "ts": time.time(), "value": 2.0}
    assert (await client.post("/api/v1/samples", json=[sample], headers=AUTH)).status_code == 200


async def wait_for_state(client: Any, state: str) -> dict[str, Any]:
    with trio.fail_after(10):
        while True:
            rows = (await client.get(f"/api/v1/notifications?state={state}")).json()["notifications"]
            if rows:
                return dict(rows[0])
            await trio.sleep(0.02)


def firing_samples(count: int, metric: str = "gross") -> list[dict[str, Any]]:
    """``count`` samples of ``metric`` over its threshold, one series each."""
    return [{"metric": metric, "labels": {"k": str(i)}, "ts": time.time(), "value": 5.0} for i in range(count)]


async def received(receiver: Receiver, count: int, within: float = 10.0, path: str | None = None) -> None:
    """Wait until ``count`` requests (to ``path``, when given) have reached ``receiver``."""
    with trio.fail_after(within):
        while sum(path is None or r.path == path for r in receiver.requests) < count:
            await trio.sleep(0.02)


async def retried_until_delivered(client: Any, receiver: Receiver) -> tuple[dict[str, Any], list[float]]:
    """Fire one alert and wait for its notification to be delivered: its row, and the gaps between attempts."""
    await fire(client)
    delivered = await wait_for_state(client, "delivered")
    return delivered, [b.received_at - a.received_at for a, b in itertools.pairwise(receiver.requests)]


async def test_failures_are_retried_with_growing_backoff_and_the_same_key(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    receiver.answer(503, 500, 502, 200)
    path = write_config(config_text(receiver, "{initial_backoff: 100ms, max_backoff: 1s}"))
    async with in_process(path) as (_, client):
        delivered, gaps = await retried_until_delivered(client, receiver)
        assert delivered["attempts"] == 4
        requests = receiver.requests
        assert len(requests) == 4
        assert len({r.headers["Idempotency-Key"] for r in requests}) == 1
        # backoff 100, 200, 400 ms, each with jitter in [50%, 100%]
        assert 0.04 < gaps[0] < 0.3
        assert 0.09 < gaps[1] < 0.45
        assert 0.19 < gaps[2] < 0.7


async def test_a_refusal_goes_straight_to_the_dead_letters(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    receiver.answer(400)
    path = write_config(config_text(receiver, "{initial_backoff: 50ms}"))
    async with in_process(path) as (_, client):
        await fire(client)
        dead = await wait_for_state(client, "dead")
        assert dead["last_error"] == "HTTP 400"
        assert dead["payload"]["alerts"][0]["labels"]["alertname"] == "exposure"
        assert len(receiver.requests) == 1
        health = (await client.get("/health")).json()
        assert health["components"]["outbox"] == {"status": "degraded", "pending": 0, "dead": 1, "dead_last_24h": 1}


async def test_a_notification_older_than_max_age_is_dead_lettered(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    receiver.answer(503)
    path = write_config(config_text(receiver, "{initial_backoff: 50ms, max_backoff: 100ms, max_age: 500ms}"))
    async with in_process(path) as (_, client):
        await fire(client)
        dead = await wait_for_state(client, "dead")
        assert dead["last_error"] == "not delivered within max_age (0.5s); the last attempt: HTTP 503"  # and why
        assert 3 <= len(receiver.requests) <= 12


async def test_a_slow_receiver_times_out_and_is_retried(write_config: Callable[..., Path], receiver: Receiver) -> None:
    receiver.responses = [(200, 3.0, b"{}"), (200, 0.0, b"{}")]
    path = write_config(config_text(receiver, "{initial_backoff: 50ms}"))
    async with in_process(path) as (_, client):
        await fire(client)
        delivered = await wait_for_state(client, "delivered")
        assert delivered["attempts"] == 2
        assert delivered["last_error"] is None


async def test_a_dead_letter_is_reported_to_the_fallback_channel(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    receiver.answer(400, 200)
    text = config_text(receiver, "{initial_backoff: 50ms, fallback_channel: pager}").replace(
        "channels:\n", f'channels:\n  - {{name: pager, kind: webhook, url: "{receiver.url}/pager"}}\n'
    )
    async with in_process(write_config(text)) as (_, client):
        await fire(client)
        await received(receiver, 2)
        report = receiver.requests[1]
        assert report.path == "/pager"
        alert = report.json()["alerts"][0]
        assert alert["labels"] == {"alertname": "AlphawatchNotificationFailed", "severity": "error", "channel": "hook"}
        assert "HTTP 400" in alert["annotations"]["summary"]


def with_a_pager(receiver: Receiver, monkeypatch: pytest.MonkeyPatch, report_every: float) -> str:
    """A configuration whose fallback channel is ``pager`` (on ``receiver``, which takes the dead-letter reports
    and refuses the rest), with dead-letter reports ``report_every`` seconds apart (a minute in the daemon)."""
    monkeypatch.setattr("alphawatch.daemon.outbox.REPORT_EVERY", report_every)
    receiver.choose = lambda body: 200 if b"AlphawatchNotificationFailed" in body else 400
    return config_text(receiver, "{fallback_channel: pager}").replace(
        "channels:\n", f'channels:\n  - {{name: pager, kind: webhook, url: "{receiver.url}/pager"}}\n'
    )


async def test_a_burst_of_dead_letters_is_reported_to_the_fallback_channel_in_one_report(
    write_config: Callable[..., Path], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = with_a_pager(receiver, monkeypatch, report_every=0.5)
    async with in_process(write_config(text)) as (_, client):
        assert (await client.post("/api/v1/samples", json=firing_samples(4), headers=AUTH)).status_code == 200
        await received(receiver, 2, path="/pager", within=5)
        await trio.sleep(0.6)  # nothing more comes
    reports = [r.json()["alerts"][0] for r in receiver.requests if r.path == "/pager"]
    assert len(reports) == 2  # the first at once; the three after it within REPORT_EVERY, together
    assert reports[0]["annotations"]["summary"].startswith("a notification to hook was not delivered: HTTP 400")
    assert reports[1]["annotations"]["summary"].startswith("3 notifications to hook were not delivered: HTTP 400")
    details = reports[1]["details"]
    assert (details["notifications"], details["alerts"], details["alert_names"]) == (3, 3, ["exposure"])
    assert (len(details["outbox_ids"]), details["error"]) == (3, "HTTP 400")


async def test_a_dead_letter_report_waiting_its_time_at_a_stop_goes_after_the_restart(
    write_config: Callable[..., Path], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(with_a_pager(receiver, monkeypatch, report_every=2.0))
    async with in_process(path) as (_, client):
        assert (await client.post("/api/v1/samples", json=firing_samples(4), headers=AUTH)).status_code == 200
        await received(receiver, 1, path="/pager", within=5)
        with trio.fail_after(5):
            while len((await client.get("/api/v1/notifications?state=dead")).json()["notifications"]) < 4:
                await trio.sleep(0.02)
    # stopped with three dead letters told in the report that waits for its time
    assert sum(r.path == "/pager" for r in receiver.requests) == 1
    async with in_process(path) as (_, client):
        more = [{"metric": "gross", "labels": {"k": "after"}, "ts": time.time(), "value": 5.0}]
        assert (await client.post("/api/v1/samples", json=more, headers=AUTH)).status_code == 200
        await received(receiver, 2, path="/pager", within=5)
        await trio.sleep(0.3)  # nothing more comes
    reports = [r.json()["alerts"][0] for r in receiver.requests if r.path == "/pager"]
    # the dead letter after the restart joined the report waiting its time (before: a report of its own, at once)
    assert len(reports) == 2
    assert reports[1]["annotations"]["summary"].startswith("4 notifications to hook were not delivered: HTTP 400")
    assert reports[1]["details"]["notifications"] == 4


async def test_a_dead_letter_report_waiting_its_time_goes_to_the_fallback_a_reload_put_in_place(
    write_config: Callable[..., Path], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = with_a_pager(receiver, monkeypatch, report_every=1.0)
    path = write_config(text)
    async with in_process(path) as (daemon, client):
        assert (await client.post("/api/v1/samples", json=firing_samples(2), headers=AUTH)).status_code == 200
        await received(receiver, 1, path="/pager", within=5)  # the first at once; the second waits its time
        write_config(text.replace("pager", "pager2"))  # the old fallback channel goes
        assert (await daemon.reload("test"))["ok"]
        await received(receiver, 1, path="/pager2", within=5)
    (report,) = [r.json()["alerts"][0] for r in receiver.requests if r.path == "/pager2"]
    assert report["annotations"]["summary"] == "a notification to hook was not delivered: HTTP 400"
    assert report["labels"]["channel"] == "hook"


async def test_a_dead_letter_report_waiting_longer_than_max_age_is_still_sent(
    write_config: Callable[..., Path], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report waiting its time counts max_age from then (it was dead-lettered itself when max_age was shorter)."""
    text = with_a_pager(receiver, monkeypatch, report_every=2.0).replace("pager}", "pager, max_age: 1s}")
    async with in_process(write_config(text)) as (_, client):
        assert (await client.post("/api/v1/samples", json=firing_samples(4), headers=AUTH)).status_code == 200
        await received(receiver, 2, path="/pager", within=4)
        dead = (await client.get("/api/v1/notifications?state=dead")).json()["notifications"]
    assert {row["channel"] for row in dead} == {"hook"}
    reports = [r.json()["alerts"][0] for r in receiver.requests if r.path == "/pager"]
    assert reports[0]["annotations"]["summary"].startswith("a notification to hook was not delivered: HTTP 400")
    assert reports[1]["annotations"]["summary"].startswith("3 notifications to hook were not delivered: HTTP 400")
    told = [r["annotations"]["description"].split("outbox id")[1].lstrip("s ").split(", ") for r in reports]
    assert sorted(int(i) for ids in told for i in ids) == sorted(row["id"] for row in dead)


async def test_a_channel_rate_limit_spaces_deliveries(write_config: Callable[..., Path], receiver: Receiver) -> None:
    text = config_text(receiver, "{initial_backoff: 50ms}").replace("timeout: 1s}", "timeout: 1s, rate_limit: 2/s}")
    text = text.replace("value: 1.5}", "value: 1.5}\n  - {name: e2, kind: threshold, metric: g2, op: above, value: 1}")
    async with in_process(write_config(text)) as (_, client):
        samples = firing_samples(2) + firing_samples(2, "g2")
        assert (await client.post("/api/v1/samples", json=samples, headers=AUTH)).status_code == 200
        await received(receiver, 4)
        times = sorted(r.received_at for r in receiver.requests)
        assert times[2] - times[0] >= 0.95  # the third waits for the first to leave the one-second window


async def test_a_backlog_beyond_the_channels_queue_is_all_sent_at_most_concurrency_at_a_time(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    """30 notifications for a channel with 2 senders: its queue holds 8, the rest wait in the table."""
    receiver.answer(200, delay=0.1)
    text = config_text(receiver, "{}").replace("timeout: 1s}", "timeout: 1s, concurrency: 2}")
    async with in_process(write_config(text)) as (_, client):
        samples = firing_samples(30)
        assert (await client.post("/api/v1/samples", json=samples, headers=AUTH)).status_code == 200
        await received(receiver, 30)
    keys = {r.headers["Idempotency-Key"] for r in receiver.requests}
    assert len(keys) == 30  # each group once
    times = sorted(r.received_at for r in receiver.requests)
    assert max(sum(t <= u < t + 0.09 for u in times) for t in times) <= 2  # each answer takes 0.1 s


async def test_a_retry_for_one_channel_is_not_held_up_by_anothers_backlog(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    """600 notifications wait for a channel sending ten a second; the pager's retry is read past them."""
    paged: list[bytes] = []

    def choose(body: bytes) -> int:  # the pager's first attempt fails
        if b'"receiver":"pager"' not in body:
            return 200
        paged.append(body)
        return 503 if len(paged) == 1 else 200

    receiver.choose = choose
    text = config_text(receiver, "{initial_backoff: 50ms, max_backoff: 100ms}")
    text = text.replace("timeout: 1s}", "timeout: 1s, rate_limit: 10/s, concurrency: 1}")
    pager = f'  - {{name: pager, kind: webhook, url: "{receiver.url}/pager"}}\n'
    text = text.replace("channels:\n", "channels:\n" + pager)
    paging = "routes: [{matchers: [alertname=page], channels: [pager]}]"
    text = text.replace("group_by: ['...']}", f"group_by: ['...'], {paging}}}")
    text += "  - {name: page, kind: threshold, metric: g2, op: above, value: 1}\n"
    async with in_process(write_config(text)) as (_, client):
        bulk = firing_samples(600)
        assert (await client.post("/api/v1/samples", json=bulk, headers=AUTH)).status_code == 200
        await trio.sleep(0.5)
        page = [{"metric": "g2", "labels": {}, "ts": time.time(), "value": 5.0}]
        assert (await client.post("/api/v1/samples", json=page, headers=AUTH)).status_code == 200
        # its retry: not after the minute the other channel needs for its backlog
        await received(receiver, 2, within=3, path="/pager")


async def test_lowering_a_channels_concurrency_by_reload_applies_to_its_backlog(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    receiver.answer(200, delay=0.2)
    text = config_text(receiver, "{}").replace("timeout: 1s}", "timeout: 5s, concurrency: 8}")
    path = write_config(text)
    async with in_process(path) as (daemon, client):
        samples = firing_samples(200)
        assert (await client.post("/api/v1/samples", json=samples, headers=AUTH)).status_code == 200
        await trio.sleep(0.5)
        path.write_text(text.replace("concurrency: 8}", "concurrency: 1}"))
        assert (await daemon.reload("test"))["ok"]
        await trio.sleep(0.5)  # the requests under way end
        began = time.monotonic()
        await trio.sleep(1.0)
    times = sorted(r.received_at for r in receiver.requests if r.received_at >= began)
    assert 3 <= len(times) <= 6  # one at a time, 0.2 s each
    assert max(sum(t <= u < t + 0.19 for u in times) for t in times) == 1


async def test_a_receiver_back_up_gets_the_backlog_at_once(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    receiver.answer(503, 503, 503, 200)
    text = config_text(receiver, "{initial_backoff: 5s, max_backoff: 30s}")
    text = text.replace(
        "value: 1.5}", "value: 1.5}\n  - {name: other, kind: threshold, metric: g2, op: above, value: 1}"
    )
    async with in_process(write_config(text)) as (_, client):
        samples = firing_samples(3)
        assert (await client.post("/api/v1/samples", json=samples, headers=AUTH)).status_code == 200
        await received(receiver, 3, within=5)
        began = trio.current_time()
        sample = {"metric": "g2", "labels": {}, "ts": time.time(), "value": 5.0}
        assert (await client.post("/api/v1/samples", json=[sample], headers=AUTH)).status_code == 200
        await received(receiver, 7, within=5)
        assert trio.current_time() - began < 2.0  # not the 2.5–5 s of their own backoff
        assert [r.json()["status"] for r in receiver.requests[3:]] == ["firing"] * 4


async def test_a_webhook_gets_the_group_as_one_utf8_document_cut_at_max_alerts(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    path = write_config(f"""
daemon:
  state: state.db
  tokens: {{ingest: {TOKEN}, admin: {TOKEN}}}
channels:
  - {{name: hook, kind: webhook, url: "{receiver.url}/hook", max_alerts: 2}}
route: {{channels: [hook], group_wait: 0s, group_interval: 1s, group_by: [desk]}}
rules:
  - name: exposure
    kind: threshold
    metric: gross
    op: above
    value: 1.5
    annotations: {{summary: "{{{{ labels.book }}}} 曝險 {{{{ value }}}}"}}
""")
    async with in_process(path) as (_, client):
        now = time.time()
        samples = [{"metric": "gross", "labels": {"desk": "tw", "book": b}, "ts": now, "value": 2.0} for b in "abc"]
        assert (await client.post("/api/v1/samples", json=samples, headers=AUTH)).status_code == 200
        await received(receiver, 1)
        document = receiver.requests[0].json()
        assert document["truncatedAlerts"] == 1
        assert len(document["alerts"]) == 2
        assert document["groupLabels"] == {"desk": "tw"}
        assert document["commonLabels"] == {"alertname": "exposure", "desk": "tw", "severity": "warning"}
        assert {a["annotations"]["summary"] for a in document["alerts"]} <= {"a 曝險 2", "b 曝險 2", "c 曝險 2"}
        assert document["commonAnnotations"] == {}


async def test_a_burst_of_alerts_is_one_log_line_and_a_few_are_one_each(
    write_config: Callable[..., Path], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_config(config_text(receiver, "{}"))
    async with in_process(path) as (_, client):
        with caplog.at_level(logging.INFO, logger="alphawatch.daemon"):
            now = time.time()
            for books in (["a", "b"], [f"x{i}" for i in range(25)]):
                samples = [{"metric": "gross", "labels": {"book": b}, "ts": now, "value": 2.0} for b in books]
                assert (await client.post("/api/v1/samples", json=samples, headers=AUTH)).status_code == 200
                await trio.sleep(0.3)
    firing = [r for r in caplog.records if r.getMessage() == "alert firing"]
    bursts = [r for r in caplog.records if r.getMessage() == "25 alerts firing"]
    assert len(firing) == 2
    assert len(bursts) == 1
    assert bursts[0].count == 25
    assert len(bursts[0].fingerprints) == 10


async def test_a_failing_channel_logs_a_line_a_minute_not_one_per_attempt(
    write_config: Callable[..., Path],
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("alphawatch.daemon.outbox.QUIET_FOR", 0.2)  # (a minute in the daemon)
    receiver.answer(*[503] * 16, 200)
    text = config_text(receiver, "{initial_backoff: 100ms, max_backoff: 300ms, probe_interval: 100ms}")
    async with in_process(write_config(text)) as (_, client):
        with caplog.at_level(logging.INFO, logger="alphawatch.outbox"):
            assert (await client.post("/api/v1/samples", json=firing_samples(4), headers=AUTH)).status_code == 200
            with trio.fail_after(10):
                while len((await client.get("/api/v1/notifications?state=delivered")).json()["notifications"]) < 4:
                    await trio.sleep(0.02)
    failed = [r for r in caplog.records if r.getMessage() == "delivery failed; will retry"]
    back = [r for r in caplog.records if r.getMessage() == "delivery to the channel works again"]
    assert 2 <= len(failed) < 16  # the first at once, then one per QUIET_FOR
    assert (failed[0].attempt, failed[0].like_it_unlogged) == (1, 0)
    assert len(back) == 1
    # every failure is told once: on its own line, or counted by the next line or by "works again"
    assert len(failed) + sum(r.like_it_unlogged for r in failed) + back[0].failures_unlogged == 16


async def test_an_answer_written_after_later_failures_does_not_end_their_outage(
    write_config: Callable[..., Path], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Three sends at once: one gets through, then the two others fail while its row waits to be written. The
    channel fails now; the older success must not say it works again (it said so, "failing for -0.3 s")."""
    receiver.responses = [(200, 0.3, b"{}"), (503, 0.6, b"{}"), (503, 0.65, b"{}"), (200, 0.0, b"{}")]
    path = write_config(config_text(receiver, "{initial_backoff: 100ms, max_backoff: 300ms}"))
    async with in_process(path) as (daemon, client):
        with caplog.at_level(logging.INFO, logger="alphawatch.outbox"):
            assert (await client.post("/api/v1/samples", json=firing_samples(3), headers=AUTH)).status_code == 200
            await received(receiver, 3)
            async with trio.open_nursery() as nursery:  # the store is busy until both failures are in
                nursery.start_soon(daemon.store.run, lambda db: time.sleep(1.5))
            with trio.fail_after(10):
                while len((await client.get("/api/v1/notifications?state=delivered")).json()["notifications"]) < 3:
                    await trio.sleep(0.02)
    back = [r for r in caplog.records if r.getMessage() == "delivery to the channel works again"]
    assert [r.failures_unlogged for r in back] == [1]  # once, when a failed one got through
    assert back[0].failing_for_s > 0


async def test_failures_not_logged_yet_are_logged_at_the_stop(
    write_config: Callable[..., Path], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The first failure is logged, the next ones a minute later on one line: a stop within that minute must not
    leave them in no log line at all."""
    receiver.answer(503)
    path = write_config(config_text(receiver, "{initial_backoff: 50ms, max_backoff: 100ms}"))
    with caplog.at_level(logging.INFO, logger="alphawatch.outbox"):
        async with in_process(path) as (_, client):
            await fire(client)
            await received(receiver, 4)
    failed = [r for r in caplog.records if r.getMessage() == "delivery failed; will retry"]
    (stopped,) = [r for r in caplog.records if r.getMessage() == "delivery failures not logged before the stop"]
    assert len(failed) == 1
    assert stopped.channel == "hook"
    told = len(failed) + stopped.failures_unlogged
    assert len(receiver.requests) - 1 <= told <= len(receiver.requests)  # (one may be in flight at the stop)


async def test_a_failing_channel_is_probed_at_least_every_probe_interval(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    receiver.answer(*[503] * 7, 200)
    path = write_config(config_text(receiver, "{initial_backoff: 100ms, max_backoff: 10s, probe_interval: 300ms}"))
    async with in_process(path) as (_, client):
        delivered, gaps = await retried_until_delivered(client, receiver)
        assert delivered["attempts"] == 8
        # the backoff alone would wait 0.4–0.8, 0.8–1.6, 1.6–3.2 s … before the last attempts: the probe, 0.15–0.3 s
        assert max(gaps) < 0.45
        assert sum(gaps) < 2.5


async def test_a_notification_refused_while_others_get_through_keeps_its_own_backoff(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    """Not a receiver that is down: one payload it refuses. That one is not probed every probe_interval."""
    receiver.choose = lambda body: 500 if b'"bad"' in body else 200
    path = write_config(config_text(receiver, "{initial_backoff: 100ms, max_backoff: 10s, probe_interval: 50ms}"))
    async with in_process(path) as (_, client):
        bad = {"metric": "gross", "labels": {"model": "bad"}, "ts": time.time(), "value": 2.0}
        assert (await client.post("/api/v1/samples", json=[bad], headers=AUTH)).status_code == 200
        for i in range(60):  # others get through all along (bounded)
            good = {"metric": "gross", "labels": {"model": f"good{i}"}, "ts": time.time(), "value": 2.0}
            assert (await client.post("/api/v1/samples", json=[good], headers=AUTH)).status_code == 200
            await trio.sleep(0.04)
        attempts = [r.received_at for r in receiver.requests if b'"bad"' in r.body]
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        # backoff 100, 200, 400, 800 ms (jitter 50-100 %) in 2.4 s: 4-6 attempts, the later gaps over 150 ms; probed
        # every 25-50 ms it would have been tried about 50 times
        assert 3 <= len(attempts) <= 7
        assert max(gaps) > 0.15


async def test_a_receiver_answering_429_is_not_probed(write_config: Callable[..., Path], receiver: Receiver) -> None:
    receiver.answer(429, 429, 429, 429, 200)
    path = write_config(config_text(receiver, "{initial_backoff: 200ms, max_backoff: 10s, probe_interval: 50ms}"))
    async with in_process(path) as (_, client):
        delivered, gaps = await retried_until_delivered(client, receiver)
        assert delivered["attempts"] == 5
        assert gaps[2] > 0.35  # its own backoff (800 ms, jitter 50-100 %), not 25-50 ms


def test_retry_after_is_read_in_seconds_or_as_an_http_date() -> None:
    from email.utils import format_datetime

    from alphawatch.channels.webhook import _retry_after

    assert _retry_after("7") == 7.0
    in_a_minute = format_datetime(datetime.fromtimestamp(time.time() + 60, UTC), usegmt=True)
    assert 55 < (_retry_after(in_a_minute) or 0) <= 60
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: at once
    assert _retry_after("soon") is None
    for endless in ("inf", "-inf", "nan"):
        assert _retry_after(endless) is None  # the backoff decides: "inf" held a notification for ever


@pytest.mark.parametrize("wait", ["3600", "Fri, 31 Dec 9999 23:59:59 GMT"])
async def test_a_retry_after_beyond_max_age_still_ends_in_the_dead_letters(
    write_config: Callable[..., Path], receiver: Receiver, wait: str
) -> None:
    receiver.answer(503)
    add_retry_after(receiver, wait)
    path = write_config(config_text(receiver, "{initial_backoff: 50ms, max_backoff: 100ms, max_age: 500ms}"))
    async with in_process(path) as (_, client):
        await fire(client)
        pending = await wait_for_state(client, "pending")
        assert pending["next_attempt_at"] <= pending["created_at"] + 0.5
        dead = await wait_for_state(client, "dead")
        assert "max_age" in dead["last_error"]


async def test_a_retry_capped_at_max_age_makes_its_last_attempt(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    receiver.answer(429, 200)
    add_retry_after(receiver, "100")
    path = write_config(config_text(receiver, "{initial_backoff: 50ms, max_age: 1s}"))
    async with in_process(path) as (_, client):
        await fire(client)
        finished = await wait_for_state(client, "delivered,dead")
    assert (finished["state"], finished["attempts"], finished["last_error"]) == ("delivered", 2, None)
    first, last = receiver.requests
    assert 0.5 < last.received_at - first.received_at < 1.5  # at max_age, not after the 100 s asked for


async def test_a_resolution_is_not_undone_by_the_firing_notification_retried_after_it(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    """The firing notification waits out a Retry-After longer than group_interval; the resolution made meanwhile
    goes in its place. The receiver's last word is "resolved", and the firing one is never sent again."""
    receiver.answer(429, 200)
    add_retry_after(receiver, "1")
    path = write_config(
        config_text(receiver, "{initial_backoff: 50ms}").replace("group_interval: 1s", "group_interval: 200ms")
    )
    async with in_process(path) as (daemon, client):
        await fire(client)
        await received(receiver, 1)
        calm = {"metric": "gross", "labels": {}, "ts": time.time(), "value": 1.0}
        assert (await client.post("/api/v1/samples", json=[calm], headers=AUTH)).status_code == 200
        await received(receiver, 2)
        await trio.sleep(1.2)  # past the firing one's retry
        rows = (await client.get("/api/v1/notifications?state=delivered,superseded,pending")).json()["notifications"]
        statistics = daemon.outbox.statistics()
        metrics = (await client.get("/metrics")).text
    assert [r.json()["status"] for r in receiver.requests] == ["firing", "resolved"]
    firing, resolved = sorted(rows, key=lambda row: row["id"])
    assert (firing["state"], firing["last_error"]) == ("superseded", f"folded into notification {resolved['id']}")
    assert (resolved["state"], resolved["payload"]["status"]) == ("delivered", "resolved")
    assert statistics["superseded"] == 1
    assert 'alphawatch_notifications_superseded_total{channel="hook"} 1' in metrics
    assert 'alphawatch_notifications{state="superseded"} 1' in metrics


async def test_an_alert_only_an_older_notification_told_goes_in_the_newer_one(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    """One group, alerts x and y firing. x's resolution waits for a retry; z fires meanwhile. The next notification
    tells y and z firing, and x resolved, which only the one it supersedes told (x left the group with it)."""
    receiver.answer(200, 429, 200)
    add_retry_after(receiver, "1")
    text = config_text(receiver, "{initial_backoff: 50ms}").replace("group_by: ['...']", "group_by: [alertname]")
    text = text.replace("group_interval: 1s", "group_interval: 200ms")
    path = write_config(text)

    def gross(model: str, value: float) -> dict[str, Any]:
        return {"metric": "gross", "labels": {"model": model}, "ts": time.time(), "value": value}

    async with in_process(path) as (_, client):
        assert (await client.post("/api/v1/samples", json=[gross("x", 2), gross("y", 2)], headers=AUTH)).is_success
        await received(receiver, 1)
        assert (await client.post("/api/v1/samples", json=[gross("x", 1)], headers=AUTH)).is_success
        await received(receiver, 2)  # x resolved, y firing: 429, retry in 1 s
        assert (await client.post("/api/v1/samples", json=[gross("z", 2)], headers=AUTH)).is_success
        await received(receiver, 3)
        await trio.sleep(1.2)  # past the older one's retry
    told = [{a["labels"]["model"]: a["status"] for a in r.json()["alerts"]} for r in receiver.requests]
    assert told == [
        {"x": "firing", "y": "firing"},
        {"x": "resolved", "y": "firing"},
        {"y": "firing", "z": "firing", "x": "resolved"},
    ]
    assert receiver.requests[2].json()["commonLabels"] == {"alertname": "exposure", "severity": "warning"}


async def test_a_groups_notifications_due_together_go_oldest_first_one_at_a_time(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    """A receiver back after an outage: the group's waiting notifications are folded into the newest, which goes
    once; another group's go beside it."""
    receiver.answer(503)
    text = config_text(receiver, "{initial_backoff: 5s, max_backoff: 5s, probe_interval: 5s}")
    path = write_config(text.replace("group_interval: 1s", "group_interval: 200ms"))
    async with in_process(path) as (daemon, client):
        for value in (2.0, 1.0, 2.0):  # firing, resolved, firing again: three notifications of one group
            sample = {"metric": "gross", "labels": {"model": "a"}, "ts": time.time(), "value": value}
            assert (await client.post("/api/v1/samples", json=[sample], headers=AUTH)).is_success
            await received(receiver, len(receiver.requests) + 1)
            await trio.sleep(0.25)  # group_interval
        receiver.answer(200)
        await daemon.store.retry_channel_now("hook", daemon.clock.now())
        daemon.outbox.wake()
        await received(receiver, 4)
        await trio.sleep(0.3)
    last = receiver.requests[3].json()
    assert len(receiver.requests) == 4
    assert [a["status"] for a in last["alerts"]] == ["firing"]


async def test_a_notification_waiting_for_its_retry_at_a_stop_is_superseded_after_the_restart(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    receiver.answer(503, 200)
    text = config_text(receiver, "{initial_backoff: 30s, max_backoff: 30s}")
    path = write_config(text.replace("group_interval: 1s", "group_interval: 200ms"))
    async with in_process(path) as (_, client):
        await fire(client)
        await wait_for_state(client, "pending")
        await received(receiver, 1)
    async with in_process(path) as (_, client):
        calm = {"metric": "gross", "labels": {}, "ts": time.time(), "value": 1.0}
        assert (await client.post("/api/v1/samples", json=[calm], headers=AUTH)).status_code == 200
        await received(receiver, 2)
        superseded = await wait_for_state(client, "superseded")
    assert [r.json()["status"] for r in receiver.requests] == ["firing", "resolved"]
    assert superseded["payload"]["status"] == "firing"


async def test_a_notification_waiting_for_its_retry_is_folded_into_the_next_after_a_reload_moved_its_route(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    """The group keeps its identity where its route moved: its resolution takes the waiting firing in, and the
    receiver never ends on a stale "firing"."""
    receiver.answer(503, 200)
    text = config_text(receiver, "{initial_backoff: 30s, max_backoff: 30s}").replace(
        "group_by: ['...']}", "group_by: ['...'], routes: [{matchers: [desk=d]}]}"
    )
    path = write_config(text.replace("group_interval: 1s", "group_interval: 200ms"))
    async with in_process(path) as (daemon, client):
        sample = {"metric": "gross", "labels": {"desk": "d"}, "ts": time.time(), "value": 2.0}
        assert (await client.post("/api/v1/samples", json=[sample], headers=AUTH)).is_success
        await wait_for_state(client, "pending")
        await received(receiver, 1)  # refused: waits 15-30 s for its retry
        write_config(
            text.replace("routes: [{matchers: [desk=d]}]", "routes: [{matchers: [desk=o]}, {matchers: [desk=d]}]")
        )
        assert (await daemon.reload("test"))["ok"]
        assert await daemon.store.query("SELECT route FROM groups") == [{"route": "0.1"}]
        calm = {**sample, "ts": time.time(), "value": 1.0}
        assert (await client.post("/api/v1/samples", json=[calm], headers=AUTH)).is_success
        await received(receiver, 2)
        superseded = await wait_for_state(client, "superseded")
    assert [r.json()["status"] for r in receiver.requests] == ["firing", "resolved"]
    assert superseded["payload"]["status"] == "firing"


def paging_config(receiver: Receiver) -> str:
    return f"""
daemon:
  state: state.db
  tokens: {{ingest: {TOKEN}, admin: {TOKEN}}}
  delivery: {{initial_backoff: 30s, max_backoff: 30s}}
channels:
  - {{name: hook, kind: webhook, url: "{receiver.url}/hook"}}
  - {{name: pager, kind: webhook, url: "{receiver.url}/pager"}}
route: {{channels: [hook], group_wait: 0s, group_interval: 100ms}}
escalations:
  - {{name: desk, matchers: [severity=critical], tiers: [{{after: 200ms, channels: [pager]}}]}}
rules:
  - {{name: crit, kind: threshold, metric: gross, op: above, value: 1.5, severity: critical}}
"""


async def page_waiting_for_its_retry(client: Any, receiver: Receiver) -> dict[str, Any]:
    """Fire; the page is refused once (503) and waits 15-30 s for its retry: its row."""
    receiver.choose = lambda body: 503 if b'"escalation":' in body else 200
    await fire(client)
    await received(receiver, 1, path="/pager")
    with trio.fail_after(5):
        while not (pages := [row for row in await pager_rows(client, "pending") if row["attempts"] == 1]):
            await trio.sleep(0.02)  # (its retry time is written)
    return pages[0]


async def made_due(daemon: Any, channel: str) -> None:
    await daemon.store.retry_channel_now(channel, daemon.clock.now())
    daemon.outbox.wake()


async def test_an_escalation_page_waiting_for_its_retry_is_withdrawn_when_its_alert_resolves(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    async with in_process(write_config(paging_config(receiver))) as (daemon, client):
        page = await page_waiting_for_its_retry(client, receiver)
        calm = {"metric": "gross", "labels": {}, "ts": time.time(), "value": 1.0}
        assert (await client.post("/api/v1/samples", json=[calm], headers=AUTH)).status_code == 200
        await received(receiver, 2, path="/hook")  # firing, resolved
        await made_due(daemon, "pager")
        withdrawn = await wait_for_state(client, "withdrawn")
        statistics = daemon.outbox.statistics()
    assert [r.path for r in receiver.requests].count("/pager") == 1  # never again
    assert withdrawn["id"] == page["id"]
    assert withdrawn["last_error"] == "the alert resolved before the page got out"
    assert withdrawn["attempts"] == 1
    assert statistics["withdrawn"] == 1


async def test_an_escalation_page_waiting_for_its_retry_is_withdrawn_when_its_alert_is_acknowledged(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    async with in_process(write_config(paging_config(receiver))) as (daemon, client):
        page = await page_waiting_for_its_retry(client, receiver)
        fingerprint = page["fingerprint"]
        ack = {"by": "ann", "comment": "on it"}
        assert (await client.post(f"/api/v1/alerts/{fingerprint}/ack", json=ack, headers=AUTH)).status_code == 201
        await made_due(daemon, "pager")
        withdrawn = await wait_for_state(client, "withdrawn")
        why = (await client.get(f"/api/v1/alerts/{fingerprint}/suppressions")).json()
    assert [r.path for r in receiver.requests].count("/pager") == 1
    assert withdrawn["last_error"].startswith("acknowledged by ann at ")
    assert withdrawn["last_error"].endswith(": on it, before the page got out")
    (record,) = why["suppressions"]  # "why did I not get this page"
    assert (record["kind"], record["ref"], record["channel"]) == ("acknowledged", "ann", "pager")
    assert record["detail"].endswith(": on it: its escalation page (tier 1) was withdrawn")


async def test_an_escalation_page_still_wanted_goes_at_its_retry(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    async with in_process(write_config(paging_config(receiver))) as (daemon, client):
        await page_waiting_for_its_retry(client, receiver)
        receiver.choose = None
        await made_due(daemon, "pager")
        await received(receiver, 2, path="/pager")
        with trio.fail_after(5):
            while not (page := await pager_rows(client, "delivered")):
                await trio.sleep(0.02)
    assert [row["attempts"] for row in page] == [2]


async def pager_rows(client: Any, state: str) -> list[dict[str, Any]]:
    rows = (await client.get(f"/api/v1/notifications?state={state}")).json()["notifications"]
    return [row for row in rows if row["channel"] == "pager"]


async def test_a_notification_left_in_the_table_behind_a_full_queue_is_not_overtaken_by_a_newer_one(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    """A slow receiver, one sender: twelve groups' notifications, most left in the table (the channel's queue
    holds four). The last group's resolution, made meanwhile, goes after its firing notification, not before."""
    receiver.answer(200, delay=0.1)
    text = config_text(receiver, "{initial_backoff: 50ms, concurrency: 1}")
    path = write_config(text.replace("group_interval: 1s", "group_interval: 200ms"))
    async with in_process(path) as (_, client):
        samples = [{"metric": "gross", "labels": {"k": str(i)}, "ts": time.time(), "value": 2.0} for i in range(12)]
        assert (await client.post("/api/v1/samples", json=samples, headers=AUTH)).is_success
        await received(receiver, 1)
        calm = {"metric": "gross", "labels": {"k": "11"}, "ts": time.time(), "value": 1.0}
        assert (await client.post("/api/v1/samples", json=[calm], headers=AUTH)).is_success
        await received(receiver, 13)
    told = [(r.json()["alerts"][0]["labels"]["k"], r.json()["status"]) for r in receiver.requests]
    assert [status for k, status in told if k == "11"] == ["firing", "resolved"]
    assert len(told) == 13


async def test_a_page_of_a_firing_episode_that_ended_is_withdrawn_though_the_alert_fires_again(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    async with in_process(write_config(paging_config(receiver).replace("after: 200ms", "after: 1s"))) as (d, client):
        page = await page_waiting_for_its_retry(client, receiver)
        for value in (1.0, 2.0):  # resolved: its episode ends; firing again: a new one
            sample = {"metric": "gross", "labels": {}, "ts": time.time(), "value": value}
            assert (await client.post("/api/v1/samples", json=[sample], headers=AUTH)).status_code == 200
            await received(receiver, sum(r.path == "/hook" for r in receiver.requests) + 1, path="/hook")
        receiver.choose = None
        await made_due(d, "pager")
        withdrawn = await wait_for_state(client, "withdrawn")
    assert withdrawn["id"] == page["id"]
    assert withdrawn["last_error"] == "the page's firing episode ended before it got out (the alert fires again since)"
    assert [r.path for r in receiver.requests].count("/pager") == 1  # (the new episode's tier is a second away)


async def test_a_notification_to_an_idle_channel_goes_at_once_beside_two_others_backlogs(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    """Two channels with 2,000 notifications each on a receiver that takes half a second (their queues fill a
    whole read of the table between them); an alert for a third channel is not held behind them."""
    with Receiver(responses=[(200, 0.5, b"{}")]) as slow:
        slow_channels = "".join(f'  - {{name: {n}, kind: webhook, url: "{slow.url}/{n}"}}\n' for n in ("a1", "a2"))
        text = config_text(receiver, "{}").replace("channels:\n", "channels:\n" + slow_channels)
        async with in_process(write_config(text)) as (daemon, client):
            backlog = [Outgoing(n, f"{n}-{i}", f"{n}-{i}", "{}") for i in range(2000) for n in ("a1", "a2")]
            await daemon.store.enqueue(backlog)
            daemon.outbox.wake()
            await received(slow, 100)  # under way
            assert await seconds_to_deliver(client, receiver) < 1.0


async def test_the_backlog_of_a_channel_a_reload_removed_does_not_hold_up_the_others(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    async with in_process(write_config(config_text(receiver, "{concurrency: 4}"))) as (daemon, client):
        await daemon.store.enqueue([Outgoing("gone", f"g{i}", f"g{i}", "{}") for i in range(20_000)])
        daemon.outbox.wake()
        await wait_for_state(client, "dead")  # being dead-lettered
        assert await seconds_to_deliver(client, receiver) < 1.0


async def seconds_to_deliver(client: Any, receiver: Receiver) -> float:
    """Fire an alert (the receiver has had nothing yet): how long until its notification reached the receiver."""
    began = time.monotonic()
    await fire(client)
    await received(receiver, 1, within=10)
    return receiver.requests[0].received_at - began


async def test_more_channels_with_due_notifications_than_a_read_takes_are_all_read(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    """300 channels (a reload removed them) with one notification each: a read takes 256, one a channel; the
    other 44 are read at once after it, not when something else wakes the loop."""
    async with in_process(write_config(config_text(receiver, "{}"))) as (daemon, _):
        await daemon.store.enqueue([Outgoing(f"gone{i:03d}", f"f{i}", f"k{i}", "{}") for i in range(300)])
        daemon.outbox.wake()
        with trio.fail_after(5):
            while (await daemon.store.query("SELECT count(*) AS n FROM outbox WHERE state = 'pending'"))[0]["n"]:
                await trio.sleep(0.05)
