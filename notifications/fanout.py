"""Fan-out of a notice to every candidate of a test, as an outbox in the caller's transaction.

The notice, one in-app receipt per candidate and one delivery per candidate and outside
channel (R13) are inserted in bulk and committed together, before anything is sent. The
dispatcher only ever reads committed deliveries, so a crash before the commit leaves nothing
and a crash after it leaves work that is picked up once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Row, insert, literal, select
from sqlalchemy.orm import Session

from notifications import texts
from notifications.addresses import NO_EMAIL, NO_NUMBER, usable_email, usable_phone
from notifications.channels import SMS, outside_channel
from store.models import Candidate, Delivery, DeliveryStatus, Notice, NoticeReceipt, Test

CHUNK = 2000
NO_ADDRESS_CODE = "no_address"


@dataclass
class Plan:
    """What a fan-out would create: shown in the confirmation before anything is sent."""

    test_code: str
    channel: str
    candidates: int = 0
    reachable: int = 0
    # Candidate numbers with no usable phone number (SMS) or e-mail address.
    unreachable: list[str] = field(default_factory=list)
    # Candidates by the language they read (nb | en), for a notice written in one only.
    languages: dict[str, int] = field(default_factory=lambda: dict.fromkeys(texts.LANGUAGES, 0))

    @property
    def sms(self) -> int:
        return self.reachable if self.channel == SMS else 0

    @property
    def emails(self) -> int:
        return 0 if self.channel == SMS else self.reachable

    @property
    def missing_reason(self) -> str:
        return NO_NUMBER if self.channel == SMS else NO_EMAIL


@dataclass
class FanOut(Plan):
    notice_id: int = 0


def _address(channel: str, phone: str | None, email: str | None) -> str | None:
    return usable_phone(phone) if channel == SMS else usable_email(email)


def _candidates(db_session: Session, test_id: int) -> Iterator[list[Row]]:
    """Candidates in keyset-paged chunks: memory stays flat however large the test."""
    last = 0
    while True:
        rows = db_session.execute(
            select(
                Candidate.id, Candidate.number, Candidate.phone, Candidate.email, Candidate.language
            )
            .where(Candidate.test_id == test_id, Candidate.id > last)
            .order_by(Candidate.id)
            .limit(CHUNK)
        ).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id


def plan(*, db_session: Session, test: Test) -> Plan:
    result = Plan(test_code=test.code, channel=outside_channel(test))
    for rows in _candidates(db_session, test.id):
        for row in rows:
            result.candidates += 1
            result.languages[texts.language_of(row.language)] += 1
            if _address(result.channel, row.phone, row.email):
                result.reachable += 1
            else:
                result.unreachable.append(row.number)
    return result


def fan_out(
    *,
    db_session: Session,
    test: Test,
    text_nb: str,
    text_en: str,
    created_by: str,
    now: datetime,
    report_id: int | None = None,
    slack_channel: str | None = None,
    slack_ts: str | None = None,
) -> FanOut:
    """Create the notice and all its rows; the caller commits (or rolls back) once."""
    channel = outside_channel(test)
    notice_id = db_session.execute(
        insert(Notice)
        .values(
            test_id=test.id,
            report_id=report_id,
            text_nb=text_nb,
            text_en=text_en,
            created_by=created_by,
            created_at=now,
            slack_channel=slack_channel,
            slack_ts=slack_ts,
        )
        .returning(Notice.id)
    ).scalar_one()
    db_session.execute(
        insert(NoticeReceipt).from_select(
            ["notice_id", "candidate_id"],
            select(literal(notice_id), Candidate.id).where(Candidate.test_id == test.id),
        )
    )
    result = FanOut(test_code=test.code, channel=channel, notice_id=notice_id)
    deliveries = Delivery.__table__
    for rows in _candidates(db_session, test.id):
        batch = []
        for row in rows:
            address = _address(channel, row.phone, row.email)
            result.candidates += 1
            result.languages[texts.language_of(row.language)] += 1
            if address:
                result.reachable += 1
            else:
                result.unreachable.append(row.number)
            # A candidate without an address still gets a row, failed with the reason, so
            # the gap shows in every count and summary instead of vanishing.
            batch.append(
                {
                    "notice_id": notice_id,
                    "candidate_id": row.id,
                    "channel": channel,
                    "address": address,
                    "status": DeliveryStatus.PENDING if address else DeliveryStatus.FAILED,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "error_code": None if address else NO_ADDRESS_CODE,
                    "error_message": None if address else result.missing_reason,
                    "updated_at": now,
                }
            )
        db_session.execute(insert(deliveries), batch)
    return result
