"""PostgreSQL under concurrency: row locks keep simultaneous changes whole (R4) and keep two
schedulers that overlap (a leader that has not yet noticed it was replaced) from delivering
twice (R9)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from conftest import OSLO, SUPPORT
from sqlalchemy import func, select

from commands.context import Ctx
from commands.delivery import SYSTEM_ACTOR, deliver_due
from commands.reply import Reply
from commands.runner import execute
from store import clock
from store.db import make_engine, make_session_factory, session_scope
from store.models import Candidate, Change, Reopening, Submission

pytestmark = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="concurrency is checked on PostgreSQL; set TEST_DATABASE_URL to a PostgreSQL database",
)

CODE = "TDT4100-2026H"
THREADS = 100


def _at_once(database_url: str, crowd: int, command_line: Callable[[int], str]) -> list[Reply]:
    """``crowd`` commands started together, each in its own session and connection (a pool
    as large as the crowd, so that all of them really are in the database at once)."""
    engine = make_engine(database_url, pool_size=crowd, max_overflow=0)
    factory = make_session_factory(engine)
    start = threading.Barrier(crowd)

    def run(i: int) -> Reply:
        start.wait()
        return execute(
            session_factory=factory,
            actor=SUPPORT,
            command_line=command_line(i),
            tz=OSLO,
            now=clock.now(),
        )

    try:
        with ThreadPoolExecutor(crowd) as pool:
            return list(pool.map(run, range(crowd)))
    finally:
        engine.dispose()


def _add_test(world, *, started_hours_ago: int, ends_in_hours: int) -> None:
    now = clock.now().astimezone(OSLO)
    world.add_test(
        CODE,
        start=f"{now - timedelta(hours=started_hours_ago):%Y-%m-%d %H:%M}",
        end=f"{now + timedelta(hours=ends_in_hours):%Y-%m-%d %H:%M}",
    )


def test_r4_hundred_simultaneous_adds_give_exactly_plus_hundred(world, database_url):
    """R4: 100 `add 1` at once on one candidate, each in its own session → +100, one Change
    each, every before/after one minute apart."""
    _add_test(world, started_hours_ago=1, ends_in_hours=3)
    world.add_candidates(CODE, ["10023"], incident_minutes=7)
    replies = _at_once(database_url, THREADS, lambda _: f"/incident-time {CODE} 10023 add 1 load")

    assert [r.text for r in replies if not r.ok] == []
    candidate = world.candidate(CODE, "10023")
    assert candidate.incident_minutes == 7 + THREADS
    with world.factory() as s:
        changes = s.scalars(
            select(Change).where(Change.candidate_id == candidate.id).order_by(Change.id)
        ).all()
    assert len(changes) == THREADS
    steps = sorted((c.before["10023"], c.after["10023"]) for c in changes)
    assert steps == [(7 + i, 8 + i) for i in range(THREADS)]


def test_r6_simultaneous_reopens_of_one_candidate_leave_one_open_reopening(world, database_url):
    """R6: twenty `/reopen` of one candidate at once all succeed: the first opens it, each
    later one changes that open reopening (it sees the one committed while it waited)."""
    _add_test(world, started_hours_ago=4, ends_in_hours=-1)
    world.add_candidates(CODE, ["10023"], status="submitted")
    crowd = 20
    replies = _at_once(
        database_url, crowd, lambda i: f"/reopen {CODE} 10023 in {10 + i}m attempt {i}"
    )

    assert [r.text for r in replies if not r.ok] == []
    candidate = world.candidate(CODE, "10023")
    with world.factory() as s:
        reopenings = s.scalars(
            select(Reopening).where(Reopening.candidate_id == candidate.id)
        ).all()
        changes = s.scalars(
            select(Change).where(Change.candidate_id == candidate.id).order_by(Change.id)
        ).all()
    assert len(reopenings) == 1 and reopenings[0].closed_at is None
    assert reopenings[0].status_before == "submitted"
    assert len(changes) == crowd
    # Serialised: exactly one saw the candidate not yet reopened.
    assert sum(c.before["new_delivery"] is None for c in changes) == 1
    assert reopenings[0].reason == changes[-1].reason


def test_r8_simultaneous_closes_deliver_once(world, database_url):
    """R8: ten `/reopen … close current` at once: one closes and delivers, the others are
    told there is nothing open any more (each sees the close committed while it waited)."""
    _add_test(world, started_hours_ago=4, ends_in_hours=-1)
    world.add_candidates(CODE, ["10023"], status="submitted")
    opened = execute(
        session_factory=world.factory,
        actor=SUPPORT,
        command_line=f"/reopen {CODE} 10023 in 30m upload failed",
        tz=OSLO,
        now=clock.now(),
    )
    assert opened.ok, opened.text
    replies = _at_once(database_url, 10, lambda _: f"/reopen {CODE} 10023 close current")

    assert sum(r.ok for r in replies) == 1
    assert all("not open for new delivery" in r.text for r in replies if not r.ok)
    candidate = world.candidate(CODE, "10023")
    with world.factory() as s:
        closings = s.scalars(
            select(Submission).where(
                Submission.candidate_id == candidate.id, Submission.source == "closed_current"
            )
        ).all()
    assert len(closings) == 1


def test_r9_overlapping_schedulers_deliver_each_answer_once(world, database_url):
    """R9: ten delivery runs at once over 50 due candidates deliver each exactly once."""
    _add_test(world, started_hours_ago=4, ends_in_hours=-1)
    world.add_candidates(CODE, range(10001, 10051))
    engine = make_engine(database_url, pool_size=10, max_overflow=0)
    factory = make_session_factory(engine)
    start = threading.Barrier(10)

    def run(_: int) -> int:
        start.wait()
        with session_scope(factory) as s:
            return len(deliver_due(Ctx(db_session=s, actor=SYSTEM_ACTOR, tz=OSLO, now=clock.now())))

    try:
        with ThreadPoolExecutor(10) as pool:
            delivered = sum(pool.map(run, range(10)))
    finally:
        engine.dispose()

    assert delivered == 50
    with world.factory() as s:
        per_candidate = s.execute(
            select(Submission.candidate_id, func.count()).group_by(Submission.candidate_id)
        ).all()
        submitted = s.scalar(
            select(func.count()).select_from(Candidate).where(Candidate.status == "submitted")
        )
    assert len(per_candidate) == 50
    assert {n for _, n in per_candidate} == {1}
    assert submitted == 50


def test_two_transactions_enqueueing_one_key_at_once_add_one_message_and_both_commit(
    session_factory, database_url
):
    """Two schedulers that overlap both tell a teacher that grading can start (the outbox
    key makes it one message): the second must neither fail its run nor add a second one."""
    from notifications import outbox
    from store.models import OutboxMessage

    key = "grading-ready:concurrency:U0TEACHER1"
    message = {"method": "chat.postMessage", "args": {"channel": "U0TEACHER1", "text": "ready"}}
    engine = make_engine(database_url, pool_size=2, max_overflow=0)
    factory = make_session_factory(engine)
    got: list[int] = []
    failed: list[BaseException] = []

    def second() -> None:
        try:
            with session_scope(factory) as db_session:
                row = outbox.enqueue(
                    db_session,
                    kind=outbox.SLACK_POST,
                    target="U0TEACHER1",
                    payload=message,
                    key=key,
                )
                db_session.flush()
                got.append(row.id)
        except BaseException as error:
            failed.append(error)

    try:
        with factory() as first:
            mine = outbox.enqueue(
                first, kind=outbox.SLACK_POST, target="U0TEACHER1", payload=message, key=key
            )
            first.flush()
            thread = threading.Thread(target=second)
            thread.start()
            thread.join(0.5)  # the second's INSERT waits for the first's row to commit
            assert thread.is_alive()
            first.commit()
            thread.join(10)
            first_id = mine.id
    finally:
        engine.dispose()
    assert failed == []
    assert got == [first_id]
    with session_factory() as db_session:
        rows = db_session.scalars(select(OutboxMessage).where(OutboxMessage.key == key)).all()
    assert [row.id for row in rows] == [first_id]
