"""`/exam` alone in Slack: today's tests, each with its state and a button to its overview."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from slack_sdk.models.blocks import Block, SectionBlock

from bot.slack.text import escape
from bot.slack.views import desk, limits
from commands.exam_today import TestState
from commands.language import _
from commands.reply import Reply
from store.models import CandidateStatus

# A message holds 50 blocks: the header, one section per test, the line after a cut.
SHOWN = 40


def _state(data: dict[str, Any]) -> TestState:
    return TestState(
        code=data["test"],
        title=data["title"],
        kind=data["kind"],
        start=datetime.fromisoformat(data["start"]),
        ordinary_end=datetime.fromisoformat(data["ordinary_end"]),
        by_status={CandidateStatus(k): v for k, v in data["by_status"].items()},
        open_reopenings=data["open_reopenings"],
        notices=data["notices"],
        open_reports=data["open_reports"],
    )


def today_blocks(reply: Reply, tz: ZoneInfo) -> list[dict[str, Any]]:
    d = reply.data
    if not d["tests"]:
        return desk.as_dicts([desk.section(escape(d["text"]))])
    title = _("Your tests today") if d["mine"] else _("Today's tests")
    blocks: list[Block] = [desk.header(f"{title} · {d['day']}")]
    running = set(d["running"])
    for test in d["tests"][:SHOWN]:
        state = _state(test)
        text = desk.test_text(state, tz, running=state.code in running)
        blocks.append(
            SectionBlock(
                text=desk.section(text).text,
                accessory=desk.form_button("exam", state.code),
            )
        )
    more = len(d["tests"]) - SHOWN
    if more > 0:
        blocks.append(desk.more(more, _("`/exam TEST` shows any test")))
    blocks.append(desk.context(_("The state of one test: `/exam TEST`.")))
    return limits.fit({"blocks": desk.as_dicts(blocks)})["blocks"]
