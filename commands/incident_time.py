"""`/incident-time TEST CANDIDATES add|subtract|set DURATION [reason]` (R4, R5)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, func, or_, select, update

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
    rows, own_ends = _locked_rows(ctx, test, numbers)
    if not rows:
        _refuse_no_candidates(test)
    # 2,000 rows: plain tuple unpacking, not attribute access per row.
    before = {number: incident for _, number, incident, _, _ in rows}
    if operation == "set":
        after = dict.fromkeys(before, minutes)
    else:
        delta = minutes if operation == "add" else -minutes
        after = {number: incident + delta for number, incident in before.items()}
    _refuse_below_zero([r for r in rows if after[r[1]] < 0], minutes)
    _apply(ctx, test, rows, numbers, operation, minutes)
    reason = reason or "no reason given"
    audit.record(
        ctx,
        action=f"incident_time_{operation}",
        reason=reason,
        before=before,
        after=after,
        test=test,
        candidate_id=rows[0].id if len(rows) == 1 else None,
        batch=str(uuid.uuid4()),
    )
    return _receipt(ctx, test, rows, own_ends, after, what, reason, all_candidates=numbers is None)


def _preview_all(
    ctx: Ctx, test: Test, operation: str, minutes: int, what: str, command: str
) -> Reply:
    """The confirmation of `all`, from aggregates: a preview reads no row it won't show."""
    db = ctx.db_session
    params = {"test_id": test.id, "minutes": minutes}
    count = db.scalar(_COUNT, params)
    if not count:
        _refuse_no_candidates(test)
    below = []
    if operation == "subtract":
        below = db.execute(_BELOW_ZERO_AFTER_SUBTRACT, params).all()
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


def _locked_rows(
    ctx: Ctx, test: Test, numbers: list[str] | None
) -> tuple[list[Any], dict[int, datetime]]:
    """The candidates' rows (id, number, incident_minutes, extra_minutes), locked, and the
    individual ends (R2) of the few that have one."""
    # Through the session's connection: plain rows need none of the ORM's per-row work.
    connection = ctx.db_session.connection()
    rows = connection.execute(
        _LOCKED_ROWS[numbers is not None], {"test_id": test.id, "numbers": numbers or []}
    ).all()
    if numbers is not None:
        missing = sorted(set(numbers) - {number for _, number, *_ in rows})
        if missing:
            raise NotFound(
                f"Test {test.code} has no candidate {', '.join(missing)}. "
                f"Check the numbers with `/exam {test.code}`. Nothing was changed."
            )
    with_own = [id_ for id_, _, _, _, has_own_end in rows if has_own_end]
    own_ends = {}
    if with_own:
        for id_, postponed, individual in connection.execute(_OWN_ENDS, {"ids": with_own}):
            own_ends[id_] = max(d for d in (postponed, individual) if d is not None)
    return rows, own_ends


# The statements are built once, with bind parameters: building one costs more than
# running it.
_c = Candidate.__table__.c
_IN_TEST = _c.test_id == bindparam("test_id")
_MINUTES = bindparam("minutes")
_COUNT = select(func.count()).where(_IN_TEST)
# Subtracting is the only way below zero (R4): those who would go there, for the refusal.
_BELOW_ZERO_AFTER_SUBTRACT = (
    select(_c.number, _c.incident_minutes)
    .where(_IN_TEST, _c.incident_minutes - _MINUTES < 0)
    .order_by(_c.number)
)
_ROWS = (
    select(
        _c.id,
        _c.number,
        _c.incident_minutes,
        _c.extra_minutes,
        # 1/0 rather than a boolean: 2,000 rows skip the driver's bool conversion.
        case(
            (or_(_c.postponed_deadline.is_not(None), _c.individual_deadline.is_not(None)), 1),
            else_=0,
        ).label("has_own_end"),
    )
    .where(_IN_TEST)
    .order_by(_c.number)
    .with_for_update()
)
# By whether numbers are given: all of the test, or those numbers.
_LOCKED_ROWS = {
    False: _ROWS,
    True: _ROWS.where(_c.number.in_(bindparam("numbers", expanding=True))),
}
_OWN_ENDS = select(_c.id, _c.postponed_deadline, _c.individual_deadline).where(
    _c.id.in_(bindparam("ids", expanding=True))
)
_NEW_TOTAL = {
    "add": _c.incident_minutes + _MINUTES,
    "subtract": _c.incident_minutes - _MINUTES,
    "set": _MINUTES,
}
# One statement for the whole batch, by (operation, whether numbers are given). An UPDATE's
# bind parameters must not be named like its table's columns: "of_test", not "test_id".
_UPDATE = {
    (operation, by_number): update(Candidate.__table__)
    .where(
        _c.test_id == bindparam("of_test"),
        *([_c.id.in_(bindparam("ids", expanding=True))] if by_number else []),
    )
    .values(incident_minutes=new_total)
    for operation, new_total in _NEW_TOTAL.items()
    for by_number in (False, True)
}


def _apply(
    ctx: Ctx, test: Test, rows: list[Any], numbers: list[str] | None, operation: str, minutes: int
) -> None:
    # One statement for the whole batch: the rows are locked, so the totals we checked are
    # the totals being changed.
    ctx.db_session.connection().execute(
        _UPDATE[operation, numbers is not None],
        {"of_test": test.id, "minutes": minutes, "ids": [id_ for id_, *_ in rows]},
    )
    # Objects loaded earlier in this session must not keep the old total.
    for obj in ctx.db_session.identity_map.values():
        if isinstance(obj, Candidate) and obj.test_id == test.id:
            ctx.db_session.expire(obj, ["incident_minutes"])


def _latest_end(
    ordinary: datetime, rows: list[Any], own_ends: dict[int, datetime], after: dict[str, int]
) -> datetime:
    """R3's latest end time after the change, in whole minutes where the base is shared."""
    shared = [extra + after[number] for id_, number, _, extra, _ in rows if id_ not in own_ends]
    ends = [ordinary + timedelta(minutes=max(shared))] if shared else []
    ends += [
        end_time_from(ordinary, own_ends[id_], extra, after[number])
        for id_, number, _, extra, _ in rows
        if id_ in own_ends
    ]
    return max(ends)


def _describe(operation: str, minutes: int) -> str:
    amount = format_duration(minutes)
    return {"add": f"add {amount}", "subtract": f"subtract {amount}", "set": f"set {amount}"}[
        operation
    ]


def _receipt(
    ctx: Ctx,
    test: Test,
    rows: list[Any],
    own_ends: dict[int, datetime],
    after: dict[str, int],
    what: str,
    reason: str,
    *,
    all_candidates: bool,
) -> Reply:
    ordinary = ordinary_end(test)

    def end_of(r: Any, incident: int) -> datetime:
        return end_time_from(ordinary, own_ends.get(r.id), r.extra_minutes, incident)

    lines = []
    items = []
    # The receipt lists the first lines; the latest end time speaks for the rest.
    for r in rows[:RECEIPT_LINES]:
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
    latest = _latest_end(ordinary, rows, own_ends, after)
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
            "count": len(rows),
            "items": items,  # the first RECEIPT_LINES candidates, as listed in the text
            "latest_end": latest,
        },
        log=[log],
    )
