"""The outbox: everything examdesk sends outside, as rows written with the change they report.

A change and what it owes the outside world (its change-log post, its webhook events, a
teacher's report and the thread replies about it) commit together
or not at all; the notifier (``OutboxSender``, inside every ``Dispatcher``: ``serve`` and
``examdesk worker``) sends them afterwards:

    pending ─claim─▶ pending (claimed) ─▶ sending ─┬─ accepted ──▶ sent (logged: log only)
                                                   ├─ transient ─▶ pending, after backoff
                                                   ├─ permanent, or out of time ─▶ failed
                                                   └─ sender died mid-request ─▶ unknown

Claims and liveness are the deliveries' (``notifications.claims``), backoff is
``Tuning.backoff`` (or the receiver's ``Retry-After``), all timed by ``store.clock``.
Rows with the same ``order_key`` go one at a time in id order: a webhook receiver never gets
a test's next event before it accepted the one before. An ``unknown`` row is settled by
asking the receiver (``find_sent``: Slack's history, where each post carries its outbox id
in its metadata) or, where resending is harmless (a webhook's receiver recognises the same
``webhook-id``), sent again.

The one call for callers is ``enqueue`` (where a deployment's change log and events go is
``notifications.channels.Outside``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, sessionmaker

from notifications import claims
from notifications.transports import OutcomeUnknown, TransportError
from store import clock
from store.db import read_only, session_scope
from store.models import OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)

SLACK_POST = "slack_post"
WEBHOOK = "webhook"
KINDS = (SLACK_POST, WEBHOOK)
# Statuses a row is still on its way in (healthz "pending").
WAITING = (OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.UNKNOWN)


def enqueue(
    db_session: Session,
    *,
    kind: str,
    target: str,
    payload: dict[str, Any],
    key: str | None = None,
    order_key: str | None = None,
    not_before: datetime | None = None,
) -> OutboxMessage:
    """Add a message to send, in the caller's transaction (it goes when that commits).

    ``kind``: ``slack_post`` (target a channel id; payload ``{"method": "chat.postMessage",
    "args": {...}}``, optionally ``"thread_of": KEY`` to reply in the thread of the post
    enqueued with that key, ``"update_of": KEY`` to update it, or ``"render": NAME`` with
    ``"data"`` for a layout the Slack app draws when it sends), ``webhook`` (target a URL;
    payload the event). Candidates' SMS and e-mail are deliveries, not outbox rows: they
    share the notices' rate, status callbacks and reconciliation. ``key`` names the
    message: with a key already enqueued, that row is returned and nothing is added (while
    it is ``pending`` its payload may still change).
    ``order_key``: messages sharing it are sent one at a time, in the order enqueued.
    ``not_before``: not sent earlier (e.g. to gather a minute's changes into one message).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown outbox kind {kind!r}; one of {', '.join(KINDS)}")
    if key is not None:
        found = db_session.scalar(select(OutboxMessage).where(OutboxMessage.key == key))
        if found is not None:
            return found
    now = clock.now()
    row = OutboxMessage(
        kind=kind,
        target=target,
        payload=payload,
        key=key,
        order_key=order_key,
        status=OutboxStatus.PENDING,
        attempts=0,
        created_at=now,
        next_attempt_at=max(now, not_before) if not_before else now,
        updated_at=now,
    )
    if key is None:
        db_session.add(row)
        return row
    # Another transaction may be enqueueing the same key at this moment (on PostgreSQL, two
    # schedulers that overlap): its row wins, and the savepoint keeps the clash to this row
    # instead of failing the caller's whole transaction.
    try:
        with db_session.begin_nested():
            db_session.add(row)
    except IntegrityError:
        # Read committed (PostgreSQL's default): this statement sees the row that won.
        found = db_session.scalar(select(OutboxMessage).where(OutboxMessage.key == key))
        if found is None:
            raise  # another constraint than the key's
        return found
    return row


def webhook_order_key(url: str, test_code: str | None) -> str:
    """One queue per receiver and test: events of a test reach a receiver in order."""
    return f"webhook:{hashlib.sha256(url.encode()).hexdigest()[:16]}:{test_code or '-'}"


def result_of(db_session: Session, key: str) -> dict[str, Any] | None:
    """What the receiver answered to the message enqueued with ``key``, once it was sent."""
    return db_session.scalar(
        select(OutboxMessage.result).where(
            OutboxMessage.key == key, OutboxMessage.status == OutboxStatus.SENT
        )
    )


def status_of(db_session: Session, key: str) -> OutboxStatus | None:
    """Where the message enqueued with ``key`` is; None if there is none."""
    return db_session.scalar(select(OutboxMessage.status).where(OutboxMessage.key == key))


def take_payload(db_session: Session, row: OutboxMessage, payload: dict[str, Any]) -> bool:
    """A waiting row takes ``payload``: it goes out saying that (the sender reads the payload
    as it starts the request). False once the row is no longer waiting to be sent."""
    if row.status != OutboxStatus.PENDING:
        return False
    if row.payload == payload:
        return True
    taken = db_session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row.id, OutboxMessage.status == OutboxStatus.PENDING)
        .values(payload=payload, updated_at=clock.now())
    ).rowcount
    return bool(taken)


def send_again(db_session: Session, row: OutboxMessage, payload: dict[str, Any]) -> bool:
    """Send the message of ``row`` (a ``chat.update``: sending it again does no harm) with
    ``payload``: a waiting row takes it, a sent one goes out again with it. False while an
    earlier payload is under way (``sending``, ``unknown``): the caller tries later. A row
    given up stays so."""
    if row.status == OutboxStatus.PENDING:
        return take_payload(db_session, row, payload)
    if row.status != OutboxStatus.SENT:
        return row.status not in WAITING
    if row.payload == payload:
        return True
    now = clock.now()
    again = db_session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row.id, OutboxMessage.status == OutboxStatus.SENT)
        .values(
            payload=payload,
            status=OutboxStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            error_code=None,
            error_message=None,
            updated_at=now,
        )
    ).rowcount
    return bool(again)


def counts(db_session: Session) -> dict[str, int]:
    """How many messages are on their way, and how many were given up (``/healthz``)."""
    waiting = OutboxMessage.status.in_(WAITING)
    failed = OutboxMessage.status == OutboxStatus.FAILED
    row = db_session.execute(
        select(
            func.count().filter(waiting).label("pending"),
            func.count().filter(failed).label("failed"),
        ).select_from(OutboxMessage)
    ).one()
    return {"pending": row.pending, "failed": row.failed}


def failures(db_session: Session, *, limit: int = 20) -> list[OutboxMessage]:
    """The messages given up, newest first, with their reasons (App Home, doctor, logs)."""
    return list(
        db_session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.status == OutboxStatus.FAILED)
            .order_by(OutboxMessage.id.desc())
            .limit(limit)
        )
    )


# ---------------------------------------------------------------- sending


@dataclass(frozen=True)
class Outgoing:
    """A claimed row, as a transport sees it."""

    id: int
    kind: str
    target: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime
    # The answers to the messages this one refers to (``thread_of``, ``update_of``).
    refers_to: dict[str, dict[str, Any] | None]


class OutboxTransport(Protocol):
    kind: str
    # How long a message is retried before it is given up.
    retry_for: timedelta
    # Writes to the log instead of sending: its rows end `logged`, never `sent`.
    logs_only: bool
    # After a crash mid-request: ``find_sent`` can tell whether the receiver has it.
    can_look_up: bool
    # After a crash mid-request, sending again does no harm (the receiver deduplicates).
    resend_safe: bool

    def send(self, message: Outgoing) -> dict[str, Any] | None:
        """Send; the receiver's answer others need (None if none). ``TransportError`` when
        not accepted (``permanent`` says whether trying again can help), ``OutcomeUnknown``
        when the request may have arrived without an answer."""
        ...

    def find_sent(self, message: Outgoing) -> dict[str, Any] | None:
        """The answer of the receiver if it has ``message``; None if it surely has not."""
        ...


class OutboxSender:
    """Claims due outbox rows and sends them; runs inside a ``Dispatcher`` (its liveness
    row, its ``Tuning`` and, for SMS, its send schedule)."""

    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        transports: Mapping[str, OutboxTransport],
        worker_id: str,
        tuning: Any,
        skip_locked: bool,
    ) -> None:
        self.session_factory = session_factory
        self.transports = dict(transports)
        self.worker_id = worker_id
        self.tuning = tuning
        self.skip_locked = skip_locked
        self.pool = ThreadPoolExecutor(8, thread_name_prefix="outbox-send")

    def send_due(self) -> int:
        """Claim a batch of due rows and send them; how many were claimed."""
        if not self.transports:
            return 0
        try:
            rows = self._claim()
        except Exception:
            log.exception("could not claim outbox messages")
            return 0
        # One row per order key is claimed at a time, so the batch may go out in parallel.
        list(self.pool.map(self._send_logged, rows))
        return len(rows)

    def maintain(self) -> None:
        now = clock.now()
        with session_scope(self.session_factory) as db_session:
            claims.release_over(db_session, OutboxMessage, now)
            stuck = claims.stuck_in_sending(
                db_session,
                OutboxMessage,
                now,
                status=OutboxStatus.UNKNOWN,
                error_code="no_answer",
                error_message="the sender stopped before the receiver answered; "
                "it is checked before any resend",
            )
        if stuck:
            log.warning("outbox: %d message(s) cut off mid-request, checked before a resend", stuck)
        self._settle_unknown()

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def release(self) -> None:
        """Give back what this sender claimed and has not started (on stopping)."""
        try:
            with session_scope(self.session_factory) as db_session:
                db_session.execute(
                    update(OutboxMessage)
                    .where(
                        OutboxMessage.status == OutboxStatus.PENDING,
                        OutboxMessage.claimed_by == self.worker_id,
                    )
                    .values(claimed_by=None, claimed_until=None)
                )
        except Exception:
            log.exception("could not release outbox claims; they expire by themselves")

    # ------------------------------------------------------------------ steps

    def _any_due(self, now: datetime) -> bool:
        # A read first: on SQLite a claim takes the write lock, which an idle sender polling
        # twice a second must not keep taking from the commands.
        with self.session_factory() as db_session:
            read_only(db_session)
            return (
                db_session.scalar(
                    select(OutboxMessage.id)
                    .where(
                        OutboxMessage.status == OutboxStatus.PENDING,
                        OutboxMessage.next_attempt_at <= now,
                        OutboxMessage.kind.in_(list(self.transports)),
                    )
                    .limit(1)
                )
                is not None
            )

    def _claim(self) -> list[Outgoing]:
        now = clock.now()
        if not self._any_due(now):
            return []
        earlier = aliased(OutboxMessage)
        # The first unfinished row of each order key is the only one that may go.
        blocked = (
            select(earlier.id)
            .where(
                earlier.order_key == OutboxMessage.order_key,
                earlier.id < OutboxMessage.id,
                earlier.status.in_(WAITING),
            )
            .exists()
        )
        with session_scope(self.session_factory) as db_session:
            ids = claims.claim(
                db_session,
                OutboxMessage,
                due=[OutboxMessage.kind.in_(list(self.transports)), ~blocked],
                now=now,
                limit=self.tuning.batch,
                worker_id=self.worker_id,
                until=now + timedelta(seconds=self.tuning.claim_seconds),
                skip_locked=self.skip_locked,
            )
            if not ids:
                return []
            rows = db_session.scalars(
                select(OutboxMessage).where(OutboxMessage.id.in_(ids)).order_by(OutboxMessage.id)
            ).all()
            # What they refer to is looked up when each is sent, from its payload then.
            return [_outgoing(row, refers_to={}) for row in rows]

    def _send_logged(self, message: Outgoing) -> None:
        try:
            self._send(message)
        except Exception:
            log.exception("outbox message %s: sending failed unexpectedly", message.id)

    def _mark_sending(self, message: Outgoing, timeout: timedelta) -> Outgoing | None:
        """Take the claimed row for this attempt: the message as it is now (a pending row's
        payload may have changed since the claim), or None if it is no longer ours."""
        now = clock.now()
        with session_scope(self.session_factory) as db_session:
            payload = db_session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == message.id,
                    OutboxMessage.status == OutboxStatus.PENDING,
                    OutboxMessage.claimed_by == self.worker_id,
                )
                .values(
                    status=OutboxStatus.SENDING,
                    attempts=OutboxMessage.attempts + 1,
                    claimed_until=now + timeout,
                    updated_at=now,
                )
                .returning(OutboxMessage.payload)
            ).scalar()
            if payload is None:
                return None
            return replace(message, payload=payload, refers_to=_refers_to(db_session, payload))

    def _send(self, claimed: Outgoing) -> None:
        transport = self.transports[claimed.kind]
        message = self._mark_sending(claimed, self.tuning.sending_claim())
        if message is None:
            return
        attempts = message.attempts + 1
        values: dict[str, Any]
        try:
            result = transport.send(message)
            status = OutboxStatus.LOGGED if transport.logs_only else OutboxStatus.SENT
            values = {"status": status, "result": result, "sent_at": clock.now()}
            values |= {"error_code": None, "error_message": None}
        except TransportError as error:
            values = self._after_error(message, transport, error, attempts)
        except OutcomeUnknown as error:
            values = {
                "status": OutboxStatus.UNKNOWN,
                "error_code": "no_answer",
                "error_message": str(error),
            }
        except Exception as error:
            # A bug of ours may strike before or after the request: never guess 'unsent'.
            log.exception("outbox message %s failed unexpectedly", message.id)
            values = {
                "status": OutboxStatus.UNKNOWN,
                "error_code": "error",
                "error_message": repr(error),
            }
        self._finish(message, values)

    def _after_error(
        self, message: Outgoing, transport: OutboxTransport, error: TransportError, attempts: int
    ) -> dict[str, Any]:
        now = clock.now()
        reason = str(error)
        if error.permanent or now - message.created_at >= transport.retry_for:
            if not error.permanent:
                reason = f"gave up after {attempts} tries over {_hours(now - message.created_at)}: "
                reason += str(error)
            log.error("outbox: %s to %s failed: %s", message.kind, _shown(message), reason)
            return {
                "status": OutboxStatus.FAILED,
                "error_code": error.code,
                "error_message": reason,
            }
        wait = error.retry_after if error.retry_after is not None else self.tuning.backoff(attempts)
        log.info(
            "outbox: %s to %s not accepted (%s); next try in %.0f s",
            message.kind,
            _shown(message),
            error.code,
            wait,
        )
        return {
            "status": OutboxStatus.PENDING,
            "next_attempt_at": now + timedelta(seconds=wait),
            "error_code": error.code,
            "error_message": reason,
        }

    def _finish(self, message: Outgoing, values: dict[str, Any]) -> None:
        values |= {"claimed_by": None, "claimed_until": None, "updated_at": clock.now()}
        for attempt in range(1, 6):
            try:
                with session_scope(self.session_factory) as db_session:
                    db_session.execute(
                        update(OutboxMessage)
                        .where(
                            OutboxMessage.id == message.id,
                            # A sweep may have called it 'unknown' meanwhile; the answer
                            # that did come is the truth.
                            OutboxMessage.status.in_(WAITING),
                        )
                        .values(**values)
                    )
                return
            except Exception:
                log.exception("recording outbox message %s failed (try %d)", message.id, attempt)
                time.sleep(0.5 * attempt)
        # Left in 'sending': the sweep makes it 'unknown', and it is checked before a resend.

    def _settle_unknown(self) -> None:
        kinds = [k for k, t in self.transports.items() if t.can_look_up or t.resend_safe]
        if not kinds:
            return
        with session_scope(self.session_factory) as db_session:
            rows = db_session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.status == OutboxStatus.UNKNOWN, OutboxMessage.kind.in_(kinds))
                .order_by(OutboxMessage.id)
                .limit(50)
            ).all()
            unknown = [
                _outgoing(row, refers_to=_refers_to(db_session, row.payload)) for row in rows
            ]
        for message in unknown:
            transport = self.transports[message.kind]
            found = None
            if transport.can_look_up:
                try:
                    found = transport.find_sent(message)
                except Exception:
                    log.exception("could not look up outbox message %s; will ask again", message.id)
                    continue
            now = clock.now()
            if found is not None:
                values: dict[str, Any] = {
                    "status": OutboxStatus.SENT,
                    "result": found,
                    "sent_at": now,
                }
            else:
                values = {"status": OutboxStatus.PENDING, "next_attempt_at": now}
            values |= {"error_code": None, "error_message": None, "updated_at": now}
            with session_scope(self.session_factory) as db_session:
                db_session.execute(
                    update(OutboxMessage)
                    .where(
                        OutboxMessage.id == message.id, OutboxMessage.status == OutboxStatus.UNKNOWN
                    )
                    .values(**values)
                )


def _outgoing(row: OutboxMessage, *, refers_to: dict[str, dict[str, Any] | None]) -> Outgoing:
    return Outgoing(
        id=row.id,
        kind=row.kind,
        target=row.target,
        payload=row.payload,
        attempts=row.attempts,
        created_at=row.created_at,
        refers_to=refers_to,
    )


def _refers_to(db_session: Session, payload: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """The answers to the messages ``payload`` refers to (``thread_of``, ``update_of``)."""
    keys = [payload[name] for name in ("thread_of", "update_of") if payload.get(name)]
    return {key: result_of(db_session, key) for key in keys}


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:.0f} h" if hours >= 1 else f"{span.total_seconds() / 60:.0f} min"


def _shown(message: Outgoing) -> str:
    """Where the message goes, fit for the log: a channel or a URL's host, never an address."""
    if message.kind == SLACK_POST:
        return message.target
    if message.kind == WEBHOOK:
        return urlsplit(message.target).netloc
    return f"candidate (outbox #{message.id})"
