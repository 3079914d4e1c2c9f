"""Several senders on one database (R13's SMS, sent by many processes): a claim takes exactly
its batch, a sender's liveness is its heartbeat's and not its batch's, a dead sender's rows
are free within seconds, SMS_PER_SECOND holds for all senders together, and each SMS is
logged once, with the number masked."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from datetime import datetime, timedelta

import pytest
from fake_twilio import Fail, FakeTwilio, seed_candidates, wait_until
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from test_dispatch import running_exam
from test_dispatch_crash import start_worker, worker_env

from notifications.dispatch import LEASE_PREFIX, Dispatcher, Tuning, sweep
from notifications.ratelimit import LATE, SendSchedule
from notifications.transports import Gate, Message, SlotMissed, TransportError, pass_gate
from store import clock
from store.models import Delivery, Lease

postgres_only = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="planner statistics are PostgreSQL's; set TEST_DATABASE_URL to a PostgreSQL database",
)

CODE = "TDT4100-2026H"
FAST = Tuning(poll_seconds=0.05, maintain_seconds=0.2, reconcile_after=3600)


class Recorder:
    """A provider that takes ``delay`` per message (or waits for ``hold``) and records when
    each send began."""

    channel = "sms"
    can_look_up = False
    logs_only = False

    def __init__(self, delay: float = 0.05, hold: threading.Event | None = None) -> None:
        self.delay = delay
        self.hold = hold
        self.lock = threading.Lock()
        self.times: list[float] = []

    def send(self, message: Message, gate: Gate | None = None) -> str:
        pass_gate(gate)
        with self.lock:
            self.times.append(time.monotonic())
        if self.hold is not None:
            self.hold.wait()
        time.sleep(self.delay)
        return "SM" + uuid.uuid4().hex

    def find_sent(self, message: Message, *, since: datetime) -> str | None:
        raise NotImplementedError


def _notice(world, count: int) -> int:
    running_exam(world, CODE)
    seed_candidates(world.factory, CODE, count)
    reply = world.run(f"/notice {CODE} Task 3b: n = 10, not n = 100.", confirmed=True)
    assert reply.ok, reply.text
    return reply.data["notice_id"]


def _dispatcher(world, transport: Recorder, *, rate: float, tuning: Tuning = FAST) -> Dispatcher:
    return Dispatcher(
        session_factory=world.factory,
        transports={"sms": transport},
        public_url="https://exams.example.org",
        rate=rate,
        tuning=tuning,
    )


def _claimed_by(world) -> dict[str | None, int]:
    with world.factory() as s:
        return dict(
            s.execute(select(Delivery.claimed_by, func.count()).group_by(Delivery.claimed_by)).all()
        )


def busiest_second(times: list[float]) -> int:
    """The most sends in any one-second window [t, t + 1)."""
    times = sorted(times)
    busiest, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= 1.0:
            first += 1
        busiest = max(busiest, last - first + 1)
    return busiest


@postgres_only
def test_a_claim_takes_exactly_its_batch_when_the_statistics_are_stale(world, engine):
    """ANALYZE ran while nothing was pending, then a notice added 3,000 rows: the planner
    believes the table empty. Each of two claims still takes its batch of 200, no more, and
    not the other's rows."""
    seed = 3000
    running_exam(world, CODE)
    seed_candidates(world.factory, CODE, seed)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ALTER TABLE deliveries SET (autovacuum_enabled = false)")
        conn.exec_driver_sql("ANALYZE deliveries")
    # Batches of 200 however many senders there are.
    tuning = Tuning(batch=200, batch_seconds=60, claim_seconds=600)
    dispatchers = [_dispatcher(world, Recorder(), rate=100, tuning=tuning) for _ in range(2)]
    try:
        assert world.run(f"/notice {CODE} Task 3b: n = 10.", confirmed=True).ok
        first, second = dispatchers
        batch = first._batch_size()
        assert batch == 200

        taken = [first._claim(), second._claim()]

        assert [len(jobs) for jobs in taken] == [batch, batch]
        assert not {job.id for job in taken[0]} & {job.id for job in taken[1]}
        assert _claimed_by(world) == {
            first.worker_id: batch,
            second.worker_id: batch,
            None: seed - 2 * batch,
        }
    finally:
        for dispatcher in dispatchers:
            dispatcher.close()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ALTER TABLE deliveries RESET (autovacuum_enabled)")


def test_a_sender_stuck_in_a_slow_batch_stays_alive_and_keeps_its_claim(world):
    """Every send hangs for longer than a liveness row lasts: the sender's heartbeat renews
    it all the same, so another sender takes none of the rows it has claimed."""
    _notice(world, 20)
    hold = threading.Event()
    stuck = Recorder(hold=hold)
    # A heartbeat every 0.2 s keeps a 2 s liveness row alive even when a loaded machine
    # holds one beat back for a second; each check below comes a whole liveness later.
    tuning = Tuning(poll_seconds=0.05, heartbeat_seconds=0.2, lease_seconds=2.0)
    busy = _dispatcher(world, stuck, rate=10, tuning=tuning)
    other = _dispatcher(world, Recorder(), rate=10, tuning=tuning)
    thread = threading.Thread(target=busy.run)
    thread.start()
    try:
        wait_until(lambda: stuck.times, timeout=30)
        assert _claimed_by(world) == {busy.worker_id: 20}
        for _ in range(3):
            time.sleep(tuning.lease_seconds)
            assert other._claim() == []
            with world.factory() as s:
                assert s.get(Lease, LEASE_PREFIX + busy.worker_id).expires_at > clock.now()
    finally:
        hold.set()
        busy.stop()
        thread.join(timeout=30)
        other.close()


def test_a_killed_senders_rows_are_free_within_seconds(world, database_url, tmp_path):
    """kill -9 of a worker holding a claim (production liveness: renewed every second, valid
    for 5): another sender claims its pending rows within seconds of the kill, not when the
    claim would run out, and the sends it had begun are marked unknown, to be checked with
    Twilio before any resend."""
    _notice(world, 20)  # one batch at 10 SMS a second: the worker claims them all
    defaults = Tuning()
    assert defaults.lease_seconds + 2 < defaults.claim_seconds
    with FakeTwilio(delay=2.0) as fake:  # a slow provider: the worker sits on its claim
        env = worker_env(database_url, fake, rate=10)
        env = {k: v for k, v in env.items() if not k.startswith("NOTIFIER_")}
        worker = start_worker(env, tmp_path, "doomed")
        try:
            wait_until(lambda: len(fake.requests) >= 2, timeout=60)
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(10)
        finally:
            if worker.poll() is None:
                worker.kill()
        killed = time.monotonic()
        with world.factory() as s:
            rows = s.execute(
                select(Delivery.id, Delivery.status).where(
                    Delivery.claimed_by.like(f"%:{worker.pid}:%")
                )
            ).all()
        pending = {id_ for id_, status in rows if status == "pending"}
        sending = {id_ for id_, status in rows if status == "sending"}
        assert pending and sending and len(rows) == 20

        other = _dispatcher(world, Recorder(), rate=10)
        taken: list[int] = []
        released_after: list[float] = []

        # A claim is a share of the rate: while the dead sender still counts as live, the
        # first claim may be half of its rows. The rest follow; none is taken twice.
        def take() -> bool:
            jobs = other._claim()
            if jobs and not released_after:
                released_after.append(time.monotonic() - killed)
            taken.extend(job.id for job in jobs)
            return set(taken) >= pending

        try:
            wait_until(take, timeout=60)
        finally:
            other.close()
        assert released_after[0] <= defaults.lease_seconds + 2
        assert len(taken) == len(set(taken)) and set(taken) == pending
        with world.factory.begin() as s:
            assert sweep(db_session=s, now=clock.now())["unknown"] == len(sending)


def test_several_senders_together_keep_the_rate_in_every_one_second_window(world):
    """Three senders at once share SMS_PER_SECOND=30: no one-second window holds more than
    30 sends of all of them together, and none starves the others. How close together they
    come to the rate (≥ 0.95×) is a performance target: bench/senders.py measures it."""
    rate, count = 30, 120
    _notice(world, count)
    recorder = Recorder(delay=0.05)
    senders = [_dispatcher(world, recorder, rate=rate) for _ in range(3)]
    threads = [threading.Thread(target=sender.run) for sender in senders]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: _claimed_by(world) == {None: count} and len(recorder.times) == count)
    finally:
        for sender in senders:
            sender.stop()
        for thread in threads:
            thread.join(timeout=30)
    with world.factory() as s:
        assert s.scalar(select(func.count()).where(Delivery.status == "sent")) == count
    times = sorted(recorder.times)
    assert busiest_second(times) <= rate
    assert (count - 1) / (times[-1] - times[0]) >= 0.5 * rate


def test_each_sms_is_logged_once_with_the_number_masked(caplog):
    """One line per send of examdesk's own, none of the twilio SDK's request logging."""
    with FakeTwilio() as fake:
        fake.always["+4741000002"] = Fail(400, 21211)
        transport = fake.transport()
        caplog.set_level(logging.INFO)
        transport.send(Message(1, "sms", "+4741000001", "Exam TDT4100-2026H: a new notice"))
        with pytest.raises(TransportError):
            transport.send(Message(2, "sms", "+4741000002", "Exam TDT4100-2026H: a new notice"))

    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            "notifications.sms",
            logging.INFO,
            f"SMS to +••••••••01 accepted: {fake.accepted[0]['sid']}",
        ),
        ("notifications.sms", logging.INFO, "SMS to +••••••••02 not accepted: 21211"),
    ]


def test_an_sms_waits_for_its_slot_at_the_wire_and_a_missed_slot_sends_nothing():
    """The SDK builds the request before the gate is asked (the slot is kept where the request
    leaves, not where the SDK starts); a gate that says the slot has passed sends nothing."""
    with FakeTwilio() as fake:
        transport = fake.transport()
        asked: list[int] = []

        def gate(open_: bool) -> Gate:
            return lambda: asked.append(len(fake.requests)) or open_

        with pytest.raises(SlotMissed):
            transport.send(Message(1, "sms", "+4741000001", "first"), gate(False))
        assert asked == [0] and fake.requests == []
        transport.send(Message(1, "sms", "+4741000001", "first"), gate(True))
        transport.send(Message(2, "sms", "+4741000002", "second"))  # no gate: at once
        transport.find_sent(Message(2, "sms", "+4741000002", "second"), since=clock.now())
    assert asked == [0, 0]
    assert [m["body"] for m in fake.accepted] == ["first", "second"]


def _missed(where: str) -> float:
    return REGISTRY.get_sample_value("examdesk_sms_slots_missed_total", {"where": where}) or 0.0


def test_slots_given_up_are_counted_for_metrics_where_they_were_missed(
    session_factory, monkeypatch
):
    """An operator sees why a notice goes out below SMS_PER_SECOND: each slot given up is
    counted, at the hand-over (no thread took it in time) or at the wire (woke too late)."""
    stop = threading.Event()
    at_wire, at_hand_over = _missed("wire"), _missed("hand-over")

    # A thread that wakes at its slot is told to send. LATE is 10 ms: a loaded machine now
    # and then wakes a thread later than that, a slot given up and counted like any other.
    woke_late = 0
    while not SendSchedule.wait_for(time.monotonic() + 0.01, stop):
        woke_late += 1
        assert woke_late < 10, "never on time"
    assert SendSchedule.wait_for(time.monotonic() - 2 * LATE, stop) is False
    assert _missed("wire") == at_wire + woke_late + 1

    # Booked a second ahead instead of 0.1 s: a booking slowed down by a loaded machine still
    # comes back before its slots, and only those this test lets pass are given up.
    monkeypatch.setattr("notifications.ratelimit.LEAD", timedelta(seconds=1))
    schedule = SendSchedule(session_factory, rate=100)
    try:
        first = schedule.take(stop, wanted=10)
        assert first is not None
        # The other slots of the booking pass unused.
        time.sleep(max(0.0, first + schedule.chunk * schedule.interval + LATE - time.monotonic()))
        assert schedule.take(stop, wanted=10) is not None
    finally:
        schedule.close()
    assert _missed("hand-over") - at_hand_over == schedule.chunk - 1
    assert _missed("wire") == at_wire + woke_late + 1


def test_a_heartbeat_slower_than_half_the_liveness_is_refused_with_the_fix(cli):
    result = cli("worker", env={"NOTIFIER_HEARTBEAT_SECONDS": "5", "NOTIFIER_LEASE_SECONDS": "5"})
    assert result.returncode == 1
    assert (
        "NOTIFIER_HEARTBEAT_SECONDS (5) must be at most half of NOTIFIER_LEASE_SECONDS (5)"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
