"""`/incident-time TEST CANDIDATES add|subtract|set DURATION [reason]` (R4, R5)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, bindparam, case, func, not_, or_, select, update

from commands import audit
from commands.context import Ctx
from commands.errors import InvalidInput, NotFound, Refused
from commands.lookup import parse_candidate_list
from commands.permissions import test_for_support
from commands.reply import Confirm, Reply, listed
from commands.timeparse import MAX_DURATION_MINUTES, format_duration, format_time, parse_duration
from commands.timing import end_time_from, individual_end_from, ordinary_end, ordinary_end_passed
from store.models import AnyTest, Candidate
from store.sql import json_object_agg

USAGE = (
    "Usage: /incident-time TEST CANDIDATES add|subtract|set DURATION [reason]\n"
    "  CANDIDATES: all, or numbers separated by commas (10023,10024)\n"
    "  DURATION: minutes (15) or 1h30m, 45m, 2h\n"
    "  add puts minutes on top, subtract takes them off, set replaces the total.\n"
    "  Example: /incident-time TDT4100-2026H 10023 add 15 network outage in room 3"
)
OPERATIONS = ("add", "subtract", "set")
RECEIPT_LINES = 15
# R4: a candidate's total incident time is bounded like one change is.
MAX_TOTAL_MINUTES = MAX_DURATION_MINUTES


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
        audit.check_reason(" ".join(reason)),
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
    refuse_after_ordinary_end(ctx, test)
    what = _describe(operation, minutes)
    if numbers is None and not confirmed:
        return _preview_all(ctx, test, operation, minutes, what, command)
    reason = reason or "no reason given"
    action = f"incident_time_{operation}"
    batch = audit.new_batch(test_wide=numbers is None)
    if numbers is None:
        return _change_all(ctx, test, operation, minutes, what, reason, action, batch)
    rows, own_ends = _locked_rows(ctx, test, numbers)
    before = {number: incident for _, number, incident, _, _ in rows}
    after = {
        number: _new_total(incident, operation, minutes) for number, incident in before.items()
    }
    _refuse_below_zero([r for r in rows if after[r[1]] < 0], minutes)
    _refuse_above_most([r for r in rows if after[r[1]] > MAX_TOTAL_MINUTES], minutes)
    _apply(ctx, test, rows, numbers, operation, minutes)
    change_id = audit.record(
        ctx,
        action=action,
        reason=reason,
        before=before,
        after=after,
        test=test,
        candidate_id=rows[0].id if len(rows) == 1 else None,
        batch=batch,
    )
    latest = _latest_end(ordinary_end(test), rows, own_ends, after)
    reply = _receipt(
        ctx, test, rows, len(rows), own_ends, operation, minutes, what, reason, latest, all_=False
    )
    reply.data |= audit.undo_offer(change_id, ctx.now)
    return reply


def _change_all(
    ctx: Ctx,
    test: AnyTest,
    operation: str,
    minutes: int,
    what: str,
    reason: str,
    action: str,
    batch: str,
) -> Reply:
    """Every candidate of the test, in the database: each candidate's before and after go
    into the change record by SQL, and only the receipt's first lines come to Python."""
    connection = ctx.db_session.connection()
    params = {"of_test": test.id, "minutes": minutes}
    # Locks every row on PostgreSQL (SQLite's BEGIN IMMEDIATE already holds the database).
    count = connection.execute(_LOCK_ALL, params).scalar_one()
    if not count:
        _refuse_no_candidates(test)
    if operation == "subtract":
        _refuse_below_zero(connection.execute(_BELOW_ZERO_AFTER_SUBTRACT, params).all(), minutes)
    if operation == "add":
        _refuse_above_most(connection.execute(_ABOVE_MOST_AFTER_ADD, params).all(), minutes)
    first, own_ends = _first_rows(connection, params)
    audit.record_computed(
        ctx,
        action=action,
        reason=reason,
        before_after=_BEFORE_AFTER[operation],
        params=params,
        test=test,
        batch=batch,
    )
    _apply(ctx, test, first, None, operation, minutes)
    latest = _latest_end_of_test(connection, ordinary_end(test), params)
    return _receipt(
        ctx, test, first, count, own_ends, operation, minutes, what, reason, latest, all_=True
    )


def _preview_all(
    ctx: Ctx, test: AnyTest, operation: str, minutes: int, what: str, command: str
) -> Reply:
    """The confirmation of `all`, from aggregates: a preview reads no row it won't show."""
    db = ctx.db_session
    params = {"of_test": test.id, "minutes": minutes}
    count = db.scalar(_COUNT, params)
    if not count:
        _refuse_no_candidates(test)
    if operation == "subtract":
        _refuse_below_zero(db.execute(_BELOW_ZERO_AFTER_SUBTRACT, params).all(), minutes)
    if operation == "add":
        _refuse_above_most(db.execute(_ABOVE_MOST_AFTER_ADD, params).all(), minutes)
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


def _refuse_no_candidates(test: AnyTest) -> None:
    raise Refused(
        f"Test {test.code} has no candidates yet, so there is nothing to change. "
        "Import its candidates first (`examdesk import candidates FILE`)."
    )


def _has(rows: list) -> str:
    return listed([f"{r.number} has {format_duration(r.incident_minutes)}" for r in rows])


def _refuse_below_zero(below: list, minutes: int) -> None:
    if below:
        raise Refused(
            f"Subtracting {format_duration(minutes)} would take incident time below zero "
            f"for {len(below)} candidate{'s' if len(below) > 1 else ''} ({_has(below)}). "
            "Nothing was changed. Subtract less, or use `set 0`."
        )


def _refuse_above_most(above: list, minutes: int) -> None:
    if above:
        most = format_duration(MAX_TOTAL_MINUTES)
        raise Refused(
            f"Adding {format_duration(minutes)} would take incident time above {most}, the "
            f"most a candidate can have (R4), for {len(above)} "
            f"candidate{'s' if len(above) > 1 else ''} ({_has(above)}). Nothing was changed. "
            f"Add less, or use `set` with a total of at most {most}."
        )


def refuse_after_ordinary_end(ctx: Ctx, test: AnyTest) -> None:
    if ordinary_end_passed(test, ctx.now):
        raise Refused(
            f"The ordinary end of {test.code} ({format_time(ordinary_end(test), ctx.tz)}) has "
            "passed, so extra time can no longer be changed (R5). Open the candidate for new "
            f"delivery instead: `/reopen {test.code} CANDIDATE in 30m reason`."
        )


def _locked_rows(
    ctx: Ctx, test: AnyTest, numbers: list[str]
) -> tuple[list[Any], dict[int, datetime]]:
    """The candidates' rows (id, number, incident_minutes, extra_minutes, has_own_end),
    locked, and the individual ends (R2) of the few that have one."""
    # Through the session's connection: plain rows need none of the ORM's per-row work.
    connection = ctx.db_session.connection()
    rows = connection.execute(_LOCKED_ROWS, {"of_test": test.id, "numbers": numbers}).all()
    missing = sorted(set(numbers) - {number for _, number, *_ in rows})
    if missing:
        raise NotFound(
            f"Test {test.code} has no candidate {listed(missing)}. "
            f"Check the numbers with `/exam {test.code}`. Nothing was changed."
        )
    return rows, _own_ends(connection, rows)


def _first_rows(connection: Any, params: dict[str, Any]) -> tuple[list[Any], dict[int, datetime]]:
    """The receipt's first candidates, as ``_locked_rows`` gives them, before the change."""
    rows = connection.execute(_FIRST_ROWS, params).all()
    return rows, _own_ends(connection, rows)


def _own_ends(connection: Any, rows: list[Any]) -> dict[int, datetime]:
    """The individual ends (R2) of the few of ``rows`` that have one."""
    with_own = [id_ for id_, _, _, _, has_own_end in rows if has_own_end]
    if not with_own:
        return {}
    return {
        id_: individual_end_from(postponed, individual)
        for id_, postponed, individual in connection.execute(_OWN_ENDS, {"ids": with_own})
    }


def _new_total(current: int, operation: str, minutes: int) -> int:
    if operation == "add":
        return current + minutes
    if operation == "subtract":
        return current - minutes
    return minutes


def _apply(
    ctx: Ctx,
    test: AnyTest,
    rows: list[Any],
    numbers: list[str] | None,
    operation: str,
    minutes: int,
) -> None:
    """One statement for the whole batch: the rows are locked, so the totals we checked are
    the totals being changed."""
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
    """R3's latest end time after the change, of ``rows``: candidates without an end of
    their own share the ordinary end, so the most extra + incident minutes decide."""
    shared = [extra + after[number] for id_, number, _, extra, _ in rows if id_ not in own_ends]
    ends = [ordinary + timedelta(minutes=max(shared))] if shared else []
    ends += [
        end_time_from(ordinary, own_ends[id_], extra, after[number])
        for id_, number, _, extra, _ in rows
        if id_ in own_ends
    ]
    return max(ends)


def _latest_end_of_test(connection: Any, ordinary: datetime, params: dict[str, Any]) -> datetime:
    """``_latest_end`` of every candidate of the test, after the change, from the database:
    the most minutes among those sharing the ordinary end, and each of the few own ends."""
    shared = connection.execute(_MOST_MINUTES_SHARED, params).scalar()
    ends = [ordinary + timedelta(minutes=shared)] if shared is not None else []
    ends += [
        end_time_from(ordinary, individual_end_from(postponed, individual), extra, incident)
        for extra, incident, postponed, individual in connection.execute(_WITH_OWN_END, params)
    ]
    return max(ends)


# The statements are built once, with bind parameters: building one costs more than running
# it. An INSERT's or UPDATE's bind parameters must not be named like its table's columns:
# "of_test", not "test_id".
_c = Candidate.__table__.c
_IN_TEST = _c.test_id == bindparam("of_test")
_MINUTES = bindparam("minutes", type_=Integer)
_COUNT = select(func.count()).where(_IN_TEST)
_LOCK_ALL = select(func.count()).select_from(
    select(_c.id).where(_IN_TEST).with_for_update().subquery()
)
# Subtracting is the only way below zero (R4): those who would go there, for the refusal.
_BELOW_ZERO_AFTER_SUBTRACT = (
    select(_c.number, _c.incident_minutes)
    .where(_IN_TEST, _c.incident_minutes - _MINUTES < 0)
    .order_by(_c.number)
)
# Adding is the only way above the most (set is bounded by parse_duration).
_ABOVE_MOST_AFTER_ADD = (
    select(_c.number, _c.incident_minutes)
    .where(_IN_TEST, _c.incident_minutes + _MINUTES > MAX_TOTAL_MINUTES)
    .order_by(_c.number)
)
_HAS_OWN_END = or_(_c.postponed_deadline.is_not(None), _c.individual_deadline.is_not(None))
_ROWS = (
    select(
        _c.id,
        _c.number,
        _c.incident_minutes,
        _c.extra_minutes,
        # 1/0 rather than a boolean: 2,000 rows skip the driver's bool conversion.
        case((_HAS_OWN_END, 1), else_=0).label("has_own_end"),
    )
    .where(_IN_TEST)
    .order_by(_c.number)
)
_LOCKED_ROWS = _ROWS.where(_c.number.in_(bindparam("numbers", expanding=True))).with_for_update()
_FIRST_ROWS = _ROWS.limit(RECEIPT_LINES)
_OWN_ENDS = select(_c.id, _c.postponed_deadline, _c.individual_deadline).where(
    _c.id.in_(bindparam("ids", expanding=True))
)
_NEW_TOTAL = {
    "add": _c.incident_minutes + _MINUTES,
    "subtract": _c.incident_minutes - _MINUTES,
    "set": _MINUTES,
}
# Each candidate's total before and after, keyed by number, as audit.record would store them.
_BEFORE_AFTER = {
    operation: select(
        json_object_agg(_c.number, _c.incident_minutes), json_object_agg(_c.number, new_total)
    ).where(_IN_TEST)
    for operation, new_total in _NEW_TOTAL.items()
}
# By (operation, whether numbers are given).
_UPDATE = {
    (operation, by_number): update(Candidate.__table__)
    .where(_IN_TEST, *([_c.id.in_(bindparam("ids", expanding=True))] if by_number else []))
    .values(incident_minutes=new_total)
    for operation, new_total in _NEW_TOTAL.items()
    for by_number in (False, True)
}
_MOST_MINUTES_SHARED = select(func.max(_c.extra_minutes + _c.incident_minutes)).where(
    _IN_TEST, not_(_HAS_OWN_END)
)
_WITH_OWN_END = select(
    _c.extra_minutes, _c.incident_minutes, _c.postponed_deadline, _c.individual_deadline
).where(_IN_TEST, _HAS_OWN_END)


def _describe(operation: str, minutes: int) -> str:
    amount = format_duration(minutes)
    return {"add": f"add {amount}", "subtract": f"subtract {amount}", "set": f"set {amount}"}[
        operation
    ]


def _receipt(
    ctx: Ctx,
    test: AnyTest,
    listed: list[Any],
    count: int,
    own_ends: dict[int, datetime],
    operation: str,
    minutes: int,
    what: str,
    reason: str,
    latest: datetime,
    *,
    all_: bool,
) -> Reply:
    """``listed``: the first candidates (at least the first RECEIPT_LINES) before the change;
    the latest end time speaks for the rest."""
    ordinary = ordinary_end(test)

    def end_of(r: Any, incident: int) -> datetime:
        return end_time_from(ordinary, own_ends.get(r.id), r.extra_minutes, incident)

    lines = []
    items = []
    for r in listed[:RECEIPT_LINES]:
        new_total = _new_total(r.incident_minutes, operation, minutes)
        old_end, new_end = end_of(r, r.incident_minutes), end_of(r, new_total)
        items.append(
            {
                "candidate": r.number,
                "before_minutes": r.incident_minutes,
                "after_minutes": new_total,
                "end_before": old_end,
                "end_after": new_end,
            }
        )
        lines.append(
            f"• {r.number}: {format_duration(r.incident_minutes)} → "
            f"{format_duration(new_total)}; end time {format_time(old_end, ctx.tz)} → "
            f"{format_time(new_end, ctx.tz)}"
        )
    if count > RECEIPT_LINES:
        lines.append(f"…and {count - RECEIPT_LINES} more.")
    if all_:
        whom = f"all {count} candidates"
    elif count == 1:
        whom = f"candidate {listed[0].number}"
    else:
        whom = f"candidates {', '.join(r.number for r in listed[:RECEIPT_LINES])}" + (
            f" and {count - RECEIPT_LINES} more" if count > RECEIPT_LINES else ""
        )
    head = f"Incident time for {whom} of {test.code}: {what} (reason: {reason})."
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
            "count": count,
            "items": items,  # the first RECEIPT_LINES candidates, as listed in the text
            "latest_end": latest,
        },
        log=[log],
        mentions=(ctx.actor,),
    )
