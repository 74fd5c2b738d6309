"""The ingest path without HTTP: parsing a batch, committing it to the store, reopening a store after a crash.

    .venv/bin/python bench/bench_store.py                 # about 20 seconds
    .venv/bin/python bench/bench_store.py --series 50000  # more series in the crash measure
    PYTHONPATH=/tmp/old .venv/bin/python bench/bench_store.py --measures parse,insert   # another revision's code
                                       # (git archive REV daemon rules channels web | tar -x -C /tmp/old/alphawatch)

Six measures, in this process, on a temporary SQLite file (WAL, as the daemon opens it):

  parse     a batch of 100 samples as the bench_daemon ingest phase sends them (1,000 series, epoch-second ts):
            ``json.loads`` and ``orjson.loads`` of the body, and ``parse_batch`` (orjson and every check), per sample;
            then ``parse_batch`` of batches whose every label set is new (a burst of new alerts)
  insert    ``Store.insert_samples`` of batches of 100 and of 1,000 samples over series the store already knows,
            per batch (run inline: the thread hop is not counted); best of five passes
  finish    300 notifications with a 36 KB document each (a group of 100 alerts) in the outbox, then marked
            delivered 10 per transaction (``Store.finish_many``, as the outbox does), per notification; inline
  newseries batches of 1 to 128 new series, three times over (24,768 series): µs per new series, and how much
            SQLite's own memory grew (``sqlite3_memory_used``: its page cache and the prepared statements Python
            keeps, 128 at most); then 100 batches of 100 new series, µs per series
  groupread a group notification's document assembled from its 100 members' rows, as a flush does: alone, and
            while another thread runs Python without pause (the event loop in a burst), µs per group
  crash     a store with ``--series`` series, five batches written since the last settle, its files copied as a
            kill -9 leaves them, then opened again: the time ``open_store`` takes to read their last samples back

Every loop is bounded; nothing listens on the network.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson
import trio

from alphawatch.daemon.ingest import parse_batch
from alphawatch.daemon.store import open_store
from alphawatch.rules import Sample

BASE = 1_780_000_000.0


def body(n: int, first: int) -> bytes:
    items = [
        {"metric": "bench_ingest", "labels": {"model": f"m{(first + i) % 1000}", "run": "b"},
         "ts": BASE + (first + i) // 1000, "value": (first + i) * 0.5}
        for i in range(n)
    ]  # fmt: skip
    return json.dumps(items, separators=(",", ":")).encode()


def per_sample_us(parse: object, bodies: list[bytes], n: int) -> float:
    began = time.perf_counter()
    for b in bodies:
        parse(b)  # type: ignore[operator]
    return (time.perf_counter() - began) / (len(bodies) * n) * 1e6


def measure_parse() -> dict[str, float]:
    bodies = [body(100, k * 100) for k in range(300)]
    now = BASE + 3600
    for b in bodies[:20]:  # the label sets are known, as in a steady stream
        parse_batch(b, now)
    fresh = [  # every label set new, as in a burst of new alerts (the ingest's cache holds 16,384)
        json.dumps(
            [{"metric": "m", "labels": {"id": f"n{k}-{i}", "group": f"g{k}"}, "ts": BASE, "value": 1.0}
             for i in range(100)], separators=(",", ":")
        ).encode()
        for k in range(100)
    ]  # fmt: skip
    return {
        "json_us_per_sample": round(per_sample_us(json.loads, bodies, 100), 2),
        "orjson_us_per_sample": round(per_sample_us(orjson.loads, bodies, 100), 2),
        "parse_batch_us_per_sample": round(per_sample_us(lambda b: parse_batch(b, now), bodies, 100), 2),
        "parse_batch_new_label_sets_us_per_sample": round(per_sample_us(lambda b: parse_batch(b, now), fresh, 100), 2),
    }


async def measure_insert(folder: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    async with open_store(folder / "insert.db", inline=True) as store:
        for n in (100, 1000):
            batches = [parse_batch(body(n, k * n), BASE + 3600).samples for k in range(20_000 // n)]
            await store.insert_samples(batches[0])  # every series known from here on
            best = float("inf")
            for attempt in range(5):
                shifted = [[s._replace(ts=s.ts + 1000 * (attempt + 1)) for s in b] for b in batches[1:]]
                began = time.perf_counter()
                for b in shifted:
                    await store.insert_samples(b)
                best = min(best, (time.perf_counter() - began) / len(shifted))
            out[f"batch_{n}_us"] = round(best * 1e6, 1)
    return out


def measure_groupread(folder: Path) -> dict[str, float]:
    """A group notification's document assembled from its 100 members' rows (as a flush does, in the store's
    thread), alone and while another thread runs Python without pause (the event loop in a burst): the GIL
    passes to that thread whenever SQLite runs, and waits for it to give it back."""
    import sqlite3
    import threading

    from alphawatch.daemon.store import _with_alerts, dump_json

    db = sqlite3.connect(folder / "groupread.db", check_same_thread=False)
    db.execute(
        "CREATE TABLE group_member_docs (group_key TEXT, fingerprint TEXT, doc TEXT,"
        " PRIMARY KEY (group_key, fingerprint))"
    )
    keys = [f"route|{{group={g}}}" for g in range(20)]
    for key in keys:
        rows = [(key, f"{i:032x}", dump_json({"status": "firing", "labels": {"id": f"b-{i}", "group": key},
                 "annotations": {"summary": "bench alert"}, "startsAt": "2026-11-27T09:00:00Z", "value": 1.0}))
                for i in range(100)]  # fmt: skip
        db.executemany("INSERT INTO group_member_docs VALUES (?, ?, ?)", rows)
    db.commit()
    alerts = {key: tuple((f"{i:032x}", None) for i in range(100)) for key in keys}

    def per_group_us() -> float:
        began = time.perf_counter()
        for key in keys:
            _with_alerts(db, '{"status":"firing"}', key, alerts[key])
        return (time.perf_counter() - began) / len(keys) * 1e6

    alone = min(per_group_us() for _ in range(5))
    stop, busy = threading.Event(), []

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        busy.append(per_group_us())
    finally:
        stop.set()
        spinner.join()
    db.close()
    return {"alone_us_per_group": round(alone, 1), "busy_loop_us_per_group": round(busy[0], 1)}


def _sqlite_memory_used() -> int:
    """SQLite's own allocations in this process (``sqlite3_memory_used``), or -1 where it cannot be called."""
    import _sqlite3
    import ctypes

    try:
        used = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
    except (OSError, AttributeError):
        return -1
    used.restype = ctypes.c_int64
    return int(used())


async def measure_newseries(folder: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    async with open_store(folder / "newseries.db", inline=True) as store:
        await store.insert_samples([Sample("m", (("id", "first"),), BASE, 1.0)])
        before, began, count = _sqlite_memory_used(), time.perf_counter(), 0
        for rep in range(3):
            for size in range(1, 129):
                await store.insert_samples(
                    [Sample("m", (("id", f"{rep}-{size}-{i}"),), BASE, 1.0) for i in range(size)]
                )
                count += size
        out["varied_us_per_series"] = round((time.perf_counter() - began) / count * 1e6, 2)
        out["sqlite_memory_growth_mb"] = round((_sqlite_memory_used() - before) / 1e6, 2)
        labels = [
            (("alertname", "x"), ("group", f"g{b % 100}"), ("id", f"{b}-{i}")) for b in range(100) for i in range(100)
        ]
        batches = [[Sample("burst", labels[b * 100 + i], BASE + b, 1.0) for i in range(100)] for b in range(100)]
        began = time.perf_counter()
        for batch in batches:
            await store.insert_samples(batch)
        out["batch_100_us_per_series"] = round((time.perf_counter() - began) / 10_000 * 1e6, 2)
    return out


async def measure_finish(folder: Path) -> dict[str, float]:
    from alphawatch.daemon.store import Outgoing

    document = json.dumps({"alerts": [{"labels": {"id": f"a{i}"}, "pad": "x" * 330} for i in range(100)]})
    async with open_store(folder / "finish.db", inline=True) as store:
        await store.enqueue([Outgoing("hook", f"f{k}", f"k{k}", document) for k in range(300)])
        ids = [row["id"] for row in await store.query("SELECT id FROM outbox ORDER BY id")]
        began = time.perf_counter()
        for start in range(0, len(ids), 10):
            await store.finish_many([(i, "delivered", None, BASE) for i in ids[start : start + 10]])
        took = time.perf_counter() - began
    return {"document_bytes": len(document), "finish_us_per_notification": round(took / len(ids) * 1e6, 1)}


async def measure_crash(folder: Path, series: int) -> dict[str, float]:
    async with open_store(folder / "state.db") as store:
        for k in range(5):  # settled history
            await store.insert_samples([Sample("m", (("id", str(i)),), BASE - 1000 + k, 1.0) for i in range(series)])
        await store.settle()
        for k in range(5):  # what the seconds between two settles hold
            await store.insert_samples([Sample("m", (("id", str(i)),), BASE + k, 2.0) for i in range(series)])
        for suffix in ("", "-wal"):  # the files as a kill -9 leaves them
            shutil.copy(folder / f"state.db{suffix}", folder / f"crashed.db{suffix}")
    began = time.perf_counter()
    async with open_store(folder / "crashed.db") as store:
        opened = time.perf_counter() - began
        behind = await store.query("SELECT count(*) AS n FROM series WHERE last_ts = ?", (BASE + 4,))
    if behind[0]["n"] != series:
        raise RuntimeError(f"{behind[0]['n']} of {series} series got their last sample back")
    return {"series": series, "reopen_s": round(opened, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=20_000, help="series in the crash measure")
    ap.add_argument(
        "--measures", default="parse,insert,newseries,groupread,finish,crash", help="which measures, comma-separated"
    )
    a = ap.parse_args()
    wanted = set(a.measures.split(","))
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if "parse" in wanted:
            results["parse"] = measure_parse()
        if "insert" in wanted:
            results["insert"] = trio.run(measure_insert, folder)
        if "newseries" in wanted:
            results["newseries"] = trio.run(measure_newseries, folder)
        if "groupread" in wanted:
            results["groupread"] = measure_groupread(folder)
        if "finish" in wanted:
            results["finish"] = trio.run(measure_finish, folder)
        if "crash" in wanted:
            results["crash"] = trio.run(measure_crash, folder, a.series)
    print("| measure | value |")
    print("|---|---:|")
    if p := results.get("parse"):
        print(f"| json.loads, µs per sample | {p['json_us_per_sample']} |")
        print(f"| orjson.loads, µs per sample | {p['orjson_us_per_sample']} |")
        print(f"| parse_batch (as it parses and checks), µs per sample | {p['parse_batch_us_per_sample']} |")
        print(f"| … every label set new, µs per sample | {p['parse_batch_new_label_sets_us_per_sample']} |")
    if i := results.get("insert"):
        print(f"| insert_samples, batch of 100 known series, µs per batch | {i['batch_100_us']} |")
        print(f"| insert_samples, batch of 1,000 known series, µs per batch | {i['batch_1000_us']} |")
    if n := results.get("newseries"):
        print(f"| insert_samples, batches of 1 to 128 new series, µs per series | {n['varied_us_per_series']} |")
        print(f"| … SQLite's memory growth over those 24,768 series, MB | {n['sqlite_memory_growth_mb']} |")
        print(f"| insert_samples, batches of 100 new series, µs per series | {n['batch_100_us_per_series']} |")
    if g := results.get("groupread"):
        print(f"| group notification of 100 members assembled, µs | {g['alone_us_per_group']} |")
        print(f"| … while another thread runs Python, µs | {g['busy_loop_us_per_group']} |")
    if f := results.get("finish"):
        print(f"| finish_many, notification of {f['document_bytes'] / 1000:.0f} KB marked delivered, µs each |"
              f" {f['finish_us_per_notification']} |")  # fmt: skip
    if c := results.get("crash"):
        print(f"| reopen after a crash with {c['series']:,} series behind, s | {c['reopen_s']} |")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
