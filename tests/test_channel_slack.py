"""The Slack channel against a real HTTP receiver shaped like an incoming webhook."""

from __future__ import annotations

import re
from typing import Any

import httpx
import jsonschema
import pytest
import trio

from alphawatch.channels import channel_kinds
from alphawatch.channels._base import DeliveryError, Notification
from alphawatch.channels._templates import sample_payload
from alphawatch.channels._transport import http_client
from alphawatch.channels.slack import Slack, build_message
from tests.http_receiver import Receiver, add_retry_after, module_receiver, reset, reused_receiver, shared_receiver  # noqa: F401 - fixtures


def notification(**payload_args: str) -> Notification:
    return Notification(1, "ops-slack", "group-1:firing:7", sample_payload(**payload_args), 1.7e9, 0)


async def send(channel: Slack, note: Notification | None = None) -> None:
    async with http_client(httpx.Limits()) as http:
        with trio.fail_after(10):
            await channel.send(note or notification(), http)


def texts(message: dict[str, Any]) -> str:
    """Every piece of text in a Block Kit message, one per line."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(message["blocks"])
    return "\n".join(found)


async def test_posts_a_block_kit_message(receiver: Receiver) -> None:
    await send(Slack("ops-slack", {"url": f"{receiver.url}/services/T0/B0/XYZ"}))

    [request] = receiver.requests
    assert request.path == "/services/T0/B0/XYZ"
    assert request.headers["Content-Type"].startswith("application/json")
    message = request.json()
    assert message["text"] == "[CRITICAL] FIRING: ICDecay (alpha7)"
    header, summary, fields, actions, footer = message["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "🔴 [CRITICAL] FIRING: ICDecay (alpha7)"},
    }
    assert summary["text"]["type"] == "mrkdwn"
    assert summary["text"]["text"].startswith("*IC of alpha7 fell below 0.01*")
    assert [f["text"] for f in fields["fields"]] == [
        "*Severity*\nCRITICAL",
        "*Model*\nalpha7",
        "*Rule*\nic-alpha7",
        "*Value*\n0.0042",
        "*Since*\n2026-11-26 09:02:03 +08:00",
    ]
    assert actions["elements"][0]["url"] == "http://127.0.0.1:9464/#rule=ic-alpha7"
    assert footer["type"] == "context"


async def test_a_resolved_message_in_traditional_chinese(receiver: Receiver) -> None:
    channel = Slack("ops-slack", {"url": receiver.url, "language": "zh-TW"})
    await send(channel, notification(status="resolved", severity="emergency", language="zh-TW"))

    message = receiver.requests[0].json()
    assert message["blocks"][0]["text"]["text"] == "✅ [緊急] 已恢復：ICDecay (alpha7)"
    content = texts(message)
    assert "*恢復值*\n0.0153" in content
    assert "*持續*\n2 小時 15 分" in content
    assert "在 alphawatch 開啟" in content


def test_text_from_alerts_cannot_inject_mentions_or_links() -> None:
    payload = sample_payload()
    payload["commonAnnotations"] = {"summary": "<!channel> see <http://evil|here> & more"}
    content = texts(build_message(payload))
    assert "<!channel>" not in content
    assert "&lt;!channel&gt; see &lt;http://evil|here&gt; &amp; more" in content
    payload["commonLabels"]["model"] = payload["alerts"][0]["labels"]["model"] = "<!channel>"
    fallback = build_message(payload)["text"]  # what a phone's notification shows, read as mrkdwn
    assert "<!channel>" not in fallback
    assert "&lt;!channel&gt;" in fallback


def test_templates_are_overridable_per_channel() -> None:
    overrides = {"subject": "{{ alertname }} on {{ model }}", "slack": "value is {{ alerts[0].value | value }}"}
    message = build_message(sample_payload(), "en", overrides)
    assert message["text"] == "ICDecay on alpha7"
    assert message["blocks"][1]["text"]["text"] == "value is 0.0042"


def test_block_kit_limits_hold_for_a_large_group() -> None:
    payload = sample_payload()
    alert = payload["alerts"][0]
    payload["alerts"] = [dict(alert, rule=f"rule-{i}", annotations={"summary": "x&y " * 75}) for i in range(40)]
    payload["commonAnnotations"] = {"summary": "many " * 100}
    message = build_message(payload)
    assert len(message["blocks"][0]["text"]["text"]) <= 150
    summary = message["blocks"][1]["text"]["text"]
    assert len(summary) <= 3000
    assert re.search(r"… \+\d+ more lines$", summary)  # says what was left out
    assert re.search(r"&(?!amp;|lt;|gt;)", summary) is None  # no entity cut in half
    assert len(message["blocks"][2]["fields"]) <= 10
    chinese = build_message(dict(payload, language="zh-TW"), "zh-TW")["blocks"][1]["text"]["text"]
    assert re.search(r"…另有 \d+ 行未列出$", chinese)  # in the channel's language


async def test_429_with_retry_after_is_retried_later(receiver: Receiver) -> None:
    add_retry_after(receiver, "7")
    receiver.answer(429)
    with pytest.raises(DeliveryError, match="HTTP 429") as caught:
        await send(Slack("ops-slack", {"url": receiver.url}))
    assert caught.value.retryable
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (400, False), (404, False)])
async def test_failures_map_to_delivery_errors(receiver: Receiver, status: int, retryable: bool) -> None:
    receiver.answer(status)
    with pytest.raises(DeliveryError, match=f"HTTP {status}") as caught:
        await send(Slack("ops-slack", {"url": receiver.url}))
    assert caught.value.retryable is retryable


async def test_a_slow_receiver_times_out(receiver: Receiver) -> None:
    receiver.answer(200, delay=1.0)
    with pytest.raises(DeliveryError, match=r"timed out after 0\.2s") as caught:
        await send(Slack("ops-slack", {"url": receiver.url, "timeout": 0.2}))
    assert caught.value.retryable


async def test_the_webhook_url_is_a_secret(receiver: Receiver) -> None:
    url = f"{receiver.url}/services/T0/B0/very-secret-token"
    channel = Slack("ops-slack", {"url": url})
    receiver.answer(500)
    with pytest.raises(DeliveryError) as caught:
        await send(channel)
    assert "very-secret-token" not in str(caught.value)
    assert channel.describe()["url"] == "<secret>"


def test_the_schema_accepts_a_typical_configuration() -> None:
    schema = {"$defs": {"duration": {"type": "number"}}, **Slack.schema}
    settings = {"url": "https://hooks.slack.com/services/T/B/X", "timeout": 5.0, "language": "zh-TW"}
    jsonschema.validate(settings | {"templates": {"slack": "{{ summary }}"}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(settings | {"templates": {"body": "x"}}, schema)
    assert channel_kinds()["slack"] is Slack


def test_a_bad_template_override_is_refused_when_the_channel_is_built() -> None:
    with pytest.raises(ValueError, match=r"templates\.slack: line 1: No filter named 'nope'"):
        Slack("ops-slack", {"url": "https://hooks.slack.com/x", "templates": {"slack": "{{ summary | nope }}"}})
    with pytest.raises(ValueError, match="unknown template 'body'"):
        Slack("ops-slack", {"url": "https://hooks.slack.com/x", "templates": {"body": "x"}})
