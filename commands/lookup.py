"""Finding tests and candidates by the names users type."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from sqlalchemy import ColumnElement, Connection, select
from sqlalchemy.orm import Session, joinedload

from commands.errors import InvalidInput, NotFound
from commands.language import _, ngettext, number
from commands.reply import listed
from commands.text import clip
from store.db import has_row_locks
from store.models import Candidate, Test

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
        _(
            "There is no test {test}. Check the code (like TDT4100-2026H); tests come from the "
            "student registry (`examdesk import tests FILE`)."
        ).format(test=clip(test_code)),
        field="test",
    )


def get_candidate(*, db_session: Session, test: Test, number: str, lock: bool = False) -> Candidate:
    found = get_candidates(db_session=db_session, test=test, numbers=[number], lock=lock)
    return found[0]


def get_candidates(
    *,
    db_session: Session,
    test: Test,
    numbers: Sequence[str] | None,
    lock: bool = False,
    not_found: Callable[[Test, Sequence[str]], NotFound] | None = None,
) -> list[Candidate]:
    """Candidates of ``test`` by number (all of them when ``numbers`` is None).

    ``lock`` takes row locks first (``lock_candidates``) so concurrent changes queue up.
    """
    if lock:
        lock_candidates(db_session.connection(), test=test, numbers=numbers)
    # Reopenings come in the same query (outer join): one round trip, not two.
    query = (
        select(Candidate)
        .where(*_of_test(test, numbers))
        .options(joinedload(Candidate.reopenings))
        .order_by(Candidate.number)
    )
    found = list(db_session.scalars(query).unique())
    if numbers is not None:
        missing = sorted(set(numbers) - {c.number for c in found})
        if missing:
            raise (not_found or candidate_not_found)(test, missing)
    return found


def candidate_not_found(test: Test, missing: Sequence[str]) -> NotFound:
    return NotFound(
        ngettext(
            "Test {test} has no candidate {numbers}. Check the number with `/exam {test}`.",
            "Test {test} has no candidate {numbers}. Check the numbers with `/exam {test}`.",
            len(missing),
        ).format(test=test.code, numbers=listed(missing))
    )


def lock_candidates(connection: Connection, *, test: Test, numbers: Sequence[str] | None) -> None:
    """Row locks (PostgreSQL) on ``test``'s candidates (all when ``numbers`` is None), to be
    read by a statement of its own afterwards: PostgreSQL re-reads only the locked rows
    after waiting for a lock, not what the same query joins to them, so a reopening that
    another transaction committed meanwhile would be missed. SQLite needs none: its BEGIN
    IMMEDIATE already serialises writers."""
    if has_row_locks(connection):
        connection.execute(select(Candidate.id).where(*_of_test(test, numbers)).with_for_update())


def _of_test(test: Test, numbers: Sequence[str] | None) -> list[ColumnElement[bool]]:
    where = [Candidate.test_id == test.id]
    if numbers is not None:
        where.append(Candidate.number.in_(numbers))
    return where


def parse_candidate_list(text: str) -> list[str] | None:
    """None for ``all``; otherwise the distinct numbers in the order given."""
    if text.lower() == "all":
        return None
    numbers = [part.strip() for part in text.split(",")]
    if len(numbers) > MAX_CANDIDATES:
        raise InvalidInput(
            _(
                "That is a list of {count} candidates; name at most {most}, or write 'all' "
                "for every candidate of the test."
            ).format(count=number(len(numbers)), most=number(MAX_CANDIDATES))
        )
    if not numbers or not all(is_candidate_number(n) for n in numbers):
        raise InvalidInput(
            _(
                "'{text}' is not a list of candidates. Write 'all' or candidate numbers "
                "separated by commas, e.g. 10023,10024."
            ).format(text=clip(text))
        )
    return list(dict.fromkeys(numbers))


def parse_candidate_number(text: str) -> str:
    if not is_candidate_number(text):
        raise InvalidInput(
            _("'{text}' is not a candidate number. Write the number, e.g. 10023.").format(
                text=clip(text)
            )
        )
    return text
