"""`/question-error` in Slack: the report in the support channel with its buttons, the forms,
and the sending progress of notices (R12–R14).

The report message is the place where everything about the error happens: *Send to
candidates* (Slack asks to confirm, with the counts), *Edit text*, *Reject*, *Give all
candidates incident time*. The teacher hears in the message's thread what was done. While a
notice goes out the dispatcher calls ``ProgressReporter``, which updates the message at most
every 2 s and ends with a summary that lists the candidates not reached.

A button or form whose report id is not one (``_report_id``, ``private_metadata``) or whose
report is gone gets a plain refusal, like any other refusal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot.deps import Deps
from bot.slack.client import web_client
from bot.slack.text import capped, fallback, from_slack, mention, mrkdwn
from bot.slack.views import blocks, limits
from bot.slack.views import notices as blocks_notices
from bot.slack.views.forms import on_field
from commands import question_error
from commands.context import Ctx
from commands.errors import CommandError, NotFound
from commands.language import _
from commands.permissions import require_support
from commands.reply import Reply
from commands.runner import execute, in_transaction, refusal
from notifications import outbox, slack_post
from notifications.progress import Progress, progress
from store import clock
from store.db import read_only
from store.models import Notice, OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)
UPDATE_EVERY = 2.0
# How long after it was created a notice's message in Slack is kept in step with its state
# by the leader's sweep (``ProgressReporter.settle``): Twilio's last callbacks come within it.
SETTLE_WITHIN = timedelta(hours=24)
# The longest wait before another try at an update Slack did not take.
RETRY_AT_MOST = 300.0
# Whole numbers from Slack (report ids, minutes) fit the database's integer columns.
MAX_DIGITS = 9


def not_a_report() -> str:
    return _(
        "This button or form does not name an error report, so nothing was changed. Use the "
        "buttons on the report in the support channel."
    )


def no_trigger() -> str:
    return _("Slack did not send what is needed to open the form. Please press the button again.")


def register(app: App, deps: Deps) -> None:
    app.command("/question-error")(on_command)
    app.view(blocks_notices.REPORT_MODAL)(on_report_submitted)
    app.action(blocks_notices.SEND_ACTION)(on_send)
    app.action(blocks_notices.EDIT_ACTION)(on_edit)
    app.view(blocks_notices.EDIT_MODAL)(on_edit_submitted)
    app.action(blocks_notices.REJECT_ACTION)(on_reject)
    app.action(blocks_notices.INCIDENT_ACTION)(on_incident_time)
    app.view(blocks_notices.MINUTES_MODAL)(on_minutes_submitted)
    if deps.notice_progress is None:
        reporter = ProgressReporter(deps, web_client(deps.settings))
        deps.notice_progress, deps.settle_notices = reporter, reporter.settle


# ---------------------------------------------------------------- work in one transaction


def _in_transaction(
    deps: Deps, actor: str, work: Callable[[Ctx], Any], *, reads_only: bool = False
) -> Any:
    """``work(ctx)`` applied whole or not at all; a refusal raises CommandError."""
    return in_transaction(
        session_factory=deps.session_factory,
        actor=actor,
        tz=deps.settings.tz,
        now=clock.now(),
        work=work,
        reads_only=reads_only,
        outside=deps.settings.outside,
        via="an error report",
    )


def _replied(deps: Deps, actor: str, work: Callable[[Ctx], Reply]) -> Reply:
    """``_in_transaction`` for work that answers with a Reply: a refusal is one too."""
    try:
        return _in_transaction(deps, actor, work)
    except CommandError as error:
        return refusal(error)


def _report(deps: Deps, report_id: int) -> dict[str, Any]:
    """The report; CommandError when there is none. Only reads: it waits for no writer."""
    return _in_transaction(
        deps, "system", lambda ctx: question_error.show(ctx, report_id=report_id), reads_only=True
    )


def _number(value: Any) -> int | None:
    """``value`` as a whole number if it is written as one (ASCII digits only), else None."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value) if len(value) <= MAX_DIGITS else None
    return None


def _report_id(body: dict[str, Any]) -> int | None:
    """The report a button is for (the middleware has checked that it has a value)."""
    return _number(body["actions"][0]["value"])


def _tell_user(
    deps: Deps, body: dict[str, Any], user: str, text: str, mentions: Iterable[str] = ()
) -> None:
    """An answer to the person who pressed: shown now or never, so not kept."""
    channel = body.get("channel")
    channel_id = channel.get("id") if isinstance(channel, dict) else None
    channel_id = channel_id or deps.settings.slack_support_channel
    deps.ephemeral(channel_id or user, user, fallback(text, mentions))


def _thread(ctx: Ctx, report: dict[str, Any], text: str) -> None:
    """Tell the teacher in the report's thread, with the change being made in ``ctx``;
    ``text`` is mrkdwn (``bot.slack.text``). A report never posted has no thread."""
    channel = ctx.outside.support_channel
    if channel is None:
        return
    key = question_error.report_key(report["report_id"])
    outbox.enqueue(
        ctx.db_session,
        kind=outbox.SLACK_POST,
        target=channel,
        payload={
            "args": {"text": capped(f"{mention(report['reported_by'])} {text}")},
            "thread_of": key,
        },
        order_key=key,
    )


def _refresh(ctx: Ctx, report: dict[str, Any]) -> None:
    """Show the report's new state on its post in the support channel."""
    channel = ctx.outside.support_channel
    if channel is None:
        return
    key = question_error.report_key(report["report_id"])
    outbox.enqueue(
        ctx.db_session,
        kind=outbox.SLACK_POST,
        target=channel,
        payload={"method": "chat.update", "update_of": key, "render": "report", "data": report},
        order_key=key,
    )


def _noted(deps: Deps, actor: str, report_id: int, text: str) -> None:
    """A thread note about what was just done, in a transaction of its own."""
    _in_transaction(
        deps, actor, lambda ctx: _thread(ctx, question_error.show(ctx, report_id=report_id), text)
    )


# ---------------------------------------------------------------- the command and the form


def on_command(ack: Ack, command: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    deps: Deps = context["deps"]
    # Slack escapes the text (&amp; &lt; &gt;, mentions and links as <…>): undone here, once.
    text = from_slack(command.get("text", ""))
    words = text.split()
    if len(words) == 1 and words[0].lower() not in ("help", "-h", "--help"):
        if not command.get("trigger_id"):
            ack(response_type="ephemeral", text=no_trigger())
            return
        # The trigger_id lives 3 seconds: open the form before anything else.
        client.views_open(
            trigger_id=command["trigger_id"],
            view=limits.fit(
                blocks_notices.report_modal(words[0].upper(), command.get("channel_id", "")),
                limits.MODAL,
            ),
        )
        ack()
        return
    reply = execute(
        session_factory=deps.session_factory,
        actor=context["actor"],
        command_line=f"/question-error {text}".strip(),
        tz=deps.settings.tz,
        now=clock.now(),
        outside=deps.settings.outside,
    )
    ack(response_type="ephemeral", **limits.fit(blocks.message(reply, tz=deps.settings.tz)))


def _receipt_to_reporter(ctx: Ctx, reply: Reply) -> Reply:
    """A form closes on submission: the teacher reads the receipt in a direct message."""
    outbox.enqueue(
        ctx.db_session,
        kind=outbox.SLACK_POST,
        target=ctx.actor,
        payload={"args": {"text": fallback(reply.text, reply.mentions)}},
    )
    return reply


class NotMinutes(ValueError):
    """A minutes field holding something else than a whole number."""


def _minutes(value: Any) -> int | None:
    if value in (None, ""):
        return None
    minutes = _number(value)
    if minutes is None:
        raise NotMinutes(_("Give the extra time as a whole number of minutes, e.g. 10."))
    return minutes


def on_report_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext, client: WebClient
) -> None:
    deps: Deps = context["deps"]
    values = blocks_notices.modal_values(view)
    try:
        minutes = _minutes(values.get("minutes"))
    except NotMinutes as error:
        ack(response_action="errors", errors={"minutes": str(error)})
        return
    reply = _replied(
        deps,
        context["actor"],
        lambda ctx: _receipt_to_reporter(
            ctx,
            question_error.report(
                ctx,
                test_code=(values.get("test") or "").strip(),
                question=values.get("question") or "",
                text_nb=values.get("text_nb") or "",
                text_en=values.get("text_en") or "",
                suggested_minutes=minutes,
            ),
        ),
    )
    if not reply.ok:
        ack(response_action="errors", errors={reply.field or "text_nb": on_field(reply.text)})
        return
    ack()


# ---------------------------------------------------------------- the report's buttons


def on_send(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    ack()
    deps: Deps = context["deps"]
    actor = context["actor"]
    report_id = _report_id(body)
    if report_id is None:
        _tell_user(deps, body, actor, not_a_report())
        return
    reply = _replied(deps, actor, lambda ctx: _sending(ctx, report_id))
    if not reply.ok:
        _tell_user(deps, body, actor, reply.text, reply.mentions)
        return
    if deps.notice_progress is not None:
        deps.later(deps.notice_progress, reply.data["notice_id"])


def _sending(ctx: Ctx, report_id: int) -> Reply:
    reply = question_error.send(ctx, report_id=report_id)
    if reply.ok:
        report = question_error.show(ctx, report_id=report_id)
        _thread(
            ctx,
            report,
            _(
                "{user} is sending your text to the {count} candidates of {test} ({counts}). "
                "Progress is shown above."
            ).format(
                user=mention(ctx.actor),
                count=reply.data["inapp"],
                test=report["test"],
                counts=blocks_notices.counts(reply.data),
            ),
        )
    return reply


def on_edit(ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    ack()
    deps: Deps = context["deps"]
    actor = context["actor"]
    report_id = _report_id(body)
    if report_id is None:
        _tell_user(deps, body, actor, not_a_report())
        return
    # Whoever may not edit it learns so now, not after filling in the form.
    try:
        report = _in_transaction(
            deps, actor, lambda ctx: question_error.for_editing(ctx, report_id=report_id)
        )
    except CommandError as error:
        _tell_user(deps, body, actor, str(error), error.mentions)
        return
    if not body.get("trigger_id"):
        _tell_user(deps, body, actor, no_trigger())
        return
    view = limits.fit(blocks_notices.edit_modal(report), limits.MODAL)
    client.views_open(trigger_id=body["trigger_id"], view=view)


def on_edit_submitted(ack: Ack, view: dict[str, Any], context: BoltContext) -> None:
    deps: Deps = context["deps"]
    values = blocks_notices.modal_values(view)
    report_id = _number(view.get("private_metadata"))
    if report_id is None:
        ack(response_action="errors", errors={"text_nb": not_a_report()})
        return
    try:
        minutes = _minutes(values.get("minutes"))
    except NotMinutes as error:
        ack(response_action="errors", errors={"minutes": str(error)})
        return

    def edit(ctx: Ctx) -> dict[str, Any]:
        report = question_error.edit(
            ctx,
            report_id=report_id,
            text_nb=values.get("text_nb") or "",
            text_en=values.get("text_en") or "",
            question=values.get("question") or "",
            suggested_minutes=minutes,
        )
        _refresh(ctx, report)
        _thread(
            ctx,
            report,
            _("{user} edited the text for candidates.").format(user=mention(ctx.actor)),
        )
        return report

    try:
        _in_transaction(deps, context["actor"], edit)
    except CommandError as error:
        ack(response_action="errors", errors={error.field or "text_nb": on_field(str(error))})
        return
    ack()


def on_reject(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    ack()
    deps: Deps = context["deps"]
    actor = context["actor"]
    report_id = _report_id(body)
    if report_id is None:
        _tell_user(deps, body, actor, not_a_report())
        return

    def reject(ctx: Ctx) -> dict[str, Any]:
        report = question_error.reject(ctx, report_id=report_id)
        _refresh(ctx, report)
        _thread(
            ctx,
            report,
            _(
                "{user} decided not to send this report to the candidates. Ask in this thread "
                "if you disagree."
            ).format(user=mention(ctx.actor)),
        )
        return report

    try:
        _in_transaction(deps, actor, reject)
    except CommandError as error:
        _tell_user(deps, body, actor, str(error), error.mentions)


def give_incident_time(deps: Deps, actor: str, report: dict[str, Any], minutes: int) -> Reply:
    """R14: the decision made, `/incident-time TEST all add N` through the one entry."""
    reply = _replied(
        deps,
        actor,
        lambda ctx: question_error.give_incident_time(
            ctx, report_id=report["report_id"], minutes=minutes
        ),
    )
    first_line = mrkdwn(reply.text.splitlines()[0] if reply.text else "", reply.mentions)
    _noted(
        deps,
        actor,
        report["report_id"],
        _("{user} gave all candidates {minutes} min incident time: {result}").format(
            user=mention(actor), minutes=minutes, result=first_line
        )
        if reply.ok
        else _("{user} tried to give incident time, refused: {result}").format(
            user=mention(actor), result=mrkdwn(reply.text, reply.mentions)
        ),
    )
    return reply


def on_incident_time(
    ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient
) -> None:
    ack()
    deps: Deps = context["deps"]
    actor = context["actor"]
    report_id = _report_id(body)
    if report_id is None:
        _tell_user(deps, body, actor, not_a_report())
        return
    # Incident time is support's (R15): anyone else learns so before any form opens.
    try:
        report = _in_transaction(deps, actor, lambda ctx: _for_support(ctx, report_id))
    except CommandError as error:
        _tell_user(deps, body, actor, str(error), error.mentions)
        return
    if not report["suggested_minutes"]:
        if not body.get("trigger_id"):
            _tell_user(deps, body, actor, no_trigger())
            return
        view = limits.fit(blocks_notices.minutes_modal(report), limits.MODAL)
        client.views_open(trigger_id=body["trigger_id"], view=view)
        return
    reply = give_incident_time(deps, actor, report, report["suggested_minutes"])
    if not reply.ok:
        _tell_user(deps, body, actor, reply.text, reply.mentions)


def _for_support(ctx: Ctx, report_id: int) -> dict[str, Any]:
    require_support(
        db_session=ctx.db_session, user_id=ctx.actor, doing=_("give candidates incident time")
    )
    return question_error.show(ctx, report_id=report_id)


def on_minutes_submitted(ack: Ack, view: dict[str, Any], context: BoltContext) -> None:
    deps: Deps = context["deps"]
    try:
        minutes = _minutes(blocks_notices.modal_values(view).get("minutes"))
    except NotMinutes:
        minutes = None
    if not minutes:
        ack(response_action="errors", errors={"minutes": _("Give a number of minutes above 0.")})
        return
    report_id = _number(view.get("private_metadata"))
    try:
        if report_id is None:
            raise NotFound(not_a_report())
        report = _report(deps, report_id)
    except CommandError as error:
        ack(response_action="errors", errors={"minutes": on_field(str(error))})
        return
    reply = give_incident_time(deps, context["actor"], report, minutes)
    if not reply.ok:
        ack(response_action="errors", errors={"minutes": on_field(reply.text)})
        return
    ack()


# ---------------------------------------------------------------- progress while sending


def progress_key(notice_id: int) -> str:
    """The outbox key of the support channel's post that shows a notice's progress, for a
    notice with no Slack message of its own."""
    return f"notice-progress:{notice_id}"


def summary_key(notice_id: int) -> str:
    """The outbox key of the summary in a notice's thread."""
    return f"notice-summary:{notice_id}"


def summary_update_key(notice_id: int) -> str:
    """The outbox key of the update that keeps a notice's summary in step after it is posted."""
    return f"notice-summary-update:{notice_id}"


def last_state_key(notice_id: int) -> str:
    """The outbox key of the update that shows a finished notice's state on its message."""
    return f"notice-done:{notice_id}"


@dataclass(frozen=True)
class _Message:
    """A notice's message in Slack: the report's post for a notice sent from a report, else
    the notice's own post in the support channel."""

    parent: str  # the outbox key of the message's post: its queue, its thread
    target: str  # the channel it is (or will be) in
    channel: str | None  # where it landed, once Slack has it
    ts: str | None
    report: dict[str, Any] | None  # drawn as the report's post, progress below it

    @property
    def needs_post(self) -> bool:
        """A notice's own post, not made yet (a report's notice waits for the report's)."""
        return self.report is None and self.ts is None

    def draw(self, state: Progress) -> dict[str, Any]:
        """chat.update's arguments (text and blocks) showing ``state``."""
        if self.report is not None:
            return limits.fit(blocks_notices.report_blocks(self.report, progress=state))
        return limits.fit(blocks_notices.notice_progress_message(state))

    def update(self, drawn: dict[str, Any]) -> dict[str, Any]:
        """The outbox payload that shows ``drawn`` on the message: on its channel and ts if
        Slack has it, else on the post enqueued under ``parent`` once that is made."""
        if self.channel and self.ts:
            return {
                "method": "chat.update",
                "args": drawn | {"channel": self.channel, "ts": self.ts},
            }
        return {"method": "chat.update", "args": drawn, "update_of": self.parent}


class ProgressReporter:
    """``on_progress(notice_id)`` for the dispatcher: updates the notice's Slack message.

    Calls come from many sending threads; Slack gets at most one ``chat.update`` per notice
    every ``every`` seconds, and a trailing one so the last state is always shown; an update
    Slack did not take for a passing reason is tried again. A notice with no Slack message
    of its own gets a post in the support channel through the outbox. When the notice is
    done, its last state and a summary listing the candidates not reached go through the
    outbox too, once: they reach Slack whichever process sends them, even after this one
    stopped before its post was made.
    """

    def __init__(self, deps: Deps, client: WebClient, *, every: float = UPDATE_EVERY) -> None:
        self.deps = deps
        self.client = client
        self.every = every
        self._lock = threading.Lock()
        self._last: dict[int, float] = {}
        self._pending: dict[int, threading.Timer] = {}
        self._rendering: dict[int, threading.Lock] = {}
        # Notices whose last render failed for a passing reason: how many times in a row.
        self._failures: dict[int, int] = {}
        self._closed = False

    def __call__(self, notice_id: int) -> None:
        with self._lock:
            now = time.monotonic()
            wait = self._last.get(notice_id, -self.every) + self.every - now
            if wait > 0:
                self._later(notice_id, wait)
                return
            self._last[notice_id] = now
        self._render(notice_id)

    def _later(self, notice_id: int, wait: float) -> None:
        """One render of ``notice_id`` in ``wait`` seconds, unless one is on its way or the
        process is stopping; the caller holds ``_lock``."""
        if notice_id not in self._pending and not self._closed:
            timer = threading.Timer(wait, self._trailing, args=(notice_id,))
            timer.daemon = True
            self._pending[notice_id] = timer
            timer.start()

    def _trailing(self, notice_id: int) -> None:
        with self._lock:
            self._pending.pop(notice_id, None)
            self._last[notice_id] = time.monotonic()
        self._render(notice_id)

    def settle(self) -> None:
        """Bring every finished notice of the last ``SETTLE_WITHIN`` to its last state in
        Slack, message and summary: the leader's sweep (``notice-settle``). A process that
        died between a notice's last delivery and showing it, or a change no render was
        called for (a read confirmation, a late callback), leaves nothing behind for long."""
        since = clock.now() - SETTLE_WITHIN
        with self.deps.session_factory() as db_session:
            read_only(db_session)
            notice_ids = db_session.scalars(
                select(Notice.id).where(Notice.created_at >= since).order_by(Notice.id)
            ).all()
        for notice_id in notice_ids:
            self._render(notice_id, finished_only=True)

    def _render(self, notice_id: int, *, finished_only: bool = False) -> None:
        with self._lock:
            lock = self._rendering.setdefault(notice_id, threading.Lock())
        with lock:
            try:
                self._show(notice_id, finished_only=finished_only)
            except SlackApiError as error:
                failure = slack_post.classified(error)
                self._failed(notice_id, permanent=failure.permanent, wait=failure.retry_after)
            except (OSError, SQLAlchemyError):
                self._failed(notice_id, permanent=False)
            except CommandError:  # the notice's report is gone
                self._failed(notice_id, permanent=True)
            else:
                self._failures.pop(notice_id, None)

    def _failed(self, notice_id: int, *, permanent: bool, wait: float | None = None) -> None:
        """Called while handling the error: a passing one (Slack busy or away, the database
        locked) is tried again later, less often each time, so the message still ends with
        the last state instead of whatever the failed update would have replaced."""
        log.exception("could not show the progress of notice %s in Slack", notice_id)
        if permanent:
            return
        with self._lock:
            tries = self._failures[notice_id] = self._failures.get(notice_id, 0) + 1
            backoff = self.every * 2**tries
            self._later(notice_id, min(backoff if wait is None else wait, RETRY_AT_MOST))

    def close(self) -> None:
        """Show now the updates held back for later: their timers end with the process."""
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, {}
        for notice_id, timer in pending.items():
            timer.cancel()
            self._render(notice_id)

    def _show(self, notice_id: int, *, finished_only: bool = False) -> None:
        with self.deps.session_factory() as db_session:
            read_only(db_session)
            state = progress(db_session=db_session, notice_id=notice_id)
            notice = db_session.get(Notice, notice_id)
            if state is None or notice is None or (finished_only and not state.done):
                return
        message = self._message(notice)
        if message is None:
            if not finished_only:  # the sweep's looks are not news
                log.info("%s", blocks_notices.notice_progress_message(state)["text"])
            return
        if finished_only and self._up_to_date(notice_id, message, state):
            return  # the sweep writes, and so locks, only what changed
        if state.done:
            with self.deps.session_factory.begin() as db_session:
                shown = self._finish(db_session, notice_id, message)
            if not shown:  # an older state is on its way to Slack: show this one after it
                with self._lock:
                    self._later(notice_id, self.every)
        elif message.needs_post:
            with self.deps.session_factory.begin() as db_session:
                _own_post(db_session, message, message.draw(state))
        elif message.ts is not None:
            self.client.chat_update(channel=message.channel, ts=message.ts, **message.draw(state))

    def _up_to_date(self, notice_id: int, message: _Message, state: Progress) -> bool:
        """The finished ``state`` is what the notice's last-state and summary rows say, or
        what they would say has been given up (a message deleted, a channel left)."""
        with self.deps.session_factory() as db_session:
            read_only(db_session)
            rows = {
                key: (status, payload)
                for key, status, payload in db_session.execute(
                    select(OutboxMessage.key, OutboxMessage.status, OutboxMessage.payload).where(
                        OutboxMessage.key.in_(
                            (
                                last_state_key(notice_id),
                                summary_key(notice_id),
                                summary_update_key(notice_id),
                            )
                        )
                    )
                ).all()
            }
        last = rows.get(last_state_key(notice_id))
        summary = rows.get(summary_update_key(notice_id)) or rows.get(summary_key(notice_id))
        if last is None or summary is None:
            return False
        return (
            last[0] == OutboxStatus.FAILED or last[1] == message.update(message.draw(state))
        ) and (
            summary[0] == OutboxStatus.FAILED
            or summary[1]["args"]["text"] == blocks_notices.summary_text(state)
        )

    def _message(self, notice: Notice) -> _Message | None:
        """Where the notice's progress shows; None without a support channel."""
        support = self.deps.settings.slack_support_channel
        own = progress_key(notice.id)
        report = _report(self.deps, notice.report_id) if notice.report_id else None
        if notice.slack_ts and notice.slack_channel:
            channel, ts = notice.slack_channel, notice.slack_ts
            parent = question_error.report_key(notice.report_id) if notice.report_id else own
            return _Message(parent, channel, channel, ts, report)
        with self.deps.session_factory() as db_session:
            read_only(db_session)
            if report is not None:
                parent = question_error.report_key(notice.report_id)
                # A report whose post failed or was never enqueued (no support channel
                # then): the notice shows on a post of its own.
                if outbox.status_of(db_session, parent) in (*outbox.WAITING, OutboxStatus.SENT):
                    channel, ts = report["slack_channel"], report["slack_ts"]
                    target = channel or support
                    return _Message(parent, target, channel, ts, report) if target else None
            if support is None:
                return None
            posted = outbox.result_of(db_session, own) or {}
        return _Message(own, support, posted.get("channel"), posted.get("ts"), None)

    def _finish(self, db_session: Session, notice_id: int, message: _Message) -> bool:
        """A notice done: its last state on its message and the summary in its thread, in the
        queue of the message's post, so that they follow it even if it is not made yet, and
        whichever process sends them. From here on every change goes this way, one at a
        time, so no older state can land after a newer one. False while an older state is
        being sent: the caller shows this one later."""
        # The notice is locked while its finished state is written: of two processes
        # finishing it at once, the later reads, and writes, the newer state.
        db_session.execute(select(Notice.id).where(Notice.id == notice_id).with_for_update())
        state = progress(db_session=db_session, notice_id=notice_id)
        if state is None:  # gone (purged) meanwhile: nothing to show
            return True
        drawn = message.draw(state)
        if message.needs_post:
            _own_post(db_session, message, drawn)  # first in the queue
        payload = message.update(drawn)
        last = _queued(db_session, message, key=last_state_key(notice_id), payload=payload)
        shown = outbox.send_again(db_session, last, payload)
        _summary(db_session, message, notice_id, blocks_notices.summary_text(state))
        return shown


def _summary(db_session: Session, message: _Message, notice_id: int, text: str) -> None:
    """The summary in the thread of the notice's message, saying ``text``: posted once, and
    after it is posted kept in step by one ``chat.update`` of it (a late ``undelivered``
    adds a candidate not reached)."""
    if message.channel and message.ts:
        thread = {"args": {"text": text, "channel": message.channel, "thread_ts": message.ts}}
    else:
        thread = {"args": {"text": text}, "thread_of": message.parent}
    key = summary_key(notice_id)
    row = _queued(db_session, message, key=key, payload=thread)
    # Once there is an update, it alone says the latest: it follows the post in the queue.
    if outbox.status_of(db_session, summary_update_key(notice_id)) is None:
        if outbox.take_payload(db_session, row, thread):
            return
        if row.payload["args"]["text"] == text or row.status == OutboxStatus.FAILED:
            return
    # Posted, or under way: the update follows it in the queue and finds it by its key.
    payload = {"method": "chat.update", "args": {"text": text}, "update_of": key}
    update = _queued(db_session, message, key=summary_update_key(notice_id), payload=payload)
    outbox.send_again(db_session, update, payload)


def _own_post(db_session: Session, message: _Message, drawn: dict[str, Any]) -> None:
    """The support channel's post for a notice with no Slack message of its own (sent by
    ``/notice`` or ``examdesk run``): one, however many processes report on the notice; while
    it waits to be sent it takes the latest state. A report's notice waits for the report's
    post instead: a copy of it, buttons and all, would be left behind stale."""
    payload = {"args": drawn}
    row = _queued(db_session, message, key=message.parent, payload=payload)
    outbox.take_payload(db_session, row, payload)


def _queued(
    db_session: Session, message: _Message, *, key: str, payload: dict[str, Any]
) -> OutboxMessage:
    """The Slack message under ``key`` in the queue of the notice's message, enqueued with
    ``payload`` if there is none yet."""
    return outbox.enqueue(
        db_session,
        kind=outbox.SLACK_POST,
        target=message.target,
        payload=payload,
        key=key,
        order_key=message.parent,
    )
