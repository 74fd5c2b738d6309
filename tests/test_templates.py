"""Message templates: both languages, resolved details, escaping, the sandbox, overrides and the preview CLI."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest

from alphawatch.channels._base import Notification
from alphawatch.channels._templates import (
    KINDS,
    SEVERITY_NAMES,
    add_template_parser,
    check_template,
    format_duration,
    format_value,
    render,
    sample_payload,
)
from alphawatch.channels.slack import build_message


@pytest.mark.parametrize(
    ("severity", "name"),
    [("info", "資訊"), ("warning", "警告"), ("error", "錯誤"), ("critical", "嚴重"), ("emergency", "緊急")],
)
def test_zh_tw_subjects_name_the_severity(severity: str, name: str) -> None:
    subject = render("subject", sample_payload(severity=severity), "zh-TW")
    assert subject == f"[{name}] 觸發：ICDecay (alpha7)"
    assert SEVERITY_NAMES["zh-TW"][severity] == name


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", ["RESOLVED", "Recovery value: 0.0153", "Fired for: 2h15m", "Resolved at: 2026-11-26 11:17:03 +08:00"]),
        ("zh-TW", ["已恢復", "恢復值：0.0153", "持續：2 小時 15 分", "恢復於：2026-11-26 11:17:03 +08:00"]),
    ],
)
def test_resolved_messages_carry_the_recovery_value_and_the_duration(language: str, expected: list[str]) -> None:
    text = render("text", sample_payload(status="resolved"), language)
    for piece in expected:
        assert piece in text
    sms = render("sms", sample_payload(status="resolved"), language)
    assert "0.0153" in sms
    assert ("2h15m" if language == "en" else "2 小時 15 分") in sms


def test_every_kind_renders_in_both_languages() -> None:
    for kind in KINDS:
        for language in ("en", "zh-TW", "zh_tw", "fr"):
            assert render(kind, sample_payload(), language).strip()


def test_the_group_severity_is_the_highest_of_its_alerts() -> None:
    payload = sample_payload(severity="warning")
    payload["alerts"].append(dict(payload["alerts"][0], severity="emergency", rule="ic-alpha8"))
    payload["truncatedAlerts"] = 3
    assert render("subject", payload) == "[EMERGENCY] FIRING: ICDecay (alpha7) ×5"
    assert "… and 3 more alerts not shown" in render("text", payload)


def test_html_is_escaped_and_text_is_not() -> None:
    payload = sample_payload()
    payload["commonAnnotations"] = {"summary": "<script>alert(1)</script> & co"}
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in render("html", payload)
    assert "<script>" not in render("html", payload)
    assert "<script>alert(1)</script> & co" in render("text", payload)


def test_an_sms_without_a_summary_names_the_alert_and_the_model() -> None:
    payload = sample_payload()
    payload["commonAnnotations"] = {}
    payload["alerts"][0]["annotations"] = {}
    assert render("sms", payload) == "[CRITICAL] FIRING: ICDecay alpha7 (Value 0.0042)"


def test_subjects_and_sms_are_one_line() -> None:
    overrides = {"subject": "{{ alertname }}\n\n  {{ model }}\r\n", "sms": "a\n\nb"}
    assert render("subject", sample_payload(), "en", overrides) == "ICDecay alpha7"
    assert render("sms", sample_payload(), "en", overrides) == "a b"


def test_overrides_see_the_documented_variables_and_filters() -> None:
    source = (
        "{{ severity_name }}|{{ t.value }}|{{ alerts[0].value | value }}|{{ 5400 | duration }}|"
        "{{ 'error' | severity }}|{{ alerts[0].starts_at | time }}|{{ common_labels.model }}|{{ missing.deeply }}"
    )
    assert render("text", sample_payload(), "zh-TW", {"text": source}) == (
        "嚴重|數值|0.0042|1 小時 30 分|錯誤|2026-11-26 09:02:03 +08:00|alpha7|\n"
    )


def test_alerts_expose_the_rule_details() -> None:
    payload = sample_payload()
    payload["alerts"][0]["details"] = {"p_value": 0.0031, "window": "20d"}
    source = "{% for a in alerts %}p={{ a.details.p_value | value }} over {{ a.details.window }}{% endfor %}"
    assert render("sms", payload, "en", {"sms": source}) == "p=0.0031 over 20d"


def test_a_failing_override_falls_back_to_the_built_in_template(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        text = render("subject", sample_payload(), "en", {"subject": "{{ range(10 ** 9) | list }}"})
    assert text == "[CRITICAL] FIRING: ICDecay (alpha7)"
    assert "custom subject template failed" in caplog.text


def test_a_template_looping_over_a_label_value_falls_back_instead_of_holding_the_daemon(
    caplog: pytest.LogCaptureFixture,
) -> None:
    payload = sample_payload()
    payload["alerts"][0]["labels"]["n"] = "3000"  # a label value comes from whoever may ingest
    n = "range(a.labels.get('n', '0') | int)"
    looping = (
        f"{{% for a in alerts %}}{{% for i in {n} %}}{{% for j in {n} %}}{{% endfor %}}{{% endfor %}}{{% endfor %}}"
    )
    looping += "{{ summary }}"
    assert check_template(looping) is None  # with the sample alert's labels it is harmless
    with caplog.at_level(logging.WARNING):
        text = render("subject", payload, "en", {"subject": looping})
    assert text == "[CRITICAL] FIRING: ICDecay (alpha7)"
    assert "loops more than 10000 times" in caplog.text
    caplog.clear()
    from alphawatch.channels.email import Email

    mail = Email("desk-mail", {"host": "127.0.0.1", "from": "a@example.tw", "to": ["b@example.tw"],
                               "templates": {"subject": looping}})  # fmt: skip
    with caplog.at_level(logging.WARNING):
        mail.message(Notification(1, "desk-mail", "k", payload, 1.7e9, 0))
    assert "channel 'desk-mail': custom subject template failed" in caplog.text  # which channel's template


def test_the_sandbox_hides_python_internals() -> None:
    assert render("text", sample_payload(), "en", {"text": "[{{ ''.__class__.__mro__ }}]"}) == "[]\n"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{% if %}", "line 1: Expected an expression"),
        ("{{ summary | nosuchfilter }}", "No filter named 'nosuchfilter'"),
        ("ok\n{% for a in alerts %}", "line 2: Unexpected end of template"),
        ("{{ range(10 ** 9) | list }}", "loops more than 10000 times"),
        (
            "{% for i in range(100) %}{% for j in range(100) %}{% for k in range(100) %}{% endfor %}{% endfor %}"
            "{% endfor %}",
            "loops more than 10000 times",
        ),  # nested: the budget is for the whole rendering
        ("{{ 'x' * 1000000 }}", "'*' would make more than 100000 items"),
        ("{{ [1] * 1000000 }}", "'*' would make more than 100000 items"),
        ("{{ 10 ** (alerts | length * 1000000) }}", "exponents above 64"),
        # the other ways a few characters of template make hundreds of megabytes, or seconds of work
        ("{{ 'x' | center(200000000) }}", "center would make more than 100000 characters"),
        ("{{ summary | indent(200000000) }}", "indent would make more than 100000 characters"),
        ("{{ '%*s' | format(200000000, 'x') }}", "a width would make more than 100000 characters"),
        ("{{ '%200000000s' % 'x' }}", "a width would make more than 100000 characters"),
        ("{{ '{0:>{1}}'.format(1, 200000000) }}", "a width would make more than 100000 characters"),
        ("{{ 'x'.ljust(200000000) }}", "ljust() would make more than 100000 characters"),
        ("{{ ('x' * 1000) | replace('x', 'x' * 1000) }}", "replace would make more than 100000 characters"),
        ("{{ lipsum(20000) }}", "'lipsum' is undefined"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
    ],
)
def test_check_template_finds_mistakes(source: str, message: str) -> None:
    problem = check_template(source)
    assert problem is not None
    assert message in problem


def test_check_template_accepts_good_templates() -> None:
    assert (
        check_template("{{ severity_name }} {{ summary }} {% for a in alerts %}{{ a.value_text }}{% endfor %}") is None
    )
    assert check_template("<b>{{ summary }}</b>", kind="html") is None
    widths = "{{ 'x' | center(20) }}{{ summary | indent(2) }}{{ '%5.2f' | format(1.5) }}{{ '{:>8,}'.format(1234) }}"
    assert check_template(widths + "{{ 'x'.ljust(9) }}{{ summary | replace('a', 'aa') }}{{ '%-6s' % 'ab' }}") is None


def test_check_template_never_quotes_the_source() -> None:
    problem = check_template("api_key=hunter2 {% if %}")
    assert problem is not None
    assert "hunter2" not in problem


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0042, "0.0042"),
        (0.01534, "0.01534"),
        (1.23456, "1.235"),
        (12345.678, "12,346"),
        (-0.5, "-0.5"),
        (0, "0"),
        (0.0, "0"),
        (1500000, "1,500,000"),
        (1.2e-7, "1.200e-07"),
        (None, "—"),
        ("n/a", "n/a"),
    ],
)
def test_format_value(value: object, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize(
    ("seconds", "en", "zh"),
    [
        (0, "0s", "0 秒"),
        (45, "45s", "45 秒"),
        (8100, "2h15m", "2 小時 15 分"),
        (90061, "1d1h", "1 天 1 小時"),
        (None, "—", "—"),
    ],
)
def test_format_duration(seconds: float | None, en: str, zh: str) -> None:
    assert format_duration(seconds, "en") == en
    assert format_duration(seconds, "zh-TW") == zh


def cli() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alphawatch")
    add_template_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    args = cli().parse_args(["template", "render", *argv])
    assert args.func(args) == 0
    return capsys.readouterr().out


def run_err(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    args = cli().parse_args(["template", "render", *argv])
    assert args.func(args) == 0
    return capsys.readouterr().err


def test_cli_renders_a_zh_tw_resolved_sms(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, "--kind", "sms", "--lang", "zh-TW", "--status", "resolved", "--severity", "warning")
    assert out.startswith("[警告] 已恢復：alpha7 的 IC 低於 0.01 (恢復值 0.0153, 持續 2 小時 15 分)\n")
    assert "UCS-2, 1 segment)" in out


def test_cli_renders_an_email_with_html(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, "--kind", "email", "--html")
    assert out.startswith("Subject: [CRITICAL] FIRING: ICDecay (alpha7)\n\n")
    assert "<!DOCTYPE html>" in out


def test_cli_renders_slack_block_kit(capsys: pytest.CaptureFixture[str]) -> None:
    message = json.loads(run(capsys, "--kind", "slack", "--severity", "info"))
    assert message["text"] == "[INFO] FIRING: ICDecay (alpha7)"


def test_cli_renders_a_payload_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    payload = sample_payload()
    payload["groupLabels"] = {"alertname": "Turnover"}
    (tmp_path / "payload.json").write_text(json.dumps(payload))
    assert "Turnover" in run(capsys, "--payload", str(tmp_path / "payload.json"))


def test_cli_reports_an_unreadable_payload(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = cli().parse_args(["template", "render", "--payload", str(tmp_path / "missing.json")])
    assert args.func(args) == 2
    assert "cannot read" in capsys.readouterr().err


def test_cli_renders_as_a_configured_channel_sends(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(
        "channels:\n"
        "  - {name: ops-sms, kind: sms, provider: http, url: 'http://127.0.0.1:9/sms', to: ['+886900000000'],\n"
        "     language: zh-TW, max_segments: 1}\n"
        "  - {name: desk, kind: slack, url: 'https://hooks.slack.com/services/T/B/x',\n"
        "     templates: {subject: '{{ alertname }} on {{ model }}'}}\n",
        encoding="utf-8",
    )
    payload = sample_payload("resolved", language="zh-TW")
    payload["commonAnnotations"] = {"summary": "資訊係數持續走低" * 20}
    (tmp_path / "p.json").write_text(json.dumps(payload), encoding="utf-8")
    out = run(capsys, "-c", str(config), "--channel", "ops-sms", "--payload", str(tmp_path / "p.json"))
    assert "… (恢復值 0.0153, 持續 2 小時 15 分)\n" in out  # cut as the channel cuts (max_segments 1)
    assert "UCS-2, 1 segment" in out
    slack = json.loads(run(capsys, "-c", str(config), "--channel", "desk"))
    assert slack["text"] == "ICDecay on alpha7"  # the channel's own template
    args = cli().parse_args(["template", "render", "-c", str(config), "--channel", "nope"])
    assert args.func(args) == 2
    assert "no channel named 'nope'" in capsys.readouterr().err


RULE_CONFIG = """\
daemon: {state: var/state.db, external_url: 'https://aw.desk.example/'}
channels:
  - {name: ops-hook, kind: webhook, url: 'http://127.0.0.1:9/hook'}
  - {name: desk-sms, kind: sms, provider: http, url: 'http://127.0.0.1:9/sms', to: ['+886900000000'],
     language: zh-TW}
route:
  channels: [ops-hook]
  group_by: [alertname]
  routes:
    - matchers: [severity=critical]
      channels: [desk-sms]
      group_by: [model, alertname]
rules:
  - name: gross-exposure
    kind: threshold
    metric: gross_exposure
    match: {model: alpha7, book: main}
    op: above
    value: 1.5
    severity: critical
    labels: {team: quant}
    annotations:
      summary: "gross exposure of {{ labels.model }} is {{ value }} (limit 1.5), n={{ details.n }}"
  - name: heartbeat
    kind: absence
    metric: predictions_published
    by: [model]
    absent_for: 26h
    severity: error
    annotations:
      summary: "no predictions from {{ labels.model }} since {{ details.last_seen }}"
  - name: feed
    kind: absence
    metric: prices
    match: {venue: TWSE}
    absent_for: 10m
    annotations:
      summary: "prices of {{ labels.venue }} stopped"
"""


def rule_config(tmp_path: Path, text: str = RULE_CONFIG) -> Path:
    config = tmp_path / "monitor.yaml"
    config.write_text(text, encoding="utf-8")
    return config


def render_rule(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> tuple[str, str]:
    args = cli().parse_args(["template", "render", *argv])
    assert args.func(args) == code
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_cli_renders_a_configured_rules_alert_as_the_daemon_would_send_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["-c", str(rule_config(tmp_path)), "--rule", "gross-exposure", "--value", "1.72", "--detail", "n=10"]
    text, err = render_rule(capsys, *args)
    # the series the rule's match pins, the rule's own labels, the value and the detail filled in (10, not 10.0)
    assert "gross exposure of alpha7 is 1.72 (limit 1.5), n=10" in text
    assert "[CRITICAL] FIRING: gross-exposure (alpha7)" in text
    assert "https://aw.desk.example/#rule=gross-exposure" in text  # external_url, its trailing slash dropped
    assert 'sent to desk-sms (route {}/{severity="critical"})' in err  # severity=critical takes the child route
    sms, _ = render_rule(capsys, *args, "--channel", "desk-sms")
    assert sms.startswith("[嚴重] 觸發：gross exposure of alpha7 is 1.72")  # the channel's language and kind
    hook, err = render_rule(capsys, *args, "--channel", "ops-hook")
    document = json.loads(hook)  # a webhook channel: the document it posts
    assert (document["receiver"], document["alerts"][0]["value"]) == ("ops-hook", 1.72)
    assert "not to ops-hook" in err
    _, err = render_rule(capsys, *args, "--label", "model=alpha9", "--label", "book=main")
    assert "match does not take a sample with these labels" in err  # model=alpha9 is not alpha7
    _, err = render_rule(capsys, *args, "--label", "model=alpha7", "--label", "book=main")
    assert "match does not take" not in err


def test_an_absence_rules_preview_has_the_labels_its_alerts_have(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = str(rule_config(tmp_path))
    hook = ["-c", config, "--channel", "ops-hook", "--value", "93600"]
    # by: [model]: the alert keeps the model of the sample, nothing else of it
    out, _ = render_rule(capsys, *hook, "--rule", "heartbeat", "--label", "model=alpha9", "--label", "strategy=mom",
                         "--detail", "last_seen=1764205200")  # fmt: skip
    alert = json.loads(out)["alerts"][0]
    assert alert["labels"] == {"alertname": "heartbeat", "model": "alpha9", "severity": "error"}
    assert alert["annotations"]["summary"] == "no predictions from alpha9 since 2025-11-27 09:00:00 +08:00"
    _, err = render_rule(capsys, *hook, "--rule", "heartbeat")
    assert "nothing for {{ labels.model }}, {{ details.last_seen }}" in err
    # no by: one switch for the whole selector, without the series' labels
    out, _ = render_rule(capsys, *hook, "--rule", "feed")
    alert = json.loads(out)["alerts"][0]
    assert alert["labels"] == {"alertname": "feed", "severity": "warning"}
    assert alert["annotations"]["summary"] == "prices of  stopped"


def test_a_rules_preview_is_grouped_and_labelled_by_the_routing_tree(tmp_path: Path) -> None:
    from alphawatch.daemon.config import load_config
    from alphawatch.daemon.preview import default_labels, preview

    config = load_config(rule_config(tmp_path))
    rule = config.rules[0]
    assert default_labels(rule) == (("book", "main"), ("model", "alpha7"))
    shown = preview(config, rule, default_labels(rule), 1.72, {}, now=1_764_000_000.0)
    assert shown.channels == ("desk-sms",)
    assert shown.payload["groupLabels"] == {"alertname": "gross-exposure", "model": "alpha7"}
    assert shown.payload["groupKey"] == '{}/{severity="critical"}:{alertname="gross-exposure", model="alpha7"}'
    assert shown.payload["commonLabels"] == {
        "alertname": "gross-exposure", "book": "main", "model": "alpha7", "severity": "critical", "team": "quant",
    }  # fmt: skip
    assert shown.unfilled == ("details.n",)
    resolved = preview(config, rule, default_labels(rule), 1.2, {"n": 3}, "resolved", now=1_764_000_000.0)
    alert = resolved.payload["alerts"][0]
    assert (alert["status"], alert["value"], alert["durationSeconds"]) == ("resolved", 1.2, 8100.0)
    assert resolved.unfilled == ()


def test_a_rules_preview_speaks_the_daemons_language_and_reads_the_default_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = rule_config(tmp_path, RULE_CONFIG.replace("daemon: {", "daemon: {language: zh-TW, "))
    monkeypatch.setattr("alphawatch.daemon.cli.DEFAULT_CONFIG", str(config))  # $ALPHAWATCH_CONFIG, as read
    out, _ = render_rule(capsys, "--rule", "gross-exposure", "--value", "1.72", "--kind", "sms")
    assert out.startswith("[嚴重] 觸發：")


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--rule", "nope"], 2, "no rule named 'nope'"),
        (["--rule", "gross-exposure", "--severity", "info"], 2, "leave out --severity"),
        (["--value", "3"], 2, "--value needs --rule NAME"),
        (["--rule", "gross-exposure", "--channel", "desk-sms", "--kind", "email"], 2, "leave out --kind"),
        (["--rule", "gross-exposure", "--label", "model=a", "--label", "model=b"], 2, "--label model given more"),
    ],
)
def test_cli_refuses_a_rule_preview_it_cannot_make(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], code: int, message: str
) -> None:
    _, err = render_rule(capsys, "-c", str(rule_config(tmp_path)), *argv, code=code)
    assert message in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--label", "model"], "not K=V: 'model'"),
        (["--label", "bad-name=x"], "not a label name: 'bad-name'"),
        (["--value", "nan"], "not a finite number: 'nan'"),
        (["--value", "high"], "not a number: 'high'"),
    ],
)
def test_cli_refuses_arguments_that_cannot_be_right(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli().parse_args(["template", "render", "--rule", "r", *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_reports_a_broken_configuration_as_a_failure_not_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = rule_config(tmp_path, RULE_CONFIG.replace("op: above", "op: sideways"))
    _, err = render_rule(capsys, "-c", str(config), "--rule", "gross-exposure", code=1)
    assert "has problems (alphawatch check -c lists them)" in err


def test_the_html_part_marks_an_alert_resolved_within_a_firing_group() -> None:
    payload = sample_payload()
    resolved = dict(payload["alerts"][0], status="resolved", endsAt="2026-11-26T10:00:00Z")
    payload["alerts"].append(resolved)
    html = render("html", payload, "en")
    assert html.count("Recovery value · Fired for") == 1  # as the text part says it, not a plain "Value"
    assert "Recovery value" in render("text", payload, "en")


def _firing_group_with_one_resolved() -> dict[str, object]:
    """Two warnings firing and a critical resolved inside the same firing group."""
    payload = sample_payload(severity="warning")
    first = payload["alerts"][0]
    second = dict(first, fingerprint="0000000000000002", labels=dict(first["labels"], rule="ic-alpha8"))
    gone = dict(first, fingerprint="0000000000000003", status="resolved", severity="critical",
                endsAt="2026-11-26T10:00:00Z", resolvedValue=0.02, durationSeconds=60.0)  # fmt: skip
    payload["alerts"] = [first, second, gone]
    return payload


@pytest.mark.parametrize(
    ("language", "tally", "severity"),
    [("en", "2 firing, 1 resolved", "WARNING"), ("zh-TW", "2 則觸發，1 則已恢復", "警告")],
)
def test_a_firing_group_counts_what_fires_apart_from_what_resolved_in_it(
    language: str, tally: str, severity: str
) -> None:
    payload = _firing_group_with_one_resolved()
    sms = render("sms", payload, language)
    assert tally in sms
    assert sms.startswith(f"[{severity}]")  # the resolved critical no longer makes the page critical
    assert f"({tally})" in render("subject", payload, language)
    slack = build_message(payload, language)
    fields = [f["text"] for block in slack["blocks"] if "fields" in block for f in block["fields"]]
    assert any(tally in text for text in fields)
    assert slack["text"].startswith(f"[{severity}]")


def test_a_resolved_group_or_one_without_resolved_alerts_keeps_its_count() -> None:
    payload = _firing_group_with_one_resolved()
    payload["alerts"] = [payload["alerts"][0], payload["alerts"][1]]
    assert render("subject", payload, "en").endswith("×2")
    assert "(2 alerts)" in render("sms", payload, "en")
    done = _firing_group_with_one_resolved()
    done["status"] = "resolved"
    done["alerts"] = [dict(a, status="resolved") for a in done["alerts"]]
    assert render("subject", done, "en").startswith("[CRITICAL] RESOLVED")  # the worst of what was resolved
    assert "(3 alerts)" in render("sms", done, "en")
