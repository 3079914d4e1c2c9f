"""Slack posts from the outbox: chat.postMessage, thread replies and chat.update.

Slack's answers sort into: accepted; worth another try (no connection, HTTP 429 with its
``Retry-After``, 5xx, ``ratelimited`` and Slack's own internal errors); and permanent
(``channel_not_found``, ``not_in_channel``, ``invalid_auth`` and every other ``ok: false``),
kept with Slack's reason. Each post carries its outbox id in its message metadata, so that
after a sender died mid-request the channel's history tells whether the post arrived.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from notifications.outbox import SLACK_POST, Outgoing
from notifications.transports import OutcomeUnknown, TransportError
from store import clock

log = logging.getLogger(__name__)

METADATA_TYPE = "examdesk_outbox"
# A file to a user, as a direct message: slack_sdk's files_upload_v2 (three Web API calls).
FILE_UPLOAD = "files.upload_v2"
# ok: false errors that pass by themselves; every other one needs a person.
TRANSIENT = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# A layout the Slack app draws at sending time (the change log): name → args of the call.
Renderer = Callable[[dict[str, Any]], dict[str, Any]]
# The renderer every post's arguments pass last: the Slack app's fit to Slack's limits.
FIT = "_fit"


class SlackTransport:
    kind = SLACK_POST
    logs_only = False
    can_look_up = True
    resend_safe = False
    # A Slack outage of a day still ends with every post in the channel.
    retry_for = timedelta(hours=24)

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        timeout: float = 10,
        renderers: Mapping[str, Renderer] | None = None,
    ) -> None:
        # No retry handlers: whether and when to try again is the outbox's decision.
        self.client = WebClient(base_url=base_url, token=token, timeout=timeout, retry_handlers=[])
        self.renderers = dict(renderers or {})

    def call(self, message: Outgoing) -> tuple[str, dict[str, Any]]:
        """The Web API method and its arguments for ``message``."""
        payload = message.payload
        args = _rendered(payload, self.renderers)
        args.setdefault("channel", message.target)
        method = payload.get("method", "chat.postMessage")
        for name, field in (("thread_of", "thread_ts"), ("update_of", "ts")):
            key = payload.get(name)
            if not key:
                continue
            answer = message.refers_to.get(key)
            if not answer:
                # The post this one refers to was not (yet) made: its queue holds this back
                # until it is, so here it failed for good.
                raise TransportError(
                    f"the Slack post it refers to ({key}) was never made",
                    permanent=True,
                    code="no_parent",
                )
            args[field] = answer["ts"]
            args["channel"] = answer["channel"]
        if method == "chat.postMessage":
            args["metadata"] = {
                "event_type": METADATA_TYPE,
                "event_payload": {"outbox_id": message.id},
            }
        return method, args

    def send(self, message: Outgoing) -> dict[str, Any] | None:
        method, args = self.call(message)
        try:
            if method == FILE_UPLOAD:
                return self._upload(args)
            response = self.client.api_call(method, json=args)
        except SlackApiError as error:
            raise classified(error) from error
        except SlackRequestError as error:  # the file's own upload step failed
            raise TransportError(
                f"Slack did not take the file: {error}", permanent=False, code="upload"
            ) from error
        except URLError as error:
            raise TransportError(
                f"cannot reach Slack: {error.reason}", permanent=False, code="connect"
            ) from error
        except OSError as error:
            # Timed out or cut off after the request went out: it may have been posted.
            raise OutcomeUnknown(f"no answer from Slack: {error!r}") from error
        return {"channel": response.get("channel", args["channel"]), "ts": response.get("ts")}

    def _upload(self, args: dict[str, Any]) -> dict[str, Any]:
        """The file into the direct message with the user the row is for."""
        opened = self.client.api_call("conversations.open", json={"users": args["channel"]})
        channel = opened["channel"]["id"]
        uploaded = self.client.files_upload_v2(
            channel=channel,
            filename=args["filename"],
            title=args.get("title"),
            content=args["content"],
            initial_comment=args.get("initial_comment"),
        )
        return {"channel": channel, "file": (uploaded.get("file") or {}).get("id")}

    def find_sent(self, message: Outgoing) -> dict[str, Any] | None:
        method, args = self.call(message)
        if method != "chat.postMessage":
            return None  # an update made twice shows the same: make it again
        # Slack's timestamps are real time; ours may run shifted (tests).
        oldest = clock.wall(message.created_at) - timedelta(minutes=1)
        query: dict[str, Any] = {
            "channel": args["channel"],
            "oldest": f"{oldest.timestamp():.6f}",
            "include_all_metadata": True,
            "limit": 200,
        }
        if "thread_ts" in args:
            found = self.client.api_call(
                "conversations.replies", params=query | {"ts": args["thread_ts"]}
            )
        else:
            found = self.client.api_call("conversations.history", params=query)
        for posted in found.get("messages") or []:
            metadata = posted.get("metadata") or {}
            if (
                metadata.get("event_type") == METADATA_TYPE
                and (metadata.get("event_payload") or {}).get("outbox_id") == message.id
            ):
                return {"channel": args["channel"], "ts": posted.get("ts")}
        return None


def _rendered(payload: dict[str, Any], renderers: Mapping[str, Renderer]) -> dict[str, Any]:
    args = dict(payload.get("args") or {})
    name = payload.get("render")
    if name:
        if name not in renderers:
            # A notifier started without the Slack app's layouts: one that has them sends it.
            raise TransportError(
                f"this notifier cannot draw {name!r} posts", permanent=False, code="no_layout"
            )
        args |= renderers[name](payload.get("data") or {})
    return renderers[FIT](args) if FIT in renderers else args


def classified(error: SlackApiError) -> TransportError:
    """What Slack's refusal means: worth another try (and when) or not."""
    response = error.response
    status = response.status_code
    code = response.get("error") if isinstance(response.data, dict) else None
    if status == 429 or code == "ratelimited":
        retry_after = _seconds(
            response.headers.get("Retry-After") or response.headers.get("retry-after")
        )
        return TransportError(
            f"Slack asked to slow down (HTTP {status})",
            permanent=False,
            code="ratelimited",
            retry_after=retry_after,
        )
    if status >= 500:
        return TransportError(f"Slack answered HTTP {status}", permanent=False, code=str(status))
    code = code or f"http_{status}"
    return TransportError(f"Slack answered {code!r}", permanent=code not in TRANSIENT, code=code)


def _seconds(value: Any) -> float | None:
    if isinstance(value, list):  # some clients keep each header as a list
        value = value[0] if value else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class SlackLogTransport:
    """NOT SLACK: without SLACK_BOT_TOKEN the posts are written to the log, and their rows
    say `logged`."""

    kind = SLACK_POST
    logs_only = True
    can_look_up = False
    resend_safe = False
    retry_for = timedelta(hours=24)

    def __init__(self, renderers: Mapping[str, Renderer] | None = None) -> None:
        self.renderers = dict(renderers or {})

    def send(self, message: Outgoing) -> dict[str, Any] | None:
        args = _rendered(message.payload, self.renderers)
        log.warning(
            "Slack not configured, logged instead of posted to %s: %s",
            message.target,
            args.get("text", ""),
        )
        return None

    def find_sent(self, message: Outgoing) -> dict[str, Any] | None:
        raise NotImplementedError("the log cannot be asked")
