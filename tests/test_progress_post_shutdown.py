"""A notice with no Slack message of its own gets its progress post through the outbox
(key ``notice-progress:{id}``). The process reporting the notice may stop before that post
is made: the summary in the thread and the last state still reach Slack, through the
outbox, whichever process sends them (R13)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fake_slack import FakeSlack
from fake_twilio import wait_until
from notifier import running_notifier
from sqlalchemy import select, update
from test_question_error_slack import CHANNEL, done_notice, exam_now, slack_server

from bot.slack.listeners.question_errors import ProgressReporter, progress_key
from bot.slack.views.notices import notice_progress_message
from notifications.progress import progress
from store import clock
from store.models import Lease, Notice, OutboxMessage, OutboxStatus


@pytest.fixture
def slack(engine, session_factory) -> Iterator[tuple[FakeSlack, object]]:
    """Slack wired as serve wires it, with no notifier running: the test decides when an
    outbox sender runs (a process stopping, another one taking over)."""
    with slack_server(engine, session_factory) as (_, fake, wiring):
        yield fake, wiring


def test_r13_summary_is_posted_when_the_reporter_stopped_before_the_post_was_made(world, slack):
    """A worker reports a notice it finished and stops (SIGTERM: its notifier stops, then
    ``close()``) before any outbox sender made the progress post; a serve's sender makes
    it later. The summary listing the candidates not reached must still reach the thread."""
    fake, wiring = slack
    notice_id = done_notice(world, wiring)
    reporter = ProgressReporter(wiring.deps, wiring.bolt_app.client, every=60)
    reporter.client.token = "xoxb-test-token"
    reporter(notice_id)  # the last call for the notice: it is done
    reporter.close()

    heading = f"Notice #{notice_id} "
    with running_notifier(wiring.deps.settings, world.factory):  # another process's sender

        def posted() -> list[dict]:
            calls = fake.of("chat.postMessage")
            return [c.body for c in calls if c.body["text"].startswith(heading)]

        wait_until(lambda: posted(), timeout=30)
        time.sleep(1)  # polls every 0.05 s: a summary would be out by now
    summaries = [c.body for c in fake.of("chat.postMessage") if "is sent" in c.body["text"]]
    assert len(summaries) == 1, "no summary in the notice's thread"
    assert "10004" in summaries[0]["text"]
    # close() leaves no timer behind for a process that is about to exit.
    assert reporter._pending == {}


def test_r13_last_state_is_shown_when_the_post_was_sending_at_the_last_render(world, slack):
    """Another process's sender has the progress post under way (``sending``, holding the
    first state) when this process renders the notice done and stops: the last state follows
    the post in its queue."""
    fake, wiring = slack
    code = exam_now(world)
    assert world.run(f"/notice {code} Bruk n = 10.", confirmed=True).ok
    with world.factory() as s:
        notice_id = s.scalar(select(Notice.id))
    reporter = ProgressReporter(wiring.deps, wiring.bolt_app.client, every=60)
    reporter.client.token = "xoxb-test-token"
    reporter(notice_id)  # nothing delivered yet: the row holds that state

    # A live serve's sender claims the row and starts its request.
    now = clock.now()
    with world.factory.begin() as s:
        s.add(Lease(name="notifier:serve", holder="serve", expires_at=now + timedelta(hours=1)))
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.key == progress_key(notice_id))
            .values(
                status=OutboxStatus.SENDING,
                claimed_by="serve",
                claimed_until=now + timedelta(hours=1),
            )
        )

    def done() -> bool:
        with world.factory() as s:
            state = progress(db_session=s, notice_id=notice_id)
            return state is not None and state.done

    with running_notifier(wiring.deps.settings, world.factory):
        wait_until(done, timeout=30)
    reporter(notice_id)  # held back: every=60
    reporter.close()  # the process stops

    with world.factory() as s:
        final = notice_progress_message(progress(db_session=s, notice_id=notice_id))
    # Serve's request ends: the post is made, showing the first state.
    ts = "1767225600.000200"
    with world.factory.begin() as s:
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.key == progress_key(notice_id))
            .values(
                status=OutboxStatus.SENT,
                result={"channel": CHANNEL, "ts": ts},
                claimed_by=None,
                claimed_until=None,
            )
        )
    with running_notifier(wiring.deps.settings, world.factory):  # any process's sender

        def shown() -> list[str]:
            return [c.body["text"] for c in fake.of("chat.update") if c.body.get("ts") == ts]

        wait_until(lambda: final["text"] in shown(), timeout=30)
    assert shown()[-1] == final["text"]
