"""SMS: segment counting and cutting, and both providers against a real HTTP receiver."""

from __future__ import annotations

import base64
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import trio

from alphawatch.channels import channel_kinds
from alphawatch.channels._base import DeliveryError, Notification
from alphawatch.channels._templates import sample_payload
from alphawatch.channels._transport import http_client
from alphawatch.channels.sms import GSM7, UCS2, Sms, fit_segments, sms_segments
from tests.daemon_harness import AUTH, TOKEN, in_process
from tests.http_receiver import Receiver, add_retry_after, module_receiver, reset


def record_methods(receiver: Receiver) -> list[str]:
    """The HTTP methods of requests from now on (the receiver records every request as a POST)."""
    assert receiver._server is not None
    handler: Any = receiver._server.RequestHandlerClass
    methods: list[str] = []

    class Recording(handler):  # type: ignore[misc]
        def do_POST(self) -> None:
            methods.append(self.command)
            super().do_POST()

        do_PUT = do_POST

    receiver._server.RequestHandlerClass = Recording
    return methods


@pytest.fixture(scope="module")
def shared_receiver() -> Iterator[tuple[Receiver, Any]]:
    with module_receiver() as shared:
        yield shared


@pytest.fixture
def receiver(shared_receiver: tuple[Receiver, Any]) -> Receiver:
    return reset(shared_receiver, 201)


def twilio(receiver: Receiver, **settings: Any) -> Sms:
    base = {"provider": "twilio", "account_sid": "AC123", "auth_token": "tok-secret", "from": "+15005550006"}
    return Sms("ops-sms", base | {"to": ["+886912345678", "+886987654321"], "base_url": receiver.url} | settings)


def gateway(receiver: Receiver, **settings: Any) -> Sms:
    return Sms("ops-sms", {"provider": "http", "url": f"{receiver.url}/send", "to": ["0912345678"]} | settings)


def notification(key: str = "group-1:firing:7", **payload_args: str) -> Notification:
    return Notification(1, "ops-sms", key, sample_payload(**payload_args), 1.7e9, 0)


async def send(channel: Sms, note: Notification | None = None) -> None:
    async with http_client(httpx.Limits()) as http:
        with trio.fail_after(10):
            await channel.send(note or notification(), http)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (GSM7, 1)),
        ("a" * 160, (GSM7, 1)),
        ("a" * 161, (GSM7, 2)),
        ("a" * 306, (GSM7, 2)),
        ("a" * 307, (GSM7, 3)),
        ("Müller é à ñ £ ¥ §", (GSM7, 1)),
        ("{" * 80, (GSM7, 1)),  # extension characters take two septets
        ("€" * 81, (GSM7, 2)),
        ("a" * 152 + "{" + "a" * 152, (GSM7, 3)),  # the escape pair is not split, so it starts part two
        ("ê", (UCS2, 1)),  # not in the GSM alphabet
        ("`", (UCS2, 1)),
        ("中" * 70, (UCS2, 1)),
        ("中" * 71, (UCS2, 2)),
        ("中" * 134, (UCS2, 2)),
        ("中" * 135, (UCS2, 3)),
        ("alpha7 的 IC 低於 0.01", (UCS2, 1)),
        ("😀" * 35, (UCS2, 1)),  # a surrogate pair counts two
        ("😀" * 36, (UCS2, 2)),  # 33 pairs per part
        ("😀" * 67, (UCS2, 3)),
    ],
)
def test_sms_segments(text: str, expected: tuple[str, int]) -> None:
    assert sms_segments(text) == expected


@pytest.mark.parametrize("max_segments", [1, 2, 3])
def test_long_gsm_text_is_cut_with_dots_and_stays_gsm(max_segments: int) -> None:
    text = fit_segments("The information coefficient fell. " * 40, max_segments)
    assert text.endswith("...")
    assert sms_segments(text) == (GSM7, max_segments)
    assert len(text) > {1: 150, 2: 295, 3: 450}[max_segments]


@pytest.mark.parametrize("max_segments", [1, 2, 3])
def test_long_chinese_text_is_cut_with_an_ellipsis(max_segments: int) -> None:
    text = fit_segments("資訊係數低於門檻，請檢查模型。" * 30, max_segments)
    assert text.endswith("…")
    assert sms_segments(text) == (UCS2, max_segments)
    assert len(text) >= {1: 69, 2: 130, 3: 195}[max_segments]


@pytest.mark.parametrize("max_segments", [1, 2])
def test_a_ucs2_character_in_the_part_cut_off_does_not_make_the_rest_ucs2(max_segments: int) -> None:
    text = fit_segments("Gross exposure is high " * 20 + "(Value —)", max_segments)  # '—' is not GSM-7
    assert sms_segments(text) == (GSM7, max_segments)
    assert len(text) > {1: 150, 2: 295}[max_segments]  # UCS-2 would keep 69 / 130
    mixed = fit_segments("資訊係數 " * 5 + "the rest in GSM-7 " * 20, 1)
    assert sms_segments(mixed) == (UCS2, 1)  # Chinese at the start: UCS-2 keeps more than an empty GSM-7 cut
    assert mixed.startswith("資訊係數")


def test_short_text_is_left_alone() -> None:
    assert fit_segments("短訊", 1) == "短訊"


async def test_twilio_form_post_per_recipient(receiver: Receiver) -> None:
    channel = twilio(receiver, language="zh-TW")
    await send(channel, notification(status="resolved", language="zh-TW"))

    assert [r.path for r in receiver.requests] == ["/2010-04-01/Accounts/AC123/Messages.json"] * 2
    first, second = receiver.requests
    assert first.headers["Authorization"] == "Basic " + base64.b64encode(b"AC123:tok-secret").decode()
    assert first.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = urllib.parse.parse_qs(first.body.decode())
    assert form["To"] == ["+886912345678"]
    assert form["From"] == ["+15005550006"]
    assert form["Body"] == ["[嚴重] 已恢復：alpha7 的 IC 低於 0.01 (恢復值 0.0153, 持續 2 小時 15 分)"]
    assert urllib.parse.parse_qs(second.body.decode())["To"] == ["+886987654321"]


async def test_a_retry_after_a_partial_failure_skips_recipients_already_served(receiver: Receiver) -> None:
    channel = twilio(receiver)
    receiver.answer(201, 500, 201)
    with pytest.raises(DeliveryError, match="recipient 2 of 2: HTTP 500") as caught:
        await send(channel)
    assert caught.value.retryable

    await send(channel)

    to = [urllib.parse.parse_qs(r.body.decode())["To"][0] for r in receiver.requests]
    assert to == ["+886912345678", "+886987654321", "+886987654321"]


async def test_a_reload_keeps_the_recipients_an_unchanged_channel_served(
    write_config: Callable[..., Path], receiver: Receiver
) -> None:
    """A reload between two attempts (nothing changed in the file) must not text the first recipient again: the
    channel was built anew at every reload and forgot whom it had served."""
    receiver.answer(201, 500, 201)
    path = write_config(f"""
        daemon:
          state: state.db
          tokens: {{ingest: {TOKEN}, admin: {TOKEN}}}
          delivery: {{initial_backoff: 300ms, max_backoff: 300ms}}
        channels:
          - {{name: pager, kind: sms, provider: twilio, account_sid: AC123, auth_token: tok-secret,
              from: "+15005550006", to: ["+886912345678", "+886987654321"], base_url: "{receiver.url}"}}
        route: {{channels: [pager], group_wait: 0s}}
        rules:
          - {{name: exposure, kind: threshold, metric: gross, op: above, value: 1.5}}
        """)
    async with in_process(path) as (_, client):
        sample = {"metric": "gross", "labels": {}, "ts": time.time(), "value": 2.0}
        assert (await client.post("/api/v1/samples", json=[sample], headers=AUTH)).status_code == 200
        with trio.fail_after(10):
            while len(receiver.requests) < 2:  # the first recipient served, the second failed
                await trio.sleep(0.01)
        assert (await client.post("/-/reload", headers=AUTH)).status_code == 200
        with trio.fail_after(10):
            while not (await client.get("/api/v1/notifications?state=delivered")).json()["notifications"]:
                await trio.sleep(0.02)
    to = [urllib.parse.parse_qs(r.body.decode())["To"][0] for r in receiver.requests]
    assert to == ["+886912345678", "+886987654321", "+886987654321"]


async def test_429_with_retry_after(receiver: Receiver) -> None:
    add_retry_after(receiver, "30")
    receiver.answer(429)
    with pytest.raises(DeliveryError, match="HTTP 429") as caught:
        await send(twilio(receiver))
    assert caught.value.retryable
    assert caught.value.retry_after == 30.0


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (502, True), (400, False), (401, False)])
async def test_http_failures(receiver: Receiver, status: int, retryable: bool) -> None:
    receiver.answer(status)
    with pytest.raises(DeliveryError, match=f"HTTP {status}") as caught:
        await send(twilio(receiver))
    assert caught.value.retryable is retryable
    assert "tok-secret" not in str(caught.value)


async def test_a_slow_gateway_times_out(receiver: Receiver) -> None:
    receiver.answer(200, delay=1.0)
    with pytest.raises(DeliveryError, match="timed out") as caught:
        await send(gateway(receiver, timeout=0.2))
    assert caught.value.retryable


async def test_the_message_is_capped_at_max_segments(receiver: Receiver) -> None:
    payload = sample_payload(language="zh-TW")
    payload["commonAnnotations"] = {"summary": "資訊係數持續走低" * 40}
    note = Notification(1, "ops-sms", "group-1:firing:7", payload, 1.7e9, 0)
    await send(twilio(receiver, language="zh-TW", max_segments=2, to=["+886912345678"]), note)
    body = urllib.parse.parse_qs(receiver.requests[0].body.decode())["Body"][0]
    assert body.endswith("… (數值 0.0042)")  # the summary gives way: the value stays
    assert sms_segments(body) == (UCS2, 2)


def test_a_cut_message_keeps_the_recovery_value_and_the_duration() -> None:
    payload = sample_payload(status="resolved")
    payload["commonAnnotations"] = {"summary": "alpha7 twenty-day rank IC fell below its floor before the open " * 3}
    sms = Sms("ops-sms", {"provider": "http", "to": ["+886912345678"], "url": "http://127.0.0.1:9/sms",
                          "max_segments": 1})  # fmt: skip
    text = sms.message(payload)
    assert text.endswith("... (Recovery value 0.0153, Fired for 2h15m)")  # was: "… before the open..."
    assert sms_segments(text) == (GSM7, 1)


def test_a_chinese_message_cut_in_its_ascii_summary_takes_the_one_character_ellipsis() -> None:
    payload = sample_payload(language="zh-TW")
    payload["commonAnnotations"] = {"summary": "alpha7 twenty-day rank IC fell below its floor before the open " * 3}
    sms = Sms("ops-sms", {"provider": "http", "to": ["+886912345678"], "url": "http://127.0.0.1:9/sms",
                          "language": "zh-TW", "max_segments": 1})  # fmt: skip
    text = sms.message(payload)
    assert sms_segments(text) == (UCS2, 1)  # (the Chinese words of the template)
    assert "…" in text  # one unit of 70 ...
    assert "..." not in text  # ... not three


def test_a_failed_replacement_template_stands_in_for_by_the_built_in_one_shortened_as_it_would_be(
    caplog: pytest.LogCaptureFixture,
) -> None:
    payload = sample_payload(status="resolved")
    payload["alerts"][0]["labels"]["n"] = "3000"
    payload["commonAnnotations"] = {"summary": "alpha7 twenty-day rank IC fell below its floor before the open " * 3}
    looping = (
        "{% for i in range(alerts[0].labels.get('n', '0') | int) %}{% for j in range(10) %}{% endfor %}{% endfor %}x"
    )
    sms = Sms("ops-sms", {"provider": "http", "to": ["+886912345678"], "url": "http://127.0.0.1:9/sms",
                          "max_segments": 1, "templates": {"sms": looping}})  # fmt: skip
    text = sms.message(payload)
    assert "custom sms template failed" in caplog.text
    assert text.endswith("... (Recovery value 0.0153, Fired for 2h15m)")  # the summary gave way, not the end


async def test_generic_gateway_json_body_from_templates(receiver: Receiver) -> None:
    body = {"phone": "{{ to }}", "text": "{{ message }}", "parts": "{{ segments }}", "priority": 1, "flash": False}
    channel = gateway(receiver, headers={"X-Api-Key": "k-123"}, body=body)
    await send(channel)

    [request] = receiver.requests
    assert request.path == "/send"
    assert request.headers["X-Api-Key"] == "k-123"
    assert request.headers["Idempotency-Key"] == "group-1:firing:7:0912345678"
    assert request.json() == {
        "phone": "0912345678",
        "text": "[CRITICAL] FIRING: IC of alpha7 fell below 0.01 (Value 0.0042)",
        "parts": "1",
        "priority": 1,
        "flash": False,
    }


async def test_generic_gateway_form_put(receiver: Receiver) -> None:
    methods = record_methods(receiver)
    channel = gateway(receiver, method="PUT", format="form", body={"dest": "{{ to }}", "msg": "{{ message }}"})
    await send(channel, notification(language="zh-TW"))

    assert methods == ["PUT"]
    [request] = receiver.requests
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = urllib.parse.parse_qs(request.body.decode())
    assert form["dest"] == ["0912345678"]
    assert "alpha7 的 IC 低於 0.01" in form["msg"][0]


async def test_generic_gateway_default_body(receiver: Receiver) -> None:
    await send(gateway(receiver))
    assert set(receiver.requests[0].json()) == {"to", "message"}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"body": {"text": "{{ message | nosuchfilter }}"}}, "body.text: line 1: No filter named 'nosuchfilter'"),
        ({"templates": {"sms": "{% if %}"}}, "templates.sms: line 1: Expected an expression"),
        ({"templates": {"sms": "{{ oops"}, "body": {"a": "{{ segments + 1 }}"}}, "templates.sms: line 1"),
    ],
)
def test_bad_templates_are_refused_when_the_channel_is_built(
    receiver: Receiver, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        gateway(receiver, **settings)


def test_body_templates_see_the_request_variables(receiver: Receiver) -> None:
    gateway(
        receiver, body={"n": "{{ segments + 1 }}", "e": "{{ encoding | lower }}", "r": "{{ recipients | join(',') }}"}
    )


def test_secrets_are_hidden() -> None:
    channel = Sms("ops-sms", {"provider": "twilio", "account_sid": "AC1", "auth_token": "t", "from": "x", "to": ["y"]})
    assert channel.describe()["auth_token"] == "<secret>"
    assert set(Sms.secret_fields) >= {"auth_token", "url", "headers", "body"}


def test_the_schema_and_the_provider_requirements() -> None:
    schema = {"$defs": {"duration": {"type": "number"}}, **Sms.schema}
    jsonschema.validate({"provider": "http", "url": "https://sms.example.tw/send", "to": ["0912"]}, schema)
    jsonschema.validate(
        {
            "provider": "twilio",
            "account_sid": "AC1",
            "auth_token": "t",
            "from": "+1",
            "to": ["+886"],
            "max_segments": 2,
        },
        schema,
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"provider": "email", "to": ["0912"]}, schema)
    with pytest.raises(ValueError, match="provider twilio needs auth_token, from"):
        Sms("ops-sms", {"provider": "twilio", "account_sid": "AC1", "to": ["+886"]})
    with pytest.raises(ValueError, match="provider http needs url"):
        Sms("ops-sms", {"provider": "http", "to": ["0912"]})
    assert channel_kinds()["sms"] is Sms
