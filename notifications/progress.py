"""How far a notice has come: in-app, opened, confirmed read, each channel's deliveries."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.models import Candidate, Delivery, Notice, NoticeReceipt, Test

IN_PROGRESS = ("pending", "sending")
LISTED_FAILURES = 50


@dataclass
class Progress:
    notice_id: int
    test_code: str
    inapp: int
    read: int  # confirmed by the candidate's button
    opened: int = 0  # shown by the candidate's browser, read or not
    by_channel: dict[str, dict[str, int]] = field(default_factory=dict)
    # (candidate number, channel, status, reason) of failed, undelivered and unknown ones.
    problems: list[tuple[str, str, str, str]] = field(default_factory=list)
    problem_count: int = 0

    @property
    def done(self) -> bool:
        return not any(
            counts.get(status) for counts in self.by_channel.values() for status in IN_PROGRESS
        )


def progress(*, db_session: Session, notice_id: int) -> Progress | None:
    found = db_session.execute(
        select(Notice.id, Test.code)
        .join(Test, Test.id == Notice.test_id)
        .where(Notice.id == notice_id)
    ).first()
    if found is None:
        return None
    inapp, opened, read = db_session.execute(
        select(
            func.count(NoticeReceipt.id),
            func.count(NoticeReceipt.opened_at),
            func.count(NoticeReceipt.read_at),
        ).where(NoticeReceipt.notice_id == notice_id)
    ).one()
    result = Progress(
        notice_id=notice_id, test_code=found.code, inapp=inapp, read=read, opened=opened
    )
    for channel, status, count in db_session.execute(
        select(Delivery.channel, Delivery.status, func.count())
        .where(Delivery.notice_id == notice_id)
        .group_by(Delivery.channel, Delivery.status)
    ):
        result.by_channel.setdefault(channel, {})[status] = count
    bad = Delivery.status.in_(("failed", "undelivered", "unknown"))
    result.problem_count = db_session.scalar(
        select(func.count()).where(Delivery.notice_id == notice_id, bad)
    )
    result.problems = [
        (row.number, row.channel, row.status, row.error_message or row.error_code or "")
        for row in db_session.execute(
            select(
                Candidate.number,
                Delivery.channel,
                Delivery.status,
                Delivery.error_code,
                Delivery.error_message,
            )
            .join(Candidate, Candidate.id == Delivery.candidate_id)
            .where(Delivery.notice_id == notice_id, bad)
            .order_by(Candidate.number)
            .limit(LISTED_FAILURES)
        )
    ]
    return result
