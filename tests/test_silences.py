"""Silences: matching (regex, negative, emergency), the lifecycle at exact instants, the API and its refusals."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from alphawatch.daemon import silences as silence_store
from alphawatch.daemon.clock import TrioClock
from alphawatch.daemon.main import Daemon
from alphawatch.daemon.silences import Silence, SilenceError, parse_silence
from alphawatch.daemon.store import Store, open_store
from alphawatch.daemon.suppression import Suppressions
from alphawatch.web import app as web_app
from tests.daemon_harness import AUTH, TOKEN, in_process

ROUTES = ("alphawatch.web.suppression", "routes")
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
CONFIG = f"""
daemon:
  state: state.db
  listen: 127.0.0.1:0
  tokens: {{ingest: ingest-{TOKEN}, admin: {TOKEN}}}
  max_body: 4096
rules:
  - {{name: exposure, kind: threshold, metric: gross, op: above, value: 1.5}}
"""


def silence(*matchers: str, start: float = T0, end: float = T0 + 3600) -> Silence:
    body = {"matchers": list(matchers), "starts_at": start, "ends_at": end, "created_by": "ann", "comment": "why"}
    return parse_silence(body, now=T0)


@asynccontextmanager
async def app(config: Path) -> AsyncIterator[tuple[Daemon, httpx.AsyncClient, Suppressions]]:
    """The in-process daemon with these routes and its Suppressions (made here while the daemon has none)."""
    plugged = web_app.PLUGGED_ROUTES
    if ROUTES not in plugged:
        web_app.PLUGGED_ROUTES = (*plugged, ROUTES)
    try:
        async with in_process(config) as (daemon, client):
            found = getattr(daemon, "suppressions", None)
            if found is None:
                found = await Suppressions.load(daemon.store, ())
                daemon.suppressions = found  # type: ignore[attr-defined]
            yield daemon, client, found
    finally:
        web_app.PLUGGED_ROUTES = plugged


@pytest.fixture
def config(write_config: Callable[..., Path]) -> Path:
    return write_config(CONFIG)


async def count(store: Store, table: str = "silences") -> int:
    return int((await store.query(f"SELECT count(*) AS n FROM {table}"))[0]["n"])


# --- matching ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matchers", "labels", "silenced"),
    [
        (["model=alpha7"], {"model": "alpha7"}, True),
        (["model=alpha7"], {"model": "alpha70"}, False),
        (['model=~"alpha[0-9]"'], {"model": "alpha7"}, True),
        (['model=~"alpha[0-9]"'], {"model": "alpha70"}, False),  # regexes are anchored
        (["model=alpha7", "alertname!=ICDecay"], {"model": "alpha7", "alertname": "Drift"}, True),
        (["model=alpha7", "alertname!=ICDecay"], {"model": "alpha7", "alertname": "ICDecay"}, False),
        (["model=alpha7", 'alertname!~"IC.*"'], {"model": "alpha7", "alertname": "ICDecay"}, False),
        (["model=alpha7", "desk="], {"model": "alpha7"}, True),  # an empty value matches a missing label
        (["model=alpha7"], {"model": "alpha7", "severity": "critical"}, True),
        (["model=alpha7"], {"model": "alpha7", "severity": "emergency"}, False),  # emergencies must be named
        (["model=alpha7", 'severity!="info"'], {"model": "alpha7", "severity": "emergency"}, False),
        (["model=alpha7", 'severity=~".+"'], {"model": "alpha7", "severity": "emergency"}, False),
        (["model=alpha7", "severity=emergency"], {"model": "alpha7", "severity": "emergency"}, True),
        (['severity=~"critical|emergency"'], {"model": "alpha7", "severity": "emergency"}, True),
    ],
)
def test_matching(matchers: list[str], labels: dict[str, str], silenced: bool) -> None:
    assert silence(*matchers).matches(labels) is silenced


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a|aa)*c", "more than 10^300 ways to backtrack"),  # Python's re: for ever on 60 a's
        ("(x+x+)+y", "more than 10^300 ways to backtrack"),
        ("(a?){25}a{25}", "3.4e+07 ways to backtrack"),
        (".*a.*a.*a.*x", "1.1e+12 ways to backtrack"),  # 44 s on 1,024 a's
    ],
)
def test_a_regex_whose_matching_time_can_explode_is_refused(pattern: str, reason: str) -> None:
    with pytest.raises(SilenceError, match=re.escape(reason)):
        silence(f'model=~"{pattern}"')


@pytest.mark.parametrize(
    ("pattern", "matching", "other"),
    [("(foo|bar)+", "foobarfoo", "foobaz"), ("/api/{id}/.*", "/api/{id}/x", "/api/7/x"),
     (".*-(prod|staging)-.*", "tw-prod-1", "tw-dev-1"), ("(?:a{3}){2}", "aaaaaa", "aaaaaaa"),
     (r"[\w.]+", "v1.2.3", "v1 2"), ("alpha{e<=1}", "alpha{e<=1}", "alphx")],
)  # fmt: skip
def test_other_regexes_mean_what_python_and_alertmanager_read(pattern: str, matching: str, other: str) -> None:
    taken = silence(f'model=~"{pattern}"')
    assert taken.matches({"model": matching}) is True
    assert taken.matches({"model": other}) is False  # anchored, and braces are literal text


async def test_a_stored_silence_with_a_matcher_now_refused_silences_nothing_and_the_daemon_starts(
    tmp_path: Path,
) -> None:
    async with open_store(tmp_path / "state.db") as store:
        kept = silence("model=alpha7")
        await store.run(lambda db: silence_store.insert(db, kept))
        matchers = json.dumps(['model=~"(a|aa)*c"', "desk=tw"])  # as an earlier version stored it
        await store.run(lambda db: db.execute("UPDATE silences SET matchers = ? WHERE id = ?", (matchers, kept.id)))
        suppressions = await Suppressions.load(store, (), now=T0 + 1)
        (loaded,) = suppressions.silences()
        assert loaded.texts == ('model=~"(a|aa)*c"', "desk=tw")  # listed as stored, to be expired
        assert suppressions.reason("fp", {"model": "aac", "desk": "tw"}, T0 + 1, []) is None


@pytest.mark.parametrize("matchers", [['alertname=~".*"'], ["model!=x"], ['model=~".*"', "desk="], ["model="]])
def test_matchers_that_match_everything_are_refused(matchers: list[str]) -> None:
    with pytest.raises(SilenceError, match="silence everything") as caught:
        silence(*matchers)
    assert [f.field for f in caught.value.fields] == ["matchers"]


# --- lifecycle ---------------------------------------------------------------------------------------------------


async def test_pending_active_expired_at_the_exact_instants() -> None:
    async with open_store(":memory:", inline=True) as store:
        suppressions = await Suppressions.load(store, (), now=T0)
        later = silence("model=alpha7", start=T0 + 10, end=T0 + 70)
        await suppressions.add_silence(later)
        labels = {"model": "alpha7"}
        assert later.state(T0) == "pending"
        assert suppressions.next_change(T0) == T0 + 10
        assert suppressions.reason("fp", labels, T0 + 9.999, []) is None
        found = suppressions.reason("fp", labels, T0 + 10, [])
        assert found is not None
        assert (found.kind, found.ref) == ("silence", later.id)
        assert found.detail == "silenced by ann until 2026-01-01T00:01:10Z: why"
        assert suppressions.next_change(T0 + 10) == T0 + 70
        assert suppressions.reason("fp", labels, T0 + 69.999, []) is not None
        assert suppressions.reason("fp", labels, T0 + 70, []) is None
        assert later.state(T0 + 70) == "expired"
        assert suppressions.next_change(T0 + 70) is None
        assert suppressions.silences() == []  # forgotten in memory, kept in the store
        assert await count(store) == 1


async def test_a_dispatcher_loop_wakes_at_each_edge_and_on_changes(autojump_clock: trio.testing.MockClock) -> None:
    clock = TrioClock(T0)
    seen: list[tuple[float, bool]] = []
    async with open_store(":memory:", inline=True) as store:
        suppressions = await Suppressions.load(store, (), now=clock.now())

        async def dispatcher() -> None:
            while True:
                changed = suppressions.changed()
                now = clock.now()
                seen.append((now - T0, suppressions.reason("fp", {"model": "a"}, now, []) is not None))
                with trio.move_on_at(clock.trio_deadline(suppressions.next_change(now))):
                    await changed.wait()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(dispatcher)
            await trio.sleep(5)
            created = silence("model=a", start=T0 + 30, end=T0 + 90)
            await suppressions.add_silence(created)
            await trio.sleep(55)
            await suppressions.expire_silence(created.id, clock.now())
            await trio.sleep(100)
            nursery.cancel_scope.cancel()
    assert seen == [(0, False), (5, False), (30, True), (60, False)]


async def test_silences_survive_a_restart(tmp_path: Path) -> None:
    async with open_store(tmp_path / "state.db") as store:
        first = await Suppressions.load(store, (), now=T0)
        await first.add_silence(silence("model=a"))
        await first.add_silence(silence("model=b", end=T0 + 60))
    async with open_store(tmp_path / "state.db") as store:
        again = await Suppressions.load(store, (), now=T0 + 61)
        assert [s.texts for s in again.silences()] == [("model=a",)]
        assert again.reason("fp", {"model": "a"}, T0 + 61, []) is not None


# --- the API -----------------------------------------------------------------------------------------------------


def body(**overrides: Any) -> dict[str, Any]:
    return {"matchers": ["model=alpha7", 'alertname=~"IC.*"'], "duration": "2h", "created_by": "ann",
            "comment": "retraining alpha7", **overrides}  # fmt: skip


async def test_create_list_get_expire(config: Path) -> None:
    async with app(config) as (daemon, client, suppressions):
        created = await client.post("/api/v1/silences", json=body(), headers=AUTH)
        assert created.status_code == 201, created.text
        made = created.json()["silence"]
        assert made["state"] == "active"
        assert made["matchers"] == ["model=alpha7", 'alertname=~"IC.*"']
        assert made["ends_at"] - made["starts_at"] == 7200
        now = daemon.clock.now()
        assert suppressions.reason("x", {"model": "alpha7", "alertname": "ICDecay"}, now, []) is not None  # at once
        later = await client.post("/api/v1/silences", json=body(starts_at=now + 600), headers=AUTH)
        assert later.json()["silence"]["state"] == "pending"

        listed = (await client.get("/api/v1/silences")).json()["silences"]
        assert {s["id"] for s in listed} == {made["id"], later.json()["id"]}
        one = await client.get(f"/api/v1/silences/{made['id']}")
        assert one.json()["silence"]["comment"] == "retraining alpha7"

        expired = await client.delete(f"/api/v1/silences/{made['id']}", headers=AUTH)
        assert expired.status_code == 200
        assert expired.json()["silence"]["state"] == "expired"
        assert suppressions.reason("x", {"model": "alpha7", "alertname": "ICDecay"}, daemon.clock.now(), []) is None
        again = await client.delete(f"/api/v1/silences/{made['id']}", headers=AUTH)
        assert again.status_code == 409
        assert (await client.delete("/api/v1/silences/nope", headers=AUTH)).status_code == 404
        assert (await client.get("/api/v1/silences/nope")).status_code == 404

        pending = await client.delete(f"/api/v1/silences/{later.json()['id']}", headers=AUTH)
        assert pending.json()["silence"]["state"] == "expired"  # a pending silence never starts
        assert (await client.get("/api/v1/silences")).json()["silences"] == []
        everything = (await client.get("/api/v1/silences?state=pending,active,expired")).json()["silences"]
        assert len(everything) == 2
        assert (await client.get("/api/v1/silences?state=gone")).status_code == 400


async def test_writes_need_the_admin_token(config: Path) -> None:
    async with app(config) as (daemon, client, _):
        ingest = {"Authorization": f"Bearer ingest-{TOKEN}"}
        for headers in ({}, ingest):
            refused = await client.post("/api/v1/silences", json=body(), headers=headers)
            assert refused.status_code == 401
            assert TOKEN not in refused.text
        made = (await client.post("/api/v1/silences", json=body(), headers=AUTH)).json()
        assert (await client.delete(f"/api/v1/silences/{made['id']}", headers=ingest)).status_code == 401
        assert await count(daemon.store) == 1


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"matchers": None}, "matchers", "required"),
        ({"matchers": []}, "matchers", "required"),
        ({"matchers": "model=a"}, "matchers", "required"),
        ({"matchers": [7]}, "matchers[0]", "a string"),
        ({"matchers": ["model=a", "9x=1"]}, "matchers[1]", "not a matcher"),
        ({"matchers": ["model==alpha7"]}, "matchers[0]", "the value starts with '='; quote it if you mean it"),
        ({"matchers": ['model="a"x']}, "matchers[0]", "quotes are not closed"),
        ({"matchers": ['model=~"("']}, "matchers[0]", "bad regex"),
        ({"matchers": ['alertname=~".*"']}, "matchers", "silence everything"),
        ({"matchers": ["m=a"] * 40}, "matchers", "at most"),
        ({"matchers": ["model=" + "x" * 2000]}, "matchers[0]", "at most 1024 characters"),
        ({"created_by": None}, "created_by", "required"),
        ({"created_by": "  "}, "created_by", "required"),
        ({"comment": None}, "comment", "required"),
        ({"comment": "x" * 3000}, "comment", "at most"),
        ({"duration": None}, "ends_at", "exactly one"),
        ({"ends_at": "2099-01-01T00:00:00Z"}, "ends_at", "exactly one"),
        ({"duration": "forever"}, "duration", "not a duration"),
        ({"duration": -5}, "duration", "positive"),
        ({"duration": True}, "duration", "a duration"),
        ({"duration": 10**400}, "duration", "longer than a century"),
        ({"duration": "10000w"}, "duration", "longer than a century"),
        ({"duration": "１h"}, "duration", "not a duration"),
        ({"starts_at": "2099-12-31T23:30:00Z", "duration": "1h"}, "duration", "end on or after 2100-01-01"),
        ({"starts_at": 10**400}, "starts_at", "between 2000"),
        ({"starts_at": "2030-01-01T00:00:00+23:59:59.5"}, "starts_at", "has seconds"),
        ({"duration": None, "ends_at": 10**400}, "ends_at", "between 2000"),
        ({"duration": None, "ends_at": "2026-12-01T09:00:00"}, "ends_at", "no UTC offset"),
        ({"duration": None, "ends_at": "tomorrow"}, "ends_at", "not an RFC 3339"),
        ({"duration": None, "ends_at": 1_000_000}, "ends_at", "between 2000"),
        ({"duration": None, "ends_at": 1_767_225_600}, "ends_at", "after now"),
        ({"starts_at": "2099-01-01T09:00:00"}, "starts_at", "no UTC offset"),
        ({"starts_at": [1]}, "starts_at", "RFC 3339"),
        ({"starts_at": "2030-01-01T00:00:00+08:00:00"}, "starts_at", "has seconds"),
        ({"starts_at": "2030-01-01T00:00:00+0800"}, "starts_at", "not an RFC 3339"),
        ({"starts_at": "20300101T000000Z"}, "starts_at", "not an RFC 3339"),
        ({"starts_at": "2030-W01-2T00:00:00Z"}, "starts_at", "not an RFC 3339"),
        ({"starts_at": "2030-02-30T00:00:00Z"}, "starts_at", "not an RFC 3339"),
        ({"extra": 1}, "extra", "unknown field"),
        ({"id": "mine"}, "id", "unknown field"),
    ],
)
async def test_each_bad_field_is_named_and_nothing_is_stored(
    config: Path, change: dict[str, Any], field: str, message: str
) -> None:
    async with app(config) as (daemon, client, suppressions):
        refused = await client.post("/api/v1/silences", json=body(**change), headers=AUTH)
        assert refused.status_code == 400, refused.text
        fields = refused.json()["fields"]
        assert any(f["field"] == field and message in f["message"] for f in fields), fields
        assert await count(daemon.store) == 0
        assert suppressions.silences() == []


@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        (b"{not json", 400, "not JSON"),
        (b"[1, 2]", 400, "silence refused: the body must be a JSON object"),
        (b"null", 400, "silence refused: the body must be a JSON object"),
        (b"{" + b" " * 5000 + b"}", 413, "max_body"),
        (
            b'{"matchers": ["model=a7"], "duration": "1h", "created_by": "amy", "comment": "\\udc00"}',
            400,
            "the string at comment holds a lone surrogate",
        ),
        (b"[" * 3000, 400, "nested too deeply"),
        (  # which one was meant? (the configuration's YAML refuses a key twice too)
            b'{"matchers": ["model=a7"], "duration": "1h", "duration": "2h", "created_by": "amy", "comment": "x"}',
            400,
            "the key 'duration' appears twice in one object",
        ),
    ],
)
async def test_bodies_that_are_not_a_silence(config: Path, content: bytes, status: int, message: str) -> None:
    async with app(config) as (daemon, client, _):
        refused = await client.post("/api/v1/silences", content=content, headers=AUTH)
        assert refused.status_code == status
        assert message in refused.json()["error"]
        assert await count(daemon.store) == 0


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("/api/v1/silences?limit=²", "limit is a whole number"),
        ("/api/v1/silences?limit=" + "9" * 5000, "limit is a whole number"),
        ("/api/v1/suppressions?limit=١٠", "limit is a whole number"),
        ("/api/v1/alerts/x/suppressions?limit=²", "limit is a whole number"),
        ("/api/v1/suppressions?since=1_700_000_000", "since: not an RFC 3339 timestamp"),
        ("/api/v1/suppressions?since=１７００００００００", "since: not an RFC 3339 timestamp"),
    ],
    ids=lambda value: value[:40],
)
async def test_query_numbers_are_ascii_digits(config: Path, query: str, message: str) -> None:
    async with app(config) as (_daemon, client, _):
        refused = await client.get(query)
        assert refused.status_code == 400
        assert message in refused.json()["error"]


async def test_all_bad_fields_are_reported_at_once(config: Path) -> None:
    async with app(config) as (_, client, _suppressions):
        refused = await client.post("/api/v1/silences", json={"matchers": ["??"], "duration": "x"}, headers=AUTH)
        fields = {f["field"] for f in refused.json()["fields"]}
        assert fields == {"matchers[0]", "created_by", "comment", "duration"}


async def test_why_names_the_silence_that_holds_back_a_resolution(write_config: Callable[..., Path]) -> None:
    """The receiver was told 'firing'; the alert resolved under a silence: 'now' names the silence."""
    routed = (
        CONFIG
        + """channels:
  - {name: hook, kind: webhook, url: "http://127.0.0.1:9/hook"}
route: {channels: [hook], group_by: ['...'], group_wait: 0s}
"""
    )
    ingest = {"Authorization": f"Bearer ingest-{TOKEN}"}
    sample = {"metric": "gross", "labels": {"model": "alpha7"}, "value": 1.9}
    async with app(write_config(routed)) as (daemon, client, _):
        await client.post("/api/v1/samples", json=[{**sample, "ts": time.time()}], headers=ingest)
        for _ in range(200):  # told (a flush marks what it told, whatever the receiver answers)
            if await daemon.store.query("SELECT id FROM outbox"):
                break
            await trio.sleep(0.01)
        created = await client.post("/api/v1/silences", json=body(matchers=["model=alpha7"]), headers=AUTH)
        assert created.status_code == 201
        await client.post("/api/v1/samples", json=[{**sample, "ts": time.time(), "value": 1.0}], headers=ingest)
        (alert,) = await daemon.store.query("SELECT fingerprint FROM alerts")
        for _ in range(200):
            if (await daemon.store.query("SELECT state FROM alerts"))[0]["state"] == "resolved":
                break
            await trio.sleep(0.01)
        why = (await client.get(f"/api/v1/alerts/{alert['fingerprint']}/suppressions")).json()
        assert why["state"] == "resolved"
        assert [reason["kind"] for reason in why["now"]] == ["silence"]


async def test_why_names_the_rules_own_muted_window(write_config: Callable[..., Path]) -> None:
    muted = (
        CONFIG.replace("value: 1.5}", "value: 1.5, muted_during: [always]}")
        + """windows:
  shut: {not: trading}
  always: {any_of: [trading, shut]}
"""
    )
    ingest = {"Authorization": f"Bearer ingest-{TOKEN}"}
    sample = {"metric": "gross", "labels": {"model": "alpha7"}, "value": 1.9, "ts": time.time()}
    async with app(write_config(muted)) as (daemon, client, _):
        await client.post("/api/v1/samples", json=[sample], headers=ingest)
        for _ in range(200):
            if found := await daemon.store.query("SELECT fingerprint, state FROM alerts"):
                break
            await trio.sleep(0.01)
        assert found[0]["state"] == "firing"
        why = (await client.get(f"/api/v1/alerts/{found[0]['fingerprint']}/suppressions")).json()
        assert [(r["kind"], r["ref"]) for r in why["now"]] == [("muted_window", "always")]
        assert "rule exposure is muted during always (muted_during)" in why["now"][0]["detail"]


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-28T04:00:00Z",
        "2026-11-28t04:00:00z",
        "2026-11-28 12:00:00+08:00",
        "2026-11-28T04:00:00.000000000000+00:00",
    ],
)
def test_every_rfc_3339_form_of_an_instant_is_read(text: str) -> None:
    from alphawatch.daemon.silences import parse_instant

    assert parse_instant(text) == 1_795_838_400.0
