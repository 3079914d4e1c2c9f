"""The append-only change record: who, when, what, why, before and after (R15)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Insert, Integer, Select, String, bindparam, event, insert, null, select
from sqlalchemy.orm import Session

from commands.context import Ctx
from commands.errors import InvalidInput
from commands.language import _, number
from commands.text import refuse_direction_controls
from notifications import events
from store.models import Candidate, Change, Test

MAX_REASON = 500
# A reason ending with this changes the candidates without telling them.
QUIET = "--quiet"
# A change to one or a list of candidates can be undone this long after it (commands/undo).
UNDO_WINDOW = timedelta(minutes=15)
# Marks the batch of a change to every candidate of a test: undo takes back changes to one
# or a list of candidates only, and the record must say which a change was.
_TEST_WIDE = "all-"


def check_reason(reason: str) -> str:
    """A reason as typed for a change, refused when longer than MAX_REASON characters or
    when it holds a direction control."""
    if len(reason) > MAX_REASON:
        raise InvalidInput(
            _(
                "The reason is {length} characters long; shorten the reason to {most} "
                "characters or fewer. Nothing was changed."
            ).format(length=number(len(reason)), most=MAX_REASON)
        )
    return refuse_direction_controls(
        reason, what=_("The reason"), outcome=_("Nothing was changed.")
    )


def require_reason(reason: str, usage: str | None = None) -> tuple[str, bool]:
    """R4, R15: the reason a change must give, and whether it ends with ``--quiet``
    (the candidates are then not told). Refused, with the usage, when there is none."""
    reason = check_reason(reason.strip())
    quiet = reason.lower().endswith(QUIET)
    if quiet:
        reason = reason[: -len(QUIET)].strip()
    if not reason:
        # R4, R15
        raise InvalidInput(
            _(
                "Give a reason at the end: every change records why it was made. "
                "Nothing was changed."
            )
            + (
                " " + _("End it with `{quiet}` to leave the candidates untold.").format(quiet=QUIET)
                if not quiet
                else ""
            ),
            usage,
        )
    return reason, quiet


def record(
    ctx: Ctx,
    *,
    action: str,
    reason: str,
    before: dict[str, Any],
    after: dict[str, Any],
    test: Test | None = None,
    candidate: Candidate | None = None,
    candidate_id: int | None = None,
    batch: str | None = None,
) -> int:
    """One record per change; a batch keeps each candidate's before/after under its number.
    Returns the change's id."""
    db = ctx.db_session
    # Rows the command added (a candidate, a reopening) get their ids first.
    db.flush()
    test_id = test.id if test else (candidate.test_id if candidate else None)
    values = _row(ctx, action, reason, before, after, test_id, batch)
    values["candidate_id"] = candidate.id if candidate else candidate_id
    # Nothing of the command reads the record back: one INSERT, not an object to track.
    change_id = db.scalar(insert(Change).returning(Change.id), values)
    if ctx.outside.webhook_urls:
        number = None
        if batch is None and candidate is not None:
            number = candidate.number
        elif batch is None and candidate_id is not None:
            number = db.scalar(select(Candidate.number).where(Candidate.id == candidate_id))
        _announce(ctx, change_id, action, reason, before, after, test_id, number, batch)
    return change_id


def record_each(
    ctx: Ctx,
    *,
    action: str,
    reason: str,
    changes: list[tuple[Candidate, dict[str, Any], dict[str, Any]]],
) -> None:
    """One record per candidate, as ``record`` makes it, for many candidates changed by one
    event (a deadline shared by a whole test): one INSERT for all of them."""
    if not changes:
        return
    db = ctx.db_session
    db.flush()
    rows = []
    for candidate, before, after in changes:
        row = _row(ctx, action, reason, before, after, candidate.test_id, None)
        rows.append(row | {"candidate_id": candidate.id})
    change_ids = db.scalars(
        insert(Change).returning(Change.id, sort_by_parameter_order=True), rows
    ).all()
    if ctx.outside.webhook_urls:
        for change_id, (candidate, before, after) in zip(change_ids, changes, strict=True):
            _announce(
                ctx,
                change_id,
                action,
                reason,
                before,
                after,
                candidate.test_id,
                candidate.number,
                None,
            )


def _row(
    ctx: Ctx,
    action: str,
    reason: str,
    before: dict[str, Any],
    after: dict[str, Any],
    test_id: int | None,
    batch: str | None,
) -> dict[str, Any]:
    return {
        "at": ctx.now,
        "actor": ctx.actor,
        "action": action,
        "test_id": test_id,
        "reason": reason,
        "before": before,
        "after": after,
        "batch": batch,
    }


def new_batch(*, test_wide: bool = False) -> str:
    """The id that groups a change's candidates; ``test_wide`` for every candidate of a test."""
    return _TEST_WIDE + uuid.uuid4().hex if test_wide else str(uuid.uuid4())


def is_test_wide(batch: str | None) -> bool:
    return batch is not None and batch.startswith(_TEST_WIDE)


def undo_offer(change_id: int, at: datetime) -> dict[str, Any]:
    """What a receipt's data carries when its change can be undone (commands/undo)."""
    return {"change_id": change_id, "undo_until": at + UNDO_WINDOW}


def record_computed(
    ctx: Ctx,
    *,
    action: str,
    reason: str,
    before_after: Select,
    params: dict[str, Any],
    test: Test,
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
    if ctx.outside.webhook_urls:
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
    events.enqueue_event(ctx.db_session, webhook_urls=ctx.outside.webhook_urls, body=body)


def _values(action: str, value: Any) -> dict[str, Any]:
    """A candidate's before or after as an object: incident time records keep the total."""
    if isinstance(value, dict):
        return value
    if value is None:
        return {}
    return {"incident_minutes": value} if action.startswith("incident_time") else {"value": value}


_changes = Change.__table__


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
