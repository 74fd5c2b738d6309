"""The email channel against a real SMTP server (aiosmtpd) in the test process, with and without TLS."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import trio
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from alphawatch.channels import channel_kinds
from alphawatch.channels._base import DeliveryError, Notification
from alphawatch.channels._templates import sample_payload
from alphawatch.channels._transport import http_client
from alphawatch.channels.email import Email
from tests.tls import server_context

PASSWORD = "s3cret-pa55"


@dataclass
class Mailbox:
    """An aiosmtpd handler: keeps what arrives; ``rcpt_replies`` and ``data_reply`` script refusals."""

    messages: list[Envelope] = field(default_factory=list)
    logins: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str = "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.rcpt_replies.get(address, "250 OK")
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply.startswith("250"):
            self.messages.append(envelope)
        return self.data_reply

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((mechanism, data.login, data.password))
        # handled=False: let aiosmtpd answer a failure with its 535
        return AuthResult(success=data.login == b"alerts" and data.password == PASSWORD.encode(), handled=False)

    def mail(self) -> EmailMessage:
        assert len(self.messages) == 1
        content = self.messages[0].original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


class LocalController(Controller):
    """aiosmtpd's controller on 127.0.0.1 with a port the kernel picks."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def serve(mailbox: Mailbox) -> Iterator[Any]:
    """Start an SMTP server with the given aiosmtpd options; return its port. Stopped after the test."""
    controllers: list[Controller] = []

    def start(**options: Any) -> int:
        controller = LocalController(
            mailbox, hostname="127.0.0.1", port=0, authenticator=mailbox.authenticate, **options
        )
        controller.start()
        controllers.append(controller)
        return int(controller.port)

    yield start
    for controller in controllers:
        controller.stop()


def channel(port: int, **settings: Any) -> Email:
    base = {"host": "127.0.0.1", "port": port, "security": "none", "from": "alphawatch@example.tw"}
    base.update({"to": ["ops@example.tw", "quant@example.tw"], "timeout": 5.0})
    return Email("ops-mail", base | settings)


def notification(**payload_args: str) -> Notification:
    return Notification(1, "ops-mail", "group-1:firing:7", sample_payload(**payload_args), 1.7e9, 0)


async def send(target: Email, note: Notification | None = None) -> None:
    async with http_client(httpx.Limits()) as http:
        with trio.fail_after(10):
            await target.send(note or notification(), http)


async def test_starttls_login_and_a_multipart_zh_tw_mail_to_several_recipients(
    serve: Any, mailbox: Mailbox, certificate: Path
) -> None:
    port = serve(tls_context=server_context(certificate), require_starttls=True, auth_required=True)
    target = channel(port, security="starttls", ca_file=str(certificate), username="alerts", password=PASSWORD)
    target.settings = dict(target.settings, language="zh-TW")

    await send(target, notification(language="zh-TW"))

    assert [(m, login) for m, login, _ in mailbox.logins] == [("PLAIN", b"alerts")]
    envelope = mailbox.messages[0]
    assert envelope.mail_from == "alphawatch@example.tw"
    assert envelope.rcpt_tos == ["ops@example.tw", "quant@example.tw"]
    raw = (envelope.original_content or b"").decode("ascii")
    assert "Subject: =?utf-8?" in raw  # RFC 2047 encoded, so any mail client shows it
    mail = mailbox.mail()
    assert mail["Subject"] == "[嚴重] 觸發：ICDecay (alpha7)"
    assert mail["To"] == "ops@example.tw, quant@example.tw"
    assert mail.get_content_type() == "multipart/alternative"
    text, html = (part for part in mail.iter_parts() if isinstance(part, EmailMessage))
    assert text.get_content_type() == "text/plain"
    assert text.get_content_charset() == "utf-8"
    assert "alpha7 的 IC 低於 0.01" in text.get_content()
    assert "數值：0.0042" in text.get_content()
    assert html.get_content_type() == "text/html"
    assert '<html lang="zh-TW">' in html.get_content()


async def test_implicit_tls_with_the_login_mechanism(serve: Any, mailbox: Mailbox, certificate: Path) -> None:
    port = serve(ssl_context=server_context(certificate), auth_require_tls=False, auth_exclude_mechanism=["PLAIN"])
    target = channel(port, security="tls", ca_file=str(certificate), username="alerts", password=PASSWORD)

    await send(target, notification(status="resolved"))

    assert [(m, login) for m, login, _ in mailbox.logins] == [("LOGIN", b"alerts")]
    mail = mailbox.mail()
    assert mail["Subject"] == "[CRITICAL] RESOLVED: ICDecay (alpha7)"
    text = mail.get_body(("plain",))
    assert text is not None
    assert "Recovery value: 0.0153" in text.get_content()
    assert "Fired for: 2h15m" in text.get_content()


async def test_the_message_id_is_the_same_on_every_attempt(serve: Any, mailbox: Mailbox) -> None:
    target = channel(serve())
    await send(target)
    await send(target)
    first, second = (email.message_from_bytes(m.original_content or b"") for m in mailbox.messages)
    assert first["Message-ID"] == second["Message-ID"]
    assert first["Message-ID"].endswith("@example.tw>")


async def test_control_characters_of_a_label_never_reach_the_subject(serve: Any, mailbox: Mailbox) -> None:
    note = notification()
    for alert in note.payload["alerts"]:
        alert["labels"]["model"] = "alpha\x007\r\nBcc: someone@example.tw"
    note.payload["commonLabels"]["model"] = "alpha\x007\r\nBcc: someone@example.tw"
    await send(channel(serve()), note)
    (received,) = mailbox.messages
    mail = email.message_from_bytes(received.original_content or b"")
    assert "(alpha 7 Bcc: someone@example.tw)" in mail["Subject"]  # the model label, on one line
    assert mail["Bcc"] is None
    assert received.rcpt_tos == ["ops@example.tw", "quant@example.tw"]


async def test_chinese_display_names_reach_a_server_without_smtputf8_encoded(serve: Any, mailbox: Mailbox) -> None:
    target = channel(serve(enable_SMTPUTF8=False), **{"from": "量化告警 <alerts@example.tw>", "language": "zh-TW",
                                                       "to": ["值班 <ops@example.tw>"]})  # fmt: skip
    await send(target)  # refused before: a non-ASCII envelope asked for SMTPUTF8
    (received,) = mailbox.messages
    assert (received.mail_from, received.rcpt_tos) == ("alerts@example.tw", ["ops@example.tw"])
    raw = received.original_content or b""
    assert raw.isascii()  # every header RFC 2047 encoded, the bodies quoted-printable
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(mail["From"]) == "量化告警 <alerts@example.tw>"
    assert str(mail["Subject"]).startswith("[嚴重]")


async def test_a_wrong_password_is_permanent_and_never_shown(serve: Any, certificate: Path) -> None:
    port = serve(tls_context=server_context(certificate))
    target = channel(port, security="starttls", ca_file=str(certificate), username="alerts", password="wrong-pw")
    with pytest.raises(DeliveryError, match="login refused: 535") as caught:
        await send(target)
    assert not caught.value.retryable
    assert "wrong-pw" not in str(caught.value)
    assert target.describe()["password"] == "<secret>"


async def test_an_untrusted_certificate_is_permanent(serve: Any, certificate: Path) -> None:
    target = channel(serve(ssl_context=server_context(certificate)), security="tls")
    with pytest.raises(DeliveryError, match="certificate not trusted") as caught:
        await send(target)
    assert not caught.value.retryable


async def test_a_server_without_starttls_is_permanent(serve: Any) -> None:
    with pytest.raises(DeliveryError, match="STARTTLS") as caught:
        await send(channel(serve(), security="starttls"))
    assert not caught.value.retryable


@pytest.mark.parametrize(
    ("replies", "retryable", "message"),
    [
        ({"ops@example.tw": "550 no such user", "quant@example.tw": "550 no such user"}, False, "all recipients"),
        ({"ops@example.tw": "451 try again", "quant@example.tw": "452 mailbox full"}, True, "all recipients"),
        ({"quant@example.tw": "550 no such user"}, False, "sent to 1 of 2 recipients; refused: quant@example.tw"),
    ],
)
async def test_refused_recipients(
    serve: Any, mailbox: Mailbox, replies: dict[str, str], retryable: bool, message: str
) -> None:
    mailbox.rcpt_replies = replies
    with pytest.raises(DeliveryError, match=message) as caught:
        await send(channel(serve()))
    assert caught.value.retryable is retryable


@pytest.mark.parametrize(("reply", "retryable"), [("451 local error", True), ("554 rejected as spam", False)])
async def test_a_refused_message(serve: Any, mailbox: Mailbox, reply: str, retryable: bool) -> None:
    mailbox.data_reply = reply
    with pytest.raises(DeliveryError, match=reply[:3]) as caught:
        await send(channel(serve()))
    assert caught.value.retryable is retryable


async def test_nobody_listening_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DeliveryError, match="connection failed") as caught:
        await send(channel(port))
    assert caught.value.retryable


async def test_a_silent_server_times_out_and_is_retryable() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) but never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        target = channel(silent.getsockname()[1], timeout=0.3)
        start = trio.current_time()
        with pytest.raises(DeliveryError, match="timed out") as caught:
            await send(target)
    assert caught.value.retryable
    assert trio.current_time() - start < 2


async def test_a_server_answering_a_byte_at_a_time_is_hung_up_on_when_the_attempt_times_out() -> None:
    """The socket timeout bounds each read: a byte every 0.1 s would hold the attempt's thread for good, and with
    it one of the threads every other channel's mail (and a reload) waits for."""
    import select
    import threading
    import time

    hung_up = threading.Event()

    def trickle(server: socket.socket) -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"220-")
            for _ in range(300):  # 30 s at most
                time.sleep(0.1)
                try:
                    conn.sendall(b"x")
                except OSError:
                    break
                if select.select([conn], [], [], 0)[0] and conn.recv(1) == b"":  # the client hung up
                    break
        hung_up.set()

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        threading.Thread(target=trickle, args=(server,), daemon=True).start()
        target = channel(server.getsockname()[1], timeout=0.5)
        with pytest.raises(DeliveryError, match=r"timed out after 0\.5s"):
            await send(target)
        assert await trio.to_thread.run_sync(hung_up.wait, 5)  # hung up on, not left reading


async def test_mail_to_a_silent_server_takes_none_of_the_threads_the_rest_of_the_daemon_uses() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) but never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        target = channel(silent.getsockname()[1], timeout=1.0)
        default = trio.to_thread.current_default_thread_limiter()
        async with trio.open_nursery() as nursery:

            async def attempt() -> None:
                with pytest.raises(DeliveryError, match="timed out"):
                    await send(target)

            for _ in range(3):
                nursery.start_soon(attempt)
            await trio.sleep(0.3)
            assert default.borrowed_tokens == 0  # the channel's own threads, not trio's default ones


def test_the_kind_is_registered_and_checks_its_settings() -> None:
    assert channel_kinds()["email"] is Email
    with pytest.raises(ValueError, match="username needs a password"):
        channel(25, username="alerts")
    with pytest.raises(ValueError, match=r"templates\.html: line 1"):
        channel(25, templates={"html": "{% for %}"})
    schema = {"$defs": {"duration": {"type": "number"}}, **Email.schema}
    jsonschema.validate(dict(channel(25).settings), schema)
