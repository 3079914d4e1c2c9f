"""A notice's message in Slack ends with the notice's last state, and is posted once,
whatever order processes, callbacks and the outbox's requests come in (R13)."""

from __future__ import annotations

import time
from datetime import timedelta

from fake_twilio import wait_until
from notifier import running_notifier
from sqlalchemy import select, update
from test_outbox import sender, slack_transport
from test_progress_post_shutdown import slack  # noqa: F401  (fixture)
from test_question_error_slack import CHANNEL, done_notice

from bot.slack.listeners.question_errors import ProgressReporter, last_state_key, progress_key
from bot.slack.views.notices import notice_progress_message
from notifications import outbox
from notifications.progress import progress
from store.models import Delivery, DeliveryStatus, Notice, OutboxMessage, OutboxStatus


def _reporter(wiring) -> ProgressReporter:
    reporter = ProgressReporter(wiring.deps, wiring.bolt_app.client, every=60)
    reporter.client.token = "xoxb-test-token"
    return reporter


def _one_sms_sent(world, notice_id: int) -> int:
    """One SMS the carrier took but has not confirmed yet: the notice is done, and a
    Twilio callback may still say 'undelivered'."""
    with world.factory.begin() as s:
        delivery = s.scalars(
            select(Delivery).where(Delivery.notice_id == notice_id).order_by(Delivery.id)
        ).first()
        delivery.status = DeliveryStatus.SENT
        return delivery.id


def _undelivered(world, delivery_id: int) -> None:
    """Twilio's callback: the carrier could not deliver it."""
    with world.factory.begin() as s:
        s.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(status=DeliveryStatus.UNDELIVERED, error_code="30003")
        )


def _state(world, notice_id: int) -> dict:
    with world.factory() as s:
        return notice_progress_message(progress(db_session=s, notice_id=notice_id))


def test_r13_direct_update_is_not_overtaken_by_the_last_state_in_flight(
    world,
    slack,  # noqa: F811
    is_postgres,
):
    """The last state's chat.update is under way (``sending``, old state) when a callback
    changes the notice: the reporter updates the message directly, then the outbox's request
    lands after it. The message must end with the newest state."""
    fake, wiring = slack
    notice_id = done_notice(world, wiring)
    delivery_id = _one_sms_sent(world, notice_id)
    _reporter(wiring)(notice_id)  # done: its post, last state and summary are queued

    out = sender(world.factory, is_postgres, slack_post=slack_transport(fake))
    assert out.send_due() == 1  # the notice's post
    (claimed,) = out._claim()  # its last state, the old one, goes out...
    in_flight = out._mark_sending(claimed, timedelta(minutes=1))
    assert in_flight is not None

    _undelivered(world, delivery_id)  # ...while Twilio's callback changes the notice
    reporter = _reporter(wiring)
    reporter(notice_id)  # the row is `sending`: not overtaken, shown after it
    newest = _state(world, notice_id)
    assert list(reporter._pending) == [notice_id]

    # The outbox's request ends; then the reporter's planned render (close: at once).
    answer = out.transports["slack_post"].send(in_flight)
    out._finish(in_flight, {"status": OutboxStatus.SENT, "result": answer})
    reporter.close()
    assert out.send_due() == 1  # the newest state, after the old one
    with world.factory() as s:
        ts = outbox.result_of(s, progress_key(notice_id))["ts"]
    shown = [c.body["text"] for c in fake.of("chat.update") if c.body.get("ts") == ts]
    assert shown[-1] == newest["text"], "the message ends with the state before the callback"
    assert newest["text"] != shown[0]


def test_r13_an_older_render_does_not_replace_a_newer_waiting_last_state(
    world,
    slack,  # noqa: F811
    is_postgres,
):
    """Two processes render the finished notice at once (serve for Twilio's callback, the
    worker for its last send). The one that read the state first writes it last: the
    waiting last state must still be the newest."""
    _, wiring = slack
    notice_id = done_notice(world, wiring)
    delivery_id = _one_sms_sent(world, notice_id)
    worker, serve = _reporter(wiring), _reporter(wiring)
    find_message = worker._message

    def slow(notice):  # the worker has read the state, then is slow
        message = find_message(notice)
        _undelivered(world, delivery_id)
        serve(notice_id)  # serve renders the callback's state meanwhile
        return message

    worker._message = slow  # type: ignore[method-assign]
    worker(notice_id)
    newest = _state(world, notice_id)

    with world.factory() as s:
        row = s.scalar(select(OutboxMessage).where(OutboxMessage.key == last_state_key(notice_id)))
        assert row.status == OutboxStatus.PENDING
        waiting = row.payload["args"]["text"]
    assert waiting == newest["text"], "the waiting last state went back to an older one"


def test_r13_a_notice_with_its_message_gets_no_second_post_when_done(
    world,
    slack,  # noqa: F811
):
    """A notice whose message is recorded on the notice (``Notice.slack_ts``, as the
    previous version stored its own post, and as the tests' ``_a_notice_with_its_message``
    sets it) but has no outbox row: when it is done, no second post of it appears."""
    fake, wiring = slack
    notice_id = done_notice(world, wiring)
    ts = "1767225600.000100"
    with world.factory.begin() as s:
        notice = s.get(Notice, notice_id)
        notice.slack_channel, notice.slack_ts = CHANNEL, ts
    _reporter(wiring)(notice_id)

    with running_notifier(wiring.deps.settings, world.factory):
        wait_until(lambda: [c for c in fake.of("chat.postMessage") if "is sent" in c.body["text"]])
        time.sleep(1)
    heading = f"Notice #{notice_id} to"
    copies = [
        c.body
        for c in fake.of("chat.postMessage")
        if c.body["text"].startswith(heading) and "is sent" not in c.body["text"]
    ]
    assert copies == [], "a second post of the notice was made in the support channel"
