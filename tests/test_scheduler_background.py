"""`bot.runtime.background.start`, as `examdesk serve` calls it: notifier and elected scheduler."""

from __future__ import annotations

import secrets
import time
from datetime import timedelta

from sqlalchemy import func, select, text

from bot.config import Settings
from bot.deps import Deps
from bot.runtime import background, leader
from bot.runtime import scheduler as sched
from store import clock
from store.models import Candidate, Lease, Submission
from store.models import Test as ExamTest


def wait_for(check, timeout: float):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if result := check():
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


def test_r9_two_serve_processes_one_scheduler_and_takeover_on_stop(
    engine, session_factory, database_url
):
    """R9: of two `serve` members only the elected one runs the scheduler and delivers; when
    it stops, the other takes over and delivers what falls due then, once."""
    now = clock.now()
    with session_factory.begin() as s:
        test = ExamTest(
            code="BG-1",
            kind="school",
            start=now - timedelta(hours=3),
            end=now - timedelta(hours=1),
            has_upload=False,
            auto_deliver=True,
            updated_at=now,
        )
        s.add(test)
        s.flush()
        for number in ("1", "2"):
            s.add(
                Candidate(
                    test_id=test.id,
                    number=number,
                    status="started" if number == "1" else "not_started",
                    notice_token=secrets.token_urlsafe(32),
                )
            )
    settings = Settings(_env_file=None, database_url=database_url)

    def deps() -> Deps:
        return Deps(settings=settings, engine=engine, session_factory=session_factory)

    def status(number: str) -> str:
        with session_factory() as s:
            return s.scalar(select(Candidate.status).where(Candidate.number == number))

    stop_first = background.start(deps())
    stop_second = None
    try:
        wait_for(lambda: status("1") == "submitted", 45)
        leading_scheduler = sched._runtime
        assert leading_scheduler is not None
        stop_second = background.start(deps())
        time.sleep(1)
        assert sched._runtime is leading_scheduler  # the second joined as a follower
        stop_first()
        stop_first = None
        with session_factory.begin() as s:
            s.scalars(select(Candidate).where(Candidate.number == "2")).one().status = "started"
        # The follower tries every RETRY_SECONDS; the leader stepped down cleanly.
        wait_for(lambda: status("2") == "submitted", leader.RETRY_SECONDS + 45)
        assert sched._runtime is not None and sched._runtime is not leading_scheduler
    finally:
        for stop in (stop_first, stop_second):
            if stop is not None:
                stop()
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM apscheduler_jobs"))

    assert sched._runtime is None
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Submission)) == 2
        assert s.scalar(select(func.count()).select_from(Lease)) == 0
