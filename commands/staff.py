"""Who is support staff and who teaches which test (R15)."""

from __future__ import annotations

import re

from sqlalchemy import select

from commands import audit
from commands.context import Ctx
from commands.errors import InvalidInput, NotFound
from commands.lookup import get_test
from commands.permissions import ROLES
from store.models import Staff, StaffTest, Test

_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,31}$")


def _check_user(user_id: str) -> str:
    if not _SLACK_USER.match(user_id):
        raise InvalidInput(
            f"'{user_id}' is not a Slack user id. It looks like U0123ABCD: in Slack, open the "
            "person's profile, ⋮ → Copy member ID."
        )
    return user_id


def add(ctx: Ctx, *, user_id: str, role: str, test_codes: list[str]) -> str:
    db = ctx.db_session
    _check_user(user_id)
    if role not in ROLES:
        raise InvalidInput(f"'{role}' is not a role. Use --role support or --role teacher.")
    tests = [get_test(db_session=db, test_code=code) for code in test_codes]
    staff = db.get(Staff, user_id)
    before = {"role": staff.role if staff else None}
    if staff is None:
        staff = Staff(user_id=user_id, role=role, added_at=ctx.now, added_by=ctx.actor)
        db.add(staff)
    staff.role = role
    db.flush()
    for test in tests:
        if db.get(StaffTest, (user_id, test.id)) is None:
            db.add(StaffTest(user_id=user_id, test_id=test.id))
    audit.record(
        ctx,
        action="staff_add",
        reason="staff add",
        before=before,
        after={"user": user_id, "role": role, "tests": [t.code for t in tests]},
    )
    tests_text = f" for {', '.join(t.code for t in tests)}" if tests else ""
    return f"{user_id} is now {role}{tests_text}."


def remove(ctx: Ctx, *, user_id: str) -> str:
    db = ctx.db_session
    staff = db.get(Staff, _check_user(user_id))
    if staff is None:
        raise NotFound(f"{user_id} is not registered. `examdesk staff list` shows who is.")
    codes = _tests_of(ctx, user_id)
    audit.record(
        ctx,
        action="staff_remove",
        reason="staff remove",
        before={"user": user_id, "role": staff.role, "tests": codes},
        after={},
    )
    db.delete(staff)
    return f"{user_id} ({staff.role}) is removed; they can no longer use examdesk."


def listing(ctx: Ctx) -> str:
    staff = ctx.db_session.scalars(select(Staff).order_by(Staff.role, Staff.user_id)).all()
    if not staff:
        return "No staff registered. Add someone: examdesk staff add U0123ABCD --role support"
    lines = []
    for s in staff:
        codes = _tests_of(ctx, s.user_id)
        lines.append(f"{s.user_id}\t{s.role}\t{','.join(codes) if codes else '-'}")
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
