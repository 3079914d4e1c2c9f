"""Requests exactly as Slack sends them: form or JSON bodies signed with v0 HMAC-SHA256."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

import httpx

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM = "T1"


def signature(secret: str, timestamp: str, body: str | bytes) -> str:
    raw = body.encode() if isinstance(body, str) else body
    base = f"v0:{timestamp}:".encode() + raw
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(
    body: str | bytes, *, secret: str = SECRET, timestamp: int | None = None, content_type: str
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature(secret, ts, body),
    }


def slash_command(command: str, text: str, *, user: str, response_url: str) -> str:
    return urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": TEAM,
            "team_domain": "exams",
            "channel_id": "C0HELPDESK",
            "channel_name": "exam-help",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A0EXAMDESK",
            "response_url": response_url,
            "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        }
    )


def block_action(
    action_id: str,
    value: str,
    *,
    user: str,
    response_url: str,
    channel: str | None = None,
) -> str:
    """A button click: on an ephemeral reply, or on a message in ``channel`` when given."""
    container = (
        {"type": "message", "message_ts": "1.0", "channel_id": channel}
        if channel
        else {"type": "message", "message_ts": "1700000000.000100", "is_ephemeral": True}
    )
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "exams"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "api_app_id": "A0EXAMDESK",
        "token": "deprecated-verification-token",
        "container": container,
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "channel": {"id": channel or "C0HELPDESK", "name": "exam-support"},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": "examdesk_confirmation",
                "type": "button",
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def event_callback(event: dict[str, Any]) -> str:
    return json.dumps(
        {
            "token": "deprecated-verification-token",
            "team_id": TEAM,
            "api_app_id": "A0EXAMDESK",
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{int(time.time() * 1000)}",
            "event_time": int(time.time()),
        }
    )


class SlackSender:
    """Posts to the app's /slack/events as Slack would."""

    def __init__(self, base_url: str, *, secret: str = SECRET) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.secret = secret

    def post(self, body: str, *, json_body: bool = False, timestamp: int | None = None):
        content_type = "application/json" if json_body else "application/x-www-form-urlencoded"
        headers = signed_headers(
            body, secret=self.secret, timestamp=timestamp, content_type=content_type
        )
        return self.http.post("/slack/events", content=body, headers=headers)

    def command(self, command: str, text: str, *, user: str, response_url: str):
        return self.post(slash_command(command, text, user=user, response_url=response_url))

    def click(self, action_id: str, value: str, *, user: str, response_url: str):
        return self.post(block_action(action_id, value, user=user, response_url=response_url))

    def event(self, event: dict[str, Any]):
        return self.post(event_callback(event), json_body=True)

    def close(self) -> None:
        self.http.close()
