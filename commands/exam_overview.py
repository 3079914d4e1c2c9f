"""`/exam TEST [refresh]`: the test at a glance, computed with aggregate queries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload

from commands import registry
from commands.context import Ctx
from commands.errors import InvalidInput
from commands.lookup import get_test
from commands.permissions import require_support, require_support_or_teacher_of
from commands.reply import Reply
from commands.timeparse import format_duration, format_time, relative_to_ordinary_end
from commands.timing import ordinary_end as ordinary_end_of
from commands.timing import (
    reopen_deadline,
    upload_allowance_minutes,
)
from store.models import Candidate, Delivery, Notice, NoticeReceipt, Reopening, Test

USAGE = (
    "Usage: /exam TEST [refresh]\n"
    "  Overview of a test: candidates per status, extra and incident time, individual ends,\n"
    "  new deliveries and notices. `refresh` (support) re-reads the student registry now.\n"
    "  Example: /exam TDT4100-2026H"
)
LISTED = 10


def run(ctx: Ctx, args: list[str], *, confirmed: bool = False) -> Reply:
    if not args or len(args) > 2 or (len(args) == 2 and args[1].lower() != "refresh"):
        raise InvalidInput("Give one test code, optionally followed by `refresh`.", USAGE)
    db = ctx.db_session
    test = get_test(db_session=db, test_code=args[0])
    prefix = ""
    if len(args) == 2:
        require_support(db_session=db, user_id=ctx.actor, doing="refresh from the registry")
        if ctx.registry_dir is None:
            raise InvalidInput(
                "No student registry is configured (REGISTRY_DIR is unset), so there is "
                "nothing to refresh from. Import files with `examdesk import candidates FILE`."
            )
        prefix = registry.refresh(ctx, ctx.registry_dir) + "\n"
    else:
        require_support_or_teacher_of(db_session=db, user_id=ctx.actor, test=test, doing="see it")
    reply = overview(ctx, test)
    reply.text = prefix + reply.text
    return reply


def overview(ctx: Ctx, test: Test) -> Reply:
    db, tz = ctx.db_session, ctx.tz
    in_test = Candidate.test_id == test.id
    counts = dict(
        db.execute(
            select(Candidate.status, func.count()).where(in_test).group_by(Candidate.status)
        ).all()
    )
    total = sum(counts.values())
    extra = _listed(db, in_test, Candidate.extra_minutes > 0, Candidate.extra_minutes)
    incident = _listed(db, in_test, Candidate.incident_minutes != 0, Candidate.incident_minutes)
    individual = _listed(
        db,
        in_test,
        or_(Candidate.postponed_deadline.is_not(None), Candidate.individual_deadline.is_not(None)),
        None,
    )
    reopened = db.scalars(
        select(Candidate)
        .join(Reopening, Reopening.candidate_id == Candidate.id)
        .where(in_test, Reopening.closed_at.is_(None))
        .options(selectinload(Candidate.reopenings))
        .order_by(Candidate.number)
    ).all()
    notices = notice_stats(ctx, test)
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
    for c in reopened:
        r = next(r for r in c.reopenings if r.closed_at is None)
        due = reopen_deadline(r, c, test)
        reopen_items.append(
            {
                "candidate": c.number,
                "mode": r.mode,
                "deadline": None if due is None else due.astimezone(tz).isoformat(),
            }
        )
        when = (
            "no time limit"
            if due is None
            else (f"until {format_time(due, tz)} ({relative_to_ordinary_end(ordinary_end, due)})")
        )
        lines.append(f"New delivery: {c.number} allowed, {r.mode}, {when}")
    if not reopened:
        lines.append("New delivery: none")
    lines.append(_notice_line(notices))
    data: dict[str, Any] = {
        "test": test.code,
        "title": test.title,
        "kind": test.kind,
        "start": test.start.astimezone(tz).isoformat(),
        "exam_end": test.end.astimezone(tz).isoformat(),
        "ordinary_end": ordinary_end.astimezone(tz).isoformat(),
        "candidates": total,
        "by_status": {s: counts.get(s, 0) for s in ("not_started", "started", "submitted")},
        "extra": extra,
        "incident": incident,
        "individual": individual,
        "reopened": reopen_items,
        "notices": notices,
    }
    return Reply(text="\n".join(lines), kind="overview", data=data)


def _listed(db, in_test, condition, value_column) -> dict[str, Any]:
    count = db.scalar(select(func.count()).where(in_test, condition))
    columns = [Candidate.number] + ([value_column] if value_column is not None else [])
    first = db.execute(
        select(*columns).where(in_test, condition).order_by(Candidate.number).limit(LISTED)
    ).all()
    return {"count": count, "first": [list(row) for row in first]}


def _line(label: str, listed: dict[str, Any], *, minutes: bool) -> str:
    if not listed["count"]:
        return f"{label}: none"
    shown = ", ".join(
        f"{row[0]} {'+' if row[1] > 0 else ''}{format_duration(row[1])}" if minutes else row[0]
        for row in listed["first"]
    )
    more = listed["count"] - len(listed["first"])
    return f"{label}: {listed['count']} ({shown}{f', …{more} more' if more else ''})"


def notice_stats(ctx: Ctx, test: Test) -> dict[str, Any]:
    db = ctx.db_session
    sent = db.scalar(select(func.count()).select_from(Notice).where(Notice.test_id == test.id))
    inapp, read = db.execute(
        select(func.count(NoticeReceipt.id), func.count(NoticeReceipt.read_at))
        .join(Notice, Notice.id == NoticeReceipt.notice_id)
        .where(Notice.test_id == test.id)
    ).one()
    deliveries: dict[str, dict[str, int]] = {}
    for channel, status, count in db.execute(
        select(Delivery.channel, Delivery.status, func.count())
        .join(Notice, Notice.id == Delivery.notice_id)
        .where(Notice.test_id == test.id)
        .group_by(Delivery.channel, Delivery.status)
    ):
        deliveries.setdefault(channel, {})[status] = count
    return {"sent": sent, "inapp": inapp, "read": read, "deliveries": deliveries}


def _notice_line(stats: dict[str, Any]) -> str:
    if not stats["sent"]:
        return "Notices: none sent"
    parts = [f"Notices: {stats['sent']} sent; in-app {stats['inapp']}, read {stats['read']}"]
    for channel, counts in sorted(stats["deliveries"].items()):
        label = "SMS" if channel == "sms" else "e-mail"
        parts.append(f"{label} " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return "; ".join(parts)
