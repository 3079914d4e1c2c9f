"""When the last answer of a test is in, its teachers are told that grading can start.

From the exam office's pages (seed 004): graders must know which candidates delivered after
the ordinary end. The message goes through the outbox under a key of its own per test and
teacher, so each teacher gets it once, across restarts and however many sweeps see it.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from commands.context import Ctx
from commands.exam_overview import grading_state
from commands.language import _
from commands.language import number as number_of
from commands.timeparse import format_duration, format_time
from commands.timing import ordinary_end
from notifications import outbox
from store.models import Candidate, CandidateStatus, OutboxMessage, Staff, StaffTest, Test

# Tests whose exam time ended longer ago than this are not looked at again.
LOOKBACK = timedelta(days=14)
LATE_LISTED = 40


def announce_ready(ctx: Ctx) -> int:
    """Write the message for every teacher of a test whose grading can now start and who has
    not had it; how many were written."""
    db = ctx.db_session
    recent = db.scalars(
        select(Test).where(Test.end >= ctx.now - LOOKBACK, Test.end <= ctx.now).order_by(Test.id)
    )
    written = 0
    for test in recent:
        teachers = _teachers_not_told(ctx, test)
        if not teachers:
            continue
        end = ordinary_end(test)
        if not grading_state(ctx, test, end)["can_start"]:
            continue
        text = ready_text(ctx, test)
        for user in teachers:
            outbox.enqueue(
                db,
                kind=outbox.SLACK_POST,
                target=user,
                payload={"method": "chat.postMessage", "args": {"channel": user, "text": text}},
                key=_key(test, user),
            )
            written += 1
    return written


def ready_text(ctx: Ctx, test: Test) -> str:
    end = ordinary_end(test)
    late = ctx.db_session.execute(
        select(Candidate.number, Candidate.submitted_at)
        .where(
            Candidate.test_id == test.id,
            Candidate.status == CandidateStatus.SUBMITTED,
            Candidate.submitted_at > end,
        )
        .order_by(Candidate.number)
    ).all()
    head = _("All answers of {test} are in; grading can start.").format(test=test.code)
    if not late:
        return f"{head} " + _("Nobody delivered after the ordinary end ({time}).").format(
            time=format_time(end, ctx.tz)
        )
    shown = ", ".join(
        f"{number} (+{format_duration(max(1, round((at - end) / timedelta(minutes=1))))})"
        for number, at in late[:LATE_LISTED]
    )
    more = (
        " " + _("… and {n} more").format(n=number_of(len(late) - LATE_LISTED))
        if len(late) > LATE_LISTED
        else ""
    )
    return f"{head} " + _(
        "Delivered after the ordinary end ({time}): {shown}. The whole list with the reasons: "
        "`/exam {test} report`."
    ).format(time=format_time(end, ctx.tz), shown=shown + more, test=test.code)


def _teachers_not_told(ctx: Ctx, test: Test) -> list[str]:
    teachers = list(
        ctx.db_session.scalars(
            select(StaffTest.user_id)
            .join(Staff, Staff.user_id == StaffTest.user_id)
            .where(StaffTest.test_id == test.id, Staff.role == "teacher")
            .order_by(StaffTest.user_id)
        )
    )
    told = set(
        ctx.db_session.scalars(
            select(OutboxMessage.key).where(
                OutboxMessage.key.in_([_key(test, u) for u in teachers])
            )
        )
    )
    return [u for u in teachers if _key(test, u) not in told]


def _key(test: Test, user: str) -> str:
    return f"grading-ready:{test.id}:{user}"
