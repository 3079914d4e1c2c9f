"""The outbox: every change's Slack post and webhook event is a row written with the change
and sent by the notifier, retried on 5xx, 429 (``Retry-After``) and lost connections, kept
with its reason when refused for good, and sent once across a SIGKILL of the sender.

Retries follow the program's clock (``world.now``): a test moves it instead of waiting.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import OSLO, SUPPORT, TEACHER, World
from fake_slack import Answer, FakeSlack
from fake_twilio import wait_until
from sqlalchemy import select
from standardwebhooks import Webhook

from bot.slack.outbox_views import RENDERERS
from bot.slack.views.home import home_view
from commands.delivery import SYSTEM_ACTOR, deliver_due
from commands.home import build
from commands.runner import execute
from notifications import outbox
from notifications.channels import Outside
from notifications.dispatch import Tuning
from notifications.events import WebhookTransport
from notifications.outbox import OutboxSender
from notifications.slack_post import SlackTransport
from store import clock
from store.models import Candidate, Change, OutboxMessage, QuestionErrorReport

CHANNEL = "C0SUPPORT"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "events.schema.json").read_text())
CODE = "TDT4100-2026H"


class Receiver:
    """A webhook receiver on loopback: answers each POST with the next scripted status
    (then 204), and keeps what came in."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.received: list[tuple[int, dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 204
                    receiver.received.append((status, dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/examdesk"

    def accepted(self) -> list[tuple[dict[str, str], bytes]]:
        with self._lock:
            return [(h, b) for status, h, b in self.received if 200 <= status < 300]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    yield fake
    fake.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def exam(world: World) -> World:
    world.at("2026-12-01 10:00")
    world.add_test(CODE)
    world.add_candidates(CODE, ["101", "102", "103"])
    return world


def run(world: World, command: str, outside: Outside, *, actor: str = SUPPORT, **kw: Any):
    reply = execute(
        session_factory=world.factory,
        actor=actor,
        command_line=command,
        tz=OSLO,
        now=world.now,
        confirmed=True,
        outside=outside,
        **kw,
    )
    assert reply.ok, reply.text
    return reply


def sender(session_factory, is_postgres: bool, **transports: Any) -> OutboxSender:
    """An outbox sender driven by the test, one batch per ``send_due``."""
    return OutboxSender(
        session_factory=session_factory,
        transports=transports,
        worker_id="test-sender",
        tuning=Tuning(),
        skip_locked=is_postgres,
    )


def slack_transport(fake: FakeSlack) -> SlackTransport:
    return SlackTransport(base_url=fake.api_url, token="xoxb-test", renderers=RENDERERS)


def rows(world: World) -> list[OutboxMessage]:
    with world.factory() as s:
        return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def later(world: World, **delta: float) -> None:
    world.now = clock.now() + timedelta(**delta)


# ---------------------------------------------------------------- Slack


def test_r15_slack_500_then_429_retry_after_then_posted_once(exam, fake, is_postgres):
    """A change's post is retried on HTTP 500 (backoff) and 429 (after Retry-After, on the
    program's clock) and lands once."""
    run(exam, f"/incident-time {CODE} 101 add 10 power cut", Outside(support_channel=CHANNEL))
    fake.script(
        "chat.postMessage",
        Answer(500, None),
        Answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "120"}),
    )
    out = sender(exam.factory, is_postgres, slack_post=slack_transport(fake))

    # The clock goes on ticking while the sender works: each retry's moment is its wait
    # after the answer came, somewhere between a reading before and one after send_due.
    before = clock.now()
    assert out.send_due() == 1
    after = clock.now()
    (row,) = rows(exam)
    assert (row.status, row.attempts, row.error_code) == ("pending", 1, "500")
    assert before < row.next_attempt_at <= after + timedelta(seconds=5)
    assert out.send_due() == 0  # not due before its backoff

    later(exam, seconds=6)
    before = clock.now()
    assert out.send_due() == 1
    after = clock.now()
    (row,) = rows(exam)
    assert (row.status, row.error_code) == ("pending", "ratelimited")
    retry_after = timedelta(seconds=120)
    assert before + retry_after <= row.next_attempt_at <= after + retry_after
    later(exam, seconds=60)
    assert out.send_due() == 0
    later(exam, seconds=61)
    assert out.send_due() == 1

    (row,) = rows(exam)
    assert row.status == "sent" and row.attempts == 3 and row.result["ts"]
    (post,) = fake.accepted()
    assert post.body["channel"] == CHANNEL
    assert "incident" in post.body["text"] and "power cut" in post.body["text"]
    assert post.body["metadata"]["event_payload"] == {"outbox_id": row.id}


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "invalid_auth"])
def test_permanent_slack_errors_fail_at_once_with_their_reason(exam, fake, is_postgres, error):
    run(exam, f"/incident-time {CODE} 101 add 10 power cut", Outside(support_channel=CHANNEL))
    fake.script("chat.postMessage", Answer(200, {"ok": False, "error": error}))
    out = sender(exam.factory, is_postgres, slack_post=slack_transport(fake))
    assert out.send_due() == 1
    (row,) = rows(exam)
    assert (row.status, row.error_code) == ("failed", error)
    assert error in row.error_message
    with exam.factory() as s:
        assert outbox.counts(s) == {"pending": 0, "failed": 1}
        assert [f.id for f in outbox.failures(s)] == [row.id]
        # Support's App Home shows it, for a person to act on.
        home = home_view(build(db_session=s, user_id=SUPPORT, now=exam.now), tz=OSLO)
    shown = json.dumps(home)
    assert "Not sent" in shown and error in shown


def test_a_message_changed_after_its_claim_goes_out_as_changed(exam, fake, is_postgres):
    """A waiting message may take a newer text (a notice's progress post) until it is sent:
    one claimed by a sender but not yet under way goes out with the newer one."""
    with exam.factory.begin() as s:
        outbox.enqueue(
            s,
            kind=outbox.SLACK_POST,
            target=CHANNEL,
            payload={"args": {"text": "3 queued"}},
            key="k",
        )
    out = sender(exam.factory, is_postgres, slack_post=slack_transport(fake))
    (claimed,) = out._claim()
    with exam.factory.begin() as s:
        s.scalars(select(OutboxMessage)).one().payload = {"args": {"text": "all sent"}}
    out._send(claimed)
    (post,) = fake.of("chat.postMessage")
    assert post.body["text"] == "all sent"
    assert [r.status for r in rows(exam)] == ["sent"]


def test_healthz_counts_the_outbox_pending_and_failed(exam, fake, engine, session_factory):
    import asyncio

    import httpx

    from bot.config import Settings
    from bot.deps import Deps
    from bot.web.app import build_web_app

    outside = Outside(support_channel=CHANNEL)
    # --quiet: no messages to the candidates, only the change log's two posts.
    run(exam, f"/incident-time {CODE} 101 add 10 power cut --quiet", outside)
    run(exam, f"/incident-time {CODE} 102 add 10 power cut --quiet", outside)
    fake.script("chat.postMessage", Answer(200, {"ok": False, "error": "channel_not_found"}))
    out = sender(
        exam.factory, engine.dialect.name == "postgresql", slack_post=slack_transport(fake)
    )
    # One batch claims one row per order key: the change log goes in order.
    assert out.send_due() == 1
    deps = Deps(settings=Settings(_env_file=None), engine=engine, session_factory=session_factory)

    async def healthz() -> dict:
        transport = httpx.ASGITransport(app=build_web_app(deps, None))
        async with httpx.AsyncClient(transport=transport, base_url="http://examdesk") as client:
            return (await client.get("/healthz")).json()

    # A thread of its own: an earlier test's event loop may still be set on this one.
    with ThreadPoolExecutor(1) as pool:
        body = pool.submit(asyncio.run, healthz()).result()
    assert body["outbox"] == {"pending": 1, "failed": 1}


def test_r12_a_teachers_report_survives_a_slack_outage_and_its_thread_follows(
    exam, fake, is_postgres
):
    """The report is stored before the teacher is told; Slack down for three tries changes
    nothing but when it is posted; the thread reply waits for the report's post."""
    exam.add_staff(TEACHER, "teacher")
    outside = Outside(support_channel=CHANNEL)
    reply = run(exam, f"/question-error {CODE} Task 3: n = 10", outside, actor=TEACHER)
    assert "sent to exam support" in reply.text
    with exam.factory() as s:
        report = s.scalars(select(QuestionErrorReport)).one()
        assert "Task 3: n = 10" in (report.text_nb, report.text_en)
    from bot.slack.listeners.question_errors import _thread
    from commands import question_error
    from commands.runner import in_transaction

    in_transaction(
        session_factory=exam.factory,
        actor=SUPPORT,
        tz=OSLO,
        now=exam.now,
        outside=outside,
        work=lambda ctx: _thread(
            ctx, question_error.show(ctx, report_id=report.id), "support is on it."
        ),
    )
    fake.script("chat.postMessage", *[Answer(503, None)] * 3)
    out = sender(exam.factory, is_postgres, slack_post=slack_transport(fake))
    for _ in range(3):
        assert out.send_due() == 1  # the report only: its thread reply waits behind it
        later(exam, minutes=11)
    assert out.send_due() == 1
    assert out.send_due() == 1
    posts = fake.accepted()
    assert len(posts) == 2
    first, reply_post = posts
    assert "Task 3: n = 10" in json.dumps(first.body["blocks"])
    assert reply_post.body["thread_ts"] == rows(exam)[0].result["ts"]
    assert "support is on it." in reply_post.body["text"]


def test_r12_without_a_support_channel_the_teacher_is_told_the_report_is_only_stored(exam):
    exam.add_staff(TEACHER, "teacher")
    reply = run(exam, f"/question-error {CODE} Task 3: n = 10", Outside(), actor=TEACHER)
    assert "recorded, but no support channel is configured" in reply.text
    assert "SLACK_SUPPORT_CHANNEL" in reply.text and f"examdesk reports {CODE}" in reply.text
    assert "sent to exam support" not in reply.text
    assert rows(exam) == []
    with exam.factory() as s:
        assert s.scalars(select(QuestionErrorReport)).one().state == "open"


def deliver_at_the_deadline(exam: World, outside: Outside) -> int:
    """R9 as the scheduler runs it, once every candidate's deadline has passed."""
    from commands.context import Ctx

    exam.at("2026-12-01 14:00")
    with exam.factory.begin() as s:
        ctx = Ctx(db_session=s, actor=SYSTEM_ACTOR, tz=OSLO, now=exam.now, outside=outside)
        return len(deliver_due(ctx))


def test_r9_automatic_deliveries_are_in_the_change_log(exam):
    assert deliver_at_the_deadline(exam, Outside(support_channel=CHANNEL)) == 3
    (row,) = rows(exam)
    data = row.payload["data"]
    assert data["via"] == "the scheduler"
    assert data["lines"] == [
        f"Delivered automatically at the deadline: {CODE} candidate 101, 102, 103"
    ]


def test_r9_r15_each_automatic_delivery_has_its_record_and_its_event(exam, receiver, is_postgres):
    """A deadline shared by the whole test: one change record per candidate, written
    together, and one event each, carrying that record's id and the candidate's number."""
    assert deliver_at_the_deadline(exam, Outside(webhook_urls=(receiver.url,))) == 3
    with exam.factory() as s:
        records = s.execute(
            select(Change.id, Candidate.number, Change.action, Change.before, Change.after)
            .join(Candidate, Candidate.id == Change.candidate_id)
            .order_by(Change.id)
        ).all()
    assert [(r.number, r.action) for r in records] == [
        ("101", "auto_deliver"),
        ("102", "auto_deliver"),
        ("103", "auto_deliver"),
    ]
    assert all(r.before["status"] != r.after["status"] == "submitted" for r in records)
    out = sender(exam.factory, is_postgres, webhook=WebhookTransport(SECRET))
    while out.send_due():
        pass
    events = events_of(receiver)
    assert [e["type"] for e in events] == ["answer.delivered"] * 3
    for event, record in zip(events, records, strict=True):
        jsonschema.validate(event, SCHEMA, format_checker=jsonschema.FormatChecker())
        assert event["data"]["change_id"] == record.id
        assert event["data"]["candidates"] == [
            {"candidate": record.number, "before": record.before, "after": record.after}
        ]


def test_r15_a_change_from_examdesk_run_reaches_the_support_channel(exam, fake, cli, is_postgres):
    result = cli(
        "run",
        "--as",
        SUPPORT,
        f"/incident-time {CODE} 102 add 5 fire alarm",
        env={"SLACK_SUPPORT_CHANNEL": CHANNEL},
    )
    assert result.returncode == 0, result.stderr
    out = sender(exam.factory, is_postgres, slack_post=slack_transport(fake))
    assert out.send_due() == 1
    (post,) = fake.accepted()
    assert post.body["channel"] == CHANNEL and "fire alarm" in post.body["text"]
    assert "examdesk run" in json.dumps(post.body["blocks"])


# ---------------------------------------------------------------- webhooks


def events_of(receiver: Receiver) -> list[dict[str, Any]]:
    verifier = Webhook(SECRET)
    return [verifier.verify(body, headers) for headers, body in receiver.accepted()]


def test_events_are_signed_valid_and_retried_with_the_same_id_in_order(exam, receiver, is_postgres):
    """500 then 204: the first event is sent again with the same webhook-id; the test's
    next event waits until the first is accepted. Each is signed (standardwebhooks verify)
    and valid against docs/events.schema.json."""
    outside = Outside(webhook_urls=(receiver.url,))
    run(exam, f"/incident-time {CODE} 101,102 add 10 power cut", outside)
    run(exam, f"/reopen {CODE} 103 until-close phoned in", outside)
    receiver.statuses = [500]
    out = sender(exam.factory, is_postgres, webhook=WebhookTransport(SECRET))
    assert out.send_due() == 1  # the first event only: the second waits for it
    assert [r.status for r in rows(exam)] == ["pending", "pending"]
    assert rows(exam)[0].error_code == "http_500"
    assert out.send_due() == 0
    later(exam, seconds=6)
    assert out.send_due() == 1
    assert out.send_due() == 1
    ids = [h["webhook-id"] for _, h, _ in receiver.received]
    assert ids[0] == ids[1] != ids[2]  # the retry kept its id
    events = events_of(receiver)
    for event in events:
        jsonschema.validate(event, SCHEMA, format_checker=jsonschema.FormatChecker())
    first, second = events
    assert first["type"] == "incident_time.changed"
    assert first["data"]["test"] == CODE and first["data"]["actor"] == SUPPORT
    assert first["data"]["reason"] == "power cut"
    assert first["data"]["candidates"] == [
        {"candidate": "101", "before": {"incident_minutes": 0}, "after": {"incident_minutes": 10}},
        {"candidate": "102", "before": {"incident_minutes": 0}, "after": {"incident_minutes": 10}},
    ]
    assert second["type"] == "reopening.opened"
    assert second["data"]["candidates"][0]["candidate"] == "103"


def test_every_change_records_event_is_valid_against_the_schema(exam, receiver, is_postgres):
    outside = Outside(webhook_urls=(receiver.url,))
    exam.add_staff(TEACHER, "teacher")
    run(exam, f"/incident-time {CODE} all add 5 network", outside)
    run(exam, f"/incident-time {CODE} 101 set 20 network", outside)
    run(exam, f"/reopen {CODE} 102 until-close phoned in", outside)
    run(exam, f"/reopen {CODE} 102 close current", outside)
    run(exam, f"/notice {CODE} Task 2 is fixed.", outside)
    run(exam, f"/question-error {CODE} Task 3: n = 10", outside, actor=TEACHER)
    out = sender(exam.factory, is_postgres, webhook=WebhookTransport(SECRET))
    while out.send_due():
        pass
    events = events_of(receiver)
    assert [e["type"] for e in events] == [
        "incident_time.changed",
        "incident_time.changed",
        "reopening.opened",
        "reopening.closed",
        "notice.sent",
        "question_error.reported",
    ]
    for event in events:
        jsonschema.validate(event, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert len(events[0]["data"]["candidates"]) == 3


def test_a_refusing_receiver_is_retried_for_24_hours_then_failed(exam, receiver, is_postgres):
    run(exam, f"/incident-time {CODE} 101 add 10 power cut", Outside(webhook_urls=(receiver.url,)))
    receiver.statuses = [503] * 1000
    out = sender(exam.factory, is_postgres, webhook=WebhookTransport(SECRET))
    start = clock.now()
    while clock.now() - start < timedelta(hours=23, minutes=50):
        out.send_due()
        (row,) = rows(exam)
        assert row.status == "pending"
        later(exam, minutes=11)
    later(exam, minutes=20)
    out.send_due()
    (row,) = rows(exam)
    assert row.status == "failed" and "gave up after" in row.error_message
    assert len({h["webhook-id"] for _, h, _ in receiver.received}) == 1
    assert len(receiver.received) > 100


def test_a_4xx_from_the_receiver_is_permanent(exam, receiver, is_postgres):
    run(exam, f"/incident-time {CODE} 101 add 10 power cut", Outside(webhook_urls=(receiver.url,)))
    receiver.statuses = [410]
    out = sender(exam.factory, is_postgres, webhook=WebhookTransport(SECRET))
    out.send_due()
    (row,) = rows(exam)
    assert (row.status, row.error_code) == ("failed", "http_410")


# ---------------------------------------------------------------- kill -9


def test_sigkill_of_the_worker_mid_way_then_a_restart_sends_each_post_and_event_once(
    exam, fake, receiver, database_url, tmp_path
):
    """`examdesk worker` is killed (SIGKILL) while Slack is slow; a new one takes over.
    Every change-log post lands exactly once (a post cut off mid-request is looked up in
    the channel's history, not resent), every event is accepted under its webhook-id."""
    outside = Outside(support_channel=CHANNEL, webhook_urls=(receiver.url,))
    changes = 12
    for n in range(changes):
        run(exam, f"/incident-time {CODE} 101 add 1 change {n}", outside)
    fake.delay = 0.3
    env = os.environ | {
        "DATABASE_URL": database_url,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_API_URL": fake.api_url,
        "SLACK_SUPPORT_CHANNEL": CHANNEL,
        "WEBHOOK_URLS": receiver.url,
        "WEBHOOK_SECRET": SECRET,
        "NOTIFIER_POLL_SECONDS": "0.05",
        "NOTIFIER_MAINTAIN_SECONDS": "0.3",
        "NOTIFIER_HEARTBEAT_SECONDS": "0.3",
        "NOTIFIER_LEASE_SECONDS": "1",
    }

    def worker() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "bot.runtime.cli", "worker"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    first = worker()
    try:
        wait_until(lambda: len(fake.of("chat.postMessage")) >= 4 and fake.in_flight, timeout=60)
        first.send_signal(signal.SIGKILL)  # while Slack holds a post's request
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    fake.delay = 0.0
    second = worker()
    try:
        wait_until(lambda: _done(exam), timeout=90)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    # The post cut off by the kill was looked up, not made again.
    assert fake.of("conversations.history"), "the kill did not land inside a request"
    ids = [p.body["metadata"]["event_payload"]["outbox_id"] for p in fake.accepted()]
    posts = [r.id for r in rows(exam) if r.kind == "slack_post"]
    assert sorted(ids) == posts  # each post once
    assert len(posts) == changes
    accepted = receiver.accepted()
    by_id: dict[str, set[bytes]] = {}
    for headers, body in accepted:
        by_id.setdefault(headers["webhook-id"], set()).add(body)
    assert len(by_id) == changes and all(len(bodies) == 1 for bodies in by_id.values())
    # In order per test: the events' change ids only ever go up.
    order = [json.loads(body)["data"]["change_id"] for _, body in accepted]
    assert order == sorted(order)


def _done(world: World) -> bool:
    return all(r.status == "sent" for r in rows(world))
