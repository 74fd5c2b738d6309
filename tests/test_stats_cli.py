from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from alphawatch.rules.stats.cli import add_parser


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="alphawatch")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, capsys.readouterr().out


def _write_long(path: Path, m: np.ndarray) -> None:
    lines = ["date,asset,value"]
    for t, row in enumerate(m):
        lines += [f"2025-01-{t + 1:02d},A{a},{v}" for a, v in enumerate(row) if np.isfinite(v)]
    path.write_text("\n".join(lines) + "\n")


def test_ic_long_format_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    s = rng.standard_normal((28, 40))
    r = 0.3 * s + rng.standard_normal((28, 40))
    _write_long(tmp_path / "s.csv", s)
    _write_long(tmp_path / "r.csv", r)
    code, out = _run(
        [
            "stats",
            "ic",
            "--scores",
            str(tmp_path / "s.csv"),
            "--returns",
            str(tmp_path / "r.csv"),
            "--window",
            "20",
            "--baseline-end",
            "2025-01-08",
            "--json",
            "--daily",
        ],
        capsys,
    )
    data = json.loads(out)
    assert code == 0
    assert data["window"]["status"] == "ok"  # 20 dates after the baseline
    assert 0 <= data["window"]["p_value"] <= 1
    assert len(data["daily"]) == 28
    assert data["decline_vs_baseline"]["status"] == "insufficient_data"


def test_ic_judges_a_short_window_on_its_values_as_the_rule_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(2)
    s = rng.standard_normal((28, 40))
    _write_long(tmp_path / "s.csv", s)
    _write_long(tmp_path / "r.csv", 0.3 * s + rng.standard_normal((28, 40)))
    files = ["--scores", str(tmp_path / "s.csv"), "--returns", str(tmp_path / "r.csv"), "--json"]
    code, out = _run(["stats", "ic", *files, "--window", "10"], capsys)
    assert (code, json.loads(out)["window"]["status"]) == (0, "ok")  # was "10 finite IC values, need 20"
    code, out = _run(["stats", "ic", *files, "--window", "10", "--min-obs", "15"], capsys)
    assert json.loads(out)["window"]["status"] == "ok"  # capped at the window, as the rule caps it


def test_sharpe_and_change_point_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    r = np.concatenate([rng.normal(0.001, 0.01, 200), rng.normal(-0.03, 0.01, 30)])
    f = tmp_path / "r.csv"
    f.write_text("date,ret\n" + "\n".join(f"{i:04d},{v}" for i, v in enumerate(r)) + "\n")
    code, out = _run(["stats", "sharpe", "--returns", str(f), "--window", "100"], capsys)
    assert code == 0
    assert "sharpe" in out
    code, out = _run(["stats", "change-point", "--series", str(f), "--direction", "down", "--json"], capsys)
    assert code == 1
    assert json.loads(out)["alarms"][0]["index"] >= 200
    dip = np.concatenate([r[:100], rng.normal(-0.03, 0.01, 20), r[100:]])  # a dip inside the baseline
    f.write_text("date,ret\n" + "\n".join(f"{i:04d},{v}" for i, v in enumerate(dip)) + "\n")
    code, out = _run(["stats", "change-point", "--series", str(f), "--direction", "down", "--baseline", "130",
                      "--json"], capsys)  # fmt: skip
    alarms = [a["index"] for a in json.loads(out)["alarms"]]
    assert alarms
    assert min(alarms) >= 130  # the baseline it is fitted on is not watched (the daemon never raises those)


def test_drift_wide_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(2)
    for name, shift in [("ref", 0.0), ("cur", 1.0)]:
        m = rng.standard_normal((300, 3))
        m[:, 0] += shift
        (tmp_path / f"{name}.csv").write_text(
            "date,a,b,c\n" + "\n".join(f"d{i}," + ",".join(str(v) for v in row) for i, row in enumerate(m)) + "\n"
        )
    code, out = _run(
        [
            "stats",
            "drift",
            "--reference",
            str(tmp_path / "ref.csv"),
            "--current",
            str(tmp_path / "cur.csv"),
            "--key-feature",
            "a",
            "--json",
        ],
        capsys,
    )
    data = json.loads(out)
    assert code == 1
    assert data["decision"]["drifted"]
    assert [f["drifted"] for f in data["features"]] == [True, False, False]


def test_drift_reads_push_data_features_files_wide_or_long(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Features files as `push-data features` takes them: one row per date and asset (wide: a column per feature;
    long: `feature` and `value` columns). Each row is an observation; the asset is not a feature."""
    rng = np.random.default_rng(3)
    for name, shift in [("ref", 0.0), ("cur", 1.0)]:
        rows = [(f"2025-01-{1 + d:02d}", f"A{a:04d}", rng.normal(shift), rng.normal(), rng.normal())
                for d in range(10) for a in range(40)]  # fmt: skip
        (tmp_path / f"{name}-wide.csv").write_text("model,date,asset,f1,f2,f3\n" + "".join(
            f"a7,{d},{a},{x},{y},{z}\n" for d, a, x, y, z in rows))  # fmt: skip
        (tmp_path / f"{name}-long.csv").write_text("model,date,asset,feature,value\n" + "".join(
            f"a7,{d},{a},f{k},{v}\n" for d, a, *values in rows for k, v in enumerate(values, 1)))  # fmt: skip
    for layout in ("wide", "long"):
        code, out = _run(["stats", "drift", "--reference", str(tmp_path / f"ref-{layout}.csv"), "--current",
                          str(tmp_path / f"cur-{layout}.csv"), "--key-feature", "f1", "--json"], capsys)  # fmt: skip
        data = json.loads(out)
        assert code == 1, layout
        assert [(f["feature"], f["drifted"]) for f in data["features"]] == [("f1", True), ("f2", False), ("f3", False)]


def test_the_daemons_csv_layouts_read_as_their_plain_forms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """push-data files as they are (a model column, a horizon column, columns in their own order) give the same
    answers as the plain layouts, not row numbers taken for dates."""
    rng = np.random.default_rng(2)
    days = [f"2025-{1 + t // 28:02d}-{1 + t % 28:02d}" for t in range(120)]
    returns = rng.normal(0.0005, 0.01, len(days))
    (tmp_path / "plain.csv").write_text(
        "date,return\n" + "".join(f"{d},{r}\n" for d, r in zip(days, returns, strict=True))
    )
    (tmp_path / "daemon.csv").write_text(
        "model,date,return\n" + "".join(f"a7,{d},{r}\n" for d, r in zip(days, returns, strict=True))
    )
    sharpe = ["stats", "sharpe", "--window", "60", "--baseline-end", days[59], "--json", "--returns"]
    _, plain = _run([*sharpe, str(tmp_path / "plain.csv")], capsys)
    _, daemon = _run([*sharpe, str(tmp_path / "daemon.csv")], capsys)
    assert json.loads(daemon) == json.loads(plain)

    s = rng.standard_normal((25, 40))
    r = 0.3 * s + rng.standard_normal((25, 40))
    (tmp_path / "scores.csv").write_text("model,date,asset,score\n" + "".join(
        f"a7,{days[t]},{1101 + a},{s[t, a]}\n" for t in range(25) for a in range(40)))  # fmt: skip
    (tmp_path / "returns.csv").write_text("asset,date,horizon,return\n" + "".join(
        f"{1101 + a},{days[t]},1d,{r[t, a]}\n" for t in range(25) for a in range(40)))  # fmt: skip
    code, out = _run(["stats", "ic", "--scores", str(tmp_path / "scores.csv"), "--returns",
                      str(tmp_path / "returns.csv"), "--json", "--daily"], capsys)  # fmt: skip
    assert code == 0
    daily = json.loads(out)["daily"]
    assert len(daily) == 25
    assert np.mean([d["ic"] for d in daily]) > 0.2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("date,return\n2025-01-02,0.01\n2025-01-03,1%\n", "line 3, column return: not a number: '1%'"),
        (
            "model,date,return\na7,2025-01-02,0.01\nb9,2025-01-02,0.02\n",
            "the model column holds several values (a7, b9)",
        ),
    ],
)
def test_a_cell_or_a_file_it_cannot_use_is_an_error_not_a_missing_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    (tmp_path / "r.csv").write_text(text)
    parser = argparse.ArgumentParser(prog="alphawatch")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["stats", "sharpe", "--returns", str(tmp_path / "r.csv")])
    assert args.func(args) == 2
    assert message in capsys.readouterr().err
