"""The delivery state machine: each step that changes a delivery's status, the statuses it
may start from and those it may lead to.

Every UPDATE of ``deliveries.status`` (the senders in ``dispatch``, Twilio's callbacks in
``status_callback``, retention's erasure) names its step and takes only rows in one of the
step's starting statuses, so repeated, late and out-of-order events change nothing they
should not: a final status is never left, and a callback saying 'sent' never replaces one.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import ColumnElement

from store.models import Delivery, DeliveryStatus

PENDING = DeliveryStatus.PENDING
SENDING = DeliveryStatus.SENDING
SENT = DeliveryStatus.SENT
LOGGED = DeliveryStatus.LOGGED
DELIVERED = DeliveryStatus.DELIVERED
UNDELIVERED = DeliveryStatus.UNDELIVERED
FAILED = DeliveryStatus.FAILED
UNKNOWN = DeliveryStatus.UNKNOWN

# Nothing leads away from these.
FINAL = frozenset({LOGGED, DELIVERED, UNDELIVERED, FAILED})
# Not yet through: waiting, under way, or to be checked with the provider.
WAITING = (PENDING, SENDING, UNKNOWN)
# The provider will not deliver it (or we could not send it).
NOT_DELIVERED = (FAILED, UNDELIVERED)


class Step(StrEnum):
    CLAIM = "claim"  # a sender takes due rows (its claim, status unchanged)
    RELEASE = "release"  # a claim over or given back: anyone may take the row again
    MARK = "mark"  # the last step before the request
    UNMARK = "unmark"  # marked but never sent (the sender stops)
    CUT_OFF = "cut_off"  # the sender stopped mid-request: the outcome is unclear
    RECORD = "record"  # the request's outcome
    RECONCILE = "reconcile"  # an unclear outcome, asked of the provider
    CALLBACK_SENT = "callback_sent"  # Twilio: the carrier took it
    CALLBACK_FINAL = "callback_final"  # Twilio: delivered, undelivered or failed
    ERASE = "erase"  # retention erased the address of a message not yet out


# step: (statuses it may start from, statuses it may lead to)
STEPS: dict[Step, tuple[frozenset[DeliveryStatus], frozenset[DeliveryStatus]]] = {
    Step.CLAIM: (frozenset({PENDING}), frozenset({PENDING})),
    Step.RELEASE: (frozenset({PENDING}), frozenset({PENDING})),
    Step.MARK: (frozenset({PENDING}), frozenset({SENDING})),
    Step.UNMARK: (frozenset({SENDING}), frozenset({PENDING})),
    Step.CUT_OFF: (frozenset({SENDING}), frozenset({UNKNOWN})),
    # A sweep may have called it 'unknown' meanwhile; the answer that did come is the truth.
    Step.RECORD: (
        frozenset({SENDING, UNKNOWN}),
        frozenset({SENT, LOGGED, FAILED, PENDING, UNKNOWN}),
    ),
    Step.RECONCILE: (frozenset({UNKNOWN}), frozenset({SENT, FAILED, PENDING})),
    Step.CALLBACK_SENT: (frozenset({SENDING, UNKNOWN}), frozenset({SENT})),
    Step.CALLBACK_FINAL: (
        frozenset({SENDING, UNKNOWN, SENT}),
        frozenset({DELIVERED, UNDELIVERED, FAILED}),
    ),
    Step.ERASE: (frozenset({PENDING, UNKNOWN}), frozenset({FAILED})),
}


def starts_from(step: Step) -> frozenset[DeliveryStatus]:
    return STEPS[step][0]


def leads_to(step: Step) -> frozenset[DeliveryStatus]:
    return STEPS[step][1]


def may_take(step: Step) -> ColumnElement[bool]:
    """The WHERE condition of ``step``'s UPDATE: the row is in one of its starting statuses."""
    starting = sorted(starts_from(step))
    if len(starting) == 1:
        return Delivery.status == starting[0]
    return Delivery.status.in_(starting)


def to(step: Step, status: DeliveryStatus) -> DeliveryStatus:
    """``status`` as the new status of ``step``'s UPDATE; a step the table does not allow is
    a bug, caught here before it reaches a row."""
    if status not in leads_to(step):
        raise ValueError(f"delivery step {step} cannot lead to {status}")
    return status


def as_reported(status: DeliveryStatus) -> DeliveryStatus:
    """The status reports and scripts show (DESIGN.md): a send still under way, or whose
    outcome is being found out, is pending."""
    return PENDING if status in (SENDING, UNKNOWN) else status
