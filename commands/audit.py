"""The append-only change record: who, when, what, why, before and after (R15)."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Insert, Integer, Select, String, bindparam, event, insert, null, select
from sqlalchemy.orm import Session

from commands.context import Ctx
from commands.errors import InvalidInput
from notifications import events
from store.models import AnyTest, Candidate, Change, Test

MAX_REASON = 500


def check_reason(reason: str) -> str:
    """A reason as typed for a change, refused when longer than MAX_REASON characters."""
    if len(reason) > MAX_REASON:
        raise InvalidInput(
            f"The reason is {len(reason)} characters long; shorten the reason to {MAX_REASON} "
            "characters or fewer. Nothing was changed."
        )
    return reason


def record(
    ctx: Ctx,
    *,
    action: str,
    reason: str,
    before: dict[str, Any],
    after: dict[str, Any],
    test: AnyTest | None = None,
    candidate: Candidate | None = None,
    candidate_id: int | None = None,
    batch: str | None = None,
) -> None:
    """One record per change; a batch keeps each candidate's before/after under its number."""
    db = ctx.db_session
    # Rows the command added (a candidate, a reopening) get their ids first.
    db.flush()
    test_id = test.id if test else (candidate.test_id if candidate else None)
    # Inserted at once with Core: the ORM's unit of work for one row cost more than the rest
    # of a one-candidate command.
    change_id = (
        db.connection()
        .execute(
            _INSERT,
            {
                "at": ctx.now,
                "actor": ctx.actor,
                "action": action,
                "test_id": test_id,
                "candidate_id": candidate.id if candidate else candidate_id,
                "reason": reason,
                "before": before,
                "after": after,
                "batch": batch,
            },
        )
        .scalar_one()
    )
    if ctx.routes.webhook_urls:
        number = None
        if batch is None and candidate is not None:
            number = candidate.number
        elif batch is None and candidate_id is not None:
            number = db.scalar(select(Candidate.number).where(Candidate.id == candidate_id))
        _announce(ctx, change_id, action, reason, before, after, test_id, number, batch)


def record_computed(
    ctx: Ctx,
    *,
    action: str,
    reason: str,
    before_after: Select,
    params: dict[str, Any],
    test: AnyTest,
    batch: str,
) -> None:
    """One record of a test-wide change whose before and after the database computes.

    ``before_after`` selects one row: the before and the after as JSON objects keyed by
    candidate number (``store.sql.json_object_agg``), the same record ``record`` makes from
    two dicts, without fetching every candidate. Its bind parameters come in ``params``;
    they must not be named like a column of ``changes``.
    """
    ctx.db_session.flush()
    change_id = (
        ctx.db_session.connection()
        .execute(
            _insert_from(before_after),
            {
                **params,
                "change_at": ctx.now,
                "change_actor": ctx.actor,
                "change_action": action,
                "change_test": test.id,
                "change_reason": reason,
                "change_batch": batch,
            },
        )
        .scalar_one()
    )
    if ctx.routes.webhook_urls:
        before, after = ctx.db_session.execute(
            select(Change.before, Change.after).where(Change.id == change_id)
        ).one()
        _announce(ctx, change_id, action, reason, before, after, test.id, None, batch)


def _announce(
    ctx: Ctx,
    change_id: int,
    action: str,
    reason: str,
    before: dict[str, Any],
    after: dict[str, Any],
    test_id: int | None,
    number: str | None,
    batch: str | None,
) -> None:
    """The change record as an event for every receiver in WEBHOOK_URLS."""
    test_code = ctx.db_session.scalar(select(Test.code).where(Test.id == test_id))
    details = None
    if number is not None:
        candidates = [{"candidate": number, "before": before, "after": after}]
    elif batch is not None:
        # A batch keeps each candidate's values under its number.
        candidates = [
            {
                "candidate": key,
                "before": _values(action, before.get(key)),
                "after": _values(action, after.get(key)),
            }
            for key in dict.fromkeys([*before, *after])
        ]
    else:
        candidates, details = [], {"before": before, "after": after}
    body = events.event(
        action=action,
        at=ctx.now,
        test_code=test_code,
        actor=ctx.actor,
        reason=reason,
        candidates=candidates,
        change_id=change_id,
        details=details,
    )
    events.enqueue_event(ctx.db_session, ctx.routes, body)


def _values(action: str, value: Any) -> dict[str, Any]:
    """A candidate's before or after as an object: incident time records keep the total."""
    if isinstance(value, dict):
        return value
    if value is None:
        return {}
    return {"incident_minutes": value} if action.startswith("incident_time") else {"value": value}


_changes = Change.__table__
_INSERT = insert(_changes).returning(_changes.c.id)


@functools.cache
def _insert_from(before_after: Select) -> Insert:
    computed = before_after.subquery()
    before, after = computed.c
    return (
        insert(_changes)
        .from_select(
            [
                "at",
                "actor",
                "action",
                "test_id",
                "candidate_id",
                "reason",
                "before",
                "after",
                "batch",
            ],
            select(
                bindparam("change_at", type_=_changes.c.at.type),
                bindparam("change_actor", type_=String),
                bindparam("change_action", type_=String),
                bindparam("change_test", type_=Integer),
                null(),
                bindparam("change_reason", type_=String),
                before,
                after,
                bindparam("change_batch", type_=String),
            ),
        )
        .returning(_changes.c.id)
    )


@event.listens_for(Session, "before_flush")
def _changes_are_append_only(session: Session, _ctx: Any, _instances: Any) -> None:
    for obj in (*session.dirty, *session.deleted):
        if isinstance(obj, Change):
            raise RuntimeError("the change record is append-only")
