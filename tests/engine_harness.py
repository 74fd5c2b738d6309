"""Run the rule engine in-process on a real SQLite file, with trio's MockClock driving the wall clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
import trio.testing

from alphawatch.daemon.clock import TrioClock
from alphawatch.daemon.config import Config, load_config
from alphawatch.daemon.engine import Engine
from alphawatch.daemon.ingest import parse_batch
from alphawatch.daemon.store import Store, open_store
from alphawatch.daemon.suppression import Suppressions


@dataclass
class Harness:
    engine: Engine
    store: Store
    clock: TrioClock

    async def push(self, metric: str, value: float, ts: float | None = None, **labels: str) -> None:
        item = {"metric": metric, "labels": labels, "ts": self.clock.now() if ts is None else ts, "value": value}
        batch = parse_batch(json.dumps([item]).encode(), self.clock.now())
        await self.store.insert_samples(batch.samples)
        self.engine.dispatch(batch.samples)
        await settle()

    async def alerts(self, rule: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM alerts" + (" WHERE rule = ?" if rule else "") + " ORDER BY fingerprint"
        return await self.store.query(sql, [rule] if rule else [])

    async def state(self, rule: str) -> str | None:
        rows = await self.alerts(rule)
        return rows[-1]["state"] if rows else None

    async def history(self, rule: str) -> list[tuple[str, str]]:
        rows = await self.store.query(
            "SELECT from_state, to_state FROM alert_history WHERE rule = ? ORDER BY id", [rule]
        )
        return [(r["from_state"], r["to_state"]) for r in rows]

    async def outbox(self) -> list[dict[str, Any]]:
        rows = await self.store.query("SELECT * FROM outbox JOIN outbox_payloads USING (id) ORDER BY id")
        for row in rows:
            row["payload"] = json.loads(row["payload"])
        return rows

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` of mock time pass (the autojump clock skips the idle parts)."""
        await trio.sleep(seconds)
        await settle()


async def settle() -> None:
    """Let every runnable task run (actors evaluating, committing) before looking at the results."""
    await trio.testing.wait_all_tasks_blocked()


@asynccontextmanager
async def running_engine(
    path: Path, config: Config | None = None, start: float | None = None
) -> AsyncIterator[Harness]:
    config = config or load_config(path)
    clock = TrioClock() if start is None else TrioClock(start)
    async with open_store(path.parent / "state.db", inline=True) as store, trio.open_nursery() as nursery:
        engine = Engine(config, store, clock)
        # as the daemon does: the silences and acks in force before anything is routed
        engine.suppressions = await Suppressions.load(store, config.inhibit_rules, now=clock.now())
        await nursery.start(engine.run)
        await settle()
        yield Harness(engine, store, clock)
        nursery.cancel_scope.cancel()
