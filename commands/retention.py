"""Retention: erase candidates' contact data RETENTION_DAYS after their test has ended.

What goes: phone numbers and e-mail addresses (on the candidate, in the notifier's delivery
rows, and in the registry imports of the change record), and the page tokens, so that a
link sent earlier answers 404. What stays: the candidate numbers, the anonymous change
record, the notice counts and the report's facts, which appeals need (docs/operations.md).

A test has ended at the last deadline any of its candidates had: extra time, individual
ends and new deliveries included. A test with a new delivery still open has not ended.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from commands import audit
from commands.context import Ctx
from commands.timeparse import format_time
from commands.timing import end_time, ordinary_end, reopen_deadline_from
from notifications.masking import ERASED
from store.models import Candidate, Change, Delivery, Test

CONTACT_FIELDS = ("phone", "email")
# Deliveries not yet sent can no longer be: their address is gone.
UNSENT = ("pending", "unknown")
CHUNK = 500  # ids per IN list: well within SQLite's and PostgreSQL's parameter limits


@dataclass(frozen=True)
class Due:
    test: str
    test_id: int
    ended: datetime
    candidate_ids: tuple[int, ...]


def due(db_session: Session, *, now: datetime, days: int) -> list[Due]:
    """The tests that ended more than ``days`` ago and still hold contact data."""
    cutoff = now - timedelta(days=days)
    # The end of exam time is the earliest a test can end: only those tests are looked at.
    tests = db_session.scalars(
        select(Test)
        .where(Test.end <= cutoff)
        .where(
            select(Candidate.id)
            .where(Candidate.test_id == Test.id, Candidate.purged_at.is_(None))
            .exists()
        )
        .order_by(Test.code)
    ).all()
    found = []
    for test in tests:
        candidates = db_session.scalars(
            select(Candidate)
            .where(Candidate.test_id == test.id)
            .options(selectinload(Candidate.reopenings))
        ).all()
        ended = _ended(test, candidates)
        if ended is None or ended > cutoff:
            continue
        ids = tuple(c.id for c in candidates if c.purged_at is None)
        found.append(Due(test=test.code, test_id=test.id, ended=ended, candidate_ids=ids))
    return found


def _ended(test: Test, candidates: Sequence[Candidate]) -> datetime | None:
    """The test's last deadline, or None while a new delivery is still open."""
    last = ordinary_end(test)
    for candidate in candidates:
        own = end_time(candidate, test)
        last = max(last, own)
        for reopening in candidate.reopenings:
            if reopening.closed_at is None:
                return None
            deadline = reopen_deadline_from(reopening.mode, reopening.deadline, own)
            last = max(last, reopening.closed_at, deadline or reopening.closed_at)
    return last


def purge(ctx: Ctx, *, days: int, dry_run: bool = False) -> list[Due]:
    """Erase the contact data of every test ``due``; ``dry_run`` only says what it would."""
    found = due(ctx.db_session, now=ctx.now, days=days)
    if dry_run:
        return found
    for item in found:
        _erase(ctx, item, days)
    return found


def _erase(ctx: Ctx, item: Due, days: int) -> None:
    connection = ctx.db_session.connection()
    for ids in _chunks(item.candidate_ids):
        connection.execute(
            update(Candidate.__table__)
            .where(Candidate.id.in_(ids))
            .values(phone=None, email=None, notice_token=None, purged_at=ctx.now)
        )
        connection.execute(
            update(Delivery.__table__)
            .where(Delivery.candidate_id.in_(ids), Delivery.status.in_(UNSENT))
            .values(status="failed", error_code=ERASED, updated_at=ctx.now)
        )
        # A provider's error message may quote the number it refused.
        connection.execute(
            update(Delivery.__table__)
            .where(Delivery.candidate_id.in_(ids))
            .values(address=None, error_message=None)
        )
    _erase_from_record(ctx, item.test_id)
    # Objects loaded before these statements must not keep what was erased.
    ctx.db_session.expire_all()
    audit.record(
        ctx,
        action="retention_purge",
        reason=f"RETENTION_DAYS={days}: the test ended {format_time(item.ended, ctx.tz)}",
        before={},
        after={"candidates": len(item.candidate_ids)},
        test=ctx.db_session.get(Test, item.test_id),
    )


def _erase_from_record(ctx: Ctx, test_id: int) -> None:
    """The registry's imports keep each candidate's fields in the change record: the contact
    fields among them become ERASED. The one change the append-only record allows, and only
    by this statement."""
    connection = ctx.db_session.connection()
    rows = connection.execute(
        select(Change.id, Change.before, Change.after).where(
            Change.test_id == test_id, Change.action == "registry_candidates"
        )
    ).all()
    for id_, before, after in rows:
        new_before, new_after = _scrubbed(before), _scrubbed(after)
        if (new_before, new_after) != (before, after):
            connection.execute(
                update(Change.__table__)
                .where(Change.id == id_)
                .values(before=new_before, after=new_after)
            )


def _scrubbed(by_number: dict[str, Any] | None) -> dict[str, Any] | None:
    if not by_number:
        return by_number
    return {
        number: {
            k: (ERASED if k in CONTACT_FIELDS and v is not None else v) for k, v in fields.items()
        }
        if isinstance(fields, dict)
        else fields
        for number, fields in by_number.items()
    }


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def summary(found: list[Due], *, days: int, dry_run: bool, tz: Any) -> str:
    """What `examdesk purge` prints: how many candidates of which tests."""
    if not found:
        return (
            f"Nothing to erase: no test that ended more than {days} days ago still holds "
            f"contact data (RETENTION_DAYS={days})."
        )
    total = sum(len(item.candidate_ids) for item in found)
    verb = "Would erase" if dry_run else "Erased"
    lines = [
        f"{verb} the phone numbers, e-mail addresses and page links of {total} candidates "
        f"of {len(found)} test{'s' if len(found) > 1 else ''} (RETENTION_DAYS={days}):"
    ]
    lines += [
        f"  {item.test}: {len(item.candidate_ids)} candidates (ended {format_time(item.ended, tz)})"
        for item in found
    ]
    if dry_run:
        lines.append("Nothing was changed (--dry-run).")
    return "\n".join(lines)
