"""Twilio's status callbacks: delivered / undelivered / failed for a message we sent.

A callback is verified before anything in it is believed: the signature (HMAC with the auth
token over the exact callback URL and every form field), then that it is for our account,
then that each value is of the shape Twilio gives it. Only then is it applied.

Each message's callback URL names its delivery (``?delivery=ID``, see ``sms``), and that row
is saved before the request goes out, so a callback that comes before the dispatcher has
recorded the MessageSid still finds its row and is applied at once: nothing is parked, and
nothing waits for the send's own record (which keeps a status the callback set). Callbacks
for messages sent before the URL named the delivery are matched by MessageSid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from urllib.parse import parse_qsl

from sqlalchemy import Update, bindparam, func, or_, update
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator

from notifications.delivery_states import (
    DELIVERED,
    FAILED,
    NOT_DELIVERED,
    SENT,
    UNDELIVERED,
    Step,
    may_take,
    to,
)
from notifications.metrics import CALLBACK_LAG
from notifications.sms import DELIVERY_PARAM, PERMANENT_CODES, STATUS_PATH
from store.models import MAX_ID, Delivery

# Twilio's status → ours, and the step of the delivery state machine it takes (which of
# ours it may replace).
MAPPED = {status.value: status for status in (SENT, DELIVERED, UNDELIVERED, FAILED)}
STEP = {
    SENT: Step.CALLBACK_SENT,
    DELIVERED: Step.CALLBACK_FINAL,
    UNDELIVERED: Step.CALLBACK_FINAL,
    FAILED: Step.CALLBACK_FINAL,
}
# Every MessageStatus Twilio documents; the ones not in MAPPED record nothing.
KNOWN_STATUSES = frozenset(
    {
        "accepted",
        "scheduled",
        "canceled",
        "queued",
        "sending",
        "sent",
        "failed",
        "delivered",
        "undelivered",
        "receiving",
        "received",
        "read",
        "partially_delivered",
    }
)
MESSAGE_SID = re.compile(r"(SM|MM)[0-9a-f]{32}")
# Twilio's error codes have five digits; error_code is a String(32).
ERROR_CODE = re.compile(r"[0-9]{1,8}")
DELIVERY_QUERY = re.compile(DELIVERY_PARAM + r"=([1-9][0-9]{0,9})")


class Refused(Exception):
    """Not applied: ``status_code`` for the answer, ``reason`` for it and the log (short,
    never anything the request contained)."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


@dataclass(frozen=True)
class Callback:
    """A verified callback's values, each in the shape Twilio gives it."""

    sid: str
    status: str
    error_code: str | None
    delivery_id: int | None  # None: sent before callback URLs named the delivery


class _Form(dict[str, list[str]]):
    """Form fields with every value; RequestValidator signs repeated fields through getall."""

    def getall(self, name: str) -> list[str]:
        return self[name]


def _form(body: bytes, errors: str) -> _Form:
    """``errors="strict"`` raises UnicodeDecodeError for a body or escape that is not UTF-8."""
    form = _Form()
    text = body.decode("utf-8", errors)
    for name, value in parse_qsl(text, keep_blank_values=True, errors=errors):
        form.setdefault(name, []).append(value)
    return form


def verify(
    *,
    body: bytes,
    query: str,
    signature: str | None,
    auth_token: str | None,
    account_sid: str | None,
    public_url: str,
) -> Callback:
    """The callback in ``body`` (the raw form) as Twilio sent it to ``PUBLIC_URL/twilio/status
    ?query``, or ``Refused``: 401 unless Twilio signed exactly this, 403 for another account,
    400 for values Twilio would not send."""
    if not auth_token or not account_sid:
        raise Refused(401, "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set here")
    if not signature:
        raise Refused(401, "no X-Twilio-Signature")
    # Decoded leniently only to check the signature: any body that is not what Twilio signed
    # is refused as unsigned, whatever it holds.
    url = public_url.rstrip("/") + STATUS_PATH + (f"?{query}" if query else "")
    if not RequestValidator(auth_token).validate(url, _form(body, "replace"), signature):
        raise Refused(401, "X-Twilio-Signature does not match")

    try:
        form = _form(body, "strict")
    except UnicodeDecodeError:
        raise Refused(400, "the form is not UTF-8") from None
    if any(len(values) > 1 for values in form.values()):
        raise Refused(400, "a form field is repeated")
    fields = {name: values[0] for name, values in form.items()}
    if fields.get("AccountSid") != account_sid:
        raise Refused(403, "AccountSid is not this account's (TWILIO_ACCOUNT_SID)")
    delivery = DELIVERY_QUERY.fullmatch(query) if query else None
    if query and (delivery is None or int(delivery.group(1)) > MAX_ID):
        raise Refused(400, f"the callback URL's query is not {DELIVERY_PARAM}=ID")
    sid = fields.get("MessageSid") or fields.get("SmsSid") or ""
    if not MESSAGE_SID.fullmatch(sid):
        raise Refused(400, "MessageSid is not SM or MM and 32 hex digits")
    status = fields.get("MessageStatus") or fields.get("SmsStatus") or ""
    if status not in KNOWN_STATUSES:
        raise Refused(400, "MessageStatus is not one of Twilio's")
    code = fields.get("ErrorCode") or None
    if code is not None and not ERROR_CODE.fullmatch(code):
        raise Refused(400, "ErrorCode is not a Twilio error code (1 to 8 digits)")
    return Callback(
        sid=sid,
        status=status,
        error_code=code,
        delivery_id=int(delivery.group(1)) if delivery else None,
    )


def apply_all(*, db_session: Session, callbacks: list[Callback], now: datetime) -> list[int | None]:
    """``apply`` for each callback of a batch, in one transaction: the notice of each.

    Rows are taken in the order of their ids, as every batch that changes deliveries takes
    them (the senders' records too), so that two batches on PostgreSQL never wait for each
    other in a circle (a deadlock, which fails one of them). A callback matched by its SID
    alone (sent before URLs named the delivery) comes last; callbacks for one row keep the
    order they came in."""

    def row_order(i: int) -> int:
        delivery_id = callbacks[i].delivery_id
        return delivery_id if delivery_id is not None else 1 << 63

    notices: list[int | None] = [None] * len(callbacks)
    for i in sorted(range(len(callbacks)), key=row_order):
        notices[i] = apply(db_session=db_session, callback=callbacks[i], now=now)
    return notices


@cache
def _update(step: Step, by_delivery: bool) -> Update:
    """The UPDATE a callback of ``step`` makes, its values bound when it runs. Built once:
    callbacks come two or three for every SMS, and building the statement cost many times
    what SQLite takes to run it."""
    sid = bindparam("sid")
    values = {
        "status": bindparam("new_status"),
        "updated_at": bindparam("now"),
        "error_code": bindparam("code"),
        "error_message": bindparam("message"),
    }
    if by_delivery:
        # Another SID on the row is another message for it (a resend after an unclear
        # outcome): its callbacks do not speak for the one recorded.
        row = (Delivery.id == bindparam("delivery_id")) & or_(
            Delivery.provider_id.is_(None), Delivery.provider_id == sid
        )
        values["provider_id"] = func.coalesce(Delivery.provider_id, sid)
    else:
        row = Delivery.provider_id == sid
    return (
        update(Delivery)
        .where(row, may_take(step))
        .values(**values)
        .returning(Delivery.notice_id, Delivery.sent_at)
    )


def apply(*, db_session: Session, callback: Callback, now: datetime) -> int | None:
    """Record a verified callback; the notice it concerns, if its delivery changed."""
    ours = MAPPED.get(callback.status)
    if ours is None:
        return None  # queued, sending, accepted …: nothing to record
    step = STEP[ours]
    params: dict[str, object] = {
        "new_status": to(step, ours),
        "now": now,
        "sid": callback.sid,
        "delivery_id": callback.delivery_id,
        # Twilio has the message: an 'unknown' outcome's error (a sweep's, or no answer) no
        # longer holds, as when the send's own record or reconciliation says 'sent'.
        "code": None,
        "message": None,
    }
    if ours in NOT_DELIVERED:
        code = callback.error_code
        reason = PERMANENT_CODES.get(int(code)) if code else None
        params["code"] = code
        params["message"] = f"{reason or 'not delivered'} (Twilio {code or ours})"
    statement = _update(step, by_delivery=callback.delivery_id is not None)
    changed = db_session.connection().execute(statement, params).first()
    if changed is None:
        return None
    if changed.sent_at is not None:
        CALLBACK_LAG.observe(max((now - changed.sent_at).total_seconds(), 0.0))
    return changed.notice_id
