"""Rule timing under trio's MockClock: `for`, `keep_firing_for`, hysteresis, windows, absence, repeats, reloads."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trio
import trio.testing

from alphawatch.daemon.clock import TrioClock
from alphawatch.daemon.config import load_config
from alphawatch.daemon.engine import Engine
from alphawatch.daemon.store import open_store
from alphawatch.rules import Condition, Evaluator, Labels, RuleKind, Sample, Selector
from tests.engine_harness import running_engine

WEBHOOK = """
channels:
  - {name: hook, kind: webhook, url: "http://127.0.0.1:9/unused"}
route: {channels: [hook], group_wait: 0s, group_interval: 1s, group_by: ['...'], repeat_interval: 1h}
"""


@pytest.fixture
def config(write_config: Callable[..., Path]) -> Callable[[str], Path]:
    def make(rules: str, daemon: str = "") -> Path:
        return write_config(daemon + WEBHOOK + "rules:\n" + rules)

    return make


async def test_threshold_waits_for_its_pending_duration(config: Callable[[str], Path], autojump_clock: object) -> None:
    path = config("""
      - {name: exposure, kind: threshold, metric: gross, op: above, value: 1.5, for: 5m}
    """)
    async with running_engine(path) as h:
        await h.push("gross", 1.7, model="a7")
        assert await h.state("exposure") == "pending"
        await h.advance(299)
        assert await h.state("exposure") == "pending"
        assert await h.outbox() == []
        await h.advance(1)
        assert await h.state("exposure") == "firing"
        (note,) = await h.outbox()
        assert note["payload"]["status"] == "firing"
        assert note["payload"]["alerts"][0]["value"] == 1.7
        assert note["payload"]["alerts"][0]["labels"] == {"alertname": "exposure", "model": "a7", "severity": "warning"}


async def test_a_pending_alert_that_clears_never_notifies(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    path = config("""
      - {name: exposure, kind: threshold, metric: gross, op: above, value: 1.5, for: 5m}
    """)
    async with running_engine(path) as h:
        await h.push("gross", 1.7)
        await h.advance(60)
        await h.push("gross", 1.2)
        await h.advance(600)
        assert await h.alerts("exposure") == []
        assert await h.history("exposure") == [("inactive", "pending"), ("pending", "inactive")]
        assert await h.outbox() == []


async def test_without_for_an_alert_fires_at_once_with_no_pending_step(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    path = config("""
      - {name: exposure, kind: threshold, metric: gross, op: above, value: 1.5}
    """)
    async with running_engine(path) as h:
        await h.push("gross", 1.7)
        assert await h.state("exposure") == "firing"
        assert await h.history("exposure") == [("inactive", "firing")]
        (note,) = await h.outbox()
        assert note["payload"]["alerts"][0]["value"] == 1.7


async def test_resolved_notification_carries_the_recovery_value(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    path = config("""
      - {name: exposure, kind: threshold, metric: gross, op: above, value: 1.5}
    """)
    async with running_engine(path) as h:
        await h.push("gross", 1.9)
        await h.advance(90)
        await h.push("gross", 1.1)
        assert await h.state("exposure") == "resolved"
        firing, resolved = (n["payload"]["alerts"][0] for n in await h.outbox())
        assert firing["value"] == 1.9
        assert resolved["status"] == "resolved"
        assert resolved["value"] == 1.1  # not the stale 1.9 Alertmanager would send
        assert resolved["durationSeconds"] == pytest.approx(90, abs=0.01)
        assert resolved["endsAt"] != "0001-01-01T00:00:00Z"


async def test_keep_firing_for_holds_an_alert_through_a_brief_recovery(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    path = config("""
      - {name: exposure, kind: threshold, metric: gross, op: above, value: 1.5, keep_firing_for: 10m}
    """)
    async with running_engine(path) as h:
        await h.push("gross", 1.9)
        await h.advance(30)
        await h.push("gross", 1.0)
        await h.advance(300)
        assert await h.state("exposure") == "firing"
        await h.push("gross", 1.8)  # wrong again within keep_firing_for: the same alert, no new notification
        await h.advance(300)
        await h.push("gross", 1.0)
        await h.advance(599)
        assert await h.state("exposure") == "firing"
        await h.advance(1)
        assert await h.state("exposure") == "resolved"
        assert [n["payload"]["status"] for n in await h.outbox()] == ["firing", "resolved"]


async def test_hysteresis_needs_the_value_to_clear_the_margin(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    path = config("""
      - {name: ic, kind: threshold, metric: ic, op: below, value: 0.01, hysteresis: 0.005}
    """)
    async with running_engine(path) as h:
        await h.push("ic", 0.005)
        assert await h.state("ic") == "firing"
        await h.push("ic", 0.012)  # above the limit but inside the margin
        assert await h.state("ic") == "firing"
        await h.push("ic", 0.016)
        assert await h.state("ic") == "resolved"


async def test_window_aggregate_changes_when_a_sample_leaves_the_window(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    path = config("""
      - {name: errors, kind: threshold, metric: job_errors, op: above, value: 2, aggregate: count, window: 10m}
    """)
    async with running_engine(path) as h:
        for _ in range(3):
            await h.push("job_errors", 1)
            await h.advance(60)
        assert await h.state("errors") == "firing"
        # the first sample leaves the window 10 minutes after it arrived: the rule wakes for it, unprompted
        await h.advance(600 - 180 - 1)
        assert await h.state("errors") == "firing"
        await h.advance(1)
        assert await h.state("errors") == "resolved"


async def test_a_window_counts_a_sample_stamped_ahead_once_its_time_comes(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    """A sender whose clock runs ahead (ingest takes samples up to an hour ahead): its samples are in the window
    when their time comes, and leave it a window later; not at once, and not for the whole time until then."""
    path = config("""
      - {name: errors, kind: threshold, metric: job_errors, op: above, value: 2, aggregate: count, window: 10s}
    """)
    async with running_engine(path) as h:
        ahead = h.clock.now() + 1800
        for k in range(3):
            await h.push("job_errors", 1, ts=ahead + k)
        await h.advance(60)
        assert await h.state("errors") is None
        await h.advance(1800 - 60 + 1)
        assert await h.state("errors") is None  # two of the three so far
        await h.advance(1)
        assert await h.state("errors") == "firing"
        await h.advance(7)
        assert await h.state("errors") == "firing"
        await h.advance(1)  # the first leaves the window, 10 s after its time
        assert await h.state("errors") == "resolved"


async def test_mean_over_a_window(config: Callable[[str], Path], autojump_clock: object) -> None:
    path = config("""
      - {name: ic, kind: threshold, metric: ic, op: below, value: 0.02, aggregate: mean, window: 1h}
    """)
    async with running_engine(path) as h:
        await h.push("ic", 0.03)
        await h.push("ic", 0.00, ts=h.clock.now() + 1)
        await h.advance(2)
        assert await h.state("ic") == "firing"  # mean 0.015
        (note,) = await h.outbox()
        assert note["payload"]["alerts"][0]["value"] == pytest.approx(0.015)


async def test_series_alert_separately(config: Callable[[str], Path], autojump_clock: object) -> None:
    path = config("""
      - {name: exposure, kind: threshold, metric: gross, op: above, value: 1.5, match: ["model=~a.*"]}
    """)
    async with running_engine(path) as h:
        await h.push("gross", 1.9, model="a1")
        await h.push("gross", 1.9, model="b1")  # not matched
        await h.push("gross", 1.2, model="a2")
        await h.push("gross", 1.8, model="a2")
        alerts = await h.alerts("exposure")
        assert sorted(a["series"] for a in alerts) == ['{"model":"a1"}', '{"model":"a2"}']


async def test_repeat_interval_renotifies_a_firing_alert(config: Callable[[str], Path], autojump_clock: object) -> None:
    path = config("""
      - {name: exposure, kind: threshold, metric: gross, op: above, value: 1.5}
    """)
    async with running_engine(path) as h:
        await h.push("gross", 1.9)
        await h.advance(3599)
        assert len(await h.outbox()) == 1
        await h.advance(1)
        assert len(await h.outbox()) == 2
        await h.advance(3600)
        notes = await h.outbox()
        assert len(notes) == 3
        assert len({n["idempotency_key"] for n in notes}) == 3


async def test_absence_fires_exactly_when_the_feed_has_been_quiet_long_enough(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    path = config("""
      - {name: feed, kind: absence, metric: heartbeat, absent_for: 5m, by: [feed]}
    """)
    async with running_engine(path) as h:
        await h.push("heartbeat", 1, feed="twse")
        await h.advance(299)
        assert await h.state("feed") is None
        await h.advance(1)
        assert await h.state("feed") == "firing"
        (alert,) = await h.alerts("feed")
        assert alert["labels"] == '{"alertname":"feed","feed":"twse","severity":"warning"}'
        await h.advance(120)
        await h.push("heartbeat", 7, feed="twse")
        assert await h.state("feed") == "resolved"
        resolved = (await h.outbox())[-1]["payload"]["alerts"][0]
        assert resolved["value"] == 7


async def test_an_absence_rule_started_after_a_feed_fell_silent_still_fires(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    path = config("""
      - {name: feed, kind: absence, metric: heartbeat, absent_for: 10m, by: [feed]}
    """)
    async with running_engine(path, start=1_800_000_000.0) as h:
        await h.push("heartbeat", 1, feed="twse")
        await h.advance(60)
    async with running_engine(path, start=1_800_000_000.0 + 1800) as h:  # down for half an hour
        await h.advance(1)
        assert await h.state("feed") == "firing"
        (alert,) = await h.alerts("feed")
        assert alert["series"] == '{"feed":"twse"}'


@pytest.mark.parametrize("by", ["", ", by: [feed]"])
async def test_a_restart_neither_resets_nor_trips_an_absence_rule(
    config: Callable[[str], Path], autojump_clock: object, by: str
) -> None:
    path = config(f"""
      - {{name: feed, kind: absence, metric: heartbeat, absent_for: 30s{by}}}
    """)
    start = 1_800_000_000.0
    async with running_engine(path, start=start) as h:
        await h.push("heartbeat", 1, feed="twse")
        await h.advance(15)
    async with running_engine(path, start=start + 17) as h:  # the feed died at `start`; the daemon was down 2 s
        await h.advance(12)  # 29 s since the last heartbeat
        assert await h.state("feed") is None
        await h.advance(1.5)  # 30.5 s: due at 30 s, not 30 s after the restart
        assert await h.state("feed") == "firing"
        (alert,) = await h.alerts("feed")
        assert 30 <= alert["value"] < 31


async def test_a_rule_removed_while_the_daemon_was_stopped_resolves_its_alerts_at_start(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    both = (
        WEBHOOK
        + """rules:
      - {name: exposure, kind: threshold, metric: gross, op: above, value: 1.5}
      - {name: ic-floor, kind: threshold, metric: ic, op: below, value: 0.01}
    """
    )
    path = write_config(both)
    async with running_engine(path, start=1_800_000_000.0) as h:
        await h.push("gross", 1.9, model="a")
        await h.push("ic", 0.0, model="a")
        await h.advance(1)
        assert await h.state("ic-floor") == "firing"
    path.write_text(both.replace("      - {name: ic-floor, kind: threshold, metric: ic, op: below, value: 0.01}\n", ""))
    async with running_engine(path, start=1_800_000_000.0 + 60) as h:
        await h.advance(1)
        assert await h.state("ic-floor") == "resolved"
        assert await h.state("exposure") == "firing"  # a rule still configured keeps its alert
        told = [n["payload"] for n in await h.outbox()]
        resolved = [p["alerts"][0] for p in told if p["status"] == "resolved"]
        assert [(a["labels"]["alertname"], a["labels"]["model"]) for a in resolved] == [("ic-floor", "a")]
        await h.advance(3 * 3600)  # repeat_interval 1h: exposure repeats, ic-floor does not
        ic_floor = [p["status"] for p in [n["payload"] for n in await h.outbox()]
                    if p["alerts"][0]["labels"]["alertname"] == "ic-floor"]  # fmt: skip
        assert ic_floor == ["firing", "resolved"]


async def test_a_failed_write_loses_no_notification(config: Callable[[str], Path], autojump_clock: object) -> None:
    path = config("""
      - {name: exposure, kind: threshold, metric: gross, op: above, value: 1.5}
    """)
    async with running_engine(path) as h:
        samples = [Sample("gross", (("model", "a7"),), h.clock.now(), 1.9)]
        await h.store.insert_samples(samples)
        await h.store.run(lambda db: db.execute("PRAGMA query_only = ON"))  # the state file refuses writes
        h.engine.dispatch(samples)
        await h.advance(0.1)
        assert await h.outbox() == []
        await h.store.run(lambda db: db.execute("PRAGMA query_only = OFF"))
        await h.advance(5)  # the rule restarts (backoff) from the store and fires again
        assert await h.state("exposure") == "firing"
        (note,) = await h.outbox()
        (alert,) = note["payload"]["alerts"]
        assert (alert["labels"]["model"], alert["value"]) == ("a7", 1.9)


async def test_absence_without_any_sample_counts_from_start(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    path = config("""
      - {name: preds, kind: absence, metric: predictions_published, absent_for: 1h}
    """)
    async with running_engine(path) as h:
        await h.advance(3599)
        assert await h.state("preds") is None
        await h.advance(1)
        assert await h.state("preds") == "firing"


async def test_pending_timer_survives_a_restart(config: Callable[[str], Path], autojump_clock: object) -> None:
    path = config("""
      - {name: exposure, kind: threshold, metric: gross, op: above, value: 1.5, for: 10m}
    """)
    async with running_engine(path, start=1_800_000_000.0) as h:
        await h.push("gross", 1.9)
        await h.advance(300)
        assert await h.state("exposure") == "pending"
    # the daemon was down for two minutes; the pending duration keeps counting from the first sample
    async with running_engine(path, start=1_800_000_000.0 + 420) as h:
        assert await h.state("exposure") == "pending"
        await h.advance(179)
        assert await h.state("exposure") == "pending"
        await h.advance(1)
        assert await h.state("exposure") == "firing"


async def test_reload_keeps_unchanged_rules_and_restarts_changed_ones(
    config: Callable[[str], Path], write_config: Callable[..., Path], autojump_clock: object
) -> None:
    path = config("""
      - {name: keep, kind: threshold, metric: gross, op: above, value: 1.5, for: 10m}
      - {name: change, kind: threshold, metric: gross, op: above, value: 1.5}
      - {name: drop, kind: threshold, metric: gross, op: above, value: 1.5}
    """)
    async with running_engine(path) as h:
        await h.push("gross", 1.9)
        await h.advance(300)
        keep_actor = h.engine.actors["keep"]
        new = config("""
      - {name: keep, kind: threshold, metric: gross, op: above, value: 1.5, for: 10m}
      - {name: change, kind: threshold, metric: gross, op: above, value: 2.5}
      - {name: new, kind: threshold, metric: gross, op: above, value: 1.0}
    """)
        added, changed, removed = await h.engine.apply(load_config(new))
        await h.advance(0)
        assert (added, changed, removed) == (["new"], ["change"], ["drop"])
        assert h.engine.actors["keep"] is keep_actor
        assert await h.state("drop") == "resolved"
        assert await h.state("change") == "resolved"  # 1.9 is below the new limit
        assert await h.state("new") == "firing"  # the new rule sees the samples already stored
        await h.advance(300)
        assert await h.state("keep") == "firing"  # its pending timer ran on across the reload


@pytest.mark.parametrize(
    ("edit", "labels"),
    [("severity: critical", {"severity": "critical"}), ("labels: {team: quant}", {"team": "quant"})],
)
async def test_a_reload_that_changes_a_rules_labels_replaces_its_firing_alert(
    config: Callable[[str], Path], autojump_clock: object, edit: str, labels: dict[str, str]
) -> None:
    path = config("""
      - {name: lev, kind: threshold, metric: gross, op: above, value: 1.5}
    """)
    async with running_engine(path) as h:
        await h.push("gross", 1.9, model="m1")
        await h.advance(1)
        (before,) = await h.alerts("lev")
        await h.engine.apply(load_config(config(f"""
      - {{name: lev, kind: threshold, metric: gross, op: above, value: 1.5, {edit}}}
    """)))  # fmt: skip
        await h.advance(1)
        states = {a["fingerprint"]: a["state"] for a in await h.alerts("lev")}
        assert states.pop(before["fingerprint"]) == "resolved"  # the alert with the old labels ends …
        (after,) = [a for a in await h.alerts("lev") if a["fingerprint"] in states]
        assert after["state"] == "firing"  # … and the same series fires with the new ones
        assert json.loads(after["labels"]).items() >= labels.items()
        told = [(n["payload"]["status"], n["payload"]["alerts"][0]["fingerprint"]) for n in await h.outbox()]
        assert told[1:] == [("resolved", before["fingerprint"]), ("firing", after["fingerprint"])]


@pytest.mark.parametrize("change", ["removed", "changed"])
async def test_a_rule_removed_or_changed_while_it_waits_to_write_leaves_no_alert_firing(
    write_config: Callable[..., Path], tmp_path: Path, change: str
) -> None:
    """A reload that gets the dispatcher before the rule's pending write waits for that write: the removed rule
    resolves, and the changed one rebuilds from, all that is in the store."""
    exposure = "  - {name: exposure, kind: threshold, metric: gross, op: above, value: 1.5}\n"
    other = "  - {name: other, kind: threshold, metric: net, op: above, value: 1.5}\n"
    path = write_config(WEBHOOK + "rules:\n" + exposure + other)
    changed = "" if change == "removed" else exposure.replace("1.5", "3.0")
    new = write_config(WEBHOOK + "rules:\n" + changed + other, "new.yaml")
    clock = TrioClock(1_780_000_000.0)
    async with open_store(tmp_path / "state.db") as store, trio.open_nursery() as nursery:  # a real store thread
        engine = Engine(load_config(path), store, clock)
        await nursery.start(engine.run)
        samples = [Sample("gross", (("model", f"m{i}"),), clock.now(), 2.0) for i in range(300)]
        await store.insert_samples(samples)
        for _ in range(500):  # the rule has restored its state and waits for samples (bounded wait)
            if engine.actors["exposure"].state.status == "running":
                break
            await trio.sleep(0.01)
        reloaded = trio.Event()

        async def reload() -> None:
            await engine.apply(load_config(new))
            reloaded.set()

        async with engine._dispatch_lock:  # the reload queues for the dispatcher first, the rule's write second
            nursery.start_soon(reload)
            await trio.testing.wait_all_tasks_blocked()
            engine.dispatch(samples)
            await trio.testing.wait_all_tasks_blocked()
        await reloaded.wait()
        for _ in range(500):  # the changed rule's first step resolves what it restored (bounded wait)
            firing = await store.query("SELECT count(*) AS n FROM alerts WHERE state = 'firing'")
            members = await store.query("SELECT count(*) AS n FROM group_members WHERE status = 'firing'")
            if firing[0]["n"] == members[0]["n"] == 0:
                break
            await trio.sleep(0.01)
        assert (firing[0]["n"], members[0]["n"]) == (0, 0)
        nursery.cancel_scope.cancel()


async def test_restarts_and_reloads_do_not_reset_an_absence_rule_that_never_saw_a_sample(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    """A feed that never reported, and a daemon deployed (restarted) or its rule edited more often than
    ``absent_for``: the alert must still come, at ``absent_for`` after the rule started watching."""
    rule = "      - {name: feed, kind: absence, metric: heartbeat, absent_for: 30s%s}\n"
    path = config(rule % "")
    start = 1_800_000_000.0
    async with running_engine(path, start=start) as h:
        await h.advance(20)
    path.write_text(path.read_text().replace(rule % "", rule % ", description: edited"))
    async with running_engine(path, start=start + 25) as h:  # restarted, and the rule's text changed
        await h.advance(4)
        assert await h.state("feed") is None
        await h.advance(2)  # 31 s after it first started watching
        assert await h.state("feed") == "firing"
    path.write_text(path.read_text().replace("metric: heartbeat", "metric: heartbeat_v2"))
    async with running_engine(path, start=start + 60) as h:  # it watches something else now: counted afresh
        await h.advance(29)
        assert await h.state("feed") == "resolved"
        await h.advance(2)
        assert await h.state("feed") == "firing"


class _Remembering(Evaluator):
    """Records the series it was given: what a rule holds in memory."""

    made: ClassVar[list[_Remembering]] = []

    def __init__(self) -> None:
        self.series: set[Labels] = set()
        _Remembering.made.append(self)

    def observe(self, sample: Sample) -> None:
        self.series.add(sample.labels)

    def evaluate(self, now: float, is_firing: Mapping[Labels, bool]) -> tuple[list[Condition], float | None]:
        return [], None


class _RememberingKind(RuleKind):
    kind: ClassVar[str] = "remembering"
    schema: ClassVar[dict[str, Any]] = {}

    def selectors(self) -> tuple[Selector, ...]:
        return (Selector("runs"),)

    def new_evaluator(self, started_at: float) -> Evaluator:
        return _Remembering()


async def test_a_rule_lets_go_of_series_the_retention_deleted(
    config: Callable[[str], Path], autojump_clock: object
) -> None:
    """Labels that keep changing (a run id): once the store forgot a series, the rule does too, as at a restart."""
    path = config("  - {name: runs, kind: threshold, metric: runs, op: above, value: 1}\n")
    loaded = load_config(path)
    rule = dataclasses.replace(loaded.rules[0], kind="remembering", rule=_RememberingKind({}))
    _Remembering.made.clear()
    async with running_engine(path, dataclasses.replace(loaded, rules=(rule,))) as h:
        now = h.clock.now()
        await h.push("runs", 1.0, ts=now - 5000, run="r1")
        await h.push("runs", 1.0, ts=now, run="r2")
        assert _Remembering.made[-1].series == {(("run", "r1"),), (("run", "r2"),)}
        while await h.store.purge_before(now - 1000):
            pass
        h.engine.forget(h.store.take_forgotten())
        await h.advance(0.1)
        assert len(_Remembering.made) == 2  # started again from the store
        assert _Remembering.made[-1].series == {(("run", "r2"),)}
        assert h.store.take_forgotten() == set()  # told once
