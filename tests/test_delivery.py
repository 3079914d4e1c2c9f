"""R9 automatic delivery at the deadline; R10 staff deliver a file for a candidate."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import OSLO, SUPPORT, TEACHER, oslo
from dbstate import snapshot
from sqlalchemy import select, update

from commands.context import Ctx
from commands.delivery import MAX_FILE_BYTES, SYSTEM_ACTOR, attach_file, deliver_due, scan
from commands.errors import InvalidInput, NotAllowed, Refused
from store.db import read_only
from store.models import Candidate, Change, Reopening, Submission

CODE = "TDT4100-2026H"


def run_due(world) -> list[tuple[str, str, bool]]:
    with world.factory() as s:
        done = deliver_due(Ctx(db_session=s, actor=SYSTEM_ACTOR, tz=OSLO, now=world.now))
        s.commit()
    return sorted((d.test, d.candidate, d.reopened) for d in done)


def statuses(world) -> dict[str, str]:
    with world.factory() as s:
        return {c.number: c.status for c in s.scalars(select(Candidate))}


@pytest.fixture
def exam(world):
    """Auto-delivering school exam, ordinary end 13:15; 10004 has 30 min extra time."""
    world.add_test(CODE)
    world.add_candidates(CODE, ["10001"])
    world.add_candidates(CODE, ["10002"], status="not_started")
    world.add_candidates(CODE, ["10003"], status="submitted")
    world.add_candidates(CODE, ["10004"], extra_minutes=30)
    return world


def test_r9_started_answers_are_delivered_at_the_deadline(exam):
    """R9: at the candidate's deadline a started answer is delivered automatically."""
    assert run_due(exam.at("2026-12-01 13:14")) == []
    assert run_due(exam.at("2026-12-01 13:15")) == [(CODE, "10001", False)]
    assert statuses(exam) == {
        "10001": "submitted",
        "10002": "not_started",
        "10003": "submitted",
        "10004": "started",
    }
    assert run_due(exam.at("2026-12-01 13:45")) == [(CODE, "10004", False)]
    with exam.factory() as s:
        subs = s.scalars(select(Submission).order_by(Submission.id)).all()
        changes = s.scalars(select(Change).order_by(Change.id)).all()
    assert [(x.source, x.by, x.at) for x in subs] == [
        ("automatic", SYSTEM_ACTOR, oslo("2026-12-01 13:15")),
        ("automatic", SYSTEM_ACTOR, oslo("2026-12-01 13:45")),
    ]
    assert [c.action for c in changes] == ["auto_deliver", "auto_deliver"]
    assert changes[0].before["status"] == "started" and changes[0].after["status"] == "submitted"
    assert changes[0].reason == "deadline reached"


def test_r9_running_twice_delivers_once(exam):
    """R9: deliver_due is idempotent."""
    exam.at("2026-12-01 14:00")
    assert len(run_due(exam)) == 2
    assert run_due(exam) == []
    with exam.factory() as s:
        assert len(s.scalars(select(Submission)).all()) == 2


def test_r9_tests_that_do_not_deliver_automatically_are_left_alone(world):
    """R9: without auto-delivery a started answer stays started after the deadline."""
    world.add_test(CODE, auto_deliver=False)
    world.add_candidates(CODE, ["10001"])
    assert run_due(world.at("2026-12-01 18:00")) == []
    assert statuses(world) == {"10001": "started"}


def test_r9_reopened_answer_is_delivered_at_its_deadline_even_without_auto_delivery(world):
    """R9: a reopened answer is delivered at its reopen deadline even where the test does not."""
    world.add_test(CODE, auto_deliver=False)
    world.add_candidates(CODE, ["10001"], status="submitted")
    assert world.at("2026-12-01 14:00").run(f"/reopen {CODE} 10001 in 30 test reason").ok
    assert run_due(world.at("2026-12-01 14:29")) == []
    assert run_due(world.at("2026-12-01 14:30")) == [(CODE, "10001", True)]
    with world.factory() as s:
        reopening = s.scalars(select(Reopening)).one()
        change = s.scalars(select(Change).order_by(Change.id.desc())).first()
    assert reopening.closed_at == oslo("2026-12-01 14:30") and reopening.close_choice == "current"
    assert change.action == "auto_deliver_reopened"
    assert statuses(world) == {"10001": "submitted"}
    assert run_due(world.at("2026-12-01 15:00")) == []


def test_r9_until_close_reopening_is_delivered_at_the_candidates_end_time(exam):
    """R9: an until-close reopening ends with the candidate's end time (13:45 with extra)."""
    exam.at("2026-12-01 12:00").run(f"/reopen {CODE} 10003 until-close test reason")
    exam.run(f"/incident-time {CODE} 10003 add 30 test reason")
    assert (CODE, "10003", True) not in run_due(exam.at("2026-12-01 13:44"))
    assert (CODE, "10003", True) in run_due(exam.at("2026-12-01 13:45"))


def test_r9_no_limit_reopening_is_never_delivered(exam):
    """R9: no-limit reopenings are never delivered automatically."""
    exam.at("2026-12-01 14:00").run(f"/reopen {CODE} 10003 no-limit test reason", confirmed=True)
    assert (CODE, "10003", True) not in run_due(exam.at("2027-06-01 12:00"))
    with exam.factory() as s:
        assert s.scalars(select(Reopening)).one().closed_at is None


def test_r9_thesis_is_never_delivered_automatically(world):
    """R9: thesis tests never, neither at the end nor at a reopen deadline."""
    world.add_test("MASTER-2026", kind="thesis", start="2026-08-01 09:00", auto_deliver=True)
    world.add_candidates("MASTER-2026", ["10001", "10002"])
    world.at("2026-12-01 14:00").run("/reopen MASTER-2026 10002 in 10 test reason")
    assert run_due(world.at("2026-12-05 12:00")) == []
    assert statuses(world) == {"10001": "started", "10002": "started"}


def test_r9_individual_end_is_the_deadline(world):
    """R9 + R2: a candidate with an individual end is delivered then, not at the ordinary end."""
    world.add_test(CODE)
    world.add_candidates(CODE, ["10001"], individual_deadline=oslo("2026-12-02 10:00"))
    assert run_due(world.at("2026-12-01 14:00")) == []
    assert run_due(world.at("2026-12-02 10:00")) == [(CODE, "10001", False)]


# ---------------------------------------------------------------- R10


def deliver(world, number: str, path: Path, *, actor: str = SUPPORT) -> str:
    with world.factory() as s:
        ctx = Ctx(db_session=s, actor=actor, tz=OSLO, now=world.now)
        text = attach_file(ctx, test_code=CODE, number=number, path=path, reason="mailed to us")
        s.commit()
    return text


def sized_file(tmp_path: Path, size: int) -> Path:
    path = tmp_path / f"answer-{size}.pdf"
    with path.open("wb") as handle:
        handle.truncate(size)  # sparse: no need to write 50 MB
    return path


def test_r10_staff_deliver_a_file_and_the_status_becomes_submitted(exam, tmp_path):
    """R10: the file is stored as a submission with its hash; status submitted; recorded."""
    path = tmp_path / "answer.pdf"
    path.write_bytes(b"%PDF-1.7 the candidate's answer")
    text = deliver(exam, "10002", path)
    assert "answer.pdf" in text and "submitted" in text
    assert statuses(exam)["10002"] == "submitted"
    with exam.factory() as s:
        sub = s.scalars(select(Submission)).one()
        change = s.scalars(select(Change)).one()
    assert (sub.source, sub.by, sub.file_name) == ("staff_file", SUPPORT, "answer.pdf")
    assert sub.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sub.file_size == path.stat().st_size
    assert (change.action, change.actor, change.reason) == ("deliver_file", SUPPORT, "mailed to us")
    assert change.before["status"] == "not_started" and change.after["status"] == "submitted"


def test_r10_exactly_50_mb_is_accepted(exam, tmp_path):
    """R10: at most 50 MB, so exactly 50 MB is fine."""
    deliver(exam, "10001", sized_file(tmp_path, MAX_FILE_BYTES))
    assert statuses(exam)["10001"] == "submitted"


def test_r10_more_than_50_mb_is_refused_and_nothing_changes(exam, tmp_path):
    """R10: a file over 50 MB is refused with what to do instead."""
    before = snapshot(exam.factory)
    with pytest.raises(Refused, match="at most 50 MB") as refused:
        deliver(exam, "10001", sized_file(tmp_path, MAX_FILE_BYTES + 1))
    assert f"/reopen {CODE} 10001" in refused.value.message
    assert snapshot(exam.factory) == before


def test_r10_missing_file_is_refused(exam, tmp_path):
    """R10: a path that is no file is refused."""
    with pytest.raises(InvalidInput, match="There is no file"):
        deliver(exam, "10001", tmp_path / "nope.pdf")
    with pytest.raises(InvalidInput, match="There is no file"):
        deliver(exam, "10001", tmp_path)


def test_r10_teachers_may_not_deliver_for_a_candidate(exam, tmp_path):
    """R10 + R15: only support staff deliver for candidates."""
    path = tmp_path / "a.pdf"
    path.write_bytes(b"x")
    with pytest.raises(NotAllowed):
        deliver(exam, "10001", path, actor=TEACHER)
    assert statuses(exam)["10001"] == "started"


def test_r10_delivering_for_a_reopened_candidate_ends_the_reopening(exam, tmp_path):
    """R10 + R6: the staff delivery is the new delivery, so the reopening is closed."""
    exam.at("2026-12-01 14:00").run(f"/reopen {CODE} 10003 in 30 test reason")
    path = tmp_path / "late.pdf"
    path.write_bytes(b"late answer")
    deliver(exam, "10003", path)
    with exam.factory() as s:
        reopening = s.scalars(select(Reopening)).one()
    assert reopening.closed_at == exam.now and reopening.closed_by == SUPPORT
    assert run_due(exam.at("2026-12-01 15:00")) == [(CODE, "10001", False), (CODE, "10004", False)]


def test_r9_the_sweep_scan_neither_waits_for_nor_blocks_a_command_that_writes(exam):
    """R9 at scale: the scan that finds due answers only reads, so a command holding the
    write lock (SQLite) or a row lock (PostgreSQL) does not hold it up, and the answer it
    finds due is the one R9 delivers."""
    exam.at("2026-12-01 13:20")
    writer = exam.factory()
    writer.execute(
        update(Candidate)
        .where(Candidate.number == "10004")
        .values(incident_minutes=Candidate.incident_minutes)
    )
    try:

        def scanned():
            with exam.factory() as s:
                return scan(db_session=read_only(s), now=exam.now)

        with ThreadPoolExecutor(1) as pool:
            result = pool.submit(scanned).result(timeout=10)
    finally:
        writer.rollback()
        writer.close()
    with exam.factory() as s:
        due = {s.get(Candidate, id_).number for id_ in result.due}
    assert due == {"10001"}
    assert result.upcoming == oslo("2026-12-01 13:45")  # 10004: 30 min extra time


def test_r9_deliver_due_checks_each_scanned_candidate_again(exam):
    """R9: a candidate found due by an earlier scan but given incident time since (R4) is
    not delivered; deliver_due decides on the locked, current row."""
    exam.at("2026-12-01 13:20")
    with exam.factory() as s:
        due = scan(db_session=s, now=exam.now).due
    assert len(due) == 1
    assert exam.at("2026-12-01 13:10").run(f"/incident-time {CODE} 10001 add 15 network").ok
    with exam.factory() as s:
        ctx = Ctx(db_session=s, actor=SYSTEM_ACTOR, tz=OSLO, now=oslo("2026-12-01 13:20"))
        assert deliver_due(ctx, candidate_ids=due) == []
        s.commit()
    assert statuses(exam)["10001"] == "started"
