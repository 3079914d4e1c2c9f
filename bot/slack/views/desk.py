"""What the App Home and `/exam` alone share: a test's state as one Slack section, and the
buttons that open a command's form for a test (``form_open``, handled by the forms'
listener), built with slack_sdk's Block Kit models so that their own checks run too."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.slack.text import escape, mention
from bot.slack.views import limits
from commands.exam_today import TestState
from commands.language import _, ngettext
from commands.timeparse import format_time
from store.models import CandidateStatus

FORM_OPEN = "form_open"
SHOWN_REPORTS = 10


def form_labels() -> dict[str, str]:
    """The button's label for each command whose form a button opens."""
    return {
        "exam": _("Overview"),
        "incident-time": _("Incident time"),
        "reopen": _("New delivery"),
        "candidate": _("Candidate"),
        "notice": _("Notice"),
        "question-error": _("Report an error"),
    }


def form_button(command: str, test: str = "", *, label: str | None = None) -> ButtonElement:
    """A button that opens ``command``'s form with ``test`` chosen."""
    text = label or form_labels()[command]
    return ButtonElement(
        text=PlainTextObject(text=limits.shorten(text, limits.BUTTON_TEXT)),
        action_id=FORM_OPEN,
        value=json.dumps({"command": command, "test": test}),
    )


def form_buttons(test: str, commands: tuple[str, ...], block_id: str) -> ActionsBlock:
    return ActionsBlock(
        block_id=block_id[: limits.BLOCK_ID],
        elements=[form_button(command, test) for command in commands],
    )


def section(text: str) -> SectionBlock:
    """A section of already-escaped ``text``, cut to fit."""
    return SectionBlock(
        text=MarkdownTextObject(text=limits.shorten(text, limits.SECTION_TEXT), verbatim=True)
    )


def context(text: str) -> ContextBlock:
    return ContextBlock(
        elements=[MarkdownTextObject(text=limits.shorten(text, limits.CONTEXT_TEXT), verbatim=True)]
    )


def header(text: str) -> HeaderBlock:
    return HeaderBlock(text=PlainTextObject(text=limits.shorten(text, limits.HEADER_TEXT)))


def divider() -> DividerBlock:
    return DividerBlock()


def more(n: int, where: str) -> ContextBlock:
    """The line after a cut list: how many more, and where to see them all."""
    return context(_("… and {n} more: {where}").format(n=n, where=where))


def test_text(state: TestState, tz: ZoneInfo, *, running: bool) -> str:
    """A test's state as mrkdwn: what it is, when, and how its candidates stand."""
    when = _("{start} – ordinary end {end}").format(
        start=format_time(state.start, tz), end=format_time(state.ordinary_end, tz)
    )
    if running:
        when += " · " + _(":large_green_circle: running now")
    counts = [
        ngettext("{n} candidate", "{n} candidates", state.candidates).format(n=state.candidates),
        _("{not_started} not started, {started} started, {submitted} submitted").format(
            not_started=state.by_status.get(CandidateStatus.NOT_STARTED, 0),
            started=state.by_status.get(CandidateStatus.STARTED, 0),
            submitted=state.by_status.get(CandidateStatus.SUBMITTED, 0),
        ),
    ]
    if state.open_reopenings:
        counts.append(
            ngettext(
                "{n} open for new delivery", "{n} open for new delivery", state.open_reopenings
            ).format(n=state.open_reopenings)
        )
    if state.notices:
        counts.append(
            ngettext("{n} notice sent", "{n} notices sent", state.notices).format(n=state.notices)
        )
    if state.open_reports:
        counts.append(
            ":warning: "
            + ngettext(
                "{n} open error report", "{n} open error reports", state.open_reports
            ).format(n=state.open_reports)
        )
    title = f" — {escape(state.title)}" if state.title else ""
    return f"*{escape(state.code)}*{title} ({state.kind})\n{when}\n" + " · ".join(counts)


def open_reports_line(reports: list[dict], tz: ZoneInfo) -> str:
    """`/exam TEST`'s line on the test's open error reports (``ReportLine.as_json``)."""
    if not reports:
        return "*" + _("Error reports:") + "* " + _("none open")
    shown = [
        f"#{r['id']}"
        + (f" ({escape(r['question'])})" if r["question"] else "")
        + " "
        + _("from {who} at {at}").format(
            who=mention(r["reported_by"]),
            at=format_time(datetime.fromisoformat(r["reported_at"]), tz),
        )
        for r in reports[:SHOWN_REPORTS]
    ]
    more = len(reports) - len(shown)
    if more:
        shown.append(_("… and {n} more (`examdesk reports`)").format(n=more))
    return (
        "*"
        + _("Error reports:")
        + "* "
        + ngettext("{n} open", "{n} open", len(reports)).format(n=len(reports))
        + " — "
        + "; ".join(shown)
        + " · "
        + _("send, edit or reject each on its message in the support channel")
    )


def as_dicts(blocks: list[Block]) -> list[dict]:
    return [block.to_dict() for block in blocks]
