"""Which channels a test's candidates are told on (R13)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from store.models import Test

SMS = "sms"
EMAIL = "email"
SHORT_HOME_EXAM = timedelta(hours=6)


def outside_channel(test: Test) -> str:
    """R13: SMS for school exams and home exams of 6 hours or less; e-mail otherwise.

    Everyone gets the in-app notice as well; this is the channel that says one is waiting.
    """
    if test.kind == "school":
        return SMS
    if test.kind == "home" and test.end - test.start <= SHORT_HOME_EXAM:
        return SMS
    return EMAIL


@dataclass(frozen=True)
class Outside:
    """What the commands must know of the world outside the database: where candidates'
    pages are, how candidates reach support, and which channels only write to the log (so
    a preview never promises an SMS that nobody will get)."""

    public_url: str = "http://localhost:3000"
    support_contact: str | None = None
    # Channels (sms | email) with no provider configured; None: not known here.
    logged: frozenset[str] | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> Outside:
        """As ``transports.build_transports`` decides which channels really send."""
        sms = bool(settings.twilio_account_sid and settings.twilio_auth_token)
        email = bool(settings.smtp_url)
        return cls(
            public_url=settings.public_url,
            support_contact=settings.support_contact,
            logged=frozenset(c for c, live in ((SMS, sms), (EMAIL, email)) if not live),
        )

    def logs_only(self, channel: str) -> bool:
        return self.logged is not None and channel in self.logged
