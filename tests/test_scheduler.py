"""The scheduler: automatic delivery at deadlines (R9), registry refresh (R11), restarts.

These tests run the real APScheduler with its job table in the test database, on the real
clock: deadlines are set a second or two ahead of now.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import OSLO, oslo
from sqlalchemy import func, inspect, select, text

from bot.config import Settings
from bot.runtime import scheduler as sched
from commands import delivery
from store import clock
from store.models import Candidate, Change, Delivery, Notice, Reopening, Submission
from store.models import Test as ExamTest

HOUR = timedelta(hours=1)
NO_SWEEP = sched.Cadence(deliver_seconds=3600)  # only the start-up run and deadline jobs


def wait_until(check: Callable[[], object], timeout: float = 45.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {getattr(check, '__doc__', '') or check}")


@pytest.fixture
def start(engine, session_factory, database_url) -> Iterator[Callable[..., object]]:
    """Start the scheduler as the leader does; everything started is stopped afterwards."""
    running: list = []

    def run(*, registry_dir: Path | None = None, cadence: sched.Cadence = NO_SWEEP):
        settings = Settings(_env_file=None, database_url=database_url, registry_dir=registry_dir)
        scheduler = sched.start_scheduler(
            settings, engine=engine, session_factory=session_factory, cadence=cadence
        )
        running.append(scheduler)
        return scheduler

    yield run
    for scheduler in running:
        sched.stop_scheduler(scheduler)
    if inspect(engine).has_table("apscheduler_jobs"):
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM apscheduler_jobs"))


class Exam:
    """Tests and candidates on the real clock."""

    def __init__(self, factory) -> None:
        self.factory = factory

    def test(
        self,
        code: str,
        *,
        end: timedelta,
        kind: str = "school",
        auto_deliver: bool = True,
        start: timedelta = -2 * HOUR,
    ) -> str:
        now = clock.now()
        with self.factory.begin() as s:
            s.add(
                ExamTest(
                    code=code,
                    kind=kind,
                    start=now + start,
                    end=now + end,
                    has_upload=False,  # no allowance: the end is the deadline (R1)
                    auto_deliver=auto_deliver,
                    updated_at=now,
                )
            )
        return code

    def candidate(self, code: str, number: str, *, status: str = "started", **fields) -> int:
        with self.factory.begin() as s:
            test = s.scalars(select(ExamTest).where(ExamTest.code == code)).one()
            candidate = Candidate(
                test_id=test.id,
                number=number,
                status=status,
                language="nb",
                extra_minutes=0,
                incident_minutes=0,
                notice_token=secrets.token_urlsafe(32),
                **fields,
            )
            s.add(candidate)
            s.flush()
            return candidate.id

    def reopen(self, candidate_id: int, *, mode: str, deadline: datetime | None) -> None:
        with self.factory.begin() as s:
            s.add(
                Reopening(
                    candidate_id=candidate_id,
                    mode=mode,
                    deadline=deadline,
                    opened_at=clock.now() - HOUR,
                    opened_by="U0SUPPORT1",
                    status_before="submitted",
                )
            )
            s.get(Candidate, candidate_id).status = "started"

    def get(self, candidate_id: int) -> Candidate:
        with self.factory() as s:
            return s.get(Candidate, candidate_id)

    def submissions(self, candidate_id: int) -> list[Submission]:
        with self.factory() as s:
            return list(
                s.scalars(select(Submission).where(Submission.candidate_id == candidate_id))
            )

    def changes(self, candidate_id: int, action: str) -> int:
        with self.factory() as s:
            return s.scalar(
                select(func.count())
                .select_from(Change)
                .where(Change.candidate_id == candidate_id, Change.action == action)
            )

    def open_reopenings(self, candidate_id: int) -> int:
        with self.factory() as s:
            return s.scalar(
                select(func.count())
                .select_from(Reopening)
                .where(Reopening.candidate_id == candidate_id, Reopening.closed_at.is_(None))
            )


@pytest.fixture
def exam(session_factory) -> Exam:
    return Exam(session_factory)


def delivered(exam: Exam, candidate_id: int) -> Callable[[], bool]:
    def check() -> bool:
        return exam.get(candidate_id).status == "submitted"

    check.__doc__ = f"candidate {candidate_id} delivered"
    return check


# "At the deadline, not a sweep later": the sweep is an hour away in these tests, so anything
# well under that proves the planned job delivered it; the margin absorbs a loaded CI machine.
ON_TIME = timedelta(seconds=30)


def test_r9_delivers_each_candidate_at_its_own_deadline(exam, start):
    """R9: a started answer is delivered at the candidate's deadline, not a sweep later.

    The sweep is an hour away, so only the job planned at each deadline can deliver.
    """
    exam.test("T1", end=2 * HOUR)
    now = clock.now()
    first, second = now + timedelta(seconds=1.5), now + timedelta(seconds=2.5)
    a = exam.candidate("T1", "10001", individual_deadline=first)  # R2 replaces the end
    b = exam.candidate("T1", "10002", individual_deadline=second)
    c = exam.candidate("T1", "10003")  # the test's own end, two hours on
    start()

    wait_until(delivered(exam, b))
    for cid, due in ((a, first), (b, second)):
        (submission,) = exam.submissions(cid)
        assert submission.source == "automatic"
        assert due <= submission.at < due + ON_TIME, (submission.at, due)
        assert exam.changes(cid, "auto_deliver") == 1
    assert exam.get(c).status == "started"


def test_r9_deadlines_passed_while_down_are_delivered_at_start_and_rules_hold(exam, start):
    """R9: at start the scheduler delivers what fell due while no process ran: started
    answers of auto-delivering tests and reopenings at their reopen deadline even where the
    test does not deliver automatically; never no-limit reopenings, thesis tests or tests
    without automatic delivery."""
    exam.test("AUTO", end=-10 * timedelta(minutes=1))
    exam.test("MANUAL", end=-HOUR, auto_deliver=False)
    exam.test("THESIS", end=-HOUR, kind="thesis")
    auto = exam.candidate("AUTO", "1")
    manual = exam.candidate("MANUAL", "1")
    reopened = exam.candidate("MANUAL", "2")
    exam.reopen(reopened, mode="at", deadline=clock.now() - timedelta(minutes=1))
    no_limit = exam.candidate("MANUAL", "3")
    exam.reopen(no_limit, mode="no-limit", deadline=None)
    thesis = exam.candidate("THESIS", "1")

    start()
    # One delivery transaction handles all of them; once one is in, all are decided.
    wait_until(delivered(exam, auto))
    wait_until(delivered(exam, reopened))

    assert [s.source for s in exam.submissions(auto)] == ["automatic"]
    assert [s.source for s in exam.submissions(reopened)] == ["closed_current"]
    assert exam.open_reopenings(reopened) == 0
    assert exam.changes(reopened, "auto_deliver_reopened") == 1
    for untouched in (manual, no_limit, thesis):
        assert exam.get(untouched).status == "started"
        assert exam.submissions(untouched) == []
    assert exam.open_reopenings(no_limit) == 1


def test_r9_reopen_deadline_is_delivered_on_time(exam, start):
    """R9: a reopened answer is delivered at its reopen deadline (planned, not swept)."""
    exam.test("MANUAL", end=-HOUR, auto_deliver=False)
    cid = exam.candidate("MANUAL", "1", status="submitted")
    due = clock.now() + timedelta(seconds=1.5)
    exam.reopen(cid, mode="in", deadline=due)
    start()
    wait_until(delivered(exam, cid))
    (submission,) = exam.submissions(cid)
    assert due <= submission.at < due + ON_TIME
    assert exam.open_reopenings(cid) == 0


def test_r9_restart_never_delivers_twice(exam, start):
    """R9: stopping and starting the scheduler again (a restart, or a new leader) delivers
    nothing a second time: Submission and Change rows stay one per delivery."""
    exam.test("T1", end=-timedelta(minutes=5))
    first = exam.candidate("T1", "1")
    pending = exam.candidate("T1", "2", individual_deadline=clock.now() + timedelta(seconds=1))
    scheduler = start()
    wait_until(delivered(exam, first))
    wait_until(delivered(exam, pending))
    sched.stop_scheduler(scheduler)

    # Falls due while stopped; its delivery at the next start shows the start-up run is done.
    late = exam.candidate("T1", "3", individual_deadline=clock.now() - timedelta(seconds=1))
    scheduler = start()
    wait_until(delivered(exam, late))
    sched.stop_scheduler(scheduler)
    last = exam.candidate("T1", "4", individual_deadline=clock.now() - timedelta(seconds=1))
    start()
    wait_until(delivered(exam, last))

    for cid in (first, pending, late, last):
        assert len(exam.submissions(cid)) == 1
        assert exam.changes(cid, "auto_deliver") == 1


def test_planned_delivery_follows_a_moved_deadline(exam, start, session_factory):
    """R9: when a deadline moves, the one-off job moves with it; one future job at a time."""
    exam.test("T1", end=2 * HOUR)
    cid = exam.candidate("T1", "1", individual_deadline=clock.now() + HOUR)
    scheduler = start()

    def planned() -> list:
        return [j for j in scheduler.get_jobs() if j.id.startswith(sched.DELIVER_AT)]

    (job,) = wait_until(planned)
    assert abs(job.next_run_time - clock.wall(exam.get(cid).individual_deadline)) < timedelta(
        seconds=1
    )

    with session_factory.begin() as s:
        s.get(Candidate, cid).incident_minutes = 20  # R3: the end time moves 20 min later
    sched.deliver_job()  # what the sweep does
    (moved,) = planned()
    assert moved.next_run_time - job.next_run_time == timedelta(minutes=20)
    assert exam.get(cid).status == "started"


def test_next_deadline_skips_no_limit_thesis_and_manual_tests(exam, session_factory):
    """R9: only deadlines at which something is delivered are planned."""
    now = clock.now()
    exam.test("THESIS", end=HOUR, kind="thesis")
    exam.test("MANUAL", end=HOUR, auto_deliver=False)
    exam.test("AUTO", end=3 * HOUR)
    exam.candidate("THESIS", "1")
    exam.candidate("MANUAL", "1")
    no_limit = exam.candidate("MANUAL", "2")
    exam.reopen(no_limit, mode="no-limit", deadline=None)
    exam.candidate("AUTO", "1", status="submitted")
    with session_factory() as s:
        assert delivery.scan(db_session=s, now=now).upcoming is None
    at = exam.candidate("MANUAL", "3")
    exam.reopen(at, mode="at", deadline=now + 2 * HOUR)
    exam.candidate("AUTO", "2")
    with session_factory() as s:
        assert delivery.scan(db_session=s, now=now).upcoming == (now + 2 * HOUR)


def write(path: Path, lines: list[str], *, age: float = 0) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))


def test_r11_registry_refresh_runs_every_30_minutes_and_keeps_staff_changes(
    start, session_factory, world, tmp_path
):
    """R11: the scheduled refresh brings in the newest export and never undoes incident time
    or a reopening made by staff."""
    folder = tmp_path / "registry"
    folder.mkdir()
    day = f"{clock.now().astimezone(OSLO).date() + timedelta(days=1):%Y-%m-%d}"  # tomorrow
    write(
        folder / "tests-0800.csv",
        [
            "code,title,kind,start,end,upload,auto_deliver,teachers",
            f"REG-1,Registry exam,school,{day} 09:00,{day} 13:00,yes,yes,",
        ],
    )
    write(
        folder / "candidates-0800.csv",
        [
            "test,candidate,phone,email,language,extra_minutes,postponed_deadline,"
            "individual_deadline,status",
            "REG-1,10001,41234567,,nb,0,,,started",
            "REG-1,10002,41234568,,en,30,,,started",
        ],
        age=60,
    )
    scheduler = start(registry_dir=folder)
    job = scheduler.get_job(sched.REGISTRY_REFRESH)
    assert job.trigger.interval == timedelta(minutes=30)

    def imported() -> int:
        with session_factory() as s:
            return s.scalar(select(func.count()).select_from(Candidate))

    wait_until(imported)  # the first refresh runs right at start
    world.at(f"{day} 10:00")
    assert world.run("/incident-time REG-1 10001 add 20 network outage").ok
    assert world.run(f"/reopen REG-1 10002 at {day} 16:00 upload failed").ok

    # The registry drops a newer export: more extra time for both.
    write(
        folder / "candidates-0830.csv",
        [
            "test,candidate,phone,email,language,extra_minutes,postponed_deadline,"
            "individual_deadline,status",
            "REG-1,10001,41234567,,nb,15,,,started",
            "REG-1,10002,41234568,,en,45,,,started",
        ],
    )
    scheduler.modify_job(sched.REGISTRY_REFRESH, next_run_time=clock.wall(clock.now()))

    def refreshed() -> bool:
        with session_factory() as s:
            return s.scalar(select(func.sum(Candidate.extra_minutes))) == 60

    wait_until(refreshed)
    first, second = world.candidate("REG-1", "10001"), world.candidate("REG-1", "10002")
    assert (first.extra_minutes, first.incident_minutes) == (15, 20)
    assert second.extra_minutes == 45
    assert [r.closed_at for r in second.reopenings] == [None]
    assert second.reopenings[0].deadline == oslo(f"{day} 16:00")


def test_r11_no_registry_folder_means_no_refresh_job(start, tmp_path):
    """R11: without REGISTRY_DIR nothing is refreshed, also not by a job left by a leader
    that had it set."""
    folder = tmp_path / "registry"
    folder.mkdir()
    sched.stop_scheduler(start(registry_dir=folder))
    scheduler = start(registry_dir=None)
    assert scheduler.get_job(sched.REGISTRY_REFRESH) is None
    assert scheduler.get_job(sched.DELIVER_SWEEP) is not None


def test_r11_bad_export_is_logged_and_imports_nothing(start, session_factory, tmp_path, caplog):
    """R11: a broken export file does not stop the schedule and stores nothing."""
    folder = tmp_path / "registry"
    folder.mkdir()
    write(folder / "tests.csv", ["code,kind,start,end,colour", "X-1,school,,,red"])
    caplog.set_level("WARNING", logger="bot.runtime.scheduler")
    scheduler = start(registry_dir=folder)
    wait_until(lambda: "nothing imported" in caplog.text)
    assert "colour" in caplog.text
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(ExamTest)) == 0
    assert scheduler.get_job(sched.REGISTRY_REFRESH) is not None


def test_notifier_sweep_job_frees_deliveries_of_a_dead_sender(exam, start, session_factory):
    """The scheduled sweep hands a delivery claimed by a sender that died back to the
    notifiers, and marks one cut off mid-request as unknown (not resent blindly)."""
    exam.test("T1", end=HOUR)
    cid = exam.candidate("T1", "1", phone="+4741234567")
    past = clock.now() - timedelta(minutes=5)
    with session_factory.begin() as s:
        notice = Notice(test_id=exam.get(cid).test_id, created_by="U0SUPPORT1", created_at=past)
        s.add(notice)
        s.flush()
        for channel, status in (("sms", "pending"), ("email", "sending")):
            s.add(
                Delivery(
                    notice_id=notice.id,
                    candidate_id=cid,
                    channel=channel,
                    address="x",
                    status=status,
                    next_attempt_at=past,
                    claimed_by="dead-sender",
                    claimed_until=past,
                    updated_at=past,
                )
            )
    start()  # the notifier sweep runs once at start

    def swept() -> list[tuple[str, str | None]]:
        with session_factory() as s:
            rows = s.execute(select(Delivery.status, Delivery.claimed_by).order_by(Delivery.id))
            return [tuple(r) for r in rows]

    wait_until(lambda: all(by is None for _, by in swept()))
    assert swept() == [("pending", None), ("unknown", None)]


def test_r9_the_last_automatic_delivery_tells_the_teachers_that_grading_can_start(exam, start):
    """Seed 004: once the last answer is in, the test's teachers get one Slack message (an
    outbox row, sent by the notifier), naming who delivered after the ordinary end."""
    from store.models import OutboxMessage, Staff, StaffTest

    exam.test("T1", end=-HOUR)  # the ordinary end has passed
    exam.candidate("T1", "10001", status="submitted")
    # R3: its end is a minute ago, so R9 delivers it at start, about an hour after the end.
    late = exam.candidate("T1", "10002")
    with exam.factory.begin() as s:
        s.get(Candidate, late).incident_minutes = 59
    with exam.factory.begin() as s:
        s.add(Staff(user_id="U0TEACH9", role="teacher", added_at=clock.now(), added_by="test"))
        s.flush()
        test_id = s.scalars(select(ExamTest.id).where(ExamTest.code == "T1")).one()
        s.add(StaffTest(user_id="U0TEACH9", test_id=test_id))
    start()
    wait_until(delivered(exam, late))

    def told() -> list[OutboxMessage]:
        with exam.factory() as s:
            return list(s.scalars(select(OutboxMessage).where(OutboxMessage.target == "U0TEACH9")))

    (message,) = wait_until(told)
    text_ = message.payload["args"]["text"]
    assert text_.startswith("All answers of T1 are in; grading can start.")
    assert "10002 (+" in text_ and "10001" not in text_
    sched.deliver_job()  # a later sweep: told once
    assert len(told()) == 1
