"""What the App Home shows a user: tests running now and next, open new deliveries and the
latest changes for support staff; a teacher's own tests; a plain explanation for others."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from commands import question_reports
from commands.errors import NotAllowed
from commands.permissions import SUPPORT, TEACHER, require_support, role_of
from commands.timing import ordinary_end, reopen_deadline
from notifications import outbox
from store.models import Candidate, Change, Reopening, StaffTest, Test

# The longest upload allowance (R1): a test whose exam time ended longer ago than this is over.
MAX_ALLOWANCE = timedelta(minutes=30)
NEXT_TESTS = 5
OPEN_DELIVERIES = 20
LATEST_CHANGES = 10
NOT_SENT = 5


@dataclass
class TestLine:
    code: str
    title: str
    kind: str
    start: datetime
    ordinary_end: datetime
    by_status: dict[str, int] = field(default_factory=dict)


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


@dataclass
class Home:
    role: str | None
    # For someone without a role: the core's own explanation of whom to ask (R15).
    explanation: str = ""
    # The Slack users the explanation names (``Reply.mentions``).
    mentions: tuple[str, ...] = ()
    running: list[TestLine] = field(default_factory=list)
    upcoming: list[TestLine] = field(default_factory=list)
    open_deliveries: list[OpenDelivery] = field(default_factory=list)
    changes: list[ChangeLine] = field(default_factory=list)
    # Teachers' error reports waiting for support, oldest first.
    open_reports: list[question_reports.ReportLine] = field(default_factory=list)
    # What the outbox gave up sending: (kind, reason), newest first.
    not_sent: list[tuple[str, str]] = field(default_factory=list)


def build(*, db_session: Session, user_id: str, now: datetime) -> Home:
    role = role_of(db_session=db_session, user_id=user_id)
    if role not in (SUPPORT, TEACHER):
        try:
            require_support(db_session=db_session, user_id=user_id, doing="see this page")
        except NotAllowed as refusal:
            return Home(role=None, explanation=refusal.message, mentions=refusal.mentions)
    own = None if role == SUPPORT else _own_test_ids(db_session, user_id)
    home = Home(
        role=role,
        running=_running(db_session, now, own),
        upcoming=_upcoming(db_session, now, own),
    )
    if role == SUPPORT:
        home.open_deliveries = _open_deliveries(db_session)
        home.changes = _latest_changes(db_session)
        home.open_reports = question_reports.reports(db_session, only_open=True)
        home.not_sent = [
            (message.kind, message.error_message or message.error_code or "")
            for message in outbox.failures(db_session, limit=NOT_SENT)
        ]
    return home


def _own_test_ids(db_session: Session, user_id: str) -> list[int]:
    return list(db_session.scalars(select(StaffTest.test_id).where(StaffTest.user_id == user_id)))


def _tests(db_session: Session, own: list[int] | None, *conditions: Any) -> list[Test]:
    query = select(Test).where(*conditions).order_by(Test.start, Test.code)
    if own is not None:
        query = query.where(Test.id.in_(own))
    return list(db_session.scalars(query))


def _running(db_session: Session, now: datetime, own: list[int] | None) -> list[TestLine]:
    tests = [
        t
        for t in _tests(db_session, own, Test.start <= now, Test.end >= now - MAX_ALLOWANCE)
        if ordinary_end(t) > now
    ]
    return _with_counts(db_session, tests)


def _upcoming(db_session: Session, now: datetime, own: list[int] | None) -> list[TestLine]:
    return _with_counts(db_session, _tests(db_session, own, Test.start > now)[:NEXT_TESTS])


def _with_counts(db_session: Session, tests: list[Test]) -> list[TestLine]:
    counts: dict[int, dict[str, int]] = {}
    if tests:
        for test_id, status, n in db_session.execute(
            select(Candidate.test_id, Candidate.status, func.count())
            .where(Candidate.test_id.in_([t.id for t in tests]))
            .group_by(Candidate.test_id, Candidate.status)
        ):
            counts.setdefault(test_id, {})[status] = n
    return [
        TestLine(
            code=t.code,
            title=t.title,
            kind=t.kind,
            start=t.start,
            ordinary_end=ordinary_end(t),
            by_status=counts.get(t.id, {}),
        )
        for t in tests
    ]


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
