"""Block Kit for command replies: a message with blocks and the reply's plain text as fallback.

Everything shown comes from ``commands`` (``Reply.text`` and ``Reply.data``); this module only
lays it out. All of it goes through ``bot.slack.text``: text that users typed (reasons,
notices, names) cannot ping, broadcast or forge a link; the mentions the core declares
(``Reply.mentions``) stay mentions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.slack.text import capped, escape, fallback, mrkdwn, text_object
from bot.slack.views import desk, today
from commands.candidate_view import kind_label, status_label
from commands.language import _, number
from commands.reply import Reply
from commands.timeparse import format_duration, format_time

CONFIRM_ACTION = "examdesk_confirm"
CANCEL_ACTION = "examdesk_cancel"
UNDO_ACTION = "examdesk_undo"
SECTION_LIMIT = 3000  # Slack's limit for a section's text
# A message holds at most 50 blocks; long text is cut to this many sections.
TEXT_SECTIONS = 10
BUTTON_LIMIT = 75


def message(reply: Reply, *, tz: ZoneInfo) -> dict[str, Any]:
    """``{"text": …, "blocks": […]}`` for ``reply``; a confirm needs the stored token."""
    render = _RENDERERS.get(reply.kind, _plain)
    if reply.confirm is not None:
        blocks = _confirm(reply)
    elif not reply.ok:
        blocks = _refusal(reply)
    else:
        blocks = render(reply, tz)
    return {"text": fallback(reply.text, reply.mentions), "blocks": blocks}


def _own(reply: Reply, text: str) -> str:
    """``text`` of ``reply`` as mrkdwn, with the mentions the core made."""
    return mrkdwn(text, reply.mentions)


# ------------------------------------------------------------------ building blocks


def _section(text: str) -> list[dict[str, Any]]:
    """Already-escaped ``text`` in one section, or several when it is longer than Slack
    allows in one; the last of TEXT_SECTIONS says how many lines did not fit."""
    chunks, current = [], ""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        line = capped(line, SECTION_LIMIT)
        if current and len(current) + len(line) + 1 > SECTION_LIMIT:
            chunks.append(current)
            if len(chunks) == TEXT_SECTIONS - 1:
                current = _("… and {n} more lines").format(n=number(len(lines) - index))
                break
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    chunks.append(current or " ")
    return [{"type": "section", "text": text_object(c)} for c in chunks]


def _fields(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "type": "section",
        "fields": [text_object(capped(f"*{k}*\n{v}", 2000)) for k, v in pairs[:10]],
    }


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150]}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [text_object(capped(text, SECTION_LIMIT))]}


def _code(text: str) -> str:
    return "```" + escape(text) + "```"


def _time(value: str | None, tz: ZoneInfo) -> str:
    return format_time(datetime.fromisoformat(value), tz) if value else _("none")


# ------------------------------------------------------------------ one renderer per kind


def _plain(reply: Reply, tz: ZoneInfo) -> list[dict[str, Any]]:
    return _section(_own(reply, reply.text))


def _usage(reply: Reply, tz: ZoneInfo) -> list[dict[str, Any]]:
    return _section(_code(reply.text))


def _refusal(reply: Reply) -> list[dict[str, Any]]:
    # A CommandError's text is its message, then the usage when the input was malformed.
    problem, sep, usage = reply.text.partition("\n" + _("Usage:"))
    blocks = _section(":warning: " + _own(reply, problem))
    if sep:
        blocks += _section(_code(sep.lstrip("\n") + usage))
    return blocks


def _receipt(reply: Reply, tz: ZoneInfo) -> list[dict[str, Any]]:
    head, _newline, rest = reply.text.partition("\n")
    blocks = _section(":white_check_mark: " + _own(reply, head))
    if rest:
        blocks += _section(_own(reply, rest))
    if reply.data.get("undo_until") is not None:
        blocks += _undo(reply.data["change_id"], reply.data["undo_until"], tz)
    return blocks


def _undo(change_id: int, until: datetime, tz: ZoneInfo) -> list[dict[str, Any]]:
    """The receipt's Undo button: its click runs `/undo CHANGE` as the clicking user, who
    then sees what would be restored and confirms it."""
    return [
        {
            "type": "actions",
            "block_id": "examdesk_undo",
            "elements": [
                {
                    "type": "button",
                    "action_id": UNDO_ACTION,
                    "text": {"type": "plain_text", "text": _("Undo")},
                    "value": str(change_id),
                }
            ],
        },
        _context(
            _("Undo is possible until {time} and asks to confirm.").format(
                time=format_time(until, tz)
            )
        ),
    ]


def _confirm(reply: Reply) -> list[dict[str, Any]]:
    confirm = reply.confirm
    assert confirm is not None and confirm.token is not None, "a confirmation must be stored"
    token = confirm.token
    return [
        *_section(":raising_hand: " + _own(reply, reply.text)),
        {
            "type": "actions",
            "block_id": "examdesk_confirmation",
            "elements": [
                {
                    "type": "button",
                    "action_id": CONFIRM_ACTION,
                    "style": "danger",
                    "text": {"type": "plain_text", "text": confirm.button[:BUTTON_LIMIT]},
                    "value": token,
                    # Slack's own dialog: a second, deliberate click before anything changes.
                    "confirm": {
                        "title": {"type": "plain_text", "text": _("Are you sure?")},
                        "text": text_object(capped(_own(reply, confirm.prompt), 300)),
                        "confirm": {"type": "plain_text", "text": _("Yes, apply it")},
                        "deny": {"type": "plain_text", "text": _("No, go back")},
                        "style": "danger",
                    },
                },
                {
                    "type": "button",
                    "action_id": CANCEL_ACTION,
                    "text": {"type": "plain_text", "text": _("Cancel")},
                    "value": token,
                },
            ],
        },
        _context(_("Nothing changes until you confirm. The button works once.")),
    ]


def _candidate(reply: Reply, tz: ZoneInfo) -> list[dict[str, Any]]:
    d = reply.data
    reopened = d.get("new_delivery")
    if reopened is None:
        delivery = _("not open")
    elif reopened["deadline"] is None:
        delivery = _("allowed ({mode}), no time limit").format(mode=reopened["mode"])
    else:
        delivery = _("allowed ({mode}) until {time}").format(
            mode=reopened["mode"], time=_time(reopened["deadline"], tz)
        )
    deadline = _time(d["deadline"], tz) if d.get("deadline") else _("none (no time limit)")
    made_up = [
        (_("exam time ends"), _time(d["exam_end"], tz)),
        (_("+ upload allowance"), format_duration(d["upload_allowance_minutes"])),
        (_("= ordinary end"), _time(d["ordinary_end"], tz)),
    ]
    if d.get("individual_end"):
        made_up.append(
            (
                _("individual end"),
                _("{time} (replaces it)").format(time=_time(d["individual_end"], tz)),
            )
        )
    made_up += [
        (
            _("+ extra time"),
            _("{duration} (registry)").format(duration=format_duration(d["extra_minutes"])),
        ),
        (_("+ incident time"), format_duration(d["incident_minutes"])),
        (_("= end time"), _time(d["end_time"], tz)),
    ]
    if reopened is not None:
        until = _time(reopened["deadline"], tz) if reopened["deadline"] else _("no time limit")
        made_up.append((_("new delivery until"), until))
    # The values line up in a column however long the labels are in the reader's language.
    width = max(20, *(len(label) + 2 for label, _value in made_up))
    notices = d.get("notices") or {}
    submitted = _time(d["submitted_at"], tz) if d.get("submitted_at") else _("not yet")
    return [
        _header(
            _("Candidate {candidate} · {test}").format(candidate=d["candidate"], test=d["test"])
        ),
        _fields(
            [
                (_("Status"), status_label(d["status"])),
                (_("Deadline"), deadline),
                (_("New delivery"), delivery),
                (_("Submitted"), submitted),
            ]
        ),
        *_section(
            "*"
            + _("How the deadline is made up")
            + "*\n"
            + _code("\n".join(label.ljust(width) + value for label, value in made_up))
        ),
        _context(
            _("Notices: {inapp} in the exam app, {read} read · SMS {sms} · e-mail {email}").format(
                inapp=notices.get("inapp", 0),
                read=notices.get("read", 0),
                sms=notices.get("sms", _("none")),
                email=notices.get("email", _("none")),
            )
            + "\n"
            + escape(
                _("Phone {phone} · e-mail {email} · language {language}").format(
                    phone=d.get("phone", ""),
                    email=d.get("email", ""),
                    language=d.get("language", ""),
                )
            )
        ),
    ]


def _listed(label: str, listed: dict[str, Any], *, minutes: bool) -> str:
    if not listed["count"]:
        return f"*{label}:* " + _("none")
    shown = ", ".join(
        f"{row[0]} ({format_duration(row[1])})" if minutes else str(row[0])
        for row in listed["first"]
    )
    more = listed["count"] - len(listed["first"])
    return f"*{label}:* {number(listed['count'])} — {shown}" + (
        ", " + _("…{n} more").format(n=number(more)) if more else ""
    )


def _overview(reply: Reply, tz: ZoneInfo) -> list[dict[str, Any]]:
    d = reply.data
    by_status = d["by_status"]
    blocks: list[dict[str, Any]] = []
    if not reply.text.startswith(d["test"]):
        # `/exam TEST refresh` puts the registry's summary before the overview.
        blocks += _section(_own(reply, reply.text.partition(f"\n{d['test']}")[0]))
    blocks += [
        _header(f"{d['test']} — {d['title']}" if d.get("title") else d["test"]),
        _context(
            _("{kind} · {start} – {end} · ordinary end {ordinary_end}").format(
                kind=kind_label(d["kind"]),
                start=_time(d["start"], tz),
                end=_time(d["exam_end"], tz),
                ordinary_end=_time(d["ordinary_end"], tz),
            )
        ),
        _fields(
            [
                (_("Candidates"), number(d["candidates"])),
                (_("Not started"), number(by_status["not_started"])),
                (_("Started"), number(by_status["started"])),
                (_("Submitted"), number(by_status["submitted"])),
            ]
        ),
    ]
    lines = [
        _listed(_("Extra time (registry)"), d["extra"], minutes=True),
        _listed(_("Incident time"), d["incident"], minutes=True),
        _listed(_("Individual end"), d["individual"], minutes=False),
    ]
    reopened = d["reopened"]
    new_delivery = "*" + _("New delivery:") + "* "
    if reopened["count"]:
        lines.append(new_delivery + _("{n} open").format(n=number(reopened["count"])))
        lines += [
            f"• {r['candidate']} ({r['mode']}) "
            + (
                _("until {time}").format(time=_time(r["deadline"], tz))
                if r["deadline"]
                else _("no time limit")
            )
            for r in reopened["first"]
        ]
        if reopened["count"] > len(reopened["first"]):
            more = reopened["count"] - len(reopened["first"])
            lines.append("• " + _("…{n} more").format(n=number(more)))
    else:
        lines.append(new_delivery + _("none"))
    notices = d["notices"]
    said = "*" + _("Notices:") + "* "
    if notices["sent"]:
        channels = "; ".join(
            ("SMS " if channel == "sms" else _("e-mail") + " ")
            + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            for channel, counts in sorted(notices["deliveries"].items())
        )
        lines.append(
            said
            + _("{sent} sent; in-app {inapp}, read {read}").format(
                sent=number(notices["sent"]),
                inapp=number(notices["inapp"]),
                read=number(notices["read"]),
            )
            + (f"; {channels}" if channels else "")
        )
    else:
        lines.append(said + _("none sent"))
    if d.get("grading"):
        lines.append("*" + _("Grading:") + f"* {escape(d['grading']['text'])}")
    lines.append(desk.open_reports_line(d.get("open_reports") or [], tz))
    return blocks + _section("\n".join(lines))


_RENDERERS = {
    "message": _plain,
    "usage": _usage,
    "receipt": _receipt,
    "candidate": _candidate,
    "overview": _overview,
    "today": today.today_blocks,
}


# ------------------------------------------------------------------ other messages


def change_log(lines: list[str], *, via: str, mentions: tuple[str, ...] = ()) -> dict[str, Any]:
    """The support channel's record of a change: who, what, for whom, why, new deadline.

    ``mentions``: the users the lines name on purpose (``Reply.mentions``)."""
    text = "\n".join(lines)
    return {
        "text": fallback(text, mentions),
        "blocks": [
            *_section(":memo: " + mrkdwn(text, mentions)),
            _context(_("examdesk change log · via {via}").format(via=escape(via))),
        ],
    }


def unexpected_error(reference: str) -> dict[str, Any]:
    text = _(
        "Sorry, something went wrong on our side. If you were changing something, check the "
        "result (`/candidate` or `/exam`) before trying again; if it keeps happening, tell "
        "exam support (reference {reference})."
    ).format(reference=reference)
    return {"text": text, "blocks": _section(":boom: " + text)}
