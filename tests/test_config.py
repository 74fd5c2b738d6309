"""Every class of configuration error names file:line:col and the key; secrets never appear in messages."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from alphawatch.daemon.config import full_schema, load_config
from alphawatch.daemon.errors import ConfigError

GOOD = """\
daemon:
  state: var/state.db
  listen: 127.0.0.1:9464
channels:
  - {name: hook, kind: webhook, url: "http://127.0.0.1:9099/x"}
route:
  channels: [hook]
  routes:
    - {matchers: [severity=critical], channels: [hook]}
rules:
  - name: exposure
    kind: threshold
    metric: gross
    op: above
    value: 1.5
    for: 5m
"""


RULE = "rules:\n  - {name: r, kind: threshold, metric: m, op: above, value: 1"


def problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env or {})
    return [str(p) for p in caught.value.problems]


def test_a_good_configuration_loads_into_frozen_settings(write_config: Callable[..., Path]) -> None:
    path = write_config(GOOD)
    config = load_config(path, {})
    assert config.daemon.state == path.parent / "var/state.db"
    assert config.daemon.port == 9464
    (rule,) = config.rules
    assert rule.pending_for == 300
    assert rule.origin == f"{path}:11"
    assert load_config(path, {}) == config  # equal content, equal config: the reload diff relies on it
    assert hash(rule) == hash(load_config(path, {}).rules[0])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: [\n", "monitor.yaml:2:1: (top): YAML syntax"),
        ("daemon:\n  listen: 127.0.0.1:1\n  listen: 127.0.0.1:2\n", "monitor.yaml:3:3: daemon.listen: duplicate key"),
        ("daemon:\n  colour: blue\n", "monitor.yaml:2:11: daemon.colour: unknown key"),
        ("daemon:\n  retention: forever\n", "daemon.retention: 'forever' is not a duration"),
        (f"{RULE}, for: 15}}\n", "rules[0].for: 15 is not a duration: give it a unit (e.g. 15m, 15s, 15h)"),
        (
            "rules:\n  - {name: r, kind: absence, metric: m, deadline: 17:00}\n",
            'rules[0].deadline: a time is text: write it in quotes, "17:00" (unquoted, YAML reads it as 1020)',
        ),
        (
            "rules:\n  - {name: r, kind: ic, match: {model: a}, baseline: {lagged: 60, start: 2026-01-05}}\n",
            "rules[0].baseline: baseline is either {start: DATE, end: DATE} or {lagged: N}, not both",
        ),
        # a baseline of one shape gets that shape's own problem, not the choice between the two
        ("rules:\n  - {name: r, kind: ic, baseline: {lagged: 20, gap: 2}}\n", "rules[0].baseline.gap: unknown key"),
        ("rules:\n  - {name: r, kind: ic, baseline: {lagged: 2}}\n", "rules[0].baseline.lagged: 2 is less than the"),
        ("rules:\n  - {name: r, kind: sharpe, baseline: {start: 2025-01-02}}\n", "rules[0].baseline: 'end' is a"),
        (
            "rules:\n  - {name: r, kind: drift, reference: {gap: 5}}\n",
            "rules[0].reference: reference is either {start: DATE, end: DATE} or {lagged: N} (with an optional gap)",
        ),
        ("daemon:\n  language: fr\n", "daemon.language: 'fr' is not one of"),
        ("rules:\n  - {name: r, kind: nope}\n", "rules[0].kind: 'nope' is not one of"),
        ("rules:\n  - {kind: absence, metric: m, absent_for: 5m}\n", "rules[0]: 'name' is a required property"),
        (
            "rules:\n  - {name: r, kind: absence, metric: m}\n",
            "rules[0]: an absence rule takes exactly one of absent_for and deadline",
        ),
        ("rules:\n  - {name: r, kind: absence, metric: m, absent_for: 5m, op: above}\n", "rules[0].op: unknown key"),
        ("rules:\n  - {name: r, kind: threshold, metric: m, op: abov, value: 1}\n", "rules[0].op: 'abov' is not one"),
        ("rules:\n  - {name: r, kind: threshold, metric: m, op: above, value: no}\n", "rules[0].value: False is not"),
        (
            "rules:\n  - {name: r, kind: threshold, metric: m, op: above, value: 1, aggregate: mean}\n",
            "monitor.yaml:2:75: rules[0].aggregate: aggregate 'mean' needs a window",
        ),
        (
            "rules:\n  - {name: r, kind: threshold, metric: m, op: above, value: 1, match: ['m=~(']}\n",
            "rules[0].match[0]: bad regex",
        ),
        (
            "rules:\n  - {name: 'a b', kind: absence, metric: m, absent_for: 5m}\n",
            "rules[0].name: 'a b' does not match",
        ),
        (
            "rules:\n  - {name: r, kind: absence, metric: m, absent_for: 5m}\n"
            "  - {name: r, kind: absence, metric: m, absent_for: 5m}\n",
            "monitor.yaml:3:12: rules[1].name: duplicate rule name 'r' (first at ",
        ),
        (
            "route:\n  channels: [nowhere]\n",
            "monitor.yaml:2:14: route.channels[0]: no channel named 'nowhere'",
        ),
        ("channels:\n  - {name: h, kind: webhook}\n", "channels[0]: 'url' is a required property"),
        ("channels:\n  - {name: h, kind: webhook, url: ftp://x}\n", "channels[0].url: 'ftp://x' does not match"),
        ("channels:\n  - {name: h, kind: pager, url: http://x}\n", "channels[0].kind: 'pager' is not one of"),
        ("include: [missing.yaml]\n", "monitor.yaml:1:11: include[0]: no such file: missing.yaml"),
        (
            "daemon:\n  delivery: {probe_interval: 0s}\n",
            "monitor.yaml:2:30: daemon.delivery.probe_interval: probe_interval cannot be zero",
        ),
        ("- just\n- a list\n", "the configuration must be a mapping"),
        # values Python's own checks let through, each of which once crashed a reload instead of refusing it
        (f'{RULE}, for: "5m\\n"}}\n', "monitor.yaml:2:69: rules[0].for: '5m\\n' is not a duration"),
        (f"{RULE}, for: 9999999999d}}\n", "rules[0].for: '9999999999d' is longer than a century"),
        (f'{RULE}, for: "５m"}}\n', "rules[0].for: '５m' is not a duration"),
        ('route:\n  group_wait: "0s\\n"\n', "monitor.yaml:2:15: route.group_wait: '0s\\n' is not a duration"),
        (f"{RULE}, match: ['m=~\"a{{4294967296}}\"']}}\n", "rules[0].match[0]: bad regex in 'm=~\"a{4294967296}\"'"),
        (f"{RULE}, match: ['m=~\"{'(' * 500}{')' * 500}\"']}}\n", "nested too deeply"),
        (
            f"{RULE}, match: ['m=~\"(a+)+\"']}}\n",
            "rules[0].match[0]: bad regex in 'm=~\"(a+)+\"': more than 10^300 ways to backtrack",
        ),
        (f"{RULE}, description: 2026-02-30}}\n", "rules[0].description: YAML: cannot read this timestamp value"),
        (f"{RULE}, description: !!binary 'not base64!'}}\n", "rules[0].description: YAML: cannot read this binary"),
        (f"{RULE}, description: !!int abc}}\n", "rules[0].description: YAML: cannot read this int value"),
        ("daemon:\n  <<: [1]\n", "monitor.yaml:2:3: daemon: YAML: expected a mapping for merging"),
        ("rules: &a [*a]\n", "monitor.yaml:1:8: rules[0]: an alias refers to a value that contains it"),
        ("rules:\n  - {name: r, kind: threshold, metric: m, op: above, value: .nan}\n", "numbers must be finite"),
        (f"rules:\n  - {{name: r, kind: threshold, metric: m, op: above, value: {'9' * 400}}}\n", "too large a number"),
        ("include: ['.']\n", "monitor.yaml:1:11: include[0]: cannot read "),
        (
            "rules:\n  - {name: r, kind: threshold, metric: '9 bad', op: above, value: 1}\n",
            "rules[0].metric: metric '9 bad'",
        ),
        (f"{RULE}, aggregate: mean, window: 0s}}\n", "aggregate 'mean' needs a window longer than zero"),
        ("channels:\n  - {name: h, kind: webhook, url: 'http://x', rate_limit: 0/s}\n", "'0/s' is not a rate"),
        ("channels:\n  - {name: h, kind: webhook, url: 'http://x', timeout: 0s}\n", "timeout cannot be zero"),
        ("daemon:\n  delivery: {initial_backoff: 0s}\n", "daemon.delivery.initial_backoff: initial_backoff cannot"),
        ("daemon:\n  delivery: {max_age: 0s}\n", "daemon.delivery.max_age: max_age cannot be zero"),
        ("daemon:\n  tokens: {admin: tökentökentökentöken}\n", "daemon.tokens.admin: a token is printable ASCII"),
        ("daemon:\n  state: /\n", "daemon.state: '/' is not a possible file name"),
    ],
)
def test_each_error_names_where_and_what(write_config: Callable[..., Path], text: str, expected: str) -> None:
    found = problems(write_config(text))
    assert any(expected in p for p in found), found


def test_every_problem_is_reported_at_once(write_config: Callable[..., Path]) -> None:
    found = problems(write_config("daemon:\n  colour: blue\n  language: fr\nrules:\n  - {name: r, kind: nope}\n"))
    assert len(found) == 3


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    assert problems(tmp_path / "absent.yaml") == [
        f"{tmp_path / 'absent.yaml'}: (top): cannot read: No such file or directory"
    ]


def test_secrets_come_from_the_environment_and_files(write_config: Callable[..., Path], tmp_path: Path) -> None:
    (tmp_path / "admin.token").write_text("admin-token-from-a-file-123\n")
    path = write_config(
        "daemon:\n  tokens:\n    ingest: ${env:INGEST}\n    admin: ${file:admin.token}\n"
        "channels:\n  - {name: h, kind: webhook, url: 'http://127.0.0.1:1/${env:HOOK}'}\n"
    )
    config = load_config(path, {"INGEST": "ingest-token-0123456789", "HOOK": "s3cr3t-path"})
    assert config.daemon.ingest_token == "ingest-token-0123456789"
    assert config.daemon.admin_token == "admin-token-from-a-file-123"
    assert "ingest-token-0123456789" in config.secrets
    assert "ingest-token-0123456789" not in repr(config)


def test_missing_secrets_are_named_not_guessed(write_config: Callable[..., Path]) -> None:
    path = write_config("daemon:\n  tokens:\n    ingest: ${env:NOPE}\n    admin: ${file:/nonexistent/token}\n")
    found = problems(path)
    assert any("monitor.yaml:3:13: daemon.tokens.ingest: environment variable NOPE is not set" in p for p in found)
    assert any("daemon.tokens.admin: cannot read secret file /nonexistent/token" in p for p in found)


def test_a_bad_secret_value_is_not_echoed(write_config: Callable[..., Path]) -> None:
    path = write_config("daemon:\n  tokens:\n    ingest: ${env:SHORT}\n")
    found = problems(path, {"SHORT": "tiny-secret"})
    assert found == [f"{path}:3:13: daemon.tokens.ingest: the value (a secret, not shown) fails minLength: 16"]
    assert "tiny-secret" not in "".join(found)


def test_the_digest_does_not_depend_on_secret_values(write_config: Callable[..., Path]) -> None:
    # /health serves it to anyone: with the YAML in hand, a hash of the secrets would confirm guesses of them
    path = write_config("channels:\n  - {name: h, kind: webhook, url: 'http://127.0.0.1:1/${env:HOOK}'}\n")
    one, two = (load_config(path, {"HOOK": hook}).digest for hook in ("s3cretSMTPpass", "hunter2hunter2"))
    assert one == two
    path.write_text(path.read_text().replace("127.0.0.1:1", "127.0.0.1:2"))
    assert load_config(path, {"HOOK": "hunter2hunter2"}).digest != two  # what is not secret still counts


def test_a_secret_is_masked_however_a_message_escapes_it(write_config: Callable[..., Path]) -> None:
    path = write_config("channels:\n  - {name: h, kind: webhook, url: 'http://x', rate_limit: '${env:R}'}\n")
    (found,) = problems(path, {"R": "Sup3r\\Secret"})  # repr() doubles the backslash
    assert "Sup3r" not in found
    assert "<secret>" in found


def test_log_lines_mask_secrets_escaped_by_json_and_the_longest_first() -> None:
    import logging

    from alphawatch.daemon.logs import JsonFormatter

    formatter = JsonFormatter(["Tok3nPrefix", "Tok3nPrefix-and-MORE-SECRET-TAIL", 'quo"te\\back'])
    for message in ("Tok3nPrefix-and-MORE-SECRET-TAIL", 'quo"te\\back'):
        record = logging.makeLogRecord({"msg": "token %s", "args": (message,), "levelname": "INFO"})
        assert json.loads(formatter.format(record))["msg"] == "token <secret>"
    endless = logging.makeLogRecord({"msg": "retry", "levelname": "INFO", "retry_in": math.inf, "v": [math.nan]})
    entry = json.loads(formatter.format(endless), parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert (entry["retry_in"], entry["v"]) == ("inf", ["nan"])


def test_the_daemon_section_alone_loads_for_the_cli_and_names_its_own_problems(
    write_config: Callable[..., Path],
) -> None:
    from alphawatch.daemon.config import load_daemon_settings

    path = write_config("daemon:\n  listen: 127.0.0.1:9999\n  tokens:\n    ingest: ${env:TOK}\nrules:\n  - {name: r}\n")
    settings = load_daemon_settings(path, {"TOK": "ingest-token-0123456789"})
    assert (settings.port, settings.ingest_token) == (9999, "ingest-token-0123456789")
    for text, problem in (
        ("daemon:\n  colour: red\n", f"{path}:2:11: daemon.colour: unknown key"),
        ("daemon:\n  listen: 127.0.0.1:99999\n", f"{path}:2:11: daemon.listen: port 99999 is not a TCP port (0-65535)"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_daemon_settings(path, {})
        assert [str(p) for p in caught.value.problems] == [problem]


def test_includes_are_loaded_and_located(write_config: Callable[..., Path]) -> None:
    write_config("rules:\n  - {name: a, kind: absence, metric: m, absent_for: 5m}\n", "rules.d/a.yaml")
    write_config("rules:\n  - {name: b, kind: absence, metric: m, absent_for: 5x}\n", "rules.d/b.yaml")
    path = write_config("include: ['rules.d/*.yaml']\n")
    found = problems(path)
    assert len(found) == 1
    assert "rules.d/b.yaml:2:53: rules[0].absent_for: '5x' is not a duration" in found[0]
    write_config("rules:\n  - {name: b, kind: absence, metric: m, absent_for: 5m}\n", "rules.d/b.yaml")
    assert [r.name for r in load_config(path, {}).rules] == ["a", "b"]


def test_an_included_file_holds_only_rules(write_config: Callable[..., Path]) -> None:
    write_config("daemon: {}\n", "more.yaml")
    assert any("more.yaml:1:1: (top): an included file holds only a `rules:` list" in p
               for p in problems(write_config("include: [more.yaml]\n")))  # fmt: skip


def test_the_schema_lists_every_kind() -> None:
    schema = full_schema()
    assert set(schema["$defs"]["rule"]["properties"]["kind"]["enum"]) >= {"threshold", "absence"}
    assert "webhook" in schema["properties"]["channels"]["items"]["properties"]["kind"]["enum"]
    assert "base" not in schema["description"]  # editors show it: it must not say keys are missing


def test_calendar_files_and_windows_are_checked_with_the_config(write_config: Callable[..., Path]) -> None:
    write_config(
        "year: 2027\nvalid_until: 2027-12-31\ndays:\n  - {date: 2027-01-01, kind: festival, name: x, name_zh: x}\n",
        "days-2027.yaml",
    )
    path = write_config(
        "calendar: {files: [days-2027.yaml]}\n"
        "rules:\n  - {name: r, kind: absence, metric: m, absent_for: 5m, muted_during: [lunch]}\n"
    )
    found = problems(path)
    assert any("days-2027.yaml:4:" in p and "festival" in p for p in found), found
    path = write_config("rules:\n  - {name: r, kind: absence, metric: m, absent_for: 5m, muted_during: [lunch]}\n")
    assert problems(path) == [f"{path}:2:72: rules[0].muted_during[0]: no window named 'lunch'"]


def test_an_unchanged_configuration_is_not_built_again(write_config: Callable[..., Path]) -> None:
    write_config("rules:\n  - {name: a, kind: absence, metric: m, absent_for: 5m}\n", "rules.d/a.yaml")
    text = GOOD.replace("listen: 127.0.0.1:9464", "listen: 127.0.0.1:9464\n  tokens: {ingest: '${env:TOKEN}'}")
    path = write_config(text + "include: ['rules.d/*.yaml']\n")
    first = load_config(path, {"TOKEN": "a-token-of-sixteen-chars"})
    assert load_config(path, {"TOKEN": "a-token-of-sixteen-chars"}) is first
    rotated = load_config(path, {"TOKEN": "another-token-of-16-chars"})
    assert rotated is not first
    assert rotated.daemon.ingest_token == "another-token-of-16-chars"
    write_config("rules:\n  - {name: b, kind: absence, metric: m, absent_for: 5m}\n", "rules.d/b.yaml")
    assert [r.name for r in load_config(path, {"TOKEN": "another-token-of-16-chars"}).rules] == ["exposure", "a", "b"]


def test_an_unforeseen_error_while_loading_is_a_config_error_not_a_crash(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safety net behind every check above: a reload must never take the daemon down."""
    from alphawatch.daemon import config

    def broken(*_: object) -> None:
        raise RuntimeError("a case nobody checked")

    monkeypatch.setattr(config, "_load_config", broken)
    path = write_config("rules: []\n")
    (problem,) = problems(path)
    assert problem == f"{path}: (top): cannot load it: RuntimeError, see the log (please report this)"


def test_an_annotation_placeholder_that_would_stay_as_text_is_refused(write_config: Callable[..., Path]) -> None:
    path = write_config(f'{RULE}, annotations: {{summary: "at [{{{{ label.model }}}}] {{{{ value | round }}}}"}}}}\n')
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    text = str(refused.value)
    assert "rules[0].annotations.summary: {{ label.model }} is not a placeholder" in text
    assert "rules[0].annotations.summary: {{ value | round }} is not a placeholder" in text


def test_a_rule_kinds_refusal_keeps_its_quotes(write_config: Callable[..., Path]) -> None:
    path = write_config('rules:\n  - {name: late, kind: absence, metric: p, deadline: "08:45", venue: TWSE}\n')
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert "rules[0].venue: not a venue: 'TWSE'" in str(refused.value)  # (the closing quote was cut off)


def test_check_warns_of_what_is_allowed_but_surely_not_meant(
    write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from alphawatch.daemon.cli import main

    path = write_config("""\
        daemon: {state: state.db, retention: 1h}
        rules:
          - name: ic-floor
            kind: threshold
            metric: ic_daily
            aggregate: mean
            window: 5d
            op: below
            value: 0.01
            annotations: {summary: "mean IC {{ value }} ({{ details.aggregate }})"}
          - name: heartbeat
            kind: absence
            metric: predictions_published
            absent_for: 30m
            annotations: {summary: "silent since {{ details.last_seen }} ({{ details.lag }})"}
        """)
    warnings = [str(w) for w in load_config(path).warnings]
    assert warnings == [
        f"{path}:1:38: daemon.retention: 1h is shorter than the 5d of samples rule 'ic-floor' reads back at a start:"
        " after a restart it would judge on less",
        f"{path}:10:28: rules[0].annotations.summary: a threshold rule reports no details: {{{{ details.aggregate }}}}"
        " renders empty",
        f"{path}:15:28: rules[1].annotations.summary: an absence rule reports absent_for_s, deadline, last_seen,"
        " trading_day: {{ details.lag }} renders empty",
    ]  # (the heartbeat's 30m fits in the hour: no warning of its retention)
    assert main(["check", "-c", str(path)]) == 0  # warnings, not problems
    err = capsys.readouterr().err
    assert err.count("warning: ") == 3


def test_an_absence_rule_with_an_unknown_venue_is_refused_at_its_venue(write_config: Callable[..., Path]) -> None:
    path = write_config('rules:\n  - {name: r3, kind: absence, metric: hb, deadline: "08:45", venue: nyse}\n')
    assert problems(path) == [f"{path}:2:69: rules[0].venue: unknown venue 'nyse' (known: twse, tpex, taifex)"]
    path = write_config('rules:\n  - {name: r3, kind: absence, metric: hb, deadline: "08:45", venue: tpex}\n')
    assert load_config(path, {}).rules[0].rule.uses_calendar()


@pytest.mark.parametrize(
    ("setting", "where"),
    [
        ("match: ['model=~(']", "8:13: rules[0].match[0]: bad regex in 'model=~('"),
        ("metric: 9lives", "4:13: rules[0].metric: metric '9lives': letters"),
        ("aggregate: mean", "8:16: rules[0].aggregate: aggregate 'mean' needs a window"),
    ],
)
def test_a_setting_the_rule_kind_refuses_is_named_at_its_line(
    write_config: Callable[..., Path], setting: str, where: str
) -> None:
    text = "rules:\n  - name: r\n    kind: threshold\n    metric: m\n    op: above\n    value: 1\n    severity: info\n"
    if setting.startswith("metric:"):
        text = text.replace("metric: m", setting)
    else:
        text += f"    {setting}\n"
    (problem,) = problems(write_config(text))
    assert problem.split("monitor.yaml:", 1)[1].startswith(where)


def test_an_unknown_window_is_named_at_the_setting_naming_it(write_config: Callable[..., Path]) -> None:
    path = write_config("rules:\n  - name: r\n    kind: absence\n    metric: m\n    absent_for: 5m\n    during: nope\n")
    assert [p.split("monitor.yaml:", 1)[1] for p in problems(path)] == ["6:13: rules[0].during: no window named 'nope'"]


def test_a_baseline_of_neither_shape_is_told_both_shapes(write_config: Callable[..., Path]) -> None:
    path = write_config("rules:\n  - {name: r, kind: ic, baseline: {}}\n")
    assert problems(path) == [f"{path}:2:35: rules[0].baseline: baseline is either {{start: DATE, end: DATE}} or "
                              "{lagged: N}"]  # fmt: skip


def test_a_fixed_baseline_makes_no_retention_warning_but_a_lagged_one_still_does(
    write_config: Callable[..., Path],
) -> None:
    fixed = "{start: 2025-01-02, end: 2025-06-30}"
    path = write_config(f"""\
        rules:
          - {{name: ic1, kind: ic, baseline: {fixed}}}
          - {{name: sharpe1, kind: sharpe, baseline: {fixed}}}
          - {{name: cp1, kind: change_point, metric: ic_daily, baseline: {fixed}}}
        """)
    assert load_config(path, {}).warnings == ()
    path = write_config("daemon: {retention: 30d}\nrules:\n  - {name: ic2, kind: ic, baseline: {lagged: 120}}\n")
    (warning,) = load_config(path, {}).warnings
    assert str(warning).startswith(f"{path}:1:21: daemon.retention: 30d is shorter than the ")
    assert "of samples rule 'ic2' reads back at a start: after a restart it would judge on less" in str(warning)


def test_numbers_in_scientific_notation_without_a_dot_are_numbers(write_config: Callable[..., Path]) -> None:
    path = write_config("""\
        rules:
          - {name: r, kind: threshold, metric: m, op: above, value: 1e-3, hysteresis: 1E-4, labels: {n: "1e3"}}
          - {name: s, kind: sharpe, alpha: 1e-2}
        """)
    first, second = load_config(path, {}).rules
    assert (first.rule.settings["value"], first.rule.settings["hysteresis"]) == (1e-3, 1e-4)
    assert second.rule.settings["alpha"] == 1e-2
    assert dict(first.labels)["n"] == "1e3"


def test_a_label_value_yaml_reads_as_a_number_asks_for_quotes(write_config: Callable[..., Path]) -> None:
    path = write_config(f"{RULE}, labels: {{size: 1e3, lot: 017}}}}\n")
    assert problems(path) == [
        f"{path}:2:79: rules[0].labels.size: 1e3 is a number here: write it in quotes",
        f"{path}:2:89: rules[0].labels.lot: 017 is a number here: write it in quotes",
    ]


def test_a_relative_ca_file_is_found_beside_the_configuration_whatever_the_working_directory(
    write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mail = """
    channels:
      - {name: mail, kind: email, host: 127.0.0.1, from: a@example.tw, to: [b@example.tw], ca_file: tls/ca.pem}
    """
    path = write_config(mail)
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "ca.pem").write_text("(a certificate)")
    monkeypatch.chdir("/")  # as systemd starts it
    (channel,) = load_config(path, {}).channels
    assert channel.build().settings["ca_file"] == str(tmp_path / "tls" / "ca.pem")
    missing = write_config(mail.replace("tls/ca.pem", "tls/other.pem"), "other.yaml")
    assert problems(missing) == [
        f"{missing}:3:97: channels[0].ca_file: no such file: {tmp_path / 'tls' / 'other.pem'}"
    ]  # (refused at once, not every delivery after)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:99999/hook", "channels[0].url: the URL's port 99999 is not between 1 and 65535"),
        ("https://hooks.example.com:0/x", "channels[0].url: the URL's port 0 is not between 1 and 65535"),
        ("http:///hook", "channels[0].url: the URL names no host"),
    ],
)
def test_a_channel_url_that_can_reach_nothing_is_refused_at_load(
    write_config: Callable[..., Path], url: str, message: str
) -> None:
    path = write_config(f"""
    channels:
      - {{name: hook, kind: webhook, url: "{url}"}}
    """)
    (problem,) = problems(path)
    assert problem.endswith(message)
    assert url not in problem  # (a URL may hold a secret)


def test_a_channel_setting_found_wrong_by_two_checks_is_reported_once(write_config: Callable[..., Path]) -> None:
    path = write_config("""
    channels:
      - {name: hook, kind: webhook, url: "http://127.0.0.1:9/x", timeout: 5x}
    """)
    assert problems(path) == [
        f"{path}:3:71: channels[0].timeout: '5x' is not a duration (write e.g. 30s, 5m, 4h, 2d)"
    ]  # (the file's schema and the webhook kind's both refuse it)
