"""How the Slack app draws the outbox posts that ``commands`` write without knowing Slack
(``render`` in a ``slack_post`` row): the change log and a teacher's report."""

from __future__ import annotations

from typing import Any

from bot.slack.views import blocks, limits
from bot.slack.views import notices as blocks_notices
from commands import change_log
from commands.language import speaking
from notifications import slack_post


def _change_log(data: dict[str, Any]) -> dict[str, Any]:
    # In the language of the change's maker, as its lines are (change_log.post).
    with speaking(data.get("language")):
        return blocks.change_log(data["lines"], via=data["via"], mentions=tuple(data["mentions"]))


RENDERERS = {
    change_log.RENDER: _change_log,
    "report": blocks_notices.report_post,
    # Every post, drawn here or written whole by ``commands``, within Slack's limits.
    slack_post.FIT: limits.fit,
}
