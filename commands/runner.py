"""Run a command in its own transaction: applied whole, or not at all."""

from __future__ import annotations

import logging
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from commands.context import Ctx, utcnow
from commands.errors import CommandError
from commands.reply import Reply
from commands.router import dispatch, reads_only
from store.db import read_only

log = logging.getLogger(__name__)


def execute(
    *,
    session_factory: sessionmaker[Session],
    actor: str,
    command_line: str,
    tz: ZoneInfo,
    confirmed: bool = False,
    registry_dir: Path | None = None,
    now=None,
) -> Reply:
    with session_factory() as db_session:
        if reads_only(command_line, confirmed=confirmed):
            read_only(db_session)
        ctx = Ctx(
            db_session=db_session,
            actor=actor,
            tz=tz,
            now=now or utcnow(),
            registry_dir=registry_dir,
        )
        try:
            reply = dispatch(ctx, command_line, confirmed=confirmed)
        except CommandError as error:
            db_session.rollback()
            return Reply(text=str(error), ok=False, kind="refusal")
        if reply.needs_confirmation:
            db_session.rollback()  # a preview changes nothing, not even a lock
        else:
            db_session.commit()
        return reply
