"""Bad input to ``alphawatch`` commands: a one-line message and a non-zero exit, never a traceback.

Argument errors stop at parsing (exit 2, before any request); what goes wrong doing the work exits 1 (``stats``,
whose 1 means an alarm, exits 2). The daemon's part is played by a real HTTP server on 127.0.0.1 that is not an
alphawatch daemon, which also records what the commands send.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from alphawatch.daemon.cli import main
from tests.daemon_harness import daemon_process
from tests.http_receiver import Receiver, module_receiver, reset, reused_receiver, shared_receiver  # noqa: F401 - fixtures

TOKEN = "test-token-0123456789abcdef"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``alphawatch ARGV`` in-process: (exit status, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's way out
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _no_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALPHAWATCH_TOKEN", raising=False)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["push", "gross", "nan"], "argument value: not a finite number: 'nan'"),
        (["push", "gross", "inf"], "argument value: not a finite number: 'inf'"),
        (["push", "gross", "1", "--ts", "inf"], "argument --ts: not a time: 'inf'"),
        (["push", "gross", "1", "--ts", "1e400"], "argument --ts: not a time: '1e400'"),
        (["push", "-", "--batch", "0"], "argument --batch: must be at least 1, not 0"),
        (["push", "--url", "notaurl", "gross", "1"], "argument --url: not an http(s) URL: 'notaurl'"),
        (["check", "-c", ""], "argument -c/--config: the configuration path is empty"),
        (
            ["silence", "add", "-m", "model=a7", "--duration", "1h", "--start", "nan", "--by", "a", "--comment", "b"],
            "argument --start: not a time: 'nan'",
        ),
        (["silence", "add", "-m", "model=a7", "--end", "inf", "--by", "a", "--comment", "b"], "argument --end"),
        (["silence", "expire", ""], "argument id: is empty"),
        (["why", "abc", "--limit", "0"], "argument --limit: must be at least 1"),
        (["routes", "test", "--labels", "a=b", "--at", "inf"], "argument --at: out of range: 'inf'"),
        (["routes", "test", "--labels", "a=b", "--at", "1e20"], "argument --at: out of range: '1e20'"),
        (["routes", "test", "--labels", "a=b", "--at", "nan"], "argument --at: out of range: 'nan'"),
        (["stats", "drift", "--reference", "a.csv", "--current", "b.csv", "--bins", "0"], "--bins: must be at least 2"),
        (["stats", "sharpe", "--returns", "r.csv", "--periods-per-year", "0"], "must be above 0"),
    ],
)
def test_bad_arguments_stop_at_parsing(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err


def test_push_refuses_a_nan_line_on_stdin_and_sends_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    lines = '{"metric": "gross", "ts": 1, "value": 1}\n{"metric": "gross", "ts": 1, "value": NaN}\n'
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    code, _, err = run(capsys, "push", "--url", receiver.url, "--token", TOKEN, "-")
    assert code == 1
    assert "stdin line 2: not a JSON sample: NaN is not a number JSON allows" in err
    assert receiver.requests == []


def test_push_says_nothing_was_sent_for_empty_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    code, out, err = run(capsys, "push", "--url", receiver.url, "--token", TOKEN, "-")
    assert (code, out) == (0, "")  # an empty pipeline is not a failure (cron), but it is said
    assert "stdin held no samples: nothing was sent" in err
    assert receiver.requests == []


def test_push_in_several_requests_says_how_many_samples_were_stored_when_one_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    receiver.responses = [(200, 0.0, b'{"accepted": 1}'), (503, 0.0, b'{"error": "the state file cannot be written"}')]
    lines = "".join(f'{{"metric": "gross", "ts": 1, "value": {i}}}\n' for i in range(3))
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    code, _, err = run(capsys, "push", "--url", receiver.url, "--token", TOKEN, "--batch", "1", "-")
    assert code == 1
    assert "the state file cannot be written" in err
    assert "(1 of 3 sample(s) were stored)" in err
    assert len(receiver.requests) == 2  # nothing after the refusal


def test_a_token_an_http_header_cannot_carry_is_refused(capsys: pytest.CaptureFixture[str], receiver: Receiver) -> None:
    code, _, err = run(capsys, "push", "--url", receiver.url, "--token", "tökén", "gross", "1")
    assert code == 1
    assert "the API token has characters an HTTP header cannot carry" in err
    assert receiver.requests == []


def test_status_and_push_say_when_the_url_is_not_an_alphawatch_daemon(
    capsys: pytest.CaptureFixture[str], receiver: Receiver
) -> None:
    code, _, err = run(capsys, "status", "--url", receiver.url)
    assert code == 1
    assert "did not answer like an alphawatch daemon (HTTP 501)" in err
    code, _, err = run(capsys, "push", "--url", receiver.url, "--token", TOKEN, "gross", "1")
    assert code == 1
    assert "did not answer like an alphawatch daemon (HTTP 200)" in err


def test_commands_send_the_token_of_their_role_whatever_else_the_configuration_holds(
    capsys: pytest.CaptureFixture[str],
    write_config: Callable[..., Path],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CLI reads the ``daemon:`` section only, and of its tokens only the one it sends: a broken include, a
    channel secret or the other role's token secret this shell cannot see must not change what it sends."""
    monkeypatch.delenv("NOT_IN_THIS_SHELL", raising=False)
    port = receiver.url.rsplit(":", 1)[1]
    write_config("rules: [{name: broken, kind: nope}]\n", "rules.d/broken.yaml")
    config = write_config(f"""
        daemon:
          state: state.db
          listen: 127.0.0.1:{port}
          tokens: {{ingest: ingest-token-0123456789, admin: admin-token-0123456789}}
        include: [rules.d/*.yaml]
        channels:
          - {{name: hook, kind: webhook, url: "${{env:NOT_IN_THIS_SHELL}}"}}
        """)
    run(
        capsys, "silence", "add", "-c", str(config), "-m", "model=a7", "--duration", "1h", "--by", "a", "--comment", "b"
    )
    run(capsys, "push", "-c", str(config), "gross", "1")
    assert [r.headers["Authorization"] for r in receiver.requests] == [
        "Bearer admin-token-0123456789",  # a silence is an admin write: never the ingest token
        "Bearer ingest-token-0123456789",
    ]
    unseen = config.read_text().replace("admin: admin-token-0123456789", "admin: '${env:NOT_IN_THIS_SHELL}'")
    config.write_text(unseen.replace("ingest: ingest-token-0123456789", "ingest: '${env:NOT_IN_THIS_SHELL}x'"))
    run(capsys, "push", "-c", str(config), "--token", TOKEN, "gross", "1")  # given its token: reads neither
    code, _, err = run(capsys, "push", "-c", str(config), "gross", "1")  # needs the ingest token's secret
    assert (code, err.count("environment variable NOT_IN_THIS_SHELL is not set")) == (1, 1)
    assert [r.headers["Authorization"] for r in receiver.requests][2:] == [f"Bearer {TOKEN}"]


def test_ids_stay_one_segment_of_the_path(capsys: pytest.CaptureFixture[str], receiver: Receiver) -> None:
    code, _, err = run(
        capsys, "ack", "--url", receiver.url, "--token", TOKEN, "a/b#c?d=²-0123456789", "--by", "x", "--comment", "y"
    )  # (a whole ID: 16 characters or more; fewer are the start of one, looked up first)
    assert [r.path for r in receiver.requests] == ["/api/v1/alerts/a%2Fb%23c%3Fd%3D%C2%B2-0123456789/ack"]
    assert code == 1
    assert "did not answer like an alphawatch daemon" in err


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "expected a JSON object, not list"),
        (1, "expected a JSON object, not int"),
        ({"alerts": [1]}, "alerts[0] must be an object, not int"),
        ({"alerts": [{"labels": 5}]}, 'alerts[0]."labels" must be an object'),
    ],
)
def test_template_render_names_the_payload_shape_it_expects(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, payload: object, message: str
) -> None:
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(payload))
    code, out, err = run(capsys, "template", "render", "--payload", str(path))
    assert (code, out) == (2, "")
    assert f"is not a webhook v4 payload: {message}" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (("model,date,asset,score\n" + "a7,2026-11-02,café,1\n" * 200).encode("latin-1"), "not UTF-8 text (byte 40)"),
        (b"model,date,asset,score\na7,2026-11-02," + b"x" * 200_000 + b",1\n", "field larger than field limit"),
    ],
)
def test_push_data_refuses_a_file_it_cannot_split_before_sending(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, receiver: Receiver, content: bytes, message: str
) -> None:
    path = tmp_path / "scores.csv"
    path.write_bytes(content)
    code, _, err = run(
        capsys, "push-data", "--url", receiver.url, "--token", TOKEN, "predictions", str(path), "--chunk-bytes", "1024"
    )
    assert code == 1
    assert f"push-data: {path}: " in err
    assert message in err
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "9999-12-31"], "9999-12-31 is outside the twse calendar"),
        (["--from", "2026-05-01", "--to", "2026-01-01"], "--to 2026-01-01 is before --from 2026-05-01"),
    ],
)
def test_calendar_show_refuses_a_range_it_cannot_list(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, "calendar", "show", *argv)
    assert (code, out) == (1, "")
    assert message in err


def test_stats_name_the_file_they_cannot_use(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    code, _, err = run(capsys, "stats", "ic", "--scores", str(empty), "--returns", str(empty))
    assert (code, err) == (2, f"alphawatch stats ic: {empty}: no header line\n")
    code, _, err = run(capsys, "stats", "sharpe", "--returns", str(tmp_path / "missing.csv"))
    assert (code, err) == (
        2,
        f"alphawatch stats sharpe: {tmp_path / 'missing.csv'}: cannot read: No such file or directory\n",
    )


def test_against_a_running_daemon(
    capsys: pytest.CaptureFixture[str], write_config: Callable[..., Path], receiver: Receiver
) -> None:
    config = write_config(f"""
        daemon:
          state: state.db
          listen: 127.0.0.1:0
          tokens: {{ingest: {TOKEN}, admin: {TOKEN}}}
        channels:
          - {{name: hook, kind: webhook, url: "{receiver.url}/alerts"}}
        route: {{channels: [hook]}}
        rules:
          - {{name: exposure, kind: threshold, metric: gross, op: above, value: 1.5}}
        """)
    with daemon_process(config) as daemon:
        code, _, err = run(capsys, "status", "--url", f"{daemon.url}/metrics")
        assert code == 1
        assert f"{daemon.url}/metrics/api/v1/status did not answer like an alphawatch daemon (HTTP 404)" in err
        where = ["--url", daemon.url, "--token", TOKEN]
        code, _, err = run(capsys, "silence", "expire", *where, "x?y#z")
        assert (code, err) == (1, "silence expire: refused (404): no such silence\n")
        code, _, err = run(capsys, "why", *where, "abc?limit=²-0123456")  # a whole ID (16 or more characters)
        assert (code, err) == (1, "why: refused (404): no such alert, and nothing recorded for it\n")
        code, _, err = run(capsys, "why", *where, "abc?limit=²")  # the start of one: looked up
        assert (code, err) == (1, "why: no alert's ID starts with 'abc?limit=²'\n")
