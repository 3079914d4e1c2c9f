"""`/undo CHANGE`: take back a change to one or a list of candidates (R4 incident time, R6
a reopening opened or changed) within ``audit.UNDO_WINDOW`` of it, after a confirmation.

An undo is a change of its own: one new record whose before is now and whose after is what
the undone change found, so the record stays append-only (R15). It is refused, changing
nothing, once anything has happened to those candidates since (a later change record that
names them, an earlier undo included, or a delivery), and where the rules no longer allow
the values to come back (R5, R6). The receipts of undoable changes carry their id
(``audit.undo_offer``); a Slack receipt shows it as an *Undo* button that runs this command.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from commands import audit, history, incident_time, reopen
from commands.context import Ctx
from commands.errors import InvalidInput, NotFound, Refused
from commands.lookup import get_candidate, lock_candidates
from commands.permissions import require_support, test_for_support
from commands.reply import Confirm, Reply, listed
from commands.tell_candidates import tell, told_line
from commands.timeparse import format_duration, format_time
from commands.timing import (
    active_reopening,
    end_time,
    ordinary_end,
    ordinary_end_passed,
)
from notifications.candidate_messages import INCIDENT_TIME, REOPENED
from store.models import Candidate, Change, Submission, Test

USAGE = (
    "Usage: /undo CHANGE\n"
    "  Takes back a change to one or a list of candidates (incident time, opening or "
    "changing new delivery) within 15 minutes of it, after you confirm.\n"
    "  CHANGE is the change's number: on its receipt (the Undo button) and in "
    "`examdesk log TEST --json`.\n"
    "  Example: /undo 17"
)
INCIDENT_ACTIONS = tuple(f"incident_time_{operation}" for operation in incident_time.OPERATIONS)
INCIDENT_UNDO = "incident_time_undo"
REOPEN_UNDO = "reopen_undo"
# A reopening's close_choice when an undo ended it: nothing was delivered (R8 does not apply).
UNDONE = "undone"
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")
_LARGEST_ID = 2**63 - 1


def parse(args: list[str]) -> int:
    if len(args) != 1:
        raise InvalidInput("Give the number of one change.", USAGE)
    text = args[0].removeprefix("#")
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= _LARGEST_ID:
        raise InvalidInput(f"'{args[0][:40]}' is not the number of a change.", USAGE)
    return int(text)


def reads_only(args: list[str], confirmed: bool) -> bool:
    """The preview only reads; the undo changes when confirmed."""
    return not confirmed


def run(ctx: Ctx, args: list[str], *, confirmed: bool = False) -> Reply:
    change_id = parse(args)
    db = ctx.db_session
    require_support(db_session=db, user_id=ctx.actor, doing="undo a change")
    change = db.get(Change, change_id)
    code = db.scalar(select(Test.code).where(Test.id == change.test_id)) if change else None
    if change is None or code is None:
        raise NotFound(
            f"There is no change {change_id} of a test. The receipt of a change has its "
            "Undo button; `examdesk log TEST --json` gives each change's id."
        )
    test = test_for_support(db_session=db, user_id=ctx.actor, test_code=code, doing="undo it")
    if change.action in INCIDENT_ACTIONS and not audit.is_test_wide(change.batch):
        return _undo_incident_time(ctx, test, change, confirmed=confirmed)
    if change.action == "reopen":
        return _undo_reopening(ctx, test, change, confirmed=confirmed)
    raise Refused(_not_undoable(change, test) + " Nothing was changed.")


def _not_undoable(change: Change, test: Test) -> str:
    what = history.ACTIONS.get(change.action, change.action.replace("_", " "))
    head = f"Change {change.id} ({what}) cannot be undone"
    if change.action in (INCIDENT_UNDO, REOPEN_UNDO):
        return f"{head}: it is an undo itself. To make that change again, run its command again."
    if change.action in INCIDENT_ACTIONS:
        return (
            f"{head}: it changed incident time for every candidate of {test.code}, and undo "
            "takes back changes to one or a list of candidates. Change it for all with "
            f"`/incident-time {test.code} all add|subtract|set DURATION reason`."
        )
    if change.action.startswith("close_"):
        return (
            f"{head}: it delivered an answer for the candidate, and a delivery stays. "
            f"If the candidate must deliver again, reopen: `/reopen {test.code} CANDIDATE …`."
        )
    return (
        f"{head}: undo takes back incident time given to one or a list of candidates, and "
        "opening or changing new delivery, within 15 minutes."
    )


# ------------------------------------------------------------------ incident time (R4, R5)


def _undo_incident_time(ctx: Ctx, test: Test, change: Change, *, confirmed: bool) -> Reply:
    before: dict[str, int] = change.before
    after: dict[str, int] = change.after
    numbers = sorted(before)
    whom = _whom(numbers)
    what = f"{history.ACTIONS[change.action]} for {whom} of {test.code}"
    instead = "Nothing was changed. Set it as it should be: " + "; ".join(
        f"`/incident-time {test.code} {','.join(group)} set {minutes} reason`"
        for minutes, group in _by_value(before).items()
    )
    _refuse_too_old(ctx, change, instead)
    incident_time.refuse_after_ordinary_end(ctx, test)
    db = ctx.db_session
    if confirmed:
        lock_candidates(db.connection(), test=test, numbers=numbers)
    rows = list(
        db.scalars(
            select(Candidate)
            .where(Candidate.test_id == test.id, Candidate.number.in_(numbers))
            .order_by(Candidate.number)
        )
    )
    missing = sorted(set(numbers) - {r.number for r in rows})
    if missing:
        raise Refused(f"Test {test.code} has no candidate {listed(missing)} any more. {instead}")
    _refuse_if_anything_since(ctx, test, change, {r.id: r.number for r in rows}, instead)
    moved = [r for r in rows if r.incident_minutes != after[r.number]]
    if moved:
        raise Refused(
            f"Incident time has moved since change {change.id} ("
            + listed(
                [
                    f"{r.number} has {format_duration(r.incident_minutes)}, not "
                    f"{format_duration(after[r.number])}"
                    for r in moved
                ]
            )
            + f"), so it cannot simply be put back. {instead}"
        )

    def end_of(r: Candidate, minutes: int) -> datetime:
        return end_time(r, test) + timedelta(minutes=minutes - r.incident_minutes)

    lines = [
        f"• {r.number}: {format_duration(r.incident_minutes)} → "
        f"{format_duration(before[r.number])}; end time "
        f"{format_time(end_of(r, r.incident_minutes), ctx.tz)} → "
        f"{format_time(end_of(r, before[r.number]), ctx.tz)}"
        for r in rows[: incident_time.RECEIPT_LINES]
    ]
    if len(rows) > incident_time.RECEIPT_LINES:
        lines.append(f"…and {len(rows) - incident_time.RECEIPT_LINES} more.")
    origin = _origin(ctx, change)
    if not confirmed:
        return _preview(
            ctx,
            change,
            text=f"Undo change {change.id} ({what}, {origin})? Incident time would go back "
            "to what it was:",
            lines=lines,
            prompt=f"Put incident time of {whom} of {test.code} back as before change {change.id}?",
        )
    minutes_now = {r.number: r.incident_minutes for r in rows}
    items = [
        {
            "candidate": r.number,
            "before_minutes": r.incident_minutes,
            "after_minutes": before[r.number],
            "end_before": end_of(r, r.incident_minutes),
            "end_after": end_of(r, before[r.number]),
        }
        for r in rows[: incident_time.RECEIPT_LINES]
    ]
    for r in rows:
        r.incident_minutes = before[r.number]
    db.flush()
    reason = _reason(change)
    undo_id = audit.record(
        ctx,
        action=INCIDENT_UNDO,
        reason=reason,
        before=minutes_now,
        after={n: before[n] for n in numbers},
        test=test,
        candidate_id=rows[0].id if len(rows) == 1 else None,
        batch=audit.new_batch(),
    )
    back = listed([f"{n} {format_duration(before[n])}" for n in numbers])
    told = tell(ctx, test=test, candidate_ids=[r.id for r in rows], change=INCIDENT_TIME)
    return Reply(
        text="\n".join(
            [
                f"Change {change.id} ({what}) is undone: incident time is back to what it "
                f"was (reason: {reason}). {told_line(told, quiet=False)}".rstrip(),
                *lines,
            ]
        ),
        kind="receipt",
        data={
            "test": test.code,
            "action": INCIDENT_UNDO,
            "change_id": undo_id,
            "undoes": change.id,
            "items": items,
        },
        log=[
            f"<@{ctx.actor}> undid change {change.id} ({what}): incident time back to {back}; "
            f"why: {reason}"
        ],
        mentions=_mentions(ctx, change),
    )


def _by_value(before: dict[str, int]) -> dict[int, list[str]]:
    groups: dict[int, list[str]] = {}
    for number in sorted(before):
        groups.setdefault(before[number], []).append(number)
    return groups


# ------------------------------------------------------------------ a reopening (R6–R8)


def _undo_reopening(ctx: Ctx, test: Test, change: Change, *, confirmed: bool) -> Reply:
    db = ctx.db_session
    number = db.scalar(select(Candidate.number).where(Candidate.id == change.candidate_id))
    if number is None:
        raise Refused(f"The candidate of change {change.id} is no longer in {test.code}.")
    was = change.before.get("new_delivery")
    opened = was is None
    what = (
        f"{'opened' if opened else 'changed'} new delivery "
        f"({change.after['new_delivery']['mode']}) for candidate {number} of {test.code}"
    )
    instead = "Nothing was changed. " + (
        f"End it (`/reopen {test.code} {number} close current` or `close "
        f"reverted`), or change it with `/reopen {test.code} {number} at HH:MM reason`."
        if opened
        else f"Change it as it should be: `/reopen {test.code} {number} at HH:MM reason`."
    )
    _refuse_too_old(ctx, change, instead)
    candidate = get_candidate(db_session=db, test=test, number=number, lock=confirmed)
    _refuse_if_anything_since(ctx, test, change, {candidate.id: number}, instead)
    reopening = active_reopening(candidate)
    now_state = reopen.state(ctx, candidate, test)
    if reopening is None or now_state["new_delivery"] != change.after["new_delivery"]:
        raise Refused(
            f"New delivery for {number} has changed since change {change.id} (now: "
            f"{reopen.describe(now_state, ctx)}), so it cannot simply be put back. {instead}"
        )
    if not opened:
        mode = was["mode"]
        deadline = datetime.fromisoformat(was["deadline"]) if mode in ("at", "in") else None
        _refuse_unrestorable(ctx, test, candidate, number, mode, deadline)
    origin = _origin(ctx, change)
    if not confirmed:
        result = (
            "new delivery would end without a delivery; the answer delivered before stands"
            if opened
            else "new delivery would go back to what it was"
        )
        return _preview(
            ctx,
            change,
            text=f"Undo change {change.id} ({what}, {origin})? The {result}:",
            lines=[
                f"Now: {reopen.describe(now_state, ctx)}",
                f"After the undo: {reopen.describe(change.before, ctx)}",
            ],
            prompt=f"Put new delivery for {number} of {test.code} back as before change "
            f"{change.id}?",
        )
    if opened:
        # Ended, not closed (R8): no answer is delivered, the one delivered before stands.
        reopen.end_reopening(ctx, reopening, choice=UNDONE)
        candidate.status = reopening.status_before
        done = "new delivery is ended without a delivery; the answer delivered before stands"
    else:
        reopening.mode, reopening.deadline = mode, deadline
        reopening.opened_by, reopening.reason = _previous_opening(ctx, change, reopening)
        done = "new delivery is back to what it was"
    db.flush()
    after = reopen.state(ctx, candidate, test)
    reason = _reason(change)
    audit.record(
        ctx,
        action=REOPEN_UNDO,
        reason=reason,
        before=now_state,
        after=after,
        candidate=candidate,
    )
    told = told_line(
        tell(ctx, test=test, candidate_ids=[candidate.id], change=REOPENED), quiet=False
    )
    return Reply(
        text=f"Change {change.id} ({what}) is undone: {done} (reason: {reason}).\n"
        f"Before: {reopen.describe(now_state, ctx)}\nNow: {reopen.describe(after, ctx)}"
        + (f"\n{told}" if told else ""),
        kind="receipt",
        data={
            "test": test.code,
            "action": REOPEN_UNDO,
            "candidate": number,
            "undoes": change.id,
            "before": now_state,
            "after": after,
        },
        log=[
            f"<@{ctx.actor}> undid change {change.id} ({what}): {test.code} candidate {number}"
            f" {reopen.describe(after, ctx)}; why: {reason}"
        ],
        mentions=_mentions(ctx, change),
    )


def _refuse_unrestorable(
    ctx: Ctx,
    test: Test,
    candidate: Candidate,
    number: str,
    mode: str,
    deadline: datetime | None,
) -> None:
    """R6 for the reopening that would come back: its deadline must still be ahead."""
    again = (
        "Nothing was changed. Change it with "
        f"`/reopen {test.code} {number} at HH:MM reason` instead."
    )
    if deadline is not None and deadline <= ctx.now:
        raise Refused(
            f"The deadline new delivery had before ({format_time(deadline, ctx.tz)}) has "
            f"passed, so it cannot come back. {again}"
        )
    if mode == "until-close" and ordinary_end_passed(test, ctx.now):
        raise Refused(
            f"New delivery was until-close before, which is only possible before the ordinary"
            f" end of {test.code} ({format_time(ordinary_end(test), ctx.tz)}); it has passed. "
            f"{again}"
        )
    if mode == "until-close" and end_time(candidate, test) <= ctx.now:
        raise Refused(
            f"New delivery was until-close before, and {number}'s own end time "
            f"({format_time(end_time(candidate, test), ctx.tz)}) has passed. {again}"
        )


def _previous_opening(ctx: Ctx, change: Change, reopening: Any) -> tuple[str, str]:
    """Who set the reopening as it was before ``change``, and why: its latest earlier
    record; the current values when there is none."""
    row = ctx.db_session.execute(
        select(Change.actor, Change.reason)
        .where(
            Change.candidate_id == change.candidate_id,
            Change.action == "reopen",
            Change.id < change.id,
        )
        .order_by(Change.id.desc())
        .limit(1)
    ).first()
    return (row.actor, row.reason) if row else (reopening.opened_by, reopening.reason)


# ------------------------------------------------------------------ shared


def _refuse_too_old(ctx: Ctx, change: Change, instead: str) -> None:
    if ctx.now > change.at + audit.UNDO_WINDOW:
        minutes = int(audit.UNDO_WINDOW.total_seconds() // 60)
        raise Refused(
            f"Change {change.id} was made at {format_time(change.at, ctx.tz)}, more than "
            f"{minutes} minutes ago, so it can no longer be undone. {instead}"
        )


def _refuse_if_anything_since(
    ctx: Ctx, test: Test, change: Change, candidates: dict[int, str], instead: str
) -> None:
    """Undo puts back what ``change`` found: refused once a later change record names any
    of ``candidates`` (an undo of it included) or one of them has delivered since."""
    db = ctx.db_session
    numbers = set(candidates.values())
    later_changes = select(Change).where(Change.test_id == test.id, Change.id > change.id)
    for later in db.scalars(later_changes.order_by(Change.id)):
        if later.candidate_id is not None:
            named = [candidates[later.candidate_id]] if later.candidate_id in candidates else []
        else:
            # A batch keeps each candidate's values under its number.
            named = sorted(numbers & {*(later.before or {}), *(later.after or {})})
        if not named:
            continue
        when, by = format_time(later.at, ctx.tz), _who(later.actor)
        if later.action in (INCIDENT_UNDO, REOPEN_UNDO) and later.reason.startswith(
            f"undo of change {change.id}:"
        ):
            raise Refused(
                f"Change {change.id} is undone already: change {later.id} at {when} by {by}. "
                "Nothing more was changed.",
                mentions=_slack_users([later.actor]),
            )
        what = history.ACTIONS.get(later.action, later.action.replace("_", " "))
        raise Refused(
            f"{_whom(named).capitalize()} changed again after change {change.id}: change "
            f"{later.id} ({what}) at {when} by {by}. Only the latest change can be undone. "
            f"{instead}",
            mentions=_slack_users([later.actor]),
        )
    delivered = db.execute(
        select(Submission.candidate_id, Submission.at)
        .where(Submission.candidate_id.in_(list(candidates)), Submission.at >= change.at)
        .order_by(Submission.at)
        .limit(1)
    ).first()
    if delivered is not None:
        raise Refused(
            f"Candidate {candidates[delivered.candidate_id]} delivered at "
            f"{format_time(delivered.at, ctx.tz)}, after change {change.id}; a delivery stays, "
            f"so the change can no longer be undone. {instead}"
        )


def _preview(ctx: Ctx, change: Change, *, text: str, lines: list[str], prompt: str) -> Reply:
    return Reply(
        text="\n".join([text, *lines, "Nothing is changed until you confirm."]),
        kind="confirm",
        confirm=Confirm(
            prompt=prompt, command=f"/undo {change.id}", button=f"Yes, undo change {change.id}"
        ),
        mentions=_mentions(ctx, change),
    )


def _origin(ctx: Ctx, change: Change) -> str:
    return (
        f"by {_who(change.actor)} at {format_time(change.at, ctx.tz)}; why: "
        f"{change.reason or 'no reason given'}"
    )


def _reason(change: Change) -> str:
    reason = f"undo of change {change.id}: {change.reason}"
    return reason if len(reason) <= audit.MAX_REASON else reason[: audit.MAX_REASON - 1] + "…"


def _whom(numbers: list[str]) -> str:
    return f"candidate {numbers[0]}" if len(numbers) == 1 else f"candidates {listed(numbers)}"


def _who(actor: str) -> str:
    return f"<@{actor}>" if _SLACK_USER.fullmatch(actor) else actor


def _slack_users(actors: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a for a in actors if _SLACK_USER.fullmatch(a)))


def _mentions(ctx: Ctx, change: Change) -> tuple[str, ...]:
    return _slack_users([ctx.actor, change.actor])
