"""Acknowledgements (one firing episode), the suppression record ("why"), retention, and the CLI."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from alphawatch.daemon import suppression_cli
from alphawatch.daemon.main import _serve
from alphawatch.daemon.silences import parse_silence
from alphawatch.daemon.store import Store, dump_labels, open_store
from alphawatch.daemon.suppression import Reason, Suppressed, Suppressions, purge_before
from tests.daemon_harness import AUTH, TOKEN
from tests.test_silences import CONFIG, T0, app, count

FP = "00ab5a1ef00d0001"
LABELS = {"alertname": "ICDecay", "model": "a7", "severity": "warning"}


@pytest.fixture
def config(write_config: Callable[..., Path]) -> Path:
    return write_config(CONFIG)


async def put_alert(
    store: Store, state: str, active_at: float, fingerprint: str = FP, labels: dict[str, str] | None = None
) -> None:
    labels = labels or LABELS

    def work(db: Any) -> None:
        with db:
            db.execute(
                "INSERT OR REPLACE INTO alerts (fingerprint, rule, series, labels, state, active_at, updated_at)"
                " VALUES (?, ?, '{}', ?, ?, ?, ?)",
                (fingerprint, labels["alertname"], dump_labels(labels), state, active_at, active_at),
            )

    await store.run(work)


ACK = {"by": "ann", "comment": "on it"}


async def test_an_ack_holds_for_one_firing_episode(config: Path) -> None:
    async with app(config) as (daemon, client, suppressions):
        await put_alert(daemon.store, "firing", T0)
        changed = suppressions.changed()
        made = await client.post(f"/api/v1/alerts/{FP}/ack", json=ACK, headers=AUTH)
        assert made.status_code == 201, made.text
        assert made.json()["ack"] == {"fingerprint": FP, "active_at": T0, "by": "ann", "comment": "on it",
                                      "at": made.json()["ack"]["at"], "earlier": []}  # fmt: skip
        assert changed.is_set()
        ack = suppressions.acknowledged(FP, T0)
        assert ack is not None
        reason = suppressions.ack_reason(ack)
        assert (reason.kind, reason.ref) == ("acknowledged", "ann")
        assert reason.detail.startswith("acknowledged by ann at ")
        assert reason.detail.endswith(": on it")
        # it resolved and fired again: a new episode, not acknowledged
        assert suppressions.acknowledged(FP, T0 + 600) is None
        await put_alert(daemon.store, "resolved", T0)
        assert (await client.post(f"/api/v1/alerts/{FP}/ack", json=ACK, headers=AUTH)).status_code == 409
        await put_alert(daemon.store, "firing", T0 + 600)
        again = await client.post(f"/api/v1/alerts/{FP}/ack", json={"by": "bob", "comment": "mine"}, headers=AUTH)
        assert again.json()["ack"]["active_at"] == T0 + 600
        assert again.json()["ack"]["earlier"] == []  # ann's was of the episode before
        assert suppressions.acknowledged(FP, T0) is None
        assert suppressions.acknowledged(FP, T0 + 600) is not None

        removed = await client.delete(f"/api/v1/alerts/{FP}/ack", headers=AUTH)
        assert removed.status_code == 200
        assert suppressions.acknowledged(FP, T0 + 600) is None
        assert (await client.delete(f"/api/v1/alerts/{FP}/ack", headers=AUTH)).status_code == 404
        assert await count(daemon.store, "acks") == 0


async def test_a_second_ack_of_an_episode_takes_over_and_keeps_the_first(config: Path) -> None:
    async with app(config) as (daemon, client, suppressions):
        await put_alert(daemon.store, "firing", T0)
        first = (await client.post(f"/api/v1/alerts/{FP}/ack", json=ACK, headers=AUTH)).json()["ack"]
        taken = await client.post(f"/api/v1/alerts/{FP}/ack", json={"by": "bob", "comment": "mine now"}, headers=AUTH)
        assert taken.status_code == 201
        assert (taken.json()["ack"]["by"], taken.json()["ack"]["comment"]) == ("bob", "mine now")
        assert taken.json()["ack"]["earlier"] == [{"by": "ann", "comment": "on it", "at": first["at"]}]
        why = (await client.get(f"/api/v1/alerts/{FP}/suppressions")).json()
        assert why["ack"]["earlier"][0]["by"] == "ann"
        detail = next(r["detail"] for r in why["now"] if r["kind"] == "acknowledged")
        assert detail.startswith("acknowledged by bob at ")
        assert "mine now (taking over from ann at " in detail
    async with app(config) as (daemon, client, suppressions):  # and after a restart
        ack = suppressions.acknowledged(FP, T0)
        assert ack is not None
        assert [e.by for e in ack.earlier] == ["ann"]


@pytest.mark.parametrize(
    ("state", "body", "status", "field"),
    [
        (None, ACK, 404, None),
        ("pending", ACK, 409, None),
        ("resolved", ACK, 409, None),
        ("firing", {"by": "ann"}, 400, "comment"),
        ("firing", {"comment": "x"}, 400, "by"),
        ("firing", {"by": " ", "comment": "x"}, 400, "by"),
        ("firing", {"by": 7, "comment": "x"}, 400, "by"),
        ("firing", {**ACK, "until": "1h"}, 400, "until"),
        ("firing", {**ACK, "by": "x" * 300}, 400, "by"),
        ("firing", ["ann"], 400, ""),
    ],
)
async def test_refused_acks_store_nothing(
    config: Path, state: str | None, body: Any, status: int, field: str | None
) -> None:
    async with app(config) as (daemon, client, suppressions):
        if state is not None:
            await put_alert(daemon.store, state, T0)
        refused = await client.post(f"/api/v1/alerts/{FP}/ack", json=body, headers=AUTH)
        assert refused.status_code == status, refused.text
        assert "error" in refused.json()
        if field is not None:
            assert field in [f["field"] for f in refused.json()["fields"]]
        assert await count(daemon.store, "acks") == 0
        assert suppressions.ack_of(FP) is None


async def test_acks_need_the_admin_token(config: Path) -> None:
    async with app(config) as (daemon, client, _):
        await put_alert(daemon.store, "firing", T0)
        for headers in ({}, {"Authorization": f"Bearer ingest-{TOKEN}"}):
            assert (await client.post(f"/api/v1/alerts/{FP}/ack", json=ACK, headers=headers)).status_code == 401
            assert (await client.delete(f"/api/v1/alerts/{FP}/ack", headers=headers)).status_code == 401
        assert await count(daemon.store, "acks") == 0


async def test_acks_survive_a_restart(tmp_path: Path) -> None:
    async with open_store(tmp_path / "state.db") as store:
        await put_alert(store, "firing", T0)
        await (await Suppressions.load(store, ())).acknowledge(FP, "ann", "on it", T0 + 5)
    async with open_store(tmp_path / "state.db") as store:
        again = await Suppressions.load(store, ())
        assert again.acknowledged(FP, T0) is not None


# --- why ---------------------------------------------------------------------------------------------------------


async def test_why_did_i_not_get_this_alert(config: Path) -> None:
    async with app(config) as (daemon, client, suppressions):
        assert (await client.get(f"/api/v1/alerts/{FP}/suppressions")).status_code == 404
        now = daemon.clock.now()
        await put_alert(daemon.store, "firing", now)
        made = parse_silence({"matchers": ["model=a7"], "duration": "1h", "created_by": "ann", "comment": "retrain"},
                             now)  # fmt: skip
        await suppressions.add_silence(made)
        await suppressions.acknowledge(FP, "bob", "looking", now)
        await suppressions.record(FP, "ICDecay", now - 60, Reason("muted_window", "lunch", "route 0.1 muted"), "slack")
        await suppressions.record_many([
            Suppressed(FP, "ICDecay", now - 30, Reason("silence", made.id, "silenced by ann"), None),
            Suppressed("other", "Drift", now - 10, Reason("inhibited", FP, "inhibited by …"), "email"),
        ])  # fmt: skip
        why = (await client.get(f"/api/v1/alerts/{FP}/suppressions")).json()
        assert why["state"] == "firing"
        assert [r["kind"] for r in why["now"]] == ["silence", "acknowledged"]
        assert why["ack"]["by"] == "bob"
        await put_alert(daemon.store, "firing", now + 600)  # it resolved and fired again: a new episode
        again = (await client.get(f"/api/v1/alerts/{FP}/suppressions")).json()
        assert again["ack"] is None  # bob's acknowledgement was of the episode before
        assert [r["kind"] for r in again["now"]] == ["silence"]
        recorded = [(r["kind"], r["channel"]) for r in why["suppressions"]]
        assert recorded == [("silence", None), ("muted_window", "slack")]

        everything = (await client.get("/api/v1/suppressions")).json()["suppressions"]
        assert [r["fingerprint"] for r in everything] == ["other", FP, FP]
        since = (await client.get(f"/api/v1/suppressions?since={now - 45}")).json()["suppressions"]
        assert len(since) == 2
        iso = (await client.get("/api/v1/suppressions?since=2000-01-01T08:00:00%2B08:00&kind=inhibited")).json()
        assert [r["fingerprint"] for r in iso["suppressions"]] == ["other"]
        assert (await client.get("/api/v1/suppressions?limit=1")).json()["suppressions"][0]["fingerprint"] == "other"
        for bad in ("since=yesterday", "since=2026-01-01T00:00:00", "kind=snoozed", "limit=0", "limit=x"):
            refused = await client.get(f"/api/v1/suppressions?{bad}")
            assert refused.status_code == 400, bad
            assert "error" in refused.json()


async def test_purge_keeps_what_is_recent_and_acks_of_firing_episodes() -> None:
    async with open_store(":memory:", inline=True) as store:
        suppressions = await Suppressions.load(store, (), now=T0)
        await put_alert(store, "firing", T0)
        await put_alert(store, "resolved", T0, fingerprint="gone")
        await suppressions.acknowledge(FP, "ann", "x", T0)
        await put_alert(store, "firing", T0, fingerprint="gone")
        await suppressions.acknowledge("gone", "ann", "x", T0)
        await put_alert(store, "resolved", T0, fingerprint="gone")
        await suppressions.add_silence(parse_silence({"matchers": ["a=b"], "duration": 60, "created_by": "a",
                                                      "comment": "c"}, T0))  # fmt: skip
        await suppressions.add_silence(parse_silence({"matchers": ["a=b"], "duration": 7200, "created_by": "a",
                                                      "comment": "c"}, T0))  # fmt: skip
        reason = Reason("silence", "s", "d")
        await suppressions.record_many([Suppressed(FP, "r", T0 + i, reason) for i in range(10)])
        while await suppressions.purge_before(T0 + 3600, batch=3):
            pass
        assert await count(store, "suppressions") == 0
        assert await count(store, "silences") == 1
        assert [r["fingerprint"] for r in await store.query("SELECT fingerprint FROM acks")] == [FP]
        assert suppressions.ack_of("gone") is None
        assert suppressions.ack_of(FP) is not None
        assert await purge_before(store, T0 + 3600) == 0


# --- the CLI -----------------------------------------------------------------------------------------------------


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    suppression_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


async def test_the_cli_against_a_served_daemon(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALPHAWATCH_TOKEN", raising=False)
    async with app(config) as (daemon, _, suppressions), trio.open_nursery() as nursery:
        stop = trio.Event()
        binds = await nursery.start(_serve, daemon, "127.0.0.1", 0, stop.wait)
        where = ["--url", binds[0], "-c", str(config)]  # the admin token comes from the configuration

        async def run(*argv: str) -> tuple[int, str, str]:
            code = await trio.to_thread.run_sync(cli, *argv)
            out, err = capsys.readouterr()
            return code, out, err

        code, out, _ = await run("silence", "add", *where, "-m", "model=a7", "-m", 'alertname=~"IC.*"',
                                 "--duration", "2h", "--by", "ann", "--comment", "retraining")  # fmt: skip
        assert code == 0, out
        assert " active from " in out
        silence_id = out.split()[1]
        assert suppressions.reason(FP, LABELS, daemon.clock.now(), []) is not None

        code, out, _ = await run("silence", "list", *where, "--json")
        assert [s["id"] for s in json.loads(out)] == [silence_id]
        code, out, _ = await run("silence", "list", *where)
        assert 'model=a7 alertname=~"IC.*"' in out
        code, out, _ = await run("silence", "add", *where, "-m", "model=b1", "--duration", "1h", "--by", "eve\x07",
                                 "--comment", "\x1b[2J\x1b]0;owned\x07")  # fmt: skip
        assert code == 0, out
        code, out, _ = await run("silence", "list", *where)
        assert "\x1b" not in out  # an escape sequence reaches the operator's terminal as text
        assert "\\x1b[2J\\x1b]0;owned\\x07" in out
        assert "eve\\x07" in out

        code, _, err = await run("silence", "add", *where, "-m", 'alertname=~".*"', "--duration", "2h", "--by", "a",
                                 "--comment", "c")  # fmt: skip
        assert code == 1
        assert "matchers: these matchers also match an alert without any labels" in err

        code, out, _ = await run("silence", "expire", *where, silence_id)
        assert (code, out.split()[:3]) == (0, ["silence", silence_id, "expired"])
        code, _, err = await run("silence", "expire", *where, silence_id)
        assert (code, "refused (409)" in err) == (1, True)
        code, out, _ = await run("silence", "list", *where, "--all", "--json")
        assert {s["id"]: s["state"] for s in json.loads(out)}[silence_id] == "expired"

        await put_alert(daemon.store, "firing", daemon.clock.now())
        code, out, _ = await run("ack", *where, FP, "--by", "bob", "--comment", "looking")
        assert (code, out.strip()) == (0, f"alert {FP} acknowledged by bob")
        code, out, _ = await run("ack", *where, FP, "--by", "cho", "--comment", "handover")
        assert (code, out.strip()) == (0, f"alert {FP} acknowledged by cho (taking over from bob)")
        code, _, err = await run("ack", *where, "nope", "--by", "bob", "--comment", "looking")
        assert (code, err) == (1, "ack: no alert's ID starts with 'nope'\n")
        code, _, err = await run("ack", *where, "0" * 16, "--by", "bob", "--comment", "looking")
        assert (code, "refused (404)" in err) == (1, True)
        assert (await run("ack", *where, "ab", "--remove"))[0] == 2  # too short to name one
        assert await run("ack", *where, FP) == (2, "", "ack: give --by and --comment (or --remove)\n")

        await suppressions.record(FP, "ICDecay", T0, Reason("muted_window", "lunch", "route 0.1 muted at lunch"), None)
        code, out, _ = await run("why", *where, FP[:6])  # the first characters, as on the page, will do
        assert code == 0
        assert f"alert {FP}: firing" in out
        assert "now acknowledged: acknowledged by cho at " in out
        assert ": handover (taking over from bob at " in out
        assert "2026-01-01T00:00:00Z  muted_window all channels: route 0.1 muted at lunch" in out

        code, out, _ = await run("ack", *where, FP, "--remove")
        assert code == 0
        code, out, _ = await run("why", *where, FP, "--json")
        assert json.loads(out)["now"] == []
        assert TOKEN not in out

        code, _, err = await run("why", "--url", "http://127.0.0.1:9", "-c", str(config), FP)
        assert (code, "cannot reach the daemon" in err) == (1, True)
        stop.set()
