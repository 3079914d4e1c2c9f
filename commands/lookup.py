"""Finding tests and candidates by the names users type."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import ColumnElement, Connection, bindparam, select
from sqlalchemy.orm import Session, joinedload

from commands.errors import InvalidInput, NotFound
from commands.reply import listed
from commands.timing import OPEN_REOPENING
from store.db import has_row_locks
from store.models import (
    PLAIN_CANDIDATE_COLUMNS,
    AnyTest,
    Candidate,
    PlainCandidate,
    PlainReopening,
    Reopening,
    Test,
)

CANDIDATES_FORMS = "'all' or candidate numbers separated by commas, e.g. 10023,10024"
# More than any test has: a longer list is a mistake (and too many for one SQL statement).
MAX_CANDIDATES = 10_000
_CODE = re.compile(r"[A-Z0-9][A-Z0-9_.-]{0,63}")
# ASCII digits: str.isdigit() also takes superscripts and other scripts' digits.
_NUMBER = re.compile(r"[0-9]{1,12}")


def is_candidate_number(text: str) -> bool:
    return _NUMBER.fullmatch(text) is not None


def get_test(*, db_session: Session, test_code: str) -> Test:
    code = test_code.upper()
    test = None
    if may_be_test_code(code):
        test = db_session.scalar(select(Test).where(Test.code == code))
    if test is None:
        raise test_not_found(test_code)
    return test


def may_be_test_code(code: str) -> bool:
    """A code that cannot exist is not looked up: that keeps odd bytes away from the database."""
    return _CODE.fullmatch(code) is not None


def test_not_found(test_code: str) -> NotFound:
    return NotFound(
        f"There is no test {_clip(test_code)}. Check the code (like TDT4100-2026H); "
        "tests come from the student registry (`examdesk import tests FILE`)."
    )


def get_candidate(
    *, db_session: Session, test: AnyTest, number: str, lock: bool = False
) -> Candidate:
    found = get_candidates(db_session=db_session, test=test, numbers=[number], lock=lock)
    return found[0]


def get_plain_candidate(*, db_session: Session, test: AnyTest, number: str) -> PlainCandidate:
    """``get_candidate`` for reading only: its columns and open reopening in one plain row."""
    row = db_session.connection().execute(_PLAIN, {"test_id": test.id, "number": number}).first()
    if row is None:
        raise candidate_not_found(test, [number])
    *columns, mode, deadline = row
    open_ = (PlainReopening(mode, deadline, None),) if mode is not None else ()
    return PlainCandidate._make((*columns, open_))


def get_candidates(
    *, db_session: Session, test: AnyTest, numbers: Sequence[str] | None, lock: bool = False
) -> list[Candidate]:
    """Candidates of ``test`` by number (all of them when ``numbers`` is None).

    ``lock`` takes row locks first (``lock_candidates``) so concurrent changes queue up.
    """
    query = _CANDIDATES[numbers is not None]
    params = {"test_id": test.id, "numbers": numbers or []}
    if lock:
        lock_candidates(db_session.connection(), test=test, numbers=numbers)
    found = list(db_session.scalars(query, params).unique())
    if numbers is not None:
        missing = sorted(set(numbers) - {c.number for c in found})
        if missing:
            raise candidate_not_found(test, missing)
    return found


def candidate_not_found(test: AnyTest, missing: Sequence[str]) -> NotFound:
    return NotFound(
        f"Test {test.code} has no candidate {listed(missing)}. "
        f"Check the number{'s' if len(missing) > 1 else ''} with `/exam {test.code}`."
    )


def lock_candidates(
    connection: Connection, *, test: AnyTest, numbers: Sequence[str] | None
) -> None:
    """Row locks (PostgreSQL) on ``test``'s candidates (all when ``numbers`` is None), to be
    read by a statement of its own afterwards: PostgreSQL re-reads only the locked rows
    after waiting for a lock, not what the same query joins to them, so a reopening that
    another transaction committed meanwhile would be missed. SQLite needs none: its BEGIN
    IMMEDIATE already serialises writers."""
    if has_row_locks(connection):
        params = {"test_id": test.id, "numbers": numbers or []}
        connection.execute(_LOCK[numbers is not None], params)


def _where(*, by_number: bool) -> list[ColumnElement[bool]]:
    where = [Candidate.test_id == bindparam("test_id")]
    if by_number:
        where.append(Candidate.number.in_(bindparam("numbers", expanding=True)))
    return where


# Built once (building a statement costs more than running it), by "by number".
_LOCK = {
    by_number: select(Candidate.id).where(*_where(by_number=by_number)).with_for_update()
    for by_number in (False, True)
}
# Reopenings come in the same query (outer join): one round trip, not two.
_CANDIDATES = {
    by_number: select(Candidate)
    .where(*_where(by_number=by_number))
    .options(joinedload(Candidate.reopenings))
    .order_by(Candidate.number)
    for by_number in (False, True)
}


_r = Reopening.__table__.c
_PLAIN = (
    select(*PLAIN_CANDIDATE_COLUMNS, _r.mode, _r.deadline)
    .outerjoin(Reopening.__table__, OPEN_REOPENING)
    .where(Candidate.test_id == bindparam("test_id"), Candidate.number == bindparam("number"))
)


def parse_candidate_list(text: str) -> list[str] | None:
    """None for ``all``; otherwise the distinct numbers in the order given."""
    if text.lower() == "all":
        return None
    numbers = [part.strip() for part in text.split(",")]
    if len(numbers) > MAX_CANDIDATES:
        raise InvalidInput(
            f"That is a list of {len(numbers)} candidates; name at most {MAX_CANDIDATES}, "
            "or write 'all' for every candidate of the test."
        )
    if not numbers or not all(is_candidate_number(n) for n in numbers):
        raise InvalidInput(
            f"'{_clip(text)}' is not a list of candidates. Write {CANDIDATES_FORMS}."
        )
    return list(dict.fromkeys(numbers))


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_candidate_number(text: str) -> str:
    if not is_candidate_number(text):
        raise InvalidInput(
            f"'{_clip(text)}' is not a candidate number. Write the number, e.g. 10023."
        )
    return text
