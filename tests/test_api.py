"""The HTTP API in-process: ingest validation (all or nothing), tokens, queries and /metrics."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from alphawatch.daemon.clock import Clock
from tests.daemon_harness import AUTH, TOKEN, in_process

CONFIG = f"""
daemon:
  state: state.db
  listen: 127.0.0.1:0
  tokens: {{ingest: {TOKEN}, admin: {TOKEN}}}
  max_body: 4096
  max_label_bytes: 64
rules:
  - {{name: exposure, kind: threshold, metric: gross, op: above, value: 1.5}}
"""
NOW = "2026-11-26T01:00:00Z"


@pytest.fixture
def config(write_config: Callable[..., Path]) -> Path:
    return write_config(CONFIG)


def sample(**overrides: Any) -> dict[str, Any]:
    return {"metric": "gross", "labels": {"model": "a7"}, "ts": NOW, "value": 1.0, **overrides}


async def stored_samples(daemon: Any) -> int:
    rows = await daemon.store.query("SELECT count(*) AS n FROM samples")
    return int(rows[0]["n"])


async def test_a_good_batch_is_committed_and_reaches_the_rule(config: Path) -> None:
    async with in_process(config) as (daemon, client):
        response = await client.post("/api/v1/samples", json=[sample(value=1.9)], headers=AUTH)
        assert response.status_code == 200
        assert response.json() == {"accepted": 1}
        assert await stored_samples(daemon) == 1
        for _ in range(100):
            alerts = (await client.get("/api/v1/alerts")).json()["alerts"]
            if alerts:
                break
            import trio

            await trio.sleep(0.01)
        assert [a["state"] for a in alerts] == ["firing"]


@pytest.mark.parametrize(
    ("item", "field", "message"),
    [
        (sample(ts="2026-11-26T09:00:00"), "ts", "no UTC offset"),
        (sample(ts=None), "ts", "required"),
        (sample(ts="yesterday"), "ts", "not an RFC 3339 timestamp"),
        (sample(ts=1_700_000_000_000), "ts", "in the future"),
        (sample(ts=12), "ts", "before 2000-01-01"),
        (sample(ts=10**400), "ts", "finite"),  # beyond a float: the standard parser reads it, orjson does not
        (sample(ts="2026-11-26T09:00:00+08:00:30"), "ts", "offset of '2026-11-26T09:00:00+08:00:30' has seconds"),
        (sample(value=float("nan")), "value", "finite"),
        (sample(value=float("inf")), "value", "finite"),
        (sample(value="1.0"), "value", "a number"),
        (sample(value=True), "value", "a number"),
        (sample(value=10**400), "value", "finite"),
        (sample(metric="9lives"), "metric", "letters, digits"),
        (sample(metric="gross\n"), "metric", "letters, digits"),
        (sample(labels={"model\n": "x"}), "labels.model\n", "letters, digits"),
        (sample(labels={"model": 7}), "labels.model", "strings"),
        (sample(labels={"bad-name": "x"}), "labels.bad-name", "letters, digits"),
        (sample(labels={"model": "x" * 80}), "labels", "the limit is 64"),
        (sample(extra=1), "extra", "unknown field"),
        ("not an object", "", "an object"),
    ],
)
async def test_a_batch_with_one_bad_item_stores_nothing(config: Path, item: Any, field: str, message: str) -> None:
    async with in_process(config) as (daemon, client):
        body = json.dumps([sample(), item], allow_nan=True)
        response = await client.post("/api/v1/samples", content=body, headers=AUTH)
        assert response.status_code == 400
        error = response.json()
        assert "nothing was stored" in error["error"]
        assert any(i["index"] == 1 and i["field"] == field and message in i["message"] for i in error["items"]), error
        assert all(i["index"] == 1 for i in error["items"])
        assert await stored_samples(daemon) == 0


async def test_a_rejected_label_set_is_not_remembered_between_batches(config: Path) -> None:
    from alphawatch.daemon import ingest

    async with in_process(config) as (_, client):
        oversized = {"model": "x" * 80}
        for _ in range(2):
            response = await client.post("/api/v1/samples", json=[sample(labels=oversized)], headers=AUTH)
            assert response.status_code == 400
        assert tuple(oversized.items()) not in ingest._LABEL_SETS  # a client's rejected strings are not kept
        assert (await client.post("/api/v1/samples", json=[sample()], headers=AUTH)).status_code == 200
        assert (("model", "a7"),) in ingest._LABEL_SETS


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[]", 400, "empty"),
        (b'{"rows": []}', 400, "expected a JSON array"),
        (
            b'[{"metric":"gross","labels":{"model":"\\ud800"},"ts":1780000000,"value":1}]',
            400,
            "the string at [0].labels.model holds a lone surrogate",
        ),
        (b"[" * 3000, 400, "nested too deeply"),
        (b'[{"metric":"gross","labels":{"model":"\xed\xa0\x80"},"ts":1780000000,"value":1}]', 400, "not UTF-8"),
        ('[{"metric":"gross","ts":1780000000,"value":1}]'.encode("utf-16"), 400, "not UTF-8"),
        (b"[" + b'{"metric":"m","ts":1,"value":1},' * 200 + b"1]", 413, "max_body"),
    ],
)
async def test_malformed_bodies_get_a_json_error(config: Path, body: bytes, status: int, message: str) -> None:
    async with in_process(config) as (daemon, client):
        response = await client.post("/api/v1/samples", content=body, headers=AUTH)
        assert response.status_code == status
        assert message in response.json()["error"]
        assert await stored_samples(daemon) == 0


async def test_a_gzip_body_is_inflated_and_stored(config: Path) -> None:
    one = json.dumps([sample(value=1.0)]).encode()
    async with in_process(config) as (daemon, client):
        for encoding in ("gzip", "x-gzip", "gzip, identity", "Identity,GZIP"):  # (identity changes nothing)
            response = await client.post(
                "/api/v1/samples", content=gzip.compress(one), headers={**AUTH, "Content-Encoding": encoding}
            )
            assert (response.status_code, response.json()) == (200, {"accepted": 1})
        # two members one after the other (cat a.gz b.gz) are one body: here, one JSON array cut in two
        text = json.dumps([sample(value=3.0, labels={"model": "b"}), sample(value=4.0, labels={"model": "c"})])
        halves = gzip.compress(text[:40].encode()) + gzip.compress(text[40:].encode())
        response = await client.post("/api/v1/samples", content=halves, headers={**AUTH, "Content-Encoding": "gzip"})
        assert (response.status_code, response.json()) == (200, {"accepted": 2})
        assert await stored_samples(daemon) == 3  # (the first sample twice: the same series and time)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        # 4 KiB is the limit: 10 MB of spaces in 10 KB of gzip is refused as soon as it passes 4 KiB inflated
        (gzip.compress(b"[" + b" " * 10_000_000 + b"]"), 413, "body larger than daemon.max_body (4096 bytes)"),
        (
            b"not gzip at all",
            400,
            "the body is not valid gzip (Error -3 while decompressing data: incorrect header check)",
        ),
        (gzip.compress(json.dumps([sample()]).encode())[:-10], 400, "the gzip body is cut short"),
        # each member costs a copy of the rest of its chunk: 8 MiB of empty ones would hold the loop a second
        (gzip.compress(b" ") * 65, 400, "the gzip body has more than 64 members"),
    ],
)
async def test_a_gzip_body_that_is_too_large_inflated_or_not_gzip_is_refused(
    config: Path, body: bytes, status: int, message: str
) -> None:
    async with in_process(config) as (daemon, client):
        response = await client.post("/api/v1/samples", content=body, headers={**AUTH, "Content-Encoding": "gzip"})
        assert (response.status_code, response.json()["error"]) == (status, message)
        assert await stored_samples(daemon) == 0


async def test_a_body_compressed_otherwise_than_with_gzip_gets_a_415_and_a_charset_label_is_not_trusted(
    config: Path,
) -> None:
    async with in_process(config) as (daemon, client):
        body = json.dumps([sample()])
        response = await client.post("/api/v1/samples", content=body, headers={**AUTH, "Content-Encoding": "br"})
        assert response.status_code == 415
        assert response.json()["error"] == "Content-Encoding 'br' is not supported: send the body uncompressed or gzip"
        for twice in ("gzip, gzip", "gzip, br"):  # one gzip layer at most
            headers = {**AUTH, "Content-Encoding": twice}
            response = await client.post("/api/v1/samples", content=gzip.compress(gzip.compress(body.encode())),
                                         headers=headers)  # fmt: skip
            assert (response.status_code, response.json()["error"]) == (
                415, f"Content-Encoding {twice!r} is not supported: send the body uncompressed or gzip"
            )  # fmt: skip
        assert await stored_samples(daemon) == 0
        latin1 = {**AUTH, "Content-Type": "application/json; charset=ISO-8859-1"}  # Java's StringEntity default
        accented = json.dumps([sample(labels={"desk": "café"})], ensure_ascii=False).encode("latin-1")
        response = await client.post("/api/v1/samples", content=accented, headers=latin1)
        assert response.status_code == 400
        assert "not UTF-8" in response.json()["error"]
        assert (await client.post("/api/v1/samples", content=body, headers=latin1)).status_code == 200  # ASCII


@pytest.mark.parametrize("path", ["/api/v1/alerts", "/api/v1/notifications"])
@pytest.mark.parametrize(
    "limit", ["²", "١٠", "1_0", "9" * 5000], ids=["superscript", "arabic", "underscore", "5000-digits"]
)
async def test_a_limit_that_is_not_ascii_digits_is_a_400(config: Path, path: str, limit: str) -> None:
    async with in_process(config) as (_, client):
        response = await client.get(path, params={"limit": limit})
        assert response.status_code == 400
        assert response.json() == {"error": "limit is a whole number from 1 to 10000"}


async def test_health_and_metrics(config: Path) -> None:
    async with in_process(config) as (_, client):
        await client.post("/api/v1/samples", json=[sample(), sample(ts="2026-11-26T01:00:01Z")], headers=AUTH)
        with trio.fail_after(5):  # (a rule is "starting" until it has read its state back)
            while (await client.get("/api/v1/rules")).json()["rules"][0]["status"] != "running":
                await trio.sleep(0.01)
        health = (await client.get("/health")).json()
        assert health["status"] == "ok"
        assert set(health["components"]) == {"store", "rules", "outbox", "reload"}
        metrics = (await client.get("/metrics")).text
        assert "alphawatch_samples_ingested_total 2" in metrics
        assert 'alphawatch_rules{status="running"} 1' in metrics
        # every state is there from the start, at 0: an alert on dead letters must not read "no data"
        for zero in (
            'alphawatch_rules{status="failed"} 0',
            'alphawatch_notifications{state="pending"} 0',
            'alphawatch_notifications{state="dead"} 0',
            'alphawatch_notifications{state="delivered"} 0',
            'alphawatch_reloads_total{result="failed"} 0',
            "alphawatch_store_refusals_total 0",
        ):
            assert zero in metrics  # fmt: skip
        assert 'alphawatch_build_info{version="' in metrics
        assert "\nprocess_start_time_seconds 17" in metrics  # (epoch seconds: 2023-11 to 2033-05)


async def test_uptime_counts_on_the_monotonic_clock_whatever_the_wall_clock_does(config: Path) -> None:
    class SetBack(Clock):
        """The wall clock, set back an hour once the daemon started (an operator, NTP after a wrong start)."""

        back = 0.0

        def now(self) -> float:
            return super().now() - self.back

    clock = SetBack()
    async with in_process(config, clock) as (_, client):
        await trio.sleep(0.05)
        clock.back = 3600.0
        health = (await client.get("/health")).json()
        status = (await client.get("/api/v1/status")).json()
    assert 0.05 <= health["uptime_s"] < 60
    assert 0.05 <= status["uptime_s"] < 60


async def test_reload_through_the_api_reports_the_difference(config: Path) -> None:
    async with in_process(config) as (_, client):
        config.write_text(config.read_text().replace("value: 1.5", "value: 2.5"))
        response = await client.post("/-/reload", headers=AUTH)
        assert response.json()["changed"] == ["exposure"]
        assert response.json()["warnings"] == []
        annotated = "value: 2.5, annotations: {summary: 'by {{ details.op }}'}"
        config.write_text(config.read_text().replace("value: 2.5", annotated))
        response = await client.post("/-/reload", headers=AUTH)  # applied, with what check would warn of
        assert response.status_code == 200
        assert response.json()["warnings"] == [
            f"{config}:9:100: rules[0].annotations.summary: a threshold rule reports no details: {{{{ details.op }}}}"
            " renders empty"
        ]
        config.write_text(config.read_text().replace(annotated, "value: 2.5"))
        await client.post("/-/reload", headers=AUTH)
        config.write_text(config.read_text().replace("kind: threshold", "kind: thresh"))
        response = await client.post("/-/reload", headers=AUTH)
        assert response.status_code == 400
        assert "monitor.yaml:9" in response.json()["error"]
        health = (await client.get("/health")).json()
        assert health["components"]["reload"]["ok"] is False
        assert health["status"] == "degraded"
        # values that Python's own checks let through once crashed the reload (and SIGHUP, the daemon)
        good = config.read_text().replace("kind: thresh", "kind: threshold")
        for broken, where in [
            (good.replace("value: 2.5", 'value: 2.5, for: "5m\\n"'), "monitor.yaml:9:"),
            (good.replace("value: 2.5", "value: 2.5, match: ['m=~\"(a{4294967296})\"']"), "bad regex"),
            (good + "windows: {late: {phases: continuous, start_offset: -9999999999d}}\n", "windows.late"),
        ]:
            config.write_text(broken)
            response = await client.post("/-/reload", headers=AUTH)
            assert response.status_code == 400, response.text
            assert where in response.json()["error"]
        rules = (await client.get("/api/v1/rules")).json()["rules"]
        assert [r["name"] for r in rules] == ["exposure"]  # the last good configuration runs on


async def test_alert_rows_say_what_holds_them_back_now(write_config: Callable[..., Path]) -> None:
    import time

    import trio

    path = write_config(
        CONFIG
        + """  - {name: feed-down, kind: threshold, metric: feed_lag, op: above, value: 60}
inhibit_rules:
  - {source_matchers: [alertname=feed-down], target_matchers: [alertname=exposure], equal: [model]}
"""
    )
    async with in_process(path) as (_daemon, client):
        now = time.time()
        batch = [sample(value=1.9, ts=now), sample(metric="feed_lag", value=300, ts=now),
                 sample(value=1.9, ts=now, labels={"model": "b9"})]  # fmt: skip
        assert (await client.post("/api/v1/samples", json=batch, headers=AUTH)).status_code == 200
        for _ in range(200):
            rows = {(a["rule"], a["labels"]["model"]): a for a in (await client.get("/api/v1/alerts")).json()["alerts"]}
            if len(rows) == 3:
                break
            await trio.sleep(0.01)
        inhibited = rows[("exposure", "a7")]["suppressed"]
        assert inhibited["kind"] == "inhibited"
        assert inhibited["ref"] == rows[("feed-down", "a7")]["fingerprint"]
        assert rows[("exposure", "b9")]["suppressed"] is None  # another model: not inhibited
        assert rows[("exposure", "b9")]["ack"] is None
        fingerprint = rows[("exposure", "b9")]["fingerprint"]
        acked = await client.post(f"/api/v1/alerts/{fingerprint}/ack", json={"by": "mei", "comment": "x"}, headers=AUTH)
        assert acked.status_code == 201
        after = {a["fingerprint"]: a for a in (await client.get("/api/v1/alerts")).json()["alerts"]}
        assert after[fingerprint]["ack"]["by"] == "mei"
        one = (await client.get(f"/api/v1/alerts/{fingerprint}")).json()  # one alert: the same, and its history
        assert (one["ack"]["by"], one["suppressed"], one["history"][0]["to_state"]) == ("mei", None, "firing")
        inhibited_one = (await client.get(f"/api/v1/alerts/{rows[('exposure', 'a7')]['fingerprint']}")).json()
        assert inhibited_one["suppressed"]["kind"] == "inhibited"


def test_what_a_reload_finds_alive_can_still_be_freed_later() -> None:
    """A reload hands memory back but freezes nothing: a connection open at that moment (a cycle only the
    collector frees) is freed once it closes. Frozen, it stayed for ever: a leak at every reload."""
    import gc
    import weakref

    from alphawatch.daemon.main import release_memory

    class Connection:
        pass

    open_now = Connection()
    open_now.me = open_now  # type: ignore[attr-defined]
    alive = weakref.ref(open_now)
    release_memory()  # as a reload calls it
    del open_now
    gc.collect()
    assert alive() is None


async def _fill_the_disk(daemon: Any, full: bool) -> None:
    """As a full disk does: SQLite refuses any write that needs a page more (SQLITE_FULL)."""

    def work(db: Any) -> None:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages if full else 1073741823}")

    await daemon.store.run(work)


async def test_a_state_file_that_refuses_writes_is_a_json_error_and_health_says_down(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with in_process(config) as (daemon, client):
        assert (await client.post("/api/v1/samples", json=[sample()], headers=AUTH)).status_code == 200
        await _fill_the_disk(daemon, full=True)
        for start in range(0, 20_000, 20):  # new series need new pages, which the file refuses
            batch = [sample(labels={"model": f"m{i}"}) for i in range(start, start + 20)]
            refused = await client.post("/api/v1/samples", json=batch, headers=AUTH)
            if refused.status_code != 200:
                break
        assert refused.status_code == 503
        assert "database or disk is full" in refused.json()["error"]
        assert "nothing of this request was stored" in refused.json()["error"]
        stored = await stored_samples(daemon)
        assert stored == 1 + start  # all but the refused batch
        health = await client.get("/health")
        assert health.status_code == 503
        store = health.json()["components"]["store"]
        assert (store["status"], store["error"]) == ("down", "OperationalError: database or disk is full")
        monkeypatch.setattr("alphawatch.daemon.main.STORE_REFUSAL_DOWN", 0.0)  # (a minute in the daemon)
        health = await client.get("/health")  # the minute is over, and no write has worked since
        assert (health.status_code, health.json()["components"]["store"]["status"]) == (200, "degraded")
        await _fill_the_disk(daemon, full=False)  # room again: the next write succeeds, and health says so
        assert (await client.post("/api/v1/samples", json=batch, headers=AUTH)).status_code == 200
        assert await stored_samples(daemon) == stored + 20
        health = await client.get("/health")
        assert (health.status_code, health.json()["components"]["store"]["status"]) == (200, "ok")


async def test_a_reload_the_state_file_refuses_is_a_failed_reload_not_the_end_of_the_daemon(
    write_config: Callable[..., Path],
) -> None:
    import sqlite3

    routed = "channels: [{name: hook, kind: webhook, url: 'http://127.0.0.1:9/x'}]\nroute: {channels: [hook]}\n"
    config = write_config(CONFIG + routed)
    async with in_process(config) as (daemon, client):
        assert (await client.post("/api/v1/samples", json=[sample(value=1.9)], headers=AUTH)).status_code == 200
        for _ in range(200):  # its alert fires, into a group
            if (await client.get("/api/v1/alerts")).json()["alerts"]:
                break
            await trio.sleep(0.01)
        await daemon.store.run(lambda db: db.execute("PRAGMA busy_timeout = 20"))
        other = sqlite3.connect(config.parent / "state.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock: every write of the daemon fails
        text = config.read_text()
        config.write_text(text.replace("route: {channels: [hook]}", "route: {channels: [hook], group_by: [model]}"))
        regrouped = await client.post("/-/reload", headers=AUTH)  # the groups are saved first: refused, no change
        assert regrouped.status_code == 503, regrouped.text
        assert regrouped.json()["error"].startswith(
            "the state file refused the reload (OperationalError: database is locked); nothing changed"
        )
        assert daemon.config.route.group_by == daemon.engine.config.route.group_by != ("model",)  # (still the old)
        assert (await client.get("/health")).json()["components"]["reload"]["status"] == "degraded"
        config.write_text(text.replace("  - {name: exposure", "  - {name: renamed"))  # resolving its alert writes
        removed = await client.post("/-/reload", headers=AUTH)
        assert removed.status_code == 200, removed.text  # the rules run it; the removed one's alert waits
        warnings = removed.json()["warnings"]
        assert any("the alerts of removed rules are not resolved yet" in w for w in warnings)
        assert any("not in the state file's reloads table" in w for w in warnings)
        assert [r["name"] for r in (await client.get("/api/v1/rules")).json()["rules"]] == ["renamed"]
        other.execute("ROLLBACK")
        other.close()
        again = await client.post("/-/reload", headers=AUTH)  # the file takes writes: the rest is done
        assert (again.status_code, again.json()["warnings"]) == (200, [])
        states = {
            a["rule"]: a["state"] for a in (await client.get("/api/v1/alerts?state=firing,resolved")).json()["alerts"]
        }
        assert states == {"exposure": "resolved"}


async def test_delivery_counters_are_per_channel_and_every_channel_has_them(
    write_config: Callable[..., Path], receiver: Any
) -> None:
    receiver.responses = [(200, 0.0, b"{}"), (400, 0.0, b"{}")]  # the second is refused: dead at once
    config = write_config(
        CONFIG
        + f"channels:\n  - {{name: hook, kind: webhook, url: '{receiver.url}/x'}}\n"
        + "  - {name: idle, kind: webhook, url: 'http://127.0.0.1:9/x'}\n"
        + "route: {channels: [hook], group_by: ['...'], group_wait: 0s}\n"
    )
    async with in_process(config) as (_daemon, client):
        for model in ("a7", "b9"):
            batch = [sample(value=1.9, labels={"model": model})]
            assert (await client.post("/api/v1/samples", json=batch, headers=AUTH)).status_code == 200
        for _ in range(300):
            metrics = (await client.get("/metrics")).text
            if 'alphawatch_notifications_dead_total{channel="hook"} 1' in metrics:
                break
            await trio.sleep(0.01)
        for line in (
            'alphawatch_notifications_delivered_total{channel="hook"} 1',
            'alphawatch_notifications_dead_total{channel="hook"} 1',
            'alphawatch_delivery_failures_total{channel="hook"} 1',
            'alphawatch_notifications_delivered_total{channel="idle"} 0',  # every channel, 0 included
        ):
            assert line in metrics
        assert (await client.post("/-/reload", headers=AUTH)).status_code == 200
        assert 'alphawatch_reloads_total{result="ok"} 1' in (await client.get("/metrics")).text
