"""The append-only change record: who, when, what, why, before and after (R15)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.orm import Session

from commands.context import Ctx
from store.models import Candidate, Change, Test


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
) -> None:
    """One record per change; a batch keeps each candidate's before/after under its number."""
    db = ctx.db_session
    # Rows the command added (a candidate, a reopening) get their ids first.
    db.flush()
    # Inserted at once with Core: nothing reads it back, and the ORM's unit of work for one
    # row cost more than the rest of a one-candidate command.
    db.connection().execute(
        _INSERT,
        {
            "at": ctx.now,
            "actor": ctx.actor,
            "action": action,
            "test_id": test.id if test else (candidate.test_id if candidate else None),
            "candidate_id": candidate.id if candidate else candidate_id,
            "reason": reason,
            "before": before,
            "after": after,
            "batch": batch,
        },
    )


_INSERT = insert(Change.__table__)


@event.listens_for(Session, "before_flush")
def _changes_are_append_only(session: Session, _ctx: Any, _instances: Any) -> None:
    for obj in (*session.dirty, *session.deleted):
        if isinstance(obj, Change):
            raise RuntimeError("the change record is append-only")
