"""Dispatch of SMS deliveries through the real twilio SDK to a local fake Twilio (R13).

Retries for transient failures, no retry for permanent ones, 'unknown' (never a blind resend)
when a request may have reached Twilio, reconciliation, sweeping, and the rate limit.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from conftest import OSLO
from fake_twilio import (
    Fail,
    FakeTwilio,
    phone,
    seed_candidates,
    twilio_settings,
    wait_until,
)
from sqlalchemy import event, select, update

from notifications.dispatch import Dispatcher, Tuning, from_settings, start_dispatcher, sweep
from notifications.gsm7 import is_gsm7, septets
from store import clock
from store.models import Candidate, Delivery, Lease

FAST = Tuning(
    backoff_base=0.05,
    backoff_cap=0.2,
    poll_seconds=0.05,
    maintain_seconds=0.2,
    send_timeout=2,
    reconcile_after=3600,
)
FINAL = ("sent", "delivered", "undelivered", "failed", "unknown")


@pytest.fixture
def fake():
    with FakeTwilio() as server:
        yield server


def running_exam(world, code: str = "TDT4100-2026H", **kw) -> str:
    """A school exam running now, in real time: the dispatcher works on the real clock."""
    world.now = clock.now()
    local = world.now.astimezone(OSLO)
    world.add_test(
        code,
        start=f"{local - timedelta(hours=1):%Y-%m-%d %H:%M}",
        end=f"{local + timedelta(hours=3):%Y-%m-%d %H:%M}",
        **kw,
    )
    return code


def _notice(world, count: int, *, code: str = "TDT4100-2026H") -> int:
    running_exam(world, code)
    seed_candidates(world.factory, code, count)
    reply = world.run(f"/notice {code} Task 3b: n = 10, not n = 100.", confirmed=True)
    assert reply.ok, reply.text
    return reply.data["notice_id"]


def _deliveries(session_factory) -> dict[str, Delivery]:
    with session_factory() as s:
        rows = s.execute(
            select(Delivery, Candidate.phone).join(Candidate, Candidate.id == Delivery.candidate_id)
        ).all()
    return {number: delivery for delivery, number in rows}


def _settled(session_factory, statuses=FINAL) -> bool:
    return all(d.status in statuses for d in _deliveries(session_factory).values())


def _run_until_settled(settings, session_factory, *, tuning=FAST, statuses=FINAL, **kw):
    stop = start_dispatcher(settings, session_factory, tuning=tuning, **kw)
    try:
        wait_until(lambda: _settled(session_factory, statuses), timeout=60)
    finally:
        stop()


def test_r13_every_candidate_gets_one_sms_with_link_callback_and_validity(world, fake):
    _notice(world, 30)
    progress: list[int] = []
    _run_until_settled(
        twilio_settings(fake.url), world.factory, statuses=("sent",), on_progress=progress.append
    )

    assert fake.sent_to() == Counter({phone(n): 1 for n in range(1, 31)})
    by_phone = _deliveries(world.factory)
    forms = {form["To"]: form for _, _, form in fake.requests}
    with world.factory() as s:
        tokens = {p: t for p, t in s.execute(select(Candidate.phone, Candidate.notice_token))}
    for number, delivery in by_phone.items():
        form = forms[number]
        assert delivery.status == "sent" and delivery.attempts == 1
        assert delivery.provider_id.startswith("SM") and delivery.sent_at is not None
        assert form["From"] == "+4759440000"
        assert form["StatusCallback"] == (
            f"https://exams.example.org/twilio/status?delivery={delivery.id}"
        )
        assert form["ValidityPeriod"] == "1800"
        body = form["Body"]
        assert f"https://exams.example.org/notices/{tokens[number]}#n" in body
        assert "TDT4100-2026H" in body and is_gsm7(body) and septets(body) <= 160
    assert {f["Body"].split(":")[0] for f in forms.values()} == {
        "Exam TDT4100-2026H",
        "Eksamen TDT4100-2026H",
    }
    assert progress and set(progress) == {by_phone[phone(1)].notice_id}


def test_transient_errors_are_retried_with_backoff(world, fake):
    """429 and 5xx are retried; the SMS goes out once in the end."""
    _notice(world, 3)
    fake.script[phone(1)] = [Fail(429, 20429), Fail(503), Fail(500)]
    fake.script[phone(2)] = [Fail(502)]
    _run_until_settled(twilio_settings(fake.url), world.factory)

    by_phone = _deliveries(world.factory)
    assert [by_phone[phone(n)].status for n in (1, 2, 3)] == ["sent"] * 3
    assert [by_phone[phone(n)].attempts for n in (1, 2, 3)] == [4, 2, 1]
    assert fake.sent_to() == Counter({phone(1): 1, phone(2): 1, phone(3): 1})


def test_connection_refused_is_retried(world, fake):
    """Nothing listening: the request surely went nowhere, so it is safe to try again."""
    _notice(world, 2)
    dispatcher = from_settings(twilio_settings("http://127.0.0.1:9"), world.factory, tuning=FAST)
    assert dispatcher.dispatch_batch() == 2
    dispatcher.close()
    rows = _deliveries(world.factory).values()
    assert {d.status for d in rows} == {"pending"}
    assert {d.attempts for d in rows} == {1} and {d.error_code for d in rows} == {"connect"}
    assert all(d.next_attempt_at > d.updated_at - timedelta(seconds=1) for d in rows)


def test_transient_errors_give_up_after_a_bounded_number_of_tries(world, fake):
    _notice(world, 1)
    fake.always[phone(1)] = Fail(503)
    tuning = Tuning(**{**FAST.__dict__, "max_attempts": 3})
    _run_until_settled(twilio_settings(fake.url), world.factory, tuning=tuning)
    (delivery,) = _deliveries(world.factory).values()
    assert delivery.status == "failed" and delivery.attempts == 3
    assert "gave up after 3 tries" in delivery.error_message
    assert sum(1 for _, to, _ in fake.requests if to == phone(1)) == 3


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        (400, 21211, "not a valid phone number"),
        (400, 21610, "opted out"),
        (400, 21614, "not a mobile number"),
        (400, 30005, "unknown or inactive number"),
        (400, 21408, "region is not enabled"),
        (400, 21612, "cannot route"),
    ],
)
def test_permanent_errors_fail_at_once_with_the_reason(world, fake, status, code, reason):
    _notice(world, 2)
    fake.always[phone(1)] = Fail(status, code)
    _run_until_settled(twilio_settings(fake.url), world.factory)
    by_phone = _deliveries(world.factory)
    failed = by_phone[phone(1)]
    assert failed.status == "failed" and failed.attempts == 1
    assert failed.error_code == str(code) and reason in failed.error_message
    assert by_phone[phone(2)].status == "sent"
    assert sum(1 for _, to, _ in fake.requests if to == phone(1)) == 1


def test_no_answer_after_the_request_went_out_is_unknown_not_resent(world, fake):
    """A dropped connection or a read timeout: Twilio may have the message; never resend blindly."""
    _notice(world, 3)
    fake.script[phone(1)] = [Fail(drop=True)]
    fake.script[phone(2)] = [Fail(201, delay=3)]  # answers after our 2 s timeout
    _run_until_settled(twilio_settings(fake.url), world.factory)
    # Give any wrongful retry the chance to happen.
    stop = start_dispatcher(twilio_settings(fake.url), world.factory, tuning=FAST)
    threading.Event().wait(0.5)
    stop()

    by_phone = _deliveries(world.factory)
    assert by_phone[phone(1)].status == "unknown"
    assert by_phone[phone(2)].status == "unknown"
    assert by_phone[phone(3)].status == "sent"
    tries = Counter(to for _, to, _ in fake.requests)
    assert tries[phone(1)] == 1 and tries[phone(2)] == 1


def test_reconciliation_asks_twilio_before_any_resend(world, fake):
    """An unknown send Twilio has is marked sent; one it has not is sent again, once."""
    _notice(world, 2)
    fake.script[phone(1)] = [Fail(drop=True)]  # never reaches the accepted list
    fake.script[phone(2)] = [Fail(201, delay=3)]  # accepted, but the answer came too late
    _run_until_settled(twilio_settings(fake.url), world.factory)
    assert {d.status for d in _deliveries(world.factory).values()} == {"unknown"}

    wait_until(lambda: len(fake.accepted) == 1, timeout=30)
    tuning = Tuning(**{**FAST.__dict__, "reconcile_after": 0})
    _run_until_settled(twilio_settings(fake.url), world.factory, tuning=tuning, statuses=("sent",))

    assert fake.sent_to() == Counter({phone(1): 1, phone(2): 1})
    by_phone = _deliveries(world.factory)
    accepted_sid = next(m["sid"] for m in fake.accepted if m["to"] == phone(2))
    assert by_phone[phone(2)].provider_id == accepted_sid
    assert by_phone[phone(1)].attempts == 2 and by_phone[phone(2)].attempts == 1


def test_sweep_releases_dead_claims_and_marks_stuck_sends_unknown(world):
    notice_id = _notice(world, 3)
    now = clock.now()
    with world.factory.begin() as s:
        ids = s.scalars(select(Delivery.id).where(Delivery.notice_id == notice_id)).all()
        s.execute(
            update(Delivery)
            .where(Delivery.id == ids[0])
            .values(claimed_by="dead", claimed_until=now - timedelta(seconds=1))
        )
        s.execute(
            update(Delivery)
            .where(Delivery.id == ids[1])
            .values(status="sending", claimed_by="dead", claimed_until=now - timedelta(seconds=1))
        )
        s.execute(
            update(Delivery)
            .where(Delivery.id == ids[2])
            .values(status="sending", claimed_by="alive", claimed_until=now + timedelta(minutes=1))
        )
        s.add(Lease(name="notifier:alive", holder="alive", expires_at=now + timedelta(seconds=5)))
    with world.factory.begin() as s:
        assert sweep(db_session=s, now=now) == {"released": 1, "unknown": 1}
    with world.factory() as s:
        rows = {d.id: d for d in s.scalars(select(Delivery))}
    assert rows[ids[0]].status == "pending" and rows[ids[0]].claimed_by is None
    assert rows[ids[1]].status == "unknown" and "may have been sent" in rows[ids[1]].error_message
    assert rows[ids[2]].status == "sending" and rows[ids[2]].claimed_by == "alive"


def test_two_dispatchers_never_send_the_same_delivery(world, fake):
    _notice(world, 120)
    settings = twilio_settings(fake.url, sms_per_second=200)
    stops = [start_dispatcher(settings, world.factory, tuning=FAST) for _ in range(2)]
    try:
        wait_until(lambda: _settled(world.factory, ("sent",)), timeout=60)
    finally:
        for stop in stops:
            stop()
    assert fake.sent_to() == Counter({phone(n): 1 for n in range(1, 121)})


def test_the_rate_is_never_exceeded(world, fake):
    """SMS_PER_SECOND caps every one-second window (give or take one at each edge of the window)."""
    _notice(world, 60)
    fake.delay = 0.05
    _run_until_settled(twilio_settings(fake.url, sms_per_second=20), world.factory)
    times = sorted(t for t, _, _ in fake.requests)
    assert len(times) == 60
    busiest = max(sum(1 for t in times[i:] if t - start < 1.0) for i, start in enumerate(times))
    assert busiest <= 20 + 1 + 2  # rate + burst + scheduling jitter at the edges


def test_a_stopped_dispatcher_leaves_its_unsent_claims_for_others(world, fake):
    _notice(world, 40)
    fake.delay = 0.02
    dispatcher = Dispatcher(
        session_factory=world.factory,
        transports=from_settings(twilio_settings(fake.url), world.factory).transports,
        public_url="https://exams.example.org",
        rate=20,
        tuning=FAST,
    )
    thread = threading.Thread(target=dispatcher.run)
    thread.start()
    wait_until(lambda: len(fake.accepted) >= 5)
    dispatcher.stop()
    thread.join(timeout=10)
    rows = _deliveries(world.factory).values()
    assert {d.status for d in rows} <= {"sent", "pending"}
    assert all(d.claimed_by is None for d in rows)
    assert sum(d.status == "sent" for d in rows) == len(fake.accepted) < 40


class FailingRecords:
    """Fails the statements that record a send's outcome, the first ``times`` of them (all
    when None), as a database that went away for a while would."""

    def __init__(self, engine, times: int | None) -> None:
        self.engine = engine
        self.left = times
        self.failed = 0

    def __enter__(self) -> FailingRecords:
        event.listen(self.engine, "before_cursor_execute", self._before)
        return self

    def __exit__(self, *_exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)

    def _before(self, _conn, _cursor, statement: str, *_args) -> None:
        recording = statement.startswith("UPDATE deliveries") and "provider_id IS NULL" in statement
        if recording and self.left != 0:
            if self.left is not None:
                self.left -= 1
            self.failed += 1
            raise RuntimeError("the database went away")


def _sent_with_progress(world, fake, progress: list[tuple[int, list[str]]]) -> Dispatcher:
    """A dispatcher that notes, at each progress callback, the statuses then committed."""

    def on_progress(notice_id: int) -> None:
        statuses = sorted(d.status for d in _deliveries(world.factory).values())
        progress.append((notice_id, statuses))

    return from_settings(
        twilio_settings(fake.url), world.factory, tuning=FAST, on_progress=on_progress
    )


def test_r13_outcomes_are_recorded_on_a_later_try_and_progress_follows_the_commit(world, fake):
    """The outcomes' transaction fails twice: it is tried again (nothing is sent again), and
    close() returns only once every outcome is stored; progress is reported after commits."""
    notice_id = _notice(world, 3)
    progress: list[tuple[int, list[str]]] = []
    with FailingRecords(world.factory.kw["bind"], times=2) as failing:
        dispatcher = _sent_with_progress(world, fake, progress)
        assert dispatcher.dispatch_batch() == 3
        dispatcher.close()
    assert failing.failed == 2
    rows = _deliveries(world.factory).values()
    assert [(d.status, d.attempts, d.claimed_by) for d in rows] == [("sent", 1, None)] * 3
    assert fake.sent_to() == Counter({phone(n): 1 for n in (1, 2, 3)})
    assert progress and {n for n, _ in progress} == {notice_id}
    assert all("sent" in statuses for _, statuses in progress)
    assert progress[-1][1] == ["sent"] * 3


def test_r13_outcomes_not_recorded_after_the_last_try_stay_sending_for_the_sweep(
    world, fake, monkeypatch
):
    """Out of tries: the rows stay 'sending' (they were sent; never 'pending' again) and
    the sweep makes them 'unknown', for reconciliation to ask Twilio."""
    monkeypatch.setattr("notifications.dispatch.RECORD_TRIES", 2)
    _notice(world, 2)
    progress: list[tuple[int, list[str]]] = []
    with FailingRecords(world.factory.kw["bind"], times=None) as failing:
        dispatcher = _sent_with_progress(world, fake, progress)
        assert dispatcher.dispatch_batch() == 2
        dispatcher.close()
    assert failing.failed >= 2
    assert {d.status for d in _deliveries(world.factory).values()} == {"sending"}
    assert fake.sent_to() == Counter({phone(1): 1, phone(2): 1})
    assert progress == []  # nothing was committed
    later = clock.now() + FAST.sending_claim() + timedelta(seconds=1)
    with world.factory.begin() as s:
        assert sweep(db_session=s, now=later)["unknown"] == 2
