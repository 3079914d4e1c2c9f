"""Twilio's status callbacks against the sender's own steps, one interleaving at a time (R13).

Twilio may call back before its answer to the send has reached us, while the row is still
`sending`, or after the sender has recorded the MessageSid; a sweep may call a send that is
slow to answer `unknown` in between, and reconciliation may ask Twilio about a row whose
callback comes meanwhile. Each order is played here step by step, without timing: the
callbacks that come before the send's answer are applied from inside the provider's send,
those after it once the dispatcher has recorded the outcome. Whatever the order, the row
ends with the final status Twilio reported (`sent` if none), the MessageSid and the send's
own record (``sent_at``, the claim let go), so no callback answered 204 is lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from fake_twilio import seed_candidates
from sqlalchemy import event, select, update
from test_dispatch import running_exam

from notifications import status_callback
from notifications.dispatch import Dispatcher, Tuning, sweep
from notifications.transports import Gate, Message, OutcomeUnknown, pass_gate
from store import clock
from store.db import session_scope
from store.models import Delivery

CODE = "TDT4100-2026H"
TUNING = Tuning(poll_seconds=0.05, maintain_seconds=0.2, reconcile_after=3600)
RECONCILE_AT_ONCE = Tuning(poll_seconds=0.05, maintain_seconds=0.2, reconcile_after=0)
# A step of the script that is not a callback: the sweep finds the send cut off mid-request
# (its claim over), and calls it 'unknown'.
CUT_OFF = "cut_off"
UNDELIVERED_CODE = "30003"


@dataclass
class Provider:
    """Twilio that takes every message (its SID is known from then on) and then, before its
    answer leaves, runs ``before_answer``; with ``answer_lost`` the answer never arrives.
    ``during_lookup`` runs while reconciliation asks whether it has the message."""

    before_answer: Callable[[int, str], None] = lambda delivery_id, sid: None
    during_lookup: Callable[[int, str], None] = lambda delivery_id, sid: None
    answer_lost: bool = False
    sids: dict[int, str] = field(default_factory=dict)
    lookups: int = 0

    channel = "sms"
    can_look_up = True
    logs_only = False

    def send(self, message: Message, gate: Gate | None = None) -> str:
        pass_gate(gate)
        assert message.delivery_id is not None
        sid = "SM" + uuid.uuid4().hex
        self.sids[message.delivery_id] = sid
        self.before_answer(message.delivery_id, sid)
        if self.answer_lost:
            raise OutcomeUnknown("no answer from Twilio (the test's)")
        return sid

    def find_sent(self, message: Message, *, since: datetime) -> str | None:
        assert message.delivery_id is not None
        self.lookups += 1
        sid = self.sids[message.delivery_id]
        self.during_lookup(message.delivery_id, sid)
        return sid


@pytest.fixture
def delivery_id(world) -> int:
    """The one SMS delivery of a notice to one candidate, pending."""
    running_exam(world, CODE)
    seed_candidates(world.factory, CODE, 1)
    assert world.run(f"/notice {CODE} Task 3b: n = 10.", confirmed=True).ok
    with world.factory() as s:
        return s.scalars(select(Delivery.id).where(Delivery.channel == "sms")).one()


def play(factory, delivery_id: int, sid: str, steps: list[str]) -> list[tuple[str, bool]]:
    """Each step in turn, as its own transaction; each callback with whether it changed the
    row."""
    applied = []
    for step in steps:
        with session_scope(factory) as db_session:
            if step == CUT_OFF:
                # Long after the claim of the send ran out: the sender looks stuck.
                sweep(db_session=db_session, now=clock.now() + timedelta(hours=1))
                continue
            callback = status_callback.Callback(
                sid=sid,
                status=step,
                error_code=UNDELIVERED_CODE if step == "undelivered" else None,
                delivery_id=delivery_id,
            )
            notice_id = status_callback.apply(
                db_session=db_session, callback=callback, now=clock.now()
            )
        applied.append((step, notice_id is not None))
    return applied


def send_once(world, provider: Provider, tuning: Tuning = TUNING) -> Dispatcher:
    """The dispatcher's claim, mark, request and record of the pending delivery, to the end:
    ``close`` returns once the outcome is recorded."""
    dispatcher = Dispatcher(
        session_factory=world.factory,
        transports={"sms": provider},
        public_url="https://exams.example.org",
        rate=50,
        tuning=tuning,
    )
    assert dispatcher.dispatch_batch() == 1
    dispatcher.close()
    return dispatcher


def row(world, delivery_id: int) -> Delivery:
    with world.factory() as s:
        return s.get(Delivery, delivery_id)


# (callbacks and cut-offs before Twilio's answer, those after the send's record, the status
# the row must end with): the storm benchmark's scripts (in order, `delivered` before `sent`,
# `delivered` twice, `undelivered`) with every split around the send's answer.
ORDERS = [
    ([], ["sent", "delivered"], "delivered"),
    (["sent"], ["delivered"], "delivered"),
    (["sent", "delivered"], [], "delivered"),
    (["delivered"], ["sent"], "delivered"),
    (["delivered", "sent"], [], "delivered"),
    ([], ["delivered", "sent"], "delivered"),
    (["sent"], ["delivered", "delivered"], "delivered"),
    (["sent", "delivered"], ["delivered"], "delivered"),
    (["undelivered"], ["sent"], "undelivered"),
    ([], ["sent", "undelivered"], "undelivered"),
    (["sent"], [], "sent"),
    # The sweep called the send 'unknown' before Twilio's answer came.
    ([CUT_OFF], ["sent", "delivered"], "delivered"),
    ([CUT_OFF, "sent"], ["delivered"], "delivered"),
    ([CUT_OFF, "delivered"], ["sent"], "delivered"),
    (["sent", CUT_OFF], ["delivered"], "delivered"),
    (["delivered", CUT_OFF], ["sent"], "delivered"),
]


@pytest.mark.parametrize(
    ("before", "after", "final"),
    ORDERS,
    ids=["+".join(before) + "|" + "+".join(after) for before, after, _ in ORDERS],
)
def test_r13_no_callback_is_lost_in_any_order_with_the_senders_steps(
    world, delivery_id, before, after, final
):
    """The row ends with the final status Twilio reported (`sent` if none), its SID and the
    send's record; once Twilio has it, a sweep's 'no answer' error is gone
    (a callback that comes while the row is `unknown` clears it, as the send's record would)."""
    applied: list[tuple[str, bool]] = []
    provider = Provider(
        before_answer=lambda delivery, sid: applied.extend(
            play(world.factory, delivery, sid, before)
        )
    )
    send_once(world, provider)
    sid = provider.sids[delivery_id]
    applied += play(world.factory, delivery_id, sid, after)

    delivery = row(world, delivery_id)
    assert (delivery.status, delivery.provider_id) == (final, sid), applied
    assert delivery.error_code == (UNDELIVERED_CODE if final == "undelivered" else None)
    # The send's own record came, whatever the callbacks had set: when it was sent, and the
    # claim let go; a callback that came first is not sent again.
    assert delivery.sent_at is not None and delivery.claimed_by is None
    assert delivery.attempts == 1
    # The first callback with the final status is the one that set it; a `sent` after it
    # changed nothing.
    if final != "sent":
        assert (final, True) in applied
        first_final = applied.index((final, True))
        assert not any(changed for _, changed in applied[first_final + 1 :]), applied


def test_r13_callbacks_settle_a_send_whose_answer_never_came(world, delivery_id):
    """Twilio took the message but its answer was lost (`unknown`, no MessageSid): its
    callbacks still find the row by its delivery, and reconciliation then leaves it alone."""
    provider = Provider(answer_lost=True)
    dispatcher = send_once(world, provider, RECONCILE_AT_ONCE)
    assert (row(world, delivery_id).status, row(world, delivery_id).provider_id) == (
        "unknown",
        None,
    )
    sid = provider.sids[delivery_id]
    applied = play(world.factory, delivery_id, sid, ["delivered", "sent"])

    assert dispatcher.reconcile() == 0
    assert provider.lookups == 0  # the row has its SID: nothing to ask
    delivery = row(world, delivery_id)
    assert (delivery.status, delivery.provider_id) == ("delivered", sid)
    assert applied == [("delivered", True), ("sent", False)]


def test_r13_a_callback_during_reconciliation_is_kept(world, delivery_id):
    """Reconciliation read the row as `unknown` and asks Twilio; Twilio's `delivered` comes
    while it asks. Reconciliation's `sent` does not replace it."""
    applied: list[tuple[str, bool]] = []
    provider = Provider(
        answer_lost=True,
        during_lookup=lambda delivery, sid: applied.extend(
            play(world.factory, delivery, sid, ["delivered"])
        ),
    )
    dispatcher = send_once(world, provider, RECONCILE_AT_ONCE)
    assert dispatcher.reconcile() == 0
    assert provider.lookups == 1 and applied == [("delivered", True)]
    sid = provider.sids[delivery_id]
    assert play(world.factory, delivery_id, sid, ["sent"]) == [("sent", False)]
    delivery = row(world, delivery_id)
    assert (delivery.status, delivery.provider_id) == ("delivered", sid)


def test_r13_a_batch_of_callbacks_takes_its_rows_in_id_order_and_answers_each(world, engine):
    """Callbacks stored together (one transaction) change their rows in the order of the
    rows' ids, as the senders' records do, so two such batches on PostgreSQL never deadlock;
    each callback still gets its own answer, in the order it came."""
    running_exam(world, CODE)
    seed_candidates(world.factory, CODE, 4)
    assert world.run(f"/notice {CODE} Task 3b: n = 10.", confirmed=True).ok
    with world.factory() as s:
        ids = s.scalars(
            select(Delivery.id).where(Delivery.channel == "sms").order_by(Delivery.id)
        ).all()
        notice_id = s.scalar(select(Delivery.notice_id).where(Delivery.id == ids[0]))
    with session_scope(world.factory) as s:  # each request is out, its answer not yet in
        s.execute(update(Delivery).where(Delivery.id.in_(ids)).values(status="sending"))
    came = [ids[2], ids[0], ids[3], ids[1]]
    callbacks = [
        status_callback.Callback(
            sid="SM" + uuid.uuid4().hex, status="sent", error_code=None, delivery_id=i
        )
        for i in came
    ]
    callbacks.append(
        status_callback.Callback(
            sid="SM" + uuid.uuid4().hex, status="delivered", error_code=None, delivery_id=None
        )
    )
    touched: list[int] = []

    def seen(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if statement.lstrip().upper().startswith("UPDATE DELIVERIES"):
            values = parameters.values() if isinstance(parameters, dict) else parameters
            touched.append(next((v for v in values if v in ids), -1))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        with session_scope(world.factory) as db_session:
            notices = status_callback.apply_all(
                db_session=db_session, callbacks=callbacks, now=clock.now()
            )
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert touched == [*ids, -1]  # by id; the one matched by SID alone last
    assert notices == [notice_id] * 4 + [None]  # no row has that SID
    for callback in callbacks[:4]:
        assert row(world, callback.delivery_id).provider_id == callback.sid
