"""R9's sweep as plain rows: the one read of every candidate awaiting delivery.

Every sweep looks at every candidate still awaiting delivery (100,000 on a busy day); as ORM
objects that takes seconds of the server's time, which every command then waits behind.
So the sweep reads plain columns and works their deadline out here, by R2, R3 and R6 as
``commands.timing`` does for a Candidate (tests/test_delivery_queries.py holds the two to
the same answer).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from commands.timing import ordinary_end
from store.models import Candidate, CandidateStatus, Reopening, ReopenMode, Test, TestKind


class Awaiting(NamedTuple):
    candidate_id: int
    test: Test
    reopened: bool
    deadline: datetime | None  # R7; None for a no-limit reopening


def awaiting(db_session: Session) -> Iterator[Awaiting]:
    """Each candidate that is started, or open for new delivery, in a test that is not a
    thesis, with its deadline."""
    tests = {t.id: t for t in db_session.scalars(select(Test).where(Test.kind != TestKind.THESIS))}
    c, r = Candidate.__table__.c, Reopening.__table__.c
    rows = db_session.connection().execute(
        select(
            c.id,
            c.test_id,
            c.extra_minutes,
            c.incident_minutes,
            c.postponed_deadline,
            c.individual_deadline,
            r.mode,
            r.deadline,
        )
        .select_from(
            Candidate.__table__.join(Test.__table__, Test.id == c.test_id).outerjoin(
                Reopening.__table__, and_(r.candidate_id == c.id, r.closed_at.is_(None))
            )
        )
        .where(
            Test.kind != TestKind.THESIS,
            or_(c.status == CandidateStatus.STARTED, r.id.is_not(None)),
        )
    )
    for id_, test_id, extra, incident, postponed, individual, mode, reopen_by in rows:
        test = tests[test_id]
        own = max((d for d in (postponed, individual) if d), default=None)
        end = (own or ordinary_end(test)) + timedelta(minutes=extra + incident)
        if mode is None:
            yield Awaiting(id_, test, False, end)
        else:
            yield Awaiting(id_, test, True, end if mode == ReopenMode.UNTIL_CLOSE else reopen_by)
