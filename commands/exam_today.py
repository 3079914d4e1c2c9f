"""`/exam` alone: today's tests (support: all of them; a teacher: those they teach, R15) with
their state, and the same lines for the App Home.

"Today" is the exam office's day in its zone, from local midnight to the next (23 or 25 hours
on the days the clocks change). A test is today's when its time, up to its ordinary end,
touches that day. Every count comes from one round trip of grouped queries over the tests'
indexes (candidates by test and status, open reopenings, notices, open reports): nothing
walks a test's candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import String, bindparam, func, literal, select, type_coerce, union_all
from sqlalchemy.orm import Session

from commands.context import Ctx
from commands.language import _, ngettext
from commands.permissions import SUPPORT, TEACHER, require_support, role_of
from commands.reply import Reply
from commands.timeparse import format_time, iso
from commands.timing import ordinary_end
from store.models import (
    Candidate,
    CandidateStatus,
    Notice,
    QuestionErrorReport,
    Reopening,
    ReportState,
    StaffTest,
    Test,
)

# The longest upload allowance (R1): a test whose exam time ended longer ago than this is over.
MAX_ALLOWANCE = timedelta(minutes=30)


@dataclass(frozen=True)
class TestState:
    code: str
    title: str
    kind: str
    start: datetime
    ordinary_end: datetime
    by_status: dict[str, int]
    open_reopenings: int
    notices: int
    open_reports: int

    @property
    def candidates(self) -> int:
        return sum(self.by_status.values())

    def running(self, now: datetime) -> bool:
        return self.start <= now < self.ordinary_end

    def as_json(self, tz: ZoneInfo) -> dict[str, Any]:
        return {
            "test": self.code,
            "title": self.title,
            "kind": self.kind,
            "start": iso(self.start, tz),
            "ordinary_end": iso(self.ordinary_end, tz),
            "candidates": self.candidates,
            "by_status": {s: self.by_status.get(s, 0) for s in CandidateStatus},
            "open_reopenings": self.open_reopenings,
            "notices": self.notices,
            "open_reports": self.open_reports,
        }


def day_of(now: datetime, tz: ZoneInfo) -> tuple[date, datetime, datetime]:
    """The office's day that ``now`` falls in, and its first and last moment (UTC, end
    excluded), right on the days the clocks change."""
    day = now.astimezone(tz).date()
    first = datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)
    after = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz).astimezone(UTC)
    return day, first, after


def tests_between(
    db_session: Session, first: datetime, after: datetime, *, teacher: str | None = None
) -> list[Test]:
    """The tests whose time up to the ordinary end touches [first, after), by start; only
    ``teacher``'s when given."""
    query = (
        select(Test)
        .where(Test.start < after, Test.end >= first - MAX_ALLOWANCE)
        .order_by(Test.start, Test.code)
    )
    if teacher is not None:
        query = query.join(StaffTest, StaffTest.test_id == Test.id).where(
            StaffTest.user_id == teacher
        )
    return [t for t in db_session.scalars(query) if ordinary_end(t) > first]


_IDS = bindparam("ids", expanding=True)
_c = Candidate.__table__.c
STATUS, REOPENED, NOTICES, REPORTS = "status", "reopened", "notices", "reports"
# Rows of (kind, test id, status, count). Open reopenings start from the few open ones
# ("+ 0" keeps SQLite from walking each test's candidates to probe them instead).
_COUNTS = union_all(
    select(literal(STATUS), _c.test_id, type_coerce(_c.status, String), func.count())
    .where(_c.test_id.in_(_IDS))
    .group_by(_c.test_id, _c.status),
    select(literal(REOPENED), Candidate.test_id, literal(""), func.count())
    .select_from(Reopening)
    .join(Candidate, Candidate.id == Reopening.candidate_id)
    .where(Reopening.closed_at.is_(None), (Candidate.test_id + 0).in_(_IDS))
    .group_by(Candidate.test_id),
    select(literal(NOTICES), Notice.test_id, literal(""), func.count())
    .where(Notice.test_id.in_(_IDS))
    .group_by(Notice.test_id),
    select(literal(REPORTS), QuestionErrorReport.test_id, literal(""), func.count())
    .where(QuestionErrorReport.test_id.in_(_IDS), QuestionErrorReport.state == ReportState.OPEN)
    .group_by(QuestionErrorReport.test_id),
)


def states(db_session: Session, tests: list[Test]) -> list[TestState]:
    """Each of ``tests`` with its counts, in the order given."""
    by_status: dict[int, dict[str, int]] = {t.id: {} for t in tests}
    other: dict[tuple[str, int], int] = {}
    if tests:
        rows = db_session.connection().execute(_COUNTS, {"ids": list(by_status)})
        for kind, test_id, status, count in rows:
            if kind == STATUS:
                by_status[test_id][status] = count
            else:
                other[kind, test_id] = count
    return [
        TestState(
            code=t.code,
            title=t.title,
            kind=t.kind,
            start=t.start,
            ordinary_end=ordinary_end(t),
            by_status=by_status[t.id],
            open_reopenings=other.get((REOPENED, t.id), 0),
            notices=other.get((NOTICES, t.id), 0),
            open_reports=other.get((REPORTS, t.id), 0),
        )
        for t in tests
    ]


def today(
    db_session: Session, *, now: datetime, tz: ZoneInfo, teacher: str | None = None
) -> list[TestState]:
    _day, first, after = day_of(now, tz)
    return states(db_session, tests_between(db_session, first, after, teacher=teacher))


def after_today(
    db_session: Session, *, now: datetime, tz: ZoneInfo, teacher: str | None = None, most: int
) -> list[Test]:
    """The first ``most`` tests starting after today (``teacher``'s when given), by start."""
    _day, _first, after = day_of(now, tz)
    query = select(Test).where(Test.start >= after).order_by(Test.start, Test.code).limit(most)
    if teacher is not None:
        query = query.join(StaffTest, StaffTest.test_id == Test.id).where(
            StaffTest.user_id == teacher
        )
    return list(db_session.scalars(query))


# ---------------------------------------------------------------- /exam alone


def line(state: TestState, tz: ZoneInfo, now: datetime) -> str:
    """One test's state in a sentence (the reply's text; Slack lays it out from data)."""
    when = _("{start} – ordinary end {end}").format(
        start=format_time(state.start, tz), end=format_time(state.ordinary_end, tz)
    )
    parts = [
        ngettext("{n} candidate", "{n} candidates", state.candidates).format(n=state.candidates),
        _("{not_started} not started, {started} started, {submitted} submitted").format(
            not_started=state.by_status.get(CandidateStatus.NOT_STARTED, 0),
            started=state.by_status.get(CandidateStatus.STARTED, 0),
            submitted=state.by_status.get(CandidateStatus.SUBMITTED, 0),
        ),
        ngettext(
            "{n} open for new delivery", "{n} open for new delivery", state.open_reopenings
        ).format(n=state.open_reopenings),
        ngettext("{n} notice", "{n} notices", state.notices).format(n=state.notices),
    ]
    if state.open_reports:
        parts.append(
            ngettext("{n} open error report", "{n} open error reports", state.open_reports).format(
                n=state.open_reports
            )
        )
    running = _("running now") if state.running(now) else ""
    return (
        f"{state.code} — {state.title} ({state.kind}) · {when}"
        + (f" · {running}" if running else "")
        + "\n  "
        + ", ".join(parts)
        + " · "
        + _("details: /exam {code}").format(code=state.code)
    )


def run(ctx: Ctx) -> Reply:
    db = ctx.db_session
    role = role_of(db_session=db, user_id=ctx.actor)
    if role not in (SUPPORT, TEACHER):
        require_support(db_session=db, user_id=ctx.actor, doing=_("see today's tests"))
    teacher = ctx.actor if role == TEACHER else None
    day, _first, _after = day_of(ctx.now, ctx.tz)
    found = today(db, now=ctx.now, tz=ctx.tz, teacher=teacher)
    data: dict[str, Any] = {
        "day": day.isoformat(),
        "mine": teacher is not None,
        "tests": [s.as_json(ctx.tz) for s in found],
        "running": [s.code for s in found if s.running(ctx.now)],
    }
    if not found:
        coming = next(iter(after_today(db, now=ctx.now, tz=ctx.tz, teacher=teacher, most=1)), None)
        text = (
            _("None of your tests is on today ({day}).")
            if teacher
            else _("No test is on today ({day}).")
        ).format(day=day.isoformat())
        if coming is not None:
            text += " " + _("The next is {code} at {start}.").format(
                code=coming.code, start=format_time(coming.start, ctx.tz)
            )
            data["next"] = {"test": coming.code, "start": iso(coming.start, ctx.tz)}
        text += " " + _("To see another test: /exam TEST (e.g. /exam TDT4100-2026H).")
        data["text"] = text
        return Reply(text=text, kind="today", data=data)
    head = (
        ngettext("Your test today ({day}):", "Your {n} tests today ({day}):", len(found))
        if teacher
        else ngettext("{n} test today ({day}):", "{n} tests today ({day}):", len(found))
    ).format(n=len(found), day=day.isoformat())
    lines = [head, *(line(s, ctx.tz, ctx.now) for s in found)]
    return Reply(text="\n".join(lines), kind="today", data=data)
