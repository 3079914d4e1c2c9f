"""R9's sweep reads plain rows (commands.delivery_queries); its deadlines must be the ones
commands.timing gives the same candidates as ORM objects (R2, R3, R6, R7)."""

from __future__ import annotations

from conftest import oslo
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from commands import delivery_queries
from commands.timing import timing
from store.models import Candidate, Reopening

CODE = "TDT4100-2026H"


def test_r9_sweep_rows_agree_with_timing(world):
    world.add_test(CODE)
    world.add_test("TDT4200-2026H", kind="home", end="2026-12-01 14:00")
    world.add_test("MASTER-2026", kind="thesis")
    world.add_candidates(CODE, ["10001", "10002", "10003", "10004", "10005", "10006"])
    world.add_candidates(CODE, ["10007"], status="submitted")
    world.add_candidates(CODE, ["10008"], status="not_started")
    world.add_candidates("TDT4200-2026H", ["20001"], extra_minutes=45, incident_minutes=-5)
    world.add_candidates("MASTER-2026", ["30001"])
    with world.factory.begin() as s:
        by_number = {c.number: c for c in s.scalars(select(Candidate))}
        by_number["10002"].extra_minutes, by_number["10002"].incident_minutes = 30, 15
        by_number["10003"].postponed_deadline = oslo("2026-12-02 10:00")
        by_number["10003"].individual_deadline = oslo("2026-12-03 10:00")
        by_number["10004"].individual_deadline = oslo("2026-12-01 15:00")
        by_number["10004"].extra_minutes = 10
        for number, mode, deadline in [
            ("10005", "until-close", None),
            ("10006", "at", oslo("2026-12-01 16:00")),
            ("10007", "no-limit", None),
            ("10008", "in", oslo("2026-12-01 14:30")),
        ]:
            candidate = by_number[number]
            candidate.reopenings.append(
                Reopening(
                    mode=mode,
                    deadline=deadline,
                    opened_at=world.now,
                    opened_by="U1",
                    status_before=candidate.status,
                )
            )
        # A closed reopening is not the candidate's open one.
        by_number["10001"].reopenings.append(
            Reopening(
                mode="at",
                deadline=oslo("2026-12-01 20:00"),
                opened_at=world.now,
                opened_by="U1",
                status_before="started",
                closed_at=world.now,
            )
        )
    with world.factory() as s:
        rows = {r.candidate_id: r for r in delivery_queries.awaiting(s)}
        orm = s.scalars(
            select(Candidate).options(
                selectinload(Candidate.reopenings), selectinload(Candidate.test)
            )
        ).all()
        expected = {}
        for c in orm:
            t = timing(c, c.test)
            if c.test.kind != "thesis" and (c.status == "started" or t.reopening is not None):
                expected[c.id] = (c.test.code, t.reopening is not None, t.deadline)
        got = {id_: (r.test.code, r.reopened, r.deadline) for id_, r in rows.items()}
    assert len(expected) == 9
    assert got == expected
