"""Confirmations that apply once, however often and by whomever the button is pressed.

A preview (``Reply.confirm``) is stored as a ``Confirmation`` row under an unguessable token;
the button carries only the token, so the command that runs is the one the server showed,
never text from the click. Pressing it claims the row with a conditional UPDATE in the same
transaction as the command: one claim wins, a refused command releases the claim with its
rollback, and the clicking user's permissions are checked again by the command itself.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from commands.context import Ctx
from commands.errors import CommandError
from commands.language import _
from commands.permissions import SUPPORT, role_of
from commands.reply import Reply
from commands.router import dispatch
from commands.runner import execute, in_transaction, refusal
from commands.timeparse import format_time
from notifications.channels import Outside
from store.models import Confirmation

# A button older than this shows a stale preview (candidates, times may have moved on).
VALID_FOR = timedelta(hours=1)
CANCELLED = "cancelled"


def run_offering(
    *,
    session_factory: sessionmaker[Session],
    actor: str,
    command_line: str,
    tz: ZoneInfo,
    now: datetime,
    registry_dir: Path | None = None,
    outside: Outside | None = None,
    via: str | None = None,
) -> Reply:
    """Run a command typed by a user; a preview it answers with is offered in the same
    transaction, its token in ``reply.confirm.token`` (one transaction instead of a read
    and then a write)."""
    return execute(
        session_factory=session_factory,
        actor=actor,
        command_line=command_line,
        tz=tz,
        now=now,
        registry_dir=registry_dir,
        store_preview=_offered,
        outside=outside,
        via=via,
    )


def _offered(ctx: Ctx, reply: Reply) -> Reply:
    assert reply.confirm is not None
    command = reply.confirm.command
    token = offer(db_session=ctx.db_session, actor=ctx.actor, command=command, now=ctx.now)
    return replace(reply, confirm=replace(reply.confirm, token=token))


def offer(*, db_session: Session, actor: str, command: str, now: datetime) -> str:
    """Store a pending confirmation of ``command`` and return its token."""
    token = secrets.token_urlsafe(24)
    db_session.add(Confirmation(token=token, actor=actor, command=command, created_at=now))
    return token


def claim(*, db_session: Session, token: str, user: str, now: datetime) -> str | None:
    """Mark the confirmation used by ``user``; its command for exactly one caller per token,
    None for every other."""
    # One UPDATE that only an unused, unexpired token matches: of two concurrent clicks,
    # one gets the command back.
    claimed = (
        update(Confirmation)
        .where(
            Confirmation.token == token,
            Confirmation.used_at.is_(None),
            Confirmation.created_at >= now - VALID_FOR,
        )
        .values(used_at=now, used_by=user)
        .returning(Confirmation.command)
    )
    return db_session.execute(claimed, execution_options={"synchronize_session": False}).scalar()


def apply(
    *,
    session_factory: sessionmaker[Session],
    token: str,
    actor: str,
    tz: ZoneInfo,
    now: datetime,
    registry_dir: Path | None = None,
    outside: Outside | None = None,
    via: str = "a confirmation button",
) -> Reply:
    """Run the confirmed command as ``actor``, once; the claim and the change commit together."""

    def claim_and_run(ctx: Ctx) -> Reply:
        command = claim(db_session=ctx.db_session, token=token, user=actor, now=ctx.now)
        if command is None:
            return _not_claimable(ctx.db_session, token, tz)
        return dispatch(ctx, command, confirmed=True)

    try:
        return in_transaction(
            session_factory=session_factory,
            actor=actor,
            tz=tz,
            work=claim_and_run,
            registry_dir=registry_dir,
            now=now,
            outside=outside,
            via=via,
        )
    except CommandError as error:
        return refusal(error)


def cancel(
    *,
    session_factory: sessionmaker[Session],
    token: str,
    actor: str,
    tz: ZoneInfo,
    now: datetime,
) -> Reply:
    """Use up the confirmation without running it: only the user who asked for it, or
    support staff, may (R15)."""
    with session_factory() as db_session:
        asked_by = db_session.scalar(select(Confirmation.actor).where(Confirmation.token == token))
        if (
            asked_by is not None
            and actor != asked_by
            and role_of(db_session=db_session, user_id=actor) != SUPPORT
        ):
            db_session.rollback()
            return Reply(
                text=_(
                    "Only {asker}, who asked for this, or exam support staff may cancel it. "
                    "Nothing was changed."
                ).format(asker=f"<@{asked_by}>"),
                ok=False,
                kind="refusal",
                mentions=(asked_by,),
            )
        if claim(db_session=db_session, token=token, user=actor, now=now) is None:
            db_session.rollback()
            return _not_claimable(db_session, token, tz)
        # used_by records who cancelled; the marker keeps it apart from an applied one.
        db_session.execute(
            update(Confirmation)
            .where(Confirmation.token == token)
            .values(used_by=f"{actor}:{CANCELLED}")
        )
        db_session.commit()
    return Reply(text=_("Cancelled. Nothing was changed."), kind="message")


def _not_claimable(db_session: Session, token: str, tz: ZoneInfo) -> Reply:
    row = db_session.get(Confirmation, token)
    mentions: tuple[str, ...] = ()
    if row is None:
        text = _("This confirmation is unknown. Run the command again to get a new one.")
    elif row.used_at is None:
        text = _(
            "This confirmation has expired (buttons are valid for {minutes} minutes) and "
            "nothing was changed. Run the command again: `{command}`"
        ).format(minutes=int(VALID_FOR.total_seconds() // 60), command=row.command)
    else:
        by, _colon, marker = (row.used_by or "").partition(":")
        said = (
            _(
                "This was already cancelled by {user} at {time}; it takes effect once only. "
                "Nothing more was changed."
            )
            if marker == CANCELLED
            else _(
                "This was already applied by {user} at {time}; it takes effect once only. "
                "Nothing more was changed."
            )
        )
        text = said.format(user=f"<@{by}>", time=format_time(row.used_at, tz))
        mentions = (by,)
    return Reply(text=text, ok=False, kind="refusal", mentions=mentions)
