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
from sqlalchemy.orm import selectinload

from commands import audit, history, incident_time, reopen
from commands.context import Ctx
from commands.errors import InvalidInput, NotFound, Refused
from commands.language import N_, _
from commands.language import number as number_of
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

USAGE = N_(
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
        raise InvalidInput(_("Give the number of one change."), USAGE)
    text = args[0].removeprefix("#")
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= _LARGEST_ID:
        raise InvalidInput(
            _("'{text}' is not the number of a change.").format(text=args[0][:40]), USAGE
        )
    return int(text)


def reads_only(args: list[str], confirmed: bool) -> bool:
    """The preview only reads; the undo changes when confirmed."""
    return not confirmed


def run(ctx: Ctx, args: list[str], *, confirmed: bool = False) -> Reply:
    change_id = parse(args)
    db = ctx.db_session
    require_support(db_session=db, user_id=ctx.actor, doing=_("undo a change"))
    change = db.get(Change, change_id)
    code = db.scalar(select(Test.code).where(Test.id == change.test_id)) if change else None
    if change is None or code is None:
        raise NotFound(
            _(
                "There is no change {id} of a test. The receipt of a change has its Undo "
                "button; `examdesk log TEST --json` gives each change's id."
            ).format(id=change_id)
        )
    test = test_for_support(db_session=db, user_id=ctx.actor, test_code=code, doing=_("undo it"))
    if change.action in INCIDENT_ACTIONS and not audit.is_test_wide(change.batch):
        return _undo_incident_time(ctx, test, change, confirmed=confirmed)
    if change.action == "reopen":
        return _undo_reopening(ctx, test, change, confirmed=confirmed)
    raise Refused(_not_undoable(change, test) + " " + _("Nothing was changed."))


def _not_undoable(change: Change, test: Test) -> str:
    what = history.action_label(change.action)
    head = _("Change {id} ({what}) cannot be undone").format(id=change.id, what=what)
    if change.action in (INCIDENT_UNDO, REOPEN_UNDO):
        why = _("it is an undo itself. To make that change again, run its command again.")
    elif change.action in INCIDENT_ACTIONS:
        why = _(
            "it changed incident time for every candidate of {test}, and undo takes back "
            "changes to one or a list of candidates. Change it for all with "
            "`/incident-time {test} all add|subtract|set DURATION reason`."
        ).format(test=test.code)
    elif change.action.startswith("close_"):
        # R8: a delivery stays.
        why = _(
            "it delivered an answer for the candidate, and a delivery stays. If the candidate "
            "must deliver again, reopen: `/reopen {test} CANDIDATE …`."
        ).format(test=test.code)
    else:
        why = _(
            "undo takes back incident time given to one or a list of candidates, and opening "
            "or changing new delivery, within 15 minutes."
        )
    return f"{head}: {why}"


# ------------------------------------------------------------------ incident time (R4, R5)


def _undo_incident_time(ctx: Ctx, test: Test, change: Change, *, confirmed: bool) -> Reply:
    before: dict[str, int] = change.before
    numbers = sorted(before)
    whom = _whom(numbers)
    what = _("{what} for {whom} of {test}").format(
        what=history.action_label(change.action), whom=whom, test=test.code
    )
    instead = (
        _("Nothing was changed. Set it as it should be:")
        + " "
        + "; ".join(
            f"`/incident-time {test.code} {','.join(group)} set {minutes} reason`"
            for minutes, group in _by_value(before).items()
        )
    )
    _refuse_too_old(ctx, change, instead)
    incident_time.refuse_after_ordinary_end(ctx, test)
    rows = _restorable_rows(ctx, test, change, confirmed=confirmed, instead=instead)
    shown = rows[: incident_time.RECEIPT_LINES]
    lines = [_incident_line(ctx, test, r, before[r.number]) for r in shown]
    if len(rows) > len(shown):
        lines.append(_("…and {n} more.").format(n=number_of(len(rows) - len(shown))))
    if not confirmed:
        return _preview(
            ctx,
            change,
            text=_(
                "Undo change {id} ({what}, {origin})? Incident time would go back to what it was:"
            ).format(id=change.id, what=what, origin=_origin(ctx, change)),
            lines=lines,
            prompt=_("Put incident time of {whom} of {test} back as before change {id}?").format(
                whom=whom, test=test.code, id=change.id
            ),
        )
    minutes_now = {r.number: r.incident_minutes for r in rows}
    items = [_incident_item(test, r, before[r.number]) for r in shown]
    for r in rows:
        r.incident_minutes = before[r.number]
    ctx.db_session.flush()
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
    told = tell(ctx, test=test, candidates=rows, change=INCIDENT_TIME)
    back = listed([f"{n} {format_duration(before[n])}" for n in numbers])
    return Reply(
        text="\n".join(
            [
                (
                    _(
                        "Change {id} ({what}) is undone: incident time is back to what it was "
                        "(reason: {reason})."
                    ).format(id=change.id, what=what, reason=reason)
                    + f" {told_line(told, quiet=False)}"
                ).rstrip(),
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
            _(
                "{actor} undid change {id} ({what}): incident time back to {back}; why: {reason}"
            ).format(actor=f"<@{ctx.actor}>", id=change.id, what=what, back=back, reason=reason)
        ],
        mentions=_mentions(ctx, change),
    )


def _restorable_rows(
    ctx: Ctx, test: Test, change: Change, *, confirmed: bool, instead: str
) -> list[Candidate]:
    """The candidates of ``change``, locked when confirmed; refused when one is gone, was
    changed or delivered since, or its incident time has moved."""
    after: dict[str, int] = change.after
    numbers = sorted(change.before)
    db = ctx.db_session
    if confirmed:
        lock_candidates(db.connection(), test=test, numbers=numbers)
    rows = list(
        db.scalars(
            select(Candidate)
            .where(Candidate.test_id == test.id, Candidate.number.in_(numbers))
            .options(selectinload(Candidate.reopenings))
            .order_by(Candidate.number)
        )
    )
    missing = sorted(set(numbers) - {r.number for r in rows})
    if missing:
        raise Refused(
            _("Test {test} has no candidate {numbers} any more.").format(
                test=test.code, numbers=listed(missing)
            )
            + f" {instead}"
        )
    _refuse_if_anything_since(ctx, test, change, {r.id: r.number for r in rows}, instead)
    moved = [r for r in rows if r.incident_minutes != after[r.number]]
    if moved:
        moves = listed(
            [
                _("{candidate} has {now}, not {then}").format(
                    candidate=r.number,
                    now=format_duration(r.incident_minutes),
                    then=format_duration(after[r.number]),
                )
                for r in moved
            ]
        )
        raise Refused(
            _(
                "Incident time has moved since change {id} ({moves}), so it cannot simply be "
                "put back."
            ).format(id=change.id, moves=moves)
            + f" {instead}"
        )
    return rows


def _end_with(test: Test, candidate: Candidate, minutes: int) -> datetime:
    """The candidate's end time with ``minutes`` of incident time instead of theirs."""
    return end_time(candidate, test) + timedelta(minutes=minutes - candidate.incident_minutes)


def _incident_item(test: Test, candidate: Candidate, back_to: int) -> dict[str, Any]:
    return {
        "candidate": candidate.number,
        "before_minutes": candidate.incident_minutes,
        "after_minutes": back_to,
        "end_before": _end_with(test, candidate, candidate.incident_minutes),
        "end_after": _end_with(test, candidate, back_to),
    }


def _incident_line(ctx: Ctx, test: Test, candidate: Candidate, back_to: int) -> str:
    return _("• {candidate}: {before} → {after}; end time {old_end} → {new_end}").format(
        candidate=candidate.number,
        before=format_duration(candidate.incident_minutes),
        after=format_duration(back_to),
        old_end=format_time(_end_with(test, candidate, candidate.incident_minutes), ctx.tz),
        new_end=format_time(_end_with(test, candidate, back_to), ctx.tz),
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
        raise Refused(
            _("The candidate of change {id} is no longer in {test}.").format(
                id=change.id, test=test.code
            )
        )
    was = change.before.get("new_delivery")
    opened = was is None
    what, instead = _reopening_words(change, test, number, opened=opened)
    _refuse_too_old(ctx, change, instead)
    candidate = get_candidate(db_session=db, test=test, number=number, lock=confirmed)
    _refuse_if_anything_since(ctx, test, change, {candidate.id: number}, instead)
    reopening = active_reopening(candidate)
    now_state = reopen.state(ctx, candidate, test)
    if reopening is None or now_state["new_delivery"] != change.after["new_delivery"]:
        raise Refused(
            _(
                "New delivery for {candidate} has changed since change {id} (now: {state}), so "
                "it cannot simply be put back."
            ).format(candidate=number, id=change.id, state=reopen.describe(now_state, ctx))
            + f" {instead}"
        )
    if not opened:
        mode = was["mode"]
        deadline = datetime.fromisoformat(was["deadline"]) if mode in ("at", "in") else None
        _refuse_unrestorable(ctx, test, candidate, number, mode, deadline)
    if not confirmed:
        return _reopening_preview(ctx, change, test, number, what, now_state, opened=opened)
    if opened:
        # Ended, not closed (R8): no answer is delivered, the one delivered before stands.
        reopen.end_reopening(ctx, reopening, choice=UNDONE)
        candidate.status = reopening.status_before
        done = _("new delivery is ended without a delivery; the answer delivered before stands")
    else:
        reopening.mode, reopening.deadline = mode, deadline
        reopening.opened_by, reopening.reason = _previous_opening(ctx, change, reopening)
        done = _("new delivery is back to what it was")
    db.flush()
    return _reopening_undone(ctx, change, test, candidate, what, done, now_state)


def _reopening_undone(
    ctx: Ctx,
    change: Change,
    test: Test,
    candidate: Candidate,
    what: str,
    done: str,
    now_state: dict[str, Any],
) -> Reply:
    """Record the undo of a reopening, tell the candidate, and the receipt."""
    number = candidate.number
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
    told = told_line(tell(ctx, test=test, candidates=[candidate], change=REOPENED), quiet=False)
    return Reply(
        text=_("Change {id} ({what}) is undone: {done} (reason: {reason}).").format(
            id=change.id, what=what, done=done, reason=reason
        )
        + "\n"
        + _("Before: {state}").format(state=reopen.describe(now_state, ctx))
        + "\n"
        + _("Now: {state}").format(state=reopen.describe(after, ctx))
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
            _(
                "{actor} undid change {id} ({what}): {test} candidate {candidate} {state}; why: "
                "{reason}"
            ).format(
                actor=f"<@{ctx.actor}>",
                id=change.id,
                what=what,
                test=test.code,
                candidate=number,
                state=reopen.describe(after, ctx),
                reason=reason,
            )
        ],
        mentions=_mentions(ctx, change),
    )


def _reopening_words(change: Change, test: Test, number: str, *, opened: bool) -> tuple[str, str]:
    """What the change did, and what to do instead of undoing it."""
    what = (
        _("opened new delivery ({mode}) for candidate {candidate} of {test}")
        if opened
        else _("changed new delivery ({mode}) for candidate {candidate} of {test}")
    ).format(mode=change.after["new_delivery"]["mode"], candidate=number, test=test.code)
    instead = (
        _("Nothing was changed.")
        + " "
        + (
            _(
                "End it (`/reopen {test} {candidate} close current` or `close reverted`), or "
                "change it with `/reopen {test} {candidate} at HH:MM reason`."
            )
            if opened
            else _("Change it as it should be: `/reopen {test} {candidate} at HH:MM reason`.")
        ).format(test=test.code, candidate=number)
    )
    return what, instead


def _reopening_preview(
    ctx: Ctx,
    change: Change,
    test: Test,
    number: str,
    what: str,
    now_state: dict[str, Any],
    *,
    opened: bool,
) -> Reply:
    question = (
        _(
            "Undo change {id} ({what}, {origin})? The new delivery would end without a "
            "delivery; the answer delivered before stands:"
        )
        if opened
        else _(
            "Undo change {id} ({what}, {origin})? The new delivery would go back to what it was:"
        )
    )
    return _preview(
        ctx,
        change,
        text=question.format(id=change.id, what=what, origin=_origin(ctx, change)),
        lines=[
            _("Now: {state}").format(state=reopen.describe(now_state, ctx)),
            _("After the undo: {state}").format(state=reopen.describe(change.before, ctx)),
        ],
        prompt=_("Put new delivery for {candidate} of {test} back as before change {id}?").format(
            candidate=number, test=test.code, id=change.id
        ),
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
    again = _(
        "Nothing was changed. Change it with `/reopen {test} {candidate} at HH:MM reason` instead."
    ).format(test=test.code, candidate=number)
    if deadline is not None and deadline <= ctx.now:
        raise Refused(
            _(
                "The deadline new delivery had before ({time}) has passed, so it cannot come back."
            ).format(time=format_time(deadline, ctx.tz))
            + f" {again}"
        )
    if mode == "until-close" and ordinary_end_passed(test, ctx.now):
        raise Refused(
            _(
                "New delivery was until-close before, which is only possible before the "
                "ordinary end of {test} ({time}); it has passed."
            ).format(test=test.code, time=format_time(ordinary_end(test), ctx.tz))
            + f" {again}"
        )
    if mode == "until-close" and end_time(candidate, test) <= ctx.now:
        raise Refused(
            _(
                "New delivery was until-close before, and {candidate}'s own end time ({time}) "
                "has passed."
            ).format(candidate=number, time=format_time(end_time(candidate, test), ctx.tz))
            + f" {again}"
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
            _(
                "Change {id} was made at {time}, more than {minutes} minutes ago, so it can no "
                "longer be undone."
            ).format(id=change.id, time=format_time(change.at, ctx.tz), minutes=minutes)
            + f" {instead}"
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
                _(
                    "Change {id} is undone already: change {later} at {time} by {user}. "
                    "Nothing more was changed."
                ).format(id=change.id, later=later.id, time=when, user=by),
                mentions=_slack_users([later.actor]),
            )
        what = history.action_label(later.action)
        raise Refused(
            _(
                "{whom} changed again after change {id}: change {later} ({what}) at {time} by "
                "{user}. Only the latest change can be undone."
            ).format(
                whom=_whom(named).capitalize(),
                id=change.id,
                later=later.id,
                what=what,
                time=when,
                user=by,
            )
            + f" {instead}",
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
            _(
                "Candidate {candidate} delivered at {time}, after change {id}; a delivery stays, "
                "so the change can no longer be undone."
            ).format(
                candidate=candidates[delivered.candidate_id],
                time=format_time(delivered.at, ctx.tz),
                id=change.id,
            )
            + f" {instead}"
        )


def _preview(ctx: Ctx, change: Change, *, text: str, lines: list[str], prompt: str) -> Reply:
    return Reply(
        text="\n".join([text, *lines, _("Nothing is changed until you confirm.")]),
        kind="confirm",
        confirm=Confirm(
            prompt=prompt,
            command=f"/undo {change.id}",
            button=_("Yes, undo change {id}").format(id=change.id),
        ),
        mentions=_mentions(ctx, change),
    )


def _origin(ctx: Ctx, change: Change) -> str:
    return _("by {user} at {time}; why: {reason}").format(
        user=_who(change.actor),
        time=format_time(change.at, ctx.tz),
        reason=change.reason or _("no reason given"),
    )


def _reason(change: Change) -> str:
    reason = f"undo of change {change.id}: {change.reason}"
    return reason if len(reason) <= audit.MAX_REASON else reason[: audit.MAX_REASON - 1] + "…"


def _whom(numbers: list[str]) -> str:
    if len(numbers) == 1:
        return _("candidate {candidate}").format(candidate=numbers[0])
    return _("candidates {numbers}").format(numbers=listed(numbers))


def _who(actor: str) -> str:
    return f"<@{actor}>" if _SLACK_USER.fullmatch(actor) else actor


def _slack_users(actors: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a for a in actors if _SLACK_USER.fullmatch(a)))


def _mentions(ctx: Ctx, change: Change) -> tuple[str, ...]:
    return _slack_users([ctx.actor, change.actor])
