"""``alphawatch calendar show | next | settle | check`` through a parser built here."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from alphawatch.daemon.calendar_cli import add_parser


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="alphawatch")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["calendar", *argv])
    code: int = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_show_lists_sessions_and_non_trading_days(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", "--from", "2025-01-22", "--to", "2025-02-03")
    assert code == 0
    lines = out.splitlines()
    assert lines[1].startswith("2025-01-22 Wed  trading          09:00–13:30  pre_open 08:30–09:00")
    assert "2025-01-23 Thu  settlement_only   No trading; clearing and settlement only" in lines
    assert not any("2025-01-25" in line for line in lines)
    assert lines[-1].startswith("2025-02-03 Mon  trading")


def test_show_in_chinese_with_the_night_session(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "show", "--venue", "taifex", "--lang", "zh-TW", "--from", "2025-02-03", "--to", "2025-02-03"
    )
    assert code == 0
    assert "臺灣期貨交易所" in out
    assert "2025-02-03 週一  交易日" in out
    assert "盤後交易時段 01-22 15:00–01-23 05:00" in out


def test_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", "--json", "--all", "--from", "2025-02-07", "--to", "2025-02-10")
    data = json.loads(out)
    assert code == 0
    assert data["valid_until"] == "2026-12-31"
    assert [(d["date"], d["kind"], d["trading"], d["settlement"]) for d in data["days"]] == [
        ("2025-02-07", "trading", True, True),
        ("2025-02-08", "make_up_saturday", False, False),
        ("2025-02-09", "weekend", False, False),
        ("2025-02-10", "trading", True, True),
    ]
    assert data["days"][0]["session"]["open"] == "2025-02-07T09:00:00+08:00"


def test_next(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "next", "--json", "--at", "2025-01-22T05:26:00+00:00")
    data = json.loads(out)
    assert code == 0
    assert data["open"]
    assert data["phase"] == "closing_auction"
    assert data["phases"] == ["closing_auction", "odd_lot"]
    assert data["next_edge"] == {"at": "2025-01-22T13:30:00+08:00", "phase": None}
    assert data["next_open"] == "2025-02-03T09:00:00+08:00"
    assert data["trading_date"] == "2025-01-22"
    code, out, _ = run(capsys, "next", "--venue", "taifex", "--at", "2025-01-23T02:00+08:00")
    assert code == 0
    assert "taifex 2025-01-23T02:00:00+08:00: open, night" in out


def test_next_refuses_a_naive_time(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run(capsys, "next", "--at", "2025-01-22T09:00")
    assert "naive" in capsys.readouterr().err


def test_settle(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "settle", "2025-01-22")[1] == "twse T+2: 2025-01-22 → 2025-01-24\n"
    code, out, _ = run(capsys, "settle", "2024-07-23", "--json")
    assert code == 0
    assert json.loads(out)["settlement_date"] == "2024-07-26"
    code, _, err = run(capsys, "settle", "2025-01-25")
    assert code == 1
    assert "not a twse trading day" in err
    # past the shipped data plain weekdays are assumed (1 January is a holiday every year): the answer says so
    assert run(capsys, "settle", "2026-12-31")[1] == "twse T+2: 2026-12-31 → 2027-01-04  (past the data: assumed)\n"
    assert "open, continuous  (past the data: assumed)" in run(capsys, "next", "--at", "2027-01-04T10:00+08:00")[1]


def test_config_additions_and_their_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(
        "calendar:\n  extra_days:\n    - {date: 2026-08-12, kind: closure, name: Typhoon}\n", encoding="utf-8"
    )
    code, out, _ = run(capsys, "settle", "2026-08-10", "--config", str(config))
    assert code == 0
    assert out.endswith("2026-08-10 → 2026-08-13\n")
    config.write_text("calendar:\n  extra_days:\n    - {date: 2026-08-12, kind: storm}\n", encoding="utf-8")
    code, _, err = run(capsys, "settle", "2026-08-11", "--config", str(config))
    assert code == 1
    assert f"{config}:3:" in err
    assert "unknown kind 'storm'" in err


def test_check(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run(capsys, "check")[:2] == (0, "calendar data OK\n")
    bad = tmp_path / "days-2027.yaml"
    bad.write_text("year: 2027\ndays:\n  - {date: 2027-01-01, kind: festival}\n", encoding="utf-8")
    code, _, err = run(capsys, "check", str(bad))
    assert code == 1
    assert f"{bad}:3:" in err


def test_a_reader_that_stops_early_gets_no_error() -> None:
    """`alphawatch calendar show | head -1`: the rest is not wanted; no 'Broken pipe' message, exit 0."""
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "alphawatch.daemon.cli", "calendar", "show", "--json", "--all", "--from", "2026-01-01",
         "--to", "2026-12-31"],  # (400 KB: more than a pipe holds)
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()  # as head does after one line
    error = process.stderr.read()
    process.stderr.close()
    assert process.wait(30) == 0
    assert first.strip()
    assert error == b""
