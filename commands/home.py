"""What the App Home shows a user. Support staff: today's tests running now and later (in the
office's day), open error reports, deliveries to candidates that failed, what the outbox gave
up sending, who is open for new delivery and the latest changes. A teacher: their own tests
today and next, and their tests' error reports with their state. Others: whom to ask.

Nothing here holds a phone number, an e-mail address or a page link: providers' and
the outbox's reasons are masked (``notifications.masking.scrub``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from commands import exam_today, question_reports
from commands.errors import NotAllowed
from commands.exam_today import TestState
from commands.permissions import SUPPORT, TEACHER, require_support, role_of
from commands.timing import reopen_deadline
from notifications import outbox
from notifications.masking import scrub
from store.models import (
    Candidate,
    Change,
    Delivery,
    DeliveryStatus,
    Reopening,
    StaffTest,
    Test,
)

NEXT_TESTS = 5
OPEN_DELIVERIES = 20
LATEST_CHANGES = 10
NOT_SENT = 5
FAILING = 10
TEACHER_REPORTS = 10
FAILED_STATES = (DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED)


@dataclass
class OpenDelivery:
    test: str
    candidate: str
    mode: str
    deadline: datetime | None
    opened_by: str


@dataclass
class ChangeLine:
    at: datetime
    actor: str
    action: str
    test: str | None
    candidate: str | None
    reason: str


@dataclass(frozen=True)
class FailingDelivery:
    """A message to a candidate that did not arrive; ``reason`` is masked."""

    test: str
    candidate: str
    channel: str
    status: str
    reason: str


@dataclass
class Home:
    role: str | None
    now: datetime | None = None
    # For someone without a role: the core's own explanation of whom to ask (R15).
    explanation: str = ""
    # The Slack users the explanation names (``Reply.mentions``).
    mentions: tuple[str, ...] = ()
    # Today's tests (the office's day) running now, and those starting later today.
    running: list[TestState] = field(default_factory=list)
    upcoming: list[TestState] = field(default_factory=list)
    # After today: a teacher's next own tests; for support the next test, when none is left
    # today.
    coming: list[TestState] = field(default_factory=list)
    open_deliveries: list[OpenDelivery] = field(default_factory=list)
    changes: list[ChangeLine] = field(default_factory=list)
    # Teachers' error reports waiting for support, oldest first.
    open_reports: list[question_reports.ReportLine] = field(default_factory=list)
    # A teacher's: the reports on their tests in any state, newest first.
    reports: list[question_reports.ReportLine] = field(default_factory=list)
    # What the outbox gave up sending: (kind, masked reason), newest first.
    not_sent: list[tuple[str, str]] = field(default_factory=list)
    # Today's messages to candidates that failed, newest first, and how many there are.
    failing: list[FailingDelivery] = field(default_factory=list)
    failing_count: int = 0


def build(*, db_session: Session, user_id: str, now: datetime, tz: ZoneInfo | None = None) -> Home:
    tz = tz or ZoneInfo("Europe/Oslo")
    role = role_of(db_session=db_session, user_id=user_id)
    if role not in (SUPPORT, TEACHER):
        try:
            require_support(db_session=db_session, user_id=user_id, doing="see this page")
        except NotAllowed as refusal:
            return Home(role=None, explanation=refusal.message, mentions=refusal.mentions)
    teacher = user_id if role == TEACHER else None
    today = exam_today.today(db_session, now=now, tz=tz, teacher=teacher)
    home = Home(
        role=role,
        now=now,
        running=[t for t in today if t.running(now)],
        upcoming=[t for t in today if t.start > now],
    )
    if role == TEACHER:
        home.coming = _coming(db_session, now, tz, teacher, NEXT_TESTS)
        home.reports = _teacher_reports(db_session, user_id)
        return home
    if not home.upcoming:
        home.coming = _coming(db_session, now, tz, None, 1)
    home.open_deliveries = _open_deliveries(db_session)
    home.changes = _latest_changes(db_session)
    home.open_reports = question_reports.reports(db_session, only_open=True)
    home.not_sent = [
        (message.kind, scrub(message.error_message or message.error_code or ""))
        for message in outbox.failures(db_session, limit=NOT_SENT)
    ]
    home.failing, home.failing_count = _failing(db_session, [t.code for t in today])
    return home


def _coming(
    db_session: Session, now: datetime, tz: ZoneInfo, teacher: str | None, most: int
) -> list[TestState]:
    tests = exam_today.after_today(db_session, now=now, tz=tz, teacher=teacher, most=most)
    return exam_today.states(db_session, tests)


def _teacher_reports(db_session: Session, user_id: str) -> list[question_reports.ReportLine]:
    """The reports on the teacher's tests and those they made, newest first."""
    own = set(
        db_session.scalars(
            select(Test.code)
            .join(StaffTest, StaffTest.test_id == Test.id)
            .where(StaffTest.user_id == user_id)
        )
    )
    found = question_reports.reports(db_session)
    return [r for r in reversed(found) if r.test in own or r.reported_by == user_id][
        :TEACHER_REPORTS
    ]


def _failing(db_session: Session, codes: list[str]) -> tuple[list[FailingDelivery], int]:
    if not codes:
        return [], 0
    condition = (Delivery.status.in_(FAILED_STATES), Test.code.in_(codes))
    joined = (
        select(Delivery)
        .join(Candidate, Candidate.id == Delivery.candidate_id)
        .join(Test, Test.id == Candidate.test_id)
        .where(*condition)
    )
    count = db_session.scalar(select(func.count()).select_from(joined.subquery()))
    if not count:
        return [], 0
    rows = db_session.execute(
        select(
            Test.code,
            Candidate.number,
            Delivery.channel,
            Delivery.status,
            Delivery.error_code,
            Delivery.error_message,
        )
        .select_from(Delivery)
        .join(Candidate, Candidate.id == Delivery.candidate_id)
        .join(Test, Test.id == Candidate.test_id)
        .where(*condition)
        .order_by(Delivery.updated_at.desc(), Delivery.id.desc())
        .limit(FAILING)
    ).all()
    return [
        FailingDelivery(
            test=code,
            candidate=number,
            channel=channel,
            status=status,
            reason=scrub(message or error_code or ""),
        )
        for code, number, channel, status, error_code, message in rows
    ], count


def _open_deliveries(db_session: Session) -> list[OpenDelivery]:
    rows = db_session.execute(
        select(Reopening, Candidate, Test)
        .join(Candidate, Candidate.id == Reopening.candidate_id)
        .join(Test, Test.id == Candidate.test_id)
        .where(Reopening.closed_at.is_(None))
    ).all()
    items = [
        OpenDelivery(
            test=test.code,
            candidate=candidate.number,
            mode=reopening.mode,
            deadline=reopen_deadline(reopening, candidate, test),
            opened_by=reopening.opened_by,
        )
        for reopening, candidate, test in rows
    ]
    # Soonest deadline first; no-limit ones (no deadline) last, they need someone to close them.
    items.sort(
        key=lambda d: (d.deadline is None, d.deadline.timestamp() if d.deadline else 0, d.test)
    )
    return items[:OPEN_DELIVERIES]


def _latest_changes(db_session: Session) -> list[ChangeLine]:
    candidate = aliased(Candidate)
    rows = db_session.execute(
        select(Change, Test.code, candidate.number)
        .outerjoin(Test, Test.id == Change.test_id)
        .outerjoin(candidate, candidate.id == Change.candidate_id)
        .order_by(Change.at.desc(), Change.id.desc())
        .limit(LATEST_CHANGES)
    ).all()
    return [
        ChangeLine(
            at=change.at,
            actor=change.actor,
            action=change.action,
            test=code,
            candidate=number,
            reason=change.reason,
        )
        for change, code, number in rows
    ]
