"""The exam-day storm's fault case, small (bench/storm.py is the large one): a notice to a
few hundred candidates is being sent by two `examdesk serve` processes, Twilio's signed status
callbacks pour in, and the serve that leads the scheduler is killed with SIGKILL and started
again. Afterwards every SMS went out exactly once (R13), every callback answered 2xx is in the
database, exactly one process runs the scheduler again within a minute, and the notice's
progress message in Slack says what the database holds."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
from fake_slack import FakeSlack
from fake_twilio import FakeTwilio, Report, phone, seed_candidates, wait_until
from prometheus_client.parser import text_string_to_metric_families
from slack_signing import SECRET
from sqlalchemy import func, select
from test_dispatch import running_exam
from test_dispatch_crash import worker_env
from test_server import Process, free_port

from bot.slack.listeners.question_errors import progress_key
from bot.slack.views.notices import notice_progress_message
from notifications import outbox
from notifications.progress import progress
from store.models import Delivery

COUNT = 300
RATE = 50
UNDELIVERED = 30003
FINAL = ("delivered", "undelivered")
TAKEOVER_LIMIT = 60.0


def reports_for(count: int) -> dict[str, list[Report]]:
    """Every 10th number undelivered, every 20th out of order (delivered before sent)."""
    reports = {}
    for n in range(1, count + 1):
        if n % 10 == 0:
            reports[phone(n)] = [Report("sent", 0.2), Report("undelivered", 1.0, UNDELIVERED)]
        elif n % 20 == 7:
            reports[phone(n)] = [Report("delivered", 0.3), Report("sent", 0.6)]
    return reports


def leaders(serves: list[Process]) -> int:
    """How many of the running serves say, in GET /metrics, that they run the scheduler."""
    leading = 0
    for serve in serves:
        if serve.proc.poll() is not None:
            continue
        text = httpx.get(f"{serve.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            leading += sum(
                int(s.value) for s in family.samples if s.name == "examdesk_scheduler_leader"
            )
    return leading


def leader_of(serves: list[Process]) -> Process | None:
    for serve in serves:
        if serve.proc.poll() is None and leaders([serve]) == 1:
            return serve
    return None


def test_r13_leader_killed_mid_storm_every_sms_once_every_callback_applied(
    world, database_url, tmp_path: Path
):
    code = running_exam(world)
    seed_candidates(world.factory, code, COUNT)
    slack = FakeSlack()
    twilio = FakeTwilio(
        delay=0.05,
        reports=[Report("sent", 0.2), Report("delivered", 1.0)],
        reports_for=reports_for(COUNT),
    )
    ports = [free_port(), free_port()]
    serves: list[Process] = []

    def start(port: int, name: str, *, wait: bool = True) -> Process:
        env = worker_env(database_url, twilio, rate=RATE) | {
            "PORT": str(port),
            "SLACK_BOT_TOKEN": "xoxb-storm",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack.api_url,
            "SLACK_SUPPORT_CHANNEL": "C0SUPPORT",
        }
        folder = tmp_path / name
        folder.mkdir()
        serve = Process(env, folder)
        serves.append(serve)
        if wait:
            serve.wait_healthy(timeout=60)
        return serve

    with twilio:
        try:
            for n, port in enumerate(ports):
                start(port, f"serve{n}", wait=False)
            for serve in serves:
                serve.wait_healthy(timeout=60)
            wait_until(lambda: leaders(serves) == 1, timeout=60)
            doomed = leader_of(serves)
            assert doomed is not None
            # Twilio's callbacks go to the leader, so that the kill cuts some off mid-way.
            twilio.callbacks_to = doomed.url
            reply = world.run(f"/notice {code} Task 3b: n = 10, not n = 100.", confirmed=True)
            assert reply.ok, reply.text
            notice_id = reply.data["notice_id"]

            wait_until(lambda: len(twilio.accepted) >= COUNT // 3, timeout=60)
            os.kill(doomed.proc.pid, signal.SIGKILL)
            doomed.proc.wait(10)
            killed = time.monotonic()
            assert len(twilio.accepted) < COUNT  # it really died mid-storm
            start(doomed.port, "restarted")
            running = [s for s in serves if s.proc.poll() is None]

            wait_until(lambda: leaders(running) == 1, timeout=TAKEOVER_LIMIT)
            assert time.monotonic() - killed < TAKEOVER_LIMIT

            def settled() -> bool:
                """Every SMS out, and every callback Twilio was to make made."""
                statuses = _statuses(world, notice_id)
                unsent = sum(statuses.get(s, 0) for s in ("pending", "sending", "unknown"))
                return not unsent and twilio.callbacks_due() == len(twilio.reported)

            try:
                wait_until(settled, timeout=120)
            except AssertionError:
                logs = "\n".join(s.output()[-2000:] for s in serves)
                statuses = _statuses(world, notice_id)
                raise AssertionError(f"not settled: {statuses}\n{logs}") from None

            # The progress message ends with what the database holds (it is updated at
            # most every few seconds, the last time after the last change).
            with world.factory() as s:
                expected = notice_progress_message(progress(db_session=s, notice_id=notice_id))
                ts = (outbox.result_of(s, progress_key(notice_id)) or {}).get("ts")
            assert ts is not None

            def shown() -> str | None:
                posts = [
                    c.body.get("text")
                    for c in slack.of("chat.postMessage") + slack.of("chat.update")
                    if str(c.body.get("text", "")).startswith(f"Notice #{notice_id} ")
                ]
                updates = [
                    c.body.get("text")
                    for c in slack.of("chat.update")
                    if c.body.get("ts") == ts
                    and str(c.body.get("text", "")).startswith(f"Notice #{notice_id} ")
                ]
                return (updates or posts or [None])[-1]

            try:
                wait_until(lambda: shown() == expected["text"], timeout=30)
            except AssertionError:
                raise AssertionError(f"{shown()!r} != {expected['text']!r}") from None
            running = [s for s in serves if s.proc.poll() is None]
            assert leaders(running) == 1
        finally:
            for serve in serves:
                serve.stop()
            slack.close()

    # Every SMS exactly once.
    assert twilio.sent_to() == Counter({phone(n): 1 for n in range(1, COUNT + 1)})
    # Every callback answered 2xx is applied: its status is the row's, or a final status
    # that came in either order replaced `sent`.
    with world.factory() as s:
        rows = {
            sid: (status, error)
            for sid, status, error in s.execute(
                select(Delivery.provider_id, Delivery.status, Delivery.error_code).where(
                    Delivery.notice_id == notice_id
                )
            )
        }
    answered = [r for r in twilio.reported if r.answer is not None and 200 <= r.answer < 300]
    # Those posted to the killed serve while it was down went unanswered (Twilio does not
    # retry them); those before the kill and after the restart were answered.
    assert answered and len(answered) < len(twilio.reported)
    for report in answered:
        status, error = rows[report.sid]
        assert status == report.status or (report.status == "sent" and status in FINAL), report
        if report.status == "undelivered":
            assert error == str(UNDELIVERED)
    # A message whose every callback was answered has its final status.
    refused = {r.sid for r in twilio.reported if r.answer is None or not 200 <= r.answer < 300}
    finals = Counter(status for sid, (status, _) in rows.items() if sid not in refused)
    assert finals and set(finals) <= set(FINAL)


def _statuses(world, notice_id: int) -> dict[str, int]:
    with world.factory() as s:
        return dict(
            s.execute(
                select(Delivery.status, func.count())
                .where(Delivery.notice_id == notice_id)
                .group_by(Delivery.status)
            ).all()
        )
