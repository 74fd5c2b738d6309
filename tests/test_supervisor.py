"""Supervision under MockClock: a crashing rule restarts with exponential backoff, is parked past the restart
intensity limit (and raised as an alert on the daemon itself), and never disturbs its siblings."""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import trio

from alphawatch.daemon.config import load_config
from alphawatch.daemon.engine import keep_running
from alphawatch.rules import Condition, Evaluator, Labels, RuleKind, Sample, Selector
from tests.engine_harness import running_engine


class Fragile(RuleKind):
    """A rule that crashes whenever it has seen the value 666 (which stays in the store, so restarts crash too)."""

    kind: ClassVar[str] = "fragile"
    schema: ClassVar[dict[str, Any]] = {}
    starts: ClassVar[list[float]] = []

    def selectors(self) -> tuple[Selector, ...]:
        return (Selector("fragile_input"),)

    def history(self) -> float:
        return 86400.0

    def new_evaluator(self, started_at: float) -> Evaluator:
        Fragile.starts.append(trio.current_time())  # (started_at: since when the rule has watched, the same each time)
        return _FragileEvaluator()


class _FragileEvaluator(Evaluator):
    def observe(self, sample: Sample) -> None:
        if sample.value == 666:
            raise RuntimeError("cannot digest 666")

    def evaluate(self, now: float, is_firing: Mapping[Labels, bool]) -> tuple[list[Condition], float | None]:
        return [], None


CONFIG = """
daemon:
  supervisor: {initial_backoff: 1s, max_backoff: 8s, max_restarts: 4, restart_window: 10m}
rules:
  - {name: fragile, kind: threshold, metric: unused, op: above, value: 1}
  - {name: sibling, kind: threshold, metric: gross, op: above, value: 1.5}
"""


async def test_crashes_back_off_exponentially_then_park_the_rule(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    path = write_config(CONFIG)
    original = load_config(path)
    fragile = dataclasses.replace(original.rules[0], kind="fragile", rule=Fragile({}))
    config = dataclasses.replace(original, rules=(fragile, original.rules[1]))
    Fragile.starts.clear()
    async with running_engine(path, config) as h:
        began = trio.current_time()
        await h.push("fragile_input", 666)
        await h.push("gross", 1.9)  # the sibling works while its neighbour crashes
        assert await h.state("sibling") == "firing"
        await h.advance(120)
        # first start, then restarts after 1, 2, 4 and 8 seconds of backoff; the 5th crash exceeds max_restarts
        gaps = [round(b - a, 3) for a, b in itertools.pairwise(Fragile.starts)]
        assert gaps == [1.0, 2.0, 4.0, 8.0]
        assert Fragile.starts[1] == began + 1.0  # the first crash came with the 666
        actor = h.engine.actors["fragile"]
        assert actor.state.status == "failed"
        assert actor.state.restarts == 5
        assert "cannot digest 666" in (actor.state.last_error or "")
        (meta,) = await h.alerts("AlphawatchRuleFailed")
        assert meta["state"] == "firing"
        assert '"rule":"fragile"' in meta["labels"]
        rows = await h.store.query("SELECT status, restarts FROM rule_state WHERE rule = 'fragile'")
        assert rows == [{"status": "failed", "restarts": 5}]
        await h.push("gross", 1.0)
        assert await h.state("sibling") == "resolved"
        assert h.engine.actors["sibling"].state.restarts == 0

        # a new configuration of the parked rule starts it afresh and resolves the daemon's alert
        await h.engine.apply(original)
        await h.advance(1)
        assert h.engine.actors["fragile"].state.status == "running"
        assert await h.state("AlphawatchRuleFailed") == "resolved"
        # its restarts counter (alphawatch_rule_restarts_total) goes on from 5: a counter never goes down
        assert h.engine.restarts_before["fragile"] + h.engine.actors["fragile"].state.restarts == 5


class DiskFull(RuleKind):
    """A rule whose every start fails as a full disk makes it fail, until ``full`` is cleared."""

    kind: ClassVar[str] = "disk_full"
    schema: ClassVar[dict[str, Any]] = {}
    full: ClassVar[bool] = True
    starts: ClassVar[list[float]] = []

    def selectors(self) -> tuple[Selector, ...]:
        return (Selector("disk_input"),)

    def new_evaluator(self, started_at: float) -> Evaluator:
        DiskFull.starts.append(trio.current_time())
        if DiskFull.full:
            refused = sqlite3.OperationalError("database or disk is full")
            refused.sqlite_errorcode = sqlite3.SQLITE_FULL  # as the sqlite3 module sets it
            raise refused
        return _FragileEvaluator()


async def test_a_rule_the_state_file_refuses_waits_for_it_and_is_never_parked(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    path = write_config(CONFIG.replace("max_backoff: 8s", "max_backoff: 2m"))
    original = load_config(path)
    full = dataclasses.replace(original.rules[0], kind="disk_full", rule=DiskFull({}))
    config = dataclasses.replace(original, rules=(full, original.rules[1]))
    DiskFull.full, DiskFull.starts = True, []
    async with running_engine(path, config) as h:
        await h.advance(600)  # far past max_restarts (4) within restart_window (10m): a crashing rule is parked
        actor = h.engine.actors["fragile"]
        assert actor.state.status != "failed"
        gaps = [round(b - a) for a, b in itertools.pairwise(DiskFull.starts)]
        assert gaps[:7] == [1, 2, 4, 8, 16, 30, 30]  # its backoff, at most 30 s: back soon after the disk is
        assert max(gaps) == 30
        DiskFull.full = False  # room again
        await h.advance(31)
        assert actor.state.status == "running"
        assert await h.alerts("AlphawatchRuleFailed") == []  # it never failed


async def test_a_background_task_that_keeps_failing_is_restarted_less_and_less_often(autojump_clock: object) -> None:
    # retention on a disk that stays full: one attempt (and one logged traceback) a minute at most, not a second
    starts: list[float] = []

    async def fails_at_once() -> None:
        starts.append(trio.current_time())
        raise sqlite3.OperationalError("database or disk is full")

    with trio.move_on_after(600):
        await keep_running("retention", fails_at_once)
    pauses = [round(b - a) for a, b in itertools.pairwise(starts)]
    assert pauses[:8] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert len(starts) == 15


async def test_a_background_task_that_failed_after_running_well_restarts_a_second_later(
    autojump_clock: object,
) -> None:
    starts: list[float] = []

    async def fails_now_and_then() -> None:
        starts.append(trio.current_time())
        await trio.sleep(5 if len(starts) < 4 else 3600)  # three quick failures, then an hour of work
        raise sqlite3.OperationalError("disk I/O error")

    with trio.move_on_after(2 * 3600):
        await keep_running("checkpoints", fails_now_and_then)
    pauses = [round(b - a - 5 if i < 3 else b - a - 3600) for i, (a, b) in enumerate(itertools.pairwise(starts))]
    assert pauses == [1, 2, 4, 1]


def _fragile_config(path: Path) -> Any:
    original = load_config(path)
    fragile = dataclasses.replace(original.rules[0], kind="fragile", rule=Fragile({}))
    return dataclasses.replace(original, rules=(fragile, original.rules[1]))


async def test_a_rule_parked_while_the_store_refuses_its_alert_leaves_the_daemon_running(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    """A full disk at the moment a rule is parked: the parking stands, every other rule goes on."""
    path = write_config(CONFIG)
    async with running_engine(path, _fragile_config(path)) as h:
        await h.store.run(
            lambda db: db.execute(
                "CREATE TRIGGER full BEFORE INSERT ON alert_history WHEN NEW.rule = 'AlphawatchRuleFailed'"
                " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
        )
        await h.push("fragile_input", 666)
        await h.advance(120)
        assert h.engine.actors["fragile"].state.status == "failed"
        await h.push("gross", 1.9)
        assert await h.state("sibling") == "firing"


async def test_the_parked_alert_of_a_rule_removed_while_stopped_resolves_at_start(
    write_config: Callable[..., Path], autojump_clock: object
) -> None:
    path = write_config(CONFIG)
    async with running_engine(path, _fragile_config(path)) as h:
        await h.push("fragile_input", 666)
        await h.advance(120)
        assert await h.state("AlphawatchRuleFailed") == "firing"
    without = dataclasses.replace(load_config(path), rules=(load_config(path).rules[1],))
    async with running_engine(path, without) as h:
        assert await h.state("AlphawatchRuleFailed") == "resolved"


async def test_a_full_inbox_is_told_once_and_a_parked_rule_gets_none(
    write_config: Callable[..., Path], autojump_clock: object, caplog: Any
) -> None:
    from alphawatch.rules import Sample

    path = write_config(CONFIG)
    async with running_engine(path, _fragile_config(path)) as h:
        await h.push("fragile_input", 666)
        await h.advance(120)  # parked: nothing reads its inbox, and nothing is put in it
        for k in range(5000):
            h.engine.dispatch([Sample("fragile_input", (), h.clock.now() + k, 1.0)])
        assert h.engine.actors["fragile"].send.statistics().current_buffer_used == 0
        for k in range(5000):  # no checkpoint between them: the sibling cannot keep up
            h.engine.dispatch([Sample("gross", (), h.clock.now() + k, 1.0)])
        full = [r.getMessage() for r in caplog.records if "inbox full" in r.getMessage()]
        assert len(full) == 1
        await h.advance(5)
        await h.push("gross", 1.9)  # it reloaded from the store and goes on
        assert await h.state("sibling") == "firing"
