"""Notification groups under MockClock: group_wait, group_interval, repeat_interval, resolved once, restarts,
reloads, muted routes falling through and notifications held for a window."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from alphawatch.daemon.calendar import TAIPEI
from alphawatch.daemon.config import load_config
from alphawatch.daemon.ingest import parse_batch
from tests.engine_harness import Harness, running_engine

CHANNELS = """
channels:
  - {name: sms, kind: webhook, url: "http://127.0.0.1:9/sms"}
  - {name: mail, kind: webhook, url: "http://127.0.0.1:9/mail"}
"""
GROUPED = (
    CHANNELS
    + """
route:
  channels: [mail]
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 1h
rules:
  - {name: exposure, kind: threshold, metric: gross, op: above, value: 1.5}
"""
)
START = 1_780_000_000.0  # 2026-05-28, inside the calendar's data


def taipei(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=TAIPEI).timestamp()


async def sent(h: Harness) -> list[dict[str, Any]]:
    return [n["payload"] for n in await h.outbox()]


def models(payload: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((a["labels"].get("model", ""), a["status"]) for a in payload["alerts"])


async def test_a_group_waits_then_tells_everything_at_once(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    async with running_engine(write_config(GROUPED), start=START) as h:
        await h.push("gross", 1.9, model="a")
        await h.advance(10)
        await h.push("gross", 1.8, model="b")
        await h.advance(19)
        assert await sent(h) == []
        await h.advance(1)  # group_wait after the first alert
        (first,) = await sent(h)
        assert models(first) == [("a", "firing"), ("b", "firing")]
        assert first["groupLabels"] == {"alertname": "exposure"}
        assert first["commonLabels"] == {"alertname": "exposure", "severity": "warning"}

        # a newcomer waits for group_interval after the last flush: not sooner, not later
        await h.advance(30)
        await h.push("gross", 2.0, model="c")
        await h.advance(300 - 30 - 1)
        assert len(await sent(h)) == 1
        await h.advance(1)
        second = (await sent(h))[1]
        assert models(second) == [("a", "firing"), ("b", "firing"), ("c", "firing")]

        # a resolution is told once, with its recovery value, then the alert leaves the group
        await h.push("gross", 1.1, model="a")
        await h.advance(300)
        third = (await sent(h))[2]
        assert models(third) == [("a", "resolved"), ("b", "firing"), ("c", "firing")]
        assert next(a["value"] for a in third["alerts"] if a["status"] == "resolved") == 1.1
        assert third["status"] == "firing"

        # nothing new: the next word is the repeat, an hour after the last flush
        await h.advance(3599)
        assert len(await sent(h)) == 3
        await h.advance(1)
        assert models((await sent(h))[3]) == [("b", "firing"), ("c", "firing")]
        keys = [n["idempotency_key"] for n in await h.outbox()]
        assert len(set(keys)) == 4


async def test_group_timers_survive_a_restart(write_config: Callable[..., Path], autojump_clock: object) -> None:
    path = write_config(GROUPED)
    async with running_engine(path, start=START) as h:
        await h.push("gross", 1.9, model="a")
        await h.advance(20)
    async with running_engine(path, start=START + 25) as h:  # down for five seconds, inside group_wait
        assert await sent(h) == []
        await h.advance(4)
        assert await sent(h) == []
        await h.advance(1)
        assert len(await sent(h)) == 1
        await h.advance(600)
        assert len(await sent(h)) == 1  # and not sent again after the restart
    async with running_engine(path, start=START + 700) as h:
        await h.advance(3600 - 700 + 30 - 1)
        assert len(await sent(h)) == 1
        await h.advance(1)
        assert len(await sent(h)) == 2  # the repeat is still due an hour after the flush, across restarts


async def test_after_a_restart_an_overdue_repeat_waits_for_the_rules_first_look(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    """The feed recovered just before the daemon went down; it comes back after the repeat fell due. The rule's
    first evaluation resolves the alert: the group tells "resolved", not a stale "firing" repeat first."""
    path = write_config(GROUPED.replace("value: 1.5}", "value: 1.5, keep_firing_for: 5s}").replace(
        "repeat_interval: 1h", "repeat_interval: 20m"))  # fmt: skip
    async with running_engine(path, start=START) as h:
        await h.push("gross", 1.9, model="a")
        await h.advance(31)
        assert [p["status"] for p in await sent(h)] == ["firing"]
        await h.push("gross", 1.0, model="a")  # below again: resolves once keep_firing_for is over
    async with running_engine(path, start=START + 31 + 1800) as h:  # back after the repeat was due
        await h.advance(1)
        assert [p["status"] for p in await sent(h)] == ["firing", "resolved"]


async def test_at_restart_nothing_goes_out_before_the_rules_look_even_with_a_rule_removed_meanwhile(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    """Resolving the alerts of a rule removed while the daemon was down is a write too: it must not let the
    overdue repeat of another rule's group out before that rule resolves it."""
    other = "  - {name: other, kind: threshold, metric: x, op: above, value: 1}\n"
    path = write_config(GROUPED.replace("value: 1.5}", "value: 1.5, keep_firing_for: 5s}").replace(
        "repeat_interval: 1h", "repeat_interval: 20m") + other)  # fmt: skip
    async with running_engine(path, start=START) as h:
        await h.push("gross", 1.9, model="a")
        await h.push("x", 2, model="b")
        await h.advance(31)
        await h.push("gross", 1.0, model="a")
    path.write_text(path.read_text().replace(other, ""))
    async with running_engine(path, start=START + 31 + 1800) as h:
        await h.advance(1)
        told = [(p["status"], models(p)) for p in await sent(h)]
        assert ("firing", [("a", "firing")]) not in told[1:]  # no stale repeat of a


async def test_at_restart_an_overdue_escalation_waits_for_the_rules_first_look(
    write_config: Callable[..., Path], autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The alert recovered just before the daemon went down, and its 10-minute tier fell due while it was down:
    no emergency SMS, even when the rule takes a while to read its history back (as from a worker thread)."""
    import trio

    from alphawatch.daemon.engine import Engine

    path = write_config(ESCALATING.replace("severity: critical}", "severity: critical, keep_firing_for: 5s}"))
    async with running_engine(path, start=START) as h:
        await h.push("gross", 1.9)
        await h.advance(1)
        await h.push("gross", 1.0)
    restore = Engine._restore

    async def slowly(self: Engine, rule: Any) -> Any:
        await trio.sleep(0.5)
        return await restore(self, rule)

    monkeypatch.setattr(Engine, "_restore", slowly)
    async with running_engine(path, start=START + 1200) as h:
        await h.advance(2)
        told = [(p["receiver"], p["status"]) for p in await sent(h)]
        assert "sms" not in [receiver for receiver, _ in told]
        assert told[-1] == ("mail", "resolved")


async def test_groups_due_together_go_out_oldest_first_whatever_their_route(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    two_routes = GROUPED.replace(
        "  repeat_interval: 1h\n",
        "  repeat_interval: 1h\n  routes:\n    - {matchers: [desk=x], group_by: [model]}\n    - {group_by: [model]}\n",
    )
    path = write_config(two_routes)
    async with running_engine(path, start=START) as h:
        for model, desk in (("a", "y"), ("b", "x"), ("c", "y")):  # routes: second, first, second
            await h.push("gross", 1.9, model=model, desk=desk)
            await h.advance(1)
    async with running_engine(path, start=START + 100) as h:  # all three fell due while it was down
        assert [models(p) for p in await sent(h)] == [[("a", "firing")], [("b", "firing")], [("c", "firing")]]


async def test_a_reload_keeps_the_groups(write_config: Callable[..., Path], autojump_clock: object) -> None:
    path = write_config(GROUPED)
    async with running_engine(path, start=START) as h:
        await h.push("gross", 1.9, model="a")
        await h.advance(30)
        assert len(await sent(h)) == 1
        changed = write_config(GROUPED.replace("value: 1.5}", "value: 1.5, description: gross leverage}"), "new.yaml")
        await h.engine.apply(load_config(changed))
        await h.advance(600)
        assert len(await sent(h)) == 1  # a reload that restarts the rule does not resend the group


def _under_routes(routes: str, labels: str) -> str:
    """A configuration whose child routes are ``routes`` (YAML list lines), one rule with these labels."""
    return (
        CHANNELS
        + "route:\n  channels: [mail]\n  group_by: [alertname]\n  group_wait: 30s\n  repeat_interval: 1h\n"
        + f"  routes:\n{routes}rules:\n"
        + f"  - {{name: exposure, kind: threshold, metric: gross, op: above, value: 1.5, labels: {labels}}}\n"
    )


def _route_first(text: str) -> str:
    """The same configuration with a route inserted before the others: each of them moves one place on."""
    return text.replace("  routes:\n", "  routes:\n    - {matchers: [team=other], channels: [mail]}\n")


async def test_a_reload_that_moves_a_route_in_the_tree_keeps_its_groups_and_tells_nothing_again(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    text = _under_routes("    - {matchers: [team=x], channels: [sms]}\n", "{team: x}")
    async with running_engine(write_config(text), start=START) as h:
        await h.push("gross", 1.9, model="a")
        await h.advance(30)
        assert [n["channel"] for n in await h.outbox()] == ["sms"]
        await h.advance(60)
        await h.engine.apply(load_config(write_config(_route_first(text), "inserted.yaml")))  # team=x: 0.1 now
        await h.advance(30 + 3600 - 90 - 1)
        assert len(await h.outbox()) == 1  # not told again after group_wait
        await h.advance(1)  # the repeat, an hour after the flush before the reload (at 30 s)
        told = await h.outbox()
        assert [n["channel"] for n in told] == ["sms", "sms"]
        assert [a["labels"]["model"] for a in told[1]["payload"]["alerts"]] == ["a"]  # (its document came along)
        assert [g["route"] for g in await h.store.query("SELECT route FROM groups")] == ["0.1"]


async def test_routes_that_move_into_each_others_places_keep_their_own_groups(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    routes = "    - {matchers: [team=x], channels: [sms], continue: true}\n"
    routes += "    - {matchers: [desk=d], channels: [mail], group_by: [model]}\n"
    text = _under_routes(routes, "{team: x, desk: d}")
    async with running_engine(write_config(text), start=START) as h:
        await h.push("gross", 1.9, model="a")
        await h.advance(30)
        assert sorted(n["channel"] for n in await h.outbox()) == ["mail", "sms"]
        await h.engine.apply(load_config(write_config(_route_first(text), "inserted.yaml")))  # 0.0 -> 0.1 -> 0.2
        await h.advance(600)
        assert len(await h.outbox()) == 2  # neither group told again
        groups = await h.store.query("SELECT route, labels FROM groups ORDER BY route")
        assert [(g["route"], json.loads(g["labels"])) for g in groups] == [
            ("0.1", {"alertname": "exposure"}),
            ("0.2", {"model": "a"}),
        ]
        members = await h.store.query("SELECT group_key FROM group_members JOIN group_member_docs USING (group_key)")
        assert len(members) == 2  # each with its document


async def test_a_route_moved_while_the_daemon_was_stopped_keeps_its_groups_and_tells_nothing_again(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    routes = "    - {matchers: [team=x], channels: [sms], continue: true}\n"
    routes += "    - {matchers: [desk=d], channels: [mail], group_by: [model]}\n"
    text = _under_routes(routes, "{team: x, desk: d}")
    path = write_config(text)
    async with running_engine(path, start=START) as h:
        await h.push("gross", 1.9, model="a")
        await h.advance(30)
        assert sorted(n["channel"] for n in await h.outbox()) == ["mail", "sms"]
    path.write_text(_route_first(text))  # 0.0 -> 0.1 -> 0.2, while stopped
    async with running_engine(path, start=START + 60) as h:
        await h.advance(3600 - 60 + 30 - 1)
        assert len(await h.outbox()) == 2  # neither group told again at start
        groups = await h.store.query("SELECT route, labels FROM groups ORDER BY route")
        assert [(g["route"], json.loads(g["labels"])) for g in groups] == [
            ("0.1", {"alertname": "exposure"}),
            ("0.2", {"model": "a"}),
        ]
        await h.advance(1)  # the repeats, an hour after the flush before the restart, with the alert's document
        repeats = (await h.outbox())[2:]
        assert sorted(n["channel"] for n in repeats) == ["mail", "sms"]
        assert all([a["labels"]["model"] for a in n["payload"]["alerts"]] == ["a"] for n in repeats)


async def test_alike_sibling_routes_keep_their_own_groups_when_a_reload_moves_them(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    """Routes with the same matchers are told apart by their channels and grouping, and, when those are the same
    too, by their order among themselves."""
    routes = "    - {matchers: [team=x], channels: [sms], continue: true}\n"
    routes += "    - {matchers: [team=x], channels: [mail], continue: true}\n"
    routes += "    - {matchers: [team=x], channels: [mail], repeat_interval: 2h}\n"
    text = _under_routes(routes, "{team: x}")
    async with running_engine(write_config(text), start=START) as h:
        await h.push("gross", 1.9, model="a")
        await h.advance(30)
        assert sorted(n["channel"] for n in await h.outbox()) == ["mail", "mail", "sms"]
        await h.engine.apply(load_config(write_config(_route_first(text), "inserted.yaml")))
        await h.advance(3600 - 1)
        assert len(await h.outbox()) == 3  # none told again after the reload
        await h.advance(1)  # the repeats of the first two (1 h); the third's own repeat_interval is 2 h
        assert sorted(n["channel"] for n in (await h.outbox())[3:]) == ["mail", "sms"]
        routes_now = await h.store.query("SELECT route FROM groups ORDER BY route")
        assert [g["route"] for g in routes_now] == ["0.1", "0.2", "0.3"]


async def test_a_route_whose_channels_changed_while_stopped_tells_its_new_channels(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    text = _under_routes("    - {matchers: [team=x], channels: [sms]}\n", "{team: x}")
    path = write_config(text)
    async with running_engine(path, start=START) as h:
        await h.push("gross", 1.9, model="a")
        await h.advance(30)
    path.write_text(text.replace("channels: [sms]}", "channels: [sms, mail]}"))
    async with running_engine(path, start=START + 60) as h:
        await h.advance(31)
        assert [n["channel"] for n in await h.outbox()] == ["sms", "sms", "mail"]


async def test_groups_written_before_routes_had_an_ident_are_kept_at_their_place(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    """A state file from before schema 12: its groups' routes are the ones at their places."""
    path = write_config(GROUPED)
    async with running_engine(path, start=START) as h:
        await h.push("gross", 1.9, model="a")
        await h.advance(30)
        await h.store.run(_as_schema_11)
    async with running_engine(path, start=START + 60) as h:
        await h.advance(3600 - 60 + 30 - 1)
        assert len(await sent(h)) == 1
        (group,) = await h.store.query("SELECT key, route_ident FROM groups")
        assert group["route_ident"] is not None
        assert not group["key"].startswith("0|")  # known by its route's ident now
        await h.advance(1)
        repeat = (await sent(h))[1]
        assert models(repeat) == [("a", "firing")]  # (its document came along)


def _as_schema_11(db: Any) -> None:
    """Groups as alphawatch wrote them before schema 12: keyed by their route's place, with no ident."""
    with db:
        db.execute("UPDATE groups SET route_ident = NULL, key = route || substr(key, instr(key, '|'))")
        for table in ("group_members", "group_member_docs"):
            db.execute(f"UPDATE {table} SET group_key = '0' || substr(group_key, instr(group_key, '|'))")


async def test_a_reload_times_the_groups_under_their_routes_new_settings(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    path = write_config(GROUPED)  # group_wait 30s, repeat_interval 1h
    async with running_engine(path, start=START) as h:
        await h.push("gross", 1.9, model="a")
        await h.advance(30)
        assert len(await sent(h)) == 1
        await h.advance(5)
        shorter = write_config(GROUPED.replace("repeat_interval: 1h", "repeat_interval: 10s"), "shorter.yaml")
        await h.engine.apply(load_config(shorter))
        await h.advance(4.9)  # the repeat comes 10 s after the flush, not an hour after it
        assert len(await sent(h)) == 1
        await h.advance(0.2)
        assert len(await sent(h)) == 2


async def test_timing_changed_while_the_daemon_was_stopped_applies_from_the_start(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    path = write_config(GROUPED)  # group_wait 30s, repeat_interval 1h
    async with running_engine(path, start=START) as h:
        await h.push("gross", 1.9, model="a")
        await h.advance(30)
        assert len(await sent(h)) == 1
    path.write_text(GROUPED.replace("repeat_interval: 1h", "repeat_interval: 2m"))
    async with running_engine(path, start=START + 60) as h:
        await h.advance(90 - 1)  # the repeat comes 2 min after the flush (at 30 s), not an hour after it
        assert len(await sent(h)) == 1
        await h.advance(1)
        assert len(await sent(h)) == 2


async def test_hold_until_dropped_or_added_while_stopped_applies_from_the_start(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    rules = "rules:\n  - {name: crit, kind: threshold, metric: gross, op: above, value: 1.5, severity: critical}\n"
    held = HELD_ROUTE + rules
    path = write_config(held)
    async with running_engine(path, start=taipei("2026-03-02T19:00:00")) as h:
        await h.push("gross", 1.9)
        await h.advance(60)
        assert await sent(h) == []  # held for the pre-open, 13 h away
    path.write_text(held.replace(", hold_until: pre_open}", ", repeat_interval: 1h}"))
    async with running_engine(path, start=taipei("2026-03-02T19:05:00")) as h:
        await h.advance(1)
        assert [p["receiver"] for p in await sent(h)] == ["mail"]  # the hold is gone: told at once
    path.write_text(held.replace(", hold_until: pre_open}", ", repeat_interval: 1h, hold_until: pre_open}"))
    async with running_engine(path, start=taipei("2026-03-02T19:10:00")) as h:
        await h.advance(taipei("2026-03-03T08:29:59") - h.clock.now())
        assert len(await sent(h)) == 1  # no repeats overnight: they wait for the pre-open, as the first did
        await h.advance(1)
        assert len(await sent(h)) == 2


async def test_repeats_wait_for_hold_until_as_first_notifications_do(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    rules = "rules:\n  - {name: crit, kind: threshold, metric: gross, op: above, value: 1.5, severity: critical}\n"
    path = write_config(
        (HELD_ROUTE + rules).replace(", hold_until: pre_open}", ", repeat_interval: 1h, hold_until: pre_open}")
    )
    async with running_engine(path, start=taipei("2026-03-02T08:40:00")) as h:  # inside the pre-open
        await h.push("gross", 1.9)
        assert len(await sent(h)) == 1
        await h.advance(taipei("2026-03-03T08:29:59") - h.clock.now())
        assert len(await sent(h)) == 1  # not hourly through the day and the night: the pre-open holds them
        await h.advance(1)
        assert len(await sent(h)) == 2


async def test_news_waits_for_group_interval_across_a_restart(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    path = write_config(GROUPED)  # group_wait 30s, group_interval 5m
    async with running_engine(path, start=START) as h:
        await h.push("gross", 1.9, model="a")
        await h.advance(30)
        await h.push("gross", 1.0, model="a")  # its resolution is due 5 min after the flush
        await h.advance(10)
    async with running_engine(path, start=START + 60) as h:
        await h.advance(300 - 60 + 30 - 1)
        assert [p["status"] for p in await sent(h)] == ["firing"]  # (it went at the start before)
        await h.advance(1)
        assert [p["status"] for p in await sent(h)] == ["firing", "resolved"]


@pytest.mark.parametrize("restart", [False, True])
async def test_a_resolution_not_yet_told_reaches_the_channels_of_a_route_that_changed(
    write_config: Callable[..., Path], autojump_clock: object, restart: bool
) -> None:
    """The route is another one now (a channel added): its group is gone, but its channels heard "firing"."""
    text = _under_routes("    - {matchers: [team=x], channels: [sms], group_interval: 5m}\n", "{team: x}")
    path = write_config(text)
    changed = text.replace("channels: [sms], group_interval: 5m}", "channels: [sms, mail], group_interval: 5m}")
    async with running_engine(path, start=START) as h:
        await h.push("gross", 1.9, model="a")
        await h.advance(30)
        await h.push("gross", 1.0, model="a")  # resolved; to be told 5 min after the flush
        await h.advance(10)
        if not restart:
            await h.engine.apply(load_config(write_config(changed, "changed.yaml")))
            await h.advance(1)
            told = [(n["channel"], n["payload"]["status"]) for n in await h.outbox()]
    if restart:
        path.write_text(changed)
        async with running_engine(path, start=START + 41) as h:
            await h.advance(1)
            told = [(n["channel"], n["payload"]["status"]) for n in await h.outbox()]
    assert told == [("sms", "firing"), ("sms", "resolved")]


async def test_an_escalation_policy_removed_while_stopped_sends_no_further_tiers(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    path = write_config(ESCALATING)
    async with running_engine(path, start=START) as h:
        await h.push("gross", 1.9)
        await h.advance(60)
    path.write_text(ESCALATING[: ESCALATING.index("escalations:")] + ESCALATING[ESCALATING.index("rules:") :])
    async with running_engine(path, start=START + 120) as h:
        await h.advance(3600)
        assert [p["receiver"] for p in await sent(h)] == ["mail"]
        assert await h.store.query("SELECT fingerprint FROM escalations") == []


async def test_a_reload_that_drops_hold_until_lets_the_held_group_go(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    rules = "rules:\n  - {name: crit, kind: threshold, metric: gross, op: above, value: 1.5, severity: critical}\n"
    path = write_config(HELD_ROUTE + rules)
    async with running_engine(path, start=taipei("2026-03-02T19:00:00")) as h:
        await h.push("gross", 1.9)
        await h.advance(60)
        assert await sent(h) == []  # held for the pre-open, 13 h away
        unheld = write_config((HELD_ROUTE + rules).replace(", hold_until: pre_open}", "}"), "unheld.yaml")
        await h.engine.apply(load_config(unheld))
        await h.advance(1)
        assert [p["receiver"] for p in await sent(h)] == ["mail"]


async def test_a_tier_waiting_for_its_window_goes_when_a_reload_opens_the_window_now(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    text = (
        CHANNELS
        + """
route:
  channels: [mail]
  group_wait: 0s
windows:
  w: {from: open-1h, to: open}
escalations:
  - {name: night, matchers: [severity=critical], active_during: [w], tiers: [{after: 1m, channels: [sms]}]}
rules:
  - {name: crit, kind: threshold, metric: gross, op: above, value: 1.5, severity: critical}
"""
    )
    async with running_engine(write_config(text), start=taipei("2026-03-02T19:00:00")) as h:
        await h.push("gross", 1.9)
        await h.advance(300)  # the tier fell due at 19:01, outside w (08:00-09:00): it waits for 08:00
        assert [n["channel"] for n in await h.outbox()] == ["mail"]
        evening = write_config(text.replace("{from: open-1h, to: open}", "{from: close+5h, to: close+7h}"), "e.yaml")
        await h.engine.apply(load_config(evening))  # w is 18:30-20:30 now: open
        await h.advance(1)
        assert [n["channel"] for n in await h.outbox()] == ["mail", "sms"]


async def test_a_muted_route_falls_through_and_emergencies_are_not_muted(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    path = write_config(
        CHANNELS
        + """
route:
  channels: [mail]
  group_wait: 0s
  group_by: ['...']
  routes:
    - {matchers: [team=risk], channels: [sms], muted_during: [trading]}
    - {matchers: [team=risk], channels: [mail]}
rules:
  - {name: crit, kind: threshold, metric: gross, op: above, value: 1.5, severity: critical, labels: {team: risk}}
  - {name: emerg, kind: threshold, metric: drawdown, op: above, value: 0.2, severity: emergency, labels: {team: risk}}
"""
    )
    async with running_engine(path, start=taipei("2026-03-02T10:00:00")) as h:
        await h.push("gross", 1.9)
        await h.push("drawdown", 0.3)
        receivers = {(p["alerts"][0]["rule"], p["receiver"]) for p in await sent(h)}
        assert receivers == {("crit", "mail"), ("emerg", "sms")}
        why = await h.store.query("SELECT rule, kind, ref, channel FROM suppressions")
        assert [tuple(r.values()) for r in why] == [("crit", "muted_window", "trading", "sms")]


HELD_ROUTE = (
    CHANNELS
    + """
route:
  channels: [mail]
  group_wait: 0s
  routes:
    - {matchers: [severity=critical], channels: [sms], active_during: [trading]}
    - {matchers: [severity=critical], channels: [mail], hold_until: pre_open}
"""
)
"""Critical alerts by SMS during trading, else by mail held for the pre-open."""


async def test_a_held_route_waits_for_its_window(write_config: Callable[..., Path], autojump_clock: object) -> None:
    path = write_config(
        HELD_ROUTE
        + """
rules:
  - {name: crit, kind: threshold, metric: gross, op: above, value: 1.5, severity: critical}
"""
    )
    async with running_engine(path, start=taipei("2026-03-02T19:00:00")) as h:
        await h.push("gross", 1.9)
        await h.advance(taipei("2026-03-03T08:29:59") - h.clock.now())
        assert await sent(h) == []
        (alert,) = await h.alerts("crit")  # "why did I not get it?": held, until when, by which route
        (reason,) = h.engine.dispatcher.holding(alert["fingerprint"], h.clock.now())
        assert (reason.kind, reason.ref) == ("held", "pre_open")
        assert reason.detail == "route 0.1 (mail) holds it until pre_open opens at 2026-03-03T00:30:00Z"
        await h.advance(1)
        (held,) = await sent(h)
        assert held["receiver"] == "mail"
        assert h.engine.dispatcher.holding(alert["fingerprint"], h.clock.now()) == []
    waiting = path.parent / "waiting" / "monitor.yaml"  # (a state of its own)
    waiting.parent.mkdir()
    waiting.write_text(path.read_text().replace("hold_until: pre_open}", "hold_until: pre_open, group_wait: 30s}"))
    async with running_engine(waiting, start=taipei("2026-03-03T08:40:00")) as h:
        await h.push("gross", 1.9, model="b")  # inside the pre-open: its group waits only its group_wait
        (firing,) = [a for a in await h.alerts("crit") if '"model":"b"' in a["labels"]]
        assert h.engine.dispatcher.holding(firing["fingerprint"], h.clock.now()) == []


@pytest.mark.parametrize("emergency_first", [False, True])
async def test_hold_until_holds_each_alert_it_applies_to_not_its_whole_group(
    write_config: Callable[..., Path], autojump_clock: object, emergency_first: bool
) -> None:
    """An emergency in a held route's group goes at once, alone; the critical alert of the same group waits for
    the pre-open, whichever came first."""
    path = write_config(
        CHANNELS
        + """
route:
  channels: [mail]
  group_wait: 0s
  routes:
    - {matchers: [desk=d], channels: [sms], group_by: [desk], hold_until: pre_open}
rules:
  - {name: gross, kind: threshold, metric: gross, op: above, value: 1.5, severity: critical}
"""
    )
    order = ["emergency", "critical"] if emergency_first else ["critical", "emergency"]
    async with running_engine(path, start=taipei("2026-03-02T19:00:00")) as h:
        for severity in order:
            await h.push("gross", 1.9, desk="d", severity=severity)
            await h.advance(60)
        (first,) = await sent(h)
        assert [a["labels"]["severity"] for a in first["alerts"]] == ["emergency"]
        (critical,) = [a for a in await h.alerts("gross") if '"critical"' in a["labels"]]
        (reason,) = h.engine.dispatcher.holding(critical["fingerprint"], h.clock.now())
        assert (reason.kind, reason.ref) == ("held", "pre_open")
        await h.advance(taipei("2026-03-03T08:29:59") - h.clock.now())
        overnight = [[a["labels"]["severity"] for a in p["alerts"]] for p in await sent(h)]
        assert overnight == [["emergency"]] * 4  # told, then its 4-hourly reminders: the hold spares them too
        await h.advance(1)
        last = (await sent(h))[-1]
        assert sorted(a["labels"]["severity"] for a in last["alerts"]) == ["critical", "emergency"]


@pytest.fixture
def no_spin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail, instead of hanging under mock time, when the dispatcher spins on a group due at once that flushes
    nothing."""
    from alphawatch.daemon.dispatch import Dispatcher

    flush_due, calls = Dispatcher.flush_due, []

    def counted(self: Dispatcher, now: float, before: float = math.inf) -> Any:
        calls.append(now)
        assert len(calls) < 1000, "the dispatcher spins: a group due at once that flushes nothing"
        return flush_due(self, now, before)

    monkeypatch.setattr(Dispatcher, "flush_due", counted)


HELD_CRITICAL = (
    CHANNELS
    + """
route:
  channels: [mail]
  group_wait: 0s
  routes:
    - {matchers: [desk=d], channels: [sms], group_by: [desk], hold_until: pre_open, repeat_interval: 5h}
rules:
  - {name: gross, kind: threshold, metric: gross, op: above, value: 1.5, severity: critical}
"""
)
"""A route whose notifications wait for the pre-open (08:30-09:00 Taipei)."""


async def test_news_held_for_a_window_the_daemon_was_down_across_goes_at_its_start(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    path = write_config(HELD_CRITICAL)
    async with running_engine(path, start=taipei("2026-03-02T19:00:00")) as h:
        await h.push("gross", 1.9, desk="d")
        await h.advance(3600)
        assert await sent(h) == []  # held for the pre-open
    async with running_engine(path, start=taipei("2026-03-03T09:05:00")) as h:  # down over the pre-open
        await h.advance(1)
        assert len(await sent(h)) == 1  # not the next day's pre-open


async def test_past_the_calendars_data_held_news_goes_at_once(
    write_config: Callable[..., Path], autojump_clock: object, no_spin: None
) -> None:
    async with running_engine(write_config(HELD_CRITICAL), start=taipei("2028-01-05T19:00:00")) as h:
        await h.push("gross", 1.9, desk="d")
        await h.advance(1)
        told = [
            a["labels"]["severity"] for p in await sent(h) for a in p["alerts"] if a["labels"]["alertname"] == "gross"
        ]
        assert told == ["critical"]


async def test_in_a_group_with_an_emergency_the_held_alerts_are_reminded_at_each_opening(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    """The emergency's reminders go every 5 h, alone; the critical's wait for the pre-open, every day."""
    async with running_engine(write_config(HELD_CRITICAL), start=taipei("2026-03-02T19:00:00")) as h:
        await h.push("gross", 1.9, desk="d", severity="emergency")
        await h.push("gross", 1.9, desk="d")
        await h.advance(3 * 3600)
        (critical,) = [a for a in await h.alerts("gross") if '"critical"' in a["labels"]]
        (reason,) = h.engine.dispatcher.holding(critical["fingerprint"], h.clock.now())
        assert reason.detail.endswith("holds it until pre_open opens at 2026-03-03T00:30:00Z")  # (not the group's)
        await h.advance(taipei("2026-03-06T09:00:00") - h.clock.now())
        told = [sorted(a["labels"]["severity"] for a in p["alerts"]) for p in await sent(h)]
        assert sum("critical" in severities for severities in told) == 4  # Tuesday to Friday, at 08:30
        assert len(told) > 4 * 4  # (and the emergency's every 5 h)


async def test_a_notification_is_firing_while_an_alert_the_window_holds_back_fires(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    """The emergency resolves overnight and is told so alone: the group's critical still fires, held for the
    pre-open, so the document says "firing" (a receiver keyed on groupKey must not close the incident)."""
    async with running_engine(write_config(HELD_CRITICAL), start=taipei("2026-03-02T19:00:00")) as h:
        await h.push("gross", 1.9, desk="d", severity="emergency")
        await h.push("gross", 1.9, desk="d")
        await h.advance(60)
        await h.push("gross", 1.0, desk="d", severity="emergency")
        await h.advance(300)  # group_interval
        last = (await sent(h))[-1]
        assert [(a["labels"]["severity"], a["status"]) for a in last["alerts"]] == [("emergency", "resolved")]
        assert last["status"] == "firing"


async def test_a_reminder_a_silence_holds_on_a_held_route_waits_without_spinning(
    write_config: Callable[..., Path], autojump_clock: object, no_spin: None
) -> None:
    config = write_config(HELD_CRITICAL.replace("repeat_interval: 5h", "repeat_interval: 5m"))
    async with running_engine(config, start=taipei("2026-03-03T08:31:00")) as h:  # inside the pre-open
        suppressions = await with_suppressions(h)
        await h.push("gross", 1.9, desk="d")
        await silence(h, suppressions, "desk=d", "10m")
        await h.advance(9 * 60)  # the reminder fell due under the silence, the window on
        assert len(await sent(h)) == 1
        await h.advance(2 * 60)  # the silence ended (08:41), the window still on: the reminder goes
        assert len(await sent(h)) == 2


async def test_a_reload_that_widens_the_hold_window_into_the_past_does_not_release_held_news(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    """The window never opened while the daemon ran: the news still waits for its next opening."""
    text = HELD_CRITICAL.replace("hold_until: pre_open", "hold_until: w") + "windows:\n  w: {from: open, to: close}\n"
    async with running_engine(write_config(text), start=taipei("2026-03-02T19:00:00")) as h:
        await h.push("gross", 1.9, desk="d")
        await h.advance(600)
        wider = text.replace("w: {from: open, to: close}", "w: {any_of: [evening, day]}") + (
            "  evening: {from: close+5h, to: close+5h35m}\n  day: {from: open, to: close}\n"
        )
        await h.engine.apply(load_config(write_config(wider, "wider.yaml")))
        await h.advance(60)
        assert await sent(h) == []  # (19:11: w, as it reads now, was on at 19:00, when the news fell due)
        await h.advance(taipei("2026-03-03T09:00:00") - h.clock.now())
        assert len(await sent(h)) == 1


async def test_a_tier_held_by_a_silence_then_by_an_ack_records_both(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    async with running_engine(write_config(ESCALATING), start=START) as h:
        suppressions = await with_suppressions(h)
        await h.push("gross", 1.9)
        await h.advance(300)
        await silence(h, suppressions, "alertname=crit", "10m")
        await h.advance(400)  # the 10-minute tier falls due under the silence
        (alert,) = await h.alerts("crit")
        await suppressions.acknowledge(alert["fingerprint"], "ann", "mine", h.clock.now())
        await h.advance(600)  # the silence ended; the ack holds the tier now
        held = await h.store.query("SELECT kind, channel FROM suppressions ORDER BY id")
        assert [(r["kind"], r["channel"]) for r in held] == [("silence", "sms"), ("acknowledged", "sms")]
        assert [p["receiver"] for p in await sent(h)] == ["mail"]


async def test_a_second_on_call_is_paged_only_after_the_first_was_told(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    """Outside trading the mail waits for the pre-open: the 15-minute tier counts from then, not from 19:00."""
    path = write_config(
        HELD_ROUTE
        + """
escalations:
  - {name: second, matchers: [severity=critical], tiers: [{after: 15m, channels: [sms]}]}
rules:
  - {name: crit, kind: threshold, metric: gross, op: above, value: 1.5, severity: critical}
"""
    )
    async with running_engine(path, start=taipei("2026-03-02T19:00:00")) as h:
        await h.push("gross", 1.9)
        await h.advance(3600)
    async with running_engine(path, start=taipei("2026-03-02T20:00:00")) as h:  # a restart overnight
        await h.advance(taipei("2026-03-03T08:30:00") - h.clock.now())
        assert [p["receiver"] for p in await sent(h)] == ["mail"]  # (before: the sms at 19:15, nobody told)
        await h.advance(15 * 60 - 1)
        assert [p["receiver"] for p in await sent(h)] == ["mail"]
        await h.advance(1)
        assert [p["receiver"] for p in await sent(h)] == ["mail", "sms"]


ESCALATING = (
    CHANNELS
    + """
  - {name: head, kind: webhook, url: "http://127.0.0.1:9/head"}
route: {channels: [mail], group_wait: 0s}
escalations:
  - name: desk
    matchers: [severity=critical]
    tiers:
      - {after: 10m, channels: [sms], severity: emergency}
      - {after: 30m, channels: [head]}
rules:
  - {name: crit, kind: threshold, metric: gross, op: above, value: 1.5, severity: critical}
  - {name: mild, kind: threshold, metric: ic, op: below, value: 0.0}
"""
)


async def test_unacknowledged_alerts_escalate_tier_by_tier(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    path = write_config(ESCALATING)
    async with running_engine(path, start=START) as h:
        await h.push("gross", 1.9)
        await h.push("ic", -0.1)  # not matched by the policy: never escalates
        await h.advance(599)
        assert [p["receiver"] for p in await sent(h)] == ["mail", "mail"]
        await h.advance(1)
        tier1 = (await sent(h))[2]
        assert tier1["receiver"] == "sms"
        assert tier1["alerts"][0]["labels"]["severity"] == "emergency"  # bumped
        assert tier1["alerts"][0]["escalation"] == {"policy": "desk", "tier": 1, "after_s": 600.0}
    async with running_engine(path, start=START + 1200) as h:  # a restart between the tiers
        await h.advance(599)
        assert len(await sent(h)) == 3
        await h.advance(1)
        assert (await sent(h))[3]["receiver"] == "head"
        await h.advance(7200)
        assert len(await sent(h)) == 4  # every tier once


async def test_an_acknowledgement_stops_the_escalation(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    async with running_engine(write_config(ESCALATING), start=START) as h:
        await h.push("gross", 1.9)
        await h.advance(600)
        assert [p["receiver"] for p in await sent(h)] == ["mail", "sms"]
        (alert,) = await h.alerts("crit")
        await h.engine.suppressions.acknowledge(alert["fingerprint"], "ops", "on it", h.clock.now())
        await h.advance(3600)
        assert [p["receiver"] for p in await sent(h)] == ["mail", "sms"]
        held = await h.store.query("SELECT fingerprint, kind, ref, channel FROM suppressions")
        assert [(r["kind"], r["ref"], r["channel"]) for r in held] == [("acknowledged", "ops", "head")]  # `why` says so
        await h.push("gross", 1.0)
        await h.advance(300)
        assert [p["status"] for p in await sent(h)] == ["firing", "firing", "resolved"]


async def test_removing_an_acknowledgement_lets_the_escalation_go_on(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    """An ack given by mistake and taken back: the tier it held goes at once, the next at its time."""
    async with running_engine(write_config(ESCALATING), start=START) as h:
        await h.push("gross", 1.9)
        await h.advance(300)
        (alert,) = await h.alerts("crit")
        await h.engine.suppressions.acknowledge(alert["fingerprint"], "ann", "mine", h.clock.now())
        await h.advance(900)  # the 10-minute tier fell due under the ack
        assert [p["receiver"] for p in await sent(h)] == ["mail"]
        held = await h.store.query("SELECT kind, channel FROM suppressions")
        assert [(r["kind"], r["channel"]) for r in held] == [("acknowledged", "sms")]
        await h.engine.suppressions.unacknowledge(alert["fingerprint"])
        await h.advance(1)
        assert [p["receiver"] for p in await sent(h)] == ["mail", "sms"]
        await h.advance(1800 - 1200 - 2)
        assert [p["receiver"] for p in await sent(h)] == ["mail", "sms"]
        await h.advance(1)  # the 30-minute tier, on time
        assert [p["receiver"] for p in await sent(h)] == ["mail", "sms", "head"]


SILENCED = (
    CHANNELS
    + """
route: {channels: [mail], group_wait: 0s, group_interval: 1m, group_by: ['...']}
inhibit_rules:
  - {source_matchers: [alertname=feed], target_matchers: [alertname=exposure], equal: [model]}
rules:
  - {name: exposure, kind: threshold, metric: gross, op: above, value: 1.5}
  - {name: feed, kind: threshold, metric: feed_down, op: above, value: 0}
"""
)


async def with_suppressions(h: Harness) -> Any:
    """The engine's silences and acks (the harness loads them before the engine starts, as the daemon does)."""
    return h.engine.suppressions


async def silence(h: Harness, suppressions: Any, matcher: str, duration: str) -> None:
    """Lay a silence from now, as the API does."""
    from alphawatch.daemon.silences import parse_silence

    body = {"matchers": [matcher], "duration": duration, "created_by": "ops", "comment": "maintenance"}
    await suppressions.add_silence(parse_silence(body, h.clock.now()))


async def test_a_silence_holds_news_back_and_its_end_lets_it_out(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    path = write_config(SILENCED)
    async with running_engine(path, start=START) as h:
        suppressions = await with_suppressions(h)
        await silence(h, suppressions, "model=a7", "30m")
        await h.push("gross", 1.9, model="a7")
        await h.advance(600)
        assert await sent(h) == []
        (why,) = await h.store.query("SELECT kind, detail FROM suppressions")
        assert why["kind"] == "silence"
        await h.advance(1200 - 1)
        assert await sent(h) == []
        await h.advance(1)  # the silence ends: the still-firing alert is told at that instant
        (told,) = await sent(h)
        assert models(told) == [("a7", "firing")]


async def test_an_inhibiting_alert_holds_back_its_targets(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    async with running_engine(write_config(SILENCED), start=START) as h:
        await with_suppressions(h)
        await h.push("feed_down", 1, model="a7")
        await h.push("gross", 1.9, model="a7")  # inhibited: same model as the firing feed alert
        await h.push("gross", 1.9, model="b2")  # not inhibited
        await h.advance(1)
        rules = sorted((p["alerts"][0]["rule"], p["alerts"][0]["labels"]["model"]) for p in await sent(h))
        assert rules == [("exposure", "b2"), ("feed", "a7")]
        rows = await h.store.query("SELECT kind, ref FROM suppressions")
        assert [r["kind"] for r in rows] == ["inhibited"]


async def test_news_held_back_is_recorded_once_however_often_its_group_is_looked_at(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    """Every alert that resolves makes the dispatcher look at the held groups again: the reason it still holds
    an alert back is the same, and recorded once (a soak wrote it 3 to 7 times a second)."""
    async with running_engine(write_config(SILENCED), start=START) as h:
        await with_suppressions(h)
        await h.push("feed_down", 1, model="a7")
        await h.push("gross", 1.9, model="a7")  # inhibited
        for k in range(20):  # other alerts fire and resolve
            await h.push("gross", 1.9, model=f"x{k}")
            await h.advance(1)
            await h.push("gross", 1.0, model=f"x{k}")
            await h.advance(1)
        rows = await h.store.query("SELECT fingerprint, kind FROM suppressions")
        assert [r["kind"] for r in rows] == ["inhibited"]
        await h.push("gross", 1.0, model="a7")  # new news about it, held back too: recorded
        await h.advance(61)
        rows = await h.store.query("SELECT kind FROM suppressions")
        assert len(rows) == 2


async def test_the_alerts_an_inhibiting_alert_held_back_go_out_when_it_resolves(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    async with running_engine(write_config(SILENCED), start=START) as h:
        await with_suppressions(h)
        await h.push("feed_down", 1, model="a7")
        await h.push("gross", 1.9, model="a7")  # inhibited
        await h.advance(5)
        assert [p["alerts"][0]["rule"] for p in await sent(h)] == ["feed"]
        await h.push("feed_down", 0, model="a7")  # the feed is back: exposure is news now, not in 4 h (repeat)
        await h.advance(1)
        assert [(p["alerts"][0]["rule"], p["status"]) for p in (await sent(h))[1:]] == [("exposure", "firing")]


async def test_a_resolution_a_silence_held_back_goes_out_when_it_ends(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    """The receiver was told "firing": a silence laid on it and the alert resolving under it must not leave the
    receiver showing it firing for good (the resolution left its group unsent)."""
    async with running_engine(write_config(SILENCED), start=START) as h:
        suppressions = await with_suppressions(h)
        await h.push("gross", 1.9, model="a7")
        await h.advance(1)
        await silence(h, suppressions, "model=a7", "10m")
        await h.push("gross", 1.0, model="a7")  # resolves under the silence
        await h.advance(300)
        assert [models(p) for p in await sent(h)] == [[("a7", "firing")]]
        await h.advance(300)  # the silence ends
        told = await sent(h)
        assert [models(p) for p in told] == [[("a7", "firing")], [("a7", "resolved")]]
        assert told[1]["alerts"][0]["value"] == 1.0  # the recovery value


async def test_news_a_silence_held_back_goes_out_when_it_ends_after_a_restart(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    """Across a restart, what a silence holds back is still told at its end, not at the next repeat (4 h on)."""
    path = write_config(SILENCED.replace("group_by: ['...']", "group_by: ['...'], repeat_interval: 4h"))
    async with running_engine(path, start=START) as h:
        suppressions = await with_suppressions(h)
        await h.push("gross", 1.9, model="a7")
        await h.push("gross", 1.9, model="b2")
        await h.advance(1)
        await silence(h, suppressions, "model=~a7|b2", "10m")
        await h.push("gross", 1.0, model="a7")  # resolves under the silence
        await h.push("gross", 2.5, model="c3")  # fires under it (not covered: told at once)
        await h.advance(120)
    async with running_engine(path, start=START + 180) as h:
        await with_suppressions(h)
        await h.advance(601 - 180 - 1)
        assert len(await sent(h)) == 3  # a7, b2 and c3 firing
        await h.advance(1)  # the silence ends
        assert [models(p) for p in (await sent(h))[3:]] == [[("a7", "resolved")]]


async def test_news_a_silence_held_back_goes_out_at_start_when_it_ended_while_the_daemon_was_stopped(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    """No edge of a silence lies ahead to wake the dispatcher: the start itself looks again."""
    path = write_config(SILENCED.replace("group_by: ['...']", "group_by: ['...'], repeat_interval: 4h"))
    async with running_engine(path, start=START) as h:
        suppressions = await with_suppressions(h)
        await silence(h, suppressions, "model=k9", "8s")
        await h.push("gross", 1.9, model="k9")  # fires under the silence: held back
        await h.advance(5)
        assert await sent(h) == []
    async with running_engine(path, start=START + 20) as h:  # the silence ended 7 s before the start
        await with_suppressions(h)
        await h.advance(1)
        assert [models(p) for p in await sent(h)] == [[("k9", "firing")]]


async def test_a_reminder_a_silence_held_back_goes_out_when_it_ends(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    """Not at the next repeat_interval (4 h on): at once, as held news does; and `why` records it."""
    path = write_config(SILENCED.replace("group_by: ['...']", "group_by: ['...'], repeat_interval: 4h"))
    async with running_engine(path, start=START) as h:
        suppressions = await with_suppressions(h)
        await h.push("gross", 1.9, model="a7")
        await h.advance(3600 * 4 - 60)
        await silence(h, suppressions, "model=a7", "10m")
        await h.advance(60 + 60)  # the reminder falls due under the silence
        assert len(await sent(h)) == 1
        held = await h.store.query("SELECT kind FROM suppressions")
        assert [r["kind"] for r in held] == ["silence"]
        await h.advance(8 * 60 - 1)
        assert len(await sent(h)) == 1
        await h.advance(2)  # the silence ends
        assert len(await sent(h)) == 2


async def test_a_resolution_an_inhibition_held_back_goes_out_when_the_inhibiting_alert_resolves(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    async with running_engine(write_config(SILENCED), start=START) as h:
        await with_suppressions(h)
        await h.push("gross", 1.9, model="a7")
        await h.advance(1)
        await h.push("feed_down", 1, model="a7")  # inhibits exposure{model=a7} from now on
        await h.advance(1)
        await h.push("gross", 1.0, model="a7")  # resolves while inhibited
        await h.advance(120)
        await h.push("feed_down", 0, model="a7")
        await h.advance(1)
        told = [(p["alerts"][0]["rule"], p["status"]) for p in await sent(h)]
        assert told[:2] == [("exposure", "firing"), ("feed", "firing")]
        assert sorted(told[2:]) == [("exposure", "resolved"), ("feed", "resolved")]  # in one step


ESCALATING_SUPPRESSED = ESCALATING.replace(
    "rules:\n",
    "inhibit_rules:\n"
    "  - {source_matchers: [alertname=mild], target_matchers: [alertname=crit], equal: [model]}\n"
    "rules:\n",
)


async def test_a_silenced_or_inhibited_alert_escalates_only_after_someone_was_told(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    """A tier counts from the alert's first notification: an alert nobody was told of (silenced, inhibited) pages
    no second on-call; once told, the tiers run from then."""
    async with running_engine(write_config(ESCALATING_SUPPRESSED), start=START) as h:
        suppressions = await with_suppressions(h)
        await silence(h, suppressions, "model=s", "20m")
        await h.push("gross", 1.9, model="s")  # silenced for 20 minutes
        await h.push("ic", -1, model="i")  # inhibits crit for model i
        await h.push("gross", 1.9, model="i")
        await h.advance(900)  # 15 minutes: nobody was told of either, so no tier runs
        assert [p["receiver"] for p in await sent(h)] == ["mail"]  # mild's own notification
        assert await h.store.query("SELECT fingerprint FROM suppressions WHERE channel = 'sms'") == []
        await h.advance(300 + 30)  # the silence ended at 20 min: the desk hears of model s
        assert [(p["receiver"], models(p)) for p in (await sent(h))[1:]] == [
            ("mail", [("i", "firing"), ("s", "firing")]),
        ]
        await h.advance(600 - 30 - 1)
        assert [p["receiver"] for p in await sent(h)][-1] == "mail"
        await h.advance(1)  # 10 minutes after the desk heard: the escalation
        assert [(p["receiver"], models(p)) for p in await sent(h)][-1] == ("sms", [("s", "firing")])
        await h.push("ic", 1, model="i")  # the inhibiting alert resolves: model i is told, its tiers start
        await h.advance(31)
        assert [(p["receiver"], models(p)) for p in await sent(h)][-1] == (
            "mail", [("i", "firing"), ("i", "resolved"), ("s", "firing")],
        )  # fmt: skip
        await h.advance(600)
        assert [(p["receiver"], models(p)) for p in await sent(h)][-1] == ("sms", [("i", "firing")])


async def test_repeats_leave_out_acknowledged_alerts(write_config: Callable[..., Path], autojump_clock: object) -> None:
    async with running_engine(write_config(GROUPED), start=START) as h:
        await h.push("gross", 1.9, model="a")
        await h.push("gross", 1.9, model="b")
        await h.advance(30)
        alerts = {json.loads(a["labels"])["model"]: a["fingerprint"] for a in await h.alerts("exposure")}
        await h.engine.suppressions.acknowledge(alerts["a"], "ops", "on it", h.clock.now())
        await h.advance(3600)
        assert models((await sent(h))[1]) == [("b", "firing")]
        await h.engine.suppressions.acknowledge(alerts["b"], "ops", "on it", h.clock.now())
        await h.advance(3600 * 3)
        assert len(await sent(h)) == 2  # everything acknowledged: no more repeats
        held = await h.store.query("SELECT kind, channel FROM suppressions")
        assert {(r["kind"], r["channel"]) for r in held} == {("acknowledged", "mail")}  # each repeat held is recorded
        assert 3 <= len(held) <= 8


async def test_an_unrelated_silence_does_not_cut_group_wait(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    async with running_engine(write_config(GROUPED), start=START) as h:
        suppressions = await with_suppressions(h)
        await h.push("gross", 1.9, model="a")
        await h.advance(5)
        await silence(h, suppressions, "model=unrelated", "1h")
        await h.advance(5)
        assert await sent(h) == []  # still inside group_wait (30 s)
        await h.advance(20)
        assert len(await sent(h)) == 1


async def test_alerts_of_a_route_removed_while_down_are_routed_again(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    tree = (
        CHANNELS
        + """
route:
  channels: [mail]
  group_wait: 0s
  group_interval: 1s
  routes:
    - {matchers: [model=a], channels: [sms]}
rules:
  - {name: exposure, kind: threshold, metric: gross, op: above, value: 1.5}
"""
    )
    path = write_config(tree)
    async with running_engine(path, start=START) as h:
        await h.push("gross", 1.9, model="a")
        assert [p["receiver"] for p in await sent(h)] == ["sms"]
    path.write_text(tree.replace("  routes:\n    - {matchers: [model=a], channels: [sms]}\n", ""))
    async with running_engine(path, start=START + 60) as h:
        await h.advance(1)
        await h.push("gross", 1.0, model="a")
        await h.advance(2)
        assert [(p["receiver"], p["status"]) for p in await sent(h)] == [
            ("sms", "firing"),
            ("mail", "firing"),
            ("mail", "resolved"),
        ]
        assert await h.store.query("SELECT key FROM groups") == []


async def test_alert_documents_follow_their_alerts_across_a_restart_and_a_new_route(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    annotated = GROUPED.replace(
        "value: 1.5}", 'value: 1.5, annotations: {summary: "{{ labels.model }} at {{ value }}"}}'
    )
    path = write_config(annotated)

    def alerts(payload: dict[str, Any]) -> list[tuple[str, float, str]]:
        return sorted((a["labels"]["model"], a["value"], a["annotations"]["summary"]) for a in payload["alerts"])

    async with running_engine(path, start=START) as h:
        await h.push("gross", 1.9, model="a")
        await h.push("gross", 1.8, model="b")
        await h.advance(30)
        (first,) = await sent(h)
        assert alerts(first) == [("a", 1.9, "a at 1.9"), ("b", 1.8, "b at 1.8")]
        assert first["commonAnnotations"] == {}  # the summaries differ
    async with running_engine(path, start=START + 100) as h:  # the documents come back from the state file
        await h.advance(3600 - 100 + 30)
        repeat = (await sent(h))[1]
        assert alerts(repeat) == alerts(first)
        # a new route: the firing alerts move to new groups (one per model) and keep their documents
        regrouped = write_config(annotated.replace("group_by: [alertname]", "group_by: [model]"), "new.yaml")
        await h.engine.apply(load_config(regrouped))
        await h.advance(30)
        moved = (await sent(h))[2:]
        assert sorted(alerts(p)[0] for p in moved) == alerts(first)
        assert [p["groupLabels"] for p in sorted(moved, key=lambda p: p["groupLabels"]["model"])] == [
            {"model": "a"},
            {"model": "b"},
        ]
        assert {p["commonAnnotations"]["summary"] for p in moved} == {"a at 1.9", "b at 1.8"}


BY_MODEL = GROUPED.replace("group_by: [alertname]", "group_by: [model]")


async def test_a_rule_behind_a_burst_of_ingest_evaluates_after_it_with_the_arrival_times(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    async with running_engine(write_config(BY_MODEL), start=START) as h:
        with h.engine.ingesting():  # requests keep coming: the rule finishes a step while one runs
            await h.push("gross", 1.9, model="a")
            assert [a["active_at"] for a in await h.alerts()] == [START]
            await h.advance(0.2)
            await h.push("gross", 1.8, model="b")
            await h.advance(0.2)
            assert len(await h.alerts()) == 1  # b waits for the burst to end
        await h.advance(0.01)
        firing = {a["labels"]: a["active_at"] for a in await h.alerts()}
        assert sorted(firing.values()) == [START, START + 0.2]  # as if evaluated when it came

        # b's group waits group_wait from b's arrival, not from when the rule got to it
        await h.advance(30 - 0.2 - 0.01 - 0.001)
        assert [models(p) for p in await sent(h)] == [[("a", "firing")]]
        await h.advance(0.002)
        assert [models(p) for p in await sent(h)] == [[("a", "firing")], [("b", "firing")]]


async def _burst_of_batches(h: Harness, count: int, size: int, gap: float) -> list[float]:
    """``count`` batches of ``size`` new alerts, ``gap`` apart, while requests keep coming; their arrival times."""
    arrived = []
    with h.engine.ingesting():
        for k in range(count):
            items = [{"metric": "gross", "labels": {"model": f"m{k}-{i}"}, "ts": h.clock.now(), "value": 1.9}
                     for i in range(size)]  # fmt: skip
            batch = parse_batch(json.dumps(items).encode(), h.clock.now())
            await h.store.insert_samples(batch.samples)
            h.engine.dispatch(batch.samples)
            arrived.append(h.clock.now())
            await h.advance(gap)
    return arrived


async def test_a_backlog_of_many_commits_is_evaluated_as_of_its_arrivals_and_told_once_whole(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    from alphawatch.daemon.engine import COMMIT_CHUNK

    async with running_engine(write_config(GROUPED), start=START) as h:
        arrived = await _burst_of_batches(h, 12, 100, 0.01)  # more than four commits
        await h.advance(0.1)
        assert 4 * COMMIT_CHUNK < 12 * 100
        firing = await h.alerts()
        assert len(firing) == 1200
        assert sorted({a["active_at"] for a in firing}) == pytest.approx(arrived)  # each batch as of its arrival
        await h.advance(30)
        (told,) = await sent(h)
        assert len(told["alerts"]) == 1200


async def test_a_write_refused_in_the_middle_of_a_backlog_loses_no_alert_and_tells_each_once(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    from alphawatch.daemon.engine import COMMIT_CHUNK

    async with running_engine(write_config(GROUPED), start=START) as h:
        refuse = (  # the second commit's alerts do not go in (a full disk, say)
            "CREATE TEMP TRIGGER refuse BEFORE INSERT ON alerts WHEN (SELECT count(*) FROM alerts) >= ?"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        first = -(-COMMIT_CHUNK // 100) * 100  # a commit takes whole batches of 100
        await h.store.run(lambda db: db.execute(refuse.replace("?", str(first))))
        await _burst_of_batches(h, 12, 100, 0.01)
        await h.advance(0.1)
        assert len(await h.alerts()) == first  # the first commit went in, and nothing after it
        await h.store.run(lambda db: db.execute("DROP TRIGGER refuse"))
        await h.advance(5)  # the rule restarts (backoff) from the store and evaluates the rest
        assert len(await h.alerts()) == 1200
        await h.advance(30)
        told = await sent(h)
        assert [len(n["alerts"]) for n in told] == [1200]
        assert len({a["labels"]["model"] for a in told[0]["alerts"]}) == 1200


async def test_a_bulk_batch_waits_for_the_requests_that_follow_it_a_smaller_one_does_not(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    from alphawatch.daemon.engine import BULK, LULL

    async with running_engine(write_config(BY_MODEL), start=START) as h:
        with h.engine.ingesting():  # a request has just ended, as in a stream of single samples
            pass
        items = [{"metric": "gross", "labels": {"model": f"s{i}"}, "ts": START, "value": 1.9} for i in range(BULK - 1)]
        almost = parse_batch(json.dumps(items).encode(), h.clock.now())
        with h.engine.ingesting():
            await h.store.insert_samples(almost.samples)
            h.engine.dispatch(almost.samples)
        await h.advance(0)
        assert len(await h.alerts()) == BULK - 1  # under BULK samples: evaluated at once, the latency case
        await h.advance(LULL * 2)
        items = [{"metric": "gross", "labels": {"model": f"m{i}"}, "ts": START, "value": 1.9} for i in range(BULK)]
        bulk = parse_batch(json.dumps(items).encode(), h.clock.now())
        with h.engine.ingesting():  # as the HTTP handler does
            await h.store.insert_samples(bulk.samples)
            h.engine.dispatch(bulk.samples)
        await h.advance(LULL / 2)
        assert len(await h.alerts()) == BULK - 1  # a bulk client's batch: the rule lets its next requests in first
        with h.engine.ingesting():
            await h.advance(LULL / 2)
            await h.push("gross", 1.8, model="next")
            await h.advance(LULL)
            assert len(await h.alerts()) == BULK - 1
        await h.advance(LULL * 1.01)
        firing = {a["labels"]: a["active_at"] for a in await h.alerts()}
        assert len(firing) == 2 * BULK
        arrived = START + 2 * LULL
        assert sorted(set(firing.values())) == [START, arrived, arrived + LULL]  # each as of its arrival


async def test_a_member_document_with_nan_from_an_earlier_version_still_flushes(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    async with running_engine(write_config(BY_MODEL), start=START) as h:
        await h.push("gross", 1.9, model="a")
        nan = 'UPDATE group_member_docs SET doc = replace(doc, \'"details":{}\', \'"details":{"p":NaN}\')'
        changed = await h.store.run(lambda db: db.execute(nan).rowcount)
        assert changed == 1  # as json.dumps wrote a statistic's NaN, which SQLite's JSON functions refuse
        await h.advance(30)
        assert [models(p) for p in await sent(h)] == [[("a", "firing")]]


async def test_a_group_due_while_a_rule_is_behind_waits_for_the_alerts_that_arrived_before_it(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    config = GROUPED.replace("group_wait: 30s", "group_wait: 100ms")
    async with running_engine(write_config(config), start=START) as h:
        with h.engine.ingesting():
            await h.push("gross", 1.9, model="a")  # its group is due at START + 0.1
            await h.advance(0.05)
            await h.push("gross", 1.8, model="b")  # came before that, but the rule is behind a burst
            await h.advance(0.3)
            assert await sent(h) == []  # the group waits for b to be routed ...
        await h.advance(0.01)
        # ... and tells both at once, as it would have had the rule kept up (not b alone, 5 minutes later)
        assert [models(p) for p in await sent(h)] == [[("a", "firing"), ("b", "firing")]]


async def test_a_group_waits_for_another_rules_batches_that_arrived_before_its_flush(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    config = BY_MODEL.replace("group_wait: 30s", "group_wait: 100ms")
    config += "  - {name: leverage, kind: threshold, metric: lev, op: above, value: 3}\n"
    async with running_engine(write_config(config), start=START) as h:
        with h.engine.ingesting():
            await h.push("lev", 4.0, model="x")  # leverage is behind from now on
            await h.advance(0.01)
            await h.push("gross", 1.9, model="a")  # exposure fires: model a's group is due at START + 0.11
            await h.advance(0.04)
            await h.push("lev", 5.0, model="a")  # came before that; leverage evaluates it after the burst
            await h.advance(0.3)
            assert await sent(h) == []  # (x's group too: which groups a waiting batch joins is not known yet)
        await h.advance(0.01)
        told = {p["groupLabels"]["model"]: sorted(a["labels"]["alertname"] for a in p["alerts"]) for p in await sent(h)}
        assert told == {"x": ["leverage"], "a": ["exposure", "leverage"]}


async def test_a_burst_of_ingest_that_never_ends_delays_a_rule_half_a_second_at_most(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    async with running_engine(write_config(BY_MODEL), start=START) as h:
        with h.engine.ingesting():
            await h.push("gross", 1.9, model="a")
            await h.advance(0.1)
            await h.push("gross", 1.8, model="b")
            await h.advance(0.49)
            assert len(await h.alerts()) == 1
            await h.advance(0.02)
            assert sorted(a["active_at"] for a in await h.alerts()) == [START, START + 0.1]


async def test_a_timer_that_fell_due_between_two_waiting_batches_fires_at_its_instant(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    config = BY_MODEL.replace("value: 1.5}", "value: 1.5, for: 100ms}")
    async with running_engine(write_config(config), start=START) as h:
        with h.engine.ingesting():
            await h.push("gross", 1.0, model="a")  # nothing fires; the rule is behind from now on
            await h.advance(0.05)
            await h.push("gross", 1.9, model="b")  # pending from START + 0.05, firing at START + 0.15
            await h.advance(0.15)
            await h.push("gross", 1.9, model="c")
            assert await h.alerts() == []
        await h.advance(0.01)
        states = {json.loads(a["labels"])["model"]: (a["state"], a["fired_at"]) for a in await h.alerts()}
        assert states == {"b": ("firing", pytest.approx(START + 0.15, abs=1e-3)), "c": ("pending", None)}
