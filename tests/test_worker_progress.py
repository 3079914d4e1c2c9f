"""`examdesk worker` shows the progress of the notices it sends in Slack, as serve does: with
no serve running, the notice's message ends with what the database holds (R13)."""

from __future__ import annotations

import os
import signal

from conftest import SUPPORT
from fake_slack import FakeSlack
from fake_twilio import seed_candidates, wait_until
from sqlalchemy import func, select
from test_dispatch import running_exam
from test_dispatch_crash import start_worker

from bot.slack.views.notices import notice_progress_message
from notifications.progress import progress
from store.models import Delivery, Notice

CHANNEL, TS = "C0SUPPORT", "1767225600.000100"


def test_r13_worker_updates_the_slack_progress_of_the_notice_it_sends(
    world, database_url, tmp_path
):
    code = running_exam(world)
    seed_candidates(world.factory, code, 5)
    reply = world.run(f"/notice {code} Task 3b: n = 10.", actor=SUPPORT, confirmed=True)
    assert reply.ok, reply.text
    notice_id = reply.data["notice_id"]
    # The message serve posted when the notice was sent; no serve runs to update it.
    with world.factory.begin() as s:
        notice = s.get(Notice, notice_id)
        notice.slack_channel, notice.slack_ts = CHANNEL, TS

    slack = FakeSlack()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TWILIO_", "SMTP"))}
    # Without TWILIO_* the SMS are logged, not sent: no provider callback comes back.
    env |= {
        "DATABASE_URL": database_url,
        "PUBLIC_URL": "https://exams.example.org",
        "SLACK_BOT_TOKEN": "xoxb-worker",
        "SLACK_API_URL": slack.api_url,
        "NOTIFIER_POLL_SECONDS": "0.05",
    }
    worker = start_worker(env, tmp_path, "worker")
    try:

        def unsent() -> int:
            with world.factory() as s:
                return s.scalar(
                    select(func.count()).where(
                        Delivery.notice_id == notice_id,
                        Delivery.status.in_(("pending", "sending", "unknown")),
                    )
                )

        wait_until(lambda: unsent() == 0, timeout=60)
        with world.factory() as s:
            state = progress(db_session=s, notice_id=notice_id)
        assert state is not None and state.by_channel == {"sms": {"logged": 5}}
        expected = notice_progress_message(state)

        def shown() -> dict | None:
            updates = [c.body for c in slack.of("chat.update") if c.body.get("ts") == TS]
            return updates[-1] if updates else None

        try:
            wait_until(lambda: (shown() or {}).get("text") == expected["text"], timeout=30)
        except AssertionError:
            log = (tmp_path / "worker.log").read_text()[-2000:]
            raise AssertionError(f"{shown()!r} != {expected['text']!r}\n{log}") from None
        last = shown()
        assert last is not None
        assert last["channel"] == CHANNEL
        assert last["blocks"] == expected["blocks"]
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            assert worker.wait(20) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
            slack.close()
