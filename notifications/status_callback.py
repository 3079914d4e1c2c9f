"""Twilio's status callbacks: delivered / undelivered / failed for a message we sent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator

from notifications.sms import PERMANENT_CODES, STATUS_PATH
from store.models import Delivery

# Twilio's status → ours, and which of ours each may replace. A final status is never
# replaced, and 'sent' never replaces a final one, so repeated and out-of-order callbacks
# change nothing they should not.
MAPPED = {s: s for s in ("sent", "delivered", "undelivered", "failed")}
REPLACES = {
    "sent": ("sending", "unknown"),
    "delivered": ("sending", "unknown", "sent"),
    "undelivered": ("sending", "unknown", "sent"),
    "failed": ("sending", "unknown", "sent"),
}


@dataclass(frozen=True)
class Outcome:
    status_code: int
    notice_id: int | None = None


def callback_url(public_url: str) -> str:
    return public_url.rstrip("/") + STATUS_PATH


def is_signed(*, auth_token: str, url: str, params: Mapping[str, str], signature: str) -> bool:
    return bool(signature) and RequestValidator(auth_token).validate(url, dict(params), signature)


def apply(*, db_session: Session, params: Mapping[str, str], now: datetime) -> int | None:
    """Apply one (already validated) callback; the notice it concerns, if any changed."""
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    ours = MAPPED.get((params.get("MessageStatus") or params.get("SmsStatus") or "").lower())
    if not sid or ours is None:
        return None  # queued, sending, accepted …: nothing to record
    values: dict[str, object] = {"status": ours, "updated_at": now}
    code = params.get("ErrorCode")
    if ours in ("undelivered", "failed"):
        values["error_code"] = code or None
        # isascii: str.isdigit() also accepts "²", which int() refuses.
        known = code is not None and code.isascii() and code.isdigit()
        reason = PERMANENT_CODES.get(int(code)) if known else None
        values["error_message"] = f"{reason or 'not delivered'} (Twilio {code or ours})"
    changed = db_session.execute(
        update(Delivery)
        .where(Delivery.provider_id == sid, Delivery.status.in_(REPLACES[ours]))
        .values(**values)
    ).rowcount
    if not changed:
        return None
    return db_session.scalar(select(Delivery.notice_id).where(Delivery.provider_id == sid))


def handle(
    *,
    db_session: Session,
    auth_token: str | None,
    public_url: str,
    params: Mapping[str, str],
    signature: str | None,
    now: datetime,
) -> Outcome:
    """403 and nothing changed unless Twilio signed exactly these parameters for our URL."""
    if not auth_token or not is_signed(
        auth_token=auth_token,
        url=callback_url(public_url),
        params=params,
        signature=signature or "",
    ):
        return Outcome(403)
    return Outcome(200, apply(db_session=db_session, params=params, now=now))
