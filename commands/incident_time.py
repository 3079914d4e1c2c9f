"""`/incident-time TEST CANDIDATES add|subtract|set DURATION [reason]` (R4, R5)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Integer, Select, func, literal, not_, or_, select, update
from sqlalchemy.orm import Session

from commands import audit
from commands.context import Ctx
from commands.errors import InvalidInput, NotFound, Refused, concerning
from commands.language import N_, _, ngettext, number, speaking
from commands.lookup import get_candidates, parse_candidate_list
from commands.permissions import test_for_support
from commands.reply import Confirm, Reply, listed
from commands.tell_candidates import tell, told_line
from commands.timeparse import (
    MAX_DURATION_MINUTES,
    duration_words,
    format_duration,
    format_time,
    parse_duration,
)
from commands.timing import end_time, ordinary_end, ordinary_end_passed
from notifications.candidate_messages import INCIDENT_TIME
from store.models import Candidate, Test
from store.sql import json_object_agg

USAGE = N_(
    "Usage: /incident-time TEST CANDIDATES add|subtract|set DURATION reason\n"
    "  CANDIDATES: all, or numbers separated by commas (10023,10024)\n"
    "  DURATION: minutes (15) or 1h30m, 45m, 2h\n"
    "  add puts minutes on top, subtract takes them off, set replaces the total.\n"
    "  The reason is recorded; each candidate listed is told their new deadline, unless the\n"
    "  reason ends with --quiet (after `all` nobody is: send a notice).\n"
    "  Example: /incident-time TDT4100-2026H 10023 add 15 network outage in room 3"
)
OPERATIONS = ("add", "subtract", "set")
CHANGE = INCIDENT_TIME
RECEIPT_LINES = 15
# R4: a candidate's total incident time is bounded like one change is.
MAX_TOTAL_MINUTES = MAX_DURATION_MINUTES


def parse(args: list[str]) -> tuple[str, list[str] | None, str, int, str, bool]:
    """The parts of the command; the last two are the reason and whether it says --quiet."""
    if len(args) < 4:
        raise InvalidInput(_("Some parts are missing."), USAGE)
    test_code, who, operation, *rest = args
    amount, reason = duration_words(rest)
    operation = operation.lower()
    if operation not in OPERATIONS:
        raise InvalidInput(
            _("'{operation}' is not add, subtract or set.").format(operation=operation),
            USAGE,
            field="operation",
        )
    with concerning("minutes"):
        minutes = parse_duration(amount)
    if minutes == 0 and operation != "set":
        raise InvalidInput(
            _(
                "`{operation} 0` changes nothing. Give the minutes to {operation}, e.g. "
                "`{operation} 15`, or use `set 0` to take all incident time away."
            ).format(operation=operation),
            USAGE,
            field="minutes",
        )
    with concerning("candidates"):
        numbers = parse_candidate_list(who)
    with concerning("reason"):
        reason_and_quiet = audit.require_reason(" ".join(reason), USAGE)
    return (test_code, numbers, operation, minutes, *reason_and_quiet)


def reads_only(args: list[str], confirmed: bool) -> bool:
    """The preview of `all` only reads; the command changes when confirmed."""
    return not confirmed and len(args) >= 2 and args[1].lower() == "all"


def run(ctx: Ctx, args: list[str], *, confirmed: bool = False) -> Reply:
    test_code, numbers, operation, minutes, reason, quiet = parse(args)
    return change(
        ctx,
        test_code=test_code,
        numbers=numbers,
        operation=operation,
        minutes=minutes,
        reason=reason,
        confirmed=confirmed,
        command=" ".join(["/incident-time", *args]),
        quiet=quiet,
    )


def change(
    ctx: Ctx,
    *,
    test_code: str,
    numbers: list[str] | None,
    operation: str,
    minutes: int,
    reason: str,
    confirmed: bool,
    command: str,
    quiet: bool = False,
) -> Reply:
    test = test_for_support(
        db_session=ctx.db_session,
        user_id=ctx.actor,
        test_code=test_code,
        doing=_("change incident extra time"),
    )
    refuse_after_ordinary_end(ctx, test)
    what = _describe(operation, minutes)
    if numbers is None and not confirmed:
        return _preview_all(ctx, test, operation, minutes, what, command)
    action = f"incident_time_{operation}"
    batch = audit.new_batch(test_wide=numbers is None)
    if numbers is None:
        return _change_all(ctx, test, operation, minutes, what, reason, action, batch)
    with concerning("candidates"):
        candidates = get_candidates(
            db_session=ctx.db_session, test=test, numbers=numbers, lock=True, not_found=_not_found
        )
    before = {c.number: c.incident_minutes for c in candidates}
    after = {c.number: _new_total(c.incident_minutes, operation, minutes) for c in candidates}
    _refuse_below_zero([c for c in candidates if after[c.number] < 0], minutes)
    _refuse_above_most([c for c in candidates if after[c.number] > MAX_TOTAL_MINUTES], minutes)
    shown = _shown(test, candidates)
    for candidate in candidates:
        candidate.incident_minutes = after[candidate.number]
    ctx.db_session.flush()
    change_id = audit.record(
        ctx,
        action=action,
        reason=reason,
        before=before,
        after=after,
        test=test,
        candidate_id=candidates[0].id if len(candidates) == 1 else None,
        batch=batch,
    )
    latest = max(end_time(c, test) for c in candidates)
    told = 0 if quiet else tell(ctx, test=test, candidates=candidates, change=CHANGE)
    reply = _receipt(
        ctx,
        test,
        shown,
        len(candidates),
        what,
        reason,
        latest,
        all_=False,
        note=told_line(told, quiet=quiet),
    )
    reply.data |= audit.undo_offer(change_id, ctx.now)
    return reply


def _change_all(
    ctx: Ctx,
    test: Test,
    operation: str,
    minutes: int,
    what: str,
    reason: str,
    action: str,
    batch: str,
) -> Reply:
    """Every candidate of the test, in the database: each candidate's before and after go
    into the change record by SQL, and only the receipt's first candidates are loaded."""
    db = ctx.db_session
    in_test = Candidate.test_id == test.id
    # Locks every row on PostgreSQL (SQLite's BEGIN IMMEDIATE already holds the database).
    count = db.scalar(
        select(func.count()).select_from(
            select(Candidate.id).where(in_test).with_for_update().subquery()
        )
    )
    if not count:
        _refuse_no_candidates(test)
    _refuse_all_out_of_bounds(db, test, operation, minutes)
    first = db.scalars(
        select(Candidate).where(in_test).order_by(Candidate.number).limit(RECEIPT_LINES)
    ).all()
    shown = _shown(test, first)
    audit.record_computed(
        ctx,
        action=action,
        reason=reason,
        before_after=_before_after_of_all(test, operation, minutes),
        params={},
        test=test,
        batch=batch,
    )
    # One UPDATE for the whole test; the candidates loaded above follow it (synchronize).
    db.execute(
        update(Candidate)
        .where(in_test)
        .values(incident_minutes=_new_total_sql(operation, minutes)),
        execution_options={"synchronize_session": "evaluate"},
    )
    latest = _latest_end_of_test(db, test)
    reply = _receipt(ctx, test, shown, count, what, reason, latest, all_=True, note=_tell_all(test))
    reply.data["notice_command"] = _notice_command(test, operation, minutes)
    return reply


def _preview_all(
    ctx: Ctx, test: Test, operation: str, minutes: int, what: str, command: str
) -> Reply:
    """The confirmation of `all`, from aggregates: a preview reads no row it won't show."""
    db = ctx.db_session
    count = db.scalar(select(func.count()).where(Candidate.test_id == test.id))
    if not count:
        _refuse_no_candidates(test)
    _refuse_all_out_of_bounds(db, test, operation, minutes)
    counted = number(count)
    return Reply(
        text=_(
            "This would {what} incident time for all {count} candidates of {test}. Nothing is "
            "changed until you confirm."
        ).format(what=what, count=counted, test=test.code)
        + f"\n{_tell_all(test)}",
        kind="confirm",
        data={"notice_command": _notice_command(test, operation, minutes)},
        confirm=Confirm(
            prompt=_("{what} incident time for all {count} candidates of {test}?").format(
                what=what.capitalize(), count=counted, test=test.code
            ),
            command=command,
            button=_("Yes, {what} for all {count}").format(what=what, count=counted),
        ),
    )


def _refuse_all_out_of_bounds(db: Session, test: Test, operation: str, minutes: int) -> None:
    """Subtracting is the only way below zero (R4), adding the only way above the most (set
    is bounded by parse_duration): those who would go there, for the refusal."""
    if operation == "subtract":
        below = Candidate.incident_minutes - minutes < 0
        _refuse_below_zero(_numbers_where(db, test, below), minutes)
    if operation == "add":
        above = Candidate.incident_minutes + minutes > MAX_TOTAL_MINUTES
        _refuse_above_most(_numbers_where(db, test, above), minutes)


def _numbers_where(db: Session, test: Test, condition: ColumnElement[bool]) -> list[Any]:
    return db.execute(
        select(Candidate.number, Candidate.incident_minutes)
        .where(Candidate.test_id == test.id, condition)
        .order_by(Candidate.number)
    ).all()


def _notice_command(test: Test, operation: str, minutes: int) -> str:
    """A notice for the candidates, in both their languages whoever asks."""
    with speaking("nb"):
        what_nb = _describe(operation, minutes)
    with speaking("en"):
        what_en = _describe(operation, minutes)
    return (
        f"/notice {test.code} nb: Alle kandidater har fått endret ekstra tid etter hendelse "
        f"({what_nb}). en: All candidates' extra time for an incident has changed ({what_en})."
    )


def _tell_all(test: Test) -> str:
    """After `all` nothing is sent by itself: a notice tells everyone (DESIGN.md)."""
    return _(
        "The candidates are not told by themselves after `all`. To tell them, send a notice: "
        "`/notice {test} TEXT`."
    ).format(test=test.code)


def _refuse_no_candidates(test: Test) -> None:
    raise Refused(
        _(
            "Test {test} has no candidates yet, so there is nothing to change. Import its "
            "candidates first (`examdesk import candidates FILE`)."
        ).format(test=test.code),
        field="test",
    )


def _has(rows: list) -> str:
    return listed(
        [
            _("{candidate} has {duration}").format(
                candidate=r.number, duration=format_duration(r.incident_minutes)
            )
            for r in rows
        ]
    )


def _refuse_below_zero(below: list, minutes: int) -> None:
    if below:
        raise Refused(
            ngettext(
                "Subtracting {duration} would take incident time below zero for {n} candidate "
                "({has}). Nothing was changed. Subtract less, or use `set 0`.",
                "Subtracting {duration} would take incident time below zero for {n} candidates "
                "({has}). Nothing was changed. Subtract less, or use `set 0`.",
                len(below),
            ).format(duration=format_duration(minutes), n=number(len(below)), has=_has(below)),
            field="minutes",
        )


def _refuse_above_most(above: list, minutes: int) -> None:
    if above:
        most = format_duration(MAX_TOTAL_MINUTES)
        # R4: the most a candidate can have.
        raise Refused(
            ngettext(
                "Adding {duration} would take incident time above {most}, the most a "
                "candidate can have, for {n} candidate ({has}). Nothing was changed. Add "
                "less, or use `set` with a total of at most {most}.",
                "Adding {duration} would take incident time above {most}, the most a "
                "candidate can have, for {n} candidates ({has}). Nothing was changed. Add "
                "less, or use `set` with a total of at most {most}.",
                len(above),
            ).format(
                duration=format_duration(minutes), most=most, n=number(len(above)), has=_has(above)
            ),
            field="minutes",
        )


def refuse_after_ordinary_end(ctx: Ctx, test: Test) -> None:
    if ordinary_end_passed(test, ctx.now):
        # R5
        raise Refused(
            _(
                "The ordinary end of {test} ({end}) has passed, so extra time can no longer "
                "be changed. Open the candidate for new delivery instead: "
                "`/reopen {test} CANDIDATE in 30m reason`."
            ).format(test=test.code, end=format_time(ordinary_end(test), ctx.tz)),
            field="test",
        )


def _not_found(test: Test, missing: Sequence[str]) -> NotFound:
    return NotFound(
        _(
            "Test {test} has no candidate {numbers}. Check the numbers with `/exam {test}`. "
            "Nothing was changed."
        ).format(test=test.code, numbers=listed(missing))
    )


class _Shown(NamedTuple):
    """A candidate listed in the receipt, as it was before the change."""

    candidate: Candidate
    incident_minutes: int
    end: datetime


def _shown(test: Test, candidates: Sequence[Candidate]) -> list[_Shown]:
    return [_Shown(c, c.incident_minutes, end_time(c, test)) for c in candidates[:RECEIPT_LINES]]


def _new_total(current: int, operation: str, minutes: int) -> int:
    if operation == "add":
        return current + minutes
    if operation == "subtract":
        return current - minutes
    return minutes


def _new_total_sql(operation: str, minutes: int) -> ColumnElement[int]:
    return {
        "add": Candidate.incident_minutes + minutes,
        "subtract": Candidate.incident_minutes - minutes,
        "set": literal(minutes, Integer),
    }[operation]


def _before_after_of_all(test: Test, operation: str, minutes: int) -> Select:
    """Each candidate's total before and after, keyed by number, as audit.record would
    store them."""
    return select(
        json_object_agg(Candidate.number, Candidate.incident_minutes),
        json_object_agg(Candidate.number, _new_total_sql(operation, minutes)),
    ).where(Candidate.test_id == test.id)


def _latest_end_of_test(db: Session, test: Test) -> datetime:
    """R3's latest end time of every candidate of the test: candidates without an end of
    their own share the ordinary end, so the most extra + incident minutes decide; the few
    with one are loaded."""
    own_end = or_(
        Candidate.postponed_deadline.is_not(None), Candidate.individual_deadline.is_not(None)
    )
    in_test = Candidate.test_id == test.id
    shared = db.scalar(
        select(func.max(Candidate.extra_minutes + Candidate.incident_minutes)).where(
            in_test, not_(own_end)
        )
    )
    ends = [ordinary_end(test) + timedelta(minutes=shared)] if shared is not None else []
    ends += [end_time(c, test) for c in db.scalars(select(Candidate).where(in_test, own_end))]
    return max(ends)


def _describe(operation: str, minutes: int) -> str:
    amount = format_duration(minutes)
    if operation == "add":
        return _("add {duration}").format(duration=amount)
    if operation == "subtract":
        return _("subtract {duration}").format(duration=amount)
    return _("set {duration}").format(duration=amount)


def _receipt(
    ctx: Ctx,
    test: Test,
    shown: list[_Shown],
    count: int,
    what: str,
    reason: str,
    latest: datetime,
    *,
    all_: bool,
    note: str = "",
) -> Reply:
    """``shown``: the first RECEIPT_LINES candidates as they were before the change, now
    changed; the latest end time speaks for the rest."""
    lines = []
    items = []
    for candidate, before, old_end in shown:
        new_total, new_end = candidate.incident_minutes, end_time(candidate, test)
        items.append(
            {
                "candidate": candidate.number,
                "before_minutes": before,
                "after_minutes": new_total,
                "end_before": old_end,
                "end_after": new_end,
            }
        )
        lines.append(
            _("• {candidate}: {before} → {after}; end time {old_end} → {new_end}").format(
                candidate=candidate.number,
                before=format_duration(before),
                after=format_duration(new_total),
                old_end=format_time(old_end, ctx.tz),
                new_end=format_time(new_end, ctx.tz),
            )
        )
    more = count - RECEIPT_LINES
    if more > 0:
        lines.append(_("…and {n} more.").format(n=number(more)))
    numbers = [s.candidate.number for s in shown]
    if all_:
        whom = _("all {count} candidates").format(count=number(count))
    elif count == 1:
        whom = _("candidate {candidate}").format(candidate=numbers[0])
    elif more > 0:
        whom = _("candidates {numbers} and {n} more").format(
            numbers=", ".join(numbers), n=number(more)
        )
    else:
        whom = _("candidates {numbers}").format(numbers=", ".join(numbers))
    head = _("Incident time for {whom} of {test}: {what} (reason: {reason}).").format(
        whom=whom, test=test.code, what=what, reason=reason
    ) + (f" {note}" if note else "")
    log = _(
        "{actor} incident time {what} for {whom} of {test}; why: {reason}; latest end time "
        "now {end}"
    ).format(
        actor=f"<@{ctx.actor}>",
        what=what,
        whom=whom,
        test=test.code,
        reason=reason,
        end=format_time(latest, ctx.tz),
    )
    return Reply(
        text="\n".join([head, *lines]),
        kind="receipt",
        data={
            "test": test.code,
            "action": "incident_time",
            "what": what,
            "reason": reason,
            "count": count,
            "items": items,  # the first RECEIPT_LINES candidates, as listed in the text
            "latest_end": latest,
        },
        log=[log],
        mentions=(ctx.actor,),
    )
