"""Model data over HTTP, in-process: formats, all-or-nothing validation, the derived daily IC, the read API."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio

from alphawatch.daemon.calendar import TAIPEI, load_calendars
from alphawatch.daemon.modeldata_store import close_ts
from alphawatch.rules.stats import rank_ic
from tests.daemon_harness import AUTH, TOKEN, in_process

CONFIG = f"""
daemon:
  state: state.db
  listen: 127.0.0.1:0
  tokens: {{ingest: {TOKEN}, admin: {TOKEN}}}
  max_body: 2000000
rules:
  - {{name: decay, kind: ic, match: {{model: a7, horizon: 1d}}, window: 20, min_obs: 15, floor: 0.05, alpha: 0.05}}
"""


def recent_days(n: int, skip: int = 10) -> list[str]:
    """``n`` trading days ending ``skip`` trading days before today (so their 5-day returns are realized)."""
    cal = load_calendars().default
    today = datetime.now(TAIPEI).date()
    last = cal.add_trading_days(today, -skip)
    return [d.isoformat() for d in cal.trading_days(cal.add_trading_days(last, -(n - 1)), last)]


@pytest.fixture
def config(write_config: Callable[..., Path]) -> Path:
    return write_config(CONFIG)


def panel(days: list[str], assets: int, ic: float, seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Predictions and 1-day returns with a rank correlation of about ``ic`` on every date."""
    rng = np.random.default_rng(seed)
    predictions, returns = [], []
    for day in days:
        score = rng.standard_normal(assets)
        ret = ic * score + np.sqrt(1 - ic**2) * rng.standard_normal(assets)
        for a in range(assets):
            predictions.append({"model": "a7", "date": day, "asset": f"{2301 + a}", "score": float(score[a])})
            returns.append({"asset": f"{2301 + a}", "date": day, "horizon": 1, "return": float(ret[a]) * 0.01})
    return predictions, returns


async def stored(daemon: Any, table: str) -> int:
    return int((await daemon.store.query(f"SELECT count(*) AS n FROM {table}"))[0]["n"])


async def test_predictions_then_returns_derive_the_daily_rank_ic(config: Path) -> None:
    days = recent_days(3)
    predictions, returns = panel(days, 30, 0.3)
    async with in_process(config) as (daemon, client):
        response = await client.post("/api/v1/predictions", json=predictions, headers=AUTH)
        assert response.json() == {"accepted": 90, "derived": 0}
        response = await client.post("/api/v1/returns", json={"rows": returns}, headers=AUTH)
        assert response.status_code == 200
        assert response.json() == {"accepted": 90, "derived": 3}
        rows = await daemon.store.query("SELECT date, ic, assets FROM md_ic ORDER BY date")
        for day, row in zip(days, rows, strict=True):
            s = [p["score"] for p in predictions if p["date"] == day]
            r = [x["return"] for x in returns if x["date"] == day]
            assert row["ic"] == pytest.approx(float(rank_ic(s, r).ic[0]), abs=1e-12)
            assert row["assets"] == 30
        samples = await daemon.store.query(
            "SELECT s.ts, s.value FROM samples s JOIN series ON series.id = s.series_id"
            " WHERE series.metric = 'alphawatch_ic' ORDER BY s.ts"
        )
        assert [s["ts"] for s in samples] == [close_ts(d) for d in days]  # stamped at the 13:30 close
        assert datetime.fromtimestamp(samples[0]["ts"], TAIPEI).strftime("%H:%M") == "13:30"


async def test_late_returns_for_more_assets_recompute_the_ic(config: Path) -> None:
    days = recent_days(1)
    predictions, returns = panel(days, 40, 0.5, seed=3)
    async with in_process(config) as (daemon, client):
        await client.post("/api/v1/returns", json=returns[:20], headers=AUTH)  # returns before the scores
        response = await client.post("/api/v1/predictions", json=predictions, headers=AUTH)
        assert response.json()["derived"] == 1
        assert (await daemon.store.query("SELECT assets FROM md_ic"))[0]["assets"] == 20
        response = await client.post("/api/v1/returns", json=returns[20:], headers=AUTH)
        (row,) = await daemon.store.query("SELECT ic, assets FROM md_ic")
        assert row["assets"] == 40
        full = rank_ic([p["score"] for p in predictions], [r["return"] for r in returns])
        assert row["ic"] == pytest.approx(float(full.ic[0]), abs=1e-12)


async def test_too_few_assets_store_a_null_ic_and_no_sample(config: Path) -> None:
    days = recent_days(1)
    predictions, returns = panel(days, 5, 0.5)
    async with in_process(config) as (daemon, client):
        await client.post("/api/v1/predictions", json=predictions, headers=AUTH)
        await client.post("/api/v1/returns", json=returns, headers=AUTH)
        assert await daemon.store.query("SELECT ic, assets FROM md_ic") == [{"ic": None, "assets": 5}]
        metrics = await daemon.store.query("SELECT metric FROM series ORDER BY metric")
        assert [m["metric"] for m in metrics] == ["alphawatch_prediction_count", "alphawatch_returns_received"]


async def test_a_bad_batch_names_every_bad_row_and_stores_nothing(config: Path) -> None:
    day = recent_days(1)[0]
    saturday, holiday = date(2026, 11, 21), date(2026, 10, 9)  # National Day, observed
    good = {"model": "a7", "date": day, "asset": "2330", "score": 1.0}
    rows = [
        good,
        {**good, "asset": "2317", "date": saturday.isoformat()},
        {**good, "asset": "2454", "date": holiday.isoformat()},
        {**good, "asset": "2303", "score": "high"},
        {**good, "asset": "2882", "extra": 1},
        good,
        {**good, "asset": "1301", "date": "2099-01-02"},
        {**good, "asset": "1303", "date": "26/11/2026"},
    ]
    async with in_process(config) as (daemon, client):
        response = await client.post("/api/v1/predictions", json=rows, headers=AUTH)
        assert response.status_code == 400
        body = response.json()
        assert body["error"] == "7 of 8 rows are invalid; nothing was stored"
        by_row = {i["index"]: (i["field"], i["message"]) for i in body["items"]}
        assert by_row[1][0] == "date"
        assert "not a twse trading day (weekend)" in by_row[1][1]
        assert "not a twse trading day (holiday" in by_row[2][1]
        assert by_row[3] == ("score", "required; a number")
        assert by_row[4] == ("extra", "unknown field")
        assert by_row[5] == ("", "duplicate of row 0")
        assert "is in the future" in by_row[6][1] or "outside" in by_row[6][1]
        assert "YYYY-MM-DD" in by_row[7][1]
        assert await stored(daemon, "md_predictions") == 0


async def test_returns_cannot_be_known_before_their_horizon_ends(config: Path) -> None:
    yesterday = recent_days(1, skip=1)[0]
    before = recent_days(1, skip=2)[0]  # its 1-day return ended yesterday: known, whatever the hour today
    async with in_process(config) as (daemon, client):
        rows = [{"asset": "2330", "date": yesterday, "horizon": "5d", "return": 0.01},
                {"asset": "2330", "date": before, "horizon": 1, "return": 0.5},
                {"asset": "2317", "date": before, "horizon": 1, "return": 12.0},
                {"asset": "2454", "date": before, "horizon": 0, "return": 0.01}]  # fmt: skip
        response = await client.post("/api/v1/returns", json=rows, headers=AUTH)
        assert response.status_code == 400
        items = response.json()["items"]
        assert "a 5d return from" in items[0]["message"]
        assert "is only realized on" in items[0]["message"]
        assert [i["index"] for i in items] == [0, 2, 3]
        assert "percent or bp" in items[1]["message"]
        assert items[2]["field"] == "horizon"
        assert await stored(daemon, "md_returns") == 0


def test_a_return_ending_today_is_known_only_after_the_close() -> None:
    from alphawatch.daemon.errors import IngestError
    from alphawatch.daemon.modeldata import parse_model_data

    cal = load_calendars().default
    body = json.dumps([{"asset": "2330", "date": "2026-11-25", "horizon": 1, "return": 0.01}]).encode()
    at = datetime(2026, 11, 26, 7, 3, tzinfo=TAIPEI).timestamp()  # the morning of the day it ends
    with pytest.raises(IngestError) as refused:
        parse_model_data("returns", body, "application/json", cal, at)
    assert refused.value.items[0].message == "a 1d return from 2026-11-25 is only realized on 2026-11-26 at the close"
    after = datetime(2026, 11, 26, 13, 31, tzinfo=TAIPEI).timestamp()
    assert len(parse_model_data("returns", body, "application/json", cal, after).returns) == 1


async def test_csv_and_ndjson_bodies(config: Path) -> None:
    days = recent_days(2)
    csv_body = "model,date,asset,score\n" + "".join(f"a7,{days[0]},{2301 + a},{a / 10}\n" for a in range(12))
    ndjson = "\n".join(json.dumps({"asset": f"{2301 + a}", "date": days[0], "horizon": "1d", "return": a / 1000})
                       for a in range(12))  # fmt: skip
    wide = "model,date,asset,size,sector\n" + "".join(f"a7,{days[1]},{2301 + a},{a},{'semis' if a % 2 else 'fin'}\n"
                                                      for a in range(12))  # fmt: skip
    async with in_process(config) as (daemon, client):
        response = await client.post(
            "/api/v1/predictions", content=csv_body, headers={**AUTH, "Content-Type": "text/csv"}
        )
        assert response.json() == {"accepted": 12, "derived": 0}
        response = await client.post(
            "/api/v1/returns", content=ndjson, headers={**AUTH, "Content-Type": "application/x-ndjson"}
        )
        assert response.json() == {"accepted": 12, "derived": 1}
        (row,) = await daemon.store.query("SELECT ic FROM md_ic")
        assert row["ic"] == pytest.approx(1.0)
        response = await client.post("/api/v1/features", content=wide, headers={**AUTH, "Content-Type": "text/csv"})
        assert response.json() == {"accepted": 24, "derived": 0}
        kinds = await daemon.store.query(
            "SELECT feature, count(num) AS nums, count(cat) AS cats FROM md_features GROUP BY feature"
        )
        assert kinds == [{"feature": "sector", "nums": 0, "cats": 12}, {"feature": "size", "nums": 12, "cats": 0}]
        # the missing-value markers of R and Excel are missing values, not categories of a numeric feature
        gaps = "model,date,asset,size\n" + "".join(f"a7,{days[0]},{2301 + a},{v}\n"
                                                   for a, v in enumerate(["NA", "#N/A", "N/A", "1.5"]))  # fmt: skip
        response = await client.post("/api/v1/features", content=gaps, headers={**AUTH, "Content-Type": "text/csv"})
        assert response.json() == {"accepted": 4, "derived": 0}
        (size,) = await daemon.store.query(
            "SELECT count(num) AS nums, count(cat) AS cats FROM md_features WHERE feature = 'size' AND date = ?",
            [days[0]],
        )
        assert (size["nums"], size["cats"]) == (1, 0)
        bad_csv = "model,date,asset,score\na7,{0},2330,1.0\na7,{0},2317\n".format(days[0])
        response = await client.post(
            "/api/v1/predictions", content=bad_csv, headers={**AUTH, "Content-Type": "text/csv"}
        )
        assert response.status_code == 400
        assert response.json()["items"] == [{"index": 1, "field": "", "message": "line 3 has 3 fields, the header 4"}]


async def test_features_long_rows_refuse_a_feature_both_numeric_and_categorical(config: Path) -> None:
    day = recent_days(1)[0]
    rows = [{"model": "a7", "date": day, "asset": "2330", "feature": "size", "value": 1.5},
            {"model": "a7", "date": day, "asset": "2317", "feature": "size", "value": "big"},
            {"model": "a7", "date": day, "asset": "2454", "feature": "size", "value": None},
            {"model": "a7", "date": day, "asset": "2303", "feature": "mom", "value": float("nan")}]  # fmt: skip
    async with in_process(config) as (_daemon, client):
        response = await client.post("/api/v1/features", content=json.dumps(rows), headers=AUTH)
        assert response.status_code == 400
        items = {i["index"]: i["message"] for i in response.json()["items"]}
        assert set(items) == {1, 3}
        assert "numeric in this batch" in items[1]
        assert "send null for a missing value" in items[3]


async def test_portfolio_returns_with_positions(config: Path) -> None:
    days = recent_days(2)
    rows = [{"model": "a7", "date": days[0], "return": 0.004,
             "positions": [{"asset": "2330", "weight": 0.6}, {"asset": "2317", "weight": 0.4}]},
            {"model": "a7", "date": days[1], "return": -0.002}]  # fmt: skip
    async with in_process(config) as (daemon, client):
        response = await client.post("/api/v1/portfolio", json=rows, headers=AUTH)
        assert response.json() == {"accepted": 2, "derived": 0}
        assert await stored(daemon, "md_positions") == 2
        response = await client.get("/api/v1/models/a7/sharpe?window=2")
        series = response.json()["series"]
        assert [s["return"] for s in series] == [0.004, -0.002]


async def test_token_body_limit_and_unknown_kind(config: Path) -> None:
    async with in_process(config) as (_daemon, client):
        assert (await client.post("/api/v1/predictions", json=[])).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.post("/api/v1/returns", json=[], headers=wrong)).status_code == 401
        big = b"[" + b" " * 2_000_001 + b"]"
        response = await client.post("/api/v1/features", content=big, headers=AUTH)
        assert response.status_code == 413
        assert (await client.post("/api/v1/positions", json=[], headers=AUTH)).status_code == 404
        response = await client.post("/api/v1/predictions", json=[], headers=AUTH)
        assert response.json()["error"] == "the batch is empty"


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        (
            "application/json",
            b'[{"model": "a7", "date": "2026-11-20", "asset": "\\ud800", "score": 1.0}]',
            "body refused: the string at [0].asset holds a lone surrogate",
        ),
        (
            "application/x-ndjson",
            b'{"model": "a7", "date": "2026-11-20", "asset": "2330", "score": 1.0}\n'
            b'{"model": "a7", "date": "2026-11-20", "asset": "\\udfff", "score": 1.0}',
            "line 2 is not JSON: the string at asset holds a lone surrogate",
        ),
        ("application/json", b"[" * 5000, "nested too deeply"),
    ],
)
async def test_text_that_is_not_unicode_and_deep_nesting_are_refused(
    config: Path, content_type: str, body: bytes, message: str
) -> None:
    async with in_process(config) as (daemon, client):
        headers = {**AUTH, "Content-Type": content_type}
        response = await client.post("/api/v1/predictions", content=body, headers=headers)
        assert response.status_code == 400
        assert message in json.dumps(response.json()), response.json()
        assert await stored(daemon, "md_predictions") == 0
        escaped_pair = '[{"model": "a7", "date": "2026-11-20", "asset": "\\ud83d\\ude00", "score": 1.0}]'
        response = await client.post("/api/v1/predictions", content=escaped_pair, headers=AUTH)
        assert response.status_code == 200, response.text  # an escaped pair is a character like any other
        (row,) = await daemon.store.query("SELECT asset FROM md_predictions")
        assert row["asset"] == "\U0001f600"


async def test_the_ic_rule_fires_from_http_data_and_the_ic_api_shows_the_rolling_series(config: Path) -> None:
    days = recent_days(40)
    strong_p, strong_r = panel(days[:20], 60, 0.4, seed=1)
    dead_p, dead_r = panel(days[20:], 60, -0.1, seed=2)
    async with in_process(config) as (_daemon, client):
        for rows in (strong_p, strong_r):
            kind = "predictions" if "score" in rows[0] else "returns"
            assert (await client.post(f"/api/v1/{kind}", json=rows, headers=AUTH)).status_code == 200
        await trio.sleep(0.2)
        assert (await client.get("/api/v1/alerts")).json()["alerts"] == []
        await client.post("/api/v1/predictions", json=dead_p, headers=AUTH)
        await client.post("/api/v1/returns", json=dead_r, headers=AUTH)
        for _ in range(200):
            alerts = (await client.get("/api/v1/alerts")).json()["alerts"]
            if alerts:
                break
            await trio.sleep(0.01)
        (alert,) = alerts
        assert alert["labels"]["model"] == "a7"
        assert alert["labels"]["horizon"] == "1d"
        assert alert["details"]["triggered"] == "floor"
        assert alert["details"]["p_value"] < 0.05
        series = (await client.get("/api/v1/models/a7/ic?horizon=1d&window=10")).json()["series"]
        assert len(series) == 40
        assert series[0]["mean"] is None
        assert series[-1]["mean"] < 0 < series[15]["mean"]
        assert 0 <= series[-1]["hit_rate"] <= 1
        models = (await client.get("/api/v1/models")).json()["models"]
        assert models["a7"]["predictions"]["dates"] == 40
        assert models["a7"]["ic_horizons"] == [1]


async def test_retention_prunes_raw_model_data_but_keeps_the_daily_ic(tmp_path: Path) -> None:
    from alphawatch.daemon.modeldata_store import purge_before
    from alphawatch.daemon.store import open_store

    async with open_store(tmp_path / "state.db") as store:

        def fill(db: sqlite3.Connection) -> None:
            with db:
                for day in ("2025-01-02", "2025-01-03", "2026-11-02"):
                    db.execute("INSERT INTO md_cross_sections VALUES ('predictions', 'a7', ?, 2, 0)", (day,))
                    db.execute("INSERT INTO md_cross_sections VALUES ('features', 'a7', ?, 2, 0)", (day,))
                    for asset in ("2330", "2317"):
                        db.execute("INSERT INTO md_predictions VALUES ('a7', ?, ?, 0.1)", (day, asset))
                        db.execute("INSERT INTO md_features VALUES ('a7', ?, 'mom', ?, 1.0, NULL)", (day, asset))
                        db.execute("INSERT INTO md_returns VALUES (?, 5, ?, 0.01)", (day, asset))
                    db.execute("INSERT INTO md_portfolio VALUES ('a7', ?, 0.001)", (day,))
                    db.execute("INSERT INTO md_ic VALUES ('a7', 5, ?, 0.05, 2, 0)", (day,))
                    db.execute(
                        "INSERT INTO md_drift_scores VALUES ('drift-a7', 'a7', ?, 'mom', 'ks', 0.1, 0.5)", (day,)
                    )

        await store.run(fill)
        while await store.run(lambda db: purge_before(db, "2026-01-01", sections=1)):
            pass

        def count(db: sqlite3.Connection) -> dict[str, int]:
            tables = ("md_predictions", "md_features", "md_returns", "md_portfolio", "md_ic", "md_drift_scores",
                      "md_cross_sections")  # fmt: skip
            return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}

        assert await store.run(count) == {
            "md_predictions": 2, "md_features": 2, "md_returns": 2, "md_portfolio": 1, "md_ic": 3,
            "md_drift_scores": 1, "md_cross_sections": 2,
        }  # fmt: skip


TABLES = {kind: f"md_{kind}" for kind in ("predictions", "returns", "portfolio", "features")}
HUGE = "1" + "0" * 400  # beyond any float: json.loads reads it as an int


@pytest.mark.parametrize(
    ("kind", "content_type", "row", "field", "message"),
    [
        ("predictions", "application/json", '{"model": "a7", "date": "DAY", "asset": "2330", "score": HUGE}', "score",
         "must be finite"),
        ("returns", "application/json", '{"asset": "2330", "date": "DAY", "horizon": 1, "return": HUGE}', "return",
         "must be finite"),
        ("portfolio", "application/json",
         '{"model": "a7", "date": "DAY", "return": 0.01, "positions": [{"asset": "2330", "weight": HUGE}]}',
         "positions[0].weight", "must be finite"),
        ("features", "application/json",
         '{"model": "a7", "date": "DAY", "asset": "2330", "feature": "mom", "value": HUGE}', "value", "must be finite"),
        ("features", "application/json", '{"model": "a7", "date": "DAY", "asset": "2330", "values": {"mom": HUGE}}',
         "values.mom", "must be finite"),
        ("predictions", "application/x-ndjson", '{"model": "a7", "date": "DAY", "asset": "2330", "score": HUGE}',
         "score", "must be finite"),
        ("returns", "application/json", '{"asset": "2330", "date": "DAY", "horizon": "５", "return": 0.01}', "horizon",
         "trading days from 1 to 260"),
        ("predictions", "text/csv", "model,date,asset,score\na7,DAY,2330,1_000", "score", "not a number: '1_000'"),
        ("predictions", "text/csv", "model,date,asset,score\na7,DAY,2330,١٢", "score", "not a number: '١٢'"),
    ],
    ids=["score", "return", "weight", "feature-value", "wide-feature-value", "ndjson-score", "fullwidth-horizon",
         "csv-underscores", "csv-arabic-digits"],
)  # fmt: skip
async def test_numbers_beyond_a_float_or_not_in_ascii_digits_are_refused(
    config: Path, kind: str, content_type: str, row: str, field: str, message: str
) -> None:
    text = row.replace("DAY", recent_days(1)[0]).replace("HUGE", HUGE)
    body = f"[{text}]" if content_type == "application/json" else text
    async with in_process(config) as (daemon, client):
        response = await client.post(f"/api/v1/{kind}", content=body, headers={**AUTH, "Content-Type": content_type})
        assert response.status_code == 400
        (item,) = response.json()["items"]
        assert item["field"] == field
        assert message in item["message"]
        assert await stored(daemon, TABLES[kind]) == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("model,date,asset,score\ra7,DAY,2330,1\r", "line 1: a carriage return (\\r) outside quotes"),
        ("model,date,asset,score\na7,DAY,23\r30,1\n", "line 2: a carriage return (\\r) outside quotes"),
        ('model,date,asset,score\na7,DAY,2330,1\na7,DAY,"2317,1\na7,DAY,2454,1\n', "line 3: a quote is not closed"),
        (
            "model,date,asset,score\na7,DAY," + "x" * 140_000 + ",1\n",
            "line 2: a field is longer than 131072 characters",
        ),
    ],
    ids=["cr-line-endings", "bare-cr", "unclosed-quote", "long-field"],
)
async def test_a_csv_that_cannot_be_split_names_the_line(config: Path, body: str, message: str) -> None:
    async with in_process(config) as (daemon, client):
        response = await client.post(
            "/api/v1/predictions",
            content=body.replace("DAY", recent_days(1)[0]),
            headers={**AUTH, "Content-Type": "text/csv"},
        )
        assert response.status_code == 400
        assert response.json()["error"].startswith(f"the CSV is malformed at {message}")
        assert await stored(daemon, "md_predictions") == 0


async def test_ndjson_lines_end_at_newlines_only(config: Path) -> None:
    row = {"model": "a7", "date": recent_days(1)[0], "asset": "23\u202830", "score": 1.0}  # U+2028 is text in JSON
    headers = {**AUTH, "Content-Type": "application/x-ndjson"}
    async with in_process(config) as (daemon, client):
        body = json.dumps(row, ensure_ascii=False) + "\nnot json\n"
        response = await client.post("/api/v1/predictions", content=body, headers=headers)
        assert response.status_code == 400
        (item,) = response.json()["items"]
        assert item["message"].startswith("line 2 is not JSON")
        assert await stored(daemon, "md_predictions") == 0
        response = await client.post("/api/v1/predictions", content=json.dumps(row) + "\r\n", headers=headers)
        assert response.json() == {"accepted": 1, "derived": 0}


async def test_types_read_as_json_a_compressed_body_refused_and_ndjson_by_any_of_its_names(config: Path) -> None:
    row = {"model": "a7", "date": recent_days(1)[0], "asset": "2330", "score": 1.0}
    async with in_process(config) as (daemon, client):
        brotli = {**AUTH, "Content-Encoding": "br"}
        response = await client.post("/api/v1/predictions", content=json.dumps([row]), headers=brotli)
        assert response.status_code == 415
        assert "Content-Encoding 'br' is not supported: send the body uncompressed or gzip" in response.json()["error"]
        assert await stored(daemon, "md_predictions") == 0
        for n, media in enumerate(["", "text/plain", "application/x-www-form-urlencoded"]):  # curl's default: JSON
            headers = {**AUTH, "Content-Type": media} if media else AUTH
            body = json.dumps([{**row, "asset": f"{2330 + n}"}])
            assert (await client.post("/api/v1/predictions", content=body, headers=headers)).status_code == 200
        seq = {**AUTH, "Content-Type": "application/json-seq"}
        lines = json.dumps({**row, "asset": "2400"}) + "\n" + json.dumps({**row, "asset": "2401"})
        assert (await client.post("/api/v1/predictions", content=lines, headers=seq)).json()["accepted"] == 2
        assert await stored(daemon, "md_predictions") == 5


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("ic?horizon=²", "horizon is 1–260 trading days and window 2–2000"),
        ("ic?horizon=" + "9" * 5000, "horizon is 1–260 trading days and window 2–2000"),
        ("ic?window=١٠", "horizon is 1–260 trading days and window 2–2000"),
        ("sharpe?window=2dd", "window is 2–2000 and periods_per_year 1–10000"),
        ("sharpe?periods_per_year=²", "window is 2–2000 and periods_per_year 1–10000"),
    ],
    ids=lambda value: value[:30],
)
async def test_query_numbers_are_ascii_digits(config: Path, query: str, message: str) -> None:
    async with in_process(config) as (_daemon, client):
        response = await client.get(f"/api/v1/models/a7/{query}")
        assert response.status_code == 400
        assert response.json() == {"error": message}


async def test_a_csv_number_as_a_spreadsheet_shows_it_is_refused_not_taken_for_a_category(config: Path) -> None:
    """``"1,234,567"`` or ``3.5%`` stored as categories would leave the feature unmonitored, without a word."""
    day = recent_days(1)[0]
    body = f'model,date,asset,mktcap,chg\na7,{day},0050,"1,234,567",3.5%\na7,{day},2330,"23,456,789.5",-1.2%\n'
    async with in_process(config) as (daemon, client):
        response = await client.post("/api/v1/features", content=body, headers={**AUTH, "Content-Type": "text/csv"})
        assert response.status_code == 400
        messages = {(item["index"], item["field"]): item["message"] for item in response.json()["items"]}
        assert messages[(0, "values.mktcap")] == (
            "'1,234,567' is a formatted number: export plain numbers (no thousands separators, no %)"
        )
        assert "'-1.2%' is a formatted number" in messages[(1, "values.chg")]
        assert await stored(daemon, "md_features") == 0
        categories = f"model,date,asset,board\na7,{day},0050,TWSE\na7,{day},6488,TPEx 1\n"  # real categories pass
        response = await client.post(
            "/api/v1/features", content=categories, headers={**AUTH, "Content-Type": "text/csv"}
        )
        assert response.json() == {"accepted": 2, "derived": 0}


async def test_an_ic_left_empty_is_said_not_counted(config: Path) -> None:
    """Asset codes spelled two ways (``2330.TW`` in the predictions, ``2330`` in the returns): no IC, and the
    answer says why instead of counting it as computed."""
    day = recent_days(1)[0]
    predictions = [{"model": "a7", "date": day, "asset": f"{2301 + a}.TW", "score": a / 10} for a in range(12)]
    returns = [{"asset": f"{2301 + a}", "date": day, "horizon": 1, "return": a / 1000} for a in range(12)]
    async with in_process(config) as (_daemon, client):
        assert (await client.post("/api/v1/predictions", json=predictions, headers=AUTH)).status_code == 200
        answer = (await client.post("/api/v1/returns", json=returns, headers=AUTH)).json()
        assert answer["derived"] == 0
        assert answer["no_ic"] == [{"model": "a7", "date": day, "horizon": "1d", "matched": 0, "needed": 10}]


def test_a_date_in_another_form_is_refused_with_what_came() -> None:
    from alphawatch.daemon.errors import IngestError
    from alphawatch.daemon.modeldata import parse_model_data

    body = b"model,date,asset,score\na7,2026/11/24,2330,0.5\n"
    with pytest.raises(IngestError) as refused:
        parse_model_data("predictions", body, "text/csv", load_calendars().default, datetime.now(TAIPEI).timestamp())
    assert refused.value.items[0].message.endswith("(Asia/Taipei trading date), not '2026/11/24'")
