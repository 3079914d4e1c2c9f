"""`/reopen`: new delivery for one candidate (R6, R7) and closing it (R8)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from commands import audit
from commands.candidate_view import status_label
from commands.context import Ctx
from commands.errors import InvalidInput, Refused, concerning
from commands.language import N_, _, current
from commands.lookup import get_candidate, parse_candidate_number
from commands.permissions import test_for_support
from commands.reply import Confirm, Reply
from commands.tell_candidates import tell, told_line
from commands.timeparse import (
    duration_words,
    format_time,
    iso,
    parse_duration,
    parse_local_datetime,
    relative_to_ordinary_end,
)
from commands.timing import (
    active_reopening,
    end_time,
    ordinary_end,
    ordinary_end_passed,
    timing,
)
from notifications.candidate_messages import DELIVERED, REOPENED
from store.models import Candidate, CandidateStatus, Reopening, ReopenMode, Submission, Test

USAGE = N_(
    "Usage: /reopen TEST CANDIDATE until-close|at DATETIME|in DURATION|no-limit reason\n"
    "       /reopen TEST CANDIDATE close current|reverted [reason]\n"
    "  until-close: open until the candidate's own end time (only before the ordinary end)\n"
    "  at DATETIME: open until YYYY-MM-DD HH:MM or HH:MM today (must be in the future;\n"
    "    more than 14 days ahead asks to confirm)\n"
    "  in DURATION: open for 30, 45m, 1h30m from now (only after the ordinary end)\n"
    "  no-limit: open until someone closes it (not recommended; asks to confirm)\n"
    "  close current|reverted: close now and deliver the current answer or the one "
    "delivered before reopening\n"
    "  The candidate is told by message, unless the reason ends with --quiet.\n"
    "  Example: /reopen TDT4100-2026H 10023 in 30m upload failed"
)
MODES = tuple(ReopenMode)
# `at` further ahead than this is more likely a typo in the date: asked to confirm.
FAR_AHEAD = timedelta(days=14)


def run(ctx: Ctx, args: list[str], *, confirmed: bool = False) -> Reply:
    if len(args) < 3:
        raise InvalidInput(_("Some parts are missing."), USAGE)
    test_code, number, mode, *rest = args
    if number.lower() == "all" or "," in number:
        raise InvalidInput(
            _("New delivery is opened for one candidate at a time."), USAGE, field="candidate"
        )
    with concerning("candidate"):
        number = parse_candidate_number(number)
    mode = mode.lower()
    if mode == "close":
        if not rest or rest[0].lower() not in ("current", "reverted"):
            raise InvalidInput(
                _("Say which answer to deliver: `close current` or `close reverted`."),
                USAGE,
                field="mode",
            )
        with concerning("reason"):
            choice, words = rest[0].lower(), audit.check_reason(" ".join(rest[1:]).strip())
        quiet = words.lower().endswith(audit.QUIET)
        if quiet:
            words = words[: -len(audit.QUIET)].strip()
        # The choice is the reason closing records unless one is given.
        reason = words or f"close {choice}"
        return close(
            ctx, test_code=test_code, number=number, choice=choice, reason=reason, quiet=quiet
        )
    if mode not in MODES:
        raise InvalidInput(
            _("'{mode}' is not a way to reopen.").format(mode=mode), USAGE, field="mode"
        )
    deadline = None
    if mode == "at":
        with concerning("datetime"):
            deadline, rest = _parse_at(ctx, rest)
    elif mode == "in":
        if not rest:
            raise InvalidInput(_("Say for how long: `in 30m`."), USAGE, field="duration")
        amount, rest = duration_words(rest)
        with concerning("duration"):
            minutes = parse_duration(amount)
        if minutes == 0:
            raise InvalidInput(
                _("`in 0` would close it at once; give a duration, e.g. `in 30m`."),
                field="duration",
            )
        deadline = (ctx.now + timedelta(minutes=minutes)).replace(microsecond=0)
    with concerning("reason"):
        reason, quiet = audit.require_reason(" ".join(rest), USAGE)
    return reopen(
        ctx,
        test_code=test_code,
        number=number,
        mode=mode,
        deadline=deadline,
        reason=reason,
        confirmed=confirmed,
        command=" ".join(["/reopen", *args]),
        quiet=quiet,
    )


def _parse_at(ctx: Ctx, rest: list[str]) -> tuple:
    if not rest:
        raise InvalidInput(_("Say until when: `at 2026-12-01 15:30` or `at 15:30`."), USAGE)
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
    quiet: bool = False,
) -> Reply:
    test = test_for_support(
        db_session=ctx.db_session,
        user_id=ctx.actor,
        test_code=test_code,
        doing=_("reopen delivery"),
    )
    with concerning("candidate"):
        candidate = get_candidate(db_session=ctx.db_session, test=test, number=number, lock=True)
    _check_mode(ctx, test, number, end_time(candidate, test), mode, deadline)
    if not confirmed:
        ask = _confirm_first(ctx, test, number, mode, deadline, command)
        if ask is not None:
            return ask
    before = state(ctx, candidate, test)
    _open(ctx, candidate, mode=mode, deadline=deadline, reason=reason)
    after = state(ctx, candidate, test)
    change_id = audit.record(
        ctx,
        action="reopen",
        reason=reason,
        before=before,
        after=after,
        test=test,
        candidate_id=candidate.id,
    )
    due = _describe_deadline(ctx, timing(candidate, test).reopen_deadline, test)
    told = 0 if quiet else tell(ctx, test=test, candidates=[candidate], change=REOPENED)
    told_text = told_line(told, quiet=quiet)
    return Reply(
        text=_(
            "Candidate {candidate} of {test} is open for new delivery ({mode}) {due} "
            "(reason: {reason})."
        ).format(candidate=number, test=test.code, mode=mode, due=due, reason=reason)
        + "\n"
        + _("Before: {state}").format(state=describe(before, ctx))
        + "\n"
        + _("Now: {state}").format(state=describe(after, ctx))
        + (f"\n{told_text}" if told_text else ""),
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
            _("{actor} reopened {test} candidate {candidate} ({mode}) {due}; why: {reason}").format(
                actor=f"<@{ctx.actor}>",
                test=test.code,
                candidate=number,
                mode=mode,
                due=due,
                reason=reason,
            )
        ],
        mentions=(ctx.actor,),
    )


def _confirm_first(
    ctx: Ctx, test: Test, number: str, mode: str, deadline: datetime | None, command: str
) -> Reply | None:
    """The question to ask before no time limit, or a deadline far ahead; None: no question."""
    if mode == ReopenMode.NO_LIMIT:
        return Reply(
            text=_(
                "Reopening {candidate} of {test} with no time limit is not recommended: the "
                "answer is never delivered automatically, someone must close it with "
                "`/reopen {test} {candidate} close current`. Nothing is changed until you "
                "confirm."
            ).format(candidate=number, test=test.code),
            kind="confirm",
            confirm=Confirm(
                prompt=_("Open {candidate} of {test} for new delivery with no time limit?").format(
                    candidate=number, test=test.code
                ),
                command=command,
                button=_("Yes, no time limit"),
            ),
        )
    if mode == "at" and deadline is not None and deadline - ctx.now > FAR_AHEAD:
        return Reply(
            text=_(
                "{time} is more than {days} days ahead: candidate {candidate} of {test} would "
                "stay open for new delivery until then. Check the date; nothing is changed "
                "until you confirm."
            ).format(
                time=format_time(deadline, ctx.tz),
                days=FAR_AHEAD.days,
                candidate=number,
                test=test.code,
            ),
            kind="confirm",
            confirm=Confirm(
                prompt=_(
                    "Open {candidate} of {test} for new delivery until {time}, more than "
                    "{days} days ahead?"
                ).format(
                    candidate=number,
                    test=test.code,
                    time=format_time(deadline, ctx.tz),
                    days=FAR_AHEAD.days,
                ),
                command=command,
                button=_("Yes, until then"),
            ),
        )
    return None


def _open(ctx: Ctx, candidate: Candidate, *, mode: str, deadline, reason: str) -> None:
    """Open ``candidate`` for new delivery; reopening again changes the open reopening, and
    when it was opened stays."""
    reopening = active_reopening(candidate)
    if reopening is None:
        latest_submission = ctx.db_session.scalar(
            select(Submission.id)
            .where(Submission.candidate_id == candidate.id)
            .order_by(Submission.id.desc())
            .limit(1)
        )
        reopening = Reopening(
            opened_at=ctx.now,
            status_before=candidate.status,
            submission_before_id=latest_submission,
        )
        candidate.reopenings.append(reopening)
    reopening.mode, reopening.deadline = ReopenMode(mode), deadline
    reopening.opened_by, reopening.reason = ctx.actor, reason
    ctx.db_session.flush()


def _check_mode(ctx: Ctx, test: Test, number: str, end: datetime, mode: str, deadline) -> None:
    closed = ordinary_end_passed(test, ctx.now)
    ordinary = format_time(ordinary_end(test), ctx.tz)
    if mode == ReopenMode.UNTIL_CLOSE and closed:
        raise Refused(
            _(
                "until-close is only possible before the ordinary end of {test} ({ordinary}), "
                "which has passed. Use `/reopen {test} {candidate} in 30m` or `at HH:MM` "
                "instead."
            ).format(test=test.code, ordinary=ordinary, candidate=number),
            field="mode",
        )
    if mode == ReopenMode.UNTIL_CLOSE and end <= ctx.now:
        raise Refused(
            _(
                "Candidate {candidate}'s own end time ({end}) has passed, so until-close would "
                "close at once. Use `/reopen {test} {candidate} at HH:MM` instead."
            ).format(candidate=number, end=format_time(end, ctx.tz), test=test.code),
            field="mode",
        )
    if mode == "in" and not closed:
        raise Refused(
            _(
                "`in DURATION` is only possible after the ordinary end of {test} ({ordinary}). "
                "Before it, give extra time (`/incident-time {test} {candidate} add 15`) or "
                "use `until-close` or `at HH:MM`."
            ).format(test=test.code, ordinary=ordinary, candidate=number),
            field="mode",
        )
    if mode == "at" and deadline <= ctx.now:
        raise Refused(
            _("{time} is not in the future. Give a later time.").format(
                time=format_time(deadline, ctx.tz)
            ),
            field="datetime",
        )


def close(
    ctx: Ctx,
    *,
    test_code: str,
    number: str,
    choice: str,
    reason: str | None = None,
    quiet: bool = False,
) -> Reply:
    """R8: end the reopening now and deliver the current or the earlier answer."""
    db = ctx.db_session
    test = test_for_support(
        db_session=db, user_id=ctx.actor, test_code=test_code, doing=_("close new delivery")
    )
    with concerning("candidate"):
        candidate = get_candidate(db_session=db, test=test, number=number, lock=True)
    reopening = active_reopening(candidate)
    if reopening is None:
        raise Refused(
            _(
                "Candidate {candidate} of {test} is not open for new delivery, so there is "
                "nothing to close. See `/candidate` for the status."
            ).format(candidate=candidate.number, test=test.code),
            field="candidate",
        )
    # An earlier delivery is one recorded here, or a "submitted" status from the registry.
    delivered_before = (
        reopening.submission_before_id is not None
        or reopening.status_before == CandidateStatus.SUBMITTED
    )
    if choice == "reverted" and not delivered_before:
        raise Refused(
            _(
                "Candidate {candidate} had delivered nothing before the reopening, so there is "
                "no earlier version. Use `/reopen {test} {candidate} close current`."
            ).format(candidate=candidate.number, test=test.code),
            field="mode",
        )
    before = state(ctx, candidate, test)
    close_reopening(ctx, candidate, reopening, choice=choice)
    after = state(ctx, candidate, test)
    audit.record(
        ctx,
        action=f"close_{choice}",
        reason=reason or f"close {choice}",
        before=before,
        after=after,
        candidate=candidate,
    )
    which = _("the current answer") if choice == "current" else _("the answer delivered before")
    told = 0 if quiet else tell(ctx, test=test, candidates=[candidate], change=DELIVERED)
    told_text = told_line(told, quiet=quiet)
    return Reply(
        text=_(
            "New delivery for {candidate} of {test} is closed; {which} is delivered and the "
            "status is submitted."
        ).format(candidate=candidate.number, test=test.code, which=which)
        + "\n"
        + _("Before: {state}").format(state=describe(before, ctx))
        + "\n"
        + _("Now: {state}").format(state=describe(after, ctx))
        + (f"\n{told_text}" if told_text else ""),
        kind="receipt",
        data={
            "test": test.code,
            "action": "close",
            "candidate": candidate.number,
            "before": before,
            "after": after,
        },
        log=[
            _(
                "{actor} closed new delivery for {test} candidate {candidate}, delivered {which}"
            ).format(
                actor=f"<@{ctx.actor}>", test=test.code, candidate=candidate.number, which=which
            )
        ],
        mentions=(ctx.actor,),
    )


def end_reopening(ctx: Ctx, reopening: Reopening, *, choice: str) -> None:
    """R8's end of a reopening, without the delivery that closing it makes."""
    reopening.closed_at = ctx.now
    reopening.closed_by = ctx.actor
    reopening.close_choice = choice


def close_reopening(ctx: Ctx, candidate: Candidate, reopening: Reopening, *, choice: str) -> None:
    end_reopening(ctx, reopening, choice=choice)
    ctx.db_session.add(
        Submission(
            candidate_id=candidate.id,
            at=ctx.now,
            source=f"closed_{choice}",
            by=ctx.actor,
            copy_of_id=reopening.submission_before_id if choice == "reverted" else None,
        )
    )
    candidate.status = CandidateStatus.SUBMITTED
    candidate.submitted_at = ctx.now
    ctx.db_session.flush()


def state(ctx: Ctx, candidate: Candidate, test: Test) -> dict:
    """What the change record keeps of a candidate's status and deadline (R7)."""
    t = timing(candidate, test)
    return {
        "status": candidate.status,
        "new_delivery": {"mode": t.reopening.mode, "deadline": iso(t.reopen_deadline, ctx.tz)}
        if t.reopening
        else None,
        "deadline": iso(t.deadline, ctx.tz),
    }


def describe(state: dict, ctx: Ctx) -> str:
    nd = state["new_delivery"]
    reopened = (
        _("not open for new delivery")
        if nd is None
        else _("new delivery {mode}").format(mode=nd["mode"])
    )
    due = state["deadline"]
    deadline = format_time(datetime.fromisoformat(due), ctx.tz) if due else _("none (no limit)")
    # English keeps the status as stored ("not_started"), as it always read.
    status = state["status"] if current() == "en" else status_label(state["status"])
    return _("{status}, {new_delivery}, deadline {deadline}").format(
        status=status, new_delivery=reopened, deadline=deadline
    )


def _describe_deadline(ctx: Ctx, deadline, test: Test) -> str:
    if deadline is None:
        return _("with no time limit")
    relative = relative_to_ordinary_end(ordinary_end(test), deadline)
    return _("until {time} ({relative})").format(
        time=format_time(deadline, ctx.tz), relative=relative
    )
