"""How the Slack app draws the outbox posts that ``commands`` write without knowing Slack
(``render`` in a ``slack_post`` row): the change log and a teacher's report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.slack.views import blocks, limits
from bot.slack.views import notices as blocks_notices
from commands import change_log


def _change_log(data: dict[str, Any]) -> dict[str, Any]:
    return blocks.change_log(data["lines"], via=data["via"], mentions=tuple(data["mentions"]))


def _fitted(render: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Every post drawn here is fitted to Slack's limits on its way out."""
    return lambda data: limits.fit(render(data))


RENDERERS = {
    change_log.RENDER: _fitted(_change_log),
    "report": _fitted(blocks_notices.report_blocks),
}
