"""Market-aware rules under MockClock: deadlines on trading days only, heartbeats during the trading window,
active_during / muted_during, closures added by reload, and the calendar's own expiry warning."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from alphawatch.daemon.calendar import TAIPEI
from alphawatch.daemon.config import load_config
from tests.engine_harness import Harness, running_engine

HOOK = """
channels:
  - {name: hook, kind: webhook, url: "http://127.0.0.1:9/unused"}
route: {channels: [hook], group_wait: 0s, group_interval: 1s, group_by: ['...']}
"""


def taipei(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=TAIPEI).timestamp()


async def test_a_deadline_fires_on_trading_days_only_across_lunar_new_year(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    path = write_config(
        HOOK
        + """
rules:
  - {name: predictions, kind: absence, metric: predictions_published, match: {model: a7}, deadline: "08:45"}
"""
    )
    async with running_engine(path, start=taipei("2026-02-09T00:00:00")) as h:
        await h.advance(taipei("2026-02-09T08:00:00") - h.clock.now())
        await h.push("predictions_published", 1, model="a7")
        await h.advance(taipei("2026-02-10T08:00:00") - h.clock.now())
        await h.push("predictions_published", 1, model="a7")
        # 2026-02-11 (the last trading day before the holiday): nothing is published
        await h.advance(taipei("2026-02-11T08:44:59") - h.clock.now())
        assert await h.state("predictions") is None
        await h.advance(1)
        assert await h.state("predictions") == "firing"
        assert [n["payload"]["alerts"][0]["details"]["trading_day"] for n in await h.outbox()] == ["2026-02-11"]
        await h.advance(taipei("2026-02-11T10:00:00") - h.clock.now())
        await h.push("predictions_published", 1, model="a7")
        assert await h.state("predictions") == "resolved"
        # the holiday (settlement-only days, weekends, the Lunar New Year): silence is expected, nothing fires
        history = len(await h.history("predictions"))
        await h.advance(taipei("2026-02-23T08:44:59") - h.clock.now())
        assert len(await h.history("predictions")) == history
        await h.advance(1)
        assert await h.state("predictions") == "firing"
        assert (await h.outbox())[-1]["payload"]["alerts"][0]["details"]["trading_day"] == "2026-02-23"


async def test_a_deadline_after_the_close_wants_that_days_own_report(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    path = write_config(HOOK + "rules:\n  - {name: eod, kind: absence, metric: eod_report, deadline: '17:00'}\n")
    async with running_engine(path, start=taipei("2026-03-03T15:00:00")) as h:  # a Tuesday
        await h.advance(taipei("2026-03-03T16:00:00") - h.clock.now())
        await h.push("eod_report", 1)  # Tuesday's report
        await h.advance(taipei("2026-03-04T16:59:59") - h.clock.now())
        assert await h.state("eod") is None
        await h.advance(1)  # Wednesday 17:00 without Wednesday's report (Tuesday's was not it)
        assert await h.state("eod") == "firing"
        assert (await h.outbox())[-1]["payload"]["alerts"][0]["details"]["trading_day"] == "2026-03-04"


async def test_a_heartbeat_counts_silence_only_during_the_trading_window(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    path = write_config(
        HOOK
        + """
rules:
  - {name: feed, kind: absence, metric: heartbeat, absent_for: 1m, during: trading}
"""
    )
    async with running_engine(path, start=taipei("2026-03-02T07:00:00")) as h:  # a Monday
        await h.advance(taipei("2026-03-02T09:00:59") - h.clock.now())
        assert await h.state("feed") is None  # two hours of night silence do not count
        await h.advance(1)
        assert await h.state("feed") == "firing"
        await h.push("heartbeat", 1)
        assert await h.state("feed") == "resolved"
        await h.advance(taipei("2026-03-02T13:29:30") - h.clock.now())
        assert await h.state("feed") == "firing"
        await h.advance(30)  # 13:30:00 exactly: the window closes, the alert with it
        assert await h.state("feed") == "resolved"
        await h.advance(taipei("2026-03-03T09:00:59") - h.clock.now())
        assert await h.state("feed") == "resolved"
        await h.advance(1)
        assert await h.state("feed") == "firing"


async def test_active_during_means_any_of_its_windows(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    path = write_config(
        HOOK.replace("channels:\n", "channels:\n  - {name: sms, kind: webhook, url: 'http://127.0.0.1:9/sms'}\n")
        + """
escalations:
  - name: desk
    matchers: [severity=critical]
    active_during: [twse.trading, taifex.night]
    tiers: [{after: 5m, channels: [sms]}]
rules:
  - {name: both, kind: threshold, metric: gross, op: above, value: 1.5, severity: critical,
     active_during: [twse.trading, taifex.night]}
"""
    )
    async with running_engine(path, start=taipei("2026-03-03T20:00:00")) as h:  # TAIFEX's night session only
        await h.push("gross", 1.9)
        assert await h.state("both") == "firing"  # one of its windows is on: that is enough
        await h.advance(301)
        receivers = [n["payload"]["receiver"] for n in await h.outbox()]
        assert receivers == ["hook", "sms"]  # and so for the escalation tier


async def test_active_during_and_muted_during(write_config: Callable[..., Path], autojump_clock: object) -> None:
    path = write_config(
        HOOK
        + """
rules:
  - {name: live, kind: threshold, metric: gross, op: above, value: 1.5, active_during: [trading]}
  - {name: quiet, kind: threshold, metric: gross, op: above, value: 1.5, muted_during: [trading]}
"""
    )
    async with running_engine(path, start=taipei("2026-03-02T08:00:00")) as h:
        await h.push("gross", 1.9)
        assert await h.state("live") is None  # not active before the open
        assert await h.state("quiet") == "firing"
        assert len(await h.outbox()) == 1
        await h.advance(taipei("2026-03-02T09:00:00") - h.clock.now())
        assert await h.state("live") == "firing"  # woken at the open, exactly
        await h.push("gross", 1.2)
        await h.push("gross", 1.8, ts=h.clock.now() + 1)
        await h.advance(1)
        notes = await h.store.query("SELECT to_state, note FROM alert_history WHERE rule = 'quiet' ORDER BY id")
        assert {"to_state": "resolved", "note": "muted"} in notes
        assert {"to_state": "firing", "note": "muted"} in notes
        quiet_sent = [n["payload"]["status"] for n in await h.outbox() if n["payload"]["alerts"][0]["rule"] == "quiet"]
        # told before the open; while muted only the end of what was told (no receiver is left with a stale alert)
        assert quiet_sent == ["firing", "resolved"]
        await h.advance(taipei("2026-03-02T13:30:00") - h.clock.now())
        assert await h.state("live") == "resolved"
        quiet_sent = [n["payload"]["status"] for n in await h.outbox() if n["payload"]["alerts"][0]["rule"] == "quiet"]
        assert quiet_sent == ["firing", "resolved", "firing"]  # what fired while muted is told when the mute ends


async def test_a_rules_muted_during_spares_emergency_alerts_unless_the_rule_names_that_severity(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    path = write_config(
        HOOK
        + """
rules:
  - {name: quiet, kind: threshold, metric: gross, op: above, value: 1.5, muted_during: [trading]}
  - {name: meant, kind: threshold, metric: gross, op: above, value: 1.5, muted_during: [trading],
     severity: emergency}
"""
    )

    async def told(h: Harness) -> set[tuple[str, str]]:
        return {(a["rule"], a["labels"]["desk"]) for n in await h.outbox() for a in n["payload"]["alerts"]}

    async with running_engine(path, start=taipei("2026-03-02T10:00:00")) as h:  # trading: both rules muted
        await h.push("gross", 1.9, desk="a", severity="emergency")  # an emergency by the series' own label
        await h.push("gross", 1.9, desk="b")
        assert await told(h) == {("quiet", "a")}  # "quiet" did not name emergencies; "meant" did, as its own severity
        await h.advance(taipei("2026-03-02T13:30:00") - h.clock.now())  # the mute ends: the rest is told
        assert await told(h) == {("quiet", "a"), ("quiet", "b"), ("meant", "a"), ("meant", "b")}


async def test_a_closure_added_by_reload_silences_that_day(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    rules = """
rules:
  - {name: predictions, kind: absence, metric: predictions_published, deadline: "08:45"}
  - {name: plain, kind: threshold, metric: gross, op: above, value: 1.5}
"""
    path = write_config(HOOK + rules)
    async with running_engine(path, start=taipei("2026-03-02T09:00:00")) as h:
        typhoon = write_config(
            HOOK
            + """
calendar:
  extra_days:
    - {date: 2026-03-03, kind: closure, name: Typhoon test, name_zh: 颱風停止交易, venues: [twse, tpex, taifex]}
"""
            + rules
        )
        _, changed, _ = await h.engine.apply(load_config(typhoon))
        assert changed == ["predictions"]  # only the rule that reads the calendar restarts
        await h.advance(taipei("2026-03-03T23:00:00") - h.clock.now())
        assert await h.state("predictions") is None  # no deadline on the closed day
        await h.advance(taipei("2026-03-04T08:45:00") - h.clock.now())
        assert await h.state("predictions") == "firing"


async def test_the_calendar_warns_before_it_runs_out(write_config: Callable[..., Path], autojump_clock: object) -> None:
    path = write_config(HOOK + "calendar: {warn_before: 30d}\nrules: []\n")
    async with running_engine(path, start=taipei("2026-11-20T12:00:00")) as h:
        assert await h.state("AlphawatchCalendarExpiring") is None
        await h.advance(taipei("2026-11-30T23:59:00") - h.clock.now())
        assert await h.state("AlphawatchCalendarExpiring") is None
        await h.advance(taipei("2026-12-01T00:30:00") - h.clock.now())  # 30 days before it runs out: 1 December
        assert await h.state("AlphawatchCalendarExpiring") == "firing"
        (note,) = await h.outbox()
        assert "runs out on 2026-12-31" in note["payload"]["alerts"][0]["annotations"]["summary"]
