"""Who may do what (R15)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.errors import NotAllowed
from commands.language import _
from commands.lookup import get_test
from store.models import Staff, StaffTest, Test

SUPPORT = "support"
TEACHER = "teacher"
ROLES = (SUPPORT, TEACHER)


def role_of(*, db_session: Session, user_id: str) -> str | None:
    staff = db_session.get(Staff, user_id)
    return staff.role if staff else None


def teaches(*, db_session: Session, user_id: str, test: Test) -> bool:
    return db_session.get(StaffTest, (user_id, test.id)) is not None


def _not_registered(db_session: Session, user_id: str) -> NotAllowed:
    """The refusal for someone without a role, naming whom to ask."""
    support = tuple(
        db_session.scalars(
            select(Staff.user_id).where(Staff.role == SUPPORT).order_by(Staff.added_at).limit(3)
        )
    )
    ask = (
        _("Ask exam support to add you: {users}.").format(
            users=", ".join(f"<@{u}>" for u in support)
        )
        if support
        else _("Ask the exam office to add you (`examdesk staff add USER --role …`).")
    )
    return NotAllowed(
        _("You ({user}) are not registered as exam support staff or teacher in examdesk.").format(
            user=user_id
        )
        + " "
        + ask,
        mentions=support,
    )


def require_support(*, db_session: Session, user_id: str, doing: str) -> None:
    role = role_of(db_session=db_session, user_id=user_id)
    if role == SUPPORT:
        return
    if role == TEACHER:
        raise NotAllowed(
            _(
                "Only exam support staff may {doing}. As a teacher you can see your tests with "
                "`/exam` and `/candidate`, and report errors with `/question-error`; exam "
                "support acts on them."
            ).format(doing=doing)
        )
    raise _not_registered(db_session, user_id)


def require_support_or_teacher_of(
    *, db_session: Session, user_id: str, test: Test, doing: str
) -> str:
    """The user's role, if support or a teacher of ``test``; otherwise refused."""
    role = role_of(db_session=db_session, user_id=user_id)
    if role == SUPPORT:
        return role
    if role == TEACHER:
        if teaches(db_session=db_session, user_id=user_id, test=test):
            return role
        raise NotAllowed(
            _(
                "You are not registered as a teacher of {test}, so you cannot {doing}. If you "
                "should be, ask exam support to add the test to your account."
            ).format(test=test.code, doing=doing),
            field="test",
        )
    raise _not_registered(db_session, user_id)


def test_for_support_or_teacher(
    *, db_session: Session, user_id: str, test_code: str, doing: str
) -> tuple[Test, str]:
    """``get_test`` then ``require_support_or_teacher_of``: the test and the user's role."""
    test = get_test(db_session=db_session, test_code=test_code)
    role = require_support_or_teacher_of(
        db_session=db_session, user_id=user_id, test=test, doing=doing
    )
    return test, role


def test_for_support(*, db_session: Session, user_id: str, test_code: str, doing: str) -> Test:
    """``require_support`` then ``get_test``."""
    require_support(db_session=db_session, user_id=user_id, doing=doing)
    return get_test(db_session=db_session, test_code=test_code)
