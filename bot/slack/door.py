"""What `POST /slack/events` takes in before Bolt sees a request.

In this order, each step before anything of the next is done: the body is read up to
``MAX_BODY`` (413), its signature is checked on the raw bytes (401), then it is decoded and
parsed, and its shape checked against what Slack sends and Bolt reads without checking
(400). Only a verified, well-formed request is remembered (``first_time``) and handed on.
Nothing a refused request contains is logged, acted on or answered anywhere but in its
own HTTP response.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import Engine, delete, insert
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request

from store.models import SeenSlackRequest

# Far above any payload of Slack's: the limit keeps a hostile body from being buffered.
MAX_BODY = 1024 * 1024
# Slack's rule: a request signed more than five minutes from now is refused.
WINDOW = timedelta(minutes=5)
# Seen requests are kept twice the window, so that a process whose clock runs a little
# ahead never forgets a request that another process sharing the database would still
# accept as fresh.
KEEP = 2 * WINDOW
PRUNE_EVERY = timedelta(minutes=1)

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_EVENT_ID = re.compile(r"[A-Za-z0-9]{1,64}")
# Characters no Slack text contains and neither database stores (PostgreSQL refuses NUL,
# both refuse lone surrogates as UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
# The kinds of request examdesk handles (manifest.yml); Slack sends this app no others.
# block_suggestion: a form's test picker asking for options as the user types.
KINDS = frozenset(
    {"url_verification", "event_callback", "block_actions", "view_submission", "block_suggestion"}
)

# Keys Bolt and the listeners read wherever they occur, and the JSON types Slack sends
# under them. Bolt indexes into these without checking, so another type would end in a
# traceback instead of an answer.
_IDENTITIES = ("team", "user", "channel", "enterprise")  # an id, or an object with one
_OBJECTS = (
    "view",
    "container",
    "message",
    "previous_message",
    "item",
    "assistant_thread",
    "function_data",
    "workflow_step",
    "state",
)
_LISTS = ("actions", "authorizations", "response_urls")
_TEXTS = (
    "type",
    "team_id",
    "user_id",
    "channel_id",
    "enterprise_id",
    "response_url",
    "trigger_id",
    "command",
    "callback_id",
    "private_metadata",
    "action_id",
    "block_id",
    "value",
    "thread_ts",
    "ts",
    "bot_id",
    "subtype",
    "tab",
    "channel_type",
    "user_team",
    "function_execution_id",
    "bot_access_token",
    "app_installed_team_id",
    "context_team_id",
    "context_enterprise_id",
)


class Refused(Exception):
    """The request is answered with ``status`` and ``reason`` (our words, never its own)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Signed:
    timestamp: int
    signature: str

    @property
    def signed_at(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp, UTC)


async def read_body(request: Request) -> bytes:
    """The body, refused (413) as soon as it is known to exceed ``MAX_BODY``: from its
    Content-Length before reading, else while it streams in."""
    declared = request.headers.get("content-length")
    # A long Content-Length is too large as it is (and int() refuses very long ones).
    if (
        declared
        and declared.isascii()
        and declared.isdigit()
        and (len(declared) > 9 or int(declared) > MAX_BODY)
    ):
        raise _too_large()
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise _too_large()
            chunks.append(chunk)
    except ClientDisconnect:
        raise Refused(400, "the client went away before the body was complete") from None
    return b"".join(chunks)


def _too_large() -> Refused:
    return Refused(413, f"a Slack request is at most {MAX_BODY} bytes")


def verify(secret: str, raw: bytes, headers: Headers, *, now: datetime) -> Signed:
    """Slack's v0 signature over ``v0:{timestamp}:{raw body}``, within ``WINDOW`` of now.

    Computed on the bytes as they came: slack_sdk's SignatureVerifier decodes the body as
    UTF-8 first, which raises on bytes that are not, before anything is verified.
    """
    timestamp = headers.get("x-slack-request-timestamp")
    signature = headers.get("x-slack-signature")
    if timestamp is None or signature is None:
        raise Refused(401, "X-Slack-Request-Timestamp and X-Slack-Signature are required")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise Refused(401, "X-Slack-Request-Timestamp is not a Unix time in seconds")
    if abs(now.timestamp() - int(timestamp)) > WINDOW.total_seconds():
        raise Refused(401, "the request is older than 5 minutes, or from the future")
    base = b"v0:" + timestamp.encode() + b":" + raw
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    # Header values arrive decoded as Latin-1; encoded back they are the bytes sent.
    if not hmac.compare_digest(expected.encode(), signature.encode("latin-1")):
        raise Refused(401, "the signature does not match")
    return Signed(timestamp=int(timestamp), signature=expected)


def parse(raw: bytes, content_type: str | None) -> dict[str, Any]:
    """The payload as Slack sends it: a form (slash commands), a form whose ``payload`` is
    JSON (interactivity) or JSON (events), checked against what Slack sends."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "the body is not UTF-8") from None
    media = (content_type or "").split(";")[0].strip().lower()
    if media == FORM:
        form = dict(parse_qsl(text, keep_blank_values=True))
        if "payload" in form:
            body = _json_object(form["payload"])
            _check_payload(body)
        else:
            body = form
            _check_form(form)
    elif media == JSON:
        body = _json_object(text)
        _check_payload(body)
    else:
        raise Refused(400, f"the Content-Type is neither {FORM} nor {JSON}")
    _check_values(body)
    return body


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise Refused(400, "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise Refused(400, "the JSON body is not an object")
    return value


def _check_form(form: dict[str, str]) -> None:
    if form.get("ssl_check") == "1":
        return
    if "command" not in form:
        raise Refused(400, "a form body is a slash command, and this one has no command")
    if "type" in form or any(key in form for key in (*_OBJECTS, *_LISTS, "event")):
        raise Refused(400, "a slash command carries none of the fields of other requests")


def _check_payload(body: dict[str, Any]) -> None:
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in KINDS:
        raise Refused(400, "not a kind of Slack request examdesk handles")
    if "command" in body:
        # Slack sends slash commands as a form: their listeners read every field as text.
        raise Refused(400, "a slash command comes as a form, not as JSON")
    if kind == "event_callback":
        event = body.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise Refused(400, "an event_callback without an event object and its type")
        event_id = body.get("event_id")
        if event_id is not None and not (
            isinstance(event_id, str) and _EVENT_ID.fullmatch(event_id)
        ):
            raise Refused(400, "the event_id is not a Slack event id")
    elif kind == "view_submission":
        _check_view(body.get("view"))
    elif "event" in body:
        raise Refused(400, f"a {kind} request carries no event")


def _check_view(view: Any) -> None:
    if not (
        isinstance(view, dict)
        and isinstance(view.get("type"), str)
        and isinstance(view.get("callback_id"), str)
    ):
        raise Refused(400, "a view_submission without a view, its type and callback_id")


def _check_values(body: dict[str, Any]) -> None:
    """Every object anywhere in the body: Slack's types under the keys Bolt reads, and text
    that can be stored."""
    stack: list[Any] = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                raise Refused(400, "the body holds NUL or unpaired surrogate characters")
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            _check_object(item)
            for key, value in item.items():
                stack.append(key)
                if key == "state" and isinstance(value, dict):
                    stack.extend(_state_parts(value))
                else:
                    stack.append(value)


def _state_parts(state: dict[str, Any]) -> list[Any]:
    """A form's state with its ids as plain text: under ``values`` the keys are the app's
    block and action ids (an action may be called "value"), not Slack's field names."""
    values = state.get("values", {})
    if not isinstance(values, dict) or not all(
        isinstance(block, dict) and all(isinstance(action, dict) for action in block.values())
        for block in values.values()
    ):
        raise Refused(400, "a form's state is not {block: {action: {value}}}")
    parts: list[Any] = [key for key in state if key != "values"]
    parts += [value for key, value in state.items() if key != "values"]
    for block_id, block in values.items():
        parts.append(block_id)
        for action_id, action in block.items():
            parts += [action_id, action]
    return parts


def _check_object(item: dict[str, Any]) -> None:
    for key in _IDENTITIES:
        value = item.get(key)
        if isinstance(value, dict):
            value = value.get("id")
        if value is not None and not isinstance(value, str):
            raise Refused(400, f"'{key}' is neither an id nor an object with one")
    if "event" in item and not isinstance(item["event"], dict):
        raise Refused(400, "'event' is not an object")
    for key in _OBJECTS:
        if item.get(key) is not None and not isinstance(item[key], dict):
            raise Refused(400, f"'{key}' is not an object")
    for key in _LISTS:
        value = item.get(key)
        # Present means a list: Bolt takes len() of response_urls, so null is refused too.
        if key in item and not (
            isinstance(value, list) and all(isinstance(entry, dict) for entry in value)
        ):
            raise Refused(400, f"'{key}' is not a list of objects")
    for key in _TEXTS:
        if item.get(key) is not None and not isinstance(item[key], str):
            raise Refused(400, f"'{key}' is not text")


# ---------------------------------------------------------------- replays and retries


def seen_keys(signed: Signed, body: dict[str, Any]) -> list[str]:
    """What identifies the request: its signature, which covers the timestamp and the
    body; for an event also its id, which Slack keeps when it retries (re-signed)."""
    keys = [signed.signature]
    if body.get("type") == "event_callback" and body.get("event_id"):
        keys.append(f"event:{body['event_id']}")
    return keys


def first_time(engine: Engine, keys: list[str], *, signed_at: datetime, now: datetime) -> bool:
    """Remember ``keys``; False when any of them was seen before, by any process sharing
    the database. Rows past ``KEEP`` are deleted in the same transaction, at most every
    ``PRUNE_EVERY`` in this process."""
    global _pruned_at
    prune = time.monotonic() - _pruned_at >= PRUNE_EVERY.total_seconds()
    try:
        with engine.begin() as conn:
            if prune:
                conn.execute(delete(_seen).where(_seen.c.signed_at < now - KEEP))
            for key in keys:
                conn.execute(insert(_seen).values(key=key, signed_at=signed_at))
    except IntegrityError:
        # Seen already: nothing of this transaction is kept, and nothing more was needed.
        return False
    if prune:
        _pruned_at = time.monotonic()
    return True


_seen = SeenSlackRequest.__table__
_pruned_at = -math.inf
