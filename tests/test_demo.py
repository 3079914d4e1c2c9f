"""`examdesk demo`: data that follows the rules, a hint that works as printed, and times to the
minute wherever they are shown."""

from __future__ import annotations

import json
from datetime import timedelta

from conftest import OSLO, SUPPORT, World, oslo
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from commands.delivery import scan
from commands.demo import SUPPORT_USER
from commands.exam_overview import overview
from commands.status import candidate_status
from store.models import Candidate, Submission
from store.models import Test as ExamTest


def test_r9_every_submitted_demo_candidate_has_its_delivery(world: World, cli):
    """A submitted candidate has a delivery time and the delivery itself; nothing is left
    started past a deadline that delivers automatically (R9), so `serve` finds nothing due."""
    world.at("2026-12-01 10:20")
    result = cli("demo")
    assert result.returncode == 0, result.stderr
    with world.factory() as s:
        candidates = s.scalars(select(Candidate).options(selectinload(Candidate.test))).all()
        deliveries: dict[int, list[Submission]] = {}
        for sub in s.scalars(select(Submission)):
            deliveries.setdefault(sub.candidate_id, []).append(sub)
        submitted = [c for c in candidates if c.status == "submitted"]
        assert len(submitted) > 10
        for c in submitted:
            assert c.submitted_at is not None, (c.test.code, c.number)
            assert c.test.start < c.submitted_at <= world.now
            assert [sub.at for sub in deliveries[c.id]] == [c.submitted_at]
        assert {c.status for c in candidates if c.test.code == "DEMO-PAST"} == {
            "submitted",
            "not_started",
        }
        assert scan(db_session=s, now=world.now).due == []
        past = next(c for c in submitted if (c.test.code, c.number) == ("DEMO-PAST", "10003"))
        assert deliveries[past.id][0].source == "automatic"
        assert past.submitted_at == oslo("2026-12-01 09:15")  # its deadline
        own = next(c for c in submitted if (c.test.code, c.number) == ("DEMO-SCHOOL", "10007"))
        assert deliveries[own.id][0].source == "candidate"


def test_the_demo_hint_runs_as_printed(world: World, cli):
    world.at("2026-12-01 10:20")
    hint = cli("demo").stdout.splitlines()[-1]
    assert hint == f'Try: .venv/bin/examdesk run --as {SUPPORT_USER} "/candidate DEMO-SCHOOL 10001"'
    tried = cli("run", "--as", SUPPORT_USER, "/candidate DEMO-SCHOOL 10001")
    assert tried.returncode == 0 and tried.stdout.startswith("Candidate 10001 · DEMO-SCHOOL")


def test_times_in_json_are_to_the_minute(world: World):
    """A delivery at 13:41:12.9 and a reopening `in 30m` made then show as 13:41 and 14:11,
    to the minute like every other time, though they are kept as they happened."""
    world.add_test("TDT4100-2026H", start="2026-12-01 09:00", end="2026-12-01 13:00")
    world.add_candidates("TDT4100-2026H", ["10023", "10024"])
    world.now = oslo("2026-12-01 13:30") + timedelta(seconds=37, microseconds=500_000)
    assert world.run("/reopen TDT4100-2026H 10023 in 30m upload failed").ok
    world.now = oslo("2026-12-01 13:41") + timedelta(seconds=12, microseconds=900_000)
    assert world.run("/reopen TDT4100-2026H 10023 close current").ok
    assert world.run("/reopen TDT4100-2026H 10024 in 30m upload failed").ok
    c = world.candidate("TDT4100-2026H", "10023")
    assert c.submitted_at.second == 12  # stored as it happened; shown to the minute
    status = candidate_status(c, c.test, OSLO)
    assert status["submitted_at"] == "2026-12-01T13:41:00+01:00"
    reopened = world.candidate("TDT4100-2026H", "10024")
    assert candidate_status(reopened, reopened.test, OSLO)["deadline"] == (
        "2026-12-01T14:11:00+01:00"
    )
    with world.factory() as s:
        test = s.scalars(select(ExamTest)).one()
        data = overview(world.ctx(s, SUPPORT), test).data
    assert data["reopened"]["first"] == [
        {"candidate": "10024", "mode": "in", "deadline": "2026-12-01T14:11:00+01:00"}
    ]
    assert json.dumps(data["start"]) == '"2026-12-01T09:00:00+01:00"'
    with world.factory() as s:
        assert s.scalars(select(Submission.at)).one().second == 12
