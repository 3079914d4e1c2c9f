"""Bolt middleware and the one error handler (Dispatch style).

The first middleware refuses, in plain words, a request that lacks what every listener
relies on: who sent it, and for a button press which button. The next puts what every
listener needs into Bolt's context: ``deps`` and the acting user (``actor``, the Slack user
id that the core checks, R15), and chooses the language everything after it is worded in
(``bot.slack.language``). The database session is the core's: each command opens its
own unit of work (``commands.runner.in_transaction``), so it is applied whole or not at all,
and one that only reads can start as read-only.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltContext, BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware

from bot.deps import Deps
from bot.slack.language import SlackLocales, language_for
from bot.slack.views import blocks, forms
from commands.language import choose

log = logging.getLogger(__name__)

# Set in the context once Bolt's own checks (signature, authorization) have passed and ours
# have: only then may the error handler answer through the request's response_url.
CHECKED = "examdesk_checked"
USER_ID = re.compile(r"[A-Z0-9]{1,32}")  # Slack's user ids: U…, W…
# Said before the sender is checked, so before their language is known: in English.
NO_USER = "Slack did not say who sent this, so examdesk did nothing. Please try again."
NO_BUTTON = (
    "This button press came without the button's details, so nothing was changed. "
    "Run the command again to get new buttons."
)


def install(app: App, deps: Deps) -> None:
    app.use(RequestCheck(deps))
    app.use(request_context(deps, SlackLocales(deps.settings)))
    app.error(error_handler(deps))


class RequestCheck(Middleware):
    """A Middleware object, not a function: Bolt hands a function listener-style arguments,
    and building those indexes into the payload (the first action) before any check."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse:
        body = req.body
        # Before the sender is known (and in a thread that served someone else): English.
        choose(None)
        problem = _problem(body, req.context.user_id)
        if problem is None:
            req.context[CHECKED] = True
            return next()
        log.warning("Slack request refused: %s", problem)
        if "command" in body:
            return _json({"response_type": "ephemeral", "text": problem})
        response_url = body.get("response_url")
        if body.get("type") == "block_actions" and isinstance(response_url, str):
            self.deps.respond(
                response_url, response_type="ephemeral", replace_original=False, text=problem
            )
        return BoltResponse(status=200, body="")


def _problem(body: dict[str, Any], user_id: object) -> str | None:
    if not (isinstance(user_id, str) and USER_ID.fullmatch(user_id)):
        return NO_USER
    if body.get("type") == "block_actions":
        # Every button examdesk sends carries a value (bot/blocks*.py): the listeners read it.
        # The one choice in a form that is sent at once (`/reopen`'s action) carries the
        # option chosen instead.
        actions = body.get("actions")
        first = actions[0] if isinstance(actions, list) and actions else None
        chosen = first.get("selected_option") if isinstance(first, dict) else None
        if not (
            isinstance(first, dict)
            and isinstance(first.get("action_id"), str)
            and (
                isinstance(first.get("value"), str)
                or (
                    first["action_id"] == forms.MODE_ACTION
                    and isinstance(chosen, dict)
                    and isinstance(chosen.get("value"), str)
                )
            )
        ):
            return NO_BUTTON
    return None


def request_context(deps: Deps, locales: SlackLocales) -> Callable[..., Any]:
    def attach(context: BoltContext, next: Callable[[], Any]) -> Any:
        context["deps"] = deps
        context["actor"] = context.user_id
        context["language"] = choose(language_for(deps, locales, context.user_id))
        return next()

    return attach


def error_handler(deps: Deps) -> Callable[..., BoltResponse]:
    def handle(error: Exception, body: dict[str, Any], context: BoltContext) -> BoltResponse:
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
        # A request that failed before our checks may not be Slack's: no request to its URL.
        if body.get("response_url") and context.get(CHECKED):
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
