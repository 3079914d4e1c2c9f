"""The App Home tab as the desk, from ``commands.home.Home``.

Support staff see today's tests running now and later, each with the buttons that open the
forms for it, then what needs a person: open error reports, messages to candidates that
failed, what the outbox gave up, who is open for new delivery, and the latest changes. A
teacher sees their tests with a button to report an error, and their reports' state.

Built with slack_sdk's models; ``limits.fit`` at publishing keeps it within Slack's limits
whatever the day holds.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from slack_sdk.models.blocks import ActionsBlock, Block
from slack_sdk.models.views import View

from bot.slack.text import escape, mention, mrkdwn
from bot.slack.views import desk, limits
from commands.exam_today import TestState
from commands.home import Home
from commands.language import _
from commands.permissions import SUPPORT
from commands.timeparse import format_time
from notifications.masking import scrub

SHOWN_REPORTS = 10
# Tests shown with their buttons, per list: two blocks each.
SHOWN_RUNNING = 12
SHOWN_UPCOMING = 5
SUPPORT_FORMS = ("incident-time", "reopen", "candidate", "notice")
TEACHER_FORMS = ("question-error",)
KINDS = {"slack_post": "Slack post", "webhook": "event", "sms": "SMS", "email": "e-mail"}


def help_text() -> str:
    return _(
        "`/exam` · `/exam TEST` · `/candidate TEST CANDIDATE` · `/incident-time TEST "
        "CANDIDATES add 15 reason` · `/reopen TEST CANDIDATE in 30m reason` · `/notice TEST "
        "text` · `/question-error TEST` — a command alone opens its form; add `help` for its "
        "usage."
    )


def home_view(home: Home, *, tz: ZoneInfo) -> dict[str, Any]:
    if home.role is None:
        blocks: list[Block] = [
            desk.header("examdesk"),
            desk.section(
                _(
                    "examdesk helps exam support staff and teachers keep digital exams "
                    "running: extra time, new delivery, candidate status and notices to "
                    "candidates."
                )
            ),
            desk.section(":lock: " + mrkdwn(home.explanation, home.mentions)),
        ]
    elif home.role == SUPPORT:
        blocks = _support(home, tz)
    else:
        blocks = _teacher(home, tz)
    if home.role is not None:
        blocks += [desk.divider(), desk.context(help_text())]
    view = View(type="home", blocks=desk.as_dicts(blocks)).to_dict()
    return limits.fit(view, limits.HOME)


# ---------------------------------------------------------------- support


def _support(home: Home, tz: ZoneInfo) -> list[Block]:
    blocks: list[Block] = [desk.header(_("Exam day"))]
    blocks += _tests(
        _("Running now"),
        home.running,
        home,
        tz,
        SUPPORT_FORMS,
        SHOWN_RUNNING,
        empty=_("No test is running now."),
    )
    blocks += _tests(
        _("Later today"),
        home.upcoming,
        home,
        tz,
        SUPPORT_FORMS,
        SHOWN_UPCOMING,
        empty=_("No more tests today."),
    )
    blocks += _coming(home, tz)
    blocks += _open_reports(home, tz)
    blocks += _failing(home)
    blocks += _not_sent(home)
    blocks += _open_deliveries(home, tz)
    blocks += _changes(home, tz)
    return blocks


def _tests(
    title: str,
    tests: list[TestState],
    home: Home,
    tz: ZoneInfo,
    forms: tuple[str, ...],
    most: int,
    *,
    empty: str,
) -> list[Block]:
    blocks: list[Block] = [desk.divider(), desk.section(f"*{escape(title)}*")]
    if not tests:
        return [*blocks, desk.context(empty)]
    assert home.now is not None
    for state in tests[:most]:
        blocks.append(desk.section(desk.test_text(state, tz, running=state.running(home.now))))
        blocks.append(desk.form_buttons(state.code, forms, block_id=f"tests_{state.code}"))
    if len(tests) > most:
        blocks.append(desk.more(len(tests) - most, _("`/exam` lists all of today's tests")))
    return blocks


def _coming(home: Home, tz: ZoneInfo) -> list[Block]:
    if not home.coming:
        return []
    lines = [
        _("Next: {code} at {start}").format(
            code=f"*{escape(t.code)}*", start=format_time(t.start, tz)
        )
        for t in home.coming
    ]
    return [desk.context("\n".join(lines))]


def _open_reports(home: Home, tz: ZoneInfo) -> list[Block]:
    blocks: list[Block] = [desk.divider(), desk.section("*" + _("Open error reports") + "*")]
    if not home.open_reports:
        return [*blocks, desk.context(_("No error report is waiting."))]
    shown = home.open_reports[:SHOWN_REPORTS]
    lines = [
        f"• {escape(r.test)} #{r.id}"
        + (f" ({escape(r.question)})" if r.question else "")
        + " "
        + _("from {who} at {at}").format(
            who=mention(r.reported_by), at=format_time(r.reported_at, tz)
        )
        for r in shown
    ]
    more = len(home.open_reports) - len(shown)
    if more:
        lines.append(_("… and {n} more (`examdesk reports`)").format(n=more))
    lines.append(_("Send, edit or reject each on its message in the support channel."))
    return [*blocks, desk.section("\n".join(lines))]


def _failed(channel: str, status: str) -> tuple[str, str]:
    channels = {"sms": _("the SMS"), "email": _("the e-mail")}
    states = {"failed": _("could not be sent"), "undelivered": _("did not arrive")}
    return channels.get(channel, channel), states.get(status, status)


def _failing(home: Home) -> list[Block]:
    """Only when a message to a candidate did not arrive: someone may have to call them."""
    if not home.failing:
        return []
    lines = [
        "• "
        + _("{test} candidate {candidate}: {channel} {status}").format(
            test=escape(f.test),
            candidate=escape(f.candidate),
            channel=_failed(f.channel, f.status)[0],
            status=_failed(f.channel, f.status)[1],
        )
        + (f" — {escape(f.reason)}" if f.reason else "")
        for f in home.failing
    ]
    more = home.failing_count - len(home.failing)
    if more > 0:
        lines.append(_("… and {n} more (`/exam TEST` for each test)").format(n=more))
    head = ":warning: *" + _("Messages to candidates that failed today") + "*"
    return [desk.divider(), desk.section(head + "\n" + "\n".join(lines))]


def _not_sent(home: Home) -> list[Block]:
    """Only when something was given up: a person has to act (a channel, a token, a URL)."""
    if not home.not_sent:
        return []
    lines = [
        f"• {KINDS.get(kind, kind)}: {escape(scrub(reason))}" for kind, reason in home.not_sent
    ]
    head = ":warning: *" + _("Not sent") + "* " + _("(given up; see `/healthz` and the log)")
    return [desk.divider(), desk.section(head + "\n" + "\n".join(lines))]


def _open_deliveries(home: Home, tz: ZoneInfo) -> list[Block]:
    blocks: list[Block] = [desk.divider(), desk.section("*" + _("Open for new delivery") + "*")]
    if not home.open_deliveries:
        return [*blocks, desk.context(_("No candidate is open for new delivery."))]
    lines = [
        "• "
        + _("{test} candidate {candidate} ({mode}):").format(
            test=escape(d.test), candidate=escape(d.candidate), mode=d.mode
        )
        + " "
        + (
            _("until {time}").format(time=format_time(d.deadline, tz))
            if d.deadline
            else _("no time limit — close it with `/reopen … close current`")
        )
        for d in home.open_deliveries
    ]
    return [*blocks, desk.section("\n".join(lines))]


def _changes(home: Home, tz: ZoneInfo) -> list[Block]:
    blocks: list[Block] = [desk.divider(), desk.section("*" + _("Latest changes") + "*")]
    if not home.changes:
        return [*blocks, desk.context(_("No changes yet."))]
    lines = []
    for c in home.changes:
        whom = " ".join(
            x
            for x in (
                c.test,
                c.candidate and _("candidate {number}").format(number=c.candidate),
            )
            if x
        )
        reason = f" — {escape(scrub(c.reason))}" if c.reason else ""
        lines.append(
            f"• {format_time(c.at, tz)} · {mention(c.actor)} · {c.action.replace('_', ' ')} · "
            f"{escape(whom) or 'examdesk'}{reason}"
        )
    return [*blocks, desk.section("\n".join(lines))]


# ---------------------------------------------------------------- teacher


def _teacher(home: Home, tz: ZoneInfo) -> list[Block]:
    blocks: list[Block] = [desk.header(_("Your tests"))]
    today = home.running + home.upcoming
    blocks += _tests(
        _("Today"),
        today,
        home,
        tz,
        TEACHER_FORMS,
        SHOWN_RUNNING,
        empty=_("None of your tests is on today."),
    )
    if home.coming:
        blocks += _tests(
            _("Coming up"), home.coming, home, tz, TEACHER_FORMS, SHOWN_UPCOMING, empty=""
        )
    blocks += _teacher_reports(home, tz)
    blocks.append(desk.context(_("You see the tests you teach. Exam support acts on them.")))
    return blocks


def _teacher_reports(home: Home, tz: ZoneInfo) -> list[Block]:
    blocks: list[Block] = [desk.divider(), desk.section("*" + _("Your error reports") + "*")]
    states = {
        "open": _("open, waiting for exam support"),
        "sent": _("sent to the candidates"),
        "rejected": _("not sent (rejected by exam support)"),
    }
    if home.reports:
        lines = [
            f"• {escape(r.test)} #{r.id}"
            + (f" ({escape(r.question)})" if r.question else "")
            + f" · {format_time(r.reported_at, tz)} · *{states.get(r.state, r.state)}*"
            + (
                " " + _("by {who}").format(who=mention(r.handled_by))
                if r.handled_by and r.state != "open"
                else ""
            )
            for r in home.reports
        ]
        blocks.append(desk.section("\n".join(lines)))
    else:
        blocks.append(desk.context(_("You have not reported an error.")))
    blocks.append(
        ActionsBlock(block_id="report_error", elements=[desk.form_button("question-error")])
    )
    return blocks
