"""The SQLite state file: migrations, WAL, refusing a newer schema, and retention in small batches."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from alphawatch.daemon.errors import StoreError
from alphawatch.daemon.store import MIGRATIONS, Outgoing, Queued, open_store
from alphawatch.rules import Sample, Selector
from alphawatch.rules._base import parse_matcher

NOW = 1_780_000_000.0


async def test_a_new_file_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"
    async with open_store(path):
        pass
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer alphawatch"):
        async with open_store(path):
            pass


async def test_an_unusable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot open the state file"):
        async with open_store(tmp_path / "file" / "state.db"):
            pass


async def test_calls_run_one_at_a_time_in_order_and_one_waiting_its_turn_can_be_cancelled(tmp_path: Path) -> None:
    ran: list[str] = []
    started, release = threading.Event(), threading.Event()

    def named(name: str) -> Callable[[sqlite3.Connection], str]:
        def work(db: sqlite3.Connection) -> str:
            db.execute("INSERT INTO rule_state (rule, status, updated_at) VALUES (?, 'running', 0)", (name,))
            ran.append(name)
            return name

        return work

    def first(db: sqlite3.Connection) -> str:
        ran.append("first started")
        started.set()
        release.wait(10)
        return named("first")(db)

    def failing(db: sqlite3.Connection) -> str:
        raise ValueError("this call's own mistake")

    results: dict[str, object] = {}
    async with open_store(tmp_path / "state.db") as store:

        async def call(name: str, work: Callable[[sqlite3.Connection], str], scope: trio.CancelScope) -> None:
            with scope:
                try:
                    results[name] = await store.run(work)
                except ValueError as exc:
                    results[name] = exc
            if scope.cancelled_caught:
                results[name] = "cancelled"

        scopes = {name: trio.CancelScope() for name in ("first", "second", "waiting", "failing", "third")}
        works = {"first": first, "second": named("second"), "waiting": named("waiting"), "failing": failing,
                 "third": named("third")}  # fmt: skip
        async with trio.open_nursery() as nursery:
            for name, work in works.items():  # one at a time: each is queued before the next is asked
                nursery.start_soon(call, name, work, scopes[name])
                await trio.testing.wait_all_tasks_blocked()
                if name == "first":
                    await trio.to_thread.run_sync(started.wait, 10)
            assert ran == ["first started"]
            scopes["waiting"].cancel()  # still waiting its turn: it never runs
            scopes["first"].cancel()  # already running: it finishes
            await trio.testing.wait_all_tasks_blocked()
            assert results == {"waiting": "cancelled"}
            release.set()
        assert ran == ["first started", "first", "second", "third"]
        assert (results["second"], results["third"]) == ("second", "third")
        assert isinstance(results["failing"], ValueError)
        assert results["first"] == "first"  # cancelled while it ran: it finished, and its work is committed
        stored = await store.query("SELECT rule FROM rule_state ORDER BY rule")
        assert [r["rule"] for r in stored] == ["first", "second", "third"]


async def test_a_call_that_gets_no_thread_fails_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    start_thread_soon = trio.lowlevel.start_thread_soon
    refusals = [RuntimeError("can't start new thread")]  # (a limit on tasks, no memory): the first call only

    def starting(*args: Any, **kwargs: Any) -> None:
        if refusals:
            raise refusals.pop()
        start_thread_soon(*args, **kwargs)

    monkeypatch.setattr(trio.lowlevel, "start_thread_soon", starting)
    async with open_store(tmp_path / "state.db") as store:
        with pytest.raises(RuntimeError, match="can't start new thread"):
            await store.query("SELECT 1 AS x")
        with trio.fail_after(5):
            assert await store.query("SELECT 2 AS x") == [{"x": 2}]
    # (and the store closed: a wedged queue would have held the close for good)


async def test_retention_deletes_old_rows_in_batches_and_keeps_the_rest(tmp_path: Path) -> None:
    async with open_store(tmp_path / "state.db") as store:
        old = [Sample("m", (), NOW - 1000 - i, 1.0) for i in range(120)]
        new = [Sample("m", (), NOW + i, 2.0) for i in range(5)]
        await store.insert_samples(old + new)
        batches = []
        while gone := await store.purge_before(NOW - 500, batch=50):
            batches.append(gone)
        assert batches == [50, 50, 20]
        kept = await store.load_samples(Selector("m"), 0)
        assert [s.value for s in kept] == [2.0] * 5


@pytest.mark.parametrize("count", [1, 5, 100, 351, 1000])
async def test_every_sample_of_a_batch_is_stored_and_a_repeated_one_overwrites(tmp_path: Path, count: int) -> None:
    # batches are written in statements of several rows: every size must come out whole, in order
    async with open_store(tmp_path / "state.db") as store:
        batch = [Sample("m", (("id", str(i % 7)),), NOW + i, float(i)) for i in range(count)]
        batch.append(Sample("m", (("id", "0"),), NOW, -1.0))  # the same series and time as the first: it wins
        await store.insert_samples(batch)
        kept = {(s.labels, s.ts): s.value for s in await store.load_samples(Selector("m"), 0)}
        assert len(kept) == count
        assert kept[((("id", "0"),), NOW)] == -1.0
        assert all(kept[(s.labels, s.ts)] == s.value for s in batch[1:-1])
        # the same with series known already (a batch of known series takes a path of its own)
        await store.insert_samples([Sample("m", (("id", "0"),), NOW, 5.0), Sample("m", (("id", "0"),), NOW, 6.0)])
        kept = {(s.labels, s.ts): s.value for s in await store.load_samples(Selector("m"), 0)}
        assert (len(kept), kept[((("id", "0"),), NOW)]) == (count, 6.0)


async def test_new_series_in_batches_of_any_size_take_a_few_statement_shapes(tmp_path: Path) -> None:
    """Every statement text is prepared and kept (Python's sqlite3 caches 128, a statement of hundreds of rows
    taking up to 100 KB): a number of new series that changes from batch to batch must not make one each."""
    async with open_store(tmp_path / "state.db") as store:
        executed: list[str] = []
        await store.run(lambda db: db.set_trace_callback(executed.append))
        for size in range(1, 61):
            await store.insert_samples([Sample("m", (("id", f"{size}-{i}"),), NOW, float(size)) for i in range(size)])
        await store.run(lambda db: db.set_trace_callback(None))
        rows_per_statement = {sql.count("),(") + 1 for sql in executed if sql.startswith("INSERT INTO series")}
        assert rows_per_statement <= {64, 16, 4, 1}
        kept = await store.load_samples(Selector("m"), 0)
        assert sorted((s.labels[0][1], s.value) for s in kept) == sorted(
            (f"{size}-{i}", float(size)) for size in range(1, 61) for i in range(size)
        )


async def test_label_sets_of_one_text_in_a_batch_are_one_new_series_keeping_the_later_sample(tmp_path: Path) -> None:
    sorted_, unsorted = (("a", "1"), ("b", "2")), (("b", "2"), ("a", "1"))
    async with open_store(tmp_path / "state.db") as store:
        await store.insert_samples([Sample("m", sorted_, NOW - 5, 1.0), Sample("m", unsorted, NOW, 2.0)])
        ids = await store.query("SELECT id FROM series")
        assert len(ids) == 1
        latest = await store.load_samples(Selector("m"), NOW + 1, latest_only=True)
        assert [(s.labels, s.ts, s.value) for s in latest] == [(sorted_, NOW, 2.0)]
        await store.insert_samples([Sample("m", unsorted, NOW + 1, 3.0)])  # known now, in either order
        assert await store.query("SELECT id FROM series") == ids


async def test_a_series_keeps_its_last_sample_until_the_retention_forgets_it(tmp_path: Path) -> None:
    async with open_store(tmp_path / "state.db") as store:
        one, two, three = ((("a", "1"),), (("a", "2"),), (("a", "3"),))
        await store.insert_samples([Sample("m", one, NOW - 100, 1.0), Sample("m", two, NOW - 90, 5.0)])
        await store.insert_samples([Sample("m", one, NOW - 10, 2.0), Sample("m", one, NOW - 50, 9.0)])
        await store.insert_samples([Sample("m", three, NOW - 40, 3.0)])
        while await store.purge_before(NOW - 60):
            pass
        loaded = await store.load_samples(Selector("m"), NOW - 20)
        # series 3 has nothing in the window, yet its last sample is known; series 2 is older than the retention
        # and forgotten; the late sample of series 1 (NOW - 50) did not replace its newer last one
        assert [(s.labels, s.ts, s.value) for s in loaded] == [(three, NOW - 40, 3.0), (one, NOW - 10, 2.0)]
        latest = await store.load_samples(Selector("m"), NOW - 5, latest_only=True)
        assert [(s.labels, s.ts, s.value) for s in latest] == [(one, NOW - 10, 2.0), (three, NOW - 40, 3.0)]


async def test_series_first_seen_in_a_batch_or_after_a_restart_keep_their_latest_sample(tmp_path: Path) -> None:
    many = [Sample("m", (("id", str(i)),), NOW - 30, float(i)) for i in range(450)]  # more than one statement
    async with open_store(tmp_path / "state.db") as store:
        await store.insert_samples([*many, Sample("m", (("id", "0"),), NOW - 20, 100.0)])
        await store.insert_samples([Sample("m", (("id", "1"),), NOW - 10, 7.0)])
    async with open_store(tmp_path / "state.db") as store:  # a restart: the series are in the file only
        await store.insert_samples([Sample("m", (("id", "0"),), NOW - 25, -1.0), Sample("m", (("id", "2"),), NOW, 8.0)])
        latest = {s.labels: (s.ts, s.value) for s in await store.load_samples(Selector("m"), NOW, latest_only=True)}
        assert len(latest) == 450
        assert latest[(("id", "0"),)] == (NOW - 20, 100.0)  # the late sample after the restart did not replace it
        assert latest[(("id", "1"),)] == (NOW - 10, 7.0)
        assert latest[(("id", "2"),)] == (NOW, 8.0)
        assert latest[(("id", "449"),)] == (NOW - 30, 449.0)
        stored = await store.load_samples(Selector("m", (parse_matcher('id="0"'),)), NOW - 60)
        assert [(s.ts, s.value) for s in stored] == [(NOW - 30, 0.0), (NOW - 25, -1.0), (NOW - 20, 100.0)]


async def test_last_samples_not_yet_settled_survive_a_crash(tmp_path: Path) -> None:
    one, two, three = (("a", "1"),), (("a", "2"),), (("a", "3"),)
    crashed = tmp_path / "crashed.db"
    async with open_store(tmp_path / "state.db") as store:
        await store.insert_samples([Sample("m", three, NOW - 5000, 7.0)])
        while await store.purge_before(NOW - 1000):  # the retention forgets series 3
            pass
        await store.insert_samples([Sample("m", one, NOW - 100, 1.0), Sample("m", two, NOW - 90, 5.0)])
        await store.insert_samples(
            [Sample("m", one, NOW - 10, 2.0), Sample("m", two, NOW - 95, 9.0), Sample("m", three, NOW - 20, 3.0)]
        )
        for suffix in ("", "-wal"):  # the files as a kill -9 leaves them
            shutil.copy(tmp_path / f"state.db{suffix}", tmp_path / f"crashed.db{suffix}")
    db = sqlite3.connect(crashed)
    rows = db.execute("SELECT labels, last_ts FROM series ORDER BY id").fetchall()
    db.close()
    # the rows were behind the samples (series 3, forgotten by the retention, came back as a new one)
    assert rows == [('{"a":"1"}', NOW - 100), ('{"a":"2"}', NOW - 90), ('{"a":"3"}', NOW - 20)]
    async with open_store(crashed) as store:
        latest = await store.load_samples(Selector("m"), NOW, latest_only=True)
        # series 1 and 3 get their newer samples back; series 2's late sample does not replace its newer one
        assert sorted((s.labels, s.ts, s.value) for s in latest) == [
            (one, NOW - 10, 2.0),
            (two, NOW - 90, 5.0),
            (three, NOW - 20, 3.0),
        ]
        assert await store.query("SELECT * FROM series_behind") == []


async def test_the_last_sample_of_a_batch_of_known_series_survives_a_crash(tmp_path: Path) -> None:
    one, two = (("a", "1"),), (("a", "2"),)
    async with open_store(tmp_path / "state.db") as store:
        await store.insert_samples([Sample("m", one, NOW - 100, 1.0), Sample("m", two, NOW - 90, 5.0)])
        await store.settle()
        await store.insert_samples([Sample("m", one, NOW - 10, 2.0), Sample("m", one, NOW - 50, 9.0)])  # both known
        for suffix in ("", "-wal"):  # the files as a kill -9 leaves them
            shutil.copy(tmp_path / f"state.db{suffix}", tmp_path / f"crashed.db{suffix}")
    async with open_store(tmp_path / "crashed.db") as store:
        latest = await store.load_samples(Selector("m"), NOW, latest_only=True)
    assert sorted((s.labels, s.ts, s.value) for s in latest) == [(one, NOW - 10, 2.0), (two, NOW - 90, 5.0)]


async def test_a_checkpoint_copies_the_log_while_writes_go_on(tmp_path: Path) -> None:
    async with open_store(tmp_path / "state.db") as store:
        many = [Sample("m", (("id", str(i)),), NOW - 30, float(i)) for i in range(5000)]
        await store.insert_samples(many)
        async with trio.open_nursery() as nursery:  # a checkpoint on its own connection, a write beside it
            results: list[list[tuple[int, int, int]]] = []

            async def checkpoint() -> None:
                results.append(await store.checkpoint())

            nursery.start_soon(checkpoint)
            await store.insert_samples([Sample("m", (("id", "new"),), NOW, 1.0)])
        ((busy, frames, copied),) = results[0]
        assert busy == 0
        assert frames > 0
        assert copied > 0
        latest = await store.load_samples(Selector("m"), NOW, latest_only=True)
        assert len(latest) == 5001
    assert not (tmp_path / "state.db-wal").exists() or (tmp_path / "state.db-wal").stat().st_size == 0


async def test_samples_of_a_schema_4_file_survive_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    for number, script in enumerate(MIGRATIONS[:4], start=1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    db.execute("""INSERT INTO series (id, metric, labels) VALUES (1, 'm', '{"a":"1"}'), (2, 'm', '{"a":"2"}')""")
    db.executemany(
        "INSERT INTO samples (series_id, ts, value) VALUES (?, ?, ?)",
        [(1, NOW - 30, 1.0), (1, NOW - 20, 2.0), (2, NOW - 300, 7.0)],
    )
    db.commit()
    db.close()
    async with open_store(path) as store:
        loaded = await store.load_samples(Selector("m"), NOW - 60)
        assert [(s.labels, s.ts, s.value) for s in loaded] == [
            ((("a", "2"),), NOW - 300, 7.0),
            ((("a", "1"),), NOW - 30, 1.0),
            ((("a", "1"),), NOW - 20, 2.0),
        ]
        await store.insert_samples([Sample("m", (("a", "2"),), NOW, 8.0)])  # the old series ids are reused
        assert (await store.query("SELECT count(*) AS n FROM series"))[0]["n"] == 2


async def test_notifications_of_a_schema_7_file_are_still_delivered_and_purged(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    for number, script in enumerate(MIGRATIONS[:7], start=1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    db.executemany(
        "INSERT INTO outbox (id, channel, fingerprint, idempotency_key, payload, created_at, next_attempt_at, state,"
        " finished_at) VALUES (?, 'hook', 'f', ?, ?, ?, ?, ?, ?)",
        [(1, "k1", '{"n":1}', NOW - 10, NOW - 10, "pending", None),
         (2, "k2", '{"n":2}', NOW - 99, NOW - 99, "delivered", NOW - 98)],
    )  # fmt: skip
    db.commit()
    db.close()
    async with open_store(path) as store:
        due, _, _, _ = await store.due(NOW, limit=10, exclude=set())
        assert [(q.idempotency_key, q.payload) for q in due] == [("k1", {"n": 1})]
        await store.finish(1, "delivered", None, NOW)
        while await store.purge_before(NOW - 50):
            pass
        rows = await store.query("SELECT id, payload FROM outbox JOIN outbox_payloads USING (id)")
        assert rows == [{"id": 1, "payload": '{"n":1}'}]  # the old delivered one went with its document
        assert (await store.query("SELECT count(*) AS n FROM outbox_payloads"))[0]["n"] == 1


async def test_group_members_of_a_schema_9_file_keep_their_documents(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    for number, script in enumerate(MIGRATIONS[:9], start=1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    db.execute("INSERT INTO groups (key, route, labels, created_at) VALUES ('g', '0', '{}', ?)", (NOW,))
    db.execute(
        "INSERT INTO group_members VALUES ('g', 'f1', 'exposure', 'firing', 'firing', ?, ?)",
        (NOW, '{"labels":{"model":"a7"},"annotations":{}}'),
    )
    db.commit()
    db.close()
    async with open_store(path) as store:
        _, members, _ = await store.load_dispatch()
        assert [(m["fingerprint"], m["sent"], m["doc"]) for m in members] == [
            ("f1", "firing", '{"labels":{"model":"a7"},"annotations":{}}')
        ]


async def test_notifications_of_a_schema_10_file_keep_their_documents_and_may_be_superseded(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA foreign_keys = ON")
    for number, script in enumerate(MIGRATIONS[:10], start=1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    db.executemany(
        "INSERT INTO outbox (id, channel, fingerprint, idempotency_key, created_at, next_attempt_at, attempts, state,"
        " last_error, finished_at) VALUES (?, 'hook', 'g', ?, ?, ?, ?, ?, ?, ?)",
        [(1, "k1", NOW - 10, NOW + 5, 2, "pending", "HTTP 503", None),
         (2, "k2", NOW - 99, NOW - 99, 1, "delivered", None, NOW - 98)],
    )  # fmt: skip
    db.executemany("INSERT INTO outbox_payloads (id, payload) VALUES (?, ?)", [(1, '{"n":1}'), (2, '{"n":2}')])
    db.commit()
    db.close()
    async with open_store(path) as store:
        rows = await store.query(
            "SELECT id, idempotency_key, attempts, state, last_error, payload FROM outbox JOIN outbox_payloads"
            " USING (id) ORDER BY id"
        )
        assert rows == [
            {"id": 1, "idempotency_key": "k1", "attempts": 2, "state": "pending", "last_error": "HTTP 503",
             "payload": '{"n":1}'},
            {"id": 2, "idempotency_key": "k2", "attempts": 1, "state": "delivered", "last_error": None,
             "payload": '{"n":2}'},
        ]  # fmt: skip
        await store.finish(1, "superseded", "folded into notification 3", NOW)
        while await store.purge_before(NOW + 1):
            pass
        assert (await store.query("SELECT count(*) AS n FROM outbox_payloads"))[0]["n"] == 0  # (the cascade works)


async def test_a_group_notification_carries_its_members_documents_whatever_characters_they_hold(
    tmp_path: Path,
) -> None:
    """The store reads a group's member documents in one row parted by control characters (\x1e, \x1f), which
    JSON text holds only escaped: documents holding them, and every other kind of character, come out whole."""
    import json

    from alphawatch.daemon.store import dump_json

    odd = '\x1e\x1f\x00\n\t"\\ 中文 😀 é'
    docs = {
        f"f{i}": dump_json({"labels": {"id": f"{i}{odd}"}, "annotations": {"summary": f"same {odd}"}, "n": i})
        for i in range(5)
    }
    async with open_store(tmp_path / "state.db") as store:
        rows = [("g", fingerprint, doc) for fingerprint, doc in docs.items()]
        await store.run(lambda db: db.executemany("INSERT INTO group_member_docs VALUES (?, ?, ?)", rows))
        told = ("f3", "f0", "f4")  # in the order the dispatcher tells them; f1 and f2 are not told
        head = dump_json({"receiver": "hook", "status": "firing"})
        await store.enqueue([Outgoing("hook", "g", "k1", head, tuple((f, None) for f in told))])
        (queued,), _, _, _ = await store.due(time.time() + 60, limit=10, exclude=set())  # (queued as of now)
        document = queued.payload
        assert document["alerts"] == [json.loads(docs[f]) for f in told]
        assert document["commonAnnotations"] == {"summary": f"same {odd}"}


async def test_a_group_whose_documents_together_pass_sqlites_length_limit_is_still_told_whole(tmp_path: Path) -> None:
    """Read as one row, a group's documents (with their fingerprints and annotations) are longer than the
    notification they make: past SQLite's limit on one value, they are read a row each."""
    from alphawatch.daemon.store import dump_json

    docs = {f"f{i}": dump_json({"labels": {"id": str(i)}, "annotations": {"summary": "x" * 900}}) for i in range(60)}
    async with open_store(tmp_path / "state.db") as store:
        rows = [("g", fingerprint, doc) for fingerprint, doc in docs.items()]
        await store.run(lambda db: db.executemany("INSERT INTO group_member_docs VALUES (?, ?, ?)", rows))
        limit = sum(map(len, docs.values())) + 2000  # the notification fits; the joined row does not
        await store.run(lambda db: db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limit))
        head = dump_json({"receiver": "hook", "status": "firing"})
        await store.enqueue([Outgoing("hook", "g", "k1", head, tuple((f, None) for f in docs))])
        (queued,), _, _, _ = await store.due(time.time() + 60, limit=10, exclude=set())
        assert [a["labels"]["id"] for a in queued.payload["alerts"]] == [str(i) for i in range(60)]
        assert queued.payload["commonAnnotations"] == {"summary": "x" * 900}


@pytest.mark.parametrize(
    "labels", [{}, {"model": "a7", "desk": "tw"}, {"q": '"quoted" \\ 中文 \n\t'}, {"b": "1", "a": "2"}]
)
def test_label_text_is_canonical_json(labels: dict[str, str]) -> None:
    import json

    from alphawatch.daemon.store import dump_labels

    expected = json.dumps(dict(sorted(labels.items())), separators=(",", ":"), ensure_ascii=False)
    assert dump_labels(labels) == expected
    assert dump_labels(tuple(labels.items())) == expected
    assert json.loads(dump_labels(labels)) == labels


def test_label_text_is_the_same_for_every_character() -> None:
    """Series are found by this text: a daemon must write it exactly as the earlier ones did (json.dumps)."""
    import json

    from alphawatch.daemon.store import dump_labels

    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(chars), 8192):
        text = "".join(chars[start : start + 8192])
        labels = {"k": text, "z": text[::-1]}
        assert dump_labels(labels) == json.dumps(labels, separators=(",", ":"), ensure_ascii=False)


async def test_due_notifications_come_channel_by_channel_in_turn_oldest_first_without_those_in_flight(
    tmp_path: Path,
) -> None:
    async with open_store(tmp_path / "state.db") as store:
        # due at 1..6, alternating channels; one not due yet (at 100)
        plan = [("a", 1.0), ("b", 2.0), ("a", 3.0), ("b", 4.0), ("a", 5.0), ("b", 6.0), ("a", 100.0)]
        await store.enqueue([Outgoing(ch, "f", f"k{n}", "{}") for n, (ch, _) in enumerate(plan)])
        rows = await store.query("SELECT id, idempotency_key FROM outbox ORDER BY id")
        ids = {row["idempotency_key"]: row["id"] for row in rows}
        await store.run(
            lambda db: db.executemany(
                "UPDATE outbox SET next_attempt_at = ? WHERE id = ?",
                [(at, ids[f"k{n}"]) for n, (_, at) in enumerate(plan)],
            )
        )

        def keys(due: list[Queued]) -> list[str]:
            return [q.idempotency_key for q in due]

        due, later, behind, cut = await store.due(10.0, limit=3, exclude={ids["k0"]})
        # the channels share the limit in turn (a: k2, k4; b: k1, k3, k5), each in its order; k0 being sent
        assert (keys(due), behind, cut) == (["k1", "k2", "k4"], {"b"}, True)
        assert later == 100.0
        due, _, behind, _ = await store.due(10.0, limit=10, exclude={ids["k3"]}, room={"a": 0})
        assert keys(due) == ["k1", "k5"]  # channel a's queue is full: b's in order, k3 being sent
        assert behind == {"a"}
        due, _, behind, _ = await store.due(10.0, limit=2, exclude=set(), room={"b": 0})
        assert (keys(due), behind) == (["k0", "k2"], {"a", "b"})  # (a has a third due: more than the limit)
        due, _, behind, _ = await store.due(10.0, limit=10, exclude=set(), room={"a": 1, "b": 5})
        assert (keys(due), behind) == (["k0", "k1", "k3", "k5"], {"a"})  # a: room for its oldest only; b: all


async def test_retention_keeps_the_samples_of_a_fixed_baseline(write_config: Callable[..., Path]) -> None:
    """A rule judging against a fixed range of dates reads them again at each restart: pruned, it would judge
    against part of them."""
    from tests.daemon_harness import AUTH, TOKEN, in_process

    path = write_config(f"""
daemon:
  state: state.db
  retention: 30d
  tokens: {{ingest: {TOKEN}, admin: {TOKEN}}}
rules:
  - {{name: decay, kind: ic, match: {{model: a7}}, window: 10, baseline: {{start: 2025-06-02, end: 2025-09-30}}}}
""")
    async with in_process(path) as (daemon, client):
        stamps = [1_746_057_600.0 + 86400 * k for k in range(0, 300, 10)]  # 2025-05-01, every 10 days
        body = [{"metric": "alphawatch_ic", "labels": {"model": "a7", "horizon": "1d"}, "ts": ts, "value": 0.05}
                for ts in stamps]  # fmt: skip
        assert (await client.post("/api/v1/samples", json=body, headers=AUTH)).status_code == 200
        async with trio.open_nursery() as nursery:
            nursery.start_soon(daemon.run_retention)
            await trio.sleep(0.5)  # one pass (the next is an hour away)
            nursery.cancel_scope.cancel()
        kept = [s.ts for s in await daemon.store.load_samples(Selector("alphawatch_ic"), 0)]
    baseline_start = 1_748_793_600.0  # 2025-06-02 00:00 in Asia/Taipei
    assert kept == [ts for ts in stamps if ts >= baseline_start]


async def test_series_silent_for_longer_than_the_retention_are_forgotten_for_good(tmp_path: Path) -> None:
    """Labels that keep changing (a run id per run) must not grow the state file and the daemon for ever."""
    async with open_store(tmp_path / "state.db") as store:
        old = [Sample("m", (("run", f"r{i}"),), NOW - 5000 + i, float(i)) for i in range(300)]
        await store.insert_samples(old)
        await store.insert_samples([Sample("m", (("run", "live"),), NOW - 10, 1.0)])
        while await store.purge_before(NOW - 1000, batch=100):
            pass
        rows = await store.query("SELECT labels FROM series")
        assert [r["labels"] for r in rows] == ['{"run":"live"}']
        assert list(store._series["m"]) == [(("run", "live"),)]  # the store's memory of them went too
        await store.insert_samples([Sample("m", (("run", "r7"),), NOW, 7.5)])  # one comes back: a new series
        latest = {s.labels: s.value for s in await store.load_samples(Selector("m"), NOW - 100, latest_only=True)}
        assert latest == {(("run", "live"),): 1.0, (("run", "r7"),): 7.5}


async def test_a_series_the_retention_was_forgetting_that_sends_again_is_kept(tmp_path: Path) -> None:
    async with open_store(tmp_path / "state.db") as store:
        await store.insert_samples([Sample("m", (("run", "r1"),), NOW - 5000 + i, float(i)) for i in range(20)])
        assert await store.purge_before(NOW - 1000, batch=5)  # its last sample is too old: it is let go …
        await store.insert_samples([Sample("m", (("run", "r1"),), NOW, 9.0)])  # … when it sends again
        while await store.purge_before(NOW - 1000, batch=5):
            pass
        latest = await store.load_samples(Selector("m"), NOW - 100, latest_only=True)
        assert [(s.labels, s.value) for s in latest] == [((("run", "r1"),), 9.0)]


async def test_retention_deletes_resolved_alerts_and_old_reloads_a_batch_at_a_time(tmp_path: Path) -> None:
    async with open_store(tmp_path / "state.db") as store:

        def fill(db: sqlite3.Connection) -> None:
            with db:
                db.executemany(
                    "INSERT INTO alerts (fingerprint, rule, series, labels, state, active_at, resolved_at, updated_at)"
                    " VALUES (?, 'r', '{}', '{}', ?, 0, ?, 0)",
                    [
                        (f"fp{i}", "resolved" if i < 120 else "firing", NOW - 1000 if i < 120 else None)
                        for i in range(125)
                    ],
                )
                db.executemany(
                    "INSERT INTO reloads (at, ok, trigger) VALUES (?, 1, 'SIGHUP')",
                    [(NOW - 1000 if i < 70 else NOW,) for i in range(75)],
                )

        await store.run(fill)
        batches = []
        while gone := await store.purge_before(NOW - 500, batch=50):
            batches.append(gone)
        assert batches == [100, 70, 20]  # 50 alerts and 50 reloads, 50 and 20, the last 20 alerts
        left = await store.query("SELECT (SELECT count(*) FROM alerts) AS alerts, (SELECT count(*) FROM reloads) AS r")
        assert (left[0]["alerts"], left[0]["r"]) == (5, 5)  # the firing alerts and the recent reloads stay


@pytest.fixture
def patient_clock() -> trio.testing.MockClock:
    """Mock time that jumps only after 50 ms of real idleness: not while a store thread works, as autojump does."""
    return trio.testing.MockClock(autojump_threshold=0.05)


async def test_checkpoints_wait_for_a_lull_but_not_for_ever(
    write_config: Callable[..., Path], patient_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint's copy and sync compete with a burst for the two cores: every 5 s in a lull, and at the latest
    every 15 s while samples keep coming."""
    from tests.daemon_harness import AUTH, TOKEN, in_process

    path = write_config(f"daemon: {{state: state.db, tokens: {{ingest: {TOKEN}, admin: {TOKEN}}}}}\nrules: []\n")
    async with in_process(path) as (daemon, client):
        checkpoints: list[float] = []
        checkpoint = daemon.store.checkpoint

        async def recorded() -> Any:
            checkpoints.append(trio.current_time())
            return await checkpoint()

        monkeypatch.setattr(daemon.store, "checkpoint", recorded)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(daemon.run_checkpoints)
            start = trio.current_time()
            while trio.current_time() - start < 16:  # a burst: 40 samples a second
                body = [{"metric": "m", "labels": {"k": str(i)}, "ts": time.time(), "value": 1.0} for i in range(20)]
                assert (await client.post("/api/v1/samples", json=body, headers=AUTH)).status_code == 200
                await trio.sleep(0.5)
            assert [round(at - start) for at in checkpoints] == [15]  # none at 5 and 10: not in a lull
            await trio.sleep(7)  # quiet: the next 5 s after it
            assert [round(at - start) for at in checkpoints] == [15, 20]
            nursery.cancel_scope.cancel()
