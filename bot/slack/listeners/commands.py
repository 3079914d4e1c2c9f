"""The slash commands that go straight to the core, and their confirmation buttons.

Same code and same reply text as `examdesk run`: the text goes through
``commands.runner.execute`` and the Reply is laid out as Block Kit. The answer is the
acknowledgement itself (ephemeral), so nothing waits for a Web API call; the change log is
an outbox row committed with the change, and a button's result goes to its response_url
off the request path (``deps.respond``).
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.deps import Deps
from bot.slack.command_line import run_line
from bot.slack.listeners.forms import open_form
from bot.slack.text import from_slack
from bot.slack.views import blocks, limits
from bot.slack.views.forms import Opened
from commands import confirmations
from commands.language import _
from commands.reply import Reply
from store import clock

# The commands this module answers; `/question-error` is registered by question_errors.py.
COMMANDS = ("/incident-time", "/reopen", "/candidate", "/exam", "/notice")
# Typed without arguments these open their form; `/exam` bare lists today's tests.
FORM_WHEN_BARE = ("/incident-time", "/reopen", "/candidate", "/notice")


def register(app: App, deps: Deps) -> None:
    for name in COMMANDS:
        app.command(name)(on_command)
    app.action(blocks.CONFIRM_ACTION)(on_confirm)
    app.action(blocks.CANCEL_ACTION)(on_cancel)
    app.action(blocks.UNDO_ACTION)(on_undo)


def on_command(ack: Ack, command: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    deps: Deps = context["deps"]
    # Slack escapes the text (&amp; &lt; &gt;, mentions and links as <…>): undone here, once.
    text = from_slack(command.get("text", ""))
    if not text.strip() and command["command"] in FORM_WHEN_BARE:
        _open_form(ack, command, context, client)
        return
    reply = run_line(deps, context["actor"], f"{command['command']} {text}".strip())
    ack(response_type="ephemeral", **limits.fit(blocks.message(reply, tz=deps.settings.tz)))


def _open_form(ack: Ack, command: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    trigger_id = command.get("trigger_id")
    if not trigger_id:
        ack(
            response_type="ephemeral",
            text=_(
                "Slack did not send what is needed to open the form. Type the command again, "
                "or add `help` for its usage."
            ),
        )
        return
    # The trigger_id lives 3 seconds: acknowledged at once, the form opens right after.
    ack()
    open_form(
        context["deps"],
        client,
        trigger_id=trigger_id,
        command=command["command"].lstrip("/"),
        actor=context["actor"],
        opened=Opened(response_url=command.get("response_url") or None),
    )


def on_confirm(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    ack()
    deps: Deps = context["deps"]
    reply = confirmations.apply(
        session_factory=deps.session_factory,
        token=body["actions"][0]["value"],
        actor=context["actor"],
        tz=deps.settings.tz,
        now=clock.now(),
        registry_dir=deps.settings.registry_dir,
        outside=deps.settings.outside,
    )
    _answer_button(deps, body, reply, replace=reply.ok)


def on_cancel(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    ack()
    deps: Deps = context["deps"]
    reply = confirmations.cancel(
        session_factory=deps.session_factory,
        token=body["actions"][0]["value"],
        actor=context["actor"],
        tz=deps.settings.tz,
        now=clock.now(),
    )
    _answer_button(deps, body, reply, replace=reply.ok)


def on_undo(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    """A receipt's Undo: `/undo CHANGE` as if the clicking user typed it; the preview comes
    below the receipt, with its own Confirm button."""
    ack()
    deps: Deps = context["deps"]
    reply = confirmations.run_offering(
        session_factory=deps.session_factory,
        actor=context["actor"],
        command_line=f"/undo {body['actions'][0].get('value', '')}",
        tz=deps.settings.tz,
        now=clock.now(),
        registry_dir=deps.settings.registry_dir,
    )
    _answer_button(deps, body, reply, replace=False)


def _answer_button(deps: Deps, body: dict[str, Any], reply: Reply, *, replace: bool) -> None:
    """Done: the result takes the preview's place. Refused: the preview stays, the reason
    comes below it, so the user can still see what was asked."""
    response_url = body.get("response_url")
    if not response_url:
        return
    deps.respond(
        response_url,
        response_type="ephemeral",
        replace_original=replace,
        **blocks.message(reply, tz=deps.settings.tz),
    )
