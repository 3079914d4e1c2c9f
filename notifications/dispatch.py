"""Dispatch: send pending deliveries at the allowed rate, with retries, across processes.

Life of a delivery (one notice × candidate × channel):

    pending ─claim─▶ pending (claimed_by me, claimed_until T)
            ─mark──▶ sending (attempts+1; only now does a request go out)
                     ├─ accepted ──▶ sent ─callback─▶ delivered | undelivered | failed
                     ├─ transient (429, 5xx, no connection) ──▶ pending, retried after backoff
                     ├─ permanent (21211, 21610, …) or out of tries ──▶ failed, with the reason
                     └─ no answer after the request went out ──▶ unknown

* Claims (``notifications.claims``, shared with the outbox): two senders never take the
  same row, and a claim lasts while its sender's liveness row ``notifier:<id>`` is renewed
  (from a thread of its own, however long a batch takes); a dead sender's ``pending`` rows
  are simply taken again, nothing had been sent.
* A row found in ``sending`` past its claim, or of a dead sender, may have reached the
  provider: ``sweep`` marks it ``unknown`` and it is never resent blindly. Reconciliation
  later asks the provider (Twilio's message list, matched by number and the body, which is
  unique per notice and candidate): found → ``sent``; surely absent → ``pending`` again.
  Channels that cannot be asked (SMTP) keep ``unknown`` and show up in the summary for a
  person to decide.
* Rate: ``SMS_PER_SECOND`` is per deployment. Every dispatcher books its send slots from one
  schedule in the database (``notifications.ratelimit``), so all of them together follow one
  evenly spaced schedule at the rate.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from notifications import claims, texts
from notifications.channels import SMS, build_transports
from notifications.config import NotifierConfig
from notifications.delivery_states import (
    FAILED,
    LOGGED,
    PENDING,
    SENDING,
    SENT,
    UNKNOWN,
    Step,
    may_take,
    to,
)
from notifications.events import WebhookTransport
from notifications.metrics import MESSAGES
from notifications.outbox import (
    SLACK_POST,
    WEBHOOK,
    OutboxSender,
    OutboxTransport,
)
from notifications.ratelimit import SendSchedule
from notifications.slack_post import Renderer, SlackLogTransport, SlackTransport
from notifications.transports import (
    Message,
    OutcomeUnknown,
    SlotMissed,
    Transport,
    TransportError,
    secret_value,
)
from store import clock
from store.db import session_scope
from store.group_commit import GroupCommit
from store.models import Candidate, Delivery, Lease, Notice, Test

log = logging.getLogger(__name__)

LEASE_PREFIX = claims.LEASE_PREFIX
READY_SECONDS = 0.5  # of sends marked ahead of their slots, at the whole rate
# An SMS goes to its sending thread this long before its slot: the thread builds the request
# and waits for the slot at the wire (the transport's gate), so that nothing but its own
# wakeup stands between the slot and the request; only a few threads wait at a time.
HAND_OVER_SECONDS = 0.05
ProgressCallback = Callable[[int], None]
RECORD_TRIES = 5  # of a batch of outcomes, 0.5 s more apart each time (5 s in all)


@dataclass(frozen=True)
class Tuning:
    """Knobs with production defaults; the settings' ``notifier_<name>`` (environment
    variables ``NOTIFIER_<NAME>``) override."""

    batch: int = 200  # at most; a claim holds about batch_seconds of this sender's share
    batch_seconds: float = 2.0
    claim_seconds: float = 20.0
    send_timeout: float = 10.0
    max_attempts: int = 6
    backoff_base: float = 5.0
    backoff_cap: float = 600.0
    reconcile_after: float = 120.0
    poll_seconds: float = 0.5
    maintain_seconds: float = 10.0
    heartbeat_seconds: float = 1.0
    lease_seconds: float = 5.0
    in_flight: int = 0  # 0: as many as reach the rate at the provider's usual answer time

    @classmethod
    def from_settings(cls, settings: NotifierConfig) -> Tuning:
        values = {f.name: getattr(settings, f"notifier_{f.name}", None) for f in fields(cls)}
        return cls(**{name: value for name, value in values.items() if value is not None})

    def __post_init__(self) -> None:
        if self.heartbeat_seconds * 2 > self.lease_seconds:
            raise ValueError(
                f"NOTIFIER_HEARTBEAT_SECONDS ({self.heartbeat_seconds:g}) must be at most half "
                f"of NOTIFIER_LEASE_SECONDS ({self.lease_seconds:g}), or a live sender looks dead "
                "between two heartbeats"
            )

    def pool_size(self, rate: float) -> int:
        return self.in_flight or max(4, min(64, math.ceil(rate * 0.4) + 4))

    def backoff(self, attempts: int) -> float:
        # Exponential with full jitter: retries from many rows spread out instead of
        # hitting a recovering provider together.
        return random.uniform(0.5, 1.0) * min(
            self.backoff_cap, self.backoff_base * 2 ** max(attempts - 1, 0)
        )

    def sending_claim(self) -> timedelta:
        # requests' timeout bounds the connect and each read separately.
        return timedelta(seconds=2 * self.send_timeout + 10)


@dataclass(frozen=True)
class Job:
    id: int
    notice_id: int | None  # None: a candidate message
    channel: str
    address: str
    attempts: int
    language: str
    token: str
    test_code: str
    text_nb: str | None
    text_en: str | None
    # When the notice was made, or when a candidate message became due: no send of it is
    # older than this (reconciliation looks from here).
    since: datetime
    subject: str | None
    body: str | None

    def message(self, public_url: str) -> Message:
        if self.body is not None:
            # A candidate message: composed, GSM-7 safe, when the change was made.
            return Message(self.id, self.channel, self.address, self.body, self.subject or "")
        link = texts.notice_link(public_url=public_url, token=self.token, notice_id=self.notice_id)
        if self.channel == SMS:
            body = texts.sms_body(language=self.language, test_code=self.test_code, link=link)
            return Message(self.id, self.channel, self.address, body)
        text = texts.notice_text(
            text_nb=self.text_nb or "", text_en=self.text_en or "", language=self.language
        )
        return Message(
            self.id,
            self.channel,
            self.address,
            texts.email_body(
                language=self.language, test_code=self.test_code, text=text, link=link
            ),
            subject=texts.email_subject(language=self.language, test_code=self.test_code),
        )


# A sent job and the values its row takes.
Outcome = tuple[Job, dict[str, Any]]


def _job_query():
    return (
        select(
            Delivery.id,
            Delivery.notice_id,
            Delivery.channel,
            Delivery.address,
            Delivery.attempts,
            Candidate.language,
            Candidate.notice_token,
            Test.code,
            Notice.text_nb,
            Notice.text_en,
            func.coalesce(Notice.created_at, Delivery.next_attempt_at),
            Delivery.subject,
            Delivery.body,
        )
        .join(Candidate, Candidate.id == Delivery.candidate_id)
        .outerjoin(Notice, Notice.id == Delivery.notice_id)
        .join(Test, Test.id == Candidate.test_id)
    )


def _job(row: Any) -> Job:
    return Job(*row)


def sweep(*, db_session: Session, now: datetime) -> dict[str, int]:
    """Release claims that are over; a send cut off mid-request becomes ``unknown``.

    The caller commits. Safe to run from any number of processes at once.
    """
    released = db_session.execute(
        update(Delivery)
        .where(
            may_take(Step.RELEASE),
            Delivery.claimed_by.is_not(None),
            claims.claim_over(Delivery, now),
        )
        .values(claimed_by=None, claimed_until=None)
    ).rowcount
    stuck = db_session.execute(
        update(Delivery)
        .where(may_take(Step.CUT_OFF), claims.claim_over(Delivery, now))
        .values(
            status=to(Step.CUT_OFF, UNKNOWN),
            error_code="no_answer",
            error_message="the sender stopped before the provider answered; "
            "it may have been sent, so it is checked before any resend",
            claimed_by=None,
            claimed_until=None,
            updated_at=now,
        )
    ).rowcount
    return {"released": released, "unknown": stuck}


class Dispatcher:
    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        transports: Mapping[str, Transport],
        public_url: str,
        rate: float,
        tuning: Tuning | None = None,
        on_progress: ProgressCallback | None = None,
        worker_id: str | None = None,
        outbox_transports: Mapping[str, OutboxTransport] | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.transports = dict(transports)
        self.public_url = public_url
        self.total_rate = rate
        self.tuning = tuning or Tuning()
        self.on_progress = on_progress
        self.worker_id = worker_id or (
            # Short enough for the liveness row's name (64 characters).
            f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        self.schedule = SendSchedule(session_factory, rate)
        size = self.tuning.pool_size(rate)
        self.slots = threading.BoundedSemaphore(size)
        self.pool = ThreadPoolExecutor(size, thread_name_prefix="notifier-send")
        self.stopping = threading.Event()
        # Senders whose liveness row is current, this one included (sizes the claims).
        self.live = 1
        self._live_until = 0.0  # time.monotonic() until which our liveness row is current
        self._heart_stopping = threading.Event()
        # Marked jobs, from the loop (which waits for the database) to the pacer (which
        # waits for send slots): enough that the pacer never runs dry while the loop claims,
        # and that the schedule books as many slots as it may while there is work.
        ahead = max(self._group_size(), math.ceil(rate * READY_SECONDS))
        self._ready: queue.Queue[Job | None] = queue.Queue(maxsize=ahead)
        self._pacer = threading.Thread(target=self._pace, name="notifier-pace", daemon=True)
        self._pacer.start()
        # Outcomes, from the sending threads: those that come while one batch of them
        # commits go together in the next transaction.
        self._recorder: GroupCommit[Outcome, None] = GroupCommit(
            self._record, name="notifier-record"
        )
        dialect = session_factory.kw["bind"].dialect.name
        self.skip_locked = dialect == "postgresql"
        # The outbox's messages (Slack posts, webhook events), claimed and retried the same
        # way, under this sender's liveness row.
        self.outbox = OutboxSender(
            session_factory=session_factory,
            transports=outbox_transports or {},
            worker_id=self.worker_id,
            tuning=self.tuning,
            skip_locked=self.skip_locked,
        )

    # ------------------------------------------------------------------ loop

    def run(self) -> None:
        """Until ``stop()``: claim due deliveries and send them; meanwhile, from threads of
        their own, keep the liveness row, sweep and reconcile."""
        self._heartbeat_logged()
        heart = threading.Thread(target=self._beat, name="notifier-heartbeat", daemon=True)
        heart.start()
        # Reconciliation asks the provider, one message at a time: never in the way of sending.
        upkeep = threading.Thread(target=self._upkeep, name="notifier-upkeep", daemon=True)
        upkeep.start()
        outbox = threading.Thread(target=self._send_outbox, name="notifier-outbox", daemon=True)
        outbox.start()
        try:
            while not self.stopping.is_set():
                if not self.dispatch_batch():
                    self.stopping.wait(self.tuning.poll_seconds)
        finally:
            upkeep.join()
            # Let requests already out finish and be recorded: an abandoned 'sending' row
            # would become 'unknown' needlessly. The heartbeat goes on meanwhile.
            outbox.join()
            self.outbox.close()
            self.close()
            self._release_claims()
            self._heart_stopping.set()
            heart.join()
            self._drop_lease()

    def stop(self) -> None:
        self.stopping.set()

    def _upkeep(self) -> None:
        while True:
            self.maintain()
            if self.stopping.wait(self.tuning.maintain_seconds):
                return

    def _send_outbox(self) -> None:
        while not self.stopping.is_set():
            if not self.outbox.send_due():
                self.stopping.wait(self.tuning.poll_seconds)
        self.outbox.release()

    def maintain(self) -> None:
        try:
            now = clock.now()
            with session_scope(self.session_factory) as db_session:
                swept = sweep(db_session=db_session, now=now)
                # Only long-dead senders' rows: deleting one its sender renews at the same
                # moment would wait on that row's lock.
                db_session.execute(
                    delete(Lease).where(
                        Lease.name.like(LEASE_PREFIX + "%"),
                        Lease.expires_at < now - timedelta(minutes=1),
                    )
                )
            if any(swept.values()):
                log.info("sweep: %s", swept)
            self.reconcile()
            self.outbox.maintain()
        except Exception:
            # The database may be briefly unreachable; the loop carries on and retries.
            log.exception("notifier maintenance failed")

    def dispatch_batch(self) -> int:
        try:
            jobs = self._claim()
        except Exception:
            log.exception("could not claim deliveries")
            return 0
        size = self._group_size()
        for start in range(0, len(jobs), size):
            group = jobs[start : start + size]
            try:
                marked = self._mark_sending(group)
            except Exception:
                log.exception("could not mark deliveries as sending")
                marked = set()
            for index, job in enumerate(group):
                if job.id not in marked:
                    continue
                if not self._hand_over(job):
                    self._unmark([j.id for j in group[index:] if j.id in marked])
                    self._release_claims([j.id for j in jobs[start:]])
                    return len(jobs)
        return len(jobs)

    def _hand_over(self, job: Job) -> bool:
        while True:
            try:
                self._ready.put(job, timeout=0.2)
                return True
            except queue.Full:
                if self.stopping.is_set():
                    return False

    def _pace(self) -> None:
        """Each marked job to a sending thread (SMS: shortly before its send slot); once
        stopping, back to pending with the rest of the queue."""
        while (job := self._ready.get()) is not None:
            try:
                if self._hand_to_thread(job):
                    continue
            except Exception:
                log.exception("could not send delivery %s; it goes back to pending", job.id)
            # Stopping, or no slot to be had: this job and the rest of the queue go back.
            unsent = [job.id]
            last = False
            while not last:
                try:
                    more = self._ready.get_nowait()
                except queue.Empty:
                    break
                last = more is None
                if more is not None:
                    unsent.append(more.id)
            self._unmark(unsent)
            if last:
                return

    # ------------------------------------------------------------------ steps

    def _batch_size(self) -> int:
        # About batch_seconds of this sender's share of the rate: the senders' shares stay
        # even to the last batch, and everything claimed is sent well within the claim.
        share = self.total_rate / max(1, self.live)
        seconds = min(self.tuning.batch_seconds, self.tuning.claim_seconds / 3)
        return max(self._group_size(), min(self.tuning.batch, math.ceil(share * seconds)))

    def _claim(self) -> list[Job]:
        if time.monotonic() >= self._live_until:
            # The others take the rows of a sender without a current liveness row as a dead
            # sender's: one that cannot renew it claims nothing.
            self._heartbeat()
        now = clock.now()
        with session_scope(self.session_factory) as db_session:
            ids = claims.claim(
                db_session,
                Delivery,
                due=[Delivery.channel.in_(list(self.transports))],
                now=now,
                limit=self._batch_size(),
                worker_id=self.worker_id,
                until=now + timedelta(seconds=self.tuning.claim_seconds),
                skip_locked=self.skip_locked,
            )
            if not ids:
                return []
            rows = db_session.execute(
                _job_query().where(Delivery.id.in_(ids)).order_by(Delivery.id)
            ).all()
        return [_job(row) for row in rows]

    def _hand_to_thread(self, job: Job) -> bool:
        """A free sending thread for the job and (SMS) its send slot; False when stopping or
        no slot can be had."""
        while not self.slots.acquire(timeout=0.2):
            if self.stopping.is_set():
                return False
        if job.channel != SMS:
            self.pool.submit(self._send, job)
            return True
        slot = self.schedule.take(self.stopping, wanted=self._ready.qsize() + 1)
        if slot is None or self.stopping.wait(
            max(0.0, slot - HAND_OVER_SECONDS - time.monotonic())
        ):
            self.slots.release()
            return False
        self.pool.submit(self._send, job, slot)
        return True

    def _group_size(self) -> int:
        # Marking a few at a time keeps the database's write load low at high rates; the
        # group is sent within ~0.1 s, and a crash in between is settled by reconciliation.
        return max(1, min(50, int(self.total_rate / 10)))

    def _mark_sending(self, group: list[Job]) -> set[int]:
        """The last step before the requests: from here on a crash means 'unknown'."""
        now = clock.now()
        with session_scope(self.session_factory) as db_session:
            marked = db_session.scalars(
                update(Delivery)
                .where(
                    Delivery.id.in_([job.id for job in group]),
                    may_take(Step.MARK),
                    Delivery.claimed_by == self.worker_id,
                )
                .values(
                    status=to(Step.MARK, SENDING),
                    attempts=Delivery.attempts + 1,
                    claimed_until=now + self.tuning.sending_claim(),
                    updated_at=now,
                )
                .returning(Delivery.id)
            ).all()
        return set(marked)

    def _unmark(self, ids: list[int]) -> None:
        """Marked but never sent (stopping): back to pending, the try not counted."""
        if not ids:
            return
        try:
            with session_scope(self.session_factory) as db_session:
                db_session.execute(
                    update(Delivery)
                    .where(
                        Delivery.id.in_(ids),
                        may_take(Step.UNMARK),
                        Delivery.claimed_by == self.worker_id,
                    )
                    .values(
                        status=to(Step.UNMARK, PENDING),
                        attempts=Delivery.attempts - 1,
                        claimed_by=None,
                        claimed_until=None,
                    )
                )
        except Exception:
            log.exception("could not put unsent deliveries back; the sweep settles them")

    def _send(self, job: Job, slot: float | None = None) -> None:
        """Send ``job`` (an SMS at ``slot``), record the outcome, free the sending thread."""
        try:
            values = self._attempt(job, slot)
            if values is None:
                self._unmark([job.id])
            else:
                values |= {"claimed_by": None, "claimed_until": None, "updated_at": clock.now()}
                values["status"] = to(Step.RECORD, values["status"])
                # Nobody waits for it: _record never fails its batch, it logs.
                self._recorder.submit((job, values))
        finally:
            self.slots.release()

    def _attempt(self, job: Job, slot: float | None) -> dict[str, Any] | None:
        """The outcome's values for the row; None when stopping before the request left."""
        attempts = job.attempts + 1
        try:
            transport = self.transports[job.channel]
            message = job.message(self.public_url)
            while True:
                gate = None
                if slot is not None:
                    gate = partial(self.schedule.wait_for, slot, self.stopping)
                try:
                    provider_id = transport.send(message, gate)
                    break
                except SlotMissed:
                    # Ready too late for its slot (the thread woke late): the next one.
                    slot = self.schedule.take(self.stopping)
                    if slot is None:
                        return None
        except TransportError as error:
            if error.permanent or attempts >= self.tuning.max_attempts:
                reason = (
                    str(error) if error.permanent else f"gave up after {attempts} tries: {error}"
                )
                MESSAGES.labels(job.channel, FAILED).inc()
                return {"status": FAILED, "error_code": error.code, "error_message": reason}
            return {
                "status": PENDING,
                "next_attempt_at": clock.now() + timedelta(seconds=self.tuning.backoff(attempts)),
                "error_code": error.code,
                "error_message": str(error),
            }
        except OutcomeUnknown as error:
            return {"status": UNKNOWN, "error_code": "no_answer", "error_message": str(error)}
        except Exception as error:
            # A bug of ours may strike before or after the request: never guess 'unsent'.
            log.exception("sending delivery %s failed unexpectedly", job.id)
            return {"status": UNKNOWN, "error_code": "error", "error_message": repr(error)}
        status = LOGGED if transport.logs_only else SENT
        MESSAGES.labels(job.channel, status).inc()
        return {
            "status": status,
            "provider_id": provider_id,
            "sent_at": clock.now(),
            "error_code": None,
            "error_message": None,
        }

    def _record(self, outcomes: list[Outcome]) -> list[None]:
        """Store a batch of outcomes in one transaction, then report the notices' progress.

        Tried again here, not in GroupCommit: its web callers want an error at once (Twilio
        sends a callback again after a 503), while nobody waits for an outcome and the
        sending threads have long moved on. Meanwhile later outcomes wait. After the last
        try the rows stay 'sending': once their claim is over the sweep turns them into
        'unknown', and reconciliation asks the provider.
        """
        # In the order of their ids, as the status callbacks' batches take them: on
        # PostgreSQL two transactions that lock rows in opposite orders deadlock.
        ordered = sorted(outcomes, key=lambda outcome: outcome[0].id)
        for attempt in range(1, RECORD_TRIES + 1):
            try:
                self._store(ordered)
                break
            except Exception:
                log.exception("recording %d deliveries failed (try %d)", len(ordered), attempt)
                if attempt < RECORD_TRIES:
                    time.sleep(0.5 * attempt)
        else:
            log.error("%d deliveries left in 'sending' for the sweep", len(ordered))
            return [None] * len(outcomes)
        for notice_id in dict.fromkeys(job.notice_id for job, _ in ordered):
            if notice_id is not None:
                self._progress(notice_id)
        return [None] * len(outcomes)

    def _store(self, outcomes: list[Outcome]) -> None:
        with session_scope(self.session_factory) as db_session:
            for job, values in outcomes:
                recorded = db_session.execute(
                    update(Delivery)
                    .where(
                        Delivery.id == job.id,
                        may_take(Step.RECORD),
                        Delivery.provider_id.is_(None),
                    )
                    .values(**values)
                ).rowcount
                if not recorded and values["status"] == SENT:
                    # Twilio's status callback came first (its URL names the
                    # delivery) and set the SID and a status: that status stays.
                    db_session.execute(
                        update(Delivery)
                        .where(
                            Delivery.id == job.id,
                            Delivery.provider_id == values["provider_id"],
                        )
                        .values(sent_at=values["sent_at"], claimed_by=None, claimed_until=None)
                    )

    def close(self) -> None:
        """Send what was handed over (unless stopping), finish the requests already out and
        record their outcomes."""
        self._ready.put(None)
        self._pacer.join()
        self.pool.shutdown(wait=True)
        self.schedule.close()
        self._recorder.close()

    def _progress(self, notice_id: int) -> None:
        if self.on_progress is None:
            return
        try:
            self.on_progress(notice_id)
        except Exception:
            log.exception("progress callback failed for notice %s", notice_id)

    def reconcile(self) -> int:
        """Settle 'unknown' sends by asking the provider whether it has them."""
        channels = [c for c, t in self.transports.items() if t.can_look_up]
        if not channels:
            return 0
        ripe = clock.now() - timedelta(seconds=self.tuning.reconcile_after)
        with session_scope(self.session_factory) as db_session:
            jobs = [
                _job(row)
                for row in db_session.execute(
                    _job_query()
                    .where(
                        may_take(Step.RECONCILE),
                        Delivery.channel.in_(channels),
                        Delivery.updated_at <= ripe,
                        Delivery.provider_id.is_(None),
                    )
                    .order_by(Delivery.id)
                    .limit(50)
                )
            ]
        settled = 0
        for job in jobs:
            message = job.message(self.public_url)
            try:
                found = self.transports[job.channel].find_sent(message, since=job.since)
            except Exception:
                log.exception("could not look up delivery %s; will ask again", job.id)
                continue
            now = clock.now()
            if found:
                values: dict[str, Any] = {"status": SENT, "provider_id": found, "sent_at": now}
                values |= {"error_code": None, "error_message": None}
            elif job.attempts >= self.tuning.max_attempts:
                values = {"status": FAILED, "error_message": "not sent; out of tries"}
            else:
                values = {"status": PENDING, "next_attempt_at": now, "error_message": None}
                values |= {"error_code": None}
            values["status"] = to(Step.RECONCILE, values["status"])
            with session_scope(self.session_factory) as db_session:
                settled += db_session.execute(
                    update(Delivery)
                    .where(Delivery.id == job.id, may_take(Step.RECONCILE))
                    .values(**values, updated_at=now)
                ).rowcount
            if job.notice_id is not None:
                self._progress(job.notice_id)
        return settled

    def _release_claims(self, ids: list[int] | None = None) -> None:
        try:
            with session_scope(self.session_factory) as db_session:
                query = update(Delivery).where(
                    may_take(Step.RELEASE), Delivery.claimed_by == self.worker_id
                )
                if ids is not None:
                    query = query.where(Delivery.id.in_(ids))
                db_session.execute(query.values(claimed_by=None, claimed_until=None))
        except Exception:
            log.exception("could not release claims; they expire by themselves")

    # ------------------------------------------------------------------ leases

    def _beat(self) -> None:
        while not self._heart_stopping.wait(self.tuning.heartbeat_seconds):
            self._heartbeat_logged()

    def _heartbeat_logged(self) -> None:
        try:
            self._heartbeat()
        except Exception:
            # The database may be briefly unreachable; the next beat tries again.
            log.exception("notifier heartbeat failed")

    def _heartbeat(self) -> None:
        started = time.monotonic()
        now = clock.now()
        name = LEASE_PREFIX + self.worker_id
        expires = now + timedelta(seconds=self.tuning.lease_seconds)
        with session_scope(self.session_factory) as db_session:
            renewed = db_session.execute(
                update(Lease).where(Lease.name == name).values(expires_at=expires)
            ).rowcount
            if not renewed:
                db_session.add(Lease(name=name, holder=self.worker_id, expires_at=expires))
            db_session.flush()
            live = db_session.scalar(
                select(func.count()).where(
                    Lease.name.like(LEASE_PREFIX + "%"), Lease.expires_at >= now
                )
            )
        self._live_until = started + self.tuning.lease_seconds
        live = max(1, live or 1)
        if live != self.live:
            log.info("%d notifier(s) running, sharing SMS_PER_SECOND=%g", live, self.total_rate)
            self.live = live

    def _drop_lease(self) -> None:
        try:
            with session_scope(self.session_factory) as db_session:
                db_session.execute(delete(Lease).where(Lease.name == LEASE_PREFIX + self.worker_id))
        except Exception:
            log.exception("could not drop the notifier lease; it expires by itself")


def from_settings(
    settings: NotifierConfig,
    session_factory: sessionmaker[Session],
    *,
    on_progress: ProgressCallback | None = None,
    tuning: Tuning | None = None,
    transports: Mapping[str, Transport] | None = None,
    renderers: Mapping[str, Renderer] | None = None,
) -> Dispatcher:
    """``renderers``: the layouts the Slack app draws for outbox posts (``render``)."""
    tuning = tuning or Tuning.from_settings(settings)
    rate = float(settings.sms_per_second)
    if transports is None:
        transports = build_transports(
            settings, send_timeout=tuning.send_timeout, pool_size=tuning.pool_size(rate)
        )
    return Dispatcher(
        session_factory=session_factory,
        transports=transports,
        public_url=settings.public_url,
        rate=rate,
        tuning=tuning,
        on_progress=on_progress,
        outbox_transports=build_outbox_transports(
            settings, renderers=renderers, send_timeout=tuning.send_timeout
        ),
    )


def build_outbox_transports(
    settings: NotifierConfig,
    *,
    renderers: Mapping[str, Renderer] | None,
    send_timeout: float,
) -> dict[str, OutboxTransport]:
    token = secret_value(settings.slack_bot_token)
    slack: OutboxTransport = (
        SlackTransport(
            base_url=settings.slack_api_base_url,
            token=token,
            timeout=send_timeout,
            renderers=renderers,
        )
        if token
        else SlackLogTransport(renderers)
    )
    built: dict[str, OutboxTransport] = {SLACK_POST: slack}
    secret = secret_value(settings.webhook_secret)
    if secret:
        built[WEBHOOK] = WebhookTransport(secret, timeout=send_timeout)
    elif settings.webhook_urls.strip():
        raise ValueError("WEBHOOK_SECRET must be set when WEBHOOK_URLS is set")
    return built


def start_dispatcher(
    settings: NotifierConfig,
    session_factory: sessionmaker[Session],
    *,
    on_progress: ProgressCallback | None = None,
    tuning: Tuning | None = None,
    transports: Mapping[str, Transport] | None = None,
    renderers: Mapping[str, Renderer] | None = None,
) -> Callable[[], None]:
    """Run a dispatcher in a background thread (inside `examdesk serve`); returns ``stop``."""
    dispatcher = from_settings(
        settings,
        session_factory,
        on_progress=on_progress,
        tuning=tuning,
        transports=transports,
        renderers=renderers,
    )
    thread = threading.Thread(target=dispatcher.run, name="notifier", daemon=True)
    thread.start()

    def stop() -> None:
        dispatcher.stop()
        thread.join(timeout=dispatcher.tuning.send_timeout * 2 + 5)

    return stop


def install_stop_signals(stop: Callable[[], None]) -> None:
    def handler(_signum: int, _frame: Any) -> None:
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
