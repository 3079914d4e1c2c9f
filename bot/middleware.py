"""Bolt middleware and the one error handler (Dispatch style).

The middleware puts what every listener needs into Bolt's context: ``deps`` and the acting
user (``actor``, the Slack user id that the core checks, R15). The database session is the
core's: each command opens its own unit of work (``commands.runner.in_transaction``), so it
is applied whole or not at all, and one that only reads can start as read-only.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltContext, BoltResponse

from bot import blocks
from bot.deps import Deps

log = logging.getLogger(__name__)


def install(app: App, deps: Deps) -> None:
    app.use(request_context(deps))
    app.error(error_handler(deps))


def request_context(deps: Deps) -> Callable[..., Any]:
    def attach(context: BoltContext, next: Callable[[], Any]) -> Any:
        context["deps"] = deps
        context["actor"] = context.user_id
        return next()

    return attach


def error_handler(deps: Deps) -> Callable[..., BoltResponse]:
    def handle(error: Exception, body: dict[str, Any]) -> BoltResponse:
        reference = secrets.token_hex(4)
        log.error(
            "unexpected error %s handling %s from %s",
            reference,
            body.get("command") or body.get("type") or "a request",
            _user(body),
            exc_info=error,
        )
        message = blocks.unexpected_error(reference)
        if body.get("command"):
            # A slash command's acknowledgement is shown to the user: answer right there.
            return _json({"response_type": "ephemeral", **message})
        if body.get("response_url"):
            deps.respond(
                body["response_url"],
                response_type="ephemeral",
                replace_original=False,
                **message,
            )
        return BoltResponse(status=200, body="")

    return handle


def _user(body: dict[str, Any]) -> str:
    user = body.get("user")
    return user.get("id", "?") if isinstance(user, dict) else body.get("user_id", "?")


def _json(payload: dict[str, Any]) -> BoltResponse:
    return BoltResponse(
        status=200,
        body=json.dumps(payload),
        headers={"content-type": "application/json;charset=utf-8"},
    )
