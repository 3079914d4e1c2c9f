"""`/reopen`: new delivery for one candidate (R6, R7) and closing it (R8)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Connection, and_, bindparam, insert, select, update

from commands import audit
from commands.context import Ctx
from commands.errors import InvalidInput, Refused
from commands.lookup import (
    candidate_not_found,
    get_candidate,
    lock_candidates,
    parse_candidate_number,
)
from commands.permissions import test_for_support
from commands.reply import Confirm, Reply
from commands.timeparse import (
    format_time,
    iso,
    parse_duration,
    parse_local_datetime,
    relative_to_ordinary_end,
)
from commands.timing import (
    OPEN_REOPENING,
    PLAIN_COLUMNS,
    PlainDeadlines,
    active_reopening,
    ordinary_end,
    ordinary_end_passed,
    plain_deadlines,
    reopen_deadline_from,
    timing,
)
from store.models import AnyTest, Candidate, Reopening, Submission

USAGE = (
    "Usage: /reopen TEST CANDIDATE until-close|at DATETIME|in DURATION|no-limit [reason]\n"
    "       /reopen TEST CANDIDATE close current|reverted\n"
    "  until-close: open until the candidate's own end time (only before the ordinary end)\n"
    "  at DATETIME: open until YYYY-MM-DD HH:MM or HH:MM today (must be in the future)\n"
    "  in DURATION: open for 30, 45m, 1h30m from now (only after the ordinary end)\n"
    "  no-limit: open until someone closes it (not recommended; asks to confirm)\n"
    "  close current|reverted: close now and deliver the current answer or the one "
    "delivered before reopening\n"
    "  Example: /reopen TDT4100-2026H 10023 in 30m upload failed"
)
MODES = ("until-close", "at", "in", "no-limit")


def run(ctx: Ctx, args: list[str], *, confirmed: bool = False) -> Reply:
    if len(args) < 3:
        raise InvalidInput("Some parts are missing.", USAGE)
    test_code, number, mode, *rest = args
    if number.lower() == "all" or "," in number:
        raise InvalidInput("New delivery is opened for one candidate at a time.", USAGE)
    number = parse_candidate_number(number)
    mode = mode.lower()
    if mode == "close":
        if len(rest) != 1 or rest[0].lower() not in ("current", "reverted"):
            raise InvalidInput(
                "Say which answer to deliver: `close current` or `close reverted`.", USAGE
            )
        return close(ctx, test_code=test_code, number=number, choice=rest[0].lower())
    if mode not in MODES:
        raise InvalidInput(f"'{mode}' is not a way to reopen.", USAGE)
    deadline = None
    if mode == "at":
        deadline, rest = _parse_at(ctx, rest)
    elif mode == "in":
        if not rest:
            raise InvalidInput("Say for how long: `in 30m`.", USAGE)
        minutes = parse_duration(rest[0])
        if minutes == 0:
            raise InvalidInput("`in 0` would close it at once; give a duration, e.g. `in 30m`.")
        deadline = (ctx.now + timedelta(minutes=minutes)).replace(microsecond=0)
        rest = rest[1:]
    return reopen(
        ctx,
        test_code=test_code,
        number=number,
        mode=mode,
        deadline=deadline,
        reason=audit.check_reason(" ".join(rest)),
        confirmed=confirmed,
        command=" ".join(["/reopen", *args]),
    )


def _parse_at(ctx: Ctx, rest: list[str]) -> tuple:
    if not rest:
        raise InvalidInput("Say until when: `at 2026-12-01 15:30` or `at 15:30`.", USAGE)
    # `at HH:MM` or `at YYYY-MM-DD HH:MM`: a date is followed by a time.
    take = 2 if "-" in rest[0] and len(rest) >= 2 else 1
    return parse_local_datetime(" ".join(rest[:take]), tz=ctx.tz, now=ctx.now), rest[take:]


def reopen(
    ctx: Ctx,
    *,
    test_code: str,
    number: str,
    mode: str,
    deadline,
    reason: str,
    confirmed: bool,
    command: str,
) -> Reply:
    test = test_for_support(
        db_session=ctx.db_session, user_id=ctx.actor, test_code=test_code, doing="reopen delivery"
    )
    connection = ctx.db_session.connection()
    target = _target(connection, test, number)
    current = plain_deadlines(ordinary_end(test), *target.deadlines)
    _check_mode(ctx, test, number, current.end, mode, deadline)
    if mode == "no-limit" and not confirmed:
        return Reply(
            text=f"Reopening {number} of {test.code} with no time limit is not "
            "recommended: the answer is never delivered automatically, someone must close it "
            f"with `/reopen {test.code} {number} close current`. Nothing is changed "
            "until you confirm.",
            kind="confirm",
            confirm=Confirm(
                prompt=f"Open {number} of {test.code} for new delivery with no time limit?",
                command=command,
                button="Yes, no time limit",
            ),
        )
    reason = reason or "no reason given"
    before = _state_from(ctx, target.status, current)
    opened = {"mode": mode, "deadline": deadline, "opened_by": ctx.actor, "reason": reason}
    if target.reopening_id is None:
        opened |= {
            "candidate_id": target.id,
            "opened_at": ctx.now,
            "status_before": target.status,
            "submission_before_id": target.latest_submission_id,
        }
        connection.execute(_OPEN, opened)
    else:
        # Reopening again changes the open reopening; when it was opened stays.
        connection.execute(_REOPEN_AGAIN, {"open_id": target.reopening_id, **opened})
    reopen_by = reopen_deadline_from(mode, deadline, current.end)
    after = _state_from(ctx, target.status, PlainDeadlines(current.end, mode, reopen_by))
    change_id = audit.record(
        ctx,
        action="reopen",
        reason=reason,
        before=before,
        after=after,
        test=test,
        candidate_id=target.id,
    )
    due = _describe_deadline(ctx, reopen_by, test)
    return Reply(
        text=f"Candidate {number} of {test.code} is open for new delivery "
        f"({mode}) {due} (reason: {reason}).\nBefore: {describe(before, ctx)}\nNow: "
        f"{describe(after, ctx)}",
        kind="receipt",
        data={
            "test": test.code,
            "action": "reopen",
            "candidate": number,
            "before": before,
            "after": after,
        }
        | audit.undo_offer(change_id, ctx.now),
        log=[
            f"<@{ctx.actor}> reopened {test.code} candidate {number} ({mode}) {due}; why: {reason}"
        ],
        mentions=(ctx.actor,),
    )


class _Target(NamedTuple):
    id: int
    status: str
    deadlines: tuple  # a row of timing.PLAIN_COLUMNS: R2, R3 and the open reopening (R6)
    reopening_id: int | None
    latest_submission_id: int | None


def _target(connection: Connection, test: AnyTest, number: str) -> _Target:
    """The candidate to reopen as plain values: its deadlines, its open reopening and its
    latest delivery, in one statement (reopening is one of the commands used most on exam
    day, and each statement and ORM object costs more than the rest of it)."""
    params = {"of_test": test.id, "number": number}
    lock_candidates(connection, test=test, numbers=[number])
    row = connection.execute(_TARGET, params).first()
    if row is None:
        raise candidate_not_found(test, [number])
    id_, status, *deadlines, reopening_id, latest_submission_id = row
    return _Target(id_, status, tuple(deadlines), reopening_id, latest_submission_id)


def _check_mode(ctx: Ctx, test: AnyTest, number: str, end: datetime, mode: str, deadline) -> None:
    closed = ordinary_end_passed(test, ctx.now)
    ordinary = format_time(ordinary_end(test), ctx.tz)
    if mode == "until-close" and closed:
        raise Refused(
            f"until-close is only possible before the ordinary end of {test.code} ({ordinary}), "
            f"which has passed. Use `/reopen {test.code} {number} in 30m` or "
            f"`at HH:MM` instead."
        )
    if mode == "until-close" and end <= ctx.now:
        raise Refused(
            f"Candidate {number}'s own end time ({format_time(end, ctx.tz)}) has passed, so "
            f"until-close would close at once. Use `/reopen {test.code} {number} at HH:MM` "
            "instead."
        )
    if mode == "in" and not closed:
        raise Refused(
            f"`in DURATION` is only possible after the ordinary end of {test.code} ({ordinary})."
            f" Before it, give extra time (`/incident-time {test.code} {number} add "
            f"15`) or use `until-close` or `at HH:MM`."
        )
    if mode == "at" and deadline <= ctx.now:
        raise Refused(f"{format_time(deadline, ctx.tz)} is not in the future. Give a later time.")


def close(ctx: Ctx, *, test_code: str, number: str, choice: str) -> Reply:
    """R8: end the reopening now and deliver the current or the earlier answer."""
    db = ctx.db_session
    test = test_for_support(
        db_session=db, user_id=ctx.actor, test_code=test_code, doing="close new delivery"
    )
    candidate = get_candidate(db_session=db, test=test, number=number, lock=True)
    reopening = active_reopening(candidate)
    if reopening is None:
        raise Refused(
            f"Candidate {candidate.number} of {test.code} is not open for new delivery, so "
            "there is nothing to close. See `/candidate` for the status."
        )
    # An earlier delivery is one recorded here, or a "submitted" status from the registry.
    delivered_before = (
        reopening.submission_before_id is not None or reopening.status_before == "submitted"
    )
    if choice == "reverted" and not delivered_before:
        raise Refused(
            f"Candidate {candidate.number} had delivered nothing before the reopening, so "
            f"there is no earlier version. Use `/reopen {test.code} {candidate.number} close "
            "current`."
        )
    before = state(ctx, candidate, test)
    close_reopening(ctx, candidate, reopening, choice=choice)
    after = state(ctx, candidate, test)
    audit.record(
        ctx,
        action=f"close_{choice}",
        reason=f"close {choice}",
        before=before,
        after=after,
        candidate=candidate,
    )
    which = "the current answer" if choice == "current" else "the answer delivered before"
    return Reply(
        text=f"New delivery for {candidate.number} of {test.code} is closed; {which} is "
        f"delivered and the status is submitted.\nBefore: {describe(before, ctx)}\nNow: "
        f"{describe(after, ctx)}",
        kind="receipt",
        data={
            "test": test.code,
            "action": "close",
            "candidate": candidate.number,
            "before": before,
            "after": after,
        },
        log=[
            f"<@{ctx.actor}> closed new delivery for {test.code} candidate "
            f"{candidate.number}, delivered {which}"
        ],
        mentions=(ctx.actor,),
    )


def close_reopening(ctx: Ctx, candidate: Candidate, reopening: Reopening, *, choice: str) -> None:
    reopening.closed_at = ctx.now
    reopening.closed_by = ctx.actor
    reopening.close_choice = choice
    ctx.db_session.add(
        Submission(
            candidate_id=candidate.id,
            at=ctx.now,
            source=f"closed_{choice}",
            by=ctx.actor,
            copy_of_id=reopening.submission_before_id if choice == "reverted" else None,
        )
    )
    candidate.status = "submitted"
    candidate.submitted_at = ctx.now
    ctx.db_session.flush()


# Built once: building a statement costs more than running it.
_c, _r, _s = Candidate.__table__.c, Reopening.__table__.c, Submission.__table__.c
_WHICH = and_(_c.test_id == bindparam("of_test"), _c.number == bindparam("number"))
_TARGET = (
    select(
        _c.id,
        _c.status,
        *PLAIN_COLUMNS,
        _r.id,
        select(_s.id)
        .where(_s.candidate_id == _c.id)
        .order_by(_s.id.desc())
        .limit(1)
        .scalar_subquery(),
    )
    .select_from(Candidate.__table__.outerjoin(Reopening.__table__, OPEN_REOPENING))
    .where(_WHICH)
)
_OPEN = insert(Reopening.__table__)
_REOPEN_AGAIN = (
    update(Reopening.__table__)
    .where(_r.id == bindparam("open_id"))
    .values(
        mode=bindparam("mode"),
        deadline=bindparam("deadline"),
        opened_by=bindparam("opened_by"),
        reason=bindparam("reason"),
    )
)


def state(ctx: Ctx, candidate: Candidate, test: AnyTest) -> dict:
    """What the change record keeps of ``candidate`` now (R7)."""
    t = timing(candidate, test)
    reopening = t.reopening
    return _state_from(
        ctx,
        candidate.status,
        PlainDeadlines(t.end_time, reopening and reopening.mode, t.reopen_deadline),
    )


def _state_from(ctx: Ctx, status: str, deadlines: PlainDeadlines) -> dict:
    """What the change record keeps of a candidate's status and deadline (R7)."""
    reopened = deadlines.reopen_mode is not None
    return {
        "status": status,
        "new_delivery": {
            "mode": deadlines.reopen_mode,
            "deadline": iso(deadlines.reopen_deadline, ctx.tz),
        }
        if reopened
        else None,
        "deadline": iso(deadlines.reopen_deadline if reopened else deadlines.end, ctx.tz),
    }


def describe(state: dict, ctx: Ctx) -> str:
    nd = state["new_delivery"]
    reopened = "not open for new delivery" if nd is None else f"new delivery {nd['mode']}"
    due = state["deadline"]
    deadline = format_time(datetime.fromisoformat(due), ctx.tz) if due else "none (no limit)"
    return f"{state['status']}, {reopened}, deadline {deadline}"


def _describe_deadline(ctx: Ctx, deadline, test: AnyTest) -> str:
    if deadline is None:
        return "with no time limit"
    relative = relative_to_ordinary_end(ordinary_end(test), deadline)
    return f"until {format_time(deadline, ctx.tz)} ({relative})"
