"""How a candidate's end time and deadline are made up (R1–R3, R7)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from notifications.channels import SHORT_HOME_EXAM
from store.models import Candidate, Reopening, ReopenMode, Test, TestKind


def exam_duration(test: Test) -> timedelta:
    return test.end - test.start


def upload_allowance_minutes(test: Test) -> int:
    """R1: 30 min for home exams of 6 h or less with upload, 15 for school exams with upload."""
    if not test.has_upload:
        return 0
    if test.kind == TestKind.HOME and exam_duration(test) <= SHORT_HOME_EXAM:
        return 30
    if test.kind == TestKind.SCHOOL:
        return 15
    return 0


def ordinary_end(test: Test) -> datetime:
    """R1: end of exam time plus the upload allowance."""
    return test.end + timedelta(minutes=upload_allowance_minutes(test))


def ordinary_end_passed(test: Test, now: datetime) -> bool:
    """At the very moment of the ordinary end the test counts as closed (R5, R6)."""
    return now >= ordinary_end(test)


def individual_end(candidate: Candidate) -> datetime | None:
    """R2: the later of postponed and individual deadline, if any."""
    deadlines = (candidate.postponed_deadline, candidate.individual_deadline)
    return max((d for d in deadlines if d), default=None)


def end_time(candidate: Candidate, test: Test) -> datetime:
    """R3: (individual end, else ordinary end) + accommodation + incident extra time."""
    start = individual_end(candidate) or ordinary_end(test)
    return start + timedelta(minutes=candidate.extra_minutes + candidate.incident_minutes)


def reopen_deadline(reopening: Reopening, candidate: Candidate, test: Test) -> datetime | None:
    """R6: until-close follows the candidate's end time; no-limit has none."""
    if reopening.mode == ReopenMode.UNTIL_CLOSE:
        return end_time(candidate, test)
    return reopening.deadline


def active_reopening(candidate: Candidate) -> Reopening | None:
    return next((r for r in candidate.reopenings if r.closed_at is None), None)


@dataclass(frozen=True)
class Timing:
    """Everything that makes up one candidate's deadline, computed once."""

    exam_end: datetime
    allowance_minutes: int
    ordinary_end: datetime
    individual_end: datetime | None
    extra_minutes: int
    incident_minutes: int
    end_time: datetime
    reopening: Reopening | None
    reopen_deadline: datetime | None

    @property
    def deadline(self) -> datetime | None:
        """R7: the reopen deadline while reopened (None for no-limit), else the end time."""
        return self.reopen_deadline if self.reopening else self.end_time


def timing(candidate: Candidate, test: Test) -> Timing:
    reopening = active_reopening(candidate)
    return Timing(
        exam_end=test.end,
        allowance_minutes=upload_allowance_minutes(test),
        ordinary_end=ordinary_end(test),
        individual_end=individual_end(candidate),
        extra_minutes=candidate.extra_minutes,
        incident_minutes=candidate.incident_minutes,
        end_time=end_time(candidate, test),
        reopening=reopening,
        reopen_deadline=reopen_deadline(reopening, candidate, test) if reopening else None,
    )
