"""Which channels a test's candidates are told on (R13), and the transports that carry them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from notifications.config import NotifierConfig
from notifications.sms import TwilioTransport
from notifications.transports import LogTransport, SmtpTransport, Transport, secret_value
from store.models import Test, TestKind

SMS = "sms"
EMAIL = "email"
SLACK = "slack"
# A home exam this long or shorter gets the upload allowance (R1) and SMS notices (R13).
SHORT_HOME_EXAM = timedelta(hours=6)


def outside_channel(test: Test) -> str:
    """R13: SMS for school exams and home exams of 6 hours or less; e-mail otherwise.

    Everyone gets the in-app notice as well; this is the channel that says one is waiting.
    """
    if test.kind == TestKind.SCHOOL:
        return SMS
    if test.kind == TestKind.HOME and test.end - test.start <= SHORT_HOME_EXAM:
        return SMS
    return EMAIL


@dataclass(frozen=True)
class Outside:
    """What the commands must know of the world outside the database: where candidates'
    pages are, how candidates reach support, which channels only write to the log (so a
    preview never promises an SMS that nobody will get), and where the change log and the
    events go (SLACK_SUPPORT_CHANNEL, WEBHOOK_URLS)."""

    public_url: str = "http://localhost:3000"
    support_contact: str | None = None
    # Channels (sms | email | slack) with no provider configured; None: not known here.
    logged: frozenset[str] | None = None
    support_channel: str | None = None
    webhook_urls: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> Outside:
        """As ``transports.build_transports`` decides which channels really send."""
        sms = bool(settings.twilio_account_sid and settings.twilio_auth_token)
        email = bool(settings.smtp_url)
        slack = bool(settings.slack_bot_token)
        live = ((SMS, sms), (EMAIL, email), (SLACK, slack))
        return cls(
            public_url=settings.public_url,
            support_contact=settings.support_contact,
            logged=frozenset(channel for channel, on in live if not on),
            support_channel=settings.slack_support_channel,
            webhook_urls=tuple(dict.fromkeys(settings.webhook_urls.split())),
        )

    def logs_only(self, channel: str) -> bool:
        return self.logged is not None and channel in self.logged


def build_transports(
    settings: NotifierConfig, *, send_timeout: float, pool_size: int
) -> dict[str, Transport]:
    transports: dict[str, Transport] = {}
    sid, token = settings.twilio_account_sid, secret_value(settings.twilio_auth_token)
    if sid and token:
        transports["sms"] = TwilioTransport.from_settings(
            settings, timeout=send_timeout, pool_size=pool_size
        )
    else:
        transports["sms"] = LogTransport("sms")
    smtp_url = secret_value(settings.smtp_url)
    if smtp_url:
        if not settings.mail_from:
            raise ValueError("MAIL_FROM must be set when SMTP_URL is set")
        transports["email"] = SmtpTransport(smtp_url, settings.mail_from, timeout=send_timeout)
    else:
        transports["email"] = LogTransport("email")
    return transports
