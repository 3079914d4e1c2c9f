"""Run a command in its own transaction: applied whole, or not at all."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from commands import change_log
from commands.context import Ctx
from commands.errors import CommandError
from commands.reply import Reply
from commands.router import command_name, dispatch, reads_only
from notifications.channels import Outside
from store.db import read_only

T = TypeVar("T")


def in_transaction(
    *,
    session_factory: sessionmaker[Session],
    actor: str,
    tz: ZoneInfo,
    work: Callable[[Ctx], T],
    now: datetime,
    registry_dir: Path | None = None,
    reads_only: bool = False,
    outside: Outside | None = None,
    via: str = "examdesk",
) -> T:
    """``work(ctx)`` applied whole or not at all: its result, or its CommandError raised
    again once everything is rolled back. A Reply's change-log lines are posted with it
    (``via`` names the front door in the post).

    A Reply asking for confirmation must change nothing, not even a lock: it is rolled back
    too. A preview stored as a pending confirmation (its ``confirm.token`` set) commits that
    one row: a preview only reads.
    """
    with session_factory() as db_session:
        if reads_only:
            read_only(db_session)
        ctx = Ctx(
            db_session=db_session,
            actor=actor,
            tz=tz,
            now=now,
            registry_dir=registry_dir,
            outside=outside or Outside(),
        )
        try:
            result = work(ctx)
        except CommandError:
            db_session.rollback()
            raise
        if isinstance(result, Reply) and result.needs_confirmation and not _stored(result):
            db_session.rollback()
            return result
        if isinstance(result, Reply) and result.ok and not result.needs_confirmation:
            change_log.post(ctx, result.log, via=via, mentions=result.mentions)
        db_session.commit()
        return result


def _stored(reply: Reply) -> bool:
    return reply.confirm is not None and reply.confirm.token is not None


def execute(
    *,
    session_factory: sessionmaker[Session],
    actor: str,
    command_line: str,
    tz: ZoneInfo,
    now: datetime,
    confirmed: bool = False,
    registry_dir: Path | None = None,
    store_preview: Callable[[Ctx, Reply], Reply] | None = None,
    outside: Outside | None = None,
    via: str | None = None,
) -> Reply:
    """A command line's Reply, a refusal's included (the same text at every front door).

    ``store_preview`` keeps a preview for a later confirmation, in the same transaction.
    """

    def run(ctx: Ctx) -> Reply:
        reply = dispatch(ctx, command_line, confirmed=confirmed)
        if store_preview is not None and reply.needs_confirmation:
            return store_preview(ctx, reply)
        return reply

    try:
        return in_transaction(
            session_factory=session_factory,
            actor=actor,
            tz=tz,
            work=run,
            registry_dir=registry_dir,
            now=now,
            reads_only=reads_only(
                command_line, confirmed=confirmed, stores_preview=store_preview is not None
            ),
            outside=outside,
            via=via or command_name(command_line),
        )
    except CommandError as error:
        return refusal(error)


def refusal(error: CommandError) -> Reply:
    """What a front door shows for a refusal."""
    return Reply(
        text=str(error),
        ok=False,
        kind="refusal",
        # Without the usage: a form shows the message on its field, the form is the usage.
        data={"message": error.message},
        mentions=error.mentions,
        field=error.field,
    )
