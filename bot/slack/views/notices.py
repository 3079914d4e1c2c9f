"""Block Kit for question-error reports, notices and their sending progress.

Text goes through ``bot.slack.text``: what teachers typed and what providers answered shows
as text, never as a mention, broadcast or link, and addresses in it are masked.
"""

from __future__ import annotations

from typing import Any

from bot.slack.text import capped, escape, fallback, mention, text_object
from commands.language import _, speaking
from commands.question_error import state_label
from notifications.masking import scrub
from notifications.progress import Progress

SEND_ACTION = "qe_send"
EDIT_ACTION = "qe_edit"
REJECT_ACTION = "qe_reject"
INCIDENT_ACTION = "qe_incident_time"
REPORT_MODAL = "qe_report_modal"
EDIT_MODAL = "qe_edit_modal"
MINUTES_MODAL = "qe_minutes_modal"
TEXT_LIMIT = 2900


def _section(text: str) -> dict[str, Any]:
    """A section of already-escaped ``text``."""
    return {"type": "section", "text": text_object(capped(text, TEXT_LIMIT))}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [text_object(capped(text, TEXT_LIMIT))]}


def _button(label: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": label[:75]},
        "action_id": action_id,
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def counts(plan: dict[str, Any]) -> str:
    return _("{inapp} in-app notices, {sms} SMS and {email} e-mails").format(
        inapp=plan["inapp"], sms=plan["sms"], email=plan["email"]
    )


def _quote(text: str) -> str:
    return "\n".join("> " + line for line in escape(text).splitlines() or [""])


def report_post(report: dict[str, Any]) -> dict[str, Any]:
    """The outbox's first post of a report: in the language it was reported in."""
    with speaking(report.get("language")):
        return report_blocks(report)


def report_blocks(report: dict[str, Any], progress: Progress | None = None) -> dict[str, Any]:
    """The report as posted to the support channel, with its buttons while it is open."""
    plan = report["plan"]
    head = ":warning: " + _(
        "*Error in the question set of {test}* (report #{id}) from {user} at {time}"
    ).format(
        test=escape(report["test"]),
        id=report["report_id"],
        user=mention(report["reported_by"]),
        time=report["reported_at"],
    )
    blocks: list[dict[str, Any]] = [_section(head)]
    if report["question"]:
        blocks.append(
            _section(
                _("*Question or task:* {question}").format(question=escape(report["question"]))
            )
        )
    if report["text_nb"]:
        blocks.append(
            _section(_("*Text for candidates (norsk):*") + "\n" + _quote(report["text_nb"]))
        )
    if report["text_en"]:
        blocks.append(
            _section(_("*Text for candidates (English):*") + "\n" + _quote(report["text_en"]))
        )
    minutes = report["suggested_minutes"]
    blocks.append(
        _context(
            _("{inapp} candidates · sending makes {counts}").format(
                inapp=plan["inapp"], counts=counts(plan)
            )
            + (
                " · " + _("{n} without a usable address").format(n=len(plan["unreachable"]))
                if plan["unreachable"]
                else ""
            )
            + (
                " · "
                + _("teacher suggests {minutes} min incident time for all").format(minutes=minutes)
                if minutes
                else ""
            )
            + " · "
            + _("the set cannot be changed after the start")
            + (f"\n{report['language_note']}" if report.get("language_note") else "")
        )
    )
    value = str(report["report_id"])
    elements = _open_buttons(report, value) if report["state"] == "open" else []
    if report["state"] != "open":
        blocks.append(_context(_handled(report)))
    if report["state"] != "rejected":
        label = (
            _("Give all candidates {minutes} min incident time").format(minutes=minutes)
            if minutes
            else _("Give all candidates incident time")
        )
        elements.append(_button(label, INCIDENT_ACTION, value))
    if elements:
        blocks.append({"type": "actions", "block_id": f"qe_{value}", "elements": elements})
    if progress is not None:
        blocks.extend(progress_blocks(progress))
    return {
        "text": fallback(_("Error in the question set of {test}").format(test=report["test"])),
        "blocks": blocks,
    }


def _open_buttons(report: dict[str, Any], value: str) -> list[dict[str, Any]]:
    """Send (confirmed first: it cannot be taken back), edit, reject."""
    plan = report["plan"]
    send = _button(_("Send to candidates"), SEND_ACTION, value, "primary")
    send["confirm"] = {
        "title": {"type": "plain_text", "text": _("Send to all candidates?")},
        "text": text_object(
            _("This sends {counts} to the candidates of {test}.").format(
                counts=counts(plan), test=report["test"]
            )
            + " "
            + (f"{plan['not_configured']}. " if plan.get("not_configured") else "")
            + _("It cannot be taken back.")
        ),
        "confirm": {"type": "plain_text", "text": _("Send")},
        "deny": {"type": "plain_text", "text": _("Cancel")},
    }
    return [
        send,
        _button(_("Edit text"), EDIT_ACTION, value),
        _button(_("Reject"), REJECT_ACTION, value, "danger"),
    ]


def _handled(report: dict[str, Any]) -> str:
    who = (
        " " + _("by {user}").format(user=mention(report["handled_by"]))
        if report["handled_by"]
        else ""
    )
    return f"*{state_label(report['state']).capitalize()}*{who}"


def _shown(status: str) -> str:
    # A logged message was written to the log because the channel is not configured.
    return {
        "logged": _("only written to the log (not configured, not sent)"),
        "sent": _("sent"),
        "delivered": _("delivered"),
        "undelivered": _("undelivered"),
        "failed": _("failed"),
        "unknown": _("unknown"),
    }.get(status, status)


def progress_line(progress: Progress) -> str:
    parts = [
        _("in-app {inapp}, read {read} (opened {opened})").format(
            inapp=progress.inapp, read=progress.read, opened=progress.opened
        )
    ]
    for channel, by_status in sorted(progress.by_channel.items()):
        label = "SMS" if channel == "sms" else _("e-mail")
        queued = by_status.get("pending", 0) + by_status.get("sending", 0)
        shown = [_("{n} queued").format(n=queued)] + [
            f"{by_status[s]} {_shown(s)}"
            for s in ("sent", "delivered", "undelivered", "failed", "unknown", "logged")
            if by_status.get(s)
        ]
        parts.append(f"{label}: " + ", ".join(shown))
    return " · ".join(parts)


def progress_blocks(progress: Progress) -> list[dict[str, Any]]:
    state = _("done") if progress.done else _("sending…")
    blocks = [
        _section(
            _("*Notice #{id} to {test}* ({state})").format(
                id=progress.notice_id, test=progress.test_code, state=state
            )
            + "\n"
            + progress_line(progress)
        )
    ]
    if progress.done and progress.problems:
        blocks.append(_section(failures_text(progress)))
    return blocks


def failures_text(progress: Progress) -> str:
    lines = [
        f"{number} ({'SMS' if channel == 'sms' else _('e-mail')} {_shown(status)}: "
        f"{escape(scrub(reason))})"
        for number, channel, status, reason in progress.problems
    ]
    more = progress.problem_count - len(lines)
    return (
        _("*Not reached outside the app ({n}):*").format(n=progress.problem_count)
        + " "
        + "; ".join(lines)
        + (
            "; " + _("and {n} more (`/exam {test}`)").format(n=more, test=progress.test_code)
            if more > 0
            else ""
        )
    )


def summary_text(progress: Progress) -> str:
    """The summary in the notice's thread, as mrkdwn (a message's whole text)."""
    text = _("Notice #{id} to {test} is sent: {progress}.").format(
        id=progress.notice_id, test=progress.test_code, progress=progress_line(progress)
    )
    if progress.problems:
        text += "\n" + failures_text(progress)
    else:
        text += "\n" + _("Every candidate was reached.")
    return capped(text)


def notice_progress_message(progress: Progress) -> dict[str, Any]:
    return {
        "text": fallback(
            _("Notice #{id} to {test}: {progress}").format(
                id=progress.notice_id, test=progress.test_code, progress=progress_line(progress)
            )
        ),
        "blocks": progress_blocks(progress),
    }


def _input(
    block_id: str,
    label: str,
    *,
    multiline: bool = False,
    optional: bool = False,
    initial: str | None = None,
    hint: str | None = None,
    max_length: int = 2000,
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": "value",
        "multiline": multiline,
        "max_length": max_length,
    }
    if initial:
        element["initial_value"] = initial
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "label": {"type": "plain_text", "text": label},
        "element": element,
        "optional": optional,
    }
    if hint:
        block["hint"] = {"type": "plain_text", "text": hint}
    return block


def _minutes_input(initial: int | None = None, *, optional: bool = True) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "number_input",
        "is_decimal_allowed": False,
        "action_id": "value",
        "min_value": "0",
        "max_value": "600",
    }
    if initial:
        element["initial_value"] = str(initial)
    return {
        "type": "input",
        "block_id": "minutes",
        "label": {"type": "plain_text", "text": _("Extra time for all candidates (minutes)")},
        "element": element,
        "optional": optional,
    }


def _modal(callback_id: str, title: str, submit: str, blocks: list, metadata: str = "") -> dict:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": metadata,
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": submit},
        "close": {"type": "plain_text", "text": _("Cancel")},
        "blocks": blocks,
    }


def report_modal(test_code: str, channel: str = "") -> dict[str, Any]:
    return _modal(
        REPORT_MODAL,
        _("Error in question set"),
        _("Report"),
        [
            _context(
                _(
                    "A question set cannot be changed once the test has started. Write what "
                    "the candidates should read; exam support sends it to all of them."
                )
            ),
            _input("test", _("Test"), initial=test_code, max_length=64),
            _input(
                "question",
                _("Question or task"),
                optional=True,
                max_length=300,
                hint=_("e.g. Task 3b"),
            ),
            _input("text_nb", _("Text for candidates (norsk)"), multiline=True, optional=True),
            _input("text_en", _("Text for candidates (English)"), multiline=True, optional=True),
            _minutes_input(),
        ],
        metadata=channel,
    )


def edit_modal(report: dict[str, Any]) -> dict[str, Any]:
    return _modal(
        EDIT_MODAL,
        _("Edit report #{id}").format(id=report["report_id"])[:24],
        _("Save"),
        [
            _input(
                "question",
                _("Question or task"),
                optional=True,
                max_length=300,
                initial=report["question"],
            ),
            _input(
                "text_nb",
                _("Text for candidates (norsk)"),
                multiline=True,
                optional=True,
                initial=report["text_nb"],
            ),
            _input(
                "text_en",
                _("Text for candidates (English)"),
                multiline=True,
                optional=True,
                initial=report["text_en"],
            ),
            _minutes_input(report["suggested_minutes"]),
        ],
        metadata=str(report["report_id"]),
    )


def minutes_modal(report: dict[str, Any]) -> dict[str, Any]:
    return _modal(
        MINUTES_MODAL,
        _("Incident time for all"),
        _("Give time"),
        [
            _context(
                _(
                    "Adds incident time for every candidate of {test}, reason: error in the "
                    "question set (report #{id})."
                ).format(test=report["test"], id=report["report_id"])
            ),
            _minutes_input(report["suggested_minutes"], optional=False),
        ],
        metadata=str(report["report_id"]),
    )


def modal_values(view: dict[str, Any]) -> dict[str, Any]:
    """{block_id: value} from a submitted view's state.

    Plain-text inputs arrive as typed (Slack escapes message and command text, not input
    values), so nothing is unescaped here.
    """
    values: dict[str, Any] = {}
    for block_id, actions in view.get("state", {}).get("values", {}).items():
        action = actions.get("value") or next(iter(actions.values()), {})
        values[block_id] = action.get("value")
    return values
