"""Which channels a test's candidates are told on (R13), and the transports that carry them."""

from __future__ import annotations

from datetime import timedelta

from notifications.config import NotifierConfig
from notifications.sms import TwilioTransport
from notifications.transports import LogTransport, SmtpTransport, Transport, secret_value
from store.models import Test, TestKind

SMS = "sms"
EMAIL = "email"
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
