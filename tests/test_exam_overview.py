"""`/exam`: each list's count and its first ten by number, however sparse or dense the list,
read from the candidate indexes alone (migration 0003)."""

from __future__ import annotations

import pytest
from conftest import oslo
from sqlalchemy import Engine

from commands import exam_overview

CODE = "TDT4100-2026H"
NUMBERS = [str(10000 + n) for n in range(40)]
# Sparse and out of insertion order: the first ten by number must not depend on row order.
OWN_END = ["10037", "10002", "10019"]
EXTRA = NUMBERS[::3]  # 14 of them, every third number


@pytest.fixture
def exam(world):
    world.add_test(CODE)
    world.add_candidates(CODE, reversed(NUMBERS))
    with world.factory.begin() as s:
        for number in EXTRA:
            world_candidate(s, number).extra_minutes = 15
        world_candidate(s, OWN_END[0]).individual_deadline = oslo("2026-12-01 14:00")
        world_candidate(s, OWN_END[1]).postponed_deadline = oslo("2026-12-01 15:00")
        own = world_candidate(s, OWN_END[2])
        own.postponed_deadline, own.individual_deadline = oslo("2026-12-01 13:30"), None
    world.run(f"/incident-time {CODE} all add 5 network outage", confirmed=True)
    world.run(f"/incident-time {CODE} {NUMBERS[0]},{NUMBERS[1]} subtract 5 not affected")
    return world


def world_candidate(session, number: str):
    from store.models import Candidate, Test

    return (
        session.query(Candidate)
        .join(Test)
        .filter(Test.code == CODE, Candidate.number == number)
        .one()
    )


def test_r2_r4_r11_exam_counts_each_list_and_shows_its_first_ten_by_number(exam):
    """R11 extra time and R2 individual ends from the registry, R4 incident time: /exam
    counts every candidate of each list and lists the first ten by number, whatever order
    the rows were written in."""
    overview = exam.run(f"/exam {CODE}")
    assert overview.ok, overview.text
    extra = overview.data["extra"]
    assert extra["count"] == len(EXTRA)
    assert extra["first"] == [[n, 15] for n in sorted(EXTRA)[:10]]
    incident = overview.data["incident"]
    assert incident["count"] == len(NUMBERS) - 2  # two went back to no incident time
    assert incident["first"] == [[n, 5] for n in NUMBERS[2:12]]
    assert overview.data["individual"] == {"count": 3, "first": [[n] for n in sorted(OWN_END)]}
    assert f"Extra time (registry): 14 ({EXTRA[0]} +15 min," in overview.text
    assert ", …4 more)" in overview.text
    assert "Individual end: 3 (10002, 10019, 10037)" in overview.text


def _plan(engine: Engine, statement) -> str:
    compiled = statement.compile(dialect=engine.dialect)
    params = compiled.construct_params({"test_id": 1})
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + str(compiled), tuple(params[k] for k in compiled.positiontup)
        )
        return "\n".join(row[3] for row in rows)


def test_exam_counts_and_lists_read_the_candidate_indexes_alone(exam, engine, is_postgres):
    """The counts and the first ten of each list come from the partial indexes without a
    table row read (on SQLite, whose plans say so), and the first ten without walking every
    candidate of the test in number order: a sparse list costs what its entries cost."""
    if is_postgres:
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's; PostgreSQL chooses by its statistics")
    counts = _plan(engine, exam_overview._COUNTS)
    firsts = _plan(engine, exam_overview._firsts(("extra", "incident", "individual")))
    for name in ("extra", "incident", "own_end"):
        assert f"COVERING INDEX ix_candidates_with_{name} " in counts, counts
        assert f"COVERING INDEX ix_candidates_with_{name} " in firsts, firsts
    assert "sqlite_autoindex" not in firsts and "B-TREE" not in firsts, firsts


def test_exam_lists_repeat_the_partial_indexes_conditions():
    """SQLite uses a partial index only for a query that repeats its WHERE: /exam's list
    conditions (commands.exam_overview) are the candidates' partial indexes' (store.models)."""
    from commands import exam_overview
    from store.models import Candidate

    where = {
        index.name: str(index.dialect_options["sqlite"]["where"])
        for index in Candidate.__table__.indexes
        if index.dialect_options["sqlite"]["where"] is not None
    }
    assert where == {
        "ix_candidates_with_extra": exam_overview.CANDIDATE_WITH_EXTRA,
        "ix_candidates_with_incident": exam_overview.CANDIDATE_WITH_INCIDENT,
        "ix_candidates_with_own_end": exam_overview.CANDIDATE_WITH_OWN_END,
    }
