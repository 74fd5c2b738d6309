"""Email over SMTP: STARTTLS, implicit TLS or plain; login; a multipart text + HTML message to several recipients.

The stdlib's blocking ``smtplib`` runs in a worker thread, at most :data:`CONNECTIONS` at once per channel and
apart from trio's default threads (a configuration reload takes one of those). When the attempt's timeout expires
the thread is abandoned and its socket shut down, which ends it: the socket timeout alone bounds each read, and a
server answering a byte at a time would hold the thread for good.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import socket
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import trio

from alphawatch.channels._base import Channel, DeliveryError, Notification
from alphawatch.channels._templates import LANGUAGE_SCHEMA, TEMPLATES_SCHEMA, check_overrides, render

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

if TYPE_CHECKING:
    import smtplib
    from email.message import EmailMessage

logger = logging.getLogger(__name__)

DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}


CONNECTIONS = 10
"""SMTP connections at once per email channel (each a thread); more deliveries wait their turn within their
timeout. A server that stalls holds at most these, and never the threads the rest of the daemon uses."""


class Email(Channel):
    kind: ClassVar[str] = "email"
    secret_fields: ClassVar[tuple[str, ...]] = ("password",)
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["host", "from", "to"],
        "properties": {
            "host": {"type": "string", "minLength": 1},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "security": {"enum": ["starttls", "tls", "none"]},
            "username": {"type": "string", "minLength": 1},
            "password": {"type": "string"},
            "ca_file": {"type": "string", "minLength": 1},
            "from": {"type": "string", "pattern": "@"},
            "to": {"type": "array", "items": {"type": "string", "pattern": "@"}, "minItems": 1},
            "timeout": {"$ref": "#/$defs/duration"},
            "language": LANGUAGE_SCHEMA,
            "templates": TEMPLATES_SCHEMA,
        },
    }

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        super().__init__(name, settings)
        self._connections: trio.CapacityLimiter | None = None  # (made on the event loop, at the first mail)
        if settings.get("username") and "password" not in settings:
            raise ValueError("username needs a password (write password: ${env:VAR} or ${file:PATH})")
        check_overrides(settings.get("templates"))

    def message(self, notification: Notification) -> EmailMessage:
        """The mail for ``notification``: text and HTML alternatives, UTF-8 headers, a stable Message-ID."""
        # smtplib and the email package cost 2 MiB: imported by the first mail, not by every daemon that starts
        from email.message import EmailMessage
        from email.policy import SMTP as SMTP_POLICY
        from email.utils import formatdate

        payload = notification.payload
        language = self.settings.get("language", "en")
        overrides = self.settings.get("templates")
        message = EmailMessage(policy=SMTP_POLICY)
        # A header may hold no line break and no control character (a label's value may: NUL broke the mail)
        message["Subject"] = " ".join(
            _CONTROL.sub(" ", render("subject", payload, language, overrides, self.name)).split()
        )
        message["From"] = self.settings["from"]
        message["To"] = ", ".join(self.settings["to"])
        message["Date"] = formatdate(notification.created_at, localtime=True)
        # The same on every attempt, so that mail clients fold repeats after a retry into one.
        digest = hashlib.sha256(notification.idempotency_key.encode()).hexdigest()[:32]
        domain = str(self.settings["from"]).rpartition("@")[2].strip("<> ") or "alphawatch"
        message["Message-ID"] = f"<{digest}.alphawatch@{domain}>"
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(render("text", payload, language, overrides, self.name), cte="quoted-printable")
        message.add_alternative(
            render("html", payload, language, overrides, self.name), subtype="html", cte="quoted-printable"
        )
        return message

    async def send(self, notification: Notification, http: httpx.AsyncClient) -> None:
        message = self.message(notification)
        if self._connections is None:
            self._connections = trio.CapacityLimiter(CONNECTIONS)
        held: list[smtplib.SMTP] = []  # the attempt's client, once made: shut down if the attempt is abandoned
        with trio.move_on_after(self.timeout) as scope:
            await trio.to_thread.run_sync(
                self._deliver, message, held, abandon_on_cancel=True, limiter=self._connections
            )
        if scope.cancelled_caught:
            for smtp in held:
                sock = smtp.sock  # (None once closed)
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
            raise DeliveryError(f"timed out after {self.timeout:g}s")

    def _deliver(self, message: EmailMessage, held: list[smtplib.SMTP]) -> None:
        """Connect, secure, log in and send, in a worker thread. Raises :class:`DeliveryError`."""
        import smtplib

        security = self.settings.get("security", "starttls")
        host = self.settings["host"]
        port = int(self.settings.get("port", DEFAULT_PORTS[security]))
        try:
            context = ssl.create_default_context(cafile=self.settings.get("ca_file"))
            smtp: smtplib.SMTP
            if security == "tls":
                smtp = smtplib.SMTP_SSL(timeout=self.timeout, context=context)
            else:
                smtp = smtplib.SMTP(timeout=self.timeout)
            smtp._host = host  # type: ignore[attr-defined]  # (what TLS checks the certificate against)
            held.append(smtp)  # made, not connected: connected here, it can be shut down from the event loop
            with smtp:
                code, reply = smtp.connect(host, port)
                if code != 220:
                    raise smtplib.SMTPConnectError(code, reply)
                if security == "starttls":
                    smtp.starttls(context=context)
                if self.settings.get("username"):
                    smtp.login(self.settings["username"], self.settings.get("password", ""))
                # the envelope takes bare addresses: a display name in Chinese is the headers' business (encoded
                # there); given to smtplib it asked for SMTPUTF8, and servers without it refused every mail
                refused = smtp.send_message(
                    message, _address(self.settings["from"]), [_address(t) for t in self.settings["to"]]
                )
        except Exception as exc:
            raise _delivery_error(exc) from None
        if refused:
            # Some recipients have the mail already: a retry would send it to them again.
            raise DeliveryError(
                f"sent to {len(self.settings['to']) - len(refused)} of {len(self.settings['to'])} recipients; "
                f"refused: {_refusals(refused)}",
                retryable=False,
            )


def _delivery_error(exc: Exception) -> DeliveryError:
    """Map what ``smtplib`` raises: 4xx replies and connection trouble are retryable, 5xx replies are not."""
    import smtplib

    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        temporary = all(400 <= code < 500 for code, _ in exc.recipients.values())
        return DeliveryError(f"all recipients refused: {_refusals(exc.recipients)}", retryable=temporary)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return DeliveryError(f"login refused: {_reply(exc.smtp_code, exc.smtp_error)}", retryable=exc.smtp_code < 500)
    if isinstance(exc, smtplib.SMTPResponseException):
        return DeliveryError(f"server replied {_reply(exc.smtp_code, exc.smtp_error)}", retryable=exc.smtp_code < 500)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return DeliveryError(f"server does not support it: {exc}", retryable=False)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return DeliveryError(f"TLS certificate not trusted: {exc.verify_message}", retryable=False)
    if isinstance(exc, ssl.SSLError):
        return DeliveryError(f"TLS failed: {exc.reason or type(exc).__name__}")
    if isinstance(exc, TimeoutError):
        return DeliveryError("timed out")
    if isinstance(exc, smtplib.SMTPException):  # disconnected, or a reply smtplib could not make sense of
        return DeliveryError(f"SMTP failed: {exc}")
    if isinstance(exc, OSError):
        return DeliveryError(f"connection failed: {exc.strerror or type(exc).__name__}")
    logger.exception("unexpected error while sending mail")
    return DeliveryError(f"unexpected {type(exc).__name__}", retryable=False)


def _reply(code: int, text: bytes | str) -> str:
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(message.split())[:200]}"


def _refusals(refused: Mapping[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{address} ({_reply(code, text)})" for address, (code, text) in refused.items())


def _address(mailbox: str) -> str:
    """``alerts@example.tw`` of ``量化告警 <alerts@example.tw>``."""
    from email.utils import parseaddr

    return parseaddr(mailbox)[1] or mailbox
