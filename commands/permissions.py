"""Who may do what (R15)."""

from __future__ import annotations

from sqlalchemy import and_, bindparam, null, select
from sqlalchemy.orm import Session

from commands.errors import NotAllowed
from commands.lookup import may_be_test_code, test_not_found
from store.models import PLAIN_TEST_COLUMNS, AnyTest, PlainTest, Staff, StaffTest, Test

SUPPORT = "support"
TEACHER = "teacher"
ROLES = (SUPPORT, TEACHER)


def role_of(*, db_session: Session, user_id: str) -> str | None:
    staff = db_session.get(Staff, user_id)
    return staff.role if staff else None


def teaches(*, db_session: Session, user_id: str, test: AnyTest) -> bool:
    return db_session.get(StaffTest, (user_id, test.id)) is not None


def _not_registered(db_session: Session, user_id: str) -> NotAllowed:
    """The refusal for someone without a role, naming whom to ask."""
    support = tuple(
        db_session.scalars(
            select(Staff.user_id).where(Staff.role == SUPPORT).order_by(Staff.added_at).limit(3)
        )
    )
    ask = (
        "Ask exam support to add you: " + ", ".join(f"<@{u}>" for u in support) + "."
        if support
        else "Ask the exam office to add you (`examdesk staff add USER --role …`)."
    )
    return NotAllowed(
        f"You ({user_id}) are not registered as exam support staff or teacher in examdesk. " + ask,
        mentions=support,
    )


def require_support(*, db_session: Session, user_id: str, doing: str) -> None:
    _check_support(db_session, user_id, role_of(db_session=db_session, user_id=user_id), doing)


def _check_support(db_session: Session, user_id: str, role: str | None, doing: str) -> None:
    if role == SUPPORT:
        return
    if role == TEACHER:
        raise NotAllowed(
            f"Only exam support staff may {doing}. As a teacher you can see your tests with "
            "`/exam` and `/candidate`, and report errors with `/question-error`; "
            "exam support acts on them."
        )
    raise _not_registered(db_session, user_id)


def require_support_or_teacher_of(
    *, db_session: Session, user_id: str, test: AnyTest, doing: str
) -> str:
    """The user's role, if support or a teacher of ``test``; otherwise refused."""
    role = role_of(db_session=db_session, user_id=user_id)
    return _check_support_or_teacher_of(
        db_session,
        user_id,
        test,
        role,
        role == TEACHER and teaches(db_session=db_session, user_id=user_id, test=test),
        doing,
    )


def _check_support_or_teacher_of(
    db_session: Session,
    user_id: str,
    test: AnyTest,
    role: str | None,
    teaches_test: bool,
    doing: str,
) -> str:
    if role == SUPPORT:
        return role
    if role == TEACHER:
        if teaches_test:
            return role
        raise NotAllowed(
            f"You are not registered as a teacher of {test.code}, so you cannot {doing}. "
            "If you should be, ask exam support to add the test to your account."
        )
    raise _not_registered(db_session, user_id)


# The hot paths below answer "which test, and may this user act on it" in one query instead
# of three (test, role, teacher-of); the refusals and their order are those of the calls
# they stand for. The statements are built once: building one costs more than running it.
_USER, _CODE = bindparam("user_id"), bindparam("code")
# The test comes as a PlainTest: it is only read, and an ORM object would cost more than
# the query. Its columns come last in each row.
_TEST_AND_ROLE = (
    select(Staff.role, StaffTest.test_id, *PLAIN_TEST_COLUMNS)
    .select_from(Test)
    .outerjoin(Staff, Staff.user_id == _USER)
    .outerjoin(StaffTest, and_(StaffTest.user_id == _USER, StaffTest.test_id == Test.id))
    .where(Test.code == _CODE)
)
_ROLE_AND_TEST = (
    select(Staff.role, *PLAIN_TEST_COLUMNS)
    .select_from(Staff)
    .outerjoin(Test, Test.code == _CODE)
    .where(Staff.user_id == _USER)
)
# A code that cannot exist is not sent to the database at all; the NULL stands for its id.
_ROLE_ONLY = select(Staff.role, null()).where(Staff.user_id == _USER)


def test_for_support_or_teacher(
    *, db_session: Session, user_id: str, test_code: str, doing: str
) -> tuple[PlainTest, str]:
    """``get_test`` then ``require_support_or_teacher_of``: the test and the user's role."""
    code = test_code.upper()
    row = None
    if may_be_test_code(code):
        row = db_session.connection().execute(_TEST_AND_ROLE, _params(user_id, code)).first()
    if row is None:
        raise test_not_found(test_code)
    role, taught, test = row[0], row[1], PlainTest(*row[2:])
    return test, _check_support_or_teacher_of(
        db_session, user_id, test, role, taught is not None, doing
    )


def test_for_support(*, db_session: Session, user_id: str, test_code: str, doing: str) -> PlainTest:
    """``require_support`` then ``get_test``."""
    code = test_code.upper()
    connection = db_session.connection()
    if may_be_test_code(code):
        row = connection.execute(_ROLE_AND_TEST, _params(user_id, code)).first()
    else:
        row = connection.execute(_ROLE_ONLY, {"user_id": user_id}).first()
    _check_support(db_session, user_id, row[0] if row is not None else None, doing)
    # An unknown code leaves the test's columns NULL (outer join), its id among them.
    if row is None or row[1] is None:
        raise test_not_found(test_code)
    return PlainTest(*row[1:])


def _params(user_id: str, code: str) -> dict[str, str]:
    return {"user_id": user_id, "code": code}
