"""The tests a form's test field offers while the user types: code or title, running first.

Support staff see every test, a teacher only the tests they teach (R15), anyone else none.
Order: running now (started, exam time not over), then upcoming by start, then past ones,
the most recent first: on exam day the test wanted is nearly always among the first few.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, case, false, func, or_, select, true
from sqlalchemy.orm import Session

from commands.permissions import SUPPORT, TEACHER, role_of
from store.models import StaffTest, Test

# Slack shows at most 100 options in a select menu.
MOST = 100
# What is typed is a code or a few words of a title; more is not a search.
TYPED_LIMIT = 100


@dataclass(frozen=True)
class Choice:
    code: str
    title: str
    start: datetime
    running: bool


def matching(
    *, db_session: Session, user_id: str, typed: str, now: datetime, most: int = MOST
) -> list[Choice]:
    """The tests ``user_id`` may pick whose code or title contains ``typed`` (any case)."""
    typed = " ".join(typed.split())[:TYPED_LIMIT]
    return _choices(db_session, user_id, now, _contains(typed) if typed else true(), most=most)


def one(*, db_session: Session, user_id: str, code: str, now: datetime) -> Choice | None:
    """The test ``code`` as a choice (a form opened for that test), None when there is
    none or ``user_id`` may not pick it."""
    found = _choices(db_session, user_id, now, Test.code == code.strip().upper(), most=1)
    return found[0] if found else None


def _choices(
    db_session: Session, user_id: str, now: datetime, where: ColumnElement[bool], *, most: int
) -> list[Choice]:
    role = role_of(db_session=db_session, user_id=user_id)
    if role not in (SUPPORT, TEACHER):
        return []
    running = and_(Test.start <= now, Test.end > now)
    upcoming = Test.start > now
    query = select(Test.code, Test.title, Test.start, running.label("running")).where(where)
    if role == TEACHER:
        query = query.join(
            StaffTest, and_(StaffTest.test_id == Test.id, StaffTest.user_id == user_id)
        )
    rank = case((running, 0), (upcoming, 1), else_=2)
    query = query.order_by(
        rank,
        # Upcoming by start; past ones (all NULL here) by the next key, latest first.
        case((rank < 2, Test.start)),
        Test.start.desc(),
        Test.code,
    ).limit(most)
    return [
        Choice(code=row.code, title=row.title, start=row.start, running=bool(row.running))
        for row in db_session.execute(query)
    ]


def _contains(typed: str) -> ColumnElement[bool]:
    """Code or title holds ``typed`` in any case. ``lower()`` folds ASCII only on SQLite, so
    the typed text is also matched as written, in capitals and capitalised (``øko`` finds
    "Økonomi" there too)."""
    conditions: list[ColumnElement[bool]] = [false()]
    for column in (Test.code, Test.title):
        conditions.append(func.lower(column).like(_pattern(typed.lower()), escape="\\"))
        for variant in {typed, typed.upper(), typed.capitalize()}:
            conditions.append(column.like(_pattern(variant), escape="\\"))
    return or_(*conditions)


def _pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
