"""One small transport per channel (healthchecks.io style): send one message or say why not.

``send`` returns the provider's id of the message. It raises ``TransportError`` when the
message was not accepted (``permanent`` says whether trying again can help) and
``OutcomeUnknown`` when the request may have reached the provider but no answer came: such a
message must not be sent again blindly.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from notifications.masking import mask_address, scrub

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    delivery_id: int | None  # a notice's delivery; None for a message from the outbox
    channel: str
    address: str
    body: str
    subject: str = ""


class TransportError(Exception):
    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code
        # Seconds the receiver asked us to wait (HTTP Retry-After) before the next try.
        self.retry_after = retry_after


class OutcomeUnknown(Exception):
    """The request may have reached the provider; whether it was accepted is not known."""


# Waits for a message's send slot, called right before the message goes out: False when the
# slot has passed meanwhile (or the sender is stopping).
Gate = Callable[[], bool]


class SlotMissed(Exception):
    """The message's send slot passed before it could go out: nothing was sent."""


def pass_gate(gate: Gate | None) -> None:
    if gate is not None and not gate():
        raise SlotMissed


class Transport(Protocol):
    channel: str
    # Whether ``find_sent`` can ask the provider what became of an uncertain send.
    can_look_up: bool
    # Writes the message to the log instead of sending it: its deliveries are `logged`,
    # never `sent`, so nobody believes a candidate was told.
    logs_only: bool

    def send(self, message: Message, gate: Gate | None = None) -> str:
        """Send ``message``; with a ``gate``, it goes out only once the gate opens (as close
        to the wire as the transport can), or ``SlotMissed`` is raised."""
        ...

    def find_sent(self, message: Message, *, since: datetime) -> str | None:
        """The provider id of ``message`` if the provider has it, None if it surely has not."""
        ...


class LogTransport:
    """NOT A REAL CHANNEL: writes the message to the log when no provider is configured,
    so the bot runs anywhere (a laptop, CI) without sending anything. The address and the
    page link in the body are masked: a log is no place for them."""

    can_look_up = False
    logs_only = True

    def __init__(self, channel: str) -> None:
        self.channel = channel

    def send(self, message: Message, gate: Gate | None = None) -> str:
        pass_gate(gate)
        log.warning(
            "%s not configured, logged instead of sent: to=%s subject=%r body=%r",
            self.channel,
            mask_address(message.address),
            scrub(message.subject, address=message.address),
            scrub(message.body, address=message.address),
        )
        return f"log-{uuid.uuid4().hex}"

    def find_sent(self, message: Message, *, since: datetime) -> str | None:
        raise NotImplementedError("this channel cannot look up what it sent")


def secret_value(value: Any) -> str | None:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


class SmtpTransport:
    """E-mail over SMTP: ``smtp://user:pass@host:port`` (STARTTLS when offered) or ``smtps://``."""

    channel = "email"
    can_look_up = False
    logs_only = False

    def __init__(self, url: str, mail_from: str, *, timeout: float = 20) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP_URL must look like smtp://user:pass@host:587 or smtps://…")
        self.secure = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.secure else 25)
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.mail_from = mail_from
        self.timeout = timeout

    def _connect(self) -> smtplib.SMTP:
        if self.secure:
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        smtp.ehlo()
        if smtp.has_extn("starttls"):
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        return smtp

    def send(self, message: Message, gate: Gate | None = None) -> str:
        email = EmailMessage()
        email["From"] = self.mail_from
        email["To"] = message.address
        email["Subject"] = message.subject
        message_id = f"<examdesk-{message.delivery_id or 'm'}-{uuid.uuid4().hex}@examdesk>"
        email["Message-ID"] = message_id
        email.set_content(message.body)
        try:
            smtp = self._connect()
        except (OSError, smtplib.SMTPException) as error:
            raise TransportError(
                f"cannot reach the mail server: {error}", permanent=False, code="connect"
            ) from error
        # The server's answers may quote the address: the errors keep them masked.
        address = message.address
        try:
            if self.user:
                smtp.login(self.user, self.password or "")
            pass_gate(gate)
            smtp.send_message(email)
        except smtplib.SMTPRecipientsRefused as error:
            raise TransportError(
                scrub(f"address refused: {error}", address=address), permanent=True, code="550"
            ) from error
        except smtplib.SMTPAuthenticationError as error:
            raise TransportError(
                scrub(f"mail server refused the login: {error}", address=address),
                permanent=True,
                code=str(error.smtp_code),
            ) from error
        except smtplib.SMTPResponseException as error:
            raise TransportError(
                scrub(f"mail server said {error.smtp_code} {error.smtp_error!r}", address=address),
                permanent=error.smtp_code >= 500,
                code=str(error.smtp_code),
            ) from error
        except (OSError, smtplib.SMTPServerDisconnected) as error:
            # The message may have been handed over before the connection broke.
            raise OutcomeUnknown(
                scrub(f"mail server stopped answering: {error}", address=address)
            ) from error
        finally:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                smtp.quit()
        return message_id

    def find_sent(self, message: Message, *, since: datetime) -> str | None:
        raise NotImplementedError("this channel cannot look up what it sent")
