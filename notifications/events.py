"""Events for the exam platform: every change record, signed as Standard Webhooks says,
POSTed to each of WEBHOOK_URLS through the outbox (docs/events.md).

Each event is one outbox row per URL, queued per receiver and test, so a receiver gets a
test's events in order, each retried with the same ``webhook-id`` until it answers 2xx, for
at least 24 hours. The body is stored as sent, so every try signs the very same bytes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import requests
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from notifications.outbox import WEBHOOK, Outgoing, enqueue, webhook_order_key
from notifications.transports import OutcomeUnknown, TransportError
from store import clock

log = logging.getLogger(__name__)

# The change record's action → the event's type.
TYPES = {
    "incident_time_add": "incident_time.changed",
    "incident_time_subtract": "incident_time.changed",
    "incident_time_set": "incident_time.changed",
    "reopen": "reopening.opened",
    "close_current": "reopening.closed",
    "close_reverted": "reopening.closed",
    "auto_deliver": "answer.delivered",
    "auto_deliver_reopened": "answer.delivered",
    "deliver_file": "answer.delivered",
    "notice_sent": "notice.sent",
    "registry_test": "registry.refreshed",
    "registry_candidates": "registry.refreshed",
    "question_error_reported": "question_error.reported",
    "question_error_edited": "question_error.edited",
    "question_error_rejected": "question_error.rejected",
    "staff_add": "staff.added",
    "staff_remove": "staff.removed",
    "retention_purge": "contact_data.erased",
}


def event_type(action: str) -> str:
    """The event type of a change record's action; an action not listed keeps its name."""
    return TYPES.get(action, f"change.{action}")


def event(
    *,
    action: str,
    at: datetime,
    test_code: str | None,
    actor: str,
    reason: str,
    candidates: list[dict[str, Any]],
    change_id: int,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The event of one change record (docs/events.schema.json)."""
    data: dict[str, Any] = {
        "test": test_code,
        "actor": actor,
        "reason": reason,
        "action": action,
        "change_id": change_id,
        "candidates": candidates,
    }
    if details:
        data["details"] = details
    return {"type": event_type(action), "timestamp": _iso(at), "data": data}


def enqueue_event(
    db_session: Session, *, webhook_urls: Sequence[str], body: dict[str, Any]
) -> None:
    """One outbox row per receiver; nothing when WEBHOOK_URLS is empty."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str)
    test_code = body["data"].get("test")
    for url in webhook_urls:
        enqueue(
            db_session,
            kind=WEBHOOK,
            target=url,
            payload={"id": f"msg_{body['data']['change_id']}", "body": text},
            order_key=webhook_order_key(url, test_code),
        )


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


class WebhookTransport:
    kind = WEBHOOK
    logs_only = False
    can_look_up = False
    # The receiver recognises a second try by its webhook-id (Standard Webhooks).
    resend_safe = True
    retry_for = timedelta(hours=24)

    def __init__(self, secret: str, *, timeout: float = 10) -> None:
        self.signer = Webhook(secret)
        self.timeout = timeout
        self.session = requests.Session()

    def headers(self, message: Outgoing) -> dict[str, str]:
        # Receivers check the timestamp against their real clock: ours may run shifted.
        sent_at = clock.wall(clock.now())
        msg_id, body = message.payload["id"], message.payload["body"]
        return {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": self.signer.sign(msg_id, sent_at, body),
            "user-agent": "examdesk-webhooks",
        }

    def send(self, message: Outgoing) -> dict[str, Any] | None:
        try:
            response = self.session.post(
                message.target,
                data=message.payload["body"].encode(),
                headers=self.headers(message),
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.ConnectionError as error:
            # No connection, or cut off while waiting: a resend with the same webhook-id
            # is harmless either way.
            raise TransportError(
                f"cannot reach the receiver: {type(error).__name__}",
                permanent=False,
                code="connect",
            ) from error
        except requests.Timeout as error:
            raise OutcomeUnknown(f"the receiver did not answer in {self.timeout:g} s") from error
        status = response.status_code
        if 200 <= status < 300:
            return {"status": status}
        retry_after = _seconds(response.headers.get("Retry-After"))
        # 408 and 429 ask for another try; 5xx are the receiver's trouble, not the event's.
        transient = status in (408, 409, 425, 429) or status >= 500
        raise TransportError(
            f"the receiver answered HTTP {status}",
            permanent=not transient,
            code=f"http_{status}",
            retry_after=retry_after if transient else None,
        )

    def find_sent(self, message: Outgoing) -> dict[str, Any] | None:
        raise NotImplementedError("a receiver cannot be asked; a resend is harmless")


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
