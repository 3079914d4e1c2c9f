"""Who may do what (R15)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.errors import NotAllowed
from store.models import Staff, StaffTest, Test

SUPPORT = "support"
TEACHER = "teacher"
ROLES = (SUPPORT, TEACHER)


def role_of(*, db_session: Session, user_id: str) -> str | None:
    staff = db_session.get(Staff, user_id)
    return staff.role if staff else None


def teaches(*, db_session: Session, user_id: str, test: Test) -> bool:
    return db_session.get(StaffTest, (user_id, test.id)) is not None


def _whom_to_ask(db_session: Session) -> str:
    support = db_session.scalars(
        select(Staff.user_id).where(Staff.role == SUPPORT).order_by(Staff.added_at).limit(3)
    ).all()
    if not support:
        return "Ask the exam office to add you (`examdesk staff add USER --role …`)."
    return "Ask exam support to add you: " + ", ".join(f"<@{u}>" for u in support) + "."


def require_support(*, db_session: Session, user_id: str, doing: str) -> None:
    role = role_of(db_session=db_session, user_id=user_id)
    if role == SUPPORT:
        return
    if role == TEACHER:
        raise NotAllowed(
            f"Only exam support staff may {doing}. As a teacher you can see your tests with "
            "`/exam` and `/candidate`, and report errors with `/question-error`; "
            "exam support acts on them."
        )
    raise NotAllowed(
        f"You ({user_id}) are not registered as exam support staff or teacher in examdesk. "
        + _whom_to_ask(db_session)
    )


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
            f"You are not registered as a teacher of {test.code}, so you cannot {doing}. "
            "If you should be, ask exam support to add the test to your account."
        )
    raise NotAllowed(
        f"You ({user_id}) are not registered as exam support staff or teacher in examdesk. "
        + _whom_to_ask(db_session)
    )
