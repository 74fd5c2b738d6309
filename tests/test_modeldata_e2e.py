"""The real daemon as a subprocess, fed by the Python client and by ``alphawatch push-data``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from alphawatch.daemon import modeldata_cli
from alphawatch.daemon.cli import CommandError
from alphawatch.daemon.client import AlphawatchClient, RefusedError
from alphawatch.daemon.modeldata_cli import _chunks
from tests.daemon_harness import TOKEN, daemon_process
from tests.test_modeldata import panel, recent_days

CONFIG = f"""
daemon:
  state: state.db
  listen: 127.0.0.1:0
  tokens: {{ingest: {TOKEN}, admin: {TOKEN}}}
rules:
  - {{name: decay, kind: ic, match: {{model: a7}}, window: 20, min_obs: 15, floor: 0.05}}
  - {{name: sr, kind: sharpe, window: 20, min_obs: 15, benchmark: 0.5}}
"""


def push_data(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    modeldata_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["push-data", *argv])
    code: int = args.func(args)
    return code


def test_client_and_cli_feed_the_real_daemon(
    write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(CONFIG)
    days = recent_days(25)
    predictions, returns = panel(days, 40, -0.2, seed=4)
    with daemon_process(path) as daemon:
        with AlphawatchClient(daemon.url, TOKEN, batch_size=400) as client:
            assert client.push_predictions(predictions) == {"accepted": 1000, "derived": 0}
            with pytest.raises(RefusedError) as refused:
                client.push_returns([{**returns[0], "return": "x"}])
            assert refused.value.items[0]["field"] == "return"
            portfolio = [{"model": "a7", "date": d, "return": -0.004 + 0.001 * (i % 3)} for i, d in enumerate(days)]
            assert client.push_portfolio(portfolio) == {"accepted": 25, "derived": 0}
        csv_file = tmp_path / "returns.csv"
        csv_file.write_text(
            "asset,date,horizon,return\n" + "".join(f"{r['asset']},{r['date']},1d,{r['return']}\n" for r in returns)
        )
        url = ["--url", daemon.url, "--token", TOKEN]
        assert push_data("returns", str(csv_file), *url, "--chunk-bytes", "5000") == 0
        out = capsys.readouterr().out  # a date split across two requests is computed twice, the second time complete
        assert out.startswith("accepted 1000 returns row(s); ")
        bad = tmp_path / "bad.ndjson"
        bad.write_text('{"model": "a7", "date": "2026-11-21", "asset": "2330", "score": 1}\n')
        assert push_data("predictions", str(bad), *url) == 1
        assert "not a twse trading day" in capsys.readouterr().err
        # asset codes written another way in the returns: the daily IC cannot be computed, and push-data says so
        other = tmp_path / "other.csv"
        day = days[0]
        other.write_text("model,date,asset,score\n" + "".join(f"b9,{day},{r['asset']}.TW,0.1\n" for r in returns[:40]))
        assert push_data("predictions", str(other), *url) == 0
        warned = capsys.readouterr().err
        assert f"warning: no IC for b9 on {day} (1d): 0 asset(s) have both a prediction and a return" in warned
        alerts = []
        for _ in range(100):
            alerts = httpx.get(daemon.url + "/api/v1/alerts", timeout=5).json()["alerts"]
            if len(alerts) == 2:
                break
            import time

            time.sleep(0.05)
        assert sorted(a["rule"] for a in alerts) == ["decay", "sr"]
        assert daemon.stop() == 0


def test_csv_chunks_repeat_the_header_and_split_between_rows() -> None:
    body = b"a,b\n" + b"".join(b'%d,"x\ny"\n' % i for i in range(100))
    pieces = list(_chunks(body, "csv", 200))
    assert len(pieces) > 3
    assert all(p.startswith(b"a,b\n") for p, _ in pieces)
    assert sum(p.count(b'"x\ny"') for p, _ in pieces) == 100
    assert sum(rows for _, rows in pieces) == 100
    lines = b"".join(b'{"i": %d}\n' % i for i in range(100))
    assert b"".join(p for p, _ in _chunks(lines, "ndjson", 100)) == lines


def test_csv_chunks_keep_a_date_whole() -> None:
    """A refused request must not leave half of a date's cross-section stored: cuts fall where the date changes."""
    body = b"model,date,asset,score\n" + b"".join(
        b"a7,2026-11-%02d,%d,0.5\n" % (day, asset) for day in (23, 24, 25) for asset in range(1000, 1050)
    )
    pieces = list(_chunks(body, "csv", 700))  # a date is 1.2 KB: over the size, under twice it
    assert [rows for _, rows in pieces] == [50, 50, 50]
    for piece, _ in pieces:
        assert len({line.split(b",")[1] for line in piece.splitlines()[1:]}) == 1
    one_day = b"model,date,asset,score\n" + b"".join(b"a7,2026-11-24,%d,0.5\n" % a for a in range(1000, 1200))
    pieces = list(_chunks(one_day, "csv", 300))  # one date far bigger than the size: split after all (413 else)
    assert len(pieces) > 5
    assert sum(rows for _, rows in pieces) == 200
    with pytest.raises(CommandError, match="CSV line 3"):  # as strict as the daemon reading the file whole
        list(_chunks(b'model,date,asset,score\na7,2026-11-24,1101,0.5\nm7,2026-11-24,"20"03x,0.5\n' * 30, "csv", 100))
