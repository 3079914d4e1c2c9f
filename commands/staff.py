"""Who is support staff and who teaches which test (R15)."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from commands import audit
from commands.context import Ctx
from commands.errors import InvalidInput, NotFound
from commands.language import LANGUAGES, _
from commands.lookup import get_test
from commands.permissions import ROLES
from store.db import read_only
from store.models import Staff, StaffTest, Test

_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,31}$")


def _check_user(user_id: str) -> str:
    if not _SLACK_USER.match(user_id):
        raise InvalidInput(
            _(
                "'{user}' is not a Slack user id. It looks like U0123ABCD: in Slack, open the "
                "person's profile, ⋮ → Copy member ID."
            ).format(user=user_id)
        )
    return user_id


def add(
    ctx: Ctx, *, user_id: str, role: str, test_codes: list[str], language: str | None = None
) -> str:
    """Add or change a staff member; ``language`` None keeps the one they had."""
    db = ctx.db_session
    _check_user(user_id)
    if role not in ROLES:
        raise InvalidInput(
            _("'{role}' is not a role. Use --role support or --role teacher.").format(role=role)
        )
    if language is not None and language not in LANGUAGES:
        raise InvalidInput(
            _("'{language}' is not a language examdesk speaks. Use --language nb or en.").format(
                language=language
            )
        )
    tests = [get_test(db_session=db, test_code=code) for code in test_codes]
    staff = db.get(Staff, user_id)
    before = {"role": staff.role if staff else None, "language": staff.language if staff else None}
    if staff is None:
        staff = Staff(user_id=user_id, role=role, added_at=ctx.now, added_by=ctx.actor)
        db.add(staff)
    staff.role = role
    if language is not None:
        staff.language = language
    db.flush()
    for test in tests:
        if db.get(StaffTest, (user_id, test.id)) is None:
            db.add(StaffTest(user_id=user_id, test_id=test.id))
    audit.record(
        ctx,
        action="staff_add",
        reason="staff add",
        before=before,
        after={
            "user": user_id,
            "role": role,
            "tests": [t.code for t in tests],
            "language": staff.language,
        },
    )
    if tests:
        return _("{user} is now {role} for {tests}.").format(
            user=user_id, role=role_name(role), tests=", ".join(t.code for t in tests)
        )
    return _("{user} is now {role}.").format(user=user_id, role=role_name(role))


def role_name(role: str) -> str:
    """A role as the reader calls it (the CLI's ``--role`` values are English)."""
    return {"support": _("support"), "teacher": _("teacher")}.get(role, role)


def remove(ctx: Ctx, *, user_id: str) -> str:
    db = ctx.db_session
    staff = db.get(Staff, _check_user(user_id))
    if staff is None:
        raise NotFound(
            _("{user} is not registered. `examdesk staff list` shows who is.").format(user=user_id)
        )
    codes = _tests_of(ctx, user_id)
    audit.record(
        ctx,
        action="staff_remove",
        reason="staff remove",
        before={"user": user_id, "role": staff.role, "tests": codes},
        after={},
    )
    db.delete(staff)
    return _("{user} ({role}) is removed; they can no longer use examdesk.").format(
        user=user_id, role=role_name(staff.role)
    )


def listing(ctx: Ctx) -> str:
    staff = ctx.db_session.scalars(select(Staff).order_by(Staff.role, Staff.user_id)).all()
    if not staff:
        return _("No staff registered. Add someone: examdesk staff add U0123ABCD --role support")
    # Tab-separated for scripts: user, role, tests, language ("-": their Slack locale).
    lines = []
    for s in staff:
        codes = _tests_of(ctx, s.user_id)
        tests = ",".join(codes) if codes else "-"
        lines.append(f"{s.user_id}\t{s.role}\t{tests}\t{s.language or '-'}")
    return "\n".join(lines)


def _tests_of(ctx: Ctx, user_id: str) -> list[str]:
    return list(
        ctx.db_session.scalars(
            select(Test.code)
            .join(StaffTest, StaffTest.test_id == Test.id)
            .where(StaffTest.user_id == user_id)
            .order_by(Test.code)
        )
    )


def chosen_language(session_factory: sessionmaker[Session], user_id: str) -> str | None:
    """The language ``user_id`` chose with `staff add --language`; None: not chosen. Read in
    a read-only transaction of its own: it neither waits for nor holds off a writer."""
    with session_factory() as db_session:
        read_only(db_session)
        return db_session.scalar(select(Staff.language).where(Staff.user_id == user_id))
