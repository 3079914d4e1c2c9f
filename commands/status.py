"""A candidate's status as data: the keys of `examdesk status --json` (DESIGN.md)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from commands.timeparse import iso
from commands.timing import timing
from notifications.delivery_states import as_reported
from store.models import Candidate, Delivery, Notice, NoticeReceipt, Test


def candidate_status(candidate: Candidate, test: Test, tz: ZoneInfo) -> dict[str, Any]:
    t = timing(candidate, test)
    return {
        "test": test.code,
        "candidate": candidate.number,
        "status": candidate.status,
        "exam_end": iso(t.exam_end, tz),
        "upload_allowance_minutes": t.allowance_minutes,
        "ordinary_end": iso(t.ordinary_end, tz),
        "individual_end": iso(t.individual_end, tz),
        "extra_minutes": t.extra_minutes,
        "incident_minutes": t.incident_minutes,
        "end_time": iso(t.end_time, tz),
        "new_delivery": None
        if t.reopening is None
        else {"mode": t.reopening.mode, "deadline": iso(t.reopen_deadline, tz)},
        "deadline": iso(t.deadline, tz),
        "submitted_at": iso(candidate.submitted_at, tz),
    }


def test_notices(db_session: Session, test_id: int, tz: ZoneInfo) -> list[dict[str, Any]]:
    """The test's notices, oldest first: in-app count, how many were opened and how many
    confirmed read (`read`), and each outside channel's deliveries by status."""
    found: dict[int, dict[str, Any]] = {}
    for notice_id, sent_at, inapp, opened, read in db_session.execute(
        select(
            Notice.id,
            Notice.created_at,
            func.count(NoticeReceipt.id),
            func.count(NoticeReceipt.opened_at),
            func.count(NoticeReceipt.read_at),
        )
        .outerjoin(NoticeReceipt, NoticeReceipt.notice_id == Notice.id)
        .where(Notice.test_id == test_id)
        .group_by(Notice.id, Notice.created_at)
        .order_by(Notice.id)
    ):
        found[notice_id] = {
            "id": notice_id,
            "sent_at": iso(sent_at, tz),
            "inapp": inapp,
            "opened": opened,
            "read": read,
            "sms": {},
            "email": {},
        }
    for notice_id, channel, status, count in db_session.execute(
        select(Delivery.notice_id, Delivery.channel, Delivery.status, func.count())
        .join(Notice, Notice.id == Delivery.notice_id)
        .where(Notice.test_id == test_id)
        .group_by(Delivery.notice_id, Delivery.channel, Delivery.status)
    ):
        counts = found[notice_id].setdefault(channel, {})
        name = as_reported(status)
        counts[name] = counts.get(name, 0) + count
    return list(found.values())
