"""The App Home tab as a Block Kit view, from ``commands.home.Home``."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from bot.slack.text import capped, escape, mention, mrkdwn, text_object
from commands.home import Home, TestLine
from commands.permissions import SUPPORT
from commands.timeparse import format_time
from store.models import CandidateStatus

SHOWN_REPORTS = 10
HELP = (
    "`/candidate TEST CANDIDATE` · `/exam TEST` · `/incident-time TEST CANDIDATES add 15 "
    "reason` · `/reopen TEST CANDIDATE in 30m reason` · `/notice TEST text` · "
    "`/question-error TEST` — add `help` to any command for its usage."
)


def home_view(home: Home, *, tz: ZoneInfo) -> dict[str, Any]:
    if home.role is None:
        blocks = [
            _header("examdesk"),
            _text(
                "examdesk helps exam support staff and teachers keep digital exams running: "
                "extra time, new delivery, candidate status and notices to candidates."
            ),
            _text(":lock: " + mrkdwn(home.explanation, home.mentions)),
        ]
    else:
        blocks = [_header("Exam day")]
        blocks += _tests("Running now", home.running, tz, empty="No test is running now.")
        blocks += _tests("Next", home.upcoming, tz, empty="No test is coming up.")
        if home.role == SUPPORT:
            blocks += _open_reports(home, tz)
            blocks += _not_sent(home)
            blocks += _open_deliveries(home, tz)
            blocks += _changes(home, tz)
        else:
            blocks.append(_context("You see the tests you teach. Exam support acts on them."))
        blocks += [{"type": "divider"}, _context(HELP)]
    return {"type": "home", "blocks": blocks[:100]}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text}}


def _text(text: str) -> dict[str, Any]:
    """A section of already-escaped ``text``."""
    return {"type": "section", "text": text_object(capped(text, 3000))}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [text_object(capped(text, 3000))]}


def _tests(title: str, tests: list[TestLine], tz: ZoneInfo, *, empty: str) -> list[dict]:
    blocks: list[dict[str, Any]] = [{"type": "divider"}, _text(f"*{title}*")]
    if not tests:
        return [*blocks, _context(empty)]
    for t in tests:
        counts = ", ".join(f"{t.by_status.get(s, 0)} {s.label}" for s in CandidateStatus)
        blocks.append(
            _text(
                f"*{escape(t.code)}* — {escape(t.title)} ({t.kind})\n"
                f"{format_time(t.start, tz)} – ordinary end {format_time(t.ordinary_end, tz)}"
                f"\n{counts}"
            )
        )
    return blocks


def _open_reports(home: Home, tz: ZoneInfo) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"type": "divider"}, _text("*Open error reports*")]
    if not home.open_reports:
        return [*blocks, _context("No error report is waiting.")]
    shown = home.open_reports[:SHOWN_REPORTS]
    lines = [
        f"• {escape(r.test)} #{r.id}"
        + (f" ({escape(r.question)})" if r.question else "")
        + f" from {mention(r.reported_by)} at {format_time(r.reported_at, tz)}"
        for r in shown
    ]
    more = len(home.open_reports) - len(shown)
    if more:
        lines.append(f"…and {more} more (`examdesk reports`)")
    lines.append("Send, edit or reject each on its message in the support channel.")
    return [*blocks, _text("\n".join(lines))]


def _open_deliveries(home: Home, tz: ZoneInfo) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"type": "divider"}, _text("*Open for new delivery*")]
    if not home.open_deliveries:
        return [*blocks, _context("No candidate is open for new delivery.")]
    lines = [
        f"• {escape(d.test)} candidate {escape(d.candidate)} ({d.mode}): "
        + (
            f"until {format_time(d.deadline, tz)}"
            if d.deadline
            else "no time limit — close it with `/reopen … close current`"
        )
        for d in home.open_deliveries
    ]
    return [*blocks, _text("\n".join(lines))]


KINDS = {"slack_post": "Slack post", "webhook": "event", "sms": "SMS", "email": "e-mail"}


def _not_sent(home: Home) -> list[dict[str, Any]]:
    """Only when something was given up: a person has to act (a channel, a token, a URL)."""
    if not home.not_sent:
        return []
    lines = [f"• {KINDS.get(kind, kind)}: {escape(reason)}" for kind, reason in home.not_sent]
    return [
        {"type": "divider"},
        _text(":warning: *Not sent* (given up; see `/healthz` and the log)\n" + "\n".join(lines)),
    ]


def _changes(home: Home, tz: ZoneInfo) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"type": "divider"}, _text("*Latest changes*")]
    if not home.changes:
        return [*blocks, _context("No changes yet.")]
    lines = []
    for c in home.changes:
        whom = " ".join(x for x in (c.test, c.candidate and f"candidate {c.candidate}") if x)
        actor = mention(c.actor)
        reason = f" — {escape(c.reason)}" if c.reason else ""
        lines.append(
            f"• {format_time(c.at, tz)} · {actor} · {c.action.replace('_', ' ')} · "
            f"{escape(whom) or 'examdesk'}{reason}"
        )
    return [*blocks, _text("\n".join(lines))]
