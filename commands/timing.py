"""How a candidate's end time and deadline are made up (R1–R3, R7)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple, overload

from sqlalchemy import and_

from notifications.channels import SHORT_HOME_EXAM
from store.models import (
    AnyCandidate,
    AnyReopening,
    AnyTest,
    Candidate,
    PlainCandidate,
    PlainReopening,
    Reopening,
    ReopenMode,
    TestKind,
)


def exam_duration(test: AnyTest) -> timedelta:
    return test.end - test.start


def upload_allowance_minutes(test: AnyTest) -> int:
    """R1: 30 min for home exams of 6 h or less with upload, 15 for school exams with upload."""
    if not test.has_upload:
        return 0
    if test.kind == TestKind.HOME and exam_duration(test) <= SHORT_HOME_EXAM:
        return 30
    if test.kind == TestKind.SCHOOL:
        return 15
    return 0


def ordinary_end(test: AnyTest) -> datetime:
    """R1: end of exam time plus the upload allowance."""
    return test.end + timedelta(minutes=upload_allowance_minutes(test))


def ordinary_end_passed(test: AnyTest, now: datetime) -> bool:
    """At the very moment of the ordinary end the test counts as closed (R5, R6)."""
    return now >= ordinary_end(test)


def individual_end(candidate: AnyCandidate) -> datetime | None:
    """R2: the later of postponed and individual deadline, if any."""
    return individual_end_from(candidate.postponed_deadline, candidate.individual_deadline)


def individual_end_from(postponed: datetime | None, individual: datetime | None) -> datetime | None:
    """R2 on plain values."""
    return max((d for d in (postponed, individual) if d), default=None)


def end_time(candidate: AnyCandidate, test: AnyTest) -> datetime:
    """R3: (individual end, else ordinary end) + accommodation + incident extra time."""
    return end_time_from(
        ordinary_end(test),
        individual_end(candidate),
        candidate.extra_minutes,
        candidate.incident_minutes,
    )


def end_time_from(
    ordinary: datetime, individual: datetime | None, extra_minutes: int, incident_minutes: int
) -> datetime:
    """R2, R3 on plain values, for bulk paths that do not load whole candidates."""
    return (individual or ordinary) + timedelta(minutes=extra_minutes + incident_minutes)


def reopen_deadline(
    reopening: AnyReopening, candidate: AnyCandidate, test: AnyTest
) -> datetime | None:
    """R6: until-close follows the candidate's end time; no-limit has none."""
    return reopen_deadline_from(reopening.mode, reopening.deadline, end_time(candidate, test))


def reopen_deadline_from(mode: str, deadline: datetime | None, end: datetime) -> datetime | None:
    """R6 on plain values, ``end`` being the candidate's end time (R3)."""
    return end if mode == ReopenMode.UNTIL_CLOSE else deadline


# What R2, R3 and R6 read of a candidate and its open reopening (mode and deadline are None
# without one), for bulk paths that select plain rows instead of loading ORM objects.
_c, _r = Candidate.__table__.c, Reopening.__table__.c
PLAIN_COLUMNS = (
    _c.extra_minutes,
    _c.incident_minutes,
    _c.postponed_deadline,
    _c.individual_deadline,
    _r.mode,
    _r.deadline,
)


# How PLAIN_COLUMNS' reopening is joined: the candidate's open one (at most one, R6:
# uq_reopenings_active), outer-joined so a candidate without one still comes.
OPEN_REOPENING = and_(_r.candidate_id == _c.id, _r.closed_at.is_(None))


class PlainDeadlines(NamedTuple):
    end: datetime  # R3
    reopen_mode: str | None  # None: not reopened
    reopen_deadline: datetime | None  # R6; None for no-limit and when not reopened


def plain_deadlines(
    ordinary: datetime,
    extra: int,
    incident: int,
    postponed: datetime | None,
    individual: datetime | None,
    mode: str | None,
    reopen_by: datetime | None,
) -> PlainDeadlines:
    """A row of PLAIN_COLUMNS, with the test's ordinary end, as its deadlines."""
    end = end_time_from(ordinary, individual_end_from(postponed, individual), extra, incident)
    return PlainDeadlines(
        end, mode, None if mode is None else reopen_deadline_from(mode, reopen_by, end)
    )


@overload
def active_reopening(candidate: Candidate) -> Reopening | None: ...
@overload
def active_reopening(candidate: PlainCandidate) -> PlainReopening | None: ...
def active_reopening(candidate: AnyCandidate) -> AnyReopening | None:
    # Overloaded: the paths that close a reopening get the ORM object they change.
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
    reopening: AnyReopening | None
    reopen_deadline: datetime | None

    @property
    def deadline(self) -> datetime | None:
        """R7: the reopen deadline while reopened (None for no-limit), else the end time."""
        return self.reopen_deadline if self.reopening else self.end_time


def timing(candidate: AnyCandidate, test: AnyTest) -> Timing:
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
