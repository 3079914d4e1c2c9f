"""Finding tests and candidates by the names users type."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from commands.errors import InvalidInput, NotFound
from store.models import Candidate, Test

CANDIDATES_FORMS = "'all' or candidate numbers separated by commas, e.g. 10023,10024"


def get_test(*, db_session: Session, test_code: str) -> Test:
    test = db_session.scalar(select(Test).where(Test.code == test_code.upper()))
    if test is None:
        raise NotFound(
            f"There is no test {test_code}. Check the code (like TDT4100-2026H); "
            "`/exam` lists nothing for unknown tests, and tests come from the registry import."
        )
    return test


def get_candidate(*, db_session: Session, test: Test, number: str, lock: bool = False) -> Candidate:
    found = get_candidates(db_session=db_session, test=test, numbers=[number], lock=lock)
    return found[0]


def get_candidates(
    *, db_session: Session, test: Test, numbers: Sequence[str] | None, lock: bool = False
) -> list[Candidate]:
    """Candidates of ``test`` by number (all of them when ``numbers`` is None).

    ``lock`` takes row locks (PostgreSQL) so concurrent changes queue up; SQLite already
    serialises writers with BEGIN IMMEDIATE.
    """
    query = (
        select(Candidate)
        .where(Candidate.test_id == test.id)
        .options(selectinload(Candidate.reopenings))
        .order_by(Candidate.number)
    )
    if numbers is not None:
        query = query.where(Candidate.number.in_(numbers))
    if lock:
        query = query.with_for_update(of=Candidate)
    found = list(db_session.scalars(query))
    if numbers is not None:
        missing = sorted(set(numbers) - {c.number for c in found})
        if missing:
            raise NotFound(
                f"Test {test.code} has no candidate {', '.join(missing)}. "
                f"Check the number{'s' if len(missing) > 1 else ''} with `/exam {test.code}`."
            )
    return found


def parse_candidate_list(text: str) -> list[str] | None:
    """None for ``all``; otherwise the distinct numbers in the order given."""
    if text.lower() == "all":
        return None
    numbers = [part.strip() for part in text.split(",")]
    if not numbers or any(not n.isdigit() or len(n) > 12 for n in numbers):
        raise InvalidInput(f"'{text}' is not a list of candidates. Write {CANDIDATES_FORMS}.")
    return list(dict.fromkeys(numbers))


def parse_candidate_number(text: str) -> str:
    if not text.isdigit() or len(text) > 12:
        raise InvalidInput(f"'{text}' is not a candidate number. Write the number, e.g. 10023.")
    return text
