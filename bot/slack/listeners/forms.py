"""The commands' forms: opened by a command typed bare or by a ``form_open`` button, the
test picker's options, and the submission.

A submission runs the command line the form stands for through ``run_line`` of
bot/slack/command_line.py, exactly as if it were typed: same reply, same confirmation for `all`
and `no-limit`, same change record. A refusal shows on the field the core names
(``Reply.field``); the modal closes on anything else and the reply comes where the form was
opened (the response_url of the command or button, ephemeral) or, from the Home tab, as a
direct message.
"""

from __future__ import annotations

import json
import re
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.deps import Deps
from bot.slack.command_line import run_line
from bot.slack.views import blocks
from bot.slack.views import forms as views
from bot.slack.views import notices as views_notices
from commands import test_picker
from commands.language import _
from commands.reply import Reply
from store import clock
from store.db import read_only

QUESTION_ERROR = "question-error"
# A field's error is plain text: a mention the core wrote shows as @U….
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)>")


def register(app: App, deps: Deps) -> None:
    app.options(views.TEST_ACTION)(on_test_options)
    for command in views.COMMANDS:
        app.view(views.callback_id(command))(on_submitted)
    app.action(views.OPEN_ACTION)(on_form_open)
    app.action(views.MODE_ACTION)(on_reopen_mode)


def open_form(
    deps: Deps,
    client: WebClient,
    *,
    trigger_id: str,
    command: str,
    actor: str,
    test_code: str = "",
    opened: views.Opened,
) -> None:
    """Open the form of ``/command`` (views.COMMANDS), ``test_code`` chosen when ``actor``
    may pick it (R15)."""
    initial = _chosen(deps, actor, test_code)
    client.views_open(trigger_id=trigger_id, view=views.modal(command, test=initial, opened=opened))


def _chosen(deps: Deps, actor: str, code: str) -> test_picker.Choice | None:
    if not code:
        return None
    with deps.session_factory() as db_session:
        read_only(db_session)
        return test_picker.one(db_session=db_session, user_id=actor, code=code, now=clock.now())


def on_test_options(ack: Ack, payload: dict[str, Any], context: BoltContext) -> None:
    deps: Deps = context["deps"]
    typed = payload.get("value")
    with deps.session_factory() as db_session:
        read_only(db_session)
        choices = test_picker.matching(
            db_session=db_session,
            user_id=context["actor"],
            typed=typed if isinstance(typed, str) else "",
            now=clock.now(),
        )
    ack(options=views.options(choices))


def on_reopen_mode(ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    """`/reopen`'s action chosen: the form shows that action's own fields (the time, the
    duration) and no other; what was filled in stays, as Slack keeps the inputs' state."""
    ack()
    deps: Deps = context["deps"]
    view = body.get("view")
    if not isinstance(view, dict) or not isinstance(view.get("id"), str):
        return
    mode = body["actions"][0]["selected_option"]["value"]
    chosen = _chosen(deps, context["actor"], views.values(view).get("test", ""))
    try:
        client.views_update(
            view_id=view["id"],
            # The form as seen when the choice was made: a newer one is not overwritten.
            hash=view.get("hash"),
            view=views.modal("reopen", test=chosen, opened=views.Opened.of(view), mode=mode),
        )
    except SlackApiError as error:
        # The user chose again meanwhile: the update for that choice shows it.
        if error.response.get("error") != "hash_conflict":
            raise


def on_submitted(ack: Ack, view: dict[str, Any], context: BoltContext) -> None:
    deps: Deps = context["deps"]
    command = views.command_of(view.get("callback_id", ""))
    if command is None:
        ack()
        return
    try:
        line = views.command_line(command, views.values(view))
    except views.FormProblem as problem:
        ack(**views.errors(command, problem.field, problem.message))
        return
    reply = run_line(deps, context["actor"], line)
    if not reply.ok:
        message = reply.data.get("message") or reply.text
        ack(**views.errors(command, reply.field, _MENTION.sub(r"@\1", message)))
        return
    ack()
    _answer(deps, views.Opened.of(view), context["actor"], reply)


def _answer(deps: Deps, opened: views.Opened, user: str, reply: Reply) -> None:
    message = blocks.message(reply, tz=deps.settings.tz)
    if opened.response_url:
        deps.respond(
            opened.response_url, response_type="ephemeral", replace_original=False, **message
        )
    else:
        deps.later(deps.client.chat_postMessage, channel=user, **message)


def on_form_open(ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    """The desk's buttons: value ``{"command": …, "test": CODE or ""}``."""
    ack()
    deps: Deps = context["deps"]
    opened = views.Opened(response_url=body.get("response_url") or None)
    try:
        asked = json.loads(body["actions"][0]["value"])
    except (ValueError, RecursionError):  # not JSON, or nested past what the parser takes
        asked = None
    command = asked.get("command") if isinstance(asked, dict) else None
    test = asked.get("test") if isinstance(asked, dict) else None
    test = test if isinstance(test, str) else ""
    if command not in (*views.COMMANDS, QUESTION_ERROR):
        _tell(deps, opened, context["actor"], _("This button names no form. Nothing was done."))
        return
    trigger_id = body.get("trigger_id")
    if not trigger_id:
        _tell(
            deps,
            opened,
            context["actor"],
            _("Slack did not send what is needed to open the form. Please press the button again."),
        )
        return
    if command == QUESTION_ERROR:
        channel = body.get("channel")
        channel_id = channel.get("id", "") if isinstance(channel, dict) else ""
        client.views_open(
            trigger_id=trigger_id, view=views_notices.report_modal(test.upper(), channel_id)
        )
        return
    open_form(
        deps,
        client,
        trigger_id=trigger_id,
        command=command,
        actor=context["actor"],
        test_code=test,
        opened=opened,
    )


def _tell(deps: Deps, opened: views.Opened, user: str, text: str) -> None:
    if opened.response_url:
        deps.respond(
            opened.response_url, response_type="ephemeral", replace_original=False, text=text
        )
    else:
        deps.later(deps.client.chat_postMessage, channel=user, text=text)
