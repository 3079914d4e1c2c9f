"""`/exam TEST [refresh]`: the test at a glance, computed with aggregate queries."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Connection,
    String,
    and_,
    bindparam,
    func,
    literal,
    null,
    select,
    text,
    type_coerce,
    union,
    union_all,
)
from sqlalchemy.orm import Session, contains_eager, selectinload

from commands import exam_today, question_reports, registry, report_files
from commands.context import Ctx
from commands.errors import InvalidInput
from commands.lookup import get_test
from commands.permissions import require_support, test_for_support_or_teacher
from commands.reply import Reply
from commands.timeparse import format_duration, format_time, iso, relative_to_ordinary_end
from commands.timing import ordinary_end as ordinary_end_of
from commands.timing import timing, upload_allowance_minutes
from store.db import read_only
from store.models import (
    Candidate,
    CandidateStatus,
    Delivery,
    Notice,
    NoticeReceipt,
    Reopening,
    Test,
)

USAGE = (
    "Usage: /exam TEST [refresh|report]\n"
    "  `/exam` alone lists today's tests with their state (a teacher: the tests they teach).\n"
    "  Overview of a test: candidates per status, extra and incident time, individual ends,\n"
    "  new deliveries and notices. `refresh` (support) re-reads the student registry now;\n"
    "  `report` summarises the incident report (the file: `examdesk report TEST`).\n"
    "  Example: /exam TDT4100-2026H"
)
LISTED = 10
SUBCOMMANDS = ("refresh", "report")


def run(ctx: Ctx, args: list[str], *, confirmed: bool = False) -> Reply:
    if not args:
        return exam_today.run(ctx)
    if len(args) > 2 or (len(args) == 2 and args[1].lower() not in SUBCOMMANDS):
        raise InvalidInput(
            "Give one test code, optionally followed by `refresh` or `report`.", USAGE
        )
    if len(args) == 2 and args[1].lower() == "report":
        return report_files.run(ctx, args[0])
    db = ctx.db_session
    prefix = ""
    if len(args) == 2:
        test, prefix = _refresh(ctx, args[0])
    else:
        test, _role = test_for_support_or_teacher(
            db_session=db, user_id=ctx.actor, test_code=args[0], doing="see it"
        )
    reply = overview(ctx, test)
    reply.text = prefix + reply.text
    return reply


def _refresh(ctx: Ctx, test_code: str) -> tuple[Test, str]:
    """`/exam TEST refresh`: the test and the refresh's summary (R11).

    Who may refresh is checked first, in a transaction that only reads: only support staff
    make the server read the registry's files. The exports are then parsed and compared with
    the database (``registry.read_exports``) before the transaction that writes, which on
    SQLite takes the write lock."""
    db = ctx.db_session
    own = not db.in_transaction()
    if own:
        read_only(db)
    get_test(db_session=db, test_code=test_code)
    require_support(db_session=db, user_id=ctx.actor, doing="refresh from the registry")
    if own:
        db.rollback()
    if ctx.registry_dir is None:
        raise InvalidInput(
            "No student registry is configured (REGISTRY_DIR is unset), so there is "
            "nothing to refresh from. Import files with `examdesk import candidates FILE`."
        )
    exports = registry.read_exports(ctx, ctx.registry_dir)
    return get_test(db_session=db, test_code=test_code), registry.apply_exports(ctx, exports) + "\n"


def reads_only(args: list[str], confirmed: bool) -> bool:
    """`refresh` writes what the registry says; the overview and the report only read."""
    return len(args) < 2 or args[1].lower() != "refresh"


# The statements are built once: building one costs more than running it.
_c = Candidate.__table__.c
_IN_TEST = _c.test_id == bindparam("test_id")
# What /exam lists, as the WHERE of the candidates' partial indexes (store.models) word for
# word: SQLite uses a partial index only for a query that repeats its condition.
CANDIDATE_WITH_EXTRA = "extra_minutes > 0"
CANDIDATE_WITH_INCIDENT = "incident_minutes != 0"
CANDIDATE_WITH_OWN_END = "postponed_deadline IS NOT NULL OR individual_deadline IS NOT NULL"
# Lists of candidates: (condition, the value listed with each number). Each condition is the
# WHERE of a partial index (store.models), so counting a list reads only its index entries.
_LISTS = {
    "extra": (text(CANDIDATE_WITH_EXTRA), _c.extra_minutes),
    "incident": (text(CANDIDATE_WITH_INCIDENT), _c.incident_minutes),
    "individual": (
        text(f"({CANDIDATE_WITH_OWN_END})"),
        literal(0),  # nothing is listed with an individual end; the union wants a column
    ),
}
_notices, _receipts, _deliveries = Notice.__table__, NoticeReceipt.__table__, Delivery.__table__
_OF_TEST = _notices.c.test_id == bindparam("test_id")
# Everything /exam counts, in one round trip: rows of (kind, key, status, count, read).
# Kinds: candidates per status; the candidates of each list; notices sent; in-app receipts
# (and how many are read); deliveries per channel and status.
STATUS, LIST, SENT, INAPP, DELIVERY = "status", "list", "sent", "inapp", "delivery"
_COUNTS = union_all(
    # The key column also holds list names and channels: plain text, not a status.
    select(literal(STATUS), type_coerce(_c.status, String), null(), func.count(), literal(0))
    .where(_IN_TEST)
    .group_by(_c.status),
    *(
        select(literal(LIST), literal(key), null(), func.count(), literal(0)).where(
            _IN_TEST, condition
        )
        for key, (condition, _) in _LISTS.items()
    ),
    select(literal(SENT), null(), null(), func.count(), literal(0)).where(_OF_TEST),
    select(
        literal(INAPP), null(), null(), func.count(_receipts.c.id), func.count(_receipts.c.read_at)
    )
    .select_from(_receipts.join(_notices, _notices.c.id == _receipts.c.notice_id))
    .where(_OF_TEST),
    select(literal(DELIVERY), _deliveries.c.channel, _deliveries.c.status, func.count(), literal(0))
    .select_from(_deliveries.join(_notices, _notices.c.id == _deliveries.c.notice_id))
    .where(_OF_TEST)
    .group_by(_deliveries.c.channel, _deliveries.c.status),
)


def _reopened(db: Session, test: Test) -> tuple[list[Candidate], int]:
    """The first LISTED candidates open for new delivery, by number, and how many there are."""
    open_ = (Reopening.candidate_id == Candidate.id, Reopening.closed_at.is_(None))
    # "+ 0": SQLite would otherwise walk all the test's candidates by the test_id index and
    # probe each for a reopening; the open reopenings are few, so start from those.
    of_test = Candidate.test_id + 0 == test.id
    count = db.scalar(
        select(func.count()).select_from(Reopening).join(Candidate, and_(*open_)).where(of_test)
    )
    if not count:
        return [], 0
    first = db.scalars(
        select(Candidate)
        .join(Reopening, and_(*open_))
        .where(of_test)
        .options(contains_eager(Candidate.reopenings))
        .order_by(Candidate.number)
        .limit(LISTED)
    ).unique()
    return list(first), count


def _may_still_write(db: Session, test: Test) -> list[Candidate]:
    """After the ordinary end only a candidate with time of its own (extra or incident time,
    an individual end) or an open reopening can still be writing: each of those comes from
    its partial index or from the few open reopenings, never from the whole test."""
    of_test = {"test_id": test.id}
    ids = union(
        *(select(_c.id).where(_IN_TEST, condition) for condition, _ in _LISTS.values()),
        select(Reopening.candidate_id)
        .join(Candidate, Candidate.id == Reopening.candidate_id)
        .where(Candidate.test_id + 0 == bindparam("test_id"), Reopening.closed_at.is_(None)),
    )
    return list(
        db.scalars(
            select(Candidate)
            .where(Candidate.id.in_(ids))
            .options(selectinload(Candidate.reopenings))
            .order_by(Candidate.number),
            of_test,
        )
    )


@functools.cache
def _firsts(keys: tuple[str, ...]) -> CompoundSelect:
    """The first LISTED candidates of each list in ``keys``, as (key, number, value) rows."""
    firsts = [
        select(literal(key).label("key"), _c.number, _LISTS[key][1].label("value"))
        .where(_IN_TEST, _LISTS[key][0])
        .order_by(_c.number)
        .limit(LISTED)
        .subquery()
        for key in keys
    ]
    return union_all(*(select(first) for first in firsts))


def overview(ctx: Ctx, test: Test) -> Reply:
    db, tz = ctx.db_session, ctx.tz
    counts, listed, notices = _counted(db.connection(), test)
    total = sum(counts.values())
    extra, incident, individual = listed["extra"], listed["incident"], listed["individual"]
    reopened, reopened_count = _reopened(db, test)
    ordinary_end = ordinary_end_of(test)
    allowance = upload_allowance_minutes(test)

    lines = [
        f"{test.code} — {test.title} · {test.kind} exam",
        f"Exam time {format_time(test.start, tz)} – {format_time(test.end, tz)}"
        + (f" + {format_duration(allowance)} upload" if allowance else "")
        + f" · ordinary end {format_time(ordinary_end, tz)}"
        + (" (passed)" if ctx.now >= ordinary_end else ""),
        f"Candidates: {total} (not started {counts.get('not_started', 0)}, started "
        f"{counts.get('started', 0)}, submitted {counts.get('submitted', 0)})",
        _line("Extra time (registry)", extra, minutes=True),
        _line("Incident time", incident, minutes=True),
        _line("Individual end", individual, minutes=False),
    ]
    reopen_items = []
    for candidate in reopened:
        number, t = candidate.number, timing(candidate, test)
        mode, due = t.reopening.mode, t.reopen_deadline
        reopen_items.append({"candidate": number, "mode": mode, "deadline": iso(due, tz)})
        when = (
            "no time limit"
            if due is None
            else (f"until {format_time(due, tz)} ({relative_to_ordinary_end(ordinary_end, due)})")
        )
        lines.append(f"New delivery: {number} allowed, {mode}, {when}")
    if not reopened:
        lines.append("New delivery: none")
    elif reopened_count > len(reopened):
        lines.append(
            f"New delivery: …{reopened_count - len(reopened)} more open "
            f"(`/candidate {test.code} NUMBER` for each)"
        )
    lines.append(_notice_line(notices))
    open_reports = question_reports.reports(ctx.db_session, test_id=test.id, only_open=True)
    lines.append(question_reports.open_line(open_reports, tz))
    grading = grading_state(ctx, test, ordinary_end)
    lines.append(f"Grading: {grading['text']}")
    data: dict[str, Any] = {
        "test": test.code,
        "title": test.title,
        "kind": test.kind,
        "start": iso(test.start, tz),
        "exam_end": iso(test.end, tz),
        "ordinary_end": iso(ordinary_end, tz),
        "candidates": total,
        "by_status": {s: counts.get(s, 0) for s in CandidateStatus},
        "extra": extra,
        "incident": incident,
        "individual": individual,
        "reopened": {"count": reopened_count, "first": reopen_items},
        "notices": notices,
        "open_reports": [r.as_json(tz) for r in open_reports],
        "grading": grading,
    }
    return Reply(text="\n".join(lines), kind="overview", data=data)


def _counted(
    connection: Connection, test: Test
) -> tuple[dict[str, int], dict[str, dict[str, Any]], dict[str, Any]]:
    """The test's candidates by status, its lists' counts and first entries, and its
    notices' figures: two queries."""
    params = {"test_id": test.id}
    counts: dict[str, int] = {}
    listed: dict[str, dict[str, Any]] = {key: {"count": 0, "first": []} for key in _LISTS}
    notices: dict[str, Any] = {"sent": 0, "inapp": 0, "read": 0, "deliveries": {}}
    for kind, key, status, count, read in connection.execute(_COUNTS, params):
        if kind == STATUS:
            counts[key] = count
        elif kind == LIST:
            listed[key]["count"] = count
        elif kind == SENT:
            notices["sent"] = count
        elif kind == INAPP:
            notices["inapp"], notices["read"] = count, read
        else:
            notices["deliveries"].setdefault(key, {})[status] = count
    non_empty = tuple(key for key in _LISTS if listed[key]["count"])
    if non_empty:
        rows = connection.execute(_firsts(non_empty), params).all()
        for key, number, value in sorted(rows, key=lambda row: row[1]):
            listed[key]["first"].append([number] if key == "individual" else [number, value])
    return counts, listed, notices


def grading_state(ctx: Ctx, test: Test, ordinary_end: datetime) -> dict[str, Any]:
    """Whether grading can start: not before the ordinary end, nor while anyone still
    writes (time left, R3) or is open for new delivery (R6)."""
    if ctx.now < ordinary_end:
        return {
            "can_start": False,
            "waiting": None,
            "text": f"not before the ordinary end ({format_time(ordinary_end, ctx.tz)})",
        }
    waiting = []
    for candidate in _may_still_write(ctx.db_session, test):
        t = timing(candidate, test)
        writing = candidate.status != CandidateStatus.SUBMITTED and t.end_time > ctx.now
        if t.reopening is not None or writing:
            waiting.append(candidate.number)
    if not waiting:
        return {
            "can_start": True,
            "waiting": {"count": 0, "first": []},
            "text": "can start: nobody is still writing or open for new delivery "
            f"(who delivered late: `/exam {test.code} report`)",
        }
    first = waiting[:LISTED]
    more = len(waiting) - len(first)
    return {
        "can_start": False,
        "waiting": {"count": len(waiting), "first": first},
        "text": f"wait: {len(waiting)} still writing or open ({', '.join(first)}"
        + (f" … and {more} more" if more else "")
        + ")",
    }


def _line(label: str, listed: dict[str, Any], *, minutes: bool) -> str:
    if not listed["count"]:
        return f"{label}: none"
    shown = ", ".join(
        f"{row[0]} {'+' if row[1] > 0 else ''}{format_duration(row[1])}" if minutes else row[0]
        for row in listed["first"]
    )
    more = listed["count"] - len(listed["first"])
    return f"{label}: {listed['count']} ({shown}{f', …{more} more' if more else ''})"


def _notice_line(stats: dict[str, Any]) -> str:
    if not stats["sent"]:
        return "Notices: none sent"
    parts = [f"Notices: {stats['sent']} sent; in-app {stats['inapp']}, read {stats['read']}"]
    for channel, counts in sorted(stats["deliveries"].items()):
        label = "SMS" if channel == "sms" else "e-mail"
        parts.append(f"{label} " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return "; ".join(parts)
