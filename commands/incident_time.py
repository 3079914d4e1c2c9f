"""`/incident-time TEST CANDIDATES add|subtract|set DURATION [reason]` (R4, R5)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import func, select, update

from commands import audit
from commands.context import Ctx
from commands.errors import InvalidInput, NotFound, Refused
from commands.lookup import parse_candidate_list
from commands.permissions import test_for_support
from commands.reply import Confirm, Reply
from commands.timeparse import format_duration, format_time, parse_duration
from commands.timing import end_time_from, ordinary_end, ordinary_end_passed
from store.models import Candidate, Test

USAGE = (
    "Usage: /incident-time TEST CANDIDATES add|subtract|set DURATION [reason]\n"
    "  CANDIDATES: all, or numbers separated by commas (10023,10024)\n"
    "  DURATION: minutes (15) or 1h30m, 45m, 2h\n"
    "  add puts minutes on top, subtract takes them off, set replaces the total.\n"
    "  Example: /incident-time TDT4100-2026H 10023 add 15 network outage in room 3"
)
OPERATIONS = ("add", "subtract", "set")
RECEIPT_LINES = 15


class Row(NamedTuple):
    id: int
    number: str
    incident_minutes: int
    extra_minutes: int
    postponed_deadline: datetime | None
    individual_deadline: datetime | None

    def end(self, test_ordinary_end: datetime, incident: int) -> datetime:
        ends = [d for d in (self.postponed_deadline, self.individual_deadline) if d]
        return end_time_from(
            test_ordinary_end, max(ends) if ends else None, self.extra_minutes, incident
        )


def parse(args: list[str]) -> tuple[str, list[str] | None, str, int, str]:
    if len(args) < 4:
        raise InvalidInput("Some parts are missing.", USAGE)
    test_code, who, operation, amount, *reason = args
    if operation.lower() not in OPERATIONS:
        raise InvalidInput(f"'{operation}' is not add, subtract or set.", USAGE)
    return (
        test_code,
        parse_candidate_list(who),
        operation.lower(),
        parse_duration(amount),
        " ".join(reason),
    )


def reads_only(args: list[str], confirmed: bool) -> bool:
    """The preview of `all` only reads; the command changes when confirmed."""
    return not confirmed and len(args) >= 2 and args[1].lower() == "all"


def run(ctx: Ctx, args: list[str], *, confirmed: bool = False) -> Reply:
    test_code, numbers, operation, minutes, reason = parse(args)
    return change(
        ctx,
        test_code=test_code,
        numbers=numbers,
        operation=operation,
        minutes=minutes,
        reason=reason,
        confirmed=confirmed,
        command=" ".join(["/incident-time", *args]),
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
) -> Reply:
    test = test_for_support(
        db_session=ctx.db_session,
        user_id=ctx.actor,
        test_code=test_code,
        doing="change incident extra time",
    )
    _refuse_after_ordinary_end(ctx, test)
    what = _describe(operation, minutes)
    if numbers is None and not confirmed:
        return _preview_all(ctx, test, operation, minutes, what, command)
    rows = _locked_rows(ctx, test, numbers)
    if not rows:
        _refuse_no_candidates(test)
    after = {r.number: _new_total(r.incident_minutes, operation, minutes) for r in rows}
    _refuse_below_zero([r for r in rows if after[r.number] < 0], minutes)
    _apply(ctx, test, rows, numbers, operation, minutes)
    reason = reason or "no reason given"
    audit.record(
        ctx,
        action=f"incident_time_{operation}",
        reason=reason,
        before={r.number: r.incident_minutes for r in rows},
        after=after,
        test=test,
        candidate_id=rows[0].id if len(rows) == 1 else None,
        batch=str(uuid.uuid4()),
    )
    return _receipt(ctx, test, rows, after, what, reason, all_candidates=numbers is None)


def _preview_all(
    ctx: Ctx, test: Test, operation: str, minutes: int, what: str, command: str
) -> Reply:
    """The confirmation of `all`, from aggregates: a preview reads no row it won't show."""
    db = ctx.db_session
    in_test = Candidate.test_id == test.id
    count = db.scalar(select(func.count()).select_from(Candidate).where(in_test))
    if not count:
        _refuse_no_candidates(test)
    new_total = _new_total(Candidate.incident_minutes, operation, minutes)
    below = db.execute(
        select(Candidate.number, Candidate.incident_minutes)
        .where(in_test, new_total < 0)
        .order_by(Candidate.number)
    ).all()
    _refuse_below_zero(below, minutes)
    return Reply(
        text=f"This would {what} incident time for all {count} candidates of "
        f"{test.code}. Nothing is changed until you confirm.",
        kind="confirm",
        confirm=Confirm(
            prompt=f"{what.capitalize()} incident time for all {count} candidates of {test.code}?",
            command=command,
            button=f"Yes, {what} for all {count}",
        ),
    )


def _refuse_no_candidates(test: Test) -> None:
    raise Refused(
        f"Test {test.code} has no candidates yet, so there is nothing to change. "
        "Import its candidates first (`examdesk import candidates FILE`)."
    )


def _refuse_below_zero(below: list, minutes: int) -> None:
    if below:
        listed = ", ".join(f"{r.number} has {format_duration(r.incident_minutes)}" for r in below)
        raise Refused(
            f"Subtracting {format_duration(minutes)} would take incident time below zero "
            f"({listed}). Nothing was changed. Subtract less, or use `set 0`."
        )


def _refuse_after_ordinary_end(ctx: Ctx, test: Test) -> None:
    if ordinary_end_passed(test, ctx.now):
        raise Refused(
            f"The ordinary end of {test.code} ({format_time(ordinary_end(test), ctx.tz)}) has "
            "passed, so extra time can no longer be changed (R5). Open the candidate for new "
            f"delivery instead: `/reopen {test.code} CANDIDATE in 30m reason`."
        )


def _locked_rows(ctx: Ctx, test: Test, numbers: list[str] | None) -> list[Row]:
    query = (
        select(
            Candidate.id,
            Candidate.number,
            Candidate.incident_minutes,
            Candidate.extra_minutes,
            Candidate.postponed_deadline,
            Candidate.individual_deadline,
        )
        .where(Candidate.test_id == test.id)
        .order_by(Candidate.number)
        .with_for_update()
    )
    if numbers is not None:
        query = query.where(Candidate.number.in_(numbers))
    # Through the session's connection: plain rows need none of the ORM's per-row work.
    rows = list(map(Row._make, ctx.db_session.connection().execute(query).all()))
    if numbers is not None:
        missing = sorted(set(numbers) - {r.number for r in rows})
        if missing:
            raise NotFound(
                f"Test {test.code} has no candidate {', '.join(missing)}. "
                f"Check the numbers with `/exam {test.code}`. Nothing was changed."
            )
    return rows


def _new_total(current, operation: str, minutes: int):
    """The new total, for a number or (in a preview's query) for the column."""
    if operation == "add":
        return current + minutes
    if operation == "subtract":
        return current - minutes
    return minutes


def _apply(
    ctx: Ctx, test: Test, rows: list[Row], numbers: list[str] | None, operation: str, minutes: int
) -> None:
    # One statement for the whole batch: the rows are locked, so the totals we checked are
    # the totals being changed.
    column = Candidate.incident_minutes
    value = {"add": column + minutes, "subtract": column - minutes, "set": minutes}[operation]
    where = [Candidate.test_id == test.id]
    if numbers is not None:
        where.append(Candidate.id.in_([r.id for r in rows]))
    ctx.db_session.execute(
        update(Candidate).where(*where).values(incident_minutes=value),
        execution_options={"synchronize_session": False},
    )
    # Objects loaded earlier in this session must not keep the old total.
    for obj in ctx.db_session.identity_map.values():
        if isinstance(obj, Candidate) and obj.test_id == test.id:
            ctx.db_session.expire(obj, ["incident_minutes"])


def _describe(operation: str, minutes: int) -> str:
    amount = format_duration(minutes)
    return {"add": f"add {amount}", "subtract": f"subtract {amount}", "set": f"set {amount}"}[
        operation
    ]


def _receipt(
    ctx: Ctx,
    test: Test,
    rows: list[Row],
    after: dict[str, int],
    what: str,
    reason: str,
    *,
    all_candidates: bool,
) -> Reply:
    end = ordinary_end(test)
    lines = []
    items = []
    # 2,000 candidates share a handful of distinct end times: compute each one once.
    ends: dict[tuple, datetime] = {}

    def end_of(r: Row, incident: int) -> datetime:
        key = (r.postponed_deadline, r.individual_deadline, r.extra_minutes + incident)
        found = ends.get(key)
        if found is None:
            found = ends[key] = r.end(end, incident)
        return found

    for r in rows:
        old_end, new_end = end_of(r, r.incident_minutes), end_of(r, after[r.number])
        items.append(
            {
                "candidate": r.number,
                "before_minutes": r.incident_minutes,
                "after_minutes": after[r.number],
                "end_before": old_end,
                "end_after": new_end,
            }
        )
        if len(lines) < RECEIPT_LINES:
            lines.append(
                f"• {r.number}: {format_duration(r.incident_minutes)} → "
                f"{format_duration(after[r.number])}; end time {format_time(old_end, ctx.tz)} → "
                f"{format_time(new_end, ctx.tz)}"
            )
    if len(rows) > RECEIPT_LINES:
        lines.append(f"…and {len(rows) - RECEIPT_LINES} more.")
    if all_candidates:
        whom = f"all {len(rows)} candidates"
    elif len(rows) == 1:
        whom = f"candidate {rows[0].number}"
    else:
        whom = f"candidates {', '.join(r.number for r in rows[:RECEIPT_LINES])}" + (
            f" and {len(rows) - RECEIPT_LINES} more" if len(rows) > RECEIPT_LINES else ""
        )
    head = f"Incident time for {whom} of {test.code}: {what} (reason: {reason})."
    latest = max(i["end_after"] for i in items)
    log = (
        f"<@{ctx.actor}> incident time {what} for {whom} of {test.code}; why: {reason}; "
        f"latest end time now {format_time(latest, ctx.tz)}"
    )
    return Reply(
        text="\n".join([head, *lines]),
        kind="receipt",
        data={
            "test": test.code,
            "action": "incident_time",
            "what": what,
            "reason": reason,
            "items": items,
        },
        log=[log],
    )
