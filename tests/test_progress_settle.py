"""The leader's sweep ``notice-settle`` (``ProgressReporter.settle``) brings every finished
notice's Slack message and summary to its last state (R13): after a process died before
showing it (killed within the 2 s between two updates), and after a change that no update
was called for, such as Twilio's ``undelivered`` long after the summary was posted."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fake_slack import FakeSlack
from fake_twilio import wait_until
from notifier import running_notifier
from sqlalchemy import select, text, update
from test_question_error_slack import done_notice, exam_now, slack_server

from bot.config import Settings
from bot.runtime import scheduler
from bot.slack.listeners.question_errors import (
    last_state_key,
    progress_key,
    summary_key,
    summary_update_key,
)
from bot.slack.views.notices import notice_progress_message
from notifications import outbox
from notifications.progress import progress
from store.models import Candidate, Delivery, Notice, OutboxMessage


@pytest.fixture
def slack(engine, session_factory) -> Iterator[tuple[FakeSlack, object]]:
    with slack_server(engine, session_factory) as (_, fake, wiring):
        yield fake, wiring


def _rows(world, notice_id: int) -> dict[str, tuple[str, dict]]:
    keys = (
        progress_key(notice_id),
        last_state_key(notice_id),
        summary_key(notice_id),
        summary_update_key(notice_id),
    )
    with world.factory() as s:
        found = s.execute(
            select(OutboxMessage.key, OutboxMessage.status, OutboxMessage.payload).where(
                OutboxMessage.key.in_(keys)
            )
        ).all()
    return {key: (status, payload) for key, status, payload in found}


def _summaries(fake: FakeSlack) -> list[dict]:
    return [c.body for c in fake.of("chat.postMessage") if " is sent: " in c.body["text"]]


def test_r13_a_finished_notice_no_process_showed_gets_its_post_last_state_and_summary(world, slack):
    """The process that sent the notice was killed with its last update held back: no row
    of the notice is in the outbox. The sweep enqueues them, once however often it runs."""
    fake, wiring = slack
    notice_id = done_notice(world, wiring)
    assert _rows(world, notice_id) == {}

    wiring.deps.settle_notices()
    first = _rows(world, notice_id)
    keys = {progress_key(notice_id), last_state_key(notice_id), summary_key(notice_id)}
    assert set(first) == keys
    wiring.deps.settle_notices()
    assert _rows(world, notice_id) == first, "a sweep with nothing new changed a row"

    with world.factory() as s:
        final = notice_progress_message(progress(db_session=s, notice_id=notice_id))
    with running_notifier(wiring.deps.settings, world.factory):
        wait_until(lambda: _summaries(fake), timeout=30)
        time.sleep(0.5)
    posts = [c.body for c in fake.of("chat.postMessage") if c.body["text"].startswith("Notice #")]
    assert [p["text"] for p in posts if " is sent: " not in p["text"]] == [final["text"]]
    [summary] = _summaries(fake)
    assert "10004" in summary["text"]  # the candidate with no phone number, not reached


def test_r13_a_late_undelivered_updates_the_posted_summary_and_the_message(world, slack):
    """Every candidate was reached when the summary was posted; Twilio's ``undelivered``
    for one of them comes later, and the process that took it died before showing it."""
    fake, wiring = slack
    notice_id = done_notice(world, wiring)
    wiring.deps.settle_notices()
    with running_notifier(wiring.deps.settings, world.factory):
        wait_until(lambda: _summaries(fake), timeout=30)
    [summary] = _summaries(fake)
    assert "10002" not in summary["text"]

    with world.factory() as s:
        before = notice_progress_message(progress(db_session=s, notice_id=notice_id))
    with world.factory.begin() as s:
        candidate = s.scalar(select(Candidate.id).where(Candidate.number == "10002"))
        s.execute(
            update(Delivery)
            .where(Delivery.notice_id == notice_id, Delivery.candidate_id == candidate)
            .values(status="undelivered", error_code="30005", error_message="Unknown handset")
        )
    wiring.deps.settle_notices()
    with world.factory() as s:
        final = notice_progress_message(progress(db_session=s, notice_id=notice_id))
        assert final["text"] != before["text"]
        summary_ts = outbox.result_of(s, summary_key(notice_id))["ts"]
        message_ts = outbox.result_of(s, progress_key(notice_id))["ts"]
    with running_notifier(wiring.deps.settings, world.factory):

        def updated(ts: str) -> list[str]:
            calls = fake.of("chat.update")
            return [c.body["text"] for c in calls if c.body.get("ts") == ts]

        wait_until(lambda: any("10002" in t for t in updated(summary_ts)), timeout=30)
        wait_until(lambda: final["text"] in updated(message_ts), timeout=30)
    assert len(_summaries(fake)) == 1, "the summary was posted again instead of updated"


def test_r13_the_sweep_leaves_a_notice_still_sending_to_its_senders(world, slack):
    _, wiring = slack
    code = exam_now(world)
    assert world.run(f"/notice {code} Bruk n = 10.", confirmed=True).ok
    with world.factory() as s:
        notice_id = s.scalar(select(Notice.id))
    wiring.deps.settle_notices()  # nothing is delivered yet: not done
    assert _rows(world, notice_id) == {}


def test_r13_the_leader_runs_the_sweep(engine, session_factory, database_url):
    """The scheduler runs ``notice-settle`` at start and on the notifier's cadence."""
    called = []
    running = scheduler.start_scheduler(
        Settings(_env_file=None, database_url=database_url),
        engine=engine,
        session_factory=session_factory,
        cadence=scheduler.Cadence(notifier_seconds=0.2),
        settle_notices=lambda: called.append(1),
    )
    try:
        wait_until(lambda: len(called) >= 2, timeout=30)
        assert running.get_job(scheduler.NOTICE_SETTLE) is not None
    finally:
        scheduler.stop_scheduler(running)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM apscheduler_jobs"))


def _undelivered(world, notice_id: int, number: str) -> None:
    """Twilio's late ``undelivered`` for one candidate, taken by a process that then died."""
    with world.factory.begin() as s:
        candidate = s.scalar(select(Candidate.id).where(Candidate.number == number))
        s.execute(
            update(Delivery)
            .where(Delivery.notice_id == notice_id, Delivery.candidate_id == candidate)
            .values(status="undelivered", error_code="30005", error_message="Unknown handset")
        )


def _finishes(monkeypatch, reporter) -> list[int]:
    """The notices the reporter writes a finished state for (a write transaction each)."""
    calls: list[int] = []
    finish = reporter._finish

    def counted(db_session, notice_id, message):
        calls.append(notice_id)
        return finish(db_session, notice_id, message)

    monkeypatch.setattr(reporter, "_finish", counted)
    return calls


def test_r13_a_summary_update_under_way_keeps_saying_the_latest(world, slack, monkeypatch):
    """The summary's post went back to waiting (its outcome was unclear, then looked up and
    not found) while an update of it already waits with a newer state: a third state goes
    in the update, the last thing Slack is sent, not in the post before it."""
    fake, wiring = slack
    notice_id = done_notice(world, wiring)
    wiring.deps.settle_notices()
    with running_notifier(wiring.deps.settings, world.factory):
        wait_until(lambda: _summaries(fake), timeout=30)
    _undelivered(world, notice_id, "10002")
    wiring.deps.settle_notices()
    assert summary_update_key(notice_id) in _rows(world, notice_id)
    with world.factory.begin() as s:
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.key == summary_key(notice_id))
            .values(status="pending")
        )
    _undelivered(world, notice_id, "10003")
    wiring.deps.settle_notices()
    rows = _rows(world, notice_id)
    assert "10003" in rows[summary_update_key(notice_id)][1]["args"]["text"]
    calls = _finishes(monkeypatch, wiring.deps.notice_progress)
    wiring.deps.settle_notices()
    assert calls == [], "a settled notice was written again"


def test_r13_rows_given_up_are_not_written_again_by_every_sweep(world, slack, monkeypatch):
    """Slack refused the last state and the summary for good (the message was deleted):
    a later change leaves them so, and the sweep takes no write transaction for them."""
    _, wiring = slack
    notice_id = done_notice(world, wiring)
    wiring.deps.settle_notices()
    with world.factory.begin() as s:
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.key.in_((last_state_key(notice_id), summary_key(notice_id))))
            .values(status="failed", error_code="message_not_found")
        )
    _undelivered(world, notice_id, "10002")
    calls = _finishes(monkeypatch, wiring.deps.notice_progress)
    wiring.deps.settle_notices()
    assert calls == []
    rows = _rows(world, notice_id)
    assert rows[last_state_key(notice_id)][0] == "failed"
    assert summary_update_key(notice_id) not in rows
