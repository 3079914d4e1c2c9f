"""Which channels a test's candidates are told on (R13)."""

from __future__ import annotations

from datetime import timedelta

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
