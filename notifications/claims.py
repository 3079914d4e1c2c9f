"""Claims: how senders share rows to send (deliveries of notices, outbox messages).

A claim selects the ids of the due rows first (``LIMIT n``, ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL; SQLite serialises writers), then updates those rows by id: two senders never
take the same row, and a claim takes exactly its batch whatever plan the database picks.
A claim lasts while its sender lives: every sender renews its liveness row
``notifier:<id>`` in the ``leases`` table; the rows of a sender whose liveness row has
expired are free at once for the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from store.models import Lease

LEASE_PREFIX = "notifier:"


def claim_over(model: Any, now: datetime) -> ColumnElement[bool]:
    """The row's claim has run out, or its sender is dead (its liveness row has expired)."""
    live = select(Lease.holder).where(Lease.name.like(LEASE_PREFIX + "%"), Lease.expires_at >= now)
    return or_(model.claimed_until < now, model.claimed_by.not_in(live))


def claim(
    db_session: Session,
    model: Any,
    *,
    due: Sequence[ColumnElement[bool]],
    now: datetime,
    limit: int,
    worker_id: str,
    until: datetime,
    skip_locked: bool,
) -> list[int]:
    """Claim up to ``limit`` pending rows of ``model`` that are ``due``, oldest due first.

    The caller commits (the claim holds from then on) and reads the rows by the ids.
    """
    query = (
        select(model.id)
        .where(
            model.status == "pending",
            model.next_attempt_at <= now,
            model.claimed_until.is_(None) | claim_over(model, now),
            *due,
        )
        .order_by(model.next_attempt_at, model.id)
        .limit(limit)
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True, of=model)
    # The ids first, then the rows by id: as one UPDATE … WHERE id IN (SELECT … LIMIT)
    # PostgreSQL may run the limited subquery once per row it looks at (a semi join chosen
    # on stale statistics) and take far more than the batch.
    ids = list(db_session.scalars(query).all())
    if ids:
        # Still free: the rows are locked (PostgreSQL) or the transaction holds the write
        # lock (SQLite).
        db_session.execute(
            update(model).where(model.id.in_(ids)).values(claimed_by=worker_id, claimed_until=until)
        )
    return ids


def release_over(db_session: Session, model: Any, now: datetime) -> int:
    """Free the pending rows whose claim is over: nothing of them had been sent."""
    return db_session.execute(
        update(model)
        .where(model.status == "pending", model.claimed_by.is_not(None), claim_over(model, now))
        .values(claimed_by=None, claimed_until=None)
    ).rowcount


def stuck_in_sending(db_session: Session, model: Any, now: datetime, **values: Any) -> int:
    """Rows left in ``sending`` by a sender that stopped or died get ``values``: the request
    may have reached the receiver, so none of them is resent blindly."""
    return db_session.execute(
        update(model)
        .where(model.status == "sending", claim_over(model, now))
        .values(claimed_by=None, claimed_until=None, updated_at=now, **values)
    ).rowcount
